use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn at(n_ms: u64) -> Time {
    Time::ZERO + ms(n_ms)
}
fn n(s: &str) -> NodeId {
    NodeId::from(s)
}
fn site() -> SiteId {
    SiteId("a".into())
}

fn cfg() -> PingerConfig {
    PingerConfig {
        interval: ms(100),
        timeout: ms(100),
        retries: 3,
        startup_grace: ms(1000),
    }
}

fn pinger(indicators: &[&str]) -> Pinger {
    Pinger::new(
        cfg(),
        vec![(site(), indicators.iter().map(|s| n(s)).collect())],
        Time::ZERO,
        7,
    )
}

fn drain(p: &mut Pinger) -> Vec<PingerAction> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

/// Runs the pinger until `until`; Indicators in `alive` answer every probe after 1 ms.
/// Returns every action except SendProbe, with the time it was emitted.
fn run(p: &mut Pinger, from: Time, until: Time, alive: &[&str]) -> Vec<(Time, PingerAction)> {
    run_with(p, from, until, |who, _| {
        alive.contains(&who.as_str()).then_some(ms(1))
    })
}

/// Runs the pinger until `until`; `answer(indicator, sent)` gives the round trip of each probe
/// or None when it is lost. Returns every action except SendProbe, with its time.
fn run_with(
    p: &mut Pinger,
    from: Time,
    until: Time,
    answer: impl Fn(&NodeId, Time) -> Option<Duration>,
) -> Vec<(Time, PingerAction)> {
    let mut out = Vec::new();
    let mut pending: Vec<(Time, NodeId, u64)> = Vec::new();
    let mut now = from;
    loop {
        let next_answer = pending.iter().map(|x| x.0).min();
        let t = next_answer.map_or(p.poll_timeout(), |a| a.min(p.poll_timeout()));
        if t > until {
            break;
        }
        now = now.max(t);
        if next_answer == Some(t) {
            let i = pending.iter().position(|x| x.0 == t).unwrap();
            let (_, who, nonce) = pending.remove(i);
            p.handle_answer(now, &who, nonce);
        } else {
            p.handle_timeout(now);
        }
        for a in drain(p) {
            match a {
                PingerAction::SendProbe {
                    indicator, nonce, ..
                } => {
                    if let Some(rtt) = answer(&indicator, now) {
                        pending.push((now + rtt, indicator, nonce));
                    }
                }
                other => out.push((now, other)),
            }
        }
    }
    out
}

