//! The connections of the hot reads (a get, a list page and its SLA
//! timers), kept by Keel rather than by sqlx's pool.
//!
//! sqlx's pool tests every connection as it is given back: a `Sync` round
//! trip to PostgreSQL, a message to the connection's worker thread on
//! SQLite. A get is one statement, so that was a second round trip per
//! get, and a list page's two statements paid it twice. On PostgreSQL at
//! 1 M incidents, the same build without it served 34 % more gets and 25 %
//! more filtered pages, with a quarter less CPU per request
//! (bench/RESULTS.md, sixteenth session).
//!
//! Here a connection goes back to the idle list when its statement ran to
//! the end or the server refused it (an error the server reported), and
//! only then: a read that failed otherwise (I/O, TLS, protocol), or whose
//! request was dropped half-way (the client went away), takes its
//! connection with it, so a connection left mid-result is never reused. As in the pool, a
//! connection idle for a second or more is pinged before use
//! ([`crate::PING_AFTER_IDLE`]), so a server restart is noticed before a
//! statement is lost to it, and one that fails the ping is replaced by a
//! new one. New connections are made with the options of the sea-orm
//! pool they sit beside (on PostgreSQL `max_parallel_workers_per_gather`,
//! on SQLite the read pool's pragmas and `query_only`), up to as many as
//! that pool may hold; a read waits for one up to the pool's acquire
//! timeout and then fails as a pool timeout does (503).
//!
//! Public for the benchmark's speed of light (`bench/lightspeed`), which
//! reads its one row the way Keel reads its hot ones.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Connection, Database};
use sea_orm::{DatabaseBackend, DatabaseConnection, QueryResult, Statement, Values};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::rows::db_err;

/// The hot reads' connections, on whichever database the store uses, in
/// one or more parts ([`Reads::split_beside`]); a `Reads` reads through
/// one of them ([`Reads::part`]) and counts and closes them all. Cloning
/// one is cheap: the clones share the connections.
#[derive(Clone)]
pub struct Reads {
    parts: Arc<[Part]>,
    at: usize,
    /// SQLite's reads on the calling thread ([`crate::inline`]); `None` on
    /// PostgreSQL and for an in-memory SQLite database.
    inline: Option<Arc<crate::inline::Inline>>,
}

/// One part's connections.
enum Part {
    Postgres(Conns<sqlx::Postgres>),
    Sqlite(Conns<sqlx::Sqlite>),
}

impl Part {
    fn beside(db: &DatabaseConnection, max: u32) -> Part {
        if db.get_database_backend() == DatabaseBackend::Postgres {
            Part::Postgres(Conns::beside(db.get_postgres_connection_pool(), max))
        } else {
            Part::Sqlite(Conns::beside(db.get_sqlite_connection_pool(), max))
        }
    }

    fn stats(&self) -> (u32, u32, u32) {
        match self {
            Part::Postgres(c) => c.stats(),
            Part::Sqlite(c) => c.stats(),
        }
    }

    fn postgres(&self) -> Option<&Conns<sqlx::Postgres>> {
        match self {
            Part::Postgres(c) => Some(c),
            Part::Sqlite(_) => None,
        }
    }

    fn sqlite(&self) -> Option<&Conns<sqlx::Sqlite>> {
        match self {
            Part::Sqlite(c) => Some(c),
            Part::Postgres(_) => None,
        }
    }
}

/// Runs `stmt` with `$run` ([`run`] or [`run_one`]) on this reader's part
/// and the other parts of its database.
macro_rules! on_part {
    ($reads:expr, $run:ident, $stmt:expr) => {{
        let stmt: Statement = $stmt;
        let sql = stmt.sql;
        let values = SqlxValues(stmt.values.unwrap_or(Values(Vec::new())));
        let parts = &$reads.parts;
        match parts.get($reads.at) {
            Some(Part::Postgres(own)) => {
                $run(own, parts.iter().filter_map(Part::postgres), &sql, values).await
            }
            Some(Part::Sqlite(own)) => {
                $run(own, parts.iter().filter_map(Part::sqlite), &sql, values).await
            }
            // `at` always names a part, and there is at least one.
            None => Err(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::ConnectionClosed,
            )),
        }
    }};
}

