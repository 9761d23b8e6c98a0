//! The web console: a page and its script and style, embedded in the binary and
//! served at `/` by every node. It needs no network beyond the node itself (no
//! CDN, no fonts from elsewhere) and nothing built outside cargo. It is a client
//! of the admin API like any other: it signs in with `POST /api/v1/login`, keeps
//! the session token in the tab's `sessionStorage`, and sends it as a bearer
//! token, so the API's authentication, roles and audit apply unchanged (no
//! cookie, so no cross-site request can act for a signed-in user).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::OnceLock;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Everything the console is made of. The page comes first.
const ASSETS: [Asset; 3] = [
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", body: include_str!("index.html") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("app.js") },
    Asset { name: "style.css", content_type: "text/css; charset=utf-8", body: include_str!("style.css") },
];

/// What the page may load and run: only its own files and calls to its own
/// node; no inline script, no framing by other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes: `/` and `/console/{file}`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve(&ASSETS[0], &headers) }))
        .route("/console/{file}", get(asset))
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(asset) => serve(asset, &headers),
        None => crate::error::ApiError::new(StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

/// The assets' validator: a hash of all of them, computed once, so a browser
/// revalidates with a cheap 304 and a new binary's console is never mixed with
/// an old one's.
fn etag() -> &'static HeaderValue {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    ETAG.get_or_init(|| {
        // FNV-1a: a fingerprint of embedded files, not a defence against anyone.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in ASSETS.iter().flat_map(|a| a.body.bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        HeaderValue::from_str(&format!("\"{hash:016x}\"")).unwrap_or(HeaderValue::from_static("\"console\""))
    })
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag().as_bytes());
    let status = if fresh { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let mut response = if fresh { status.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::ETAG, etag().clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        let page = ASSETS[0].body;
        assert!(page.contains("src=\"/console/app.js\"") && page.contains("href=\"/console/style.css\""));
        let scripts = page.matches("<script").count();
        assert_eq!(scripts, page.matches("<script type=\"module\" src=\"/console/").count(), "inline script");
        for asset in &ASSETS {
            // The SVG namespace is a name, not an address the browser loads.
            let body = asset.body.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{}", asset.name);
        }
    }
}
