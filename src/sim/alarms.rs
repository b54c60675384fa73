//! Alarms in the simulated world: the operator and an entitled source (`fleet::ALARM_SOURCE`)
//! raise and clear alarms of the first site at voters of its electorate (now and then at a
//! node outside it, which must refuse), through the same `Command::Alarm` the driver hands the
//! core; the voter that accepted a call may crash right after it (after its sends left, or, for
//! a clear, before anything leaves), and the leader a lock decision of the site names may crash as the decision is
//! first made durable anywhere. The world keeps the episodes as it made the calls (first
//! raised to last cleared) and checks, from the actuator's effects, never from a core's
//! beliefs:
//! - each prestage step acts at most once per episode (distinct idempotency keys; one key
//!   counts once already, by the duplicate-effect check);
//! - an unstage's compensation acts only while a prestage stands (it follows a prestage
//!   effect not yet undone: so at most once per prestage), and never once a failover of the
//!   site began since that prestage's episode started;
//! - with `on_alarm = "failover"`, at most one alarm run acts per episode;
//! - liveness, once faults have stopped for `settle_bound` plus the lock's bound times the
//!   electorate's size plus three (every member's stagger and a retry): an episode still
//!   raised then, with a majority of the electorate up since faults stopped, no failover
//!   of the site since it began and no DOWN verdict newer than the lock's last decision (it
//!   holds reactions back), has its prestage standing (or the newest prestage or unstage
//!   run is a prestage that ended without effect because the world failed every attempt:
//!   counted);
//! - a stored alarm is one a world call made (anything else was forged), and a node outside
//!   the electorate accepts no call.
//!
//! A run belongs to the episode that had begun when its lock decision was first made durable
//! anywhere (or, if no decision was seen, when its register was first written).

use super::invariants::{Check, ViolationKind};
use super::world::World;
use crate::core::alarm::OnAlarm;
use crate::core::node::{AlarmCall, Command, Input};
use crate::core::oplock::LockState;
use crate::core::replica::RunTrigger;
use crate::core::types::{NodeId, SiteId, Time};
use crate::store::Storage;
use crate::wire::{Alarm, AlarmSeverity};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Sources the world raises alarms from; the first is the fleet's `[[alarm_source]]` and calls
/// with its own credential, the others are operator calls.
const SOURCES: [&str; 3] = [super::fleet::ALARM_SOURCE, "ups-a", "operator"];

/// One alarm call the world makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmCallPlan {
    pub at: Time,
    pub node: NodeId,
    pub source: String,
    pub raised: bool,
    /// The node that accepts the call crashes right after it, for this long.
    pub crash: Option<AcceptCrash>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptCrash {
    pub lasts: Duration,
    /// Before the call's replication leaves the node (it is only in its store).
    pub before_sends: bool,
}

/// The alarm faults of a world.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlarmFaults {
    pub calls: Vec<AlarmCallPlan>,
    /// The leader the `n`-th lock decision of the site names crashes, for this long, as the
    /// decision is first made durable anywhere.
    pub decision_crash: Option<(u64, Duration)>,
}

/// Draws the alarm calls of a world from their own stream (the other faults of a seed stay
/// as they were): calls between `from` and `until` at the voters `members` of the first
/// site's electorate (one in ten at `outsider`), crashes of the accepting voter ending before
/// `until`.
pub fn draw(
    seed: u64,
    members: &[NodeId],
    outsider: &NodeId,
    from: Time,
    until: Time,
    crashes: bool,
) -> AlarmFaults {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xa1a2_a3a4);
    let mut f = AlarmFaults::default();
    let mut raised: BTreeSet<&str> = BTreeSet::new();
    let mut t = from + Duration::from_millis(rng.random_range(0..1500));
    while t < until {
        let source = SOURCES[rng.random_range(0..SOURCES.len())];
        // Clear a raised source half of the time; raise (or raise again) otherwise.
        let raise = !raised.contains(source) || rng.random_bool(0.3);
        if raise {
            raised.insert(source);
        } else {
            raised.remove(source);
        }
        let node = if rng.random_bool(0.1) {
            outsider.clone()
        } else {
            members[rng.random_range(0..members.len())].clone()
        };
        let crash = (crashes && rng.random_bool(0.3)).then(|| {
            let left = until.since(t).as_millis().max(301) as u64;
            AcceptCrash {
                lasts: Duration::from_millis(rng.random_range(300..left.clamp(301, 3000))),
                // Only a clear is lost with its node for a while: a raise known to one
                // crashed node alone would make an episode the world's and not the fleet's.
                before_sends: !raise && rng.random_bool(0.5),
            }
        });
        f.calls.push(AlarmCallPlan {
            at: t,
            node,
            source: source.to_string(),
            raised: raise,
            crash,
        });
        t = t + Duration::from_millis(rng.random_range(150..2500));
    }
    if crashes && rng.random_bool(0.6) {
        let lasts = if rng.random_bool(0.3) {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(rng.random_range(300..3000))
        };
        f.decision_crash = Some((rng.random_range(1..3), lasts));
    }
    f
}