impl Reads {
    /// Connections like those of `db`'s pool, up to as many as it may hold.
    pub fn beside(db: &DatabaseConnection) -> Reads {
        Reads::split_beside(db, 1)
    }

    /// [`Reads::beside`] in `parts` parts (at least one), which share the
    /// pool's number of connections between them (each at least one): one
    /// per HTTP worker thread, each worker reading through its own
    /// ([`Reads::part`]).
    ///
    /// A read that finds no free connection waits for one, and the read
    /// that gives one back wakes it. With one part for both workers of a
    /// two-core machine, the read woken was on the other worker's thread
    /// about half the time, and waking a thread that waits for work is a
    /// system call (tokio writes to its event descriptor) and a context
    /// switch: under a load of gets on SQLite, 0.5 such wakes per get.
    /// With a part per worker, a read waits only on its own part, for its
    /// own thread's reads (bench/RESULTS.md, eighteenth session). It waits
    /// only when every part is busy: a read whose part has no free
    /// connection takes another part's free one ([`Reads::fetch_all`]).
    pub fn split_beside(db: &DatabaseConnection, parts: usize) -> Reads {
        let max = match db.get_database_backend() {
            DatabaseBackend::Postgres => db
                .get_postgres_connection_pool()
                .options()
                .get_max_connections(),
            _ => db
                .get_sqlite_connection_pool()
                .options()
                .get_max_connections(),
        }
        .max(1);
        let n = u32::try_from(parts.max(1)).unwrap_or(u32::MAX).min(max);
        let inline = match db.get_database_backend() {
            DatabaseBackend::Sqlite => {
                crate::inline::Inline::beside(db.get_sqlite_connection_pool()).map(Arc::new)
            }
            _ => None,
        };
        Reads {
            parts: (0..n)
                .map(|i| Part::beside(db, max / n + u32::from(i < max % n)))
                .collect(),
            at: 0,
            inline,
        }
    }

    /// The same connections, reading through part `i` (counted around:
    /// any `i` names a part).
    pub fn part(&self, i: usize) -> Reads {
        Reads {
            parts: Arc::clone(&self.parts),
            at: i % self.parts.len().max(1),
            inline: self.inline.clone(),
        }
    }

    /// Runs `stmt` and answers its rows, as sea-orm's `query_all_raw`
    /// would (the same errors: a pool timeout or a lost server is
    /// `Unavailable`). It runs on a free connection of this reader's part;
    /// if there is none, on a free one of another part, so that no
    /// connection idles while a read waits; if there is none at all, it
    /// waits for one of its own part's.
    pub async fn fetch_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, sea_orm::DbErr> {
        on_part!(self, run, stmt)
    }

    /// Runs `stmt`, which finds at most one row, and answers that row (of
    /// several, the first), as sea-orm's `query_one_raw` would. On SQLite
    /// it returns as soon as the row comes: the connection's worker thread
    /// resets the statement before it sends the row and sends nothing
    /// after it, where [`Reads::fetch_all`] waits for the statement's end
    /// and for the channel to close (a get took 2 % fewer instructions
    /// this way; bench/RESULTS.md, twenty-third session). On PostgreSQL
    /// sqlx reads to the end of the result either way.
    pub async fn fetch_optional(
        &self,
        stmt: Statement,
    ) -> Result<Option<QueryResult>, sea_orm::DbErr> {
        on_part!(self, run_one, stmt)
    }

