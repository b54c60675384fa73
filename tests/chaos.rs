//! Chaos scenarios on the network-namespace testbed (`testbed/testbed`): three sites in their
//! own namespaces behind a WAN bridge, BIRD routers announcing an anycast prefix, an observer
//! that learns it, and faults injected with nftables and signals.
//!
//! The testbed is brought up once; the scenarios run one after the other, each followed by
//! `heal`, a start of every stopped process and a wait until the fleet is back to normal.
//! Each scenario prints a timeline (what was injected when, what every surviving node said)
//! and writes a JSON result to target/chaos/. A guard runs `testbed down` at the end, also
//! when a scenario panics, and the tests check that nothing is left behind.
//!
//! Needs root and `ip netns`; without them the tests print why and pass (as they do with
//! QUORATE_CHAOS_SEPARATE=1, which tests/run-all.sh sets while it runs the other tests).
//! CHAOS_ONLY=S1,S5 runs only those scenarios; CHAOS_LOSS_SECS shortens S4 (default 120 s).
//! TESTBED_NS_PREFIX (default qt-) names the testbed's namespaces, as for testbed/testbed.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The testbed's namespace names are fixed: the tests of this binary take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// The testbed's nodes: id, site, REST address (see the topology in testbed/testbed).
const NODES: [(&str, &str, &str); 8] = [
    ("a1", "a", "198.18.1.1:7501"),
    ("a2", "a", "198.18.1.2:7501"),
    ("a3", "a", "198.18.1.3:7501"),
    ("b1", "b", "198.18.2.1:7501"),
    ("b2", "b", "198.18.2.2:7501"),
    ("b3", "b", "198.18.2.3:7501"),
    ("c1", "c", "198.18.3.1:7501"),
    ("c2", "c", "198.18.3.2:7501"),
];
const VOTERS: [&str; 6] = ["a1", "a2", "b1", "b2", "c1", "c2"];
/// Which sites each Pinger watches (its opinion must be `up` in normal operation).
fn watched_by(node: &str) -> &'static [&'static str] {
    match &node[..1] {
        "a" if node != "a3" => &["b"],
        "b" if node != "b3" => &["a"],
        "c" => &["a", "b"],
        _ => &[],
    }
}
const SURVIVORS_OF_A: [&str; 5] = ["b1", "b2", "b3", "c1", "c2"];
const ELECTORATE_OF_A: [&str; 4] = ["b1", "b2", "c1", "c2"];
const ALL: [&str; 8] = ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2"];

const ANYCAST: &str = "198.19.255.0/24";

// ------------------------------------------------------------------------------------------
// Environment

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir() -> PathBuf {
    let d = root().join("target/chaos");
    std::fs::create_dir_all(&d).expect("target/chaos");
    d
}

fn state_dir() -> PathBuf {
    std::env::var_os("QUORATE_TESTBED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| out_dir().join("state"))
}

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    if std::env::var("QUORATE_CHAOS_SEPARATE").as_deref() == Ok("1") {
        return Some(
            "QUORATE_CHAOS_SEPARATE=1: tests/run-all.sh runs them in a step of their own".into(),
        );
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces and nftables need root)".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip netns` is not available".into()),
    }
}

/// The testbed's namespace name prefix (testbed/testbed reads the same variable).
fn ns_prefix() -> String {
    std::env::var("TESTBED_NS_PREFIX").unwrap_or_else(|_| "qt-".into())
}

fn testbed_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(root().join("testbed/testbed"));
    c.arg("--dir")
        .arg(state_dir())
        .args(args)
        .env("QUORATE_BIN", env!("CARGO_BIN_EXE_quorate"));
    c
}

fn testbed_try(args: &[&str]) -> Output {
    testbed_cmd(args)
        .stdin(Stdio::null())
        .output()
        .expect("testbed/testbed runs")
}

fn testbed(args: &[&str]) -> String {
    let o = testbed_try(args);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "testbed {args:?} failed: {}\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn node_info(node: &str) -> (&'static str, &'static str) {
    let (_, s, a) = NODES
        .iter()
        .find(|(n, _, _)| *n == node)
        .expect("known node");
    (s, a)
}

/// GET `path` on `node`'s REST API from inside its site's namespace.
fn rest(node: &str, path: &str) -> Option<String> {
    let (site, addr) = node_info(node);
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}{site}", ns_prefix()),
            "curl",
            "-sf",
            "-m",
            "1",
        ])
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).to_string())
}

/// One node's view of one site.
#[derive(Clone, Debug, PartialEq)]
struct View {
    opinion: String,
    verdict: String,
    epoch: u64,
    decided_at_ms: Option<i64>,
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.opinion, self.verdict, self.epoch)
    }
}

fn views(node: &str) -> Option<BTreeMap<String, View>> {
    let v: Value = serde_json::from_str(&rest(node, "/v1/sites")?).ok()?;
    let mut out = BTreeMap::new();
    for s in v["sites"].as_array()? {
        let decided_at_ms = s["decided_at"].as_str().and_then(|t| {
            humantime::parse_rfc3339_weak(t)
                .ok()
                .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64)
        });
        out.insert(
            s["id"].as_str()?.to_string(),
            View {
                opinion: s["opinion"].as_str().unwrap_or("?").to_string(),
                verdict: s["verdict"].as_str().unwrap_or("?").to_string(),
                epoch: s["epoch"].as_u64().unwrap_or(0),
                decided_at_ms,
            },
        );
    }
    Some(out)
}

type Snap = BTreeMap<String, Option<BTreeMap<String, View>>>;

fn snapshot(nodes: &[&str]) -> Snap {
    nodes.iter().map(|n| (n.to_string(), views(n))).collect()
}

fn view<'a>(snap: &'a Snap, node: &str, site: &str) -> Option<&'a View> {
    snap.get(node)?.as_ref()?.get(site)
}

/// Internal false positives counted by `node` (rounds contradicted by the electorate).
fn false_positives(node: &str) -> f64 {
    let Some(text) = rest(node, "/metrics") else {
        return 0.0;
    };
    let get = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    get("quorate_false_positives_internal_total ").max(get(
        r#"quorate_vote_rounds_total{outcome="false_positive"}"#,
    ))
}

fn fp_total(nodes: &[&str]) -> f64 {
    nodes.iter().map(|n| false_positives(n)).sum()
}

/// The site the observer's best route for the anycast prefix points to: a, b or none.
fn route() -> String {
    testbed_try(&["route"])
        .stdout
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .trim()
        .to_string()
}

/// True when quorate told `site`'s router to announce the anycast prefix: its include file
/// (owned by the bgp steps of the fleet's plan) holds the route.
fn announced(site: &str) -> bool {
    std::fs::read_to_string(state_dir().join(format!("bird/{site}-anycast.conf")))
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(ANYCAST))
}

