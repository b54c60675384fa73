//! The status exchange: who gets this node's status and when (news, quiet peers), what the
//! probes heard tell the self-fence, and whom vote broadcasts leave out.

use super::tests::{at, core_of, drain, fleet, steps_started};
use super::*;

/// The statuses among `actions`: `None` for a broadcast, else the node it is sent to.
fn statuses(actions: &[Action]) -> Vec<(Option<String>, PeerStatus)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast {
                msg: Message::Status(s),
                ..
            } => Some((None, s.clone())),
            Action::Send {
                to,
                msg: Message::Status(s),
            } => Some((Some(to.to_string()), s.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn members_send_their_status_every_interval_and_an_indicator_only_node_its_fleet_version_to_the_voters_with_news_or_now_and_then(
) {
    let f = fleet("");
    let (mut b1, mut a3) = (core_of(&f, "b1"), core_of(&f, "a3"));
    let (mut from_b1, mut from_a3) = (Vec::new(), Vec::new());
    // status_interval_ms = 100 in these fleets: 40 intervals.
    let every = INDICATOR_STATUS_EVERY;
    for i in 0..every + 10 {
        b1.handle(at(i * 100), Input::Tick);
        from_b1.extend(statuses(&drain(&mut b1)));
        a3.handle(at(i * 100), Input::Tick);
        from_a3.extend(statuses(&drain(&mut a3)));
    }
    assert_eq!(
        from_b1.len() as u64,
        every + 10,
        "one broadcast per interval"
    );
    assert!(from_b1
        .iter()
        .all(|(to, s)| to.is_none() && !s.opinions.is_empty()));
    let voters = ["a1", "a2", "b1", "b2", "c1", "c2"];
    let all: Vec<Option<String>> = voters.iter().map(|v| Some(v.to_string())).collect();
    // The first status is news, told in three intervals; the voters that probe a3 (b's and
    // c's) get nothing else (their own statuses dial a3 now and then, and a new connection
    // carries a3's status back).
    let mut expected = [all.clone(), all.clone(), all.clone()].concat();
    expected.extend(["a1", "a2"].map(|v| Some(v.to_string())));
    let to: Vec<Option<String>> = from_a3.iter().map(|(to, _)| to.clone()).collect();
    assert_eq!(
        to, expected,
        "in the first 3 intervals to each voter, at the 31st to those that do not probe a3"
    );
    for (_, s) in &from_a3 {
        assert_eq!(s.node, NodeId::from("a3"));
        assert_eq!(s.fleet_hash, f.hash);
        assert!(s.opinions.is_empty() && s.verdicts.is_empty() && s.maintenance.is_empty());
    }
    // A new fleet version goes to the voters at the next interval.
    let text = f
        .source
        .replace("takeover_delay_s = 2", "takeover_delay_s = 3");
    let new = Arc::new(Fleet::parse(&text).expect("valid"));
    a3.handle(at(4_010), Input::Reload(new.clone()));
    drain(&mut a3);
    let mut sent = Vec::new();
    for i in 41..45 {
        a3.handle(at(i * 100), Input::Tick);
        sent.extend(statuses(&drain(&mut a3)));
    }
    assert_eq!(
        sent.len(),
        3 * voters.len(),
        "in three intervals, to each voter: {sent:?}"
    );
    assert!(sent.iter().all(|(_, s)| s.fleet_hash == new.hash));
}

/// Whom each status broadcast among `actions` leaves out.
fn status_exceptions(actions: &[Action]) -> Vec<Vec<NodeId>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast {
                msg: Message::Status(_),
                except,
            } => Some(except.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_indicator_only_nodes_a_node_probes_get_its_status_only_with_news() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let a3 = vec![NodeId::from("a3")];
    let every = INDICATOR_STATUS_EVERY;
    let mut except = Vec::new();
    for i in 0..every + 10 {
        b1.handle(at(i * 100), Input::Tick);
        except.extend(status_exceptions(&drain(&mut b1)));
    }
    // b1 probes site a (a1, a2, a3), and a1 and a2 are voters: only a3 is left out, but for
    // the first 3 intervals (the first status is news). b3 is not probed by b1: it gets every
    // status.
    let expected: Vec<Vec<NodeId>> = (0..every + 10)
        .map(|i| {
            if i < NEWS_SENDS {
                Vec::new()
            } else {
                a3.clone()
            }
        })
        .collect();
    assert_eq!(except, expected);
    // News (a maintenance call of a member of a's electorate) goes to everyone at the next
    // interval.
    let window = MaintenanceWindow {
        site: SiteId::from("a"),
        until_unix_ms: 60_000,
        set_at_unix_ms: 4_000,
    };
    b1.handle(
        at(4_010),
        Input::Message {
            from: NodeId::from("b2"),
            msg: Message::Status(PeerStatus {
                node: NodeId::from("b2"),
                fleet_hash: f.hash.clone(),
                opinions: vec![],
                verdicts: vec![],
                maintenance: vec![window],
            }),
        },
    );
    drain(&mut b1);
    assert_eq!(b1.maintenance_windows().count(), 1, "the call was taken");
    let mut except = Vec::new();
    for i in 41..45 {
        b1.handle(at(i * 100), Input::Tick);
        except.extend(status_exceptions(&drain(&mut b1)));
    }
    assert_eq!(
        except,
        vec![Vec::new(), Vec::new(), Vec::new(), a3.clone()],
        "the news in three intervals to all, then as before"
    );
    // And a3 once every QUIET_STATUS_EVERY intervals.
    let mut told = Vec::new();
    for i in 45..2 * QUIET_STATUS_EVERY + 10 {
        b1.handle(at(i * 100), Input::Tick);
        for e in status_exceptions(&drain(&mut b1)) {
            if e.is_empty() {
                told.push(i);
            }
        }
    }
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[1] - told[0], QUIET_STATUS_EVERY);
}

#[test]
fn probes_heard_keep_an_indicator_only_node_from_fencing_without_statuses() {
    let f = fleet("");
    let run = |opinion: Opinion| {
        let mut a3 = core_of(&f, "a3");
        let mut t = 0;
        while t < 3_000 {
            t += 100;
            let heard = ["b1", "b2", "c1", "c2"]
                .into_iter()
                .map(|p| ProbeHeard {
                    pinger: NodeId::from(p),
                    at: at(t - 10).mono,
                    opinion,
                })
                .collect();
            a3.handle(at(t), Input::ProbesHeard(heard));
            a3.handle(at(t), Input::Tick);
        }
        let count = a3.isolation().expect("site a fences").count;
        (count, steps_started(&drain(&mut a3)))
    };
    // The electorate's probes say a is up (or only suspect): a3 hears a majority, no status.
    assert_eq!(run(Opinion::Up), (0, vec![]));
    assert_eq!(run(Opinion::Suspect), (0, vec![]));
    // Probes from Pingers that see a DOWN do not count, as their statuses would not.
    let (count, steps) = run(Opinion::Down);
    assert_eq!(count, 1);
    assert_eq!(steps, ["withdraw-a"]);
}

#[test]
fn a_probe_heard_from_outside_the_electorate_or_from_the_future_does_not_keep_a_site_in() {
    let f = fleet("");
    let mut a3 = core_of(&f, "a3");
    let mut t = 0;
    while t < 3_000 {
        t += 100;
        let heard = vec![
            // b3 and c3 are Indicators, no voters: they are not a's electorate.
            ProbeHeard {
                pinger: NodeId::from("b3"),
                at: at(t).mono,
                opinion: Opinion::Up,
            },
            ProbeHeard {
                pinger: NodeId::from("c3"),
                at: at(t).mono,
                opinion: Opinion::Up,
            },
        ];
        a3.handle(at(t), Input::ProbesHeard(heard));
        a3.handle(at(t), Input::Tick);
    }
    assert_eq!(a3.isolation().expect("site a fences").count, 1);
    // A claimed arrival time ahead of the core's clock counts as now, not later.
    let mut a3 = core_of(&f, "a3");
    let future = ["b1", "b2", "c1"].map(|p| ProbeHeard {
        pinger: NodeId::from(p),
        at: at(60_000).mono,
        opinion: Opinion::Up,
    });
    a3.handle(at(100), Input::ProbesHeard(future.to_vec()));
    a3.handle(at(100), Input::Tick);
    drain(&mut a3);
    a3.handle(at(700), Input::Tick);
    assert_eq!(a3.isolation().expect("site a fences").count, 1);
}

#[test]
fn a_peer_whose_connection_comes_up_gets_the_status_at_once_if_it_is_one_to_get_it() {
    let f = fleet("");
    let connected = |c: &mut NodeCore, peer: &str| {
        c.handle(at(50), Input::PeerConnected(NodeId::from(peer)));
        statuses(&drain(c))
            .into_iter()
            .map(|(to, _)| to)
            .collect::<Vec<_>>()
    };
    let (mut b1, mut a3) = (core_of(&f, "b1"), core_of(&f, "a3"));
    assert_eq!(connected(&mut b1, "a3"), [Some("a3".to_string())]);
    assert_eq!(connected(&mut a3, "b1"), [Some("b1".to_string())]);
    // Two Indicator-only nodes do not even hold a connection; and a stranger gets nothing.
    assert!(connected(&mut a3, "b3").is_empty());
    assert!(connected(&mut b1, "zz").is_empty());
}

#[test]
fn vote_broadcasts_leave_out_the_indicator_only_nodes_a_node_probes() {
    let f = fleet("");
    let mut b1 = core_of(&f, "b1");
    let mut votes = Vec::new();
    // a's Indicators answer for 2 s, then fall silent: b1's opinion of a turns DOWN, the
    // electorate agrees, and b1 broadcasts the commit.
    for i in 0..100 {
        b1.handle(at(i * 100), Input::Tick);
        for a in drain(&mut b1) {
            match a {
                Action::SendProbe {
                    indicator, nonce, ..
                } if i < 20 => b1.handle(
                    at(i * 100 + 1),
                    Input::ProbeAnswer {
                        indicator,
                        nonce,
                        at: at(i * 100 + 1).mono,
                        health: crate::core::health::ServiceHealth::Unchecked,
                    },
                ),
                Action::Broadcast {
                    msg: Message::Vote(_),
                    except,
                } => votes.push(except),
                // The other voters see it alike: each accepts b1's fast proposal.
                Action::Send {
                    to,
                    msg: msg @ Message::Vote(crate::wire::VoteMsg::FastAccept { .. }),
                } => b1.handle(at(i * 100 + 2), Input::Message { from: to, msg }),
                _ => {}
            }
        }
    }
    assert!(!votes.is_empty(), "b1 committed");
    assert!(
        votes.iter().all(|e| e == &[NodeId::from("a3")]),
        "a3 learns the verdict from the status that carries it: {votes:?}"
    );
}
