//! Self-fencing: a node of a watched site that, for `self_fence_after`, hears so few members of
//! its site's electorate reporting the site UP that the others could judge it DOWN, runs the
//! site's isolation steps (e.g. withdraw its own anycast route),
//! so that a live but cut-off site has withdrawn itself before the backup takes over
//! (`takeover_delay` > `self_fence_after` + probe budget, checked by `check-config`).
//! Detection is the pure `core::fence`; this module runs the steps and reports them.
//!
//! Isolation runs are not journaled: they are idempotent withdrawals a node repeats at every
//! isolation, keyed by the isolation's start time so an actuator never confuses two of them.

use super::failover::wall_now;
use super::*;
use crate::core::fence::{Fence, FenceAction, FenceConfig};
use crate::core::pipeline::{Pipeline, PipelineAction, PipelineSpec, RunReport};

/// This node's self-fencing state.
pub(crate) struct Isolation {
    pub fence: Fence,
    /// The isolation steps running now, keyed (site, pseudo-epoch = isolation start, Unix s).
    pub running: Option<Pipeline>,
    pub since: Option<Time>,
    pub last_report: Option<RunReport>,
    pub count: u64,
}

impl Isolation {
    /// A fence for `me` when its site is watched with isolation steps.
    pub fn for_node(fleet: &Fleet, me: &Node, now: Time) -> Option<Isolation> {
        let plan = fleet.watch(&me.site)?.plan.as_ref()?;
        if plan.isolation.is_empty() {
            return None;
        }
        let cfg = FenceConfig {
            self_fence_after: plan.self_fence_after,
        };
        let fence = Fence::new(cfg, me.site.clone(), fleet.electorate(&me.site), now);
        Some(Isolation {
            fence,
            running: None,
            since: None,
            last_report: None,
            count: 0,
        })
    }
}

impl Driver {
    /// `peer` reported, in its status, that it sees this site up: a member that blocks a DOWN
    /// verdict for now.
    pub(super) fn isolation_peer_seen(&mut self, now: Instant, peer: &NodeId) {
        let t = self.time(now);
        if let Some(iso) = self.isolation.as_mut() {
            iso.fence.peer_seen(t, peer);
        }
        self.drain_isolation(now);
    }

    pub(super) fn isolation_wake(&self, now: Instant) -> Option<Instant> {
        let iso = self.isolation.as_ref()?;
        let mut wake = iso.fence.poll_timeout().map(|t| self.instant(t));
        if let Some(d) = iso.running.as_ref().and_then(|p| p.poll_timeout()) {
            let at =
                now + Duration::from_micros(d.as_micros().saturating_sub(wall_now().as_micros()));
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        wake
    }

    pub(super) fn on_isolation_timers(&mut self, now: Instant) {
        let t = self.time(now);
        let Some(iso) = self.isolation.as_mut() else {
            return;
        };
        if iso.fence.poll_timeout().is_some_and(|d| d <= t) {
            iso.fence.handle_timeout(t);
        }
        let w = wall_now();
        if let Some(p) = iso.running.as_mut() {
            if p.poll_timeout().is_some_and(|d| d <= w) {
                p.handle_timeout(w);
            }
        }
        self.drain_isolation(now);
    }

    /// A step result for the isolation run; false when it belongs to no isolation run.
    pub(super) fn isolation_step_done(&mut self, done: &super::failover::StepDone) -> bool {
        let Some(iso) = self.isolation.as_mut() else {
            return false;
        };
        let Some(p) = iso.running.as_mut() else {
            return false;
        };
        if p.site() != &done.site || p.epoch() != done.epoch {
            return false;
        }
        p.handle_result(
            wall_now(),
            done.step,
            done.attempt,
            done.ok,
            done.detail.clone(),
        );
        self.drain_isolation(Instant::now());
        true
    }

    fn drain_isolation(&mut self, now: Instant) {
        let t = self.time(now);
        loop {
            let Some(iso) = self.isolation.as_mut() else {
                return;
            };
            let mut progressed = false;
            if let Some(a) = iso.fence.poll_action() {
                progressed = true;
                match a {
                    FenceAction::Isolated { since } => {
                        iso.since = Some(since);
                        iso.count += 1;
                        let ago = t.since(since);
                        warn!(site = %self.me.site, heard = iso.fence.heard(t), needed = iso.fence.needed(),
                              cut_off_ms = ago.as_millis() as u64, "cut off from a majority of this site's electorate: running the isolation steps");
                        let plan = self
                            .fleet()
                            .watch(&self.me.site)
                            .and_then(|w| w.plan.clone());
                        if let Some(plan) = plan {
                            let spec = PipelineSpec {
                                prechecks: Vec::new(),
                                steps: plan.isolation.clone(),
                                post: Vec::new(),
                            };
                            let key_epoch = wall_now().as_micros() / 1_000_000;
                            let iso = self.isolation.as_mut().expect("present");
                            iso.running = Some(Pipeline::new(
                                spec,
                                self.me.site.clone(),
                                key_epoch,
                                false,
                                wall_now(),
                            ));
                        }
                    }
                    FenceAction::Reconnected { isolated_for } => {
                        iso.since = None;
                        let steps = iso
                            .last_report
                            .as_ref()
                            .map(|r| r.outcome.summary())
                            .unwrap_or_else(|| "still running".into());
                        info!(site = %self.me.site, isolated_for_ms = isolated_for.as_millis() as u64, isolation_steps = %steps,
                              "reconnected to a majority of this site's electorate");
                    }
                }
                self.dirty = true;
            }
            let Some(iso) = self.isolation.as_mut() else {
                return;
            };
            if let Some(p) = iso.running.as_mut() {
                while let Some(a) = p.poll_action() {
                    progressed = true;
                    match a {
                        PipelineAction::Journal(_) => {}
                        a @ PipelineAction::Start { .. } => {
                            // Isolation steps are this node's own, not the electorate's: they
                            // start at once, with the isolation's key epoch as their run.
                            let site = self.me.site.clone();
                            let run = p.epoch();
                            if let Some(s) = super::failover::StartStep::from_action(&site, run, a)
                            {
                                self.start_step(s);
                            }
                            break;
                        }
                        PipelineAction::Finished(report) => {
                            info!(site = %report.site, outcome = %report.outcome.summary(), "isolation steps finished");
                            let iso = self.isolation.as_mut().expect("present");
                            iso.running = None;
                            iso.last_report = Some(report);
                            break;
                        }
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }
}
