//! The fault model, in one struct: loss, the delay distribution (which is also what reorders
//! messages), duplication, partitions between sites, site blackouts, node crashes and freezes.
//! A `FaultModel` is plain data drawn once from the seed; the simulator only reads it, so a
//! printed seed reproduces the same faults exactly.

use super::actuator::StepProfile;
use crate::core::types::{NodeId, SiteId, Time};
use rand::rngs::StdRng;
use rand::Rng;
use std::time::Duration;

/// A one-way cut: nothing sent from a node of `from` reaches a node of `to` in `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub from: SiteId,
    pub to: SiteId,
    pub start: Time,
    pub end: Time,
}

/// Every node of `site` stops at `start`; with `end`, all of them restart then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blackout {
    pub site: SiteId,
    pub start: Time,
    pub end: Option<Time>,
}

/// One node is unavailable in `[start, end)`: a crash loses everything but the store; a
/// freeze keeps its memory and works off the backlog at `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    pub node: NodeId,
    pub start: Time,
    pub end: Time,
    pub crash: bool,
}

/// The leader named by the judged site's first DOWN verdict crashes as the verdict is first
/// committed anywhere: when it committed it itself, before it carries out anything after the
/// commit (or only after the Commit broadcast), so its run's register reaches nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitCrash {
    /// How long it stays down (beyond the horizon: for good).
    pub lasts: Duration,
    /// The Commit broadcast still leaves (the others learn the verdict from it rather than by
    /// recovering it in a round of their own).
    pub after_broadcast: bool,
}

/// An operator's call at a node, at a point of true time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorCall {
    pub at: Time,
    pub node: NodeId,
    pub call: Call,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// No automatic failover of `site` for this long (true time).
    Maintenance { site: SiteId, lasts: Duration },
    /// Run the compensations of the site's plan (refused unless the site is UP again).
    Failback { site: SiteId },
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultModel {
    pub seed: u64,
    /// Probability that a datagram (probe or answer) is lost.
    pub loss: f64,
    /// One-way delay = `delay_min` + exponential with mean `delay_mean`.
    pub delay_min: Duration,
    pub delay_mean: Duration,
    /// Probability that a datagram or message is delivered twice.
    pub duplicate: f64,
    pub partitions: Vec<Partition>,
    pub blackouts: Vec<Blackout>,
    pub outages: Vec<Outage>,
    /// A node's wall clock steps by `by_us` at a time (monotonic time is unaffected).
    pub wall_steps: Vec<(NodeId, Time, i64)>,
    /// At each time, whichever node leads a run of the judged site crashes for the duration.
    pub leader_crashes: Vec<(Time, Duration)>,
    /// The leader a DOWN verdict of the judged site names crashes as the verdict is first
    /// committed, before its run's register leaves (see `sim::orphan`).
    pub commit_crash: Option<CommitCrash>,
    /// The leader the fast round names for the judged site's first slot still hears the
    /// site's Indicators through its blackout (a stale path answers its probes): its own
    /// Pinger sees the site UP, so it never leads the verdict (see `sim::orphan`).
    pub blind_leader: bool,
    pub operator: Vec<OperatorCall>,
    /// When every fault but a site's blackout has stopped (failover scenario).
    pub calm: Option<Time>,
    /// How the stand-in actuator's attempts behave.
    pub steps: StepProfile,
    /// Alarm calls of the first site and the crashes around them (`sim::alarms`).
    pub alarms: super::alarms::AlarmFaults,
}

impl FaultModel {
    pub fn calm(seed: u64) -> FaultModel {
        FaultModel {
            seed,
            loss: 0.0,
            delay_min: Duration::from_millis(2),
            delay_mean: Duration::from_millis(5),
            duplicate: 0.0,
            partitions: Vec::new(),
            blackouts: Vec::new(),
            outages: Vec::new(),
            wall_steps: Vec::new(),
            leader_crashes: Vec::new(),
            commit_crash: None,
            blind_leader: false,
            operator: Vec::new(),
            calm: None,
            steps: StepProfile::default(),
            alarms: Default::default(),
        }
    }

