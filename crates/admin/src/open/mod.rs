//! The open-data face: public, unauthenticated and read-only. Only entries that
//! are published federation-wide and open to the public appear (unconditional
//! sharing is internal to government, not public). Two doors onto the same
//! catalog:
//! - DCAT-AP 3 in Turtle and JSON-LD (`/open/catalog.ttl`, `/open/catalog.jsonld`),
//!   paged with Hydra as DCAT harvesters expect;
//! - the part of CKAN's Action API that CKAN's harvester and clients use
//!   (`/api/3/action/package_search`, `package_show`, `organization_list`, ...;
//!   also at `/api/action/...`, as in CKAN).
//!
//! Every request is bounded: a page holds at most `MAX_LIST` entries, reads run
//! a few at a time under their own limit (`MAX_CONCURRENT_OPEN_READS`), and
//! nothing is audited, so a crowd costs no audit records.

mod ckan;
mod dcat;
mod rdf;

use crate::error::ApiError;
use crate::routes::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use cascade_protocol::{NodeId, Tier};

/// The open-data routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/open/catalog.ttl", get(dcat::turtle))
        .route("/open/catalog.jsonld", get(dcat::json_ld))
        .route("/api/3/action/{action}", get(ckan::get).post(ckan::post))
        // CKAN answers at both; ckanapi calls the unversioned one.
        .route("/api/action/{action}", get(ckan::get).post(ckan::post))
}

/// Longest host name (with port) taken from a request's `Host` header.
const MAX_HOST_CHARS: usize = 255;

/// Where this node's public URLs start: `http://` or `https://` as the request
/// came, and the host the client used (so links work through whatever name or
/// port forward it came by).
pub(crate) struct Base(String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Base, ApiError> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "the request names no host"))?;
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
        if host.is_empty() || host.len() > MAX_HOST_CHARS || !host.chars().all(fine) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "the Host header is not a host name"));
        }
        let secure = parts.extensions.get::<crate::serve::Served>().is_some_and(|s| s.secure);
        Ok(Base(format!("{}://{host}", if secure { "https" } else { "http" })))
    }
}

impl Base {
    /// The catalog's own IRI (whichever format it is read in).
    fn catalog(&self) -> String {
        format!("{}/open/catalog", self.0)
    }

    /// An open entry's IRI: its origin and its code, the code's `/` escaped.
    fn dataset(&self, origin: NodeId, code: &str) -> String {
        format!("{}/open/datasets/{origin}/{}", self.0, segment(code))
    }

    /// Where a dataset version's content is read (granted consumers, through
    /// the admin API).
    fn content(&self, origin: NodeId, code: &str, version: u64) -> String {
        format!("{}/api/v1/datasets/{origin}/{}/versions/{version}/content", self.0, segment(code))
    }

    /// A service's IRI.
    fn service(&self, id: &str) -> String {
        format!("{}/open/services/{}", self.0, segment(id))
    }

    /// Where a service is called (granted consumers, through their gateway).
    fn gateway(&self, id: &str) -> String {
        format!("{}/gateway/{}/", self.0, segment(id))
    }

    /// An organization's IRI, by credit code.
    fn organization(&self, credit_code: &str) -> String {
        format!("{}/open/organizations/{}", self.0, segment(credit_code))
    }
}

/// One path segment: everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A media type without its parameters, lower-cased (`text/csv; charset=utf-8`
/// → `text/csv`): the IANA registry's name for it.
fn essence(media_type: &str) -> String {
    media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The name of an origin's division, for titles ("济南市").
fn division_name(origin: NodeId) -> String {
    cascade_protocol::division::find(origin).map_or_else(|| origin.to_string(), |d| d.name.clone())
}

/// The tier word of an origin, for extras.
fn tier_name(origin: NodeId) -> &'static str {
    match origin.tier() {
        Tier::National => "national",
        Tier::Provincial => "provincial",
        Tier::Municipal => "municipal",
    }
}
