//! `quorate watch`: follows a node's `/v1/events` and prints one line per event, reconnecting
//! with the id of the last event seen so that nothing the node still keeps is missed.

use super::rest;
use anyhow::Context;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// The node sends a keep-alive comment every 15 s: this much silence means the connection is
/// dead even if TCP has not noticed.
const SILENCE: Duration = Duration::from_secs(45);
/// Waits between reconnects, growing to the last.
const BACKOFF: &[Duration] = &[
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// How `quorate watch` prints events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchOutput {
    /// One line for people per event: when, which node, what happened.
    #[default]
    Text,
    /// Each event's JSON as the node sent it, with its id, one object a line.
    Json,
}

/// One server-sent event as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Splits a byte stream into server-sent events (the HTML living standard's rules, without
/// the `retry` field, which this side does not need).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let ev = std::mem::take(&mut self.cur);
                if std::mem::take(&mut self.has_data) {
                    out.push(SseEvent {
                        event: if ev.event.is_empty() {
                            "message".into()
                        } else {
                            ev.event
                        },
                        ..ev
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment: the keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (&*line, ""),
            };
            match field {
                "event" => self.cur.event = value.to_string(),
                "id" => self.cur.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// Follows `node` until `count` events were printed (forever without).
pub fn watch(node: &rest::Endpoint, output: WatchOutput, count: Option<u64>) -> anyhow::Result<()> {
    let rt = super::commands::runtime()?;
    rt.block_on(async {
        let (base, client) = node.stream_client()?;
        let url = format!("{base}/v1/events");
        let mut last_id: Option<String> = None;
        let mut printed = 0u64;
        let mut failures = 0usize;
        loop {
            match follow(&client, &url, &mut last_id, output, count, &mut printed).await {
                Ok(Done::Count) => return Ok(()),
                Ok(Done::Ended) => {
                    failures = 0;
                    eprintln!("{url}: the stream ended; reconnecting");
                }
                // The node answered but refuses: another try will not help.
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Lost(e)) => {
                    let wait = BACKOFF[failures.min(BACKOFF.len() - 1)];
                    failures += 1;
                    eprintln!(
                        "{e:#}; reconnecting in {:.1} s{}",
                        wait.as_secs_f64(),
                        last_id
                            .as_deref()
                            .map(|i| format!(" from event {i}"))
                            .unwrap_or_default()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    })
}

enum Done {
    Count,
    Ended,
}

enum Failure {
    /// The node answered with an error status other than 503.
    Refused(anyhow::Error),
    /// No connection, a dropped one, or a node too busy or stopping.
    Lost(anyhow::Error),
}

async fn follow(
    client: &reqwest::Client,
    url: &str,
    last_id: &mut Option<String>,
    output: WatchOutput,
    count: Option<u64>,
    printed: &mut u64,
) -> Result<Done, Failure> {
    let mut req = client.get(url).header("accept", "text/event-stream");
    if let Some(id) = last_id.as_deref() {
        req = req.header("last-event-id", id);
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))
        .map_err(Failure::Lost)?;
    let code = resp.status();
    if !code.is_success() {
        let body: Value = resp.json().await.unwrap_or_default();
        let e = anyhow::anyhow!(
            "GET {url}: {code}: {}",
            body["error"].as_str().unwrap_or("unknown error")
        );
        return Err(if code.as_u16() == 503 {
            Failure::Lost(e)
        } else {
            Failure::Refused(e)
        });
    }
    let mut parser = SseParser::default();
    loop {
        let chunk = tokio::time::timeout(SILENCE, resp.chunk())
            .await
            .map_err(|_| {
                Failure::Lost(anyhow::anyhow!(
                    "{url}: nothing heard for {} s",
                    SILENCE.as_secs()
                ))
            })?
            .with_context(|| format!("{url}: the connection broke"))
            .map_err(Failure::Lost)?;
        let Some(chunk) = chunk else {
            return Ok(Done::Ended);
        };
        for ev in parser.feed(&chunk) {
            if ev.id.is_some() {
                last_id.clone_from(&ev.id);
            }
            let line = match output {
                WatchOutput::Json => json_line(&ev),
                WatchOutput::Text => human_line(&ev),
            };
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{line}").and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Done::Count),
                other => other
                    .context("cannot write to stdout")
                    .map_err(Failure::Refused)?,
            }
            *printed += 1;
            if count.is_some_and(|n| *printed >= n) {
                return Ok(Done::Count);
            }
        }
    }
}

/// The event's JSON as the node sent it, with its id.
pub fn json_line(ev: &SseEvent) -> String {
    match serde_json::from_str::<Value>(&ev.data) {
        Ok(Value::Object(mut o)) => {
            o.insert("id".into(), ev.id.clone().into());
            Value::Object(o).to_string()
        }
        _ => serde_json::json!({ "id": ev.id, "kind": ev.event, "data": ev.data }).to_string(),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn upper(v: &Value) -> String {
    s(v).to_uppercase()
}

/// One line for people: the time the node saw it, the node, what happened.
pub fn human_line(ev: &SseEvent) -> String {
    let Ok(d) = serde_json::from_str::<Value>(&ev.data) else {
        return format!("{} {}", ev.event, ev.data);
    };
    let site = s(&d["site"]);
    let what = match ev.event.as_str() {
        "hello" | "reset" => {
            let sites: Vec<String> = d["sites"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    format!(
                        "{} {} epoch {} (opinion {})",
                        s(&v["id"]),
                        upper(&v["verdict"]),
                        s(&v["epoch"]),
                        s(&v["opinion"])
                    )
                })
                .collect();
            let head = if ev.event == "hello" {
                "following".to_string()
            } else {
                format!("reset ({}); now", s(&d["reason"]))
            };
            format!("{head}: {}", sites.join("; "))
        }
        "verdict" => {
            let replaces = match &d["replaces"] {
                Value::Null => String::new(),
                r => format!(
                    ", replaces {} epoch {}",
                    upper(&r["verdict"]),
                    s(&r["epoch"])
                ),
            };
            format!(
                "site {site} verdict {} at epoch {} (slot {}, leader {}){replaces}",
                upper(&d["verdict"]),
                s(&d["epoch"]),
                s(&d["slot"]),
                s(&d["leader"])
            )
        }
        "opinion" => format!("site {site} opinion {} -> {}", s(&d["from"]), s(&d["to"])),
        "round" => {
            let answers: Vec<String> = d["answers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {}", s(&a["voter"]), s(&a["opinion"])))
                .collect();
            format!(
                "site {site} vote round {} epoch {} attempt {}: {} in {:.1} ms [{}]",
                upper(&d["target"]),
                s(&d["epoch"]),
                s(&d["attempt"]),
                s(&d["outcome"]),
                d["duration_ms"].as_f64().unwrap_or(0.0),
                answers.join(", ")
            )
        }
        "run" => format!(
            "run {} ({}, site {site}) {}{}, term {}, leader {}",
            s(&d["id"]),
            s(&d["trigger"]),
            match &d["was_state"] {
                Value::Null => String::new(),
                w => format!("{} -> ", s(w)),
            },
            s(&d["state"]),
            s(&d["term"]),
            s(&d["leader"])
        ),
        "step" => format!(
            "run {} step {} {}: attempt {}, {}",
            s(&d["run"]),
            s(&d["index"]),
            s(&d["name"]),
            s(&d["attempts"]),
            match (&d["finished_at"], d["ok"].as_bool()) {
                (Value::Null, _) => "running".to_string(),
                (_, Some(true)) =>
                    format!("ok in {:.0} ms", d["duration_ms"].as_f64().unwrap_or(0.0)),
                _ => format!(
                    "failed after {:.0} ms",
                    d["duration_ms"].as_f64().unwrap_or(0.0)
                ),
            }
        ),
        "maintenance" | "hold_down" => format!(
            "site {site} {} {}{}",
            ev.event.replace('_', "-"),
            s(&d["state"]),
            match &d["until"] {
                Value::Null => String::new(),
                u => format!(" until {}", s(u)),
            }
        ),
        "fleet_mismatch" => match d["state"].as_str() {
            Some("appeared") => format!(
                "peer {} runs another fleet file (hash {}, ours {})",
                s(&d["peer"]),
                short(&d["peer_hash"]),
                short(&d["fleet_hash"])
            ),
            _ => format!("peer {} runs our fleet file again", s(&d["peer"])),
        },
        "peer" => format!(
            "peer {} (site {site}) {}",
            s(&d["peer"]),
            if d["reachable"] == true {
                "reachable"
            } else {
                "unreachable"
            }
        ),
        "lagged" => format!("dropped by the node: {}", s(&d["reason"])),
        other => format!("{other} {}", ev.data),
    };
    format!("{} {} {what}", s(&d["at"]), s(&d["node"]))
}

fn short(v: &Value) -> String {
    let h = s(v);
    h.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_joins_split_chunks_and_skips_comments() {
        let mut p = SseParser::default();
        let stream = b": keep-alive\n\nid: s-1\nevent: verdict\ndata: {\"a\":1}\nretry: 1000\n\r\ndata: x\ndata: y\n\n";
        let mut got = Vec::new();
        // Byte by byte: the worst split a network can make.
        for b in stream.iter() {
            got.extend(p.feed(std::slice::from_ref(b)));
        }
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("s-1".into()),
                    event: "verdict".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    id: None,
                    event: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn lines_for_people_say_what_happened() {
        let ev = |event: &str, data: serde_json::Value| SseEvent {
            id: Some("s-3".into()),
            event: event.into(),
            data: data.to_string(),
        };
        let v = ev(
            "verdict",
            serde_json::json!({"kind": "verdict", "node": "b1", "at": "T", "site": "a",
                "verdict": "down", "epoch": 3, "slot": 3, "leader": "b1",
                "replaces": {"verdict": "up", "epoch": 1}}),
        );
        assert_eq!(
            human_line(&v),
            "T b1 site a verdict DOWN at epoch 3 (slot 3, leader b1), replaces UP epoch 1"
        );
        let j: Value = serde_json::from_str(&json_line(&v)).unwrap();
        assert_eq!(j["id"], "s-3");
        assert_eq!(j["verdict"], "down");
        let r = ev(
            "round",
            serde_json::json!({"node": "b1", "at": "T", "site": "a", "target": "down",
                "epoch": 3, "attempt": 1, "outcome": "decided", "duration_ms": 4.25,
                "answers": [{"voter": "b1", "opinion": "down"}, {"voter": "c1", "opinion": "down"}]}),
        );
        assert_eq!(
            human_line(&r),
            "T b1 site a vote round DOWN epoch 3 attempt 1: decided in 4.2 ms [b1 down, c1 down]"
        );
        let m = ev(
            "maintenance",
            serde_json::json!({"node": "b1", "at": "T", "site": "a", "state": "ended", "until": null}),
        );
        assert_eq!(human_line(&m), "T b1 site a maintenance ended");
    }
}
