//! SQLite's hot reads (a get, a list page) run on the calling thread, on
//! connections of their own, and decoded straight from SQLite's values.
//!
//! Through sqlx, every SQLite statement is a message to the connection's
//! worker thread and its rows come back over a channel, each value first
//! copied by the worker (`sqlite3_value_dup`) and freed again after the
//! decode: on a list page of 50 incidents that copying was 22 % of the
//! page's instructions, and each hand-over wakes another thread
//! (bench/RESULTS.md, twenty-fifth and twenty-seventh sessions). A page's
//! statement is bounded (an index walk, at most a page of rows), and runs
//! here on the thread that asked for it, through [`rusqlite`], whose rows
//! lend their values without copying them.
//!
//! The event loop must not be held up for long, so a statement gets a
//! budget ([`BUDGET`]): SQLite's progress handler interrupts it once the
//! budget is spent. Whatever this path cannot do well it declines
//! ([`Inline::rows`] answers `None`), and the caller runs the statement
//! the usual way, on sqlx's worker (which reports any error as ever):
//! - a statement over budget, or one SQLite reports busy (these
//!   connections never wait on a lock; sqlx's have a busy timeout);
//! - a value to bind of a kind it does not bind as sqlx would;
//! - a value read that the decoder does not take as sqlx would read it
//!   (the decoders of [`crate::rows`] say `None`);
//! - any other error from SQLite (the connection is then closed);
//! - no idle connection with as many open as the read pool may hold, or a
//!   new one that does not open;
//! - a budget of zero (`database_sqlite_inline_read_ms = 0`): nothing is
//!   tried here at all.
//!
//! `/metrics` counts what ran here and what was tried and handed over
//! (`keel_db_sqlite_inline_reads_total`).
//!
//! The connections are opened on the database file with the read pool's
//! settings that matter to a read (`query_only`, temporary storage in
//! memory); an in-memory database, which another connection could not
//! see, has none.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};

/// How long a statement may run here before it is interrupted and handed
/// to sqlx's worker, unless configured otherwise
/// (`database_sqlite_inline_read_ms`): several times a 1 M-incident list
/// page's (0.3-0.8 ms), short enough that the requests behind it on the
/// thread hardly notice.
pub(crate) const BUDGET: Duration = Duration::from_millis(5);

/// How many of SQLite's virtual machine steps pass between two looks at
/// the clock: a few microseconds of work.
const STEPS_PER_LOOK: i32 = 1_000;

