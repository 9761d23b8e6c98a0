//! Login and logout, accounts, sessions and API tokens. Every change is
//! authorized, applied and audited by the node core; reads check the role here.

use crate::body::{JsonBody, OptionalJsonBody};
use crate::caller::{Caller, ClientAddr};
use crate::error::ApiError;
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::{parse_token, Permission, Principal, Role, TokenKind};
use cascade_core::Account;
use cascade_runtime::{Listing, PageQuery, PasswordChange, TokenInfo};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    /// The account.
    username: String,
    /// Its password.
    password: String,
}

/// A login session.
#[derive(Serialize, ToSchema)]
pub(crate) struct Session {
    /// The bearer token (secret).
    token: String,
    /// When it ends (unix s).
    expires_at: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/login", tag = "base", request_body = Login, security(()),
    responses((status = 200, description = "A 12 h session; throttled per account and address (429).", body = Session)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    JsonBody(login): JsonBody<Login>,
) -> Result<Json<Session>, ApiError> {
    let issued = state.node.login(login.username, login.password, from).await?;
    Ok(Json(Session { token: issued.token, expires_at: issued.expires_at }))
}

/// A session ended.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ended {
    /// The session's id.
    ended: String,
}

/// Ends the caller's own session (the token it presents).
#[utoipa::path(post, path = "/api/v1/logout", tag = "base",
    responses((status = 200, description = "The session presented is ended.", body = Ended)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
) -> Result<Json<Ended>, ApiError> {
    let session = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(_, token)| parse_token(token.trim()))
        .filter(|(kind, _)| *kind == TokenKind::Session)
        .map(|(_, id)| id.to_string());
    let Some(id) = session else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "logout ends a login session; this is not one"));
    };
    state.node.revoke_token(who, id.clone()).await?;
    Ok(Json(Ended { ended: id }))
}

/// `GET /api/v1/whoami`: the caller as the node authenticated it (actor,
/// account, organization, roles), so a client shows what its roles allow.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "base",
    responses((status = 200, description = "The caller.", body = Principal)))]
pub(crate) async fn whoami(Caller(who): Caller) -> Json<Principal> {
    Json(who)
}

/// A new account of this node.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    /// Login name.
    username: String,
    /// At least 10 characters.
    password: String,
    /// Its organization's credit code (registered here).
    organization: String,
    /// Its roles.
    roles: Vec<Role>,
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "base", request_body = NewAccount,
    responses((status = 201, description = "Created (administrators).", body = Account)))]
pub(crate) async fn create_account(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(new): JsonBody<NewAccount>,
) -> Result<Response, ApiError> {
    let account =
        state.node.create_account(who, new.username, new.password, new.organization, new.roles).await?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

/// A page of accounts.
#[derive(Serialize, ToSchema)]
pub(crate) struct AccountsPage {
    /// The accounts.
    accounts: Vec<Account>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/accounts", tag = "base", params(PageQuery),
    responses((status = 200, description = "This node's accounts (administrators).", body = AccountsPage)))]
pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<AccountsPage>, ApiError> {
    state.node.check(&who, Permission::ManageAccounts).await?;
    let page = state.node.accounts(query(q)?).await?;
    Ok(Json(AccountsPage { returned: page.items.len(), accounts: page.items, next: page.next }))
}

/// Sets a password: the account's owner (giving the current one), or an
/// administrator. Its sessions end.
#[utoipa::path(post, path = "/api/v1/accounts/{username}/password", tag = "base", request_body = PasswordChange,
    params(("username" = String, Path, description = "The account.")),
    responses((status = 200, description = "Set; the account's sessions ended.", body = Account)))]
pub(crate) async fn set_password(
    State(state): State<AppState>,
    Caller(who): Caller,
    ClientAddr(from): ClientAddr,
    Path(username): Path<String>,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(state.node.set_password(who, username, change, from).await?))
}

#[utoipa::path(post, path = "/api/v1/accounts/{username}/disable", tag = "base",
    params(("username" = String, Path, description = "The account.")),
    responses((status = 200, description = "Disabled; its sessions ended (administrators).", body = Account)))]
