//! A node applies its store's retention when it starts: verdicts older than the retention
//! go, except the newest of each site, and its store still opens and boots afterwards.

mod common;

use common::*;
use quorate::core::types::{Outcome, Value, Verdict};
use quorate::localfleet::LocalFleet;
use quorate::store::{SqliteStore, Storage};
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_prunes_old_verdicts_when_it_starts_and_keeps_the_newest() {
    init_tracing();
    let mut f = LocalFleet::prepare(&fleet_text(196), None, false).expect("the fleet prepares");
    let a1 = n("a1");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day_ms = 24 * 3600 * 1000;
    {
        let mut store = SqliteStore::open(&f.data_dir(&a1)).unwrap();
        // 30 verdicts of site b learned 400 days ago: past the default 90 days, and more
        // than the default 20 kept per site.
        for slot in 0..30u64 {
            let v = Verdict {
                site: site("b"),
                slot,
                value: Value {
                    outcome: if slot % 2 == 0 {
                        Outcome::Down
                    } else {
                        Outcome::Up
                    },
                    epoch: slot + 1,
                    leader: n("c1"),
                },
            };
            store
                .record_verdict(&v, now_ms - 400 * day_ms + slot as i64)
                .unwrap();
        }
    }
    f.start_node(&a1).await.expect("a1 starts");
    f.stop_node(&a1).await;

    let store = SqliteStore::open(&f.data_dir(&a1)).unwrap();
    let left: Vec<u64> = store
        .verdicts(Some(&site("b")), 100)
        .unwrap()
        .iter()
        .map(|v| v.verdict.slot)
        .collect();
    assert_eq!(
        left,
        (10..30).rev().collect::<Vec<_>>(),
        "the newest 20 stay"
    );
    let latest = store.latest_verdicts().unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].verdict.slot, 29);
    drop(store);
    f.shutdown().await;
}
