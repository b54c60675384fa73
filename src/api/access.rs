//! Who may do what on the REST API. Health, status, sites, verdicts and metrics are open:
//! monitoring must work without secrets. Mutating calls need the operator token (`[api]
//! token_file`). The output of failover steps (scripts print what they like, secrets
//! included) is shown only to a caller presenting the read token (`[api] read_token_file`)
//! or the operator token; everyone else sees it redacted. Token files are read on every call,
//! so a new token applies at once.

use super::{error, AppState};
use crate::node::snapshot::{FailoverStepView, FailoverView, NodeSnapshot};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use std::path::Path;

/// What replaces a step's output for a caller without the read token.
pub const REDACTED: &str = "[output redacted: present the read token or the operator token]";

/// The first line (trimmed) of a token file; None when unreadable or empty.
fn token_in(path: &Path) -> Option<String> {
    crate::small_file::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
        .filter(|t| !t.is_empty())
}

/// The bearer token the caller presents, if any.
fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn holds(headers: &HeaderMap, path: Option<&Path>) -> bool {
    match (presented(headers), path.and_then(token_in)) {
        (Some(p), Some(t)) => same(p.as_bytes(), t.as_bytes()),
        _ => false,
    }
}

/// Whether the caller presents the token in `path` (an alarm source's).
pub fn holds_token(headers: &HeaderMap, path: &Path) -> bool {
    holds(headers, Some(path))
}

/// Refuses the call unless it carries the configured operator bearer token.
#[allow(clippy::result_large_err)]
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let path = state.snapshot.borrow().api_token_file.clone();
    let Some(path) = path else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "mutating REST calls are disabled on this fleet: set [api] token_file = \"/path\" in \
             the fleet file (the file's first line is the bearer token)",
        ));
    };
    if token_in(&path).is_none() {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "mutating REST calls are disabled: the [api] token_file {} cannot be read or its \
                 first line is empty",
                path.display()
            ),
        ));
    }
    let unauthorized = |msg: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, msg);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a header"),
        );
        r
    };
    match presented(headers) {
        None => Err(unauthorized(
            "this call needs an Authorization: Bearer TOKEN header with the token of [api] token_file",
        )),
        Some(_) if !holds(headers, Some(&path)) => Err(unauthorized("the bearer token is wrong")),
        Some(_) => Ok(()),
    }
}

/// Whether the caller may read failover step output: it presents the read token or the
/// operator token.
pub fn may_read_output(snap: &NodeSnapshot, headers: &HeaderMap) -> bool {
    holds(headers, snap.api_read_token_file.as_deref())
        || holds(headers, snap.api_token_file.as_deref())
}

/// A step's detail is the actuator's one-line account, then the tail of what the step
/// printed; only that first line is kept.
fn first_line(text: &str) -> String {
    match text.split_once('\n') {
        Some((head, _)) => format!("{head}\n{REDACTED}"),
        None => text.to_string(),
    }
}

/// The run with every step's output (and the summary that quotes a failed step) cut off.
pub fn redacted(run: &FailoverView) -> FailoverView {
    FailoverView {
        summary: run.summary.as_deref().map(first_line),
        steps: run
            .steps
            .iter()
            .map(|s| FailoverStepView {
                detail: first_line(&s.detail),
                ..s.clone()
            })
            .collect(),
        ..run.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    #[test]
    fn output_is_for_the_read_or_the_operator_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let (read, op) = (dir.path().join("read"), dir.path().join("op"));
        std::fs::write(&read, "r-secret\n").unwrap();
        std::fs::write(&op, "o-secret\n").unwrap();
        let mut snap = NodeSnapshot {
            api_token_file: Some(op),
            ..NodeSnapshot::default()
        };
        // No read token configured: only the operator token reads.
        assert!(!may_read_output(&snap, &HeaderMap::new()));
        assert!(!may_read_output(&snap, &bearer("r-secret")));
        assert!(may_read_output(&snap, &bearer("o-secret")));
        snap.api_read_token_file = Some(read);
        assert!(may_read_output(&snap, &bearer("r-secret")));
        assert!(may_read_output(&snap, &bearer("o-secret")));
        assert!(!may_read_output(&snap, &bearer("guess")));
        assert!(!may_read_output(&snap, &bearer("")));
        // Neither file configured: nobody reads, an empty token included.
        assert!(!may_read_output(&NodeSnapshot::default(), &bearer("")));
    }

    #[test]
    fn redaction_keeps_the_actuators_line_and_drops_what_the_step_printed() {
        assert_eq!(
            first_line("exec /x exited 1\npassword=hunter2\nmore"),
            format!("exec /x exited 1\n{REDACTED}")
        );
        assert_eq!(first_line("exec /x exited 0"), "exec /x exited 0");
    }
}