#[test]
fn the_first_round_probes_every_indicator_at_start() {
    let mut p = pinger(&["a1", "a2"]);
    assert_eq!(p.poll_timeout(), Time::ZERO);
    p.handle_timeout(Time::ZERO);
    let sent: Vec<_> = drain(&mut p)
        .into_iter()
        .map(|a| match a {
            PingerAction::SendProbe { indicator, .. } => indicator,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sent, vec![n("a1"), n("a2")]);
    assert_eq!(
        p.poll_timeout(),
        at(100),
        "next event is the timeout of this round and the next round"
    );
}

#[test]
fn answered_probes_make_the_site_up_with_the_rtt_as_evidence() {
    let mut p = pinger(&["a1"]);
    let events = run(&mut p, Time::ZERO, at(350), &["a1"]);
    assert_eq!(
        events,
        vec![(
            at(1),
            PingerAction::OpinionChanged {
                site: site(),
                from: Opinion::Unknown,
                to: Opinion::Up
            }
        )]
    );
    let r = p.report(&site(), at(350));
    assert_eq!(r.opinion, Opinion::Up);
    assert_eq!(r.indicators[0].last_rtt_us, Some(1000));
    assert_eq!(r.indicators[0].misses, 0);
    assert_eq!(p.stats().probes_sent, 4);
    assert_eq!(p.stats().answers, 4);
}

#[test]
fn an_indicator_is_unreachable_after_retries_consecutive_misses_and_the_site_goes_down() {
    let mut p = pinger(&["a1"]);
    assert_eq!(p.reach_of(&n("a1")), None, "not yet probed");
    run(&mut p, Time::ZERO, at(250), &["a1"]);
    assert_eq!(p.reach_of(&n("a1")), Some(true));
    assert_eq!(p.reach_of(&n("b1")), None, "not probed by this Pinger");
    // a1 dies at 250 ms: the probe sent at 300 is the first one missed (at its timeout, 400),
    // the one sent at 400 the second (500). a1 last answered at 201: 3 × 100 + 25 ms later,
    // at 526, the probe sent at 500 has waited longer than the last round trip (1 ms) plus
    // the allowance and is the third: a1 is unreachable 325 ms after it last spoke, not at
    // the third probe's timeout (600).
    let events = run(&mut p, at(250), at(650), &[]);
    let a = |ind: &str| n(ind);
    assert_eq!(
        events,
        vec![
            (
                at(400),
                PingerAction::FirstMiss {
                    site: site(),
                    indicator: a("a1")
                }
            ),
            (
                at(400),
                PingerAction::OpinionChanged {
                    site: site(),
                    from: Opinion::Up,
                    to: Opinion::Suspect
                }
            ),
            (
                at(526),
                PingerAction::IndicatorUnreachable {
                    site: site(),
                    indicator: a("a1")
                }
            ),
            (
                at(526),
                PingerAction::OpinionChanged {
                    site: site(),
                    from: Opinion::Suspect,
                    to: Opinion::Down
                }
            ),
        ]
    );
    assert_eq!(
        p.down_from(&site()),
        Some(at(300)),
        "the streak began with the probe sent at 300 ms"
    );
    assert_eq!(p.reach_of(&n("a1")), Some(false));
}

#[test]
fn the_site_stays_up_while_any_one_indicator_answers() {
    let mut p = pinger(&["a1", "a2", "a3"]);
    run(&mut p, Time::ZERO, at(250), &["a1", "a2", "a3"]);
    let events = run(&mut p, at(250), at(2000), &["a3"]);
    assert!(
        events
            .iter()
            .all(|(_, e)| !matches!(e, PingerAction::OpinionChanged { .. })),
        "{events:?}"
    );
    assert_eq!(p.opinion(&site()), Opinion::Up);
    let r = p.report(&site(), at(2000));
    assert_eq!(r.indicators_reachable, 1);
    assert_eq!(r.indicators[0].reachable, Some(false));
}

#[test]
fn a_site_never_seen_goes_down_after_the_retry_budget() {
    let mut p = pinger(&["a1"]);
    let events = run(&mut p, Time::ZERO, at(1000), &[]);
    let opinions: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, PingerAction::OpinionChanged { .. }))
        .collect();
    assert_eq!(
        opinions,
        vec![&(
            at(300),
            PingerAction::OpinionChanged {
                site: site(),
                from: Opinion::Unknown,
                to: Opinion::Down
            }
        )]
    );
}

#[test]
fn an_unreachable_indicator_that_answers_is_an_external_false_positive_and_brings_the_site_back() {
    let mut p = pinger(&["a1"]);
    run(&mut p, Time::ZERO, at(1000), &[]);
    assert_eq!(p.opinion(&site()), Opinion::Down);
    let events = run(&mut p, at(1000), at(1150), &["a1"]);
    assert!(events.contains(&(
        at(1101),
        PingerAction::ExternalFalsePositive {
            site: site(),
            indicator: n("a1")
        }
    )));
    assert!(events.contains(&(
        at(1101),
        PingerAction::OpinionChanged {
            site: site(),
            from: Opinion::Down,
            to: Opinion::Up
        }
    )));
    assert_eq!(p.stats().external_false_positives, 1);
}

