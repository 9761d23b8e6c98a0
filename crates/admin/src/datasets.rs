//! Dataset routes (数据对接): a cataloger of an entry's provider publishes
//! versions at the entry's origin (`PUT …/versions`, the body streamed); anyone
//! signed in lists the versions a node knows; a consumer holding a grant starts
//! a fetch to its own node (`POST …/versions/{v}/fetch`), follows it
//! (`GET /api/v1/fetches/{id}`) and reads the content there, with ranges
//! (`GET …/versions/{v}/content`). The core authorizes and audits publishing
//! and fetching; a refused read of content is audited too.

use crate::body::{stream_in_capped, stream_out, OptionalJsonBody};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::Permission;
use cascade_chunks::store::hex;
use cascade_protocol::dataset::Manifest;
use cascade_protocol::service::EntryRef;
use cascade_protocol::NodeId;
use cascade_runtime::FetchView;
use cascade_store::Subscription;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A version as the API shows it: hashes in hex.
#[derive(Serialize, ToSchema)]
pub(crate) struct VersionView {
    /// The entry's origin.
    origin: NodeId,
    /// The entry's resource code.
    code: String,
    /// 1, 2, …
    version: u64,
    /// The previous version's manifest hash (BLAKE3, hex).
    previous: Option<String>,
    /// Bytes.
    size: u64,
    /// BLAKE3 of the content, hex.
    content_hash: String,
    /// Its media type.
    media_type: String,
    /// Rows and columns, for CSV.
    csv: Option<cascade_protocol::dataset::CsvShape>,
    /// How many chunks.
    chunks: u64,
    /// The chunk lists' hashes, hex.
    lists: Vec<String>,
    /// When it was published (unix ms).
    published_ms: u64,
}

fn view(m: &Manifest) -> VersionView {
    VersionView {
        origin: m.entry.origin,
        code: m.entry.code.clone(),
        version: m.version,
        previous: m.previous.as_ref().map(hex),
        size: m.size,
        content_hash: hex(&m.content_hash),
        media_type: m.media_type.clone(),
        csv: m.csv.clone(),
        chunks: m.chunks,
        lists: m.lists.iter().map(hex).collect(),
        published_ms: m.published_ms,
    }
}

/// The path of one version: its number checked here, so a bad one is a JSON 422.
fn version_of(version: &str) -> Result<u64, ApiError> {
    version.parse().map_err(|_| ApiError::field("version", "a version is a number: 1, 2, …"))
}

fn entry_of(origin: &str, code: String) -> Result<EntryRef, ApiError> {
    let origin: NodeId = origin.parse().map_err(|e| ApiError::field("origin", format!("{e}")))?;
    cascade_protocol::catalog::validate_resource_code(&code).map_err(|e| ApiError::field("code", e))?;
    Ok(EntryRef { origin, code })
}

/// `PUT /api/v1/datasets/{origin}/{code}/versions`: publishes the body as the
/// entry's next version (at the entry's origin only); `Content-Type` is its
/// media type.
#[utoipa::path(put, path = "/api/v1/datasets/{origin}/{code}/versions", tag = "datasets",
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The content, streamed; its Content-Type is the version's media type."),
    params(("origin" = String, Path, description = "This node."), ("code" = String, Path, description = "The resource code.")),
    responses((status = 201, description = "The entry's next version; its manifest is a signed delta.", body = VersionView)))]
pub(crate) async fn push(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((origin, code)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let entry = entry_of(&origin, code)?;
    let me = state.node.identity().id;
    if entry.origin != me {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "versions of {}'s entries are published at {}, not here ({me})",
                entry.origin, entry.origin
            ),
        ));
    }
    let (parts, body) = request.into_parts();
    let media_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let max = state.node.config().datasets.max_version_bytes;
    let too_large = || {
        let why = format!("a version is at most {max} bytes here (datasets.max_version_bytes)");
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, why)
    };
    if crate::body::declared_length(&parts.headers).is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let (body, over) = stream_in_capped(body, max);
    match state.node.push_version(who, entry.code, media_type, body).await {
        Ok(manifest) => Ok((StatusCode::CREATED, Json(view(&manifest))).into_response()),
        // The body cut at the cap (not a refusal that came first).
        Err(cascade_core::CommandError::Invalid(f))
            if f.field == "body" && over.load(std::sync::atomic::Ordering::Relaxed) =>
        {
            Err(too_large())
        }
        Err(e) => Err(e.into()),
    }
}

