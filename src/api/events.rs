//! `GET /v1/events`: what changes on this node as server-sent events — verdicts, opinions,
//! vote rounds, failover runs and their steps, maintenance and hold-down, fleet-hash
//! mismatches, peers coming and going.
//!
//! One task per REST server follows the published snapshots and turns the difference of each
//! two into events ([`diff`]), numbers them and keeps the newest [`RING`] in a ring. Each event
//! id is `STREAM-SEQ`: STREAM names this run of the server, so an id from before a restart is
//! never mistaken for one of now. A client that reconnects with `Last-Event-ID` gets what it
//! missed from the ring; one whose id is unknown or too old gets a `reset` event with the
//! current state, a new client a `hello` with the same. Clients are bounded: one that falls
//! [`PER_CLIENT`] events behind gets a `lagged` event and is dropped (it reconnects and
//! resumes), and at most [`MAX_CLIENTS`] listen at once.

mod diff;

pub use diff::{diff, Change, KINDS};

use crate::node::snapshot::{rfc3339, NodeSnapshot};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

type Snap = watch::Receiver<Arc<NodeSnapshot>>;

/// Events kept for clients that reconnect.
pub const RING: usize = 1024;
/// Events a client may fall behind before it is dropped.
pub const PER_CLIENT: usize = 256;
/// Clients listening at once; more are answered 503.
pub const MAX_CLIENTS: usize = 64;
/// A comment line this often keeps proxies and clients from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What a browser waits before it reconnects (the SSE `retry` field).
const RETRY: Duration = Duration::from_secs(1);

/// One numbered event, its JSON written once for every client.
#[derive(Debug)]
struct Numbered {
    seq: u64,
    kind: &'static str,
    json: String,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Arc<Numbered>>,
    /// The sequence number of the newest event (0: none yet).
    last: u64,
    /// None once the node stopped publishing: every stream ends.
    tx: Option<broadcast::Sender<Arc<Numbered>>>,
}

/// The events of one node: the ring, the live feed and the task that fills both.
pub struct Hub {
    stream: String,
    snapshot: Snap,
    ring: Mutex<Ring>,
    clients: AtomicUsize,
    follower: OnceLock<()>,
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub fn new(snapshot: Snap) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(PER_CLIENT);
        Arc::new(Hub {
            stream: format!("{:08x}", rand::random::<u32>()),
            snapshot,
            ring: Mutex::new(Ring {
                tx: Some(tx),
                ..Ring::default()
            }),
            clients: AtomicUsize::new(0),
            follower: OnceLock::new(),
        })
    }

    /// A hub that follows `snapshot` at once when a runtime is at hand, else from its first
    /// client on.
    pub fn following(snapshot: Snap) -> Arc<Hub> {
        let hub = Hub::new(snapshot);
        if tokio::runtime::Handle::try_current().is_ok() {
            hub.start();
        }
        hub
    }

    /// Follows the snapshots until the node stops publishing them (once).
    pub fn start(self: &Arc<Hub>) {
        self.follower.get_or_init(|| {
            let hub = self.clone();
            let mut rx = self.snapshot.clone();
            tokio::spawn(async move {
                let mut prev = rx.borrow_and_update().clone();
                while rx.changed().await.is_ok() {
                    let next = rx.borrow_and_update().clone();
                    // The placeholder before the first snapshot is no state to compare with:
                    // the stored verdicts loaded at start are not news.
                    if prev.published_at.is_some() {
                        for c in diff(&prev, &next) {
                            hub.publish(&next, c);
                        }
                    }
                    prev = next;
                }
                lock(&hub.ring).tx = None;
            });
        });
    }

    fn publish(&self, snap: &NodeSnapshot, c: Change) {
        let mut ring = lock(&self.ring);
        ring.last += 1;
        let seq = ring.last;
        let ev = Arc::new(Numbered {
            seq,
            kind: c.kind,
            json: envelope(snap, c.kind, c.data).to_string(),
        });
        if ring.events.len() == RING {
            ring.events.pop_front();
        }
        ring.events.push_back(ev.clone());
        if let Some(tx) = &ring.tx {
            // No receiver is no error: nobody listens right now.
            let _ = tx.send(ev);
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.stream)
    }

    /// A new listener: what it missed since `last_event_id` (or the opening event), and the
    /// live feed from there on. None once the node stopped.
    fn subscribe(&self, last_event_id: Option<&str>) -> Option<Subscription> {
        let ring = lock(&self.ring);
        let rx = ring.tx.as_ref()?.subscribe();
        let (backlog, after) = match self.resume_point(&ring, last_event_id) {
            Ok(seq) => (
                ring.events
                    .iter()
                    .filter(|e| e.seq > seq)
                    .cloned()
                    .collect(),
                seq.max(ring.last),
            ),
            Err(reason) => {
                let snap = self.snapshot.borrow().clone();
                let (kind, mut data) = match reason {
                    None => ("hello", state(&snap)),
                    Some(why) => {
                        let mut d = state(&snap);
                        d["reason"] = json!(why);
                        ("reset", d)
                    }
                };
                data["stream"] = json!(self.stream);
                let opening = Numbered {
                    seq: ring.last,
                    kind,
                    json: envelope(&snap, kind, data).to_string(),
                };
                (VecDeque::from([Arc::new(opening)]), ring.last)
            }
        };
        Some(Subscription { backlog, rx, after })
    }

    /// The sequence number a client has seen everything up to, or why it cannot resume (None:
    /// it did not try).
    fn resume_point(&self, ring: &Ring, last: Option<&str>) -> Result<u64, Option<String>> {
        let last = last.map(str::trim).filter(|l| !l.is_empty()).ok_or(None)?;
        let seq = last
            .strip_prefix(&self.stream)
            .and_then(|s| s.strip_prefix('-'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                Some(format!(
                    "event id {last:?} is not of this server's stream {} (the node restarted?)",
                    self.stream
                ))
            })?;
        if seq > ring.last {
            return Err(Some(format!(
                "event id {last:?} is newer than the newest event {}",
                self.id(ring.last)
            )));
        }
        let oldest = ring.events.front().map_or(ring.last + 1, |e| e.seq);
        if seq + 1 < oldest {
            return Err(Some(format!(
                "{} events were missed since {last:?}, more than the {RING} kept",
                oldest - seq - 1
            )));
        }
        Ok(seq)
    }
}

