//! The node's neighbours as the core sees them: links coming up and going down,
//! what the engine asks to send or persist, and the rejections and faults that
//! cost a neighbour its link.

use super::*;

impl<S: StateStore> Core<S> {
    pub(super) fn peer_of(&self, link: LinkId) -> Option<NodeId> {
        self.links.iter().find(|(_, l)| l.id == link).map(|(peer, _)| *peer)
    }

    pub(super) fn link_up(&mut self, link: LinkId, peer: NodeId, role: LinkRole) {
        use cascade_protocol::Incompatibility;
        if let Some(q) = self.quarantine.get(&peer).filter(|q| q.until_ms > self.now_ms) {
            let reason = Incompatibility::Quarantined { node: peer, until_ms: q.until_ms };
            return self.refuse_link(link, peer, reason.into());
        }
        if let Some(live) = self.links.get(&peer) {
            // A node back from a crash replaces its stale link; two holders of one
            // key do not take turns faster than this.
            if self.now_ms < live.up_ms + LINK_REPLACE_MS {
                return self.refuse_link(link, peer, Incompatibility::AlreadyLinked(peer).into());
            }
            self.close(peer, Incompatibility::Replaced.into());
        }
        let now = self.now_ms;
        self.links.insert(
            peer,
            Link {
                id: link,
                role,
                up_ms: now,
                last_frame_ms: None,
                in_sync_ms: now,
                greeted: false,
                junk: 0,
                junk_since_ms: now,
            },
        );
        self.tally(
            format!("peer:{peer}"),
            "peer.connected",
            role.as_str(),
            format!("{peer} ({})", role.as_str()),
        );
        let actions = self.engine.handle(self.now_s(), Event::PeerUp { peer });
        self.take(actions);
        self.routed_reset(peer);
    }

    pub(super) fn link_down(&mut self, link: LinkId, cause: Option<PeerError>) {
        let Some(peer) = self.peer_of(link) else { return };
        self.links.remove(&peer);
        self.routed_reset(peer);
        match cause {
            Some(reason) => self.peer_fault(peer, &reason),
            None => self.tally(format!("peer:{peer}"), "peer.disconnected", "gone", peer.to_string()),
        }
        let actions = self.engine.handle(self.now_s(), Event::PeerDown { peer });
        self.take(actions);
    }

    /// Closes a link the core never took up.
    pub(super) fn refuse_link(&mut self, link: LinkId, peer: NodeId, reason: PeerError) {
        self.peer_faults.add(reason.fault());
        self.tally(format!("peer:{peer}"), "peer.refused", reason.label(), format!("{peer}: {reason}"));
        self.ready.push_back(Effect::Close { link, peer, reason });
    }

    /// Closes the link to `peer` now (closing claims nothing, so it need not wait
    /// for a commit); held sends to it are dropped by the driver.
    pub(super) fn close(&mut self, peer: NodeId, reason: PeerError) {
        let Some(link) = self.links.remove(&peer) else { return };
        self.routed_reset(peer);
        self.peer_fault(peer, &reason);
        self.ready.push_back(Effect::Close { link: link.id, peer, reason });
        let actions = self.engine.handle(self.now_s(), Event::PeerDown { peer });
        self.take(actions);
    }

    pub(super) fn peer_fault(&mut self, peer: NodeId, reason: &PeerError) {
        let kind = match reason {
            // A reconnect raced its own link: nobody's fault.
            PeerError::Incompatible(cascade_protocol::Incompatibility::Replaced) => "peer.disconnected",
            PeerError::Misbehaved(_) => {
                self.peer_faults.add(reason.fault());
                "peer.misbehaved"
            }
            PeerError::Incompatible(_) => {
                self.peer_faults.add(reason.fault());
                "peer.disconnected"
            }
        };
        self.tally(format!("peer:{peer}"), kind, reason.label(), format!("{peer}: {reason}"));
    }

