//! The fleet-wide operator lock: which operator run (a manual failover or a failback) a site
//! gets, decided by its electorate so that two operators calling two nodes at once get ONE
//! run. Per site, generations 1, 2, ... each decide one value (the run's epoch, its leader,
//! its trigger) by single-decree Paxos among the site's electorate. A node asked for a run
//! proposes its own value for the generation after the newest decided one it knows; a promise
//! carrying an accepted value forces that value, and a reply saying the generation is already
//! decided teaches it. Only the node a decided value names leads the run; every other call for
//! that generation is answered with the winning run. Duels back off for a random time drawn
//! from a seeded RNG and give up at a bound.
//!
//! Each member's acceptor state (promised ballot, accepted value, newest decided value) is
//! persisted before any answer that reveals it (`LockAction::Persist` comes first). Messages
//! are accepted only from members of the site's electorate, with numbers bounded by
//! `MAX_EPOCH`. Pure: no clock, no IO; the caller passes time and carries out actions in order.

use super::quorum::Electorate;
use super::trust::{Refusal, MAX_EPOCH};
use super::types::{Ballot, NodeId, SiteId, Time};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// How a proposal of this node ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalEnd {
    /// Its generation decided a run of this node with the trigger it asked for.
    Won(Decided),
    /// Its generation (or a later one) decided another run: that run goes ahead instead.
    Lost(Decided),
    /// No decision within the bound (members unreachable, or endless duels).
    Undecided { bound: Duration },
    /// Given up before asking for acceptance: the electorate knows a DOWN verdict (of this
    /// epoch) newer than the lock's last decision, so the alarm reaction asked for is moot
    /// (the verdict's failover is due), and a run above that verdict would fence it out.
    Outrun { verdict: u64 },
    /// Given up before asking for acceptance: the electorate knows alarm calls newer than
    /// this node's that no longer ask for the reaction (a clear this node has not learned,
    /// or an alarm of another source still raised).
    Outdated,
    /// This node cannot keep its acceptor state durable; it takes no part any more.
    Broken(String),
}

/// What the lock asks of the node, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockAction {
    /// Make `state` durable before any later action.
    Persist {
        site: SiteId,
        state: LockState,
    },
    Send {
        to: NodeId,
        msg: LockMsg,
    },
    /// A generation this node did not know decided before. `lead`: the node the value names
    /// should start the run now. False when the value was only taught in passing (a later
    /// proposal's `last`, a reply about another generation than this node's own proposal): the
    /// fleet has moved on, and a run started that late would come after newer ones.
    Learned {
        site: SiteId,
        decided: Decided,
        lead: bool,
    },
    /// The proposal made for command `id` ended.
    Ended {
        site: SiteId,
        id: u64,
        end: ProposalEnd,
    },
    /// A message was refused.
    Refused {
        from: NodeId,
        why: Refusal,
    },
}

/// Why a proposal could not start; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("this node is not a member of site {0}'s electorate")]
    NotInElectorate(SiteId),
    #[error("a proposal for site {0} is already under way on this node")]
    Busy(SiteId),
    #[error("no generation or ballot is left for site {0}")]
    Exhausted(SiteId),
    #[error("this node cannot keep its lock state durable: {0}")]
    Broken(String),
}

/// Timings of the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockConfig {
    /// How long a phase waits for a majority before it tries again with a higher ballot.
    pub round_timeout: Duration,
    /// The scale of the random pause after a refused or timed-out phase.
    pub backoff: Duration,
    /// How long a proposal may take in all before its command is answered undecided.
    pub bound: Duration,
}

impl LockConfig {
    /// From the vote timeout (a round trip to the electorate and back, with slack): rounds of
    /// one vote timeout, backoffs on the same scale, and at least 3 s (10 rounds) in all.
    pub fn from_timing(t: &crate::config::Timing) -> LockConfig {
        let round = t.vote_timeout.max(Duration::from_millis(20));
        LockConfig {
            round_timeout: round,
            backoff: round,
            bound: round.saturating_mul(10).max(Duration::from_secs(3)),
        }
    }
}

enum Phase {
    Prepare {
        promises: BTreeMap<NodeId, (Option<LockAccepted>, SiteView)>,
        refused: BTreeSet<NodeId>,
    },
    Accept {
        value: LockValue,
        accepted: BTreeSet<NodeId>,
        refused: BTreeSet<NodeId>,
    },
    /// Waiting out a random pause before the next ballot.
    Backoff,
}

