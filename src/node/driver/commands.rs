//! Operator commands from the REST API, carried out inside the driver loop: a manual
//! failover, a drill (dry run of the whole plan), maintenance windows and a failback. The REST
//! handlers send a `Command` over a channel and wait for its reply; they never touch the
//! running state machines.
//!
//! Epochs: a manual failover or a failback is a run led by this node with a fresh epoch, one
//! above every epoch this node knows for the site (the newest verdict, its durable promise and
//! acceptance, and every run it journaled or runs). No vote round reserves that epoch in the
//! electorate: the operator's call is the authority, and the epoch only orders this run after
//! everything the node has seen, for the actuators' fencing and idempotency keys.

use super::failover::wall_now;
use super::*;
use crate::actuators::StepContext;
use crate::core::maintenance;
use crate::core::pipeline::{
    Pipeline, PipelineAction, PipelineSpec, RunOutcome, RunReport, StepReport, StepSpec,
};
use crate::core::replica::RunTrigger;
use crate::wire::MaintenanceWindow;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The reply to a command: a JSON answer, or an HTTP status code and an error message.
pub type CommandReply = Result<Value, (u16, String)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// Run the site's plan now, as a run led by this node.
    Failover {
        site: SiteId,
        reason: String,
        /// The anycast rule does not hold back this run's bgp steps.
        force: bool,
    },
    /// Run the site's plan with `dry_run = true`; the reply is the report.
    Drill {
        site: SiteId,
    },
    /// No automatic failover of the site starts on this node before `until_unix_ms`.
    SetMaintenance {
        site: SiteId,
        until_unix_ms: i64,
    },
    EndMaintenance {
        site: SiteId,
    },
    /// Run the compensations of the plan's steps, newest step first.
    Failback {
        site: SiteId,
    },
}

/// One operator command and where its reply goes.
#[derive(Debug)]
pub struct Command {
    pub kind: CommandKind,
    pub reply: oneshot::Sender<CommandReply>,
}

/// How many commands may wait for the driver loop.
const QUEUE: usize = 64;

/// The driver's side of the operator commands.
pub(super) struct Operator {
    pub rx: mpsc::Receiver<Command>,
    /// Kept so that the channel stays open on a node without REST listener.
    tx: mpsc::Sender<Command>,
    /// The newest maintenance call per site (stored, and passed on in status messages).
    pub maintenance: BTreeMap<SiteId, MaintenanceWindow>,
    /// Sites with a drill running (drills run outside the driver loop).
    drills: Arc<Mutex<BTreeSet<SiteId>>>,
}

impl Operator {
    pub fn new() -> Operator {
        let (tx, rx) = mpsc::channel(QUEUE);
        Operator {
            rx,
            tx,
            maintenance: BTreeMap::new(),
            drills: Arc::default(),
        }
    }

    /// Where the REST API sends its commands.
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.tx.clone()
    }
}

fn err(code: u16, msg: impl Into<String>) -> (u16, String) {
    (code, msg.into())
}

impl Driver {
    pub(super) fn on_command(&mut self, cmd: Command) {
        let reply = match cmd.kind {
            CommandKind::Drill { site } => {
                // Answered by the drill's task when it is done.
                self.start_drill(site, cmd.reply);
                return;
            }
            CommandKind::Failover {
                site,
                reason,
                force,
            } => self.manual_failover(&site, &reason, force),
            CommandKind::Failback { site } => self.failback(&site),
            CommandKind::SetMaintenance {
                site,
                until_unix_ms,
            } => self.set_maintenance(&site, until_unix_ms),
            CommandKind::EndMaintenance { site } => self.end_maintenance(&site),
        };
        let _ = cmd.reply.send(reply);
    }

    /// The plan of a watched site; 404 for an unknown site, 422 without a plan.
    fn plan_of(&self, site: &SiteId) -> Result<crate::config::FailoverPlan, (u16, String)> {
        let w = self
            .fleet()
            .watch(site)
            .ok_or_else(|| err(404, format!("no watched site {site:?} in this fleet")))?;
        w.plan.clone().ok_or_else(|| {
            err(
                422,
                format!(
                    "site {site} has no failover plan: add [[watch.pipeline.step]] entries to its watch"
                ),
            )
        })
    }

    /// 409 while a run (or drill) of `site` is waiting or running on this node.
    fn check_idle(&self, site: &SiteId) -> Result<(), (u16, String)> {
        let busy = self
            .failovers
            .running
            .keys()
            .chain(self.failovers.waiting.keys())
            .find(|(s, _)| s == site);
        if let Some((s, e)) = busy {
            return Err(err(
                409,
                format!(
                    "run {s}-{e} of site {site} is in progress on this node; wait for it to end"
                ),
            ));
        }
        if self.ops.drills.lock().is_ok_and(|d| d.contains(site)) {
            return Err(err(
                409,
                format!("a drill of site {site} is running on this node; wait for it to end"),
            ));
        }
        Ok(())
    }

