use super::*;
use crate::cli::watch::{SseEvent, SseParser};
use crate::core::types::{NodeId, SiteId};
use crate::node::snapshot::{SiteView, VerdictView};
use std::time::Instant;
use tokio::sync::mpsc;

fn site(id: &str, verdict: &'static str, epoch: Option<u64>) -> SiteView {
    SiteView {
        id: SiteId::from(id),
        opinion: "up",
        verdict,
        epoch,
        slot: epoch,
        leader: epoch.map(|_| NodeId::from("b1")),
        decided_at: None,
        hold_down_until: None,
        maintenance_until: None,
        hold_down_until_unix_ms: None,
        maintenance_until_unix_ms: None,
        on_alarm: "notify",
        alarms: Vec::new(),
        failover: "automatic".into(),
        judge: "host",
        electorate: vec![],
        majority: 2,
        evidence: vec![],
        rounds: vec![],
    }
}

fn published(sites: Vec<SiteView>, history: Vec<VerdictView>) -> Arc<NodeSnapshot> {
    Arc::new(NodeSnapshot {
        node: NodeId::from("b1"),
        published_at: Some(Instant::now()),
        stale_after: Duration::from_secs(60),
        sites,
        history,
        ..NodeSnapshot::default()
    })
}

fn down(epoch: u64) -> Arc<NodeSnapshot> {
    published(
        vec![site("a", "down", Some(epoch))],
        (1..=epoch)
            .rev()
            .map(|e| VerdictView {
                site: SiteId::from("a"),
                verdict: "down",
                epoch: e,
                slot: e,
                leader: NodeId::from("b1"),
                decided_at: "2026-12-04T10:00:00.000Z".into(),
            })
            .collect(),
    )
}

/// The whole API on loopback with a request timeout far shorter than a stream lives.
async fn serve(
    first: Arc<NodeSnapshot>,
    limits: crate::api::Limits,
) -> (std::net::SocketAddr, watch::Sender<Arc<NodeSnapshot>>) {
    let (tx, rx) = watch::channel(first);
    let (cmd_tx, _cmd_rx) = mpsc::channel(1);
    let app = crate::api::router_with(rx, cmd_tx, limits, Arc::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, tx)
}

/// A client of `/v1/events` reading events as they come.
struct Reader {
    resp: reqwest::Response,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
}

impl Reader {
    async fn open(addr: std::net::SocketAddr, last: Option<&str>) -> Reader {
        let mut req = reqwest::Client::new().get(format!("http://{addr}/v1/events"));
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let resp = req.send().await.expect("events answers");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Reader {
            resp,
            parser: SseParser::default(),
            queue: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.resp.chunk())
                .await
                .expect("an event within 5 s")
                .expect("the stream reads")?;
            self.queue.extend(self.parser.feed(&chunk));
        }
    }

    async fn data(&mut self) -> (SseEvent, Value) {
        let e = self.next().await.expect("an event");
        let v = serde_json::from_str(&e.data).expect("JSON data");
        (e, v)
    }
}

#[tokio::test]
async fn a_client_hears_the_state_then_every_change_and_resumes_where_it_left() {
    let (addr, tx) = serve(down(1), crate::api::Limits::default()).await;
    let mut r = Reader::open(addr, None).await;
    let (hello, v) = r.data().await;
    assert_eq!(hello.event, "hello");
    assert_eq!(v["node"], "b1");
    assert_eq!(v["sites"][0]["verdict"], "down");
    // The stored verdict loaded at start is state, not news: no event for epoch 1.
    tx.send_replace(down(2));
    let (ev, v) = r.data().await;
    assert_eq!(ev.event, "verdict");
    assert_eq!(v["epoch"], 2);
    assert_eq!(v["replaces"]["epoch"], 1);
    let seen = ev.id.clone().expect("an id");
    drop(r);

    // Missed while away: sent from the ring on reconnect, nothing twice.
    tx.send_replace(down(3));
    tx.send_replace(down(4));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut r = Reader::open(addr, Some(&seen)).await;
    let (a, va) = r.data().await;
    let (b, vb) = r.data().await;
    assert_eq!(
        (va["epoch"].as_u64(), vb["epoch"].as_u64()),
        (Some(3), Some(4))
    );
    assert_ne!(a.id, b.id);
    tx.send_replace(down(5));
    let (_, v) = r.data().await;
    assert_eq!(v["epoch"], 5);
}