    /// Runs `stmt` on this thread ([`crate::inline`]), each row decoded by
    /// `decode`; `None` if that path declines it (or there is none: on
    /// PostgreSQL), and the statement must run through
    /// [`Reads::fetch_all`] or [`Reads::fetch_optional`]. Public for the
    /// benchmark's speed of light, which reads its row as a get does.
    pub fn inline<T>(
        &self,
        stmt: &Statement,
        decode: impl FnMut(&rusqlite::Row<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        self.inline.as_ref()?.rows(stmt, decode)
    }

    /// How long a statement may run on the calling thread
    /// ([`Reads::inline`]); zero: never.
    pub fn set_inline_budget(&self, budget: Duration) {
        if let Some(inline) = &self.inline {
            inline.set_budget(budget);
        }
    }

    /// How many statements ran on the calling thread ([`Reads::inline`]) and
    /// how many were tried there and handed over; `None` without that path.
    pub fn inline_counts(&self) -> Option<(u64, u64)> {
        self.inline.as_ref().map(|i| i.counts())
    }

    /// The budget [`Reads::set_inline_budget`] set; `None` without reads on
    /// the calling thread.
    pub fn inline_budget(&self) -> Option<Duration> {
        self.inline.as_ref().map(|i| i.budget())
    }

    /// How many connections are open, how many of them idle, and the most
    /// there may be: all parts together.
    pub fn stats(&self) -> (u32, u32, u32) {
        self.parts.iter().map(Part::stats).fold((0, 0, 0), |a, b| {
            (
                a.0.saturating_add(b.0),
                a.1.saturating_add(b.1),
                a.2.saturating_add(b.2),
            )
        })
    }

    /// How many parts there are.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Closes the idle connections of every part (a read still running
    /// closes its own).
    pub async fn close(&self) {
        if let Some(inline) = &self.inline {
            inline.close();
        }
        for part in self.parts.iter() {
            match part {
                Part::Postgres(c) => c.close().await,
                Part::Sqlite(c) => c.close().await,
            }
        }
    }
}

/// Runs `sql` on a connection of `own` or, if it has none free, of
/// `others` ([`permit`]), and answers its rows as sea-orm's.
async fn run<'a, DB: Database>(
    own: &'a Conns<DB>,
    others: impl Iterator<Item = &'a Conns<DB>>,
    sql: &str,
    values: SqlxValues,
) -> Result<Vec<QueryResult>, sea_orm::DbErr>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    SqlxValues: sqlx::IntoArguments<DB>,
    QueryResult: From<DB::Row>,
{
    let (c, permit) = permit(own, others).await.map_err(db_err)?;
    let rows = c.fetch_all(permit, sql, values).await.map_err(db_err)?;
    Ok(rows.into_iter().map(QueryResult::from).collect())
}

/// [`run`] for a statement of at most one row.
async fn run_one<'a, DB: Database>(
    own: &'a Conns<DB>,
    others: impl Iterator<Item = &'a Conns<DB>>,
    sql: &str,
    values: SqlxValues,
) -> Result<Option<QueryResult>, sea_orm::DbErr>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    SqlxValues: sqlx::IntoArguments<DB>,
    QueryResult: From<DB::Row>,
{
    let (c, permit) = permit(own, others).await.map_err(db_err)?;
    let row = c
        .fetch_optional(permit, sql, values)
        .await
        .map_err(db_err)?;
    Ok(row.map(QueryResult::from))
}

/// A read's part and permit: `own`'s if one is free, else the first of
/// `others` that has one free, else `own`'s when one is given back (so a
/// read waits only on its own part, and is woken by its own worker).
async fn permit<'a, DB: Database>(
    own: &'a Conns<DB>,
    mut others: impl Iterator<Item = &'a Conns<DB>>,
) -> Result<(&'a Conns<DB>, SemaphorePermit<'a>), sqlx::Error>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    SqlxValues: sqlx::IntoArguments<DB>,
{
    if let Some(p) = own.try_permit() {
        return Ok((own, p));
    }
    if let Some(found) = others.find_map(|c| c.try_permit().map(|p| (c, p))) {
        return Ok(found);
    }
    Ok((own, own.permit().await?))
}

/// How long an idle connection is kept (sqlx's pool's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle, max) = self.stats();
        f.debug_struct("Reads")
            .field("open", &open)
            .field("idle", &idle)
            .field("max", &max)
            .finish()
    }
}

/// Up to `max` connections of one database; see the module's doc.
pub struct Conns<DB: Database> {
    options: <DB::Connection as Connection>::Options,
    /// Idle connections, each with when it was last used; the most
    /// recently used last (it is taken first, the others age out).
    idle: Mutex<Vec<(DB::Connection, Instant)>>,
    /// One per connection that may be open; a read holds one throughout.
    permits: Semaphore,
    max: u32,
    acquire_timeout: Duration,
}

