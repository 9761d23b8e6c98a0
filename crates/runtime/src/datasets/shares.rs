//! A pool of permits with each key's share of it (a neighbour's chunk streams,
//! an account's content streams): one key cannot take the whole pool.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Keys whose shares are counted at once; beyond, the shares of keys holding
/// nothing are dropped (a key holding permits keeps its count).
const MAX_KEYS: usize = 4096;

/// `size` permits, at most `share` of them for any one key.
pub(crate) struct Shares<K> {
    pool: Arc<Semaphore>,
    share: usize,
    keys: Mutex<HashMap<K, Arc<Semaphore>>>,
}

impl<K: Hash + Eq + Clone> Shares<K> {
    /// A pool of `size` permits, `share` per key.
    pub(crate) fn new(size: usize, share: usize) -> Shares<K> {
        Shares { pool: Arc::new(Semaphore::new(size)), share, keys: Mutex::new(HashMap::new()) }
    }

    /// A permit of the pool and one of `key`'s share, held together; none while
    /// either is taken.
    pub(crate) fn try_acquire(&self, key: &K) -> Option<[OwnedSemaphorePermit; 2]> {
        let own = {
            let mut keys = self.keys.lock().ok()?;
            if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
                keys.retain(|_, s| s.available_permits() < self.share);
            }
            let share = self.share;
            keys.entry(key.clone()).or_insert_with(|| Arc::new(Semaphore::new(share))).clone()
        };
        let own = own.try_acquire_owned().ok()?;
        Some([self.pool.clone().try_acquire_owned().ok()?, own])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_takes_at_most_its_share_and_all_keys_at_most_the_pool() {
        let shares = Shares::new(4, 2);
        let a: Vec<_> = (0..3).filter_map(|_| shares.try_acquire(&"a")).collect();
        assert_eq!(a.len(), 2);
        let b: Vec<_> = (0..2).filter_map(|_| shares.try_acquire(&"b")).collect();
        assert_eq!(b.len(), 2);
        assert!(shares.try_acquire(&"c").is_none(), "the pool is taken");
        drop(a);
        assert!(shares.try_acquire(&"c").is_some());
    }
}