/// The versions of an entry.
#[derive(Serialize, ToSchema)]
pub(crate) struct VersionsList {
    /// Newest first.
    versions: Vec<VersionView>,
    /// How many.
    returned: usize,
}

/// `GET /api/v1/datasets/{origin}/{code}/versions`: the versions this node
/// knows, newest first.
#[utoipa::path(get, path = "/api/v1/datasets/{origin}/{code}/versions", tag = "datasets",
    params(("origin" = String, Path, description = "The entry's origin."), ("code" = String, Path, description = "The resource code.")),
    responses((status = 200, description = "The versions this node knows, newest first.", body = VersionsList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((origin, code)): Path<(String, String)>,
) -> Result<Json<VersionsList>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let versions = state.node.versions(entry_of(&origin, code)?).await?;
    let versions: Vec<VersionView> = versions.iter().map(view).collect();
    Ok(Json(VersionsList { returned: versions.len(), versions }))
}

/// `GET /api/v1/datasets/{origin}/{code}/versions/{v}`.
#[utoipa::path(get, path = "/api/v1/datasets/{origin}/{code}/versions/{version}", tag = "datasets",
    params(("origin" = String, Path, description = "The entry's origin."), ("code" = String, Path, description = "The resource code."),
        ("version" = String, Path, description = "The version number.")),
    responses((status = 200, description = "The version's manifest.", body = VersionView)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((origin, code, version)): Path<(String, String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let version = version_of(&version)?;
    match state.node.version(entry_of(&origin, code)?, version).await? {
        Some(m) => Ok(Json(view(&m))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no version {version} known here"))),
    }
}

/// What a fetch may name: the grant to present (default: the caller's
/// organization's valid grant for the entry).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FetchBody {
    /// The grant to present.
    grant: Option<String>,
}

/// `POST /api/v1/datasets/{origin}/{code}/versions/{v}/fetch`: 202 with the job.
#[utoipa::path(post, path = "/api/v1/datasets/{origin}/{code}/versions/{version}/fetch", tag = "datasets",
    request_body(content = Option<FetchBody>, description = "Optional."),
    params(("origin" = String, Path, description = "The entry's origin."), ("code" = String, Path, description = "The resource code."),
        ("version" = String, Path, description = "The version number.")),
    responses((status = 202, description = "The fetch to this node, running.", body = FetchView)))]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((origin, code, version)): Path<(String, String, String)>,
    OptionalJsonBody(body): OptionalJsonBody<FetchBody>,
) -> Result<Response, ApiError> {
    let version = version_of(&version)?;
    let entry = entry_of(&origin, code)?;
    let grant = body.unwrap_or_default().grant;
    let job = state.node.start_fetch(who, entry, version, grant).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

/// Fetch jobs.
#[derive(Serialize, ToSchema)]
pub(crate) struct FetchesList {
    /// Newest first.
    fetches: Vec<FetchView>,
    /// How many.
    returned: usize,
}

/// `GET /api/v1/fetches`: the newest fetch jobs the caller may see.
#[utoipa::path(get, path = "/api/v1/fetches", tag = "datasets",
    responses((status = 200, description = "The newest fetches the caller may see.", body = FetchesList)))]
pub(crate) async fn jobs(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<FetchesList>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let fetches = state.node.fetch_jobs(&who).await?;
    Ok(Json(FetchesList { returned: fetches.len(), fetches }))
}

/// `GET /api/v1/fetches/{id}`.
#[utoipa::path(get, path = "/api/v1/fetches/{id}", tag = "datasets",
    params(("id" = String, Path, description = "The fetch's id.")),
    responses((status = 200, description = "The fetch and its progress.", body = FetchView)))]
pub(crate) async fn job(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<FetchView>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    match state.node.fetch_job(&who, id).await? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such fetch of yours here")),
    }
}

/// A subscription request: the entry, and optionally the grant, `idle_only`
/// and a bandwidth cap.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribeBody {
    /// The entry whose versions to follow.
    entry: EntryRef,
    /// The grant to present (default: the organization's valid one).
    grant: Option<String>,
    /// Fetch only while the node is otherwise idle.
    #[serde(default)]
    idle_only: bool,
    /// A bandwidth cap.
    max_bytes_per_second: Option<u64>,
}

