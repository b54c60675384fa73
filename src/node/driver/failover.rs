//! Runs the failover pipeline of a site after a DOWN verdict this node leads: waits the
//! takeover delay, journals every step start and finish in SQLite before and after its side
//! effect, runs the actuators, and resumes an unfinished run from its journal after a restart.
//! The pipeline's own logic is the pure `core::pipeline`; this module only carries it out.
//!
//! Pipelines run on wall-clock time (µs since the Unix epoch) so that journal times still
//! mean something after a restart.

use super::*;
use crate::actuators::{self, StepContext};
use crate::core::pipeline::{JournalKind, Pipeline, PipelineAction, RunReport, StepRef};
use crate::core::replica::RunTrigger;
use std::collections::BTreeSet;

/// One actuator call to make: a pipeline's `Start` action with the run it belongs to.
pub(crate) struct StartStep {
    pub site: SiteId,
    /// The run (its journal key); `term` is the fencing token the actuator receives.
    pub run: u64,
    pub term: u64,
    pub step: StepRef,
    pub name: String,
    pub actuator: actuators::ActuatorKind,
    pub attempt: u32,
    pub idempotency_key: String,
    pub dry_run: bool,
    pub timeout: Duration,
}

impl StartStep {
    /// The call a pipeline's `Start` action asks for, in run `run` of `site`; None for any
    /// other action.
    pub fn from_action(site: &SiteId, run: u64, a: PipelineAction) -> Option<StartStep> {
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
            }),
            _ => None,
        }
    }
}

/// A step's result, sent back to the driver loop by the task that ran the actuator.
pub(crate) struct StepDone {
    pub site: SiteId,
    /// The run the step belongs to.
    pub epoch: u64,
    pub step: StepRef,
    pub attempt: u32,
    pub ok: bool,
    pub detail: String,
}

/// Runs waiting for their takeover delay, running, and finished (newest last).
#[derive(Default)]
pub(crate) struct Failovers {
    pub waiting: BTreeMap<(SiteId, u64), Instant>,
    pub running: BTreeMap<(SiteId, u64), Pipeline>,
    /// Step starts held until a majority of the electorate holds the journal up to them.
    pub pending: BTreeMap<(SiteId, u64), Vec<StartStep>>,
    pub finished: Vec<RunReport>,
    /// Sites seen UP (by this node's Pinger or a peer's report) since this node started.
    /// A DOWN verdict on a site never seen up is the bring-up of a fleet whose site has not
    /// started yet, not a disaster: its failover is not armed.
    pub seen_up: BTreeSet<SiteId>,
}

pub(crate) fn wall_now() -> Time {
    Time::from_micros(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
    )
}

impl Driver {
    /// The plan of `site` when this node may run it automatically.
    fn automatic_plan(&self, site: &SiteId) -> Option<crate::config::FailoverPlan> {
        let w = self.fleet().watch(site)?;
        if w.single_vantage == SingleVantage::Manual {
            return None;
        }
        w.plan.clone()
    }

    /// A DOWN verdict led by this node was committed: schedule its pipeline.
    pub(super) fn on_down_verdict_led_here(&mut self, now: Instant, site: &SiteId, epoch: u64) {
        self.schedule_failover(now, site, epoch, true);
    }

