//! Group commit for SQLite's single writer.
//!
//! A SQLite commit costs one `fsync` of the WAL, plus one write of every
//! page the transaction touched. Incident writes touch the same pages (the
//! newest leaf of each table and index, the search index, the number
//! sequence) again and again, so committing them one by one writes those
//! pages and syncs the file once per request. Here the writes of several
//! requests share one transaction: a dedicated task owns the writer,
//! opens a transaction, runs each queued job in a savepoint of its own,
//! and commits once when the queue is empty (or [`MAX_BATCH`] jobs ran).
//!
//! The guarantees stay those of one transaction per request:
//! - A job that fails is rolled back to its savepoint, alone; it answers at
//!   once and the rest of the batch goes on.
//! - No job answers success before the commit that made it durable, so a 2xx
//!   still survives a crash. If the commit itself fails, every job in the
//!   batch gets the error.
//! - Jobs run one after another, so a job sees the writes of the jobs before
//!   it (exactly as if they had committed first).
//! - The task is not the request's: a client that goes away cannot cancel a
//!   commit that other requests wait for.
//! - At most [`MAX_QUEUED`] writes wait; one more is refused at once as
//!   busy (503 `service.busy` with `Retry-After`), not queued without bound.
//!
//! On PostgreSQL, where writers run concurrently and the server groups
//! commits itself, [`crate::Store::write`] is a plain transaction.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::search::{self, SearchRow};

/// Most jobs committed together; more wait for the next batch.
pub(crate) const MAX_BATCH: usize = 64;

/// Most writes waiting for the writer; one more is refused as busy.
pub(crate) const MAX_QUEUED: usize = 4096;

/// A boxed future borrowing the transaction.
pub(crate) type TxFuture<'t, T> = Pin<Box<dyn Future<Output = T> + Send + 't>>;

/// What a job leaves for after the commit: its answer, to be sent with the
/// commit's outcome.
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One request's writes, run inside a savepoint of the batch (or told why
/// they cannot run).
type Job = Box<
    dyn for<'t> FnOnce(Result<&'t DatabaseTransaction, StoreError>) -> TxFuture<'t, Option<Deliver>>
        + Send,
>;

/// A job that keeps its writes atomic itself ([`Batcher::write_atomic`]):
/// it answers and says whether its writes are in the batch.
type AtomicJob = Box<
    dyn for<'t> FnOnce(
            Result<(&'t DatabaseTransaction, &'t Memo), StoreError>,
        ) -> TxFuture<'t, Atomic>
        + Send,
>;

/// What the jobs of one batch know for the jobs after them, so that these
/// need not ask the database: the next incident number, once a job of the
/// batch took one.
///
/// It lives as long as its batch's transaction. A batch that rolls back
/// forgets it together with its writes, and a job that undoes itself
/// leaves it as it was (it says what it took only after its writes
/// succeeded). It holds because nothing but an incident create changes the
/// incident sequence on this writer, and no other process can write
/// between the jobs of a batch: the batch holds SQLite's write lock.
///
/// It also holds the search rows of the batch's creates until the batch
/// writes them ([`Memo::write_search`]): after its last job, before the
/// commit, and before every guarded job (any write but a create, the only
/// atomic job; such a write may change a search row), so every job still
/// sees the rows of the jobs before it. An atomic job must therefore not
/// change a search row another job wrote.
///
/// FTS5 writes its pending rows to disk at every `SAVEPOINT` after them,
/// as a segment of their own, and each segment costs an incremental merge
/// of the index (1.2 M instructions, 45 % of a create committed alone):
/// written at once, a batch's rows make one segment instead of one per
/// create (bench/RESULTS.md, eleventh session).
#[derive(Debug, Default)]
pub(crate) struct Memo {
    /// The number the next create takes; 0 while no job has taken one
    /// (numbers start at 1).
    next_number: AtomicI64,
    /// Search rows of creates already in the batch, not yet written.
    search: std::sync::Mutex<Vec<SearchRow>>,
}

