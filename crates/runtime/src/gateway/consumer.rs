//! The consumer's end of a call: the grant check, the signed head, the request
//! body sealed for the provider, and the answer opened on its way back.

use super::{fail, frames_into, CallFailure, CallRequest, CallResponse, Chunk, Gateway};
use super::{CACHE_KEPT, CALL_HEAD_TIMEOUT, CHUNKS_QUEUED, HELD_GRANTS_MS};
use crate::driver::unix_millis;
use cascade_protocol::call::{
    call_next_hop, endpoint_allowed, BodyOpener, BodySealer, CallFrame, CallHead, CallId, Direction, PairKey,
    ReplyHead, MAX_CALL_HEAD_BYTES,
};
use cascade_protocol::dataset::StreamKind;
use cascade_protocol::routed::Route;
use cascade_protocol::service::{Service, ServiceStatus};
use cascade_protocol::workflow::{Grant, Resource};
use cascade_protocol::NodeId;
use cascade_store::UsageRecord;
use cascade_transport::{read_message, write_call_frame, write_message};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A call on its way: the answer's head and body, the key that opens it, and
/// the request bytes sent so far.
struct Started {
    reply: ReplyHead,
    frames: mpsc::Receiver<CallFrame>,
    pair: PairKey,
    id: CallId,
    sent: Arc<AtomicU64>,
}

