//! Deterministic simulation of a whole fleet: virtual time, one seeded RNG, an in-memory
//! network that still round-trips every datagram and message through the real codec, and a
//! fault model drawn from the seed. Every Pinger/Voter node runs the real `NodeCore`, built
//! from a fleet file of the layout (`fleet`) and carried out as the driver does (`world`);
//! steps go to a stand-in actuator (`actuator`). The checkers in `invariants` (verdicts) and
//! `failover` (runs and their effects) judge each event. A seed reproduces its run exactly. Nothing here reads a
//! clock (except to report the simulator's own speed) or touches the network or the disk.

pub mod actuator;
pub mod alarms;
mod calls;
mod cli;
pub mod failover;
pub mod faults;
pub mod fleet;
pub mod invariants;
pub mod liar;
pub mod net;
mod orphan;
pub mod world;

use crate::config::Timing;
use crate::core::node::BrokenRules;
use crate::core::quorum::Electorate;
use crate::core::replica::ReplicaConfig;
use crate::core::types::{NodeId, Outcome, SiteId, Time};
use crate::store::MemoryStore;
use actuator::StepProfile;
use failover::FailoverChecker;
use faults::{Layout, Scenario};
use invariants::{Checker, Judged, ViolationKind};
use net::{EventKind, Queue, Traffic};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use world::{Counters, Node, World};

pub use cli::{cli, SimArgs};

/// When every fault of the failover scenario but a site's blackout has stopped.
pub const FAILOVER_CALM: Duration = Duration::from_secs(11);

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of sites; the last one is a witness (voters only, never judged).
    pub sites: usize,
    pub voters_per_site: usize,
    /// Indicators of each judged site (its voters count, the rest are indicator-only nodes).
    pub indicators_per_site: usize,
    /// Datagram loss; the `loss` scenario uses at least `loss_scenario`.
    pub loss: f64,
    pub loss_scenario: f64,
    /// `None` cycles through every scenario by seed.
    pub scenario: Option<Scenario>,
    pub timing: Timing,
    /// Virtual length of a run.
    pub horizon: Duration,
    /// Trace lines kept for a violation report (0 disables the trace).
    pub trace_lines: usize,
    /// Feeds every voter a wrong electorate (only its own site's voters), so that the checker
    /// can be shown to catch a minority deciding. Never set outside tests.
    #[doc(hidden)]
    pub broken_quorum: bool,
    /// Failover rules switched off in every core, so that tests can show each new invariant
    /// catching the run its rule prevents. Never set outside tests.
    #[doc(hidden)]
    pub broken: BrokenRules,
    /// The failover scenario's lying member sends forgeries. Off: the cores do not refuse
    /// forged verdicts, maintenance calls and run messages from non-members yet.
    pub liars: bool,
    /// Overrides the failover scenario's step behaviour (failure and slowness rates).
    pub steps: Option<StepProfile>,
    /// The core defects the checker knows by signature (`failover::KnownDefects`) are
    /// violations. Off by default while the core has them: they are counted and shown on
    /// every run instead, so that every other invariant stays checked in CI.
    pub strict: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            sites: 3,
            voters_per_site: 2,
            indicators_per_site: 3,
            loss: 0.0,
            loss_scenario: 0.2,
            scenario: None,
            timing: Timing::default(),
            horizon: Duration::from_secs(7),
            trace_lines: 50,
            broken_quorum: false,
            broken: BrokenRules::default(),
            liars: false,
            steps: None,
            strict: false,
        }
    }
}

impl SimConfig {
    /// The fast profile of `config/three-sites-fast.toml`: 20 ms probes, 3 retries, 100 ms
    /// vote timeout.
    pub fn fast(mut self) -> SimConfig {
        let t = &mut self.timing;
        t.probe_interval = Duration::from_millis(20);
        t.probe_timeout = Duration::from_millis(20);
        t.retries = 3;
        t.vote_timeout = Duration::from_millis(100);
        t.revote_after = t.probe_budget() * 5;
        self
    }

