//! `quorate demo`: the three-site fleet on loopback in one process, with throw-away
//! certificates and data, and an optional blackout of one site with its timeline.

use crate::core::types::{NodeId, Outcome, SiteId};
use crate::localfleet::{LocalFleet, LocalFleetError};
use crate::node::{EventKind, NodeEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub const THREE_SITES: &str = include_str!("../config/three-sites.toml");
pub const THREE_SITES_FAST: &str = include_str!("../config/three-sites-fast.toml");

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub fast: bool,
    pub blackout: Option<SiteId>,
    pub at: Duration,
    pub exit_after_verdict: bool,
    /// Give up waiting for the verdict after this long.
    pub verdict_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Fleet(#[from] LocalFleetError),
    #[error("site {0} is not watched by the demo fleet (watched: {1})")]
    UnknownSite(SiteId, String),
    #[error("no committed DOWN verdict for {site} at every surviving voter within {secs} s (have: {have})")]
    NoVerdict {
        site: SiteId,
        secs: u64,
        have: String,
    },
}

/// The JSON line the demo prints last after a blackout.
#[derive(Debug, serde::Serialize)]
pub struct BlackoutResult {
    pub site: SiteId,
    pub verdict: &'static str,
    pub epoch: u64,
    pub leader: NodeId,
    /// Blackout -> verdict committed at every surviving voter.
    pub detection_ms: f64,
    /// Blackout -> the first surviving voter knew the verdict.
    pub first_verdict_ms: f64,
    pub voters: Vec<NodeId>,
}

pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let text = if opts.fast {
        THREE_SITES_FAST
    } else {
        THREE_SITES
    };
    let mut fleet = LocalFleet::start(text, None, true).await?;
    let t = &fleet.fleet.timing;
    println!(
        "quorate demo: {} nodes on loopback ({} profile: probe every {} ms, timeout {} ms, {} retries)",
        fleet.fleet.nodes.len(),
        if opts.fast { "fast" } else { "DRL" },
        t.probe_interval.as_millis(),
        t.probe_timeout.as_millis(),
        t.retries
    );
    println!(
        "certificates, fleet file and SQLite data in {} (removed on exit)",
        fleet.dir.display()
    );
    for n in &fleet.fleet.nodes {
        let roles: Vec<&str> = [
            ("indicator", n.roles.indicator),
            ("pinger", n.roles.pinger),
            ("voter", n.roles.voter),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(r, _)| *r)
        .collect();
        println!(
            "  {:<4} site {:<3} {:<26} http://{}/v1/status",
            n.id,
            n.site,
            roles.join(","),
            n.api
        );
    }
    let mut events = fleet.take_events().expect("events not taken yet");
    let Some(site) = opts.blackout.clone() else {
        println!(
            "running; Ctrl-C to stop (try, in another shell: quorate status --api {api} \
             or curl http://{api}/v1/sites)",
            api = fleet.fleet.nodes[0].api
        );
        let _ = tokio::signal::ctrl_c().await;
        fleet.shutdown().await;
        return Ok(());
    };
    if fleet.fleet.watch(&site).is_none() {
        let watched: Vec<String> = fleet
            .fleet
            .watches
            .iter()
            .map(|w| w.site.to_string())
            .collect();
        fleet.shutdown().await;
        return Err(DemoError::UnknownSite(site, watched.join(", ")));
    }
    println!(
        "blackout of site {site} in {:.1} s (Ctrl-C to stop)",
        opts.at.as_secs_f64()
    );
    tokio::select! {
        _ = tokio::time::sleep(opts.at) => {}
        _ = tokio::signal::ctrl_c() => { fleet.shutdown().await; return Ok(()); }
    }
    while events.try_recv().is_ok() {}
    let blackout = Instant::now();
    let stopped = fleet.stop_site(&site).await;
    println!("site {site} blacked out: stopped {}", names(&stopped));
    println!("timeline (ms after the blackout):");
    let survivors: BTreeSet<NodeId> = fleet.running_voters().into_iter().collect();
    let mut known: BTreeMap<NodeId, (Instant, u64, NodeId)> = BTreeMap::new();
    let mut printer = Timeline::default();
    let deadline = tokio::time::Instant::now() + opts.verdict_timeout;
    while known.len() < survivors.len() {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = tokio::time::sleep_until(deadline) => None,
            _ = tokio::signal::ctrl_c() => { fleet.shutdown().await; return Ok(()); }
        };
        let Some(ev) = ev else { break };
        printer.print(blackout, &ev);
        if let EventKind::Verdict {
            site: s,
            outcome: Outcome::Down,
            epoch,
            leader,
        } = &ev.kind
        {
            if *s == site && survivors.contains(&ev.node) {
                known.insert(ev.node.clone(), (ev.at, *epoch, leader.clone()));
            }
        }
    }
    if known.len() < survivors.len() {
        let have = names(&known.keys().cloned().collect::<Vec<_>>());
        fleet.shutdown().await;
        return Err(DemoError::NoVerdict {
            site,
            secs: opts.verdict_timeout.as_secs(),
            have,
        });
    }
    let ms = |i: &Instant| i.saturating_duration_since(blackout).as_secs_f64() * 1000.0;
    let (_, epoch, leader) = known.values().next().cloned().expect("at least one voter");
    let result = BlackoutResult {
        site: site.clone(),
        verdict: "down",
        epoch,
        leader,
        detection_ms: round1(known.values().map(|(at, _, _)| ms(at)).fold(0.0, f64::max)),
        first_verdict_ms: round1(
            known
                .values()
                .map(|(at, _, _)| ms(at))
                .fold(f64::MAX, f64::min),
        ),
        voters: known.keys().cloned().collect(),
    };
    let epochs: BTreeSet<u64> = known.values().map(|(_, e, _)| *e).collect();
    if epochs.len() > 1 {
        eprintln!("warning: voters report different epochs {epochs:?}");
    }
    if !opts.exit_after_verdict {
        println!("every surviving voter shows the verdict; running on, Ctrl-C to stop");
        println!("{}", serde_json::to_string(&result).expect("serializable"));
        loop {
            tokio::select! {
                ev = events.recv() => match ev { Some(ev) => printer.print(blackout, &ev), None => break },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        fleet.shutdown().await;
        return Ok(());
    }
    fleet.shutdown().await;
    println!("{}", serde_json::to_string(&result).expect("serializable"));
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn names(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the steps of a decision once each, relative to the blackout.
#[derive(Default)]
pub struct Timeline {
    first_miss: BTreeSet<(NodeId, SiteId)>,
}

impl Timeline {
    pub fn print(&mut self, origin: Instant, ev: &NodeEvent) {
        let ms = ev.at.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        let what = match &ev.kind {
            EventKind::FirstMiss { site, indicator } => {
                if !self.first_miss.insert((ev.node.clone(), site.clone())) {
                    return;
                }
                format!("first missed probe of site {site} (indicator {indicator})")
            }
            EventKind::Opinion {
                site,
                opinion,
                suspect,
            } => {
                format!(
                    "opinion of {site}: {opinion}{}",
                    if *suspect {
                        " (suspect: latest probes missed)"
                    } else {
                        ""
                    }
                )
            }
            EventKind::RoundStarted {
                site,
                epoch,
                attempt,
                target,
            } => {
                format!(
                    "vote round on {site} {} at epoch {epoch} (attempt {attempt})",
                    target.as_api_str().to_uppercase()
                )
            }
            EventKind::RoundEnded {
                site,
                epoch,
                outcome,
                yes,
                electorate,
            } => {
                format!("round on {site} at epoch {epoch} ended {outcome} ({yes} of {electorate} voters agreed)")
            }
            EventKind::Verdict {
                site,
                outcome,
                epoch,
                leader,
            } => {
                format!(
                    "COMMITTED: site {site} is {} at epoch {epoch} (leader {leader})",
                    outcome.as_api_str().to_uppercase()
                )
            }
        };
        println!("  +{ms:8.1}  {:<4} {what}", ev.node);
    }
}
