//! Blackout of site a → the "internet" observer's best route for the anycast prefix points to
//! b, on the network-namespace testbed (`testbed/testbed`: BIRD routers, quorate nodes as
//! processes, faults with nftables and SIGKILL).
//!
//! Per configuration the bench brings the testbed up (state in target/route_move/state),
//! then per trial: waits for normal operation with the observer preferring a, waits a random
//! 0-1 s, runs `testbed blackout a` while it samples the observer's routes for the prefix
//! through BIRD's control socket every 5 ms, and records, in ms after a's links were cut:
//! the DOWN verdict (b1's `decided_at`), b's include file written by the failover step
//! `announce-b`, a's route gone from the observer, and the observer's best route via b. Then
//! `heal`, `start`, `reset-routes` and back to normal (past the hold-down). `testbed down`
//! runs at the end, also on error or panic.
//!
//! Configurations: `default` (the testbed as it is: takeover delay 1.2 s, BGP hold time 3 s,
//! no BFD) and `tuned` (TESTBED_TAKEOVER_DELAY_S=0.25, TESTBED_SELF_FENCE_S=0.1,
//! TESTBED_STATUS_MS=50, TESTBED_BFD=1: BFD on the observer's BGP sessions, 50 ms × 3).
//!
//!   sudo cargo bench --bench route_move [-- --trials N --baseline-trials N --only default|tuned]
//!
//! ROUTE_MOVE_TRIALS (default 20: tuned) and ROUTE_MOVE_BASELINE_TRIALS (default 5: default)
//! set the same. Needs root and `ip netns`; without them, or when the testbed is in use or
//! cannot start, it prints why and exits 0.

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "common/report.rs"]
mod report;
use report::{f1, summary};

const ANYCAST: &str = "198.19.255.0/24";
const SAMPLE: Duration = Duration::from_millis(5);
const NAN: f64 = f64::NAN;

/// id, site, REST address (the testbed's topology).
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

/// The sites each Pinger watches.
fn watched_by(node: &str) -> &'static [&'static str] {
    match node {
        "a1" | "a2" => &["b"],
        "b1" | "b2" => &["a"],
        "c1" | "c2" => &["a", "b"],
        _ => &[],
    }
}

/// name, what, testbed environment.
type Config = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);
const CONFIGS: [Config; 2] = [
    (
        "default",
        "takeover_delay_s 1.2, self_fence_after_s 0.6, status 200 ms, BGP hold 3 s, no BFD",
        &[],
    ),
    (
        "tuned",
        "takeover_delay_s 0.25, self_fence_after_s 0.1, status 50 ms, BGP hold 3 s, BFD 50 ms × 3",
        &[
            ("TESTBED_TAKEOVER_DELAY_S", "0.25"),
            ("TESTBED_SELF_FENCE_S", "0.1"),
            ("TESTBED_STATUS_MS", "50"),
            ("TESTBED_BFD", "1"),
            ("TESTBED_BFD_MS", "50"),
        ],
    ),
];

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn state_dir() -> PathBuf {
    root().join("target/route_move/state")
}

struct Testbed {
    env: Vec<(&'static str, &'static str)>,
}

impl Testbed {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(root().join("testbed/testbed"));
        c.arg("--dir")
            .arg(state_dir())
            .args(args)
            .env("QUORATE_BIN", env!("CARGO_BIN_EXE_quorate"))
            .envs(self.env.iter().copied())
            .stdin(Stdio::null());
        c
    }

    fn try_run(&self, args: &[&str]) -> Result<Output> {
        Ok(self.cmd(args).output()?)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let o = self.try_run(args)?;
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        if !o.status.success() {
            bail!(
                "testbed {args:?} failed: {}\n{out}{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(out)
    }
}

/// Runs `testbed down` when dropped, also during a panic.
struct DownGuard<'a>(&'a Testbed);
impl Drop for DownGuard<'_> {
    fn drop(&mut self) {
        match self.0.try_run(&["down"]) {
            Ok(o) => {
                print!("{}", String::from_utf8_lossy(&o.stdout));
                eprint!("{}", String::from_utf8_lossy(&o.stderr));
            }
            Err(e) => eprintln!("testbed down: {e}"),
        }
    }
}

/// A connection to a BIRD control socket.
struct Bird {
    path: PathBuf,
    conn: Option<BufReader<UnixStream>>,
}

impl Bird {
    fn new(path: PathBuf) -> Bird {
        Bird { path, conn: None }
    }

    fn connect(&self) -> std::io::Result<BufReader<UnixStream>> {
        let s = UnixStream::connect(&self.path)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut r = BufReader::new(s);
        let mut hello = String::new();
        r.read_line(&mut hello)?; // "0001 BIRD 2.x ready."
        Ok(r)
    }