/// Every event's JSON: its kind, the node, when it was seen and its own fields.
fn envelope(snap: &NodeSnapshot, kind: &str, data: Value) -> Value {
    let mut out = json!({
        "kind": kind,
        "node": snap.node,
        "at": rfc3339(unix_ms()),
    });
    if let (Value::Object(o), Value::Object(d)) = (&mut out, data) {
        o.extend(d);
    }
    out
}

/// What `hello` and `reset` carry: the node's state in brief, as `/v1/status` has it.
fn state(snap: &NodeSnapshot) -> Value {
    let sites: Vec<Value> = snap
        .sites
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "opinion": s.opinion,
                "verdict": s.verdict,
                "epoch": s.epoch,
                "leader": s.leader,
                "maintenance_until": s.maintenance_until,
                "hold_down_until": s.hold_down_until,
            })
        })
        .collect();
    let runs: Vec<Value> = snap
        .failovers
        .iter()
        .map(|f| json!({ "id": f.id, "state": f.state, "term": f.term, "leader": f.leader }))
        .collect();
    json!({
        "site": snap.site,
        "sites": sites,
        "failovers": runs,
        "fleet_mismatch": diff::mismatched(snap).keys().collect::<Vec<_>>(),
    })
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Subscription {
    backlog: VecDeque<Arc<Numbered>>,
    rx: broadcast::Receiver<Arc<Numbered>>,
    /// Live events up to this one were already sent from the ring.
    after: u64,
}

/// Counts a listener for as long as its stream lives.
struct Listening(Arc<Hub>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Client {
    sub: Subscription,
    hub: Arc<Hub>,
    _listening: Listening,
    done: bool,
}

/// One server-sent event as the OpenAPI document describes it (the stream is written by
/// axum's `Sse`; this type only documents its fields).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub(super) struct StreamEvent {
    /// `STREAM-SEQ`: send it back as `Last-Event-ID` to resume after this event.
    id: Option<String>,
    /// The event's kind: verdict, opinion, round, run, step, maintenance, hold_down, alarm,
    /// fleet_mismatch, peer, hello, reset or lagged.
    event: Option<String>,
    /// The event as JSON: `kind`, `node`, `at` and the kind's own fields.
    #[schema(content_media_type = "application/json")]
    data: String,
    /// How long a client waits before it reconnects, in milliseconds.
    retry: Option<u64>,
}

/// What changes on this node, as server-sent events (`text/event-stream`), resumable with
/// `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/events", tag = "read",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The id of the last event seen: the stream resumes after it")),
    responses(
        (status = 200, description = "Server-sent events: each with an id (STREAM-SEQ), an \
            event name (its kind) and JSON data; a `hello` or `reset` event carries the current \
            state", body = StreamEvent, content_type = "text/event-stream"),
        (status = 503, description = "Too many clients follow the stream, or the node is \
            stopping", body = super::answers::ErrorBody),
    ))]
pub(super) async fn events(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    hub.start();
    if hub.clients.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
        hub.clients.fetch_sub(1, Ordering::Relaxed);
        return super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_CLIENTS} clients already follow /v1/events on this node; try again later"
            ),
        );
    }
    let listening = Listening(hub.clone());
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let Some(sub) = hub.subscribe(last) else {
        return super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping: it publishes no more events",
        );
    };
    let client = Client {
        sub,
        hub: hub.clone(),
        _listening: listening,
        done: false,
    };
    let stream = futures_util::stream::unfold(client, |mut c| async move {
        let ev = next_event(&mut c).await?;
        Some((Ok::<Event, Infallible>(ev), c))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// The next event a client is sent; None ends its stream.
async fn next_event(c: &mut Client) -> Option<Event> {
    if c.done {
        return None;
    }
    if let Some(e) = c.sub.backlog.pop_front() {
        return Some(sse(&c.hub, &e));
    }
    loop {
        match c.sub.rx.recv().await {
            Ok(e) if e.seq <= c.sub.after => continue,
            Ok(e) => return Some(sse(&c.hub, &e)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                c.done = true;
                let data = json!({
                    "kind": "lagged",
                    "reason": format!(
                        "this client fell {n} events behind (at most {PER_CLIENT}); reconnect with Last-Event-ID to resume"
                    ),
                });
                return Some(Event::default().event("lagged").data(data.to_string()));
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

fn sse(hub: &Hub, e: &Numbered) -> Event {
    Event::default()
        .id(hub.id(e.seq))
        .event(e.kind)
        .retry(RETRY)
        .data(&e.json)
}

#[cfg(test)]
mod tests;
