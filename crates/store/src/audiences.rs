//! Who hears of an incident's changes, kept for as long as the
//! configuration.
//!
//! A create asks who is to hear of it before its writes: its requester (the
//! acknowledgement) and its group's members (the assignment), each with
//! their address, without anyone inactive or opted out of the event, and
//! the group's own row (its id and name, which also says it exists). That
//! was one statement before every create, and on PostgreSQL it took half
//! as much of the server's time as all of the creates' writes
//! (bench/RESULTS.md, twenty-sixth session). A desk raises incidents for the same few groups, by the same
//! callers, all day, so the answers are kept, split into parts that
//! combine into any audience:
//!
//! - a person and an event: that person as a recipient, or nobody;
//! - a group (by id or by name) and an event: the members who hear of it;
//! - a group (by id or by name): its row, kept only when found.
//!
//! An audience is then the people it names and its group's members, each
//! once, without its actor: what [`crate::notify::resolve_with`]'s statement
//! finds. Only the parts not kept are read, in one statement.
//!
//! Public comments, transitions and assignments made by an update take
//! their recipients from the same parts ([`Audiences::resolve`]; the last
//! two inside their transaction, which reads what is not kept).
//!
//! As with [`crate::cache::Names`]: a write through this node that changes
//! a user, a group, a group's members or anyone's notification settings
//! clears everything after it commits, a load that started before a clear
//! keeps nothing, and other nodes see a change within `ttl`
//! (`database_config_cache_secs`; zero turns the cache off).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::StoreError;
use crate::directory::GroupRef;
use crate::notify::{Ask, Event, GroupKey, Recipient};

/// Most parts kept; a load that would keep more starts afresh.
const MAX_KEPT: usize = 65_536;

/// A group's row, if the question named one, and each audience's
/// recipients in the order asked.
pub(crate) type Answer = (Option<GroupRef>, Vec<Vec<Recipient>>);

type Map<K, V> = HashMap<K, (V, Instant), foldhash::fast::RandomState>;

/// The kept parts of audiences (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Audiences {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    people: Map<(Uuid, Event), Option<Recipient>>,
    /// Shared, so that a large group's list is not copied under the lock.
    members: Map<(GroupKey, Event), Arc<[Recipient]>>,
    groups: Map<GroupKey, GroupRef>,
}

impl Inner {
    fn len(&self) -> usize {
        self.people.len() + self.members.len() + self.groups.len()
    }

    fn clear(&mut self) {
        self.people.clear();
        self.members.clear();
        self.groups.clear();
    }
}

/// The parts one question needs, found kept or read.
#[derive(Default)]
struct Parts {
    group: Option<GroupRef>,
    people: HashMap<(Uuid, Event), Option<Recipient>, foldhash::fast::RandomState>,
    members: HashMap<(GroupKey, Event), Arc<[Recipient]>, foldhash::fast::RandomState>,
}

impl Audiences {
    pub fn new(ttl: Duration) -> Self {
        Audiences {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything; loads already under way will not keep theirs.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.clear();
    }

    /// The group `key` names (if any) and who hears of each of `asks`:
    /// the kept parts while fresh, the others from `load`. `load` answers
    /// [`crate::notify::resolve_with`]'s question: the group's row
    /// if it is given a key, and each audience it is given, in order. It
    /// is given only what is missing, as audiences of one kind each (some
    /// people and one event, or one group and one event) with no actor.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: Option<&GroupKey>,
        asks: &[Ask],
        load: F,
    ) -> Result<Answer, StoreError>
    where
        F: FnOnce(Option<GroupKey>, Vec<Ask>) -> Fut,
        Fut: Future<Output = Result<Answer, StoreError>>,
    {
        let mut parts = Parts::default();
        let mut people_missing: Vec<(Uuid, Event)> = Vec::new();
        let mut members_missing: Vec<(GroupKey, Event)> = Vec::new();
        let mut group_missing = false;
        let generation = {
            let inner = self.lock();
            let now = Instant::now();
            let fresh = |at: &Instant| now.saturating_duration_since(*at) < self.ttl;
            if let Some(k) = key {
                match inner.groups.get(k) {
                    Some((g, at)) if fresh(at) => parts.group = Some(g.clone()),
                    _ => group_missing = true,
                }
            }
            for ask in asks {
                for p in &ask.people {
                    let part = (*p, ask.event);
                    if parts.people.contains_key(&part) || people_missing.contains(&part) {
                        continue;
                    }
                    match inner.people.get(&part) {
                        Some((r, at)) if fresh(at) => {
                            parts.people.insert(part, r.clone());
                        }
                        _ => people_missing.push(part),
                    }
                }
                if let Some(g) = &ask.group {
                    let part = (g.clone(), ask.event);
                    if parts.members.contains_key(&part) || members_missing.contains(&part) {
                        continue;
                    }
                    match inner.members.get(&part) {
                        Some((m, at)) if fresh(at) => {
                            parts.members.insert(part, Arc::clone(m));
                        }
                        _ => members_missing.push(part),
                    }
                }
            }
            inner.generation
        };
        if group_missing || !people_missing.is_empty() || !members_missing.is_empty() {
            let read = self
                .read_missing(
                    key.filter(|_| group_missing),
                    people_missing,
                    members_missing,
                    generation,
                    load,
                )
                .await?;
            if group_missing {
                parts.group = read.group;
            }
            parts.people.extend(read.people);
            parts.members.extend(read.members);
        }
        let heard = asks.iter().map(|ask| audience(ask, &parts)).collect();
        Ok((parts.group, heard))
    }

