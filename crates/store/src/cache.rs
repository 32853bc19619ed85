//! A short-lived, node-local copy of configuration that every incident write
//! consults: the active SLA policies, the business calendars and the active
//! webhook subscriptions. Without it each create, update, transition and
//! comment reads them again inside its transaction, and on SQLite that
//! transaction holds the only writer.
//!
//! Changes made through this node apply at once: every write to policies,
//! calendars or webhooks clears the cache after it commits, and a load that
//! started before a clear never stores its answer (the generation check), so
//! a stale copy cannot outlive the write that made it stale. Other nodes on
//! the same database notice within `ttl` (`database_config_cache_secs`,
//! default 2 s; zero turns the cache off), like the actor cache.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keel_sla::Clock;
use uuid::Uuid;

use crate::StoreError;
use crate::sla::PolicyView;

/// The SLA configuration a timer sync needs.
#[derive(Debug, Default)]
pub(crate) struct SlaConfig {
    /// Active policies in the order they are tried.
    pub policies: Vec<PolicyView>,
    /// Every business calendar by id.
    pub clocks: HashMap<Uuid, Clock>,
}

/// An active webhook subscription.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub id: Uuid,
    pub events: Vec<String>,
}

impl Subscription {
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event || e == "*")
    }
}

/// One cached value with its load time and a generation that every clear
/// advances.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    ttl: Duration,
    inner: Mutex<SlotInner<T>>,
}

#[derive(Debug)]
struct SlotInner<T> {
    generation: u64,
    value: Option<(Arc<T>, Instant)>,
}

impl<T> Slot<T> {
    pub fn new(ttl: Duration) -> Self {
        Slot {
            ttl,
            inner: Mutex::new(SlotInner {
                generation: 0,
                value: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotInner<T>> {
        // A panic while holding this lock cannot leave the slot inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the value; loads already under way will not store theirs.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.value = None;
    }

    /// The cached value while fresh, or what `load` returns (stored unless a
    /// clear happened meanwhile).
    pub async fn get_or_load<F, Fut>(&self, load: F) -> Result<Arc<T>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let generation = {
            let inner = self.lock();
            if let Some((v, at)) = &inner.value
                && at.elapsed() < self.ttl
            {
                return Ok(Arc::clone(v));
            }
            inner.generation
        };
        let fresh = Arc::new(load().await?);
        if !self.ttl.is_zero() {
            let mut inner = self.lock();
            if inner.generation == generation {
                inner.value = Some((Arc::clone(&fresh), Instant::now()));
            }
        }
        Ok(fresh)
    }
}

/// What an incident write consults besides the incident: taken once per
/// request, before its transaction.
#[derive(Debug, Clone)]
pub(crate) struct WriteConfig {
    pub sla: Arc<SlaConfig>,
    pub hooks: Arc<Vec<Subscription>>,
}

impl crate::Store {
    pub(crate) async fn write_config(&self) -> Result<WriteConfig, StoreError> {
        Ok(WriteConfig {
            sla: self.sla_config().await?,
            hooks: self.subscriptions().await?,
        })
    }
}

/// The configuration caches of one [`crate::Store`].
#[derive(Debug)]
pub(crate) struct ConfigCache {
    pub sla: Slot<SlaConfig>,
    pub webhooks: Slot<Vec<Subscription>>,
}

impl ConfigCache {
    pub fn new(ttl: Duration) -> Self {
        ConfigCache {
            sla: Slot::new(ttl),
            webhooks: Slot::new(ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn count(slot: &Slot<usize>, loads: &AtomicUsize) -> usize {
        *slot
            .get_or_load(|| async { Ok(loads.fetch_add(1, Ordering::SeqCst) + 1) })
            .await
            .unwrap_or_else(|_| Arc::new(0))
    }

    #[tokio::test]
    async fn a_fresh_value_is_loaded_once_and_a_clear_forces_a_new_load() {
        let slot = Slot::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        assert_eq!(count(&slot, &loads).await, 1);
        assert_eq!(count(&slot, &loads).await, 1);
        slot.clear();
        assert_eq!(count(&slot, &loads).await, 2);
    }

    #[tokio::test]
    async fn a_zero_ttl_loads_every_time() {
        let slot = Slot::new(Duration::ZERO);
        let loads = AtomicUsize::new(0);
        assert_eq!(count(&slot, &loads).await, 1);
        assert_eq!(count(&slot, &loads).await, 2);
    }

    #[tokio::test]
    async fn a_value_expires_after_its_ttl() {
        let slot = Slot::new(Duration::from_millis(20));
        let loads = AtomicUsize::new(0);
        assert_eq!(count(&slot, &loads).await, 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(count(&slot, &loads).await, 2);
    }

    #[tokio::test]
    async fn a_load_that_started_before_a_clear_is_not_kept() {
        let slot = Slot::new(Duration::from_secs(60));
        let stale = slot
            .get_or_load(|| async {
                // The write that makes this answer stale commits meanwhile.
                slot.clear();
                Ok(1_usize)
            })
            .await
            .unwrap_or_else(|_| Arc::new(0));
        assert_eq!(*stale, 1, "the caller still gets its answer");
        let next = slot
            .get_or_load(|| async { Ok(2_usize) })
            .await
            .unwrap_or_else(|_| Arc::new(0));
        assert_eq!(*next, 2, "but it was not stored");
    }
}
