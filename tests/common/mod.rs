//! Shared by the loopback fleet tests: fleet files on a private loopback range, a REST client,
//! Prometheus text parsing, polling with generous bounds, and a child process that is killed
//! whatever happens to the test.

#![allow(dead_code)]

use quorate::core::types::{NodeId, SiteId};
use quorate::localfleet::{relocate, LocalFleet};
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Upper bound of every wait: far above what a healthy run needs, so a slow machine does not
/// fail a test, while a hang still ends.
pub const WAIT: Duration = Duration::from_secs(20);

/// The electorate of site a in the three-site fleet.
pub const A_VOTERS: [&str; 4] = ["b1", "b2", "c1", "c2"];

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

pub fn n(id: &str) -> NodeId {
    NodeId::from(id)
}

pub fn site(id: &str) -> SiteId {
    SiteId::from(id)
}

/// The fast three-site fleet (20 ms probes) on 127.`octet`.0.0/16. Every test uses its own
/// octet, so tests run in parallel without port clashes.
pub fn fleet_text(octet: u8) -> String {
    relocate(quorate::demo::THREE_SITES_FAST, octet)
}

/// The fast fleet on `octet` with its watches rewritten: site a watched by b and c with
/// `watch_a` after its `by` line (delays, `[[watch.pipeline.step]]` and `[[watch.isolation]]`
/// tables), site b by a and c, then `tail` (e.g. an `[api]` table); `timing` lines are added
/// to `[timing]`.
pub fn fleet_watching_a(octet: u8, timing: &str, watch_a: &str, tail: &str) -> String {
    let text = fleet_text(octet);
    let cut = text.find("[[watch]]").expect("the fleet has watches");
    let head = text[..cut].replacen("[timing]", &format!("[timing]\n{timing}"), 1);
    format!(
        "{head}\n[[watch]]\nsite = \"a\"\nby = [\"b\", \"c\"]\n{watch_a}\n\n\
         [[watch]]\nsite = \"b\"\nby = [\"a\", \"c\"]\n{tail}"
    )
}

/// Starts the fast fleet on `octet` with REST on every node.
pub async fn start_fleet(octet: u8) -> LocalFleet {
    LocalFleet::start(&fleet_text(octet), None, true)
        .await
        .expect("the fleet starts")
}

/// The REST address of `node` in the fleet file.
pub fn api(f: &LocalFleet, node: &str) -> SocketAddr {
    f.fleet.node(&n(node)).expect("node in the fleet").api
}

