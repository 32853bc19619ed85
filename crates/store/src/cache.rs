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
use crate::directory::{GroupRef, UserRef};
use crate::sla::PolicyView;

/// The SLA configuration a timer sync needs.
#[derive(Debug, Default)]
pub(crate) struct SlaConfig {
    /// Active policies in the order they are tried.
    pub policies: Vec<PolicyView>,
    /// Every business calendar by id.
    pub clocks: IdMap<Clock>,
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
    /// Who hears of a change, kept ([`crate::audiences`]).
    pub audiences: Arc<crate::audiences::Audiences>,
}

impl crate::Store {
    pub(crate) async fn write_config(&self) -> Result<WriteConfig, StoreError> {
        Ok(WriteConfig {
            sla: self.sla_config().await?,
            hooks: self.subscriptions().await?,
            audiences: Arc::clone(&self.cache.audiences),
        })
    }
}

/// The configuration caches of one [`crate::Store`].
#[derive(Debug)]
pub(crate) struct ConfigCache {
    pub sla: Slot<SlaConfig>,
    pub webhooks: Slot<Vec<Subscription>>,
    pub names: Names,
    pub audiences: Arc<crate::audiences::Audiences>,
}

impl ConfigCache {
    pub fn new(ttl: Duration) -> Self {
        ConfigCache {
            sla: Slot::new(ttl),
            webhooks: Slot::new(ttl),
            names: Names::new(ttl),
            audiences: Arc::new(crate::audiences::Audiences::new(ttl)),
        }
    }
}

/// A map keyed by ids that a request fills and reads many times (names,
/// timers): foldhash instead of std's SipHash, which was 2.3 % of a list
/// page's instructions (bench/RESULTS.md, fourteenth session). Like std's,
/// it is seeded per process.
pub(crate) type IdMap<V> = HashMap<Uuid, V, foldhash::fast::RandomState>;

/// Users' and groups' names by id.
pub(crate) type Refs = (IdMap<UserRef>, IdMap<GroupRef>);

/// Most names [`Names`] keeps; a load that would keep more starts afresh.
const MAX_NAMES: usize = 65_536;

/// The names a list page shows beside the ids of its records (a user's
/// username and display name, a group's name), kept by id for the same
/// time as the configuration: a desk's lists name the same few hundred
/// agents, groups and requesters page after page, and reading them was a
/// third statement per page (bench/RESULTS.md, twelfth session).
///
/// As with [`Slot`]: renaming a user or a group through this node clears
/// it after the write, a load that started before a clear keeps nothing,
/// and other nodes show the new name within `ttl`.
#[derive(Debug)]
pub(crate) struct Names {
    ttl: Duration,
    inner: Mutex<NamesInner>,
}

#[derive(Debug, Default)]
struct NamesInner {
    generation: u64,
    users: IdMap<(UserRef, Instant)>,
    groups: IdMap<(GroupRef, Instant)>,
}

