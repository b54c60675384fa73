//! The soak's access to the testbed: its commands, the nodes' REST API (curl inside the
//! site's namespace), the routers' include files and the nodes' pid files.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// The testbed's nodes and their REST addresses (see the topology in testbed/testbed).
pub const NODES: [(&str, &str); 8] = [
    ("a1", "198.18.1.1:7501"),
    ("a2", "198.18.1.2:7501"),
    ("a3", "198.18.1.3:7501"),
    ("b1", "198.18.2.1:7501"),
    ("b2", "198.18.2.2:7501"),
    ("b3", "198.18.2.3:7501"),
    ("c1", "198.18.3.1:7501"),
    ("c2", "198.18.3.2:7501"),
];
/// The voters that decide about a (the fleet file's watch of a: by b and c).
pub const ELECTORATE_OF_A: [&str; 4] = ["b1", "b2", "c1", "c2"];
/// Every WAN path: each pair of the sites and the internet observer.
pub const WAN_PAIRS: [(&str, &str); 6] = [
    ("a", "b"),
    ("a", "c"),
    ("b", "c"),
    ("a", "inet"),
    ("b", "inet"),
    ("c", "inet"),
];
pub const ANYCAST: &str = "198.19.255.0/24";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn out_dir() -> PathBuf {
    let d = root().join("target/soak");
    std::fs::create_dir_all(&d).expect("target/soak");
    d
}

/// The testbed's state dir: the one `testbed soak` passes, else target/soak/state.
pub fn state_dir() -> PathBuf {
    std::env::var_os("QUORATE_TESTBED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| out_dir().join("state"))
}

/// The namespace of `site` (TESTBED_NS_PREFIX, as the script reads it).
pub fn namespace(site: &str) -> String {
    let prefix = std::env::var("TESTBED_NS_PREFIX").unwrap_or_else(|_| "qt-".into());
    format!("{prefix}{site}")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn site_of(node: &str) -> &str {
    &node[..1]
}

/// Runs `testbed ARGS` on the soak's state dir; its stdout, or why it failed.
pub fn testbed(args: &[&str]) -> Result<String, String> {
    let o = Command::new(root().join("testbed/testbed"))
        .arg("--dir")
        .arg(state_dir())
        .args(args)
        .env("QUORATE_BIN", env!("CARGO_BIN_EXE_quorate"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("testbed/testbed does not run: {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    if o.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "testbed {} failed ({}): {}{}",
            args.join(" "),
            o.status,
            out.trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The wall-clock time (unix ms) a testbed command reports for what it did (`... at MS`).
pub fn reported_at(out: &str) -> Option<i64> {
    out.lines()
        .filter_map(|l| l.rsplit(" at ").next()?.trim().parse::<i64>().ok())
        .next()
}

fn address(node: &str) -> &'static str {
    NODES
        .iter()
        .find(|(n, _)| *n == node)
        .map(|(_, a)| *a)
        .expect("a testbed node")
}

/// curl inside `node`'s namespace against its REST API; (HTTP status, body).
fn curl(node: &str, extra: &[&str], path: &str, max_s: &str) -> Option<(u16, String)> {
    let o = Command::new("ip")
        .args(["netns", "exec", &namespace(site_of(node)), "curl", "-s"])
        .args(["-m", max_s, "-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("http://{}{path}", address(node)))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

/// GET `path` on `node`; the JSON body of a 2xx answer.
pub fn get(node: &str, path: &str) -> Option<Value> {
    match curl(node, &[], path, "1")? {
        (200..=299, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// One node's view of one site (GET /v1/sites).
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub opinion: String,
    pub verdict: String,
    pub epoch: u64,
}

pub fn views(node: &str) -> Option<BTreeMap<String, View>> {
    let v = get(node, "/v1/sites")?;
    let mut out = BTreeMap::new();
    for s in v["sites"].as_array()? {
        out.insert(
            s["id"].as_str()?.to_string(),
            View {
                opinion: s["opinion"].as_str().unwrap_or("?").to_string(),
                verdict: s["verdict"].as_str().unwrap_or("?").to_string(),
                epoch: s["epoch"].as_u64().unwrap_or(0),
            },
        );
    }
    Some(out)
}

/// The durable verdict history `node` holds (newest first).
pub fn verdict_history(node: &str) -> Option<Vec<Value>> {
    get(node, "/v1/verdicts?limit=1000")?["verdicts"]
        .as_array()
        .cloned()
}

/// The failover runs `node` leads or holds a copy of.
pub fn failovers(node: &str) -> Option<Vec<Value>> {
    get(node, "/v1/failovers")?["failovers"].as_array().cloned()
}

/// POST /v1/failbacks {"site": SITE} at `node` with the testbed's bearer token.
pub fn post_failback(node: &str, site: &str) -> Option<(u16, String)> {
    let token = std::fs::read_to_string(state_dir().join("api.token")).unwrap_or_default();
    let auth = format!("Authorization: Bearer {}", token.trim());
    let body = format!(r#"{{"site":"{site}"}}"#);
    curl(
        node,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ],
        "/v1/failbacks",
        "3",
    )
}

/// The site whose announcement the observer prefers: a, b or none.
pub fn route() -> String {
    testbed(&["route"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "none".into())
}

/// True when quorate told `site`'s router to announce the anycast prefix.
pub fn announced(site: &str) -> bool {
    std::fs::read_to_string(state_dir().join(format!("bird/{site}-anycast.conf")))
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(ANYCAST))
}

/// The pid of `node` if it runs (its pid file names a live process of this state dir).
pub fn node_pid(node: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state_dir().join(format!("pids/{node}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state is the field after the parenthesised command name; Z is a zombie.
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline).contains(&*state_dir().to_string_lossy());
    (state != "Z" && ours).then_some(pid)
}

/// Lines of a file in the state dir (missing: none).
pub fn state_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(state_dir().join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// An RFC 3339 time of the API as unix ms.
pub fn unix_ms(t: &Value) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(t.as_str()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}
