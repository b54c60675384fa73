//! The node core's side of run replication (`core::replica`): run messages in, with the
//! electorate's hold-down check on new automatic runs; takeovers of runs whose leader went
//! silent when they still need running, and of runs a learned DOWN verdict names whose leader
//! never registered them (expected runs); the replication core's actions out (registers to the
//! disk, messages to the electorate, leading a run taken over, yielding to a higher term);
//! and what a node notes when it first hears of a run (its takeover delay, the site's
//! hold-down) or gives one up before its first step.

use super::{Action, NodeCore};
use crate::config::SingleVantage;
use crate::core::oplock::LockValue;
use crate::core::pipeline::{JournalEntry, JournalKind, StepRef};
use crate::core::replica::{ReplicaAction, RunMsg, RunRecord, RunTrigger};
use crate::core::types::{NodeId, Now, Outcome, SiteId};
use crate::wire::Message;
use std::collections::BTreeSet;
use tracing::{debug, info, warn};

impl NodeCore {
    pub(super) fn on_run_msg(&mut self, now: Now, from: &NodeId, msg: RunMsg) {
        let (site, _) = msg.key();
        if self.fleet.watch(&site).is_none() {
            debug!(peer = %from, %site, "run message for a site this fleet does not watch; ignored");
            return;
        }
        let new_run = match &msg {
            RunMsg::Append { record, .. } => Some((record.run, record.trigger)),
            // A takeover of a run this node never heard of (its leader died before its
            // register reached anyone): the promise would make this node hold it.
            RunMsg::Prepare { run, trigger, .. } => Some((*run, *trigger)),
            _ => None,
        };
        if let Some((run, trigger)) = new_run {
            if let Some(other) = self.held_down_by(now, &site, run, trigger) {
                // Hold-down, enforced by the electorate: a run needs a majority holding its
                // start before it acts, and every majority holds a member that knows the
                // earlier run, also when the new run's leader missed it (it was down).
                if self.runs.hold_refusals.insert((site.clone(), run)) {
                    warn!(%site, run_id = run, earlier = other, leader = %from,
                          "not holding a new automatic run: run {other} of the site began within hold_down");
                }
                return;
            }
        }
        let e = self.electorate(&site);
        self.replicas.handle(now.mono, from, msg, &e);
    }

    /// The earlier automatic run of `site` that holds new automatic run `run` down, if any:
    /// one this node heard of less than `hold_down` ago and that was not dropped. A run this
    /// node already holds a copy of is never refused (it was admitted before).
    fn held_down_by(&self, now: Now, site: &SiteId, run: u64, trigger: RunTrigger) -> Option<u64> {
        if trigger != RunTrigger::Verdict
            || self.broken.hold_down
            || self.replicas.record(site, run).is_some()
        {
            return None;
        }
        self.runs
            .hold_until
            .iter()
            .filter(|((s, r), until)| s == site && *r < run && now.mono < **until)
            .map(|((_, r), _)| *r)
            .max()
    }

    /// A DOWN verdict this node learned through the vote and does not lead: when this node
    /// would run the site's failover had it led it, it expects the run's register from the
    /// verdict's leader, and takes the run over if none comes within the lease (see
    /// `core::replica::expected`). Only the voter's committed verdicts come here, never a
    /// peer's run message.
    pub(super) fn expect_run(&mut self, now: Now, site: &SiteId, epoch: u64, leader: &NodeId) {
        if self.replicas.record(site, epoch).is_some()
            || self.broken.takeover
            || self.broken.expect_runs
        {
            return;
        }
        let delay = match self.automatic_run(now, site) {
            Ok(delay) => delay,
            Err(why) => {
                debug!(%site, epoch, ?why, "not expecting a failover run of this verdict");
                return;
            }
        };
        let e = self.electorate(site);
        let start_at = now.wall + delay;
        if self.replicas.expect(
            now.mono,
            site.clone(),
            epoch,
            leader.clone(),
            (RunTrigger::Verdict, false),
            start_at,
            e,
        ) {
            // The takeover delay of a run taken over counts from here, as for a register.
            self.runs
                .first_heard
                .entry((site.clone(), epoch))
                .or_insert(now.mono);
            info!(%site, run_id = epoch, %leader, lease_ms = self.replicas.config().lease.as_millis() as u64,
                  "expecting the failover run of a DOWN verdict led by another voter; taken over if its register does not come within the lease");
        }
    }

