//! The REST API (axum). Handlers read the node's published snapshot and never touch the
//! running state machines; every error is JSON `{"error": "..."}` with a fitting status code.
//! `/healthz` also says when that snapshot has grown stale: the server outlives a dead or
//! stuck driver, and a supervisor must hear that the node no longer works.

mod access;
mod metrics;
mod operator;
mod serve;

pub use serve::{Limits, ServeStats};

pub use operator::{parse_operator_body, OperatorCall};

use crate::node::snapshot::{NodeSnapshot, PeerView, SiteView};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

type Snap = watch::Receiver<Arc<NodeSnapshot>>;

/// What the handlers share: the published snapshot (read-only calls) and the channel to the
/// node's driver loop (mutating calls).
#[derive(Clone)]
struct AppState {
    snapshot: Snap,
    commands: mpsc::Sender<crate::node::Command>,
    /// Everything `/metrics` shows, the snapshot included.
    metrics: Arc<prometheus_client::registry::Registry>,
}

impl FromRef<AppState> for Snap {
    fn from_ref(s: &AppState) -> Snap {
        s.snapshot.clone()
    }
}

/// The API with its default limits, for a server that counts nothing of its own.
pub fn router(snapshot: Snap, commands: mpsc::Sender<crate::node::Command>) -> Router {
    router_with(snapshot, commands, Limits::default(), Arc::default())
}

/// Serves the API on `listener` within `limits` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    snapshot: Snap,
    commands: mpsc::Sender<crate::node::Command>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let stats = Arc::new(ServeStats::default());
    let app = router_with(snapshot, commands, limits, stats.clone());
    serve::run(listener, app, limits, stats, shutdown).await;
}

fn router_with(
    snapshot: Snap,
    commands: mpsc::Sender<crate::node::Command>,
    limits: Limits,
    serve_stats: Arc<ServeStats>,
) -> Router {
    let metrics = Arc::new(metrics::registry(snapshot.clone(), &serve_stats));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/v1/status", get(status))
        .route("/v1/sites", get(sites))
        .route("/v1/sites/{id}", get(site))
        .route("/v1/verdicts", get(verdicts))
        .route("/v1/failovers", get(failovers).post(operator::failover))
        .route("/v1/failbacks", post(operator::failback))
        .route(
            "/v1/sites/{id}/maintenance",
            post(operator::set_maintenance).delete(operator::end_maintenance),
        )
        .route("/v1/failovers/{id}", get(failover))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        // Added after the timeout: a drill answers when its steps are done, and their own
        // timeouts and retries bound it.
        .route("/v1/drills", post(operator::drill))
        .layer(RequestBodyLimitLayer::new(limits.body_limit))
        .with_state(AppState {
            snapshot,
            commands,
            metrics,
        })
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed on {}", uri.path()),
    )
}

async fn healthz(State(s): State<Snap>) -> Response {
    let snap = s.borrow().clone();
    if let Some(why) = staleness(&snap, Instant::now()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "stale", "node": snap.node, "reason": why })),
        )
            .into_response();
    }
    match &snap.voting_disabled {
        None => Json(json!({ "status": "ok", "node": snap.node })).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "degraded", "node": snap.node, "reason": why })),
        )
            .into_response(),
    }
}

/// Why the snapshot no longer describes a working node: its driver has published nothing for
/// longer than `stale_after`, though it publishes at least once per status interval.
fn staleness(snap: &NodeSnapshot, now: Instant) -> Option<String> {
    let age = now.saturating_duration_since(snap.published_at?);
    (age > snap.stale_after).then(|| {
        format!(
            "the node's event loop has published nothing for {} ms (limit {} ms): it is stuck or has stopped",
            age.as_millis(),
            snap.stale_after.as_millis()
        )
    })
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    match metrics::encode(&s.metrics) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the metrics could not be encoded: {e}"),
        ),
    }
}

/// Peers whose fleet file hash (as last reported) differs from this node's.
fn fleet_mismatch(snap: &NodeSnapshot) -> impl Iterator<Item = &PeerView> {
    snap.peers
        .iter()
        .filter(|p| p.fleet_hash.as_ref().is_some_and(|h| *h != snap.fleet_hash))
}

fn site_summary(v: &SiteView) -> Value {
    json!({
        "id": v.id,
        "opinion": v.opinion,
        "verdict": v.verdict,
        "epoch": v.epoch,
        "decided_at": v.decided_at,
        "leader": v.leader,
        "failover": v.failover,
        "hold_down_until": v.hold_down_until,
        "maintenance_until": v.maintenance_until,
    })
}

