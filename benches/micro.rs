//! Micro-benchmarks of the hot paths of one node: the wire codec for every message, the quorum
//! tally, and one Pinger round. Nothing here touches the network or a clock the cores see:
//! the cores get virtual time, criterion alone measures wall time.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use quorate::core::pinger::{Pinger, PingerAction, PingerConfig};
use quorate::core::quorum::{Count, Electorate};
use quorate::core::types::{
    Accepted, Ballot, NodeId, Opinion, Outcome, SiteId, Time, Value, Verdict,
};
use quorate::wire::{
    self, Datagram, IndicatorView, Message, OpinionReport, PeerStatus, VoteMsg,
    MAX_REPORTED_INDICATORS,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn ballot(epoch: u64) -> Ballot {
    Ballot {
        epoch,
        proposer: NodeId::from("b1"),
    }
}

fn verdict() -> Verdict {
    Verdict {
        site: SiteId::from("a"),
        slot: 0,
        value: Value {
            outcome: Outcome::Down,
            epoch: 7,
            leader: NodeId::from("b1"),
        },
    }
}

/// An opinion as a Pinger reports it for a site of `n` Indicators (at most 32 listed).
fn report(n: usize) -> OpinionReport {
    OpinionReport {
        opinion: Opinion::Up,
        evidence_age_ms: 40,
        indicators_total: n as u32,
        indicators_reachable: n as u32,
        indicators: (0..n.min(MAX_REPORTED_INDICATORS))
            .map(|i| IndicatorView {
                node: NodeId::from(format!("a{}", i + 1)),
                reachable: Some(true),
                misses: 0,
                last_rtt_us: Some(9_500),
                last_seen_age_ms: Some(40),
                service: Default::default(),
            })
            .collect(),
    }
}

fn messages() -> Vec<(&'static str, Message)> {
    let (site, slot) = (SiteId::from("a"), 0);
    let status = PeerStatus {
        node: NodeId::from("c1"),
        fleet_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        opinions: ["a", "b", "c"]
            .iter()
            .map(|s| (SiteId::from(*s), report(3)))
            .collect(),
        verdicts: vec![verdict()],
        maintenance: vec![],
    };
    let value = verdict().value;
    vec![
        ("status_3_sites", Message::Status(status)),
        (
            "prepare",
            Message::Vote(VoteMsg::Prepare {
                site: site.clone(),
                slot,
                ballot: ballot(7),
                round: 1,
                wait_ms: 300,
                last: None,
            }),
        ),
        (
            "promise",
            Message::Vote(VoteMsg::Promise {
                site: site.clone(),
                slot,
                round: 1,
                ballot: ballot(7),
                ok: true,
                promised: ballot(7),
                accepted: Some(Accepted {
                    slot,
                    ballot: ballot(6),
                    value: value.clone(),
                }),
                opinion: report(3),
                decided: None,
            }),
        ),
        (
            "accept",
            Message::Vote(VoteMsg::Accept {
                site: site.clone(),
                slot,
                ballot: ballot(7),
                value,
            }),
        ),
        (
            "accept_reply",
            Message::Vote(VoteMsg::AcceptReply {
                site,
                slot,
                ballot: ballot(7),
                ok: true,
                promised: ballot(7),
                decided: None,
            }),
        ),
        (
            "commit",
            Message::Vote(VoteMsg::Commit { verdict: verdict() }),
        ),
    ]
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let datagrams = [
        (
            "probe",
            Datagram::Probe {
                nonce: 0x9e37_79b9_7f4a_7c15,
                sent_us: 1_754_000_000_000_000,
                opinion: quorate::core::types::Opinion::Up,
            },
        ),
        (
            "answer",
            Datagram::Answer {
                nonce: 0x9e37_79b9_7f4a_7c15,
                sent_us: 1_754_000_000_000_000,
            },
        ),
    ];
    for (name, d) in &datagrams {
        let len = wire::encode_datagram(d).len();
        g.bench_function(format!("datagram_{name}_{len}B"), |b| {
            b.iter(|| {
                let bytes = wire::encode_datagram(black_box(d));
                wire::decode_datagram(black_box(&bytes)).expect("round trip")
            })
        });
    }
    for (name, m) in &messages() {
        let len = wire::encode_message(m).expect("encodes").len();
        g.bench_function(format!("message_{name}_{len}B"), |b| {
            b.iter(|| {
                let bytes = wire::encode_message(black_box(m)).expect("encodes");
                wire::decode_message(black_box(&bytes)).expect("round trip")
            })
        });
    }
    g.finish();
}

/// A whole tally: every member of the electorate votes (a bare majority yes), then the
/// standing is read, as a proposer does over one round.
fn tally(c: &mut Criterion) {
    let mut g = c.benchmark_group("quorum_count");
    for n in [4usize, 100, 1000] {
        let members: Vec<NodeId> = (0..n).map(|i| NodeId::from(format!("v{i}"))).collect();
        let e = Electorate::new(members.iter().cloned());
        let yes = e.majority();
        g.bench_with_input(BenchmarkId::new("tally", n), &n, |b, _| {
            b.iter(|| {
                let mut count = Count::new();
                for (i, m) in members.iter().enumerate() {
                    count.vote(&e, m, i < yes);
                }
                black_box(count.standing(&e))
            })
        });
    }
    g.finish();
}

const INTERVAL: Duration = Duration::from_millis(100);
const RTT: Duration = Duration::from_millis(10);

fn pinger(n: usize) -> Pinger {
    let cfg = PingerConfig {
        interval: INTERVAL,
        timeout: INTERVAL,
        retries: 5,
        startup_grace: Duration::ZERO,
    };
    let inds = (0..n)
        .map(|i| NodeId::from(format!("a{}", i + 1)))
        .collect();
    Pinger::new(cfg, vec![(SiteId::from("a"), inds)], Time::ZERO, 1)
}

/// Sends the round due at `at` and returns its probes (untimed helper).
fn round(p: &mut Pinger, at: Time) -> Vec<(NodeId, u64)> {
    p.handle_timeout(at);
    let mut sent = Vec::new();
    while let Some(a) = p.poll_action() {
        if let PingerAction::SendProbe {
            indicator, nonce, ..
        } = a
        {
            sent.push((indicator, nonce));
        }
    }
    sent
}

fn answer_all(p: &mut Pinger, at: Time, sent: Vec<(NodeId, u64)>) {
    for (ind, nonce) in sent {
        p.handle_answer(at, &ind, nonce);
    }
    while p.poll_action().is_some() {}
}

/// One Pinger round in steady state (every Indicator answered the previous round):
/// `handle_timeout` emits one probe per Indicator and the driver drains them. The answers to
/// each round are fed in untimed, so every measured round starts from the same state.
fn pinger_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("pinger");
    g.sample_size(30);
    for n in [10usize, 1_000, 10_000] {
        g.bench_with_input(BenchmarkId::new("handle_timeout_round", n), &n, |b, &n| {
            let mut p = pinger(n);
            let mut t = Time::ZERO;
            let first = round(&mut p, t);
            answer_all(&mut p, t + RTT, first);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut sent = Vec::with_capacity(n);
                for _ in 0..iters {
                    t = t + INTERVAL;
                    let start = Instant::now();
                    p.handle_timeout(black_box(t));
                    while let Some(a) = p.poll_action() {
                        if let PingerAction::SendProbe {
                            indicator, nonce, ..
                        } = a
                        {
                            sent.push((indicator, nonce));
                        }
                    }
                    total += start.elapsed();
                    answer_all(&mut p, t + RTT, std::mem::take(&mut sent));
                }
                total
            })
        });
        // Per answer: O(1) in the number of Indicators (the tally is kept incrementally).
        // Answers are timed in runs of one round each; the rounds themselves are untimed.
        g.bench_with_input(BenchmarkId::new("handle_answer", n), &n, |b, &n| {
            let mut p = pinger(n);
            let mut t = Time::ZERO;
            let first = round(&mut p, t);
            answer_all(&mut p, t + RTT, first);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    t = t + INTERVAL;
                    let sent = round(&mut p, t);
                    let take = (left as usize).min(n);
                    let at = t + RTT;
                    let start = Instant::now();
                    for (ind, nonce) in &sent[..take] {
                        p.handle_answer(black_box(at), ind, *nonce);
                    }
                    total += start.elapsed();
                    answer_all(&mut p, at, sent[take..].to_vec());
                    left -= take as u64;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = codec, tally, pinger_round
}
criterion_main!(benches);