    /// `armed_check`: refuse a site never seen up since this node started (see `seen_up`).
    fn schedule_failover(&mut self, now: Instant, site: &SiteId, epoch: u64, armed_check: bool) {
        if self.maintenance_holds(site, epoch) {
            return;
        }
        let Some(plan) = self.automatic_plan(site) else {
            if self
                .fleet()
                .watch(site)
                .and_then(|w| w.plan.as_ref())
                .is_some()
            {
                warn!(%site, epoch, "failover waits for an operator: single_vantage = \"manual\"");
            }
            return;
        };
        let key = (site.clone(), epoch);
        if self.failovers.running.contains_key(&key) || self.failovers.waiting.contains_key(&key) {
            return;
        }
        match self.store.journal(site, epoch) {
            Ok(j) if !j.is_empty() => {
                // Already journaled (a restart): resume rather than start again.
                self.resume_run(site, epoch, &plan, &j);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                error!(%site, epoch, error = %e, "cannot read the failover journal; not starting the run");
                return;
            }
        }
        if armed_check && !self.failovers.seen_up.contains(site) {
            warn!(%site, epoch, "failover not armed: this site has not been seen up since this node started \
                  (a fleet being brought up, not a disaster); use POST /v1/failovers to run it by hand");
            return;
        }
        if let Some(last) = self.last_automatic_run(site) {
            let hold = self.fleet().timing.hold_down;
            let since = wall_now().since(last);
            if since < hold {
                warn!(%site, epoch, since_s = since.as_secs(), hold_down_s = hold.as_secs(),
                      "refused by the hold-down rule: a failover of this site already ran within hold_down");
                return;
            }
        }
        info!(%site, epoch, delay_ms = plan.takeover_delay.as_millis() as u64, "failover scheduled after the takeover delay");
        let start_at = wall_now() + plan.takeover_delay;
        self.lead_run(
            now,
            site,
            epoch,
            RunTrigger::Verdict,
            false,
            start_at,
            Vec::new(),
        );
        self.failovers
            .waiting
            .insert(key, now + plan.takeover_delay);
        self.dirty = true;
    }

