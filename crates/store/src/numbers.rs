//! Incident numbers on PostgreSQL, reserved for several creates at once.
//!
//! A number comes from the `sequences` row, in a statement of its own (in
//! the create's transaction the row stayed locked until commit, and every
//! concurrent create queued behind it). Under load that statement is one
//! of the few a create still makes, so creates that arrive together share
//! it: the first to take the lock reserves one number for itself and one
//! for every create waiting behind it, and those take theirs from the
//! block without a statement.
//!
//! Numbers stay unique across nodes (each block is reserved by an atomic
//! update of the shared row). A block is never larger than the creates
//! that were waiting when it was reserved, so an idle node holds no spare
//! numbers; a create that fails, or is abandoned, after taking its number
//! leaves a gap, as a PostgreSQL sequence would.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Mutex;

use crate::StoreError;

/// At most this many numbers are reserved by one statement.
const MAX_BLOCK: usize = 64;

/// A node's reserved, not yet used, incident numbers.
#[derive(Debug, Default)]
pub(crate) struct Numbers {
    block: Mutex<Block>,
    /// Creates waiting for the lock, the holder included.
    waiting: AtomicUsize,
}

/// Numbers `next..end` are reserved and unused.
#[derive(Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

/// Counts a create as waiting until it holds the lock, or gives up.
struct Waiting<'a>(&'a AtomicUsize, bool);

impl Waiting<'_> {
    /// Stops counting; answers how many were waiting, this one included.
    fn done(mut self) -> usize {
        self.1 = false;
        self.0.fetch_sub(1, Ordering::SeqCst)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Numbers {
    /// The next number. `reserve(k)` reserves `k` numbers in the database
    /// and answers the first of them.
    pub async fn take<F, Fut>(&self, reserve: F) -> Result<i64, StoreError>
    where
        F: FnOnce(i64) -> Fut,
        Fut: Future<Output = Result<i64, StoreError>>,
    {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(&self.waiting, true);
        let mut block = self.block.lock().await;
        let queued = waiting.done();
        if block.next < block.end {
            let n = block.next;
            block.next += 1;
            return Ok(n);
        }
        let k = i64::try_from(queued.clamp(1, MAX_BLOCK)).unwrap_or(1);
        let first = reserve(k).await?;
        block.next = first + 1;
        block.end = first + k;
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;

    /// The database's sequence row, and how many statements reserved from it.
    #[derive(Default)]
    struct Row {
        next: AtomicI64,
        statements: AtomicUsize,
    }

    impl Row {
        async fn reserve(&self, k: i64) -> Result<i64, StoreError> {
            self.statements.fetch_add(1, Ordering::SeqCst);
            // A statement takes a while; others queue meanwhile.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            Ok(self.next.fetch_add(k, Ordering::SeqCst) + 1)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_get_distinct_numbers_from_fewer_statements() {
        let numbers = Arc::new(Numbers::default());
        let row = Arc::new(Row::default());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (numbers, row) = (Arc::clone(&numbers), Arc::clone(&row));
                tokio::spawn(async move { numbers.take(|k| row.reserve(k)).await })
            })
            .collect();
        let mut got = BTreeSet::new();
        for t in tasks {
            let n = t
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(got.insert(n), "number {n} handed out twice");
        }
        // No gaps: every reserved number was used.
        assert_eq!(got, (1..=200).collect::<BTreeSet<i64>>());
        let statements = row.statements.load(Ordering::SeqCst);
        assert!(statements < 200, "{statements} statements for 200 numbers");
    }

    #[tokio::test]
    async fn one_create_at_a_time_reserves_one_number_at_a_time() {
        let numbers = Numbers::default();
        let row = Row::default();
        for want in 1..=5 {
            assert_eq!(
                numbers
                    .take(|k| row.reserve(k))
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
                want
            );
        }
        assert_eq!(row.statements.load(Ordering::SeqCst), 5);
        assert_eq!(row.next.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_failed_reservation_is_an_error_and_reserves_nothing() {
        let numbers = Numbers::default();
        let failed = numbers
            .take(|_| async { Err(StoreError::NotFound("sequence")) })
            .await;
        assert!(failed.is_err());
        let row = Row::default();
        assert_eq!(
            numbers
                .take(|k| row.reserve(k))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            1
        );
    }
}
