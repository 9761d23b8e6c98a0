//! Call streams a neighbour opens: served here when this node is the provider,
//! else checked and passed on toward it, byte for byte.

use super::{fail, frames_into, usage_of, CallFailure, Gateway};
use super::{CACHE_KEPT, CALL_HEAD_TIMEOUT, CHUNKS_QUEUED};
use crate::driver::unix_millis;
use cascade_protocol::call::{call_next_hop, CallHead, ReplyHead, MAX_CALL_HEAD_BYTES};
use cascade_protocol::routed::Route;
use cascade_protocol::workflow::Resource;
use cascade_protocol::NodeId;
use cascade_transport::{read_message, write_call_frame, write_message};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info_span, Instrument};

impl Gateway {
    /// Serves one call stream the neighbour `from` opened: as the provider, or as
    /// a relay.
    pub(crate) async fn serve(
        self: Arc<Self>,
        from: NodeId,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let head = match tokio::time::timeout(
            CALL_HEAD_TIMEOUT,
            read_message::<CallHead>(&mut recv, MAX_CALL_HEAD_BYTES),
        )
        .await
        {
            Ok(Ok(Some((head, _)))) => head,
            _ => return,
        };
        let span = info_span!("call", id = %head.id, service = %head.service, from = %from);
        async move {
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                let busy = format!("{} is serving too many calls", self.me);
                let (reply, _) = self.error_reply(head.id, 503, busy).await;
                let _ = write_message(&mut send, &reply).await;
                let _ = send.finish();
                return;
            };
            if head.provider_node != self.me {
                self.relay(from, head, send, recv).await;
                drop(permit);
                return;
            }
            let (tx, frames) = mpsc::channel(CHUNKS_QUEUED);
            tokio::spawn(frames_into(recv, tx, self.idle));
            let (reply, mut body) = self.clone().provide(head, frames, false).await;
            if write_message(&mut send, &reply).await.is_err() {
                return;
            }
            while let Some(frame) = body.recv().await {
                if write_call_frame(&mut send, frame).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
            drop(permit);
        }
        .instrument(span)
        .await
    }

    /// Checks a call passing through, as far as a relay can: that it comes from
    /// the side of the node it names as its consumer, and that the grant it
    /// presents is signed by its provider, current, and covers that node and this
    /// service. (Only the provider can tell whether the consumer's node signed the
    /// head, and it does; a relay that let a forged one pass has spent a stream.)
    async fn check_relayed(&self, from: NodeId, head: &CallHead) -> Result<(), CallFailure> {
        head.check_form().map_err(|e| fail(400, e.to_string()))?;
        if call_next_hop(self.me, head.id.node) != Route::Via(from) {
            return Err(fail(403, format!("a call of {} cannot come from {from}", head.id.node)));
        }
        let grant = &head.grant;
        if grant.provider_node != head.provider_node || !self.grant_signed(grant).await {
            return Err(fail(403, format!("grant {} is not signed by {}", grant.id, head.provider_node)));
        }
        if !grant.is_current(unix_millis() / 1000) {
            return Err(fail(403, format!("grant {} expired at {}", grant.id, grant.expires_at)));
        }
        if grant.grantee_node != head.id.node || grant.resource != Resource::Service(head.service.clone()) {
            return Err(fail(403, format!("grant {} does not cover this call", grant.id)));
        }
        Ok(())
    }

    /// Whether `grant` is signed by its provider's node (remembered once
    /// verified: a grant is presented call after call, chunk after chunk).
    pub(crate) async fn grant_signed(&self, grant: &cascade_protocol::workflow::Grant) -> bool {
        let digest =
            cascade_protocol::codec::encode(grant).map(|b| *blake3::hash(&b).as_bytes()).unwrap_or_default();
        if self.verified.lock().is_ok_and(|v| v.contains(&digest)) {
            return true;
        }
        if !self.signed_by(grant.provider_node, |keys| grant.verify(keys)).await {
            return false;
        }
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= CACHE_KEPT {
                verified.clear();
            }
            verified.insert(digest);
        }
        true
    }

    /// Passes a call on toward its provider, after checking it: the head is read
    /// and checked, then the streams are spliced byte for byte both ways (the
    /// provider and the consumer open the bodies; a relay cannot).
    async fn relay(
        self: Arc<Self>,
        from: NodeId,
        head: CallHead,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let mut usage = usage_of(&head, "relay");
        let id = head.id;
        let checked = match self.check_relayed(from, &head).await {
            Err(failure) => Err(failure),
            Ok(()) => match call_next_hop(self.me, head.provider_node) {
                Route::Via(hop) => self.open_toward(hop, &head).await.map_err(|reason| fail(504, reason)),
                _ => Err(fail(504, format!("{} has no route to {}", self.me, head.provider_node))),
            },
        };
        let (onward_send, mut onward_recv) = match checked {
            Ok(streams) => streams,
            Err(failure) => {
                let (reply, _) = self.refusal(id, failure).await;
                usage.status = reply.status;
                usage.error = reply.error.clone();
                self.record(usage);
                let _ = write_message(&mut send, &reply).await;
                let _ = send.finish();
                return;
            }
        };
        usage.request_out_ms = Some(unix_millis());
        let request = tokio::spawn(splice(recv, onward_send, self.idle));
        let reply = tokio::time::timeout(
            CALL_HEAD_TIMEOUT,
            read_message::<ReplyHead>(&mut onward_recv, MAX_CALL_HEAD_BYTES),
        )
        .await;
        let reply = match reply {
            Ok(Ok(Some((reply, _)))) => reply,
            _ => {
                let late = format!("{} got no answer from the next hop in time", self.me);
                self.error_reply(id, 504, late).await.0
            }
        };
        usage.response_in_ms = Some(unix_millis());
        usage.status = reply.status;
        usage.error = reply.error.clone();
        if write_message(&mut send, &reply).await.is_ok() {
            usage.bytes_out = splice(onward_recv, send, self.idle).await;
        }
        usage.bytes_in = request.await.unwrap_or(0);
        usage.response_out_ms = Some(unix_millis());
        self.record(usage);
    }
}

/// Copies a call stream on as QUIC delivers it (no copy, no re-framing) until it
/// ends; a side that errs or stays silent for `idle` ends both.
/// Returns the bytes copied.
async fn splice(mut from: quinn::RecvStream, mut to: quinn::SendStream, idle: std::time::Duration) -> u64 {
    let mut total = 0u64;
    loop {
        match tokio::time::timeout(idle, from.read_chunk(usize::MAX, true)).await {
            Ok(Ok(Some(chunk))) => {
                let n = chunk.bytes.len() as u64;
                if to.write_chunk(chunk.bytes).await.is_err() {
                    break;
                }
                total += n;
            }
            Ok(Ok(None)) => {
                let _ = to.finish();
                return total;
            }
            _ => break,
        }
    }
    let _ = to.reset(0u32.into());
    let _ = from.stop(0u32.into());
    total
}
