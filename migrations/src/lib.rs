//! Keel's schema, one migration per step. Landed migrations are never edited;
//! a change is a new file. Each migration is written once as SQL with
//! `{uuid}`, `{ts}`, `{bool}`, `{bigint}`, `{serial}` and `{bytes}` type
//! placeholders, filled in per backend, so SQLite and PostgreSQL get the same
//! tables, constraints and indexes.

pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

mod m0001_foundation;
mod m0002_sla;
mod m0003_notifications;
mod m0004_webhooks;
mod m0005_queue_indexes;
mod m0006_queue_priority;
mod m0007_outbox_notices;
mod m0008_search_docs_appended;
mod m0009_incident_timers;

/// Runs Keel's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_foundation::Migration),
            Box::new(m0002_sla::Migration),
            Box::new(m0003_notifications::Migration),
            Box::new(m0004_webhooks::Migration),
            Box::new(m0005_queue_indexes::Migration),
            Box::new(m0006_queue_priority::Migration),
            Box::new(m0007_outbox_notices::Migration),
            Box::new(m0008_search_docs_appended::Migration),
            Box::new(m0009_incident_timers::Migration),
        ]
    }
}

/// Fills the type placeholders for `backend`.
pub(crate) fn dialect(sql: &str, backend: DatabaseBackend) -> String {
    let pairs: &[(&str, &str)] = match backend {
        DatabaseBackend::Postgres => &[
            ("{uuid}", "UUID"),
            ("{ts}", "TIMESTAMPTZ"),
            ("{bool}", "BOOLEAN"),
            ("{bigint}", "BIGINT"),
            ("{serial}", "BIGSERIAL PRIMARY KEY"),
            ("{bytes}", "BYTEA"),
        ],
        _ => &[
            ("{uuid}", "BLOB"),
            ("{ts}", "TEXT"),
            ("{bool}", "BOOLEAN"),
            ("{bigint}", "INTEGER"),
            ("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
            ("{bytes}", "BLOB"),
        ],
    };
    pairs
        .iter()
        .fold(sql.to_owned(), |s, (from, to)| s.replace(from, to))
}

/// Runs each `;`-terminated statement of `sql` (after [`dialect`]).
pub(crate) async fn run_script(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let sql = dialect(sql, db.get_database_backend());
    for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        db.execute_unprepared(stmt).await?;
    }
    Ok(())
}
