//! PostgreSQL creates written together: one statement takes the numbers
//! of every create waiting at the same time, one more writes all of their
//! rows.
//!
//! A create's rows (the incident, its audit entries, search row, SLA
//! timers and outbox rows) are one statement already ([`crate::multi`]),
//! but under load PostgreSQL spends more on each statement than on its
//! rows: parse and bind, executor start-up, the commit and its WAL flush,
//! and a round trip. Here the creates that arrive while earlier ones are
//! being written queue up, and the next writer takes all of them at once:
//! it moves the `sequences` row on by as many numbers as it has creates
//! (which also keeps that row's lock to one short statement per batch),
//! builds each create's rows with its number, and writes them all.
//!
//! The write is the same text however many creates it carries: each
//! table's rows go as one array per column, inserted with `unnest`:
//!
//! ```sql
//! WITH w0 AS (INSERT INTO "incidents" ("id", ...) SELECT * FROM unnest($1::uuid[], ...))
//! INSERT INTO "outbox" (...) SELECT * FROM unnest(...)
//! ```
//!
//! so it is prepared once per connection and planned once. It is atomic
//! and commits on its own: a create is answered only after it committed.
//! If it fails, nothing of it was written, and each create of the batch is
//! written again on its own, so one bad row fails only its own request. A
//! create whose writes are not all rows of that kind (a webhook delivery
//! is an `INSERT ... SELECT`) is written on its own, with its number from
//! the batch. Numbers stay unique across nodes (each batch reserves its
//! block with one atomic update of the shared row); a create that fails
//! after its number was taken leaves a gap, as a PostgreSQL sequence would.
//!
//! At most [`WRITERS`] batches are written at once, on tasks of their
//! own: a request that is dropped (its client went away) cannot cancel a
//! statement that carries other requests' rows.
//!
//! Under load a batch also reserves numbers ahead for the batches after
//! it ([`Block`]), so that most batches are one statement, not two. A
//! create alone (no other create waiting) reserves only its own number, so
//! a desk that is not busy never holds numbers; a node that stops while it
//! holds some leaves them unused, a gap of at most [`MAX_AHEAD`], as a
//! cached PostgreSQL sequence does. A reservation that keeps numbers for
//! later waits for its WAL flush (one every several batches), so a
//! crash cannot give numbers this node holds to anyone again. With several nodes, each hands out its
//! own block, so numbers stay unique but follow creation order only per
//! node while they are busy.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgPool};
use sea_orm::{DatabaseConnection, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use uuid::Uuid;

use crate::StoreError;
use crate::multi::{Insert, Writes};

/// Batches written at once. Two keep both of PostgreSQL's cores busy on a
/// small machine while the next batch gathers; more would only make the
/// batches smaller.
const WRITERS: usize = 2;

/// At most this many creates go in one batch.
const MAX_BATCH: usize = 64;

/// Most numbers a batch reserves ahead for the batches after it.
const MAX_AHEAD: usize = 64;

/// Numbers reserved ahead per create of a batch that reserves: a batch of
/// `k` creates (`k` > 1, so others are waiting) reserves `k` and
/// `AHEAD_PER_CREATE * k` more, at most [`MAX_AHEAD`].
const AHEAD_PER_CREATE: usize = 16;

/// A create's writes, given its number, and what the create answers with.
pub(crate) type Build<T> = Box<dyn FnOnce(i64) -> Result<(Writes, T), StoreError> + Send>;

/// Reserves `k` numbers, of which some are kept for later batches if the
/// flag says so (the reservation must then be durable before any of them
/// is used: [`crate::incidents::reserve`]); answers the first.
pub(crate) type Reserve =
    for<'a> fn(
        &'a DatabaseConnection,
        i64,
        bool,
    ) -> Pin<Box<dyn Future<Output = Result<i64, StoreError>> + Send + 'a>>;

/// The creates waiting to be written.
pub(crate) struct Combiner<T> {
    queue: Mutex<VecDeque<Job<T>>>,
    writers: Arc<Semaphore>,
    reserve: Reserve,
    /// Numbers reserved and not handed out yet. Held while a batch
    /// reserves, so that two writers short of numbers reserve one after
    /// the other and the second finds the first's numbers ahead.
    block: tokio::sync::Mutex<Block>,
}

