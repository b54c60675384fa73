use super::*;
use crate::core::pipeline::{Phase, RunOutcome, StepRef};

fn id(s: &str) -> NodeId {
    NodeId::from(s)
}

fn site() -> SiteId {
    SiteId("a".to_string())
}

fn ms(n: u64) -> Time {
    Time::from_micros(n * 1000)
}

const CONFIG: ReplicaConfig = ReplicaConfig {
    lease: Duration::from_millis(1000),
    heartbeat: Duration::from_millis(250),
};

fn entry(run: u64, index: usize, kind: JournalKind) -> JournalEntry {
    JournalEntry {
        site: site(),
        epoch: run,
        term: run,
        step: StepRef::new(Phase::Step, index),
        name: format!("s{index}"),
        attempt: 1,
        at: WallTime(ms(index as u64).0),
        kind,
    }
}

fn ballot(epoch: u64, proposer: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: id(proposer),
    }
}

/// Run `run` as its first leader `leader` wrote it: no entries yet.
fn record(run: u64, leader: &str) -> RunRecord {
    RunRecord {
        site: site(),
        run,
        trigger: RunTrigger::Verdict,
        promised: ballot(run, leader),
        journal_ballot: ballot(run, leader),
        journal: vec![],
        forced: false,
        start_at: WallTime(0),
    }
}

/// Members b1, b2, c1 (majority 2) exchanging messages through a queue the test controls.
struct Cluster {
    nodes: BTreeMap<NodeId, Replicas>,
    electorate: Electorate,
    /// Nodes whose messages are lost, both ways.
    down: Vec<NodeId>,
    persisted: BTreeMap<NodeId, RunRecord>,
    leads: Vec<(NodeId, u64, Vec<JournalEntry>)>,
    yields: Vec<(NodeId, Ballot)>,
    now: Time,
    /// The largest message sent, through the real codec, and how many `Append`s were sent.
    largest: usize,
    appends: usize,
}

impl Cluster {
    fn new() -> Cluster {
        let members = ["b1", "b2", "c1"];
        Cluster {
            nodes: members
                .iter()
                .map(|m| (id(m), Replicas::new(id(m), CONFIG)))
                .collect(),
            electorate: Electorate::new(members.iter().map(|m| id(m))),
            down: Vec::new(),
            persisted: BTreeMap::new(),
            leads: Vec::new(),
            yields: Vec::new(),
            now: ms(0),
            largest: 0,
            appends: 0,
        }
    }

    fn node(&mut self, n: &str) -> &mut Replicas {
        self.nodes.get_mut(&id(n)).unwrap()
    }

    /// Delivers every queued message (and the answers they cause) until all are quiet.
    fn settle(&mut self) {
        loop {
            let mut mail = Vec::new();
            for (n, r) in self.nodes.iter_mut() {
                while let Some(a) = r.poll_action() {
                    match a {
                        ReplicaAction::Persist(rec) => {
                            self.persisted.insert(n.clone(), rec);
                        }
                        ReplicaAction::Send { to, msg } => {
                            self.largest = self.largest.max(wire_size(&msg));
                            self.appends += matches!(msg, RunMsg::Append { .. }) as usize;
                            mail.push((n.clone(), to, msg))
                        }
                        ReplicaAction::Lead { term, journal, .. } => {
                            self.leads.push((n.clone(), term, journal))
                        }
                        ReplicaAction::Yield { to, .. } => self.yields.push((n.clone(), to)),
                        // Only the lies a test injects (numbers out of bounds) are refused;
                        // an honest member's message never is.
                        ReplicaAction::Refused { from, reason, .. } => {
                            assert_eq!(
                                reason,
                                crate::core::trust::Refusal::NumberOutOfBounds,
                                "{n} refused {from}"
                            )
                        }
                    }
                }
            }
            if mail.is_empty() {
                return;
            }
            for (from, to, msg) in mail {
                if self.down.contains(&from) || self.down.contains(&to) {
                    continue;
                }
                let e = self.electorate.clone();
                self.nodes
                    .get_mut(&to)
                    .unwrap()
                    .handle(self.now, &from, msg, &e);
            }
        }
    }