    pub fn scenario_of(&self, seed: u64) -> Scenario {
        self.scenario
            .unwrap_or(Scenario::ALL[(seed % Scenario::ALL.len() as u64) as usize])
    }

    /// Detection bound: one probe budget until every Pinger sees the site DOWN,
    /// `max_vote_rounds` undecided rounds, one commit round, and two more probe budgets for
    /// the spread of Pinger phases, retry pauses and duels between proposers.
    /// With the DRL timings: 600 + 900 + 300 + 1200 = 3000 ms.
    pub fn liveness_bound(&self) -> Duration {
        let t = &self.timing;
        t.probe_budget() * 3 + t.vote_timeout * (t.max_vote_rounds + 1)
    }

    /// How far back a DOWN verdict's evidence may reach: a streak of misses as long as the
    /// probe budget, evidence up to one budget old, and the vote rounds.
    pub fn evidence_window(&self) -> Duration {
        let t = &self.timing;
        t.probe_budget() * 2 + t.vote_timeout * (t.max_vote_rounds + 1)
    }
}

/// A broken invariant, with what is needed to reproduce and understand it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed} (scenario {scenario}): {kind:?} at {at_ms} ms: {detail}")]
pub struct Violation {
    pub seed: u64,
    pub scenario: &'static str,
    pub kind: ViolationKind,
    pub at_ms: u64,
    pub detail: String,
    pub trace: Vec<String>,
}

/// What one seed did.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedReport {
    pub seed: u64,
    pub scenario: &'static str,
    /// (site, slot, outcome, epoch, first known at µs).
    pub verdicts: Vec<(SiteId, u64, Outcome, u64, u64)>,
    /// Blackout -> first DOWN commit, µs of virtual time.
    pub detect_first_us: Option<u64>,
    /// Blackout -> the DOWN verdict known at every voter outside the site that is up at the end.
    pub detect_all_us: Option<u64>,
    pub counters: Counters,
    pub traffic: BTreeMap<NodeId, Traffic>,
    pub virtual_us: u64,
}

fn site_name(i: usize) -> SiteId {
    SiteId(((b'a' + i as u8) as char).to_string())
}

/// The alarm scenario's extra settling time: every member's stagger before it asks the lock
/// (its bound times its rank plus one), and a retry after an undecided proposal (twice the
/// bound) on top: the lock's bound times the electorate's size plus three.
fn alarm_bound(fleet: &crate::config::Fleet, site: &SiteId, alarm: bool) -> Duration {
    let lock = crate::core::oplock::LockConfig::from_timing(&fleet.timing);
    let members = fleet.electorate(site).len() as u32;
    match alarm {
        true => lock.bound * (members + 3),
        false => Duration::ZERO,
    }
}

/// How long after `calm` every run that began must have completed: a lost leader's lease and
/// the stagger of every candidate, one failed campaign, then every attempt of every step of
/// the plan (compensations included) timing out with the longest backoffs, and a second.
pub fn settle_bound(fleet: &crate::config::Fleet, site: &SiteId) -> Duration {
    let replica = ReplicaConfig::from_status_interval(fleet.timing.status_interval);
    let members = fleet.electorate(site).len() as u32;
    let takeover = replica.lease * 2 + replica.heartbeat * members;
    let Some(plan) = fleet.watch(site).and_then(|w| w.plan.as_ref()) else {
        return takeover;
    };
    fn one(s: &crate::core::pipeline::StepSpec) -> Duration {
        let attempts = s.timeout * (s.retries + 1);
        let waits: Duration = (1..=s.retries).map(|f| s.retry_delay(f)).sum();
        attempts + waits + s.compensation.as_deref().map_or(Duration::ZERO, one)
    }
    let p = &plan.pipeline;
    let steps: Duration = p
        .prechecks
        .iter()
        .chain(&p.steps)
        .chain(&p.post)
        .map(one)
        .sum();
    takeover + steps + Duration::from_secs(1)
}

