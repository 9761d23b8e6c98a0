//! The simulated people's dataset work: publish versions, fetch them with the
//! entry grants they hold (now and then with a stretched grant, as an adversary
//! would), and the chunk requests that carry them hop by hop (see
//! `crate::datasets`).

use super::{store_of, Purpose, Simulator};
use crate::datasets::Job;
use cascade_access::Principal;
use cascade_chunks::list::{self, ChunkRef};
use cascade_chunks::{ChunkStore, Hash};
use cascade_core::{admit_chunk, Command, StateStore};
use cascade_protocol::call::call_next_hop;
use cascade_protocol::dataset::{ChunkRequest, Manifest};
use cascade_protocol::routed::Route;
use cascade_protocol::service::EntryRef;
use cascade_protocol::workflow::{Grant, Resource};
use cascade_protocol::NodeId;

/// Largest simulated chunk: above one 16 KiB group, so that chunks of several
/// groups are checked group by group.
const MAX_SIM_CHUNK: usize = 40_000;

/// Why a chunk request did not bring its chunk.
enum Stop {
    /// Refused for good (403): the fetch fails.
    Refused,
    /// A node or link was down, or a copy was bad: try again later.
    Later,
}

impl Simulator {
    /// `id`'s catalogers publish a version of one of its published entries: the
    /// previous version's chunks with one replaced, or a few new ones. False if
    /// it has no published entry.
    pub(super) fn publish_version(&mut self, id: NodeId) -> bool {
        // Mostly an entry someone was granted: its data is what gets fetched.
        let granted: Vec<String> = self
            .nodes
            .get(&id)
            .and_then(store_of)
            .map(|s| {
                s.grants()
                    .filter_map(|g| match &g.grant.resource {
                        Resource::Entry(e) if e.origin == id => Some(e.code.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let code = match granted.is_empty() || self.workload.one_in(4) {
            true => self.workload.own_published(id),
            false => Some(granted[self.workload.below(granted.len())].clone()),
        };
        let Some(code) = code else { return false };
        let key = (id, code.clone());
        let mut chunks = self.datasets.last.get(&key).cloned().unwrap_or_default();
        if chunks.is_empty() {
            for _ in 0..=self.workload.below(4) {
                let len = 1 + self.workload.below(MAX_SIM_CHUNK);
                chunks.push(self.workload.bytes(len));
            }
        } else {
            let i = self.workload.below(chunks.len());
            let len = 1 + self.workload.below(MAX_SIM_CHUNK);
            chunks[i] = self.workload.bytes(len);
        }
        let store = self.datasets.store(id);
        let mut refs = Vec::new();
        let mut whole = blake3::Hasher::new();
        for c in &chunks {
            let hash = *blake3::hash(c).as_bytes();
            if let Err(e) = store.put(&hash, c) {
                self.failures.push(format!("{id}: storing a chunk it cut: {e}"));
                return true;
            }
            whole.update(c);
            refs.push(ChunkRef { hash, len: c.len() as u32 });
        }
        let mut lists = Vec::new();
        for piece in list::encode(&refs) {
            let hash = *blake3::hash(&piece).as_bytes();
            if store.put(&hash, &piece).is_err() {
                return true;
            }
            lists.push(hash);
        }
        let content_hash = *whole.finalize().as_bytes();
        let content = Manifest {
            entry: EntryRef { origin: id, code: code.clone() },
            version: 0,
            previous: None,
            size: chunks.iter().map(|c| c.len() as u64).sum(),
            content_hash,
            media_type: "application/octet-stream".into(),
            csv: None,
            chunks: refs.len() as u64,
            lists,
            published_ms: 0,
        };
        self.datasets.last.insert(key, chunks);
        let command = Command::PublishVersion { code, content: Box::new(content) };
        self.submit(id, Principal::node(), command, Purpose::Dataset(content_hash));
        true
    }

    /// The origin acknowledged publishing `manifest`, cut with `content_hash`.
    pub(super) fn published_version(&mut self, id: NodeId, manifest: &Manifest, content_hash: Hash) {
        self.datasets.tally.published += 1;
        if manifest.content_hash != content_hash || manifest.entry.origin != id {
            self.failures.push(format!("{id} signed a manifest that is not the content it cut"));
        }
        let key = (id, manifest.entry.code.clone(), manifest.version);
        self.datasets.ledger.insert(key, content_hash);
    }

    /// `id`'s consumers fetch the latest version of an entry they hold a grant
    /// for (now and then asking for a chunk with a stretched grant instead).
    pub(super) fn fetch_version(&mut self, id: NodeId) {
        let Some(store) = self.nodes.get(&id).filter(|n| n.core.is_some()).and_then(store_of) else { return };
        let now = self.unix_ms() / 1000;
        let held: Vec<(Grant, Manifest)> = store
            .grants()
            .filter(|g| g.grant.grantee_node == id && g.is_valid(now))
            .filter_map(|g| match &g.grant.resource {
                Resource::Entry(e) => Some((g.grant.clone(), store.manifest(e.origin, &e.code, None).ok()??)),
                Resource::Service(_) => None,
            })
            .collect();
        if held.is_empty() {
            return;
        }
        let (grant, manifest) = held[self.workload.below(held.len())].clone();
        if self.workload.one_in(6) {
            // An adversary's request: the grant's expiry pushed a year on.
            let mut stretched = grant;
            stretched.expires_at += 365 * 86_400;
            let mut job =
                Job { consumer: id, manifest: manifest.clone(), grant: stretched, from_origin: false };
            let _ = self.request(&mut job, manifest.lists.first().copied().unwrap_or_default());
            return;
        }
        let busy = self.datasets.jobs.iter().any(|j| j.consumer == id && j.manifest == manifest)
            || self.datasets.done.iter().any(|(c, m)| *c == id && *m == manifest);
        if !busy {
            let job =
                Job { consumer: id, manifest: manifest.clone(), grant: grant.clone(), from_origin: false };
            let command =
                Command::StartFetch { grant: grant.id, entry: manifest.entry, version: manifest.version };
            self.submit(id, Principal::node(), command, Purpose::Fetch(Box::new(job)));
        }
    }

    /// Advances `id`'s fetches under way (after a crash, a lost link or a bad
    /// copy, with what is still missing).
    pub(super) fn advance_fetches(&mut self, id: NodeId) {
        if !self.alive(id) {
            return;
        }
        let jobs = std::mem::take(&mut self.datasets.jobs);
        let mut kept = Vec::new();
        for mut job in jobs {
            if job.consumer != id {
                kept.push(job);
                continue;
            }
            match self.run_fetch(&mut job) {
                Ok(true) => self.datasets.done.push((job.consumer, job.manifest)),
                Ok(false) | Err(Stop::Later) => kept.push(job),
                Err(Stop::Refused) => {}
            }
        }
        kept.append(&mut self.datasets.jobs);
        self.datasets.jobs = kept;
    }

    /// Brings what `job` lacks; true once the content is whole and matches its
    /// manifest's hash.
    fn run_fetch(&mut self, job: &mut Job) -> Result<bool, Stop> {
        let id = job.consumer;
        for piece in job.manifest.lists.clone() {
            if !self.datasets.store(id).has(&piece).unwrap_or(false) {
                self.request(job, piece)?;
            }
        }
        let Some(list) = self.datasets.chunk_list(id, &job.manifest) else { return Ok(false) };
        for c in list {
            if !self.datasets.store(id).has(&c.hash).unwrap_or(false) {
                self.request(job, c.hash)?;
            }
        }
        let content = self.datasets.content(id, &job.manifest).ok_or(Stop::Later)?;
        if *blake3::hash(&content).as_bytes() != job.manifest.content_hash {
            self.failures
                .push(format!("{id}: a fetch of {} reassembled to other content", job.manifest.entry.code));
            return Err(Stop::Refused);
        }
        self.datasets.tally.fetched += 1;
        Ok(true)
    }

    /// One chunk request of `job` for `hash`, hop by hop toward the origin, and
    /// the chunk back down the same path.
    fn request(&mut self, job: &mut Job, hash: Hash) -> Result<(), Stop> {
        let origin = job.manifest.entry.origin;
        let req = ChunkRequest {
            entry: job.manifest.entry.clone(),
            version: job.manifest.version,
            hash,
            requester: job.consumer,
            grant: Some(job.grant.clone()),
            from_origin: job.from_origin,
        };
        let now = self.unix_ms() / 1000;
        // Up: each hop decides, until one holds the chunk and may serve it.
        let mut path: Vec<(NodeId, bool)> = Vec::new();
        let mut at = job.consumer;
        let source = loop {
            let Route::Via(hop) = call_next_hop(at, origin) else { return Err(Stop::Later) };
            if !self.path_is_up(at, hop) {
                self.datasets.tally.interrupted += 1;
                return Err(Stop::Later);
            }
            let Some(core) = self.nodes.get(&hop).and_then(|n| n.core.as_ref()) else {
                return Err(Stop::Later);
            };
            let signed = job.grant.verify(core.engine().keys_of(origin));
            let manifest = match admit_chunk(core.store(), hop, &req, signed, now) {
                Ok(m) => m,
                Err(refusal) => {
                    self.datasets.tally.refused += 1;
                    return Err(if refusal.status == 403 { Stop::Refused } else { Stop::Later });
                }
            };
            let cacheable = match self.datasets.in_version(hop, &manifest, &hash) {
                Some(false) => {
                    self.datasets.tally.refused += 1;
                    return Err(Stop::Refused);
                }
                known => known.is_some(),
            };
            path.push((hop, cacheable));
            let holds = self.datasets.store(hop).has(&hash).unwrap_or(false);
            if holds && (hop == origin || (cacheable && !req.from_origin)) {
                break hop;
            }
            if hop == origin {
                return Err(Stop::Later);
            }
            at = hop;
        };
        self.check_served(&req, source);
        // Down: each hop checks the chunk, keeps it when it may serve it later,
        // and passes it on; a tampering relay alters what it passes on.
        let Ok(Some(mut reader)) = self.datasets.store(source).reader(&hash) else { return Err(Stop::Later) };
        let verifier = reader.verifier().clone();
        let mut bytes = Vec::new();
        if reader.next_groups(usize::MAX, &mut bytes).is_err() {
            return Err(Stop::Later);
        }
        let below: Vec<(NodeId, bool)> =
            path[..path.len() - 1].iter().rev().copied().chain([(job.consumer, true)]).collect();
        let mut sender = source;
        for (receiver, keep) in below {
            let lies = self.tamper.contains(&(sender, receiver))
                || self.datasets.tamper.contains(&(sender, receiver));
            if lies && !bytes.is_empty() {
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
            }
            let checked = (|| {
                let store = self.datasets.store(receiver);
                let mut writer = store.writer(verifier.clone()).ok()?;
                writer.groups(&bytes).ok()?;
                match keep {
                    true => writer.commit().ok(),
                    false => Some(()),
                }
            })();
            if checked.is_none() {
                self.datasets.tally.caught += 1;
                job.from_origin = true;
                return Err(Stop::Later);
            }
            sender = receiver;
        }
        self.datasets.tally.chunks_moved += 1;
        if source != origin {
            self.datasets.tally.from_cache += 1;
        }
        Ok(())
    }

    /// A chunk was served for `req` by `source`: the grant it carried must be
    /// valid by the simulator's own ledger (signed by the origin, for the
    /// requesting node and this entry, current, and not revoked before now).
    fn check_served(&mut self, req: &ChunkRequest, source: NodeId) {
        let Some(grant) = &req.grant else { return };
        let origin = req.entry.origin;
        let now_ms = self.unix_ms();
        let keys: Vec<_> = self
            .nodes
            .get(&origin)
            .and_then(|n| n.core.as_ref().or(None))
            .map(|c| c.engine().keys_of(origin).copied().collect())
            .unwrap_or_default();
        let mut wrong = Vec::new();
        if !keys.is_empty() && !grant.verify(&keys) {
            wrong.push("not signed by the origin".to_string());
        }
        if grant.grantee_node != req.requester {
            wrong.push(format!("held by {}", grant.grantee_node));
        }
        if grant.resource != Resource::Entry(req.entry.clone()) {
            wrong.push(format!("for {}", grant.resource));
        }
        if !grant.is_current(now_ms / 1000) {
            wrong.push("expired".into());
        }
        if source == origin {
            if let Some(at) = self.calls.revoked_at(&grant.id).filter(|at| *at <= now_ms) {
                wrong.push(format!("revoked at {at}"));
            }
        }
        if !wrong.is_empty() {
            self.datasets.served_wrongly.push(format!(
                "{source} served a chunk of {}:{} to {} with grant {}: {}",
                origin,
                req.entry.code,
                req.requester,
                grant.id,
                wrong.join(", ")
            ));
        }
    }
}
