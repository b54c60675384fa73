//! The Pinger judging a site's service (`judge = "service"`): answers that say the service
//! checks fail count as misses; everything else stays as with `judge = "host"`.

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

fn pinger(indicators: &[&str], judge: Judge) -> Pinger {
    let cfg = PingerConfig {
        interval: ms(100),
        timeout: ms(100),
        retries: 3,
        startup_grace: ms(1000),
    };
    let mut p = Pinger::new(
        cfg,
        vec![(site(), indicators.iter().map(|s| n(s)).collect())],
        Time::ZERO,
        7,
    );
    p.set_judges([(site(), judge)].into_iter().collect());
    p
}

/// Runs the pinger until `until`; every probe is answered 1 ms later, saying
/// `health(indicator, sent)`. Returns the opinion changes with their time.
fn run(
    p: &mut Pinger,
    from: Time,
    until: Time,
    health: impl Fn(&NodeId, Time) -> ServiceHealth,
) -> Vec<(Time, Opinion)> {
    let mut out = Vec::new();
    let mut pending: Vec<(Time, NodeId, u64, ServiceHealth)> = Vec::new();
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
            let (_, who, nonce, h) = pending.remove(i);
            p.handle_answer_with(now, &who, nonce, h);
        } else {
            p.handle_timeout(now);
        }
        while let Some(a) = p.poll_action() {
            match a {
                PingerAction::SendProbe {
                    indicator, nonce, ..
                } => {
                    let h = health(&indicator, now);
                    pending.push((now + ms(1), indicator, nonce, h));
                }
                PingerAction::OpinionChanged { to, .. } => out.push((now, to)),
                _ => {}
            }
        }
    }
    out
}

fn failing_from(t: Time) -> impl Fn(&NodeId, Time) -> ServiceHealth {
    move |_, sent| {
        if sent >= t {
            ServiceHealth::Failing
        } else {
            ServiceHealth::Passing
        }
    }
}

#[test]
fn answers_saying_the_service_fails_take_the_site_down_when_judging_the_service() {
    let mut p = pinger(&["a1", "a2"], Judge::Service);
    let changes = run(&mut p, Time::ZERO, at(1000), failing_from(at(300)));
    // Probes sent at 300, 400 and 500 are answered "failing" 1 ms later: the third miss of
    // each Indicator lands at 501, with no timeout to wait for.
    assert_eq!(
        changes,
        vec![
            (at(1), Opinion::Up),
            (at(301), Opinion::Suspect),
            (at(501), Opinion::Down)
        ]
    );
    let r = p.report(&site(), at(1000));
    assert!(r
        .indicators
        .iter()
        .all(|i| i.service == ServiceHealth::Failing && i.reachable == Some(false)));
    assert!(p.stats().unhealthy_answers >= 6);
    assert_eq!(p.stats().late_answers, 0);
}

#[test]
fn the_same_answers_keep_the_site_up_when_judging_hosts() {
    let mut p = pinger(&["a1", "a2"], Judge::Host);
    let changes = run(&mut p, Time::ZERO, at(1000), failing_from(at(300)));
    assert_eq!(changes, vec![(at(1), Opinion::Up)]);
    let r = p.report(&site(), at(1000));
    assert_eq!(
        r.indicators[0].service,
        ServiceHealth::Failing,
        "shown all the same"
    );
    assert_eq!(p.stats().unhealthy_answers, 0);
}

#[test]
fn one_indicator_whose_service_fails_leaves_the_site_up() {
    let mut p = pinger(&["a1", "a2"], Judge::Service);
    let changes = run(&mut p, Time::ZERO, at(1000), |who, _| {
        if who.as_str() == "a1" {
            ServiceHealth::Failing
        } else {
            ServiceHealth::Passing
        }
    });
    assert_eq!(changes, vec![(at(1), Opinion::Up)]);
    assert_eq!(p.report(&site(), at(1000)).indicators_reachable, 1);
}

#[test]
fn pending_and_unchecked_answers_count_as_the_hosts() {
    for h in [ServiceHealth::Pending, ServiceHealth::Unchecked] {
        let mut p = pinger(&["a1"], Judge::Service);
        let changes = run(&mut p, Time::ZERO, at(1000), |_, _| h);
        assert_eq!(changes, vec![(at(1), Opinion::Up)], "{h:?}");
    }
}

#[test]
fn an_unhealthy_answer_does_not_restart_the_silence_clock() {
    let mut p = pinger(&["a1"], Judge::Service);
    run(&mut p, Time::ZERO, at(250), |_, _| ServiceHealth::Passing);
    let changes = run(&mut p, at(250), at(460), |_, _| ServiceHealth::Failing);
    assert_eq!(changes, vec![(at(301), Opinion::Suspect)]);
    // Silent from 460 on (the probes of 500 and later are lost).
    let mut down_at = None;
    while down_at.is_none() && p.poll_timeout() <= at(1000) {
        let now = p.poll_timeout();
        p.handle_timeout(now);
        while let Some(a) = p.poll_action() {
            if let PingerAction::OpinionChanged {
                to: Opinion::Down, ..
            } = a
            {
                down_at.get_or_insert(now);
            }
        }
    }
    // Probes sent at 300 and 400 were answered "failing" (two misses); the one sent at 500 is
    // the third, missed at 526 by the detection time counted from the last healthy answer
    // (201 + 325), not at its own timeout (600).
    assert_eq!(down_at, Some(at(526)));
}

#[test]
fn a_recovered_service_is_not_an_external_false_positive() {
    let mut p = pinger(&["a1"], Judge::Service);
    run(&mut p, Time::ZERO, at(600), failing_from(at(0)));
    assert_eq!(p.opinion(&site()), Opinion::Down);
    let changes = run(&mut p, at(600), at(900), |_, _| ServiceHealth::Passing);
    assert_eq!(changes.first().map(|c| c.1), Some(Opinion::Up));
    assert_eq!(p.stats().external_false_positives, 0);
    assert_eq!(p.stats().recoveries, 1);
}

#[test]
fn judges_survive_a_change_of_watches() {
    let mut p = pinger(&["a1"], Judge::Service);
    p.set_watches(at(0), vec![(site(), vec![n("a1"), n("a2")])]);
    assert_eq!(p.judge(&site()), Judge::Service);
    p.set_judges(HashMap::new());
    assert_eq!(p.judge(&site()), Judge::Host);
}
