//! The receive path's cutting of probe packets out of GRO batches, and the bound on the
//! answers a probe session delivers.

use super::*;
use quinn::TokioRuntime;

fn meta(len: usize, stride: usize) -> RecvMeta {
    RecvMeta {
        addr: "127.0.0.1:9".parse().unwrap(),
        len,
        stride,
        ecn: None,
        dst_ip: None,
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
        let session = Session {
            peer: indicator.clone(),
            role: Role::Pinger,
            keys: keys(),
            remote: "127.0.0.1:9".parse().unwrap(),
            next_seq: 1,
            owed: 0,
            window: ReplayWindow::default(),
            sibling: 0,
            ready: Arc::new(Notify::new()),
            heard_ready: false,
        };
        let i = t.sessions.insert(session);
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

#[tokio::test]
async fn probe_segments_are_cut_out_of_gro_batches_and_the_rest_compacted() {
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sessions = ProbeSessions::new(NodeId::from("me"), true, InboxShared::new());
    let socket = ProbeSocket::new(std_socket, &TokioRuntime, sessions.clone()).unwrap();

    // Batch 0: QUIC, probe, QUIC (the last segment shorter), stride 52.
    // Batch 1: one probe alone. Batch 2: one QUIC datagram.
    let quic_a = [0x41u8; 52];
    let probe_b = [0x01u8; 52];
    let quic_c = [0x4cu8; 30];
    let quic_d = [0xc3u8; 70];
    let mut storage = vec![vec![0u8; 256]; 3];
    storage[0][..52].copy_from_slice(&quic_a);
    storage[0][52..104].copy_from_slice(&probe_b);
    storage[0][104..134].copy_from_slice(&quic_c);
    storage[1][..52].copy_from_slice(&probe_b);
    storage[2][..70].copy_from_slice(&quic_d);
    let mut metas = [meta(134, 52), meta(52, 52), meta(70, 70)];
    let mut bufs: Vec<IoSliceMut> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();

    let kept = socket.take_probes(&mut bufs, &mut metas, 3);

    assert_eq!(kept, 2);
    assert_eq!((metas[0].len, metas[0].stride), (82, 52));
    assert_eq!(&bufs[0][..52], &quic_a);
    assert_eq!(&bufs[0][52..82], &quic_c);
    assert_eq!((metas[1].len, metas[1].stride), (70, 70));
    assert_eq!(&bufs[1][..70], &quic_d);
    let c = &sessions.counters;
    assert_eq!(
        c.unauthenticated.load(Ordering::Relaxed),
        2,
        "both probes, no session"
    );
    assert_eq!(c.udp_totals(), [0, 0, 2, 104]);
}
