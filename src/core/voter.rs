//! The Voter: turns its own Pinger's opinion into committed, epoch-numbered verdicts agreed
//! by an absolute majority of the site's electorate.
//!
//! Each site has a sequence of verdict slots (slot 0 DOWN, slot 1 UP again, ...). A slot is
//! decided by single-decree Paxos whose ballots are the epochs: phase 1 (`Prepare`) doubles as
//! the opinion poll, phase 2 (`Accept`) commits. A voter makes its promise and acceptance
//! durable (the driver carries out `Persist` before any later action) and never promises a
//! lower ballot, so two proposers can never commit different values for one slot, and the
//! epoch of a verdict is the epoch of the one value chosen. This module never reads a clock,
//! never sends, and never writes: it emits actions.

use super::quorum::{Count, Electorate, Standing};
use super::trust::Refusal;
use super::types::{
    Accepted, Ballot, Durable, NodeId, Opinion, Outcome, SiteId, Time, Value, Verdict,
};
use crate::wire::{OpinionReport, VoteMsg};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Where the Voter reads its own opinion of a site, with evidence, at a given time.
pub trait OpinionSource {
    fn report(&self, site: &SiteId, now: Time) -> OpinionReport;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterConfig {
    pub vote_timeout: Duration,
    pub max_vote_rounds: u32,
    /// Evidence older than this does not count in a vote (one probe budget).
    pub evidence_max_age: Duration,
    /// Pause after a round ended UP or after `max_vote_rounds` undecided rounds.
    pub revote_after: Duration,
    /// Pause between undecided rounds.
    pub retry_after: Duration,
    pub hold_down: Duration,
    /// Take part in each slot's fast round before any classic round (see `voter::fast`).
    pub fast_round: bool,
}

impl VoterConfig {
    pub fn from_timing(t: &crate::config::Timing) -> VoterConfig {
        VoterConfig {
            vote_timeout: t.vote_timeout,
            max_vote_rounds: t.max_vote_rounds.max(1),
            evidence_max_age: t.probe_budget(),
            revote_after: t.revote_after,
            retry_after: t.probe_interval,
            hold_down: t.hold_down,
            fast_round: true,
        }
    }
}

/// How a vote round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoundOutcome {
    /// A majority of the electorate reported the slot's outcome: on to the commit.
    Majority,
    /// Enough voters contradicted the proposer that no majority was possible. For a DOWN
    /// round this is an internal false positive.
    Contradicted,
    /// Too few answers before the vote timeout.
    Undecided,
    /// Another proposer holds a higher ballot.
    Conflict,
    /// The slot was decided meanwhile (by this round's commit or another proposer's).
    Superseded,
}

impl RoundOutcome {
    pub fn label(self, target: Outcome) -> &'static str {
        match (self, target) {
            (RoundOutcome::Majority, Outcome::Down) => "down",
            (RoundOutcome::Majority, Outcome::Up) => "up",
            (RoundOutcome::Contradicted, Outcome::Down) => "false_positive",
            (RoundOutcome::Contradicted, Outcome::Up) => "still_down",
            (RoundOutcome::Undecided, _) => "undecided",
            (RoundOutcome::Conflict, _) => "conflict",
            (RoundOutcome::Superseded, _) => "superseded",
        }
    }
}

/// One voter's answer in a round, as the proposer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub voter: NodeId,
    pub opinion: Opinion,
    pub evidence_age_ms: u32,
    pub promised: bool,
}

/// A finished round, for the evidence shown on the REST API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundRecord {
    pub site: SiteId,
    pub slot: u64,
    pub target: Outcome,
    pub epoch: u64,
    pub attempt: u32,
    pub started: Time,
    pub ended: Time,
    pub outcome: RoundOutcome,
    pub answers: Vec<Answer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoterAction {
    /// Must be on disk before any action emitted after it is carried out.
    Persist {
        site: SiteId,
        durable: Durable,
    },
    Send {
        to: NodeId,
        msg: VoteMsg,
    },
    /// To every peer of the fleet, voters or not.
    Broadcast {
        msg: VoteMsg,
    },
    RoundStarted {
        site: SiteId,
        slot: u64,
        target: Outcome,
        epoch: u64,
        attempt: u32,
    },
    RoundEnded(RoundRecord),
    /// A verdict this node had not known. `by_me` when this node's round committed it.
    Committed {
        verdict: Verdict,
        by_me: bool,
    },
    /// This node leads the pipeline of a DOWN verdict it learned (rather than counted) and that
    /// names it as leader: its own Pinger now sees the site DOWN as well.
    Lead {
        verdict: Verdict,
    },
    /// A message from `from` about `site` was refused and changed nothing: its sender may not
    /// originate what it says, or a number in it is out of bounds.
    Refused {
        from: NodeId,
        site: SiteId,
        reason: Refusal,
    },
}

