//! Soak: the namespace testbed (`testbed/testbed`) under steady chaos for N minutes, then a
//! verdict on what happened. Run it with `testbed/testbed soak --minutes N` ("Soak" in
//! docs/chaos-testing.md).
//!
//! - 5 % random loss on every WAN path (nftables `numgen random` at the hub), all the time;
//! - every 30 s a random running node (any role, any site) is SIGKILLed and started 3 s later;
//! - every 5 minutes (first at 1 min) site a blacks out until its failover has run (at least
//!   15 s), then comes back: heal, loss again, start a, POST /v1/failbacks, reset-routes,
//!   wait for normal operation and the fleet's hold-down, so the next blackout is a fresh
//!   incident.
//!
//! At the end: false verdicts (DOWN outside a blackout window, see report::Blackout::window),
//! missed verdicts, every run's steps executed once (run journals over REST, and the notify
//! stand-in's side effects), RSS and open descriptors of every node process from its own
//! start to the end. target/soak/report.json and target/soak/summary.txt; the test fails if
//! any check fails. SIGINT/SIGTERM stop the soak early: it reports "interrupted", tears the
//! testbed down and fails.

mod fleet;
mod procs;
mod report;

use fleet::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use report::{Blackout, Kill};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KILL_EVERY: Duration = Duration::from_secs(30);
const FIRST_KILL: Duration = Duration::from_secs(15);
const KILLED_FOR: Duration = Duration::from_secs(3);
/// No kill in the last half minute: every process alive at the end then has a start figure
/// (procs::WARM_UP_MS after its start).
const NO_KILL_BEFORE_END: Duration = Duration::from_secs(30);
const BLACKOUT_EVERY: Duration = Duration::from_secs(300);
const FIRST_BLACKOUT: Duration = Duration::from_secs(60);
/// A blackout starts only if this much of the soak is left (its cycle takes under a minute).
const BLACKOUT_NEEDS: Duration = Duration::from_secs(90);
const DARK_AT_LEAST: Duration = Duration::from_secs(15);
const DARK_AT_MOST: Duration = Duration::from_secs(45);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const LOSS_PCT: &str = "5";
const TICK: Duration = Duration::from_millis(250);
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

static STOP: AtomicBool = AtomicBool::new(false);

/// SIGINT and SIGTERM set STOP (the soak then reports and tears down) instead of killing the
/// harness with the testbed still up.
fn catch_signals() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for signals");
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        STOP.store(true, Ordering::SeqCst);
    });
}

/// Where the blackout cycle is.
#[derive(Debug)]
enum Phase {
    Normal,
    /// a is blacked out; waiting for its DOWN verdict and failover (blackout index).
    Dark(usize),
    /// a restored; waiting until its electorate sees it up.
    Returning(usize),
    /// The failback run of that epoch is running.
    FailingBack(usize, u64),
    /// Routes reset at the instant; waiting for normal operation.
    Settling(usize, Option<Instant>),
}

struct Soak {
    t0: Instant,
    t0_ms: i64,
    duration: Duration,
    rng: StdRng,
    timeline: Vec<String>,
    blackouts: Vec<Blackout>,
    kills: Vec<Kill>,
    pending_restart: Option<(String, Instant)>,
    phase: Phase,
    phase_since: Instant,
    next_kill: Instant,
    next_blackout: Instant,
    procs: procs::Procs,
    run_copies: Vec<Value>,
}

impl Soak {
    fn log(&mut self, msg: impl AsRef<str>) {
        let line = format!(
            "[{:8.1} s] {}",
            self.t0.elapsed().as_secs_f64(),
            msg.as_ref()
        );
        println!("{line}");
        self.timeline.push(line);
    }

    fn enter(&mut self, p: Phase) {
        self.log(format!("phase {p:?}"));
        self.phase = p;
        self.phase_since = Instant::now();
    }

