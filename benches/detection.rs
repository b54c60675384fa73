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
//!
//! A third table bounds false verdicts per timing profile (DRL 100 ms x 5, the former fast
//! profile 20 ms x 5, the fast profile 20 ms x 3 of config/three-sites-fast.toml, and 20 ms x 2
//! for contrast): a DOWN verdict needs a majority m of the electorate's E Pingers to be DOWN
//! within one probe budget B of each other, each having missed all I Indicators `retries`
//! times in a row. With one Pinger's false DOWN rate r = (q^k)^I per probe window / interval,
//! m-fold coincidences within B happen at most C(E, m) x m x r^m x B^(m-1) per second. Each
//! profile is also simulated at 5 % loss (`DETECTION_PROFILE_SEEDS` blackout seeds, default
//! 200, and the no-failure seeds and seconds above); `DETECTION_ONLY_PROFILES=1` stops after
//! this table.
//!
//!   cargo bench --bench detection
//!   DETECTION_SEEDS=50 DETECTION_CALM_SEEDS=10 DETECTION_CALM_SECS=60 cargo bench --bench detection

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

fn config(loss: f64, timing: Timing, scenario: Scenario, horizon: Duration) -> SimConfig {
    SimConfig {
        loss,
        loss_scenario: loss,
        scenario: Some(scenario),
        timing,
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

fn blackout_cell(loss: f64, timing: Timing, seeds: u64) -> (Vec<f64>, usize) {
    let mut cfg = config(loss, timing, Scenario::Blackout, Duration::ZERO);
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
    timing: Timing,
    indicators: usize,
    seeds: u64,
    secs: u64,
) -> (u64, f64, f64, usize) {
    let mut cfg = config(loss, timing, Scenario::Loss, Duration::from_secs(secs));
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

/// A timing profile: name, probe interval (ms), retries.
type Profile = (&'static str, u64, u32);
const PROFILES: [Profile; 4] = [
    ("DRL", 100, 5),
    ("former fast", 20, 5),
    ("fast", 20, 3),
    ("", 20, 2),
];

fn profile_timing(&(_, interval, retries): &Profile) -> Timing {
    let mut cfg = SimConfig::default();
    if interval == 20 {
        cfg = cfg.fast();
    }
    let t = &mut cfg.timing;
    t.retries = retries;
    t.revote_after = t.probe_budget() * 5;
    cfg.timing
}

fn choose(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// (one Pinger's false DOWN opinions per year, false DOWN verdicts per site-year): the
/// verdict-level union bound of the module comment.
fn verdict_bound(t: &Timing, loss: f64, indicators: usize, electorate: usize) -> (f64, f64) {
    let q = 1.0 - (1.0 - loss).powi(2);
    let per_window = q.powi((t.retries as usize * indicators) as i32);
    let rate = per_window / t.probe_interval.as_secs_f64();
    let m = electorate / 2 + 1;
    let b = t.probe_budget().as_secs_f64();
    let coincidences =
        choose(electorate, m) * m as f64 * rate.powi(m as i32) * b.powi(m as i32 - 1);
    (rate * YEAR_S, coincidences * YEAR_S)
}

fn profiles(indicators: usize, electorate: usize, seeds: u64, calm: (u64, u64)) {
    let m = electorate / 2 + 1;
    println!(
        "\nFalse-verdict bound per profile: I = {indicators} Indicators per judged site, a verdict needs {m} of {electorate} Pingers DOWN within one probe budget\n"
    );
    println!("| profile | probe budget | loss p | one Pinger's false DOWN opinions per year | bound: false verdicts per site-year |");
    println!("|---|---:|---:|---:|---:|");
    for p in &PROFILES {
        let t = profile_timing(p);
        for &loss in &LOSSES {
            let (pinger, verdicts) = verdict_bound(&t, loss, indicators, electorate);
            let budget = t.probe_budget().as_millis();
            let loss = loss * 100.0;
            println!(
                "| {} {} ms x {} | {budget} ms | {loss:.0} % | {} | {} |",
                p.0,
                p.1,
                p.2,
                sci(pinger),
                sci(verdicts)
            );
        }
    }
    let (calm_seeds, calm_secs) = calm;
    println!(
        "\nSimulated at 5 % loss: {seeds} blackout seeds, {calm_seeds} no-failure seeds x {calm_secs} s per profile\n"
    );
    println!("| profile | detected | p50 (ms) | p99 (ms) | false DOWN verdicts | node-hours |");
    println!("|---|---:|---:|---:|---:|---:|");
    for p in &PROFILES {
        let t = profile_timing(p);
        let (lat, violations) = blackout_cell(0.05, t.clone(), seeds);
        let (fv, node_hours, _, other) = calm_cell(0.05, t, indicators, calm_seeds, calm_secs);
        let mut detected = format!("{}/{seeds}", lat.len());
        if violations > 0 {
            detected += &format!(" ({violations} violations)");
        }
        let mut fv = fv.to_string();
        if other > 0 {
            fv += &format!(" ({other} other violations)");
        }
        println!(
            "| {} {} ms x {} | {detected} | {:.0} | {:.0} | {fv} | {node_hours:.1} |",
            p.0,
            p.1,
            p.2,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
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
    profiles(
        indicators,
        electorate,
        env("DETECTION_PROFILE_SEEDS", 200),
        (calm_seeds, calm_secs),
    );
    if std::env::var("DETECTION_ONLY_PROFILES").is_ok() {
        return;
    }
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
            let (lat, violations) = blackout_cell(loss, timing(retries), seeds);
            let (false_verdicts, node_hours, site_years, other) =
                calm_cell(loss, timing(retries), indicators, calm_seeds, calm_secs);
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
                calm_cell(loss, timing(retries), few, calm_seeds, calm_secs);
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
