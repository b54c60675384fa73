use super::*;

fn electorate() -> Electorate {
    Electorate::new(vec![
        NodeId::from("b1"),
        NodeId::from("c1"),
        NodeId::from("c2"),
    ])
}

fn alarm(source: &str, raised: bool, at: i64) -> Alarm {
    Alarm {
        site: SiteId::from("a"),
        source: source.into(),
        severity: AlarmSeverity::Critical,
        reason: "smoke in hall 2".into(),
        raised,
        set_at_unix_ms: at,
        by: NodeId::from("b1"),
    }
}

const NOW: i64 = 1_800_000_000_000;

#[test]
fn only_members_of_the_electorate_originate_alarms() {
    let alarms = Alarms::new(NodeId::from("c1"));
    let e = electorate();
    let a = alarm("fire", true, NOW);
    assert_eq!(
        alarms.learn(NOW, &NodeId::from("b1"), &a, &e),
        Ok(Learned::Newer { raised: true })
    );
    // An Indicator host inside the site, as valid a certificate as any.
    assert_eq!(
        alarms.learn(NOW, &NodeId::from("a1"), &a, &e),
        Err(Refusal::NotOperatorNode)
    );
    // A member passing on a call it claims an outsider accepted.
    let forged = Alarm {
        by: NodeId::from("a1"),
        ..a.clone()
    };
    assert_eq!(
        alarms.learn(NOW, &NodeId::from("b1"), &forged, &e),
        Err(Refusal::NotOperatorNode)
    );
    // An outsider cannot call at all.
    let outsider = Alarms::new(NodeId::from("a1"));
    assert!(matches!(
        outsider.call(
            NOW,
            &SiteId::from("a"),
            "fire",
            AlarmSeverity::Critical,
            "",
            true,
            &e
        ),
        Err(AlarmError::NotOperatorNode { .. })
    ));
}

#[test]
fn bounds_are_refused_not_clamped() {
    let alarms = Alarms::new(NodeId::from("c1"));
    let e = electorate();
    let b1 = NodeId::from("b1");
    let ahead = alarm("fire", true, NOW + MAX_SKEW_MS + 1);
    assert_eq!(
        alarms.learn(NOW, &b1, &ahead, &e),
        Err(Refusal::FromTheFuture)
    );
    let long = Alarm {
        reason: "x".repeat(MAX_REASON_LEN + 1),
        ..alarm("fire", true, NOW)
    };
    assert_eq!(alarms.learn(NOW, &b1, &long, &e), Err(Refusal::TooLarge));
    let bad = alarm("fire panel/1", true, NOW);
    assert_eq!(alarms.learn(NOW, &b1, &bad, &e), Err(Refusal::TooLarge));
    assert!(check_source(&"s".repeat(MAX_SOURCE_LEN + 1)).is_err());
    assert!(check_source("").is_err());
    assert!(check_source("fire-panel_2.hall").is_ok());
}

#[test]
fn sources_per_site_are_bounded() {
    let mut alarms = Alarms::new(NodeId::from("b1"));
    let e = electorate();
    for i in 0..MAX_SOURCES_PER_SITE {
        let a = alarms
            .call(
                NOW,
                &SiteId::from("a"),
                &format!("s{i}"),
                AlarmSeverity::Warning,
                "",
                true,
                &e,
            )
            .unwrap();
        alarms.stored(a);
    }
    assert_eq!(
        alarms.call(
            NOW,
            &SiteId::from("a"),
            "one-more",
            AlarmSeverity::Warning,
            "",
            true,
            &e
        ),
        Err(AlarmError::TooManySources {
            site: SiteId::from("a")
        })
    );
    // A known source may still be cleared, and a peer's new source is refused.
    assert!(alarms
        .call(
            NOW,
            &SiteId::from("a"),
            "s0",
            AlarmSeverity::Warning,
            "",
            false,
            &e
        )
        .is_ok());
    assert_eq!(
        alarms.learn(NOW, &NodeId::from("c1"), &alarm("new", true, NOW), &e),
        Err(Refusal::TooLarge)
    );
}

