//! How the cost of a fleet grows with Indicators and voters, from the simulator (no faults,
//! no loss, DRL timings): messages each node sends per virtual second, split by role, and
//! memory. Memory is measured, not estimated: the process's peak RSS (VmHWM, reset through
//! /proc/self/clear_refs) minus its RSS before the run; it covers the whole simulated fleet,
//! including the simulator's own copy of every watch list and its event queue. A second
//! measurement isolates one Pinger: RSS delta of building it and running one round.
//!
//! Env: `SCALE_FULL_SECS` (virtual seconds of the 100 voters x 10,000 Indicators run, default
//! 1; 0 skips it), `SCALE_SWEEP_SECS` (virtual seconds of each sweep point, default 2).

use quorate::core::pinger::{Pinger, PingerConfig};
use quorate::core::types::{NodeId, SiteId, Time};
use quorate::sim::faults::Scenario;
use quorate::sim::{run_seed, SimConfig};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS so that VmHWM measures the next run alone.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[derive(Debug)]
struct Point {
    voters: usize,
    indicators: usize,
    nodes: usize,
    /// (Pinger, Indicator) pairs: each voter probes every Indicator of each site it judges.
    pairs: usize,
    virtual_s: f64,
    wall_s: f64,
    events: u64,
    all_per_node_s: f64,
    voter_per_s: f64,
    indicator_per_s: f64,
    recv_indicator_per_s: f64,
    peak_mib: f64,
    /// CPU seconds the run used (wall is inflated by other load on shared cores).
    cpu_s: f64,
}

fn run_point(voters: usize, indicators: usize, ms: u64) -> Point {
    let cfg = SimConfig {
        sites: 3,
        voters_per_site: voters,
        indicators_per_site: indicators,
        loss: 0.0,
        loss_scenario: 0.0,
        scenario: Some(Scenario::Loss),
        horizon: Duration::from_millis(ms),
        trace_lines: 0,
        ..SimConfig::default()
    };
    reset_peak();
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let cpu0 = cpu_s();
    let rep = run_seed(&cfg, 1).unwrap_or_else(|v| panic!("{v}"));
    let wall_s = t.elapsed().as_secs_f64();
    let cpu = cpu_s() - cpu0;
    let peak = status_kib("VmHWM:");
    let virtual_s = rep.virtual_us as f64 / 1e6;
    let (mut all, mut v, mut nv, mut i, mut ni, mut ri) = (0u64, 0u64, 0usize, 0u64, 0usize, 0u64);
    for (id, tr) in &rep.traffic {
        all += tr.sent_msgs;
        // Ids are the site letter and a 1-based number; the first `voters` are the voters.
        let k: usize = id.as_str()[1..]
            .parse()
            .expect("simulated node ids are letter + number");
        if k <= voters {
            v += tr.sent_msgs;
            nv += 1;
        } else {
            i += tr.sent_msgs;
            ri += tr.recv_msgs;
            ni += 1;
        }
    }
    let per = |x: u64, n: usize| x as f64 / n.max(1) as f64 / virtual_s;
    Point {
        voters,
        indicators,
        nodes: rep.traffic.len(),
        // a's voters judge b, b's judge a, the witness's judge both.
        pairs: voters * indicators * 4,
        virtual_s,
        wall_s,
        events: rep.counters.events,
        all_per_node_s: per(all, rep.traffic.len()),
        voter_per_s: per(v, nv),
        indicator_per_s: per(i, ni),
        recv_indicator_per_s: per(ri, ni),
        peak_mib: peak.saturating_sub(before) as f64 / 1024.0,
        cpu_s: cpu,
    }
}