    pub fn draw_delay(&self, rng: &mut StdRng) -> Duration {
        let u: f64 = rng.random::<f64>();
        let exp = -(1.0 - u).ln() * self.delay_mean.as_secs_f64();
        self.delay_min + Duration::from_secs_f64(exp.min(10.0))
    }

    /// Is `from` -> `to` cut at `t`?
    pub fn cut(&self, from: &SiteId, to: &SiteId, t: Time) -> bool {
        from != to
            && self
                .partitions
                .iter()
                .any(|p| &p.from == from && &p.to == to && p.start <= t && t < p.end)
    }

    /// Is there a cut between `x` and `y`, in either direction, at any time in `[a, b]`?
    pub fn cut_during(&self, x: &SiteId, y: &SiteId, a: Time, b: Time) -> bool {
        x != y
            && self.partitions.iter().any(|p| {
                ((&p.from == x && &p.to == y) || (&p.from == y && &p.to == x))
                    && p.start <= b
                    && a < p.end
            })
    }

    /// Is any node of `site` blacked out at some time in `[a, b]`?
    pub fn blackout_during(&self, site: &SiteId, a: Time, b: Time) -> bool {
        self.blackouts
            .iter()
            .any(|o| &o.site == site && o.start <= b && o.end.is_none_or(|e| a < e))
    }

    /// Was a majority of `site`'s electorate in `fleet` available throughout `[a, b]`? Only
    /// such a majority owes progress (a run completed, an alarm acted on).
    pub fn majority_up(
        &self,
        fleet: &crate::config::Fleet,
        site: &SiteId,
        a: Time,
        b: Time,
    ) -> bool {
        let members = fleet.electorate(site);
        let up = members
            .iter()
            .filter(|m| {
                fleet
                    .node(m)
                    .is_some_and(|n| !self.down_during(m, &n.site, a, b))
            })
            .count();
        up > members.len() / 2
    }

    /// Is `node` of `site` unavailable (blackout, crash or freeze) at some time in `[a, b]`?
    pub fn down_during(&self, node: &NodeId, site: &SiteId, a: Time, b: Time) -> bool {
        self.blackout_during(site, a, b)
            || self
                .outages
                .iter()
                .any(|o| &o.node == node && o.start <= b && a < o.end)
    }
}

/// The named scenarios; `All` picks one per seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Blackout,
    WanCut,
    Loss,
    CrashRestart,
    Flap,
    Mixed,
    /// A judged site with a failover plan: the run under leader crashes, partitions, loss,
    /// wall-clock steps, operator calls and (behind a flag) a lying member.
    Failover,
    /// The first site's plan with `on_alarm = "prestage"` or `"failover"`: alarm calls at
    /// its electorate, crashes of the voter that accepted one and of the leader a lock
    /// decision names, leader crashes, cuts, loss, freezes and sometimes the site's blackout.
    Alarm,
}

