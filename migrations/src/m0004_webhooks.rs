//! Webhook subscriptions and their delivery log (which is also their queue).

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_webhooks"
    }
}

const SCHEMA: &str = r#"
CREATE TABLE webhooks (
    id {uuid} PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    active {bool} NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL
);
CREATE TABLE webhook_deliveries (
    id {uuid} PRIMARY KEY,
    webhook_id {uuid} NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at {ts} NOT NULL,
    response_status INTEGER,
    latency_ms {bigint},
    last_error TEXT,
    created_at {ts} NOT NULL,
    delivered_at {ts}
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_hook_idx ON webhook_deliveries (webhook_id, created_at)
"#;

const DROP: &str = r#"
DROP TABLE webhook_deliveries;
DROP TABLE webhooks
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
