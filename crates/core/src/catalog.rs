//! Decisions on this node's own catalog: drafts stay local; publishing, updating a
//! published entry and withdrawing are signed deltas. Each change is authorized
//! against the entry as the change finds it (old and new provider) and audited in
//! the group that applies it.

use crate::command::{CommandError, Reply, SavedEntry};
use crate::core::Core;
use crate::store::{OwnWrite, StateStore};
use cascade_access::{Permission, Principal};
use cascade_protocol::catalog::{
    resource_code, validate_resource_code, CatalogEntry, EntryDraft, EntryStatus,
};
use cascade_protocol::limits::{MAX_CODE_TRIES, OWN_ENTRY_CACHE};
use cascade_protocol::{DeltaBody, Scope};

/// A change to this node's own catalog.
#[derive(Debug)]
pub(crate) enum CatalogOp {
    /// Create or update an own entry.
    Save(Box<EntryDraft>),
    /// Publish an own draft or withdrawn entry.
    Publish { code: String, scope: Option<Scope> },
    /// Withdraw an own published entry.
    Withdraw { code: String },
}

impl CatalogOp {
    fn kind(&self) -> &'static str {
        match self {
            CatalogOp::Save(_) => "catalog.save",
            CatalogOp::Publish { .. } => "catalog.publish",
            CatalogOp::Withdraw { .. } => "catalog.withdraw",
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            CatalogOp::Save(draft) => draft.code.as_deref(),
            CatalogOp::Publish { code, .. } | CatalogOp::Withdraw { code } => Some(code),
        }
    }
}

/// What an op comes to: the entry's new state, and whether it is a delta.
struct Outcome {
    saved: SavedEntry,
    emit: bool,
}

/// A calendar date `YYYY-MM-DD` in China Standard Time (UTC+8, no daylight saving),
/// the date a Chinese catalog's publish date (发布日期) is read in.
pub(crate) fn china_date(unix_ms: u64) -> String {
    const UTC8_MS: u64 = 8 * 3600 * 1000;
    let (year, month, day) = cascade_protocol::civil::civil_from_days((unix_ms + UTC8_MS) / 86_400_000);
    format!("{year:04}-{month:02}-{day:02}")
}

impl<S: StateStore> Core<S> {
    /// This node's own entry as it will be after the current group.
    pub(crate) fn own_entry(&mut self, code: &str) -> Result<Option<(Scope, CatalogEntry)>, CommandError> {
        if let Some(own) = self.unstored(|w| w.own.get(code).cloned()) {
            return Ok(Some(own));
        }
        if let Some(own) = self.own_cache.get(code) {
            return Ok(Some(own.clone()));
        }
        let found = self.store.own_entry(code)?;
        if let Some(own) = &found {
            self.cache_own(code, own.clone());
        }
        Ok(found)
    }

    /// Keeps an own entry in memory (bounded: when full, the cache starts over;
    /// every own change passes through the core, so it is never stale).
    fn cache_own(&mut self, code: &str, own: (Scope, CatalogEntry)) {
        if self.own_cache.len() >= OWN_ENTRY_CACHE && !self.own_cache.contains_key(code) {
            self.own_cache.clear();
        }
        self.own_cache.insert(code.to_string(), own);
    }

    pub(crate) fn catalog(&mut self, by: &Principal, op: CatalogOp) -> Result<Reply, CommandError> {
        let kind = op.kind();
        let code = op.code().map(str::to_string);
        let before = match &code {
            Some(code) => self.own_entry(code)?,
            None => None,
        };
        if let (Some(code), None, false) = (&code, &before, matches!(op, CatalogOp::Save(_))) {
            return Err(CommandError::NotFound(format!("no catalog entry {code}")));
        }
        let what = format!("{kind} {}", code.as_deref().unwrap_or("(new)"));
        if let Some((_, old)) = &before {
            self.authorize(by, Permission::EditCatalog { provider: &old.provider }, &what)?;
        }
        if let CatalogOp::Save(draft) = &op {
            self.authorize(by, Permission::EditCatalog { provider: &draft.provider }, &what)?;
        }
        let outcome = self.decide(op, before.clone())?;
        let mut saved = outcome.saved;
        if let Some((_, old)) = &before {
            // Versions of an own entry only go up: a stored-data invariant.
            let newer = if outcome.emit {
                saved.entry.version > old.version
            } else {
                saved.entry.version >= old.version
            };
            if !newer {
                return Err(CommandError::Unavailable(format!(
                    "invariant: {} would go from version {} to {}",
                    old.code, old.version, saved.entry.version
                )));
            }
        }
        let mut own = OwnWrite::Draft { scope: saved.scope, entry: saved.entry.clone() };
        if outcome.emit {
            let mut actions = Vec::new();
            let result =
                self.engine.originate(saved.scope, DeltaBody::Catalog(saved.entry.clone()), &mut actions);
            // Taken even on error: a new log's Join may have been admitted.
            self.take(actions);
            let delta = result.map_err(|e| Self::refused(e, "entry"))?;
            saved.delta_seq = Some(delta.seq);
            let replaces_draft = before.as_ref().is_some_and(|(_, old)| old.status == EntryStatus::Draft);
            own = OwnWrite::Signed { scope: saved.scope, entry: saved.entry.clone(), replaces_draft };
        }
        let code = saved.entry.code.clone();
        self.group.written.own.insert(code.clone(), (saved.scope, saved.entry.clone()));
        self.cache_own(&code, (saved.scope, saved.entry.clone()));
        self.group.batch.own.push((code, own));
        let moved = match &before {
            Some((_, old)) if old.provider != saved.entry.provider => format!(" (was {})", old.provider),
            _ => String::new(),
        };
        let detail = format!(
            "{} v{} {} {} provider {}{moved}",
            saved.entry.code,
            saved.entry.version,
            saved.entry.status.as_str(),
            saved.scope.as_str(),
            saved.entry.provider
        );
        self.audit_by(by, kind, detail);
        Ok(Reply::Entry(Box::new(saved)))
    }

