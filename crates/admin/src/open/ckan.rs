//! The part of CKAN's Action API (v3) that harvesters and clients use, in CKAN's
//! envelope (`{"help", "success", "result"}`, errors as `{"__type", "message"}`
//! with CKAN's statuses), so an existing CKAN portal can harvest a node:
//! - `package_search`: `q` (text in code, name or summary), `fq` (only
//!   `metadata_modified:[<time> TO *]`, as CKAN's harvester sends it), `rows` (at
//!   most 1000), `start`, `sort` (`id asc`, the default: ids sort as the catalog
//!   is kept, so paging with `start` is complete and stable);
//! - `package_show` (`id`: an id or a name), `package_list` (`limit`, `offset`);
//! - `organization_list` (`all_fields`, `limit`, `offset`), `organization_show`
//!   (`id`: a credit code, either case).
//!
//! Paging with `start` is CKAN's own offset paging: stable and complete while
//! the open catalog does not change under it. An entry withdrawn (or closed)
//! behind a harvester's position moves the later ones back by one, so one may
//! be missed in that pass; a harvester that also asks for what changed since its
//! last run (a margin before it, as CKAN's harvester takes) gets it then only if
//! it changed, so a full harvest now and then is what CKAN's own portals need too.
//!
//! A package's `id` is `{origin}/{code}`; its `name` the same as a CKAN slug
//! (`370100-3-2_000007` for code `3.2/000007` of 370100). `metadata_modified`
//! is when this node stored the entry's current version: what "changed since
//! my last harvest" means at this node, whatever the origin's clock says.

use super::{division_name, tier_name, Base};
use crate::routes::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_core::CommandError;
use cascade_protocol::civil::{parse_utc_iso, utc_iso};
use cascade_protocol::limits::MAX_LIST;
use cascade_protocol::org::Organization;
use cascade_protocol::NodeId;
use cascade_runtime::{OpenEntry, OpenSearch};
use serde_json::{json, Map, Value};

/// Packages a search returns when `rows` is not given (CKAN's default).
const DEFAULT_ROWS: usize = 10;

/// The one sort order served.
const SORT: &str = "id asc";

/// Parameters of a call, from the query string or a JSON or form body.
type Params = Map<String, Value>;

/// A failed call, answered in CKAN's error envelope.
struct Failure {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// The parameter at fault, for validation errors.
    field: Option<&'static str>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status: StatusCode::CONFLICT,
        kind: "Validation Error",
        message: message.into(),
        field: Some(field),
    }
}

fn search_error(message: impl Into<String>) -> Failure {
    Failure { status: StatusCode::CONFLICT, kind: "Search Query Error", message: message.into(), field: None }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Failure {
        let (status, kind) = match e {
            CommandError::NotFound(_) => (StatusCode::NOT_FOUND, "Not Found Error"),
            CommandError::Busy(_) | CommandError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
            _ => (StatusCode::CONFLICT, "Validation Error"),
        };
        Failure { status, kind, message: e.to_string(), field: None }
    }
}

pub(crate) async fn get(
    State(state): State<AppState>,
    base: Base,
    Path(action): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut params = Params::new();
    for (key, value) in form_urlencoded(raw.as_deref().unwrap_or("")) {
        params.insert(key, Value::String(value));
    }
    answer(&state, &base, &action, params).await
}

pub(crate) async fn post(
    State(state): State<AppState>,
    base: Base,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        Params::new()
    } else if form {
        let text = String::from_utf8_lossy(&body);
        form_urlencoded(&text).map(|(k, v)| (k, Value::String(v))).collect()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(params)) => params,
            _ => {
                let failure = Failure {
                    status: StatusCode::BAD_REQUEST,
                    kind: "Bad request",
                    message: "the body must be a JSON object of parameters".into(),
                    field: None,
                };
                return envelope(&base, &action, Err(failure));
            }
        }
    };
    answer(&state, &base, &action, params).await
}

/// Decodes `a=b&c=d` (`+` as space, percent escapes), skipping broken pairs.
fn form_urlencoded(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.split('&').filter(|p| !p.is_empty()).filter_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        Some((unescape(k)?, unescape(v)?))
    })
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

