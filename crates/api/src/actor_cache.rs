//! A short-lived cache of authenticated actors, keyed by the SHA-256 of the
//! bearer credential (its 32 bytes: hex would cost an allocation and a
//! longer key per request). Without it every request costs three queries (session,
//! user, roles) before its own work; with it, a busy client costs them once
//! per `ttl`.
//!
//! Revocation stays immediate on the node that performs it: any write to
//! sessions, users, passwords or API tokens clears the cache (see
//! [`ActorCache::clear`] and `auth::require_auth`), and a lookup that started
//! before a clear never stores its answer. Other nodes notice within `ttl`
//! (default 2 s), which is documented for operators. An entry never outlives
//! its credential's own expiry.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_core::Actor;

/// Entries kept at most; the cache is emptied when it is full.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub struct ActorCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

/// The SHA-256 of a bearer credential.
pub type Key = [u8; 32];

/// Hashes a [`Key`] by folding its words together: a SHA-256 digest is
/// already uniformly spread, so hashing it again would be wasted work, and
/// no caller can choose a digest to collide with another's.
#[derive(Debug, Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    entries: HashMap<Key, (Arc<Actor>, Instant), BuildHasherDefault<DigestHasher>>,
}

impl ActorCache {
    /// A cache keeping actors for `ttl`; zero disables it.
    pub fn new(ttl: Duration) -> Self {
        ActorCache {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached actor for `key`, if still fresh.
    pub fn get(&self, key: &Key) -> Option<Arc<Actor>> {
        if !self.enabled() {
            return None;
        }
        let inner = self.lock();
        match inner.entries.get(key) {
            Some((actor, until)) if *until > Instant::now() => Some(Arc::clone(actor)),
            _ => None,
        }
    }

    /// The generation to pass to [`ActorCache::insert`]; read it before
    /// looking the credential up.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Stores `actor` unless the cache was cleared since `generation` was
    /// read. `valid_for` caps the entry's life (the credential's expiry).
    pub fn insert(
        &self,
        key: Key,
        actor: Arc<Actor>,
        generation: u64,
        valid_for: Option<Duration>,
    ) {
        if !self.enabled() {
            return;
        }
        let life = valid_for.map_or(self.ttl, |v| v.min(self.ttl));
        if life.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(key, (actor, Instant::now() + life));
    }

    /// Forgets every actor; lookups in flight will not store theirs.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::actor::Credential;
    use keel_core::{Role, UserId};

    const K: Key = [7; 32];

    fn actor() -> Arc<Actor> {
        Arc::new(Actor {
            user_id: UserId(uuid::Uuid::nil()),
            username: "alice".into(),
            display_name: "Alice".into(),
            roles: vec![Role::Agent],
            credential: Credential::Session,
        })
    }

    #[test]
    fn a_cached_actor_is_returned_until_it_expires() {
        let cache = ActorCache::new(Duration::from_millis(50));
        let g = cache.generation();
        cache.insert(K, actor(), g, None);
        assert_eq!(
            cache.get(&K).map(|a| a.username.clone()),
            Some("alice".into())
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&K).is_none());
    }

    #[test]
    fn a_lookup_that_started_before_a_clear_is_not_stored() {
        let cache = ActorCache::new(Duration::from_secs(5));
        let g = cache.generation();
        cache.clear();
        cache.insert(K, actor(), g, None);
        assert!(cache.get(&K).is_none());
    }

    #[test]
    fn clearing_forgets_everyone() {
        let cache = ActorCache::new(Duration::from_secs(5));
        cache.insert(K, actor(), cache.generation(), None);
        cache.clear();
        assert!(cache.get(&K).is_none());
    }

    #[test]
    fn an_entry_never_outlives_its_credential() {
        let cache = ActorCache::new(Duration::from_secs(5));
        cache.insert(
            K,
            actor(),
            cache.generation(),
            Some(Duration::from_millis(10)),
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(cache.get(&K).is_none());
    }

    #[test]
    fn every_credential_finds_its_own_actor_among_many() {
        use sha2::{Digest, Sha256};
        let cache = ActorCache::new(Duration::from_secs(5));
        let key = |i: u32| -> Key { Sha256::digest(i.to_le_bytes()).into() };
        for i in 0..2_000u32 {
            let mut a = (*actor()).clone();
            a.username = format!("user{i}");
            cache.insert(key(i), Arc::new(a), cache.generation(), None);
        }
        for i in 0..2_000u32 {
            assert_eq!(
                cache.get(&key(i)).map(|a| a.username.clone()),
                Some(format!("user{i}"))
            );
        }
        assert!(cache.get(&key(2_000)).is_none());
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let cache = ActorCache::new(Duration::ZERO);
        cache.insert(K, actor(), cache.generation(), None);
        assert!(cache.get(&K).is_none());
    }
}
