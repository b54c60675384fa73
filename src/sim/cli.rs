//! `quorate sim`: its options and what it prints.

use super::*;

/// Options of `quorate sim`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Number of seeds to run (0..N).
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// Run only this seed (reproduces a reported failure exactly).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sites of the simulated fleet.
    #[arg(long, default_value_t = 3)]
    pub sites: usize,
    /// Voters in each site.
    #[arg(long, default_value_t = 2)]
    pub voters_per_site: usize,
    /// Indicators in each site.
    #[arg(long, default_value_t = 3)]
    pub indicators_per_site: usize,
    /// Datagram loss probability (0..1).
    #[arg(long)]
    pub loss: Option<f64>,
    /// blackout, wan-cut, loss, crash-restart, flap, mixed, failover, alarm, or all (each in
    /// turn).
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Use the fast profile (20 ms probes) instead of the DRL timings (100 ms).
    #[arg(long)]
    pub fast: bool,
    /// Report the known core defects the checker recognises as violations too.
    #[arg(long)]
    pub strict: bool,
    /// A lying indicator-only node sends forged verdicts, maintenance calls, run messages
    /// and alarms in the failover and alarm scenarios; every core must refuse them.
    #[arg(long)]
    pub liars: bool,
    /// How many of the last trace lines a violation prints.
    #[arg(long, default_value_t = 50)]
    pub trace_lines: usize,
}

/// `quorate sim`: prints the summary; on a violation prints the seed, what broke and the
/// trace, and returns false.
pub fn cli(a: &SimArgs) -> Result<bool, String> {
    let mut cfg = SimConfig {
        sites: a.sites,
        voters_per_site: a.voters_per_site.max(1),
        indicators_per_site: a.indicators_per_site,
        strict: a.strict,
        liars: a.liars,
        trace_lines: a.trace_lines,
        ..SimConfig::default()
    };
    if a.sites < 3 {
        return Err("--sites must be at least 3 (two judged sites and a witness)".into());
    }
    if a.sites > 8 {
        return Err("--sites is at most 8".into());
    }
    if let Some(p) = a.loss {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("--loss {p} must be in [0, 1)"));
        }
        cfg.loss = p;
        cfg.loss_scenario = p;
    }
    cfg.scenario = match a.scenario.as_str() {
        "all" => None,
        s => Some(Scenario::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            format!("unknown scenario {s:?}; one of: all {}", names.join(" "))
        })?),
    };
    if a.fast {
        cfg = cfg.fast();
    }
    let range = match a.seed {
        Some(s) => s..s + 1,
        None => 0..a.seeds,
    };
    let sum = run_many(&cfg, range);
    println!("{sum}");
    if let Some(v) = sum.violations.first() {
        for o in sum.violations.iter().skip(1).take(20) {
            println!("also: {o}");
        }
        println!("\nVIOLATION {v}");
        let mut repro = format!(
            "quorate sim --seed {} --scenario {} --sites {} --voters-per-site {} --indicators-per-site {}",
            v.seed, v.scenario, a.sites, a.voters_per_site, a.indicators_per_site
        );
        if let Some(p) = a.loss {
            repro += &format!(" --loss {p}");
        }
        if a.fast {
            repro += " --fast";
        }
        if a.strict {
            repro += " --strict";
        }
        if a.liars {
            repro += " --liars";
        }
        println!("reproduce: {repro}");
        println!("last {} trace lines:", v.trace.len());
        for l in &v.trace {
            println!("  {l}");
        }
        return Ok(false);
    }
    Ok(true)
}
