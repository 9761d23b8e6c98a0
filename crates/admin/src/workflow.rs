//! Process docking routes (流程对接): consumers apply for resources held anywhere
//! and follow their outbox; approvers of a provider work their inbox; grants are
//! listed and revoked. The core authorizes, routes and audits every change in the
//! commit that applies it; listings show an account its own organization's
//! applications (administrators and auditors see all of this node's).

use crate::body::{JsonBody, OptionalJsonBody};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::Permission;
use cascade_core::{Application, Approval, Calendar, Command, GrantRecord};
use cascade_protocol::workflow::{Resource, State as ApplicationState};
use cascade_runtime::PageQuery;
use cascade_store::Side;
use serde::Deserialize;
use serde_json::{json, Value};

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An application as the API shows it: its fields, and whether it is overdue.
fn view(a: &Application, calendar: &Calendar) -> Value {
    let mut out = serde_json::to_value(a).unwrap_or_else(|_| json!({}));
    if let Some(fields) = out.as_object_mut() {
        let now = now_s();
        fields.insert("overdue".into(), json!(a.is_overdue(now)));
        // The node's own calendar (holidays, declared workdays) counts the days.
        let left = a
            .due_at
            .filter(|_| a.state == ApplicationState::Pending)
            .map(|due| calendar.working_days_left(now, due));
        fields.insert("working_days_left".into(), json!(left));
    }
    out
}

/// A grant as the API shows it: the signed grant's fields, its signature in hex,
/// its revocation, and whether it can be used now.
fn grant_view(g: &GrantRecord) -> Value {
    let mut out = serde_json::to_value(&g.grant).unwrap_or_else(|_| json!({}));
    if let Some(fields) = out.as_object_mut() {
        let signature: String = g.grant.signature.iter().map(|b| format!("{b:02x}")).collect();
        fields.insert("signature".into(), json!(signature));
        fields.insert("revoked_at".into(), json!(g.revoked_at));
        fields.insert("revoke_reason".into(), json!(g.revoke_reason));
        fields.insert("valid".into(), json!(g.is_valid(now_s())));
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyBody {
    resource: Resource,
    consumer: String,
    purpose: String,
    period_days: u32,
}

pub(crate) async fn apply(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<ApplyBody>,
) -> Result<Response, ApiError> {
    let command = Command::Apply {
        resource: body.resource,
        consumer: body.consumer,
        purpose: body.purpose,
        period_days: body.period_days,
    };
    let a = state.node.application_change(who, command).await?;
    Ok((StatusCode::CREATED, Json(view(&a, &state.node.config().workflow.calendar()))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplicationQuery {
    #[serde(rename = "box")]
    mailbox: Mailbox,
    state: Option<ApplicationState>,
    overdue: Option<bool>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mailbox {
    /// Applications to this node's providers.
    Inbox,
    /// Applications of this node's consumers.
    Outbox,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<ApplicationQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let side = match q.mailbox {
        Mailbox::Inbox => Side::Provider,
        Mailbox::Outbox => Side::Consumer,
    };
    let page = PageQuery { cursor: q.cursor, limit: q.limit };
    let page = state.node.applications(&who, side, q.state, q.overdue.unwrap_or(false), page).await?;
    let calendar = state.node.config().workflow.calendar();
    let items: Vec<Value> = page.items.iter().map(|a| view(a, &calendar)).collect();
    Ok(Json(json!({"applications": items, "returned": items.len(), "next": page.next})).into_response())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.node.application(&who, id.clone()).await? {
        Some(a) => Ok(Json(view(&a, &state.node.config().workflow.calendar())).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no application {id} you may see"))),
    }
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    OptionalJsonBody(approval): OptionalJsonBody<Approval>,
) -> Result<Response, ApiError> {
    let command = Command::Approve { id, approval: approval.unwrap_or_default() };
    Ok(Json(view(
        &state.node.application_change(who, command).await?,
        &state.node.config().workflow.calendar(),
    ))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    reason: String,
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Response, ApiError> {
    let command = Command::Reject { id, reason: body.reason };
    Ok(Json(view(
        &state.node.application_change(who, command).await?,
        &state.node.config().workflow.calendar(),
    ))
    .into_response())
}

pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(view(
        &state.node.application_change(who, Command::Withdraw { id }).await?,
        &state.node.config().workflow.calendar(),
    ))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantQuery {
    #[serde(rename = "box", default)]
    mailbox: Option<GrantBox>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum GrantBox {
    /// Grants this node issued (its providers').
    Issued,
    /// Grants this node holds (its consumers').
    Held,
}

pub(crate) async fn grants(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<GrantQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let side = match q.mailbox.unwrap_or(GrantBox::Held) {
        GrantBox::Issued => Side::Provider,
        GrantBox::Held => Side::Consumer,
    };
    let page = state.node.grants(&who, side, PageQuery { cursor: q.cursor, limit: q.limit }).await?;
    let items: Vec<Value> = page.items.iter().map(grant_view).collect();
    Ok(Json(json!({"grants": items, "returned": items.len(), "next": page.next})).into_response())
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Response, ApiError> {
    let g = state.node.revoke_grant(who, id, body.reason).await?;
    Ok(Json(grant_view(&g)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelayedQuery {
    /// The application (or grant) a message is about.
    subject: Option<String>,
    kind: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/relayed`: the applications, withdrawals, decisions and
/// revocations this node passed on between other nodes, newest first (for its
/// administrators and auditors: a hub's operator sees what passes through).
pub(crate) async fn relayed(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<RelayedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Audit).await?;
    let q = query(q)?;
    if q.kind.as_deref().is_some_and(|k| !["apply", "withdraw", "decision", "revoke"].contains(&k)) {
        return Err(ApiError::field("kind", "kind is apply, withdraw, decision or revoke"));
    }
    let before = match q.before.as_deref().map(str::parse::<cascade_store::RelayCursor>) {
        Some(Err(e)) => return Err(ApiError::field("before", e)),
        Some(Ok(cursor)) => Some(cursor),
        None => None,
    };
    let filter = cascade_store::RelayFilter { subject: q.subject, kind: q.kind, before };
    let (records, next) = state.node.relayed(filter, q.limit).await?;
    let next = next.map(|c| c.to_string());
    Ok(Json(json!({"relayed": records, "returned": records.len(), "next": next})).into_response())
}
