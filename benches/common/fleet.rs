//! Blackout trials on a loopback fleet (`LocalFleet`), shared by the benches that time
//! blackout -> DOWN verdict committed at every surviving voter and count false verdicts.
// Each bench includes this file as its own module and uses only part of it.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use quorate::core::types::{NodeId, Outcome, SiteId};
use quorate::localfleet::LocalFleet;
use quorate::node::{EventKind, NodeEvent};
use rand::{rngs::StdRng, Rng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

pub const WAIT: Duration = Duration::from_secs(30);

/// Every running voter's own Pinger sees each site it watches UP, and none shows a DOWN verdict.
pub fn steady(f: &LocalFleet) -> bool {
    f.running_voters().iter().all(|id| {
        let Some(s) = f.snapshot(id) else {
            return false;
        };
        s.sites
            .iter()
            .all(|v| (v.id == s.site || v.opinion == "up") && v.verdict != "down")
    })
}

pub async fn settle(f: &LocalFleet, when: &str) -> Result<()> {
    if !f.wait_until(WAIT, steady).await {
        bail!("fleet not back to UP {} s after {when}", WAIT.as_secs());
    }
    Ok(())
}

/// What the blackout trials of one fleet saw.
#[derive(Default)]
pub struct Trials {
    /// Per trial, ms from the blackout to the DOWN verdict committed at every surviving voter.
    pub detection_ms: Vec<f64>,
    /// Per trial, ms from the majority-th DOWN opinion of the surviving voters' own Pingers (a
    /// majority of the electorate) to the DOWN verdict committed at every surviving voter:
    /// what the vote itself costs.
    pub vote_ms: Vec<f64>,
    /// Per trial, ms from the vote's floor to the DOWN verdict committed at every surviving
    /// voter: what the vote costs above what the network makes it wait (`vote_floor`).
    pub over_floor_ms: Vec<f64>,
    /// DOWN verdicts no blackout explains: for another site, or for the blacked-out site
    /// after the fleet had committed it UP again (counted once per verdict slot).
    pub false_verdicts: BTreeSet<(SiteId, u64)>,
}

/// The events of the fleet, with false DOWN verdicts counted as they pass.
pub struct Watcher {
    events: UnboundedReceiver<NodeEvent>,
    /// The site blacked out right now, if any: its DOWN verdicts are expected.
    pub expected: Option<SiteId>,
    /// The verdict slots of the blackouts: late news of them is no false verdict.
    explained: BTreeSet<(SiteId, u64)>,
    pub trials: Trials,
    /// One-way delay between sites (none inside one), for `vote_floor`.
    pub one_way: Duration,
}

impl Watcher {
    pub fn new(fleet: &mut LocalFleet) -> Result<Watcher> {
        let events = fleet.take_events().context("events already taken")?;
        Ok(Watcher {
            events,
            expected: None,
            explained: BTreeSet::new(),
            trials: Trials::default(),
            one_way: Duration::ZERO,
        })
    }

    fn note(&mut self, ev: &NodeEvent) {
        if let EventKind::Verdict {
            site,
            outcome: Outcome::Down,
            epoch,
            ..
        } = &ev.kind
        {
            let slot = (site.clone(), *epoch);
            if self.expected.as_ref() == Some(site) {
                self.explained.insert(slot);
            } else if !self.explained.contains(&slot) {
                self.trials.false_verdicts.insert(slot);
            }
        }
    }

    /// Reads events for `d`, counting false verdicts.
    pub async fn idle(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, self.events.recv()).await {
            self.note(&ev);
        }
    }

    /// Reads events until every node of `voters` committed `want` for `site`; returns when
    /// the last one did, and when each of `voters` took the matching opinion, in order.
    pub async fn committed(
        &mut self,
        site: &SiteId,
        voters: &[NodeId],
        want: Outcome,
    ) -> Result<(Instant, BTreeMap<NodeId, Instant>)> {
        let mut seen = BTreeSet::new();
        let mut opinions: BTreeMap<NodeId, Instant> = BTreeMap::new();
        let opinion = match want {
            Outcome::Down => "down",
            _ => "up",
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv()).await;
            let Some(ev) = ev.ok().flatten() else {
                bail!("no {want:?} verdict for {site} at every voter: only {seen:?}");
            };
            self.note(&ev);
            match &ev.kind {
                EventKind::Opinion {
                    site: s,
                    opinion: o,
                    ..
                } if s == site && *o == opinion && voters.contains(&ev.node) => {
                    opinions.entry(ev.node.clone()).or_insert(ev.at);
                }
                EventKind::Verdict {
                    site: s, outcome, ..
                } if s == site && *outcome == want && voters.contains(&ev.node) => {
                    seen.insert(ev.node.clone());
                    if seen.len() == voters.len() {
                        return Ok((ev.at, opinions));
                    }
                }
                _ => {}
            }
        }
    }
}

