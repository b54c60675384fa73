//! Verdict → first actuator call on a real loopback fleet.
//!
//! The fast three-site fleet (20 ms probes) runs in this process; the watch of a has a
//! two-step exec plan whose steps each write `date +%s%N` (the moment the actuator's process
//! runs) to a file. Each trial waits a random 0-1 s, stops every node of site a, and times:
//! the DOWN verdict at the run's leader, the leader's journal entry of the first step's start
//! (after the takeover delay), the first step's process, and the second step's process. Then
//! it restarts a and waits until the fleet is UP again. A separate series times the spawn of
//! the same exec command from this process alone.
//!
//!   cargo bench --bench failover [-- --trials N --seed S --takeover-delay SECONDS]
//!
//! FAILOVER_TRIALS (default 20), FAILOVER_SEED (default 1) and FAILOVER_TAKEOVER_S (default
//! 0.25) set the same.

use anyhow::{bail, Context, Result};
use quorate::core::types::{NodeId, Outcome, SiteId};
use quorate::demo::THREE_SITES_FAST;
use quorate::localfleet::{relocate, LocalFleet};
use quorate::node::snapshot::SiteView;
use quorate::node::EventKind;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "common/report.rs"]
mod report;
use report::{f1, summary};

/// Status messages every 50 ms, so that self_fence_after_s (two status intervals, 0.1 s)
/// plus the 0.08 s probe budget stays below the takeover delay (check-config's rule).
const STATUS_MS: u64 = 50;
const SELF_FENCE_S: f64 = 0.1;
/// The loopback range of this bench's fleet (127.45.S.N).
const OCTET: u8 = 45;
const WAIT: Duration = Duration::from_secs(30);
const NAN: f64 = f64::NAN;

fn unix_ns(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The shell command of a step: the process itself writes its start time, in ns.
fn stamp_cmd(file: &Path) -> String {
    format!("exec date +%s%N > {}", file.display())
}

/// The fast fleet with status every STATUS_MS, hold-down 1 s (a trial every few seconds) and
/// two exec steps on the watch of a, each writing its start time to `dir/stepN`.
fn fleet_text(dir: &Path, takeover_s: f64) -> Result<String> {
    let text = relocate(THREE_SITES_FAST, OCTET);
    let hold = "hold_down_s       = 300";
    if !text.contains(hold) {
        bail!("the fast fleet no longer has `{hold}`");
    }
    let text = text.replacen(hold, "hold_down_s       = 1", 1);
    let text = text.replacen(
        "[timing]",
        &format!("[timing]\nstatus_interval_ms = {STATUS_MS}"),
        1,
    );
    let cut = text.find("[[watch]]").context("the fleet has watches")?;
    let step = |name: &str, i: usize| {
        format!(
            r#"
[[watch.pipeline.step]]
name = "{name}"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "{cmd}"]
"#,
            cmd = stamp_cmd(&dir.join(format!("step{i}")))
        )
    };
    Ok(format!(
        r#"{head}
[[watch]]
site = "a"
by = ["b", "c"]
takeover_delay_s = {takeover_s}
self_fence_after_s = {SELF_FENCE_S}
{first}{second}
[[watch]]
site = "b"
by = ["a", "c"]
"#,
        head = &text[..cut],
        first = step("promote-b", 0),
        second = step("notify", 1),
    ))
}

/// Every running voter's own Pinger sees each site it watches UP, and none shows a DOWN verdict.
fn steady(f: &LocalFleet) -> bool {
    f.running_voters().iter().all(|id| {
        let Some(s) = f.snapshot(id) else {
            return false;
        };
        let up = |v: &&SiteView| v.id == s.site || v.opinion == "up";
        s.sites.iter().all(|v| up(&v) && v.verdict != "down")
    })
}

/// The ns timestamp a step wrote, once it is there.
async fn wait_stamp(file: &Path) -> Result<i128> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(file) {
            if let Ok(ns) = s.trim().parse::<i128>() {
                return Ok(ns);
            }
        }
        if Instant::now() >= deadline {
            bail!("{} was not written within 10 s", file.display());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One trial, ms: [blackout → DOWN at the leader, verdict → step 0 journaled as started,
/// step 0 journaled → its process runs, verdict → step 0 process, step 0 → step 1 process,
/// blackout → step 0 process].
type Trial = [f64; 6];
const STAGES: [&str; 6] = [
    "blackout → DOWN verdict committed at the leader",
    "verdict → step 1 journaled as started (takeover delay + timer)",
    "step 1 journaled → its process runs (fsync, majority holds journal, spawn; ±1 ms)",
    "verdict → first actuator call (step 1 process runs)",
    "step 1 process → step 2 process (step 1 exits, journaled, replicated, spawn)",
    "blackout → first actuator call",
];

async fn trial(
    fleet: &mut LocalFleet,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<quorate::node::NodeEvent>,
    dir: &Path,
) -> Result<Trial> {
    let site = SiteId::from("a");
    let files: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("step{i}"))).collect();
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    while events.try_recv().is_ok() {}
    let (t0, w0) = (Instant::now(), SystemTime::now());
    let stopped = fleet.stop_site(&site).await;
    // The leader's own Verdict event is when it committed the verdict and armed the takeover.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut first: Option<(NodeId, u64)> = None;
    let verdict_at = loop {
        let ev = tokio::time::timeout_at(deadline, events.recv()).await;
        let Some(ev) = ev.ok().flatten() else {
            bail!("no DOWN verdict for a at its leader within {WAIT:?}");
        };
        if let EventKind::Verdict {
            site: s,
            outcome: Outcome::Down,
            epoch,
            leader,
        } = &ev.kind
        {
            if *s == site {
                first.get_or_insert((leader.clone(), *epoch));
                if ev.node == *leader {
                    break ev.at;
                }
            }
        }
    };
    let (leader, epoch) = first.context("a verdict")?;
    let stamps = [wait_stamp(&files[0]).await?, wait_stamp(&files[1]).await?];
    // The leader's journal: when step 1 was journaled as started (wall ms).
    let started_ms = fleet
        .wait_until(Duration::from_secs(5), |f| {
            f.snapshot(&leader).is_some_and(|s| {
                s.failovers
                    .iter()
                    .any(|r| r.epoch == epoch && r.steps.len() == 2)
            })
        })
        .await;
    let journal_ns = started_ms
        .then(|| {
            let s = fleet.snapshot(&leader)?;
            let r = s.failovers.iter().find(|r| r.epoch == epoch)?;
            let t = humantime::parse_rfc3339_weak(&r.steps[0].started_at).ok()?;
            Some(unix_ns(t))
        })
        .flatten();
    for id in &stopped {
        fleet.start_node(id).await?;
    }
    if !fleet.wait_until(WAIT, steady).await {
        bail!("fleet not back to UP {WAIT:?} after a restarted");
    }
    let (w0, verdict) = (
        unix_ns(w0),
        verdict_at.duration_since(t0).as_nanos() as i128,
    );
    let ms = |ns: i128| ns as f64 / 1e6;
    let since_verdict = |wall: i128| ms(wall - w0 - verdict);
    let journal = journal_ns.map_or(NAN, since_verdict);
    let step0 = since_verdict(stamps[0]);
    Ok([
        ms(verdict),
        journal,
        step0 - journal,
        step0,
        ms(stamps[1] - stamps[0]),
        ms(stamps[0] - w0),
    ])
}