/// When `site`'s include file was last rewritten (unix ms).
fn announced_mtime(site: &str) -> Option<i64> {
    let m = std::fs::metadata(state_dir().join(format!("bird/{site}-anycast.conf"))).ok()?;
    Some(
        m.modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis() as i64,
    )
}

/// The observer's candidate routes for the anycast prefix: the sites it learnt it from, and
/// the site of the best one ("none" when there is none).
fn observer_candidates() -> (Vec<String>, String) {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(state_dir().join("bird/inet.ctl"))
        .args(["show", "route", "for", ANYCAST])
        .stdin(Stdio::null())
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let mut sites = vec![];
    let mut best = "none".to_string();
    for l in text.lines() {
        let Some(i) = l.find("[site_") else { continue };
        let site: String = l[i + 6..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase())
            .collect();
        if l[i..].contains("] *") {
            best = site.clone();
        }
        sites.push(site);
    }
    (sites, best)
}

/// Every failover run of site a that `nodes` lead (GET /v1/failovers), with its leader.
fn runs_of_a(nodes: &[&str]) -> Vec<Value> {
    let mut out = vec![];
    for n in nodes {
        let v: Value = serde_json::from_str(&rest(n, "/v1/failovers").unwrap_or_default())
            .unwrap_or(Value::Null);
        for r in v["failovers"].as_array().into_iter().flatten() {
            if r["site"] == "a" {
                out.push(r.clone());
            }
        }
    }
    out
}

