//! The failover run of one (site, epoch): which step runs next, when a failed attempt is
//! retried, when a step has timed out, and what a final failure means (abort, continue, or
//! compensate the steps already done). It owns the decisions and the journal entries that make
//! them survive a crash; it never runs an actuator, reads a clock or writes anything itself.
//! The driver makes every `Journal` action durable before it carries out any later action, so
//! a resumed run never starts a finished step again, and re-runs the one step whose outcome
//! the crash hid under the same idempotency key.
//!
//! Deadlines (step timeouts, backoffs) run on monotonic time (`Now::mono`); the journal and
//! the reports carry wall time (`Now::wall`), which is only shown and never waited on.

use super::actuator_kind::ActuatorKind;
use super::types::{Now, SiteId, Time, WallTime};
use serde::{Deserialize, Serialize};

mod detail;
mod fence;
mod outcome;
pub use detail::{cap_detail, MAX_DETAIL_BYTES};
pub use fence::is_fence;
pub use outcome::RunOutcome;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// What a step's final failure (after its retries) means for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OnFailure {
    /// Stop the run; nothing is undone.
    Abort,
    /// Record the failure and go on with the next step.
    Continue,
    /// Undo: run the compensation of this step and of every earlier step, newest first.
    Compensate,
}

/// One step of a pipeline, as the fleet file describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    pub name: String,
    /// The actuator kind that carries the step out.
    pub actuator: ActuatorKind,
    /// How long one attempt may run before it counts as failed.
    pub timeout: Duration,
    /// Attempts after the first one. A crash-interrupted attempt does not use one up.
    pub retries: u32,
    /// Delay before the first retry; it doubles on each further retry, up to 8 times this.
    pub backoff: Duration,
    pub on_failure: OnFailure,
    /// Undoes this step. Used when a later (or this) step fails with `Compensate`.
    pub compensation: Option<Box<StepSpec>>,
    /// For a fence: the read that must find the old primary fenced before the run goes on
    /// (polled `retries` more times, `backoff` apart, without doubling).
    #[serde(default)]
    pub confirm: Option<Box<StepSpec>>,
}

/// Longest retry delay, as a multiple of `backoff`.
const MAX_BACKOFF_FACTOR: u32 = 8;

impl StepSpec {
    /// A step with no retries that aborts the run when it fails.
    pub fn new(name: &str, actuator: ActuatorKind, timeout: Duration) -> StepSpec {
        StepSpec {
            name: name.to_string(),
            actuator,
            timeout,
            retries: 0,
            backoff: Duration::from_secs(1),
            on_failure: OnFailure::Abort,
            compensation: None,
            confirm: None,
        }
    }

    /// The wait before the retry that follows the `failures`-th failed attempt (1-based).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(3);
        self.backoff
            .saturating_mul(1u32 << doublings)
            .min(self.backoff.saturating_mul(MAX_BACKOFF_FACTOR))
    }
}

/// The whole failover of one site: checks that must pass before anything is touched, the
/// fences that put the old primary out of action (each confirmed by a read before the run
/// goes on), the steps that move the service, and steps run after a successful failover
/// (notifications, warm-ups) whose failure does not undo it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSpec {
    pub prechecks: Vec<StepSpec>,
    pub steps: Vec<StepSpec>,
    pub post: Vec<StepSpec>,
    /// Run after the prechecks and before the steps, in order.
    #[serde(default)]
    pub fences: Vec<StepSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    Precheck,
    Step,
    Post,
    /// `StepRef { phase: Compensation, index: i }` undoes `steps[i]`.
    Compensation,
    /// Runs after the prechecks, before the steps. Declared after `Compensation` so that the
    /// encoding of the phases that existed before it stays the same.
    Fence,
    /// `StepRef { phase: Confirm, index: i }` reads whether `fences[i]` took effect.
    Confirm,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Precheck => "precheck",
            Phase::Step => "step",
            Phase::Post => "post",
            Phase::Compensation => "compensation",
            Phase::Fence => "fence",
            Phase::Confirm => "confirm",
        }
    }
}

