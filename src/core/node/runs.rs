//! Failover runs as this node decides them: a DOWN verdict it leads schedules the site's plan
//! after the takeover delay, unless the site is in maintenance, its watch waits for an operator
//! (`single_vantage = "manual"`), it was never seen up since this node started (a fleet being
//! brought up), or a run of it started within hold-down. Every run's register and journal go
//! to the site's electorate (`core::replica`); a step starts only once a majority holds its
//! start, only while no newer run of the site has begun (the epoch fence), only if the anycast
//! rule allows it, and never while this node distrusts its clocks. A run whose leader went
//! silent is taken over here when it still needs running.
//!
//! Every deadline (takeover delay, hold-down, step timeouts and backoffs) is monotonic. The
//! register's `start_at` is the leader's wall clock: a node taking over a run that has not
//! begun waits out the delay from when it first heard of the run on its own monotonic clock,
//! and only falls back to `start_at` (never beyond one takeover delay) after a restart.

use super::{Action, NodeCore};
use crate::config::{FailoverPlan, SingleVantage};
use crate::core::anycast::{AnnouncementLedger, BgpEffect, SafetyRefusal};
use crate::core::pipeline::{
    JournalEntry, JournalKind, Pipeline, PipelineAction, PipelineSpec, RunReport, StepRef, StepSpec,
};
use crate::core::replica::{RunRecord, RunTrigger};
use crate::core::types::{Now, Outcome, SiteId, Time, WallTime};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tracing::{info, warn};

/// How many finished runs led here are kept for `GET /v1/failovers`.
pub const FINISHED_KEPT: usize = 50;

/// Which machine a step attempt belongs to; echoed back in its `StepDone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPurpose {
    /// A replicated failover or failback run.
    Run,
    /// This node's own isolation steps (self-fence).
    Isolation,
    /// An operator's dry run; `id` is the command waiting for its report.
    Drill { id: u64 },
}

/// One actuator call to make.
#[derive(Clone, Debug, PartialEq)]
pub struct StartStep {
    pub site: SiteId,
    /// The run (its journal key); `term` is the fencing token the actuator receives.
    pub run: u64,
    pub term: u64,
    pub step: StepRef,
    pub name: String,
    pub actuator: crate::core::actuator_kind::ActuatorKind,
    pub attempt: u32,
    pub idempotency_key: String,
    pub dry_run: bool,
    pub timeout: Duration,
    /// The step's actuator parameters from the fleet file.
    pub params: serde_json::Value,
    pub purpose: StepPurpose,
}

impl StartStep {
    /// The call a pipeline's `Start` action asks for; None for any other action.
    fn from_action(
        site: &SiteId,
        run: u64,
        a: PipelineAction,
        params: serde_json::Value,
        purpose: StepPurpose,
    ) -> Option<StartStep> {
        match a {
            PipelineAction::Start {
                step,
                name,
                actuator,
                epoch,
                attempt,
                idempotency_key,
                dry_run,
                timeout,
            } => Some(StartStep {
                site: site.clone(),
                run,
                term: epoch,
                step,
                name,
                actuator,
                attempt,
                idempotency_key,
                dry_run,
                timeout,
                params,
                purpose,
            }),
            _ => None,
        }
    }

    /// The result of this attempt.
    pub fn done(&self, ok: bool, detail: String) -> StepDone {
        StepDone {
            site: self.site.clone(),
            run: self.run,
            step: self.step,
            attempt: self.attempt,
            ok,
            detail,
            purpose: self.purpose,
        }
    }
}

/// One attempt's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepDone {
    pub site: SiteId,
    pub run: u64,
    pub step: StepRef,
    pub attempt: u32,
    pub ok: bool,
    pub detail: String,
    pub purpose: StepPurpose,
}