/// One alarm episode of the first site, as the world's accepted calls made it.
#[derive(Clone, Debug)]
pub struct Episode {
    pub start: Time,
    pub end: Option<Time>,
    /// Prestage keys that acted in it, and alarm runs that acted in it.
    prestaged: BTreeSet<String>,
    alarm_runs: BTreeSet<u64>,
}

/// What alarms did in one world (or, summed, in many).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlarmFigures {
    /// Calls the world made, and calls a node accepted.
    pub made: u64,
    pub accepted: u64,
    pub episodes: u64,
    /// Effects of prestage steps, of their compensations (unstage), and alarm failover runs
    /// that acted.
    pub prestaged: u64,
    pub unstaged: u64,
    pub alarm_runs: u64,
    /// Episodes still raised at the end whose prestage run finished without effect because
    /// the world failed every attempt of its step.
    pub prestage_failed: u64,
    /// Leaders crashed as a lock decision naming them was made.
    pub decision_crashes: u64,
}

impl AlarmFigures {
    pub fn add(&mut self, o: &AlarmFigures) {
        self.made += o.made;
        self.accepted += o.accepted;
        self.episodes += o.episodes;
        self.prestaged += o.prestaged;
        self.unstaged += o.unstaged;
        self.alarm_runs += o.alarm_runs;
        self.prestage_failed += o.prestage_failed;
        self.decision_crashes += o.decision_crashes;
    }
}

impl std::fmt::Display for AlarmFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "alarms: {} calls made, {} accepted, {} episodes, {} prestage effects, {} unstage effects, {} alarm failover runs acted, {} leaders crashed as a lock decision named them, {} prestages failed by every attempt (counted)",
            self.made,
            self.accepted,
            self.episodes,
            self.prestaged,
            self.unstaged,
            self.alarm_runs,
            self.decision_crashes,
            self.prestage_failed
        )
    }
}

/// What the world knows of alarms.
#[derive(Clone, Debug, Default)]
pub struct AlarmLedger {
    /// The first site's `on_alarm` (None: no plan).
    pub mode: Option<OnAlarm>,
    /// Every call a node accepted from the world.
    pub calls: Vec<Alarm>,
    raised: BTreeSet<String>,
    pub episodes: Vec<Episode>,
    /// Run -> when its lock decision was first durable anywhere.
    decided: BTreeMap<u64, (Time, RunTrigger)>,
    newest_gen: u64,
    /// The node that accepted a call crashes after its next `SaveAlarm`.
    pending_crash: Option<usize>,
    /// The prestage standing: the episode of its effect (its compensation has not acted).
    standing: Option<usize>,
    pub figures: AlarmFigures,
}

impl AlarmLedger {
    fn episode_at(&self, t: Time) -> Option<usize> {
        self.episodes.iter().rposition(|e| e.start <= t)
    }
}

