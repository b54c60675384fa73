//! Drills: a dry run of a site's whole plan on this node alone, answered when it ends or at
//! its bound. Nothing is journaled and no other node takes part; the steps run with their
//! dry-run flag (see `OperatorError::DrillInProgress` for what a drill blocks).

use super::operator::{CommandOk, OperatorError};
use super::runs::{StepDone, StepPurpose};
use super::{Action, NodeCore};
use crate::core::pipeline::{Pipeline, PipelineAction, PipelineSpec, StepSpec};
use crate::core::types::{Now, SiteId, Time};
use std::time::Duration;
use tracing::info;

/// A dry run in progress, answered when it ends or at its bound.
pub struct Drill {
    pub site: SiteId,
    pub(super) pipeline: Pipeline,
    pub(super) deadline: Time,
    bound: Duration,
}

impl NodeCore {
    /// Runs the whole plan with `dry_run = true`: nothing is journaled, and every actuator
    /// call carries its dry-run flag and an idempotency key prefixed with "drill/", so that no
    /// real run's key is used up.
    pub(super) fn start_drill(
        &mut self,
        now: Now,
        id: u64,
        site: SiteId,
    ) -> Result<(), OperatorError> {
        let plan = self.plan_of(&site)?;
        self.check_idle(&site)?;
        let epoch = self.fresh_epoch(&site)?;
        let bound = drill_bound(&plan.pipeline);
        info!(%site, run_id = epoch, "drill started (dry run)");
        let pipeline = Pipeline::new(plan.pipeline, site.clone(), epoch, true, now);
        self.operator.drills.insert(
            id,
            Drill {
                site,
                pipeline,
                deadline: now.mono + bound,
                bound,
            },
        );
        self.drain_drills();
        Ok(())
    }

    /// Answers the drills past their bound and serves the others' step timers.
    pub(super) fn on_drill_timers(&mut self, now: Now) {
        let over: Vec<u64> = self
            .operator
            .drills
            .iter()
            .filter(|(_, d)| d.deadline <= now.mono)
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            let d = self.operator.drills.remove(&id).expect("listed");
            self.actions.push_back(Action::Reply {
                id,
                reply: Err(OperatorError::DrillTimedOut {
                    site: d.site,
                    bound_ms: d.bound.as_millis() as u64,
                }),
            });
        }
        for d in self.operator.drills.values_mut() {
            if d.pipeline.poll_timeout().is_some_and(|t| t <= now.mono) {
                d.pipeline.handle_timeout(now);
            }
        }
        self.drain_drills();
    }

    pub(super) fn drill_step_done(&mut self, now: Now, id: u64, done: StepDone) {
        if let Some(d) = self.operator.drills.get_mut(&id) {
            d.pipeline
                .handle_result(now, done.step, done.attempt, done.ok, done.detail);
        }
        self.drain_drills();
    }

    fn drain_drills(&mut self) {
        let ids: Vec<u64> = self.operator.drills.keys().copied().collect();
        for id in ids {
            while let Some(a) = self
                .operator
                .drills
                .get_mut(&id)
                .and_then(|d| d.pipeline.poll_action())
            {
                let site = self.operator.drills[&id].site.clone();
                let run = self.operator.drills[&id].pipeline.epoch();
                match a {
                    PipelineAction::Journal(_) => {}
                    a @ PipelineAction::Start { .. } => {
                        if let Some(mut s) = self.start_of(&site, run, a, StepPurpose::Drill { id })
                        {
                            s.idempotency_key = format!("drill/{}", s.idempotency_key);
                            self.actions.push_back(Action::StartStep(s));
                        }
                    }
                    PipelineAction::Finished(report) => {
                        info!(%site, run_id = run, outcome = %report.outcome.summary(), "drill finished");
                        self.operator.drills.remove(&id);
                        self.actions.push_back(Action::Reply {
                            id,
                            reply: Ok(CommandOk::Drill(report)),
                        });
                        break;
                    }
                }
            }
        }
    }
}

/// The longest a dry run of `spec` can take: every attempt of every step (compensations
/// included) timing out, with the longest backoffs, plus a little slack.
fn drill_bound(spec: &PipelineSpec) -> Duration {
    fn one(s: &StepSpec) -> Duration {
        // Saturating throughout: a spec that did not come through the fleet file's limits
        // gets an unreachable bound, not a panic.
        let attempts = s.timeout.saturating_mul(s.retries.saturating_add(1));
        let waits = (1..=s.retries)
            .map(|f| s.retry_delay(f))
            .fold(Duration::ZERO, Duration::saturating_add);
        attempts
            .saturating_add(waits)
            .saturating_add(s.compensation.as_deref().map_or(Duration::ZERO, one))
            .saturating_add(s.confirm.as_deref().map_or(Duration::ZERO, confirm))
    }
    /// A confirmation polls at a steady interval: `backoff` between reads, no doubling.
    fn confirm(c: &StepSpec) -> Duration {
        let reads = c.timeout.saturating_mul(c.retries.saturating_add(1));
        reads.saturating_add(c.backoff.saturating_mul(c.retries))
    }
    let all = spec
        .prechecks
        .iter()
        .chain(&spec.fences)
        .chain(&spec.steps)
        .chain(&spec.post);
    all.map(one)
        .fold(Duration::ZERO, Duration::saturating_add)
        .saturating_add(Duration::from_secs(2))
}
