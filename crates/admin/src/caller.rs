//! Authentication: one extractor for every authenticated handler.

use crate::error::ApiError;
use crate::routes::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use cascade_access::Principal;

/// The authenticated caller of a request, from its `Authorization: Bearer` token
/// (the scheme is case-insensitive, as RFC 9110 says).
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = presented else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>"));
        };
        match state.node.authenticate(token)? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid or expired bearer token")),
        }
    }
}

/// The address a request came from, when the server recorded it (it does for
/// every connection it accepts; a router driven without a socket has none).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientAddr(addr.map(|a| a.0.ip())))
    }
}
