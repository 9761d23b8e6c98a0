//! The service gateway at the HTTP edge: `ANY /gateway/{service}/{*path}` calls a
//! service for the caller's organization, which must hold a valid grant for it;
//! bodies stream both ways (no body limit but the node's `gateway.max_body_bytes`,
//! no request time-out: a call lasts as long as its body). `GET /api/v1/usage`
//! lists the calls this node saw.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::Permission;
use cascade_runtime::CallRequest;
use cascade_store::UsageRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub(crate) async fn call(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((service, rest)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let mut path = format!("/{rest}");
    if let Some(q) = parts.uri.query() {
        path = format!("{path}?{q}");
    }
    let headers = cascade_runtime::FORWARDED_HEADERS
        .iter()
        .filter_map(|name| Some((name.to_string(), parts.headers.get(*name)?.to_str().ok()?.to_string())))
        .collect();
    let max = state.node.config().gateway.max_body_bytes;
    if crate::body::declared_length(&parts.headers).is_some_and(|n| n > max) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("calls carry at most {max} bytes")));
    }
    let rx = crate::body::stream_in(body);
    let request = CallRequest { service, method: parts.method.to_string(), path, headers, body: rx };
    match state.node.call(&who, request).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = Response::new(crate::body::stream_out(answer.body));
            *response.status_mut() = status;
            for (name, value) in answer.headers {
                if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                    response.headers_mut().insert(name, value);
                }
            }
            Ok(response)
        }
        Err(failure) => {
            let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = ApiError::new(status, failure.reason).into_response();
            if let Some(seconds) = failure.retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            Ok(response)
        }
    }
}

/// Which calls to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageQuery {
    /// Only calls of this service.
    service: Option<String>,
    /// This node's part: `consumer`, `relay` or `provider`.
    role: Option<String>,
    /// Only calls of this consumer organization.
    consumer: Option<String>,
    /// Only calls by this account.
    caller: Option<String>,
    /// Only calls answered with this status.
    status: Option<u16>,
    /// One call, by its id.
    call: Option<String>,
    /// Unix ms: records of calls that reached this node at or after it.
    since: Option<u64>,
    /// The cursor of the next page (`next` of the page before).
    before: Option<String>,
    /// Most on the page.
    limit: Option<usize>,
}

/// A page of calls.
#[derive(Serialize, ToSchema)]
pub(crate) struct UsagePage {
    /// The calls, newest first.
    usage: Vec<UsageRecord>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `before` for the next page; none on the last.
    next: Option<String>,
}

/// `GET /api/v1/usage`: the calls this node saw, newest first, filtered; an
/// administrator or auditor sees all, anyone else their organization's.
#[utoipa::path(get, path = "/api/v1/usage", tag = "services", params(UsageQuery),
    responses((status = 200, description = "The calls this node saw as consumer, relay or provider.", body = UsagePage)))]
pub(crate) async fn usage(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsagePage>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let q = query(q)?;
    if q.role.as_deref().is_some_and(|r| !["consumer", "relay", "provider"].contains(&r)) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "role is consumer, relay or provider"));
    }
    let before = match q.before.as_deref().map(str::parse::<cascade_store::UsageCursor>) {
        Some(Err(e)) => return Err(ApiError::field("before", e)),
        Some(Ok(cursor)) => Some(cursor),
        None => None,
    };
    let filter = cascade_store::UsageFilter {
        service: q.service,
        role: q.role,
        consumer: q.consumer,
        caller: q.caller,
        status: q.status,
        call: q.call,
        since_ms: q.since,
        before,
    };
    let (usage, next) = state.node.usage(&who, filter, q.limit).await?;
    Ok(Json(UsagePage { returned: usage.len(), usage, next: next.map(|c| c.to_string()) }))
}
