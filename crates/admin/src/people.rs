//! Login, accounts and API tokens.

use crate::auth::{audit, authorize, now};
use crate::error::ApiError;
use crate::routes::{parse_json, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cascade_access::{AccessError, Permission, Principal, Role};
use cascade_store::AuditEntry;
use serde::Deserialize;
use serde_json::json;

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Invalid { field, .. } => ApiError::field(field, e.to_string()),
            AccessError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AccessError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            AccessError::BadCredentials => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
            AccessError::Store(_) | AccessError::Corrupt(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

/// Password checks running at once: each takes ~19 MiB and tens of ms of Argon2id.
static LOGINS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
/// How long a login waits for its turn before answering 503.
const LOGIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    username: String,
    password: String,
}

pub(crate) async fn login(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let login: Login = parse_json(&body)?;
    let access = state.node.access().clone();
    let (username, password) = (login.username.clone(), login.password);
    // Argon2 is deliberately slow and memory-hard: a few at a time, off the async
    // workers, so a flood of logins cannot exhaust threads or memory.
    let permit = tokio::time::timeout(LOGIN_WAIT, LOGINS.acquire())
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many logins in progress; retry"))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let result = tokio::task::spawn_blocking(move || access.login(&username, &password, now()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    drop(permit);
    let (kind, detail) = match &result {
        Ok(_) => ("login.success", String::new()),
        Err(e) => ("login.failure", e.to_string()),
    };
    let entry =
        AuditEntry { actor: format!("account:{}", login.username), org: None, kind: kind.into(), detail };
    if let Err(e) = state.node.audit(vec![entry]).await {
        tracing::warn!(error = %e, "cannot write the audit log");
    }
    let issued = result?;
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
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::ManageAccounts).await?;
    let new: NewAccount = parse_json(&body)?;
    let me = state.node.identity().id;
    let registered_here = state
        .node
        .store()
        .organization_at(&new.organization, me)
        .map_err(cascade_runtime::CatalogError::from)?;
    if registered_here.is_none() {
        return Err(ApiError::field(
            "organization",
            format!("{} is not an organization registered at {me}", new.organization),
        ));
    }
    let access = state.node.access().clone();
    let account = tokio::task::spawn_blocking(move || {
        access.create_account(&new.username, &new.password, &new.organization, new.roles, now())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    audit(
        &state,
        &who,
        "account.create",
        format!("{} of {} as {:?}", account.username, account.organization, account.roles),
    )
    .await;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::ManageAccounts).await?;
    let accounts = state.node.access().accounts()?;
    Ok(Json(json!({"accounts": accounts})).into_response())
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
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewToken = if body.is_empty() { NewToken::default() } else { parse_json(&body)? };
    // Long-lived credentials for machines are an administrator's decision: a
    // short login session must not turn itself into permanent access.
    authorize(&state, &who, Permission::ManageAccounts).await?;
    let Some(username) = new.username.clone().or_else(|| who.username.clone()) else {
        return Err(ApiError::field("username", "the bootstrap token must name an account"));
    };
    let issued = state.node.access().create_token(&username, &new.label, now())?;
    audit(&state, &who, "token.create", format!("{} for {username} ({})", issued.id, new.label)).await;
    Ok((StatusCode::CREATED, Json(json!({"id": issued.id, "token": issued.token, "username": username})))
        .into_response())
}

pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    let all = who.has(Role::Admin);
    let tokens = state.node.access().tokens(if all { None } else { who.username.as_deref() })?;
    Ok(Json(json!({"tokens": tokens})).into_response())
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = state.node.access().token_owner(&id)?;
    if who.username.as_deref() != Some(owner.as_str()) {
        authorize(&state, &who, Permission::ManageAccounts).await?;
    }
    state.node.access().revoke_token(&id)?;
    audit(&state, &who, "token.revoke", format!("{id} of {owner}")).await;
    Ok(Json(json!({"revoked": id})).into_response())
}