impl Memo {
    /// The number the next create takes, if a job of this batch took one.
    pub fn next_number(&self) -> Option<i64> {
        Some(self.next_number.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    /// Says that a job's writes, now in the batch, took `number`.
    pub fn took_number(&self, number: i64) {
        self.next_number.store(number + 1, Ordering::Relaxed);
    }

    /// Keeps the search row of a create whose writes are now in the batch,
    /// for [`Memo::write_search`].
    pub fn defer_search(&self, row: Option<SearchRow>) {
        if let Some(row) = row {
            self.rows().push(row);
        }
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Vec<SearchRow>> {
        // Nothing panics while holding it; a poisoned list is still whole.
        self.search.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the kept search rows in one statement, outside any job's
    /// savepoint. If it fails, the batch cannot commit without them: the
    /// caller rolls the whole batch back.
    pub async fn write_search(&self, txn: &DatabaseTransaction) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait;
        let rows = std::mem::take(&mut *self.rows());
        let Some(stmt) = search::insert_statement(txn.get_database_backend(), rows) else {
            return Ok(());
        };
        txn.execute_raw(stmt).await?;
        Ok(())
    }
}

/// What an atomic job left in the batch.
enum Atomic {
    /// Its writes; it answers after the commit.
    Done(Deliver),
    /// It failed, undid its writes and has answered.
    Undone,
    /// It failed and has answered, but its writes could not be undone: the
    /// whole batch must go.
    Stuck(StoreError),
}

/// A queued write.
enum Queued {
    /// Run in a savepoint the batch opens and closes.
    Guarded(Job),
    /// Run as it is; it opens and closes its own savepoint.
    Atomic(AtomicJob),
}

/// The savepoint of an atomic job. Its first call to the database opens it
/// (`SAVEPOINT keel_job; ...`) and its last one releases it (`...; RELEASE
/// keel_job`), so a job that is one call besides needs no round trips of
/// its own for them ([`crate::multi`]).
pub(crate) const JOB_SAVEPOINT: &str = "keel_job";

/// Why an atomic job failed, and whether its writes are undone.
pub(crate) struct JobError {
    error: StoreError,
    undone: bool,
}

impl JobError {
    /// A failure before the job sent anything: there is nothing to undo.
    pub fn untouched(error: StoreError) -> JobError {
        JobError {
            error,
            undone: true,
        }
    }

    /// Why the job failed.
    pub fn into_error(self) -> StoreError {
        self.error
    }
}

/// Undoes what an atomic job wrote since `SAVEPOINT keel_job` (see
/// [`JOB_SAVEPOINT`]) and says why it failed.
pub(crate) async fn undo(txn: &DatabaseTransaction, error: StoreError) -> JobError {
    use sea_orm::ConnectionTrait;
    let undone = txn
        .execute_unprepared(&format!(
            "ROLLBACK TO {JOB_SAVEPOINT}; RELEASE {JOB_SAVEPOINT}"
        ))
        .await;
    if let Err(e) = &undone {
        tracing::error!(error = %e, "could not roll an atomic write back to its savepoint");
    }
    JobError {
        error,
        undone: undone.is_ok(),
    }
}

/// The queue into the writer task.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queued::Guarded(_) => "Guarded",
            Queued::Atomic(_) => "Atomic",
        })
    }
}