    /// Reads the parts not kept in one `load`, and keeps them unless a
    /// clear happened since `generation`.
    async fn read_missing<F, Fut>(
        &self,
        key: Option<&GroupKey>,
        people: Vec<(Uuid, Event)>,
        members: Vec<(GroupKey, Event)>,
        generation: u64,
        load: F,
    ) -> Result<Parts, StoreError>
    where
        F: FnOnce(Option<GroupKey>, Vec<Ask>) -> Fut,
        Fut: Future<Output = Result<Answer, StoreError>>,
    {
        // One audience per event for the people, one per group and event.
        let mut plain: Vec<Ask> = Vec::new();
        for (p, event) in &people {
            match plain
                .iter_mut()
                .find(|a| a.group.is_none() && a.event == *event)
            {
                Some(a) => a.people.push(*p),
                None => plain.push(Ask {
                    event: *event,
                    actor: None,
                    people: vec![*p],
                    group: None,
                }),
            }
        }
        for (g, event) in &members {
            plain.push(Ask {
                event: *event,
                actor: None,
                people: Vec::new(),
                group: Some(g.clone()),
            });
        }
        let (group, answers) = load(key.cloned(), plain.clone()).await?;
        let mut read = Parts {
            group,
            ..Parts::default()
        };
        let mut answers = answers.into_iter();
        for ask in plain {
            let heard = answers.next().unwrap_or_default();
            match ask.group {
                Some(g) => {
                    read.members.insert((g, ask.event), heard.into());
                }
                None => {
                    for p in ask.people {
                        let r = heard.iter().find(|r| r.id == p).cloned();
                        read.people.insert((p, ask.event), r);
                    }
                }
            }
        }
        if !self.ttl.is_zero() {
            let mut inner = self.lock();
            if inner.generation == generation {
                let found = usize::from(read.group.is_some());
                if inner.len() + read.people.len() + read.members.len() + found > MAX_KEPT {
                    inner.clear();
                }
                let now = Instant::now();
                if let (Some(k), Some(g)) = (key, &read.group) {
                    inner.groups.insert(k.clone(), (g.clone(), now));
                }
                for (part, r) in &read.people {
                    inner.people.insert(*part, (r.clone(), now));
                }
                for (part, m) in &read.members {
                    inner.members.insert(part.clone(), (Arc::clone(m), now));
                }
            }
        }
        Ok(read)
    }
}

impl Audiences {
    /// The group `key` names and who hears of each of `asks`
    /// ([`crate::notify::resolve_with`]'s answer): kept, or, for what is
    /// not, one read through `db` (a read connection or a transaction).
    pub async fn of<C: crate::rows::Read>(
        &self,
        db: &C,
        key: Option<&GroupKey>,
        asks: &[Ask],
    ) -> Result<Answer, StoreError> {
        self.get_or_load(key, asks, |key, plain| async move {
            crate::notify::resolve_with(db, key.as_ref(), &plain).await
        })
        .await
    }

    /// Who hears of `ask` (see [`Audiences::of`]).
    pub async fn resolve<C: crate::rows::Read>(
        &self,
        db: &C,
        ask: Ask,
    ) -> Result<Vec<Recipient>, StoreError> {
        let (_, mut heard) = self.of(db, None, std::slice::from_ref(&ask)).await?;
        Ok(heard.pop().unwrap_or_default())
    }
}

/// Who of `parts` hears of `ask`: its people, then its group's members,
/// each once, never its actor.
fn audience(ask: &Ask, parts: &Parts) -> Vec<Recipient> {
    let actor = ask.actor.map(|a| a.0);
    let mut out: Vec<Recipient> = Vec::new();
    for p in &ask.people {
        if let Some(Some(r)) = parts.people.get(&(*p, ask.event))
            && Some(r.id) != actor
            && !out.iter().any(|o| o.id == r.id)
        {
            out.push(r.clone());
        }
    }
    let named = out.len();
    if let Some(g) = &ask.group
        && let Some(members) = parts.members.get(&(g.clone(), ask.event))
    {
        for r in members.iter() {
            // A group's members are each listed once; only the people
            // named besides them can repeat one.
            if Some(r.id) != actor && !out[..named].iter().any(|o| o.id == r.id) {
                out.push(r.clone());
            }
        }
    }
    out
}

