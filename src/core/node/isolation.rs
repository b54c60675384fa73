//! Self-fencing: a node of a watched site that, for `self_fence_after`, hears so few members of
//! its site's electorate reporting the site UP that the others could judge it DOWN, runs the
//! site's isolation steps (e.g. withdraw its own anycast route), so that a live but cut-off
//! site has withdrawn itself before the backup takes over (`takeover_delay` >
//! `self_fence_after` + probe budget, checked by `check-config`). Detection is `core::fence`.
//!
//! Isolation runs are not journaled: they are idempotent withdrawals a node repeats at every
//! isolation, keyed by the isolation's start (wall seconds) so an actuator never confuses two.

use super::runs::{StepDone, StepPurpose};
use super::{Action, NodeCore};
use crate::config::{Fleet, Node};
use crate::core::fence::{Fence, FenceAction, FenceConfig};
use crate::core::pipeline::{Pipeline, PipelineAction, PipelineSpec, RunReport};
use crate::core::types::{Now, Time};
use tracing::{info, warn};

/// This node's self-fencing state.
pub struct IsolationState {
    pub fence: Fence,
    /// The isolation steps running now.
    pub running: Option<Pipeline>,
    pub since: Option<Time>,
    pub last_report: Option<RunReport>,
    pub count: u64,
}

impl IsolationState {
    /// A fence for `me` when its site is watched with isolation steps.
    pub fn for_node(fleet: &Fleet, me: &Node, now: Time) -> Option<IsolationState> {
        let plan = fleet.watch(&me.site)?.plan.as_ref()?;
        if plan.isolation.is_empty() {
            return None;
        }
        let cfg = FenceConfig {
            self_fence_after: plan.self_fence_after,
        };
        let fence = Fence::new(cfg, me.site.clone(), fleet.electorate(&me.site), now);
        Some(IsolationState {
            fence,
            running: None,
            since: None,
            last_report: None,
            count: 0,
        })
    }

    /// After a fleet reload: the same state when the site still fences, with the new
    /// electorate and delay (a member replaced by reload must not look silent).
    pub fn reloaded(
        old: Option<IsolationState>,
        fleet: &Fleet,
        me: &Node,
        now: Time,
    ) -> Option<IsolationState> {
        let fresh = IsolationState::for_node(fleet, me, now)?;
        let Some(mut old) = old else {
            return Some(fresh);
        };
        let plan = fleet.watch(&me.site)?.plan.as_ref()?;
        old.fence.set_electorate(now, fleet.electorate(&me.site));
        old.fence.set_config(FenceConfig {
            self_fence_after: plan.self_fence_after,
        });
        Some(old)
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        let fence = self.fence.poll_timeout();
        let steps = self.running.as_ref().and_then(|p| p.poll_timeout());
        fence.into_iter().chain(steps).min()
    }
}

impl NodeCore {
    pub(super) fn on_isolation_timers(&mut self, now: Now) {
        let Some(iso) = self.isolation.as_mut() else {
            return;
        };
        if iso.fence.poll_timeout().is_some_and(|d| d <= now.mono) {
            iso.fence.handle_timeout(now.mono);
        }
        if let Some(p) = iso.running.as_mut() {
            if p.poll_timeout().is_some_and(|d| d <= now.mono) {
                p.handle_timeout(now);
            }
        }
    }

    pub(super) fn isolation_step_done(&mut self, now: Now, done: StepDone) {
        let Some(p) = self.isolation.as_mut().and_then(|i| i.running.as_mut()) else {
            return;
        };
        if p.site() == &done.site && p.epoch() == done.run {
            p.handle_result(now, done.step, done.attempt, done.ok, done.detail);
        }
    }

    pub(super) fn drain_isolation(&mut self, now: Now) -> bool {
        let mut any = false;
        let site = self.me.site.clone();
        while let Some(a) = self.isolation.as_mut().and_then(|i| i.fence.poll_action()) {
            any = true;
            match a {
                FenceAction::Isolated { since } => {
                    let steps = self
                        .fleet
                        .watch(&site)
                        .and_then(|w| w.plan.as_ref())
                        .map(|p| p.isolation.clone());
                    let iso = self.isolation.as_mut().expect("present");
                    iso.since = Some(since);
                    iso.count += 1;
                    warn!(%site, heard = iso.fence.heard(now.mono), needed = iso.fence.needed(),
                          cut_off_ms = now.mono.since(since).as_millis() as u64,
                          "cut off from a majority of this site's electorate: running the isolation steps");
                    if let Some(steps) = steps {
                        let spec = PipelineSpec {
                            prechecks: Vec::new(),
                            steps,
                            post: Vec::new(),
                            fences: Vec::new(),
                        };
                        let key_epoch = now.wall.as_micros() / 1_000_000;
                        iso.running =
                            Some(Pipeline::new(spec, site.clone(), key_epoch, false, now));
                    }
                }
                FenceAction::Reconnected { isolated_for } => {
                    let iso = self.isolation.as_mut().expect("present");
                    iso.since = None;
                    let steps = iso
                        .last_report
                        .as_ref()
                        .map(|r| r.outcome.summary())
                        .unwrap_or_else(|| "still running".into());
                    info!(%site, isolated_for_ms = isolated_for.as_millis() as u64, isolation_steps = %steps,
                          "reconnected to a majority of this site's electorate");
                }
            }
        }
        loop {
            let Some(iso) = self.isolation.as_mut() else {
                return any;
            };
            let Some(p) = iso.running.as_mut() else {
                return any;
            };
            let Some(a) = p.poll_action() else {
                return any;
            };
            any = true;
            let run = p.epoch();
            match a {
                PipelineAction::Journal(_) => {}
                a @ PipelineAction::Start { .. } => {
                    // Isolation steps are this node's own, not the electorate's: they start at
                    // once, even while the node distrusts its clocks (withdrawing is safe).
                    if let Some(s) = self.start_of(&site, run, a, StepPurpose::Isolation) {
                        self.actions.push_back(Action::StartStep(s));
                    }
                }
                PipelineAction::Finished(report) => {
                    info!(site = %report.site, outcome = %report.outcome.summary(), "isolation steps finished");
                    iso.running = None;
                    iso.last_report = Some(report);
                }
            }
        }
    }
}