impl Batcher {
    /// Starts the writer task on a thread of its own, so its turns between
    /// statements never wait behind request handling.
    pub fn start(writer: DatabaseConnection) -> Result<Batcher, StoreError> {
        let (tx, rx) = mpsc::channel::<Queued>(MAX_QUEUED);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Db(DbErr::Custom(format!("writer runtime: {e}"))))?;
        std::thread::Builder::new()
            .name("keel-writer".into())
            .spawn(move || runtime.block_on(run(writer, rx)))
            .map_err(|e| StoreError::Db(DbErr::Custom(format!("writer thread: {e}"))))?;
        Ok(Batcher { jobs: tx })
    }

    /// Runs `f` in the next batch and answers once that batch committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> TxFuture<'t, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |txn| {
            Box::pin(async move {
                let result = match txn {
                    Ok(txn) => f(txn).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(v) => {
                        let deliver: Deliver = Box::new(move |committed| {
                            let _ = tx.send(committed.map(|()| v));
                        });
                        Some(deliver)
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        None
                    }
                }
            })
        });
        self.enqueue(Queued::Guarded(job))?;
        rx.await.map_err(|_| gone())?
    }

    /// As [`Batcher::write`], for a job that keeps its writes atomic itself
    /// instead of in a savepoint the batch opens and releases around it (two
    /// round trips to SQLite's thread): its first statement is `SAVEPOINT
    /// keel_job` ([`JOB_SAVEPOINT`]), its last `RELEASE keel_job`, and on
    /// failure it calls [`undo`] and returns what that says. It is handed
    /// its batch's [`Memo`].
    pub async fn write_atomic<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction, &'t Memo) -> TxFuture<'t, Result<T, JobError>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: AtomicJob = Box::new(move |ran| {
            Box::pin(async move {
                let (txn, memo) = match ran {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return Atomic::Undone;
                    }
                };
                match f(txn, memo).await {
                    Ok(v) => Atomic::Done(Box::new(move |committed| {
                        let _ = tx.send(committed.map(|()| v));
                    })),
                    Err(JobError { error, undone }) => {
                        let stuck = (!undone).then(|| shared(&error));
                        let _ = tx.send(Err(error));
                        match stuck {
                            None => Atomic::Undone,
                            Some(e) => Atomic::Stuck(e),
                        }
                    }
                }
            })
        });
        self.enqueue(Queued::Atomic(job))?;
        rx.await.map_err(|_| gone())?
    }

    fn enqueue(&self, job: Queued) -> Result<(), StoreError> {
        self.jobs.try_send(job).map_err(|e| match e {
            // Overloaded: say so at once (503, with Retry-After) instead of
            // queueing without bound.
            mpsc::error::TrySendError::Full(_) => StoreError::Busy(DbErr::Custom(format!(
                "{MAX_QUEUED} writes are already waiting for the writer"
            ))),
            mpsc::error::TrySendError::Closed(_) => gone(),
        })
    }
}

fn gone() -> StoreError {
    StoreError::Db(DbErr::Custom("the writer task has stopped".into()))
}

/// The same failure for every job of a batch whose commit failed.
fn shared(e: &StoreError) -> StoreError {
    match e {
        StoreError::Busy(d) => StoreError::Busy(DbErr::Custom(d.to_string())),
        other => StoreError::Db(DbErr::Custom(format!("commit failed: {other}"))),
    }
}

async fn run(writer: DatabaseConnection, mut rx: mpsc::Receiver<Queued>) {
    while let Some(first) = rx.recv().await {
        let mut queued = Some(first);
        let outer = match writer.begin().await {
            Ok(t) => t,
            Err(e) => {
                // Nothing can run: this job and those queued behind it hear why.
                let e = StoreError::from(e);
                tracing::error!(error = %e, "could not begin a write transaction");
                while let Some(job) = queued.take().or_else(|| rx.try_recv().ok()) {
                    refuse(job, shared(&e)).await;
                }
                continue;
            }
        };
        let memo = Memo::default();
        let mut pending: Vec<Deliver> = Vec::new();
        let mut broken = None;
        let mut ran = 0;
        while let Some(job) = queued.take() {
            ran += 1;
            if matches!(job, Queued::Guarded(_))
                && let Err(e) = memo.write_search(&outer).await
            {
                refuse(job, shared(&e)).await;
                broken = Some(e);
                break;
            }
            match run_one(&outer, &memo, job).await {
                Ran::Pending(deliver) => pending.push(deliver),
                Ran::Answered => {}
                Ran::Broken(e, deliver) => {
                    pending.extend(deliver);
                    broken = Some(e);
                    break;
                }
            }
            if ran < MAX_BATCH {
                queued = rx.try_recv().ok();
            }
        }
        if broken.is_none()
            && let Err(e) = memo.write_search(&outer).await
        {
            broken = Some(e);
        }
        let committed = match broken {
            Some(e) => {
                tracing::error!(error = %e, "a write could not be undone alone, or the batch's search rows could not be written; rolling back its batch");
                if let Err(r) = outer.rollback().await {
                    tracing::error!(error = %r, "rolling back the batch failed");
                }
                Err(e)
            }
            None => outer.commit().await.map_err(StoreError::from),
        };
        for deliver in pending {
            deliver(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(shared(e)),
            });
        }
    }
}

