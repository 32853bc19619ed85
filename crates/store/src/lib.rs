//! Persistence for Keel: sea-orm entities, queries and transactions, one
//! module per practice. Use cases that change a record run in one transaction
//! with their audit entries, so a crash never leaves a change without its
//! history. Nothing outside this crate (and `migrations`) knows SQL.

mod audiences;
mod audit;
mod batch;
mod cache;
mod combine;
pub mod directory;
pub mod entities;
mod error;
pub mod idempotency;
pub mod incidents;
mod inline;
mod multi;
pub mod notify;
pub mod reads;
mod rows;
mod search;
pub mod seed;
pub mod sessions;
pub mod settings;
pub mod sla;
#[cfg(test)]
mod testdb;
pub mod webhooks;

pub use error::StoreError;

use std::sync::Arc;
use std::time::Duration;

use keel_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseBackend, DatabaseConnection};

/// A handle to Keel's database; cheap to clone (pools inside).
///
/// Reads and writes use separate pools. On PostgreSQL they are the same
/// pool. On SQLite, which allows one writer at a time, every write goes
/// through a pool of exactly one connection, so writers queue in Rust (a
/// fair, instant hand-over) instead of in SQLite's busy handler, which
/// sleeps and retries; the read pool's connections are `query_only`, so a
/// write sent to them by mistake fails at once instead of waiting for the
/// lock.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    writer: DatabaseConnection,
    cache: Arc<cache::ConfigCache>,
    /// Whether recent searches were dense (a plan hint, SQLite).
    density: Arc<search::Density>,
    /// Group commit for SQLite's writer; `None` on PostgreSQL.
    batcher: Option<batch::Batcher>,
    /// Incident creates waiting to be written together (PostgreSQL).
    creates: Arc<combine::Combiner<incidents::Created>>,
    /// The connections of gets and list pages ([`reads`]).
    reads: reads::Reads,
}

/// How long a PostgreSQL connection may sit idle in the pool before it is
/// pinged at checkout (see [`Store::connect`]).
pub(crate) const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A delivery failure as kept in a `last_error` column: its first 500
/// characters (outbox notices and webhook deliveries).
pub(crate) fn clipped_error(error: &str) -> String {
    error.chars().take(500).collect()
}

/// How long a node keeps SLA and webhook configuration unless told otherwise.
pub const DEFAULT_CONFIG_CACHE: Duration = Duration::from_secs(2);

/// SQLite's gets and list pages on the HTTP worker's thread ([`inline`]):
/// how many ran there, and how many were tried there and handed over to a
/// connection's worker (over their budget, SQLite busy, or a value read or
/// bound otherwise than sqlx would), since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineReads {
    pub here: u64,
    pub handed_over: u64,
}