    /// Advances the clock in 50 ms ticks, ticking every live node.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + Duration::from_millis(50);
            let now = self.now;
            for (n, r) in self.nodes.iter_mut() {
                if !self.down.contains(n) {
                    r.tick(now, |_| true);
                }
            }
            self.settle();
        }
    }

    fn start(&mut self, leader: &str, run: u64) {
        let e = self.electorate.clone();
        let now = self.now;
        self.node(leader).lead_new(
            now,
            site(),
            run,
            RunTrigger::Verdict,
            false,
            WallTime(now.0),
            e,
            vec![],
        );
        self.settle();
    }

    fn append(&mut self, leader: &str, e: JournalEntry) {
        let now = self.now;
        self.node(leader).appended(now, e);
        self.settle();
    }
}

#[test]
fn a_step_may_start_once_a_majority_holds_its_journal() {
    let mut c = Cluster::new();
    c.down.push(id("b2"));
    c.down.push(id("c1"));
    c.start("b1", 7);
    c.append("b1", entry(7, 0, JournalKind::Started));
    assert!(
        !c.node("b1").replicated(&site(), 7),
        "only the leader holds it"
    );
    c.down.clear();
    c.run_for(Duration::from_millis(300));
    assert!(c.node("b1").replicated(&site(), 7));
    assert_eq!(c.node("c1").record(&site(), 7).unwrap().journal.len(), 1);
    assert_eq!(c.persisted[&id("c1")].journal.len(), 1);
}

#[test]
fn a_live_leader_keeps_its_run_and_nobody_takes_over() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    c.append("b1", entry(7, 0, JournalKind::Started));
    c.run_for(Duration::from_secs(10));
    assert!(c.leads.is_empty(), "takeovers: {:?}", c.leads);
    assert!(c.node("b1").is_leader(&site(), 7));
}

#[test]
fn a_silent_leader_is_replaced_once_with_a_higher_term_and_the_journal_it_replicated() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    c.append("b1", entry(7, 0, JournalKind::Started));
    c.down.push(id("b1"));
    c.run_for(Duration::from_secs(5));
    assert_eq!(c.leads.len(), 1, "exactly one takeover: {:?}", c.leads);
    let (who, term, journal) = c.leads[0].clone();
    assert_ne!(who, id("b1"));
    assert_eq!(term, 8);
    assert_eq!(
        journal.len(),
        1,
        "the started step is known to the new leader"
    );
    assert!(c.node(who.as_str()).is_leader(&site(), 7));
}

#[test]
fn the_old_leader_yields_when_it_hears_the_new_one() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    c.down.push(id("b1"));
    c.run_for(Duration::from_secs(3));
    assert_eq!(c.leads.len(), 1);
    c.down.clear();
    c.run_for(Duration::from_secs(1));
    assert_eq!(c.yields.len(), 1, "{:?}", c.yields);
    assert_eq!(c.yields[0].0, id("b1"));
    assert!(!c.node("b1").is_leader(&site(), 7));
    // b1's own next entry is not acknowledged: it can never start another step.
    c.append("b1", entry(7, 1, JournalKind::Started));
    assert!(!c.node("b1").replicated(&site(), 7));
}

#[test]
fn an_entry_held_by_a_majority_survives_even_if_the_candidate_lacked_it() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    // Only b2 hears the second entry; with the leader that is a majority.
    c.down.push(id("c1"));
    c.append("b1", entry(7, 0, JournalKind::Started));
    assert!(c.node("b1").replicated(&site(), 7));
    // Now the leader dies and c1, which lacks the entry, comes back.
    c.down = vec![id("b1")];
    c.run_for(Duration::from_secs(5));
    assert_eq!(c.leads.len(), 1, "{:?}", c.leads);
    assert_eq!(
        c.leads[0].2.len(),
        1,
        "the entry b2 held is in the new journal"
    );
}

#[test]
fn a_prepare_is_refused_while_the_leader_is_heard() {
    // c1 goes deaf to b1 and campaigns; b2 heard b1 100 ms ago and refuses.
    let e = Cluster::new().electorate;
    let now = ms(0);
    let mut b2 = Replicas::new(id("b2"), CONFIG);
    b2.handle(
        now,
        &id("b1"),
        RunMsg::Append {
            record: record(7, "b1"),
            from: 0,
            len: 0,
        },
        &e,
    );
    while b2.poll_action().is_some() {}
    let prepare = RunMsg::Prepare {
        site: site(),
        run: 7,
        ballot: ballot(8, "c1"),
        trigger: RunTrigger::Verdict,
        start_at: WallTime(now.0),
        held_ballot: Ballot::zero(),
        held: 0,
    };
    b2.handle(now + Duration::from_millis(100), &id("c1"), prepare, &e);
    let answer = std::iter::from_fn(|| b2.poll_action()).find_map(|a| match a {
        ReplicaAction::Send {
            msg: RunMsg::Promise { ok, .. },
            ..
        } => Some(ok),
        _ => None,
    });
    assert_eq!(answer, Some(false));
}

