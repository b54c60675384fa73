use super::*;

fn n(s: &str) -> NodeId {
    NodeId::from(s)
}

fn site() -> SiteId {
    SiteId("b".to_string())
}

fn electorate() -> Electorate {
    Electorate::new(["a1", "a2", "c1"].map(n))
}

fn config() -> NotifyConfig {
    NotifyConfig {
        lease: Duration::from_millis(600),
        stagger: Duration::from_millis(150),
    }
}

fn target() -> Target {
    Target {
        name: "pager".to_string(),
        on: vec![EventKind::VerdictChanged],
        sites: None,
        retries: 2,
        backoff: Duration::from_millis(100),
    }
}

fn down_verdict() -> Event {
    Event {
        kind: EventKind::VerdictChanged,
        site: site(),
        epoch: 4,
        detail: "down".to_string(),
        idempotency_key: verdict_key(&site(), 4, "down"),
        at_unix_ms: 1,
    }
}

fn t(ms: u64) -> Time {
    Time::from_micros(ms * 1000)
}

fn drain(n: &mut Notifications) -> Vec<NotifyAction> {
    std::iter::from_fn(|| n.poll_action()).collect()
}

fn call(attempt: u32) -> NotifyAction {
    NotifyAction::Call {
        notifier: "pager".to_string(),
        event: down_verdict(),
        attempt,
    }
}

#[test]
fn the_leader_calls_at_once_and_tells_the_other_voters_when_it_succeeded() {
    let mut me = Notifications::new(n("a1"), config());
    me.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    assert_eq!(drain(&mut me), vec![call(1)]);
    me.call_done(t(5), "verdict/b/4/down", "pager", true);
    assert_eq!(
        drain(&mut me),
        vec![NotifyAction::Sent {
            site: site(),
            key: "verdict/b/4/down".to_string(),
            notifier: "pager".to_string(),
            to: vec![n("a2"), n("c1")],
        }]
    );
    assert_eq!(me.pending(), 0);
    assert_eq!(me.counts().sent, 1);
}

#[test]
fn a_follower_takes_over_after_the_lease_and_its_rank() {
    let mut a2 = Notifications::new(n("a2"), config());
    let mut c1 = Notifications::new(n("c1"), config());
    for f in [&mut a2, &mut c1] {
        f.event(
            t(0),
            down_verdict(),
            &n("a1"),
            Some(&electorate()),
            &[target()],
        );
        assert!(drain(f).is_empty(), "a follower waits for the leader");
    }
    // a2 is first of the followers (rank 0), c1 one stagger later.
    assert_eq!(a2.poll_timeout(), Some(t(600)));
    assert_eq!(c1.poll_timeout(), Some(t(750)));
    a2.handle_timeout(t(599));
    assert!(drain(&mut a2).is_empty());
    a2.handle_timeout(t(600));
    assert_eq!(drain(&mut a2), vec![call(1)], "same event, same key");
    assert_eq!(a2.counts().taken_over, 1);
}

#[test]
fn a_sent_note_from_a_voter_cancels_the_takeover() {
    let mut a2 = Notifications::new(n("a2"), config());
    a2.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    let noted = a2.note_sent(
        &n("a1"),
        &site(),
        "verdict/b/4/down",
        "pager",
        &electorate(),
    );
    assert_eq!(noted, Ok(()));
    a2.handle_timeout(t(10_000));
    assert!(drain(&mut a2).is_empty());
    assert_eq!(a2.poll_timeout(), None);
    assert_eq!(a2.counts().cancelled, 1);
}

#[test]
fn a_note_that_arrives_before_the_event_still_keeps_this_node_quiet() {
    let mut a2 = Notifications::new(n("a2"), config());
    a2.note_sent(
        &n("a1"),
        &site(),
        "verdict/b/4/down",
        "pager",
        &electorate(),
    )
    .unwrap();
    a2.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    assert_eq!(a2.pending(), 0);
}