    /// One above every epoch this node knows for `site`.
    fn fresh_epoch(&self, site: &SiteId) -> Result<u64, (u16, String)> {
        let mut e = self.voter.verdict(site).map_or(0, |v| v.epoch());
        if let Some(d) = self.voter.durable(site) {
            e = e.max(d.promised.epoch);
            if let Some(a) = &d.accepted {
                e = e.max(a.ballot.epoch).max(a.value.epoch);
            }
        }
        let journaled = self.store.highest_run_epoch(site).map_err(|e| {
            err(
                500,
                format!("cannot read the failover journal: {e}; nothing was started"),
            )
        })?;
        e = e.max(journaled.unwrap_or(0));
        e = self
            .replicas
            .records()
            .filter(|r| &r.site == site)
            .map(|r| r.run.max(r.term()))
            .fold(e, u64::max);
        let here = self
            .failovers
            .running
            .keys()
            .chain(self.failovers.waiting.keys())
            .filter(|(s, _)| s == site)
            .map(|(_, e)| *e)
            .chain(
                self.failovers
                    .finished
                    .iter()
                    .filter(|r| &r.site == site)
                    .map(|r| r.epoch),
            )
            .max()
            .unwrap_or(0);
        Ok(e.max(here) + 1)
    }

    /// Starts a journaled run of `spec` led by this node, now.
    fn start_operator_run(
        &mut self,
        site: &SiteId,
        spec: PipelineSpec,
        trigger: RunTrigger,
        forced: bool,
    ) -> CommandReply {
        self.entitled(site)?;
        self.check_idle(site)?;
        let epoch = self.fresh_epoch(site)?;
        let key = (site.clone(), epoch);
        let now = Instant::now();
        self.lead_run(now, site, epoch, trigger, forced, wall_now(), Vec::new());
        let p = Pipeline::new(spec, site.clone(), epoch, false, wall_now());
        self.failovers.running.insert(key, p);
        self.drain_failovers();
        self.dirty = true;
        Ok(json!({
            "id": format!("{site}-{epoch}"),
            "site": site,
            "epoch": epoch,
            "trigger": trigger.as_str(),
            "leader": self.me.id,
        }))
    }

    fn manual_failover(&mut self, site: &SiteId, reason: &str, force: bool) -> CommandReply {
        let plan = self.plan_of(site)?;
        let mut reply = self.start_operator_run(site, plan.pipeline, RunTrigger::Manual, force)?;
        warn!(%site, epoch = reply["epoch"].as_u64(), reason, force, "manually initiated failover started");
        reply["reason"] = json!(reason);
        reply["force"] = json!(force);
        Ok(reply)
    }

    /// Back to the primary: the compensation of every step that has one, newest step first.
    fn failback(&mut self, site: &SiteId) -> CommandReply {
        let plan = self.plan_of(site)?;
        match self.voter.verdict(site).map(|v| (v.outcome(), v.epoch())) {
            Some((Outcome::Up, _)) => {}
            Some((o, epoch)) => {
                return Err(err(
                    409,
                    format!(
                        "the newest verdict of site {site} is {} (epoch {epoch}); fail back once it is up again",
                        o.as_api_str()
                    ),
                ))
            }
            None => {
                return Err(err(
                    409,
                    format!("no verdict of site {site} is known yet; fail back once it is up"),
                ))
            }
        }
        let spec = super::replication::failback_spec(&plan.pipeline);
        if spec.steps.is_empty() {
            return Err(err(
                422,
                format!(
                    "no step of site {site}'s plan has a compensation: there is nothing to run to fail back"
                ),
            ));
        }
        let reply = self.start_operator_run(site, spec, RunTrigger::Failback, false)?;
        warn!(%site, epoch = reply["epoch"].as_u64(), "failback started");
        Ok(reply)
    }

    fn set_maintenance(&mut self, site: &SiteId, until_unix_ms: i64) -> CommandReply {
        if self.fleet().watch(site).is_none() {
            return Err(err(404, format!("no watched site {site:?} in this fleet")));
        }
        self.entitled(site)?;
        if until_unix_ms <= unix_ms() {
            return Err(err(400, "the maintenance end is in the past"));
        }
        if until_unix_ms > unix_ms().saturating_add(maintenance::MAX_HORIZON_MS) {
            return Err(err(400, maintenance::MaintenanceError::TooLong.to_string()));
        }
        self.record_maintenance(site, until_unix_ms)?;
        let until = rfc3339(until_unix_ms);
        warn!(%site, until = %until, "maintenance: no automatic failover of this site starts in the fleet");
        Ok(json!({ "site": site, "maintenance_until": until }))
    }