impl World {
    /// Alarm call `k` of the fault model (ignored while its node is down: the call fails).
    pub fn on_alarm_call(&mut self, k: usize) -> Check {
        let call = self.faults.alarms.calls[k].clone();
        let Some(i) = self.index(&call.node) else {
            return Ok(());
        };
        self.alarms.figures.made += 1;
        if !self.nodes[i].up || self.nodes[i].core.is_none() {
            return Ok(());
        }
        let site = self.fleet.sites[0].id.clone();
        let via = (call.source == super::fleet::ALARM_SOURCE).then(|| call.source.clone());
        let command = Command::Alarm(AlarmCall {
            site: site.clone(),
            source: call.source.clone(),
            severity: AlarmSeverity::Critical,
            reason: format!("world call {k}"),
            raised: call.raised,
            via,
        });
        self.next_command += 1;
        let id = self.next_command;
        let who = call.node.clone();
        self.log(|| format!("alarm call {id} at {who}: {command:?}"));
        let now = self.now_of(i);
        let c = self.nodes[i].core.as_mut().expect("checked");
        let before = c.alarms().get(&site, &call.source).cloned();
        c.handle(now, Input::Command { id, command });
        let after = c.alarms().get(&site, &call.source).cloned();
        if let Some(a) = after.filter(|a| Some(a) != before.as_ref()) {
            if !self.fleet.electorate(&site).contains(&call.node) {
                return Err((
                    ViolationKind::ForgeryAccepted,
                    format!("{who}, outside {site}'s electorate, accepted an alarm call: {a:?}"),
                ));
            }
            self.alarms.calls.push(a.clone());
            self.accepted(&site, a, self.now);
            if let Some(crash) = call.crash {
                self.schedule_crash(who.clone(), crash.lasts);
                if crash.before_sends {
                    self.alarms.pending_crash = Some(i);
                } else {
                    self.carry_out(i)?;
                    self.log(|| format!("{who} crashes right after accepting the alarm call"));
                    return self.apply_faults();
                }
            }
        }
        self.carry_out(i)
    }

    /// A call a node accepted, in effect in the fleet from `now`: the episodes as the world
    /// made them.
    fn accepted(&mut self, site: &SiteId, a: Alarm, now: Time) {
        let l = &mut self.alarms;
        l.figures.accepted += 1;
        let was = !l.raised.is_empty();
        if a.raised {
            l.raised.insert(a.source.clone());
        } else {
            l.raised.remove(&a.source);
        }
        match (was, !l.raised.is_empty()) {
            (false, true) => {
                l.figures.episodes += 1;
                l.episodes.push(Episode {
                    start: now,
                    end: None,
                    prestaged: BTreeSet::new(),
                    alarm_runs: BTreeSet::new(),
                })
            }
            (true, false) => {
                if let Some(e) = l.episodes.last_mut() {
                    e.end = Some(now);
                }
            }
            _ => {}
        }
        let n = l.episodes.len();
        self.log(|| format!("the world's alarm episodes of {site}: {n}"));
    }

    /// `Action::SaveAlarm` at node `i`: only a call the world made may be stored. True when
    /// the node crashes now (a crash right after accepting, before its sends).
    pub(super) fn save_alarm(
        &mut self,
        i: usize,
        a: Alarm,
    ) -> Result<bool, (ViolationKind, String)> {
        let me = self.nodes[i].id.clone();
        if !self.alarms.calls.contains(&a) {
            return Err((
                ViolationKind::ForgeryAccepted,
                format!("{me} stored an alarm no operator or source raised: {a:?}"),
            ));
        }
        self.nodes[i]
            .store
            .save_alarm(&a)
            .map_err(|e| (ViolationKind::Store, format!("{me}: {e}")))?;
        if self.alarms.pending_crash != Some(i) {
            return Ok(false);
        }
        self.alarms.pending_crash = None;
        self.log(|| format!("{me} crashes right after storing the alarm call it accepted"));
        self.crash_now(i);
        Ok(true)
    }

    /// `Action::PersistLock` at node `i`: stored; a decision seen for the first time is
    /// dated, and may crash the leader it names. True when node `i` crashes now.
    pub(super) fn persist_lock(
        &mut self,
        i: usize,
        site: &SiteId,
        state: &LockState,
    ) -> Result<bool, (ViolationKind, String)> {
        let me = self.nodes[i].id.clone();
        self.nodes[i]
            .store
            .save_lock(site, state)
            .map_err(|e| (ViolationKind::Store, format!("{me}: {e}")))?;
        let Some(d) = &state.decided else {
            return Ok(false);
        };
        if site != &self.fleet.sites[0].id || d.gen <= self.alarms.newest_gen {
            return Ok(false);
        }
        self.alarms.newest_gen = d.gen;
        let now = self.now;
        self.alarms
            .decided
            .entry(d.value.run)
            .or_insert((now, d.value.trigger));
        self.note_reused_epochs();
        let (gen, leader) = (d.gen, d.value.leader.clone());
        let trigger = d.value.trigger;
        self.log(|| format!("{me} makes lock decision {gen} durable: {trigger:?} led by {leader}"));
        let Some((nth, lasts)) = self.faults.alarms.decision_crash else {
            return Ok(false);
        };
        let Some(l) = self.index(&leader).filter(|_| nth == gen) else {
            return Ok(false);
        };
        if !self.nodes[l].up && !self.nodes[l].frozen {
            return Ok(false);
        }
        self.schedule_crash(leader.clone(), lasts);
        self.alarms.figures.decision_crashes += 1;
        self.log(|| format!("{leader}, named by lock decision {gen}, crashes as it is made"));
        self.crash_now(l);
        Ok(l == i)
    }

