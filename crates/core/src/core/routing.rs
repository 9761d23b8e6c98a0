//! Routed messages in the core: signed at their origin, taken over by each hop in
//! a group commit (stored for the next hop, and their ids remembered) before the
//! hop before is acknowledged, resent until the next hop acknowledges them, and
//! delivered once at the node they are for.

use super::Core;
use crate::command::CommandError;
use crate::core::Effect;
use crate::store::{RelayRecord, StateStore};
use cascade_protocol::limits::{MAX_ACK_IDS, MAX_ROUTED_PENDING_PER_HOP, ROUTED_RESEND_MS, ROUTED_WINDOW};
use cascade_protocol::routed::{next_hop, MessageId, Route, Routed, RoutedBody, RoutedError};
use cascade_protocol::{Frame, Misbehaviour, NodeId};
use std::collections::VecDeque;
use std::sync::Arc;

/// The messages waiting for one next hop, oldest first; the first `in_flight` of
/// them were sent on the current link and wait for its acknowledgement.
#[derive(Default)]
pub(crate) struct HopQueue {
    queue: VecDeque<Arc<Routed>>,
    in_flight: usize,
    /// When the window now in flight was sent (ms).
    sent_at_ms: u64,
}

impl<S: StateStore> Core<S> {
    fn parent_of(&self, id: NodeId) -> Option<Option<NodeId>> {
        self.engine.member(id).map(|m| m.parent)
    }

    fn route(&self, to: NodeId) -> Route {
        next_hop(self.me, to, |id| self.parent_of(id))
    }

    /// Restores the messages waiting for their next hops (at boot).
    pub(super) fn restore_outbox(&mut self, outbox: Vec<(NodeId, Arc<Routed>)>) {
        for (hop, message) in outbox {
            self.outbox.entry(hop).or_default().queue.push_back(message);
        }
    }

    /// How many routed messages wait for each next hop.
    pub fn routed_pending(&self) -> std::collections::BTreeMap<NodeId, u64> {
        self.outbox.iter().map(|(hop, q)| (*hop, q.queue.len() as u64)).collect()
    }

    /// Whether a message to `to` can be sent now: callers check before they write
    /// anything, so that a decision is never half made.
    pub(crate) fn can_send(&self, to: NodeId) -> Result<(), CommandError> {
        match self.route(to) {
            Route::Unroutable => Err(CommandError::Conflict(format!("no route to node {to}"))),
            Route::Here => Ok(()),
            Route::Via(hop)
                if self.outbox.get(&hop).is_some_and(|q| q.queue.len() >= MAX_ROUTED_PENDING_PER_HOP) =>
            {
                Err(CommandError::Busy(format!(
                    "{MAX_ROUTED_PENDING_PER_HOP} messages already wait for node {hop}"
                )))
            }
            Route::Via(_) => Ok(()),
        }
    }

    /// Signs a message from this node to `to` and takes it over in this group.
    pub(crate) fn send_routed(&mut self, to: NodeId, body: RoutedBody) -> Result<MessageId, CommandError> {
        self.can_send(to)?;
        self.meta.routed_seq += 1;
        self.write_meta();
        let id = MessageId { from: self.me, seq: self.meta.routed_seq };
        let message = Routed::sign(&self.key, id, to, self.now_s(), body)
            .map_err(|e| CommandError::Unavailable(format!("invariant: own routed message refused: {e}")))?;
        self.routed.sent += 1;
        self.take_over(Arc::new(message), None);
        Ok(id)
    }

    fn was_seen(&self, id: MessageId) -> Result<bool, crate::store::StoreError> {
        if self.unstored(|w| w.seen.contains(&id).then_some(())).is_some() {
            return Ok(true);
        }
        self.store.seen(id)
    }

    fn mark_seen(&mut self, message: &Routed) {
        self.group.written.seen.insert(message.id);
        self.group.batch.seen.push((message.id, message.expires_at()));
    }

    /// Takes a message over: delivers it here, or keeps it for its next hop. The
    /// hop it came from (if any) is acknowledged once this group is durable.
    fn take_over(&mut self, message: Arc<Routed>, prev: Option<NodeId>) {
        match self.was_seen(message.id) {
            Ok(false) => {}
            Ok(true) => {
                self.routed.duplicates += 1;
                if let Some(prev) = prev {
                    self.group.acks.entry(prev).or_default().push(message.id);
                }
                return;
            }
            // Not acknowledged: the hop before keeps it and resends it.
            Err(_) => return,
        }
        match self.route(message.to) {
            Route::Here => {
                if !self.deliver(&message) {
                    // Not acknowledged: it comes again after what it follows.
                    return;
                }
                self.mark_seen(&message);
                self.routed.delivered += 1;
            }
            Route::Via(hop) => {
                let waiting = self.outbox.get(&hop).map_or(0, |q| q.queue.len());
                if prev.is_some() && waiting >= MAX_ROUTED_PENDING_PER_HOP {
                    // Full: not acknowledged, so the hop before keeps it for later.
                    return;
                }
                self.mark_seen(&message);
                if prev.is_some() {
                    self.routed.relayed += 1;
                    self.group.batch.relayed.push(RelayRecord::of(&message, self.now_ms));
                }
                self.group.batch.outbox.push((hop, message.clone()));
                self.outbox.entry(hop).or_default().queue.push_back(message.clone());
                self.fill_window(hop);
            }
            Route::Unroutable => {
                self.mark_seen(&message);
                self.routed.dropped += 1;
                let detail = format!("{} for {}: no route", message.id, message.to);
                self.audit("node", None, "routed.undeliverable", detail);
            }
        }
        if let Some(prev) = prev {
            self.group.acks.entry(prev).or_default().push(message.id);
        }
    }

