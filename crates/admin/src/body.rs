//! Request bodies: JSON only, declared as such, bounded in size. A body of any
//! other type is refused with 415 before it is read (so a browser's cross-site
//! "simple" request — a `text/plain` form post — never reaches a handler); one
//! over `MAX_REQUEST_BODY_BYTES` with 413; both with the JSON error shape.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use cascade_protocol::limits::MAX_REQUEST_BODY_BYTES;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A required JSON body.
pub(crate) struct JsonBody<T>(pub T);

/// A JSON body that may be left out (an empty body means none).
pub(crate) struct OptionalJsonBody<T>(pub Option<T>);

/// Whether the request says its body is JSON (`application/json`, or a
/// `+json` type, with any parameters such as a charset).
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON (Content-Type: application/json)",
    )
}

/// Reads the body, answering 413 when it is too large.
async fn bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_REQUEST_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(e.status(), e.body_text())
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !declares_json(req.headers()) {
            return Err(unsupported());
        }
        let body = bytes(req, state).await?;
        crate::routes::parse_json(&body).map(JsonBody)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = declares_json(req.headers());
        let body = bytes(req, state).await?;
        if body.is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        if !json {
            return Err(unsupported());
        }
        crate::routes::parse_json(&body).map(|t| OptionalJsonBody(Some(t)))
    }
}

/// The length a request declares for its body (`Content-Length`), if any.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// A streaming body as a channel of its pieces (a short one: backpressure keeps
/// at most a few pieces in memory); an error ends it. A body known to be empty
/// needs no task to carry it.
pub(crate) fn stream_in(body: axum::body::Body) -> tokio::sync::mpsc::Receiver<Result<Bytes, String>> {
    stream_in_capped(body, u64::MAX).0
}

/// `stream_in`, ending the body with an error once it passes `cap` bytes; the
/// flag says afterwards whether it did.
pub(crate) fn stream_in_capped(
    body: axum::body::Body,
    cap: u64,
) -> (tokio::sync::mpsc::Receiver<Result<Bytes, String>>, Arc<AtomicBool>) {
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let over = Arc::new(AtomicBool::new(false));
    if axum::body::HttpBody::size_hint(&body).exact() == Some(0) {
        return (rx, over);
    }
    let flag = over.clone();
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut taken = 0u64;
        while let Some(chunk) = stream.next().await {
            let mut item = chunk.map_err(|e| e.to_string());
            if let Ok(bytes) = &item {
                taken = taken.saturating_add(bytes.len() as u64);
                if taken > cap {
                    flag.store(true, Ordering::Relaxed);
                    item = Err(format!("the body is over {cap} bytes"));
                }
            }
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    (rx, over)
}

/// A response body streamed from a channel; an error cuts it.
pub(crate) fn stream_out(rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>) -> axum::body::Body {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map_err(std::io::Error::other), rx))
    });
    axum::body::Body::from_stream(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_recognized_with_parameters_and_any_case() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            declares_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        for not in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json"] {
            assert!(!with(not), "{not}");
        }
        assert!(!declares_json(&HeaderMap::new()));
    }
}