#[test]
fn a_finished_run_is_not_taken_over() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    c.append(
        "b1",
        entry(
            7,
            0,
            JournalKind::RunFinished {
                outcome: RunOutcome::Succeeded {
                    continued: vec![],
                    post_failed: vec![],
                },
            },
        ),
    );
    c.run_for(Duration::from_millis(300));
    c.down.push(id("b1"));
    c.run_for(Duration::from_secs(5));
    assert!(c.leads.is_empty());
}

#[test]
fn a_run_that_needs_no_running_is_not_taken_over() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    c.down.push(id("b1"));
    for _ in 0..100 {
        c.now = c.now + Duration::from_millis(50);
        let now = c.now;
        for r in c.nodes.values_mut() {
            r.tick(now, |_| false);
        }
        c.settle();
    }
    assert!(c.leads.is_empty());
}

#[test]
fn competing_candidates_never_both_win_an_epoch() {
    // Five members, the leader silent, and every survivor campaigning at once.
    let members = ["v1", "v2", "v3", "v4", "v5"];
    let e = Electorate::new(members.iter().map(|m| id(m)));
    let mut nodes: BTreeMap<NodeId, Replicas> = members
        .iter()
        .map(|m| (id(m), Replicas::new(id(m), CONFIG)))
        .collect();
    let rec = record(3, "v1");
    for (n, r) in nodes.iter_mut() {
        if n != &id("v1") {
            r.load(ms(0), rec.clone(), e.clone());
        }
    }
    let now = ms(5000);
    for r in nodes.values_mut() {
        r.start_takeover_for_test(now, &(site(), 3));
    }
    let mut leads = Vec::new();
    // Deliver in a scrambled but fixed order.
    for _ in 0..20 {
        pump(&mut nodes, &e, now, Some(&id("v1")), &mut leads);
    }
    let mut terms: Vec<u64> = leads.iter().map(|(_, t)| *t).collect();
    terms.sort();
    terms.dedup();
    assert_eq!(
        terms.len(),
        leads.len(),
        "two winners of one term: {leads:?}"
    );
}

/// One round of mail: every queued message is delivered, the newest first (except to `cut`);
/// every `Lead` is noted with its term.
fn pump(
    nodes: &mut BTreeMap<NodeId, Replicas>,
    e: &Electorate,
    now: Time,
    cut: Option<&NodeId>,
    leads: &mut Vec<(NodeId, u64)>,
) {
    let mut mail = Vec::new();
    for (n, r) in nodes.iter_mut() {
        while let Some(a) = r.poll_action() {
            match a {
                ReplicaAction::Send { to, msg } => mail.push((n.clone(), to, msg)),
                ReplicaAction::Lead { term, .. } => leads.push((n.clone(), term)),
                _ => {}
            }
        }
    }
    mail.reverse();
    for (from, to, msg) in mail {
        if Some(&to) != cut {
            nodes.get_mut(&to).unwrap().handle(now, &from, msg, e);
        }
    }
}

impl Replicas {
    fn start_takeover_for_test(&mut self, now: Time, key: &(SiteId, u64)) {
        if self.runs.contains_key(key) {
            self.start_takeover(now, key);
        }
    }
}

#[test]
fn members_that_heard_the_leader_last_at_different_times_still_elect_one_leader_soon() {
    let mut c = Cluster::new();
    c.start("b1", 7);
    c.append("b1", entry(7, 0, JournalKind::Started));
    c.down.push(id("b1"));
    // The leader's last heartbeat reached c1 100 ms after the others: c1 refuses the first
    // campaign, which must not stall the takeover.
    c.run_for(Duration::from_millis(100));
    let e = c.electorate.clone();
    let now = c.now;
    c.node("c1").handle(
        now,
        &id("b1"),
        RunMsg::Heartbeat {
            site: site(),
            run: 7,
            ballot: ballot(7, "b1"),
            len: 1,
        },
        &e,
    );
    c.settle();
    c.run_for(Duration::from_secs(3));
    assert_eq!(c.leads.len(), 1, "{:?}", c.leads);
}

