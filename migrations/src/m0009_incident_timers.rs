//! Each incident keeps a copy of its SLA timers, as the views show them, in
//! its own row (`incidents.timers_json`).
//!
//! A list page read its 50 incidents, then their ~100 timers in a second
//! statement (on PostgreSQL about 220 µs of server time a page, 50 index
//! descents); a get read its timers in a subquery (SQLite) or a join
//! (PostgreSQL). The copy is a JSON array with one array per timer: kind,
//! policy id and calendar id (hex, `""` for none), target seconds, start,
//! pauses (their JSON, as a string), stop and breach (RFC 3339 or `null`).
//! An incident without timers has `[]`. Keel writes the copy in the same
//! transaction as the timers (`sla_timers` stays the worker's and the
//! reports' table). This migration fills it for the timers there already.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0009_incident_timers"
    }
}

const ADD: &str = "ALTER TABLE incidents ADD COLUMN timers_json TEXT NOT NULL DEFAULT '[]'";

const FILL_SQLITE: &str = r#"UPDATE incidents SET timers_json = (
    SELECT json_group_array(json_array(
        t.kind, lower(hex(t.policy_id)), lower(hex(t.calendar_id)), t.target_secs, t.started_at, t.pauses,
        t.stopped_at, t.breached_at))
    FROM sla_timers AS t
    WHERE t.record_type = 'incident' AND t.record_id = incidents.id)
WHERE id IN (SELECT record_id FROM sla_timers WHERE record_type = 'incident')"#;

/// Timestamps in UTC whatever the session's time zone, as Keel writes them.
const FILL_POSTGRES: &str = r#"UPDATE incidents AS i SET timers_json = t.timers
FROM (
    SELECT record_id, json_agg(json_build_array(
        kind,
        coalesce(replace(policy_id::text, '-', ''), ''),
        coalesce(replace(calendar_id::text, '-', ''), ''),
        target_secs,
        to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        pauses,
        to_char(stopped_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(breached_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    ))::text AS timers
    FROM sla_timers
    WHERE record_type = 'incident'
    GROUP BY record_id
) AS t
WHERE i.id = t.record_id"#;

const DROP: &str = "ALTER TABLE incidents DROP COLUMN timers_json";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(ADD).await?;
        let fill = match db.get_database_backend() {
            DatabaseBackend::Postgres => FILL_POSTGRES,
            _ => FILL_SQLITE,
        };
        db.execute_unprepared(fill).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DROP).await?;
        Ok(())
    }
}
