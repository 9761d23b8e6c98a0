//! Turning away whoever keeps failing: password guesses per account and per
//! address, failed handshakes per address. A key may fail a few times freely; then
//! each further failure doubles how long it must wait, up to a ceiling; a quiet
//! spell forgets it. The table is bounded: when full, the key with the fewest
//! failures (the longest ago among equals) is forgotten first, so a flood of fresh
//! keys cannot evict a persistent guesser.

use std::collections::BTreeMap;

/// The rules of one throttle.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Failures allowed before any wait.
    pub free: u32,
    /// The first wait (ms); each further failure doubles it.
    pub base_ms: u64,
    /// The longest wait (ms).
    pub max_ms: u64,
    /// A key that has not failed for this long starts afresh (ms).
    pub forget_ms: u64,
    /// Most keys remembered.
    pub capacity: usize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_ms: u64,
}

impl Entry {
    fn wait_until(&self, policy: &Policy) -> u64 {
        if self.failures < policy.free {
            return 0;
        }
        let doublings = (self.failures - policy.free).min(32);
        self.last_ms + policy.base_ms.saturating_mul(1u64 << doublings).min(policy.max_ms)
    }
}

/// Failures by key.
#[derive(Debug)]
pub struct Throttle<K> {
    policy: Policy,
    entries: BTreeMap<K, Entry>,
}

impl<K: Ord + Clone> Throttle<K> {
    /// An empty table.
    pub fn new(policy: Policy) -> Throttle<K> {
        Throttle { policy, entries: BTreeMap::new() }
    }

    /// `Ok` if `key` may try now, else how many ms it must still wait.
    pub fn check(&self, key: &K, now_ms: u64) -> Result<(), u64> {
        match self.entries.get(key) {
            Some(entry) if now_ms < entry.last_ms + self.policy.forget_ms => {
                let until = entry.wait_until(&self.policy);
                if now_ms < until {
                    Err(until - now_ms)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Records a failure of `key`.
    pub fn fail(&mut self, key: &K, now_ms: u64) {
        let forget = self.policy.forget_ms;
        if let Some(entry) = self.entries.get_mut(key) {
            if now_ms >= entry.last_ms + forget {
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.last_ms = now_ms;
            return;
        }
        if self.entries.len() >= self.policy.capacity {
            self.entries.retain(|_, e| now_ms < e.last_ms + forget);
        }
        if self.entries.len() >= self.policy.capacity {
            let least =
                self.entries.iter().min_by_key(|(_, e)| (e.failures, e.last_ms)).map(|(k, _)| k.clone());
            if let Some(least) = least {
                self.entries.remove(&least);
            }
        }
        self.entries.insert(key.clone(), Entry { failures: 1, last_ms: now_ms });
    }

    /// `check`, and when `key` may try, counts the try as a failure at once (taken
    /// back by `forgive` or `succeed` if it succeeds): concurrent tries cannot all
    /// pass the same check while the first is still being judged.
    pub fn attempt(&mut self, key: &K, now_ms: u64) -> Result<(), u64> {
        self.check(key, now_ms)?;
        self.fail(key, now_ms);
        Ok(())
    }

    /// Takes back one failure counted by `attempt` (that try succeeded).
    pub fn forgive(&mut self, key: &K) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
            if entry.failures == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Forgets `key`'s failures (it proved itself).
    pub fn succeed(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy { free: 3, base_ms: 1000, max_ms: 8000, forget_ms: 60_000, capacity: 4 };

    #[test]
    fn a_few_failures_are_free_then_waits_double_up_to_the_ceiling() {
        let mut t = Throttle::new(POLICY);
        for _ in 0..3 {
            assert_eq!(t.check(&"a", 0), Ok(()));
            t.fail(&"a", 0);
        }
        assert_eq!(t.check(&"a", 0), Err(1000));
        assert_eq!(t.check(&"a", 1000), Ok(()));
        t.fail(&"a", 1000);
        assert_eq!(t.check(&"a", 1000), Err(2000));
        for _ in 0..10 {
            t.fail(&"a", 1000);
        }
        assert_eq!(t.check(&"a", 1000), Err(8000), "capped");
        assert_eq!(t.check(&"b", 1000), Ok(()), "others are not held up");
        // A quiet spell forgets; a success forgets at once.
        assert_eq!(t.check(&"a", 61_000), Ok(()));
        t.fail(&"a", 61_000);
        assert_eq!(t.check(&"a", 61_000), Ok(()), "starts afresh");
        t.succeed(&"a");
        assert!(t.is_empty());
    }

    #[test]
    fn an_attempt_counts_before_it_is_judged_and_a_success_takes_it_back() {
        let mut t = Throttle::new(POLICY);
        // Concurrent guesses: each attempt is counted as it starts.
        for _ in 0..3 {
            assert_eq!(t.attempt(&"a", 0), Ok(()));
        }
        assert_eq!(t.attempt(&"a", 0), Err(1000), "the fourth waits though none was judged yet");
        t.forgive(&"a");
        assert_eq!(t.attempt(&"a", 0), Ok(()), "one succeeded: its try is given back");
        for _ in 0..3 {
            t.forgive(&"a");
        }
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_a_flood_of_fresh_keys_keeps_the_persistent_guesser() {
        let mut t = Throttle::new(POLICY);
        for _ in 0..5 {
            t.fail(&1000, 50);
        }
        for key in 0..100 {
            t.fail(&key, 100 + key);
        }
        assert_eq!(t.len(), POLICY.capacity);
        assert!(t.check(&1000, 100).is_err(), "still held up after 100 fresh keys");
        assert_eq!(t.check(&0, 200), Ok(()), "a key seen once was the one forgotten");
    }
}