/// A seeded random world: members crash and restart (keeping only what they persisted),
/// messages are delayed, reordered and lost; whoever leads appends the next entry once a
/// majority holds its journal, as the driver starts the next step. Checked throughout:
/// no term is won twice, an entry once held by a majority is never lost or changed, and after
/// the faults stop the run completes.
#[test]
fn random_crashes_and_losses_never_lose_a_majority_held_entry() {
    random_worlds(150, 12, false);
}

/// The same worlds with a journal of noisy entries several times larger than one message:
/// it replicates, and is taken over, in batches, every message under the wire limit.
#[test]
fn random_crashes_and_losses_with_a_journal_larger_than_a_message_never_lose_an_entry() {
    random_worlds(30, 160, true);
}

/// Runs `seeds` worlds (QUORATE_REPLICA_SEEDS=N runs more) until the leader's journal has
/// `target` entries, failed noisy attempts when `noisy`.
fn random_worlds(seeds: u64, target: usize, noisy_entries: bool) {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    #[allow(non_snake_case)]
    let TARGET = target;
    let seeds: u64 = std::env::var("QUORATE_REPLICA_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seeds);
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = if seed % 2 == 0 { 3 } else { 5 };
        let ids: Vec<NodeId> = (0..n).map(|i| id(&format!("v{i}"))).collect();
        let e = Electorate::new(ids.clone());
        let mut nodes: BTreeMap<NodeId, Option<Replicas>> = ids
            .iter()
            .map(|i| (i.clone(), Some(Replicas::new(i.clone(), CONFIG))))
            .collect();
        let mut disk: BTreeMap<NodeId, RunRecord> = BTreeMap::new();
        let mut net: Vec<(Time, NodeId, NodeId, RunMsg)> = Vec::new();
        let mut winners: BTreeMap<u64, NodeId> = BTreeMap::new();
        let mut committed: Vec<JournalEntry> = Vec::new();
        let mut now = ms(0);
        nodes.get_mut(&ids[0]).unwrap().as_mut().unwrap().lead_new(
            now,
            site(),
            7,
            RunTrigger::Verdict,
            false,
            WallTime(now.0),
            e.clone(),
            vec![],
        );
        winners.insert(7, ids[0].clone());
        let faulty_until = ms(8_000);
        let end = ms(30_000);
        let mut done_at = None;
        while now < end && done_at.is_none() {
            // The actions of the last step (the run's start in the first one, carried out in
            // the driver turn that started it): persist first, then mail.
            let faulty = now < faulty_until;
            for i in &ids {
                let Some(r) = nodes.get_mut(i).unwrap().as_mut() else {
                    continue;
                };
                while let Some(a) = r.poll_action() {
                    match a {
                        ReplicaAction::Persist(rec) => {
                            disk.insert(i.clone(), rec);
                        }
                        ReplicaAction::Send { to, msg } => {
                            if noisy_entries {
                                wire_size(&msg);
                            }
                            if faulty && rng.random_bool(0.1) {
                                continue;
                            }
                            let delay = Duration::from_millis(rng.random_range(1..40));
                            net.push((now + delay, i.clone(), to, msg));
                        }
                        ReplicaAction::Refused { from, reason, .. } => {
                            panic!("seed {seed}: {i} refused {from}: {reason:?}")
                        }
                        ReplicaAction::Lead { term, journal, .. } => {
                            if let Some(other) = winners.insert(term, i.clone()) {
                                panic!("seed {seed}: term {term} won by {other} and {i}");
                            }
                            for (k, c) in committed.iter().enumerate() {
                                assert_eq!(
                                    journal.get(k),
                                    Some(c),
                                    "seed {seed}: the winner of term {term} lacks majority-held entry {k}"
                                );
                            }
                        }
                        ReplicaAction::Yield { .. } => {}
                    }
                }
            }
            now = now + Duration::from_millis(10);
            let faulty = now < faulty_until;
            // Crashes and restarts.
            for i in &ids {
                let alive = nodes[i].is_some();
                if faulty && alive && rng.random_bool(0.003) {
                    nodes.insert(i.clone(), None);
                } else if !alive && (!faulty || rng.random_bool(0.02)) {
                    let mut r = Replicas::new(i.clone(), CONFIG);
                    if let Some(rec) = disk.get(i) {
                        r.load(now, rec.clone(), e.clone());
                    }
                    nodes.insert(i.clone(), Some(r));
                }
            }
            // Deliveries due.
            let (due, later): (Vec<_>, Vec<_>) = net.drain(..).partition(|(t, ..)| *t <= now);
            net = later;
            for (_, from, to, msg) in due {
                if let Some(r) = nodes.get_mut(&to).unwrap().as_mut() {
                    r.handle(now, &from, msg, &e);
                }
            }
            // Ticks, and the leader's next entry once its journal is majority-held.
            for i in &ids {
                let Some(r) = nodes.get_mut(i).unwrap().as_mut() else {
                    continue;
                };
                r.tick(now, |_| true);
                if r.is_leader(&site(), 7) && r.replicated(&site(), 7) {
                    let rec = r.record(&site(), 7).unwrap().clone();
                    for (k, entry) in rec.journal.iter().enumerate() {
                        match committed.get(k) {
                            Some(c) => assert_eq!(c, entry, "seed {seed}: entry {k} changed"),
                            None => committed.push(entry.clone()),
                        }
                    }
                    if rec.journal.len() >= TARGET {
                        if !faulty {
                            done_at = Some(now);
                        }
                    } else {
                        let mut next = if noisy_entries {
                            noisy(7, rec.journal.len() as u32)
                        } else {
                            entry(7, rec.journal.len(), JournalKind::Started)
                        };
                        next.term = rec.term();
                        next.at = WallTime(now.0);
                        r.appended(now, next);
                    }
                }
            }
        }
        assert!(
            done_at.is_some(),
            "seed {seed}: the run did not complete within 22 s of the faults ending ({} of {TARGET} entries held by a majority)",
            committed.len()
        );
    }
}