fn build(cfg: &SimConfig, seed: u64) -> (World, Scenario, Time) {
    let mut rng = StdRng::seed_from_u64(seed);
    let nsites = cfg.sites.max(3);
    let sites: Vec<SiteId> = (0..nsites).map(site_name).collect();
    let judged_sites = &sites[..nsites - 1];
    let scenario = cfg.scenario_of(seed);
    let failover = scenario == Scenario::Failover;
    let alarm = scenario == Scenario::Alarm;
    let plans = failover || alarm;
    // Drawn apart from the seed's main stream, so that the other faults stay as they were.
    let on_alarm = match scenario {
        Scenario::Alarm if seed % 5 < 3 => Some("prestage"),
        Scenario::Alarm => Some("failover"),
        Scenario::Mixed => Some("notify"),
        _ => None,
    };
    // Nodes: per site, K voters (with an Indicator on judged sites), then indicator-only nodes.
    let mut nodes: Vec<fleet::LayoutNode> = Vec::new();
    for (si, s) in sites.iter().enumerate() {
        let judged = si < nsites - 1;
        for k in 0..cfg.voters_per_site {
            nodes.push(fleet::LayoutNode {
                id: NodeId::from(format!("{s}{}", k + 1)),
                site: s.clone(),
                voter: true,
                indicator: judged,
            });
        }
        if judged {
            for k in cfg.voters_per_site..cfg.indicators_per_site.max(cfg.voters_per_site) {
                nodes.push(fleet::LayoutNode {
                    id: NodeId::from(format!("{s}{}", k + 1)),
                    site: s.clone(),
                    voter: false,
                    indicator: true,
                });
            }
        }
    }
    let mut timing = cfg.timing.clone();
    if plans {
        timing.status_interval = fleet::STATUS_INTERVAL;
    }
    let fleet = Arc::new(fleet::build(&timing, &sites, &nodes, plans, on_alarm));
    let judged: Vec<Judged> = judged_sites
        .iter()
        .map(|x| Judged {
            site: x.clone(),
            electorate: fleet
                .electorate(x)
                .into_iter()
                .map(|n| {
                    let s = fleet.node(&n).expect("member").site.clone();
                    (n, s)
                })
                .collect(),
            indicators: fleet.indicators(x),
        })
        .collect();
    let voters: Vec<(SiteId, Vec<NodeId>)> = sites
        .iter()
        .map(|s| {
            let v = nodes
                .iter()
                .filter(|n| &n.site == s && n.voter)
                .map(|n| n.id.clone())
                .collect();
            (s.clone(), v)
        })
        .collect();
    let settle = settle_bound(&fleet, &sites[0]) + alarm_bound(&fleet, &sites[0], alarm);
    let calm = Time::ZERO + FAILOVER_CALM;
    let horizon = if plans {
        (calm + settle + Duration::from_millis(500)).max(Time::ZERO + cfg.horizon)
    } else {
        Time::ZERO + cfg.horizon
    };
    let layout = Layout {
        sites: &sites,
        voters: &voters,
        horizon,
        probe_timeout: timing.probe_timeout,
        calm,
        steps: cfg.steps.unwrap_or_default(),
    };
    let loss = if scenario == Scenario::Loss {
        cfg.loss.max(cfg.loss_scenario)
    } else {
        cfg.loss
    };
    let mut faults = faults::draw(scenario, &layout, loss, &mut rng, seed);
    if on_alarm.is_some() {
        let members = fleet.electorate(&sites[0]);
        let outsider = voters[0].1[0].clone();
        let until = if alarm {
            calm
        } else {
            Time::ZERO + cfg.horizon
        };
        let from = Time::ZERO + Duration::from_millis(300);
        let until = Time(until.0.saturating_sub(1_000_000));
        faults.alarms = alarms::draw(seed, &members, &outsider, from, until, true);
    }
    // One outage per node at a time keeps each outage's meaning plain.
    let mut kept: Vec<faults::Outage> = Vec::new();
    for o in faults.outages.drain(..) {
        if !kept
            .iter()
            .any(|k| k.node == o.node && k.start <= o.end && o.start <= k.end)
        {
            kept.push(o);
        }
    }
    faults.outages = kept;

    let world_nodes: Vec<Node> = nodes
        .iter()
        .map(|n| {
            let electorates = cfg.broken_quorum.then(|| {
                judged
                    .iter()
                    .filter(|j| n.voter && j.electorate.iter().any(|(m, _)| *m == n.id))
                    .map(|j| {
                        let own = j
                            .electorate
                            .iter()
                            .filter(|(_, s)| *s == n.site)
                            .map(|(m, _)| m.clone());
                        (j.site.clone(), Electorate::new(own))
                    })
                    .collect()
            });
            Node {
                id: n.id.clone(),
                site: n.site.clone(),
                indicator: n.indicator,
                voter: n.voter,
                electorates,
                core: None,
                store: MemoryStore::new(),
                up: true,
                frozen: false,
                backlog: Vec::new(),
                incarnation: 0,
                timer_at: None,
                wall_offset: 0,
                down_since: None,
                ticked: false,
            }
        })
        .collect();
    let mut checker = Checker::new(judged, cfg.evidence_window(), cfg.liveness_bound());
    // A Pinger's DOWN needs every probe of `retries` rounds to every Indicator lost; when loss
    // makes that streak plausible somewhere in thousands of runs, a DOWN opinion is honest
    // evidence and the false-verdict check cannot tell a bug from bad luck.
    let round_trip_loss = 1.0 - (1.0 - faults.loss).powi(2);
    let streak =
        round_trip_loss.powi((cfg.timing.retries as usize * cfg.indicators_per_site.max(1)) as i32);
    checker.false_verdicts_checked = streak < 1e-6;
    let mut q = Queue::default();
    let mut times: Vec<Time> = Vec::new();
    for b in &faults.blackouts {
        times.push(b.start);
        times.extend(b.end);
    }
    for o in &faults.outages {
        times.extend([o.start, o.end]);
    }
    for t in times {
        q.push(t, EventKind::Faults);
    }
    for (k, b) in faults.blackouts.iter().enumerate() {
        q.push(
            b.start + cfg.liveness_bound(),
            EventKind::Liveness { blackout: k },
        );
    }
    let index = |id: &NodeId| nodes.iter().position(|n| &n.id == id).expect("known node");
    for (node, at, by_us) in &faults.wall_steps {
        q.push(
            *at,
            EventKind::WallStep {
                node: index(node),
                by_us: *by_us,
            },
        );
    }
    for (k, (at, _)) in faults.leader_crashes.iter().enumerate() {
        q.push(*at, EventKind::LeaderCrash { k });
    }
    for (k, c) in faults.operator.iter().enumerate() {
        q.push(c.at, EventKind::Operator { k });
    }
    for (k, c) in faults.alarms.calls.iter().enumerate() {
        q.push(c.at, EventKind::AlarmCall { k });
    }
    if plans {
        q.push(calm + settle, EventKind::RunsSettled);
    }
    let liar = (plans && cfg.liars)
        .then(|| nodes.iter().position(|n| n.site == sites[0] && !n.voter))
        .flatten();
    if liar.is_some() {
        q.push(Time::ZERO + Duration::from_secs(1), EventKind::Liar);
    }
    let propagation = timing.status_interval * 2 + Duration::from_millis(500);
    let mut checks = FailoverChecker::new(fleet.clone(), propagation);
    checks.strict = cfg.strict;
    let mut w = World::new(
        timing,
        fleet,
        cfg.broken,
        world_nodes,
        q,
        faults,
        rng,
        checker,
        checks,
        cfg.trace_lines,
    );
    w.liar = liar;
    w.alarms.mode = w
        .fleet
        .watch(&sites[0])
        .and_then(|x| x.plan.as_ref())
        .map(|p| p.on_alarm);
    for i in 0..w.nodes.len() {
        w.boot(i).expect("a fresh store boots");
    }
    (w, scenario, horizon)
}