/// The incident numbers a node reserved and has not handed out yet:
/// `next..end`, handed out lowest first.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Block {
    next: i64,
    end: i64,
}

impl Block {
    fn left(&self) -> usize {
        usize::try_from(self.end - self.next).unwrap_or(0)
    }

    /// How many numbers a batch of `k` must reserve: none if the block has
    /// them, else what is missing and, when others wait (`k` > 1), more
    /// for the batches after it.
    fn reservation(&self, k: usize) -> usize {
        let missing = k.saturating_sub(self.left());
        if missing == 0 {
            0
        } else if k > 1 {
            missing + (AHEAD_PER_CREATE * k).min(MAX_AHEAD)
        } else {
            missing
        }
    }

    /// Whether reserving `count` for a batch of `k` keeps some of them for
    /// later batches (so the reservation must be durable at once).
    fn keeps(&self, k: usize, count: usize) -> bool {
        count > k.saturating_sub(self.left())
    }

    /// Hands out `k` numbers: first what is left, then from `fresh`, the
    /// `count` numbers from `first` just reserved, whose rest is kept.
    fn take(&mut self, k: usize, fresh: Option<(i64, usize)>) -> Vec<i64> {
        let mut out: Vec<i64> = (self.next..self.end).take(k).collect();
        self.next += i64::try_from(out.len()).unwrap_or(0);
        if let Some((first, count)) = fresh {
            let end = first + i64::try_from(count).unwrap_or(0);
            let used = k - out.len();
            out.extend((first..end).take(used));
            *self = Block {
                next: (first + i64::try_from(used).unwrap_or(0)).min(end),
                end,
            };
        }
        out
    }
}

impl<T> std::fmt::Debug for Combiner<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner")
            .field("waiting", &self.queue.lock().map_or(0, |q| q.len()))
            .finish_non_exhaustive()
    }
}

struct Job<T> {
    build: Build<T>,
    done: oneshot::Sender<Result<T, StoreError>>,
}

/// A job whose writes are built and waiting for the statement.
struct Built<T> {
    rows: Vec<Insert>,
    answer: T,
    done: oneshot::Sender<Result<T, StoreError>>,
}

/// Whether rows of this value can go in an array column here.
pub(crate) fn supported(v: &Value) -> bool {
    Array::empty_like(v).is_some()
}

impl<T: Send + 'static> Combiner<T> {
    pub(crate) fn new(reserve: Reserve) -> Self {
        Combiner {
            queue: Mutex::new(VecDeque::new()),
            writers: Arc::new(Semaphore::new(WRITERS)),
            reserve,
            block: tokio::sync::Mutex::new(Block::default()),
        }
    }

    /// Writes what `build` makes of the next number, together with the
    /// creates waiting at the same time; answers once it committed.
    pub(crate) async fn create(
        self: &Arc<Self>,
        db: &DatabaseConnection,
        build: Build<T>,
    ) -> Result<T, StoreError> {
        let (done, answer) = oneshot::channel();
        self.lock().push_back(Job { build, done });
        if let Ok(permit) = self.writers.clone().try_acquire_owned() {
            tokio::spawn(drain(self.clone(), db.clone(), permit));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Db(sea_orm::DbErr::Custom(
                "the create was dropped before it was written".into(),
            )))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job<T>>> {
        // A panic while holding the lock leaves the queue as it was.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `k` numbers for a batch: from the block while it has them, else
    /// reserved (with more ahead when others wait). On an error the block
    /// is as it was.
    async fn numbers(&self, db: &DatabaseConnection, k: usize) -> Result<Vec<i64>, StoreError> {
        let mut block = self.block.lock().await;
        let count = block.reservation(k);
        let fresh = if count == 0 {
            None
        } else {
            let n = i64::try_from(count).map_err(|_| StoreError::NotFound("sequence"))?;
            let kept = block.keeps(k, count);
            Some(((self.reserve)(db, n, kept).await?, count))
        };
        Ok(block.take(k, fresh))
    }

    fn take(&self) -> Vec<Job<T>> {
        let mut q = self.lock();
        let n = q.len().min(MAX_BATCH);
        q.drain(..n).collect()
    }
}

/// Writes batches until the queue is empty. The permit is given back
/// before the last look at the queue, so a create queued meanwhile either
/// finds the permit free or is seen here.
async fn drain<T: Send + 'static>(
    c: Arc<Combiner<T>>,
    db: DatabaseConnection,
    permit: OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    loop {
        let batch = c.take();
        if batch.is_empty() {
            drop(permit.take());
            if c.lock().is_empty() {
                return;
            }
            match c.writers.clone().try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => return,
            }
            continue;
        }
        write_batch(&c, &db, batch).await;
    }
}