async fn answer(state: &AppState, base: &Base, action: &str, params: Params) -> Response {
    let result = match action {
        "package_search" => package_search(state, base, &params).await,
        "package_show" => package_show(state, base, &params).await,
        "package_list" => package_list(state, &params).await,
        "organization_list" => organization_list(state, &params).await,
        "organization_show" => organization_show(state, &params).await,
        _ => Err(Failure {
            status: StatusCode::BAD_REQUEST,
            kind: "Bad request",
            message: format!("Action name not known: {action}"),
            field: None,
        }),
    };
    envelope(base, action, result)
}

fn envelope(base: &Base, action: &str, result: Result<Value, Failure>) -> Response {
    let help = format!("{}/api/3/action/help_show?name={}", base.0, super::segment(action));
    match result {
        Ok(result) => Json(json!({ "help": help, "success": true, "result": result })).into_response(),
        Err(f) => {
            let mut error = json!({ "__type": f.kind, "message": f.message });
            if let Some(field) = f.field {
                error[field] = json!([f.message]);
            }
            let mut response =
                (f.status, Json(json!({ "help": help, "success": false, "error": error }))).into_response();
            if f.status == StatusCode::SERVICE_UNAVAILABLE {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            response
        }
    }
}

/// A text parameter; numbers and booleans are taken as written.
fn text(params: &Params, name: &'static str) -> Result<Option<String>, Failure> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

/// A non-negative integer parameter, as a number or a decimal string.
fn count(params: &Params, name: &'static str) -> Result<Option<usize>, Failure> {
    let parsed = match params.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    parsed
        .and_then(|n| usize::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| invalid(name, "Invalid integer: must be a whole number, 0 or more"))
}

fn flag(params: &Params, name: &'static str) -> Result<bool, Failure> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(invalid(name, "must be true or false")),
        },
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

/// The time an `fq` asks entries to be modified at or after, if any. Terms
/// are whitespace-separated (an optional `+` or `AND` between them); a range's
/// own spaces stay inside its brackets.
fn modified_since(fq: &str) -> Result<Option<u64>, Failure> {
    let mut since = None;
    let mut words = fq.split_whitespace();
    while let Some(word) = words.next() {
        let mut term = word.trim_start_matches('+').to_string();
        if term.is_empty() || term == "AND" || term == "*:*" {
            continue;
        }
        if term.contains('[') {
            while !term.ends_with(']') {
                let Some(more) = words.next() else { break };
                term.push(' ');
                term.push_str(more);
            }
        }
        let unsupported = || {
            search_error(format!(
                "unsupported fq term {term:?}: only metadata_modified:[<time> TO *] is served"
            ))
        };
        let (from, to) = term
            .strip_prefix("metadata_modified:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.split_once(" TO "))
            .ok_or_else(unsupported)?;
        if to.trim() != "*" {
            return Err(search_error("metadata_modified ranges must be open-ended: [<time> TO *]"));
        }
        let from = from.trim();
        if from != "*" {
            let ms = parse_utc_iso(from)
                .ok_or_else(|| search_error(format!("{from:?} is not an ISO 8601 UTC time")))?;
            since = Some(since.map_or(ms, |s: u64| s.max(ms)));
        }
    }
    Ok(since)
}

async fn package_search(state: &AppState, base: &Base, params: &Params) -> Result<Value, Failure> {
    let q = text(params, "q")?.map(|q| q.trim().to_string()).filter(|q| !q.is_empty() && q != "*:*");
    if q.as_ref().is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
        return Err(invalid("q", format!("at most {MAX_QUERY_CHARS} characters")));
    }
    let stored_since_ms = match text(params, "fq")? {
        Some(fq) => modified_since(&fq)?,
        None => None,
    };
    if let Some(sort) = text(params, "sort")? {
        if sort.split_whitespace().collect::<Vec<_>>().join(" ") != SORT {
            return Err(search_error(format!("unsupported sort {sort:?}: only \"{SORT}\" is served")));
        }
    }
    let limit = count(params, "rows")?.unwrap_or(DEFAULT_ROWS).min(MAX_LIST);
    let skip = count(params, "start")?.unwrap_or(0);
    let page = state.node.open_catalog(OpenSearch { q, stored_since_ms, skip, limit }).await?;
    let results: Vec<Value> = page.entries.iter().map(|e| package(base, e)).collect();
    Ok(json!({
        "count": page.count,
        "sort": SORT,
        "results": results,
        "facets": {},
        "search_facets": {},
    }))
}

/// Longest `q` accepted, in characters (as the admin catalog search).
const MAX_QUERY_CHARS: usize = 200;

/// The entry a package id (`370100/3.2/000007`) or name (`370100-3-2_000007`) names.
fn entry_named(id: &str) -> Option<(NodeId, String)> {
    let (origin, code) = match id.split_once('/') {
        Some((origin, code)) => (origin, code.to_string()),
        None => {
            let (origin, slug) = id.split_once('-')?;
            (
                origin,
                slug.chars()
                    .map(|c| match c {
                        '-' => '.',
                        '_' => '/',
                        c => c,
                    })
                    .collect(),
            )
        }
    };
    Some((origin.parse().ok()?, code))
}

async fn package_show(state: &AppState, base: &Base, params: &Params) -> Result<Value, Failure> {
    let id = text(params, "id")?.ok_or_else(|| invalid("id", "Missing value"))?;
    let not_found = || Failure {
        status: StatusCode::NOT_FOUND,
        kind: "Not Found Error",
        message: "Not found".into(),
        field: None,
    };
    let (origin, code) = entry_named(&id).ok_or_else(not_found)?;
    let entry = state.node.open_entry(origin, code).await?;
    Ok(package(base, &entry))
}

async fn package_list(state: &AppState, params: &Params) -> Result<Value, Failure> {
    let limit = count(params, "limit")?.unwrap_or(MAX_LIST).min(MAX_LIST);
    let skip = count(params, "offset")?.unwrap_or(0);
    let (_, ids) = state.node.open_ids(skip, limit).await?;
    Ok(json!(ids.iter().map(|(origin, code)| name(*origin, code)).collect::<Vec<_>>()))
}

async fn organization_show(state: &AppState, params: &Params) -> Result<Value, Failure> {
    let id = text(params, "id")?.ok_or_else(|| invalid("id", "Missing value"))?;
    let org = state.node.open_organization(id.to_uppercase()).await?;
    Ok(organization(&org))
}

async fn organization_list(state: &AppState, params: &Params) -> Result<Value, Failure> {
    let all_fields = flag(params, "all_fields")?;
    let limit = count(params, "limit")?.unwrap_or(MAX_LIST).min(MAX_LIST);
    let skip = count(params, "offset")?.unwrap_or(0);
    let orgs = state.node.open_organizations(skip, limit).await?;
    Ok(if all_fields {
        json!(orgs.iter().map(organization).collect::<Vec<_>>())
    } else {
        json!(orgs.iter().map(|o| o.credit_code.to_lowercase()).collect::<Vec<_>>())
    })
}

/// A package's name: its origin and code as a CKAN slug (lower-case letters,
/// digits, `-` and `_`): `.` becomes `-` and `/` becomes `_`.
fn name(origin: NodeId, code: &str) -> String {
    let slug: String = code
        .chars()
        .map(|c| match c {
            '.' => '-',
            '/' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    format!("{origin}-{slug}")
}

fn organization(org: &Organization) -> Value {
    json!({
        "id": org.credit_code,
        "name": org.credit_code.to_lowercase(),
        "title": org.name,
        "display_name": org.name,
        "description": "",
        "type": "organization",
        "is_organization": true,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
    })
}

/// An open entry as a CKAN package: dataset versions and services as resources.
fn package(base: &Base, open: &OpenEntry) -> Value {
    let (origin, entry) = (open.row.origin, &open.row.entry);
    let id = format!("{origin}/{}", entry.code);
    let modified = open.row.stored_ms.map_or_else(|| utc_iso(0), utc_iso);
    let org = open.provider.clone().unwrap_or_else(|| Organization {
        credit_code: entry.provider.clone(),
        name: entry.provider.clone(),
        division: origin,
        parent: None,
    });
    let mut resources: Vec<Value> = open
        .versions
        .iter()
        .map(|m| {
            json!({
                "id": format!("{id}/versions/{}", m.version),
                "package_id": id,
                "name": format!("{} 第 {} 版", entry.name, m.version),
                "url": base.content(origin, &entry.code, m.version),
                "format": format_of(&m.media_type),
                "mimetype": m.media_type,
                "size": m.size,
                "created": utc_iso(m.published_ms),
                "last_modified": utc_iso(m.published_ms),
                "resource_type": "file",
                "state": "active",
            })
        })
        .collect();
    resources.extend(open.services.iter().map(|s| {
        json!({
            "id": format!("{id}/services/{}", s.id),
            "package_id": id,
            "name": s.draft.name,
            "url": base.gateway(&s.id),
            "format": "API",
            "resource_type": "api",
            "state": "active",
        })
    }));
    for (position, resource) in resources.iter_mut().enumerate() {
        resource["position"] = json!(position);
    }
    let mut extras = vec![
        json!({"key": "resource_code", "value": entry.code}),
        json!({"key": "origin", "value": origin.to_string()}),
        json!({"key": "origin_division", "value": division_name(origin)}),
        json!({"key": "origin_tier", "value": tier_name(origin)}),
        json!({"key": "classification", "value": entry.classification}),
        json!({"key": "resource_format", "value": entry.format.as_str()}),
        json!({"key": "share_type", "value": entry.share_type.as_str()}),
        json!({"key": "update_cycle", "value": entry.update_cycle.as_str()}),
    ];
    if let Some(date) = &entry.publish_date {
        extras.push(json!({"key": "publish_date", "value": date}));
    }
    json!({
        "id": id,
        "name": name(origin, &entry.code),
        "title": entry.name,
        "notes": entry.summary,
        "type": "dataset",
        "state": "active",
        "private": false,
        "version": entry.version.to_string(),
        "url": base.dataset(origin, &entry.code),
        "license_id": "notspecified",
        "metadata_created": modified,
        "metadata_modified": modified,
        "owner_org": org.credit_code,
        "organization": organization(&org),
        "num_resources": resources.len(),
        "resources": resources,
        "num_tags": 0,
        "tags": [],
        "groups": [],
        "extras": extras,
    })
}

/// CKAN's short format name for a media type (`text/csv` → `CSV`).
fn format_of(media_type: &str) -> String {
    match super::essence(media_type).as_str() {
        "text/csv" => "CSV".into(),
        "application/json" => "JSON".into(),
        "application/xml" | "text/xml" => "XML".into(),
        "application/pdf" => "PDF".into(),
        "application/zip" => "ZIP".into(),
        "application/vnd.ms-excel" => "XLS".into(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "XLSX".into(),
        other => other.rsplit('/').next().unwrap_or(other).to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_name_the_same_entry_and_sort_as_the_catalog() {
        let jinan: NodeId = "370100".parse().expect("a division");
        for code in ["3/000001", "3.2/000007", "1.01/123456", "2.1234/999999"] {
            assert_eq!(entry_named(&format!("{jinan}/{code}")), Some((jinan, code.to_string())));
            let name = name(jinan, code);
            assert!(name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));
            assert_eq!(entry_named(&name), Some((jinan, code.to_string())), "{name}");
        }
        assert_eq!(entry_named("nonsense"), None);
        assert_eq!(entry_named("12/3/000001"), None);
    }

    #[test]
    fn fq_takes_open_ended_modified_ranges_only() {
        assert_eq!(
            modified_since("metadata_modified:[2025-11-28T02:52:05.123456Z TO *]").ok(),
            Some(Some(1_764_298_325_123))
        );
        assert_eq!(modified_since("*:* +metadata_modified:[* TO *]").ok(), Some(None));
        assert_eq!(modified_since("").ok(), Some(None));
        for bad in [
            "organization:abc",
            "metadata_modified:[2025-11-28 TO 2025-12-01]",
            "metadata_modified:[yesterday TO *]",
            "-groups:x",
        ] {
            let failure = modified_since(bad).expect_err(bad);
            assert_eq!(failure.status, StatusCode::CONFLICT, "{bad}");
        }
    }

    #[test]
    fn form_bodies_and_query_strings_decode() {
        let pairs: Vec<_> = form_urlencoded("q=%E4%BC%81%E4%B8%9A+x&rows=5&bad=%zz&sign=%+A&&flag").collect();
        assert_eq!(
            pairs,
            vec![("q".into(), "企业 x".into()), ("rows".into(), "5".into()), ("flag".into(), "".into())]
        );
    }
}