struct Proposal {
    id: u64,
    gen: u64,
    ballot: Ballot,
    own: LockValue,
    electorate: Electorate,
    phase: Phase,
    /// When the current phase (or pause) is over.
    phase_until: Time,
    give_up_at: Time,
    attempts: u32,
    /// The highest ballot an acceptor said it promised: the next ballot goes above it.
    highest_seen: Ballot,
}

/// The operator lock of every site, as one node takes part in it.
pub struct OpLock {
    me: NodeId,
    config: LockConfig,
    states: BTreeMap<SiteId, LockState>,
    /// What this node knows of each site beyond the lock, as the node last told it.
    views: BTreeMap<SiteId, SiteView>,
    proposals: BTreeMap<SiteId, Proposal>,
    broken: Option<String>,
    rng: StdRng,
    actions: VecDeque<LockAction>,
}

impl OpLock {
    /// The lock of node `me`, from the acceptor states it stored.
    pub fn new(
        me: NodeId,
        config: LockConfig,
        states: BTreeMap<SiteId, LockState>,
        seed: u64,
    ) -> OpLock {
        OpLock {
            me,
            config,
            states,
            views: BTreeMap::new(),
            proposals: BTreeMap::new(),
            broken: None,
            rng: StdRng::seed_from_u64(seed),
            actions: VecDeque::new(),
        }
    }

    pub fn set_config(&mut self, config: LockConfig) {
        self.config = config;
    }

    pub fn config(&self) -> LockConfig {
        self.config
    }

    /// What this node now knows of `site` beyond the lock: its Promises carry it, and its
    /// own proposals' values are fitted to it. The node tells it before every call about the
    /// site.
    pub fn set_view(&mut self, site: &SiteId, view: SiteView) {
        self.views.insert(site.clone(), view);
    }

    fn view(&self, site: &SiteId) -> SiteView {
        self.views.get(site).cloned().unwrap_or_default()
    }

    pub fn poll_action(&mut self) -> Option<LockAction> {
        self.actions.pop_front()
    }

    pub fn state(&self, site: &SiteId) -> Option<&LockState> {
        self.states.get(site)
    }

    /// The newest decided generation of `site` this node knows.
    pub fn decided(&self, site: &SiteId) -> Option<&Decided> {
        self.states.get(site).and_then(|s| s.decided.as_ref())
    }

    /// The highest run epoch the lock of `site` has seen decided or accepted here: a new run
    /// goes above it, so that two generations never share a run.
    pub fn known_epoch(&self, site: &SiteId) -> u64 {
        let Some(s) = self.states.get(site) else {
            return 0;
        };
        let decided = s.decided.as_ref().map_or(0, |d| d.value.run);
        let accepted = s.accepted.as_ref().map_or(0, |a| a.value.run);
        decided.max(accepted)
    }

    pub fn proposing(&self, site: &SiteId) -> bool {
        self.proposals.contains_key(site)
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.proposals
            .values()
            .map(|p| p.phase_until.min(p.give_up_at))
            .min()
    }

    /// This node can no longer make its lock state durable: it answers nothing more, and its
    /// proposals end.
    pub fn break_down(&mut self, reason: String) {
        self.broken = Some(reason.clone());
        for (site, p) in std::mem::take(&mut self.proposals) {
            self.actions.push_back(LockAction::Ended {
                site,
                id: p.id,
                end: ProposalEnd::Broken(reason.clone()),
            });
        }
    }

    /// Proposes `own` (whose leader must be this node) for the generation after the newest
    /// decided one this node knows of `site`; `id` comes back in the `Ended` action. Returns
    /// the generation.
    pub fn propose(
        &mut self,
        now: Time,
        site: SiteId,
        electorate: Electorate,
        own: LockValue,
        id: u64,
    ) -> Result<u64, LockError> {
        if let Some(why) = &self.broken {
            return Err(LockError::Broken(why.clone()));
        }
        if !electorate.contains(&self.me) {
            return Err(LockError::NotInElectorate(site));
        }
        if self.proposals.contains_key(&site) {
            return Err(LockError::Busy(site));
        }
        let state = self.states.get(&site).cloned().unwrap_or_default();
        let gen = state
            .decided_gen()
            .checked_add(1)
            .filter(|g| *g <= MAX_EPOCH)
            .ok_or_else(|| LockError::Exhausted(site.clone()))?;
        let epoch = own.run.max(state.promised.epoch.saturating_add(1));
        if epoch > MAX_EPOCH || own.run > MAX_EPOCH {
            return Err(LockError::Exhausted(site));
        }
        let ballot = Ballot {
            epoch,
            proposer: self.me.clone(),
        };
        self.proposals.insert(
            site.clone(),
            Proposal {
                id,
                gen,
                ballot,
                own,
                electorate,
                phase: Phase::Backoff,
                phase_until: now,
                give_up_at: now + self.config.bound,
                attempts: 0,
                highest_seen: Ballot::zero(),
            },
        );
        self.start_round(now, &site);
        Ok(gen)
    }

