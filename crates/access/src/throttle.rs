//! Turning away whoever keeps failing: password guesses per account and per
//! address, failed handshakes per address. A key may fail a few times freely; then
//! each further failure doubles how long it must wait, up to a ceiling; a quiet
//! spell forgets it. The table is bounded: when full, the key with the fewest
//! failures (the longest ago among equals) is forgotten first, so a flood of fresh
//! keys cannot evict a persistent guesser.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

/// The key an address is throttled under: an IPv4 address itself, an IPv6
/// address by its /64 (one subscriber's allocation: fresh addresses inside it
/// are free to its holder, so they must not be fresh keys).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
        v4 => v4,
    }
}

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
    /// Judged failures.
    failures: u32,
    /// Tries counted by `attempt` and not yet judged.
    pending: u32,
    /// When the last judged failure happened: only a failure moves it, so a key
    /// that keeps succeeding still forgets its failures on time.
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

    fn is_empty(&self) -> bool {
        self.failures == 0 && self.pending == 0
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

    /// The entry of `key` with failures older than `forget_ms` forgotten.
    fn current(&self, key: &K, now_ms: u64) -> Entry {
        match self.entries.get(key) {
            Some(e) if now_ms >= e.last_ms + self.policy.forget_ms => Entry { failures: 0, ..*e },
            Some(e) => *e,
            None => Entry { failures: 0, pending: 0, last_ms: 0 },
        }
    }

    /// `Ok` if `key` may try now, else how many ms it must still wait.
    pub fn check(&self, key: &K, now_ms: u64) -> Result<(), u64> {
        let until = self.current(key, now_ms).wait_until(&self.policy);
        if now_ms < until {
            Err(until - now_ms)
        } else {
            Ok(())
        }
    }

    /// `check`, and when `key` may try, counts the try as pending until `fail`,
    /// `forgive` or `succeed` judges it. Pending tries count against the free
    /// ones, and past them only one try at a time is judged: concurrent guesses
    /// cannot all pass the same check.
    pub fn attempt(&mut self, key: &K, now_ms: u64) -> Result<(), u64> {
        self.check(key, now_ms)?;
        let entry = self.current(key, now_ms);
        if entry.pending > 0 && entry.failures + entry.pending >= self.policy.free {
            return Err(self.policy.base_ms);
        }
        self.make_room(key, now_ms);
        self.entries.insert(key.clone(), Entry { pending: entry.pending + 1, ..entry });
        Ok(())
    }

    /// Records a failure of `key` (judging one of its pending tries, if any).
    pub fn fail(&mut self, key: &K, now_ms: u64) {
        let entry = self.current(key, now_ms);
        self.make_room(key, now_ms);
        let failures = entry.failures.saturating_add(1);
        let pending = entry.pending.saturating_sub(1);
        self.entries.insert(key.clone(), Entry { failures, pending, last_ms: now_ms });
    }

    /// Takes back a pending try of `key` that was never judged, or succeeded
    /// without clearing the key (a shared address).
    pub fn forgive(&mut self, key: &K) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.pending = entry.pending.saturating_sub(1);
            if entry.is_empty() {
                self.entries.remove(key);
            }
        }
    }

    /// Forgets `key`'s failures (it proved itself), judging one pending try.
    pub fn succeed(&mut self, key: &K) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = 0;
            entry.pending = entry.pending.saturating_sub(1);
            if entry.is_empty() {
                self.entries.remove(key);
            }
        }
    }

    /// Whether `key` failed lately (or has tries pending).
    pub fn remembers(&self, key: &K, now_ms: u64) -> bool {
        !self.current(key, now_ms).is_empty()
    }

    /// Before a new key is added to a full table: forgets the quiet keys, then the
    /// one with the fewest failures (the longest ago among equals).
    fn make_room(&mut self, key: &K, now_ms: u64) {
        if self.entries.contains_key(key) || self.entries.len() < self.policy.capacity {
            return;
        }
        let forget = self.policy.forget_ms;
        self.entries.retain(|_, e| e.pending > 0 || now_ms < e.last_ms + forget);
        if self.entries.len() >= self.policy.capacity {
            let least =
                self.entries.iter().min_by_key(|(_, e)| (e.failures, e.last_ms)).map(|(k, _)| k.clone());
            if let Some(least) = least {
                self.entries.remove(&least);
            }
        }
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
        assert_eq!(t.attempt(&"a", 0), Ok(()), "one was never judged: its try is given back");
        for _ in 0..3 {
            t.fail(&"a", 0);
        }
        // Past the free tries, one at a time, after the wait.
        assert_eq!(t.attempt(&"a", 1000), Ok(()));
        assert!(t.attempt(&"a", 1000).is_err(), "one pending try at a time past the free ones");
        t.succeed(&"a");
        assert!(t.is_empty());
    }

    #[test]
    fn an_ipv6_subscriber_is_one_key() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn successes_do_not_keep_old_failures_alive() {
        let mut t = Throttle::new(POLICY);
        for _ in 0..3 {
            t.fail(&"office", 0);
        }
        // The office keeps logging in successfully: its failures still age out.
        for at in [10_000, 30_000, 59_000] {
            if t.attempt(&"office", at).is_ok() {
                t.forgive(&"office");
            }
        }
        assert_eq!(t.check(&"office", 60_000), Ok(()));
        assert!(!t.remembers(&"office", 60_000));
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
