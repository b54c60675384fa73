//! Actuators against real programs: child processes for `exec`, a local HTTP stand-in for a
//! controller for `http`, and two BIRD routers in network namespaces for `bgp`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::Router;
use quorate::actuators::{build, validate, Actuator, ActuatorKind, StepContext, StepOutcome};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ctx(params: Value, dry_run: bool, timeout: Duration) -> StepContext {
    StepContext {
        site: "site-a".into(),
        epoch: 42,
        step: "promote".into(),
        idempotency_key: "site-a/42/promote".into(),
        dry_run,
        timeout,
        params,
    }
}

async fn run(kind: &str, params: Value, dry_run: bool, timeout: Duration) -> StepOutcome {
    let kind: ActuatorKind = kind.parse().expect("a known step kind");
    let actuator: Box<dyn Actuator> = build(kind, &params).expect("params are valid");
    assert_eq!(actuator.kind(), kind);
    actuator.run(&ctx(params, dry_run, timeout)).await
}

const SECS5: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- exec

#[tokio::test]
async fn exec_passes_the_step_identity_in_the_environment() {
    let out = run(
        "exec",
        json!({"argv": ["/bin/sh", "-c",
            "echo $QUORATE_SITE $QUORATE_EPOCH $QUORATE_STEP $QUORATE_IDEMPOTENCY_KEY $QUORATE_DRY_RUN $EXTRA; pwd"],
            "env": {"EXTRA": "x1"}, "cwd": "/tmp"}),
        false,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(
        out.output_tail,
        "site-a 42 promote site-a/42/promote 0 x1\n/tmp\n"
    );
}

#[tokio::test]
async fn exec_dry_run_runs_the_command_with_quorate_dry_run_set() {
    let out = run(
        "exec",
        json!({"shell": true, "command": "echo dry=$QUORATE_DRY_RUN"}),
        true,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.output_tail, "dry=1\n");
}

#[tokio::test]
async fn exec_dry_run_skip_does_not_run_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let params = json!({"argv": ["touch", marker.to_str().unwrap()], "dry_run": "skip"});
    let out = run("exec", params.clone(), true, SECS5).await;
    assert!(out.ok && out.detail.contains("skipped"), "{out:?}");
    assert!(!marker.exists());
    let out = run("exec", params, false, SECS5).await;
    assert!(out.ok, "{out:?}");
    assert!(marker.exists());
}

#[tokio::test]
async fn exec_non_zero_exit_is_a_failure_with_the_status_and_stderr() {
    let out = run(
        "exec",
        json!({"shell": true, "command": "echo volume busy >&2; exit 3"}),
        false,
        SECS5,
    )
    .await;
    assert!(!out.ok);
    assert!(out.detail.contains("exited 3"), "{out:?}");
    assert_eq!(out.output_tail, "volume busy\n");
}