    /// Phase timeouts, pauses and the overall bound.
    pub fn tick(&mut self, now: Time) {
        let sites: Vec<SiteId> = self.proposals.keys().cloned().collect();
        for site in sites {
            let p = &self.proposals[&site];
            let pausing = matches!(p.phase, Phase::Backoff);
            if now >= p.give_up_at {
                let p = self.proposals.remove(&site).expect("listed");
                self.actions.push_back(LockAction::Ended {
                    site,
                    id: p.id,
                    end: ProposalEnd::Undecided {
                        bound: self.config.bound,
                    },
                });
            } else if now >= p.phase_until {
                if pausing {
                    self.next_ballot(now, &site);
                } else {
                    self.pause(now, &site);
                }
            }
        }
    }

    /// A lock message from `from`; `electorate` is the site's in the running fleet (None: a
    /// site the fleet does not watch).
    pub fn handle(
        &mut self,
        now: Time,
        from: &NodeId,
        msg: LockMsg,
        electorate: Option<&Electorate>,
    ) {
        if self.broken.is_some() {
            return;
        }
        let Some(e) = electorate else {
            return self.refuse(from, Refusal::UnknownSite);
        };
        if let Err(why) = check(from, &msg, e) {
            return self.refuse(from, why);
        }
        if !e.contains(&self.me) {
            // Not an acceptor of this site: nothing to answer or learn.
            return;
        }
        match msg {
            LockMsg::Prepare {
                site,
                gen,
                ballot,
                last,
            } => {
                if self.catch_up(from, &site, gen, last) {
                    let msg = self.on_prepare(&site, gen, ballot);
                    self.send(from, msg);
                }
            }
            LockMsg::Accept {
                site,
                gen,
                ballot,
                value,
                last,
            } => {
                if self.catch_up(from, &site, gen, last) {
                    let msg = self.on_accept(&site, gen, ballot, value);
                    self.send(from, msg);
                }
            }
            LockMsg::Promise {
                site,
                gen,
                ballot,
                ok,
                promised,
                accepted,
                decided,
                view,
            } => {
                if let Some(d) = decided {
                    let mine = self.proposals.get(&site).is_some_and(|p| p.gen == d.gen);
                    self.learn(&site, d, mine);
                }
                let accepted = accepted.filter(|a| a.gen == gen);
                let answer = PromiseAnswer {
                    ok,
                    promised,
                    accepted,
                    view,
                };
                self.on_promise(now, &site, from, gen, &ballot, answer);
            }
            LockMsg::AcceptReply {
                site,
                gen,
                ballot,
                ok,
                promised,
                decided,
            } => {
                if let Some(d) = decided {
                    let mine = self.proposals.get(&site).is_some_and(|p| p.gen == d.gen);
                    self.learn(&site, d, mine);
                }
                self.on_accept_reply(now, &site, from, gen, &ballot, ok, promised);
            }
            LockMsg::Commit { site, decided } => self.learn(&site, decided, true),
        }
    }

    /// A proposer's Prepare or Accept first teaches the newest decided generation it knows;
    /// then the acceptor answers only for the generation right after what it knows decided
    /// (refused further ahead: one liar cannot skip generations). True when it may answer.
    fn catch_up(&mut self, from: &NodeId, site: &SiteId, gen: u64, last: Option<Decided>) -> bool {
        if let Some(d) = last {
            self.learn(site, d, false);
        }
        if gen > self.decided_gen(site).saturating_add(1) {
            self.refuse(from, Refusal::SlotTooFar);
            return false;
        }
        true
    }

    fn refuse(&mut self, from: &NodeId, why: Refusal) {
        self.actions.push_back(LockAction::Refused {
            from: from.clone(),
            why,
        });
    }

    fn send(&mut self, to: &NodeId, msg: LockMsg) {
        self.actions.push_back(LockAction::Send {
            to: to.clone(),
            msg,
        });
    }

    fn decided_gen(&self, site: &SiteId) -> u64 {
        self.states.get(site).map_or(0, LockState::decided_gen)
    }

    fn persist(&mut self, site: &SiteId) {
        let state = self.states.get(site).cloned().unwrap_or_default();
        self.actions.push_back(LockAction::Persist {
            site: site.clone(),
            state,
        });
    }

