//! Subscriptions (回流): an organization of this node follows an entry's
//! dataset versions; each new version the node learns of is fetched for it.

use crate::{backend, Store};
use cascade_core::StoreError;
use cascade_protocol::service::EntryRef;
use serde::{Deserialize, Serialize};

/// The sled tree of subscriptions.
const SUBSCRIPTION_TREE: &str = "subscriptions";
/// Most subscriptions a node keeps: each is checked every few seconds.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// One organization following one entry's versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    /// `s{created ms}-{n}`.
    pub id: String,
    /// The entry followed.
    pub entry: EntryRef,
    /// The organization the versions are fetched for.
    pub organization: String,
    /// Who subscribed (actor).
    pub by: String,
    /// Fetch only while no other fetch runs at this node.
    pub idle_only: bool,
    /// Bytes a second a fetch of this subscription may take, at most.
    pub max_bytes_per_second: Option<u64>,
    /// The last version a fetch was started for.
    pub last_version: u64,
    /// When it was made (unix ms).
    pub created_ms: u64,
}

impl Store {
    /// Saves a subscription (flushed: it was acknowledged).
    pub fn save_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let tree = self.db.open_tree(SUBSCRIPTION_TREE).map_err(backend)?;
        let value = serde_json::to_vec(s).map_err(|e| StoreError::Backend(e.to_string()))?;
        tree.insert(s.id.as_bytes(), value).map_err(backend)?;
        tree.flush().map_err(backend)?;
        Ok(())
    }

    /// Removes a subscription.
    pub fn remove_subscription(&self, id: &str) -> Result<(), StoreError> {
        let tree = self.db.open_tree(SUBSCRIPTION_TREE).map_err(backend)?;
        tree.remove(id.as_bytes()).map_err(backend)?;
        tree.flush().map_err(backend)?;
        Ok(())
    }

    /// Every subscription, oldest first (at most `MAX_SUBSCRIPTIONS`).
    pub fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let tree = self.db.open_tree(SUBSCRIPTION_TREE).map_err(backend)?;
        tree.iter()
            .take(MAX_SUBSCRIPTIONS)
            .map(|row| {
                let (key, value) = row.map_err(backend)?;
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}
