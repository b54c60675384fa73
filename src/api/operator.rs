//! The mutating REST calls: manual failover, drill, maintenance and failback. Each needs the
//! bearer token of the fleet file's `[api] token_file` (read again on every call, so a new
//! token applies at once); without a configured token they are all refused (403). A call is
//! sent to the node's driver loop as a `Command` and answered with its reply.

use super::access::authorize;
use super::answers::{
    CommandAnswer, DrillReport, ErrorBody, FailoverBody, Maintenance, MaintenanceBody, RunStarted,
    SiteBody, MAX_MAINTENANCE_S, MIN_MAINTENANCE_S,
};
use super::{error, AppState};
use crate::core::alarm::AlarmError;
use crate::core::maintenance::MaintenanceError;
use crate::core::types::SiteId;
use crate::node::{Command, CommandKind, OperatorError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// A mutating call whose JSON body `parse_operator_body` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorCall {
    /// POST /v1/failovers {"site", "reason", "force"?}
    Failover,
    /// POST /v1/drills {"site"}
    Drill,
    /// POST /v1/failbacks {"site"}
    Failback,
    /// POST /v1/sites/{id}/maintenance {"until": RFC 3339} | {"duration_s": N}; the site is
    /// the path's.
    SetMaintenance,
}

/// Reads and checks a mutating call's body exactly as its handler does, before the command
/// reaches the node: `path_site` is the site named in the path (maintenance only), `now_ms`
/// the wall clock a `duration_s` counts from. Unknown or missing fields, bad JSON, an empty
/// reason, an unparsable time or an out-of-range duration are an error message (a 400).
/// An empty (or whitespace) body reads as `{}`.
pub fn parse_operator_body(
    call: OperatorCall,
    path_site: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<CommandKind, String> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    match call {
        OperatorCall::Failover => {
            let b: FailoverBody = json_body(text)?;
            if b.reason.trim().is_empty() {
                return Err("reason must say why the failover is started".to_string());
            }
            Ok(CommandKind::Failover {
                site: SiteId(b.site),
                reason: b.reason,
                force: b.force,
            })
        }
        OperatorCall::Drill => Ok(CommandKind::Drill {
            site: SiteId(json_body::<SiteBody>(text)?.site),
        }),
        OperatorCall::Failback => Ok(CommandKind::Failback {
            site: SiteId(json_body::<SiteBody>(text)?.site),
        }),
        OperatorCall::SetMaintenance => {
            let b: MaintenanceBody = json_body(text)?;
            Ok(CommandKind::SetMaintenance {
                site: SiteId(path_site.to_string()),
                until_unix_ms: maintenance_until(b, now_ms)?,
            })
        }
    }
}

fn json_body<T: DeserializeOwned>(text: &[u8]) -> Result<T, String> {
    serde_json::from_slice(text).map_err(|e| format!("invalid JSON body: {e}"))
}

/// When the maintenance window asked for by `b` ends, in Unix milliseconds.
fn maintenance_until(b: MaintenanceBody, now_ms: i64) -> Result<i64, String> {
    match (b.until, b.duration_s) {
        (Some(t), None) => match humantime::parse_rfc3339_weak(&t) {
            Ok(t) => Ok(t
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)),
            Err(e) => Err(format!(
                "until {t:?} is not an RFC 3339 UTC time such as 2030-01-31T22:00:00Z: {e}"
            )),
        },
        (None, Some(d)) if (MIN_MAINTENANCE_S..=MAX_MAINTENANCE_S).contains(&d) => {
            Ok(now_ms.saturating_add((d * 1000.0) as i64))
        }
        (None, Some(_)) => {
            Err("duration_s must be a number of seconds from 1 to 90 days (7776000)".to_string())
        }
        _ => Err("give exactly one of until (RFC 3339) and duration_s (seconds)".to_string()),
    }
}

/// The command of a call, or the 400 that names what is wrong with its body.
#[allow(clippy::result_large_err)]
fn command(call: OperatorCall, path_site: &str, bytes: &Bytes) -> Result<CommandKind, Response> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    parse_operator_body(call, path_site, bytes, now_ms)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))
}

/// Sends `kind` to the driver loop and turns its reply into a response.
pub(super) async fn send(state: &AppState, kind: CommandKind, ok: StatusCode) -> Response {
    let (reply, answer) = oneshot::channel();
    if state.commands.send(Command { kind, reply }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    }
    match answer.await {
        Ok(Ok(v)) => (ok, Json(CommandAnswer::of(&v))).into_response(),
        Ok(Err(e)) => refused(&e),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node stopped before it answered",
        ),
    }
}

