use super::*;

const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

fn n(s: &str) -> NodeId {
    NodeId::from(s)
}

fn a() -> SiteId {
    SiteId::from("a")
}

/// Site a is judged by b1 and c1; a1 is an Indicator inside a.
fn electorate() -> Electorate {
    Electorate::new([n("b1"), n("c1")])
}

fn window(until: i64, set_at: i64) -> MaintenanceWindow {
    MaintenanceWindow {
        site: a(),
        until_unix_ms: until,
        set_at_unix_ms: set_at,
    }
}

#[test]
fn a_window_from_an_electorate_member_is_learned_once_stored() {
    let mut m = Maintenance::new(n("c1"));
    let w = window(NOW + HOUR, NOW);
    let got = m.learn(NOW, &n("b1"), w.clone(), &electorate());
    assert_eq!(
        got,
        Ok(Learned::Set {
            until_unix_ms: NOW + HOUR
        })
    );
    assert_eq!(
        m.active(&a(), NOW),
        None,
        "not in effect before it is stored"
    );
    m.stored(w);
    assert_eq!(m.active(&a(), NOW), Some(NOW + HOUR));
    assert_eq!(m.active(&a(), NOW + HOUR), None, "over at its end");
}

#[test]
fn a_window_from_an_indicator_inside_the_site_is_refused() {
    let mut m = Maintenance::new(n("c1"));
    let got = m.learn(NOW, &n("a1"), window(NOW + HOUR, NOW), &electorate());
    assert_eq!(got, Err(Refusal::NotOperatorNode));
    assert_eq!(m.active(&a(), NOW), None);
}

#[test]
fn a_window_stamped_at_the_end_of_time_is_refused_and_later_calls_still_win() {
    let mut m = Maintenance::new(n("c1"));
    let got = m.learn(NOW, &n("b1"), window(NOW + HOUR, i64::MAX), &electorate());
    assert_eq!(got, Err(Refusal::FromTheFuture));
    let within_skew = window(NOW + HOUR, NOW + MAX_SKEW_MS);
    assert!(m
        .learn(NOW, &n("b1"), within_skew.clone(), &electorate())
        .is_ok());
    m.stored(within_skew);
    let end = m.end_by_operator(NOW, &a(), &electorate()).expect("ends");
    assert_eq!(
        end.set_at_unix_ms,
        NOW + MAX_SKEW_MS + 1,
        "after the newest call"
    );
    m.stored(end);
    assert_eq!(m.active(&a(), NOW), None);
}

#[test]
fn a_window_beyond_the_horizon_is_refused_not_clamped() {
    let mut m = Maintenance::new(n("c1"));
    let far = window(253_402_300_800_000, NOW);
    assert_eq!(
        m.learn(NOW, &n("b1"), far, &electorate()),
        Err(Refusal::FromTheFuture)
    );
    let edge = window(NOW + MAX_HORIZON_MS, NOW);
    assert!(m.learn(NOW, &n("b1"), edge, &electorate()).is_ok());
}

#[test]
fn an_older_or_equal_call_is_stale_even_from_a_stranger() {
    let mut m = Maintenance::new(n("c1"));
    m.stored(window(NOW + HOUR, NOW));
    // Relays of a known call are no news, not a refusal.
    assert_eq!(
        m.learn(NOW, &n("a1"), window(NOW + HOUR, NOW), &electorate()),
        Ok(Learned::Stale)
    );
    assert_eq!(
        m.learn(NOW, &n("b1"), window(0, NOW - 1), &electorate()),
        Ok(Learned::Stale)
    );
    assert_eq!(
        m.learn(NOW, &n("b1"), window(0, NOW + 1), &electorate()),
        Ok(Learned::Ended)
    );
}

#[test]
fn the_operator_call_is_accepted_only_by_a_member_of_the_sites_electorate() {
    let mut inside = Maintenance::new(n("a1"));
    assert!(matches!(
        inside.set_by_operator(NOW, &a(), NOW + HOUR, &electorate()),
        Err(MaintenanceError::NotOperatorNode { .. })
    ));
    let mut m = Maintenance::new(n("b1"));
    let w = m
        .set_by_operator(NOW, &a(), NOW + HOUR, &electorate())
        .expect("a member accepts it");
    assert_eq!(w.set_at_unix_ms, NOW);
    assert_eq!(
        m.set_by_operator(NOW, &a(), NOW - 1, &electorate()),
        Err(MaintenanceError::InThePast)
    );
    assert_eq!(
        m.set_by_operator(NOW, &a(), NOW + MAX_HORIZON_MS + 1, &electorate()),
        Err(MaintenanceError::TooLong)
    );
}

#[test]
fn an_operator_call_after_a_stamp_of_i64_max_fails_instead_of_overflowing() {
    let mut m = Maintenance::new(n("b1"));
    // Only reachable through a store written before the bounds: `load` drops it, so force it.
    m.windows.insert(a(), window(NOW + HOUR, i64::MAX));
    assert_eq!(
        m.set_by_operator(NOW, &a(), NOW + HOUR, &electorate()),
        Err(MaintenanceError::NoLaterStamp { site: a() })
    );
}

#[test]
fn windows_read_back_from_disk_out_of_bounds_are_dropped() {
    let mut m = Maintenance::new(n("b1"));
    let planted = window(i64::MAX, i64::MAX);
    let good = MaintenanceWindow {
        site: SiteId::from("b"),
        until_unix_ms: NOW + HOUR,
        set_at_unix_ms: NOW - HOUR,
    };
    let dropped = m.load(NOW, [planted.clone(), good.clone()]);
    assert_eq!(dropped, vec![planted]);
    assert_eq!(m.active(&a(), NOW), None);
    assert_eq!(m.active(&SiteId::from("b"), NOW), Some(NOW + HOUR));
    assert_eq!(m.windows().count(), 1);
}