/// Runs one seeded world to its horizon, checking every invariant after every event.
pub fn run_seed(cfg: &SimConfig, seed: u64) -> Result<SeedReport, Violation> {
    let (mut w, scenario, horizon) = build(cfg, seed);
    // Generous: a healthy run has a few hundred thousand events at most.
    let max_events = 50_000_000u64;
    let fail = |w: &World, kind, detail: String| Violation {
        seed,
        scenario: scenario.name(),
        kind,
        at_ms: w.now.0 / 1000,
        detail,
        trace: w.trace.iter().cloned().collect(),
    };
    while let Some(ev) = w.q.pop() {
        if ev.at > horizon {
            break;
        }
        w.now = ev.at;
        w.counters.events += 1;
        if w.counters.events > max_events {
            return Err(fail(&w, ViolationKind::Runaway, "too many events".into()));
        }
        let r = match ev.kind {
            EventKind::Timer { node, incarnation } => w.on_timer(node, incarnation),
            EventKind::Deliver {
                to,
                from,
                datagram,
                bytes,
            } => w.on_deliver(to, from, datagram, bytes),
            EventKind::Faults => {
                w.log(|| "faults change".into());
                w.apply_faults()
            }
            EventKind::Liveness { blackout } => {
                let b = w.faults.blackouts[blackout].clone();
                w.checker.check_liveness(&b.site, b.start, &w.faults)
            }
            EventKind::StepEnd { attempt } => w.on_step_end(attempt),
            EventKind::WallStep { node, by_us } => {
                w.nodes[node].wall_offset += by_us;
                let id = w.nodes[node].id.clone();
                w.log(|| format!("{id}'s wall clock steps by {} s", by_us / 1_000_000));
                Ok(())
            }
            EventKind::LeaderCrash { k } => w.on_leader_crash(k),
            EventKind::Operator { k } => w.on_operator(k),
            EventKind::Liar => w.on_liar(),
            EventKind::AlarmCall { k } => w.on_alarm_call(k),
            EventKind::RunsSettled => {
                let site = w.fleet.sites[0].id.clone();
                let alarm = scenario == Scenario::Alarm;
                let bound = settle_bound(&w.fleet, &site) + alarm_bound(&w.fleet, &site, alarm);
                let calm = Time::ZERO + FAILOVER_CALM;
                w.failover
                    .check_settled(w.now, calm, bound, &w.faults)
                    .and_then(|()| w.check_orphan(calm))
                    .and_then(|()| w.check_alarms_settled(calm))
            }
        };
        if let Err((kind, detail)) = r {
            return Err(fail(&w, kind, detail));
        }
    }
    Ok(report(&w, seed, scenario, horizon))
}

