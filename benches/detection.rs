//! Detection latency and false verdicts versus datagram loss and retries, from the simulator.
//!
//! For each loss p and retries k (other timings at DRL: 100 ms probes and timeouts, 300 ms
//! vote timeout, 3 rounds):
//! - blackout runs: virtual time from the blackout of site `a` to the DOWN verdict being known
//!   at every surviving voter (p50/p99);
//! - no-failure runs (only loss): every DOWN verdict is false; rate per node-hour and per
//!   judged site per year of virtual time.
//!
//! Next to them: the per-probe-window chance that loss alone makes one Indicator look
//! unreachable (p^k for one lost datagram per probe, q^k with q = 1-(1-p)^2 for a lost probe
//! or answer), and a union bound on false DOWN verdicts per site per year (every false verdict
//! needs at least one Pinger whose probes to all I Indicators were lost k rounds in a row).
//!
//! Env: `DETECTION_SEEDS` (blackout seeds per cell, default 200), `DETECTION_CALM_SEEDS`
//! (no-failure seeds per cell, default 60), `DETECTION_CALM_SECS` (virtual seconds per
//! no-failure seed, default 300).
//!
//! A second table repeats the no-failure runs with only the two voters of each judged site as
//! its Indicators (I = 2), where loss makes false DOWN opinions frequent enough to be seen.

use quorate::config::Timing;
use quorate::core::types::Outcome;
use quorate::sim::faults::Scenario;
use quorate::sim::invariants::ViolationKind;
use quorate::sim::{run_seed, SeedReport, SimConfig, Violation};
use std::time::{Duration, Instant};

const LOSSES: [f64; 4] = [0.01, 0.05, 0.10, 0.20];
const RETRIES: [u32; 6] = [3, 4, 5, 6, 7, 8];
const YEAR_S: f64 = 365.25 * 24.0 * 3600.0;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timing(retries: u32) -> Timing {
    let mut t = Timing {
        retries,
        ..Timing::default()
    };
    // As an empty `revote_after_ms` means: five probe budgets.
    t.revote_after = t.probe_budget() * 5;
    t
}

fn config(loss: f64, retries: u32, scenario: Scenario, horizon: Duration) -> SimConfig {
    SimConfig {
        loss,
        loss_scenario: loss,
        scenario: Some(scenario),
        timing: timing(retries),
        horizon,
        trace_lines: 0,
        ..SimConfig::default()
    }
}

