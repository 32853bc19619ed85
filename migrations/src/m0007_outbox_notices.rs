//! One outbox row per notice, not per recipient.
//!
//! A create told its requester and every member of its group, one row each:
//! eleven rows for a group of ten, each with a copy of the incident's
//! context, three index entries and a foreign-key check, all inside the
//! create's transaction. Now a notice is one row whose `recipients` column
//! lists who is to hear of it, each with their own delivery state (JSON:
//! `[{"id": uuid or null, "email": "...", "state": "pending" | "sent" |
//! "failed", "error": "..."}]`), which the delivery worker updates as it
//! sends. The row is `pending` while anyone in it is.
//!
//! Rows already in the outbox become one-recipient notices, in their state,
//! so nothing waiting to be sent is lost. `record_idx` is not recreated: no
//! query reads the outbox by record.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_outbox_notices"
    }
}

const UP: &str = r#"
CREATE TABLE outbox_notices (
    id {uuid} PRIMARY KEY,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    record_type TEXT NOT NULL,
    record_id {uuid} NOT NULL,
    recipients TEXT NOT NULL,
    context TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at {ts} NOT NULL,
    last_error TEXT,
    created_at {ts} NOT NULL,
    sent_at {ts}
);
INSERT INTO outbox_notices (id, channel, event, record_type, record_id, recipients, context,
    status, attempts, next_attempt_at, last_error, created_at, sent_at)
SELECT id, channel, event, record_type, record_id, {one_recipient}, context,
    status, attempts, next_attempt_at, last_error, created_at, sent_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_notices RENAME TO outbox;
CREATE INDEX outbox_due_idx ON outbox (status, next_attempt_at)
"#;

/// The old row's recipient as a one-element `recipients` list.
fn one_recipient(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            "json_build_array(json_build_object('id', recipient_id, 'email', recipient, \
             'state', status, 'error', CASE WHEN status = 'failed' THEN last_error END))::text"
        }
        _ => {
            "json_array(json_object('id', CASE WHEN recipient_id IS NULL THEN NULL \
             ELSE lower(substr(hex(recipient_id), 1, 8) || '-' || substr(hex(recipient_id), 9, 4) \
             || '-' || substr(hex(recipient_id), 13, 4) || '-' || substr(hex(recipient_id), 17, 4) \
             || '-' || substr(hex(recipient_id), 21)) END, 'email', recipient, 'state', status, \
             'error', CASE WHEN status = 'failed' THEN last_error END))"
        }
    }
}

/// Back to one row per recipient, each with a fresh id (the first keeps
/// the notice's). Recipients' own states are kept; the rows' counters and
/// times are the notice's.
const DOWN: &str = r#"
CREATE TABLE outbox_rows (
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
{expand};
DROP TABLE outbox;
ALTER TABLE outbox_rows RENAME TO outbox;
CREATE INDEX outbox_due_idx ON outbox (status, next_attempt_at);
CREATE INDEX outbox_record_idx ON outbox (record_type, record_id, created_at)
"#;

/// The insert that expands every notice into one row per recipient.
fn expand(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            "INSERT INTO outbox_rows SELECT \
             CASE WHEN r.n = 1 THEN o.id ELSE gen_random_uuid() END, o.channel, o.event, \
             o.record_type, o.record_id, \
             (SELECT u.id FROM users u WHERE u.id = (r.v->>'id')::uuid), r.v->>'email', o.context, \
             COALESCE(r.v->>'state', 'pending'), o.attempts, o.next_attempt_at, \
             COALESCE(r.v->>'error', o.last_error), o.created_at, o.sent_at \
             FROM outbox o, json_array_elements(o.recipients::json) WITH ORDINALITY AS r(v, n)"
        }
        _ => {
            "INSERT INTO outbox_rows SELECT \
             CASE WHEN r.key = 0 THEN o.id ELSE randomblob(16) END, o.channel, o.event, \
             o.record_type, o.record_id, \
             (SELECT u.id FROM users u WHERE lower(hex(u.id)) = \
              replace(json_extract(r.value, '$.id'), '-', '')), \
             json_extract(r.value, '$.email'), o.context, \
             COALESCE(json_extract(r.value, '$.state'), 'pending'), o.attempts, \
             o.next_attempt_at, COALESCE(json_extract(r.value, '$.error'), o.last_error), \
             o.created_at, o.sent_at \
             FROM outbox o, json_each(o.recipients) AS r"
        }
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        run_script(
            manager,
            &UP.replace("{one_recipient}", one_recipient(backend)),
        )
        .await?;
        if backend == DatabaseBackend::Postgres {
            // The key's index keeps the name it was created with.
            run_script(
                manager,
                "ALTER INDEX outbox_notices_pkey RENAME TO outbox_pkey",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        run_script(manager, &DOWN.replace("{expand}", expand(backend))).await?;
        if backend == DatabaseBackend::Postgres {
            run_script(
                manager,
                "ALTER INDEX outbox_rows_pkey RENAME TO outbox_pkey;
                 ALTER TABLE outbox RENAME CONSTRAINT outbox_rows_recipient_id_fkey TO outbox_recipient_id_fkey",
            )
            .await?;
        }
        Ok(())
    }
}