impl crate::Store {
    /// [`Audiences::of`] on this node's kept parts and a read connection.
    pub(crate) async fn audiences(
        &self,
        key: Option<&GroupKey>,
        asks: &[Ask],
    ) -> Result<Answer, StoreError> {
        self.cache.audiences.of(self.conn(), key, asks).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::{GroupId, UserId};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory as the statement sees it: users (address, active),
    /// opt-outs, one group with its members.
    struct Dir {
        users: Vec<(Uuid, &'static str, bool)>,
        opted_out: Vec<(Uuid, Event)>,
        group: GroupRef,
        members: Vec<Uuid>,
    }

    impl Dir {
        fn new() -> Dir {
            Dir {
                users: Vec::new(),
                opted_out: Vec::new(),
                group: GroupRef {
                    id: GroupId(Uuid::now_v7()),
                    name: "Network".into(),
                },
                members: Vec::new(),
            }
        }

        fn user(&mut self, email: &'static str) -> Uuid {
            let id = Uuid::now_v7();
            self.users.push((id, email, true));
            id
        }

        fn names(&self, key: &GroupKey) -> bool {
            match key {
                GroupKey::Id(id) => *id == self.group.id.0,
                GroupKey::Name(n) => *n == self.group.name,
            }
        }

        /// What `resolve_with`'s statement answers on this directory.
        fn resolve(&self, key: Option<&GroupKey>, asks: &[Ask]) -> Answer {
            let group = key.filter(|k| self.names(k)).map(|_| self.group.clone());
            let heard = asks
                .iter()
                .map(|ask| {
                    self.users
                        .iter()
                        .filter(|(id, _, active)| {
                            let in_group = ask
                                .group
                                .as_ref()
                                .is_some_and(|g| self.names(g) && self.members.contains(id));
                            *active
                                && (ask.people.contains(id) || in_group)
                                && !self.opted_out.contains(&(*id, ask.event))
                                && ask.actor.is_none_or(|a| a.0 != *id)
                        })
                        .map(|(id, email, _)| Recipient {
                            id: *id,
                            email: (*email).to_owned(),
                        })
                        .collect()
                })
                .collect();
            (group, heard)
        }
    }

    /// Asks `kept` through a load that reads `dir`, counting the loads.
    async fn ask(
        kept: &Audiences,
        dir: &Dir,
        loads: &AtomicUsize,
        key: Option<&GroupKey>,
        asks: &[Ask],
    ) -> Answer {
        kept.get_or_load(key, asks, |key, plain| {
            loads.fetch_add(1, Ordering::SeqCst);
            let answer = dir.resolve(key.as_ref(), &plain);
            async move { Ok(answer) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn emails(heard: &[Recipient]) -> Vec<&str> {
        let mut v: Vec<&str> = heard.iter().map(|r| r.email.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// A create's question: its requester's acknowledgement and its
    /// group's assignment notice, raised by `actor`.
    fn create(requester: Uuid, key: &GroupKey, actor: Uuid) -> [Ask; 2] {
        [
            Ask {
                event: Event::IncidentCreated,
                actor: None,
                people: vec![requester],
                group: None,
            },
            Ask {
                event: Event::IncidentAssigned,
                actor: Some(UserId(actor)),
                people: vec![],
                group: Some(key.clone()),
            },
        ]
    }

    #[tokio::test]
    async fn kept_audiences_answer_as_the_statement_does_and_are_not_read_again() {
        let mut dir = Dir::new();
        let (req, a1, a2, a3, off) = (
            dir.user("req@x"),
            dir.user("a1@x"),
            dir.user("a2@x"),
            dir.user("a3@x"),
            dir.user("off@x"),
        );
        dir.members = vec![a1, a2, a3, off, req];
        dir.users[3].2 = false; // a3 is inactive
        dir.opted_out.push((off, Event::IncidentAssigned));
        let kept = Audiences::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        for key in [
            GroupKey::Id(dir.group.id.0),
            GroupKey::Name("Network".into()),
        ] {
            let asks = create(req, &key, a1);
            let fresh = dir.resolve(Some(&key), &asks);
            for _ in 0..3 {
                let (group, heard) = ask(&kept, &dir, &loads, Some(&key), &asks).await;
                assert_eq!(group, fresh.0);
                assert_eq!(heard.len(), 2);
                for (h, f) in heard.iter().zip(&fresh.1) {
                    assert_eq!(emails(h), emails(f));
                }
                assert_eq!(emails(&heard[1]), ["a2@x", "req@x"], "not the actor");
            }
        }
        assert_eq!(loads.load(Ordering::SeqCst), 2, "one read per key");

        // Someone both named and a member hears once; the actor never.
        let both = [Ask {
            event: Event::IncidentAssigned,
            actor: Some(UserId(a2)),
            people: vec![a1, a1, a2],
            group: Some(GroupKey::Id(dir.group.id.0)),
        }];
        let (_, heard) = ask(&kept, &dir, &loads, None, &both).await;
        assert_eq!(emails(&heard[0]), ["a1@x", "req@x"]);
        assert_eq!(emails(&heard[0]), emails(&dir.resolve(None, &both).1[0]));
    }

    #[tokio::test]
    async fn only_the_parts_not_kept_are_read() {
        let mut dir = Dir::new();
        let (r1, r2, a1) = (dir.user("r1@x"), dir.user("r2@x"), dir.user("a1@x"));
        dir.members = vec![a1];
        let key = GroupKey::Id(dir.group.id.0);
        let kept = Audiences::new(Duration::from_secs(60));
        let asked: Mutex<Vec<(bool, Vec<Ask>)>> = Mutex::new(Vec::new());
        for r in [r1, r2] {
            kept.get_or_load(Some(&key), &create(r, &key, a1), |k, plain| {
                let answer = dir.resolve(k.as_ref(), &plain);
                if let Ok(mut a) = asked.lock() {
                    a.push((k.is_some(), plain));
                }
                async move { Ok(answer) }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let asked = asked.into_inner().unwrap_or_default();
        assert_eq!(asked.len(), 2);
        assert!(asked[0].0, "the group's row was read the first time");
        assert_eq!(asked[0].1.len(), 2, "the requester and the members");
        assert!(!asked[1].0, "the group's row was kept");
        assert_eq!(asked[1].1.len(), 1, "only the new requester was read");
        assert_eq!(asked[1].1[0].people, [r2]);
        assert!(asked[1].1[0].actor.is_none() && asked[1].1[0].group.is_none());
    }

    #[tokio::test]
    async fn a_change_through_this_node_shows_at_once_and_an_unknown_group_is_not_kept() {
        let mut dir = Dir::new();
        let (req, a1, a2) = (dir.user("req@x"), dir.user("a1@x"), dir.user("a2@x"));
        dir.members = vec![a1];
        let key = GroupKey::Id(dir.group.id.0);
        let kept = Audiences::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        let (_, heard) = ask(&kept, &dir, &loads, Some(&key), &create(req, &key, req)).await;
        assert_eq!(emails(&heard[1]), ["a1@x"]);
        // a2 joins and the requester opts out: the write clears the cache.
        dir.members.push(a2);
        dir.opted_out.push((req, Event::IncidentCreated));
        kept.clear();
        let (_, heard) = ask(&kept, &dir, &loads, Some(&key), &create(req, &key, req)).await;
        assert!(heard[0].is_empty(), "the opted-out requester was told");
        assert_eq!(emails(&heard[1]), ["a1@x", "a2@x"]);

        let unknown = GroupKey::Name("Nobody".into());
        let before = loads.load(Ordering::SeqCst);
        for _ in 0..2 {
            let (group, _) = ask(&kept, &dir, &loads, Some(&unknown), &[]).await;
            assert!(group.is_none());
        }
        assert_eq!(loads.load(Ordering::SeqCst), before + 2, "asked each time");
    }

    #[tokio::test]
    async fn parts_read_before_a_change_committed_are_not_kept_and_parts_expire() {
        let mut dir = Dir::new();
        let req = dir.user("req@x");
        let key = GroupKey::Id(dir.group.id.0);
        let asks = create(req, &key, req);
        let kept = Audiences::new(Duration::from_secs(60));
        let stale = kept
            .get_or_load(Some(&key), &asks, |k, plain| {
                // The change commits while the old answer is being read.
                kept.clear();
                let answer = dir.resolve(k.as_ref(), &plain);
                async move { Ok(answer) }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(emails(&stale.1[0]), ["req@x"], "the caller gets its answer");
        let loads = AtomicUsize::new(0);
        ask(&kept, &dir, &loads, Some(&key), &asks).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1, "but it was not kept");

        for (ttl, wait, reads) in [(20, 40, 2), (0, 0, 2), (60_000, 0, 1)] {
            let kept = Audiences::new(Duration::from_millis(ttl));
            let loads = AtomicUsize::new(0);
            ask(&kept, &dir, &loads, Some(&key), &asks).await;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            ask(&kept, &dir, &loads, Some(&key), &asks).await;
            assert_eq!(loads.load(Ordering::SeqCst), reads, "ttl {ttl} ms");
        }
    }
}