#[test]
fn the_newest_call_per_source_wins_and_calls_outrank_what_is_known() {
    let mut alarms = Alarms::new(NodeId::from("b1"));
    let e = electorate();
    alarms.stored(alarm("fire", true, NOW + 10_000));
    assert!(alarms.is_raised(&SiteId::from("a")));
    // An older clear of the same source changes nothing.
    assert_eq!(
        alarms.learn(NOW, &NodeId::from("c1"), &alarm("fire", false, NOW), &e),
        Ok(Learned::Stale)
    );
    alarms.stored(alarm("fire", false, NOW));
    assert!(alarms.is_raised(&SiteId::from("a")));
    // A call here is stamped after the known one even when this clock is behind.
    let clear = alarms
        .call(
            NOW,
            &SiteId::from("a"),
            "fire",
            AlarmSeverity::Critical,
            "all clear",
            false,
            &e,
        )
        .unwrap();
    assert_eq!(clear.set_at_unix_ms, NOW + 10_001);
    alarms.stored(clear);
    assert!(!alarms.is_raised(&SiteId::from("a")));
    // Another source is its own alarm.
    alarms.stored(alarm("power", true, NOW));
    assert_eq!(alarms.raised(&SiteId::from("a")).count(), 1);
}

#[test]
fn stored_alarms_out_of_bounds_are_dropped_on_load() {
    let mut alarms = Alarms::new(NodeId::from("b1"));
    let dropped = alarms.load(
        NOW,
        vec![
            alarm("fire", true, NOW),
            alarm("power", true, NOW + MAX_SKEW_MS + 1),
        ],
    );
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].source, "power");
    assert!(alarms.get(&SiteId::from("a"), "fire").is_some());
}

#[test]
fn an_episode_prestages_once_and_unstages_once() {
    use RunTrigger::*;
    let p = OnAlarm::Prestage;
    // Raised on a site at rest: prestage.
    assert_eq!(
        reaction(p, true, true, None, false),
        Some(Reaction::Prestage)
    );
    assert_eq!(
        reaction(p, true, true, Some(Failback), false),
        Some(Reaction::Prestage)
    );
    assert_eq!(
        reaction(p, true, true, Some(Unstage), false),
        Some(Reaction::Prestage)
    );
    // Once prestaged, more raised alarms of the episode ask nothing more.
    assert_eq!(reaction(p, true, true, Some(Prestage), false), None);
    // Without prestage steps there is nothing to run.
    assert_eq!(reaction(p, false, true, None, false), None);
    // The last clear unstages a prestaged site, once.
    assert_eq!(
        reaction(p, true, false, Some(Prestage), false),
        Some(Reaction::Unstage)
    );
    assert_eq!(reaction(p, true, false, Some(Unstage), false), None);
    assert_eq!(reaction(p, true, false, None, false), None);
    // A failover since the prestage (by a verdict, or through the lock) is never undone.
    assert_eq!(reaction(p, true, false, Some(Prestage), true), None);
    assert_eq!(reaction(p, true, false, Some(Manual), false), None);
    assert_eq!(reaction(p, true, false, Some(Alarm), false), None);
    // A failed-over site is not prestaged again until failed back.
    assert_eq!(reaction(p, true, true, Some(Manual), false), None);
    assert_eq!(reaction(p, true, true, Some(Failback), true), None);
}

#[test]
fn failover_on_alarm_runs_once_and_notify_runs_nothing() {
    use RunTrigger::*;
    let f = OnAlarm::Failover;
    assert_eq!(
        reaction(f, false, true, None, false),
        Some(Reaction::Failover)
    );
    assert_eq!(
        reaction(f, false, true, Some(Prestage), false),
        Some(Reaction::Failover)
    );
    assert_eq!(reaction(f, false, true, Some(Alarm), false), None);
    assert_eq!(reaction(f, false, true, None, true), None);
    assert_eq!(reaction(f, false, false, Some(Alarm), false), None);
    assert_eq!(reaction(OnAlarm::Notify, true, true, None, false), None);
    // A prestage left standing when the mode changed is still undone on clear.
    assert_eq!(
        reaction(OnAlarm::Notify, true, false, Some(Prestage), false),
        Some(Reaction::Unstage)
    );
    assert_eq!(Reaction::Failover.trigger(), Alarm);
}