/// What became of one job.
enum Ran {
    /// Its writes are in the batch; it answers after the commit.
    Pending(Deliver),
    /// It failed, was rolled back alone and has answered.
    Answered,
    /// Its writes could not be separated from the batch (a savepoint could
    /// not be released or rolled back): the whole batch must go.
    Broken(StoreError, Option<Deliver>),
}

/// Answers a job that cannot run with `e`.
async fn refuse(job: Queued, e: StoreError) {
    match job {
        Queued::Guarded(job) => {
            job(Err(e)).await;
        }
        Queued::Atomic(job) => {
            job(Err(e)).await;
        }
    }
}

/// Runs one job: a guarded one in a savepoint, an atomic one as it is.
async fn run_one(outer: &DatabaseTransaction, memo: &Memo, job: Queued) -> Ran {
    let job = match job {
        Queued::Guarded(job) => job,
        Queued::Atomic(job) => {
            return match job(Ok((outer, memo))).await {
                Atomic::Done(deliver) => Ran::Pending(deliver),
                Atomic::Undone => Ran::Answered,
                Atomic::Stuck(e) => Ran::Broken(e, None),
            };
        }
    };
    let savepoint = match outer.begin().await {
        Ok(s) => s,
        Err(e) => {
            // Nothing of it ran.
            job(Err(StoreError::from(e))).await;
            return Ran::Answered;
        }
    };
    match job(Ok(&savepoint)).await {
        Some(deliver) => match savepoint.commit().await {
            Ok(()) => Ran::Pending(deliver),
            Err(e) => Ran::Broken(StoreError::from(e), Some(deliver)),
        },
        None => match savepoint.rollback().await {
            Ok(()) => Ran::Answered,
            Err(e) => Ran::Broken(StoreError::from(e), None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

    async fn open() -> (DatabaseConnection, Batcher, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("keel-batch-{}.db", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = Database::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.execute_unprepared("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let batcher = Batcher::start(db.clone()).unwrap_or_else(|e| panic!("{e}"));
        (db, batcher, path)
    }

    fn insert(n: i64) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (n) VALUES (?)",
            [n.into()],
        )
    }

    async fn rows(path: &std::path::Path) -> Vec<i64> {
        // A connection of its own sees only what was committed.
        let url = format!("sqlite://{}?mode=ro", path.display());
        let db = Database::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT n FROM t ORDER BY n",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .filter_map(|r| r.try_get::<i64>("", "n").ok())
            .collect();
        let _ = db.close().await;
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_undone_alone_and_the_rest_of_its_batch_commits() {
        let (_db, batcher, path) = open().await;
        let mut tasks = Vec::new();
        for n in 0..40_i64 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move {
                b.write(move |txn| {
                    Box::pin(async move {
                        txn.execute_raw(insert(n)).await?;
                        if n % 10 == 7 {
                            // Fails after writing: its row must not stay.
                            return Err(StoreError::NotFound("seven"));
                        }
                        if n % 10 == 3 {
                            // Fails in SQL: a duplicate key.
                            txn.execute_raw(insert(n)).await?;
                        }
                        Ok(n)
                    })
                })
                .await
            }));
        }
        let ok = successes(tasks, |e| {
            matches!(e, StoreError::NotFound("seven") | StoreError::Db(_))
        })
        .await;
        let want: Vec<i64> = (0..40).filter(|n| n % 10 != 7 && n % 10 != 3).collect();
        assert_eq!(ok, want, "every other write answered success");
        assert_eq!(rows(&path).await, want, "and exactly those rows are stored");
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_answers_only_once_it_is_committed_and_later_writes_see_it() {
        let (_db, batcher, path) = open().await;
        batcher
            .write(|txn| {
                Box::pin(async move {
                    txn.execute_raw(insert(1))
                        .await
                        .map(|_| ())
                        .map_err(StoreError::from)
                })
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rows(&path).await,
            vec![1],
            "visible to another connection at once"
        );
        let seen = batcher
            .write(|txn| {
                Box::pin(async move {
                    txn.execute_raw(insert(2)).await?;
                    let r = txn
                        .query_one_raw(Statement::from_string(
                            DbBackend::Sqlite,
                            "SELECT count(*) AS c FROM t",
                        ))
                        .await?;
                    Ok(r.and_then(|r| r.try_get::<i64>("", "c").ok()))
                })
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seen, Some(2));
        let _ = std::fs::remove_file(&path);
    }

    /// The numbers the writes in `tasks` answered, sorted; panics on an
    /// error that `expected` does not allow.
    async fn successes(
        tasks: Vec<tokio::task::JoinHandle<Result<i64, StoreError>>>,
        expected: impl Fn(&StoreError) -> bool,
    ) -> Vec<i64> {
        let mut ok = Vec::new();
        for t in tasks {
            match t.await.unwrap_or_else(|e| panic!("{e}")) {
                Ok(n) => ok.push(n),
                Err(e) if expected(&e) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        ok.sort_unstable();
        ok
    }

    /// An atomic job as the create makes one: the savepoint opens with its
    /// first call and is released by its last; `fail` makes the last call
    /// fail after its first statement wrote.
    async fn atomic(b: Batcher, n: i64, fail: bool) -> Result<i64, StoreError> {
        b.write_atomic(move |txn, _| {
            Box::pin(async move {
                let open = Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("SAVEPOINT {JOB_SAVEPOINT}; INSERT INTO t (n) VALUES (?)"),
                    [n.into()],
                );
                if let Err(e) = txn.execute_raw(open).await {
                    return Err(undo(txn, e.into()).await);
                }
                // A second row, then (when failing) a duplicate of the first.
                let last = if fail { n } else { n + 1000 };
                let close = Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!(
                        "INSERT INTO t (n) VALUES (?); INSERT INTO t (n) VALUES (?); RELEASE {JOB_SAVEPOINT}"
                    ),
                    [(n + 2000).into(), last.into()],
                );
                match txn.execute_raw(close).await {
                    Ok(_) => Ok(n),
                    Err(e) => Err(undo(txn, e.into()).await),
                }
            })
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_atomic_write_that_fails_undoes_itself_alone_among_guarded_writes() {
        let (_db, batcher, path) = open().await;
        let mut tasks = Vec::new();
        for n in 0..40_i64 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move {
                if n % 2 == 0 {
                    atomic(b, n, n % 10 == 4).await
                } else {
                    b.write(move |txn| {
                        Box::pin(async move {
                            txn.execute_raw(insert(n)).await?;
                            Ok(n)
                        })
                    })
                    .await
                }
            }));
        }
        let ok = successes(tasks, |e| matches!(e, StoreError::Db(_))).await;
        let want: Vec<i64> = (0..40).filter(|n| n % 10 != 4).collect();
        assert_eq!(ok, want, "every other write answered success");
        let mut stored: Vec<i64> = want.clone();
        for n in want.iter().filter(|n| *n % 2 == 0) {
            stored.extend([n + 1000, n + 2000]);
        }
        stored.sort_unstable();
        assert_eq!(
            rows(&path).await,
            stored,
            "all rows of the atomic writes that succeeded, none of those that failed"
        );
        let _ = std::fs::remove_file(&path);
    }

    /// A write (of row 1) that keeps the writer until the sender is used,
    /// so that the writes queued meanwhile share its batch.
    async fn hold_writer(
        batcher: &Batcher,
    ) -> (
        oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), StoreError>>,
    ) {
        let (hold, release) = oneshot::channel::<()>();
        let b = batcher.clone();
        let first = tokio::spawn(async move {
            b.write(move |txn| {
                Box::pin(async move {
                    txn.execute_raw(insert(1)).await?;
                    let _ = release.await;
                    Ok(())
                })
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        (hold, first)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_atomic_write_that_cannot_undo_itself_takes_its_batch_down() {
        let (_db, batcher, path) = open().await;
        let (hold, first) = hold_writer(&batcher).await;
        let before = {
            let b = batcher.clone();
            tokio::spawn(async move {
                b.write(|txn| {
                    Box::pin(async move {
                        txn.execute_raw(insert(2)).await?;
                        Ok(())
                    })
                })
                .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let stuck = {
            let b = batcher.clone();
            tokio::spawn(async move {
                b.write_atomic(|txn, _| {
                    Box::pin(async move {
                        let _ = txn.execute_raw(insert(3)).await;
                        // Wrote, and says it could not undo that.
                        Err::<(), _>(JobError {
                            error: StoreError::NotFound("stuck"),
                            undone: false,
                        })
                    })
                })
                .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = hold.send(());
        let results = [first, before, stuck];
        let mut outcomes = Vec::new();
        for t in results {
            outcomes.push(t.await.unwrap_or_else(|e| panic!("{e}")).is_ok());
        }
        // The two writes queued while the first ran joined its batch.
        assert_eq!(
            outcomes,
            [false, false, false],
            "every write of the batch failed"
        );
        assert_eq!(
            rows(&path).await,
            Vec::<i64>::new(),
            "and nothing of it stayed"
        );
        // The writer goes on with the next batch.
        let after = atomic(batcher.clone(), 7, false).await;
        assert_eq!(after.ok(), Some(7));
        assert_eq!(rows(&path).await, vec![7, 1007, 2007]);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_writes_its_creates_search_rows_before_a_later_write_and_commits_them() {
        let (db, batcher, path) = open().await;
        db.execute_unprepared(
            "CREATE VIRTUAL TABLE incident_search USING fts5(title, description, public_comments, internal_comments)",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let (hold, first) = hold_writer(&batcher).await;
        let mut creates = Vec::new();
        for number in [7_i64, 8] {
            let b = batcher.clone();
            creates.push(tokio::spawn(async move {
                b.write_atomic(move |_, memo| {
                    Box::pin(async move {
                        memo.defer_search(Some(SearchRow::new(
                            number,
                            "Printer jams",
                            "on the 3rd floor",
                            [],
                        )));
                        Ok(number)
                    })
                })
                .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // A later write of the same batch finds the rows the creates left.
        let comment = {
            let b = batcher.clone();
            tokio::spawn(async move {
                b.write(|txn| {
                    Box::pin(async move {
                        let r = txn
                            .execute_raw(Statement::from_string(
                                DbBackend::Sqlite,
                                "UPDATE incident_search SET public_comments = 'toner replaced' WHERE rowid = 7",
                            ))
                            .await?;
                        Ok(r.rows_affected())
                    })
                })
                .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = hold.send(());
        first
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        for c in creates {
            c.await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let updated = comment
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(updated, 1, "the create's row was written before the update");
        let url = format!("sqlite://{}?mode=ro", path.display());
        let other = Database::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let found: Vec<i64> = other
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT rowid AS n FROM incident_search WHERE incident_search MATCH 'printer' ORDER BY rowid",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .filter_map(|r| r.try_get::<i64>("", "n").ok())
            .collect();
        assert_eq!(found, vec![7, 8], "both rows committed with their batch");
        let toner = other
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT rowid AS n FROM incident_search WHERE incident_search MATCH 'toner'",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .len();
        assert_eq!(toner, 1, "and the later write's change to one of them");
        let _ = other.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
