//! The failover properties the simulator checks after every event, from what the world saw
//! (the stand-in actuator's attempts and effects, run registers and journals written, operator
//! calls and the fault model), never from what a core believes:
//! (i) each run step takes effect at most once per idempotency key, and no two attempts of one
//! step overlap in time; (ii) no step of a run acts once a newer run of its site has begun, and
//! a run does not begin once its leader knows a newer verdict of its site; (iii) no automatic
//! run begins during maintenance, for a `single_vantage = "manual"` watch, or within hold-down
//! of the previous one; (iv) a run that began completes within its bound once faults stop;
//! (v) no run's bgp step leaves a declared anycast prefix announced by no live site, unless the
//! run was forced; (vi) a cut-off but live site has withdrawn its announcement (its isolation
//! steps) before the takeover's first step acts. It only observes; it never steers the run.

use super::actuator::Effect;
use super::faults::FaultModel;
use super::invariants::{Check, ViolationKind};
use crate::config::{Fleet, SingleVantage};
use crate::core::anycast::BgpAction;
use crate::core::node::StartStep;
use crate::core::pipeline::{JournalEntry, JournalKind};
use crate::core::replica::{RunRecord, RunTrigger};
use crate::core::types::{NodeId, SiteId, Time};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// An attempt of the same key still running when another starts.
#[derive(Clone, Debug)]
pub struct Overlap {
    pub node: NodeId,
    pub attempt: u32,
    pub start: Time,
    /// Started by the same process of the same node under the same term: the leader's own
    /// earlier attempt, which its pipeline had already timed out.
    pub same_leader: bool,
    pub same_node: bool,
    /// Its node crashed since it started.
    pub orphaned: bool,
}

/// What the world knows of one run.
#[derive(Clone, Debug)]
pub struct RunSeen {
    pub trigger: RunTrigger,
    pub forced: bool,
    /// When a register of it was first written anywhere.
    pub registered: Time,
    /// When its first attempt started (acted) anywhere.
    pub begun: Option<Time>,
    /// The first start a leader journaled: (step, attempt). The run has begun for the core
    /// from then on (a takeover must assume that step may have acted), even if that attempt
    /// never reached the actuator.
    pub first_journaled: Option<(crate::core::pipeline::StepRef, u32)>,
    /// When some node journaled its end.
    pub finished: Option<Time>,
}

/// A maintenance window an operator set, in true time.
#[derive(Clone, Debug)]
pub struct MaintenanceSet {
    pub site: SiteId,
    pub at: Time,
    pub until: Time,
}

/// A site blacked out this long has been judged DOWN by any connected majority (the liveness
/// bound, and the verdict's spread to every voter): only then may the anycast rule count its
/// announcement as dead. A withdraw just after a site died, before anyone could know, is no
/// rule's fault.
pub const JUDGED_AFTER: Duration = Duration::from_secs(5);

pub struct FailoverChecker {
    pub fleet: Arc<Fleet>,
    pub runs: BTreeMap<(SiteId, u64), RunSeen>,
    /// Declared prefix -> the sites announcing it now.
    pub announced: BTreeMap<String, BTreeSet<SiteId>>,
    pub maintenance: Vec<MaintenanceSet>,
    /// How long after an operator call every live node is assumed to know it.
    pub propagation: Duration,
    /// Marker of every forged number, so that a forgery that got in is recognised.
    pub forged_from: u64,
    /// Known core defects seen (see `SimConfig::strict`): counted here unless they are
    /// violations.
    pub known: KnownDefects,
    pub strict: bool,
    /// Sites whose announcement an isolation step withdrew, not announced again since.
    pub fenced: BTreeSet<SiteId>,
    /// Per (site, node) that started isolation steps since the site last withdrew: whether
    /// that node's last allowed attempt has failed (the world's step failures, not the core,
    /// kept the site announced).
    pub isolating: BTreeMap<(SiteId, NodeId), bool>,
    /// Takeovers that began while a cut-off site still announced because every node of it
    /// had used up its isolation attempts on step failures: not the core's fault, counted.
    pub isolation_exhausted: u64,
    /// Runs registered under an epoch another run of the site had (`KnownDefects`).
    pub reused: BTreeSet<(SiteId, u64)>,
}

