//! The status page at `/`: one HTML page, its script and its style sheet, built into the
//! binary (nothing is fetched from elsewhere, so it works on a closed network). It reads the
//! same open endpoints as any client (`/v1/status`, `/v1/sites/{id}`, `/v1/failovers`) and
//! refreshes on every event of `/v1/events`, and at most once a second besides. Read-only:
//! the page has no control that changes anything; the CLI is the way to act.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// Only this origin's own script, style sheet and endpoints; no inline code, no frames, no
/// forms. The favicon is an empty `data:` URL so that the browser asks for nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A node upgraded in place serves new assets: the browser asks again each time.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /`: the page.
#[utoipa::path(get, path = "/", tag = "read",
    responses((status = 200, description = "The status page", body = String,
        content_type = "text/html")))]
pub(super) async fn index() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    r.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `GET /page/app.js`.
#[utoipa::path(get, path = "/page/app.js", tag = "read",
    responses((status = 200, description = "An asset of the status page", body = String,
        content_type = "text/javascript")))]
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /page/style.css`.
#[utoipa::path(get, path = "/page/style.css", tag = "read",
    responses((status = 200, description = "An asset of the status page", body = String,
        content_type = "text/css")))]
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains(r#"src="/page/app.js""#));
        assert!(INDEX.contains(r#"href="/page/style.css""#));
        // Nothing from another origin, and no inline script the policy would block.
        for text in [INDEX, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//fonts.") && !text.contains("@import"));
        }
        assert_eq!(INDEX.matches("<script").count(), 1);
        assert!(!INDEX.contains("style=\""));
    }

    #[test]
    fn the_page_has_no_control_that_changes_anything() {
        for text in [INDEX, SCRIPT] {
            for verb in ["POST", "DELETE", "PUT", "PATCH", "<form", "<button"] {
                assert!(!text.contains(verb), "{verb} on a read-only page");
            }
        }
    }
}