    /// The lines of one command's answer, up to its final `NNNN ` line.
    fn ask(&mut self, cmd: &str) -> std::io::Result<Vec<String>> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let r = self.conn.as_mut().unwrap();
        let res = (|| {
            r.get_mut().write_all(format!("{cmd}\n").as_bytes())?;
            let mut lines = Vec::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let b = l.as_bytes();
                let last = b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b' ';
                lines.push(l);
                if last {
                    return Ok(lines);
                }
            }
        })();
        if res.is_err() {
            self.conn = None;
        }
        res
    }

    /// The sites the observer learnt the prefix from, and the site of its best route.
    fn candidates(&mut self) -> (Vec<String>, String) {
        let lines = self
            .ask(&format!("show route for {ANYCAST}"))
            .unwrap_or_default();
        let (mut sites, mut best) = (vec![], "none".to_string());
        for l in lines {
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
}

/// GET `path` on `node`'s REST API from inside its site's namespace.
fn rest(node: &str, path: &str) -> Option<Value> {
    let (_, site, addr) = NODES.iter().find(|(n, _, _)| *n == node)?;
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("qt-{site}"),
            "curl",
            "-sf",
            "-m",
            "1",
        ])
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

/// Why the fleet is not in normal operation (empty when it is): every node answers, no
/// opinion is down, every Pinger sees the sites it watches up, every verdict is up or none
/// and the nodes agree on each site's epoch.
fn why_abnormal() -> String {
    let mut why = vec![];
    let mut epochs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (n, _, _) in NODES {
        let Some(v) = rest(n, "/v1/sites") else {
            why.push(format!("{n} does not answer"));
            continue;
        };
        let mut opinions = BTreeMap::new();
        for s in v["sites"].as_array().into_iter().flatten() {
            let id = s["id"].as_str().unwrap_or("?").to_string();
            let (op, verdict) = (s["opinion"].as_str(), s["verdict"].as_str());
            if op == Some("down") {
                why.push(format!("{n} sees {id} down"));
            }
            if !matches!(verdict, Some("up" | "none")) {
                why.push(format!("{n}: verdict {verdict:?} for {id}"));
            }
            epochs
                .entry(id.clone())
                .or_default()
                .push(s["epoch"].as_u64().unwrap_or(0));
            opinions.insert(id, op.unwrap_or("?").to_string());
        }
        for s in watched_by(n) {
            if opinions.get(*s).map(String::as_str) != Some("up") {
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

/// Polls until the fleet is normal (and, with `route_a`, the observer prefers a).
fn wait_normal(bird: &mut Bird, max: Duration, route_a: bool) -> Result<()> {
    let start = Instant::now();
    loop {
        let why = why_abnormal();
        let best = bird.candidates().1;
        if why.is_empty() && (!route_a || best == "a") {
            return Ok(());
        }
        if start.elapsed() >= max {
            bail!("not back to normal within {max:?}: {why}; observer best route: {best}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Heal, start what was stopped, wait for the nodes, put the routes back (a announces, b does
/// not), wait for the observer to prefer a, then let the hold-down (2 s) pass.
fn restore(tb: &Testbed, bird: &mut Bird) -> Result<()> {
    tb.run(&["heal"])?;
    tb.run(&["start"])?;
    wait_normal(bird, Duration::from_secs(40), false)?;
    // A node of a that started less than self_fence_after_s ago may still fence a.
    std::thread::sleep(Duration::from_secs(1));
    tb.run(&["reset-routes"])?;
    wait_normal(bird, Duration::from_secs(20), true)?;
    std::thread::sleep(Duration::from_millis(2100));
    Ok(())
}

fn file_mtime_us(p: &Path) -> Option<i64> {
    let m = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(m.duration_since(UNIX_EPOCH).ok()?.as_micros() as i64)
}

/// ms after a's links were cut: [DOWN verdict at b1, b's include file written (announce-b),
/// a's route gone at the observer, observer's best route via b].
type Trial = [f64; 4];
const STAGES: [&str; 4] = [
    "DOWN verdict committed (b1's decided_at, ms resolution)",
    "b's include file written by announce-b (after the takeover delay)",
    "a's route gone from the observer (BGP hold time or BFD)",
    "observer's best route via b",
];

fn trial(tb: &Testbed, bird: &mut Bird, b_file: &Path) -> Result<Trial> {
    let child = tb
        .cmd(&["blackout", "a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    let (mut a_gone, mut b_best) = (None, None);
    while b_best.is_none() && start.elapsed() < Duration::from_secs(15) {
        let (sites, best) = bird.candidates();
        let at = now_us();
        if a_gone.is_none() && !sites.iter().any(|s| s == "a") {
            a_gone = Some(at);
        }
        if best == "b" {
            b_best = Some(at);
        }
        std::thread::sleep(SAMPLE);
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "testbed blackout a failed: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "testbed: blackout a: links cut at <unix ms>"
    let cut_ms: i64 = text
        .lines()
        .find(|l| l.contains("links cut at"))
        .and_then(|l| l.rsplit(" at ").next()?.trim().parse().ok())
        .context("no `links cut at` in the blackout's output")?;
    let cut = cut_ms * 1000;
    let Some(b_best) = b_best else {
        bail!("the observer's best route did not move to b within 15 s");
    };
    let decided = rest("b1", "/v1/sites").and_then(|v| {
        let s = v["sites"]
            .as_array()?
            .iter()
            .find(|s| s["id"] == "a")?
            .clone();
        (s["verdict"] == "down").then_some(())?;
        let t = humantime::parse_rfc3339_weak(s["decided_at"].as_str()?).ok()?;
        Some(t.duration_since(UNIX_EPOCH).ok()?.as_micros() as i64)
    });
    let ms = |us: Option<i64>| us.map_or(NAN, |t| (t - cut) as f64 / 1000.0);
    Ok([
        ms(decided),
        ms(file_mtime_us(b_file)),
        ms(a_gone),
        ms(Some(b_best)),
    ])
}

fn run_config(c: &Config, trials: usize, rng: &mut StdRng) -> Result<Vec<Trial>> {
    let tb = Testbed { env: c.2.to_vec() };
    println!("\n== {}: {} ({trials} trials)", c.0, c.1);
    let _guard = DownGuard(&tb);
    let up = tb.try_run(&["up"])?;
    if !up.status.success() {
        bail!(
            "testbed up failed: {}\n{}{}",
            up.status,
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
    }
    let mut bird = Bird::new(state_dir().join("bird/inet.ctl"));
    let b_file = state_dir().join("bird/b-anycast.conf");
    wait_normal(&mut bird, Duration::from_secs(40), true)?;
    // Past the nodes' startup grace, so that the first trial's failover is armed like the rest.
    std::thread::sleep(Duration::from_secs(3));
    let mut out = Vec::new();
    for i in 1..=trials {
        wait_normal(&mut bird, Duration::from_secs(40), true)?;
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1000)));
        let t = trial(&tb, &mut bird, &b_file)?;
        println!(
            "{} trial {i:2}: verdict {:7.1} ms, announce-b {:7.1} ms, a gone {:7.1} ms, best via b {:7.1} ms",
            c.0, t[0], t[1], t[2], t[3]
        );
        out.push(t);
        restore(&tb, &mut bird)?;
    }
    Ok(out)
}

/// Why the bench cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok();
    if uid.is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0") {
        return Some("not root (network namespaces and nftables need root)".into());
    }
    let ns = match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        _ => return Some("`ip netns` is not available".into()),
    };
    if ns.lines().any(|l| l.starts_with("qt-")) {
        return Some(
            "the testbed's namespaces (qt-*) exist: another testbed run is using them".into(),
        );
    }
    None
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let opt = |k: &str, env: &str| {
        argv.windows(2)
            .find(|w| w[0] == k)
            .map(|w| w[1].clone())
            .or_else(|| std::env::var(env).ok())
    };
    let trials: usize = opt("--trials", "ROUTE_MOVE_TRIALS").map_or(Ok(20), |v| v.parse())?;
    let baseline: usize =
        opt("--baseline-trials", "ROUTE_MOVE_BASELINE_TRIALS").map_or(Ok(5), |v| v.parse())?;
    let only = opt("--only", "ROUTE_MOVE_ONLY");
    if let Some(why) = skip_reason() {
        println!("route_move: SKIPPED: {why}");
        return Ok(());
    }
    let mut rng = StdRng::seed_from_u64(1);
    let mut results = Vec::new();
    for c in CONFIGS.iter() {
        if only.as_ref().is_some_and(|o| o != c.0) {
            continue;
        }
        let n = if c.0 == "default" { baseline } else { trials };
        if n == 0 {
            continue;
        }
        let started = Instant::now();
        match run_config(c, n, &mut rng) {
            Ok(t) => results.push((c, t)),
            Err(e) => {
                println!("route_move: {}: stopped: {e:#}", c.0);
                if c.0 == "default" {
                    continue;
                }
                break;
            }
        }
        println!("{}: done in {:.1} s", c.0, started.elapsed().as_secs_f64());
    }
    report(&results);
    Ok(())
}

fn report(results: &[(&Config, Vec<Trial>)]) {
    println!("\nms after a's links were cut, nearest-rank percentiles (with fewer than 100 trials p99 is the maximum)\n");
    println!("| config | stage | n | p50 | p99 | max | mean |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (c, trials) in results {
        for (i, stage) in STAGES.iter().enumerate() {
            let (n, p50, p99, max, mean) = summary(trials.iter().map(|t| t[i]));
            row!(c.0, stage, n, f1(p50), f1(p99), f1(max), f1(mean));
        }
    }
    println!();
    for (c, trials) in results {
        let (n, _, p99, _, _) = summary(trials.iter().map(|t| t[3]));
        let how = if p99 <= 1000.0 { "met" } else { "MISSED" };
        println!("- {} ({}): blackout → best route via b p99 {:.1} ms over {n} trials: target ≤ 1000 ms {how}", c.0, c.1, p99);
    }
}