/// Polls `probe` every 50 ms until it returns Some, for at most `WAIT`; panics naming `what`
/// and the last value seen otherwise.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {WAIT:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the `/v1/status` of the node at `at` lists `peer` as `reachable` (or not).
pub async fn wait_peer(rest: &Rest, at: SocketAddr, peer: &str, reachable: bool) {
    let what = format!("{at} to list {peer} as reachable: {reachable}");
    eventually(&what, || async move {
        let status = rest.try_get(at, "/v1/status").await?;
        let entry = status["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["node"] == peer))
            .ok_or_else(|| format!("{peer} not among the peers: {}", status["peers"]))?;
        if entry["reachable"] == reachable {
            Ok(())
        } else {
            Err(entry.to_string())
        }
    })
    .await;
}

/// A REST client for the nodes' API (no proxy: everything is on loopback).
#[derive(Clone)]
pub struct Rest {
    client: reqwest::Client,
}

impl Default for Rest {
    fn default() -> Self {
        Rest::new()
    }
}

impl Rest {
    pub fn new() -> Rest {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            // A node closes a kept-alive connection that sends no request head for 5 s
            // (`header_read_timeout`): a pooled one reused at that very moment fails to send.
            // Dropped well before, a test that sleeps 5 s between requests reconnects.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("a REST client");
        Rest { client }
    }

    /// Status code and JSON body; Err when the node does not answer or the body is not JSON.
    pub async fn call(
        &self,
        method: reqwest::Method,
        addr: SocketAddr,
        path: &str,
    ) -> Result<(u16, Value), String> {
        let url = format!("http://{addr}{path}");
        let resp = self
            .client
            .request(method, &url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let code = resp.status().as_u16();
        let body = resp
            .json::<Value>()
            .await
            .map_err(|e| format!("{url}: {code}, body is not JSON: {e}"))?;
        Ok((code, body))
    }

    pub async fn try_get(&self, addr: SocketAddr, path: &str) -> Result<Value, String> {
        match self.call(reqwest::Method::GET, addr, path).await? {
            (200, body) => Ok(body),
            (code, body) => Err(format!("GET {path} on {addr}: {code} {body}")),
        }
    }

    /// GET that must answer 200 with JSON.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Value {
        self.try_get(addr, path)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_metrics(&self, addr: SocketAddr) -> Result<String, String> {
        let url = format!("http://{addr}/metrics");
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()));
        }
        resp.text().await.map_err(|e| format!("{url}: {e}"))
    }

    pub async fn metrics(&self, addr: SocketAddr) -> String {
        self.try_metrics(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// One series of a node's /metrics, e.g. `quorate_vote_rounds_total{outcome="down"}`;
    /// None when the node does not export it.
    pub async fn metric(&self, addr: SocketAddr, series: &str) -> Option<f64> {
        metric(&self.metrics(addr).await, series)
    }

    /// The summary of `site` in the node's GET /v1/sites.
    pub async fn try_site(&self, addr: SocketAddr, site: &str) -> Result<Value, String> {
        let body = self.try_get(addr, "/v1/sites").await?;
        body["sites"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["id"] == site).cloned())
            .ok_or_else(|| format!("{addr}: no site {site} in {body}"))
    }

    pub async fn site(&self, addr: SocketAddr, site: &str) -> Value {
        self.try_site(addr, site)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The value of one series in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until every node of `nodes` (by REST address) shows the opinion `opinion` of `site`.
pub async fn wait_opinion(rest: &Rest, nodes: &[(&str, SocketAddr)], site: &str, opinion: &str) {
    for (name, addr) in nodes {
        eventually(
            &format!("{name}'s opinion of {site} to be {opinion}"),
            || async move {
                let s = rest.try_site(*addr, site).await?;
                if s["opinion"] == opinion {
                    Ok(())
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    }
}

/// A committed verdict as GET /v1/sites shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub verdict: String,
    pub epoch: u64,
    pub leader: String,
}

/// Waits until every node of `nodes` shows the verdict `verdict` ("down" | "up") for `site`,
/// then asserts that they all show the same epoch and leader, and returns it.
pub async fn wait_verdict(
    rest: &Rest,
    nodes: &[(&str, SocketAddr)],
    site: &str,
    verdict: &str,
) -> Shown {
    let mut shown: Vec<(&str, Shown)> = Vec::new();
    for (name, addr) in nodes {
        let s = eventually(&format!("{name} to show {site} {verdict}"), || async move {
            let s = rest.try_site(*addr, site).await?;
            if s["verdict"] != verdict {
                return Err(s.to_string());
            }
            Ok(Shown {
                verdict: verdict.to_string(),
                epoch: s["epoch"].as_u64().ok_or(format!("no epoch in {s}"))?,
                leader: s["leader"]
                    .as_str()
                    .ok_or(format!("no leader in {s}"))?
                    .into(),
            })
        })
        .await;
        shown.push((name, s));
    }
    let first = shown[0].1.clone();
    for (name, s) in &shown {
        assert_eq!(
            s, &first,
            "{name} shows another {verdict} verdict for {site} than {}: {shown:?}",
            shown[0].0
        );
    }
    first
}

/// (name, REST address) of each of `names`.
pub fn apis<'a>(f: &LocalFleet, names: &[&'a str]) -> Vec<(&'a str, SocketAddr)> {
    names.iter().map(|name| (*name, api(f, name))).collect()
}

/// Starts every node of `f` in this process except those in `apart` (which the test runs as
/// child processes, `spawn_node`, to kill them for real).
pub async fn start_all_but(f: &mut LocalFleet, apart: &[&str]) {
    for node in f.fleet.nodes.clone() {
        if !apart.contains(&node.id.as_str()) {
            f.start_node(&node.id).await.expect("node starts");
        }
    }
}

/// Starts `quorate run` for node `id` of `f` as a child process with `env` added, logging
/// into the fleet dir.
pub fn spawn_node(f: &LocalFleet, id: &str, env: &[(&str, &str)]) -> ChildGuard {
    let log = f.dir.join(format!("{id}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("a log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_quorate"))
        .arg("run")
        .arg("--fleet")
        .arg(&f.fleet_path)
        .arg("--node")
        .arg(id)
        .arg("--certs")
        .arg(&f.certs_dir)
        .arg("--data")
        .arg(f.data_dir(&n(id)))
        .env("RUST_LOG", "info,quinn=warn,rustls=warn")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("quorate run starts");
    ChildGuard { child, log }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, also when a test fails;
/// then the tail of its log is printed to help the diagnosis.
pub struct ChildGuard {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl ChildGuard {
    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            if let Ok(text) = std::fs::read_to_string(&self.log) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!(
                    "--- last lines of {}:\n{}",
                    self.log.display(),
                    tail.join("\n")
                );
            }
        }
    }
}

/// Puts `nodes` behind a relay: their `mesh` address (what peers dial) stays, and they bind
/// `mesh_bind` = the same IP, port 7411 instead. Returns the new fleet text and the relay
/// routes (public mesh address -> real bind address).
pub fn behind_relay(text: &str, nodes: &[&str]) -> (String, Vec<(SocketAddr, SocketAddr)>) {
    let mut out = String::new();
    let mut routes = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        match key.trim() {
            "id" => current = value.to_string(),
            "mesh" if nodes.contains(&current.as_str()) => {
                let public: SocketAddr = value.parse().expect("a mesh address");
                let bind = SocketAddr::new(public.ip(), 7411);
                out.push_str(&format!("mesh_bind = \"{bind}\"\n"));
                routes.push((public, bind));
            }
            _ => {}
        }
    }
    assert_eq!(
        routes.len(),
        nodes.len(),
        "every node found in the fleet text"
    );
    (out, routes)
}

/// Runs the `quorate` binary with `args` and `env` (and nothing of this process's QUORATE_API
/// or QUORATE_TOKEN_FILE); returns its stdout, panicking with its stderr when it fails.
pub async fn quorate(args: &[&str], env: &[(&str, &str)]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate"))
            .args(&args)
            .env_remove("QUORATE_API")
            .env_remove("QUORATE_TOKEN_FILE")
            .envs(env)
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "quorate {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
    .await
    .expect("the command finishes")
}
