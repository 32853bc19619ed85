//! Failed-login throttling per account and per client address. Kept in
//! memory per node: a restart forgives, and each node throttles alone (the
//! limits are per node).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sliding-window failure counters.
#[derive(Debug)]
pub struct LoginThrottle {
    per_account: usize,
    per_address: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(per_account: usize, per_address: usize, window: Duration) -> Self {
        LoginThrottle {
            per_account,
            per_address,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(account: &str, address: &str) -> [(String, bool); 2] {
        [
            (format!("a:{}", account.trim().to_lowercase()), true),
            (format!("i:{address}"), false),
        ]
    }

    /// `Err(seconds)` when either counter is full, with how long until the
    /// oldest failure leaves the window.
    pub fn check(&self, account: &str, address: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return Ok(());
        };
        let mut wait = 0u64;
        for (key, is_account) in Self::keys(account, address) {
            let limit = if is_account {
                self.per_account
            } else {
                self.per_address
            };
            if let Some(q) = map.get_mut(&key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                if let Some(oldest) = q.front().filter(|_| q.len() >= limit) {
                    let left = self.window.saturating_sub(now.duration_since(*oldest));
                    wait = wait.max(left.as_secs().max(1));
                }
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    pub fn record_failure(&self, account: &str, address: &str) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() > 100_000 {
            // Bound memory under a spray of distinct names: drop idle entries.
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for (key, _) in Self::keys(account, address) {
            let q = map.entry(key).or_default();
            q.push_back(now);
            if q.len() > 1000 {
                q.pop_front();
            }
        }
    }

    /// A successful login clears the account's counter (not the address's).
    pub fn record_success(&self, account: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&format!("a:{}", account.trim().to_lowercase()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_counter_engages_and_releases() {
        let t = LoginThrottle::new(3, 100, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(t.check("alice", "1.2.3.4").is_ok());
            t.record_failure("alice", "1.2.3.4");
        }
        assert!(
            t.check("ALICE", "5.6.7.8").is_err(),
            "per account, any address"
        );
        assert!(t.check("bob", "1.2.3.4").is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.check("alice", "1.2.3.4").is_ok());
    }

    #[test]
    fn the_address_counter_covers_many_accounts() {
        let t = LoginThrottle::new(100, 3, Duration::from_secs(60));
        for i in 0..3 {
            t.record_failure(&format!("user{i}"), "9.9.9.9");
        }
        assert!(t.check("someone", "9.9.9.9").is_err());
        assert!(t.check("someone", "8.8.8.8").is_ok());
    }
}