    /// A lock decision whose run epoch a run of another trigger was registered under (the
    /// known defect `KnownDefects::reused_epochs`): the two runs cannot be told apart.
    fn note_reused_epochs(&mut self) {
        let site = self.fleet.sites[0].id.clone();
        for (run, (_, trigger)) in &self.alarms.decided {
            let key = (site.clone(), *run);
            let other = self
                .failover
                .runs
                .get(&key)
                .is_some_and(|r| r.trigger != *trigger);
            if other && self.failover.reused.insert(key) {
                self.failover.known.reused_epochs += 1;
            }
        }
    }

    /// The episode a run of the first site belongs to.
    fn episode_of(&self, run: u64) -> Option<usize> {
        let site = &self.fleet.sites[0].id;
        let at = self.alarms.decided.get(&run).map(|d| d.0).or_else(|| {
            let r = self.failover.runs.get(&(site.clone(), run));
            r.map(|r| r.registered)
        })?;
        self.alarms.episode_at(at)
    }

    /// An effect of a prestage, unstage or alarm run of the first site.
    pub(super) fn on_alarm_effect(&mut self, e: &super::actuator::Effect) -> Check {
        let site = self.fleet.sites[0].id.clone();
        if e.site != site || e.purpose != crate::core::node::StepPurpose::Run {
            return Ok(());
        }
        // Prestage and unstage effects are known by their steps' names (no other plan step
        // bears them), alarm runs by their register.
        let trigger = match e.name.as_str() {
            super::fleet::PRESTAGE_STEP => RunTrigger::Prestage,
            super::fleet::UNSTAGE_STEP => RunTrigger::Unstage,
            _ => match self.failover.runs.get(&(site.clone(), e.run)) {
                Some(r) => r.trigger,
                None => return Ok(()),
            },
        };
        let what = format!("{} (run {}, {:?})", e.idempotency_key, e.run, trigger);
        self.note_reused_epochs();
        if self.failover.reused.contains(&(site.clone(), e.run)) {
            return Ok(());
        }
        let ep = self.episode_of(e.run);
        match trigger {
            RunTrigger::Prestage => {
                let Some(k) = ep else {
                    return Err((
                        ViolationKind::AlarmRun,
                        format!("{what} acted, and no alarm episode of {site} ever began"),
                    ));
                };
                let keys = &mut self.alarms.episodes[k].prestaged;
                keys.insert(e.idempotency_key.clone());
                let steps: BTreeSet<&str> =
                    keys.iter().filter_map(|x| x.rsplit('/').next()).collect();
                if steps.len() < keys.len() {
                    return Err((
                        ViolationKind::AlarmRun,
                        format!(
                            "{what}: a prestage step acted twice in episode {k} (keys {keys:?})"
                        ),
                    ));
                }
                self.alarms.standing = Some(k);
                self.alarms.figures.prestaged += 1;
            }
            RunTrigger::Unstage => {
                self.alarms.figures.unstaged += 1;
                let Some(k) = self.alarms.standing.take() else {
                    // The prestage it undoes shared its epoch with another run (counted).
                    let mut undone = self.alarms.decided.range(..e.run).rev();
                    let undone = undone.find(|(_, d)| d.1 == RunTrigger::Prestage);
                    let reused = &self.failover.reused;
                    if undone.is_some_and(|(run, _)| reused.contains(&(site.clone(), *run))) {
                        return Ok(());
                    }
                    // It aborted with no effect (the world failed or timed out every attempt
                    // of its step): undoing what such an attempt may have begun is the safe
                    // side. Counted.
                    let aborted = undone.is_some_and(|(run, _)| {
                        let r = self.failover.runs.get(&(site.clone(), *run));
                        r.is_some_and(|r| r.finished.is_some())
                    });
                    if aborted {
                        self.alarms.figures.prestage_failed += 1;
                        return Ok(());
                    }
                    return Err((
                        ViolationKind::AlarmRun,
                        format!("{what}: an unstage compensation acted with no prestage standing"),
                    ));
                };
                let since = self.alarms.episodes[k].start;
                // A run whose epoch another run reused (a known defect, counted) is not told
                // apart from it: its begin may be the other run's.
                let reused = &self.failover.reused;
                let failover = self.failover.runs.iter().find(|(key, r)| {
                    key.0 == site
                        && !reused.contains(key)
                        && matches!(
                            r.trigger,
                            RunTrigger::Verdict | RunTrigger::Manual | RunTrigger::Alarm
                        )
                        && r.begun.is_some_and(|b| b >= since)
                });
                if let Some(((_, run), r)) = failover {
                    return Err((
                        ViolationKind::AlarmRun,
                        format!(
                            "{what}: an unstage acted after failover run {run} ({:?}) began in episode {k}",
                            r.trigger
                        ),
                    ));
                }
            }
            RunTrigger::Alarm => {
                let Some(k) = ep else {
                    return Err((
                        ViolationKind::AlarmRun,
                        format!("{what} acted, and no alarm episode of {site} ever began"),
                    ));
                };
                let runs = &mut self.alarms.episodes[k].alarm_runs;
                if runs.insert(e.run) {
                    self.alarms.figures.alarm_runs += 1;
                }
                if runs.len() > 1 {
                    return Err((
                        ViolationKind::AlarmRun,
                        format!("{what}: alarm failover runs {runs:?} both acted in episode {k}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Liveness, once runs must have settled: an episode still raised, with a majority of
    /// the electorate up since `calm`, no failover of the site since it began and no DOWN
    /// verdict newer than the lock's last decision, has its prestage standing.
    pub fn check_alarms_settled(&mut self, calm: Time) -> Check {
        if self.alarms.mode != Some(OnAlarm::Prestage) {
            return Ok(());
        }
        let Some(k) = self.alarms.episodes.len().checked_sub(1) else {
            return Ok(());
        };
        let ep = &self.alarms.episodes[k];
        if ep.end.is_some() || self.alarms.standing.is_some() {
            return Ok(());
        }
        let site = self.fleet.sites[0].id.clone();
        let up = self.faults.majority_up(&self.fleet, &site, calm, self.now);
        let failed_over = self.failover.runs.iter().any(|((s, _), r)| {
            *s == site && r.trigger != RunTrigger::Prestage && r.trigger != RunTrigger::Unstage
        });
        let reused = self.failover.reused.iter().any(|(s, _)| *s == site);
        // A DOWN verdict newer than the lock's last decision holds alarm reactions back (its
        // failover is due), even where its leader does not start it (it never saw the site
        // up since it restarted).
        let last_run = self.alarms.decided.keys().max().copied().unwrap_or(0);
        let judged_down = self.checker.commits.iter().any(|((s, _), (v, _))| {
            *s == site && v.outcome == crate::core::types::Outcome::Down && v.epoch > last_run
        });
        if !up || failed_over || reused || judged_down {
            return Ok(());
        }
        // The newest prestage or unstage run is a prestage that finished without effect: the
        // world failed its step's every attempt (or timed them out), not the core's doing.
        let newest = self
            .failover
            .runs
            .iter()
            .filter(|((s, _), r)| {
                *s == site && matches!(r.trigger, RunTrigger::Prestage | RunTrigger::Unstage)
            })
            .max_by_key(|((_, run), _)| *run);
        if newest.is_some_and(|(_, r)| r.trigger == RunTrigger::Prestage && r.finished.is_some()) {
            self.alarms.figures.prestage_failed += 1;
            return Ok(());
        }
        let start = ep.start;
        Err((
            ViolationKind::AlarmNotActed,
            format!(
                "alarm episode {k} of {site}, raised since {} ms, has no prestage standing once runs must have settled",
                start.0 / 1000
            ),
        ))
    }
}