pub(crate) async fn disable_account(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(username): Path<String>,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(state.node.set_disabled(who, username, true).await?))
}

#[utoipa::path(post, path = "/api/v1/accounts/{username}/enable", tag = "base",
    params(("username" = String, Path, description = "The account.")),
    responses((status = 200, description = "Enabled (administrators).", body = Account)))]
pub(crate) async fn enable_account(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(username): Path<String>,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(state.node.set_disabled(who, username, false).await?))
}

/// A new API token.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    #[serde(default)]
    label: String,
    /// Another account (admins only); default: the caller's own.
    #[serde(default)]
    username: Option<String>,
}

/// An API token, shown once.
#[derive(Serialize, ToSchema)]
pub(crate) struct NewTokenIssued {
    /// Its id (to list and revoke it).
    id: String,
    /// The bearer token (secret; never shown again).
    token: String,
    /// The account it acts as.
    username: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "base",
    request_body(content = Option<NewToken>, description = "Optional."),
    responses((status = 201, description = "Issued.", body = NewTokenIssued)))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    OptionalJsonBody(new): OptionalJsonBody<NewToken>,
) -> Result<Response, ApiError> {
    let new = new.unwrap_or_default();
    let issued = state.node.issue_token(who, new.username, new.label).await?;
    let body = NewTokenIssued { id: issued.id, token: issued.token, username: issued.username };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Whose tokens or sessions.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokenQuery {
    /// One account's (administrators); others see only their own.
    username: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Most on the page (default 100, at most 1000).
    limit: Option<usize>,
}

/// A page of API tokens or sessions.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokensPage {
    /// The tokens (never the secrets).
    tokens: Vec<TokenInfo>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

/// A page of login sessions.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionsPage {
    /// The sessions (never the secrets).
    sessions: Vec<TokenInfo>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

/// Lists tokens of one kind: an administrator's of anyone (or of `username`),
/// anyone else's only their own.
async fn list(
    state: &AppState,
    who: &Principal,
    kind: TokenKind,
    q: TokenQuery,
) -> Result<Listing<TokenInfo>, ApiError> {
    let username = if who.has(Role::Admin) {
        q.username
    } else {
        match &who.username {
            Some(own) if q.username.as_ref().is_none_or(|u| u == own) => Some(own.clone()),
            Some(_) => {
                state.node.check(who, Permission::ManageAccounts).await?;
                return Ok(Listing { items: Vec::new(), next: None });
            }
            None => return Ok(Listing { items: Vec::new(), next: None }),
        }
    };
    Ok(state.node.tokens(kind, username, PageQuery { cursor: q.cursor, limit: q.limit }).await?)
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "base", params(TokenQuery),
    responses((status = 200, description = "API tokens: one's own, or (administrators) anyone's.", body = TokensPage)))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Json<TokensPage>, ApiError> {
    let page = list(&state, &who, TokenKind::Api, query(q)?).await?;
    Ok(Json(TokensPage { returned: page.items.len(), tokens: page.items, next: page.next }))
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "base", params(TokenQuery),
    responses((status = 200, description = "Login sessions: one's own, or (administrators) anyone's.", body = SessionsPage)))]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Json<SessionsPage>, ApiError> {
    let page = list(&state, &who, TokenKind::Session, query(q)?).await?;
    Ok(Json(SessionsPage { returned: page.items.len(), sessions: page.items, next: page.next }))
}

/// A token revoked or a session ended.
#[derive(Serialize, ToSchema)]
pub(crate) struct RevokedToken {
    /// Its id.
    revoked: String,
}

/// Revokes an API token: its owner, or an administrator.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "base",
    params(("id" = String, Path, description = "The token's id.")),
    responses((status = 200, description = "Revoked.", body = RevokedToken)))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<RevokedToken>, ApiError> {
    state.node.revoke_token(who, id.clone()).await?;
    Ok(Json(RevokedToken { revoked: id }))
}

/// Ends a login session: its owner, or an administrator.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "base",
    params(("id" = String, Path, description = "The session's id.")),
    responses((status = 200, description = "Ended.", body = RevokedToken)))]
pub(crate) async fn end_session(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<RevokedToken>, ApiError> {
    revoke_token(state, caller, id).await
}