/// A failed attempt's entry as the pipeline makes it: output capped where the entry is made.
fn noisy(run: u64, attempt: u32) -> JournalEntry {
    let output: String = (0..4096).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    JournalEntry {
        attempt,
        kind: JournalKind::Finished {
            ok: false,
            detail: crate::core::pipeline::cap_detail(output),
        },
        ..entry(run, 0, JournalKind::Started)
    }
}

fn wire_size(msg: &RunMsg) -> usize {
    crate::wire::encode_message(&crate::wire::Message::Run(msg.clone()))
        .expect("every run message fits the wire limit")
        .len()
}

#[path = "replica_bounded_tests.rs"]
mod bounded;

/// b2 and c1 learned a DOWN verdict of epoch 7 led by b1 and expect its run.
fn expect_from_b1(c: &mut Cluster) {
    let e = c.electorate.clone();
    let now = c.now;
    let mut expect = |m: &str| {
        let verdict = (RunTrigger::Verdict, false);
        c.node(m)
            .expect(now, site(), 7, id("b1"), verdict, WallTime(0), e.clone())
    };
    for m in ["b2", "c1"] {
        assert!(expect(m));
    }
    // The leader itself expects nothing of its own verdict, and nothing twice.
    assert!(!expect("b1"));
    assert!(!expect("b2"));
}

#[test]
fn an_expected_run_whose_leader_never_registers_is_taken_over_once_above_its_first_ballot() {
    let mut c = Cluster::new();
    c.down.push(id("b1"));
    expect_from_b1(&mut c);
    c.settle();
    // Nothing happened yet: not on disk, not shown.
    assert!(c.persisted.is_empty(), "{:?}", c.persisted);
    assert!(c.node("b2").record(&site(), 7).is_none());
    assert_eq!(c.node("b2").records().count(), 0);
    assert!(c.node("b2").is_expected(&site(), 7));
    assert_eq!(c.node("b2").expected().count(), 1);
    c.run_for(Duration::from_millis(900));
    assert!(c.leads.is_empty(), "no takeover within the lease");
    c.run_for(Duration::from_secs(4));
    assert_eq!(c.leads.len(), 1, "exactly one takeover: {:?}", c.leads);
    let (who, term, journal) = c.leads[0].clone();
    assert_ne!(who, id("b1"));
    assert_eq!(term, 8, "one above the verdict leader's first ballot");
    assert!(journal.is_empty());
    // Taken over, the run is a durable copy at both members.
    for m in ["b2", "c1"] {
        assert!(!c.node(m).is_expected(&site(), 7));
        assert_eq!(c.node(m).record(&site(), 7).unwrap().term(), 8);
        assert_eq!(c.persisted[&id(m)].promised.epoch, 8);
    }
    // The first leader comes back and sends its register late, at the lower term: refused,
    // it yields and can never get a step acknowledged.
    c.down.clear();
    c.start("b1", 7);
    c.run_for(Duration::from_millis(500));
    assert!(c.yields.iter().any(|(n, b)| *n == id("b1") && b.epoch == 8));
    assert!(!c.node("b1").is_leader(&site(), 7));
    c.append("b1", entry(7, 0, JournalKind::Started));
    assert!(!c.node("b1").replicated(&site(), 7));
    assert_eq!(c.leads.len(), 1);
}