    fn running(&self) -> Vec<&'static str> {
        NODES
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| node_pid(n).is_some())
            .collect()
    }

    fn set_loss(&mut self) -> Result<(), String> {
        for (x, y) in WAN_PAIRS {
            testbed(&["loss", x, y, LOSS_PCT])?;
        }
        Ok(())
    }

    /// The killer: every 30 s a random running node dies (SIGKILL) and starts again 3 s later.
    fn kill_tick(&mut self, now: Instant) -> Result<(), String> {
        if let Some((node, at)) = self.pending_restart.clone() {
            if now >= at {
                self.pending_restart = None;
                let dark = matches!(self.phase, Phase::Dark(_)) && site_of(&node) == "a";
                if dark {
                    self.log(format!(
                        "{node} not restarted: a is blacked out (the restore starts it)"
                    ));
                    if let Some(k) = self.kills.last_mut() {
                        k.note = Some("restarted by the restore of a".into());
                    }
                } else {
                    self.procs.expect(&node, "killer");
                    let out = testbed(&["start", &node])?;
                    if let Some(k) = self.kills.last_mut() {
                        k.restarted_ms = reported_at(&out).or(Some(now_ms()));
                    }
                    self.log(format!("killer: started {node} again"));
                }
            }
        }
        let ends_at = self.t0 + self.duration;
        if now >= self.next_kill && now + NO_KILL_BEFORE_END < ends_at {
            self.next_kill += KILL_EVERY;
            let running = self.running();
            if running.is_empty() {
                return Err("no node runs".into());
            }
            let node = running[self.rng.random_range(0..running.len())].to_string();
            let out = testbed(&["kill", &node])?;
            let at = reported_at(&out).unwrap_or_else(now_ms);
            self.kills.push(Kill {
                node: node.clone(),
                killed_ms: at,
                restarted_ms: None,
                note: None,
            });
            self.log(format!("killer: SIGKILL {node}"));
            self.pending_restart = Some((node, now + KILLED_FOR));
        }
        Ok(())
    }

    fn electorate_views(&self) -> Vec<(&'static str, Option<View>)> {
        ELECTORATE_OF_A
            .iter()
            .map(|n| (*n, views(n).and_then(|v| v.get("a").cloned())))
            .collect()
    }

    fn runs_of_a(&mut self, nodes: &[&str]) -> Vec<Value> {
        let mut out = vec![];
        for n in nodes {
            for r in failovers(n).unwrap_or_default() {
                if r["site"] == "a" {
                    out.push(r);
                }
            }
        }
        self.run_copies.extend(out.iter().cloned());
        out
    }

    fn run_state(&mut self, epoch: u64) -> Option<String> {
        let copies = self.runs_of_a(&ELECTORATE_OF_A);
        let mine: Vec<&Value> = copies
            .iter()
            .filter(|r| r["epoch"].as_u64() == Some(epoch))
            .collect();
        mine.iter()
            .find(|r| r["state"] == "succeeded")
            .or(mine.first())
            .and_then(|r| r["state"].as_str().map(str::to_string))
    }

    /// Every running node answers, no verdict is down, the observer prefers a.
    fn normal(&self) -> Result<(), String> {
        for n in self.running() {
            let v = views(n).ok_or(format!("{n} does not answer"))?;
            for (s, x) in &v {
                if x.verdict == "down" {
                    return Err(format!("{n}: verdict down for {s}"));
                }
            }
        }
        match route().as_str() {
            "a" => Ok(()),
            r => Err(format!("observer prefers {r}, not a")),
        }
    }

    fn phase_tick(&mut self, now: Instant) -> Result<(), String> {
        let waited = now - self.phase_since;
        match self.phase {
            Phase::Normal => {
                let left = (self.t0 + self.duration).saturating_duration_since(now);
                if now >= self.next_blackout && left >= BLACKOUT_NEEDS {
                    self.next_blackout += BLACKOUT_EVERY;
                    let epoch_before = self
                        .electorate_views()
                        .iter()
                        .filter_map(|(_, v)| v.as_ref().map(|v| v.epoch))
                        .max()
                        .unwrap_or(0);
                    let out = testbed(&["blackout", "a"])?;
                    let index = self.blackouts.len() + 1;
                    self.blackouts.push(Blackout {
                        index,
                        cut_ms: reported_at(&out).unwrap_or_else(now_ms),
                        epoch_before,
                        ..Default::default()
                    });
                    self.log(format!(
                        "blackout {index} of a (epoch before: {epoch_before})"
                    ));
                    self.enter(Phase::Dark(index - 1));
                }
            }
            Phase::Dark(i) => {
                let b = &self.blackouts[i];
                let (epoch, announced_at) = (b.down_epoch, b.b_announced_ms);
                if epoch.is_none() {
                    let before = b.epoch_before;
                    let down = self.electorate_views().into_iter().find_map(|(n, v)| {
                        v.filter(|v| v.verdict == "down" && v.epoch > before)
                            .map(|v| (n, v.epoch))
                    });
                    if let Some((n, e)) = down {
                        self.blackouts[i].down_seen_ms = Some(now_ms());
                        self.blackouts[i].down_epoch = Some(e);
                        self.log(format!("DOWN verdict of a at epoch {e} (seen at {n})"));
                    }
                }
                if announced_at.is_none() && announced("b") {
                    self.blackouts[i].b_announced_ms = Some(now_ms());
                    self.log("b told to announce the prefix");
                }
                let mut done = self.blackouts[i].failover_done_ms.is_some();
                if let (Some(e), false) = (self.blackouts[i].down_epoch, done) {
                    if self.run_state(e).as_deref() == Some("succeeded") {
                        self.blackouts[i].failover_done_ms = Some(now_ms());
                        self.log(format!("failover run a-{e} succeeded"));
                        done = true;
                    }
                }
                if (done && waited >= DARK_AT_LEAST) || waited >= DARK_AT_MOST {
                    if !done {
                        let why = match self.blackouts[i].down_epoch {
                            None => "no DOWN verdict".to_string(),
                            Some(e) => {
                                let state = self.run_state(e);
                                format!("failover run a-{e} not succeeded ({state:?})")
                            }
                        };
                        self.blackouts[i]
                            .problems
                            .push(format!("{why} within {DARK_AT_MOST:?} of the blackout"));
                        self.log(why);
                    }
                    testbed(&["heal"])?;
                    self.set_loss()?;
                    for n in ["a1", "a2", "a3"] {
                        self.procs.expect(n, "restore");
                    }
                    if self
                        .pending_restart
                        .as_ref()
                        .is_some_and(|(n, _)| site_of(n) == "a")
                    {
                        self.pending_restart = None;
                    }
                    let out = testbed(&["start", "a"])?;
                    self.blackouts[i].restored_ms = reported_at(&out).or(Some(now_ms()));
                    self.log("a restored: links healed, loss back, a's router and nodes started");
                    self.enter(Phase::Returning(i));
                }
            }
            Phase::Returning(i) => {
                let down = self.blackouts[i].down_epoch;
                let views = self.electorate_views();
                let running = self.running();
                let up = views.iter().all(|(n, v)| match v {
                    Some(v) => v.verdict == "up" && down.is_none_or(|e| v.epoch > e),
                    None => !running.contains(n),
                }) && views.iter().any(|(_, v)| v.is_some());
                if up {
                    self.blackouts[i].a_up_ms = Some(now_ms());
                    self.log("a up again at every running voter of its electorate");
                    let failed_over = self.blackouts[i].failover_done_ms.is_some();
                    if !failed_over {
                        self.enter(Phase::Settling(i, Some(now + Duration::from_secs(1))));
                        return Ok(());
                    }
                    // Failback through any running voter of the electorate.
                    let mut answer = None;
                    for n in ELECTORATE_OF_A.iter().filter(|n| running.contains(n)) {
                        match post_failback(n, "a") {
                            Some((code @ 200..=299, body)) => {
                                answer = Some((n.to_string(), code, body));
                                break;
                            }
                            other => self.log(format!("POST /v1/failbacks at {n}: {other:?}")),
                        }
                    }
                    let Some((n, code, body)) = answer else {
                        self.blackouts[i]
                            .problems
                            .push("no voter accepted POST /v1/failbacks".into());
                        self.enter(Phase::Settling(i, Some(now + Duration::from_secs(1))));
                        return Ok(());
                    };
                    self.log(format!("POST /v1/failbacks at {n}: {code} {}", body.trim()));
                    let epoch = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["epoch"].as_u64());
                    match epoch {
                        Some(e) => {
                            self.blackouts[i].failback_epoch = Some(e);
                            self.enter(Phase::FailingBack(i, e));
                        }
                        None => {
                            self.blackouts[i]
                                .problems
                                .push(format!("failback answer without an epoch: {body}"));
                            self.enter(Phase::Settling(i, Some(now + Duration::from_secs(1))));
                        }
                    }
                } else if waited >= STEP_TIMEOUT {
                    return Err(format!(
                        "a is not up again at its electorate {STEP_TIMEOUT:?} after the restore: {views:?}"
                    ));
                }
            }
            Phase::FailingBack(i, e) => {
                if self.run_state(e).as_deref() == Some("succeeded") {
                    self.blackouts[i].failback_done_ms = Some(now_ms());
                    self.log(format!("failback run a-{e} succeeded"));
                    // A node of a that started less than self_fence_after_s ago may still
                    // fence a: the routes are reset a second later.
                    self.enter(Phase::Settling(i, Some(now + Duration::from_secs(1))));
                } else if waited >= STEP_TIMEOUT {
                    let state = self.run_state(e);
                    self.blackouts[i].problems.push(format!(
                        "failback run a-{e} not succeeded within {STEP_TIMEOUT:?}: {state:?}"
                    ));
                    self.enter(Phase::Settling(i, Some(now)));
                }
            }
            Phase::Settling(i, reset_at) => {
                if let Some(at) = reset_at {
                    if now >= at {
                        testbed(&["reset-routes"])?;
                        self.log("routes reset (a announces, b does not)");
                        self.phase = Phase::Settling(i, None);
                    }
                    return Ok(());
                }
                match self.normal() {
                    Ok(()) => {
                        self.blackouts[i].normal_ms = Some(now_ms());
                        self.log("normal operation again");
                        // The fleet's hold-down (2 s) must pass before a new failover of a.
                        self.next_blackout = self.next_blackout.max(now + Duration::from_secs(3));
                        self.enter(Phase::Normal);
                    }
                    Err(why) if waited >= STEP_TIMEOUT => {
                        return Err(format!(
                        "the fleet is not back to normal {STEP_TIMEOUT:?} after blackout {}: {why}",
                        i + 1
                    ))
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Runs the soak until its time is up (and the blackout cycle is over) or STOP.
    fn run(&mut self) -> Result<&'static str, String> {
        let mut next_sample = Instant::now();
        loop {
            if STOP.load(Ordering::SeqCst) {
                self.log("interrupted (SIGINT/SIGTERM)");
                return Ok("interrupted");
            }
            let now = Instant::now();
            if now >= next_sample {
                self.procs.sample_all(now_ms());
                next_sample = now + SAMPLE_EVERY;
            }
            self.kill_tick(now)?;
            self.phase_tick(now)?;
            let over = now >= self.t0 + self.duration;
            if over && matches!(self.phase, Phase::Normal) && self.pending_restart.is_none() {
                return Ok("finished");
            }
            if now >= self.t0 + self.duration + Duration::from_secs(180) {
                return Err(format!(
                    "the soak could not end: still in {:?} 3 minutes after its time",
                    self.phase
                ));
            }
            std::thread::sleep(TICK);
        }
    }
}

/// Runs `testbed down` when dropped, also during a panic.
struct DownGuard;
impl Drop for DownGuard {
    fn drop(&mut self) {
        match testbed(&["down"]) {
            Ok(out) => print!("{out}"),
            Err(e) => eprintln!("{e}"),
        }
    }
}

#[test]
#[ignore = "minutes long and needs root: run it with testbed/testbed soak --minutes N"]
fn soak() {
    catch_signals();
    let minutes: u64 = std::env::var("QUORATE_SOAK_MINUTES")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|m| {
            m.parse()
                .expect("QUORATE_SOAK_MINUTES is a whole number of minutes")
        })
        .unwrap_or(5);
    assert!(minutes >= 1, "QUORATE_SOAK_MINUTES must be at least 1");
    let seed: u64 = std::env::var("QUORATE_SOAK_SEED")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("QUORATE_SOAK_SEED is a whole number"))
        .unwrap_or_else(|| now_ms() as u64);
    let started_ms = now_ms();
    println!(
        "soak: {minutes} min, seed {seed} (QUORATE_SOAK_SEED={seed} replays the killer's choices), state {}",
        state_dir().display()
    );

    let _ = testbed(&["down"]); // leftovers of an aborted run
    let guard = DownGuard;
    let up = testbed(&["up"]);
    let mut soak = Soak {
        t0: Instant::now(),
        t0_ms: now_ms(),
        duration: Duration::from_secs(minutes * 60),
        rng: StdRng::seed_from_u64(seed),
        timeline: vec![],
        blackouts: vec![],
        kills: vec![],
        pending_restart: None,
        phase: Phase::Normal,
        phase_since: Instant::now(),
        next_kill: Instant::now(),
        next_blackout: Instant::now(),
        procs: procs::Procs::default(),
        run_copies: vec![],
    };
    let outcome = up.and_then(|out| {
        print!("{out}");
        soak.set_loss()?;
        soak.t0 = Instant::now();
        soak.t0_ms = now_ms();
        soak.next_kill = soak.t0 + FIRST_KILL;
        soak.next_blackout = soak.t0 + FIRST_BLACKOUT;
        soak.log(format!("soak started: {LOSS_PCT} % loss on every WAN path"));
        soak.run()
    });
    let (status, fatal) = match outcome {
        Ok(s) => (s, None),
        Err(e) => {
            soak.log(format!("soak stopped: {e}"));
            ("failed", Some(e))
        }
    };

    // What the nodes hold: verdict histories, runs, and the processes' last figures.
    let end_ms = now_ms();
    soak.procs.finish(end_ms);
    let mut histories = BTreeMap::new();
    for n in soak.running() {
        if let Some(h) = verdict_history(n) {
            histories.insert(n.to_string(), h);
        }
    }
    let all = soak.running();
    soak.runs_of_a(&all);
    let notify_log = state_lines("notify.log");
    let notify_calls = state_lines("notify-calls.log");
    drop(guard);
    let clean = testbed(&["check-clean"]);

    let fatal = match (&fatal, &clean) {
        (None, Err(e)) => Some(format!("left behind after down: {e}")),
        _ => fatal,
    };
    let (report, failures) = report::judge(&report::Inputs {
        minutes,
        seed,
        started_ms,
        soak_started_ms: soak.t0_ms,
        end_ms,
        status,
        fatal: fatal.as_deref(),
        blackouts: &soak.blackouts,
        kills: &soak.kills,
        histories: &histories,
        run_copies: &soak.run_copies,
        notify_log: &notify_log,
        notify_calls: &notify_calls,
        procs: &soak.procs,
        timeline: &soak.timeline,
    });
    let mut report = report;
    report["teardown_s"] = serde_json::json!((now_ms() - end_ms) as f64 / 1000.0);
    let text = report::summary(&report, &failures);
    let dir = out_dir();
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .expect("target/soak/report.json");
    std::fs::write(dir.join("summary.txt"), &text).expect("target/soak/summary.txt");
    println!("\n==== soak summary (target/soak/report.json)\n{text}");
    assert!(
        status == "finished" && failures.is_empty(),
        "soak {status}: {} failure(s), see {}",
        failures.len(),
        dir.join("report.json").display()
    );
}
