//! The operator lock behaviour every [`Storage`] must have: a site's acceptor state reads back
//! across a reopen, its promise never drops, and a decided generation is never forgotten or
//! changed.

use super::{Harness, MemoryHarness, SqliteHarness};
use crate::core::oplock::{Decided, LockAccepted, LockState, LockValue};
use crate::core::replica::RunTrigger;
use crate::core::types::{Ballot, NodeId, SiteId};
use crate::store::{Storage, StoreError};
use std::collections::BTreeMap;

conformance!(
    a_lock_state_reads_back_per_site_across_reopen,
    a_lock_promise_is_never_lowered,
    a_decided_generation_is_never_forgotten_or_changed,
);

fn ballot(epoch: u64, node: &str) -> Ballot {
    Ballot {
        epoch,
        proposer: NodeId::from(node),
    }
}

fn value(run: u64, leader: &str) -> LockValue {
    LockValue {
        run,
        leader: NodeId::from(leader.to_string()),
        trigger: RunTrigger::Manual,
        forced: false,
        alarms: Vec::new(),
    }
}

fn state(promised: Ballot, accepted: Option<(u64, Ballot)>, decided: Option<u64>) -> LockState {
    LockState {
        accepted: accepted.map(|(gen, b)| LockAccepted {
            gen,
            value: value(b.epoch, b.proposer.as_str()),
            ballot: b,
        }),
        decided: decided.map(|gen| Decided {
            gen,
            value: value(gen + 6, "b2"),
        }),
        promised,
    }
}

fn a_lock_state_reads_back_per_site_across_reopen(mut h: impl Harness) {
    let mut store = h.open();
    assert!(store.load_locks().unwrap().is_empty());
    let a = state(ballot(9, "b1"), Some((2, ballot(9, "b1"))), Some(1));
    let b = state(ballot(3, "c1"), None, None);
    store.save_lock(&SiteId("a".into()), &a).unwrap();
    store.save_lock(&SiteId("b".into()), &b).unwrap();
    drop(store);
    let store = h.open();
    assert_eq!(
        store.load_locks().unwrap(),
        BTreeMap::from([(SiteId("a".into()), a), (SiteId("b".into()), b)])
    );
}

fn a_lock_promise_is_never_lowered(mut h: impl Harness) {
    let mut store = h.open();
    let site = SiteId("a".into());
    let high = state(ballot(9, "c1"), None, None);
    store.save_lock(&site, &high).unwrap();
    let err = store
        .save_lock(&site, &state(ballot(8, "b1"), None, None))
        .unwrap_err();
    assert!(matches!(err, StoreError::EpochRegression { .. }), "{err:?}");
    // An equal promise may carry a new acceptance.
    let accepted = state(ballot(9, "c1"), Some((1, ballot(9, "c1"))), None);
    store.save_lock(&site, &accepted).unwrap();
    assert_eq!(store.load_locks().unwrap()[&site], accepted);
}

fn a_decided_generation_is_never_forgotten_or_changed(mut h: impl Harness) {
    let mut store = h.open();
    let site = SiteId("a".into());
    let decided = state(ballot(9, "c1"), None, Some(2));
    store.save_lock(&site, &decided).unwrap();
    for bad in [
        state(ballot(10, "c1"), None, None),
        state(ballot(10, "c1"), None, Some(1)),
        LockState {
            decided: Some(Decided {
                gen: 2,
                value: value(99, "c2"),
            }),
            ..decided.clone()
        },
    ] {
        let err = store.save_lock(&site, &bad).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{bad:?}: {err:?}");
    }
    assert_eq!(store.load_locks().unwrap()[&site], decided);
    let next = state(ballot(11, "b1"), None, Some(3));
    store.save_lock(&site, &next).unwrap();
    assert_eq!(store.load_locks().unwrap()[&site], next);
}
