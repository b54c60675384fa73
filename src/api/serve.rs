//! The REST listener, bounded: a client that opens connections and never finishes a request
//! must not take the API (and the health checks supervisors depend on) away, and must not
//! take memory or descriptors without end.
//!
//! - A request head must arrive within `header_read_timeout` (hyper's http1 timer), or the
//!   connection is closed: a slowloris holds a connection for seconds, not forever.
//! - At most `max_connections` connections are open. When a new one arrives at the cap, the
//!   oldest connection with no request in a handler (one still dribbling its headers, or idle
//!   between requests) is closed to make room; it is the one most likely to be an attacker,
//!   and a real client sends its request within milliseconds of connecting. Only when every
//!   connection is inside a handler is the new one refused.
//! - Bodies are limited to `body_limit` and handlers to `request_timeout` (tower-http), except
//!   a drill, whose steps' own timeouts bound it.

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// The REST server's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A request's head (request line and headers) must arrive within this.
    pub header_read_timeout: Duration,
    /// A handler must answer within this (408 otherwise); drills excepted.
    pub request_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Request bodies larger than this are refused (413).
    pub body_limit: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            body_limit: 64 * 1024,
        }
    }
}

/// What the bounds cut off: live counters, registered as they are with `/metrics`.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Connections closed to make room for a new one (idle or still sending their headers).
    pub evicted: Counter,
    /// New connections refused: every open one was inside a handler.
    pub refused: Counter,
    /// Connections closed because a request head did not arrive in time.
    pub header_timeouts: Counter,
}

struct Conn {
    opened: Instant,
    /// Requests of this connection inside a handler right now.
    in_flight: Arc<AtomicUsize>,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
}

fn lock(m: &Mutex<Table>) -> MutexGuard<'_, Table> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    /// Makes room for a new connection and registers it; None when all are busy.
    fn admit(
        &mut self,
        max: usize,
        stats: &ServeStats,
    ) -> Option<(u64, Arc<AtomicUsize>, Arc<Notify>)> {
        if self.conns.len() >= max {
            let victim = self
                .conns
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, c)| c.opened)
                .map(|(id, _)| *id)?;
            let c = self.conns.remove(&victim).expect("found above");
            c.evict.notify_one();
            stats.evicted.inc();
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Conn {
            opened: Instant::now(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            evict: Arc::new(Notify::new()),
        };
        let handles = (id, conn.in_flight.clone(), conn.evict.clone());
        self.conns.insert(id, conn);
        Some(handles)
    }
}

/// Counts a request as inside a handler for as long as it lives.
struct InHandler(Arc<AtomicUsize>);

impl InHandler {
    fn enter(n: &Arc<AtomicUsize>) -> InHandler {
        n.fetch_add(1, Ordering::Relaxed);
        InHandler(n.clone())
    }
}

impl Drop for InHandler {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then stops accepting,
/// lets requests in progress finish and releases the listener.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ServeStats>,
    shutdown: impl Future<Output = ()>,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut last_accept_error: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait a little rather than spin.
                    if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        last_accept_error = Some(Instant::now());
                        tracing::warn!(error = %e, "REST listener cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = lock(&table).admit(limits.max_connections, &stats);
        let Some((id, in_flight, evict)) = admitted else {
            stats.refused.inc();
            continue;
        };
        let (app, table, stats, stop) =
            (app.clone(), table.clone(), stats.clone(), stop_rx.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, limits, in_flight, evict, stop, &stats).await;
            lock(&table).conns.remove(&id);
        });
    }
    drop(listener);
    drop(stop_rx);
    stop_tx.send_replace(true);
    // Requests in progress finish; idle connections close at once.
    let bound = limits.request_timeout + limits.header_read_timeout;
    let _ = tokio::time::timeout(bound, stop_tx.closed()).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: Limits,
    in_flight: Arc<AtomicUsize>,
    evict: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    stats: &ServeStats,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = InHandler::enter(&in_flight);
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(guard);
            response
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        stats.header_timeouts.inc();
                    }
                    tracing::debug!(error = %e, "REST connection ended");
                }
                return;
            }
            _ = evict.notified() => return,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_connection_outside_a_handler_makes_room() {
        let stats = ServeStats::default();
        let mut t = Table::default();
        let (a, a_busy, _) = t.admit(2, &stats).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let (b, _, b_evict) = t.admit(2, &stats).unwrap();
        // a is inside a handler: b, though newer, is the one closed.
        a_busy.fetch_add(1, Ordering::Relaxed);
        let (c, c_busy, _) = t.admit(2, &stats).unwrap();
        assert!(t.conns.contains_key(&a) && t.conns.contains_key(&c));
        assert!(!t.conns.contains_key(&b));
        assert_eq!(stats.evicted.get(), 1);
        // The evicted connection's task is told (a permit waits for it).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), b_evict.notified())
                .await
                .expect("told to close");
        });
        // Every connection busy: the new one is refused.
        c_busy.fetch_add(1, Ordering::Relaxed);
        assert!(t.admit(2, &stats).is_none());
    }
}