fn report(w: &World, seed: u64, scenario: Scenario, horizon: Time) -> SeedReport {
    let verdicts = w
        .checker
        .commits
        .iter()
        .map(|((s, slot), (v, at))| (s.clone(), *slot, v.outcome, v.epoch, at.0))
        .collect();
    let (mut first, mut all) = (None, None);
    if let Some(b) = w.faults.blackouts.first() {
        let down = w
            .checker
            .commits
            .iter()
            .filter(|((s, slot), (_, at))| {
                *s == b.site && Outcome::of_slot(*slot) == Outcome::Down && *at >= b.start
            })
            .min_by_key(|(_, (_, at))| *at);
        if let Some((key, (_, at))) = down {
            first = Some(at.0 - b.start.0);
            let known = &w.checker.known_at[key];
            let survivors: Vec<&Node> = w
                .nodes
                .iter()
                .filter(|n| n.site != b.site && n.up && n.core.is_some())
                .collect();
            if survivors.iter().all(|n| known.contains_key(&n.id)) {
                all = survivors.iter().map(|n| known[&n.id].0 - b.start.0).max();
            }
        }
    }
    let ids: Vec<NodeId> = w.nodes.iter().map(|n| n.id.clone()).collect();
    SeedReport {
        seed,
        scenario: scenario.name(),
        verdicts,
        detect_first_us: first,
        detect_all_us: all,
        counters: Counters {
            known: w.failover.known,
            alarms: w.alarms.figures,
            ..w.counters.clone()
        },
        traffic: w.net.by_node(&ids),
        virtual_us: horizon.0,
    }
}