#[tokio::test]
async fn an_unknown_or_too_old_event_id_gets_a_reset_with_the_current_state() {
    let (addr, tx) = serve(down(1), crate::api::Limits::default()).await;
    let mut r = Reader::open(addr, Some("0badcafe-12")).await;
    let (ev, v) = r.data().await;
    assert_eq!(ev.event, "reset");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("not of this server's stream"),
        "{v}"
    );
    assert_eq!(v["sites"][0]["epoch"], 1);
    let stream = v["stream"].as_str().unwrap().to_string();
    // Push more events than the ring keeps past a client that saw the first.
    tx.send_replace(down(2));
    let (first, _) = r.data().await;
    drop(r);
    assert_eq!(first.id.as_deref(), Some(&*format!("{stream}-1")));
    for e in 0..(RING as u64 + 100) {
        // One opinion flip, one event.
        let mut s = (*down(2)).clone();
        s.sites[0].opinion = if e % 2 == 0 { "down" } else { "up" };
        tx.send_replace(Arc::new(s));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut r = Reader::open(addr, first.id.as_deref()).await;
    let (ev, v) = r.data().await;
    assert_eq!(ev.event, "reset", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("more than the"),
        "{v}"
    );
}

#[tokio::test]
async fn a_stream_outlives_the_request_timeout_with_keep_alives_and_ends_with_the_node() {
    let limits = crate::api::Limits {
        request_timeout: Duration::from_millis(300),
        ..crate::api::Limits::default()
    };
    let (addr, tx) = serve(down(1), limits).await;
    let mut r = Reader::open(addr, None).await;
    assert_eq!(r.next().await.unwrap().event, "hello");
    tokio::time::sleep(Duration::from_millis(800)).await;
    tx.send_replace(down(2));
    let (ev, _) = r.data().await;
    assert_eq!(
        ev.event, "verdict",
        "still open past the 300 ms request timeout"
    );
    // The node stops publishing: the stream ends instead of hanging on.
    drop(tx);
    assert!(r.next().await.is_none());
}

#[tokio::test]
async fn a_client_that_falls_behind_is_dropped_with_a_lagged_event() {
    let (tx, rx) = watch::channel(down(1));
    let hub = Hub::new(rx);
    hub.start();
    let sub = hub.subscribe(None).expect("running");
    hub.clients.fetch_add(1, Ordering::Relaxed);
    let mut c = Client {
        sub,
        hub: hub.clone(),
        _listening: Listening(hub.clone()),
        done: false,
    };
    for e in 0..(PER_CLIENT as u64 + 20) {
        hub.publish(
            &down(1),
            Change {
                kind: "opinion",
                data: json!({ "n": e }),
            },
        );
    }
    let mut names = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), next_event(&mut c))
        .await
        .unwrap()
    {
        names.push(format!("{ev:?}"));
    }
    assert_eq!(names.len(), 2, "hello, then lagged: {names:?}");
    assert!(names[1].contains("lagged"), "{names:?}");
    drop(c);
    assert_eq!(hub.clients.load(Ordering::Relaxed), 0);
    drop(tx);
}

#[tokio::test]
async fn listeners_are_capped() {
    let (addr, _tx) = serve(down(1), crate::api::Limits::default()).await;
    let mut open = Vec::new();
    for _ in 0..MAX_CLIENTS {
        open.push(Reader::open(addr, None).await);
    }
    let r = reqwest::get(format!("http://{addr}/v1/events"))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("already follow"),
        "{body}"
    );
    drop(open.pop());
    // The slot is free once the server notices the closed stream.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = reqwest::get(format!("http://{addr}/v1/events"))
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
