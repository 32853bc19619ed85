//! SLA calendars, policies and the timers they run on records.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_sla"
    }
}

const SCHEMA: &str = r#"
CREATE TABLE sla_calendars (
    id {uuid} PRIMARY KEY,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    CONSTRAINT sla_calendars_name_key UNIQUE (name)
);
CREATE TABLE sla_policies (
    id {uuid} PRIMARY KEY,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    active {bool} NOT NULL,
    definition TEXT NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    CONSTRAINT sla_policies_name_key UNIQUE (name)
);
CREATE TABLE sla_timers (
    id {uuid} PRIMARY KEY,
    record_type TEXT NOT NULL,
    record_id {uuid} NOT NULL,
    kind TEXT NOT NULL,
    policy_id {uuid} REFERENCES sla_policies (id) ON DELETE SET NULL,
    calendar_id {uuid} REFERENCES sla_calendars (id),
    target_secs {bigint} NOT NULL,
    started_at {ts} NOT NULL,
    pauses TEXT NOT NULL,
    stopped_at {ts},
    state TEXT NOT NULL,
    due_at {ts},
    warned_percent INTEGER NOT NULL,
    breached_at {ts},
    next_check_at {ts},
    updated_at {ts} NOT NULL,
    CONSTRAINT sla_timers_record_kind_key UNIQUE (record_type, record_id, kind)
);
CREATE INDEX sla_timers_next_check_idx ON sla_timers (next_check_at);
CREATE INDEX sla_timers_state_idx ON sla_timers (record_type, state, due_at)
"#;

const DROP: &str = r#"
DROP TABLE sla_timers;
DROP TABLE sla_policies;
DROP TABLE sla_calendars
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DROP).await
    }
}