/// What a batch of seeds did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub wall: Duration,
    pub violations: Vec<Violation>,
    pub by_scenario: BTreeMap<&'static str, u64>,
    pub detect_first_ms: Vec<f64>,
    pub detect_all_ms: Vec<f64>,
    pub blackouts_undisseminated: u64,
    pub false_verdicts: u64,
    pub undecided_rounds: u64,
    pub contradicted_rounds: u64,
    pub fast_decided: u64,
    pub classic_decided: u64,
    pub restarts: u64,
    /// Run steps started, effects recorded and runs journaled as finished (failover scenario).
    pub steps_started: u64,
    pub effects: u64,
    pub runs_finished: u64,
    /// DOWN verdicts whose leader crashed as they were committed or saw the site up
    /// (`sim::orphan`).
    pub orphaned: u64,
    /// Known core defects seen (see `SimConfig::strict`).
    pub known: failover::KnownDefects,
    pub alarms: alarms::AlarmFigures,
    /// Time spent per scenario, summed over threads.
    pub scenario_wall: BTreeMap<&'static str, Duration>,
    pub msgs_per_node_per_s: f64,
    pub bytes_per_node_per_s: f64,
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

impl Summary {
    pub fn seeds_per_sec(&self) -> f64 {
        self.seeds as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeds: {}  violations: {}  wall: {:.2} s  ({:.0} seeds/s)",
            self.seeds,
            self.violations.len(),
            self.wall.as_secs_f64(),
            self.seeds_per_sec()
        )?;
        let sc: Vec<String> = self
            .by_scenario
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "scenarios: {}", sc.join(" "))?;
        for (name, v) in [
            ("blackout -> first commit", &self.detect_first_ms),
            (
                "blackout -> known at every surviving voter",
                &self.detect_all_ms,
            ),
        ] {
            writeln!(
                f,
                "{name}: n={} p50={:.0} ms p99={:.0} ms max={:.0} ms",
                v.len(),
                pct(v, 0.5),
                pct(v, 0.99),
                v.last().copied().unwrap_or(f64::NAN)
            )?;
        }
        writeln!(
            f,
            "false verdicts: {}  undecided rounds: {}  contradicted (internal false positive) rounds: {}  restarts: {}  blackouts decided but not known everywhere at the end: {}",
            self.false_verdicts,
            self.undecided_rounds,
            self.contradicted_rounds,
            self.restarts,
            self.blackouts_undisseminated
        )?;
        writeln!(
            f,
            "slots decided: {} in the fast round, {} after a classic round started",
            self.fast_decided, self.classic_decided
        )?;
        writeln!(
            f,
            "failover: {} steps started, {} effects, {} runs finished, {} verdicts orphaned (leader crashed as they committed, or saw the site up)",
            self.steps_started, self.effects, self.runs_finished, self.orphaned
        )?;
        let k = &self.known;
        writeln!(
            f,
            "known core defects (violations with --strict): retries overlapping their leader's previous attempt: {}, resumed steps overlapping the crashed process's attempt: {}, runs beginning after their leader knew a newer verdict: {}, withdraws leaving a prefix unannounced after an unrecorded self-fence: {}, lock runs registered under a verdict run's epoch: {}",
            k.retry_overlaps, k.resume_overlaps, k.stale_begins, k.unrecorded_fences, k.reused_epochs
        )?;
        writeln!(f, "{}", self.alarms)?;
        let speed: Vec<String> = self
            .scenario_wall
            .iter()
            .map(|(k, w)| {
                let n = self.by_scenario.get(k).copied().unwrap_or(0) as f64;
                format!("{k}={:.0}", n / w.as_secs_f64().max(1e-9))
            })
            .collect();
        writeln!(
            f,
            "seeds per second of one thread, by scenario: {}",
            speed.join(" ")
        )?;
        write!(
            f,
            "traffic: {:.1} messages and {:.0} bytes sent per node per virtual second",
            self.msgs_per_node_per_s, self.bytes_per_node_per_s
        )
    }
}