    /// A decided generation: kept (durably) if newer than what this node knows, and it ends
    /// this node's proposal for that generation or an earlier one.
    fn learn(&mut self, site: &SiteId, decided: Decided, lead: bool) {
        let s = self.states.entry(site.clone()).or_default();
        if let Some(known) = &s.decided {
            if known.gen == decided.gen && known.value != decided.value {
                tracing::error!(%site, gen = decided.gen, known = ?known.value, told = ?decided.value,
                    "two values for one generation of the operator lock; keeping the one known");
            }
            if known.gen >= decided.gen {
                return;
            }
        }
        if s.accepted.as_ref().is_some_and(|a| a.gen <= decided.gen) {
            s.accepted = None;
        }
        s.decided = Some(decided.clone());
        self.persist(site);
        self.actions.push_back(LockAction::Learned {
            site: site.clone(),
            decided: decided.clone(),
            lead,
        });
        let Some(p) = self.proposals.get(site) else {
            return;
        };
        if p.gen > decided.gen {
            return;
        }
        let p = self.proposals.remove(site).expect("present");
        let won = decided.gen == p.gen
            && decided.value.leader == self.me
            && decided.value.trigger == p.own.trigger;
        let end = if won {
            ProposalEnd::Won(decided)
        } else {
            ProposalEnd::Lost(decided)
        };
        self.actions.push_back(LockAction::Ended {
            site: site.clone(),
            id: p.id,
            end,
        });
    }

    /// Enters `phase` of the proposal for `site` until a round timeout from now; the
    /// proposal's generation and ballot, the other members to ask, and the newest decided
    /// generation they are told of.
    fn enter_phase(
        &mut self,
        now: Time,
        site: &SiteId,
        phase: Phase,
    ) -> (u64, Ballot, Vec<NodeId>, Option<Decided>) {
        let round_timeout = self.config.round_timeout;
        let last = self.states.get(site).and_then(|s| s.decided.clone());
        let p = self.proposals.get_mut(site).expect("caller checked");
        p.phase = phase;
        p.phase_until = now + round_timeout;
        let others = p
            .electorate
            .members()
            .filter(|m| **m != self.me)
            .cloned()
            .collect();
        (p.gen, p.ballot.clone(), others, last)
    }

    /// Phase 1 under the proposal's current ballot; this node's own acceptor answers first.
    fn start_round(&mut self, now: Time, site: &SiteId) {
        if let Some(p) = self.proposals.get_mut(site) {
            p.attempts += 1;
        }
        let phase = Phase::Prepare {
            promises: BTreeMap::new(),
            refused: BTreeSet::new(),
        };
        let (gen, ballot, others, last) = self.enter_phase(now, site, phase);
        let mine = self.on_prepare(site, gen, ballot.clone());
        for to in others {
            let msg = LockMsg::Prepare {
                site: site.clone(),
                gen,
                ballot: ballot.clone(),
                last: last.clone(),
            };
            self.send(&to, msg);
        }
        if let LockMsg::Promise {
            ok,
            promised,
            accepted,
            view,
            ..
        } = mine
        {
            let me = self.me.clone();
            let answer = PromiseAnswer {
                ok,
                promised,
                accepted,
                view,
            };
            self.on_promise(now, site, &me, gen, &ballot, answer);
        }
    }

    fn on_promise(
        &mut self,
        now: Time,
        site: &SiteId,
        from: &NodeId,
        gen: u64,
        ballot: &Ballot,
        answer: PromiseAnswer,
    ) {
        let last_run = self.decided(site).map_or(0, |d| d.value.run);
        let Some(p) = self.proposals.get_mut(site) else {
            return;
        };
        if p.gen != gen || p.ballot != *ballot {
            return;
        }
        p.highest_seen = p.highest_seen.clone().max(answer.promised);
        let majority = p.electorate.majority();
        let members = p.electorate.len();
        let Phase::Prepare { promises, refused } = &mut p.phase else {
            return;
        };
        if answer.ok {
            promises.insert(from.clone(), (answer.accepted, answer.view));
        } else {
            refused.insert(from.clone());
        }
        if promises.len() >= majority {
            // Standard Paxos: the value accepted under the highest ballot, kept as it was
            // accepted (it may have been chosen); else our own, fitted to the promises.
            let forced = promises
                .values()
                .filter_map(|(a, _)| a.as_ref())
                .max_by(|a, b| a.ballot.cmp(&b.ballot))
                .map(|a| a.value.clone());
            let value = match forced {
                Some(v) => v,
                None => {
                    let views: Vec<&SiteView> = promises.values().map(|(_, v)| v).collect();
                    match fit_own(&p.own, &views, last_run, self.config.bound) {
                        Ok(v) => v,
                        Err(end) => return self.end_proposal(site, end),
                    }
                }
            };
            self.start_accept(now, site, value);
        } else if refused.len() > members - majority {
            self.pause(now, site);
        }
    }

