//! Carries out the run replication core (`core::replica`): sends the journal of every run this
//! node leads to the site's electorate, holds each step's start until a majority holds the
//! journal, takes over a run whose leader went silent, and stops a run a higher ballot took
//! from this node.

use super::failover::{wall_now, StartStep};
use super::*;
use crate::core::anycast::{AnnouncementLedger, BgpEffect, SafetyRefusal};
use crate::core::pipeline::{JournalKind, Pipeline, PipelineSpec, StepSpec};
use crate::core::replica::{ReplicaAction, RunMsg, RunRecord, RunTrigger};
use std::collections::BTreeSet;

impl Driver {
    pub(super) fn electorate(&self, site: &SiteId) -> Electorate {
        Electorate::new(self.fleet().electorate(site))
    }

    /// The steps a run of `trigger` carries out for `site`, from the current fleet.
    pub(super) fn run_spec(&self, site: &SiteId, trigger: RunTrigger) -> Option<PipelineSpec> {
        let plan = self.fleet().watch(site)?.plan.as_ref()?;
        Some(match trigger {
            RunTrigger::Verdict | RunTrigger::Manual => plan.pipeline.clone(),
            RunTrigger::Failback => failback_spec(&plan.pipeline),
        })
    }

    /// Reads back the run registers after a restart: runs this node still leads go on (their
    /// journal goes out again at once), the others are followed.
    pub(super) fn load_runs(&mut self, now: Instant) {
        let records = match self.store.run_records() {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot read the run registers; runs led elsewhere cannot be taken over by this node");
                return;
            }
        };
        let t = self.time(now);
        for r in records {
            self.voter.observe_epoch(&r.site, r.term());
            let e = self.electorate(&r.site);
            self.replicas.load(t, r, e);
        }
    }

    pub(super) fn on_run_msg(&mut self, now: Instant, from: &NodeId, msg: RunMsg) {
        let (site, _) = msg.key();
        if self.fleet().watch(&site).is_none() {
            debug!(peer = %from, %site, "run message for a site this fleet does not watch; ignored");
            return;
        }
        let e = self.electorate(&site);
        let t = self.time(now);
        self.replicas.handle(t, from, msg, &e);
        self.drain_replicas(now);
        self.start_replicated_steps();
    }

    /// Heartbeats, and takeovers of runs whose leader went silent and that still need running.
    pub(super) fn on_replica_timers(&mut self, now: Instant) {
        let t = self.time(now);
        if self.replicas.poll_timeout().is_none_or(|w| w > t) {
            return;
        }
        let eligible: BTreeSet<(SiteId, u64)> = self
            .replicas
            .records()
            .filter(|r| self.may_take_over(r))
            .map(|r| (r.site.clone(), r.run))
            .collect();
        self.replicas
            .tick(t, |r| eligible.contains(&(r.site.clone(), r.run)));
        self.drain_replicas(now);
    }

    pub(super) fn replica_wake(&self) -> Option<Instant> {
        self.replicas.poll_timeout().map(|t| self.instant(t))
    }

    /// Whether a run whose leader went silent still needs running by someone.
    fn may_take_over(&self, r: &RunRecord) -> bool {
        let Some(w) = self.fleet().watch(&r.site) else {
            return false;
        };
        if w.plan.is_none() {
            return false;
        }
        // A newer run of the site replaced this one.
        if self
            .replicas
            .records()
            .any(|o| o.site == r.site && o.run > r.run)
        {
            return false;
        }
        if r.trigger == RunTrigger::Verdict {
            if w.single_vantage == SingleVantage::Manual
                || self.maintenance_until(&r.site).is_some()
            {
                return false;
            }
            // Not begun yet: only while its verdict is still the newest.
            if r.journal.is_empty()
                && self
                    .voter
                    .verdict(&r.site)
                    .map(|v| (v.outcome(), v.epoch()))
                    != Some((Outcome::Down, r.run))
            {
                return false;
            }
        }
        true
    }

    /// Carries out the replication core's actions in order; a record that cannot be made
    /// durable sends nothing after it.
    pub(super) fn drain_replicas(&mut self, now: Instant) {
        let mut broken: BTreeSet<(SiteId, u64)> = BTreeSet::new();
        while let Some(a) = self.replicas.poll_action() {
            match a {
                ReplicaAction::Persist(r) => {
                    self.voter.observe_epoch(&r.site, r.term());
                    if let Err(e) = self.store.save_run(&r) {
                        error!(site = %r.site, run = r.run, error = %e, "cannot make the run register durable; this node sends nothing more for the run");
                        broken.insert((r.site.clone(), r.run));
                    }
                }
                ReplicaAction::Send { to, msg } => {
                    match &msg {
                        RunMsg::Prepare {
                            site, run, ballot, ..
                        } => {
                            info!(%site, run, term = ballot.epoch, member = %to,
                                  "the run's leader went silent: asking to take the run over");
                        }
                        RunMsg::Promise {
                            site,
                            run,
                            ballot,
                            ok: false,
                            promised,
                            ..
                        } => {
                            info!(%site, run, candidate = %ballot.proposer, term = ballot.epoch,
                                  promised = promised.epoch, "takeover refused: the leader is still heard or a higher term was promised");
                        }
                        _ => {}
                    }
                    if !broken.contains(&msg.key()) {
                        self.mesh.send(&to, &Message::Run(msg));
                    }
                }
                ReplicaAction::Lead {
                    site,
                    run,
                    trigger,
                    term,
                    journal,
                    start_at,
                } => {
                    if !broken.contains(&(site.clone(), run)) {
                        self.take_over_run(now, site, run, trigger, term, journal, start_at);
                    }
                }
                ReplicaAction::Refused { from, site, reason } => {
                    self.refused(now, &from, &site, reason)
                }
                ReplicaAction::Yield { site, run, to } => {
                    warn!(%site, run, new_leader = %to.proposer, term = to.epoch,
                          "another voter leads this failover run now; this node stops running it");
                    let key = (site, run);
                    self.failovers.running.remove(&key);
                    self.failovers.waiting.remove(&key);
                    self.failovers.pending.remove(&key);
                }
            }
            self.dirty = true;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn take_over_run(
        &mut self,
        now: Instant,
        site: SiteId,
        run: u64,
        trigger: RunTrigger,
        term: u64,
        journal: Vec<crate::core::pipeline::JournalEntry>,
        start_at: Time,
    ) {
        let Some(spec) = self.run_spec(&site, trigger) else {
            warn!(%site, run, "won a failover run but this fleet has no plan for the site; not running it");
            return;
        };
        warn!(%site, run, term, entries = journal.len(), trigger = trigger.as_str(),
              "taking over a failover run whose leader went silent");
        let key = (site.clone(), run);
        // The journal is now this node's: the register's Persist replaced the stored one.
        let wall = wall_now();
        if journal.is_empty() && start_at > wall {
            let wait = Duration::from_micros(start_at.as_micros() - wall.as_micros());
            self.failovers.waiting.insert(key, now + wait);
            return;
        }
        let p = Pipeline::take_over(spec, site, run, term, false, &journal, wall);
        self.failovers.running.insert(key, p);
        self.drain_failovers();
    }

    /// Starts the steps whose start entry a majority of the electorate now holds.
    pub(super) fn start_replicated_steps(&mut self) {
        let keys: Vec<(SiteId, u64)> = self.failovers.pending.keys().cloned().collect();
        for key in keys {
            if !self.replicas.is_leader(&key.0, key.1) {
                // Yielded: a higher ballot runs it; nothing queued here may start.
                self.failovers.pending.remove(&key);
                continue;
            }
            if !self.replicas.replicated(&key.0, key.1) {
                continue;
            }
            if let Some(why) = self.superseded(&key.0, key.1) {
                warn!(site = %key.0, run = key.1, "{why}; this run stops here");
                self.failovers.pending.remove(&key);
                self.failovers.running.remove(&key);
                continue;
            }
            for s in self.failovers.pending.remove(&key).unwrap_or_default() {
                if let Some(refusal) = self.anycast_refusal(&s) {
                    warn!(site = %s.site, run = s.run, step = %s.name, "{refusal}");
                    self.refuse_step(s, refusal.to_string());
                    continue;
                }
                crate::failpoint::reached(self.me.id.as_str(), || format!("start:{}", s.name));
                self.start_step(s);
            }
        }
    }

    /// The anycast rule, before a bgp step: what the ledger believes announced comes from
    /// the fleet's declarations and every bgp step that succeeded in a run this node holds a
    /// journal of, oldest run first; a site is alive unless its newest verdict is DOWN.
    fn anycast_refusal(&self, s: &StartStep) -> Option<SafetyRefusal> {
        let plan = self.fleet().watch(&s.site)?.plan.as_ref()?;
        let effect = plan.bgp_effect(&s.name)?;
        let forced = self
            .replicas
            .record(&s.site, s.run)
            .is_some_and(|r| r.forced);
        let mut succeeded: Vec<&BgpEffect> = Vec::new();
        for r in self.replicas.records() {
            let Some(p) = self.fleet().watch(&r.site).and_then(|w| w.plan.as_ref()) else {
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

    /// A step the safety rules refused fails without being carried out; its pipeline decides
    /// what that means (retry, abort, continue or compensate).
    fn refuse_step(&mut self, s: StartStep, why: String) {
        let _ = self.step_tx.send(super::failover::StepDone {
            site: s.site,
            epoch: s.run,
            step: s.step,
            attempt: s.attempt,
            ok: false,
            detail: why,
        });
    }

    /// Epoch fencing: a step of an older run never starts once a newer run of the same site
    /// has begun.
    fn superseded(&self, site: &SiteId, run: u64) -> Option<String> {
        self.replicas
            .records()
            .filter(|o| &o.site == site && o.run > run && !o.journal.is_empty())
            .map(|o| o.run)
            .max()
            .map(|newer| {
                format!("refused by the epoch fence: run {newer} of site {site} has begun after run {run}")
            })
    }

    /// Queues a step start until the journal is held by a majority.
    pub(super) fn queue_start(&mut self, key: (SiteId, u64), s: StartStep) {
        self.failovers.pending.entry(key).or_default().push(s);
    }
}

/// Back to the primary: the compensation of every step that has one, newest step first.
pub(super) fn failback_spec(plan: &PipelineSpec) -> PipelineSpec {
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
    }
}