    fn end_maintenance(&mut self, site: &SiteId) -> CommandReply {
        if self.fleet().watch(site).is_none() {
            return Err(err(404, format!("no watched site {site:?} in this fleet")));
        }
        self.entitled(site)?;
        if self.maintenance_until(site).is_some() {
            info!(%site, "maintenance ended");
        }
        self.record_maintenance(site, 0)?;
        Ok(json!({ "site": site, "maintenance_until": null }))
    }

    /// Operator calls about a site are accepted only by a voter of its electorate: only its
    /// members take part in the site's runs and may originate its maintenance windows
    /// (docs/trust.md), so the call could never take effect anywhere else.
    fn entitled(&self, site: &SiteId) -> Result<(), (u16, String)> {
        let members = self.fleet().electorate(site);
        if members.contains(&self.me.id) {
            return Ok(());
        }
        let names: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
        Err(err(
            403,
            format!(
                "node {} is not a voter of site {site}'s electorate; call one of its members: {}",
                self.me.id,
                names.join(", ")
            ),
        ))
    }

    /// A new maintenance call of this node: newer than every call it knows, stored before
    /// it is answered, and passed on in the next status messages.
    fn record_maintenance(
        &mut self,
        site: &SiteId,
        until_unix_ms: i64,
    ) -> Result<(), (u16, String)> {
        let newest = self
            .ops
            .maintenance
            .get(site)
            .map_or(0, |w| w.set_at_unix_ms);
        let w = MaintenanceWindow {
            site: site.clone(),
            until_unix_ms,
            set_at_unix_ms: unix_ms().max(newest.checked_add(1).ok_or_else(|| {
                err(
                    409,
                    format!(
                        "{}",
                        maintenance::MaintenanceError::NoLaterStamp { site: site.clone() }
                    ),
                )
            })?),
        };
        self.store.save_maintenance(&w).map_err(|e| {
            err(
                500,
                format!("cannot store the maintenance window: {e}; nothing changed"),
            )
        })?;
        self.ops.maintenance.insert(site.clone(), w);
        self.dirty = true;
        Ok(())
    }