#[test]
fn the_leaders_register_fills_an_expected_run_and_nobody_takes_over() {
    let mut c = Cluster::new();
    expect_from_b1(&mut c);
    // The register comes late, but within the lease.
    c.run_for(Duration::from_millis(600));
    assert!(c.persisted.is_empty());
    c.start("b1", 7);
    for m in ["b2", "c1"] {
        assert!(!c.node(m).is_expected(&site(), 7));
        let r = c.node(m).record(&site(), 7).expect("a copy now");
        assert_eq!(r.journal_ballot, ballot(7, "b1"));
        assert_eq!(c.persisted[&id(m)].run, 7);
    }
    c.append("b1", entry(7, 0, JournalKind::Started));
    assert!(c.node("b1").replicated(&site(), 7));
    c.run_for(Duration::from_secs(10));
    assert!(c.leads.is_empty(), "takeovers: {:?}", c.leads);
    assert!(c.node("b1").is_leader(&site(), 7));
}

#[test]
fn a_forgotten_expected_run_leaves_nothing_behind() {
    let mut c = Cluster::new();
    c.down.push(id("b1"));
    expect_from_b1(&mut c);
    c.node("b2").forget_expected(|_| false);
    c.node("c1").forget_expected(|_| false);
    c.run_for(Duration::from_secs(5));
    assert!(c.leads.is_empty());
    assert!(c.persisted.is_empty());
    assert!(!c.node("b2").is_expected(&site(), 7));
}

/// The fast round's named leader still sees the site up: it is alive but registers nothing.
/// The others take the run over (it answers their takeover like any member), and when it
/// leads at last (its own Pinger sees the site DOWN), the run is already someone else's.
#[test]
fn a_named_leader_that_leads_after_the_takeover_starts_no_second_run() {
    let mut c = Cluster::new();
    expect_from_b1(&mut c);
    c.run_for(Duration::from_secs(3));
    assert_eq!(c.leads.len(), 1, "{:?}", c.leads);
    let (who, term, _) = c.leads[0].clone();
    assert_eq!(term, 8);
    // b1 promised the takeover: it holds the run, at the higher term.
    assert_eq!(c.node("b1").record(&site(), 7).unwrap().term(), 8);
    c.start("b1", 7);
    c.run_for(Duration::from_secs(1));
    assert!(!c.node("b1").is_leader(&site(), 7));
    assert!(c.node(who.as_str()).is_leader(&site(), 7));
    assert_eq!(c.leads.len(), 1);
}

/// Every member, the silent leader back from a restart among them, campaigns at the same
/// moment for the same term, and keeps doing so as its timers say: one of them leads soon.
#[test]
fn candidates_that_campaign_together_elect_one_leader_soon() {
    let members = ["b1", "b2", "c1", "c2"];
    let e = Electorate::new(members.iter().map(|m| id(m)));
    let mut nodes: BTreeMap<NodeId, Replicas> = members
        .iter()
        .map(|m| (id(m), Replicas::new(id(m), CONFIG)))
        .collect();
    let rec = record(3, "c2");
    for r in nodes.values_mut() {
        r.load(ms(0), rec.clone(), e.clone());
    }
    let mut now = ms(5000);
    for r in nodes.values_mut() {
        r.start_takeover_for_test(now, &(site(), 3));
    }
    let mut leads = Vec::new();
    let end = now + Duration::from_secs(20);
    while now < end && leads.is_empty() {
        // Every message of a round arrives in the same fixed order, 10 ms later.
        for _ in 0..10 {
            pump(&mut nodes, &e, now, None, &mut leads);
        }
        now = now + Duration::from_millis(10);
        for r in nodes.values_mut() {
            r.tick(now, |_| true);
        }
    }
    assert_eq!(leads.len(), 1, "no leader within 20 s, or two: {leads:?}");
}