    /// This node leads run `run` of `site`: its register goes to the electorate now, so that
    /// another voter can take the run over if this node goes silent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lead_run(
        &mut self,
        now: Instant,
        site: &SiteId,
        run: u64,
        trigger: RunTrigger,
        forced: bool,
        start_at: Time,
        journal: Vec<crate::core::pipeline::JournalEntry>,
    ) {
        let e = self.electorate(site);
        let t = self.time(now);
        self.replicas
            .lead_new(t, site.clone(), run, trigger, forced, start_at, e, journal);
        self.drain_replicas(now);
    }

    /// When the newest earlier run of `site` started, from the journal.
    fn last_automatic_run(&self, site: &SiteId) -> Option<Time> {
        let runs = self.store.runs(50).ok()?;
        runs.into_iter()
            .filter(|r| &r.site == site)
            .map(|r| r.first_at)
            .max()
    }

    fn resume_run(
        &mut self,
        site: &SiteId,
        epoch: u64,
        plan: &crate::config::FailoverPlan,
        journal: &[crate::core::pipeline::JournalEntry],
    ) {
        let finished = journal
            .iter()
            .any(|e| matches!(e.kind, JournalKind::RunFinished { .. }));
        info!(%site, epoch, entries = journal.len(), finished, "resuming the failover run from its journal");
        if !self.replicas.is_leader(site, epoch) {
            self.lead_run(
                Instant::now(),
                site,
                epoch,
                RunTrigger::Verdict,
                false,
                wall_now(),
                journal.to_vec(),
            );
        }
        let p = Pipeline::resume(
            plan.pipeline.clone(),
            site.clone(),
            epoch,
            false,
            journal,
            wall_now(),
        );
        self.failovers.running.insert((site.clone(), epoch), p);
        self.dirty = true;
    }

    /// After a restart: resume the runs this node leads whose journal has no end, and show the
    /// finished ones again.
    pub(super) fn resume_unfinished_runs(&mut self, now: Instant) {
        self.load_runs(now);
        self.drain_replicas(now);
        let led: Vec<(
            RunTrigger,
            SiteId,
            u64,
            u64,
            Vec<crate::core::pipeline::JournalEntry>,
            Time,
        )> = self
            .replicas
            .records()
            .filter(|r| self.replicas.is_leader(&r.site, r.run))
            .map(|r| {
                (
                    r.trigger,
                    r.site.clone(),
                    r.run,
                    r.term(),
                    r.journal.clone(),
                    r.start_at,
                )
            })
            .collect();
        for (trigger, site, run, term, journal, start_at) in led {
            let Some(spec) = self.run_spec(&site, trigger) else {
                continue;
            };
            let key = (site.clone(), run);
            let wall = wall_now();
            info!(%site, run, term, entries = journal.len(), "resuming a failover run this node leads");
            if journal.is_empty() && start_at > wall {
                let wait = Duration::from_micros(start_at.as_micros() - wall.as_micros());
                self.failovers.waiting.insert(key, now + wait);
            } else {
                let p = Pipeline::take_over(spec, site, run, term, false, &journal, wall);
                self.failovers.running.insert(key, p);
            }
        }
        // Runs journaled before this node kept run registers: led by the verdict's leader.
        let led: Vec<(SiteId, u64)> = self
            .voter
            .verdicts()
            .filter(|v| v.outcome() == Outcome::Down && v.value.leader == self.me.id)
            .filter(|v| self.replicas.record(&v.site, v.epoch()).is_none())
            .map(|v| (v.site.clone(), v.epoch()))
            .collect();
        for (site, epoch) in led {
            let Some(plan) = self.automatic_plan(&site) else {
                continue;
            };
            match self.store.journal(&site, epoch) {
                // A finished run only reports again (for GET /v1/failovers); an unfinished one
                // goes on from its journal.
                Ok(j) if !j.is_empty() => self.resume_run(&site, epoch, &plan, &j),
                // Committed but never started (a crash in the takeover delay): start it now,
                // unless a newer verdict replaced it.
                Ok(_) => {
                    if self.voter.verdict(&site).map(|v| v.epoch()) == Some(epoch) {
                        self.schedule_failover(now, &site, epoch, false);
                    }
                }
                Err(e) => error!(%site, epoch, error = %e, "cannot read the failover journal"),
            }
        }
    }

    /// Starts the runs whose takeover delay has passed and fires pipeline timers.
    pub(super) fn on_failover_timers(&mut self, now: Instant) {
        let due: Vec<(SiteId, u64)> = self
            .failovers
            .waiting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.failovers.waiting.remove(&key);
            let Some(plan) = self.automatic_plan(&key.0) else {
                continue;
            };
            // The site may have come back meanwhile: no failover for a verdict that is no
            // longer the newest.
            let _ = plan;
            let Some(record) = self.replicas.record(&key.0, key.1).cloned() else {
                continue;
            };
            if !self.replicas.is_leader(&key.0, key.1) {
                continue;
            }
            let current = self.voter.verdict(&key.0).map(|v| (v.outcome(), v.epoch()));
            if record.trigger == RunTrigger::Verdict && current != Some((Outcome::Down, key.1)) {
                info!(site = %key.0, epoch = key.1, "failover dropped: the verdict changed during the takeover delay");
                continue;
            }
            let Some(spec) = self.run_spec(&key.0, record.trigger) else {
                continue;
            };
            info!(site = %key.0, epoch = key.1, term = record.term(), "failover run started");
            let p = Pipeline::take_over(
                spec,
                key.0.clone(),
                key.1,
                record.term(),
                false,
                &record.journal,
                wall_now(),
            );
            self.failovers.running.insert(key, p);
            self.dirty = true;
        }
        let t = wall_now();
        for p in self.failovers.running.values_mut() {
            if p.poll_timeout().is_some_and(|d| d <= t) {
                p.handle_timeout(t);
            }
        }
        self.drain_failovers();
    }

    /// The earliest instant a failover needs the loop to wake up.
    pub(super) fn failover_wake(&self, now: Instant) -> Option<Instant> {
        let t = wall_now();
        let mut wake = self.failovers.waiting.values().min().copied();
        for p in self.failovers.running.values() {
            if let Some(d) = p.poll_timeout() {
                let at = now + Duration::from_micros(d.as_micros().saturating_sub(t.as_micros()));
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    pub(super) fn on_step_done(&mut self, done: StepDone) {
        if self.isolation_step_done(&done) {
            return;
        }
        let key = (done.site.clone(), done.epoch);
        if let Some(p) = self.failovers.running.get_mut(&key) {
            p.handle_result(wall_now(), done.step, done.attempt, done.ok, done.detail);
        }
        self.drain_failovers();
    }

    /// Carries out every pipeline action: a journal entry is on disk before the next action.
    pub(super) fn drain_failovers(&mut self) {
        let keys: Vec<(SiteId, u64)> = self.failovers.running.keys().cloned().collect();
        for key in keys {
            while let Some(action) = self
                .failovers
                .running
                .get_mut(&key)
                .and_then(|p| p.poll_action())
            {
                match action {
                    PipelineAction::Journal(entry) => {
                        let point = |when: &str| {
                            let kind = match entry.kind {
                                JournalKind::Started => "started",
                                JournalKind::Finished { .. } => "finished",
                                JournalKind::RunFinished { .. } => "run-finished",
                            };
                            format!("journal-{when}:{kind}:{}", entry.name)
                        };
                        crate::failpoint::reached(self.me.id.as_str(), || point("before"));
                        if let Err(e) = self.store.append_journal(&entry) {
                            // Without the journal exactly-once cannot be kept: stop this run.
                            error!(site = %key.0, epoch = key.1, error = %e, "cannot journal the failover step; run stopped");
                            self.failovers.running.remove(&key);
                            self.failovers.pending.remove(&key);
                            break;
                        }
                        crate::failpoint::reached(self.me.id.as_str(), || point("after"));
                        let t = self.time(Instant::now());
                        self.replicas.appended(t, entry);
                    }
                    a @ PipelineAction::Start { .. } => {
                        if let Some(s) = StartStep::from_action(&key.0, key.1, a) {
                            self.queue_start(key.clone(), s);
                        }
                    }
                    PipelineAction::Finished(report) => {
                        info!(site = %report.site, epoch = report.epoch, outcome = %report.outcome.summary(), "failover run finished");
                        self.failovers.running.remove(&key);
                        self.failovers.finished.push(report);
                        if self.failovers.finished.len() > 50 {
                            self.failovers.finished.remove(0);
                        }
                        break;
                    }
                }
                self.dirty = true;
            }
        }
        self.drain_replicas(Instant::now());
        self.start_replicated_steps();
    }

    pub(super) fn start_step(&mut self, s: StartStep) {
        let StartStep {
            site,
            run,
            term,
            step,
            name,
            actuator: kind,
            attempt,
            idempotency_key,
            dry_run,
            timeout,
        } = s;
        let site = &site;
        let params = self
            .fleet()
            .watch(site)
            .and_then(|w| w.plan.as_ref())
            .and_then(|p| p.params.get(&name).cloned())
            .unwrap_or(serde_json::Value::Object(Default::default()));
        info!(%site, run, term, step = %name, attempt, "failover step started");
        let tx = self.step_tx.clone();
        let ctx = StepContext {
            site: site.clone(),
            epoch: term,
            step: name,
            idempotency_key,
            dry_run,
            timeout,
            params,
        };
        tokio::spawn(async move {
            let (ok, detail) = call_actuator(kind, &ctx).await;
            let _ = tx.send(StepDone {
                site: ctx.site,
                epoch: run,
                step,
                attempt,
                ok,
                detail,
            });
        });
    }
}

/// One attempt of a step through its actuator: whether it succeeded, and its detail with the
/// output tail.
pub(super) async fn call_actuator(
    kind: actuators::ActuatorKind,
    ctx: &StepContext,
) -> (bool, String) {
    let outcome = match actuators::build(kind, &ctx.params) {
        Ok(a) => a.run(ctx).await,
        Err(e) => actuators::StepOutcome {
            ok: false,
            detail: format!("cannot build the {kind} actuator: {e}"),
            output_tail: String::new(),
        },
    };
    let detail = if outcome.output_tail.is_empty() {
        outcome.detail
    } else {
        format!("{}\n{}", outcome.detail, outcome.output_tail)
    };
    (outcome.ok, detail)
}