impl Scenario {
    /// Every scenario, by name: what `--scenario all` runs, seed by seed in turn.
    pub const ALL: [Scenario; 8] = [
        Scenario::Blackout,
        Scenario::WanCut,
        Scenario::Loss,
        Scenario::CrashRestart,
        Scenario::Flap,
        Scenario::Mixed,
        Scenario::Failover,
        Scenario::Alarm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Blackout => "blackout",
            Scenario::WanCut => "wan-cut",
            Scenario::Loss => "loss",
            Scenario::CrashRestart => "crash-restart",
            Scenario::Flap => "flap",
            Scenario::Mixed => "mixed",
            Scenario::Failover => "failover",
            Scenario::Alarm => "alarm",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// What the world looks like to the fault drawing: site ids in order (the first is the
/// primary, the second the backup) and the voter nodes of each site.
pub struct Layout<'a> {
    pub sites: &'a [SiteId],
    pub voters: &'a [(SiteId, Vec<NodeId>)],
    pub horizon: Time,
    pub probe_timeout: Duration,
    /// The failover scenario's calm point and step behaviour.
    pub calm: Time,
    pub steps: StepProfile,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(rng: &mut StdRng, lo_ms: u64, hi_ms: u64) -> Time {
    Time::ZERO + ms(rng.random_range(lo_ms..hi_ms))
}

/// A blackout of `site` from `start`: for good half of the time, else for a time drawn from
/// `lasts_ms`.
fn blackout_from(
    rng: &mut StdRng,
    site: &SiteId,
    start: Time,
    lasts_ms: std::ops::Range<u64>,
) -> Blackout {
    let end = rng
        .random_bool(0.5)
        .then(|| start + ms(rng.random_range(lasts_ms)));
    Blackout {
        site: site.clone(),
        start,
        end,
    }
}

/// Draws the faults of `scenario` for one seed. `loss` is the datagram loss of the run.
pub fn draw(scenario: Scenario, l: &Layout, loss: f64, rng: &mut StdRng, seed: u64) -> FaultModel {
    let mut f = FaultModel::calm(seed);
    f.loss = loss;
    // WAN delays sized to the probe timeout (1-6 ms + exp(2-12 ms) for the DRL 100 ms), so a
    // round trip beyond the timeout stays rare: delay alone must not look like a dead site.
    let scale = l.probe_timeout.as_secs_f64() / 0.1;
    f.delay_min = ms(rng.random_range(1..6)).mul_f64(scale);
    f.delay_mean = ms(rng.random_range(2..12)).mul_f64(scale);
    f.duplicate = if rng.random_bool(0.5) { 0.01 } else { 0.0 };
    let a = l.sites[0].clone();
    let b = l.sites[1].clone();
    let both = |f: &mut FaultModel, x: &SiteId, y: &SiteId, s: Time, e: Time| {
        f.partitions.push(Partition {
            from: x.clone(),
            to: y.clone(),
            start: s,
            end: e,
        });
        f.partitions.push(Partition {
            from: y.clone(),
            to: x.clone(),
            start: s,
            end: e,
        });
    };
    match scenario {
        Scenario::Blackout => {
            let start = at(rng, 1500, 3500);
            f.blackouts.push(Blackout {
                site: a,
                start,
                end: None,
            });
        }
        Scenario::WanCut => {
            let start = at(rng, 1000, 3000);
            let end = if rng.random_bool(0.5) {
                l.horizon
            } else {
                start + ms(rng.random_range(500..3000))
            };
            if rng.random_bool(0.25) {
                // Asymmetric: only a -> b is cut (b's probes reach a, a's answers do not).
                f.partitions.push(Partition {
                    from: a,
                    to: b,
                    start,
                    end,
                });
            } else {
                both(&mut f, &a, &b, start, end);
            }
        }
        Scenario::Loss => {}
        Scenario::CrashRestart => {
            let start = at(rng, 1500, 3500);
            f.blackouts.push(Blackout {
                site: a.clone(),
                start,
                end: None,
            });
            let pool: Vec<&NodeId> = l
                .voters
                .iter()
                .filter(|(s, _)| *s != a)
                .flat_map(|(_, v)| v)
                .collect();
            for _ in 0..rng.random_range(1..4) {
                let node = pool[rng.random_range(0..pool.len())].clone();
                let s = Time(start.0.saturating_sub(500_000)) + ms(rng.random_range(0..2000));
                let e = s + ms(rng.random_range(100..1500));
                f.outages.push(Outage {
                    node,
                    start: s,
                    end: e,
                    crash: true,
                });
            }
        }
        Scenario::Flap => {
            let mut t = at(rng, 500, 1500);
            while t < l.horizon {
                let e = t + ms(rng.random_range(200..800));
                both(&mut f, &a, &b, t, e);
                t = e + ms(rng.random_range(200..800));
            }
        }
        Scenario::Mixed => {
            f.loss = loss.max(rng.random_range(0.0..0.1));
            f.duplicate = rng.random_range(0.0..0.05);
            if rng.random_bool(0.6) {
                let start = at(rng, 1500, 3500);
                let end = rng
                    .random_bool(0.3)
                    .then(|| start + ms(rng.random_range(3500..5000)));
                f.blackouts.push(Blackout {
                    site: l.sites[rng.random_range(0..2)].clone(),
                    start,
                    end,
                });
            }
            if rng.random_bool(0.5) {
                let (x, y) = (
                    &l.sites[rng.random_range(0..l.sites.len())],
                    &l.sites[rng.random_range(0..l.sites.len())],
                );
                let s = at(rng, 500, 5000);
                let e = s + ms(rng.random_range(100..2500));
                if rng.random_bool(0.5) {
                    both(&mut f, x, y, s, e);
                } else {
                    f.partitions.push(Partition {
                        from: x.clone(),
                        to: y.clone(),
                        start: s,
                        end: e,
                    });
                }
            }
            let all: Vec<&NodeId> = l.voters.iter().flat_map(|(_, v)| v).collect();
            for _ in 0..rng.random_range(0..3) {
                let node = all[rng.random_range(0..all.len())].clone();
                let s = at(rng, 500, 6000);
                let e = s + ms(rng.random_range(50..1500));
                f.outages.push(Outage {
                    node,
                    start: s,
                    end: e,
                    crash: rng.random_bool(0.5),
                });
            }
        }
        Scenario::Failover => draw_failover(&mut f, l, loss, rng),
        Scenario::Alarm => draw_alarm(&mut f, l, loss, rng),
    }
    f
}

/// The alarm scenario's faults besides the calls (`sim::alarms::draw`): loss, cuts between
/// the watching sites, leader crashes, a freeze, and in a third of the worlds the first site's
/// blackout (for good or for a while), all over by `calm` but a blackout for good.
fn draw_alarm(f: &mut FaultModel, l: &Layout, loss: f64, rng: &mut StdRng) {
    f.loss = loss.max(rng.random_range(0.0..0.05));
    f.calm = Some(l.calm);
    f.steps = l.steps;
    let a = l.sites[0].clone();
    let calm = l.calm.0 / 1000;
    if rng.random_bool(0.3) {
        let start = at(rng, 2000, calm - 4000);
        f.blackouts.push(blackout_from(rng, &a, start, 1000..3000));
    }
    for _ in 0..rng.random_range(0..3) {
        let t = at(rng, 1000, calm - 2500);
        f.leader_crashes.push((t, ms(rng.random_range(300..2500))));
    }
    let watchers: Vec<&NodeId> = l
        .voters
        .iter()
        .filter(|(s, _)| *s != a)
        .flat_map(|(_, v)| v)
        .collect();
    if rng.random_bool(0.5) && l.sites.len() > 2 {
        let (b, c) = (&l.sites[1], &l.sites[l.sites.len() - 1]);
        let s = at(rng, 1000, calm - 2500);
        let e = s + ms(rng.random_range(300..2000));
        let one_way = rng.random_bool(0.5);
        for (x, y) in [(b, c), (c, b)]
            .into_iter()
            .take(if one_way { 1 } else { 2 })
        {
            f.partitions.push(Partition {
                from: x.clone(),
                to: y.clone(),
                start: s,
                end: e,
            });
        }
    }
    if rng.random_bool(0.3) {
        let s = at(rng, 1000, calm - 2000);
        f.outages.push(Outage {
            node: watchers[rng.random_range(0..watchers.len())].clone(),
            start: s,
            end: s + ms(rng.random_range(100..1000)),
            crash: false,
        });
    }
}

/// The failover scenario: the first site (with a plan) is blacked out, maybe twice (hold-down),
/// or cut off alive (self-fence), or put in maintenance first; or the second site (whose plan
/// waits for an operator) is blacked out. During the run: leader crashes, cuts between the
/// watching sites, freezes, loss and wall-clock steps of an hour, all over by `calm`.
fn draw_failover(f: &mut FaultModel, l: &Layout, loss: f64, rng: &mut StdRng) {
    f.loss = loss.max(rng.random_range(0.0..0.05));
    f.calm = Some(l.calm);
    f.steps = l.steps;
    let (a, b) = (l.sites[0].clone(), l.sites[1].clone());
    let watchers: Vec<&NodeId> = l
        .voters
        .iter()
        .filter(|(s, _)| *s != a)
        .flat_map(|(_, v)| v)
        .collect();
    let pick = |rng: &mut StdRng| watchers[rng.random_range(0..watchers.len())].clone();
    let start = at(rng, 1500, 3000);
    match rng.random_range(0..10) {
        0..=5 => {
            let b = blackout_from(rng, &a, start, 5500..7500);
            let end = b.end;
            f.blackouts.push(b);
            if let Some(e) = end {
                if rng.random_bool(0.6) {
                    f.blackouts.push(Blackout {
                        site: a.clone(),
                        start: e + ms(rng.random_range(2000..4000)),
                        end: None,
                    });
                } else if rng.random_bool(0.6) {
                    f.operator.push(OperatorCall {
                        at: e + ms(rng.random_range(1500..3000)),
                        node: pick(rng),
                        call: Call::Failback { site: a.clone() },
                    });
                }
            }
        }
        6 | 7 => {
            // Alive but cut off from every other site: the self-fence case.
            let end = start + ms(rng.random_range(3000..6000));
            for s in l.sites.iter().filter(|s| **s != a) {
                for (x, y) in [(&a, s), (s, &a)] {
                    f.partitions.push(Partition {
                        from: x.clone(),
                        to: y.clone(),
                        start,
                        end,
                    });
                }
            }
        }
        8 => {
            f.operator.push(OperatorCall {
                at: at(rng, 200, 600),
                node: pick(rng),
                call: Call::Maintenance {
                    site: a.clone(),
                    lasts: Duration::from_secs(3 * 3600),
                },
            });
            f.blackouts.push(Blackout {
                site: a.clone(),
                start,
                end: None,
            });
        }
        _ => f.blackouts.push(Blackout {
            site: b.clone(),
            start,
            end: None,
        }),
    }
    let calm = l.calm.0 / 1000;
    for _ in 0..rng.random_range(0..3) {
        let t = at(rng, 4000, calm - 2500);
        // Some leaders are lost for good: only a takeover completes their run.
        let lasts = if rng.random_bool(0.3) {
            l.horizon.since(t) + ms(1000)
        } else {
            ms(rng.random_range(300..2500))
        };
        f.leader_crashes.push((t, lasts));
    }
    if rng.random_bool(0.5) && l.sites.len() > 2 {
        let c = l.sites[l.sites.len() - 1].clone();
        let s = at(rng, 4000, calm - 2500);
        let e = s + ms(rng.random_range(300..2000));
        let pairs: &[(&SiteId, &SiteId)] = match rng.random_range(0..3) {
            0 => &[(&b, &c), (&c, &b)],
            1 => &[(&b, &c)],
            _ => &[(&c, &b)],
        };
        for (x, y) in pairs {
            f.partitions.push(Partition {
                from: (*x).clone(),
                to: (*y).clone(),
                start: s,
                end: e,
            });
        }
    }
    if rng.random_bool(0.3) {
        let s = at(rng, 4000, calm - 2000);
        f.outages.push(Outage {
            node: pick(rng),
            start: s,
            end: s + ms(rng.random_range(100..1000)),
            crash: false,
        });
    }
    // Drawn apart from the seed's main stream, so that the other faults of a seed stay as
    // they were before this fault existed.
    let permanent =
        f.blackouts.len() == 1 && f.blackouts[0].site == a && f.blackouts[0].end.is_none();
    let mut own = <StdRng as rand::SeedableRng>::seed_from_u64(f.seed ^ 0x0c0ff1ce);
    if permanent && f.operator.is_empty() && own.random_bool(0.5) {
        let lasts = if own.random_bool(0.5) {
            l.horizon.since(Time::ZERO)
        } else {
            ms(own.random_range(300..3000))
        };
        f.commit_crash = Some(CommitCrash {
            lasts,
            after_broadcast: own.random_bool(0.5),
        });
    } else if permanent && f.operator.is_empty() {
        f.blind_leader = own.random_bool(0.5);
    }
    let everyone: Vec<&NodeId> = l.voters.iter().flat_map(|(_, v)| v).collect();
    for _ in 0..rng.random_range(0..3) {
        let node = everyone[rng.random_range(0..everyone.len())].clone();
        let by = if rng.random_bool(0.5) { 1 } else { -1 } * 3_600_000_000i64;
        f.wall_steps.push((node, at(rng, 1000, calm - 1000), by));
    }
}