/// Runs every seed of `seeds` (on every core; each seed alone is deterministic) and sums up.
pub fn run_many(cfg: &SimConfig, seeds: Range<u64>) -> Summary {
    let start = std::time::Instant::now();
    let list: Vec<u64> = seeds.collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(list.len().max(1));
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| list.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let mut results: Vec<(u64, Result<SeedReport, Violation>, Duration)> =
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        c.iter()
                            .map(|&x| {
                                let t = std::time::Instant::now();
                                let r = run_seed(cfg, x);
                                (x, r, t.elapsed())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("simulation thread"))
                .collect()
        });
    results.sort_by_key(|(s, _, _)| *s);
    let mut sum = Summary {
        seeds: list.len() as u64,
        ..Summary::default()
    };
    let (mut msgs, mut bytes, mut node_secs) = (0u64, 0u64, 0f64);
    for (seed, r, took) in results {
        let name = cfg.scenario_of(seed).name();
        *sum.by_scenario.entry(name).or_default() += 1;
        *sum.scenario_wall.entry(name).or_default() += took;
        match r {
            Err(v) => {
                if v.kind == ViolationKind::FalseVerdict {
                    sum.false_verdicts += 1;
                }
                sum.violations.push(v);
            }
            Ok(rep) => {
                if let Some(t) = rep.detect_first_us {
                    sum.detect_first_ms.push(t as f64 / 1000.0);
                    match rep.detect_all_us {
                        Some(a) => sum.detect_all_ms.push(a as f64 / 1000.0),
                        None => sum.blackouts_undisseminated += 1,
                    }
                }
                sum.undecided_rounds += rep.counters.undecided_rounds;
                sum.contradicted_rounds += rep.counters.contradicted_rounds;
                sum.fast_decided += rep.counters.fast_decided;
                sum.classic_decided += rep.counters.classic_decided;
                sum.restarts += rep.counters.restarts;
                sum.steps_started += rep.counters.steps_started;
                sum.effects += rep.counters.effects;
                sum.runs_finished += rep.counters.runs_finished;
                sum.orphaned += rep.counters.orphaned;
                let k = &rep.counters.known;
                sum.known.retry_overlaps += k.retry_overlaps;
                sum.known.resume_overlaps += k.resume_overlaps;
                sum.known.stale_begins += k.stale_begins;
                sum.known.unrecorded_fences += k.unrecorded_fences;
                sum.known.reused_epochs += k.reused_epochs;
                sum.alarms.add(&rep.counters.alarms);
                for t in rep.traffic.values() {
                    msgs += t.sent_msgs;
                    bytes += t.sent_bytes;
                }
                node_secs += rep.traffic.len() as f64 * rep.virtual_us as f64 / 1e6;
            }
        }
    }
    sum.detect_first_ms.sort_by(f64::total_cmp);
    sum.detect_all_ms.sort_by(f64::total_cmp);
    if node_secs > 0.0 {
        sum.msgs_per_node_per_s = msgs as f64 / node_secs;
        sum.bytes_per_node_per_s = bytes as f64 / node_secs;
    }
    sum.wall = start.elapsed();
    sum
}
