//! Subscriptions (回流): an organization follows an entry's dataset versions,
//! and each new version this node learns of is fetched for it with the grant it
//! holds — only while no other fetch runs, if it asked, and within its
//! bandwidth cap. National data flows down this way to the provinces and
//! cities that hold grants.

use crate::driver::unix_millis;
use crate::node::Node;
use cascade_access::{Principal, Role};
use cascade_core::{Command, CommandError, GrantRecord, Reply, StateStore};
use cascade_protocol::service::EntryRef;
use cascade_protocol::workflow::Resource;
use cascade_store::{Subscription, MAX_SUBSCRIPTIONS};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// How often subscriptions are checked for versions not fetched yet: a new
/// version starts flowing down within this of reaching the node.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// What a subscriber asks for.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionRequest {
    /// The grant to fetch with (default: the organization's valid grant).
    pub grant: Option<String>,
    /// Fetch only while no other fetch runs at this node.
    pub idle_only: bool,
    /// Bytes a second a fetch may take, at most.
    pub max_bytes_per_second: Option<u64>,
}

impl Node {
    /// A valid grant `org` holds at this node for `entry` (the given one if any).
    pub(crate) async fn entry_grant_of(
        &self,
        org: Option<String>,
        entry: &EntryRef,
    ) -> Result<Option<String>, CommandError> {
        let me = self.identity().id;
        let e = entry.clone();
        let held = self
            .read(crate::query::ReadKind::Directory, move |store| {
                store.grants_for(me, org.as_deref(), &Resource::Entry(e))
            })
            .await?;
        let now = unix_millis() / 1000;
        Ok(held.iter().find(|r: &&GrantRecord| r.is_valid(now)).map(|r| r.grant.id.clone()))
    }

    /// Subscribes `by`'s organization to `entry`'s versions (allowed with a
    /// valid grant for it; audited).
    pub async fn subscribe_versions(
        &self,
        by: Principal,
        entry: EntryRef,
        ask: SubscriptionRequest,
    ) -> Result<Subscription, CommandError> {
        let org = by.organization.clone();
        let grant = match ask.grant {
            Some(g) => g,
            None => self.entry_grant_of(org.clone(), &entry).await?.ok_or_else(|| {
                CommandError::Forbidden(format!(
                    "no valid grant for {}:{} held here",
                    entry.origin, entry.code
                ))
            })?,
        };
        let command = Command::Subscribe { grant, entry: entry.clone(), on: true };
        let record = match self.execute(by.clone(), command).await? {
            Reply::Grant(record) => *record,
            other => return Err(crate::api::unexpected(other)),
        };
        let subs = self.read(crate::query::ReadKind::Directory, |store| store.subscriptions()).await?;
        let organization = record.grant.grantee.clone();
        if let Some(same) = subs.iter().find(|s| s.entry == entry && s.organization == organization) {
            return Ok(same.clone());
        }
        if subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(CommandError::Busy(format!(
                "this node follows {MAX_SUBSCRIPTIONS} subscriptions already"
            )));
        }
        let created_ms = unix_millis();
        let n = self.datasets().next_job.fetch_add(1, Ordering::Relaxed);
        let sub = Subscription {
            id: format!("s{created_ms:013}-{n}"),
            entry,
            organization,
            by: by.actor,
            idle_only: ask.idle_only,
            max_bytes_per_second: ask.max_bytes_per_second,
            last_version: 0,
            created_ms,
        };
        let saved = sub.clone();
        self.read(crate::query::ReadKind::Directory, move |store| store.save_subscription(&saved)).await?;
        Ok(sub)
    }

    /// The subscriptions `by` may see: all for an administrator or auditor,
    /// else its organization's.
    pub async fn version_subscriptions(&self, by: &Principal) -> Result<Vec<Subscription>, CommandError> {
        let all = self.read(crate::query::ReadKind::Directory, |store| store.subscriptions()).await?;
        let sees_all = by.has(Role::Admin) || by.has(Role::Auditor);
        Ok(all
            .into_iter()
            .filter(|s| sees_all || by.organization.as_deref() == Some(&s.organization))
            .collect())
    }

    /// Ends a subscription of `by`'s organization (or any, for an administrator).
    pub async fn unsubscribe_versions(&self, by: Principal, id: String) -> Result<(), CommandError> {
        let all = self.read(crate::query::ReadKind::Directory, |store| store.subscriptions()).await?;
        let sub = all
            .into_iter()
            .find(|s| s.id == id)
            .filter(|s| by.has(Role::Admin) || by.organization.as_deref() == Some(&s.organization))
            .ok_or_else(|| CommandError::NotFound(format!("no subscription {id} of yours")))?;
        let grant =
            self.entry_grant_of(Some(sub.organization.clone()), &sub.entry).await?.unwrap_or_default();
        self.execute(by, Command::Subscribe { grant, entry: sub.entry, on: false }).await?;
        self.read(crate::query::ReadKind::Directory, move |store| store.remove_subscription(&id)).await
    }

    /// Starts a fetch for each subscription whose entry has a version this node
    /// knows and has not fetched for it yet.
    async fn follow_once(&self) -> Result<(), CommandError> {
        let subs = self.read(crate::query::ReadKind::Directory, |store| store.subscriptions()).await?;
        for mut sub in subs {
            let e = sub.entry.clone();
            let latest = self
                .read(crate::query::ReadKind::Directory, move |store| store.manifest(e.origin, &e.code, None))
                .await?;
            let Some(latest) = latest.filter(|m| m.version > sub.last_version) else { continue };
            if sub.idle_only && self.datasets().running_jobs() > 0 {
                continue;
            }
            let Some(grant) = self.entry_grant_of(Some(sub.organization.clone()), &sub.entry).await? else {
                debug!(subscription = %sub.id, "no valid grant: version {} waits", latest.version);
                continue;
            };
            let by = Principal {
                actor: format!("subscription:{}", sub.id),
                username: None,
                organization: Some(sub.organization.clone()),
                roles: Vec::new(),
            };
            let started = self
                .start_fetch_capped(
                    by,
                    sub.entry.clone(),
                    latest.version,
                    Some(grant),
                    sub.max_bytes_per_second,
                )
                .await;
            match started {
                Ok(job) => {
                    info!(subscription = %sub.id, job = %job.job.id, version = latest.version, "fetching a new version");
                    sub.last_version = latest.version;
                    self.read(crate::query::ReadKind::Directory, move |store| store.save_subscription(&sub))
                        .await?;
                }
                Err(e) => debug!(subscription = %sub.id, error = %e, "new version not fetched yet"),
            }
        }
        Ok(())
    }
}

/// Follows the node's subscriptions until it stops.
pub(crate) async fn follow_subscriptions(node: Node, cancel: CancellationToken) {
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(e) = node.follow_once().await {
            debug!(error = %e, "subscriptions not followed this time");
        }
    }
}