async fn status(State(s): State<Snap>) -> Json<Value> {
    let snap = s.borrow().clone();
    let mismatched: Vec<_> = fleet_mismatch(&snap).map(|p| p.node.clone()).collect();
    Json(json!({
        "node": snap.node,
        "site": snap.site,
        "roles": snap.roles,
        "fleet_hash": snap.fleet_hash,
        "fleet_error": snap.fleet_error,
        "fleet_mismatch": mismatched,
        "voting_disabled": snap.voting_disabled,
        "isolation": snap.isolation,
        "peers": snap.peers,
        "sites": snap.sites.iter().map(site_summary).collect::<Vec<_>>(),
    }))
}

async fn sites(State(s): State<Snap>) -> Json<Value> {
    let snap = s.borrow().clone();
    Json(json!({ "sites": snap.sites.iter().map(site_summary).collect::<Vec<_>>() }))
}

async fn site(State(s): State<Snap>, Path(id): Path<String>) -> Response {
    let snap = s.borrow().clone();
    match snap.sites.iter().find(|v| v.id.as_str() == id) {
        Some(v) => Json(v).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no watched site {id:?} in this fleet"),
        ),
    }
}

async fn verdicts(State(s): State<Snap>, Query(q): Query<HashMap<String, String>>) -> Response {
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
    let list: Vec<_> = snap
        .history
        .iter()
        .filter(|v| site.is_none_or(|s| v.site.as_str() == s))
        .take(limit)
        .collect();
    Json(json!({ "verdicts": list })).into_response()
}

/// A run as the caller may see it: step output only with the read (or operator) token.
fn run_for(run: &crate::node::snapshot::FailoverView, full: bool) -> Value {
    if full {
        json!(run)
    } else {
        json!(access::redacted(run))
    }
}

async fn failovers(State(s): State<Snap>, headers: HeaderMap) -> Json<Value> {
    let snap = s.borrow().clone();
    let full = access::may_read_output(&snap, &headers);
    let runs: Vec<Value> = snap.failovers.iter().map(|f| run_for(f, full)).collect();
    Json(json!({ "failovers": runs }))
}

async fn failover(State(s): State<Snap>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let snap = s.borrow().clone();
    match snap.failovers.iter().find(|f| f.id == id) {
        Some(f) => Json(run_for(f, access::may_read_output(&snap, &headers))).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no failover run {id:?} led by this node (ids are SITE-EPOCH)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Serves the router on loopback over a snapshot channel the test controls.
    async fn serve(snap: NodeSnapshot) -> (std::net::SocketAddr, watch::Sender<Arc<NodeSnapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(snap));
        let (cmd_tx, _cmd_rx) = mpsc::channel(1);
        let app = router(rx, cmd_tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, tx)
    }

    async fn healthz_of(addr: std::net::SocketAddr) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("healthz answers");
        let code = r.status().as_u16();
        (code, r.json().await.expect("json"))
    }

    #[tokio::test]
    async fn healthz_goes_503_when_the_published_snapshot_grows_stale() {
        let fresh = NodeSnapshot {
            node: crate::core::types::NodeId::from("b1"),
            published_at: Some(Instant::now()),
            stale_after: Duration::from_millis(300),
            ..NodeSnapshot::default()
        };
        let (addr, tx) = tokio::time::timeout(Duration::from_secs(5), serve(fresh.clone()))
            .await
            .expect("served");
        let (code, body) = healthz_of(addr).await;
        assert_eq!(code, 200, "{body}");
        // Nothing more is published: the driver is gone, the server still answers.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (code, body) = healthz_of(addr).await;
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["status"], "stale");
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .contains("published nothing"),
            "{body}"
        );
        // A new snapshot makes it healthy again.
        tx.send_replace(Arc::new(NodeSnapshot {
            published_at: Some(Instant::now()),
            ..fresh
        }));
        let (code, _) = healthz_of(addr).await;
        assert_eq!(code, 200);
    }

    #[test]
    fn a_snapshot_is_stale_only_past_its_limit() {
        let t0 = Instant::now();
        let snap = NodeSnapshot {
            published_at: Some(t0),
            stale_after: Duration::from_secs(2),
            ..NodeSnapshot::default()
        };
        assert!(staleness(&snap, t0 + Duration::from_secs(2)).is_none());
        assert!(staleness(&snap, t0 + Duration::from_millis(2001)).is_some());
        assert!(staleness(&NodeSnapshot::default(), t0 + Duration::from_secs(60)).is_none());
        assert_eq!(
            crate::node::snapshot::stale_after(Duration::from_millis(200)),
            Duration::from_secs(2)
        );
        assert_eq!(
            crate::node::snapshot::stale_after(Duration::from_secs(5)),
            Duration::from_secs(15)
        );
    }
}
