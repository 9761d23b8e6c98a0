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
use cascade_runtime::{Listing, PageQuery, PasswordChange, TokenInfo};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    username: String,
    password: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let issued = state.node.login(login.username, login.password, from).await?;
    Ok(Json(json!({"token": issued.token, "expires_at": issued.expires_at})).into_response())
}

/// Ends the caller's own session (the token it presents).
pub(crate) async fn logout(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    Ok(Json(json!({"ended": id})).into_response())
}

/// `GET /api/v1/whoami`: the caller as the node authenticated it (actor,
/// account, organization, roles), so a client shows what its roles allow.
pub(crate) async fn whoami(Caller(who): Caller) -> Json<Principal> {
    Json(who)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    username: String,
    password: String,
    organization: String,
    roles: Vec<Role>,
}

pub(crate) async fn create_account(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(new): JsonBody<NewAccount>,
) -> Result<Response, ApiError> {
    let account =
        state.node.create_account(who, new.username, new.password, new.organization, new.roles).await?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::ManageAccounts).await?;
    let page = state.node.accounts(query(q)?).await?;
    Ok(Json(json!({"accounts": page.items, "returned": page.items.len(), "next": page.next})).into_response())
}

/// Sets a password: the account's owner (giving the current one), or an
/// administrator. Its sessions end.
pub(crate) async fn set_password(
    State(state): State<AppState>,
    Caller(who): Caller,
    ClientAddr(from): ClientAddr,
    Path(username): Path<String>,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.set_password(who, username, change, from).await?).into_response())
}

pub(crate) async fn disable_account(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.set_disabled(who, username, true).await?).into_response())
}

pub(crate) async fn enable_account(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.set_disabled(who, username, false).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    #[serde(default)]
    label: String,
    /// Another account (admins only); default: the caller's own.
    #[serde(default)]
    username: Option<String>,
}

pub(crate) async fn create_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    OptionalJsonBody(new): OptionalJsonBody<NewToken>,
) -> Result<Response, ApiError> {
    let new = new.unwrap_or_default();
    let issued = state.node.issue_token(who, new.username, new.label).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": issued.id, "token": issued.token, "username": issued.username})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenQuery {
    /// One account's (administrators); others see only their own.
    username: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
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

pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = list(&state, &who, TokenKind::Api, query(q)?).await?;
    Ok(Json(json!({"tokens": page.items, "returned": page.items.len(), "next": page.next})).into_response())
}

pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = list(&state, &who, TokenKind::Session, query(q)?).await?;
    Ok(Json(json!({"sessions": page.items, "returned": page.items.len(), "next": page.next})).into_response())
}

/// Revokes an API token or ends a session: its owner, or an administrator.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.node.revoke_token(who, id.clone()).await?;
    Ok(Json(json!({"revoked": id})).into_response())
}