/// Where a step sits in its pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StepRef {
    pub phase: Phase,
    pub index: usize,
}

impl StepRef {
    pub fn new(phase: Phase, index: usize) -> StepRef {
        StepRef { phase, index }
    }
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.phase.as_str(), self.index)
    }
}

/// The key an actuator deduplicates on: the same for every attempt of a step in a run and
/// after a resume, different for every other step or epoch. E.g. "a/7/step/2/promote-volumes".
pub fn idempotency_key(site: &SiteId, epoch: u64, step: StepRef, name: &str) -> String {
    format!("{site}/{epoch}/{step}/{name}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalKind {
    Started,
    Finished { ok: bool, detail: String },
    RunFinished { outcome: RunOutcome },
}

/// What survives a crash. `at` is the driver's time; durations across a restart are only
/// meaningful when the driver's time origin is fixed (e.g. the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub site: SiteId,
    /// The run: the epoch that started it. It keys the journal and the idempotency keys.
    pub epoch: u64,
    /// The fencing token of the leader that wrote the entry: the run's epoch, or the higher
    /// one a takeover won.
    #[serde(default)]
    pub term: u64,
    /// For `RunFinished`: the step that decided the outcome (the last one run).
    pub step: StepRef,
    pub name: String,
    /// 1 for the first attempt; 0 for `RunFinished`.
    pub attempt: u32,
    /// Wall time: journaled and shown, never a deadline.
    pub at: WallTime,
    pub kind: JournalKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: StepRef,
    pub name: String,
    /// Attempts started, including one a crash interrupted.
    pub attempts: u32,
    pub ok: bool,
    /// The last attempt's detail.
    pub detail: String,
    pub started_at: WallTime,
    pub finished_at: Option<WallTime>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub site: SiteId,
    pub epoch: u64,
    pub outcome: RunOutcome,
    /// In the order the steps were first started.
    pub steps: Vec<StepReport>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipelineAction {
    /// Must be durable before any action emitted after it is carried out.
    Journal(JournalEntry),
    /// Run one attempt of a step and report it with `handle_result`. `epoch` is the fencing
    /// token; actuators refuse a lower one than they have seen.
    Start {
        step: StepRef,
        name: String,
        actuator: ActuatorKind,
        epoch: u64,
        attempt: u32,
        idempotency_key: String,
        dry_run: bool,
        timeout: Duration,
    },
    /// The run is over; emitted once per `Pipeline` value (again after a resume).
    Finished(RunReport),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// The next attempt may start now.
    Ready,
    Running {
        attempt: u32,
        deadline: Time,
    },
    /// A failed attempt is waiting out its backoff.
    Waiting {
        until: Time,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Cursor {
    At(StepRef, Status),
    Done(RunOutcome),
}

#[derive(Clone, Debug, Default)]
struct Record {
    attempts: u32,
    failures: u32,
    started_at: WallTime,
    finished_at: Option<WallTime>,
    ok: bool,
    detail: String,
}

struct Compensating {
    step: StepRef,
    detail: String,
    queue: VecDeque<usize>,
    failed: Vec<StepRef>,
}

pub struct Pipeline {
    spec: PipelineSpec,
    site: SiteId,
    epoch: u64,
    /// The fencing token actuators receive; `epoch` unless the run was taken over.
    term: u64,
    dry_run: bool,
    /// An operator forced the run: it goes on past a fence whose confirmation failed.
    forced: bool,
    cursor: Cursor,
    /// The step that ran last, for the `RunFinished` entry.
    last: Option<StepRef>,
    order: Vec<StepRef>,
    records: BTreeMap<StepRef, Record>,
    continued: Vec<StepRef>,
    post_failed: Vec<StepRef>,
    compensating: Option<Compensating>,
    /// While rebuilding from the journal nothing is journaled again.
    replaying: bool,
    run_journaled: bool,
    finished_emitted: bool,
    actions: VecDeque<PipelineAction>,
}

impl Pipeline {
    /// A fresh run; the first step's journal entry and start are queued.
    pub fn new(spec: PipelineSpec, site: SiteId, epoch: u64, dry_run: bool, now: Now) -> Pipeline {
        Pipeline::new_forced(spec, site, epoch, dry_run, false, now)
    }

    /// `new` for a run an operator may have forced (see `take_over_forced`).
    pub fn new_forced(
        spec: PipelineSpec,
        site: SiteId,
        epoch: u64,
        dry_run: bool,
        forced: bool,
        now: Now,
    ) -> Pipeline {
        let mut p = Pipeline::blank(spec, site, epoch, dry_run);
        p.forced = forced;
        p.kick(now);
        p
    }

    /// Rebuilds a run from its journal. Entries of another site or of a higher epoch are
    /// ignored; entries of a lower epoch are a run this node takes over. A step started but
    /// not finished in the journal runs again (next attempt, same key when the epoch is the
    /// same): its side effect may or may not have happened. A finished step never runs again.
    pub fn resume(
        spec: PipelineSpec,
        site: SiteId,
        epoch: u64,
        dry_run: bool,
        journal: &[JournalEntry],
        now: Now,
    ) -> Pipeline {
        Pipeline::take_over(spec, site, epoch, epoch, dry_run, journal, now)
    }

    /// `resume` under a takeover's fencing token `term`: the steps that follow carry it,
    /// while their idempotency keys stay those of the run, so a step whose start the old
    /// leader journaled is re-run under the key it had.
    pub fn take_over(
        spec: PipelineSpec,
        site: SiteId,
        epoch: u64,
        term: u64,
        dry_run: bool,
        journal: &[JournalEntry],
        now: Now,
    ) -> Pipeline {
        Pipeline::take_over_forced(spec, site, epoch, term, dry_run, false, journal, now)
    }

    /// `take_over` of a run an operator may have forced: a forced run goes on past a fence
    /// whose confirmation failed (the journal's entry of its last read says so).
    #[allow(clippy::too_many_arguments)]
    pub fn take_over_forced(
        spec: PipelineSpec,
        site: SiteId,
        epoch: u64,
        term: u64,
        dry_run: bool,
        forced: bool,
        journal: &[JournalEntry],
        now: Now,
    ) -> Pipeline {
        let mut p = Pipeline::blank(spec, site, epoch, dry_run);
        p.forced = forced;
        p.term = term.max(epoch);
        p.replaying = true;
        for e in journal {
            if e.site == p.site && e.epoch <= epoch {
                p.replay(e, now);
            }
        }
        p.replaying = false;
        if let Cursor::At(_, status @ Status::Running { .. }) = &mut p.cursor {
            *status = Status::Ready;
        }
        p.kick(now);
        p
    }

    /// The run as its journal tells it, for display: nothing is started or queued.
    pub fn replayed(
        spec: PipelineSpec,
        site: SiteId,
        epoch: u64,
        journal: &[JournalEntry],
    ) -> Pipeline {
        let mut p = Pipeline::blank(spec, site, epoch, false);
        p.replaying = true;
        for e in journal {
            if e.site == p.site && e.epoch == epoch {
                p.replay(e, Now::new(Time::ZERO, e.at));
            }
        }
        p.replaying = false;
        p
    }

    fn blank(spec: PipelineSpec, site: SiteId, epoch: u64, dry_run: bool) -> Pipeline {
        let mut p = Pipeline {
            spec,
            site,
            epoch,
            term: epoch,
            dry_run,
            forced: false,
            cursor: Cursor::Done(RunOutcome::Succeeded {
                continued: Vec::new(),
                post_failed: Vec::new(),
            }),
            last: None,
            order: Vec::new(),
            records: BTreeMap::new(),
            continued: Vec::new(),
            post_failed: Vec::new(),
            compensating: None,
            replaying: false,
            run_journaled: false,
            finished_emitted: false,
            actions: VecDeque::new(),
        };
        p.cursor = p.first_from(Phase::Precheck, 0);
        p
    }

    /// Replays one entry; `now` places the entry's wall time on the monotonic clock, so that a
    /// backoff pending at a crash is waited out. The wall time only says how long ago it
    /// was: an entry from the future (a clock stepped back) counts as now, one from long ago
    /// as over, so a clock error never stretches a wait beyond the step's own backoff.
    fn replay(&mut self, e: &JournalEntry, now: Now) {
        let ago = now.wall.since(e.at);
        let at = Now::new(
            Time(now.mono.0.saturating_sub(ago.as_micros() as u64)),
            e.at,
        );
        match &e.kind {
            JournalKind::Started => {
                if let Cursor::At(r, status) = self.cursor {
                    // A later attempt of the running step: the earlier one's leader crashed or
                    // was replaced before it journaled an outcome, and the next leader started
                    // the step again.
                    let newer = match status {
                        Status::Running { attempt, .. } => e.attempt > attempt,
                        _ => true,
                    };
                    if r == e.step && newer {
                        self.begin(at, r, e.attempt);
                    }
                }
            }
            JournalKind::Finished { ok, detail } => {
                if self.running(e.step, e.attempt) {
                    self.conclude(at, *ok, detail.clone());
                }
            }
            JournalKind::RunFinished { outcome } => {
                self.cursor = Cursor::Done(outcome.clone());
                self.run_journaled = true;
            }
        }
    }

    pub fn site(&self) -> &SiteId {
        &self.site
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn outcome(&self) -> Option<&RunOutcome> {
        match &self.cursor {
            Cursor::Done(o) => Some(o),
            Cursor::At(..) => None,
        }
    }

    /// Steps started so far, in the order they were first started.
    pub fn steps(&self) -> Vec<StepReport> {
        self.order
            .iter()
            .map(|&r| {
                let rec = &self.records[&r];
                StepReport {
                    step: r,
                    name: self.spec_of(r).name.clone(),
                    attempts: rec.attempts,
                    ok: rec.ok,
                    detail: rec.detail.clone(),
                    started_at: rec.started_at,
                    finished_at: rec.finished_at,
                }
            })
            .collect()
    }

    pub fn poll_action(&mut self) -> Option<PipelineAction> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        match self.cursor {
            Cursor::At(_, Status::Running { deadline, .. }) => Some(deadline),
            Cursor::At(_, Status::Waiting { until }) => Some(until),
            _ => None,
        }
    }

    /// The outcome of one attempt. A result for another step or attempt (late, duplicated,
    /// or from before a timeout) is ignored.
    pub fn handle_result(
        &mut self,
        now: Now,
        step: StepRef,
        attempt: u32,
        ok: bool,
        detail: String,
    ) {
        if self.running(step, attempt) {
            self.conclude(now, ok, detail);
            self.kick(now);
        }
    }

    /// Times out a running attempt past its deadline and starts a retry whose backoff is over.
    pub fn handle_timeout(&mut self, now: Now) {
        if let Cursor::At(r, Status::Running { deadline, .. }) = self.cursor {
            if now.mono >= deadline {
                let timeout = self.spec_of(r).timeout;
                let detail = format!("timed out after {}", humantime::format_duration(timeout));
                self.conclude(now, false, detail);
            }
        }
        self.kick(now);
    }

    /// The driver's start of attempt `attempt` of `step` is released now (its start entry is
    /// held by a majority): its timeout counts from here, not from when it was queued, so a
    /// start held back by a slow or partitioned electorate is not timed out before it began.
    /// False when that attempt is no longer the running one (it timed out meanwhile, or the
    /// run moved on): the start is stale and must not be carried out.
    pub fn released(&mut self, now: Now, step: StepRef, attempt: u32) -> bool {
        if !self.running(step, attempt) {
            return false;
        }
        let deadline = now.mono + self.spec_of(step).timeout;
        self.cursor = Cursor::At(step, Status::Running { attempt, deadline });
        true
    }

    fn running(&self, step: StepRef, attempt: u32) -> bool {
        matches!(self.cursor, Cursor::At(r, Status::Running { attempt: a, .. }) if r == step && a == attempt)
    }

    fn spec_of(&self, r: StepRef) -> &StepSpec {
        match r.phase {
            Phase::Precheck => &self.spec.prechecks[r.index],
            Phase::Step => &self.spec.steps[r.index],
            Phase::Post => &self.spec.post[r.index],
            Phase::Compensation => self.spec.steps[r.index]
                .compensation
                .as_deref()
                .expect("only steps with a compensation are compensated"),
            Phase::Fence => &self.spec.fences[r.index],
            Phase::Confirm => self.spec.fences[r.index]
                .confirm
                .as_deref()
                .expect("only fences with a confirmation are confirmed"),
        }
    }

    fn entry(&self, at: WallTime, step: StepRef, attempt: u32, kind: JournalKind) -> JournalEntry {
        JournalEntry {
            site: self.site.clone(),
            epoch: self.epoch,
            term: self.term,
            step,
            name: self.spec_of(step).name.clone(),
            attempt,
            at,
            kind,
        }
    }

    fn journal(&mut self, entry: JournalEntry) {
        if !self.replaying {
            self.actions.push_back(PipelineAction::Journal(entry));
        }
    }

    /// Starts whatever is due, or ends the run.
    fn kick(&mut self, now: Now) {
        match self.cursor.clone() {
            Cursor::At(r, Status::Ready) => self.start(now, r),
            Cursor::At(r, Status::Waiting { until }) if until <= now.mono => self.start(now, r),
            Cursor::At(..) => {}
            Cursor::Done(outcome) => {
                if !self.run_journaled {
                    self.run_journaled = true;
                    let (step, name) = match self.last {
                        Some(r) => (r, self.spec_of(r).name.clone()),
                        None => (StepRef::new(Phase::Step, 0), String::new()),
                    };
                    self.journal(JournalEntry {
                        site: self.site.clone(),
                        epoch: self.epoch,
                        term: self.term,
                        step,
                        name,
                        attempt: 0,
                        at: now.wall,
                        kind: JournalKind::RunFinished {
                            outcome: outcome.clone(),
                        },
                    });
                }
                if !self.finished_emitted {
                    self.finished_emitted = true;
                    self.actions.push_back(PipelineAction::Finished(RunReport {
                        site: self.site.clone(),
                        epoch: self.epoch,
                        outcome,
                        steps: self.steps(),
                    }));
                }
            }
        }
    }

    fn start(&mut self, now: Now, r: StepRef) {
        let attempt = self.records.get(&r).map_or(0, |rec| rec.attempts) + 1;
        self.begin(now, r, attempt);
        self.journal(self.entry(now.wall, r, attempt, JournalKind::Started));
        let spec = self.spec_of(r);
        let action = PipelineAction::Start {
            step: r,
            name: spec.name.clone(),
            actuator: spec.actuator,
            epoch: self.term,
            attempt,
            idempotency_key: idempotency_key(&self.site, self.epoch, r, &spec.name),
            dry_run: self.dry_run,
            timeout: spec.timeout,
        };
        self.actions.push_back(action);
    }

    /// Marks attempt `attempt` of `r` as running from `now`.
    fn begin(&mut self, now: Now, r: StepRef, attempt: u32) {
        let deadline = now.mono + self.spec_of(r).timeout;
        if !self.records.contains_key(&r) {
            self.order.push(r);
            self.records.insert(
                r,
                Record {
                    started_at: now.wall,
                    ..Record::default()
                },
            );
        }
        let rec = self.records.get_mut(&r).expect("just inserted");
        rec.attempts = rec.attempts.max(attempt);
        self.last = Some(r);
        self.cursor = Cursor::At(r, Status::Running { attempt, deadline });
    }

    /// Records the running attempt's outcome: a retry after its backoff, or the step's final
    /// result and the next step.
    fn conclude(&mut self, now: Now, ok: bool, detail: String) {
        let Cursor::At(r, Status::Running { attempt, .. }) = self.cursor else {
            return;
        };
        let mut detail = cap_detail(detail);
        if r.phase == Phase::Confirm && !ok && self.forced && !self.replaying {
            let rec = self.records.get(&r).map_or(0, |rec| rec.failures);
            if rec >= self.spec_of(r).retries {
                detail = cap_detail(format!("{}; last read: {detail}", fence::FORCED_NOTE));
            }
        }
        self.journal(self.entry(
            now.wall,
            r,
            attempt,
            JournalKind::Finished {
                ok,
                detail: detail.clone(),
            },
        ));
        let spec = self.spec_of(r);
        let (retries, on_failure) = (spec.retries, spec.on_failure);
        let spec = spec.clone();
        let rec = self
            .records
            .get_mut(&r)
            .expect("a running step has a record");
        rec.detail = detail.clone();
        if !ok {
            rec.failures += 1;
            if rec.failures <= retries {
                // A confirmation polls at a steady interval: the fenced state is awaited, not
                // a struggling controller spared.
                let delay = match r.phase {
                    Phase::Confirm => spec.backoff,
                    _ => spec.retry_delay(rec.failures),
                };
                let until = now.mono + delay;
                self.cursor = Cursor::At(r, Status::Waiting { until });
                return;
            }
        }
        rec.ok = ok;
        rec.finished_at = Some(now.wall);
        self.cursor = self.next_after(r, ok, detail, on_failure);
    }

    fn next_after(
        &mut self,
        r: StepRef,
        ok: bool,
        detail: String,
        on_failure: OnFailure,
    ) -> Cursor {
        match r.phase {
            Phase::Precheck if !ok => Cursor::Done(RunOutcome::PrecheckFailed { step: r, detail }),
            Phase::Precheck => self.first_from(Phase::Precheck, r.index + 1),
            Phase::Step if ok => self.first_from(Phase::Step, r.index + 1),
            Phase::Step => match on_failure {
                OnFailure::Abort => Cursor::Done(RunOutcome::Aborted { step: r, detail }),
                OnFailure::Continue => {
                    self.continued.push(r);
                    self.first_from(Phase::Step, r.index + 1)
                }
                OnFailure::Compensate => {
                    let queue = (0..=r.index)
                        .rev()
                        .filter(|&i| self.spec.steps[i].compensation.is_some())
                        .collect();
                    self.compensating = Some(Compensating {
                        step: r,
                        detail,
                        queue,
                        failed: Vec::new(),
                    });
                    self.next_compensation()
                }
            },
            Phase::Post => {
                if !ok {
                    self.post_failed.push(r);
                }
                self.first_from(Phase::Post, r.index + 1)
            }
            Phase::Compensation => {
                if !ok {
                    if let Some(c) = &mut self.compensating {
                        c.failed.push(r);
                    }
                }
                self.next_compensation()
            }
            Phase::Fence => self.after_fence(r),
            Phase::Confirm => self.after_confirm(r, ok, detail),
        }
    }

    fn next_compensation(&mut self) -> Cursor {
        let c = self
            .compensating
            .as_mut()
            .expect("compensations run only after a Compensate failure");
        match c.queue.pop_front() {
            Some(i) => Cursor::At(StepRef::new(Phase::Compensation, i), Status::Ready),
            None => Cursor::Done(RunOutcome::Compensated {
                step: c.step,
                detail: c.detail.clone(),
                compensation_failed: c.failed.clone(),
            }),
        }
    }

    /// The first step at or after (`phase`, `index`) in precheck, fence, step, post order.
    fn first_from(&self, phase: Phase, index: usize) -> Cursor {
        let phases = [
            (Phase::Precheck, self.spec.prechecks.len()),
            (Phase::Fence, self.spec.fences.len()),
            (Phase::Step, self.spec.steps.len()),
            (Phase::Post, self.spec.post.len()),
        ];
        let at = phases.iter().position(|(p, _)| *p == phase).unwrap_or(0);
        for (i, (p, len)) in phases.into_iter().enumerate().skip(at) {
            let from = if i == at { index } else { 0 };
            if from < len {
                return Cursor::At(StepRef::new(p, from), Status::Ready);
            }
        }
        Cursor::Done(RunOutcome::Succeeded {
            continued: self.continued.clone(),
            post_failed: self.post_failed.clone(),
        })
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pipeline_fence_tests.rs"]
mod fence_tests;