/// Runs one point in a child process, so that its memory is measured from a clean heap.
fn point(voters: usize, indicators: usize, ms: u64) -> Point {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env("SCALE_POINT", format!("{voters},{indicators},{ms}"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("child runs");
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("child prints numbers"))
        .collect();
    assert_eq!(f.len(), 13, "child printed {line:?}");
    Point {
        voters: f[0] as usize,
        indicators: f[1] as usize,
        nodes: f[2] as usize,
        pairs: f[3] as usize,
        virtual_s: f[4],
        wall_s: f[5],
        events: f[6] as u64,
        all_per_node_s: f[7],
        voter_per_s: f[8],
        indicator_per_s: f[9],
        recv_indicator_per_s: f[10],
        peak_mib: f[11],
        cpu_s: f[12],
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn table(title: &str, points: &[Point]) {
    println!("\n{title}\n");
    println!("| voters/site | Indicators/site | nodes | Pinger-Indicator pairs | virtual s | wall s | CPU s | events | msgs/node/s (all nodes) | msgs/s per voter | msgs/s per Indicator-only node (sent / received) | peak RSS delta (MiB) | bytes per pair | bytes per Indicator node |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in points {
        let bytes = p.peak_mib * 1024.0 * 1024.0;
        let ind_nodes = (p.indicators.max(p.voters) * 2) as f64;
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.1} | {:.1} | {} | {:.1} | {:.0} | {:.0} / {:.0} | {:.1} | {:.0} | {:.0} |",
            p.voters,
            p.indicators,
            p.nodes,
            p.pairs,
            p.virtual_s,
            p.wall_s,
            p.cpu_s,
            p.events,
            p.all_per_node_s,
            p.voter_per_s,
            p.indicator_per_s,
            p.recv_indicator_per_s,
            p.peak_mib,
            bytes / p.pairs as f64,
            bytes / ind_nodes
        );
    }
}

/// RSS delta of one Pinger watching one site of `n` Indicators after one round.
fn pinger_bytes(n: usize) -> f64 {
    let ids: Vec<NodeId> = (0..n)
        .map(|i| NodeId::from(format!("a{}", i + 1)))
        .collect();
    let before = status_kib("VmRSS:");
    let cfg = PingerConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        retries: 5,
        startup_grace: Duration::ZERO,
    };
    let mut p = Pinger::new(cfg, vec![(SiteId::from("a"), ids.clone())], Time::ZERO, 1);
    p.handle_timeout(Time::ZERO);
    while p.poll_action().is_some() {}
    let after = status_kib("VmRSS:");
    std::hint::black_box(&p);
    drop(p);
    (after.saturating_sub(before) * 1024) as f64 / n as f64
}

fn main() {
    if let Ok(spec) = std::env::var("SCALE_POINT") {
        let a: Vec<u64> = spec
            .split(',')
            .map(|x| x.parse().expect("number"))
            .collect();
        let p = run_point(a[0] as usize, a[1] as usize, a[2]);
        println!(
            "{} {} {} {} {} {} {} {} {} {} {} {} {}",
            p.voters,
            p.indicators,
            p.nodes,
            p.pairs,
            p.virtual_s,
            p.wall_s,
            p.events,
            p.all_per_node_s,
            p.voter_per_s,
            p.indicator_per_s,
            p.recv_indicator_per_s,
            p.peak_mib,
            p.cpu_s
        );
        return;
    }
    let sweep_ms = env("SCALE_SWEEP_MS", 2050);
    let full_ms = env("SCALE_FULL_MS", 499);
    let start = Instant::now();
    println!(
        "3 sites (a, b judged; c witness), no faults, DRL timings (100 ms probes, 1 s status); one child process per run"
    );

    println!("\nOne Pinger alone (RSS delta after building it and sending one round):\n");
    println!("| Indicators | bytes per Indicator |\n|---:|---:|");
    for n in [10_000, 100_000] {
        println!("| {n} | {:.0} |", pinger_bytes(n));
    }

    let by_ind: Vec<Point> = [100, 1_000, 10_000]
        .iter()
        .map(|&i| point(4, i, sweep_ms))
        .collect();
    table("Indicators per site swept at 4 voters per site", &by_ind);
    let by_voters: Vec<Point> = [4, 20, 100]
        .iter()
        .map(|&v| point(v, 1_000, sweep_ms))
        .collect();
    table(
        "Voters per site swept at 1,000 Indicators per site",
        &by_voters,
    );
    if full_ms > 0 {
        let full = point(100, 10_000, full_ms);
        table(
            "Full size: 100 voters and 10,000 Indicators per site",
            &[full],
        );
    }
    println!("\nwall: {:.1} s", start.elapsed().as_secs_f64());
}