    fn end_proposal(&mut self, site: &SiteId, end: ProposalEnd) {
        if let Some(p) = self.proposals.remove(site) {
            self.actions.push_back(LockAction::Ended {
                site: site.clone(),
                id: p.id,
                end,
            });
        }
    }

    /// Phase 2 with `value`; this node's own acceptor answers first.
    fn start_accept(&mut self, now: Time, site: &SiteId, value: LockValue) {
        let phase = Phase::Accept {
            value: value.clone(),
            accepted: BTreeSet::new(),
            refused: BTreeSet::new(),
        };
        let (gen, ballot, others, last) = self.enter_phase(now, site, phase);
        let mine = self.on_accept(site, gen, ballot.clone(), value.clone());
        for to in others {
            let msg = LockMsg::Accept {
                site: site.clone(),
                gen,
                ballot: ballot.clone(),
                value: value.clone(),
                last: last.clone(),
            };
            self.send(&to, msg);
        }
        if let LockMsg::AcceptReply { ok, promised, .. } = mine {
            let me = self.me.clone();
            self.on_accept_reply(now, site, &me, gen, &ballot, ok, promised);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_accept_reply(
        &mut self,
        now: Time,
        site: &SiteId,
        from: &NodeId,
        gen: u64,
        ballot: &Ballot,
        ok: bool,
        promised: Ballot,
    ) {
        let Some(p) = self.proposals.get_mut(site) else {
            return;
        };
        if p.gen != gen || p.ballot != *ballot {
            return;
        }
        p.highest_seen = p.highest_seen.clone().max(promised);
        let majority = p.electorate.majority();
        let members = p.electorate.len();
        let Phase::Accept {
            value,
            accepted,
            refused,
        } = &mut p.phase
        else {
            return;
        };
        if ok {
            accepted.insert(from.clone());
        } else {
            refused.insert(from.clone());
        }
        if accepted.len() >= majority {
            let decided = Decided {
                gen,
                value: value.clone(),
            };
            let others: Vec<NodeId> = p
                .electorate
                .members()
                .filter(|m| **m != self.me)
                .cloned()
                .collect();
            // Learned (and persisted) here first, then told to every member.
            self.learn(site, decided.clone(), true);
            for to in others {
                let msg = LockMsg::Commit {
                    site: site.clone(),
                    decided: decided.clone(),
                };
                self.send(&to, msg);
            }
        } else if refused.len() > members - majority {
            self.pause(now, site);
        }
    }

    /// A phase failed: wait a random pause (growing with the attempts) before a higher ballot,
    /// so that two proposers rarely collide twice.
    fn pause(&mut self, now: Time, site: &SiteId) {
        let scale = self.config.backoff.as_micros().max(1) as u64;
        let p = self.proposals.get_mut(site).expect("caller checked");
        let spread = scale * u64::from(p.attempts.clamp(1, 4));
        let wait = scale / 4 + self.rng.random_range(0..spread);
        p.phase = Phase::Backoff;
        p.phase_until = now + Duration::from_micros(wait);
    }

    fn next_ballot(&mut self, now: Time, site: &SiteId) {
        let promised = self.states.get(site).map(|s| s.promised.epoch).unwrap_or(0);
        let p = self.proposals.get_mut(site).expect("caller checked");
        let above = p.ballot.epoch.max(p.highest_seen.epoch).max(promised);
        match above.checked_add(1).filter(|e| *e <= MAX_EPOCH) {
            Some(epoch) => {
                p.ballot.epoch = epoch;
                self.start_round(now, site);
            }
            None => {
                let p = self.proposals.remove(site).expect("present");
                self.actions.push_back(LockAction::Ended {
                    site: site.clone(),
                    id: p.id,
                    end: ProposalEnd::Undecided {
                        bound: self.config.bound,
                    },
                });
            }
        }
    }
}

mod acceptor;
mod fit;
pub use fit::newest_calls;
use fit::{fit_own, PromiseAnswer};
mod messages;
use messages::check;
pub use messages::{AlarmStamp, Decided, LockAccepted, LockMsg, LockState, LockValue, SiteView};

#[cfg(test)]
#[path = "oplock_tests.rs"]
mod tests;
