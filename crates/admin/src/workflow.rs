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
use cascade_access::{Permission, Principal};
use cascade_core::{Application, Approval, Calendar, Command, GrantRecord, RelayRecord};
use cascade_protocol::service::Endpoint;
use cascade_protocol::workflow::{Resource, State as ApplicationState};
use cascade_protocol::NodeId;
use cascade_runtime::PageQuery;
use cascade_store::Side;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An application as the API shows it: its fields, whether it is overdue, and
/// the working days its approver has left.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApplicationView {
    /// The application.
    #[serde(flatten)]
    application: Application,
    /// Whether it waits for an approver past its due time.
    overdue: bool,
    /// While pending: the working days an approver has left, by this node's calendar.
    working_days_left: Option<u32>,
}

fn view(a: &Application, calendar: &Calendar) -> ApplicationView {
    let now = now_s();
    // The node's own calendar (holidays, declared workdays) counts the days.
    let left = a
        .due_at
        .filter(|_| a.state == ApplicationState::Pending)
        .map(|due| calendar.working_days_left(now, due));
    ApplicationView { application: a.clone(), overdue: a.is_overdue(now), working_days_left: left }
}

/// A grant as the API shows it: the signed grant's fields, its signature in
/// hex, its revocation, and whether it can be used now.
#[derive(Serialize, ToSchema)]
pub(crate) struct GrantView {
    /// `{provider node}-g{n}`.
    id: String,
    /// The application it answers.
    application: String,
    /// The provider organization.
    provider: String,
    /// The provider's node (the signer).
    provider_node: NodeId,
    /// The consumer organization.
    grantee: String,
    /// The consumer's node: the only node that may present it.
    grantee_node: NodeId,
    /// What it grants.
    resource: Resource,
    /// The endpoints it covers.
    endpoints: Vec<Endpoint>,
    /// Calls per minute.
    rate_limit_per_minute: u32,
    /// Conditions the approver attached.
    conditions: Option<String>,
    /// Unix seconds.
    issued_at: u64,
    /// Unix seconds: it lapses then.
    expires_at: u64,
    /// Ed25519 over the fields above by the provider's node, hex.
    signature: String,
    /// When it was revoked (unix s).
    revoked_at: Option<u64>,
    /// Why.
    revoke_reason: Option<String>,
    /// Whether it can be used now (not revoked, not expired).
    valid: bool,
}

fn grant_view(g: &GrantRecord) -> GrantView {
    let grant = g.grant.clone();
    GrantView {
        signature: grant.signature.iter().map(|b| format!("{b:02x}")).collect(),
        revoked_at: g.revoked_at,
        revoke_reason: g.revoke_reason.clone(),
        valid: g.is_valid(now_s()),
        id: grant.id,
        application: grant.application,
        provider: grant.provider,
        provider_node: grant.provider_node,
        grantee: grant.grantee,
        grantee_node: grant.grantee_node,
        resource: grant.resource,
        endpoints: grant.endpoints,
        rate_limit_per_minute: grant.rate_limit_per_minute,
        conditions: grant.conditions,
        issued_at: grant.issued_at,
        expires_at: grant.expires_at,
    }
}

/// An application for a resource held anywhere.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyBody {
    /// A service, or a catalog entry as a whole.
    resource: Resource,
    /// The consumer organization (the caller's own, registered here).
    consumer: String,
    /// What the data is for.
    purpose: String,
    /// How long access is asked for.
    period_days: u32,
}

#[utoipa::path(post, path = "/api/v1/applications", tag = "sharing", request_body = ApplyBody,
    responses((status = 201, description = "Submitted; routed hop by hop to the provider's node.", body = ApplicationView)))]
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
    Ok((StatusCode::CREATED, changed(&state, who, command).await?).into_response())
}

/// Which applications to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApplicationQuery {
    /// To this node's providers (inbox) or of its consumers (outbox).
    #[serde(rename = "box")]
    #[param(inline)]
    mailbox: Mailbox,
    /// Only in this state.
    state: Option<ApplicationState>,
    /// Only those waiting past their due time.
    overdue: Option<bool>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Most on the page (default 100, at most 1000).
    limit: Option<usize>,
}

/// A side of the workflow.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Mailbox {
    /// Applications to this node's providers.
    Inbox,
    /// Applications of this node's consumers.
    Outbox,
}

/// A page of applications.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApplicationsPage {
    /// The applications.
    applications: Vec<ApplicationView>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/applications", tag = "sharing", params(ApplicationQuery),
    responses((status = 200, description = "An account sees its organization's; admins and auditors all.", body = ApplicationsPage)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<ApplicationQuery>, QueryRejection>,
) -> Result<Json<ApplicationsPage>, ApiError> {
    let q = query(q)?;
    let side = match q.mailbox {
        Mailbox::Inbox => Side::Provider,
        Mailbox::Outbox => Side::Consumer,
    };
    let page = PageQuery { cursor: q.cursor, limit: q.limit };
    let page = state.node.applications(&who, side, q.state, q.overdue.unwrap_or(false), page).await?;
    let calendar = state.node.config().workflow.calendar();
    let applications: Vec<ApplicationView> = page.items.iter().map(|a| view(a, &calendar)).collect();
    Ok(Json(ApplicationsPage { returned: applications.len(), applications, next: page.next }))
}