/// Defects of the core this checker recognises by their signature. With `strict` off they are
/// counted and shown, not reported as violations, so that everything else stays checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnownDefects {
    /// A retry started while the same leader's previous attempt of the step still ran: the
    /// step timeout counts from when the start is queued, not from when a majority holds it,
    /// so a start held back past its timeout is timed out, then released with its retry.
    pub retry_overlaps: u64,
    /// A restarted leader re-ran a step at once while the attempt its previous process had
    /// started (unsupervised since the crash) still ran.
    pub resume_overlaps: u64,
    /// A run began although its leader knew a newer verdict of its site: the verdict is
    /// checked when the takeover delay ends (or a takeover campaign starts), not when the
    /// first start is released once a majority holds it.
    pub stale_begins: u64,
    /// A run's withdraw left a prefix announced by no site because a site had withdrawn it
    /// by self-fencing: isolation steps are not in the anycast ledger and are not undone on
    /// reconnecting, so the rule still counted that site's announcement.
    pub unrecorded_fences: u64,
    /// Two runs of one site registered under one epoch (a different trigger): a member that
    /// proposes a lock run (an alarm's, an operator's) picks the run's epoch above what it
    /// knows itself, and the lock's acceptors do not check it, so a member that has not heard
    /// of a new DOWN verdict yet (it just restarted) can take that verdict's epoch, and the
    /// two runs share one register key.
    pub reused_epochs: u64,
}

impl FailoverChecker {
    pub fn new(fleet: Arc<Fleet>, propagation: Duration) -> FailoverChecker {
        let announced = fleet
            .anycast()
            .iter()
            .map(|a| {
                (
                    a.prefix.to_string(),
                    a.announced_by.iter().cloned().collect(),
                )
            })
            .collect();
        FailoverChecker {
            fleet,
            runs: BTreeMap::new(),
            announced,
            maintenance: Vec::new(),
            propagation,
            forged_from: super::liar::FORGED_FROM,
            known: KnownDefects::default(),
            strict: true,
            fenced: BTreeSet::new(),
            isolating: BTreeMap::new(),
            isolation_exhausted: 0,
            reused: BTreeSet::new(),
        }
    }

    pub fn on_save_run(&mut self, now: Time, node: &NodeId, r: &RunRecord) -> Check {
        if r.run >= self.forged_from || r.term() >= self.forged_from {
            return Err((
                ViolationKind::ForgeryAccepted,
                format!(
                    "{node} stored a forged run register {}-{} (term {})",
                    r.site,
                    r.run,
                    r.term()
                ),
            ));
        }
        if let Some(seen) = self.runs.get(&(r.site.clone(), r.run)) {
            if seen.trigger != r.trigger && self.reused.insert((r.site.clone(), r.run)) {
                if self.strict {
                    return Err((
                        ViolationKind::StaleRunActed,
                        format!(
                            "{node} registers run {}-{} ({:?}) under the epoch of a {:?} run",
                            r.site, r.run, r.trigger, seen.trigger
                        ),
                    ));
                }
                self.known.reused_epochs += 1;
            }
        }
        self.runs.entry((r.site.clone(), r.run)).or_insert(RunSeen {
            trigger: r.trigger,
            forced: r.forced,
            registered: now,
            begun: None,
            first_journaled: None,
            finished: None,
        });
        Ok(())
    }

    pub fn on_journal(&mut self, now: Time, e: &JournalEntry) {
        let Some(r) = self.runs.get_mut(&(e.site.clone(), e.epoch)) else {
            return;
        };
        match e.kind {
            JournalKind::RunFinished { .. } => {
                r.finished.get_or_insert(now);
            }
            JournalKind::Started => {
                r.first_journaled.get_or_insert((e.step, e.attempt));
            }
            JournalKind::Finished { .. } => {}
        }
    }