    /// A run the operator lock decided for another leader: expected as a verdict's run is, so
    /// that a leader dying between the decision and its register leaves the run to another
    /// member rather than to no one. Called only for decisions learned as current (the
    /// leader's commit, or this node's own proposal forced to the value), never for a decision
    /// taught in passing.
    pub(super) fn expect_lock_run(&mut self, now: Now, site: &SiteId, v: &LockValue) {
        if v.leader == self.me.id
            || self.replicas.record(site, v.run).is_some()
            || self
                .replicas
                .records()
                .any(|r| &r.site == site && r.run > v.run)
            || self.run_spec(site, v.trigger).is_none()
            || self.broken.takeover
            || self.broken.expect_runs
        {
            return;
        }
        let e = self.electorate(site);
        if self.replicas.expect(
            now.mono,
            site.clone(),
            v.run,
            v.leader.clone(),
            (v.trigger, v.forced),
            now.wall,
            e,
        ) {
            self.runs
                .first_heard
                .entry((site.clone(), v.run))
                .or_insert(now.mono);
            info!(%site, run_id = v.run, leader = %v.leader, trigger = v.trigger.as_str(),
                  "expecting the run the operator lock gave another voter; taken over if its register does not come within the lease");
        }
    }

    /// Heartbeats, and takeovers of runs whose leader went silent and that still need running.
    pub(super) fn on_replica_timers(&mut self, now: Now) {
        if self.replicas.poll_timeout().is_none_or(|w| w > now.mono) {
            return;
        }
        // An expected run whose verdict (or lock decision) was replaced is no longer due:
        // forgotten, never sent.
        let (voter, oplock) = (&self.voter, &self.oplock);
        self.replicas.forget_expected(|r| match r.trigger {
            RunTrigger::Verdict => {
                voter.verdict(&r.site).map(|v| (v.outcome(), v.epoch()))
                    == Some((Outcome::Down, r.run))
            }
            _ => oplock.decided(&r.site).map(|d| d.value.run) == Some(r.run),
        });
        let eligible: BTreeSet<(SiteId, u64)> = self
            .replicas
            .records()
            .chain(self.replicas.expected())
            .filter(|r| self.may_take_over(now, r))
            .map(|r| (r.site.clone(), r.run))
            .collect();
        self.replicas
            .tick(now.mono, |r| eligible.contains(&(r.site.clone(), r.run)));
    }

