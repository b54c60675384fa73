//! The event stream of a live loopback fleet, through the binary: `quorate watch` prints the
//! node's state first, then site a's opinion and DOWN verdict when the site's nodes stop, as
//! lines for people and as JSON; a client that reconnects with the id of the last event it saw
//! gets what it missed, in order; a watcher outlives a restart of its node and says it was
//! reset; and the status page is served with its policy.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OCTET: u8 = 233;

/// `quorate watch` as a child that is killed whatever happens to the test; its stdout lines
/// arrive on a channel as they are printed.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorate"))
            .arg("watch")
            .args(args)
            .env_remove("QUORATE_API")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("quorate watch starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// Lines until one satisfies `done` (returned last), within `WAIT`.
    fn until(&self, what: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let last = done(&l);
                    seen.push(l);
                    if last {
                        return seen;
                    }
                }
                Err(_) => panic!("no {what} within {WAIT:?}; saw:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_state_then_the_verdict_and_a_reconnect_resumes() {
    init_tracing();
    let mut fleet = start_fleet(OCTET).await;
    let b1 = api(&fleet, "b1");
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&fleet, &A_VOTERS), "a", "up").await;

    let people = Watch::start(&["--api", &b1.to_string()]);
    let raw = Watch::start(&["--api", &b1.to_string(), "--output", "json"]);
    let first = people.until("the opening line", |_| true);
    assert!(first[0].contains(" b1 following: a NONE"), "{first:?}");
    let hello = json(&raw.until("hello", |_| true)[0]);
    assert_eq!(hello["kind"], "hello");
    let stream = hello["stream"].as_str().expect("stream").to_string();
    assert!(
        hello["id"].as_str().unwrap().starts_with(&stream),
        "{hello}"
    );

    // Page and policy, from the same node.
    let page = reqwest::get(format!("http://{b1}/")).await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/page/app.js"));

    fleet.stop_site(&site("a")).await;
    let lines = people.until("the DOWN verdict", |l| l.contains("site a verdict DOWN"));
    // b1's own opinion turns too; with the fast round the verdict may be learned first.
    if !lines
        .iter()
        .any(|l| l.contains("site a opinion up -> down"))
    {
        people.until("b1's opinion of a turning", |l| {
            l.contains("site a opinion up -> down")
        });
    }
    let raw_lines = raw.until("the DOWN verdict", |l| {
        let v = json(l);
        v["kind"] == "verdict" && v["site"] == "a" && v["verdict"] == "down"
    });
    let verdict = json(raw_lines.last().unwrap());
    let epoch = verdict["epoch"].as_u64().expect("epoch");
    let rest_view = rest.site(b1, "a").await;
    assert_eq!(rest_view["verdict"], "down");
    assert_eq!(rest_view["epoch"].as_u64(), Some(epoch));
    // Ids count up within the stream.
    let seqs: Vec<u64> = raw_lines
        .iter()
        .map(|l| {
            json(l)["id"]
                .as_str()
                .unwrap()
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // A client that comes back with the id of the opening event gets everything since, in
    // order, once each: what the raw watcher printed after its hello.
    let since: Vec<Value> = raw_lines.iter().map(|l| json(l)).collect();
    let resume_from = hello["id"].as_str().unwrap();
    let mut resp = reqwest::Client::new()
        .get(format!("http://{b1}/v1/events"))
        .header("last-event-id", resume_from)
        .send()
        .await
        .expect("events");
    let mut parser = quorate::cli::watch::SseParser::default();
    let mut replayed = Vec::new();
    let deadline = Instant::now() + WAIT;
    while replayed.len() < since.len() {
        let chunk = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            resp.chunk(),
        )
        .await
        .expect("the missed events within the bound")
        .expect("reads")
        .expect("open");
        replayed.extend(parser.feed(&chunk));
    }
    let ids: Vec<_> = replayed.iter().map(|e| e.id.clone().unwrap()).collect();
    let expected: Vec<String> = since
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids[..expected.len()], expected[..]);
    assert!(replayed
        .iter()
        .all(|e| e.event != "hello" && e.event != "reset"));

    drop((people, raw));
    tokio::time::timeout(Duration::from_secs(30), fleet.shutdown())
        .await
        .expect("the fleet stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_outlives_a_restart_of_its_node_and_says_it_was_reset() {
    init_tracing();
    let mut fleet = start_fleet(OCTET + 1).await;
    let b1 = api(&fleet, "b1");
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&fleet, &A_VOTERS), "a", "up").await;
    let people = Watch::start(&["--api", &b1.to_string()]);
    let first = people.until("the opening line", |_| true);
    assert!(first[0].contains(" b1 following: "), "{first:?}");

    // The node goes away and comes back as a new process would: a new stream, so the id
    // the watcher resumes from means nothing there any more.
    fleet.stop_node(&n("b1")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.start_node(&n("b1")).await.expect("b1 starts again");
    let lines = people.until("the reset", |l| l.contains(" b1 reset ("));
    let reset = lines.last().unwrap();
    assert!(reset.contains("not of this server's stream"), "{reset}");
    assert!(reset.contains("now: a "), "{reset}");

    drop(people);
    tokio::time::timeout(Duration::from_secs(30), fleet.shutdown())
        .await
        .expect("the fleet stops");
}