impl Gateway {
    /// A call of a consumer of this node (`org`, acting as `caller`).
    pub(crate) async fn call(
        self: &Arc<Self>,
        caller: String,
        org: String,
        request: CallRequest,
    ) -> Result<CallResponse, CallFailure> {
        let permit = self.in_flight.clone().try_acquire_owned().map_err(|_| fail(503, "too many calls"))?;
        let started = unix_millis();
        let mut usage = UsageRecord {
            call: String::new(),
            service: request.service.clone(),
            caller: caller.clone(),
            consumer: org.clone(),
            role: "consumer".into(),
            endpoint: format!("{} {}", request.method, request.path),
            status: 0,
            error: None,
            bytes_in: 0,
            bytes_out: 0,
            request_in_ms: started,
            request_out_ms: None,
            response_in_ms: None,
            response_out_ms: None,
        };
        let outcome = self.start_call(caller, org, request, &mut usage).await;
        let Started { reply, frames, pair, id, sent } = match outcome {
            Ok(started) => started,
            Err(failure) => {
                usage.status = failure.status;
                usage.error = Some(failure.reason.clone());
                self.record(usage);
                return Err(failure);
            }
        };
        usage.status = reply.status;
        usage.response_in_ms = Some(unix_millis());
        let (tx, rx) = mpsc::channel::<Chunk>(CHUNKS_QUEUED);
        let gateway = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut opener = BodyOpener::new([&pair], id, Direction::Response);
            let mut frames = frames;
            let error = loop {
                let Some(frame) = frames.recv().await else {
                    break Some("the answer broke off".to_string());
                };
                match opener.frame(frame) {
                    Ok(bytes) if bytes.is_empty() => break None,
                    Ok(bytes) => {
                        usage.bytes_out += bytes.len() as u64;
                        if tx.send(Ok(bytes)).await.is_err() {
                            break Some("the caller went away".into());
                        }
                    }
                    Err(e) => break Some(e.to_string()),
                }
            };
            if let Some(e) = &error {
                let _ = tx.send(Err(e.clone())).await;
                usage.status = if e.starts_with("tampered") { 502 } else { 0 };
            }
            usage.error = error;
            usage.bytes_in = sent.load(Ordering::Relaxed);
            usage.response_out_ms = Some(unix_millis());
            gateway.record(usage);
        });
        Ok(CallResponse { status: reply.status, headers: reply.headers, body: rx })
    }

    /// Checks the grant, signs the head and sends the call on its way (or serves
    /// it here); returns the answer's head and its body frames.
    async fn start_call(
        self: &Arc<Self>,
        caller: String,
        org: String,
        request: CallRequest,
        usage: &mut UsageRecord,
    ) -> Result<Started, CallFailure> {
        let service = cascade_core::StateStore::service(&self.store, &request.service)
            .map_err(|e| fail(503, e.to_string()))?
            .ok_or_else(|| fail(404, format!("no service {}", request.service)))?;
        if service.status == ServiceStatus::Retired {
            return Err(fail(404, format!("service {} is retired", service.id)));
        }
        let provider = Service::origin_of(&service.id).ok_or_else(|| fail(404, "malformed service id"))?;
        let grant = self.held_grant(&org, &service.id).await?;
        if !endpoint_allowed(&grant.endpoints, &request.method, &request.path) {
            return Err(fail(
                403,
                format!("{} {} is not granted by {}", request.method, request.path, grant.id),
            ));
        }
        let pair = self
            .pair_with(provider)
            .await
            .ok_or_else(|| fail(504, format!("{} knows no key of {provider}", self.me)))?;
        let id = CallId {
            node: self.me,
            started_ms: usage.request_in_ms,
            n: self.next.fetch_add(1, Ordering::Relaxed),
        };
        usage.call = id.to_string();
        let route = call_next_hop(self.me, provider);
        let head = CallHead {
            id,
            service: service.id.clone(),
            provider_node: provider,
            method: request.method,
            path: request.path,
            headers: request.headers,
            caller,
            grant,
            signature: Vec::new(),
        };
        // A call served here never leaves this node: nothing to sign.
        let head = match route {
            Route::Here => head,
            _ => head.sign(&self.key).map_err(|e| fail(503, e.to_string()))?,
        };
        let (frames_tx, frames_rx) = mpsc::channel(CHUNKS_QUEUED);
        let (max_body, idle) = (self.max_body, self.idle);
        let mut body = request.body;
        let sent = Arc::new(AtomicU64::new(0));
        let counted = sent.clone();
        let too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let over = too_large.clone();
        let mut sealer = BodySealer::new(&pair, id, Direction::Request);
        // What has come of the body already: with no body at all (its sender gone
        // and nothing came), the end is all there is to send, and no task is needed.
        let first = body.try_recv();
        if let Err(mpsc::error::TryRecvError::Disconnected) = first {
            let _ = frames_tx.try_send(sealer.end());
        } else {
            // The request body, sealed frame by frame.
            let mut first = first.ok();
            tokio::spawn(async move {
                loop {
                    let chunk = match first.take() {
                        Some(chunk) => chunk,
                        None => match tokio::time::timeout(idle, body.recv()).await {
                            Ok(Some(chunk)) => chunk,
                            Ok(None) => break,
                            Err(_) => return,
                        },
                    };
                    let Ok(chunk) = chunk else { return };
                    let total = counted.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                    if total > max_body {
                        // Cut without its end: the provider refuses the call, and it is
                        // answered 413 here.
                        over.store(true, Ordering::Relaxed);
                        return;
                    }
                    for frame in sealer.frames(chunk) {
                        if frames_tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
                let _ = frames_tx.send(sealer.end()).await;
            });
        }
        usage.request_out_ms = Some(unix_millis());
        let (reply, frames) = match route {
            Route::Here => self.clone().provide(head, frames_rx, true).await,
            Route::Via(hop) => self.forward(head, frames_rx, hop).await,
            Route::Unroutable => return Err(fail(504, format!("no route from {} to {provider}", self.me))),
        };
        // Only the provider answers a call; a hop on the way may only refuse it.
        let answerable = reply.id == id && (reply.by == provider || reply.error.is_some());
        let opened = match answerable {
            true => self.pair_found(reply.by, |peer| reply.opener(&peer.pairs).cloned()).await,
            false => None,
        };
        let Some(pair) = opened else {
            return Err(fail(
                502,
                format!("tampered: the answer claiming to be {}'s does not verify", reply.by),
            ));
        };
        if too_large.load(Ordering::Relaxed) {
            return Err(fail(413, format!("calls carry at most {max_body} bytes")));
        }
        if let Some(error) = &reply.error {
            let retry_after = reply
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| v.parse().ok());
            return Err(CallFailure { status: reply.status, reason: error.clone(), retry_after });
        }
        Ok(Started { reply, frames, pair, id, sent })
    }

    /// The grant `org` holds for `service` at this node, if it is usable now.
    async fn held_grant(&self, org: &str, service: &str) -> Result<Grant, CallFailure> {
        let now_ms = unix_millis();
        let now = now_ms / 1000;
        let key = (org.to_string(), service.to_string());
        let cached = self
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(&key).filter(|(at, _)| now_ms < at + HELD_GRANTS_MS).cloned());
        let found = match cached {
            Some((_, found)) => found,
            None => {
                let found = self
                    .store
                    .grants_for(self.me, Some(org), &Resource::Service(service.to_string()))
                    .map_err(|e| fail(503, e.to_string()))?;
                // Only a usable grant is remembered: a grant that arrives is used at once.
                if let (true, Ok(mut held)) = (found.iter().any(|g| g.is_valid(now)), self.held.lock()) {
                    if held.len() >= CACHE_KEPT {
                        held.clear();
                    }
                    held.insert(key, (now_ms, found.clone()));
                }
                found
            }
        };
        if let Some(g) = found.iter().find(|g| g.is_valid(now)) {
            return Ok(g.grant.clone());
        }
        Err(match found.last() {
            None => fail(403, "no grant: apply for this service first"),
            Some(g) if g.revoked_at.is_some() => fail(
                403,
                format!("grant {} was revoked: {}", g.grant.id, g.revoke_reason.clone().unwrap_or_default()),
            ),
            Some(g) => fail(403, format!("grant {} expired at {}", g.grant.id, g.grant.expires_at)),
        })
    }

    /// Sends a call to `hop` and returns the answer's head and body frames.
    async fn forward(
        self: &Arc<Self>,
        head: CallHead,
        mut frames: mpsc::Receiver<CallFrame>,
        hop: NodeId,
    ) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        let id = head.id;
        let (mut send, mut recv) = match self.open_toward(hop, &head).await {
            Ok(streams) => streams,
            Err(reason) => return self.error_reply(id, 504, reason).await,
        };
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                if write_call_frame(&mut send, frame).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
        });
        let reply = tokio::time::timeout(
            CALL_HEAD_TIMEOUT,
            read_message::<ReplyHead>(&mut recv, MAX_CALL_HEAD_BYTES),
        )
        .await;
        let reply = match reply {
            Ok(Ok(Some((reply, _)))) => reply,
            _ => return self.error_reply(id, 504, format!("{hop} did not answer the call in time")).await,
        };
        let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
        tokio::spawn(frames_into(recv, tx, self.idle));
        (reply, rx)
    }

    /// Opens a call stream toward `hop` and sends the head on it.
    pub(super) async fn open_toward(
        &self,
        hop: NodeId,
        head: &CallHead,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
        let cannot = |why: String| format!("{} could not forward the call to {hop}: {why}", self.me);
        let connection = self
            .link(hop)
            .ok_or_else(|| format!("{} could not forward the call: no link to {hop}", self.me))?;
        let (mut send, recv) = connection.open_bi().await.map_err(|e| cannot(e.to_string()))?;
        send.write_all(&[StreamKind::Call as u8]).await.map_err(|e| cannot(e.to_string()))?;
        write_message(&mut send, head).await.map_err(|e| cannot(e.to_string()))?;
        Ok((send, recv))
    }
}