#[utoipa::path(get, path = "/api/v1/applications/{id}", tag = "sharing",
    params(("id" = String, Path, description = "The application's id.")),
    responses((status = 200, description = "The application.", body = ApplicationView)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<ApplicationView>, ApiError> {
    match state.node.application(&who, id.clone()).await? {
        Some(a) => Ok(Json(view(&a, &state.node.config().workflow.calendar()))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no application {id} you may see"))),
    }
}

/// An application changed by a command, as the API shows it.
async fn changed(
    state: &AppState,
    who: Principal,
    command: Command,
) -> Result<Json<ApplicationView>, ApiError> {
    let a = state.node.application_change(who, command).await?;
    Ok(Json(view(&a, &state.node.config().workflow.calendar())))
}

#[utoipa::path(post, path = "/api/v1/applications/{id}/approve", tag = "sharing",
    request_body(content = Option<Approval>, description = "Optional: narrow the grant."),
    params(("id" = String, Path, description = "The application's id.")),
    responses((status = 200, description = "Granted: a grant signed here goes to the consumer's node.", body = ApplicationView)))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    OptionalJsonBody(approval): OptionalJsonBody<Approval>,
) -> Result<Json<ApplicationView>, ApiError> {
    changed(&state, who, Command::Approve { id, approval: approval.unwrap_or_default() }).await
}

/// Why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    /// Recorded, and sent to the other side.
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/applications/{id}/reject", tag = "sharing", request_body = ReasonBody,
    params(("id" = String, Path, description = "The application's id.")),
    responses((status = 200, description = "Rejected.", body = ApplicationView)))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<ApplicationView>, ApiError> {
    changed(&state, who, Command::Reject { id, reason: body.reason }).await
}

#[utoipa::path(post, path = "/api/v1/applications/{id}/withdraw", tag = "sharing",
    params(("id" = String, Path, description = "The application's id.")),
    responses((status = 200, description = "Withdrawal asked of the provider's node.", body = ApplicationView)))]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<ApplicationView>, ApiError> {
    changed(&state, who, Command::Withdraw { id }).await
}

/// Which grants to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GrantQuery {
    /// Held by this node's consumers (default) or issued by its providers.
    #[serde(rename = "box", default)]
    #[param(inline)]
    mailbox: Option<GrantBox>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Most on the page (default 100, at most 1000).
    limit: Option<usize>,
}

/// Which side's grants.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum GrantBox {
    /// Issued by this node's providers.
    Issued,
    /// Held by this node's consumers.
    Held,
}

/// A page of grants.
#[derive(Serialize, ToSchema)]
pub(crate) struct GrantsPage {
    /// The grants.
    grants: Vec<GrantView>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/grants", tag = "sharing", params(GrantQuery),
    responses((status = 200, description = "Grants held or issued here.", body = GrantsPage)))]
pub(crate) async fn grants(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<GrantQuery>, QueryRejection>,
) -> Result<Json<GrantsPage>, ApiError> {
    let q = query(q)?;
    let side = match q.mailbox.unwrap_or(GrantBox::Held) {
        GrantBox::Issued => Side::Provider,
        GrantBox::Held => Side::Consumer,
    };
    let page = state.node.grants(&who, side, PageQuery { cursor: q.cursor, limit: q.limit }).await?;
    let grants: Vec<GrantView> = page.items.iter().map(grant_view).collect();
    Ok(Json(GrantsPage { returned: grants.len(), grants, next: page.next }))
}

#[utoipa::path(post, path = "/api/v1/grants/{id}/revoke", tag = "sharing", request_body = ReasonBody,
    params(("id" = String, Path, description = "The grant's id.")),
    responses((status = 200, description = "Void at once here; the consumer's node is told.", body = GrantView)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<GrantView>, ApiError> {
    let g = state.node.revoke_grant(who, id, body.reason).await?;
    Ok(Json(grant_view(&g)))
}

/// Which relayed messages to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RelayedQuery {
    /// The application (or grant) a message is about.
    subject: Option<String>,
    /// `apply`, `withdraw`, `decision` or `revoke`.
    kind: Option<String>,
    /// The `next` of the page before.
    before: Option<String>,
    /// Most on the page.
    limit: Option<usize>,
}

/// A page of relayed messages.
#[derive(Serialize, ToSchema)]
pub(crate) struct RelayedPage {
    /// The messages, newest first.
    relayed: Vec<RelayRecord>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `before` for the next page; none on the last.
    next: Option<String>,
}

/// `GET /api/v1/relayed`: the applications, withdrawals, decisions and
/// revocations this node passed on between other nodes, newest first (for its
/// administrators and auditors: a hub's operator sees what passes through).
#[utoipa::path(get, path = "/api/v1/relayed", tag = "sharing", params(RelayedQuery),
    responses((status = 200, description = "What this node relayed (admins and auditors).", body = RelayedPage)))]
pub(crate) async fn relayed(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<RelayedQuery>, QueryRejection>,
) -> Result<Json<RelayedPage>, ApiError> {
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
    let (relayed, next) = state.node.relayed(filter, q.limit).await?;
    Ok(Json(RelayedPage { returned: relayed.len(), relayed, next: next.map(|c| c.to_string()) }))
}
