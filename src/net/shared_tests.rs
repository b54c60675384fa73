//! Which connection a pair keeps when both ends dialed (`keeps_existing`).

use super::keeps_existing;
use crate::core::types::NodeId;

/// Which connection each end keeps when both exist: (dialed by a, dialed by b).
fn kept_by(me: &str, peer: &str, existing_by_me: bool, new_by_me: bool) -> &'static str {
    let (me, peer) = (NodeId::from(me), NodeId::from(peer));
    let keep_existing = keeps_existing(&me, &peer, existing_by_me, new_by_me);
    let by_me = if keep_existing {
        existing_by_me
    } else {
        new_by_me
    };
    match (by_me, me < peer) {
        (true, true) | (false, false) => "dialed by the lower",
        _ => "dialed by the higher",
    }
}

#[test]
fn both_ends_keep_the_connection_dialed_by_the_lower_id_whatever_came_first() {
    // a < b. Both dialed; each end saw them in either order.
    for a_saw_own_first in [true, false] {
        for b_saw_own_first in [true, false] {
            let at_a = if a_saw_own_first {
                kept_by("a", "b", true, false)
            } else {
                kept_by("a", "b", false, true)
            };
            let at_b = if b_saw_own_first {
                kept_by("b", "a", true, false)
            } else {
                kept_by("b", "a", false, true)
            };
            assert_eq!(at_a, "dialed by the lower");
            assert_eq!(at_b, "dialed by the lower");
        }
    }
}

#[test]
fn a_newer_connection_replaces_an_older_one_unless_the_higher_id_dialed_it_over_the_lower() {
    let (a, b) = (NodeId::from("a"), NodeId::from("b"));
    // The lower id dials again (it restarted, or its connection died): replaced at b.
    assert!(!keeps_existing(&b, &a, false, false));
    // The higher id dials again over its own older connection: replaced at a.
    assert!(!keeps_existing(&a, &b, false, false));
    // The higher id dials while the lower still holds the one it dialed: kept at both
    // ends (the lower one checks that connection, which a restarted b resets).
    assert!(keeps_existing(&a, &b, true, false));
    assert!(keeps_existing(&b, &a, false, true));
    // The lower id's dial replaces one the higher dialed.
    assert!(!keeps_existing(&a, &b, false, true));
    assert!(!keeps_existing(&b, &a, true, false));
}