/// Waits up to `max` for the run of site a at `epoch` to reach `state`; returns the run.
fn wait_run(run: &mut Run, epoch: u64, state: &str, max: Duration) -> Result<Value, String> {
    let start = Instant::now();
    loop {
        // Every voter of the electorate holds a copy of the run; any one in `state` will do.
        let copies: Vec<Value> = runs_of_a(&ELECTORATE_OF_A)
            .into_iter()
            .filter(|r| r["epoch"].as_u64() == Some(epoch))
            .collect();
        let found = copies
            .iter()
            .find(|r| r["state"] == state)
            .or(copies.first())
            .cloned();
        if let Some(r) = &found {
            if r["state"] == state {
                run.log(format!(
                    "run {} led by {} ({}): {} ({})",
                    r["id"].as_str().unwrap_or("?"),
                    r["leader"].as_str().unwrap_or("?"),
                    r["trigger"].as_str().unwrap_or("?"),
                    state,
                    r["summary"].as_str().unwrap_or("")
                ));
                return Ok(r.clone());
            }
        }
        if start.elapsed() >= max {
            return Err(format!(
                "the run of a at epoch {epoch} is not {state} within {max:?}: {found:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POST /v1/failbacks {"site": "a"} at `node` with the testbed's bearer token.
fn post_failback(node: &str) -> (u16, String) {
    let (site, addr) = node_info(node);
    let token = std::fs::read_to_string(state_dir().join("api.token")).unwrap_or_default();
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}{site}", ns_prefix()),
            "curl",
            "-s",
            "-m",
            "3",
        ])
        .args(["-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"site":"a"}"#,
        ])
        .arg(format!("http://{addr}/v1/failbacks"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

// ------------------------------------------------------------------------------------------
// One scenario's record

struct Run {
    name: String,
    t0: Instant,
    t0_ms: i64,
    lines: Vec<String>,
    result: serde_json::Map<String, Value>,
}

impl Run {
    fn new(name: &str, what: &str) -> Run {
        println!("\n==== {name}: {what}");
        let mut result = serde_json::Map::new();
        result.insert("scenario".into(), json!(name));
        result.insert("description".into(), json!(what));
        Run {
            name: name.into(),
            t0: Instant::now(),
            t0_ms: now_ms(),
            lines: vec![],
            result,
        }
    }

    fn log(&mut self, msg: impl AsRef<str>) {
        let line = format!(
            "[{:8.1} ms] {}",
            self.t0.elapsed().as_secs_f64() * 1e3,
            msg.as_ref()
        );
        println!("{line}");
        self.lines.push(line);
    }

    fn set(&mut self, key: &str, v: Value) {
        self.result.insert(key.into(), v);
    }

    /// Runs a testbed command and returns the wall-clock time (unix ms) the testbed reports
    /// for it (`... at <ms>`), or now.
    fn inject(&mut self, args: &[&str]) -> i64 {
        let out = testbed(args);
        let at = out
            .lines()
            .filter_map(|l| l.rsplit(" at ").next()?.trim().parse::<i64>().ok())
            .next()
            .unwrap_or_else(now_ms);
        self.log(format!(
            "inject: testbed {} (applied at +{} ms)",
            args.join(" "),
            at - self.t0_ms
        ));
        at
    }

    /// Polls `nodes` until `done` holds or `max` passes, logging every change of a node's
    /// view and of the observer's route. Returns the last snapshot and whether `done` held.
    fn observe(
        &mut self,
        nodes: &[&str],
        max: Duration,
        mut done: impl FnMut(&Snap, &str) -> bool,
    ) -> (Snap, bool) {
        let start = Instant::now();
        let mut last: Option<Snap> = None;
        let mut last_route = String::new();
        loop {
            let snap = snapshot(nodes);
            for n in nodes {
                let now = fmt_node(snap.get(*n).unwrap());
                let before = last.as_ref().map(|l| fmt_node(l.get(*n).unwrap()));
                if before.as_deref() != Some(now.as_str()) {
                    self.log(format!("{n}: {now}"));
                }
            }
            let r = route();
            if r != last_route {
                self.log(format!("observer route: {r}"));
                if r == "b" && !self.result.contains_key("route_to_b_at_ms") {
                    self.set("route_to_b_at_ms", json!(now_ms()));
                }
                // From a to b, directly or (the fence of a dark a: its route is gone before
                // b announces) through none.
                let from_a = last_route == "a" || last_route == "none";
                if from_a && r == "b" && !self.result.contains_key("route_moved_at_ms") {
                    self.set("route_moved_at_ms", json!(now_ms()));
                }
                last_route = r.clone();
            }
            let ok = done(&snap, &r);
            last = Some(snap);
            if ok || start.elapsed() >= max {
                return (last.unwrap(), ok);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn write(&mut self, status: &str) {
        self.set("status", json!(status));
        self.set("timeline", json!(self.lines));
        let path = out_dir().join(format!("{}.json", self.name));
        let _ = std::fs::write(
            &path,
            serde_json::to_string_pretty(&Value::Object(self.result.clone())).unwrap(),
        );
    }
}

fn fmt_node(v: &Option<BTreeMap<String, View>>) -> String {
    match v {
        None => "no answer".into(),
        Some(m) => m
            .iter()
            .map(|(s, v)| format!("{s}: {v}"))
            .collect::<Vec<_>>()
            .join("  "),
    }
}

fn tail_logs() {
    let logs = state_dir().join("logs");
    let mut names: Vec<String> = ALL.iter().map(|n| format!("{n}.log")).collect();
    names.push("bird-inet.log".into());
    for name in names {
        let text = std::fs::read_to_string(logs.join(&name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("---- tail of {}", logs.join(&name).display());
        for l in &lines[lines.len().saturating_sub(12)..] {
            println!("  {l}");
        }
    }
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond { return Err(format!($($fmt)+)); }
    };
}

// ------------------------------------------------------------------------------------------
// Normal operation between scenarios

/// Waits until every node answers, no opinion is down, every Pinger sees the sites it
/// watches up, every verdict is up or none and all nodes agree on each site's epoch, and the
/// observer prefers a. Returns that snapshot.
fn wait_normal(run: &mut Run, max: Duration) -> Result<Snap, String> {
    let (snap, ok) = run.observe(&ALL, max, |snap, r| normal(snap) && r == "a");
    ensure!(
        ok,
        "the fleet did not return to normal within {max:?}: {}",
        why_abnormal(&snap)
    );
    Ok(snap)
}

fn normal(snap: &Snap) -> bool {
    why_abnormal(snap).is_empty()
}

fn why_abnormal(snap: &Snap) -> String {
    let mut why = vec![];
    let mut epochs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (n, v) in snap {
        let Some(v) = v else {
            why.push(format!("{n} does not answer"));
            continue;
        };
        for (s, view) in v {
            if view.opinion == "down" {
                why.push(format!("{n} sees {s} down"));
            }
            if !matches!(view.verdict.as_str(), "up" | "none") {
                why.push(format!("{n}: verdict {} for {s}", view.verdict));
            }
            epochs.entry(s).or_default().push(view.epoch);
        }
        for s in watched_by(n) {
            if v.get(*s).map(|x| x.opinion.as_str()) != Some("up") {
                why.push(format!("{n} does not see {s} up yet"));
            }
        }
    }
    for (s, e) in epochs {
        if e.iter().any(|x| *x != e[0]) {
            why.push(format!("epochs of {s} differ: {e:?}"));
        }
    }
    why.join("; ")
}

/// Every surviving node still shows the verdict and epoch it had in `base`.
fn no_new_verdict(base: &Snap, now: &Snap, nodes: &[&str]) -> Check {
    for n in nodes {
        for s in ["a", "b"] {
            let (b, x) = (view(base, n, s), view(now, n, s));
            let x = x.ok_or(format!("{n} does not answer"))?;
            let b = b.ok_or(format!("{n} had no view of {s} before"))?;
            ensure!(
                b.verdict == x.verdict && b.epoch == x.epoch,
                "{n}: verdict for {s} changed from {b} to {x}"
            );
        }
    }
    Ok(())
}

/// Heal, start what was stopped, wait until the nodes are back to normal, then put the
/// routers' announcements back (a announces, b does not) and wait until the observer
/// prefers a. The routes are reset after the nodes settle: a node of a that starts fences
/// itself if it hears no majority of a's electorate within self_fence_after_s.
fn restore(run: &mut Run) -> Result<Snap, String> {
    run.inject(&["heal"]);
    run.inject(&["start"]);
    let (snap, ok) = run.observe(&ALL, Duration::from_secs(40), |snap, _| normal(snap));
    ensure!(
        ok,
        "the fleet did not return to normal within 40 s: {}",
        why_abnormal(&snap)
    );
    // A node of a that started less than self_fence_after_s ago may still fence a.
    run.observe(&ALL, Duration::from_secs(1), |_, _| false);
    run.inject(&["reset-routes"]);
    let snap = wait_normal(run, Duration::from_secs(20))?;
    // The testbed fleet's hold-down (2 s) must pass, or the next scenario's failover of a
    // would be refused.
    run.observe(&ALL, Duration::from_secs(2), |_, _| false);
    Ok(snap)
}

// ------------------------------------------------------------------------------------------
// Scenarios

/// S1: site a dies; b1, b2, c1, c2 commit one DOWN verdict with one epoch.
fn s1(run: &mut Run, base: &Snap) -> Check {
    blackout_verdict(run, base, &[], &ELECTORATE_OF_A, &SURVIVORS_OF_A)
}

/// S11: a gray failure: a's service check fails on a1, a2 and a3 while every host and link of
/// a stays up. a's watch judges the service: b1, b2, c1, c2 commit one DOWN verdict with one
/// epoch and quorate moves the route to b, as after a blackout. a, alive and hearing its
/// electorate judge it DOWN, withdraws its own route first (self-fence), so the observer sees
/// no route for the rest of b's takeover delay.
fn s11(run: &mut Run, base: &Snap) -> Check {
    verdict_after(
        run,
        base,
        &["service-down", "a1", "a2", "a3"],
        &[],
        &ELECTORATE_OF_A,
        &SURVIVORS_OF_A,
    )
}

/// Whether the observer may see no route between a's and b's: after a blackout a's stale
/// route stays until b's replaces it (a->b); a live a that learns it is judged DOWN withdraws
/// itself (self-fence, `self_fence_after_s`) before b's takeover delay ends (a->none->b).
fn a_withdraws_itself(fault: &[&str]) -> bool {
    fault.first() == Some(&"service-down")
}

/// S6: a blacks out; while the run's post step (the testbed's `notify`, which takes a second)
/// runs, its leader is killed. Another voter of a's electorate takes the run over under a
/// higher term and completes it; `announce-b` ran once, and `notify`, re-run under the same
/// idempotency key, acted once.
fn s6(run: &mut Run, base: &Snap) -> Check {
    let epoch0 = view(base, "b1", "a").map(|v| v.epoch).unwrap_or(0);
    let notify_log = state_dir().join("notify.log");
    let before = std::fs::read_to_string(&notify_log).unwrap_or_default();
    let t_inject = run.inject(&["blackout", "a"]);
    run.set("injected_at_ms", json!(t_inject));
    // Wait for the post step to start, and learn the run's leader.
    let start = Instant::now();
    let (epoch, leader) = loop {
        let now = std::fs::read_to_string(&notify_log).unwrap_or_default();
        let started = now.len() > before.len();
        let running = runs_of_a(&ELECTORATE_OF_A)
            .into_iter()
            .find(|r| r["epoch"].as_u64().is_some_and(|e| e > epoch0));
        if let (true, Some(r)) = (started, running) {
            break (
                r["epoch"].as_u64().unwrap_or(0),
                r["leader"].as_str().unwrap_or("").to_string(),
            );
        }
        ensure!(
            start.elapsed() < Duration::from_secs(15),
            "the run's notify step did not start within 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(
        ELECTORATE_OF_A.contains(&leader.as_str()),
        "the run of epoch {epoch} names no voter of a's electorate as leader: {leader:?}"
    );
    let t_kill = run.inject(&["kill", &leader]);
    run.log(format!(
        "killed {leader}, the leader of run a-{epoch}, while its notify step ran"
    ));
    let survivors: Vec<&str> = ELECTORATE_OF_A
        .iter()
        .copied()
        .filter(|n| *n != leader)
        .collect();
    let done = loop {
        let r = runs_of_a(&survivors).into_iter().find(|r| {
            r["epoch"].as_u64() == Some(epoch)
                && r["state"] == "succeeded"
                && r["leader"].as_str() != Some(leader.as_str())
        });
        if let Some(r) = r {
            break r;
        }
        ensure!(
            t_kill + 20_000 > now_ms(),
            "no other voter completed run a-{epoch} within 20 s of the kill: {:?}",
            runs_of_a(&survivors)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let took_over_ms = now_ms() - t_kill;
    run.set("kill_to_run_completed_ms", json!(took_over_ms));
    run.log(format!(
        "run a-{epoch} completed by {} under term {} {took_over_ms} ms after the kill",
        done["leader"].as_str().unwrap_or("?"),
        done["term"]
    ));
    ensure!(
        done["term"].as_u64().is_some_and(|t| t > epoch),
        "the run completed without a higher term: {done}"
    );
    let attempts = |name: &str| {
        done["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == name)
            .map(|s| s["attempts"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    ensure!(
        attempts("announce-b") == 1,
        "announce-b ran {} times: {done}",
        attempts("announce-b")
    );
    let after = std::fs::read_to_string(&notify_log).unwrap_or_default();
    let key = format!("a/{epoch}/post/0/notify");
    let acted = after.lines().filter(|l| l.ends_with(&key)).count();
    run.set("notify_actions", json!(acted));
    ensure!(acted == 1, "notify acted {acted} times for {key}: {after}");
    ensure!(
        announced("b"),
        "b's include file does not hold the prefix after the run"
    );
    Ok(())
}

/// A blackout of a after freezing `frozen`; `deciders` must commit one DOWN verdict.
fn blackout_verdict(
    run: &mut Run,
    base: &Snap,
    frozen: &[&str],
    deciders: &[&str],
    watch: &[&str],
) -> Check {
    verdict_after(run, base, &["blackout", "a"], frozen, deciders, watch)
}

/// The fault `fault` (a testbed command) after freezing `frozen`; `deciders` must commit one
/// DOWN verdict of a and the route must move to b.
fn verdict_after(
    run: &mut Run,
    base: &Snap,
    fault: &[&str],
    frozen: &[&str],
    deciders: &[&str],
    watch: &[&str],
) -> Check {
    let epoch0 = view(base, "b1", "a").map(|v| v.epoch).unwrap_or(0);
    for n in frozen {
        run.inject(&["freeze", n]);
    }
    let t_inject = run.inject(fault);
    run.set("injected_at_ms", json!(t_inject));
    let verdict_everywhere = |snap: &Snap| {
        let e: Vec<_> = deciders
            .iter()
            .map(|n| view(snap, n, "a").cloned())
            .collect();
        e.iter()
            .all(|v| matches!(v, Some(v) if v.verdict == "down" && v.epoch > epoch0))
            && e.iter()
                .all(|v| v.as_ref().map(|v| v.epoch) == e[0].as_ref().map(|v| v.epoch))
    };
    let mut b_announced_at = None;
    let (snap, _) = run.observe(watch, Duration::from_secs(15), |snap, r| {
        if b_announced_at.is_none() && announced("b") {
            b_announced_at = Some(now_ms());
        }
        verdict_everywhere(snap) && r == "b" && b_announced_at.is_some()
    });
    let b_announced = b_announced_at.map(|t| t - t_inject);
    run.set("injection_to_b_announced_ms", json!(b_announced));
    let verdicts: BTreeMap<_, _> = deciders
        .iter()
        .map(|n| (n.to_string(), view(&snap, n, "a").cloned()))
        .collect();
    let mut per_node = serde_json::Map::new();
    for (n, v) in &verdicts {
        if let Some(v) = v {
            let ms = v.decided_at_ms.map(|t| t - t_inject);
            per_node.insert(
                n.clone(),
                json!({"verdict": v.verdict, "epoch": v.epoch, "injection_to_verdict_ms": ms}),
            );
        }
    }
    run.set("verdicts", Value::Object(per_node));
    let moved_key = if a_withdraws_itself(fault) {
        "route_to_b_at_ms"
    } else {
        "route_moved_at_ms"
    };
    let moved = run
        .result
        .get(moved_key)
        .and_then(|v| v.as_i64())
        .map(|t| t - t_inject);
    run.set("injection_to_route_moved_ms", json!(moved));
    ensure!(
        verdict_everywhere(&snap),
        "no common DOWN verdict within 15 s: {verdicts:?}"
    );
    let worst = verdicts
        .values()
        .flatten()
        .filter_map(|v| v.decided_at_ms)
        .max()
        .unwrap_or(0)
        - t_inject;
    run.set("injection_to_verdict_everywhere_ms", json!(worst));
    run.log(format!(
        "verdict DOWN for a at every deciding voter {worst} ms after the fault"
    ));
    match moved {
        Some(ms) => run.log(format!(
            "observer best route moved to b {ms} ms after the fault"
        )),
        None => run.log("observer best route did not move to b within 15 s"),
    }
    match b_announced {
        Some(ms) => run.log(format!(
            "b's router told to announce the prefix (announce-b) {ms} ms after the fault"
        )),
        None => run.log("b's router was never told to announce the prefix"),
    }
    ensure!(
        moved.is_some(),
        "the observer's best route never moved to b"
    );
    ensure!(
        b_announced.is_some(),
        "the route moved but b's include file does not hold it: quorate did not announce it"
    );
    let epoch = verdicts.values().flatten().next().unwrap().epoch;
    // The route moved because quorate announced it: the leader's run of this epoch succeeded.
    let r = wait_run(run, epoch, "succeeded", Duration::from_secs(10))?;
    ensure!(
        r["trigger"] == "verdict",
        "the run of epoch {epoch} was not started by the verdict: {r}"
    );
    run.set(
        "route_by_quorate",
        json!({"run": r["id"], "leader": r["leader"], "state": r["state"], "steps": r["steps"]}),
    );
    // Exactly one verdict: for a while more, nobody commits another epoch, and the history
    // holds one DOWN after the baseline epoch.
    let (later, _) = run.observe(watch, Duration::from_secs(2), |_, _| false);
    for n in deciders {
        let v = view(&later, n, "a").ok_or(format!("{n} stopped answering"))?;
        ensure!(
            v.verdict == "down" && v.epoch == epoch,
            "{n}: verdict moved on to {v}"
        );
        let hist: Value =
            serde_json::from_str(&rest(n, "/v1/verdicts?site=a&limit=20").unwrap_or_default())
                .unwrap_or(Value::Null);
        let downs_after = hist["verdicts"]
            .as_array()
            .ok_or(format!("{n}: no verdict history: {hist}"))?
            .iter()
            .filter(|v| v["verdict"] == "down" && v["epoch"].as_u64().unwrap_or(0) > epoch0)
            .count();
        ensure!(
            downs_after == 1,
            "{n}: {downs_after} DOWN verdicts recorded after epoch {epoch0}: {hist}"
        );
    }
    // The surviving Indicators-only nodes learn it too.
    for n in watch
        .iter()
        .filter(|n| !deciders.contains(n) && !frozen.contains(n))
    {
        let v = view(&later, n, "a").ok_or(format!("{n} stopped answering"))?;
        ensure!(
            v.verdict == "down" && v.epoch == epoch,
            "{n} has not learnt the verdict: {v}"
        );
    }
    run.set("epoch", json!(epoch));
    Ok(())
}

/// S2: a–b cut while c sees both: internal false positives, no verdict.
fn s2(run: &mut Run, base: &Snap) -> Check {
    let fp_nodes = ["a1", "a2", "b1", "b2"];
    let fp0 = fp_total(&fp_nodes);
    let t = run.inject(&["partition", "a", "b"]);
    let mut fp_at = None;
    let (snap, ok) = run.observe(&ALL, Duration::from_secs(15), |_, _| {
        let more = fp_total(&fp_nodes) > fp0;
        if more && fp_at.is_none() {
            fp_at = Some(now_ms());
        }
        more
    });
    ensure!(
        ok,
        "no internal false positive on a1, a2, b1, b2 within 15 s"
    );
    run.log(format!(
        "first internal false positive {} ms after the cut",
        fp_at.unwrap() - t
    ));
    run.set("injection_to_false_positive_ms", json!(fp_at.unwrap() - t));
    no_new_verdict(base, &snap, &ALL)?;
    let (snap, _) = run.observe(&ALL, Duration::from_secs(5), |_, _| false);
    no_new_verdict(base, &snap, &ALL)?;
    for n in ["c1", "c2"] {
        for s in ["a", "b"] {
            let v = view(&snap, n, s).ok_or(format!("{n} does not answer"))?;
            ensure!(v.opinion == "up", "{n} should still see {s} up: {v}");
        }
    }
    let fp = fp_total(&fp_nodes) - fp0;
    run.log(format!("internal false positives during the cut: {fp}"));
    run.set("false_positives", json!(fp));
    // a still hears c's two voters: the others (b1, b2) cannot make a majority of four, so a
    // must not fence itself, and with no verdict the route stays on a.
    let iso: Value =
        serde_json::from_str(&rest("a1", "/v1/status").unwrap_or_default()).unwrap_or(Value::Null);
    let r = route();
    run.log(format!(
        "observer route during the cut: {r}; a announced: {}; a1 isolation: {}",
        announced("a"),
        iso["isolation"]
    ));
    run.set("route_during_cut", json!(r));
    run.set("a1_isolation", iso["isolation"].clone());
    ensure!(
        r == "a" && iso["isolation"]["isolated"] == false,
        "a fenced itself during an a-b cut (hears {} of {} needed) or the route left a: {r}",
        iso["isolation"]["heard"],
        iso["isolation"]["needed"]
    );
    Ok(())
}

/// S3: a isolated (links cut, processes running): a's nodes fence a (withdraw-a) before the
/// leader of the DOWN verdict announces b (announce-b). The observer is sampled every 40 ms.
fn s3(run: &mut Run, base: &Snap) -> Check {
    let epoch0 = view(base, "b1", "a").map(|v| v.epoch).unwrap_or(0);
    let t = run.inject(&["isolate", "a"]);
    run.set("injected_at_ms", json!(t));
    let (mut a_gone, mut b_up) = (None, None);
    let mut samples = vec![];
    let mut last = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let at = now_ms() - t;
        let (a_ann, b_ann) = (announced("a"), announced("b"));
        if !a_ann && a_gone.is_none() {
            a_gone = Some(at);
        }
        if b_ann && b_up.is_none() {
            b_up = Some(at);
        }
        let (cands, best) = observer_candidates();
        let line = format!(
            "a announces: {a_ann}, b announces: {b_ann}; observer candidates {cands:?}, best {best}"
        );
        if line != last {
            run.log(&line);
            last = line;
        }
        samples.push(
            json!({"at_ms": at, "a_file": a_ann, "b_file": b_ann, "observer": cands, "best": best}),
        );
        if b_up.is_some() && cands == ["b"] {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let both: Vec<&Value> = samples
        .iter()
        .filter(|s| {
            let c = s["observer"].as_array().unwrap();
            c.contains(&json!("a")) && c.contains(&json!("b"))
        })
        .collect();
    let both_files = samples
        .iter()
        .filter(|s| s["a_file"] == true && s["b_file"] == true)
        .count();
    let (a_mtime, b_mtime) = (announced_mtime("a"), announced_mtime("b"));
    run.set("samples", json!(samples));
    run.set("injection_to_a_withdrawn_ms", json!(a_gone));
    run.set("injection_to_b_announced_ms", json!(b_up));
    run.set(
        "include_file_mtimes_after_injection_ms",
        json!({"a": a_mtime.map(|m| m - t), "b": b_mtime.map(|m| m - t)}),
    );
    run.set("samples_both_files_announce", json!(both_files));
    run.set("samples_observer_sees_both", json!(both.len()));
    run.log(format!(
        "{} samples: a withdrawn +{a_gone:?} ms, b announced +{b_up:?} ms (file mtimes a +{:?}, b +{:?}); \
         samples with both include files announcing: {both_files}; with both a and b at the observer: {} \
         (a's withdrawal cannot reach the observer over a's cut link: its route stays until the BGP hold time)",
        samples.len(),
        a_mtime.map(|m| m - t),
        b_mtime.map(|m| m - t),
        both.len()
    ));
    let a_gone = a_gone.ok_or("a's nodes never withdrew a's route (withdraw-a)")?;
    let b_up = b_up.ok_or("b's route was never announced (announce-b) within 10 s")?;
    ensure!(
        a_gone < b_up && both_files == 0,
        "b announced (+{b_up} ms) before a withdrew (+{a_gone} ms)"
    );
    ensure!(
        matches!((a_mtime, b_mtime), (Some(a), Some(b)) if a < b),
        "include file mtimes out of order: a {a_mtime:?}, b {b_mtime:?}"
    );
    for n in ["a1", "a2", "a3"] {
        let st: Value =
            serde_json::from_str(&rest(n, "/v1/status").unwrap_or_default()).unwrap_or(Value::Null);
        let iso = &st["isolation"];
        ensure!(
            iso["isolated"] == true && iso["last_steps"] == "succeeded",
            "{n} does not report a finished isolation: {iso}"
        );
    }
    let snap = snapshot(&ELECTORATE_OF_A);
    let v = view(&snap, "b1", "a").ok_or("b1 does not answer")?.clone();
    ensure!(
        v.verdict == "down" && v.epoch > epoch0,
        "no DOWN verdict of a at b1: {v}"
    );
    let r = wait_run(run, v.epoch, "succeeded", Duration::from_secs(10))?;
    run.set("run", json!({"id": r["id"], "leader": r["leader"]}));
    let (_, best) = observer_candidates();
    ensure!(best == "b", "the observer's best route is {best}, not b");
    Ok(())
}

/// S9: a blacks out and b takes over; a comes back: quorate does not fail back by itself;
/// POST /v1/failbacks runs the compensations, make before break: announce-a, then withdraw-b,
/// and the observer prefers a again.
fn s9(run: &mut Run, base: &Snap) -> Check {
    let epoch0 = view(base, "b1", "a").map(|v| v.epoch).unwrap_or(0);
    let t = run.inject(&["blackout", "a"]);
    let (snap, ok) = run.observe(&ELECTORATE_OF_A, Duration::from_secs(15), |snap, r| {
        view(snap, "b1", "a").is_some_and(|v| v.verdict == "down" && v.epoch > epoch0)
            && r == "b"
            && announced("b")
    });
    ensure!(ok, "no takeover by b within 15 s of the blackout");
    let epoch = view(&snap, "b1", "a").unwrap().epoch;
    let r = wait_run(run, epoch, "succeeded", Duration::from_secs(10))?;
    let leader = r["leader"].as_str().unwrap_or("b1").to_string();
    run.log(format!("takeover {} ms after the blackout", now_ms() - t));
    // Every voter holds a copy of each run: count run ids.
    let runs_before: std::collections::BTreeSet<String> = runs_of_a(&ELECTORATE_OF_A)
        .into_iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_string())
        .collect();

    run.inject(&["heal"]);
    let t_back = run.inject(&["start", "a"]);
    let (_, ok) = run.observe(&ELECTORATE_OF_A, Duration::from_secs(20), |snap, _| {
        ELECTORATE_OF_A
            .iter()
            .all(|n| view(snap, n, "a").is_some_and(|v| v.verdict == "up"))
    });
    ensure!(
        ok,
        "a is not back up at every voter of its electorate within 20 s"
    );
    run.log(format!(
        "a up again {} ms after its start",
        now_ms() - t_back
    ));
    // A while with a up: no automatic failback, b keeps announcing.
    run.observe(&ELECTORATE_OF_A, Duration::from_secs(3), |_, _| false);
    let runs_after: std::collections::BTreeSet<String> = runs_of_a(&ELECTORATE_OF_A)
        .into_iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_string())
        .collect();
    let (cands, best) = observer_candidates();
    run.log(format!(
        "a back: b announces: {}, a announces: {}, observer candidates {cands:?}, best {best}",
        announced("b"),
        announced("a")
    ));
    run.set(
        "observer_after_return",
        json!({"candidates": cands, "best": best, "a_file": announced("a")}),
    );
    ensure!(
        announced("b"),
        "b's route was withdrawn without a failback call"
    );
    ensure!(
        runs_after.len() == runs_before.len(),
        "a run started by itself once a came back: {runs_before:?} -> {runs_after:?}"
    );

    let t_fb = now_ms();
    let (code, body) = post_failback(&leader);
    run.log(format!(
        "POST /v1/failbacks at {leader}: {code} {}",
        body.trim()
    ));
    ensure!(
        (200..300).contains(&code),
        "failback refused: {code} {body}"
    );
    let fb: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let fb_epoch = fb["epoch"].as_u64().ok_or(format!("no epoch in {body}"))?;
    let start = Instant::now();
    while announced("b") && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(
        !announced("b"),
        "b still announces 10 s after the failback call"
    );
    run.set("failback_to_b_withdrawn_ms", json!(now_ms() - t_fb));
    run.log(format!(
        "b withdrawn {} ms after the failback call",
        now_ms() - t_fb
    ));
    let r = wait_run(run, fb_epoch, "succeeded", Duration::from_secs(10))?;
    ensure!(
        r["trigger"] == "failback",
        "run {fb_epoch} is not a failback: {r}"
    );
    // The failback is make before break: a announces again (the compensation of the plan's
    // withdraw-a-route, which also undoes a self-fence of a) before b withdraws.
    let order: Vec<&str> = r["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    ensure!(
        order == ["announce-a", "withdraw-b"],
        "the failback's steps ran as {order:?}, not announce-a then withdraw-b"
    );
    ensure!(
        announced("a"),
        "a's include file does not hold the prefix after the failback"
    );
    let start = Instant::now();
    let (mut cands, mut best) = observer_candidates();
    while best != "a" && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        (cands, best) = observer_candidates();
    }
    run.log(format!(
        "after the failback: observer candidates {cands:?}, best {best}"
    ));
    run.set(
        "observer_after_failback",
        json!({"candidates": cands, "best": best, "a_file": announced("a")}),
    );
    ensure!(
        best == "a",
        "the observer's best route is {best}, not a, 10 s after the failback"
    );
    Ok(())
}

/// S4: 20 % loss on every WAN path between sites for a long while: no verdict.
fn s4(run: &mut Run, base: &Snap) -> Check {
    let secs: u64 = std::env::var("CHAOS_LOSS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let fp0 = fp_total(&VOTERS);
    for (x, y) in [("a", "b"), ("a", "c"), ("b", "c")] {
        run.inject(&["loss", x, y, "20"]);
    }
    let mut downs = 0u32;
    let mut prev_down: BTreeMap<String, bool> = BTreeMap::new();
    let (snap, _) = run.observe(&ALL, Duration::from_secs(secs), |snap, _| {
        for n in VOTERS {
            for s in ["a", "b"] {
                let d = view(snap, n, s).is_some_and(|v| v.opinion == "down");
                let key = format!("{n}/{s}");
                if d && !prev_down.get(&key).copied().unwrap_or(false) {
                    downs += 1;
                }
                prev_down.insert(key, d);
            }
        }
        no_new_verdict(base, snap, &ALL).is_err()
    });
    let faults = testbed(&["faults"]);
    let dropped: u64 = faults
        .lines()
        .filter(|l| l.contains("numgen"))
        .filter_map(|l| {
            l.split("packets ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    run.log(format!("packets dropped by the loss rules: {dropped}"));
    run.set("packets_dropped", json!(dropped));
    ensure!(dropped > 0, "the loss rules dropped nothing:\n{faults}");
    let fp = fp_total(&VOTERS) - fp0;
    run.log(format!("{secs} s of 20 % loss: {downs} DOWN opinions seen by polling, {fp} internal false positives"));
    run.set("loss_seconds", json!(secs));
    run.set("down_opinions_seen", json!(downs));
    run.set("false_positives", json!(fp));
    no_new_verdict(base, &snap, &ALL)?;
    ensure!(route() == "a", "the observer's route moved under loss");
    Ok(())
}

/// S5: b1 frozen, then a blacks out: b2, c1, c2 (3 of 4) still commit the verdict; b1
/// learns it once thawed.
fn s5(run: &mut Run, base: &Snap) -> Check {
    blackout_verdict(
        run,
        base,
        &["b1"],
        &["b2", "c1", "c2"],
        &["b2", "b3", "c1", "c2"],
    )?;
    let epoch = run.result["epoch"].as_u64().unwrap();
    run.inject(&["thaw", "b1"]);
    let (_, ok) = run.observe(&["b1"], Duration::from_secs(15), |snap, _| {
        view(snap, "b1", "a").is_some_and(|v| v.verdict == "down" && v.epoch == epoch)
    });
    ensure!(
        ok,
        "b1 did not learn the verdict (epoch {epoch}) within 15 s of its thaw"
    );
    Ok(())
}

/// S7: two of a's three Indicators die: a3 still answers, no verdict.
fn s7(run: &mut Run, base: &Snap) -> Check {
    run.inject(&["kill", "a1"]);
    run.inject(&["kill", "a2"]);
    let rest: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|n| !["a1", "a2"].contains(n))
        .collect();
    let (snap, _) = run.observe(&rest, Duration::from_secs(6), |snap, _| {
        no_new_verdict(base, snap, &rest).is_err()
    });
    no_new_verdict(base, &snap, &rest)?;
    for n in ELECTORATE_OF_A {
        let v = view(&snap, n, "a").ok_or(format!("{n} does not answer"))?;
        ensure!(v.opinion == "up", "{n} should see a up (a3 answers): {v}");
    }
    Ok(())
}

/// S8: the a–b link flaps faster than the probe budget (80 ms): no verdict.
fn s8(run: &mut Run, base: &Snap) -> Check {
    let fp0 = fp_total(&VOTERS);
    run.inject(&["flap", "a", "b", "--period", "50"]);
    let (snap, _) = run.observe(&ALL, Duration::from_secs(15), |snap, _| {
        no_new_verdict(base, snap, &ALL).is_err()
    });
    no_new_verdict(base, &snap, &ALL)?;
    ensure!(route() == "a", "the observer's route moved during the flap");
    let fp = fp_total(&VOTERS) - fp0;
    run.log(format!("internal false positives during the flap: {fp}"));
    run.set("false_positives", json!(fp));
    Ok(())
}

/// S10: every voter restarted in turn (SIGTERM, start, wait until it is back): no verdict.
fn s10(run: &mut Run, base: &Snap) -> Check {
    for n in VOTERS {
        let t = run.inject(&["restart", n]);
        let (_, ok) = run.observe(&ALL, Duration::from_secs(20), |snap, _| normal(snap));
        ensure!(
            ok,
            "{n} did not come back to normal within 20 s of its restart"
        );
        run.log(format!(
            "{n} back to normal {} ms after its restart",
            now_ms() - t
        ));
        let snap = snapshot(&ALL);
        no_new_verdict(base, &snap, &ALL)?;
    }
    let (snap, _) = run.observe(&ALL, Duration::from_secs(2), |_, _| false);
    no_new_verdict(base, &snap, &ALL)
}

// ------------------------------------------------------------------------------------------
// Tests

/// Runs `testbed down` when dropped, also during a panic.
struct DownGuard;
impl Drop for DownGuard {
    fn drop(&mut self) {
        let o = testbed_try(&["down"]);
        print!("{}", String::from_utf8_lossy(&o.stdout));
        eprint!("{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// The names `ip netns list` shows (each line is a name, then maybe "(id: N)").
fn netns_names() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Independent of the script: no namespace, root-namespace link, or process of the testbed.
fn assert_nothing_left() {
    let ns = netns_names();
    assert!(
        !ns.iter().any(|n| n.starts_with(&ns_prefix())),
        "namespaces left: {ns:?}"
    );
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    for l in links.lines() {
        let name = l.split(": ").nth(1).unwrap_or("");
        assert!(
            !name.starts_with("h-") && !name.starts_with(&ns_prefix()),
            "link left in the root namespace: {l}"
        );
    }
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("qt_chaos"),
        "nftables table left"
    );
    let dir = state_dir().display().to_string();
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let ours = cmd.contains(&format!("{dir}/bin/quorate"))
            || cmd.contains(&format!("bird -c {dir}"))
            || cmd.contains("testbed-flap");
        assert!(!ours, "process left: {pid} {cmd}");
    }
    let o = testbed_try(&["check-clean"]);
    assert!(
        o.status.success(),
        "testbed check-clean: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn chaos_scenarios() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED chaos scenarios: {why}");
        return;
    }
    let _serial = lock();
    let started = Instant::now();
    let only: Option<Vec<String>> = std::env::var("CHAOS_ONLY")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));

    let _ = testbed_try(&["down"]); // leftovers of an aborted run
    let _guard = DownGuard;
    print!("{}", testbed(&["up"]));

    type Scenario = fn(&mut Run, &Snap) -> Check;
    let scenarios: [(&str, &str, Scenario); 12] = [
        (
            "S1",
            "blackout of the primary a: one DOWN verdict, same epoch at b1, b2, c1, c2; quorate moves the route to b",
            s1,
        ),
        (
            "S2",
            "WAN cut a-b while c sees both: internal false positive, no verdict",
            s2,
        ),
        (
            "S3",
            "a isolated, its processes running: a withdraws its route before b announces",
            s3,
        ),
        (
            "S4",
            "20 % loss on every WAN path between sites: no verdict",
            s4,
        ),
        (
            "S5",
            "b1 frozen during a blackout of a: the other three voters decide",
            s5,
        ),
        (
            "S6",
            "the leader of a's failover killed mid-pipeline: another voter completes the run, every step once",
            s6,
        ),
        ("S7", "a1 and a2 killed, a3 still answers: no verdict", s7),
        (
            "S8",
            "a-b link flapping every 50 ms (probe budget 80 ms): no verdict",
            s8,
        ),
        (
            "S9",
            "a blacks out, b takes over, a returns: no automatic failback; POST /v1/failbacks: a announces again, then b withdraws",
            s9,
        ),
        (
            "S10",
            "rolling restart of every voter in normal operation: no verdict",
            s10,
        ),
        (
            "S11",
            "gray failure: a's service dead on a1, a2, a3 while hosts and links stay up: one DOWN verdict; quorate moves the route to b",
            s11,
        ),
        (
            "S12",
            "a's router keeps announcing (a pinned route): the fence of a is never confirmed and the run stops before b announces",
            s12,
        ),
    ];
    let mut summary = vec![];
    let mut failed = vec![];
    let mut broken = false;
    for (name, what, f) in scenarios {
        if !wanted(name) {
            continue;
        }
        let mut run = Run::new(name, what);
        if broken {
            run.log("not run: the fleet did not return to normal after an earlier scenario");
            run.write("not run");
            failed.push(name.to_string());
            summary.push(format!("{name}: NOT RUN"));
            continue;
        }
        let t = Instant::now();
        let outcome = wait_normal(&mut run, Duration::from_secs(40)).and_then(|base| {
            run.log("normal operation: every node answers, every opinion up, observer prefers a");
            f(&mut run, &base)
        });
        let secs = t.elapsed().as_secs_f64();
        run.set("duration_s", json!(secs));
        match outcome {
            Ok(()) => {
                run.log(format!("{name} PASSED"));
                run.write("passed");
                summary.push(format!(
                    "{name}: PASSED in {secs:.1} s {}",
                    key_numbers(&run)
                ));
            }
            Err(e) => {
                run.log(format!("{name} FAILED: {e}"));
                run.set("error", json!(e));
                run.write("failed");
                println!("---- timeline of {name}");
                for l in &run.lines {
                    println!("{l}");
                }
                tail_logs();
                failed.push(name.to_string());
                summary.push(format!("{name}: FAILED in {secs:.1} s: {e}"));
            }
        }
        let mut after = Run::new(
            &format!("{name}-restore"),
            "heal, start what was stopped, wait for normal operation",
        );
        if let Err(e) = restore(&mut after) {
            println!("restore after {name} failed: {e}");
            tail_logs();
            broken = true;
        }
    }
    drop(_guard);
    assert_nothing_left();
    println!(
        "\n==== chaos summary ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    for l in &summary {
        println!("{l}");
    }
    let _ = std::fs::write(
        out_dir().join("summary.json"),
        serde_json::to_string_pretty(
            &json!({"total_s": started.elapsed().as_secs_f64(), "results": summary}),
        )
        .unwrap(),
    );
    assert!(
        failed.is_empty(),
        "chaos scenarios failed: {failed:?} (results in {})",
        out_dir().display()
    );
}

/// POST /v1/failovers `body` at `node` with the testbed's bearer token: status and body.
fn post_failover(node: &str, body: &str) -> (u16, String) {
    let (site, addr) = node_info(node);
    let token = std::fs::read_to_string(state_dir().join("api.token")).unwrap_or_default();
    let o = Command::new("ip")
        .args(["netns", "exec", &format!("{}{site}", ns_prefix())])
        .args([
            "curl",
            "-s",
            "-m",
            "3",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
        ])
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg(format!("http://{addr}/v1/failovers"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// S12: a's router keeps announcing the prefix from a route quorate does not own (pinned), as
/// a stuck router would. An operator's failover of a (not forced) runs the fence: a's route is
/// withdrawn, but the observer keeps a route from a through every read of the confirmation,
/// so the run stops at the fence: announce-b never runs, b never announces, the route stays
/// on a, and the run's summary names the fence and what the last read found.
fn s12(run: &mut Run, _base: &Snap) -> Check {
    run.inject(&["pin-route", "a"]);
    let t = now_ms();
    let (code, body) = post_failover(
        "b1",
        r#"{"site":"a","reason":"S12: a fence that cannot be confirmed"}"#,
    );
    run.log(format!("POST /v1/failovers at b1: {code} {}", body.trim()));
    ensure!(
        (200..300).contains(&code),
        "failover refused: {code} {body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let epoch = v["epoch"].as_u64().ok_or(format!("no epoch in {body}"))?;
    let r = wait_run(run, epoch, "aborted", Duration::from_secs(20))?;
    run.set("failover_to_stopped_ms", json!(now_ms() - t));
    let summary = r["summary"].as_str().unwrap_or("").to_string();
    run.set("summary", json!(summary));
    let names: Vec<&str> = r["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    ensure!(
        names == ["fence-a", "fence-a-confirm"],
        "the run's steps were {names:?}, not the fence and its confirmation only"
    );
    ensure!(
        summary.contains("stopped at the fence")
            && summary.contains("fence \"fence-a\" not confirmed")
            && summary.contains("still has a route from protocol site_a"),
        "the summary does not name the fence and the last read: {summary}"
    );
    ensure!(
        !announced("b"),
        "b's include file holds the prefix: the takeover went on"
    );
    let (cands, best) = observer_candidates();
    run.log(format!("observer candidates {cands:?}, best {best}"));
    ensure!(
        best == "a",
        "the observer's best route is {best}, not a's pinned route"
    );
    Ok(())
}

fn key_numbers(run: &Run) -> String {
    let keys = [
        "injection_to_verdict_everywhere_ms",
        "injection_to_b_announced_ms",
        "injection_to_route_moved_ms",
        "injection_to_a_withdrawn_ms",
        "samples_observer_sees_both",
        "failback_to_b_withdrawn_ms",
        "injection_to_false_positive_ms",
        "finding",
        "false_positives",
        "down_opinions_seen",
        "packets_dropped",
    ];
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            run.result
                .get(*k)
                .filter(|v| !v.is_null())
                .map(|v| format!("{k}={v}"))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(", "))
    }
}

/// `down` removes everything: after an `up` interrupted half-way (Ctrl-C), after a full
/// `up` with faults in place, and when run twice.
#[test]
fn testbed_down_leaves_nothing() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED testbed cleanup test: {why}");
        return;
    }
    let _serial = lock();
    let _ = testbed_try(&["down"]);
    let _guard = DownGuard;

    // An interrupted `up`: SIGINT while it builds the network or starts the routers, that is
    // once its first namespace exists (a fixed delay could land after a fast machine's `up`
    // had finished, when Ctrl-C rightly tears nothing down).
    let mut child = testbed_cmd(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("testbed up starts");
    let first_ns = format!("{}a", ns_prefix());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
        if netns_names().contains(&first_ns) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("testbed up ends");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!("interrupted up: {} / {}", out.status, stderr.trim());
    if !out.status.success() {
        // Its own trap must have cleaned up.
        assert_nothing_left();
    }
    testbed(&["down"]);
    assert_nothing_left();

    // A full `up` with every kind of fault in place, then `down` twice.
    testbed(&["up"]);
    testbed(&["freeze", "b1"]);
    testbed(&["kill", "c2"]);
    testbed(&["partition", "a", "c", "--oneway"]);
    testbed(&["loss", "b", "c", "10"]);
    testbed(&["flap", "a", "b", "--period", "50"]);
    testbed(&["blackout", "a"]);
    testbed(&["down"]);
    assert_nothing_left();
    testbed(&["down"]);
    assert_nothing_left();
}