/// The runs this node leads, and what it remembers to decide the next ones.
#[derive(Default)]
pub struct Runs {
    /// Runs waiting out their takeover delay, until (monotonic).
    waiting: BTreeMap<(SiteId, u64), Time>,
    running: BTreeMap<(SiteId, u64), Pipeline>,
    /// Step starts held until a majority of the electorate holds the journal up to them.
    pending: BTreeMap<(SiteId, u64), Vec<StartStep>>,
    finished: VecDeque<RunReport>,
    /// Sites seen UP (by this node's Pinger or a peer's report) since this node started. A
    /// DOWN verdict on a site never seen up is the bring-up of a fleet whose site has not
    /// started yet, not a disaster: its failover is not armed.
    pub(super) seen_up: BTreeSet<SiteId>,
    /// No automatic run of the site starts before this (monotonic).
    pub(super) hold_until: BTreeMap<(SiteId, u64), Time>,
    /// When this node first heard of each run (monotonic): the takeover delay of a run taken
    /// over counts from here.
    pub(super) first_heard: BTreeMap<(SiteId, u64), Time>,
    /// New automatic runs this node refused to hold because of an earlier one (logged once).
    pub(super) hold_refusals: BTreeSet<(SiteId, u64)>,
    /// Runs this node started from an empty journal whose first start is not released yet:
    /// their verdict is checked again when it is (a run begins only on its newest verdict).
    unbegun: BTreeSet<(SiteId, u64)>,
}

impl Runs {
    pub fn waiting(&self) -> impl Iterator<Item = &(SiteId, u64)> {
        self.waiting.keys()
    }
    pub fn running(&self) -> impl Iterator<Item = (&(SiteId, u64), &Pipeline)> {
        self.running.iter()
    }
    /// Finished runs led here, oldest first.
    pub fn finished(&self) -> impl DoubleEndedIterator<Item = &RunReport> {
        self.finished.iter()
    }
    /// Until when no automatic run of `site` may start (monotonic).
    pub fn hold_down_until(&self, site: &SiteId) -> Option<Time> {
        self.hold_until
            .iter()
            .filter(|((s, _), _)| s == site)
            .map(|(_, until)| *until)
            .max()
    }
    /// A run of `site` is waiting or running here.
    pub fn busy(&self, site: &SiteId) -> Option<u64> {
        self.running
            .keys()
            .chain(self.waiting.keys())
            .find(|(s, _)| s == site)
            .map(|(_, e)| *e)
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        let waits = self.waiting.values().copied();
        let steps = self.running.values().filter_map(|p| p.poll_timeout());
        waits.chain(steps).min()
    }

    /// A run whose writes failed: nothing more of it happens here.
    pub(super) fn broken(&mut self, site: &SiteId, run: u64) {
        let key = (site.clone(), run);
        self.running.remove(&key);
        self.waiting.remove(&key);
        self.pending.remove(&key);
    }

    pub(super) fn insert_running(&mut self, key: (SiteId, u64), p: Pipeline) {
        self.running.insert(key, p);
    }

    pub(super) fn stop(&mut self, key: &(SiteId, u64)) {
        self.unbegun.remove(key);
        self.running.remove(key);
        self.waiting.remove(key);
        self.pending.remove(key);
    }
}

impl NodeCore {
    /// The plan of `site`, when this fleet may run it without an operator.
    fn automatic_plan(&self, site: &SiteId) -> Option<&FailoverPlan> {
        let w = self.fleet.watch(site)?;
        if w.single_vantage == SingleVantage::Manual && !self.broken.single_vantage {
            return None;
        }
        w.plan.as_ref()
    }

    /// The steps a run of `trigger` carries out for `site`, from the running fleet.
    pub fn run_spec(&self, site: &SiteId, trigger: RunTrigger) -> Option<PipelineSpec> {
        let plan = self.fleet.watch(site)?.plan.as_ref()?;
        Some(match trigger {
            RunTrigger::Verdict | RunTrigger::Manual | RunTrigger::Alarm => plan.pipeline.clone(),
            RunTrigger::Failback => failback_spec(&plan.pipeline),
            RunTrigger::Prestage => prestage_spec(plan),
            RunTrigger::Unstage => failback_spec(&prestage_spec(plan)),
        })
    }

    /// The actuator parameters of step `name` of `site`'s plan.
    fn step_params(&self, site: &SiteId, name: &str) -> serde_json::Value {
        self.fleet
            .watch(site)
            .and_then(|w| w.plan.as_ref())
            .and_then(|p| p.params.get(name).cloned())
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
    }

