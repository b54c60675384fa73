//! Blackout -> DOWN verdict committed at every surviving voter on a WAN: the three-site fleet
//! on loopback with every node behind the UDP relay of src/relay.rs, which delays (and loses)
//! the packets between sites, never inside one.
//!
//! For each round trip time (RTT) between sites the relay's inter-site links get RTT/2 one-way
//! delay and the given loss; the fleet settles, then each trial waits a random 0-1 s, stops
//! every node of site a, times the DOWN commit at every surviving voter (b1, b2, c1, c2),
//! restarts a and waits until the fleet is UP again. Every DOWN verdict no blackout explains
//! (for b, or for a once it was UP again) is a false verdict. The goal per RTT: p50 at most
//! the 0 ms figure + RTT/2 + 10 ms, both end to end and for the vote alone (the majority-th
//! DOWN opinion of the electorate -> DOWN at every surviving voter), since a's last answers
//! reach the other sites' Pingers up to RTT/2 after the blackout whatever the vote does.
//! Each trial also gives the vote's floor: the earliest moment at which every surviving voter
//! could know that a majority saw a DOWN, given when each Pinger took its opinion and that an
//! opinion reaches another site RTT/2 later (`fleet::vote_floor`); DOWN at every voter minus
//! that floor is what the vote itself costs.
//!
//!   cargo bench --bench wan
//!   WAN_TRIALS=20 WAN_RTTS=0,10,30,80 WAN_LOSS=5 WAN_PROFILE=fast cargo bench --bench wan
//!
//! Env: WAN_TRIALS (blackouts per RTT, default 10), WAN_RTTS (ms, default 0,10,30,80),
//! WAN_LOSS (percent on every inter-site link, both ways, default 5), WAN_PROFILE (drl, the
//! default, or fast), WAN_SEED (default 1). Loopback only; needs no root.

use anyhow::{Context, Result};
use quorate::core::types::SiteId;
use quorate::demo::{THREE_SITES, THREE_SITES_FAST};
use quorate::localfleet::{relocate, LocalFleet};
use quorate::relay::{LinkFaults, Relay};
use rand::{rngs::StdRng, SeedableRng};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[path = "common/report.rs"]
mod report;
use report::{f1, summary};
#[path = "common/fleet.rs"]
mod fleet;

/// The loopback range of this bench's fleet (127.46.S.N).
const OCTET: u8 = 46;

fn env<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v}: {e}")),
        Err(_) => Ok(default),
    }
}

/// One RTT's trials.
struct Row {
    rtt: u64,
    trials: fleet::Trials,
    seconds: f64,
}

fn main() -> Result<()> {
    let trials: usize = env("WAN_TRIALS", 10)?;
    let loss: u8 = env("WAN_LOSS", 5)?;
    let seed: u64 = env("WAN_SEED", 1)?;
    let rtts: Vec<u64> = env("WAN_RTTS", "0,10,30,80".to_string())?
        .split(',')
        .map(|r| r.trim().parse().context("WAN_RTTS: comma-separated ms"))
        .collect::<Result<_>>()?;
    let profile = env("WAN_PROFILE", "drl".to_string())?.to_lowercase();
    let text = match profile.as_str() {
        "drl" => THREE_SITES,
        "fast" => THREE_SITES_FAST,
        other => anyhow::bail!("WAN_PROFILE={other}: drl or fast"),
    };
    println!(
        "wan: {profile} profile, {trials} blackouts per RTT, {loss} % loss between sites, seed {seed}, RTTs {rtts:?} ms"
    );
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(run(text, &rtts, trials, loss, seed))?;
    report(&profile, loss, &rows);
    Ok(())
}

