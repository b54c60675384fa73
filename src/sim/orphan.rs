//! The orphaned verdict: the leader a committed DOWN verdict names dies before its run's
//! register reaches anyone (`FaultModel::commit_crash`), so no member holds a copy of the run.
//! The electorate must still run it: every member that learned the verdict expects the run
//! and takes it over when no register comes (`core::replica::expected`). The check, once
//! faults have stopped for the settle bound: the verdict, if still the newest of its site, has
//! a run that finished (its steps ran, or a precheck stopped it before any side effect). That
//! it acts once per step is the duplicate-effect check's.

use super::invariants::{Check, ViolationKind};
use super::net::EventKind;
use super::world::World;
use crate::core::node::Action;
use crate::core::types::{NodeId, Outcome, SiteId, Time, Verdict};
use crate::wire::Message;

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
        let Some(crash) = self.faults.commit_crash else {
            return;
        };
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
        self.orphan.fired = Some((
            verdict.site.clone(),
            verdict.slot,
            verdict.epoch(),
            leader.clone(),
        ));
        self.counters.orphaned += 1;
        let Some(l) = self.index(&leader) else {
            return;
        };
        let (start, end) = (self.now, self.now + crash.lasts);
        self.faults.outages.push(super::faults::Outage {
            node: leader.clone(),
            start,
            end,
            crash: true,
        });
        self.q.push(end, EventKind::Faults);
        if l == i {
            self.orphan.pending = Some((i, crash.after_broadcast));
        } else if self.nodes[l].up || self.nodes[l].frozen {
            self.log(|| format!("{leader}, named leader of the verdict, crashes as it commits"));
            self.crash_now(l);
        }
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
                msg: Message::Vote(_)
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
        let members = self.fleet.electorate(site);
        let up = members
            .iter()
            .filter(|m| {
                let s = &self.fleet.node(m).expect("member").site;
                !self.faults.down_during(m, s, calm, self.now)
            })
            .count();
        if replaced || up < members.len() / 2 + 1 {
            return Ok(());
        }
        let run = self.failover.runs.get(&(site.clone(), *epoch));
        // Finished: its steps ran, or a precheck failed before any side effect.
        if run.is_some_and(|r| r.finished.is_some()) {
            return Ok(());
        }
        let what = match run {
            None => "no member ever registered its run",
            Some(r) if r.begun.is_none() => "its run was registered but never began",
            Some(_) => "its run began but did not finish",
        };
        Err((
            ViolationKind::VerdictNotRun,
            format!("DOWN verdict {site} epoch {epoch} (leader {leader}, crashed as it committed): {what}"),
        ))
    }
}
