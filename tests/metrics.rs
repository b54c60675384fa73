//! `/metrics` of a live loopback fleet judged by Prometheus' own tools: `promtool check
//! metrics` has nothing to say about a scrape before and after a failed failover; the per-site
//! gauges say what /v1/sites and /v1/failovers say; docs/metrics.md lists exactly the metric
//! families the nodes export. The shipped alert rules (contrib/prometheus) pass `promtool
//! check rules` and their unit tests, and the Grafana dashboard (contrib/grafana) is valid
//! JSON; both query only documented metrics.
//!
//! Without promtool (Debian package `prometheus`) the promtool checks are skipped with a
//! message when not root; as root (CI) its absence fails, since tests/run-all.sh installs it.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const TOKEN: &str = "metrics-token-0c4e";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether promtool can run; false (said on stderr) when it is missing and this is not root.
fn have_promtool() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !is_root(),
            "promtool is missing: apt-get install -y --no-install-recommends prometheus \
             (tests/run-all.sh installs it when run as root)"
        );
        eprintln!(
            "skipped the promtool checks: promtool is missing (Debian package prometheus, \
             installed by tests/run-all.sh as root)"
        );
    }
    found
}

/// Runs promtool with `args` and `stdin`; panics with its output unless it exits 0 with
/// nothing to complain about.
fn promtool(args: &[&str], stdin: &str, what: &str) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} on {what} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

/// `promtool check metrics` on one scrape: exit 0 and no lint problem.
fn check_scrape(text: &str, what: &str) {
    let said = promtool(&["check", "metrics"], text, what);
    assert!(
        said.trim().is_empty(),
        "promtool check metrics on {what}:\n{said}"
    );
}

/// The metric families of a scrape, by their `# TYPE` lines.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// The metric names docs/metrics.md lists: the first code span of each table row.
fn documented() -> BTreeSet<String> {
    let page = std::fs::read_to_string(repo("docs/metrics.md")).expect("docs/metrics.md");
    page.lines()
        .filter_map(|l| l.strip_prefix("| `quorate_"))
        .map(|rest| {
            let name = rest.split(['`', '{']).next().unwrap_or_default();
            format!("quorate_{name}")
        })
        .collect()
}

/// Every `quorate_*` name `text` mentions, histogram series folded into their family.
fn names_used(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("quorate_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[len..];
    }
    names
}