/// The connections, and how many may be open.
pub(crate) struct Inline {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    open: Mutex<u32>,
    max: u32,
    /// [`BUDGET`] unless set otherwise ([`Inline::set_budget`]), in µs.
    budget_us: AtomicU64,
    /// Statements run here, and statements tried here and declined
    /// ([`Inline::counts`]).
    here: AtomicU64,
    declined: AtomicU64,
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inline")
            .field("path", &self.path)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Inline {
    /// Connections beside sqlx's `pool`, up to as many as it may hold; `None`
    /// for a database that is not a file on disk.
    pub(crate) fn beside(pool: &sea_orm::sqlx::SqlitePool) -> Option<Inline> {
        let path = pool.connect_options().get_filename().to_path_buf();
        if !path.is_file() {
            return None;
        }
        Some(Inline {
            path,
            idle: Mutex::new(Vec::new()),
            open: Mutex::new(0),
            max: pool.options().get_max_connections().max(1),
            budget_us: AtomicU64::new(micros(BUDGET)),
            here: AtomicU64::new(0),
            declined: AtomicU64::new(0),
        })
    }

    /// How long a statement may run here; zero: none does.
    pub(crate) fn set_budget(&self, budget: Duration) {
        self.budget_us.store(micros(budget), Ordering::Relaxed);
    }

    pub(crate) fn budget(&self) -> Duration {
        Duration::from_micros(self.budget_us.load(Ordering::Relaxed))
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while holding it; a poisoned list is still whole.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_count(&self) -> std::sync::MutexGuard<'_, u32> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, or a new one if fewer than `max` are open.
    fn checkout(&self) -> Option<Connection> {
        if let Some(conn) = self.idle().pop() {
            return Some(conn);
        }
        {
            let mut open = self.open_count();
            if *open >= self.max {
                return None;
            }
            *open += 1;
        }
        let conn = self.connect();
        if conn.is_none() {
            self.forget();
        }
        conn
    }

    /// One connection fewer is open.
    fn forget(&self) {
        let mut open = self.open_count();
        *open = open.saturating_sub(1);
    }

    fn connect(&self) -> Option<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        // No busy timeout: a read that meets a lock goes to sqlx's
        // worker, which waits. `query_only` as the read pool's.
        conn.execute_batch(
            "PRAGMA busy_timeout = 0; PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;",
        )
        .ok()?;
        // A page's statement text depends on its filters' shape: more
        // shapes than rusqlite's default of 16 are in use on a busy desk.
        conn.set_prepared_statement_cache_capacity(64);
        Some(conn)
    }

    /// Runs `stmt` here and decodes each row with `decode` (a row lends
    /// its statement, which names its columns); `None` if this path
    /// declines (see the module's documentation) and the statement must
    /// run the usual way. Counted ([`Inline::counts`]) unless the budget is
    /// zero, when nothing is tried.
    pub(crate) fn rows<T>(
        &self,
        stmt: &sea_orm::Statement,
        decode: impl FnMut(&rusqlite::Row<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        if self.budget().is_zero() {
            return None;
        }
        let rows = self.try_rows(stmt, decode);
        let counter = if rows.is_some() {
            &self.here
        } else {
            &self.declined
        };
        counter.fetch_add(1, Ordering::Relaxed);
        rows
    }

    /// How many statements ran here, and how many were tried here and
    /// declined, since the start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.here.load(Ordering::Relaxed),
            self.declined.load(Ordering::Relaxed),
        )
    }