    /// The actuator call a pipeline's `Start` action asks for, with the step's parameters
    /// from the plan; None for any other action.
    pub(super) fn start_of(
        &self,
        site: &SiteId,
        run: u64,
        a: PipelineAction,
        purpose: StepPurpose,
    ) -> Option<StartStep> {
        let PipelineAction::Start { name, .. } = &a else {
            return None;
        };
        let params = self.step_params(site, name);
        StartStep::from_action(site, run, a, params, purpose)
    }

    /// Why an automatic failover of `site` must not be armed now, if it must not; otherwise
    /// the takeover delay it waits out. The same rules decide whether this node leads a DOWN
    /// verdict's run and whether it expects the run of one led elsewhere.
    pub(super) fn automatic_run(&self, now: Now, site: &SiteId) -> Result<Duration, NotArmed> {
        if let Some(why) = &self.retired {
            return Err(NotArmed::Retired(why.clone()));
        }
        if let Some(until) = self
            .operator
            .maintenance_until(site, now.wall)
            .filter(|_| !self.broken.maintenance)
        {
            return Err(NotArmed::Maintenance { until });
        }
        let Some(plan) = self.automatic_plan(site) else {
            let planned = self
                .fleet
                .watch(site)
                .and_then(|w| w.plan.as_ref())
                .is_some();
            return Err(if planned {
                NotArmed::Manual
            } else {
                NotArmed::NoPlan
            });
        };
        let delay = if self.broken.takeover_delay {
            Duration::ZERO
        } else {
            plan.takeover_delay
        };
        if !self.runs.seen_up.contains(site) {
            return Err(NotArmed::NeverSeenUp);
        }
        let held = self.runs.hold_down_until(site).filter(|u| now.mono < *u);
        if let Some(until) = held.filter(|_| !self.broken.hold_down) {
            return Err(NotArmed::HeldDown {
                left: until.since(now.mono),
            });
        }
        Ok(delay)
    }

    /// A DOWN verdict led by this node was committed: schedule its pipeline.
    pub(super) fn on_down_verdict_led_here(&mut self, now: Now, site: &SiteId, epoch: u64) {
        let key = (site.clone(), epoch);
        if self.runs.running.contains_key(&key) || self.runs.waiting.contains_key(&key) {
            return;
        }
        if self.replicas.record(site, epoch).is_some() {
            // Already known (a register replicated before the commit reached us): the
            // replication core decides who leads it.
            return;
        }
        let delay = match self.automatic_run(now, site) {
            Ok(delay) => delay,
            Err(why) => {
                why.log(site, epoch, self.fleet.timing.hold_down);
                return;
            }
        };
        info!(%site, epoch, delay_ms = delay.as_millis() as u64, "failover scheduled after the takeover delay");
        self.lead_run(
            now,
            site,
            epoch,
            RunTrigger::Verdict,
            false,
            now.wall + delay,
            Vec::new(),
        );
        self.runs.waiting.insert(key, now.mono + delay);
    }