/// Unix seconds of an RFC 3339 time in a JSON answer.
fn unix_s(v: &Value) -> i64 {
    let t = humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .expect("RFC 3339");
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The fast fleet with a one-step pipeline on site a that fails (so its run aborts), an
/// isolation step for a's own nodes, and an operator token.
fn fleet(octet: u8, token: &Path) -> String {
    let watch_a = r#"takeover_delay_s = 1
self_fence_after_s = 0.5

[[watch.isolation]]
name = "withdraw-a"
kind = "exec"
timeout_s = 5
argv = ["/bin/true"]

[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
retries = 0
argv = ["/bin/sh", "-c", "exit 3"]
"#;
    let tail = format!("\n[api]\ntoken_file = '{}'\n", token.display());
    fleet_watching_a(octet, "status_interval_ms = 100", watch_a, &tail)
}

/// Waits until `node`'s /metrics shows `series` with a value `ok` accepts; returns the scrape.
async fn wait_series(
    rest: &Rest,
    node: std::net::SocketAddr,
    series: &str,
    ok: impl Fn(f64) -> bool,
) -> String {
    let ok = &ok;
    eventually(&format!("{series} on {node}"), || async move {
        let text = rest.try_metrics(node).await?;
        match metric(&text, series) {
            Some(v) if ok(v) => Ok(text),
            v => Err(format!("{v:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_metrics_pass_promtool_and_show_what_the_rest_api_shows() {
    init_tracing();
    let promtool_here = have_promtool();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut f = LocalFleet::start(&fleet(83, &token), None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    let (a1, b1) = (api(&f, "a1"), api(&f, "b1"));
    wait_opinion(&rest, &voters, "a", "up").await;

    // Before any verdict: the whole fleet heard, site a up in b1's eyes.
    let before = wait_series(&rest, b1, "quorate_peers_reachable", |v| v == 7.0).await;
    for series in [
        r#"quorate_site_verdict{site="a",verdict="none"}"#,
        r#"quorate_site_opinion{site="a",opinion="up"}"#,
        r#"quorate_site_failover_state{site="a",state="none"}"#,
        r#"quorate_site_automatic_failover{site="a"}"#,
        r#"quorate_peer_reachable{peer="a1",site="a"}"#,
        r#"quorate_indicator_reachable{site="a",indicator="a3"}"#,
    ] {
        assert_eq!(metric(&before, series), Some(1.0), "{series} in:\n{before}");
    }
    for series in [
        r#"quorate_site_epoch{site="a"}"#,
        r#"quorate_site_hold_down_until_timestamp_seconds{site="a"}"#,
        "quorate_fleet_mismatched_peers",
        "quorate_voting_disabled",
        "quorate_tilt",
    ] {
        assert_eq!(metric(&before, series), Some(0.0), "{series} in:\n{before}");
    }
    let rtt = metric(
        &before,
        r#"quorate_indicator_rtt_seconds{site="a",indicator="a1"}"#,
    )
    .expect("b1 probes a1");
    assert!(rtt > 0.0 && rtt < 1.0, "{rtt}");
    let node_info = format!(
        r#"quorate_node_info{{node="b1",site="b",roles="indicator,pinger,voter",fleet_hash="{}"}}"#,
        f.fleet.hash
    );
    assert_eq!(metric(&before, &node_info), Some(1.0), "{before}");
    let cert = metric(
        &before,
        r#"quorate_certificate_expiry_seconds{certificate="node"}"#,
    )
    .expect("the node certificate's expiry");
    assert!(cert > 86_400.0, "{cert}");
    let a1_text = rest.metrics(a1).await;
    assert_eq!(metric(&a1_text, "quorate_isolated"), Some(0.0), "{a1_text}");

    // A maintenance window on site b, set at one of its voters: b1's gauge holds the end its
    // /v1/sites shows.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{}/v1/sites/b/maintenance", api(&f, "c1")))
        .bearer_auth(TOKEN)
        .json(&json!({ "duration_s": 600 }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("maintenance answers");
    let code = resp.status().as_u16();
    assert_eq!(code, 200, "{}", resp.text().await.unwrap_or_default());
    let until = eventually("b1 to learn the window on b", || {
        let rest = &rest;
        async move {
            let shown = rest.try_site(b1, "b").await?;
            match shown["maintenance_until"].is_string() {
                true => Ok(unix_s(&shown["maintenance_until"])),
                false => Err(shown.to_string()),
            }
        }
    })
    .await;
    wait_series(
        &rest,
        b1,
        r#"quorate_site_maintenance_until_timestamp_seconds{site="b"}"#,
        |v| v == until as f64,
    )
    .await;

    // Site a lost: DOWN at an epoch, hold-down running, the failing step aborts the run.
    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    let leader = api(&f, &down.leader);
    let run = eventually("the leader's run of a to end", || {
        let rest = &rest;
        async move {
            let runs = rest.try_get(leader, "/v1/failovers").await?;
            let run = runs["failovers"]
                .as_array()
                .and_then(|l| l.iter().find(|r| r["id"] == format!("a-{}", down.epoch)))
                .cloned()
                .ok_or(runs.to_string())?;
            match run["state"].as_str() {
                Some("waiting" | "running") | None => Err(run.to_string()),
                Some(_) => Ok(run),
            }
        }
    })
    .await;
    let state = run["state"].as_str().unwrap();
    assert!(
        ["aborted", "compensated", "precheck_failed"].contains(&state),
        "a step that exits 3 fails the run: {run}"
    );
    let after = wait_series(
        &rest,
        leader,
        &format!(r#"quorate_site_failover_state{{site="a",state="{state}"}}"#),
        |v| v == 1.0,
    )
    .await;
    let shown = rest.site(leader, "a").await;
    assert_eq!(
        metric(&after, r#"quorate_site_verdict{site="a",verdict="down"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, r#"quorate_site_epoch{site="a"}"#),
        Some(down.epoch as f64)
    );
    let hold = metric(
        &after,
        r#"quorate_site_hold_down_until_timestamp_seconds{site="a"}"#,
    )
    .expect("hold-down");
    // Two snapshots a few ms apart may round the same instant to neighbouring seconds.
    assert!(
        (hold - unix_s(&shown["hold_down_until"]) as f64).abs() <= 1.0,
        "{hold} vs {shown}"
    );
    assert_eq!(
        metric(&after, r#"quorate_verdicts_total{site="a",verdict="down"}"#),
        Some(1.0),
        "{after}"
    );
    let a_peers = (1..=3)
        .map(|i| format!(r#"quorate_peer_reachable{{peer="a{i}",site="a"}}"#))
        .collect::<Vec<_>>();
    let after = eventually("a's nodes to be unreachable", || {
        let rest = &rest;
        let a_peers = &a_peers;
        async move {
            let text = rest.try_metrics(leader).await?;
            match a_peers.iter().all(|s| metric(&text, s) == Some(0.0)) {
                true => Ok(text),
                false => Err(text),
            }
        }
    })
    .await;

    if promtool_here {
        check_scrape(&before, "b1 before the blackout");
        check_scrape(&a1_text, "a1 before the blackout");
        check_scrape(&after, "the leader after a failed failover");
    }

    // docs/metrics.md lists exactly what the nodes export.
    let exported: BTreeSet<String> = [&before, &a1_text, &after]
        .iter()
        .flat_map(|t| families(t))
        .collect();
    let docs = documented();
    assert_eq!(
        exported.difference(&docs).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "exported but not in docs/metrics.md"
    );
    assert_eq!(
        docs.difference(&exported).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in docs/metrics.md but not exported"
    );
    f.shutdown().await;
}

#[test]
fn shipped_alert_rules_pass_promtool_and_their_unit_tests() {
    let rules = repo("contrib/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&rules).expect("contrib/prometheus/alerts.yml");
    let unknown: Vec<_> = names_used(&text)
        .difference(&documented())
        .cloned()
        .collect();
    assert!(unknown.is_empty(), "alerts.yml queries {unknown:?}");
    for alert in [
        "QuorateSiteDown",
        "QuorateFailoverFailed",
        "QuorateFleetFilesDiffer",
        "QuorateCertificateExpiresSoon",
        "QuoratePeerUnreachable",
        "QuorateMeshDroppingEvents",
        "QuorateNodeDown",
    ] {
        assert!(
            text.contains(&format!("alert: {alert}\n")),
            "{alert} in alerts.yml"
        );
    }
    if !have_promtool() {
        return;
    }
    let dir = repo("contrib/prometheus");
    let run = |args: &[&str]| {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {}:\n{said}", args.join(" "));
        said
    };
    let said = run(&["check", "rules", "alerts.yml"]);
    assert!(said.contains("SUCCESS: 7 rules found"), "{said}");
    let said = run(&["test", "rules", "alerts_test.yml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn the_grafana_dashboard_is_json_that_queries_documented_metrics() {
    let path = repo("contrib/grafana/quorate.json");
    let text = std::fs::read_to_string(&path).expect("contrib/grafana/quorate.json");
    let board: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    assert!(board["title"].is_string(), "a title");
    assert!(board["uid"].is_string(), "a uid, for links to it");
    let panels = board["panels"].as_array().expect("panels");
    let mut queried = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{title}"));
        assert!(!targets.is_empty(), "{title} queries something");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{title}: {t}"));
            queried.extend(names_used(expr));
            exprs.push(expr.to_string());
        }
    }
    let unknown: Vec<_> = queried.difference(&documented()).cloned().collect();
    assert!(unknown.is_empty(), "the dashboard queries {unknown:?}");
    for wanted in [
        "quorate_site_verdict",
        "quorate_site_opinion",
        "quorate_site_epoch",
        "quorate_site_failover_state",
        "quorate_indicator_rtt_seconds",
        "quorate_probe_misses",
        "quorate_vote_rounds",
        "quorate_mesh_messages_sent",
    ] {
        assert!(
            queried.iter().any(|q| q.starts_with(wanted)),
            "the dashboard shows {wanted}"
        );
    }
    if !have_promtool() {
        return;
    }
    // Each query, with Grafana's variables filled in, is valid PromQL: promtool parses it
    // as a recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*");
        rules += &format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            json!(e)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    let said = promtool(
        &["check", "rules", file.to_str().unwrap()],
        "",
        "the dashboard's queries",
    );
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{said}"
    );
}
