//! The anycast prefix moves from site a to site b through the GoBGP and ExaBGP backends of the
//! `bgp` actuator, against real routers in network namespaces:
//!
//! ```text
//!   site a (BIRD 2, AS 65001)          site b (GoBGP or ExaBGP, AS 65002)
//!   198.18.0.1/30 ──┐                ┌── 198.18.0.5/30
//!                   └─ observer ─────┘
//!        198.18.0.2/30 (BIRD 2, AS 65000) 198.18.0.6/30
//! ```
//!
//! Site a announces 198.19.255.0/24 from the start (a static route in an include file the
//! BIRD backend owns). The actuator announces the prefix at b (twice: one route), withdraws
//! it at a with the BIRD backend, and the observer's best route moves to b's next hop without
//! a gap; then the actuator withdraws it at b and the observer loses the route.
//!
//! Needs root and `bird2`, `gobgpd`, `exabgp` (tests/run-all.sh installs them). Without them a
//! test prints `skipped: ...` and passes, unless CI=true, where it fails naming what is
//! missing. Namespaces are `qbb-PID-N{a,b,o}` and the temp dir `qbb-PID-N-*`; a guard removes
//! every namespace, process and file of a test, also when it fails, and the next run removes
//! what a killed test process left.

use quorate::actuators::{build, Actuator, ActuatorKind, StepContext, StepOutcome};
use serde_json::{json, Value};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ANYCAST: &str = "198.19.255.0/24";
const A_ADDR: &str = "198.18.0.1";
const OBS_TO_A: &str = "198.18.0.2";
const B_ADDR: &str = "198.18.0.5";
const OBS_TO_B: &str = "198.18.0.6";
/// Bound of every wait: far above what a healthy run needs (a few seconds).
const WAIT: Duration = Duration::from_secs(30);
const SAMPLE: Duration = Duration::from_millis(50);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- prerequisites

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
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

fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

fn is_root() -> bool {
    sh(&["id", "-u"]).is_ok_and(|o| o.trim() == "0")
}