    /// This node leads run `run` of `site`: its register goes to the electorate now, so that
    /// another voter can take the run over if this node goes silent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lead_run(
        &mut self,
        now: Now,
        site: &SiteId,
        run: u64,
        trigger: RunTrigger,
        forced: bool,
        start_at: WallTime,
        journal: Vec<JournalEntry>,
    ) {
        let e = self.electorate(site);
        self.replicas.lead_new(
            now.mono,
            site.clone(),
            run,
            trigger,
            forced,
            start_at,
            e,
            journal,
        );
    }

    /// At start: the registers this node holds. Runs it leads go on (a run not begun waits
    /// out what is left of its delay, at most one delay); the others are followed.
    pub(super) fn boot_runs(&mut self, now: Now, records: Vec<RunRecord>) {
        let hold_down = self.fleet.timing.hold_down;
        for r in records {
            self.voter.observe_epoch(&r.site, r.term());
            if r.trigger.holds_down() && !r.is_dropped() {
                // Hold-down across a restart can only be judged on the wall clock; a clock
                // stepped back cannot stretch it beyond one hold_down.
                let began = r.journal.first().map_or(r.start_at, |e| e.at);
                let elapsed = now.wall.since(began).min(hold_down);
                let until = now.mono + (hold_down - elapsed);
                self.runs.hold_until.insert((r.site.clone(), r.run), until);
            }
            let e = self.electorate(&r.site);
            self.replicas.load(now.mono, r, e);
        }
        let led: Vec<RunRecord> = self
            .replicas
            .records()
            .filter(|r| self.replicas.is_leader(&r.site, r.run) && !r.is_finished())
            .cloned()
            .collect();
        for r in led {
            info!(site = %r.site, run_id = r.run, term = r.term(), entries = r.journal.len(), "resuming a failover run this node leads");
            let term = r.term();
            self.go_on(now, r.site, r.run, r.trigger, term, r.journal, r.start_at);
        }
    }

    /// Runs a run this node now leads from its journal, or waits out what is left of its delay.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn go_on(
        &mut self,
        now: Now,
        site: SiteId,
        run: u64,
        trigger: RunTrigger,
        term: u64,
        journal: Vec<JournalEntry>,
        start_at: WallTime,
    ) {
        let Some(spec) = self.run_spec(&site, trigger) else {
            warn!(%site, run_id = run, "leading a failover run but this fleet has no plan for the site; not running it");
            return;
        };
        let key = (site.clone(), run);
        if journal.is_empty() {
            let delay = self
                .fleet
                .watch(&site)
                .and_then(|w| w.plan.as_ref())
                .map_or(Duration::ZERO, |p| p.takeover_delay);
            // From when this node first heard of the run, on its own monotonic clock; after
            // a restart only the leader's wall clock is left, trusted for at most one delay.
            let until = match self.runs.first_heard.get(&key) {
                Some(heard) => *heard + delay,
                None => now.mono + start_at.since(now.wall).min(delay),
            };
            if until > now.mono {
                self.runs.waiting.insert(key, until);
                return;
            }
            // Not begun: its verdict is checked again when its first start is released.
            self.runs.unbegun.insert(key.clone());
        }
        let forced = self.replicas.record(&site, run).is_some_and(|r| r.forced);
        let p = Pipeline::take_over_forced(spec, site, run, term, false, forced, &journal, now);
        self.runs.running.insert(key, p);
    }

    /// Starts the runs whose takeover delay has passed and fires pipeline timers.
    pub(super) fn on_run_timers(&mut self, now: Now) {
        let due: Vec<(SiteId, u64)> = self
            .runs
            .waiting
            .iter()
            .filter(|(_, at)| **at <= now.mono)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.runs.waiting.remove(&key);
            let Some(record) = self.replicas.record(&key.0, key.1).cloned() else {
                continue;
            };
            if !self.replicas.is_leader(&key.0, key.1) {
                continue;
            }
            // The site may have come back meanwhile: no failover for a verdict that is no
            // longer the newest.
            let current = self.voter.verdict(&key.0).map(|v| (v.outcome(), v.epoch()));
            if record.trigger == RunTrigger::Verdict && current != Some((Outcome::Down, key.1)) {
                self.drop_run(now, &key, "the verdict changed during the takeover delay");
                continue;
            }
            let Some(spec) = self.run_spec(&key.0, record.trigger) else {
                continue;
            };
            info!(site = %key.0, run_id = key.1, term = record.term(), "failover run started");
            if record.journal.is_empty() {
                self.runs.unbegun.insert(key.clone());
            }
            let p = Pipeline::take_over_forced(
                spec,
                key.0.clone(),
                key.1,
                record.term(),
                false,
                record.forced,
                &record.journal,
                now,
            );
            self.runs.running.insert(key, p);
        }
        for p in self.runs.running.values_mut() {
            if p.poll_timeout().is_some_and(|d| d <= now.mono) {
                p.handle_timeout(now);
            }
        }
    }

    pub(super) fn on_step_done(&mut self, now: Now, done: super::StepDone) {
        match done.purpose {
            StepPurpose::Run => {
                let key = (done.site.clone(), done.run);
                if let Some(p) = self.runs.running.get_mut(&key) {
                    p.handle_result(now, done.step, done.attempt, done.ok, done.detail);
                }
            }
            StepPurpose::Isolation => self.isolation_step_done(now, done),
            StepPurpose::Drill { id } => self.drill_step_done(now, id, done),
        }
    }

    /// Carries every pipeline action over: a journal entry is queued for the disk before
    /// anything after it, then offered to the electorate; starts wait for the majority.
    pub(super) fn drain_runs(&mut self, now: Now) -> bool {
        let mut any = false;
        let keys: Vec<(SiteId, u64)> = self.runs.running.keys().cloned().collect();
        for key in keys {
            while let Some(action) = self
                .runs
                .running
                .get_mut(&key)
                .and_then(|p| p.poll_action())
            {
                any = true;
                match action {
                    PipelineAction::Journal(entry) => {
                        self.actions.push_back(Action::AppendJournal(entry.clone()));
                        self.replicas.appended(now.mono, entry);
                    }
                    a @ PipelineAction::Start { .. } => {
                        if let Some(s) = self.start_of(&key.0, key.1, a, StepPurpose::Run) {
                            self.runs.pending.entry(key.clone()).or_default().push(s);
                        }
                    }
                    PipelineAction::Finished(report) => {
                        info!(site = %report.site, run_id = report.epoch, outcome = %report.outcome.summary(), "failover run finished");
                        self.runs.running.remove(&key);
                        self.runs.pending.remove(&key);
                        self.runs.finished.push_back(report);
                        if self.runs.finished.len() > FINISHED_KEPT {
                            self.runs.finished.pop_front();
                        }
                        break;
                    }
                }
            }
        }
        any
    }

    /// Starts the steps whose start entry a majority of the electorate now holds.
    pub(super) fn release_replicated_steps(&mut self, now: Now) -> bool {
        if self.holds_steps() {
            // Held, not dropped: they start once this node trusts its clocks again (a retired
            // node's runs are taken over by the electorate).
            return false;
        }
        let mut any = false;
        let keys: Vec<(SiteId, u64)> = self.runs.pending.keys().cloned().collect();
        for key in keys {
            if !self.replicas.is_leader(&key.0, key.1) {
                // Yielded: a higher ballot runs it; nothing queued here may start.
                self.runs.pending.remove(&key);
                continue;
            }
            if !self.replicas.replicated(&key.0, key.1) && !self.broken.start_unreplicated {
                continue;
            }
            if let Some(why) = self.superseded(&key.0, key.1) {
                warn!(site = %key.0, run_id = key.1, "{why}; this run stops here");
                self.runs.stop(&key);
                any = true;
                continue;
            }
            if self.runs.unbegun.remove(&key) {
                if let Some(why) = self.verdict_replaced(&key) {
                    self.drop_run(now, &key, &why);
                    any = true;
                    continue;
                }
            }
            for s in self.runs.pending.remove(&key).unwrap_or_default() {
                any = true;
                let live = self
                    .runs
                    .running
                    .get_mut(&key)
                    .is_some_and(|p| p.released(now, s.step, s.attempt));
                if !live {
                    // Timed out while held (its retry is queued behind it): never carried out,
                    // so two attempts of one step never overlap.
                    continue;
                }
                if let Some(refusal) = self.anycast_refusal(&s).filter(|_| !self.broken.anycast) {
                    // Refused steps fail without being carried out; the pipeline decides what
                    // that means (retry, abort, continue or compensate).
                    warn!(site = %s.site, run_id = s.run, step = %s.name, "{refusal}");
                    if let Some(p) = self.runs.running.get_mut(&key) {
                        p.handle_result(now, s.step, s.attempt, false, refusal.to_string());
                    }
                    continue;
                }
                info!(site = %s.site, run_id = s.run, term = s.term, step = %s.name, attempt = s.attempt, "failover step started");
                self.actions.push_back(Action::StartStep(s));
            }
        }
        any
    }

    /// Why an automatic run must not begin any more: its DOWN verdict is no longer the
    /// newest (the site came back, or a newer verdict replaced it) while a majority was being
    /// asked to hold its first start.
    fn verdict_replaced(&self, (site, run): &(SiteId, u64)) -> Option<String> {
        let record = self.replicas.record(site, *run)?;
        if record.trigger != RunTrigger::Verdict {
            return None;
        }
        let current = self.voter.verdict(site).map(|v| (v.outcome(), v.epoch()));
        (current != Some((Outcome::Down, *run))).then(|| {
            format!(
                "the newest verdict of site {site} is no longer the DOWN verdict of epoch {run}"
            )
        })
    }

    /// The anycast rule, before a bgp step: what the ledger believes announced comes from the
    /// fleet's declarations and every bgp step that succeeded in a run this node holds a
    /// journal of, oldest run first; a site is alive unless its newest verdict is DOWN.
    fn anycast_refusal(&self, s: &StartStep) -> Option<SafetyRefusal> {
        if crate::core::pipeline::is_fence(s.step) {
            // A fence withdraws the old primary on purpose before anyone announces (break
            // before make): the service must never run in two places.
            return None;
        }
        let plan = self.fleet.watch(&s.site)?.plan.as_ref()?;
        let effect = plan.bgp_effect(&s.name)?;
        let forced = self
            .replicas
            .record(&s.site, s.run)
            .is_some_and(|r| r.forced);
        let mut succeeded: Vec<&BgpEffect> = Vec::new();
        for r in self.replicas.records() {
            let Some(p) = self.fleet.watch(&r.site).and_then(|w| w.plan.as_ref()) else {
                continue;
            };
            for e in &r.journal {
                if matches!(e.kind, JournalKind::Finished { ok: true, .. }) {
                    succeeded.extend(p.bgp_effect(&e.name));
                }
            }
        }
        let ledger = AnnouncementLedger::replay(&plan.anycast, succeeded);
        let alive = |site: &SiteId| {
            self.voter
                .verdict(site)
                .is_none_or(|v| v.outcome() != Outcome::Down)
        };
        ledger.check(effect, alive, forced).err()
    }

    /// Epoch fencing: a step of an older run never starts once a newer run of the same site
    /// has begun.
    fn superseded(&self, site: &SiteId, run: u64) -> Option<String> {
        if self.broken.epoch_fence {
            return None;
        }
        self.replicas
            .records()
            // A run dropped before its first step never reached an actuator: it fences nothing.
            .filter(|o| &o.site == site && o.run > run && !o.journal.is_empty() && !o.is_dropped())
            .map(|o| o.run)
            .max()
            .map(|newer| {
                format!("refused by the epoch fence: run {newer} of site {site} has begun after run {run}")
            })
    }
}

