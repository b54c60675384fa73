//! The alarm calls: `GET /v1/alarms` (open, like every read), `POST /v1/alarms` and `DELETE
//! /v1/alarms/{site}/{source}` with the operator token, and `POST /v1/alarms/hooks/{name}`
//! with the token of `[[alarm_source]] name` (read on every call). A source's token raises
//! and clears alarms of its own sites under its own name, and nothing else: the core checks
//! the site against the source's `sites` (and that this node is a voter of the site's
//! electorate), the hook refuses every other token.

use super::access::{authorize, holds_token};
use super::answers::{AlarmBody, AlarmHookBody, AlarmList, ErrorBody};
use super::operator::send;
use super::{error, AppState, Snap};
use crate::config::alarm::AlarmSourceKind;
use crate::core::alarm::{check_source, MAX_REASON_LEN};
use crate::core::types::SiteId;
use crate::node::snapshot::AlarmView;
use crate::node::CommandKind;
use crate::wire::AlarmSeverity;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;

/// Every alarm call this node knows (the voters of a site's electorate know its alarms).
#[utoipa::path(get, path = "/v1/alarms", tag = "read",
    responses((status = 200, description = "Alarm calls, raised or cleared", body = AlarmList)))]
pub(super) async fn list(State(s): State<Snap>) -> Json<AlarmList> {
    Json(AlarmList {
        alarms: s.borrow().alarms.clone(),
    })
}

/// Checks a body's fields as the core will, so that the 400 names the field.
fn check_fields(source: &str, reason: &str) -> Result<(), String> {
    check_source(source).map_err(|e| format!("source {e}"))?;
    if reason.chars().count() > MAX_REASON_LEN {
        return Err(format!("reason is longer than {MAX_REASON_LEN} characters"));
    }
    Ok(())
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON body: {e}"))
}

/// Reads `POST /v1/alarms`.
pub fn parse_raise(bytes: &[u8]) -> Result<CommandKind, String> {
    let b: AlarmBody =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON body: {e}"))?;
    check_fields(&b.source, &b.reason)?;
    Ok(CommandKind::Alarm(crate::core::node::AlarmCall {
        site: SiteId(b.site),
        source: b.source,
        severity: b.severity,
        reason: b.reason,
        raised: true,
        via: None,
    }))
}

/// Raises an alarm of a site: evidence that it may soon be lost. What it does is the watch's
/// `on_alarm` (docs/alarms.md). Raising it again (the same source) restamps it.
#[utoipa::path(post, path = "/v1/alarms", tag = "operator",
    security(("bearer" = [])),
    request_body = AlarmBody,
    responses(
        (status = 200, description = "The alarm as it now stands", body = AlarmView),
        (status = 400, description = "A bad body (the message names the field)", body = ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Mutating calls are disabled (no [api] token_file), or \
            this node is not a voter of the site's electorate", body = ErrorBody),
        (status = 404, description = "No such watched site", body = ErrorBody),
        (status = 408, description = "No answer within the request timeout (empty body)"),
        (status = 409, description = "Too many sources for the site, or no later stamp left",
            body = ErrorBody),
        (status = 413, description = "The body is larger than the limit (plain text)"),
        (status = 503, description = "The node is stopping", body = ErrorBody),
    ))]
pub(super) async fn raise(State(s): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r;
    }
    match parse_raise(&bytes) {
        Ok(kind) => send(&s, kind, StatusCode::OK).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Clears the alarm of a site from one source.
#[utoipa::path(delete, path = "/v1/alarms/{site}/{source}", tag = "operator",
    security(("bearer" = [])),
    params(
        ("site" = String, Path, description = "A site id of the fleet file", example = "a"),
        ("source" = String, Path, description = "The alarm's source", example = "fire-a",
            min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]+$"),
    ),
    responses(
        (status = 200, description = "The alarm as it now stands", body = AlarmView),
        (status = 400, description = "A bad source name", body = ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Mutating calls are disabled (no [api] token_file), or \
            this node is not a voter of the site's electorate", body = ErrorBody),
        (status = 404, description = "No such watched site, or no alarm of it from this source",
            body = ErrorBody),
        (status = 408, description = "No answer within the request timeout (empty body)"),
        (status = 409, description = "No later stamp left", body = ErrorBody),
        (status = 503, description = "The node is stopping", body = ErrorBody),
    ))]