#[tokio::test]
async fn exec_keeps_only_the_tail_of_a_long_output() {
    let out = run(
        "exec",
        json!({"shell": true, "command": "head -c 100000 /dev/zero | tr '\\0' x; echo; echo END"}),
        false,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(out.output_tail.len() <= 4096, "{}", out.output_tail.len());
    assert!(out.output_tail.len() > 4000);
    assert!(out.output_tail.ends_with("x\nEND\n"));
}

#[tokio::test]
async fn exec_that_cannot_start_reports_why() {
    let out = run("exec", json!({"argv": ["/nonexistent/prog"]}), false, SECS5).await;
    assert!(!out.ok && out.detail.contains("could not start"), "{out:?}");
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent has not collected it yet.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_process_group_including_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let command = format!(
        "sleep 60 & echo $! > {}; echo started; wait",
        pidfile.display()
    );
    let started = Instant::now();
    let out = run(
        "exec",
        json!({"shell": true, "command": command}),
        false,
        Duration::from_millis(700),
    )
    .await;
    assert!(!out.ok);
    assert!(out.detail.contains("timed out"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(out.output_tail, "started\n");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while alive(pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pid), "grandchild {pid} survived the timeout");
}

#[tokio::test]
async fn exec_returns_when_the_program_exits_even_if_a_background_child_holds_its_output() {
    let started = Instant::now();
    let out = run(
        "exec",
        json!({"shell": true, "command": "echo done; sleep 5 &"}),
        false,
        Duration::from_secs(10),
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(out.output_tail, "done\n");
}

// ---------------------------------------------------------------- http

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn controller() -> (String, Log) {
    let log: Log = Arc::default();
    fn record(log: &Log, method: &str, path: &str, headers: HeaderMap, body: String) {
        log.lock().unwrap().push(Seen {
            method: method.into(),
            path: path.into(),
            headers,
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        });
    }
    let app = Router::new()
        .route(
            "/ok",
            post(
                |State(log): State<Log>, h: HeaderMap, b: String| async move {
                    record(&log, "POST", "/ok", h, b);
                    (StatusCode::OK, "promoted")
                },
            ),
        )
        .route(
            "/accepted",
            put(
                |State(log): State<Log>, h: HeaderMap, b: String| async move {
                    record(&log, "PUT", "/accepted", h, b);
                    (StatusCode::ACCEPTED, "queued")
                },
            ),
        )
        .route(
            "/fail",
            post(
                |State(log): State<Log>, h: HeaderMap, b: String| async move {
                    record(&log, "POST", "/fail", h, b);
                    (StatusCode::INTERNAL_SERVER_ERROR, "volume still attached")
                },
            ),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

#[tokio::test]
async fn http_sends_idempotency_key_bearer_token_and_step_fields() {
    let (base, log) = controller().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let out = run(
        "http",
        json!({"url": format!("{base}/ok"), "token_file": token.to_str().unwrap(),
               "headers": {"X-Team": "storage"},
               "body": {"volume": "pg-main", "epoch": 1}}),
        false,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert!(out.detail.contains("200"), "{out:?}");
    assert_eq!(out.output_tail, "promoted");
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/ok"));
    assert_eq!(req.headers["idempotency-key"], "site-a/42/promote");
    assert_eq!(req.headers["authorization"], "Bearer s3cret");
    assert_eq!(req.headers["x-team"], "storage");
    assert!(req.headers.get("x-quorate-dry-run").is_none());
    assert_eq!(
        req.body,
        json!({"volume": "pg-main", "site": "site-a", "epoch": 42, "step": "promote",
               "idempotency_key": "site-a/42/promote", "dry_run": false})
    );
}

#[tokio::test]
async fn http_dry_run_is_flagged_in_body_and_header() {
    let (base, log) = controller().await;
    std::env::set_var("QUORATE_TEST_HTTP_TOKEN", "from-env");
    let out = run(
        "http",
        json!({"url": format!("{base}/ok"), "token_env": "QUORATE_TEST_HTTP_TOKEN"}),
        true,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
    let req = log.lock().unwrap()[0].clone();
    assert_eq!(req.headers["x-quorate-dry-run"], "1");
    assert_eq!(req.headers["authorization"], "Bearer from-env");
    assert_eq!(req.body["dry_run"], json!(true));
}

#[tokio::test]
async fn http_dry_run_skip_sends_nothing() {
    let (base, log) = controller().await;
    let out = run(
        "http",
        json!({"url": format!("{base}/ok"), "dry_run": "skip"}),
        true,
        SECS5,
    )
    .await;
    assert!(out.ok && out.detail.contains("skipped"), "{out:?}");
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn http_500_is_a_failure_with_status_and_body() {
    let (base, _log) = controller().await;
    let out = run("http", json!({"url": format!("{base}/fail")}), false, SECS5).await;
    assert!(!out.ok);
    assert!(out.detail.contains("500"), "{out:?}");
    assert_eq!(out.output_tail, "volume still attached");
}

#[tokio::test]
async fn http_success_codes_are_configurable() {
    let (base, log) = controller().await;
    let url = format!("{base}/accepted");
    let out = run(
        "http",
        json!({"url": url, "method": "PUT", "success": [200]}),
        false,
        SECS5,
    )
    .await;
    assert!(!out.ok && out.detail.contains("202"), "{out:?}");
    let out = run(
        "http",
        json!({"url": url, "method": "PUT", "success": [200, 202]}),
        false,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(log.lock().unwrap()[1].method, "PUT");
    // 500 counts as success only when listed; default is 2xx.
    let out = run(
        "http",
        json!({"url": format!("{base}/fail"), "success": [500]}),
        false,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
}

#[tokio::test]
async fn http_timeout_and_refused_connections_are_failures() {
    let (base, _log) = controller().await;
    let out = run(
        "http",
        json!({"url": format!("{base}/slow")}),
        false,
        Duration::from_millis(300),
    )
    .await;
    assert!(
        !out.ok && out.detail.contains("no response within"),
        "{out:?}"
    );
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        "http",
        json!({"url": format!("http://127.0.0.1:{port}/x")}),
        false,
        SECS5,
    )
    .await;
    assert!(!out.ok, "{out:?}");
}

#[tokio::test]
async fn http_missing_token_file_fails_before_sending() {
    let (base, log) = controller().await;
    let out = run(
        "http",
        json!({"url": format!("{base}/ok"), "token_file": "/nonexistent/token"}),
        false,
        SECS5,
    )
    .await;
    assert!(!out.ok && out.detail.contains("token_file"), "{out:?}");
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn vpn_with_controller_url_delegates_to_http() {
    let (base, log) = controller().await;
    let out = run(
        "vpn",
        json!({"interface": "wg-q", "action": "up", "controller_url": format!("{base}/ok")}),
        false,
        SECS5,
    )
    .await;
    assert!(out.ok, "{out:?}");
    let req = log.lock().unwrap()[0].clone();
    assert_eq!(req.body["interface"], "wg-q");
    assert_eq!(req.body["action"], "up");
    assert_eq!(req.headers["idempotency-key"], "site-a/42/promote");
}

// ---------------------------------------------------------------- validate

#[test]
fn validate_names_the_key_and_the_fix() {
    let cases = [
        ("exec", json!({}), "`argv` is missing"),
        (
            "exec",
            json!({"argv": "ls"}),
            "`argv` must be a list of strings",
        ),
        ("http", json!({"url": "not a url"}), "`url`"),
        (
            "http",
            json!({"url": "http://h/x", "body": [1]}),
            "`body` must be a table",
        ),
        (
            "bgp",
            json!({"action": "announce", "prefixes": ["198.19.255.0/24"]}),
            "`backend` is missing",
        ),
        (
            "bgp",
            json!({"action": "announce", "backend": "bird", "include_file": "/x"}),
            "`prefixes` is missing",
        ),
        (
            "bgp",
            json!({"action": "announce", "prefixes": ["198.19.255.0/24"], "backend": "exabgp"}),
            "`pipe` is missing",
        ),
        (
            "vpn",
            json!({"action": "up", "config": "/x"}),
            "`interface` is missing",
        ),
        (
            "vpn",
            json!({"interface": "wg0", "action": "sideways"}),
            "\"up\" or \"down\"",
        ),
        ("teleport", json!({}), "unknown step kind"),
    ];
    for (kind, params, want) in cases {
        let err = match kind.parse::<ActuatorKind>() {
            Ok(k) => validate(k, &params).unwrap_err(),
            Err(unknown) => unknown.to_string(),
        };
        assert!(
            err.contains(want),
            "{kind} {params}: {err:?} lacks {want:?}"
        );
    }
    assert!(validate(ActuatorKind::Exec, &json!({"argv": ["true"]})).is_ok());
    assert!(validate(ActuatorKind::Http, &json!({"url": "http://127.0.0.1:9/x"})).is_ok());
}

// ---------------------------------------------------------------- bgp with BIRD

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{} failed: {text}", args.join(" ")))
    }
}

fn ensure_bird() -> Result<(), String> {
    if Path::new("/usr/sbin/bird").exists() || sh(&["which", "bird"]).is_ok() {
        return Ok(());
    }
    sh(&["apt-get", "update", "-qq"])?;
    sh(&["apt-get", "install", "-y", "-qq", "bird2"]).map(|_| ())
}

/// Two namespaces joined by a veth, a BIRD in each; everything is removed on drop.
struct BirdPair {
    ns_router: String,
    ns_observer: String,
    dir: tempfile::TempDir,
}

impl BirdPair {
    fn router_sock(&self) -> PathBuf {
        self.dir.path().join("router.ctl")
    }
    fn observer_sock(&self) -> PathBuf {
        self.dir.path().join("observer.ctl")
    }
    fn include_file(&self) -> PathBuf {
        self.dir.path().join("anycast-routes.conf")
    }

    fn start() -> Result<BirdPair, String> {
        let tag = std::process::id() % 100_000;
        let pair = BirdPair {
            ns_router: format!("qact-r-{tag}"),
            ns_observer: format!("qact-o-{tag}"),
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
        };
        let (r, o) = (pair.ns_router.as_str(), pair.ns_observer.as_str());
        let (vr, vo) = (format!("qa{tag}r"), format!("qa{tag}o"));
        sh(&["ip", "netns", "add", r])?;
        sh(&["ip", "netns", "add", o])?;
        sh(&[
            "ip", "link", "add", &vr, "type", "veth", "peer", "name", &vo,
        ])?;
        sh(&["ip", "link", "set", &vr, "netns", r])?;
        sh(&["ip", "link", "set", &vo, "netns", o])?;
        for (ns, dev, addr) in [(r, &vr, "198.18.0.1/30"), (o, &vo, "198.18.0.2/30")] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        std::fs::write(pair.include_file(), "").map_err(|e| e.to_string())?;
        let timers =
            "hold time 3; connect retry time 1; connect delay time 1; error wait time 1, 5;";
        let router_conf = format!(
            "router id 198.18.0.1;\nprotocol device {{}}\n\
             protocol static anycast {{ ipv4;\ninclude \"{}\";\n}}\n\
             protocol bgp to_observer {{ local 198.18.0.1 as 65001; neighbor 198.18.0.2 as 65002; {timers}\n\
             ipv4 {{ import none; export where proto = \"anycast\"; }}; }}\n",
            pair.include_file().display()
        );
        let observer_conf = format!(
            "router id 198.18.0.2;\nprotocol device {{}}\n\
             protocol bgp to_router {{ local 198.18.0.2 as 65002; neighbor 198.18.0.1 as 65001; {timers}\n\
             ipv4 {{ import all; export none; }}; }}\n"
        );
        for (ns, name, conf, sock) in [
            (r, "router", router_conf, pair.router_sock()),
            (o, "observer", observer_conf, pair.observer_sock()),
        ] {
            let conf_path = pair.dir.path().join(format!("{name}.conf"));
            let pid_path = pair.dir.path().join(format!("{name}.pid"));
            std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "bird",
                "-c",
                conf_path.to_str().unwrap(),
                "-s",
                sock.to_str().unwrap(),
                "-P",
                pid_path.to_str().unwrap(),
            ])?;
        }
        Ok(pair)
    }

    fn observer(&self, args: &[&str]) -> String {
        let sock = self.observer_sock();
        // birdc exits non-zero for "Network not found"; only its output matters here.
        let out = Command::new("birdc")
            .arg("-s")
            .arg(sock)
            .args(args)
            .output()
            .expect("birdc runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, args: &[&str], pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.observer(args);
            if pred(&out) {
                return out;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}: {out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BirdPair {
    fn drop(&mut self) {
        for name in ["router", "observer"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join(format!("{name}.pid"))) {
                let _ = sh(&["kill", pid.trim()]);
            }
        }
        // Deleting a namespace deletes the veth in it, and with it the peer end.
        let _ = sh(&["ip", "netns", "del", &self.ns_router]);
        let _ = sh(&["ip", "netns", "del", &self.ns_observer]);
    }
}

const ANYCAST: &str = "198.19.255.0/24";

fn route_present(out: &str) -> bool {
    out.contains(ANYCAST) && out.contains("AS65001")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgp_bird_announce_is_seen_by_the_peer_and_withdraw_removes_it() {
    if !is_root() {
        eprintln!("skipped: needs root to create network namespaces");
        return;
    }
    if let Err(e) = ensure_bird() {
        eprintln!("skipped: BIRD 2 is not installed and could not be installed: {e}");
        return;
    }
    let pair = BirdPair::start().expect("testbed starts");
    pair.wait_for(
        "the BGP session",
        &["show", "protocols", "to_router"],
        |o| o.contains("Established"),
    );
    let params = |action: &str| {
        json!({"action": action, "prefixes": [ANYCAST], "backend": "bird",
               "include_file": pair.include_file().to_str().unwrap(),
               "socket": pair.router_sock().to_str().unwrap(),
               "netns": pair.ns_router})
    };
    let show = ["show", "route", ANYCAST];

    // A dry run checks BIRD answers and changes nothing.
    let out = run("bgp", params("announce"), true, SECS5).await;
    assert!(out.ok && out.detail.contains("dry run"), "{out:?}");
    assert_eq!(std::fs::read_to_string(pair.include_file()).unwrap(), "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!route_present(&pair.observer(&show)));

    let out = run("bgp", params("announce"), false, SECS5).await;
    assert!(out.ok, "{out:?}");
    pair.wait_for("the announcement", &show, route_present);

    // Announcing again leaves one route line and the route in place.
    let out = run("bgp", params("announce"), false, SECS5).await;
    assert!(out.ok && out.detail.contains("already"), "{out:?}");
    let file = std::fs::read_to_string(pair.include_file()).unwrap();
    assert_eq!(file.matches("route ").count(), 1, "{file}");
    assert!(route_present(&pair.observer(&show)));

    // A dry-run withdraw leaves the route announced.
    let out = run("bgp", params("withdraw"), true, SECS5).await;
    assert!(out.ok, "{out:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(route_present(&pair.observer(&show)));

    let out = run("bgp", params("withdraw"), false, SECS5).await;
    assert!(out.ok, "{out:?}");
    pair.wait_for("the withdrawal", &show, |o| !o.contains(ANYCAST));
    // Withdrawing what is not announced succeeds.
    let out = run("bgp", params("withdraw"), false, SECS5).await;
    assert!(out.ok, "{out:?}");
}

#[tokio::test]
async fn bgp_bird_unreachable_router_is_a_failure_and_the_route_file_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let include = dir.path().join("routes.conf");
    std::fs::write(&include, "").unwrap();
    let params = json!({"action": "announce", "prefixes": [ANYCAST], "backend": "bird",
                        "include_file": include.to_str().unwrap(),
                        "socket": dir.path().join("no-bird.ctl").to_str().unwrap()});
    if sh(&["which", "birdc"]).is_err() {
        eprintln!("skipped: birdc is not installed");
        return;
    }
    let out = run("bgp", params.clone(), false, SECS5).await;
    assert!(!out.ok && out.detail.contains("restored"), "{out:?}");
    assert!(!std::fs::read_to_string(&include)
        .unwrap()
        .contains("route "));
    let out = run("bgp", params, true, SECS5).await;
    assert!(!out.ok && out.detail.contains("does not answer"), "{out:?}");
}

// ---------------------------------------------------------------- vpn with wireguard-go

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        // Removing the namespace removes the tun device; wireguard-go then exits.
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

#[tokio::test]
async fn vpn_up_and_down_with_wireguard_go_in_a_namespace() {
    if !is_root() {
        eprintln!("skipped: needs root to create network namespaces");
        return;
    }
    if sh(&["which", "wireguard-go"]).is_err() || sh(&["which", "wg"]).is_err() {
        eprintln!("skipped: wireguard-go or wg is not installed (apt-get install wireguard-go wireguard-tools)");
        return;
    }
    let tag = std::process::id() % 100_000;
    let ns = Netns(format!("qact-wg-{tag}"));
    sh(&["ip", "netns", "add", &ns.0]).unwrap();
    let ifname = format!("qwg{tag}");
    let dir = tempfile::tempdir().unwrap();
    let key = sh(&["wg", "genkey"]).unwrap();
    let peer = sh(&["wg", "genkey"]).unwrap();
    let peer_pub = {
        use std::io::Write;
        let mut child = Command::new("wg")
            .arg("pubkey")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(peer.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let conf = dir.path().join("wg.conf");
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51999\n\n[Peer]\nPublicKey = {}\nAllowedIPs = 198.18.9.2/32\nEndpoint = 198.18.8.2:51999\n",
            key.trim(),
            peer_pub.trim()
        ),
    )
    .unwrap();
    let params = |action: &str| {
        json!({"interface": ifname, "action": action, "config": conf.to_str().unwrap(),
               "addresses": ["198.18.9.1/24"], "netns": ns.0})
    };
    let link = || sh(&["ip", "-n", &ns.0, "address", "show", "dev", &ifname]);

    let out = run("vpn", params("up"), true, SECS5).await;
    assert!(out.ok && out.detail.contains("dry run"), "{out:?}");
    assert!(link().is_err(), "a dry run created the interface");

    let out = run("vpn", params("up"), false, Duration::from_secs(10)).await;
    assert!(out.ok, "{out:?}");
    let shown = link().unwrap();
    assert!(
        shown.contains("198.18.9.1/24") && shown.contains("UP"),
        "{shown}"
    );
    let wg = sh(&["ip", "netns", "exec", &ns.0, "wg", "show", &ifname]).unwrap();
    assert!(wg.contains("51999") && wg.contains(peer_pub.trim()), "{wg}");

    let out = run("vpn", params("up"), false, Duration::from_secs(10)).await;
    assert!(out.ok && out.detail.contains("existed"), "{out:?}");

    let out = run("vpn", params("down"), false, SECS5).await;
    assert!(out.ok, "{out:?}");
    assert!(link().is_err(), "interface still there after down");
    let out = run("vpn", params("down"), false, SECS5).await;
    assert!(out.ok && out.detail.contains("already down"), "{out:?}");
}

// ---------------------------------------------------------------- bgp with GoBGP

struct Gobgpd {
    child: std::process::Child,
    _ns: Netns,
}

impl Drop for Gobgpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn bgp_gobgp_announce_is_idempotent_and_withdraw_removes_the_route() {
    if !is_root() {
        eprintln!("skipped: needs root to create network namespaces");
        return;
    }
    if sh(&["which", "gobgpd"]).is_err() || sh(&["which", "gobgp"]).is_err() {
        eprintln!("skipped: gobgpd is not installed (apt-get install gobgpd)");
        return;
    }
    let tag = std::process::id() % 100_000;
    let ns = Netns(format!("qact-gb-{tag}"));
    sh(&["ip", "netns", "add", &ns.0]).unwrap();
    sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gobgpd.toml");
    std::fs::write(
        &conf,
        "[global.config]\n  as = 65001\n  router-id = \"198.18.0.1\"\n  port = -1\n",
    )
    .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0, "gobgpd", "-f"])
        .arg(&conf)
        .args([
            "-t",
            "toml",
            "--api-hosts=127.0.0.1:50051",
            "--pprof-disable",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let nsname = ns.0.clone();
    let _daemon = Gobgpd { child, _ns: ns };
    let rib =
        || sh(&["ip", "netns", "exec", &nsname, "gobgp", "global", "rib"]).unwrap_or_else(|e| e);
    let until = Instant::now() + Duration::from_secs(10);
    while sh(&["ip", "netns", "exec", &nsname, "gobgp", "global"]).is_err() {
        assert!(Instant::now() < until, "gobgpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let params = |action: &str| {
        json!({"action": action, "prefixes": [ANYCAST], "backend": "gobgp",
               "api": "127.0.0.1:50051", "netns": nsname})
    };
    let out = run("bgp", params("announce"), true, SECS5).await;
    assert!(out.ok && out.detail.contains("dry run"), "{out:?}");
    assert!(!rib().contains(ANYCAST));
    for _ in 0..2 {
        let out = run("bgp", params("announce"), false, SECS5).await;
        assert!(out.ok, "{out:?}");
    }
    let shown = rib();
    assert_eq!(shown.matches(ANYCAST).count(), 1, "{shown}");
    let out = run("bgp", params("withdraw"), false, SECS5).await;
    assert!(out.ok, "{out:?}");
    assert!(!rib().contains(ANYCAST));
    let out = run("bgp", params("withdraw"), false, SECS5).await;
    assert!(out.ok, "withdrawing an absent route succeeds: {out:?}");
}