    /// A run step's attempt starts. `known_newer`: the starting node knows a verdict of the
    /// site newer than the run's. `verdict_at`: when the run's DOWN verdict was first known.
    #[allow(clippy::too_many_arguments)]
    pub fn on_start(
        &mut self,
        now: Time,
        node: &NodeId,
        s: &StartStep,
        overlapping: &[Overlap],
        known_newer: Option<u64>,
        verdict_at: Option<Time>,
        faults: &FaultModel,
    ) -> Check {
        let what = format!(
            "{node} starts {} attempt {} (term {})",
            s.idempotency_key, s.attempt, s.term
        );

        let own_retry = |o: &Overlap| o.same_leader && o.attempt < s.attempt;
        let own_orphan = |o: &Overlap| o.same_node && o.orphaned && o.attempt < s.attempt;
        if !overlapping.is_empty() && overlapping.iter().all(own_retry) && !self.strict {
            self.known.retry_overlaps += 1;
        } else if !overlapping.is_empty()
            && overlapping.iter().all(|o| own_retry(o) || own_orphan(o))
            && !self.strict
        {
            self.known.resume_overlaps += 1;
        } else if let Some(Overlap {
            node: other,
            attempt,
            start: since,
            ..
        }) = overlapping.first()
        {
            return Err((
                ViolationKind::DuplicateEffect,
                format!(
                    "{what} while attempt {attempt} of the same key, started by {other} at {} ms, is still running",
                    since.0 / 1000
                ),
            ));
        }
        let key = (s.site.clone(), s.run);
        let newer_begun = self
            .runs
            .iter()
            .filter(|((site, run), r)| *site == s.site && *run > s.run && r.begun.is_some())
            .map(|((_, run), _)| *run)
            .max();
        if let Some(newer) = newer_begun {
            return Err((
                ViolationKind::StaleRunActed,
                format!("{what}: run {newer} of site {} has begun", s.site),
            ));
        }
        let Some(seen) = self.runs.get(&key).cloned() else {
            return Ok(());
        };
        if seen.begun.is_some() {
            return Ok(());
        }
        self.runs.get_mut(&key).expect("present").begun = Some(now);
        // The first act of the run: the site it replaces must have fenced itself by now.
        self.check_isolated_first(now, &what, &s.site, faults)?;
        // The run's beginning as the core decided it: its first journaled start.
        if seen.first_journaled != Some((s.step, s.attempt)) {
            return Ok(());
        }
        if seen.trigger == RunTrigger::Verdict {
            if let Some(newer) = known_newer {
                if !self.strict {
                    self.known.stale_begins += 1;
                    return Ok(());
                }
                return Err((
                    ViolationKind::StaleRunActed,
                    format!("{what}: the run begins although {node} knows verdict epoch {newer} of its site"),
                ));
            }
            self.check_automatic(now, &what, &key, &seen, verdict_at)?;
        }
        Ok(())
    }