fn have(program: &str) -> bool {
    sh(&["which", program]).is_ok()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SiteB {
    Gobgp,
    Exabgp,
}

/// Why this test cannot run here, naming the package that is missing.
fn missing(b: SiteB) -> Option<String> {
    if !is_root() {
        return Some("needs root to create network namespaces".into());
    }
    let mut needs = vec![("ip", "iproute2"), ("bird", "bird2"), ("birdc", "bird2")];
    match b {
        SiteB::Gobgp => needs.extend([("gobgpd", "gobgpd"), ("gobgp", "gobgpd")]),
        SiteB::Exabgp => needs.extend([("exabgp", "exabgp"), ("mkfifo", "coreutils")]),
    }
    let absent: Vec<&str> = needs
        .iter()
        .filter(|(program, _)| !have(program))
        .map(|(_, package)| *package)
        .collect();
    if !absent.is_empty() {
        let mut packages = absent.clone();
        packages.dedup();
        return Some(format!(
            "{} {} not installed (apt-get install {})",
            packages.join(", "),
            if packages.len() == 1 { "is" } else { "are" },
            packages.join(" ")
        ));
    }
    if b == SiteB::Exabgp {
        let version = sh(&["exabgp", "--version"]).unwrap_or_else(|e| e);
        if !version.contains("ExaBGP : 4.") {
            return Some(format!(
                "exabgp 4 is needed (apt-get install exabgp), found: {}",
                version.lines().next().unwrap_or("")
            ));
        }
    }
    None
}

/// True when the test can run; otherwise says why and, with CI=true, fails.
fn can_run(b: SiteB) -> bool {
    match missing(b) {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and this test cannot run: {why}")
        }
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

// ---------------------------------------------------------------- the three routers

struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Namespaces, daemons and files of one test; all removed on drop, also after a panic.
struct Lab {
    ns_a: String,
    ns_b: String,
    ns_obs: String,
    created: Vec<String>,
    daemons: Vec<Daemon>,
    dir: tempfile::TempDir,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

const TIMERS: &str =
    "hold time 9; connect retry time 1; connect delay time 1; error wait time 1, 5;";

impl Lab {
    fn include_file(&self) -> PathBuf {
        self.dir.path().join("a-anycast.conf")
    }
    fn a_sock(&self) -> PathBuf {
        self.dir.path().join("a.ctl")
    }
    fn obs_sock(&self) -> PathBuf {
        self.dir.path().join("observer.ctl")
    }
    fn fifo(&self) -> PathBuf {
        self.dir.path().join("exabgp.fifo")
    }

    fn start(b: SiteB) -> Lab {
        sweep_stale();
        let tag = format!(
            "qbb-{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            ns_a: format!("{tag}a"),
            ns_b: format!("{tag}b"),
            ns_obs: format!("{tag}o"),
            created: Vec::new(),
            daemons: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix(&format!("{tag}-"))
                .tempdir()
                .expect("temp dir"),
        };
        let (a, bb, o) = (lab.ns_a.clone(), lab.ns_b.clone(), lab.ns_obs.clone());
        for ns in [&a, &bb, &o] {
            must(&["ip", "netns", "add", ns]);
            lab.created.push(ns.clone());
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Each veth is created inside its namespaces: no name in the root namespace.
        for (site, site_if, obs_if) in [(&a, "to-obs", "to-a"), (&bb, "to-obs", "to-b")] {
            must(&[
                "ip", "-n", site, "link", "add", site_if, "type", "veth", "peer", "name", obs_if,
                "netns", &o,
            ]);
        }
        for (ns, dev, addr) in [
            (&a, "to-obs", format!("{A_ADDR}/30")),
            (&o, "to-a", format!("{OBS_TO_A}/30")),
            (&bb, "to-obs", format!("{B_ADDR}/30")),
            (&o, "to-b", format!("{OBS_TO_B}/30")),
        ] {
            must(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }

        // The observer first, so the sites find it listening.
        let obs_conf = format!(
            "router id {OBS_TO_A};\nprotocol device {{}}\n\
             protocol bgp site_a {{ local {OBS_TO_A} as 65000; neighbor {A_ADDR} as 65001; {TIMERS}\n\
             ipv4 {{ import all; export none; }}; }}\n\
             protocol bgp site_b {{ local {OBS_TO_B} as 65000; neighbor {B_ADDR} as 65002; {TIMERS}\n\
             ipv4 {{ import all; export none; }}; }}\n"
        );
        lab.start_bird("observer", &o, &obs_conf, lab.obs_sock());

        // Site a announces the prefix from the start, in the format the BIRD backend owns.
        std::fs::write(lab.include_file(), format!("route {ANYCAST} blackhole;\n"))
            .expect("include file");
        // BIRD takes `include` only on a line of its own.
        let a_conf = format!(
            "router id {A_ADDR};\nprotocol device {{}}\n\
             protocol static anycast {{ ipv4;\ninclude \"{}\";\n}}\n\
             protocol bgp observer {{ local {A_ADDR} as 65001; neighbor {OBS_TO_A} as 65000; {TIMERS}\n\
             ipv4 {{ import none; export where proto = \"anycast\"; }}; }}\n",
            lab.include_file().display()
        );
        lab.start_bird("site-a", &a, &a_conf, lab.a_sock());

        match b {
            SiteB::Gobgp => {
                let conf = lab.dir.path().join("gobgpd.toml");
                std::fs::write(
                    &conf,
                    format!(
                        "[global.config]\n  as = 65002\n  router-id = \"{B_ADDR}\"\n  \
                         local-address-list = [\"{B_ADDR}\"]\n\
                         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{OBS_TO_B}\"\n    \
                         peer-as = 65000\n  [neighbors.timers.config]\n    connect-retry = 1\n    \
                         hold-time = 9\n    keepalive-interval = 3\n  [[neighbors.afi-safis]]\n    \
                         [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n"
                    ),
                )
                .expect("gobgpd config");
                let conf = conf.to_str().unwrap().to_string();
                lab.spawn(
                    "gobgpd",
                    &bb,
                    &[
                        "gobgpd",
                        "-f",
                        &conf,
                        "-t",
                        "toml",
                        "--api-hosts=127.0.0.1:50051",
                        "--pprof-disable",
                    ],
                    &[],
                );
            }
            SiteB::Exabgp => {
                let fifo = lab.fifo().to_str().unwrap().to_string();
                must(&["mkfifo", &fifo]);
                let conf = lab.dir.path().join("exabgp.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "process quorate {{\n    run /bin/sh -c \"exec cat <> {fifo}\";\n    \
                         encoder text;\n}}\n\
                         neighbor {OBS_TO_B} {{\n    router-id {B_ADDR};\n    \
                         local-address {B_ADDR};\n    local-as 65002;\n    peer-as 65000;\n    \
                         hold-time 9;\n    api {{\n        processes [ quorate ];\n    }}\n}}\n"
                    ),
                )
                .expect("exabgp config");
                let conf = conf.to_str().unwrap().to_string();
                // ExaBGP run as root drops to its own user unless told not to; that user
                // could not open the FIFO. No CLI pipes: nothing here uses them.
                lab.spawn(
                    "exabgp",
                    &bb,
                    &["exabgp", &conf],
                    &[
                        ("exabgp_daemon_user", "root"),
                        ("exabgp_daemon_drop", "false"),
                        ("exabgp_daemon_daemonize", "false"),
                        ("exabgp_api_cli", "false"),
                    ],
                );
            }
        }
        lab
    }

    fn start_bird(&mut self, name: &'static str, ns: &str, conf: &str, sock: PathBuf) {
        let path = self.dir.path().join(format!("{name}.conf"));
        std::fs::write(&path, conf).expect("bird config");
        let (path, sock) = (path.to_str().unwrap(), sock.to_str().unwrap());
        self.spawn(name, ns, &["bird", "-f", "-c", path, "-s", sock], &[]);
    }

    fn spawn(&mut self, name: &'static str, ns: &str, argv: &[&str], env: &[(&str, &str)]) {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        // `ip netns exec` execs the program: the child is the daemon itself.
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.daemons.push(Daemon { name, child, log });
    }

    fn birdc(&self, args: &[&str]) -> String {
        // birdc exits non-zero for "Network not found"; only its output matters here.
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.obs_sock())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("birdc runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The observer's routes for the anycast prefix, and what BIRD printed.
    fn observed(&self) -> (Vec<Route>, String) {
        let text = self.birdc(&["show", "route", ANYCAST, "all"]);
        (parse_routes(&text), text)
    }

    /// The paths for the anycast prefix in GoBGP's own table at site b.
    fn gobgp_rib(&self) -> String {
        sh(&[
            "ip", "netns", "exec", &self.ns_b, "gobgp", "global", "rib", "-a", "ipv4",
        ])
        .unwrap_or_else(|e| e)
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for d in &self.daemons {
            let text = std::fs::read_to_string(&d.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&format!("\n--- {} log (last lines)\n", d.name));
            for l in tail.iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Samples `probe` every 50 ms until it returns Ok; fails at `WAIT` or when a daemon dies.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&Lab) -> Result<T, String>,
    ) -> (T, Duration) {
        let started = Instant::now();
        loop {
            let seen = match probe(self) {
                Ok(v) => return (v, started.elapsed()),
                Err(seen) => seen,
            };
            let dead = self
                .daemons
                .iter_mut()
                .find_map(|d| match d.child.try_wait() {
                    Ok(Some(status)) => Some((d.name, status)),
                    _ => None,
                });
            if let Some((name, status)) = dead {
                panic!(
                    "{name} exited ({status}) while waiting for {what}; last seen:\n{seen}{}",
                    self.logs()
                );
            }
            if started.elapsed() > WAIT {
                panic!(
                    "no {what} within {WAIT:?}; last seen:\n{seen}{}",
                    self.logs()
                );
            }
            tokio::time::sleep(SAMPLE).await;
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &self.daemons {
            let _ = sh(&["kill", "-TERM", &d.child.id().to_string()]);
        }
        let until = Instant::now() + Duration::from_secs(3);
        for d in &mut self.daemons {
            while matches!(d.child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        // What the daemons started (ExaBGP's `cat`) and anything else left in the namespaces.
        for ns in &self.created {
            remove_namespace(ns);
        }
        // The temp dir (configs, sockets, FIFO, state file, logs) goes with `self.dir`.
    }
}

/// Kills what runs in a namespace of this file's tests, then deletes the namespace (and
/// with it the veth ends in it, and their peers).
fn remove_namespace(ns: &str) {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = sh(&["ip", "netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() || Instant::now() > until {
            break;
        }
        for pid in pids {
            let _ = sh(&["kill", "-KILL", pid]);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sh(&["ip", "netns", "del", ns]);
}

/// True for `qbb-PID-...` when process PID (a test process of this file) is gone.
fn left_by_dead_process(name: &str) -> bool {
    name.strip_prefix("qbb-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// Namespaces and temp dirs left by a test process of this file that was killed before its
/// guards ran.
fn sweep_stale() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let list = sh(&["ip", "netns", "list"]).unwrap_or_default();
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if left_by_dead_process(name) {
                remove_namespace(name);
            }
        }
        let tmp = std::env::temp_dir();
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            if left_by_dead_process(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

// ---------------------------------------------------------------- the observer's view

#[derive(Debug, Clone, PartialEq)]
struct Route {
    /// The observer's BGP protocol that learned it: `site_a` or `site_b`.
    from: String,
    best: bool,
    next_hop: String,
}

/// Routes in `birdc show route P all` output: a line `P unicast [PROTO TIME] * (100) ...`
/// (`*` marks the best route; further routes start with blanks) followed by `\tvia NH on IF`.
fn parse_routes(text: &str) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(i) = line.find("unicast [") else {
            continue;
        };
        let rest = &line[i + "unicast [".len()..];
        let next_hop = lines
            .peek()
            .and_then(|l| l.trim().strip_prefix("via "))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("")
            .to_string();
        routes.push(Route {
            from: rest.split_whitespace().next().unwrap_or("").to_string(),
            best: rest.contains("] * ("),
            next_hop,
        });
    }
    routes
}

fn best(routes: &[Route]) -> Option<&Route> {
    routes.iter().find(|r| r.best)
}

fn best_is(routes: &[Route], from: &str, next_hop: &str) -> bool {
    best(routes).is_some_and(|r| r.from == from && r.next_hop == next_hop)
}

fn sessions_up(lab: &Lab) -> Result<(), String> {
    let out = lab.birdc(&["show", "protocols"]);
    let up = |p: &str| {
        out.lines()
            .any(|l| l.starts_with(p) && l.contains("Established"))
    };
    if up("site_a") && up("site_b") {
        Ok(())
    } else {
        Err(out)
    }
}

// ---------------------------------------------------------------- the move

async fn step(params: &Value, what: &str) -> StepOutcome {
    let actuator: Box<dyn Actuator> = build(ActuatorKind::Bgp, params).expect("params are valid");
    let ctx = StepContext {
        site: "a".into(),
        epoch: 7,
        step: what.into(),
        idempotency_key: format!("a/7/step/0/{what}"),
        dry_run: false,
        timeout: STEP_TIMEOUT,
        params: params.clone(),
    };
    let out = actuator.run(&ctx).await;
    assert!(out.ok, "{what}: {out:?}");
    out
}

async fn prefix_moves_from_a_to_b(b: SiteB) {
    let mut lab = Lab::start(b);
    let (_, took) = lab
        .wait_for("BGP sessions to both sites", sessions_up)
        .await;
    eprintln!("sessions established in {took:?}");
    let (_, took) = lab
        .wait_for("best route via site a", |lab| {
            let (routes, text) = lab.observed();
            if routes.len() == 1 && best_is(&routes, "site_a", A_ADDR) {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await;
    eprintln!("best route via a after {took:?}");

    let at_b = |action: &str| match b {
        SiteB::Gobgp => json!({"action": action, "prefixes": [ANYCAST], "backend": "gobgp",
                               "api": "127.0.0.1:50051", "netns": lab.ns_b}),
        SiteB::Exabgp => json!({"action": action, "prefixes": [ANYCAST], "backend": "exabgp",
                                "pipe": lab.fifo().to_str().unwrap()}),
    };
    let announce_b = at_b("announce");
    let withdraw_b = at_b("withdraw");
    let withdraw_a = json!({"action": "withdraw", "prefixes": [ANYCAST], "backend": "bird",
                            "include_file": lab.include_file().to_str().unwrap(),
                            "socket": lab.a_sock().to_str().unwrap(),
                            "netns": lab.ns_a});

    // Announce at b twice: one announcement.
    step(&announce_b, "announce-b").await;
    let again = step(&announce_b, "announce-b").await;
    match b {
        SiteB::Gobgp => {
            let rib = lab.gobgp_rib();
            assert_eq!(rib.matches(ANYCAST).count(), 1, "GoBGP table: {rib}");
        }
        SiteB::Exabgp => assert!(
            again.detail.contains("already announced") && again.output_tail.is_empty(),
            "the second announce wrote to ExaBGP again: {again:?}"
        ),
    }
    // Both sites announce; a stays best (its origin is IGP, GoBGP's is incomplete; with
    // ExaBGP, a's lower router id decides).
    lab.wait_for("site b's route at the observer", |lab| {
        let (routes, text) = lab.observed();
        let from_b = routes.iter().filter(|r| r.from == "site_b").count();
        if routes.len() == 2 && from_b == 1 && best_is(&routes, "site_a", A_ADDR) {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;

    // Withdraw at a: the best route moves to b, with a route to the prefix at every sample.
    let withdraw_started = Instant::now();
    step(&withdraw_a, "withdraw-a").await;
    let withdraw_took = withdraw_started.elapsed();
    let mut gaps = Vec::new();
    let (_, took) = lab
        .wait_for("best route via site b", |lab| {
            let (routes, text) = lab.observed();
            if best(&routes).is_none() {
                gaps.push(text.clone());
            }
            if routes.len() == 1 && best_is(&routes, "site_b", B_ADDR) {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await;
    assert!(
        gaps.is_empty(),
        "the prefix had no route at the observer during the move: {gaps:?}"
    );
    eprintln!(
        "{b:?}: the withdraw at a took {withdraw_took:?}; the best route was via b \
         {took:?} after it returned"
    );
    let file = std::fs::read_to_string(lab.include_file()).unwrap();
    assert!(
        !file.lines().any(|l| l.starts_with("route ")),
        "include file still routes: {file}"
    );

    // Announcing at b once more changes nothing: one route, via b, for a second of samples.
    step(&announce_b, "announce-b").await;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let (routes, text) = lab.observed();
        assert!(
            routes.len() == 1 && best_is(&routes, "site_b", B_ADDR),
            "after a repeated announce at b: {text}"
        );
        tokio::time::sleep(SAMPLE).await;
    }
    if b == SiteB::Gobgp {
        let rib = lab.gobgp_rib();
        assert_eq!(rib.matches(ANYCAST).count(), 1, "GoBGP table: {rib}");
    }

    // Withdraw at b: the observer has no route left; withdrawing again succeeds.
    step(&withdraw_b, "withdraw-b").await;
    let (_, took) = lab
        .wait_for("the route to disappear at the observer", |lab| {
            let (routes, text) = lab.observed();
            if routes.is_empty() && text.contains("Network not found") {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await;
    eprintln!("{b:?}: route gone {took:?} after the withdraw at b");
    step(&withdraw_b, "withdraw-b").await;
    if b == SiteB::Gobgp {
        let rib = lab.gobgp_rib();
        assert!(!rib.contains(ANYCAST), "GoBGP table: {rib}");
    }
}

#[tokio::test]
async fn gobgp_announce_at_b_and_bird_withdraw_at_a_move_the_observers_best_route_to_b() {
    if can_run(SiteB::Gobgp) {
        prefix_moves_from_a_to_b(SiteB::Gobgp).await;
    }
}

#[tokio::test]
async fn exabgp_announce_at_b_and_bird_withdraw_at_a_move_the_observers_best_route_to_b() {
    if can_run(SiteB::Exabgp) {
        prefix_moves_from_a_to_b(SiteB::Exabgp).await;
    }
}
