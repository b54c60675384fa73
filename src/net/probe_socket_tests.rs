//! The receive path's cutting of probe packets out of GRO batches.

use super::*;
use crate::net::inbox::InboxShared;
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