async fn write_batch<T: Send + 'static>(
    c: &Combiner<T>,
    db: &DatabaseConnection,
    batch: Vec<Job<T>>,
) {
    let numbers = match c.numbers(db, batch.len()).await {
        Ok(n) => n,
        Err(_) => {
            // Each create on its own, so each gets its own error.
            for job in batch {
                let r = match c.numbers(db, 1).await.map(|n| n.first().copied()) {
                    Ok(Some(n)) => alone(db, job.build, n).await,
                    Ok(None) => Err(StoreError::NotFound("sequence")),
                    Err(e) => Err(e),
                };
                let _ = job.done.send(r);
            }
            return;
        }
    };
    let mut built = Vec::with_capacity(batch.len());
    for (n, job) in numbers.into_iter().zip(batch) {
        match (job.build)(n) {
            Ok((writes, answer)) => match writes.into_rows(supported) {
                Ok(rows) => built.push(Built {
                    rows,
                    answer,
                    done: job.done,
                }),
                Err(writes) => {
                    let r = writes.run(db).await.map(|()| answer);
                    let _ = job.done.send(r);
                }
            },
            Err(e) => {
                let _ = job.done.send(Err(e));
            }
        }
    }
    let pool = db.get_postgres_connection_pool();
    let all: Vec<&Insert> = built.iter().flat_map(|b| b.rows.iter()).collect();
    match run(pool, &all).await {
        Ok(()) => {
            for b in built {
                // The request may have gone; its rows are written all the same.
                let _ = b.done.send(Ok(b.answer));
            }
        }
        Err(e) if built.len() == 1 => {
            if let Some(b) = built.into_iter().next() {
                let _ = b.done.send(Err(e));
            }
        }
        Err(_) => {
            // Nothing of the batch was written: each create again, on its own.
            for b in built {
                let r = run(pool, &b.rows.iter().collect::<Vec<_>>())
                    .await
                    .map(|()| b.answer);
                let _ = b.done.send(r);
            }
        }
    }
}

/// One create on its own: its writes with number `n`.
async fn alone<T>(db: &DatabaseConnection, build: Build<T>, n: i64) -> Result<T, StoreError> {
    let (writes, answer) = build(n)?;
    match writes.into_rows(supported) {
        Ok(rows) => {
            run(
                db.get_postgres_connection_pool(),
                &rows.iter().collect::<Vec<_>>(),
            )
            .await?
        }
        Err(writes) => writes.run(db).await?,
    }
    Ok(answer)
}

async fn run(pool: &PgPool, rows: &[&Insert]) -> Result<(), StoreError> {
    let Some((sql, arrays)) = statement(rows)? else {
        return Ok(());
    };
    // The text holds only the static names of tables and columns of
    // `Insert`s built in this crate, and placeholders; every value is bound.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in arrays {
        q = match a {
            Array::Bool(v) => q.bind(v),
            Array::Int(v) => q.bind(v),
            Array::BigInt(v) => q.bind(v),
            Array::Text(v) => q.bind(v),
            Array::Uuid(v) => q.bind(v),
            Array::Time(v) => q.bind(v),
        };
    }
    q.execute(pool).await.map_err(|e| {
        StoreError::from(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(
            Arc::new(e),
        )))
    })?;
    Ok(())
}

/// One column's values.
#[derive(Debug, PartialEq)]
enum Array {
    Bool(Vec<Option<bool>>),
    Int(Vec<Option<i32>>),
    BigInt(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Uuid(Vec<Option<Uuid>>),
    Time(Vec<Option<DateTime<Utc>>>),
}

impl Array {
    /// An empty array for values like `v`; `None` for a kind not sent here.
    fn empty_like(v: &Value) -> Option<Array> {
        Some(match v {
            Value::Bool(_) => Array::Bool(Vec::new()),
            Value::Int(_) => Array::Int(Vec::new()),
            Value::BigInt(_) => Array::BigInt(Vec::new()),
            Value::String(_) => Array::Text(Vec::new()),
            Value::Uuid(_) => Array::Uuid(Vec::new()),
            Value::ChronoDateTimeUtc(_) => Array::Time(Vec::new()),
            _ => return None,
        })
    }

