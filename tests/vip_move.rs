//! The session-preserving move, shown on network namespaces: a service at site a answers on
//! a virtual IP on an L2 segment that a and b share (a "stretched VLAN": a bridge with one
//! port per namespace), a client at a third port holds one TCP session and sends a line every
//! 20 ms. The move runs as a plan's exec steps (through the exec actuator, with the steps'
//! idempotency keys): `vip-remove.sh` at a, the service started at b (a new process: CRIU is
//! checked first, and on this kind of machine it is not usable), `vip-add.sh` at b with
//! gratuitous ARP. The test measures what the client sees: the VIP's outage (last answer from
//! a to first answer from b, the client reconnecting at once when its session breaks) and
//! whether the original session survived. Without CRIU it cannot: a's process and its TCP
//! state are gone, b's kernel answers the session's next segment with a reset.
//!
//! Needs root and `ip netns` (skipped otherwise, and under QUORATE_CHAOS_SEPARATE=1 as the
//! chaos tests), python3 (the service and the client) and iputils' arping. Namespaces are
//! TESTBED_NS_PREFIX (default qt-) + vip-a, vip-b, vip-cl (client) and vip-l2 (the bridge);
//! everything is removed at the end, also on failure. Writes target/chaos/vip-move.json.

use quorate::actuators::{build, ActuatorKind, StepContext, StepOutcome};
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

    /// The script of the "start the service at SITE" step: detached from the step (setsid:
    /// the exec actuator ends what a step leaves in its process group), ready once the pid
    /// file exists; a live service is success (the step's retry).
    fn start_script(&self) -> String {
        format!(
            r#"site=$1 ns=$2 pidfile={dir}/$1.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	echo "service already runs at $site as pid $(cat "$pidfile")"; exit 0
fi
setsid ip netns exec "$ns" python3 {dir}/server.py "$site" {PORT} "$pidfile" </dev/null >>{dir}/server-$site.log 2>&1 &
i=0
until [ -f "$pidfile" ]; do
	i=$((i + 1)); [ "$i" -le 500 ] || {{ echo "service at $site did not start" >&2; exit 1; }}
	sleep 0.01
done
echo "service started at $site as pid $(cat "$pidfile")""#,
            dir = self.dir.path().display()
        )
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

#[tokio::test]
async fn the_vip_moves_from_a_to_b_and_a_client_reconnects_to_the_restarted_service() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED the VIP move: {why}");
        return;
    }
    let lab = Lab::up();
    let state = lab.s("state");
    let env_in = |site: &str| {
        let mut env = Map::new();
        env.insert("RECIPE_STATE_DIR".into(), state.clone().into());
        env.insert("VIP_NETNS".into(), ns(site).into());
        env
    };
    let vip = format!("{VIP}/32");
    let mut result = serde_json::Map::new();

    // Normal operation: the service at a, the VIP on a's port.
    let start = lab.start_script();
    let started = step(
        &["sh", "-c", &start, "start", "a", &ns("a")],
        &Map::new(),
        "start-service-a",
        false,
    )
    .await;
    assert!(started.ok, "{started:?}");
    let out = step(
        &[&recipe("vip-add.sh"), &vip, "l2"],
        &env_in("a"),
        "vip-add-a",
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

    // The client: one session, a line every 20 ms.
    let stopfile = lab.s("client.stop");
    let client = Command::new("ip")
        .args(["netns", "exec", &ns("cl"), "python3"])
        .arg(lab.path("client.py"))
        .args([VIP, &PORT.to_string(), &stopfile])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client starts");
    std::thread::sleep(Duration::from_millis(1500));

    // The move, as the plan's steps: the VIP off a, the service started at b (a new process),
    // the VIP on b with gratuitous ARP. Each step's start and end, on the wall clock the client
    // uses too.
    let mut timeline = vec![];
    let t_move = now_ms();
    let plan: Vec<(&str, Vec<String>, Map<String, Value>)> = vec![
        (
            "vip-remove-a",
            vec![recipe("vip-remove.sh"), vip.clone(), "l2".into()],
            env_in("a"),
        ),
        (
            "start-service-b",
            vec![
                "sh".into(),
                "-c".into(),
                start.clone(),
                "start".into(),
                "b".into(),
                ns("b"),
            ],
            Map::new(),
        ),
        (
            "vip-add-b",
            vec![recipe("vip-add.sh"), vip.clone(), "l2".into()],
            env_in("b"),
        ),
    ];
    for (name, argv, env) in &plan {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let t = now_ms();
        let out = step(&argv, env, name, false).await;
        let line = format!(
            "+{} ms .. +{} ms  {name}: {}",
            t - t_move,
            now_ms() - t_move,
            out.output_tail.trim().replace('\n', " | ")
        );
        println!("{line}");
        timeline.push(line);
        assert!(out.ok, "{name}: {out:?}");
    }
    let t_moved = now_ms();
    // The old process at a: a lost site's is gone; here it still runs and no longer receives
    // anything for the VIP.
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::write(&stopfile, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut client = client;
    while client.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
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

    let answers = report["answers"].as_array().unwrap();
    let sessions = report["sessions"].as_array().unwrap();
    let last_a = answers
        .iter()
        .filter(|a| a[1] == "a")
        .map(|a| a[0].as_i64().unwrap())
        .max()
        .expect("answers from a before the move");
    let first_b = answers
        .iter()
        .filter(|a| a[1] == "b")
        .map(|a| a[0].as_i64().unwrap())
        .min()
        .expect("no answer from b after the move");
    let outage = first_b - last_a;
    let first = &sessions[0];
    let survived = first["answers"].get("b").is_some();
    println!(
        "VIP move: outage {outage} ms (last answer from a at +{} ms, first from b at +{} ms \
         after the move began; the steps took {} ms); {} session(s); the original session \
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
    result.insert("steps_ms".into(), json!(t_moved - t_move));
    result.insert("last_answer_from_a_ms".into(), json!(last_a - t_move));
    result.insert("first_answer_from_b_ms".into(), json!(first_b - t_move));
    result.insert("original_session_survived".into(), json!(survived));
    result.insert("sessions".into(), json!(sessions));
    result.insert("timeline".into(), json!(timeline));
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
    // The VIP is on b only.
    let addrs = |site: &str| {
        let o = Command::new("ip")
            .args(["-n", &ns(site), "-o", "-4", "addr", "show", "dev", "l2"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(!addrs("a").contains(VIP) && addrs("b").contains(VIP));

    // The failback: the compensations put the VIP back on a (each recipe's opposite).
    for (name, script, site) in [
        ("vip-add-b-undo", "vip-remove.sh", "b"),
        ("vip-remove-a-undo", "vip-add.sh", "a"),
    ] {
        let out = step(&[&recipe(script), &vip, "l2"], &env_in(site), name, false).await;
        assert!(out.ok, "{name}: {out:?}");
    }
    assert!(addrs("a").contains(VIP) && !addrs("b").contains(VIP));
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