#[test]
fn a_late_answer_is_counted_but_does_not_undo_the_miss() {
    let mut p = pinger(&["a1"]);
    p.handle_timeout(Time::ZERO);
    let nonce = match drain(&mut p).pop() {
        Some(PingerAction::SendProbe { nonce, .. }) => nonce,
        other => panic!("{other:?}"),
    };
    p.handle_timeout(at(100));
    drain(&mut p);
    p.handle_answer(at(120), &n("a1"), nonce);
    assert_eq!(p.stats().late_answers, 1);
    assert_eq!(p.report(&site(), at(120)).indicators[0].misses, 1);
}

#[test]
fn answers_from_strangers_and_unknown_nonces_change_nothing() {
    let mut p = pinger(&["a1"]);
    p.handle_timeout(Time::ZERO);
    drain(&mut p);
    p.handle_answer(at(5), &n("zz"), 1);
    p.handle_answer(at(5), &n("a1"), 12345);
    assert_eq!(p.opinion(&site()), Opinion::Unknown);
    assert_eq!(p.poll_action(), None);
}

#[test]
fn a_driver_that_falls_behind_skips_rounds_instead_of_bursting() {
    let mut p = pinger(&["a1"]);
    p.handle_timeout(Time::ZERO);
    drain(&mut p);
    p.handle_timeout(at(1050));
    let probes = drain(&mut p)
        .into_iter()
        .filter(|a| matches!(a, PingerAction::SendProbe { .. }))
        .count();
    assert_eq!(probes, 1);
    assert_eq!(p.poll_timeout(), at(1150));
}

#[test]
fn reloading_watches_keeps_the_state_of_remaining_indicators() {
    let mut p = pinger(&["a1", "a2"]);
    run(&mut p, Time::ZERO, at(250), &["a1", "a2"]);
    p.set_watches(at(250), vec![(site(), vec![n("a2"), n("a3")])]);
    let r = p.report(&site(), at(250));
    assert_eq!(r.indicators_total, 2);
    assert_eq!(r.indicators[0].node, n("a2"));
    assert_eq!(r.indicators[0].reachable, Some(true));
    assert_eq!(r.indicators[1].reachable, None);
    assert_eq!(p.opinion(&site()), Opinion::Up);
}

#[test]
fn the_same_seed_gives_the_same_nonces() {
    let mut a = pinger(&["a1"]);
    let mut b = pinger(&["a1"]);
    a.handle_timeout(Time::ZERO);
    b.handle_timeout(Time::ZERO);
    assert_eq!(drain(&mut a), drain(&mut b));
}

#[test]
fn probes_that_could_not_be_sent_to_a_never_seen_indicator_do_not_count_during_the_startup_grace() {
    let mut p = pinger(&["a1"]);
    let changes = run_unsendable(&mut p, Time::ZERO, at(2000));
    // Probes sent before the grace (1 s) ends are forgotten; those sent at 1000, 1100 and
    // 1200 ms are misses, the third at 1300 ms.
    assert_eq!(changes, vec![(at(1300), Opinion::Down)]);
    assert_eq!(p.down_from(&site()), Some(at(1000)));
}

#[test]
fn probes_that_could_not_be_sent_to_a_once_reachable_indicator_are_misses() {
    let mut p = pinger(&["a1"]);
    run(&mut p, Time::ZERO, at(250), &["a1"]);
    let changes = run_unsendable(&mut p, at(300), at(800));
    assert_eq!(
        changes,
        vec![(at(400), Opinion::Suspect), (at(526), Opinion::Down)]
    );
}

/// Runs the pinger from `from` to `until` with no connection to any Indicator: every probe
/// is reported as not sent. Returns the opinion changes with their times.
fn run_unsendable(p: &mut Pinger, from: Time, until: Time) -> Vec<(Time, Opinion)> {
    let mut now = from;
    let mut changes = Vec::new();
    while now < until {
        p.handle_timeout(now);
        for a in drain(p) {
            match a {
                PingerAction::SendProbe {
                    indicator, nonce, ..
                } => p.probe_not_sent(now, &indicator, nonce),
                PingerAction::OpinionChanged { to, .. } => changes.push((now, to)),
                _ => {}
            }
        }
        now = p.poll_timeout();
    }
    changes
}