pub(super) async fn clear(
    State(s): State<AppState>,
    Path((site, source)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r;
    }
    if let Err(e) = check_fields(&source, "") {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let kind = CommandKind::Alarm(crate::core::node::AlarmCall {
        site: SiteId(site),
        source,
        severity: AlarmSeverity::Warning,
        reason: "cleared by the operator".into(),
        raised: false,
        via: None,
    });
    send(&s, kind, StatusCode::OK).await
}

/// An `[[alarm_source]]` of kind "http" raises or clears its alarm of a site, with its own
/// bearer token (the first line of its `token_file`), which is good for nothing else.
#[utoipa::path(post, path = "/v1/alarms/hooks/{name}", tag = "alarm source",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The [[alarm_source]] name", example = "fire-a",
        min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]+$")),
    request_body = AlarmHookBody,
    responses(
        (status = 200, description = "The alarm as it now stands", body = AlarmView),
        (status = 400, description = "A bad body (the message names the field)", body = ErrorBody),
        (status = 401, description = "No bearer token, or not this source's", body = ErrorBody),
        (status = 403, description = "The source may not speak for the site, or this node is \
            not a voter of the site's electorate", body = ErrorBody),
        (status = 404, description = "No such http alarm source, no such watched site, or \
            (clearing) no alarm of the site from this source", body = ErrorBody),
        (status = 408, description = "No answer within the request timeout (empty body)"),
        (status = 409, description = "Too many sources for the site, or no later stamp left",
            body = ErrorBody),
        (status = 413, description = "The body is larger than the limit (plain text)"),
        (status = 503, description = "The node is stopping", body = ErrorBody),
    ))]
pub(super) async fn hook(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let token_file = s
        .snapshot
        .borrow()
        .alarm_sources
        .iter()
        .find(|src| src.name == name)
        .and_then(|src| match &src.kind {
            AlarmSourceKind::Http { token_file } => Some(token_file.clone()),
            AlarmSourceKind::Exec { .. } => None,
        });
    let Some(token_file) = token_file else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no [[alarm_source]] of kind \"http\" named {name:?} in this fleet"),
        );
    };
    if !holds_token(&headers, &token_file) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            format!("this hook needs an Authorization: Bearer TOKEN header with the token of alarm source {name:?} (its token_file)"),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a header"),
        );
        return r;
    }
    let b: AlarmHookBody = match json(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let raised = match b.state.as_str() {
        "raised" => true,
        "cleared" => false,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state {other:?} is not \"raised\" or \"cleared\""),
            )
        }
    };
    if let Err(e) = check_fields(&name, &b.reason) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let kind = CommandKind::Alarm(crate::core::node::AlarmCall {
        site: SiteId(b.site),
        source: name.clone(),
        severity: b.severity.unwrap_or(AlarmSeverity::Critical),
        reason: b.reason,
        raised,
        via: Some(name),
    });
    send(&s, kind, StatusCode::OK).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raise_body_names_the_field_at_fault() {
        let ok = parse_raise(
            br#"{"site":"a","source":"fire-a","severity":"critical","reason":"smoke"}"#,
        );
        assert!(matches!(ok, Ok(CommandKind::Alarm(c)) if c.raised && c.source == "fire-a"));
        let e =
            parse_raise(br#"{"site":"a","source":"fire a","severity":"critical"}"#).unwrap_err();
        assert!(e.starts_with("source "), "{e}");
        let e = parse_raise(br#"{"site":"a","source":"f","severity":"fatal"}"#).unwrap_err();
        assert!(
            e.contains("severity") || e.contains("unknown variant"),
            "{e}"
        );
        let long = format!(
            r#"{{"site":"a","source":"f","severity":"warning","reason":"{}"}}"#,
            "x".repeat(MAX_REASON_LEN + 1)
        );
        assert!(parse_raise(long.as_bytes())
            .unwrap_err()
            .starts_with("reason"));
        let e = parse_raise(br#"{"site":"a","source":"f","severity":"warning","extra":1}"#)
            .unwrap_err();
        assert!(e.contains("extra"), "{e}");
    }
}