    /// Sends what the window toward `hop` has room for, after this group commits.
    fn fill_window(&mut self, hop: NodeId) {
        let Some(link) = self.links.get(&hop).filter(|l| l.greeted).map(|l| l.id) else { return };
        let now_s = self.now_s();
        let Some(q) = self.outbox.get_mut(&hop) else { return };
        if q.in_flight == 0 {
            q.sent_at_ms = self.now_ms;
        }
        let mut expired = Vec::new();
        while q.in_flight < ROUTED_WINDOW && q.in_flight < q.queue.len() {
            let message = q.queue[q.in_flight].clone();
            if message.expires_at() <= now_s {
                q.queue.remove(q.in_flight);
                expired.push(message);
                continue;
            }
            q.in_flight += 1;
            self.group.held.push(Effect::Send { link, peer: hop, frame: Frame::Routed(message) });
        }
        for message in expired {
            self.routed.dropped += 1;
            self.group.batch.outbox_done.push((hop, message.id));
            let detail = format!("{} for {} expired waiting for {hop}", message.id, message.to);
            self.audit("node", None, "routed.expired", detail);
        }
    }

    /// `peer` greeted this node on a new link (or a window waited too long): what
    /// waits for it goes out again from the start.
    pub(super) fn routed_resume(&mut self, peer: NodeId) {
        self.routed_reset(peer);
        self.fill_window(peer);
    }

    /// A link to `peer` came up or went down: nothing is in flight on it.
    pub(super) fn routed_reset(&mut self, peer: NodeId) {
        if let Some(q) = self.outbox.get_mut(&peer) {
            q.in_flight = 0;
        }
    }

    /// Resends windows that waited too long for their acknowledgement (a hop that
    /// could not take a message yet — full, or not knowing its sender — did not
    /// acknowledge it).
    pub(super) fn routed_tick(&mut self) {
        let now = self.now_ms;
        let late: Vec<NodeId> = self
            .outbox
            .iter()
            .filter(|(hop, q)| {
                q.in_flight > 0 && now >= q.sent_at_ms + ROUTED_RESEND_MS && self.links.contains_key(hop)
            })
            .map(|(hop, _)| *hop)
            .collect();
        for hop in late {
            self.routed_resume(hop);
        }
    }

    /// When a window will be resent, if one is in flight.
    pub(super) fn routed_deadline(&self) -> Option<u64> {
        self.outbox.values().filter(|q| q.in_flight > 0).map(|q| q.sent_at_ms + ROUTED_RESEND_MS).min()
    }

    /// A routed message arrived from `peer`.
    pub(super) fn on_routed(&mut self, peer: NodeId, message: Arc<Routed>) {
        let from = message.id.from;
        if self.engine.member(from).is_none() {
            // Its Join has not reached this node yet: not acknowledged, resent later.
            return;
        }
        if matches!(self.was_seen(message.id), Ok(true)) {
            // A resend of one taken over before: acknowledged again, not checked again.
            self.routed.duplicates += 1;
            self.group.acks.entry(peer).or_default().push(message.id);
            return;
        }
        if self.parent_of(message.to).is_none() {
            // Nor has the Join of the node it is for: it cannot be placed yet.
            return;
        }
        if next_hop(peer, message.to, |id| self.parent_of(id)) != Route::Via(self.me) {
            let reason = format!("{} for {} does not pass through this node", message.id, message.to);
            return self.close(peer, Misbehaviour::BadRouted(reason).into());
        }
        match message.check(self.engine.keys_of(from), self.now_s()) {
            Ok(()) if !self.engine.is_revoked(from) => self.take_over(message, Some(peer)),
            Ok(()) | Err(RoutedError::Stale(_)) => {
                // Revoked sender, or too old: dropped, acknowledged so that it stops.
                self.routed.dropped += 1;
                self.tally(
                    format!("node:{from}"),
                    "routed.dropped",
                    "refused",
                    format!("{} from {from}", message.id),
                );
                self.group.acks.entry(peer).or_default().push(message.id);
            }
            Err(e) => self.close(peer, Misbehaviour::BadRouted(e.to_string()).into()),
        }
    }

    /// `peer` acknowledged messages it took over.
    pub(super) fn on_routed_ack(&mut self, peer: NodeId, ids: Vec<MessageId>) {
        if ids.len() > MAX_ACK_IDS {
            let reason = format!("acknowledgement of {} ids, the limit is {MAX_ACK_IDS}", ids.len());
            return self.close(peer, Misbehaviour::BadRouted(reason).into());
        }
        let now = self.now_ms;
        let Some(q) = self.outbox.get_mut(&peer) else { return };
        for id in ids {
            // An id no longer waiting was acknowledged before (a resend crossed it).
            if let Some(at) = q.queue.iter().position(|m| m.id == id) {
                q.queue.remove(at);
                if at < q.in_flight {
                    q.in_flight -= 1;
                    // The window moves: its resend clock starts again.
                    q.sent_at_ms = now;
                }
                self.group.batch.outbox_done.push((peer, id));
            }
        }
        if q.queue.is_empty() {
            self.outbox.remove(&peer);
        } else {
            self.fill_window(peer);
        }
    }

    /// Turns this group's acknowledgements into sends held until it commits.
    pub(super) fn flush_acks(&mut self) {
        for (peer, ids) in std::mem::take(&mut self.group.acks) {
            let Some(link) = self.links.get(&peer).map(|l| l.id) else { continue };
            for chunk in ids.chunks(MAX_ACK_IDS) {
                self.group.held.push(Effect::Send { link, peer, frame: Frame::RoutedAck(chunk.to_vec()) });
            }
        }
    }
}