/// The same exec command spawned from this process: the cost of the actuator's process alone.
async fn spawn_cost(dir: &Path, n: usize) -> Result<Vec<f64>> {
    let file = dir.join("spawn");
    let mut out = Vec::new();
    for _ in 0..n {
        let _ = std::fs::remove_file(&file);
        let w0 = unix_ns(SystemTime::now());
        let st = tokio::process::Command::new("/bin/sh")
            .args(["-c", &stamp_cmd(&file)])
            .status()
            .await?;
        if !st.success() {
            bail!("/bin/sh -c date failed: {st}");
        }
        out.push((wait_stamp(&file).await? - w0) as f64 / 1e6);
    }
    Ok(out)
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let opt = |k: &str, env: &str| {
        argv.windows(2)
            .find(|w| w[0] == k)
            .map(|w| w[1].clone())
            .or_else(|| std::env::var(env).ok())
    };
    let trials: usize = opt("--trials", "FAILOVER_TRIALS").map_or(Ok(20), |v| v.parse())?;
    let seed: u64 = opt("--seed", "FAILOVER_SEED").map_or(Ok(1), |v| v.parse())?;
    let takeover: f64 =
        opt("--takeover-delay", "FAILOVER_TAKEOVER_S").map_or(Ok(0.25), |v| v.parse())?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "failover: {trials} trials, seed {seed}, takeover_delay_s {takeover}, \
         self_fence_after_s {SELF_FENCE_S}, status_interval_ms {STATUS_MS}, {cores} cores"
    );
    let rt = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let (results, spawn) = rt.block_on(async {
        let tmp = tempfile::Builder::new()
            .prefix("quorate-failover-")
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        let text = fleet_text(&dir, takeover)?;
        quorate::config::Fleet::parse(&text).context("the bench's fleet file")?;
        let mut fleet = LocalFleet::start(&text, None, false).await?;
        let mut events = fleet.take_events().context("events already taken")?;
        if !fleet.wait_until(WAIT, steady).await {
            bail!("fleet not UP {WAIT:?} after start");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut results = Vec::new();
        let mut last_run = Instant::now();
        for i in 1..=trials {
            let pause = Duration::from_millis(rng.random_range(0..1000));
            // The hold-down (1 s) after the previous run must have passed.
            let hold =
                (last_run + Duration::from_millis(1100)).saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.max(hold)).await;
            let t = trial(&mut fleet, &mut events, &dir).await?;
            last_run = Instant::now();
            println!(
                "trial {i:2}: verdict {:6.1} ms, verdict → first call {:6.1} ms \
                 (journaled {:6.1} + {:4.1}), step 1 → step 2 {:5.1} ms, blackout → call {:6.1} ms",
                t[0], t[3], t[1], t[2], t[4], t[5]
            );
            results.push(t);
        }
        fleet.shutdown().await;
        let spawn = spawn_cost(&dir, trials.max(20)).await?;
        Ok::<_, anyhow::Error>((results, spawn))
    })?;
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    report(&results, &spawn, takeover);
    Ok(())
}

fn report(trials: &[Trial], spawn: &[f64], takeover_s: f64) {
    let delay = takeover_s * 1000.0;
    println!("\nms, nearest-rank percentiles (with fewer than 100 trials p99 is the maximum)\n");
    println!("| stage | n | p50 | p99 | max | mean |");
    println!("|---|---:|---:|---:|---:|---:|");
    let line = |what: &str, v: Vec<f64>| {
        let (n, p50, p99, max, mean) = summary(v);
        row!(what, n, f1(p50), f1(p99), f1(max), f1(mean));
    };
    for (i, stage) in STAGES.iter().enumerate() {
        line(stage, trials.iter().map(|t| t[i]).collect());
        if i == 3 {
            let what = format!(
                "verdict → first actuator call, excluding the {delay:.0} ms takeover delay"
            );
            line(&what, trials.iter().map(|t| t[3] - delay).collect());
        }
    }
    line(
        "spawn of the same `/bin/sh -c 'exec date'` from the bench process",
        spawn.to_vec(),
    );
}
