//! The planners' dashboard (SPEC §11): static assets compiled into the
//! binary, served at `/` and `/dashboard/{file}` under a strict
//! Content-Security-Policy. The page reaches muster only through the
//! public `/v1` API with the key its user signs in with.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

/// The policy of every dashboard answer: scripts, styles and API calls
/// from this origin only, no inline script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// One file of the dashboard, compiled in.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../dashboard/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file `index.html` loads; the page is plain ES modules, so there
/// is no build step between these files and the browser.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("styles.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("booking.js", JS),
    asset!("dom.js", JS),
    asset!("finder.js", JS),
    asset!("live.js", JS),
    asset!("meet.js", JS),
    asset!("ops.js", JS),
    asset!("time.js", JS),
    asset!("timeline.js", JS),
    asset!("waitlist.js", JS),
];

/// An ETag per asset (a digest of its bytes), made on first use.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
        .collect()
});

/// `GET /` (the page) and `GET /dashboard/{file}` (its scripts and styles);
/// merge it into the application router beside `ops::router()`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some((asset, etag)) = ASSETS
        .iter()
        .zip(ETAGS.iter())
        .find(|(asset, _)| asset.name == name)
    else {
        return ApiError::NotFound("dashboard file".into()).into_response();
    };
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The URLs carry no version, so a browser must ask again each time; the
    // ETag makes that a 304 until a new binary ships new files.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_served() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        let scripts = ASSETS.iter().filter(|a| a.name.ends_with(".js"));
        // index.html names the entry module and the style sheet; the
        // modules import each other by relative path.
        assert!(page.contains("/dashboard/app.js") && page.contains("/dashboard/styles.css"));
        for script in scripts {
            let text = std::str::from_utf8(script.body).unwrap_or_default();
            for import in text.split("from \"./").skip(1) {
                let file = import.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.name == file),
                    "{} imports {file}, which is not served",
                    script.name
                );
            }
        }
    }

    #[test]
    fn views_share_helpers_through_dom_js_not_each_other() {
        // app.js wires the views together; a view that imported another
        // would grow its own copy of the helpers again.
        const VIEWS: [&str; 6] = [
            "booking.js",
            "finder.js",
            "live.js",
            "meet.js",
            "ops.js",
            "timeline.js",
        ];
        for view in ASSETS.iter().filter(|a| VIEWS.contains(&a.name)) {
            let text = std::str::from_utf8(view.body).unwrap_or_default();
            for import in text.split("from \"./").skip(1) {
                let file = import.split('"').next().unwrap_or_default();
                assert!(
                    !VIEWS.contains(&file),
                    "{} imports the view {file}",
                    view.name
                );
            }
        }
        let copies = ASSETS
            .iter()
            .filter(|a| {
                std::str::from_utf8(a.body)
                    .unwrap_or_default()
                    .contains("function el(")
            })
            .count();
        assert_eq!(copies, 1, "el() is defined once, in dom.js");
    }

    #[test]
    fn no_page_has_inline_script_or_style() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        assert!(!page.contains("style=\""));
        assert!(!page.contains("<style"));
        assert_eq!(
            page.matches("<script").count(),
            page.matches("<script type=\"module\" src=").count()
        );
    }
}