impl Names {
    pub fn new(ttl: Duration) -> Self {
        Names {
            ttl,
            inner: Mutex::new(NamesInner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NamesInner> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every name; loads already under way will not keep theirs.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.users.clear();
        inner.groups.clear();
    }

    /// The names of `users` and `groups` (an id may be named more than
    /// once): those kept and fresh from here, the others from `load`, which
    /// is given only the ids it must read, each once.
    /// What it reads is kept unless a clear happened meanwhile. An id that
    /// names nothing is left out of the answer.
    pub async fn get_or_load<F, Fut>(
        &self,
        users: &[Uuid],
        groups: &[Uuid],
        load: F,
    ) -> Result<Refs, StoreError>
    where
        F: FnOnce(Vec<Uuid>, Vec<Uuid>) -> Fut,
        Fut: Future<Output = Result<Refs, StoreError>>,
    {
        let mut out: Refs = (
            IdMap::with_capacity_and_hasher(users.len(), Default::default()),
            IdMap::with_capacity_and_hasher(groups.len(), Default::default()),
        );
        let mut missing = (Vec::new(), Vec::new());
        let generation = {
            let inner = self.lock();
            let now = Instant::now();
            let fresh = |at: &Instant| now.saturating_duration_since(*at) < self.ttl;
            // An id named again (a page's requester of several incidents)
            // is looked up once.
            for id in users {
                if out.0.contains_key(id) || missing.0.contains(id) {
                    continue;
                }
                match inner.users.get(id) {
                    Some((r, at)) if fresh(at) => {
                        out.0.insert(*id, r.clone());
                    }
                    _ => missing.0.push(*id),
                }
            }
            for id in groups {
                if out.1.contains_key(id) || missing.1.contains(id) {
                    continue;
                }
                match inner.groups.get(id) {
                    Some((r, at)) if fresh(at) => {
                        out.1.insert(*id, r.clone());
                    }
                    _ => missing.1.push(*id),
                }
            }
            inner.generation
        };
        if missing.0.is_empty() && missing.1.is_empty() {
            return Ok(out);
        }
        let (users, groups) = load(missing.0, missing.1).await?;
        if !self.ttl.is_zero() {
            let mut inner = self.lock();
            if inner.generation == generation {
                if inner.users.len() + inner.groups.len() + users.len() + groups.len() > MAX_NAMES {
                    inner.users.clear();
                    inner.groups.clear();
                }
                let now = Instant::now();
                for (id, r) in &users {
                    inner.users.insert(*id, (r.clone(), now));
                }
                for (id, r) in &groups {
                    inner.groups.insert(*id, (r.clone(), now));
                }
            }
        }
        out.0.extend(users);
        out.1.extend(groups);
        Ok(out)
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

    fn user(id: Uuid, name: &str) -> UserRef {
        UserRef {
            id: keel_core::UserId(id),
            username: name.to_lowercase(),
            display_name: name.into(),
        }
    }

    /// Loads names from `db`, counting the ids it was asked for.
    async fn names_of(
        names: &Names,
        ids: &[Uuid],
        db: &HashMap<Uuid, UserRef>,
        asked: &AtomicUsize,
    ) -> Vec<String> {
        let got = names
            .get_or_load(ids, &[], |users, _| async move {
                asked.fetch_add(users.len(), Ordering::SeqCst);
                Ok((
                    users
                        .iter()
                        .filter_map(|u| db.get(u).map(|r| (*u, r.clone())))
                        .collect(),
                    IdMap::default(),
                ))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut v: Vec<String> = got.0.into_values().map(|r| r.display_name).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn kept_names_are_not_read_again_and_only_missing_ones_are_read() {
        let (a, b, gone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let db = HashMap::from([(a, user(a, "Ada")), (b, user(b, "Bo"))]);
        let names = Names::new(Duration::from_secs(60));
        let asked = AtomicUsize::new(0);
        assert_eq!(names_of(&names, &[a], &db, &asked).await, ["Ada"]);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(
            names_of(&names, &[a, b, gone], &db, &asked).await,
            ["Ada", "Bo"]
        );
        assert_eq!(
            asked.load(Ordering::SeqCst),
            3,
            "b and the unknown id were read, a was not"
        );
        assert_eq!(names_of(&names, &[a, b], &db, &asked).await, ["Ada", "Bo"]);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn ids_named_more_than_once_are_read_once_and_answered_once() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let db = HashMap::from([(a, user(a, "Ada")), (b, user(b, "Bo"))]);
        let names = Names::new(Duration::from_secs(60));
        let asked = AtomicUsize::new(0);
        assert_eq!(
            names_of(&names, &[a, b, a, a, b], &db, &asked).await,
            ["Ada", "Bo"]
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2, "each missing id once");
        assert_eq!(
            names_of(&names, &[b, a, b, a], &db, &asked).await,
            ["Ada", "Bo"]
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2, "then kept");
    }

    #[tokio::test]
    async fn a_rename_through_this_node_shows_at_once() {
        let a = Uuid::now_v7();
        let names = Names::new(Duration::from_secs(60));
        let asked = AtomicUsize::new(0);
        let before = HashMap::from([(a, user(a, "Ada"))]);
        assert_eq!(names_of(&names, &[a], &before, &asked).await, ["Ada"]);
        names.clear();
        let after = HashMap::from([(a, user(a, "Ada Lovelace"))]);
        assert_eq!(
            names_of(&names, &[a], &after, &asked).await,
            ["Ada Lovelace"]
        );
    }

    #[tokio::test]
    async fn names_expire_after_their_ttl_and_a_zero_ttl_keeps_none() {
        let a = Uuid::now_v7();
        let db = HashMap::from([(a, user(a, "Ada"))]);
        for (ttl, wait, reads) in [(20, 40, 2), (0, 0, 2), (60_000, 0, 1)] {
            let names = Names::new(Duration::from_millis(ttl));
            let asked = AtomicUsize::new(0);
            names_of(&names, &[a], &db, &asked).await;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            names_of(&names, &[a], &db, &asked).await;
            assert_eq!(asked.load(Ordering::SeqCst), reads, "ttl {ttl} ms");
        }
    }

    #[tokio::test]
    async fn names_read_before_a_rename_committed_are_not_kept() {
        let a = Uuid::now_v7();
        let names = Names::new(Duration::from_secs(60));
        let stale = names
            .get_or_load(&[a], &[], |_, _| async {
                // The rename commits while the old name is being read.
                names.clear();
                Ok((IdMap::from_iter([(a, user(a, "Ada"))]), IdMap::default()))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stale.0.len(), 1, "the caller still gets its answer");
        let asked = AtomicUsize::new(0);
        let db = HashMap::from([(a, user(a, "Ada Lovelace"))]);
        assert_eq!(names_of(&names, &[a], &db, &asked).await, ["Ada Lovelace"]);
        assert_eq!(asked.load(Ordering::SeqCst), 1, "but it was not kept");
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