    /// Decides the outcome of `op` given the entry it finds.
    fn decide(
        &mut self,
        op: CatalogOp,
        current: Option<(Scope, CatalogEntry)>,
    ) -> Result<Outcome, CommandError> {
        let publish = |scope, entry| {
            Ok(Outcome { saved: SavedEntry { entry, scope, created: false, delta_seq: None }, emit: true })
        };
        match op {
            CatalogOp::Save(draft) => {
                draft.validate()?;
                if !self.own_orgs.contains_key(&draft.provider) {
                    return Err(CommandError::field(
                        "provider",
                        format!("{} is not an organization registered at {}", draft.provider, self.me),
                    ));
                }
                let Some((scope, old)) = current else {
                    let code = match &draft.code {
                        Some(code) => code.clone(),
                        None => self.fresh_code(&draft.classification)?,
                    };
                    validate_resource_code(&code).map_err(|reason| CommandError::field("code", reason))?;
                    let entry = CatalogEntry::from_draft(*draft, code, 0, EntryStatus::Draft);
                    let saved =
                        SavedEntry { entry, scope: Scope::Federation, created: true, delta_seq: None };
                    return Ok(Outcome { saved, emit: false });
                };
                match old.status {
                    EntryStatus::Draft | EntryStatus::Withdrawn => {
                        let entry =
                            CatalogEntry::from_draft(*draft, old.code, old.version, EntryStatus::Draft);
                        Ok(Outcome {
                            saved: SavedEntry { entry, scope, created: false, delta_seq: None },
                            emit: false,
                        })
                    }
                    EntryStatus::Published => {
                        let published = old.publish_date.clone();
                        let mut entry = CatalogEntry::from_draft(
                            *draft,
                            old.code,
                            old.version + 1,
                            EntryStatus::Published,
                        );
                        entry.publish_date = entry.publish_date.or(published);
                        publish(scope, entry)
                    }
                }
            }
            CatalogOp::Publish { code, scope: requested } => {
                let (scope, mut entry) =
                    current.ok_or_else(|| CommandError::NotFound(format!("no catalog entry {code}")))?;
                if entry.status == EntryStatus::Published {
                    return Err(CommandError::Conflict(format!("{code} is already published")));
                }
                let scope = match (entry.version, requested) {
                    (0, Some(requested)) => requested,
                    (_, Some(requested)) if requested != scope => {
                        return Err(CommandError::Conflict(format!(
                            "{code} was published with scope {}; the scope cannot change",
                            scope.as_str()
                        )))
                    }
                    _ => scope,
                };
                if scope == Scope::Province && self.me.province().is_none() {
                    return Err(CommandError::Conflict("the national node has no province scope".into()));
                }
                entry.validate()?;
                entry.version += 1;
                entry.status = EntryStatus::Published;
                if entry.publish_date.is_none() {
                    entry.publish_date = Some(china_date(self.now_ms));
                }
                publish(scope, entry)
            }
            CatalogOp::Withdraw { code } => {
                let (scope, mut entry) =
                    current.ok_or_else(|| CommandError::NotFound(format!("no catalog entry {code}")))?;
                if entry.status != EntryStatus::Published {
                    return Err(CommandError::Conflict(format!("{code} is not published")));
                }
                entry.version += 1;
                entry.status = EntryStatus::Withdrawn;
                publish(scope, entry)
            }
        }
    }

    /// The next generated resource code not already used by an own entry.
    fn fresh_code(&mut self, classification: &str) -> Result<String, CommandError> {
        for _ in 0..MAX_CODE_TRIES {
            self.meta.code_seq += 1;
            self.write_meta();
            let code = resource_code(classification, self.meta.code_seq);
            if self.own_entry(&code)?.is_none() {
                return Ok(code);
            }
        }
        Err(CommandError::Conflict("no free resource code; give one explicitly".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::china_date;

    #[test]
    fn dates_are_read_in_china_standard_time() {
        assert_eq!(china_date(0), "1970-01-01");
        // 2024-02-29 15:59:59 UTC is 23:59:59 in Beijing; a second later it is March.
        assert_eq!(china_date(1_709_222_399_000), "2024-02-29");
        assert_eq!(china_date(1_709_222_400_000), "2024-03-01");
        assert_eq!(china_date(4_102_444_800_000 - 8 * 3_600_000), "2100-01-01");
    }
}