    /// Turns engine actions into effects and writes of the current group.
    pub(crate) fn take(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Persist(admitted) => {
                    for a in admitted {
                        self.persist(a);
                    }
                }
                Action::Send { peer, frame } => {
                    let Some(link) = self.links.get(&peer).map(|l| l.id) else { continue };
                    if let Frame::Deltas(ds) = &frame {
                        self.sync.deltas_out += ds.len() as u64;
                    }
                    let send = Effect::Send { link, peer, frame };
                    if self.may_forward_now(&send) {
                        self.ready.push_back(send);
                    } else {
                        self.group.held.push(send);
                    }
                }
                Action::SendRange { peer, log, from, to } => {
                    let Some(link) = self.links.get(&peer).map(|l| l.id) else { continue };
                    self.sync.deltas_out += to.saturating_sub(from) + 1;
                    self.group.held.push(Effect::SendRange { link, peer, log, from, to });
                }
                Action::Reject(r) => self.rejected(r),
                Action::Disconnect { peer, reason } => self.close(peer, reason),
            }
        }
    }

    /// Whether a send may go out before the commit of its group: deltas relayed
    /// from beyond this node's neighbours need not wait for its flush (lost in a
    /// crash, they come back from the neighbours like any delta it lacks), so a
    /// change crosses the middle of the tree at the pace of the network, not of
    /// one disk flush per hop. Three kinds still wait: its own deltas (what it
    /// originated is durable before anyone holds it); deltas of its parent or
    /// children (an origin back from a power loss learns its heads from its
    /// neighbours, so whatever a node beyond them holds, one of them must have
    /// made durable); and anything queued behind a held send on the same link
    /// (a link delivers in order).
    fn may_forward_now(&self, send: &Effect) -> bool {
        let Effect::Send { link, frame: Frame::Deltas(ds), .. } = send else { return false };
        let me = self.engine.me();
        let neighbour = |origin: NodeId| {
            origin == self.me
                || Some(origin) == me.parent
                || self.engine.member(origin).is_some_and(|m| m.parent == Some(self.me))
        };
        let on_link = |e: &Effect| matches!(e, Effect::Send { link: l, .. } | Effect::SendRange { link: l, .. } if l == link);
        let queued = self.inflight.as_ref().map_or(&[][..], |f| &f.held[..]);
        ds.iter().all(|d| !neighbour(d.log.origin)) && !self.group.held.iter().chain(queued).any(on_link)
    }

    /// Writes an admitted delta and what it changes in the materialized views.
    pub(super) fn persist(&mut self, Admitted { delta, body }: Admitted) {
        if delta.log.origin == self.me {
            self.sync.deltas_originated += 1;
        } else {
            self.sync.deltas_in += 1;
        }
        match body {
            DeltaBody::Catalog(entry) => {
                let row = Materialize::Catalog {
                    log: delta.log,
                    entry: std::sync::Arc::new(entry),
                    delta: delta.clone(),
                    stored_ms: self.now_ms,
                };
                self.group.batch.materialize.push(row);
            }
            DeltaBody::Service(service) => {
                let row =
                    Materialize::Service { service: std::sync::Arc::new(service), delta: delta.clone() };
                self.group.batch.materialize.push(row);
            }
            DeltaBody::Dataset(manifest) => {
                let row =
                    Materialize::Dataset { manifest: std::sync::Arc::new(manifest), delta: delta.clone() };
                self.group.batch.materialize.push(row);
            }
            DeltaBody::Organization(org) => {
                if delta.log.origin == self.me {
                    // One of its own, coming back after a power loss took it here.
                    self.own_orgs.insert(org.credit_code.clone(), org.parent.clone());
                }
                let row = Materialize::Organization {
                    origin: delta.log.origin,
                    code: org.credit_code,
                    delta: delta.clone(),
                };
                self.group.batch.materialize.push(row);
            }
            DeltaBody::Rekey { .. } if delta.log.origin != self.me => {
                let detail = format!("{} #{} is signed with a new key from here on", delta.log, delta.seq);
                self.audit("federation", None, "member.rekey", detail);
            }
            DeltaBody::Join { .. }
            | DeltaBody::Rekey { .. }
            | DeltaBody::Revoke(_)
            | DeltaBody::AuditCheckpoint(_) => {}
        }
        self.group.batch.deltas.push(delta);
    }

    /// Counts a refused delta: metrics at once, the audit log by tally; a neighbour
    /// that keeps relaying what every honest relay refuses is dropped and refused
    /// for a while (longer each time).
    pub(super) fn rejected(&mut self, r: cascade_protocol::Rejection) {
        use cascade_protocol::RejectReason as R;
        self.rejected.add(&r.reason);
        let detail = format!("{} #{} from {}: {}", r.log, r.seq, r.peer, r.reason);
        self.tally(format!("peer:{}", r.peer), "delta.rejected", r.reason.label(), detail);
        // A revocation or a fork may reach a relay later than the delta: not its fault.
        if matches!(r.reason, R::Revoked | R::Fork) {
            return;
        }
        let now = self.now_ms;
        let Some(link) = self.links.get_mut(&r.peer) else { return };
        if now >= link.junk_since_ms + REJECTIONS_WINDOW_MS {
            link.junk = 0;
            link.junk_since_ms = now;
        }
        link.junk += 1;
        if link.junk < MAX_REJECTIONS_PER_LINK {
            return;
        }
        let count = link.junk;
        let earlier = self.quarantine.get(&r.peer).filter(|q| q.until_ms + MAX_QUARANTINE_MS > now);
        let strikes = earlier.map_or(0, |q| q.strikes).saturating_add(1);
        let ms = QUARANTINE_MS.saturating_mul(1 << (strikes - 1).min(16)).min(MAX_QUARANTINE_MS);
        self.quarantine.insert(r.peer, Quarantine { until_ms: self.now_ms + ms, strikes });
        self.close(r.peer, cascade_protocol::Misbehaviour::InvalidDeltas { count }.into());
    }
}
