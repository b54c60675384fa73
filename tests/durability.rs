//! What a voter promised survives `kill -9`: c1 runs as a real `quorate run` process next to
//! an in-process fleet, is killed right after a verdict, and its SQLite store still holds a
//! promise at least as high as the verdict's epoch; restarted, it shows the same verdict and
//! its promise never goes down. A voter whose store holds a promise refuses lower ballots.

mod common;

use common::*;
use quorate::core::quorum::Electorate;
use quorate::core::types::{Ballot, Durable, NodeId, Opinion, Outcome, SiteId, Time, Value};
use quorate::core::voter::{OpinionSource, Voter, VoterAction, VoterConfig};
use quorate::localfleet::LocalFleet;
use quorate::store::{SqliteStore, Storage, StoreError};
use quorate::wire::{OpinionReport, VoteMsg};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The durable voter state of site a in the store at `dir` (the node must not be running).
fn durable_a(dir: &Path) -> Durable {
    let store = SqliteStore::open(dir).expect("the store opens after kill -9");
    let mut all = store.load_durable().expect("durable state loads");
    all.remove(&site("a")).expect("c1 has voted on a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_killed_after_accepting_never_goes_below_its_epoch() {
    init_tracing();
    let mut f = LocalFleet::prepare(&fleet_text(241), None, true).expect("the fleet is prepared");
    start_all_but(&mut f, &["c1"]).await;
    let mut c1 = spawn_node(&f, "c1", &[]);
    let rest = Rest::new();
    wait_opinion(&rest, &apis(&f, &A_VOTERS), "a", "up").await;
    // With b2 stopped, every majority of a's electorate (3 of b1, b2, c1, c2) holds c1: no
    // verdict of a can be reached, fast or classic, without c1's durable acceptance.
    f.stop_node(&n("b2")).await;
    let voters = apis(&f, &["b1", "c1", "c2"]);

    f.stop_site(&site("a")).await;
    let down = wait_verdict(&rest, &voters, "a", "down").await;
    // c1's Accept reply may still be on its way when it learns the commit; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c1_api = api(&f, "c1");
    let decided_at = rest.site(c1_api, "a").await["decided_at"].clone();
    assert!(decided_at.is_string(), "{decided_at}");
    c1.kill();
    let c1_data = f.data_dir(&n("c1"));
    let d = durable_a(&c1_data);
    assert!(
        d.promised.epoch >= down.epoch,
        "c1 promised {:?} after the verdict at epoch {}",
        d.promised,
        down.epoch
    );
    {
        let store = SqliteStore::open(&c1_data).expect("store");
        let latest = store.latest_verdicts().expect("verdicts");
        assert_eq!(latest.len(), 1, "{latest:?}");
        assert_eq!(latest[0].verdict.epoch(), down.epoch);
        assert_eq!(latest[0].verdict.value.outcome, Outcome::Down);
    }

    // Restarted, c1 shows the verdict it had, at the same epoch, learned when it was (from
    // its own store, not from its peers again).
    let mut c1 = spawn_node(&f, "c1", &[]);
    let shown = wait_verdict(&rest, &[("c1", c1_api)], "a", "down").await;
    assert_eq!(shown, down);
    assert_eq!(rest.site(c1_api, "a").await["decided_at"], decided_at);

    // a comes back: the UP verdict needs c1's vote at a higher epoch; killed again, c1's
    // promise is at least that high.
    for id in ["a1", "a2", "a3"] {
        f.start_node(&n(id)).await.expect("a's node restarts");
    }
    let up = wait_verdict(&rest, &voters, "a", "up").await;
    assert!(up.epoch > down.epoch);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c1.kill();
    let d2 = durable_a(&c1_data);
    assert!(
        d2.promised >= d.promised && d2.promised.epoch >= up.epoch,
        "c1's promise went from {:?} to {:?} (UP verdict at epoch {})",
        d.promised,
        d2.promised,
        up.epoch
    );
    f.shutdown().await;
}

/// A fixed opinion of every site.
struct Fixed(Opinion);

impl OpinionSource for Fixed {
    fn report(&self, _site: &SiteId, _now: Time) -> OpinionReport {
        let mut r = OpinionReport::unknown();
        r.opinion = self.0;
        r.evidence_age_ms = 10;
        r
    }
}

fn ballot(epoch: u64, proposer: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: NodeId::from(proposer),
    }
}

