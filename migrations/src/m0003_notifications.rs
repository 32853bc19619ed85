//! The transactional outbox of notifications, and per-user opt-outs.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0003_notifications"
    }
}

const SCHEMA: &str = r#"
CREATE TABLE outbox (
    id {uuid} PRIMARY KEY,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    record_type TEXT NOT NULL,
    record_id {uuid} NOT NULL,
    recipient_id {uuid} REFERENCES users (id) ON DELETE SET NULL,
    recipient TEXT NOT NULL,
    context TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at {ts} NOT NULL,
    last_error TEXT,
    created_at {ts} NOT NULL,
    sent_at {ts}
);
CREATE INDEX outbox_due_idx ON outbox (status, next_attempt_at);
CREATE INDEX outbox_record_idx ON outbox (record_type, record_id, created_at);
CREATE TABLE notification_prefs (
    user_id {uuid} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    enabled {bool} NOT NULL,
    PRIMARY KEY (user_id, event)
)
"#;

const DROP: &str = r#"
DROP TABLE notification_prefs;
DROP TABLE outbox
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