    fn check_automatic(
        &self,
        now: Time,
        what: &str,
        (site, run): &(SiteId, u64),
        seen: &RunSeen,
        verdict_at: Option<Time>,
    ) -> Check {
        let w = self.fleet.watch(site);
        if w.is_some_and(|w| w.single_vantage == SingleVantage::Manual) {
            return Err((
                ViolationKind::ForbiddenRun,
                format!("{what}: an automatic run of {site}, whose watch is single_vantage = \"manual\""),
            ));
        }
        let decided = verdict_at.unwrap_or(seen.registered);
        if let Some(m) = self
            .maintenance
            .iter()
            .find(|m| &m.site == site && m.at + self.propagation <= decided && now < m.until)
        {
            return Err((
                ViolationKind::ForbiddenRun,
                format!(
                    "{what}: an automatic run of {site} during its maintenance (set at {} ms)",
                    m.at.0 / 1000
                ),
            ));
        }
        let hold = self.fleet.timing.hold_down;
        if let Some(((_, prev), p)) = self.runs.iter().find(|((s, n), r)| {
            s == site
                && n != run
                && r.trigger == RunTrigger::Verdict
                && r.begun.is_some()
                && r.registered <= seen.registered
                && seen.registered < r.registered + hold
        }) {
            return Err((
                ViolationKind::ForbiddenRun,
                format!(
                    "{what}: an automatic run of {site} registered {} ms after run {prev}, within hold-down ({} s)",
                    seen.registered.since(p.registered).as_millis(),
                    hold.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// `node` starts an attempt of an isolation step: it may still withdraw its site.
    pub fn on_isolation_start(&mut self, node: &NodeId, s: &StartStep) {
        self.isolating.insert((s.site.clone(), node.clone()), false);
    }

    /// An isolation attempt of `node` ended without effect: when it was the step's last
    /// allowed attempt, that node can no longer withdraw its site.
    pub fn on_isolation_failed(&mut self, node: &NodeId, s: &StartStep) {
        let plan = self.fleet.watch(&s.site).and_then(|w| w.plan.as_ref());
        let retries = plan
            .and_then(|p| p.isolation.iter().find(|x| x.name == s.name))
            .map_or(0, |x| x.retries);
        if s.attempt > retries {
            self.isolating.insert((s.site.clone(), node.clone()), true);
        }
    }

    /// (vi): a site that stayed alive but was cut off has withdrawn itself by now.
    fn check_isolated_first(
        &mut self,
        now: Time,
        what: &str,
        site: &SiteId,
        f: &FaultModel,
    ) -> Check {
        let look_back = Time(now.0.saturating_sub(8_000_000));
        if f.blackout_during(site, look_back, now) {
            return Ok(());
        }
        let cut = f
            .partitions
            .iter()
            .any(|p| &p.from == site && p.start <= now && look_back < p.end);
        if !cut {
            return Ok(());
        }
        let mut tried = self.isolating.iter().filter(|((s, _), _)| s == site);
        let exhausted = tried.clone().next().is_some() && tried.all(|(_, done)| *done);
        for (prefix, by) in &self.announced {
            if by.contains(site) && self.declares(prefix, site) {
                if exhausted {
                    self.isolation_exhausted += 1;
                    return Ok(());
                }
                return Err((
                    ViolationKind::IsolationLate,
                    format!("{what}: site {site} is alive, cut off, and still announces {prefix}"),
                ));
            }
        }
        Ok(())
    }

    fn declares(&self, prefix: &str, site: &SiteId) -> bool {
        self.fleet
            .anycast()
            .iter()
            .any(|a| a.prefix.to_string() == prefix && a.sites.contains(site))
    }

    /// An effect happened: bgp steps move announcements; (v) after a run's withdraw.
    pub fn on_effect(&mut self, now: Time, e: &Effect, faults: &FaultModel) -> Check {
        let Some(plan) = self.fleet.watch(&e.site).and_then(|w| w.plan.as_ref()) else {
            return Ok(());
        };
        let Some(b) = plan.bgp_effect(&e.name) else {
            return Ok(());
        };
        let mut emptied = Vec::new();
        for p in &b.prefixes {
            let Some(by) = self.announced.get_mut(&p.to_string()) else {
                continue;
            };
            let judged_dead = |s: &SiteId| {
                let since = Time(now.0.saturating_sub(JUDGED_AFTER.as_micros() as u64));
                faults
                    .blackouts
                    .iter()
                    .any(|b| &b.site == s && b.start <= since && b.end.is_none_or(|e| now < e))
            };
            let live = |by: &BTreeSet<SiteId>| by.iter().any(|s| !judged_dead(s));
            let before = live(by);
            match b.action {
                BgpAction::Announce => {
                    by.insert(b.site.clone());
                    self.fenced.remove(&b.site);
                }
                BgpAction::Withdraw => {
                    by.remove(&b.site);
                    if e.purpose == crate::core::node::StepPurpose::Isolation {
                        self.fenced.insert(b.site.clone());
                        self.isolating.retain(|(s, _), _| *s != b.site);
                    }
                }
            }
            if before && !live(by) {
                emptied.push(p.to_string());
            }
        }
        let run = e.purpose == crate::core::node::StepPurpose::Run;
        let forced = self
            .runs
            .get(&(e.site.clone(), e.run))
            .is_some_and(|r| r.forced);
        if run && !forced && !emptied.is_empty() && !self.fenced.is_empty() && !self.strict {
            self.known.unrecorded_fences += 1;
        } else if run && !forced && !emptied.is_empty() {
            return Err((
                ViolationKind::PrefixUnannounced,
                format!(
                    "{} of run {}-{} (attempt {}, by node #{}) left {} announced by no live site",
                    e.name,
                    e.site,
                    e.run,
                    e.attempt_no,
                    e.node,
                    emptied.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// (iv), once faults have stopped for the bound: every run that began has finished, unless
    /// a newer run of its site began (the epoch fence stops it).
    pub fn check_settled(&self, now: Time, calm: Time, bound: Duration, f: &FaultModel) -> Check {
        for ((site, run), r) in &self.runs {
            // A reused epoch (a known defect, counted) names two runs: not told apart.
            if r.begun.is_none()
                || r.finished.is_some()
                || self.reused.contains(&(site.clone(), *run))
            {
                continue;
            }
            // Only a majority of the electorate, up since faults stopped, owes completion.
            if !f.majority_up(&self.fleet, site, calm, now) {
                continue;
            }
            let replaced = self
                .runs
                .iter()
                .any(|((s, n), o)| s == site && n > run && o.begun.is_some());
            if replaced {
                continue;
            }
            return Err((
                ViolationKind::RunNotCompleted,
                format!(
                    "run {site}-{run} began at {} ms and has not completed {} ms after faults stopped at {} ms",
                    r.begun.map_or(0, |t| t.0 / 1000),
                    bound.as_millis(),
                    calm.0 / 1000
                ),
            ));
        }
        Ok(())
    }
}
