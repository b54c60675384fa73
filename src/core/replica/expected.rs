//! Runs a member expects but has not heard of. A committed DOWN verdict names the leader of
//! its run, and only that leader registers it; every other member learns of the run from the
//! register. Were the leader to die between the commit and its register, no member would
//! hold a copy, and the takeover (which exists only for runs a member holds) would never
//! start: the verdict would stand and nothing would fail over.
//!
//! So a member that learns such a verdict holds a placeholder for its run: the copy it would
//! have right after the leader's register (the leader's first ballot, an empty journal), with
//! the lease running from when it learned the verdict. It is only in memory and shows
//! nowhere (`Replicas::record` and `records` leave it out): nothing happened yet. From there
//! the ordinary paths take over:
//!
//! - the leader's register fills it (`on_append`: same ballot, the journal extends), and its
//!   heartbeats renew the lease, so a live leader is never taken over;
//! - a leader silent for the lease (plus the stagger by rank) is taken over by `tick` at a
//!   term above the leader's first ballot, as for a run whose leader died after its register;
//!   the first `Persist` of the record (a promise, a takeover) makes it a durable copy;
//! - a late register of the first leader, below a promised term, is refused as any message of
//!   a lower ballot is, and the leader yields.
//!
//! A run the operator lock decided (a manual failover, a failback, an alarm's prestage,
//! unstage or failover) has the same gap: its leader learns the decision and registers the run,
//! and may die in between. Every other member that learns the decision (the leader's commit,
//! or its own later proposal forced to the decided value) expects the run the same way.

use super::*;

impl Replicas {
    /// Expects run `run` of `site` from `leader`, whose first ballot is `(run, leader)`: unless
    /// this node already holds a copy (or expects it), it holds a placeholder whose lease runs
    /// from `now`. `start_at` is when the leader would start its first step (the takeover
    /// delay from the verdict). The caller decides that the run is due (a committed DOWN
    /// verdict this node learned through the vote, or a decision of the operator lock, and the
    /// run armed here): a peer's message alone never creates one.
    #[allow(clippy::too_many_arguments)]
    pub fn expect(
        &mut self,
        now: Time,
        site: SiteId,
        run: u64,
        leader: NodeId,
        (trigger, forced): (RunTrigger, bool),
        start_at: WallTime,
        electorate: Electorate,
    ) -> bool {
        let key = (site.clone(), run);
        if self.runs.contains_key(&key) || leader == self.me || !electorate.contains(&self.me) {
            return false;
        }
        let ballot = Ballot {
            epoch: run,
            proposer: leader,
        };
        let record = RunRecord {
            site,
            run,
            trigger,
            promised: ballot.clone(),
            journal_ballot: ballot,
            journal: Vec::new(),
            forced,
            start_at,
        };
        let mut r = Replica::follower(record, electorate, Some(now));
        r.placeholder = true;
        self.runs.insert(key, r);
        true
    }

    /// The runs this node expects and has not heard of (see the module doc).
    pub fn expected(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs
            .values()
            .filter(|r| r.placeholder)
            .map(|r| &r.record)
    }

    /// True while run `run` of `site` is expected here and not heard of.
    pub fn is_expected(&self, site: &SiteId, run: u64) -> bool {
        self.runs
            .get(&(site.clone(), run))
            .is_some_and(|r| r.placeholder)
    }

    /// Forgets the expected runs `keep` says are no longer due (their verdict was replaced):
    /// nothing of them was persisted or sent, so nothing else needs undoing.
    pub fn forget_expected(&mut self, keep: impl Fn(&RunRecord) -> bool) {
        self.runs.retain(|_, r| {
            !r.placeholder || matches!(r.role, Role::Candidate { .. }) || keep(&r.record)
        });
    }
}