/// The replies the voter sent, as (ok, promised epoch), and whether it persisted anything.
fn replies(v: &mut Voter) -> (Vec<(bool, u64)>, bool) {
    let (mut out, mut persisted) = (Vec::new(), false);
    while let Some(a) = v.poll_action() {
        match a {
            VoterAction::Send {
                msg: VoteMsg::Promise { ok, promised, .. },
                ..
            }
            | VoterAction::Send {
                msg: VoteMsg::AcceptReply { ok, promised, .. },
                ..
            } => out.push((ok, promised.epoch)),
            VoterAction::Persist { .. } => persisted = true,
            _ => {}
        }
    }
    (out, persisted)
}

#[test]
fn a_voter_whose_store_holds_epoch_7_refuses_lower_ballots() {
    let dir = tempfile::tempdir().expect("a temp dir");
    {
        let mut store = SqliteStore::open(dir.path()).expect("store");
        let d = Durable {
            promised: ballot(7, "b2"),
            accepted: None,
        };
        store.save_durable(&site("a"), &d).expect("saved");
    }
    // As after a crash: a fresh process opens the store and loads the voter's state.
    let mut store = SqliteStore::open(dir.path()).expect("store reopens");
    let durable: BTreeMap<SiteId, Durable> = store.load_durable().expect("loads");
    assert_eq!(durable[&site("a")].promised, ballot(7, "b2"));
    let electorate = Electorate::new(A_VOTERS.iter().map(|v| n(v)));
    let cfg = VoterConfig {
        vote_timeout: Duration::from_millis(100),
        max_vote_rounds: 3,
        evidence_max_age: Duration::from_millis(120),
        revote_after: Duration::from_millis(600),
        retry_after: Duration::from_millis(20),
        hold_down: Duration::from_secs(300),
        fast_round: true,
    };
    let mut v = Voter::new(
        cfg,
        n("c1"),
        vec![(site("a"), electorate)],
        durable,
        vec![],
        1,
    );
    // An UP opinion, so that this voter never starts a round of its own here.
    let ops = Fixed(Opinion::Up);
    let t = Time::from_micros(1_000);

    let prepare = |b: Ballot| VoteMsg::Prepare {
        site: site("a"),
        slot: 0,
        ballot: b,
        round: 1,
        wait_ms: 0,
        last: None,
    };
    let accept = |b: Ballot| VoteMsg::Accept {
        site: site("a"),
        slot: 0,
        value: Value {
            outcome: Outcome::Down,
            epoch: b.epoch,
            leader: b.proposer.clone(),
        },
        ballot: b,
    };
    v.handle_message(t, &n("b2"), prepare(ballot(5, "b2")), &ops);
    assert_eq!(replies(&mut v).0, vec![(false, 7)], "Prepare at epoch 5");
    v.handle_message(t, &n("b2"), accept(ballot(6, "b2")), &ops);
    assert_eq!(replies(&mut v).0, vec![(false, 7)], "Accept at epoch 6");
    // Same epoch, lower proposer id: still a lower ballot.
    v.handle_message(t, &n("b1"), prepare(ballot(7, "b1")), &ops);
    assert_eq!(replies(&mut v).0, vec![(false, 7)], "Prepare at (7, b1)");
    v.handle_message(t, &n("b2"), prepare(ballot(7, "b2")), &ops);
    let (r, persisted) = replies(&mut v);
    assert_eq!(r, vec![(true, 7)], "the promised ballot itself is answered");
    assert!(!persisted);
    assert_eq!(v.durable(&site("a")).expect("a").promised, ballot(7, "b2"));

    // A higher ballot is promised, and made durable first.
    v.handle_message(t, &n("c2"), prepare(ballot(8, "c2")), &ops);
    let (r, persisted) = replies(&mut v);
    assert_eq!(r, vec![(true, 8)]);
    assert!(persisted, "the new promise is persisted before the reply");
    let d = v.durable(&site("a")).expect("a").clone();
    store.save_durable(&site("a"), &d).expect("saved");

    // The store itself refuses to go back, whatever a caller asks.
    let lower = Durable {
        promised: ballot(7, "b2"),
        accepted: None,
    };
    let err = store.save_durable(&site("a"), &lower).unwrap_err();
    assert!(matches!(err, StoreError::EpochRegression { .. }), "{err:?}");
    drop(store);
    let reopened = SqliteStore::open(dir.path()).expect("store");
    assert_eq!(
        reopened.load_durable().expect("loads")[&site("a")].promised,
        ballot(8, "c2")
    );
}