struct Poll {
    slot: u64,
    ballot: Ballot,
    round: u64,
    started: Time,
    deadline: Time,
    promises: Count,
    opinions: Count,
    /// What each member that promised this ballot had accepted for the slot.
    reports: BTreeMap<NodeId, Accepted>,
    answers: BTreeMap<NodeId, Answer>,
}

struct Commit {
    slot: u64,
    ballot: Ballot,
    value: Value,
    deadline: Time,
    accepts: Count,
}

enum Round {
    Idle,
    Polling(Poll),
    Committing(Commit),
}

/// A Prepare answer held back while this voter's opinion is Suspect.
struct Held {
    to: NodeId,
    slot: u64,
    round: u64,
    ballot: Ballot,
    until: Time,
}

struct SiteVote {
    electorate: Electorate,
    durable: Durable,
    round: Round,
    held: Vec<Held>,
    /// Prepares answered lately: when this voter's opinion changes while the proposer's round
    /// may still run, it answers again so the proposer need not wait for a retry.
    answered: Vec<Held>,
    /// Attempts in the current series of rounds for the pending slot.
    attempts: u32,
    conflicts: u32,
    /// Not before: set after undecided rounds, conflicts and contradicted rounds.
    retry_at: Option<Time>,
    /// Another proposer's round is running; let it finish before starting ours.
    deferred_until: Option<Time>,
    /// Highest epoch other voters reported promising; the next ballot outbids it.
    seen_epoch: u64,
    /// This voter's part in the fast round of the pending slot.
    fast_try: Option<fast::FastTry>,
    /// Fast-round acceptances heard for the pending slot.
    tally: fast::Tally,
}

pub struct Voter {
    cfg: VoterConfig,
    me: NodeId,
    sites: BTreeMap<SiteId, SiteVote>,
    /// Durable state of every site ever voted on, kept across electorate changes.
    durable_all: BTreeMap<SiteId, Durable>,
    /// Newest verdict known per site, for every site (voter or not).
    known: BTreeMap<SiteId, Verdict>,
    /// The electorate of every site of the fleet, judged here or not: verdicts are checked
    /// against it.
    fleet: BTreeMap<SiteId, Electorate>,
    /// Per site, the verdict each member last reported more than one slot ahead: learned
    /// once a majority reports the same one.
    ahead: BTreeMap<SiteId, BTreeMap<NodeId, Verdict>>,
    /// When each site's DOWN verdict was learned, for hold-down.
    down_learned_at: BTreeMap<SiteId, Time>,
    /// DOWN verdicts naming this node as leader that it learned from a peer: led once its own
    /// opinion is DOWN too (`fast::resolve_leads`).
    lead_pending: BTreeMap<SiteId, Verdict>,
    next_round_id: u64,
    rng: StdRng,
    actions: VecDeque<VoterAction>,
}

/// Upper bound of consecutive lost duels before the voter pauses like after undecided rounds.
const MAX_CONFLICTS: u32 = 8;

impl Voter {
    /// `sites`: the sites this node judges, each with its electorate (which includes `me`).
    /// `durable` and `known` come from the store.
    pub fn new(
        cfg: VoterConfig,
        me: NodeId,
        sites: Vec<(SiteId, Electorate)>,
        durable: BTreeMap<SiteId, Durable>,
        known: Vec<Verdict>,
        seed: u64,
    ) -> Voter {
        let mut v = Voter {
            cfg,
            me,
            sites: BTreeMap::new(),
            durable_all: durable,
            known: BTreeMap::new(),
            fleet: BTreeMap::new(),
            ahead: BTreeMap::new(),
            down_learned_at: BTreeMap::new(),
            lead_pending: BTreeMap::new(),
            next_round_id: 1,
            rng: StdRng::seed_from_u64(seed),
            actions: VecDeque::new(),
        };
        for verdict in known {
            let newer = v
                .known
                .get(&verdict.site)
                .is_none_or(|k| k.slot < verdict.slot);
            if newer {
                v.known.insert(verdict.site.clone(), verdict);
            }
        }
        v.set_sites(sites);
        v
    }

    /// Replaces the judged sites and electorates (fleet reload); durable state is kept.
    pub fn set_sites(&mut self, sites: Vec<(SiteId, Electorate)>) {
        let mut old = std::mem::take(&mut self.sites);
        for (site, electorate) in sites {
            let sv = match old.remove(&site) {
                Some(mut sv) => {
                    sv.electorate = electorate;
                    sv
                }
                None => SiteVote {
                    electorate,
                    durable: self.durable_all.get(&site).cloned().unwrap_or_default(),
                    round: Round::Idle,
                    held: Vec::new(),
                    answered: Vec::new(),
                    attempts: 0,
                    conflicts: 0,
                    retry_at: None,
                    deferred_until: None,
                    seen_epoch: 0,
                    fast_try: None,
                    tally: fast::Tally::default(),
                },
            };
            self.sites.insert(site, sv);
        }
    }

