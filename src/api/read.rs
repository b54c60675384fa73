//! The read-only calls: health, status, sites, verdicts, failover runs, metrics and the
//! OpenAPI document itself. They read the node's published snapshot and never touch the
//! running state machines.

use super::answers::{
    ErrorBody, Failovers, Health, SiteSummary, Sites, Status, VerdictQuery, Verdicts,
};
use super::{access, error, metrics, AppState, Snap};
use crate::node::snapshot::{FailoverView, NodeSnapshot, SiteView};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use std::time::Instant;

/// Whether the node works: 200 while it does, 503 when it stopped voting or its event loop
/// stopped publishing (the server outlives a dead or stuck driver, and a supervisor must hear
/// that the node no longer works).
#[utoipa::path(get, path = "/healthz", tag = "read",
    responses(
        (status = 200, description = "The node works", body = Health),
        (status = 503, description = "Voting disabled (\"degraded\") or the node's event loop \
            is stuck (\"stale\")", body = Health),
    ))]
pub(super) async fn healthz(State(s): State<Snap>) -> Response {
    let snap = s.borrow().clone();
    let health = |status, reason| Health {
        status,
        node: snap.node.clone(),
        reason,
    };
    if let Some(why) = staleness(&snap, Instant::now()) {
        let body = health("stale", Some(why));
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    match &snap.voting_disabled {
        None => Json(health("ok", None)).into_response(),
        Some(why) => {
            let body = health("degraded", Some(why.clone()));
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Why the snapshot no longer describes a working node: its driver has published nothing for
/// longer than `stale_after`, though it publishes at least once per status interval.
pub(super) fn staleness(snap: &NodeSnapshot, now: Instant) -> Option<String> {
    let age = now.saturating_duration_since(snap.published_at?);
    (age > snap.stale_after).then(|| {
        format!(
            "the node's event loop has published nothing for {} ms (limit {} ms): it is stuck or has stopped",
            age.as_millis(),
            snap.stale_after.as_millis()
        )
    })
}

/// Prometheus metrics in the text exposition format (docs/metrics.md).
#[utoipa::path(get, path = "/metrics", tag = "read",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String,
            content_type = "text/plain"),
        (status = 500, description = "The metrics could not be encoded", body = ErrorBody),
    ))]
pub(super) async fn metrics_text(State(s): State<AppState>) -> Response {
    match metrics::encode(&s.metrics) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the metrics could not be encoded: {e}"),
        ),
    }
}

/// This node, its peers (and which of them run another fleet file) and its watched sites.
#[utoipa::path(get, path = "/v1/status", tag = "read",
    responses((status = 200, description = "The node's status", body = Status)))]
pub(super) async fn status(State(s): State<Snap>) -> Json<Status> {
    Json(Status::of(&s.borrow().clone()))
}

/// The watched sites in short.
#[utoipa::path(get, path = "/v1/sites", tag = "read",
    responses((status = 200, description = "The watched sites", body = Sites)))]
pub(super) async fn sites(State(s): State<Snap>) -> Json<Sites> {
    let snap = s.borrow().clone();
    Json(Sites {
        sites: snap.sites.iter().map(SiteSummary::of).collect(),
    })
}

/// One watched site with the evidence behind its verdict and its last vote rounds.
#[utoipa::path(get, path = "/v1/sites/{id}", tag = "read",
    params(("id" = String, Path, description = "A site id of the fleet file", example = "a")),
    responses(
        (status = 200, description = "The site", body = SiteView),
        (status = 404, description = "The fleet watches no such site", body = ErrorBody),
    ))]
pub(super) async fn site(State(s): State<Snap>, Path(id): Path<String>) -> Response {
    let snap = s.borrow().clone();
    match snap.sites.iter().find(|v| v.id.as_str() == id) {
        Some(v) => Json(v).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no watched site {id:?} in this fleet"),
        ),
    }
}

/// Committed verdicts, newest first.
#[utoipa::path(get, path = "/v1/verdicts", tag = "read",
    params(VerdictQuery),
    responses(
        (status = 200, description = "Verdicts, newest first", body = Verdicts),
        (status = 400, description = "An unknown parameter or a limit out of range",
            body = ErrorBody),
        (status = 404, description = "The fleet watches no such site", body = ErrorBody),
    ))]
pub(super) async fn verdicts(
    State(s): State<Snap>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let snap = s.borrow().clone();
    for k in q.keys() {
        if k != "site" && k != "limit" {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {k:?}; use site and limit"),
            );
        }
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "limit must be a whole number from 1 to 1000",
            )
        }
    };
    let site = q.get("site");
    if let Some(id) = site {
        if !snap.sites.iter().any(|v| v.id.as_str() == id) {
            return error(
                StatusCode::NOT_FOUND,
                format!("no watched site {id:?} in this fleet"),
            );
        }
    }
    let verdicts = snap
        .history
        .iter()
        .filter(|v| site.is_none_or(|s| v.site.as_str() == s))
        .take(limit)
        .cloned()
        .collect();
    Json(Verdicts { verdicts }).into_response()
}

/// A run as the caller may see it: step output only with the read (or operator) token.
fn run_for(run: &FailoverView, full: bool) -> FailoverView {
    if full {
        run.clone()
    } else {
        access::redacted(run)
    }
}

/// The failover runs this node leads or led. Step output is shown only to a caller with the
/// read token or the operator token; others see each step's first line.
#[utoipa::path(get, path = "/v1/failovers", tag = "read",
    security((), ("bearer" = [])),
    responses((status = 200, description = "The runs", body = Failovers)))]
pub(super) async fn failovers(State(s): State<Snap>, headers: HeaderMap) -> Json<Failovers> {
    let snap = s.borrow().clone();
    let full = access::may_read_output(&snap, &headers);
    let failovers = snap.failovers.iter().map(|f| run_for(f, full)).collect();
    Json(Failovers { failovers })
}

/// One failover run led by this node.
#[utoipa::path(get, path = "/v1/failovers/{id}", tag = "read",
    security((), ("bearer" = [])),
    params(("id" = String, Path, description = "The run's id, SITE-EPOCH", example = "a-1")),
    responses(
        (status = 200, description = "The run", body = FailoverView),
        (status = 404, description = "No such run led by this node", body = ErrorBody),
    ))]
pub(super) async fn failover(
    State(s): State<Snap>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snap = s.borrow().clone();
    match snap.failovers.iter().find(|f| f.id == id) {
        Some(f) => Json(run_for(f, access::may_read_output(&snap, &headers))).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no failover run {id:?} led by this node (ids are SITE-EPOCH)"),
        ),
    }
}

/// This document: the API's OpenAPI 3.1 description, generated from the handlers' types.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "read",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub(super) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::doc::openapi_json(),
    )
        .into_response()
}
