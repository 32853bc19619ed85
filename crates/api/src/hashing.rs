//! A small fixed pool of threads for password hashing.
//!
//! An argon2id hash or check takes about 60 ms of CPU and a 19 MiB working
//! buffer. Run on tokio's blocking pool (up to 512 threads), a burst of
//! logins hashed many buffers at once, and glibc kept them: RSS passed
//! 1.5 GiB after one benchmark of logins. Hashing is pure CPU, so running
//! more hashes at once than there are cores buys no throughput; this pool
//! runs one per core (at most four) and queues the rest, which bounds the
//! memory at a few buffers and leaves the other threads free for requests.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::ApiError;

type Job = Box<dyn FnOnce() + Send>;

fn pool() -> Option<&'static Sender<Job>> {
    static POOL: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("keel-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is released before the job runs.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking job loses its answer (the caller sees
                        // a closed channel), not the thread.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if spawned.is_ok() {
                started += 1;
            }
        }
        (started > 0).then_some(tx)
    })
    .as_ref()
}

/// Runs `f` (a password hash or check) on the hashing pool and waits for it
/// without blocking an async worker. Falls back to the blocking pool if the
/// hashing threads could not be started.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let Some(pool) = pool() else {
        return actix_web::web::block(f).await.map_err(ApiError::internal);
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.send(Box::new(move || {
        let _ = tx.send(f());
    }))
    .map_err(ApiError::internal)?;
    rx.await.map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_and_answer() {
        let name = run(|| std::thread::current().name().map(str::to_owned))
            .await
            .ok()
            .flatten();
        assert!(name.is_some_and(|n| n.starts_with("keel-hash-")));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_pool_goes_on() {
        let failed = run(|| -> u8 { panic!("boom") }).await;
        assert!(failed.is_err());
        let after = run(|| 7).await.ok();
        assert_eq!(after, Some(7));
    }
}