/// Why an automatic failover is not armed for a DOWN verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NotArmed {
    /// This node is not in the running fleet file.
    Retired(String),
    /// The site is in maintenance until this wall time (Unix ms).
    Maintenance { until: i64 },
    /// `single_vantage = "manual"`: an operator starts the run.
    Manual,
    /// The site's watch has no plan.
    NoPlan,
    /// Not seen up since this node started: a fleet being brought up.
    NeverSeenUp,
    /// A run of the site began within hold-down; this much of it is left.
    HeldDown { left: Duration },
}

impl NotArmed {
    /// Says why a verdict this node leads starts no failover.
    fn log(&self, site: &SiteId, epoch: u64, hold_down: Duration) {
        match self {
            NotArmed::Retired(why) => warn!(%site, epoch, "failover not scheduled: {why}"),
            NotArmed::Maintenance { until } => {
                warn!(%site, epoch, until_unix_ms = until, "failover not scheduled: the site is in maintenance")
            }
            NotArmed::Manual => {
                warn!(%site, epoch, "failover waits for an operator: single_vantage = \"manual\"")
            }
            NotArmed::NoPlan => {}
            NotArmed::NeverSeenUp => {
                warn!(%site, epoch, "failover not armed: this site has not been seen up since this node started \
                      (a fleet being brought up, not a disaster); use POST /v1/failovers to run it by hand")
            }
            NotArmed::HeldDown { left } => {
                warn!(%site, epoch, left_s = left.as_secs(), hold_down_s = hold_down.as_secs(),
                      "refused by the hold-down rule: a failover of this site already ran within hold_down")
            }
        }
    }
}

/// The prestage steps of a plan as a run of their own (they never cut over).
pub fn prestage_spec(plan: &FailoverPlan) -> PipelineSpec {
    PipelineSpec {
        steps: plan.prestage.clone(),
        ..PipelineSpec::default()
    }
}

/// Back to the primary: the compensation of every step that has one, newest step first.
pub fn failback_spec(plan: &PipelineSpec) -> PipelineSpec {
    let steps: Vec<StepSpec> = plan
        .steps
        .iter()
        .rev()
        .filter_map(|s| s.compensation.as_deref().cloned())
        .map(|mut c| {
            c.compensation = None;
            c
        })
        .collect();
    PipelineSpec {
        prechecks: Vec::new(),
        steps,
        post: Vec::new(),
        fences: Vec::new(),
    }
}
