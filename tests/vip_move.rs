//! The session-preserving move, shown on network namespaces: a service at site a answers on
//! a virtual IP on an L2 segment that a and b share (a "stretched VLAN": a bridge with one
//! port per namespace), a client at a third port holds one TCP session and sends a line every
//! 20 ms. A quorate fleet on loopback (the fast three-site fleet) carries a plan on the watch
//! of a, and an operator's failover of a (`POST /v1/failovers`, a planned move) runs it:
//! `vip-remove.sh` at a, the service started at b (a new process: CRIU is checked first, and
//! on this kind of machine it is not usable), `vip-add.sh` at b with gratuitous ARP. Then
//! `POST /v1/failbacks` runs the compensations: the VIP leaves b, the service at b stops, the
//! VIP returns to a. The test measures what the client sees: the VIP's outage (last answer
//! from a to first answer from b, the client reconnecting at once when its session breaks)
//! and whether the original session survived. Without CRIU it cannot: a's process and its
//! TCP state stay at a, and b's kernel answers the session's next segment with a reset.
//!
//! Needs root and `ip netns` (skipped otherwise, and under QUORATE_CHAOS_SEPARATE=1 as the
//! chaos tests), python3 (the service and the client) and iputils' arping. Namespaces are
//! TESTBED_NS_PREFIX (default qt-) + vip-a, vip-b, vip-cl (client) and vip-l2 (the bridge);
//! everything is removed at the end, also on failure. Writes target/chaos/vip-move.json.

mod common;

use common::*;
use quorate::actuators::{build, ActuatorKind, StepContext, StepOutcome};
use quorate::localfleet::LocalFleet;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VIP: &str = "198.18.60.10";
const PORT: u16 = 7700;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn recipe(name: &str) -> String {
    root()
        .join("config/recipes")
        .join(name)
        .display()
        .to_string()
}