impl<DB: Database> Conns<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    SqlxValues: sqlx::IntoArguments<DB>,
{
    fn beside(pool: &sqlx::Pool<DB>, max: u32) -> Self {
        let max = max.max(1);
        Conns {
            options: (*pool.connect_options()).clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(usize::try_from(max).unwrap_or(1)),
            max,
            acquire_timeout: pool.options().get_acquire_timeout(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(DB::Connection, Instant)>> {
        // Nothing panics while holding it; a poisoned list is still whole.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit for one of this part's connections: at once if one is
    /// free, else `None`.
    fn try_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.permits.try_acquire().ok()
    }

    /// A permit for one of this part's connections, waiting up to the
    /// acquire timeout for one to be given back.
    async fn permit(&self) -> Result<SemaphorePermit<'_>, sqlx::Error> {
        tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Runs `sql` on one of this part's connections, which `_permit` (one
    /// of this part's) holds for it.
    async fn fetch_all(
        &self,
        _permit: SemaphorePermit<'_>,
        sql: &str,
        values: SqlxValues,
    ) -> Result<Vec<DB::Row>, sqlx::Error> {
        let mut conn = self.checkout().await?;
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
            .fetch_all(&mut conn)
            .await;
        self.give_back(conn, rows.as_ref().err()).await;
        rows
    }

    /// [`Conns::fetch_all`] for a statement of at most one row
    /// ([`Reads::fetch_optional`]).
    async fn fetch_optional(
        &self,
        _permit: SemaphorePermit<'_>,
        sql: &str,
        values: SqlxValues,
    ) -> Result<Option<DB::Row>, sqlx::Error> {
        let mut conn = self.checkout().await?;
        let row = sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
            .fetch_optional(&mut conn)
            .await;
        self.give_back(conn, row.as_ref().err()).await;
        row
    }

    /// Puts `conn` back on the idle list after a read that ended with
    /// `error`, or closes it.
    async fn give_back(&self, conn: DB::Connection, error: Option<&sqlx::Error>) {
        match error {
            // The statement ran to the end (on SQLite, or its one row was
            // taken and the statement reset), or the server refused it and
            // said so (sqlx reads up to its next ready message first): the
            // connection is as good as before.
            None | Some(sqlx::Error::Database(_)) => {
                let now = Instant::now();
                let expired = {
                    let mut idle = self.idle();
                    idle.push((conn, now));
                    // The least recently used first: those unused for
                    // `IDLE_TIMEOUT` are closed, as the pool closes its own.
                    let n = idle
                        .iter()
                        .take_while(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT)
                        .count();
                    idle.drain(..n).collect::<Vec<_>>()
                };
                for (conn, _) in expired {
                    let _ = conn.close().await;
                }
            }
            // Anything else (I/O, TLS, a protocol error) may have left it
            // broken or mid-result: it goes.
            Some(_) => drop(conn),
        }
    }

    /// An idle connection (pinged first if it sat idle a while), or a new
    /// one.
    async fn checkout(&self) -> Result<DB::Connection, sqlx::Error> {
        let taken = self.idle().pop();
        // One that fails the ping is gone (a restart, a proxy, a
        // firewall): a new one instead.
        if let Some((mut conn, since)) = taken
            && (since.elapsed() < crate::PING_AFTER_IDLE || conn.ping().await.is_ok())
        {
            return Ok(conn);
        }
        tokio::time::timeout(
            self.acquire_timeout,
            DB::Connection::connect_with(&self.options),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    fn stats(&self) -> (u32, u32, u32) {
        let idle = u32::try_from(self.idle().len()).unwrap_or(u32::MAX);
        let busy = self
            .max
            .saturating_sub(u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX));
        (idle + busy, idle, self.max)
    }

    async fn close(&self) {
        self.permits.close();
        let conns = std::mem::take(&mut *self.idle());
        for (conn, _) in conns {
            let _ = conn.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectOptions, ConnectionTrait};

    fn postgres_url() -> Option<String> {
        if std::env::var_os("KEEL_TEST_SKIP_POSTGRES").is_some() {
            return None;
        }
        Some(
            std::env::var("KEEL_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        )
    }

    async fn connect(url: &str, max: u32) -> DatabaseConnection {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(max)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .sqlx_logging(false);
        sea_orm::Database::connect(opts)
            .await
            .unwrap_or_else(|e| panic!("a database at {url} is needed: {e}"))
    }

    fn sql(db: &DatabaseConnection, text: &str) -> Statement {
        Statement::from_string(db.get_database_backend(), text)
    }

    /// The server process behind the read's connection.
    async fn backend_pid(reads: &Reads, db: &DatabaseConnection) -> i32 {
        let rows = reads
            .fetch_all(sql(db, "SELECT pg_backend_pid() AS pid"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        rows.first()
            .and_then(|r| r.try_get::<i32>("", "pid").ok())
            .unwrap_or_else(|| panic!("no pid"))
    }

    #[tokio::test]
    async fn reads_one_after_another_share_one_postgres_connection_and_a_failed_statement_keeps_it()
    {
        let Some(url) = postgres_url() else { return };
        let db = connect(&url, 3).await;
        let reads = Reads::beside(&db);
        let first = backend_pid(&reads, &db).await;
        assert_eq!(backend_pid(&reads, &db).await, first);
        // The server refused the statement and said so: the connection
        // is still good.
        let refused = reads.fetch_all(sql(&db, "SELECT 1 / 0")).await;
        assert!(refused.is_err());
        assert_eq!(backend_pid(&reads, &db).await, first);
        assert_eq!(reads.stats(), (1, 1, 3));
        reads.close().await;
    }

    #[tokio::test]
    async fn a_read_dropped_half_way_takes_its_connection_with_it_and_the_next_read_gets_another() {
        let Some(url) = postgres_url() else { return };
        let db = connect(&url, 2).await;
        let reads = Reads::beside(&db);
        let first = backend_pid(&reads, &db).await;
        // The client went away while the statement ran: its future is
        // dropped with the result still to come.
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            reads.fetch_all(sql(&db, "SELECT pg_sleep(2)")),
        )
        .await;
        assert!(dropped.is_err(), "the read should have been cut short");
        assert_eq!(reads.stats(), (0, 0, 2));
        let next = backend_pid(&reads, &db).await;
        assert_ne!(next, first);
        assert_eq!(backend_pid(&reads, &db).await, next);
        reads.close().await;
    }

    #[tokio::test]
    async fn a_read_after_the_server_ended_its_idle_connection_is_answered_on_a_new_one() {
        let Some(url) = postgres_url() else { return };
        let db = connect(&url, 2).await;
        let reads = Reads::beside(&db);
        let first = backend_pid(&reads, &db).await;
        // A restart, a proxy or an administrator ends it while it is idle.
        db.execute_unprepared(&format!("SELECT pg_terminate_backend({first})"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(crate::PING_AFTER_IDLE + Duration::from_millis(100)).await;
        let next = backend_pid(&reads, &db).await;
        assert_ne!(next, first);
        assert_eq!(reads.stats(), (1, 1, 2));
        reads.close().await;
    }

    #[tokio::test]
    async fn reads_wait_for_a_connection_beyond_the_most_there_may_be_and_time_out_as_the_pool_does()
     {
        let Some(url) = postgres_url() else { return };
        let db = connect(&url, 1).await;
        let reads = Reads::beside(&db);
        let slow = reads.fetch_all(sql(&db, "SELECT pg_sleep(0.3)"));
        let quick = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reads.fetch_all(sql(&db, "SELECT 1 AS one")).await
        };
        let (slow, quick) = tokio::join!(slow, quick);
        assert!(slow.is_ok() && quick.is_ok());
        assert_eq!(reads.stats(), (1, 1, 1));
        // Held longer than the acquire timeout (2 s): the waiting read
        // fails as a pool timeout does, which the store reports as 503.
        let held = reads.fetch_all(sql(&db, "SELECT pg_sleep(2.5)"));
        let waiting = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reads.fetch_all(sql(&db, "SELECT 1 AS one")).await
        };
        let (held, waiting) = tokio::join!(held, waiting);
        assert!(held.is_ok());
        let err = waiting.err().map(crate::StoreError::from);
        assert!(
            matches!(err, Some(crate::StoreError::Unavailable(_))),
            "{err:?}"
        );
        reads.close().await;
    }

    #[tokio::test]
    async fn split_reads_share_the_pools_connections_borrow_free_ones_and_wait_only_when_all_are_busy()
     {
        let Some(url) = postgres_url() else { return };
        let db = connect(&url, 3).await;
        // Three connections in two parts: two and one; parts named
        // around, and at most one part per connection.
        let reads = Reads::split_beside(&db, 2);
        assert_eq!((reads.parts(), reads.stats()), (2, (0, 0, 3)));
        assert_eq!(Reads::split_beside(&db, 9).parts(), 3);
        assert_eq!(Reads::split_beside(&db, 0).parts(), 1);
        let (first, second) = (reads.part(0), reads.part(3));
        let db = &db;
        // Three slow reads of the first part: the third takes the second
        // part's free connection rather than wait. A read of the second
        // part then finds every connection busy, and waits.
        let slow = |r: &Reads| {
            let r = r.clone();
            async move {
                let rows = r.fetch_all(sql(db, "SELECT pg_sleep(0.5)")).await;
                (rows.is_ok(), Instant::now())
            }
        };
        let later = |r: Reads| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let busy = r.stats();
            let rows = r.fetch_all(sql(db, "SELECT 1 AS one")).await;
            (rows.is_ok(), Instant::now(), busy)
        };
        let (a, b, c, waited) = tokio::join!(
            slow(&first),
            slow(&first),
            slow(&first),
            later(second.clone())
        );
        assert!(a.0 && b.0 && c.0 && waited.0);
        assert_eq!(waited.2, (3, 0, 3), "all three ran at once");
        assert!(
            waited.1 >= a.1.min(b.1).min(c.1),
            "the fourth read waited for a connection"
        );
        assert_eq!(first.stats(), (3, 3, 3));
        reads.close().await;
        assert_eq!(second.stats(), (0, 0, 3));
    }

    #[tokio::test]
    async fn sqlite_reads_share_one_connection_that_refuses_writes_like_the_pool_it_sits_beside() {
        let path = std::env::temp_dir().join(format!("keel-reads-{}.db", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let writer = connect(&url, 1).await;
        writer
            .execute_unprepared("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (7)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = crate::Store::connect(&url, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let db = store.conn();
        let reads = store.reads();
        for _ in 0..3 {
            let rows = reads
                .fetch_all(sql(db, "SELECT n FROM t"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let n: Option<i64> = rows.first().and_then(|r| r.try_get("", "n").ok());
            assert_eq!(n, Some(7));
        }
        assert_eq!(reads.stats(), (1, 1, 2));
        // The read pool's connections are `query_only`, and so are these.
        assert!(reads.fetch_all(sql(db, "DELETE FROM t")).await.is_err());
        assert_eq!(reads.stats(), (1, 1, 2));
        store.close().await;
        writer.close().await.ok();
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_one_row_read_answers_its_row_or_none_and_gives_its_connection_back_on_either_database()
     {
        for (db, pg_name) in crate::testdb::fresh_databases().await {
            let backend = db.get_database_backend();
            db.execute_unprepared("CREATE TABLE t (n BIGINT PRIMARY KEY, s TEXT NOT NULL)")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            db.execute_unprepared("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let reads = Reads::beside(&db);
            let by_n = |n: i64| {
                let text = if backend == DatabaseBackend::Postgres {
                    "SELECT s FROM t WHERE n = $1"
                } else {
                    "SELECT s FROM t WHERE n = ?"
                };
                Statement::from_sql_and_values(backend, text, [n.into()])
            };
            for (n, want) in [(2, Some("two")), (3, None), (1, Some("one"))] {
                let row = reads
                    .fetch_optional(by_n(n))
                    .await
                    .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
                let s: Option<String> = row.and_then(|r| r.try_get("", "s").ok());
                assert_eq!(s.as_deref(), want, "{backend:?}");
                // One connection, idle again after each read.
                assert_eq!(reads.stats().0, 1, "{backend:?}");
                assert_eq!(reads.stats().1, 1, "{backend:?}");
            }
            // A statement the database refuses is an error, and the
            // connection stays.
            let refused = reads
                .fetch_optional(sql(&db, "SELECT * FROM missing"))
                .await;
            assert!(refused.is_err(), "{backend:?}");
            assert_eq!(reads.stats().0, 1, "{backend:?}");
            // A statement of several rows answers its first.
            let first = reads
                .fetch_optional(sql(&db, "SELECT s FROM t ORDER BY n"))
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
            let s: Option<String> = first.and_then(|r| r.try_get("", "s").ok());
            assert_eq!(s.as_deref(), Some("one"), "{backend:?}");
            // And the connection reads on after it.
            let again = reads
                .fetch_all(sql(&db, "SELECT s FROM t ORDER BY n"))
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
            assert_eq!(again.len(), 2, "{backend:?}");
            reads.close().await;
            crate::testdb::drop_database(db, pg_name).await;
        }
    }
}
