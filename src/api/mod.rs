//! The REST API (axum). Handlers read the node's published snapshot and never touch the
//! running state machines; every error is JSON `{"error": "..."}` with a fitting status code.
//! `/healthz` also says when that snapshot has grown stale: the server outlives a dead or
//! stuck driver, and a supervisor must hear that the node no longer works.

mod access;
mod alarms;
mod answers;
mod doc;
pub mod events;
mod metrics;
mod operator;
mod page;
mod read;
mod serve;
mod tls;

pub use answers::words;
pub use doc::openapi;
pub use serve::{Limits, ServeStats};
pub use tls::acceptor as tls_acceptor;

pub use operator::{parse_operator_body, OperatorCall};

use crate::node::snapshot::{NodeSnapshot, PeerView};
use answers::ErrorBody;
use axum::extract::FromRef;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Snap = watch::Receiver<Arc<NodeSnapshot>>;

/// What the handlers share: the published snapshot (read-only calls) and the channel to the
/// node's driver loop (mutating calls).
#[derive(Clone)]
struct AppState {
    snapshot: Snap,
    commands: mpsc::Sender<crate::node::Command>,
    /// Everything `/metrics` shows, the snapshot included.
    metrics: Arc<prometheus_client::registry::Registry>,
    /// The events of `/v1/events`, derived from the snapshots.
    events: Arc<events::Hub>,
}

impl FromRef<AppState> for Arc<events::Hub> {
    fn from_ref(s: &AppState) -> Arc<events::Hub> {
        s.events.clone()
    }
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

/// Serves the API on `listener` within `limits` until `shutdown` resolves; over TLS when
/// `tls` is given.
pub async fn serve(
    listener: TcpListener,
    snapshot: Snap,
    commands: mpsc::Sender<crate::node::Command>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let stats = Arc::new(ServeStats::default());
    let app = router_with(snapshot, commands, limits, stats.clone());
    serve::run(listener, app, limits, stats, tls, shutdown).await;
}

/// Every route of the API, each registered with its OpenAPI description (`routes!` takes
/// both from the handler), so that the served document lists exactly what the router serves.
fn routes(limits: Limits) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page::index))
        .routes(routes!(page::script))
        .routes(routes!(page::style))
        .routes(routes!(read::healthz))
        .routes(routes!(read::metrics_text))
        .routes(routes!(read::openapi))
        .routes(routes!(read::status))
        .routes(routes!(read::sites))
        .routes(routes!(read::site))
        .routes(routes!(read::verdicts))
        .routes(routes!(read::failovers, operator::failover))
        .routes(routes!(operator::failback))
        .routes(routes!(
            operator::set_maintenance,
            operator::end_maintenance
        ))
        .routes(routes!(read::failover))
        .routes(routes!(alarms::list, alarms::raise))
        .routes(routes!(alarms::clear))
        .routes(routes!(alarms::hook))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        // Added after the timeout: a drill answers when its steps are done, and their own
        // timeouts and retries bound it.
        .routes(routes!(operator::drill))
        // An event stream lives as long as its client listens: outside the timeout too.
        .routes(routes!(events::events))
        .layer(RequestBodyLimitLayer::new(limits.body_limit))
}

fn router_with(
    snapshot: Snap,
    commands: mpsc::Sender<crate::node::Command>,
    limits: Limits,
    serve_stats: Arc<ServeStats>,
) -> Router {
    let metrics = Arc::new(metrics::registry(snapshot.clone(), &serve_stats));
    let (router, _) = routes(limits).split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState {
            events: events::Hub::following(snapshot.clone()),
            snapshot,
            commands,
            metrics,
        })
}

/// Peers whose fleet file hash (as last reported) differs from this node's.
fn fleet_mismatch(snap: &NodeSnapshot) -> impl Iterator<Item = &PeerView> {
    snap.peers
        .iter()
        .filter(|p| p.fleet_hash.as_ref().is_some_and(|h| *h != snap.fleet_hash))
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ErrorBody::new(msg))).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use read::staleness;
    use serde_json::Value;
    use std::time::{Duration, Instant};

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