#[test]
fn the_detection_time_is_retries_intervals_and_a_quarter_interval_of_allowance() {
    assert_eq!(pinger(&["a1"]).detection_time(), ms(325));
}

/// a1 answers in 1 ms, loses the probes sent at 300 and 400 ms, and answers the one sent at
/// 500 ms after `third`.
fn third_probe_answered_after(third: Duration) -> Vec<(Time, PingerAction)> {
    let mut p = pinger(&["a1"]);
    run(&mut p, Time::ZERO, at(250), &["a1"]);
    run_with(&mut p, at(250), at(700), |_, sent| match sent {
        t if t == at(300) || t == at(400) => None,
        t if t == at(500) => Some(third),
        _ => Some(ms(1)),
    })
}

#[test]
fn an_answer_slower_than_the_last_by_less_than_the_allowance_is_in_time() {
    let events = third_probe_answered_after(ms(20));
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, PingerAction::IndicatorUnreachable { .. })),
        "{events:?}"
    );
    assert!(events.contains(&(
        at(520),
        PingerAction::OpinionChanged {
            site: site(),
            from: Opinion::Suspect,
            to: Opinion::Up
        }
    )));
}

#[test]
fn an_answer_slower_than_the_last_by_more_than_the_allowance_is_a_miss() {
    let events = third_probe_answered_after(ms(30));
    assert!(events.contains(&(
        at(526),
        PingerAction::IndicatorUnreachable {
            site: site(),
            indicator: n("a1")
        }
    )));
    // The late answer is no evidence; the next probe's answer brings a1 back.
    assert!(events.contains(&(
        at(601),
        PingerAction::ExternalFalsePositive {
            site: site(),
            indicator: n("a1")
        }
    )));
}

#[test]
fn a_pinger_that_stalled_longer_than_the_detection_time_waits_for_real_misses() {
    let mut p = pinger(&["a1"]);
    // The round of 300 ms goes out and the driver stalls before its answer is handled.
    run(&mut p, Time::ZERO, at(300), &["a1"]);
    p.handle_timeout(at(1050));
    let r = p.report(&site(), at(1050));
    assert_eq!(
        r.indicators[0].misses, 1,
        "only the probe of 300 ms timed out"
    );
    assert_eq!(r.indicators[0].reachable, Some(true));
    let events = run(&mut p, at(1050), at(2000), &["a1"]);
    assert!(
        events
            .iter()
            .all(|(_, e)| !matches!(e, PingerAction::IndicatorUnreachable { .. })),
        "{events:?}"
    );
    assert_eq!(p.opinion(&site()), Opinion::Up);
}

#[test]
fn new_timings_move_the_silence_already_counting() {
    let mut p = pinger(&["a1"]);
    run(&mut p, Time::ZERO, at(250), &["a1"]);
    assert_eq!(p.poll_timeout(), at(300));
    p.set_config(PingerConfig {
        retries: 5,
        ..cfg()
    });
    let events = run(&mut p, at(250), at(900), &[]);
    let unreachable: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, PingerAction::IndicatorUnreachable { .. }))
        .map(|(t, _)| *t)
        .collect();
    // Last answer at 201 ms; 5 × 100 + 25 ms later.
    assert_eq!(unreachable, vec![at(726)]);
}

#[test]
fn a_steady_pinger_keeps_one_silence_per_indicator_and_wakes_only_for_rounds() {
    let mut p = pinger(&["a1", "a2", "a3"]);
    run(&mut p, Time::ZERO, at(1050), &["a1", "a2", "a3"]);
    assert_eq!(p.silences.len(), 3);
    assert_eq!(p.poll_timeout(), at(1100));
}
