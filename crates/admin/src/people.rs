//! Login, accounts and API tokens.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::{parse_json, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::{Permission, Role};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    username: String,
    password: String,
}

pub(crate) async fn login(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let login: Login = parse_json(&body)?;
    let issued = state.node.login(login.username, login.password).await?;
    Ok(Json(json!({"token": issued.token, "expires_at": issued.expires_at})).into_response())
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
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewAccount = parse_json(&body)?;
    let account =
        state.node.create_account(who, new.username, new.password, new.organization, new.roles).await?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::ManageAccounts).await?;
    Ok(Json(json!({"accounts": state.node.accounts().await?})).into_response())
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
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewToken = if body.is_empty() { NewToken::default() } else { parse_json(&body)? };
    let issued = state.node.issue_token(who, new.username, new.label).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": issued.id, "token": issued.token, "username": issued.username})),
    )
        .into_response())
}

pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    let own = if who.has(Role::Admin) { None } else { who.username.clone() };
    if own.is_none() && !who.has(Role::Admin) {
        return Ok(Json(json!({"tokens": []})).into_response());
    }
    Ok(Json(json!({"tokens": state.node.tokens(own).await?})).into_response())
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.node.revoke_token(who, id.clone()).await?;
    Ok(Json(json!({"revoked": id})).into_response())
}