    /// New timings (fleet reload); a running round keeps its deadline.
    pub fn set_config(&mut self, cfg: VoterConfig) {
        self.cfg = cfg;
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn poll_action(&mut self) -> Option<VoterAction> {
        self.actions.pop_front()
    }

    pub fn judged_sites(&self) -> impl Iterator<Item = &SiteId> {
        self.sites.keys()
    }

    pub fn electorate(&self, site: &SiteId) -> Option<&Electorate> {
        self.sites.get(site).map(|s| &s.electorate)
    }

    /// The newest verdict this node knows for `site`.
    pub fn verdict(&self, site: &SiteId) -> Option<&Verdict> {
        self.known.get(site)
    }

    pub fn verdicts(&self) -> impl Iterator<Item = &Verdict> {
        self.known.values()
    }

    pub fn durable(&self, site: &SiteId) -> Option<&Durable> {
        self.sites
            .get(site)
            .map(|s| &s.durable)
            .or_else(|| self.durable_all.get(site))
    }

    /// Until when no second automatic failover of `site` may start.
    pub fn hold_down_until(&self, site: &SiteId) -> Option<Time> {
        self.down_learned_at
            .get(site)
            .map(|&t| t + self.cfg.hold_down)
    }

    /// True while this node runs a round for `site`.
    pub fn round_in_progress(&self, site: &SiteId) -> bool {
        self.sites
            .get(site)
            .is_some_and(|s| !matches!(s.round, Round::Idle))
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t: Option<Time> = None;
        let mut at = |x: Time| t = Some(t.map_or(x, |t| t.min(x)));
        for s in self.sites.values() {
            match &s.round {
                Round::Polling(p) => at(p.deadline),
                Round::Committing(c) => at(c.deadline),
                Round::Idle => {
                    if let Some(r) = s.retry_at {
                        at(r);
                    }
                    if let Some(d) = s.deferred_until {
                        at(d);
                    }
                }
            }
            for h in &s.held {
                at(h.until);
            }
        }
        t
    }

    /// The local Pinger's opinion of `site` changed.
    pub fn on_opinion_changed(&mut self, now: Time, site: &SiteId, ops: &impl OpinionSource) {
        let Some(sv) = self.sites.get_mut(site) else {
            return;
        };
        let report = ops.report(site, now);
        sv.answered
            .retain(|h| h.until > now && h.ballot == sv.durable.promised);
        let mut again: Vec<Held> = std::mem::take(&mut sv.answered);
        if report.opinion != Opinion::Suspect {
            again.append(&mut sv.held);
        }
        for h in again {
            self.answer_prepare(now, site, h.to, h.slot, h.round, h.ballot, report.clone());
        }
        let sv = self.sites.get_mut(site).expect("site present");
        if report.opinion != Outcome::of_slot(next_slot(self.known.get(site))).as_opinion() {
            // The opinion left the slot's outcome: a later return starts a fresh series.
            sv.attempts = 0;
            sv.conflicts = 0;
            sv.retry_at = None;
            self.withdraw_fast(now, site, &report);
        }
        self.maybe_start(now, site, ops);
        self.resolve_leads(now, ops);
    }

    pub fn handle_timeout(&mut self, now: Time, ops: &impl OpinionSource) {
        let sites: Vec<SiteId> = self.sites.keys().cloned().collect();
        for site in sites {
            let report = ops.report(&site, now);
            let sv = self.sites.get_mut(&site).expect("site present");
            let (due, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut sv.held)
                .into_iter()
                .partition(|h| h.until <= now);
            sv.held = keep;
            for h in due {
                self.answer_prepare(now, &site, h.to, h.slot, h.round, h.ballot, report.clone());
            }
            let sv = self.sites.get_mut(&site).expect("site present");
            let expired = match &sv.round {
                Round::Polling(p) => p.deadline <= now,
                Round::Committing(c) => c.deadline <= now,
                Round::Idle => false,
            };
            if expired {
                self.end_round(now, &site, RoundOutcome::Undecided);
            }
            let sv = self.sites.get_mut(&site).expect("site present");
            if sv.deferred_until.is_some_and(|d| d <= now) {
                sv.deferred_until = None;
            }
            if sv.retry_at.is_some_and(|r| r <= now) {
                sv.retry_at = None;
            }
            self.maybe_start(now, &site, ops);
        }
        self.resolve_leads(now, ops);
    }

    /// A vote message from `from`; one its sender may not send is refused whole.
    pub fn handle_message(
        &mut self,
        now: Time,
        from: &NodeId,
        msg: VoteMsg,
        ops: &impl OpinionSource,
    ) {
        if let Err(reason) = self.authorize(from, &msg) {
            let site = guard::site_of(&msg).clone();
            self.refuse(from, &site, reason);
            return;
        }
        match msg {
            VoteMsg::Prepare {
                site,
                slot,
                ballot,
                round,
                wait_ms,
                last,
            } => {
                if let Some(v) = last {
                    self.learn_from(now, from, v);
                }
                self.on_prepare(now, from, site, slot, ballot, round, wait_ms, ops);
            }
            VoteMsg::Promise {
                site,
                slot,
                round,
                ballot,
                ok,
                promised,
                accepted,
                opinion,
                decided,
            } => {
                if let Some(v) = decided {
                    self.learn_from(now, from, v);
                }
                self.on_promise(
                    now, from, &site, slot, round, &ballot, ok, promised, accepted, opinion,
                );
            }
            VoteMsg::Accept {
                site,
                slot,
                ballot,
                value,
            } => self.on_accept(now, from, site, slot, ballot, value),
            VoteMsg::AcceptReply {
                site,
                slot,
                ballot,
                ok,
                promised,
                decided,
            } => {
                if let Some(v) = decided {
                    self.learn_from(now, from, v);
                }
                self.on_accept_reply(now, from, &site, slot, &ballot, ok, promised);
            }
            VoteMsg::Commit { verdict } => self.learn_from(now, from, verdict),
            VoteMsg::FastAccept {
                site,
                slot,
                value,
                opinion,
                evidence_age_ms,
            } => self.on_fast_accept(now, from, &site, slot, value, opinion, evidence_age_ms),
        }
        let sites: Vec<SiteId> = self.sites.keys().cloned().collect();
        for s in sites {
            if matches!(self.sites[&s].round, Round::Idle) {
                self.maybe_start(now, &s, ops);
            }
        }
        self.resolve_leads(now, ops);
    }

    /// A verdict this node committed itself, or read back from its store: learned without
    /// question. Whatever a peer reports goes through `learn_from`.
    pub fn learn(&mut self, now: Time, verdict: Verdict, by_me: bool) {
        let newer = self
            .known
            .get(&verdict.site)
            .is_none_or(|k| k.slot < verdict.slot);
        if !newer {
            return;
        }
        let site = verdict.site.clone();
        if let Some(claims) = self.ahead.get_mut(&site) {
            claims.retain(|_, v| v.slot > verdict.slot);
        }
        if verdict.outcome() == Outcome::Down {
            self.down_learned_at.insert(site.clone(), now);
        }
        self.lead_pending.remove(&site);
        if !by_me
            && verdict.outcome() == Outcome::Down
            && verdict.value.leader == self.me
            && self.sites.contains_key(&site)
        {
            self.lead_pending.insert(site.clone(), verdict.clone());
        }
        self.known.insert(site.clone(), verdict.clone());
        self.actions.push_back(VoterAction::Committed {
            verdict: verdict.clone(),
            by_me,
        });
        let Some(sv) = self.sites.get_mut(&site) else {
            return;
        };
        let stale = match &sv.round {
            Round::Polling(p) => p.slot <= verdict.slot,
            Round::Committing(c) => c.slot <= verdict.slot,
            Round::Idle => false,
        };
        if stale {
            self.end_round(now, &site, RoundOutcome::Superseded);
        }
        let sv = self.sites.get_mut(&site).expect("site present");
        sv.attempts = 0;
        sv.conflicts = 0;
        sv.retry_at = None;
        sv.held.retain(|h| h.slot > verdict.slot);
        sv.answered.retain(|h| h.slot > verdict.slot);
        sv.fast_try = None;
    }
}

fn own_round_ballot(r: &Round) -> Option<&Ballot> {
    match r {
        Round::Polling(p) => Some(&p.ballot),
        Round::Committing(c) => Some(&c.ballot),
        Round::Idle => None,
    }
}

fn next_slot(known: Option<&Verdict>) -> u64 {
    known.map_or(0, |v| v.slot + 1)
}

impl Outcome {
    pub fn as_opinion(self) -> Opinion {
        match self {
            Outcome::Down => Opinion::Down,
            Outcome::Up => Opinion::Up,
        }
    }
}

mod acceptor;
mod fast;
mod guard;
mod proposer;

pub use fast::fast_leader;
pub use guard::fleet_electorates;

#[cfg(test)]
#[path = "voter_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "voter/guard_tests.rs"]
mod guard_tests;

#[cfg(test)]
#[path = "voter/fast_tests.rs"]
mod fast_tests;