async fn run(text: &str, rtts: &[u64], trials: usize, loss: u8, seed: u64) -> Result<Vec<Row>> {
    let (text, routes) = fleet::behind_relay(&relocate(text, OCTET));
    let relay = Relay::start(routes.clone()).await?;
    relay.set_loss(0, seed);
    // Public (mesh) addresses and client IPs of each site.
    let mut sites: BTreeMap<u8, (Vec<IpAddr>, Vec<SocketAddr>)> = BTreeMap::new();
    for (public, _) in &routes {
        let s = sites.entry(fleet::site_octet(public.ip())).or_default();
        s.0.push(public.ip());
        s.1.push(*public);
    }
    let mut f = LocalFleet::start(&text, None, false).await?;
    let mut w = fleet::Watcher::new(&mut f)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let site = SiteId::from("a");
    let mut rows = Vec::new();
    for &rtt in rtts {
        let faults = LinkFaults {
            delay: Duration::from_micros(rtt * 500),
            loss_percent: loss,
        };
        relay.clear_links();
        for (x, (ips, _)) in &sites {
            for (y, (_, publics)) in &sites {
                if x != y {
                    relay.set_link(ips, publics, faults);
                }
            }
        }
        fleet::settle(&f, "the new delay").await?;
        w.idle(Duration::from_secs(2)).await;
        w.trials = fleet::Trials::default();
        w.one_way = faults.delay;
        let t = Instant::now();
        let label = format!("RTT {rtt:3} ms");
        fleet::blackouts(&mut f, &mut w, &site, trials, &mut rng, &label).await?;
        let secs = t.elapsed().as_secs_f64();
        let fv = w.trials.false_verdicts.len();
        println!("RTT {rtt} ms: {fv} false verdicts in {secs:.0} s");
        rows.push(Row {
            rtt,
            trials: std::mem::take(&mut w.trials),
            seconds: secs,
        });
    }
    let stats = relay.stats();
    println!(
        "relay: {} packets forwarded, {} dropped",
        stats.forwarded, stats.dropped
    );
    f.shutdown().await;
    relay.shutdown().await;
    Ok(rows)
}

fn report(profile: &str, loss: u8, rows: &[Row]) {
    println!(
        "\nBlackout -> DOWN committed at every surviving voter, {profile} profile, {loss} % loss between sites (nearest-rank percentiles)\n"
    );
    println!("| RTT (ms) | trials | p50 (ms) | p99 (ms) | max (ms) | mean (ms) | false verdicts | observed (s) | goal: p50 ≤ p50(0 ms) + RTT/2 + 10 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let base = base_p50(rows, |t| &t.detection_ms);
    for r in rows {
        let (n, p50, p99, max, mean) = summary(r.trials.detection_ms.iter().copied());
        row!(
            r.rtt,
            n,
            f1(p50),
            f1(p99),
            f1(max),
            f1(mean),
            r.trials.false_verdicts.len(),
            format!("{:.0}", r.seconds),
            goal(base, r.rtt, p50)
        );
    }
    println!(
        "\nThe vote alone: the majority-th DOWN opinion of the electorate (taken by a surviving \
         voter's own Pinger) -> DOWN committed at every surviving voter. The blackout's last \
         answers still cross the WAN for up to RTT/2 after it, so the Pingers of b and c see \
         it later by that much; this leaves that out.\n"
    );
    println!("| RTT (ms) | trials | p50 (ms) | p99 (ms) | max (ms) | mean (ms) | goal: p50 ≤ p50(0 ms) + RTT/2 + 10 |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    let base = base_p50(rows, |t| &t.vote_ms);
    for r in rows {
        let (n, p50, p99, max, mean) = summary(r.trials.vote_ms.iter().copied());
        let goal = goal(base, r.rtt, p50);
        row!(r.rtt, n, f1(p50), f1(p99), f1(max), f1(mean), goal);
    }
    println!(
        "\nThe vote over its floor: the floor is the earliest moment at which every surviving \
         voter could know that a majority saw the site DOWN, whatever the protocol, given when \
         each voter's Pinger took its DOWN opinion (a voter hears another site's opinion RTT/2 \
         after it was taken, its own site's at once); this is DOWN committed at every surviving \
         voter minus that floor: the vote's own cost.\n"
    );
    println!("| RTT (ms) | trials | p50 (ms) | p99 (ms) | max (ms) | mean (ms) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (n, p50, p99, max, mean) = summary(r.trials.over_floor_ms.iter().copied());
        row!(r.rtt, n, f1(p50), f1(p99), f1(max), f1(mean));
    }
}

/// The p50 of the 0 ms row's `of`, the reference of the goals.
fn base_p50(rows: &[Row], of: impl Fn(&fleet::Trials) -> &Vec<f64>) -> Option<f64> {
    rows.iter()
        .find(|r| r.rtt == 0)
        .map(|r| summary(of(&r.trials).iter().copied()).1)
}

/// The goal of one RTT's row: p50 at most the 0 ms row's p50 (`base`) + RTT/2 + 10 ms.
fn goal(base: Option<f64>, rtt: u64, p50: f64) -> String {
    match base {
        Some(b) if rtt > 0 => {
            let limit = b + rtt as f64 / 2.0 + 10.0;
            let verdict = if p50 <= limit { "met" } else { "MISSED" };
            format!("≤ {limit:.1}: {verdict} (+{:.1} over 0 ms)", p50 - b)
        }
        Some(_) => "(reference)".to_string(),
        None => "- (no 0 ms row)".to_string(),
    }
}
