//! The provider's end of a call: every check before the upstream sees it, the
//! request body opened frame by frame on its way up, and the answer sealed for
//! the consumer's node.

use super::{fail, usage_of, CallFailure, Gateway};
use super::{CALL_HEAD_TIMEOUT, CHUNKS_QUEUED, FORWARDED_HEADERS};
use crate::driver::unix_millis;
use bytes::Bytes;
use cascade_protocol::call::{BodyOpener, BodySealer, CallFrame, CallHead, Direction, PairKey, ReplyHead};
use cascade_protocol::service::{Service, ServiceKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

impl Gateway {
    /// Serves a call for one of this node's services: checks, then the upstream.
    /// `local` when the consumer is this node too (its head is not signed).
    pub(super) async fn provide(
        self: Arc<Self>,
        head: CallHead,
        frames: mpsc::Receiver<CallFrame>,
        local: bool,
    ) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        let id = head.id;
        let mut usage = usage_of(&head, "provider");
        let checked = self.check_call(&head, local).await;
        let (service, upstream, pair) = match checked {
            Ok(ok) => ok,
            Err(failure) => {
                usage.status = failure.status;
                usage.error = Some(failure.reason.clone());
                self.record(usage);
                return self.refusal(id, failure).await;
            }
        };
        // The request body, released frame by frame, to the upstream.
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_QUEUED);
        // Why the body was cut before its end, if it was: (status, reason).
        let cut = Arc::new(Mutex::new(None::<(u16, String)>));
        let seen = cut.clone();
        let bytes_in = Arc::new(AtomicU64::new(0));
        let counted = bytes_in.clone();
        let max_body = self.max_body;
        let mut opener = BodyOpener::new([&pair], id, Direction::Request);
        tokio::spawn(async move {
            let mut frames = frames;
            let why = loop {
                let Some(frame) = frames.recv().await else {
                    break (502, "the request body broke off".to_string());
                };
                match opener.frame(frame) {
                    Ok(bytes) if bytes.is_empty() => return,
                    Ok(bytes) => {
                        let total =
                            counted.fetch_add(bytes.len() as u64, Ordering::Relaxed) + bytes.len() as u64;
                        if total > max_body {
                            break (
                                413,
                                format!("this provider takes call bodies of at most {max_body} bytes"),
                            );
                        }
                        if body_tx.send(Ok(bytes)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => break (502, format!("the request body was altered on the way: {e}")),
                }
            };
            // Known before the upstream learns of it: its failure is then ours to name.
            let reason = why.1.clone();
            if let Ok(mut c) = seen.lock() {
                *c = Some(why);
            }
            let _ = body_tx.send(Err(std::io::Error::other(reason))).await;
        });
        let stream =
            futures_util::stream::unfold(
                body_rx,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            );
        let url = format!("{}{}", upstream.trim_end_matches('/'), head.path);
        let method = reqwest::Method::from_bytes(head.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut outgoing = self.http.request(method, &url).body(reqwest::Body::wrap_stream(stream));
        for (name, value) in
            head.headers.iter().filter(|(n, _)| FORWARDED_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
        {
            outgoing = outgoing.header(name, value);
        }
        usage.request_out_ms = Some(unix_millis());
        let answer = match tokio::time::timeout(CALL_HEAD_TIMEOUT, outgoing.send()).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", CALL_HEAD_TIMEOUT.as_secs())),
        };
        usage.bytes_in = bytes_in.load(Ordering::Relaxed);
        let cut_off = cut.lock().ok().and_then(|t| t.clone());
        let response = match (answer, cut_off) {
            (_, Some((status, why))) => {
                usage.status = status;
                usage.error = Some(why.clone());
                self.record(usage);
                return self.error_reply(id, status, why).await;
            }
            (Err(e), None) => {
                usage.status = 502;
                usage.error = Some(e.to_string());
                self.record(usage);
                return self
                    .error_reply(id, 502, format!("upstream of {} unreachable: {e}", service.id))
                    .await;
            }
            (Ok(response), None) => response,
        };
        usage.response_in_ms = Some(unix_millis());
        let upstream_status = response.status().as_u16();
        let verify = service.draft.kind == ServiceKind::Verify;
        let (status, headers) = if verify {
            (200, vec![("content-type".to_string(), "application/json".to_string())])
        } else {
            let keep = ["content-type", "content-language", "cache-control", "etag", "last-modified"];
            let headers = response
                .headers()
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            (upstream_status, headers)
        };
        usage.status = status;
        let reply = ReplyHead { id, by: self.me, status, headers, error: None, tag: [0; 32] }.seal(&pair);
        let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut sealer = BodySealer::new(&pair, id, Direction::Response);
            let mut response = response;
            if verify {
                // A check of facts answers whether they match, never the data.
                let body = format!("{{\"match\":{}}}", (200..300).contains(&upstream_status));
                usage.bytes_out = body.len() as u64;
                for frame in sealer.frames(Bytes::from(body)) {
                    let _ = tx.send(frame).await;
                }
            } else {
                loop {
                    let chunk = match tokio::time::timeout(gateway.idle, response.chunk()).await {
                        Ok(chunk) => chunk.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("silent for {} s", gateway.idle.as_secs())),
                    };
                    match chunk {
                        Ok(Some(chunk)) => {
                            usage.bytes_out += chunk.len() as u64;
                            for frame in sealer.frames(chunk) {
                                if tx.send(frame).await.is_err() {
                                    usage.error = Some("the consumer went away".into());
                                    usage.bytes_in = bytes_in.load(Ordering::Relaxed);
                                    gateway.record(usage);
                                    return;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // The upstream stops when the request body is cut (tampered, too large).
                            let why = cut.lock().ok().and_then(|t| t.clone()).map(|(_, why)| why);
                            usage.error = Some(why.unwrap_or_else(|| format!("upstream broke off: {e}")));
                            usage.bytes_in = bytes_in.load(Ordering::Relaxed);
                            gateway.record(usage);
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(sealer.end()).await;
            usage.response_out_ms = Some(unix_millis());
            usage.bytes_in = bytes_in.load(Ordering::Relaxed);
            gateway.record(usage);
        });
        (reply, rx)
    }

    /// Everything the provider's node checks before a call reaches the upstream:
    /// the envelope's signature (unless the call is `local`), then the node
    /// core's call gate (grant, service, endpoint, rate, replay). Returns the
    /// service, its upstream, and the key shared with the consumer's node.
    async fn check_call(
        &self,
        head: &CallHead,
        local: bool,
    ) -> Result<(Service, String, PairKey), CallFailure> {
        let pair = match local {
            true => Some(self.own_pair.clone()),
            false => {
                self.pair_found(head.id.node, |peer| peer.pair_for(head.signer(&peer.keys)?).cloned()).await
            }
        };
        let pair = pair.ok_or_else(|| fail(403, "tampered: the call envelope does not verify"))?;
        let admitted = self.gate.admit(&self.store, self.me, head, unix_millis())?;
        Ok((admitted.service, admitted.upstream, pair))
    }
}