/// Starts a manual failover of a site; answers once the run started (it runs on).
#[utoipa::path(post, path = "/v1/failovers", tag = "operator",
    security(("bearer" = [])),
    request_body = FailoverBody,
    responses(
        (status = 202, description = "The run started", body = RunStarted),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Mutating calls are disabled (no [api] token_file), or \
            this node may not make this call", body = ErrorBody),
        (status = 404, description = "No such watched site", body = ErrorBody),
        (status = 408, description = "No answer within the request timeout (empty body)"),
        (status = 409, description = "A run or a competing call of the site goes ahead \
            (then run and leader name it)", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit (plain text)"),
        (status = 422, description = "The site has no failover plan", body = ErrorBody),
        (status = 500, description = "No epoch is left for the site", body = ErrorBody),
        (status = 503, description = "The node is stopping, distrusts its clocks, or the \
            site's operator lock is undecided", body = ErrorBody),
    ))]
pub(super) async fn failover(
    State(s): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let ok = StatusCode::ACCEPTED;
    call(&s, &headers, OperatorCall::Failover, "", &bytes, ok).await
}

/// Runs a site's plan as a dry run (every step checks what it would do, changes nothing) and
/// answers when it is over.
#[utoipa::path(post, path = "/v1/drills", tag = "operator",
    security(("bearer" = [])),
    request_body = SiteBody,
    responses(
        (status = 200, description = "The drill is over (ok says whether it passed)",
            body = DrillReport),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Mutating calls are disabled (no [api] token_file), or \
            this node may not make this call", body = ErrorBody),
        (status = 404, description = "No such watched site", body = ErrorBody),
        (status = 409, description = "A run or a drill of the site is in progress",
            body = ErrorBody),
        (status = 413, description = "The body is larger than the limit (plain text)"),
        (status = 422, description = "The site has no failover plan", body = ErrorBody),
        (status = 500, description = "No epoch is left for the site", body = ErrorBody),
        (status = 503, description = "The node is stopping or distrusts its clocks",
            body = ErrorBody),
        (status = 504, description = "The drill outlived the sum of its steps' timeouts",
            body = ErrorBody),
    ))]
pub(super) async fn drill(State(s): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Response {
    call(
        &s,
        &headers,
        OperatorCall::Drill,
        "",
        &bytes,
        StatusCode::OK,
    )
    .await
}

/// Fails a site back: runs the compensations of its plan once its verdict is up again (or,
/// never judged DOWN, as after a planned move, once this node's Pinger sees it up).
#[utoipa::path(post, path = "/v1/failbacks", tag = "operator",
    security(("bearer" = [])),
    request_body = SiteBody,
    responses(
        (status = 202, description = "The failback run started", body = RunStarted),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Mutating calls are disabled (no [api] token_file), or \
            this node may not make this call", body = ErrorBody),
        (status = 404, description = "No such watched site", body = ErrorBody),
        (status = 408, description = "No answer within the request timeout (empty body)"),
        (status = 409, description = "The site is not up yet, has no verdict yet, or a run or \
            a competing call goes ahead", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit (plain text)"),
        (status = 422, description = "The site has no plan, or no step with a compensation",
            body = ErrorBody),
        (status = 500, description = "No epoch is left for the site", body = ErrorBody),
        (status = 503, description = "The node is stopping, distrusts its clocks, or the \
            site's operator lock is undecided", body = ErrorBody),
    ))]
pub(super) async fn failback(
    State(s): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let ok = StatusCode::ACCEPTED;
    call(&s, &headers, OperatorCall::Failback, "", &bytes, ok).await
}

/// Puts a site in maintenance until a time: no automatic failover of it starts meanwhile.
#[utoipa::path(post, path = "/v1/sites/{id}/maintenance", tag = "operator",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A site id of the fleet file", example = "a")),
    request_body = MaintenanceBody,
    responses(
        (status = 200, description = "The site's maintenance window now", body = Maintenance),
        (status = 400, description = "A bad body or time", body = ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Mutating calls are disabled (no [api] token_file), or \
            this node may not make this call", body = ErrorBody),
        (status = 404, description = "No such watched site", body = ErrorBody),
        (status = 408, description = "No answer within the request timeout (empty body)"),
        (status = 409, description = "A later maintenance change of the site is already \
            known", body = ErrorBody),
        (status = 503, description = "The node is stopping", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit (plain text)"),
    ))]