    /// A peer's maintenance calls: a newer one than this node knows replaces it.
    pub(super) fn learn_maintenance(&mut self, from: &NodeId, windows: Vec<MaintenanceWindow>) {
        for w in windows {
            if self.fleet().watch(&w.site).is_none() {
                continue;
            }
            let e = self.electorate(&w.site);
            match maintenance::admit(unix_ms(), from, &w, self.ops.maintenance.get(&w.site), &e) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(reason) => {
                    self.refused(Instant::now(), from, &w.site, reason);
                    continue;
                }
            }
            match self.store.save_maintenance(&w) {
                Ok(_) => {
                    if w.until_unix_ms > unix_ms() {
                        warn!(site = %w.site, until = %rfc3339(w.until_unix_ms), peer = %from,
                              "maintenance set elsewhere in the fleet: no automatic failover of this site starts");
                    } else {
                        info!(site = %w.site, peer = %from, "maintenance ended elsewhere in the fleet");
                    }
                    self.ops.maintenance.insert(w.site.clone(), w);
                    self.dirty = true;
                }
                Err(e) => {
                    error!(site = %w.site, error = %e, "cannot store a peer's maintenance window")
                }
            }
        }
    }

    /// When the maintenance of `site` ends, while it lasts.
    pub(super) fn maintenance_until(&self, site: &SiteId) -> Option<String> {
        self.ops
            .maintenance
            .get(site)
            .filter(|w| w.until_unix_ms > unix_ms())
            .map(|w| rfc3339(w.until_unix_ms))
    }

    /// True (and logged) when a DOWN verdict of `site` must not start a failover because the
    /// site is in maintenance.
    pub(super) fn maintenance_holds(&self, site: &SiteId, epoch: u64) -> bool {
        match self.maintenance_until(site) {
            Some(until) => {
                warn!(%site, epoch, until = %until, "failover not scheduled: the site is in maintenance");
                true
            }
            None => false,
        }
    }

    /// What started the run (site, epoch).
    pub(super) fn run_trigger(&self, site: &SiteId, epoch: u64) -> &'static str {
        self.replicas
            .record(site, epoch)
            .map_or(RunTrigger::Verdict, |r| r.trigger)
            .as_str()
    }

    /// Runs the whole plan with `dry_run = true` in a task of its own: nothing is journaled,
    /// and every actuator call carries `QUORATE_DRY_RUN=1` / its dry-run flag and an
    /// idempotency key prefixed with "drill/", so that no real run's key is used up.
    fn start_drill(&mut self, site: SiteId, reply: oneshot::Sender<CommandReply>) {
        let plan = match self.plan_of(&site).and_then(|p| {
            self.check_idle(&site)?;
            Ok(p)
        }) {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let epoch = match self.fresh_epoch(&site) {
            Ok(e) => e,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let bound = drill_bound(&plan.pipeline);
        if let Ok(mut d) = self.ops.drills.lock() {
            d.insert(site.clone());
        }
        info!(%site, epoch, "drill started (dry run)");
        let drills = self.ops.drills.clone();
        let pipeline = Pipeline::new(plan.pipeline, site.clone(), epoch, true, wall_now());
        tokio::spawn(async move {
            let done = tokio::time::timeout(bound, run_drill(pipeline, plan.params)).await;
            if let Ok(mut d) = drills.lock() {
                d.remove(&site);
            }
            let answer = match done {
                Ok(report) => {
                    info!(%site, epoch, outcome = %report.outcome.summary(), "drill finished");
                    Ok(drill_view(&report))
                }
                Err(_) => Err(err(
                    504,
                    format!(
                        "the drill of site {site} did not finish within {} (the sum of its steps' timeouts)",
                        humantime::format_duration(bound)
                    ),
                )),
            };
            let _ = reply.send(answer);
        });
    }
}

/// The longest a dry run of `spec` can take: every attempt of every step (compensations
/// included) timing out, with the longest backoffs, plus a little slack.
fn drill_bound(spec: &PipelineSpec) -> Duration {
    fn one(s: &StepSpec) -> Duration {
        let attempts = s.timeout * (s.retries + 1);
        let waits: Duration = (1..=s.retries).map(|f| s.retry_delay(f)).sum();
        attempts + waits + s.compensation.as_deref().map_or(Duration::ZERO, one)
    }
    let all = spec.prechecks.iter().chain(&spec.steps).chain(&spec.post);
    all.map(one).sum::<Duration>() + Duration::from_secs(2)
}

/// Carries out a dry-run pipeline outside the driver loop; journal entries are dropped.
async fn run_drill(mut p: Pipeline, params: BTreeMap<String, Value>) -> RunReport {
    let (tx, mut rx) = mpsc::unbounded_channel();
    loop {
        while let Some(action) = p.poll_action() {
            match action {
                PipelineAction::Journal(_) => {}
                PipelineAction::Finished(report) => return report,
                PipelineAction::Start {
                    step,
                    name,
                    actuator,
                    epoch,
                    attempt,
                    idempotency_key,
                    dry_run,
                    timeout,
                } => {
                    let ctx = StepContext {
                        site: p.site().clone(),
                        epoch,
                        params: params
                            .get(&name)
                            .cloned()
                            .unwrap_or_else(|| Value::Object(Default::default())),
                        step: name,
                        idempotency_key: format!("drill/{idempotency_key}"),
                        dry_run,
                        timeout,
                    };
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let (ok, detail) = super::failover::call_actuator(&actuator, &ctx).await;
                        let _ = tx.send((step, attempt, ok, detail));
                    });
                }
            }
        }
        let sleep = match p.poll_timeout() {
            Some(at) => {
                Duration::from_micros(at.as_micros().saturating_sub(wall_now().as_micros()))
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            done = rx.recv() => {
                if let Some((step, attempt, ok, detail)) = done {
                    p.handle_result(wall_now(), step, attempt, ok, detail);
                }
            }
            _ = tokio::time::sleep(sleep) => p.handle_timeout(wall_now()),
        }
    }
}

fn step_view(r: &StepReport) -> FailoverStepView {
    FailoverStepView {
        step: r.step.to_string(),
        name: r.name.clone(),
        attempts: r.attempts,
        ok: r.ok,
        detail: r.detail.clone(),
        started_at: rfc3339((r.started_at.as_micros() / 1000) as i64),
        finished_at: r
            .finished_at
            .map(|t| rfc3339((t.as_micros() / 1000) as i64)),
        duration_ms: r
            .finished_at
            .map(|t| t.since(r.started_at).as_secs_f64() * 1000.0),
    }
}

fn drill_view(r: &RunReport) -> Value {
    let state = match &r.outcome {
        RunOutcome::Succeeded { .. } => "succeeded",
        RunOutcome::PrecheckFailed { .. } => "precheck_failed",
        RunOutcome::Aborted { .. } => "aborted",
        RunOutcome::Compensated { .. } => "compensated",
    };
    json!({
        "site": r.site,
        "epoch": r.epoch,
        "dry_run": true,
        "state": state,
        "ok": r.outcome.is_success() && r.steps.iter().all(|s| s.ok),
        "summary": r.outcome.summary(),
        "steps": r.steps.iter().map(step_view).collect::<Vec<_>>(),
    })
}
