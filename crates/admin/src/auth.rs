//! Authentication (bearer tokens) and authorization (roles, organization scope),
//! with every refusal and every change written to the audit log.

use crate::error::ApiError;
use crate::routes::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cascade_access::{Permission, Principal};
use cascade_store::AuditEntry;
use tracing::warn;

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Finds the caller from the bearer token and puts its `Principal` in the request.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = presented else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>")
            .into_response();
    };
    match state.node.access().authenticate(&token, now()) {
        Ok(Some(principal)) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Ok(None) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid or expired bearer token").into_response()
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Allows `permission` for `who`, or answers 403 with the reason (and audits it).
pub(crate) async fn authorize(
    state: &AppState,
    who: &Principal,
    permission: Permission<'_>,
) -> Result<(), ApiError> {
    let store = state.node.store();
    let me = state.node.identity().id;
    // Only this node's own registrations define its organizations' hierarchy.
    let parent_of = |code: &str| store.organization_at(code, me).ok().flatten().and_then(|org| org.parent);
    match who.check(permission, parent_of) {
        Ok(()) => Ok(()),
        Err(reason) => {
            audit(state, who, "access.denied", format!("{permission:?}: {reason}")).await;
            Err(ApiError::new(StatusCode::FORBIDDEN, reason))
        }
    }
}

/// Appends one admin action to the audit log.
pub(crate) async fn audit(state: &AppState, who: &Principal, kind: &str, detail: String) {
    let entry =
        AuditEntry { actor: who.actor.clone(), org: who.organization.clone(), kind: kind.into(), detail };
    if let Err(e) = state.node.audit(vec![entry]).await {
        warn!(error = %e, kind, "cannot write the audit log");
    }
}