fn skip_reason() -> Option<String> {
    if std::env::var("QUORATE_CHAOS_SEPARATE").as_deref() == Ok("1") {
        return Some("QUORATE_CHAOS_SEPARATE=1: runs with the chaos tests".into());
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces need root)".into());
    }
    for (program, why) in [
        ("python3", "python3 (the service and the client)"),
        ("arping", "arping (iputils-arping)"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{why} is not installed"));
        }
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip netns` is not available".into()),
    }
}

fn ns(name: &str) -> String {
    format!(
        "{}vip-{name}",
        std::env::var("TESTBED_NS_PREFIX").unwrap_or_else(|_| "qt-".into())
    )
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The service: answers each line with "SITE N LINE" (N counts the lines of this session);
/// listens on every address, so it can start before the VIP arrives; writes its pid file
/// once it listens.
const SERVER: &str = r#"
import os, socket, sys, threading
site, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
def serve(c):
    n = 0
    with c, c.makefile("rb") as f:
        for line in f:
            n += 1
            c.sendall(("%s %d %s\n" % (site, n, line.decode().strip())).encode())
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// The client: one TCP session to VIP:PORT, a line every 20 ms, answers read as they come.
/// When the session breaks (reset, end of stream) it records why and reconnects at once.
/// Runs until STOPFILE exists, then prints a JSON report: every session (when it opened,
/// ended, why, answers per site) and every answer's time and site.
const CLIENT: &str = r#"
import json, os, select, socket, sys, time
vip, port, stopfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
now = lambda: int(time.time() * 1000)
sessions, answers = [], []
def connect():
    while True:
        try:
            c = socket.create_connection((vip, port), timeout=0.2)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.setblocking(False)
            sessions.append({"opened_ms": now(), "ended_ms": None, "why": None, "answers": {}})
            return c
        except OSError as e:
            time.sleep(0.005)
c, buf, seq, next_send = connect(), b"", 0, time.time()
while not os.path.exists(stopfile):
    try:
        if time.time() >= next_send:
            seq += 1
            c.send(b"%d\n" % seq)
            next_send += 0.02
        r, _, _ = select.select([c], [], [], max(0.0, min(0.005, next_send - time.time())))
        if r:
            data = c.recv(65536)
            if not data:
                raise ConnectionError("end of stream")
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                site = line.split()[0].decode()
                s = sessions[-1]
                s["answers"][site] = s["answers"].get(site, 0) + 1
                answers.append([now(), site, len(sessions) - 1])
    except BlockingIOError:
        pass
    except (OSError, ConnectionError) as e:
        sessions[-1]["ended_ms"], sessions[-1]["why"] = now(), str(e)
        c.close()
        c, buf, next_send = connect(), b"", time.time()
print(json.dumps({"sessions": sessions, "answers": answers}))
"#;

/// Everything the test creates, removed when dropped (also during a panic).
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn namespaces() -> [String; 4] {
        [ns("a"), ns("b"), ns("cl"), ns("l2")]
    }

    /// a, b and the client each have a port "l2" on the bridge of the l2 namespace:
    /// a 198.18.60.1, b 198.18.60.2, client 198.18.60.100 (/24); the VIP lives on a's port.
    fn up() -> Lab {
        Lab::teardown();
        let lab = Lab {
            dir: tempfile::tempdir().unwrap(),
        };
        for n in Lab::namespaces() {
            sh(&["ip", "netns", "add", &n]);
            sh(&["ip", "-n", &n, "link", "set", "lo", "up"]);
        }
        let l2 = ns("l2");
        sh(&["ip", "-n", &l2, "link", "add", "vlan", "type", "bridge"]);
        sh(&["ip", "-n", &l2, "link", "set", "vlan", "up"]);
        for (site, addr) in [("a", "1"), ("b", "2"), ("cl", "100")] {
            let n = ns(site);
            let port = format!("p-{site}");
            sh(&[
                "ip", "link", "add", "l2", "netns", &n, "type", "veth", "peer", "name", &port,
                "netns", &l2,
            ]);
            sh(&[
                "ip", "-n", &l2, "link", "set", &port, "master", "vlan", "up",
            ]);
            sh(&[
                "ip",
                "-n",
                &n,
                "addr",
                "add",
                &format!("198.18.60.{addr}/24"),
                "dev",
                "l2",
            ]);
            sh(&["ip", "-n", &n, "link", "set", "l2", "up"]);
        }
        for f in ["server.py", "client.py"] {
            let text = if f == "server.py" { SERVER } else { CLIENT };
            std::fs::write(lab.path(f), text).unwrap();
        }
        std::fs::create_dir(lab.path("state")).unwrap();
        lab
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// Kills every process in the namespaces, then deletes them (their veths and the bridge go
    /// with them).
    fn teardown() {
        for n in Lab::namespaces() {
            let o = Command::new("ip").args(["netns", "pids", &n]).output();
            if let Ok(o) = o {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for n in Lab::namespaces() {
            let _ = Command::new("ip")
                .args(["netns", "del", &n])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The service's start and stop, for the plan's exec steps: `svc.sh start|stop SITE NS`.
    /// The service is detached from the step (setsid: the exec actuator ends what a step
    /// leaves in its process group) and ready once its pid file exists; a live service is
    /// success (the step's retry), and so is stopping one that does not run.
    fn write_service_script(&self) -> String {
        let text = format!(
            r#"verb=$1 site=$2 ns=$3 pidfile={dir}/$2.pid
running() {{ [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }}
if [ "$verb" = stop ]; then
	if running; then kill "$(cat "$pidfile")"; echo "service at $site stopped"; else echo "no service at $site"; fi
	rm -f "$pidfile"; exit 0
fi
if running; then echo "service already runs at $site as pid $(cat "$pidfile")"; exit 0; fi
rm -f "$pidfile"
setsid ip netns exec "$ns" python3 {dir}/server.py "$site" {PORT} "$pidfile" </dev/null >>{dir}/server-$site.log 2>&1 &
i=0
until [ -f "$pidfile" ]; do
	i=$((i + 1)); [ "$i" -le 500 ] || {{ echo "service at $site did not start" >&2; exit 1; }}
	sleep 0.01
done
echo "service started at $site as pid $(cat "$pidfile")"
"#,
            dir = self.dir.path().display()
        );
        std::fs::write(self.path("svc.sh"), text).unwrap();
        self.s("svc.sh")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        Lab::teardown();
    }
}

/// Runs one step of the plan through the exec actuator, as the leader of a's failover at
/// epoch 7 would.
async fn step(argv: &[&str], env: &Map<String, Value>, name: &str, dry_run: bool) -> StepOutcome {
    let params = json!({"argv": argv, "env": env});
    let actuator = build(ActuatorKind::Exec, &params).expect("valid exec params");
    let ctx = StepContext {
        site: "a".into(),
        epoch: 7,
        step: name.into(),
        idempotency_key: StepContext::key_for(&"a".into(), 7, name),
        dry_run,
        timeout: Duration::from_secs(20),
        params,
    };
    actuator.run(&ctx).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const TOKEN: &str = "vip-move-token";

/// The fast fleet on 127.88.0.0/16 with the VIP plan on the watch of a.
fn fleet(lab: &Lab, svc: &str) -> String {
    let state = lab.s("state");
    let vip_step = |name: &str, script: &str, site: &str, extra: &str| {
        format!(
            "name = \"{name}\"\nkind = \"exec\"\ntimeout_s = 10\n{extra}\
             argv = [\"{}\", \"{VIP}/32\", \"l2\"]\n\
             env = {{ RECIPE_STATE_DIR = \"{state}\", VIP_NETNS = \"{}\" }}\n",
            recipe(script),
            ns(site)
        )
    };
    let svc_step = |name: &str, verb: &str, extra: &str| {
        format!(
            "name = \"{name}\"\nkind = \"exec\"\ntimeout_s = 10\n{extra}\
             argv = [\"/bin/sh\", \"{svc}\", \"{verb}\", \"b\", \"{}\"]\n",
            ns("b")
        )
    };
    let watch_a = format!(
        "takeover_delay_s = 0.5\nself_fence_after_s = 0.2\n\n\
         [[watch.pipeline.step]]\n{}\n[watch.pipeline.step.compensation]\n{}\n\
         [[watch.pipeline.step]]\n{}\n[watch.pipeline.step.compensation]\n{}\n\
         [[watch.pipeline.step]]\n{}\n[watch.pipeline.step.compensation]\n{}",
        vip_step(
            "vip-off-a",
            "vip-remove.sh",
            "a",
            "on_failure = \"continue\"\n"
        ),
        vip_step("vip-back-on-a", "vip-add.sh", "a", ""),
        svc_step("start-service-b", "start", "on_failure = \"compensate\"\n"),
        svc_step("stop-service-b", "stop", ""),
        vip_step(
            "vip-on-b",
            "vip-add.sh",
            "b",
            "on_failure = \"compensate\"\n"
        ),
        vip_step("vip-off-b", "vip-remove.sh", "b", ""),
    );
    std::fs::write(lab.path("api.token"), format!("{TOKEN}\n")).unwrap();
    let api = format!("[api]\ntoken_file = '{}'\n", lab.s("api.token"));
    fleet_watching_a(88, "", &watch_a, &api)
}

async fn post(addr: std::net::SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = client
        .post(format!("http://{addr}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the node answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// The run `id` at `addr` once it is no longer running.
async fn finished_run(rest: &Rest, addr: std::net::SocketAddr, id: &str) -> Value {
    eventually(&format!("run {id} to finish"), || async move {
        let run = rest.try_get(addr, &format!("/v1/failovers/{id}")).await?;
        match run["state"].as_str() {
            Some("running" | "waiting") | None => Err(run.to_string()),
            Some(_) => Ok(run),
        }
    })
    .await
}

/// The IPv4 addresses on the l2 port of `site`'s namespace.
fn addrs(site: &str) -> String {
    let o = Command::new("ip")
        .args(["-n", &ns(site), "-o", "-4", "addr", "show", "dev", "l2"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A one-line account of each step of a run: name, state, output.
fn steps_of(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{}: {} in {:.0} ms ({})",
                s["name"].as_str().unwrap_or("?"),
                if s["ok"] == true { "ok" } else { "failed" },
                s["duration_ms"].as_f64().unwrap_or(f64::NAN),
                s["detail"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plan_moves_the_vip_from_a_to_b_and_a_client_reconnects_to_the_restarted_service() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED the VIP move: {why}");
        return;
    }
    let lab = Lab::up();
    let svc = lab.write_service_script();
    let mut result = serde_json::Map::new();

    // Normal operation: the service at a, the VIP on a's port (as the plan's own steps would
    // put them, through the exec actuator).
    let env_a = {
        let mut env = Map::new();
        env.insert("RECIPE_STATE_DIR".into(), lab.s("state").into());
        env.insert("VIP_NETNS".into(), ns("a").into());
        env
    };
    let out = step(
        &["/bin/sh", &svc, "start", "a", &ns("a")],
        &Map::new(),
        "setup-a",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");
    let vip = format!("{VIP}/32");
    let out = step(
        &[&recipe("vip-add.sh"), &vip, "l2"],
        &env_a,
        "setup-vip-a",
        false,
    )
    .await;
    assert!(out.ok, "{out:?}");

    // Is CRIU usable here? criu-dump.sh's dry run checks `criu --version` and `criu check`.
    let criu = step(
        &[
            &recipe("criu-dump.sh"),
            "--leave-running",
            &lab.s("a.pid"),
            &lab.s("checkpoint"),
            "--",
            "--tcp-established",
        ],
        &Map::new(),
        "checkpoint-a",
        true,
    )
    .await;
    let criu_why = criu.output_tail.trim().to_string();
    println!("CRIU: {} ({criu_why})", criu.detail);
    result.insert(
        "criu".into(),
        json!({"usable": criu.ok, "detail": criu.detail, "output": criu_why}),
    );

    let f = LocalFleet::start(&fleet(&lab, &svc), None, true)
        .await
        .expect("the fleet starts");
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    // The client: one session, a line every 20 ms.
    let stopfile = lab.s("client.stop");
    let mut client = Command::new("ip")
        .args(["netns", "exec", &ns("cl"), "python3"])
        .arg(lab.path("client.py"))
        .args([VIP, &PORT.to_string(), &stopfile])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client starts");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The move: an operator's failover of a, a planned move with both sites up.
    let b1 = api(&f, "b1");
    let t_move = now_ms();
    let (code, started) = post(
        b1,
        "/v1/failovers",
        json!({"site": "a", "reason": "planned move of the service to b"}),
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let run = finished_run(&rest, b1, &id).await;
    let t_moved = now_ms();
    let steps = steps_of(&run);
    for l in &steps {
        println!("{id} {l}");
    }
    assert_eq!(run["state"], "succeeded", "{run}");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    std::fs::write(&stopfile, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.try_wait().unwrap().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if client.try_wait().unwrap().is_none() {
        let _ = client.kill();
    }
    let out = client.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client report: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The VIP is on b only.
    assert!(
        !addrs("a").contains(VIP) && addrs("b").contains(VIP),
        "a: {} b: {}",
        addrs("a"),
        addrs("b")
    );

    let answers = report["answers"].as_array().unwrap();
    let sessions = report["sessions"].as_array().unwrap();
    let times = |site: &str| {
        answers
            .iter()
            .filter(|a| a[1] == site)
            .map(|a| a[0].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let last_a = *times("a").iter().max().expect("answers from a");
    let first_b = *times("b")
        .iter()
        .min()
        .expect("no answer from b after the move");
    let outage = first_b - last_a;
    let first = &sessions[0];
    let survived = first["answers"].get("b").is_some();
    println!(
        "VIP move: outage {outage} ms (last answer from a at +{} ms, first from b at +{} ms \
         after POST /v1/failovers; the run took {} ms); {} session(s); the original session \
         {} ({})",
        last_a - t_move,
        first_b - t_move,
        t_moved - t_move,
        sessions.len(),
        if survived {
            "survived"
        } else {
            "did not survive"
        },
        first["why"].as_str().unwrap_or("still open")
    );
    result.insert("outage_ms".into(), json!(outage));
    result.insert("run_ms".into(), json!(t_moved - t_move));
    result.insert("last_answer_from_a_ms".into(), json!(last_a - t_move));
    result.insert("first_answer_from_b_ms".into(), json!(first_b - t_move));
    result.insert("original_session_survived".into(), json!(survived));
    result.insert("sessions".into(), json!(sessions));
    result.insert("steps".into(), json!(steps));

    // The failback: POST /v1/failbacks runs the plan's compensations, newest step first (the
    // VIP off b, the service at b stopped, the VIP back on a). A planned move with a up leaves
    // no verdict of a; the node's own Pinger seeing a up lets the failback go.
    let (code, started) = post(b1, "/v1/failbacks", json!({"site": "a"})).await;
    assert_eq!(
        code, 202,
        "POST /v1/failbacks after a planned move: {started}"
    );
    assert_eq!(started["trigger"], "failback", "{started}");
    let back_id = started["id"].as_str().unwrap().to_string();
    let back = finished_run(&rest, b1, &back_id).await;
    let back_steps = steps_of(&back);
    for l in &back_steps {
        println!("failback {back_id} {l}");
    }
    assert_eq!(back["state"], "succeeded", "{back}");
    let names: Vec<&str> = back["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["vip-off-b", "stop-service-b", "vip-back-on-a"],
        "{back}"
    );
    result.insert("failback_steps".into(), json!(back_steps));
    assert!(
        addrs("a").contains(VIP) && !addrs("b").contains(VIP),
        "a: {} b: {}",
        addrs("a"),
        addrs("b")
    );
    assert!(!lab.path("b.pid").exists(), "the service at b still runs");
    f.shutdown().await;

    let dir = root().join("target/chaos");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("vip-move.json"),
        serde_json::to_string_pretty(&Value::Object(result)).unwrap(),
    );

    // Without CRIU a's process and its TCP state do not reach b: the session ends (b's
    // kernel resets it) and the client's next session is answered by b.
    if !criu.ok {
        assert!(
            !survived,
            "the original session was answered by b: {sessions:?}"
        );
        assert!(
            first["why"].is_string(),
            "the original session did not end: {first}"
        );
    }
    assert!(
        sessions
            .iter()
            .skip(1)
            .any(|s| s["answers"].get("b").is_some()),
        "no later session was answered by b: {sessions:?}"
    );
    assert!(
        outage < 5_000,
        "the VIP was out {outage} ms (generous bound: 5 s)"
    );
    assert!(
        last_a < first_b,
        "answers from a and b overlap: a at {last_a}, b at {first_b}"
    );

    drop(lab);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout).to_string();
    for n in Lab::namespaces() {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str())),
            "namespace {n} left"
        );
    }
}