    /// Whether a run whose leader went silent still needs running by someone.
    fn may_take_over(&self, now: Now, r: &RunRecord) -> bool {
        let Some(w) = self.fleet.watch(&r.site) else {
            return false;
        };
        if w.plan.is_none() || self.holds_steps() || self.broken.takeover {
            return false;
        }
        // A newer run of the site replaced this one (one dropped before its first step
        // changed nothing, and replaces nothing).
        if self
            .replicas
            .records()
            .any(|o| o.site == r.site && o.run > r.run && !o.is_dropped())
        {
            return false;
        }
        if r.trigger == RunTrigger::Verdict {
            if (w.single_vantage == SingleVantage::Manual && !self.broken.single_vantage)
                || (self.operator.maintenance_until(&r.site, now.wall).is_some()
                    && !self.broken.maintenance)
            {
                return false;
            }
            // Expected, never heard of: the hold-down of any other run this node heard of
            // since holds it too (checked when it was expected, and again now).
            if self.replicas.is_expected(&r.site, r.run)
                && !self.broken.hold_down
                && self
                    .runs
                    .hold_until
                    .iter()
                    .any(|((s, run), until)| s == &r.site && *run != r.run && now.mono < *until)
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

    /// Carries out the replication core's actions in order.
    pub(super) fn drain_replicas(&mut self, now: Now) -> bool {
        let mut any = false;
        while let Some(a) = self.replicas.poll_action() {
            any = true;
            match a {
                ReplicaAction::Persist(r) => {
                    self.voter.observe_epoch(&r.site, r.term());
                    self.note_run(now, &r);
                    self.actions.push_back(Action::SaveRun(r));
                }
                ReplicaAction::Send { to, msg } => {
                    log_send(&to, &msg);
                    self.actions.push_back(Action::Send {
                        to,
                        msg: Message::Run(msg),
                    });
                }
                ReplicaAction::Lead {
                    site,
                    run,
                    trigger,
                    term,
                    journal,
                    start_at,
                } => {
                    warn!(%site, run_id = run, term, entries = journal.len(), trigger = trigger.as_str(),
                          "taking over a failover run whose leader went silent");
                    self.go_on(now, site, run, trigger, term, journal, start_at);
                }
                ReplicaAction::Refused { from, site, reason } => {
                    self.refused(now, &from, &site, reason)
                }
                ReplicaAction::Yield { site, run, to } => {
                    warn!(%site, run_id = run, new_leader = %to.proposer, term = to.epoch,
                          "another voter leads this failover run now; this node stops running it");
                    self.runs.stop(&(site, run));
                }
            }
        }
        any
    }

    /// The first time this node hears of a run, its takeover delay counts from now, and so
    /// does the site's hold-down for an automatic run: a member that missed the journal must
    /// still assume the run may have acted. Only a run its leader dropped before its first step
    /// (the verdict changed during the delay) releases the hold-down, once that is known.
    fn note_run(&mut self, now: Now, r: &RunRecord) {
        let key = (r.site.clone(), r.run);
        self.runs.first_heard.entry(key.clone()).or_insert(now.mono);
        if !r.trigger.holds_down() {
            return;
        }
        if r.is_dropped() {
            self.runs.hold_until.remove(&key);
        } else {
            let hold = now.mono + self.fleet.timing.hold_down;
            self.runs.hold_until.entry(key).or_insert(hold);
        }
    }

    /// Gives up run `key` this node leads before its first step: the journal says so (a
    /// `Dropped` end, replicated like any entry), so every member releases the site's
    /// hold-down and nobody takes the run over.
    pub(super) fn drop_run(&mut self, now: Now, key: &(SiteId, u64), why: &str) {
        info!(site = %key.0, run_id = key.1, "failover dropped before its first step: {why}");
        self.runs.stop(key);
        let Some(term) = self.replicas.record(&key.0, key.1).map(|r| r.term()) else {
            return;
        };
        if !self.replicas.is_leader(&key.0, key.1) {
            return;
        }
        let entry = JournalEntry {
            site: key.0.clone(),
            epoch: key.1,
            term,
            step: StepRef::new(crate::core::pipeline::Phase::Step, 0),
            name: String::new(),
            attempt: 0,
            at: now.wall,
            kind: JournalKind::RunFinished {
                outcome: crate::core::pipeline::RunOutcome::Dropped {
                    detail: why.to_string(),
                },
            },
        };
        self.actions.push_back(Action::AppendJournal(entry.clone()));
        self.replicas.appended(now.mono, entry);
    }
}

fn log_send(to: &NodeId, msg: &RunMsg) {
    match msg {
        RunMsg::Prepare {
            site, run, ballot, ..
        } => {
            info!(%site, run_id = run, term = ballot.epoch, member = %to,
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
            info!(%site, run_id = run, candidate = %ballot.proposer, term = ballot.epoch,
                  promised = promised.epoch, "takeover refused: the leader is still heard or a higher term was promised");
        }
        _ => {}
    }
}