pub(super) async fn set_maintenance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let maintenance = OperatorCall::SetMaintenance;
    call(&s, &headers, maintenance, &id, &bytes, StatusCode::OK).await
}

/// An authorized call whose body is the whole command.
async fn call(
    s: &AppState,
    headers: &HeaderMap,
    call: OperatorCall,
    path_site: &str,
    bytes: &Bytes,
    ok: StatusCode,
) -> Response {
    if let Err(r) = authorize(s, headers) {
        return r;
    }
    match command(call, path_site, bytes) {
        Ok(kind) => send(s, kind, ok).await,
        Err(r) => r,
    }
}

/// Ends a site's maintenance now.
#[utoipa::path(delete, path = "/v1/sites/{id}/maintenance", tag = "operator",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A site id of the fleet file", example = "a")),
    responses(
        (status = 200, description = "The site's maintenance window now", body = Maintenance),
        (status = 400, description = "A bad body or time", body = ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = ErrorBody),
        (status = 403, description = "Mutating calls are disabled (no [api] token_file), or \
            this node may not make this call", body = ErrorBody),
        (status = 404, description = "No such watched site", body = ErrorBody),
        (status = 408, description = "No answer within the request timeout (empty body)"),
        (status = 409, description = "A later maintenance change of the site is already \
            known", body = ErrorBody),
        (status = 503, description = "The node is stopping", body = ErrorBody),
    ))]
pub(super) async fn end_maintenance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r;
    }
    send(
        &s,
        CommandKind::EndMaintenance { site: SiteId(id) },
        StatusCode::OK,
    )
    .await
}

/// A refused command: its status, its message and, when another call's run goes ahead, that
/// run's id and leader, so that a script can follow the run that won.
fn refused(e: &OperatorError) -> Response {
    let mut body = ErrorBody::new(e.to_string());
    if let OperatorError::LockTaken {
        site, run, leader, ..
    } = e
    {
        body.run = Some(format!("{site}-{run}"));
        body.leader = Some(leader.clone());
    }
    (status_of(e), Json(body)).into_response()
}

/// The HTTP status of a refused command.
fn status_of(e: &OperatorError) -> StatusCode {
    match e {
        OperatorError::UnknownSite(_) => StatusCode::NOT_FOUND,
        OperatorError::NoPlan(_) | OperatorError::NothingToFailBack(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        OperatorError::RunInProgress { .. }
        | OperatorError::DrillInProgress(_)
        | OperatorError::NotUpYet { .. }
        | OperatorError::NoVerdictYet(_)
        | OperatorError::LockTaken { .. }
        | OperatorError::LockBusy(_)
        | OperatorError::VerdictNewer { .. }
        | OperatorError::AlarmsNewer(_) => StatusCode::CONFLICT,
        OperatorError::NotEntitled { .. } => StatusCode::FORBIDDEN,
        OperatorError::Maintenance(MaintenanceError::NotOperatorNode { .. }) => {
            StatusCode::FORBIDDEN
        }
        OperatorError::Maintenance(MaintenanceError::NoLaterStamp { .. }) => StatusCode::CONFLICT,
        OperatorError::Maintenance(_) => StatusCode::BAD_REQUEST,
        OperatorError::SourceNotEntitled { .. } => StatusCode::FORBIDDEN,
        OperatorError::NoSuchAlarm { .. } => StatusCode::NOT_FOUND,
        OperatorError::Alarm(AlarmError::NotOperatorNode { .. }) => StatusCode::FORBIDDEN,
        OperatorError::Alarm(AlarmError::BadSource(_) | AlarmError::ReasonTooLong) => {
            StatusCode::BAD_REQUEST
        }
        OperatorError::Alarm(
            AlarmError::TooManySources { .. } | AlarmError::NoLaterStamp { .. },
        ) => StatusCode::CONFLICT,
        OperatorError::LockUndecided { .. } | OperatorError::LockUnavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        OperatorError::EpochsExhausted(_) => StatusCode::INTERNAL_SERVER_ERROR,
        OperatorError::Tilted(_) => StatusCode::SERVICE_UNAVAILABLE,
        OperatorError::DrillTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
    }
}