    fn pg_type(&self) -> &'static str {
        match self {
            Array::Bool(_) => "bool[]",
            Array::Int(_) => "int4[]",
            Array::BigInt(_) => "int8[]",
            Array::Text(_) => "text[]",
            Array::Uuid(_) => "uuid[]",
            Array::Time(_) => "timestamptz[]",
        }
    }

    /// Adds `v`; false if it is of another kind.
    fn push(&mut self, v: &Value) -> bool {
        match (self, v) {
            (Array::Bool(a), Value::Bool(x)) => a.push(*x),
            (Array::Int(a), Value::Int(x)) => a.push(*x),
            (Array::BigInt(a), Value::BigInt(x)) => a.push(*x),
            (Array::Text(a), Value::String(x)) => a.push(x.clone()),
            (Array::Uuid(a), Value::Uuid(x)) => a.push(*x),
            (Array::Time(a), Value::ChronoDateTimeUtc(x)) => a.push(*x),
            _ => return false,
        }
        true
    }
}

/// The statement for `rows`, and its parameters: one `unnest` insert per
/// table and set of columns, in the order they first appear; `None` if
/// there are no rows.
fn statement(rows: &[&Insert]) -> Result<Option<(String, Vec<Array>)>, StoreError> {
    // Inserts of the same table and columns are merged.
    let mut merged: Vec<(&Insert, Vec<Array>)> = Vec::new();
    for ins in rows {
        let Some(first) = ins.rows.first() else {
            continue;
        };
        let at = merged
            .iter()
            .position(|(m, _)| m.table == ins.table && m.columns == ins.columns);
        let at = match at {
            Some(i) => i,
            None => {
                let arrays = first
                    .iter()
                    .map(Array::empty_like)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| unsupported(ins.table))?;
                merged.push((ins, arrays));
                merged.len() - 1
            }
        };
        let arrays = &mut merged[at].1;
        for row in &ins.rows {
            if row.len() != arrays.len() {
                return Err(unsupported(ins.table));
            }
            for (a, v) in arrays.iter_mut().zip(row) {
                if !a.push(v) {
                    return Err(unsupported(ins.table));
                }
            }
        }
    }
    if merged.is_empty() {
        return Ok(None);
    }
    // Written straight into one string: formatting each column and
    // placeholder apart and joining them cost 90 000 instructions a batch.
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(4096);
    let mut params = Vec::new();
    let last = merged.len() - 1;
    for (i, (ins, arrays)) in merged.into_iter().enumerate() {
        if i == last {
            sql.push_str(if i == 0 { "" } else { " " });
        } else {
            sql.push_str(if i == 0 { "WITH " } else { ", " });
            let _ = write!(sql, "w{i} AS (");
        }
        sql.push_str("INSERT INTO \"");
        sql.push_str(ins.table);
        sql.push_str("\" (");
        for (k, c) in ins.columns.iter().enumerate() {
            sql.push_str(if k == 0 { "\"" } else { ", \"" });
            sql.push_str(c);
            sql.push('"');
        }
        sql.push_str(") SELECT * FROM unnest(");
        for (k, a) in arrays.iter().enumerate() {
            sql.push_str(if k == 0 { "$" } else { ", $" });
            let _ = write!(sql, "{}", params.len() + k + 1);
            sql.push_str("::");
            sql.push_str(a.pg_type());
        }
        sql.push(')');
        if i != last {
            sql.push(')');
        }
        params.extend(arrays);
    }
    Ok(Some((sql, params)))
}

