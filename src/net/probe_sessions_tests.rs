//! The bound on the answers a probe session delivers, and the session table's indexes as
//! sessions close.

use super::*;

/// A session with keys from `material`, reached at `remote`.
fn session(peer: &NodeId, role: Role, material: u8, remote: SocketAddr) -> Session {
    Session {
        peer: peer.clone(),
        role,
        keys: probe::SessionKeys::from_material(&[material; probe::MATERIAL_LEN]),
        remote,
        next_seq: 1,
        owed: 0,
        window: ReplayWindow::default(),
        sibling: 0,
        ready: Arc::new(Notify::new()),
        heard_ready: false,
    }
}

#[test]
fn an_answer_is_delivered_only_for_a_probe_sent_in_its_session() {
    use super::probe::{SessionKeys, MATERIAL_LEN};
    let sessions = ProbeSessions::new(NodeId::from("pinger"), false, InboxShared::new());
    let indicator = NodeId::from("indicator");
    let keys = || SessionKeys::from_material(&[7u8; MATERIAL_LEN]);
    let d = keys().discriminator;
    {
        let mut t = sessions.lock();
        let i = t.insert(session(
            &indicator,
            Role::Pinger,
            7,
            "127.0.0.1:9".parse().unwrap(),
        ));
        t.by_discriminator.insert(d, i);
        t.pinging.insert(indicator.clone(), i);
    }
    let mut seq = 0;
    let mut answer = |nonce| {
        seq += 1;
        let packet = ProbePacket {
            kind: Kind::Answer,
            discriminator: d,
            seq,
            nonce,
            sent_us: 0,
            health: ServiceHealth::Passing,
            opinion: Opinion::Unknown,
        };
        probe::seal(&packet, &keys().answer)
    };
    let now = Instant::now();
    let delivered = |bytes: &[u8]| {
        let reply = sessions.receive(&mut sessions.lock(), bytes, now);
        matches!(reply, Some(Reply::Deliver(..)))
    };
    let unsolicited = || sessions.counters.unsolicited.load(Ordering::Relaxed);

    assert!(!delivered(&answer(1)), "no probe sent yet");
    assert_eq!(unsolicited(), 1);
    for nonce in [10, 11] {
        assert!(sessions.seal_probe(&indicator, nonce, 0).is_some());
    }
    assert!(delivered(&answer(10)));
    assert!(delivered(&answer(11)));
    assert!(!delivered(&answer(12)), "two probes, two answers");
    assert_eq!(unsolicited(), 2);

    // A silent Indicator's count stops at the cap.
    for nonce in 0..u64::from(ANSWERS_OWED_MAX) + 10 {
        sessions.seal_probe(&indicator, nonce, 0).unwrap();
    }
    let answered = (0..u64::from(ANSWERS_OWED_MAX) + 1)
        .filter(|&nonce| delivered(&answer(nonce)))
        .count();
    assert_eq!(answered, usize::from(ANSWERS_OWED_MAX));
    assert_eq!(unsolicited(), 3);
    assert_eq!(sessions.counters.replayed.load(Ordering::Relaxed), 0);
}

#[test]
fn closing_sessions_keeps_every_other_one_reachable_by_discriminator_and_peer() {
    let sessions = ProbeSessions::new(NodeId::from("me"), true, InboxShared::new());
    let peers: Vec<NodeId> = (0..4).map(|k| NodeId::from(format!("peer-{k}"))).collect();
    let remote = |k: usize| SocketAddr::from(([127, 0, 0, 1], 9000 + k as u16));
    // Two sessions per peer, as `open` makes them: material 2k for probing it, 2k+1 for
    // answering it.
    let mut discriminators = Vec::new();
    {
        let mut t = sessions.lock();
        for (k, peer) in peers.iter().enumerate() {
            let material = 2 * k as u8;
            let pinging = t.insert(session(peer, Role::Pinger, material, remote(k)));
            let answering = t.insert(session(peer, Role::Indicator, material + 1, remote(k)));
            let d = [pinging, answering].map(|i| t.sessions[i].keys.discriminator);
            t.by_discriminator.insert(d[0], pinging);
            t.by_discriminator.insert(d[1], answering);
            t.pinging.insert(peer.clone(), pinging);
            discriminators.push(d);
        }
    }
    // The first connection closes (its sessions' places are taken by the last ones), then
    // the third.
    sessions.close(discriminators[0]);
    sessions.close(discriminators[2]);

    let t = sessions.lock();
    assert_eq!(t.sessions.len(), 4);
    assert_eq!(t.by_discriminator.len(), 4);
    for (&d, &i) in &t.by_discriminator {
        assert_eq!(t.sessions[i].keys.discriminator, d);
    }
    assert_eq!(t.pinging.len(), 2);
    for (peer, &i) in &t.pinging {
        assert_eq!(
            (&t.sessions[i].peer, t.sessions[i].role),
            (peer, Role::Pinger)
        );
    }
    drop(t);
    let probes: Vec<OutgoingProbe> = peers
        .iter()
        .map(|peer| OutgoingProbe {
            to: peer.clone(),
            nonce: 1,
            ..Default::default()
        })
        .collect();
    let (mut sealed, mut no_session) = (Vec::new(), Vec::new());
    sessions.seal_probes(&probes, &mut sealed, &mut no_session);
    let to: Vec<(usize, SocketAddr)> = sealed.iter().map(|&(i, to, _)| (i, to)).collect();
    assert_eq!(to, vec![(1, remote(1)), (3, remote(3))]);
    assert_eq!(no_session, vec![0, 2]);
}