/// `POST /api/v1/subscriptions`: the caller's organization follows an entry's
/// versions (201 with the subscription).
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "datasets", request_body = SubscribeBody,
    responses((status = 201, description = "New versions will be fetched here.", body = Subscription)))]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    Caller(who): Caller,
    crate::body::JsonBody(body): crate::body::JsonBody<SubscribeBody>,
) -> Result<Response, ApiError> {
    let entry = entry_of(&body.entry.origin.to_string(), body.entry.code)?;
    let ask = cascade_runtime::SubscriptionRequest {
        grant: body.grant,
        idle_only: body.idle_only,
        max_bytes_per_second: body.max_bytes_per_second,
    };
    let sub = state.node.subscribe_versions(who, entry, ask).await?;
    Ok((StatusCode::CREATED, Json(sub)).into_response())
}

/// Subscriptions.
#[derive(Serialize, ToSchema)]
pub(crate) struct SubscriptionsList {
    /// The subscriptions.
    subscriptions: Vec<Subscription>,
    /// How many.
    returned: usize,
}

/// `GET /api/v1/subscriptions`: those the caller may see.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "datasets",
    responses((status = 200, description = "The subscriptions the caller may see.", body = SubscriptionsList)))]
pub(crate) async fn subscriptions(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<SubscriptionsList>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let subscriptions = state.node.version_subscriptions(&who).await?;
    Ok(Json(SubscriptionsList { returned: subscriptions.len(), subscriptions }))
}

/// `DELETE /api/v1/subscriptions/{id}`.
#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}", tag = "datasets",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses((status = 204, description = "Ended.")))]
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.node.unsubscribe_versions(who, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A `Range` header's one range, resolved against `size` (`None` without one;
/// several ranges are served whole, as RFC 9110 allows).
fn range_of(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(start), None) if b.is_empty() => (start, size),
        (Some(start), Some(last)) if last >= start => (start, last.saturating_add(1).min(size)),
        (None, Some(suffix)) if a.is_empty() && suffix > 0 => (size.saturating_sub(suffix), size),
        _ => return Err(()),
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// `GET /api/v1/datasets/{origin}/{code}/versions/{v}/content`: the content, at a
/// node holding all of it, to the provider or a grantee; one byte range on ask.
#[utoipa::path(get, path = "/api/v1/datasets/{origin}/{code}/versions/{version}/content", tag = "datasets",
    params(("origin" = String, Path, description = "The entry's origin."), ("code" = String, Path, description = "The resource code."),
        ("version" = String, Path, description = "The version number."),
        ("Range" = Option<String>, Header, description = "One byte range (`bytes=0-99`).")),
    responses(
        (status = 200, description = "The content, in its media type.", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "The byte range asked for.", content_type = "*/*", body = Vec<u8>)))]
pub(crate) async fn content(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((origin, code, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = version_of(&version)?;
    let content = state.node.content(&who, entry_of(&origin, code)?, version).await?;
    let size = content.manifest.size;
    let media = HeaderValue::try_from(content.manifest.media_type.as_str())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let etag = HeaderValue::try_from(format!("\"{}\"", hex(&content.manifest.content_hash)));
    let (status, start, end) = match range_of(&headers, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Err(()) => {
            let mut response =
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "no such byte range").into_response();
            if let Ok(v) = HeaderValue::try_from(format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let mut response = Response::new(stream_out(state.node.stream_content(content, start, end)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, media);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Ok(etag) = etag {
        h.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::try_from(format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        range_of(&h, size)
    }

    #[test]
    fn byte_ranges_resolve_against_the_size_and_bad_ones_are_unsatisfiable() {
        assert_eq!(range("bytes=0-99", 1000), Ok(Some((0, 100))));
        assert_eq!(range("bytes=900-", 1000), Ok(Some((900, 1000))));
        assert_eq!(range("bytes=-10", 1000), Ok(Some((990, 1000))));
        assert_eq!(range("bytes=990-5000", 1000), Ok(Some((990, 1000))));
        assert_eq!(range("bytes=0-1,5-6", 1000), Ok(None));
        assert_eq!(range("bytes=1000-", 1000), Err(()));
        assert_eq!(range("bytes=5-1", 1000), Err(()));
        assert_eq!(range("bytes=x-", 1000), Err(()));
    }
}