#[test]
fn a_forged_sent_note_from_a_non_member_is_refused_and_changes_nothing() {
    let mut a2 = Notifications::new(n("a2"), config());
    a2.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    let noted = a2.note_sent(
        &n("x9"),
        &site(),
        "verdict/b/4/down",
        "pager",
        &electorate(),
    );
    assert_eq!(noted, Err(NoteRefused::NotInElectorate));
    a2.handle_timeout(t(600));
    assert_eq!(drain(&mut a2), vec![call(1)]);
}

#[test]
fn an_oversized_note_is_refused() {
    let mut a2 = Notifications::new(n("a2"), config());
    let key = "k".repeat(MAX_NOTE_FIELD + 1);
    let noted = a2.note_sent(&n("a1"), &site(), &key, "pager", &electorate());
    assert_eq!(noted, Err(NoteRefused::TooLarge));
}

#[test]
fn a_note_for_another_site_does_not_cancel() {
    let mut a2 = Notifications::new(n("a2"), config());
    a2.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    let other = SiteId("a".to_string());
    a2.note_sent(&n("a1"), &other, "verdict/b/4/down", "pager", &electorate())
        .unwrap();
    assert_eq!(a2.pending(), 1);
}

#[test]
fn a_failed_call_is_retried_with_doubling_backoff_then_given_up() {
    let mut me = Notifications::new(n("a1"), config());
    me.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    assert_eq!(drain(&mut me), vec![call(1)]);
    me.call_done(t(10), "verdict/b/4/down", "pager", false);
    assert_eq!(me.poll_timeout(), Some(t(110)));
    me.handle_timeout(t(110));
    assert_eq!(drain(&mut me), vec![call(2)]);
    me.call_done(t(120), "verdict/b/4/down", "pager", false);
    assert_eq!(me.poll_timeout(), Some(t(320)));
    me.handle_timeout(t(320));
    assert_eq!(drain(&mut me), vec![call(3)]);
    me.call_done(t(330), "verdict/b/4/down", "pager", false);
    assert!(drain(&mut me).is_empty(), "retries spent: no note, no call");
    assert_eq!(me.pending(), 0);
    assert_eq!(me.counts().failed, 3);
}

#[test]
fn a_node_outside_the_electorate_holds_nothing() {
    let mut x = Notifications::new(n("x9"), config());
    x.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    assert_eq!(x.pending(), 0);
}

#[test]
fn only_notifiers_that_want_the_event_and_its_site_are_called() {
    let mut me = Notifications::new(n("a1"), config());
    let runs_only = Target {
        name: "runs".to_string(),
        on: vec![EventKind::RunFailed],
        ..target()
    };
    let other_site = Target {
        name: "site-a".to_string(),
        sites: Some(vec![SiteId("a".to_string())]),
        ..target()
    };
    me.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[runs_only, other_site, target()],
    );
    assert_eq!(drain(&mut me), vec![call(1)]);
}

#[test]
fn the_same_event_twice_is_called_once() {
    let mut me = Notifications::new(n("a1"), config());
    me.event(
        t(0),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    me.call_done(t(1), "verdict/b/4/down", "pager", true);
    drain(&mut me);
    me.event(
        t(2),
        down_verdict(),
        &n("a1"),
        Some(&electorate()),
        &[target()],
    );
    assert!(drain(&mut me).is_empty());
}

#[test]
fn an_event_nobody_takes_over_is_sent_by_its_sender_without_a_note() {
    let mut me = Notifications::new(n("a1"), config());
    let mut e = down_verdict();
    e.kind = EventKind::MaintenanceSet;
    let t_ = Target {
        on: vec![EventKind::MaintenanceSet],
        ..target()
    };
    me.event(t(0), e.clone(), &n("a1"), None, &[t_]);
    assert_eq!(drain(&mut me).len(), 1);
    me.call_done(t(1), &e.idempotency_key, "pager", true);
    assert!(drain(&mut me).is_empty());
}