fn unsupported(table: &str) -> StoreError {
    StoreError::Db(sea_orm::DbErr::Custom(format!(
        "rows for {table} cannot be sent as arrays"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(table: &'static str, columns: &[&'static str], rows: Vec<Vec<Value>>) -> Insert {
        Insert {
            table,
            columns: columns.to_vec(),
            rows,
        }
    }

    #[test]
    fn a_create_alone_reserves_only_its_own_number() {
        let mut block = Block::default();
        assert_eq!(block.reservation(1), 1);
        assert!(!block.keeps(1, 1), "its number is used at once: no flush");
        assert_eq!(block.take(1, Some((7, 1))), [7]);
        assert_eq!(block, Block { next: 8, end: 8 });
        assert_eq!(block.reservation(1), 1, "nothing was kept ahead");
    }

    #[test]
    fn a_batch_under_load_reserves_ahead_and_the_next_batches_take_from_it() {
        let mut block = Block::default();
        let count = block.reservation(4);
        assert_eq!(count, 4 + 64);
        assert!(block.keeps(4, count), "numbers kept ahead: flushed at once");
        assert_eq!(block.take(4, Some((1, count))), [1, 2, 3, 4]);
        assert_eq!(block.reservation(3), 0);
        assert_eq!(block.take(3, None), [5, 6, 7]);
        assert_eq!(block.left(), 61);
        // Short of numbers: what is left first, then fresh ones, no gap
        // between them if no other node reserved meanwhile.
        let mut short = Block { next: 66, end: 69 };
        let count = short.reservation(5);
        assert_eq!(count, 2 + 64);
        assert!(short.keeps(5, count));
        assert!(!short.keeps(5, 2));
        assert_eq!(short.take(5, Some((69, count))), [66, 67, 68, 69, 70]);
        assert_eq!(short, Block { next: 71, end: 135 });
    }

    #[test]
    fn numbers_left_over_are_handed_out_before_another_nodes_gap() {
        // Another node reserved 69..200 meanwhile: this node's next block
        // starts after it, and its own leftovers go first.
        let mut block = Block { next: 67, end: 69 };
        assert_eq!(block.reservation(2), 0);
        let count = block.reservation(3);
        assert_eq!(count, 1 + 48);
        assert_eq!(block.take(3, Some((200, count))), [67, 68, 200]);
        assert_eq!(
            block,
            Block {
                next: 201,
                end: 249
            }
        );
    }

    #[test]
    fn a_small_batch_reserves_ahead_in_proportion_to_its_size() {
        assert_eq!(Block::default().reservation(2), 2 + 32);
        assert_eq!(Block::default().reservation(64), 64 + MAX_AHEAD);
    }

    #[test]
    fn the_rows_of_several_creates_become_one_statement_whatever_their_count() {
        let id = Uuid::now_v7();
        let create = |n: i64, outbox: usize| {
            vec![
                insert(
                    "incidents",
                    &["id", "number", "category"],
                    vec![vec![id.into(), n.into(), Value::String(None)]],
                ),
                insert(
                    "outbox",
                    &["id", "attempts"],
                    (0..outbox).map(|_| vec![id.into(), 0i32.into()]).collect(),
                ),
            ]
        };
        let one = create(1, 1);
        let three = [create(2, 2), create(3, 0), create(4, 5)].concat();
        let (sql_one, arrays_one) = statement(&one.iter().collect::<Vec<_>>())
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no statement"));
        let (sql, arrays) = statement(&three.iter().collect::<Vec<_>>())
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no statement"));
        assert_eq!(
            sql,
            r#"WITH w0 AS (INSERT INTO "incidents" ("id", "number", "category") SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[])) INSERT INTO "outbox" ("id", "attempts") SELECT * FROM unnest($4::uuid[], $5::int4[])"#
        );
        // The same text for one create as for three: prepared once.
        assert_eq!(sql_one, sql);
        assert_eq!(arrays_one.len(), 5);
        assert_eq!(arrays[1], Array::BigInt(vec![Some(2), Some(3), Some(4)]));
        assert_eq!(arrays[2], Array::Text(vec![None, None, None]));
        assert_eq!(arrays[4], Array::Int(vec![Some(0); 7]));
    }

    #[test]
    fn no_rows_is_no_statement_and_an_unknown_kind_is_refused() {
        assert!(matches!(statement(&[]), Ok(None)));
        let odd = insert("t", &["x"], vec![vec![Value::Double(Some(1.5))]]);
        assert!(statement(&[&odd]).is_err());
        assert!(!supported(&Value::Double(None)));
        let mixed = insert("t", &["x"], vec![vec![1i32.into()], vec![1i64.into()]]);
        assert!(statement(&[&mixed]).is_err());
    }
}