/// `trials` blackouts of `site`: each waits a random 0-1 s (a random phase of the probe
/// schedule), stops every node of the site, times the DOWN commit at every surviving voter,
/// restarts the site and waits until the fleet is UP again. Prints one line per trial.
pub async fn blackouts(
    fleet: &mut LocalFleet,
    w: &mut Watcher,
    site: &SiteId,
    trials: usize,
    rng: &mut StdRng,
    label: &str,
) -> Result<()> {
    let majority = fleet.fleet.electorate(site).len() / 2 + 1;
    for i in 1..=trials {
        w.idle(Duration::from_millis(rng.random_range(0..1000)))
            .await;
        w.expected = Some(site.clone());
        let t0 = Instant::now();
        let stopped = fleet.stop_site(site).await;
        let voters = fleet.running_voters();
        let (down, opinions) = w.committed(site, &voters, Outcome::Down).await?;
        let ms = down.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        // The vote could start once a majority of the electorate saw the site DOWN; a verdict
        // learned before (a voter's own opinion late) costs nothing more.
        let mut at: Vec<Instant> = opinions.values().copied().collect();
        at.sort();
        let vote = at
            .get(majority - 1)
            .map(|o| down.saturating_duration_since(*o).as_secs_f64() * 1000.0);
        let site_of = |id: &NodeId| fleet.fleet.node(id).map(|n| n.site.clone());
        let over = vote_floor(&opinions, &voters, majority, site_of, w.one_way)
            .map(|f| down.saturating_duration_since(f).as_secs_f64() * 1000.0);
        let shown = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        println!(
            "{label} trial {i:2}: blackout -> DOWN at every voter {ms:6.1} ms, \
             majority-th DOWN opinion -> every voter {}, over the vote's floor {}",
            shown(vote),
            shown(over)
        );
        w.trials.detection_ms.push(ms);
        w.trials.vote_ms.extend(vote);
        w.trials.over_floor_ms.extend(over);
        for id in &stopped {
            restart(fleet, id).await?;
        }
        w.committed(site, &voters, Outcome::Up).await?;
        w.expected = None;
        settle(fleet, "a restart").await?;
    }
    Ok(())
}

/// Starts a stopped node again. The stop frees its mesh port (connections still draining move
/// to a throw-away socket; before, one that had seen long round trips over the relay held
/// the port for up to 23 s). Should the port still be bound, retries for a while all the
/// same, and says how long it waited.
async fn restart(fleet: &mut LocalFleet, id: &NodeId) -> Result<()> {
    let started = Instant::now();
    let deadline = started + quorate::node::MESH_IDLE_TIMEOUT + Duration::from_secs(5);
    let mut first_error = None;
    loop {
        match fleet.start_node(id).await {
            Ok(()) => {
                if let Some(e) = first_error {
                    println!(
                        "restart of {id} waited {:.1} s for its mesh port ({e})",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            Err(e) if Instant::now() < deadline => {
                first_error.get_or_insert(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Puts every node of a fleet file behind a relay: each node keeps its `mesh` address (the
/// relay's public address, which peers dial) and binds `mesh_bind` on the same IP, port
/// 7411. Returns the new text and the relay routes (public, bind).
pub fn behind_relay(text: &str) -> (String, Vec<(SocketAddr, SocketAddr)>) {
    let mut out = String::new();
    let mut routes = Vec::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let Some(("mesh", value)) = line.split_once('=').map(|(k, v)| (k.trim(), v)) else {
            continue;
        };
        let value = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if let Ok(public) = value.parse::<SocketAddr>() {
            let bind = SocketAddr::new(public.ip(), 7411);
            out.push_str(&format!("mesh_bind = \"{bind}\"\n"));
            routes.push((public, bind));
        }
    }
    (out, routes)
}

/// The site of a loopback address 127.O.S.N of a relocated fleet file: S.
pub fn site_octet(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => v4.octets()[2],
        IpAddr::V6(_) => 0,
    }
}

/// The vote's floor: the earliest moment at which every surviving voter could know that a
/// majority of the electorate saw the site DOWN, whatever the protocol. A voter hears another
/// voter's opinion `one_way` after it was taken when they are in different sites, at once in
/// the same site; it could know at the majority-th of those moments, and the floor is the
/// latest voter's. None when fewer than a majority took the opinion.
pub fn vote_floor(
    opinions: &BTreeMap<NodeId, Instant>,
    voters: &[NodeId],
    majority: usize,
    site_of: impl Fn(&NodeId) -> Option<SiteId>,
    one_way: Duration,
) -> Option<Instant> {
    let mut floor: Option<Instant> = None;
    for v in voters {
        let mut heard: Vec<Instant> = opinions
            .iter()
            .map(|(x, at)| {
                if site_of(x) == site_of(v) {
                    *at
                } else {
                    *at + one_way
                }
            })
            .collect();
        heard.sort();
        let knows = *heard.get(majority - 1)?;
        floor = Some(floor.map_or(knows, |f| f.max(knows)));
    }
    floor
}
