//! The orphaned verdict: the leader a committed DOWN verdict names dies before its run's
//! register reaches anyone (`FaultModel::commit_crash`), or, named in advance by the fast
//! round, keeps seeing the site UP and never leads it (`FaultModel::blind_leader`), so no
//! member holds a copy of the run.
//! The electorate must still run it: every member that learned the verdict expects the run
//! and takes it over when no register comes (`core::replica::expected`). The check, once
//! faults have stopped for the settle bound: the verdict, if still the newest of its site, has
//! a run that finished (its steps ran, or a precheck stopped it before any side effect). That
//! it acts once per step is the duplicate-effect check's.

use super::invariants::{Check, ViolationKind};
use super::world::World;
use crate::core::node::Action;
use crate::core::quorum::Electorate;
use crate::core::types::{NodeId, Outcome, SiteId, Time, Verdict};
use crate::core::voter::fast_leader;
use crate::wire::{Datagram, Message};

/// What the orphaned-verdict fault did in one world.
#[derive(Clone, Debug, Default)]
pub struct Orphan {
    /// The verdict whose leader crashed: (site, slot, epoch, leader).
    pub fired: Option<(SiteId, u64, u64, NodeId)>,
    /// The leader committed the verdict itself: it crashes before its next action (after its
    /// Commit broadcast, when `after_broadcast`).
    pending: Option<(usize, bool)>,
}

impl World {
    /// Node `i` observes the commit of `verdict`: the first commit anywhere of the judged
    /// site's first DOWN verdict fires the fault.
    pub(super) fn on_commit_for_orphan(&mut self, i: usize, verdict: &Verdict) {
        let crash = self.faults.commit_crash;
        if crash.is_none() && !self.faults.blind_leader {
            return;
        }
        let judged = &self.fleet.sites[0].id;
        if self.orphan.fired.is_some()
            || &verdict.site != judged
            || verdict.outcome() != Outcome::Down
            || self
                .checker
                .commits
                .contains_key(&(verdict.site.clone(), verdict.slot))
        {
            return;
        }
        let leader = verdict.value.leader.clone();
        if self.faults.blind_leader && self.index(&leader) != self.blind_node() {
            // Decided by a classic round naming a leader that sees the site DOWN: no orphan.
            return;
        }
        self.orphan.fired = Some((
            verdict.site.clone(),
            verdict.slot,
            verdict.epoch(),
            leader.clone(),
        ));
        self.counters.orphaned += 1;
        let (Some(crash), Some(l)) = (crash, self.index(&leader)) else {
            return;
        };
        self.schedule_crash(leader.clone(), crash.lasts);
        if l == i {
            self.orphan.pending = Some((i, crash.after_broadcast));
        } else if self.nodes[l].up || self.nodes[l].frozen {
            self.log(|| format!("{leader}, named leader of the verdict, crashes as it commits"));
            self.crash_now(l);
        }
    }

    /// The node the fast round names to lead the judged site's first slot.
    fn blind_node(&self) -> Option<usize> {
        let site = &self.fleet.sites[0].id;
        let e = Electorate::new(self.fleet.electorate(site));
        self.index(&fast_leader(site, 0, &e)?)
    }

    /// Node `i` probes `indicator`: with the blind-leader fault, a probe of the judged site's
    /// Indicators by the named leader is answered while the site is dark, as a stale path
    /// would. True when answered so.
    pub(super) fn ghost_answer(&mut self, i: usize, indicator: &NodeId, nonce: u64) -> bool {
        if !self.faults.blind_leader || self.blind_node() != Some(i) {
            return false;
        }
        let site = self.fleet.sites[0].id.clone();
        let Some(to) = self.index(indicator) else {
            return false;
        };
        if self.nodes[to].site != site || !self.faults.blackout_during(&site, self.now, self.now) {
            return false;
        }
        let d = Datagram::Answer {
            nonce,
            sent_us: self.now.0,
        };
        let now = self.now;
        self.net
            .send_datagram(&mut self.q, &self.faults, &mut self.rng, now, to, i, &d);
        true
    }

    /// Before node `i` carries out `a`: true when the pending fault crashes it now (`a` and
    /// everything after it are lost).
    pub(super) fn crashes_before(&mut self, i: usize, a: &Action) -> bool {
        let Some((n, after_broadcast)) = self.orphan.pending else {
            return false;
        };
        let commit = matches!(
            a,
            Action::Broadcast {
                msg: Message::Vote(_),
                ..
            } | Action::Observe(_)
        );
        if n != i || (after_broadcast && commit) {
            return false;
        }
        self.orphan.pending = None;
        let id = self.nodes[i].id.clone();
        self.log(|| format!("{id} crashes right after committing the verdict it leads"));
        self.crash_now(i);
        true
    }

    /// Once runs must have settled: the orphaned verdict, still the newest of its site, has a
    /// run that finished, unless too few of its electorate are up.
    pub fn check_orphan(&self, calm: Time) -> Check {
        let Some((site, slot, epoch, leader)) = &self.orphan.fired else {
            return Ok(());
        };
        let replaced = self
            .checker
            .commits
            .keys()
            .any(|(s, n)| s == site && n > slot);
        if replaced || !self.faults.majority_up(&self.fleet, site, calm, self.now) {
            return Ok(());
        }
        let run = self.failover.runs.get(&(site.clone(), *epoch));
        // Finished: its steps ran, or a precheck failed before any side effect.
        if run.is_some_and(|r| r.finished.is_some()) {
            return Ok(());
        }
        let how = match self.faults.blind_leader {
            true => "seeing the site up",
            false => "crashed as it committed",
        };
        let what = match run {
            None => "no member ever registered its run",
            Some(r) if r.begun.is_none() => "its run was registered but never began",
            Some(_) => "its run began but did not finish",
        };
        Err((
            ViolationKind::VerdictNotRun,
            format!("DOWN verdict {site} epoch {epoch} (leader {leader}, {how}): {what}"),
        ))
    }
}