/// Runs `seeds` on every core, in seed order.
fn run(cfg: &SimConfig, seeds: std::ops::Range<u64>) -> Vec<Result<SeedReport, Violation>> {
    let list: Vec<u64> = seeds.collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(list.len().max(1));
    let mut out: Vec<(u64, Result<SeedReport, Violation>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = list.iter().copied().skip(t).step_by(threads).collect();
                s.spawn(move || {
                    mine.into_iter()
                        .map(|x| (x, run_seed(cfg, x)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("simulation thread"))
            .collect()
    });
    out.sort_by_key(|(s, _)| *s);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Nearest-rank percentile of a sorted list.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

struct Cell {
    loss: f64,
    retries: u32,
    detected: usize,
    seeds: u64,
    p50: f64,
    p99: f64,
    /// Blackout runs that broke an invariant (liveness included).
    violations: usize,
    false_verdicts: u64,
    node_hours: f64,
    site_years: f64,
    /// No-failure runs that broke an invariant other than a false verdict.
    other: usize,
}

fn blackout_cell(loss: f64, retries: u32, seeds: u64) -> (Vec<f64>, usize) {
    let mut cfg = config(loss, retries, Scenario::Blackout, Duration::ZERO);
    // The blackout starts by 3.5 s; leave it the whole liveness bound and a second more.
    cfg.horizon = Duration::from_millis(3500) + cfg.liveness_bound() + Duration::from_secs(1);
    let mut lat = Vec::new();
    let mut violations = 0;
    for r in run(&cfg, 0..seeds) {
        match r {
            Ok(rep) => lat.extend(rep.detect_all_us.map(|us| us as f64 / 1000.0)),
            Err(_) => violations += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat, violations)
}

/// (false DOWN verdicts, node-hours, judged-site-years, runs with other violations).
fn calm_cell(
    loss: f64,
    retries: u32,
    indicators: usize,
    seeds: u64,
    secs: u64,
) -> (u64, f64, f64, usize) {
    let mut cfg = config(loss, retries, Scenario::Loss, Duration::from_secs(secs));
    cfg.indicators_per_site = indicators;
    let judged_sites = (cfg.sites - 1) as f64;
    let (mut verdicts, mut node_s, mut site_s, mut other) = (0u64, 0f64, 0f64, 0);
    for r in run(&cfg, 0..seeds) {
        match r {
            Ok(rep) => {
                verdicts += rep
                    .verdicts
                    .iter()
                    .filter(|v| Outcome::of_slot(v.1) == Outcome::Down)
                    .count() as u64;
                let s = rep.virtual_us as f64 / 1e6;
                node_s += rep.traffic.len() as f64 * s;
                site_s += judged_sites * s;
            }
            // The checker stops a run at its first false verdict: count it and the time
            // observed until then.
            Err(v) => {
                if v.kind == ViolationKind::FalseVerdict {
                    verdicts += 1;
                } else {
                    other += 1;
                }
                let s = v.at_ms as f64 / 1000.0;
                let nodes = (cfg.voters_per_site * cfg.sites
                    + (cfg.indicators_per_site - cfg.voters_per_site) * (cfg.sites - 1))
                    as f64;
                node_s += nodes * s;
                site_s += judged_sites * s;
            }
        }
    }
    (verdicts, node_s / 3600.0, site_s / YEAR_S, other)
}

fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if (0.01..1000.0).contains(&x) {
        format!("{x:.3}")
    } else {
        format!("{x:.1e}")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let seeds = env("DETECTION_SEEDS", 200);
    let calm_seeds = env("DETECTION_CALM_SEEDS", 60);
    let calm_secs = env("DETECTION_CALM_SECS", 300);
    let base = SimConfig::default();
    let indicators = base.indicators_per_site;
    // Electorate of a judged site: the voters of every other site.
    let electorate = base.voters_per_site * (base.sites - 1);
    let rounds_per_s = 1.0 / timing(5).probe_interval.as_secs_f64();
    println!(
        "topology: {} sites x {} voters, {} Indicators per judged site (electorate {}); DRL timings \
         (100 ms probes/timeouts, 300 ms vote timeout, 3 rounds), retries k varied",
        base.sites, base.voters_per_site, indicators, electorate
    );
    println!(
        "blackout: {seeds} seeds per cell; no failure: {calm_seeds} seeds x {calm_secs} s virtual per cell; {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let start = Instant::now();
    let mut cells = Vec::new();
    for &loss in &LOSSES {
        for &retries in &RETRIES {
            let t = Instant::now();
            let (lat, violations) = blackout_cell(loss, retries, seeds);
            let (false_verdicts, node_hours, site_years, other) =
                calm_cell(loss, retries, indicators, calm_seeds, calm_secs);
            eprintln!(
                "p={:.0}% k={retries}: {:.1} s wall",
                loss * 100.0,
                t.elapsed().as_secs_f64()
            );
            cells.push(Cell {
                loss,
                retries,
                detected: lat.len(),
                seeds,
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                violations,
                false_verdicts,
                node_hours,
                site_years,
                other,
            });
        }
    }
    println!(
        "\n| loss p | k | detected | p50 (ms) | p99 (ms) | false DOWN verdicts | node-hours | per node-hour | per site-year (95 % upper if 0) | p^k | q^k | bound per site-year |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in &cells {
        let q = 1.0 - (1.0 - c.loss).powi(2);
        let pk = c.loss.powi(c.retries as i32);
        let qk = q.powi(c.retries as i32);
        // Union bound: any of the electorate's Pingers, any window, all I Indicators missed
        // k times in a row.
        let bound = electorate as f64 * rounds_per_s * YEAR_S * qk.powi(indicators as i32);
        let per_site_year = if c.false_verdicts == 0 {
            format!("< {}", sci(3.0 / c.site_years))
        } else {
            sci(c.false_verdicts as f64 / c.site_years)
        };
        let mut detected = format!("{}/{}", c.detected, c.seeds);
        if c.violations > 0 {
            detected += &format!(" ({} violations)", c.violations);
        }
        let mut fv = c.false_verdicts.to_string();
        if c.other > 0 {
            fv += &format!(" ({} other violations)", c.other);
        }
        println!(
            "| {:.0} % | {} | {} | {:.0} | {:.0} | {} | {:.1} | {} | {} | {} | {} | {} |",
            c.loss * 100.0,
            c.retries,
            detected,
            c.p50,
            c.p99,
            fv,
            c.node_hours,
            sci(c.false_verdicts as f64 / c.node_hours),
            per_site_year,
            sci(pk),
            sci(qk),
            sci(bound)
        );
    }
    println!(
        "\nq = 1-(1-p)^2: a probe window is missed when the probe or its answer is lost. \
         Bound per site-year = electorate ({electorate}) x {rounds_per_s:.0} windows/s x 1 year x (q^k)^I with I = {indicators}: \
         a false DOWN verdict needs at least one Pinger (in fact a majority) that missed all I Indicators k times in a row."
    );

    let few = base.voters_per_site;
    println!(
        "\nNo-failure runs with I = {few} Indicators per judged site (its voters only), same electorate:\n"
    );
    println!("| loss p | k | false DOWN verdicts | node-hours | per node-hour | per site-year (95 % upper if 0) | bound per site-year |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &loss in &LOSSES {
        for &retries in &RETRIES {
            let (n, node_hours, site_years, other) =
                calm_cell(loss, retries, few, calm_seeds, calm_secs);
            let q = 1.0 - (1.0 - loss).powi(2);
            let bound =
                electorate as f64 * rounds_per_s * YEAR_S * q.powi((retries as usize * few) as i32);
            let per_site_year = if n == 0 {
                format!("< {}", sci(3.0 / site_years))
            } else {
                sci(n as f64 / site_years)
            };
            let mut fv = n.to_string();
            if other > 0 {
                fv += &format!(" ({other} other violations)");
            }
            println!(
                "| {:.0} % | {retries} | {fv} | {node_hours:.1} | {} | {per_site_year} | {} |",
                loss * 100.0,
                sci(n as f64 / node_hours),
                sci(bound)
            );
        }
    }
    println!("\nwall: {:.1} s", start.elapsed().as_secs_f64());
}