    fn try_rows<T>(
        &self,
        stmt: &sea_orm::Statement,
        mut decode: impl FnMut(&rusqlite::Row<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let values = match &stmt.values {
            Some(v) => v.0.iter().map(bind).collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        let conn = self.checkout()?;
        let deadline = Instant::now() + self.budget();
        if conn
            .progress_handler(STEPS_PER_LOOK, Some(move || Instant::now() >= deadline))
            .is_err()
        {
            self.idle().push(conn);
            return None;
        }
        let ran = run(&conn, &stmt.sql, &values, &mut decode);
        match ran {
            Ok(rows) => {
                self.idle().push(conn);
                rows
            }
            // Interrupted (over budget) or busy: the connection is as
            // good as before.
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(
                        rusqlite::ErrorCode::OperationInterrupted
                            | rusqlite::ErrorCode::DatabaseBusy
                    )
                ) =>
            {
                self.idle().push(conn);
                None
            }
            Err(_) => {
                drop(conn);
                self.forget();
                None
            }
        }
    }

    /// Closes the idle connections (one in use is closed when given back
    /// only if it failed; the store is closing anyway).
    pub(crate) fn close(&self) {
        let closed = std::mem::take(&mut *self.idle());
        let mut open = self.open_count();
        *open = open.saturating_sub(u32::try_from(closed.len()).unwrap_or(u32::MAX));
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The statement's rows, decoded; `Ok(None)` if a row did not decode.
fn run<T>(
    conn: &Connection,
    sql: &str,
    values: &[ToSqlOutput<'_>],
    decode: &mut impl FnMut(&rusqlite::Row<'_>) -> Option<T>,
) -> rusqlite::Result<Option<Vec<T>>> {
    let mut prepared = conn.prepare_cached(sql)?;
    let mut rows = prepared.query(rusqlite::params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        match decode(row) {
            Some(t) => out.push(t),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// `v` as sqlx binds it on SQLite (sea-query-sqlx's arguments), for the
/// kinds of value Keel's hot reads bind; `None` for any other.
fn bind(v: &sea_orm::Value) -> Option<ToSqlOutput<'_>> {
    use sea_orm::Value as V;
    let int = |i: Option<i64>| ToSqlOutput::Owned(i.map_or(SqlValue::Null, SqlValue::Integer));
    Some(match v {
        V::Bool(b) => int(b.map(i64::from)),
        V::TinyInt(i) => int(i.map(i64::from)),
        V::SmallInt(i) => int(i.map(i64::from)),
        V::Int(i) => int(i.map(i64::from)),
        V::BigInt(i) => int(*i),
        V::TinyUnsigned(i) => int(i.map(i64::from)),
        V::SmallUnsigned(i) => int(i.map(i64::from)),
        V::Unsigned(i) => int(i.map(i64::from)),
        // A page's `LIMIT`. sea-query-sqlx panics on one past `i64::MAX`;
        // declined here, for sqlx to answer as it does.
        V::BigUnsigned(i) => match i {
            Some(i) => int(Some(i64::try_from(*i).ok()?)),
            None => int(None),
        },
        V::String(s) => match s {
            Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            None => ToSqlOutput::Owned(SqlValue::Null),
        },
        V::Uuid(u) => match u {
            Some(u) => ToSqlOutput::Borrowed(ValueRef::Blob(u.as_bytes())),
            None => ToSqlOutput::Owned(SqlValue::Null),
        },
        V::ChronoDateTimeUtc(t) => match t {
            Some(t) => ToSqlOutput::Owned(SqlValue::Text(
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
            )),
            None => ToSqlOutput::Owned(SqlValue::Null),
        },
        _ => return None,
    })
}

/// A field read from a row of this path, as sqlx reads it on SQLite, or
/// `None` where sqlx would read it otherwise or refuse it (the statement
/// then runs the usual way, and sqlx reads or refuses it as ever).
pub(crate) trait FromInline: Sized {
    fn inline(v: ValueRef<'_>) -> Option<Self>;
}

impl FromInline for uuid::Uuid {
    fn inline(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Blob(b) => uuid::Uuid::from_slice(b).ok(),
            _ => None,
        }
    }
}

impl FromInline for String {
    fn inline(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_owned),
            _ => None,
        }
    }
}

impl FromInline for i64 {
    fn inline(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Integer(i) => Some(i),
            _ => None,
        }
    }
}

impl FromInline for i32 {
    fn inline(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Integer(i) => i32::try_from(i).ok(),
            _ => None,
        }
    }
}

impl FromInline for bool {
    fn inline(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Integer(i) => Some(i != 0),
            _ => None,
        }
    }
}

impl FromInline for keel_core::time::Timestamp {
    fn inline(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Text(t) => keel_core::time::parse_rfc3339_utc(std::str::from_utf8(t).ok()?),
            _ => None,
        }
    }
}

impl<T: FromInline> FromInline for Option<T> {
    fn inline(v: ValueRef<'_>) -> Option<Self> {
        match v {
            ValueRef::Null => Some(None),
            v => T::inline(v).map(Some),
        }
    }
}

/// Column `i` of `row`, read by [`FromInline`].
pub(crate) fn get<T: FromInline>(row: &rusqlite::Row<'_>, i: usize) -> Option<T> {
    T::inline(row.get_ref(i).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    /// A store on a fresh SQLite file with a table `t` of one row of each
    /// kind of value the hot reads bind and read.
    async fn store_with_row() -> (crate::Store, std::path::PathBuf, Row) {
        let path = std::env::temp_dir().join(format!("keel-inline-{}.db", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = crate::Store::connect(&url, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let row = Row {
            id: uuid::Uuid::now_v7(),
            name: "Printer on floor 3 jams".into(),
            n: 1 << 40,
            small: -7,
            yes: true,
            at: keel_core::time::now(),
            none: None,
        };
        let writer = store.writer();
        writer
            .execute_unprepared(
                "CREATE TABLE t (id BLOB, name TEXT, n INTEGER, small INTEGER, yes INTEGER, at TEXT, \"none\" TEXT)",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        writer
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)",
                row.values(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (store, path, row)
    }

    #[derive(Debug, PartialEq, Clone)]
    struct Row {
        id: uuid::Uuid,
        name: String,
        n: i64,
        small: i32,
        yes: bool,
        at: keel_core::time::Timestamp,
        none: Option<String>,
    }

    impl Row {
        /// Its fields as sea-orm values, in the table's order.
        fn values(&self) -> Vec<sea_orm::Value> {
            vec![
                self.id.into(),
                self.name.clone().into(),
                self.n.into(),
                self.small.into(),
                self.yes.into(),
                self.at.into(),
                self.none.clone().into(),
            ]
        }
    }

    fn decode(r: &rusqlite::Row<'_>) -> Option<Row> {
        Some(Row {
            id: get(r, 0)?,
            name: get(r, 1)?,
            n: get(r, 2)?,
            small: get(r, 3)?,
            yes: get(r, 4)?,
            at: get(r, 5)?,
            none: get(r, 6)?,
        })
    }

    fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DatabaseBackend::Sqlite, sql, values)
    }

    async fn done(store: crate::Store, path: std::path::PathBuf) {
        store.close().await;
        for end in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{end}", path.display()));
        }
    }

    #[tokio::test]
    async fn a_row_read_on_the_calling_thread_is_the_row_written_found_by_values_bound_as_sqlx_binds_them()
     {
        let (store, path, row) = store_with_row().await;
        let reads = store.reads();
        let by_every_value = stmt(
            "SELECT * FROM t WHERE id = ? AND name = ? AND n = ? AND small = ? AND yes = ? AND at = ? AND \"none\" IS ?",
            row.values(),
        );
        for _ in 0..3 {
            assert_eq!(
                reads.inline(&by_every_value, decode),
                Some(vec![row.clone()])
            );
        }
        let none = stmt("SELECT * FROM t WHERE n = ?", vec![0i64.into()]);
        assert_eq!(reads.inline(&none, decode), Some(vec![]));
        done(store, path).await;
    }

    #[tokio::test]
    async fn what_the_calling_thread_cannot_read_as_sqlx_would_is_declined_and_its_connection_kept()
    {
        let (store, path, row) = store_with_row().await;
        let reads = store.reads();
        let all = stmt("SELECT * FROM t", vec![]);
        // A kind of value it does not bind.
        let double = stmt("SELECT * FROM t WHERE n > ?", vec![1.5f64.into()]);
        assert_eq!(reads.inline(&double, decode), None);
        // A limit is bound as sqlx binds it.
        let limited = stmt("SELECT * FROM t LIMIT ?", vec![21u64.into()]);
        assert_eq!(reads.inline(&limited, decode), Some(vec![row.clone()]));
        // A value sqlx would read otherwise: text where an integer is read.
        let text_for_int = stmt(
            "SELECT id, name, name, small, yes, at, \"none\" FROM t",
            vec![],
        );
        assert_eq!(reads.inline(&text_for_int, decode), None);
        // A write: these connections are `query_only`, as the read pool's.
        assert_eq!(
            reads.inline(&stmt("DELETE FROM t", vec![]), |_| Some(())),
            None
        );
        // A statement longer than its budget is interrupted.
        let endless = stmt(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c",
            vec![],
        );
        assert_eq!(reads.inline(&endless, |r| get::<i64>(r, 0)), None);
        // The row is still there, and read as before.
        assert_eq!(reads.inline(&all, decode), Some(vec![row]));
        let counts = store.inline_reads().map(|c| (c.here, c.handed_over));
        assert_eq!(counts, Some((2, 4)));
        // With no budget nothing is tried, or counted.
        reads.set_inline_budget(Duration::ZERO);
        assert_eq!(reads.inline(&all, decode), None);
        assert_eq!(store.inline_reads().map(|c| c.handed_over), Some(4));
        done(store, path).await;
    }

    #[tokio::test]
    async fn an_in_memory_database_reads_as_before() {
        let store = crate::Store::connect("sqlite::memory:", 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let one = stmt("SELECT 1", vec![]);
        assert_eq!(store.reads().inline(&one, |r| get::<i64>(r, 0)), None);
        store.close().await;
    }
}