/// How many connections the pool holds and how many are idle.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`)
    /// with up to `max_connections` connections for reads (and, on
    /// PostgreSQL, writes). SQLite connections are configured one by one:
    /// WAL, full sync (a committed write survives a crash), a busy timeout
    /// (for other processes on the same file) and foreign keys.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let sqlite = url.starts_with("sqlite:");
        let options = |max: u32, query_only: bool| {
            let mut opts = ConnectOptions::new(url.to_owned());
            opts.max_connections(max)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(5))
                .acquire_timeout(Duration::from_secs(5))
                .sqlx_logging(false)
                // Keel's queries are short and page-bounded; a parallel
                // plan's workers take milliseconds to start and, with many
                // requests at once, only compete for the same cores.
                .map_sqlx_postgres_opts(|o| o.options([("max_parallel_workers_per_gather", "0")]))
                .map_sqlx_sqlite_opts(move |o| {
                    let o = o
                        .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                        .busy_timeout(Duration::from_secs(10))
                        .foreign_keys(true)
                        // Savepoints (one per write in a group commit) keep
                        // their undo pages in a temporary file; in memory.
                        .pragma("temp_store", "MEMORY");
                    if query_only {
                        o.pragma("query_only", "ON")
                    } else {
                        o
                    }
                });
            // sqlx pings a pooled connection before every checkout unless
            // told otherwise: one more round trip per statement (to the
            // connection's worker thread on SQLite, to the server on
            // PostgreSQL). A SQLite connection is a file handle in this
            // process and cannot be dropped by anyone else. A PostgreSQL
            // one can (a restart, a proxy, a firewall), so it is still
            // pinged once it has been idle for a second: under load a
            // connection is reused within milliseconds and goes unpinged,
            // and after an outage the stale ones are found before use.
            // sqlx also pings every connection when it is released, which
            // catches those a failed statement left broken.
            if sqlite {
                opts.test_before_acquire(false);
            } else {
                opts.test_before_acquire_if_idle_for(PING_AFTER_IDLE);
            }
            opts
        };
        if sqlite {
            // The writer first: it creates the file and switches it to WAL.
            let writer = Database::connect(options(1, false))
                .await
                .map_err(StoreError::from)?;
            let db = Database::connect(options(max_connections, true))
                .await
                .map_err(StoreError::from)?;
            Ok(Store {
                reads: reads::Reads::beside(&db),
                db,
                batcher: Some(batch::Batcher::start(writer.clone())?),
                writer,
                cache: Arc::new(cache::ConfigCache::new(DEFAULT_CONFIG_CACHE)),
                density: Arc::default(),
                creates: Arc::new(combine::Combiner::new(incidents::reserve)),
            })
        } else {
            let db = Database::connect(options(max_connections, false))
                .await
                .map_err(StoreError::from)?;
            Ok(Store {
                writer: db.clone(),
                reads: reads::Reads::beside(&db),
                db,
                cache: Arc::new(cache::ConfigCache::new(DEFAULT_CONFIG_CACHE)),
                density: Arc::default(),
                batcher: None,
                creates: Arc::new(combine::Combiner::new(incidents::reserve)),
            })
        }
    }

    /// Runs `f` in a write transaction and commits it: on SQLite as part of
    /// the next group commit ([`batch`]), on PostgreSQL on its own. The
    /// answer comes after the commit.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(
                &'t sea_orm::DatabaseTransaction,
            ) -> batch::TxFuture<'t, Result<T, StoreError>>
            + Send
            + 'static,
    {
        use sea_orm::TransactionTrait;
        match &self.batcher {
            Some(b) => b.write(f).await,
            None => {
                let txn = self.writer.begin().await?;
                let v = f(&txn).await?;
                txn.commit().await?;
                Ok(v)
            }
        }
    }

    /// [`Store::write`] for writes that keep themselves atomic with their
    /// own savepoint ([`batch::Batcher::write_atomic`]); SQLite only.
    pub(crate) async fn write_atomic<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(
                &'t sea_orm::DatabaseTransaction,
                &'t batch::Memo,
            ) -> batch::TxFuture<'t, Result<T, batch::JobError>>
            + Send
            + 'static,
    {
        use sea_orm::TransactionTrait;
        match &self.batcher {
            Some(b) => b.write_atomic(f).await,
            None => {
                let txn = self.writer.begin().await?;
                let memo = batch::Memo::default();
                match f(&txn, &memo).await {
                    Ok(v) => {
                        memo.write_search(&txn).await?;
                        txn.commit().await?;
                        Ok(v)
                    }
                    Err(e) => Err(e.into_error()),
                }
            }
        }
    }

    /// Keeps SLA policies, calendars and webhook subscriptions for `ttl`
    /// (zero: read them on every write). Changes made through this store
    /// apply at once; other nodes' changes within `ttl`.
    #[must_use]
    pub fn with_config_cache(mut self, ttl: Duration) -> Store {
        self.cache = Arc::new(cache::ConfigCache::new(ttl));
        self
    }

    /// Lets a SQLite get or list page run on the thread that asks for it
    /// for up to `budget` before it is handed to a connection's worker
    /// ([`inline`]); zero always hands it over. [`inline::BUDGET`] unless
    /// told otherwise. No effect on PostgreSQL.
    #[must_use]
    pub fn with_inline_reads(self, budget: Duration) -> Store {
        self.reads.set_inline_budget(budget);
        self
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.writer, None)
            .await
            .map_err(StoreError::from)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// This store with its hot reads' connections ([`reads`]) in `n`
    /// parts, one for each of `n` HTTP workers, which then read through
    /// [`Store::for_worker`]. For a store that has not read yet: the
    /// connections the hot reads had are closed.
    pub fn with_read_parts(mut self, n: usize) -> Store {
        let budget = self.reads.inline_budget();
        self.reads = reads::Reads::split_beside(&self.db, n);
        if let Some(budget) = budget {
            self.reads.set_inline_budget(budget);
        }
        self
    }

    /// This store, reading through the hot reads' part `i`
    /// ([`Store::with_read_parts`]); everything else is shared.
    pub fn for_worker(&self, i: usize) -> Store {
        Store {
            reads: self.reads.part(i),
            ..self.clone()
        }
    }

    /// [`InlineReads`] so far; `None` where there are none (PostgreSQL, an
    /// in-memory SQLite database).
    pub fn inline_reads(&self) -> Option<InlineReads> {
        self.reads
            .inline_counts()
            .map(|(here, handed_over)| InlineReads { here, handed_over })
    }

    /// The connections open, idle and allowed: the pool's and the hot
    /// reads' ([`reads`]) together.
    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle, max) = self.reads.stats();
        let pool = self.db_pool_stats();
        PoolStats {
            size: pool.size.saturating_add(size),
            idle: pool.idle.saturating_add(idle),
            max: pool.max.saturating_add(max),
        }
    }

    fn db_pool_stats(&self) -> PoolStats {
        match self.backend() {
            DatabaseBackend::Postgres => {
                let p = self.db.get_postgres_connection_pool();
                PoolStats {
                    size: p.size(),
                    idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                    max: p.options().get_max_connections(),
                }
            }
            _ => {
                let p = self.db.get_sqlite_connection_pool();
                PoolStats {
                    size: p.size(),
                    idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                    max: p.options().get_max_connections(),
                }
            }
        }
    }

    /// Closes the pools (used by tests before dropping a database).
    pub async fn close(self) {
        self.reads.close().await;
        let _ = self.writer.close().await;
        let _ = self.db.close().await;
    }

    /// The read pool. On SQLite its connections refuse writes.
    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The connections of the hot reads: gets, list pages, their timers.
    pub(crate) fn reads(&self) -> &reads::Reads {
        &self.reads
    }

    /// The connection every write and transaction goes through.
    pub(crate) fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }
}
