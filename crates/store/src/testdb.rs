//! Databases for the store's own tests that need both backends.

use sea_orm::{ConnectionTrait, DatabaseConnection};

fn postgres_url() -> String {
    std::env::var("KEEL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn connect(url: String) -> DatabaseConnection {
    let mut opts = sea_orm::ConnectOptions::new(url);
    opts.max_connections(1).sqlx_logging(false);
    sea_orm::Database::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// SQLite in memory, and a fresh PostgreSQL database (named as the
/// black-box tests name theirs, so their sweep drops it if the test dies)
/// unless `KEEL_TEST_SKIP_POSTGRES` is set; each with the PostgreSQL
/// database's name, for [`drop_database`]. One connection each, so that
/// session settings hold for the whole test. Not migrated.
pub(crate) async fn fresh_databases() -> Vec<(DatabaseConnection, Option<String>)> {
    let mut out = vec![(connect("sqlite::memory:".into()).await, None)];
    if std::env::var_os("KEEL_TEST_SKIP_POSTGRES").is_some() {
        return out;
    }
    let url = postgres_url();
    let name = format!(
        "keel_test_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let base = connect(url.clone()).await;
    base.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (server, _) = url.rsplit_once('/').unwrap_or_else(|| panic!("{url}"));
    out.push((connect(format!("{server}/{name}")).await, Some(name)));
    out
}

/// A plain sqlx connection to the tests' PostgreSQL server, for tests of
/// how rows are read; `None` when `KEEL_TEST_SKIP_POSTGRES` is set.
pub(crate) async fn postgres_connection() -> Option<sea_orm::sqlx::PgConnection> {
    if std::env::var_os("KEEL_TEST_SKIP_POSTGRES").is_some() {
        return None;
    }
    let url = postgres_url();
    match <sea_orm::sqlx::PgConnection as sea_orm::sqlx::Connection>::connect(&url).await {
        Ok(conn) => Some(conn),
        Err(e) => panic!("PostgreSQL at {url} is needed (or set KEEL_TEST_SKIP_POSTGRES): {e}"),
    }
}

/// Closes `db` and drops it if it is one of [`fresh_databases`]'
/// PostgreSQL databases.
pub(crate) async fn drop_database(db: DatabaseConnection, name: Option<String>) {
    let _ = db.close().await;
    if let Some(name) = name {
        connect(postgres_url())
            .await
            .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// An incident numbered `number`, new, with no timers, its people ids
/// made up (for tables whose foreign keys are off).
pub(crate) fn incident(number: i64) -> crate::entities::incident::Model {
    let t = keel_core::time::now();
    crate::entities::incident::Model {
        id: uuid::Uuid::now_v7(),
        number,
        title: "Printer on fire".into(),
        description: String::new(),
        impact: 2,
        urgency: 2,
        priority: 3,
        priority_overridden: false,
        category: None,
        major: false,
        state: "new".into(),
        hold_reason: None,
        resolution_code: None,
        resolution_notes: None,
        requester_id: uuid::Uuid::now_v7(),
        assignment_group_id: None,
        assignee_id: None,
        reassignment_count: 0,
        created_by: uuid::Uuid::now_v7(),
        version: 1,
        created_at: t,
        updated_at: t,
        first_response_at: None,
        resolved_at: None,
        closed_at: None,
        cancelled_at: None,
        timers_json: "[]".into(),
    }
}

/// Turns foreign keys off for `tables` (SQLite: for the connection, which
/// is the only one), so that rows may name people, policies or calendars
/// that do not exist. Other triggers stay on.
pub(crate) async fn without_foreign_keys(db: &DatabaseConnection, tables: &[&str]) {
    let statements: Vec<String> = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => tables
            .iter()
            .map(|t| format!("ALTER TABLE {t} DISABLE TRIGGER ALL"))
            .collect(),
        _ => vec!["PRAGMA foreign_keys = OFF".to_owned()],
    };
    for s in statements {
        db.execute_unprepared(&s)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
