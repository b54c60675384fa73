//! The fuzz targets' inputs as ordinary tests: every committed corpus file
//! (`fuzz/corpus/<target>/`) and every regression input (`fuzz/regressions/<target>/`) goes
//! through the very function its target calls (`fuzz/src/lib.rs`, included below), so a
//! parser change that breaks on a known input fails `cargo test` without the fuzz toolchain.
//!
//! `write_seed_corpus` (ignored) writes the seeds the corpora started from: real messages of
//! every wire variant, the example fleets, the step tables of those fleets, REST bodies,
//! prefixes, router files and WireGuard configs. See fuzz/README.md.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_checks;

use fuzz_checks::TARGETS;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

/// Runs every file of `<kind>/<target>/` through its target; returns how many ran and the
/// failures, each naming the file and the panic.
fn replay(kind: &str) -> (usize, Vec<String>) {
    let mut ran = 0;
    let mut failures = Vec::new();
    for (name, check) in TARGETS {
        for file in files(&fuzz_dir().join(kind).join(name)) {
            let data = std::fs::read(&file).expect("a corpus file reads");
            ran += 1;
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {}: {why}", file.display()));
            }
        }
    }
    (ran, failures)
}

#[test]
fn every_committed_corpus_file_passes_its_target() {
    for (name, _) in TARGETS {
        let n = files(&fuzz_dir().join("corpus").join(name)).len();
        assert!(n > 0, "fuzz/corpus/{name} has no file");
    }
    let (ran, failures) = replay("corpus");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{ran} corpus files passed");
}

/// A wire version change turns every committed wire input into a version error, which the
/// fuzzer then never gets past: the corpora must speak the version this build speaks, and
/// hold every kind of stream message.
#[test]
fn the_wire_corpora_speak_the_current_wire_version_and_cover_every_message_kind() {
    use quorate::wire::{decode_message, WIRE_VERSION};
    for target in ["wire_datagram", "wire_message"] {
        let all = files(&fuzz_dir().join("corpus").join(target));
        let current = all
            .iter()
            .filter(|f| std::fs::read(f).unwrap().first() == Some(&WIRE_VERSION))
            .count();
        assert!(
            current * 10 >= all.len() * 9,
            "fuzz/corpus/{target}: {current} of {} files carry wire version {WIRE_VERSION}",
            all.len()
        );
    }
    let kinds: std::collections::BTreeSet<&str> =
        files(&fuzz_dir().join("corpus").join("wire_message"))
            .iter()
            .filter_map(|f| decode_message(&std::fs::read(f).unwrap()).ok())
            .map(|m| m.kind())
            .collect();
    for (_, m) in seeds::messages() {
        assert!(
            kinds.contains(m.kind()),
            "no {} message in fuzz/corpus/wire_message",
            m.kind()
        );
    }
}

/// The same for the probe packets: a packet of another version is refused before its MAC is
/// even looked at.
#[test]
fn the_probe_corpus_speaks_the_current_probe_version() {
    use quorate::net::probe::PROBE_VERSION;
    let all = files(&fuzz_dir().join("corpus").join("probe_packet"));
    let current = all
        .iter()
        .filter(|f| std::fs::read(f).unwrap().get(1) == Some(&PROBE_VERSION))
        .count();
    assert!(
        current * 10 >= all.len() * 9,
        "fuzz/corpus/probe_packet: {current} of {} files carry probe version {PROBE_VERSION}",
        all.len()
    );
}

#[test]
fn every_regression_input_passes_its_target() {
    let (ran, failures) = replay("regressions");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{ran} regression inputs passed");
}

mod seeds {
    use quorate::core::health::ServiceHealth;
    use quorate::core::oplock::{AlarmStamp, Decided, LockAccepted, LockMsg, LockValue, SiteView};
    use quorate::core::pipeline::{JournalEntry, JournalKind, Phase, RunOutcome, StepRef};
    use quorate::core::replica::{RunMsg, RunRecord, RunTrigger};
    use quorate::core::types::{
        Accepted, Ballot, NodeId, Opinion, Outcome, SiteId, Value, Verdict, WallTime,
    };
    use quorate::wire::{
        encode_datagram, encode_message, Datagram, IndicatorView, MaintenanceWindow, Message,
        OpinionReport, PeerStatus, VoteMsg,
    };

    fn ballot(epoch: u64, by: &str) -> Ballot {
        Ballot {
            epoch,
            proposer: NodeId::from(by),
        }
    }

    fn verdict(slot: u64) -> Verdict {
        Verdict {
            site: SiteId::from("a"),
            slot,
            value: Value {
                outcome: Outcome::of_slot(slot),
                epoch: slot + 3,
                leader: NodeId::from("b1"),
            },
        }
    }

    fn report() -> OpinionReport {
        OpinionReport {
            opinion: Opinion::Down,
            evidence_age_ms: 240,
            indicators_total: 3,
            indicators_reachable: 1,
            indicators: vec![
                IndicatorView {
                    node: NodeId::from("a1"),
                    reachable: Some(false),
                    misses: 5,
                    last_rtt_us: Some(180),
                    last_seen_age_ms: Some(612),
                    service: ServiceHealth::Failing,
                },
                IndicatorView {
                    node: NodeId::from("a2"),
                    reachable: None,
                    misses: 0,
                    last_rtt_us: None,
                    last_seen_age_ms: None,
                    service: ServiceHealth::Unchecked,
                },
            ],
        }
    }

    fn entry(kind: JournalKind, phase: Phase, index: usize) -> JournalEntry {
        JournalEntry {
            site: SiteId::from("a"),
            epoch: 7,
            term: 7,
            step: StepRef::new(phase, index),
            name: "promote-volumes".to_string(),
            attempt: 1,
            at: WallTime::from_millis(1_767_225_600_000),
            kind,
        }
    }

    fn record() -> RunRecord {
        let step = StepRef::new(Phase::Step, 1);
        RunRecord {
            site: SiteId::from("a"),
            run: 7,
            trigger: RunTrigger::Verdict,
            promised: ballot(7, "b1"),
            journal_ballot: ballot(7, "b1"),
            journal: vec![
                entry(JournalKind::Started, Phase::Precheck, 0),
                entry(
                    JournalKind::Finished {
                        ok: true,
                        detail: "exit 0".into(),
                    },
                    Phase::Step,
                    0,
                ),
                entry(
                    JournalKind::RunFinished {
                        outcome: RunOutcome::Compensated {
                            step,
                            detail: "http 503".into(),
                            compensation_failed: vec![StepRef::new(Phase::Compensation, 0)],
                        },
                    },
                    Phase::Post,
                    0,
                ),
                entry(
                    JournalKind::RunFinished {
                        outcome: RunOutcome::Succeeded {
                            continued: vec![step],
                            post_failed: vec![],
                        },
                    },
                    Phase::Step,
                    2,
                ),
            ],
            forced: true,
            start_at: WallTime::from_millis(1_767_225_602_000),
        }
    }

    fn lock_value() -> LockValue {
        LockValue {
            run: 8,
            leader: NodeId::from("b1"),
            trigger: RunTrigger::Prestage,
            forced: false,
            alarms: vec![AlarmStamp {
                source: "fire-a".into(),
                set_at_unix_ms: 1_767_225_600_000,
                raised: true,
            }],
        }
    }

    fn decided(gen: u64) -> Decided {
        Decided {
            gen,
            value: lock_value(),
        }
    }

    /// One real message of every variant, named by kind.
    pub fn messages() -> Vec<(String, Message)> {
        let site = || SiteId::from("a");
        let msgs = vec![
            Message::Status(PeerStatus {
                node: NodeId::from("b1"),
                fleet_hash: "3f2a9c0d1e5b7a6c".repeat(4),
                opinions: vec![
                    (site(), report()),
                    (SiteId::from("c"), OpinionReport::unknown()),
                ],
                verdicts: vec![verdict(4), verdict(5)],
                maintenance: vec![MaintenanceWindow {
                    site: site(),
                    until_unix_ms: 1_767_229_200_000,
                    set_at_unix_ms: 1_767_225_600_000,
                }],
            }),
            Message::Vote(VoteMsg::Prepare {
                site: site(),
                slot: 4,
                ballot: ballot(2, "b1"),
                round: 1,
                wait_ms: 300,
                last: Some(verdict(3)),
            }),
            Message::Vote(VoteMsg::Promise {
                site: site(),
                slot: 4,
                round: 1,
                ballot: ballot(2, "b1"),
                ok: true,
                promised: ballot(2, "b1"),
                accepted: Some(Accepted {
                    slot: 4,
                    ballot: ballot(1, "c1"),
                    value: verdict(4).value,
                }),
                opinion: report(),
                decided: None,
            }),
            Message::Vote(VoteMsg::Accept {
                site: site(),
                slot: 4,
                ballot: ballot(2, "b1"),
                value: verdict(4).value,
            }),
            Message::Vote(VoteMsg::AcceptReply {
                site: site(),
                slot: 4,
                ballot: ballot(2, "b1"),
                ok: false,
                promised: ballot(3, "c1"),
                decided: Some(verdict(4)),
            }),
            Message::Vote(VoteMsg::Commit {
                verdict: verdict(4),
            }),
            Message::Vote(VoteMsg::FastAccept {
                site: site(),
                slot: 4,
                value: verdict(4).value,
                opinion: Opinion::Down,
                evidence_age_ms: 87,
            }),
            Message::Notified(quorate::wire::NotifiedMsg {
                site: site(),
                key: "verdict/a/4/down".to_string(),
                notifier: "pager".to_string(),
            }),
            Message::Alarms(vec![quorate::wire::Alarm {
                site: site(),
                source: "fire-a".to_string(),
                severity: quorate::wire::AlarmSeverity::Critical,
                reason: "smoke in hall 2".to_string(),
                raised: true,
                set_at_unix_ms: 1_796_300_000_000,
                by: NodeId::from("b1"),
            }]),
            Message::Run(RunMsg::Append {
                record: record(),
                from: 0,
                len: 4,
            }),
            Message::Run(RunMsg::Heartbeat {
                site: site(),
                run: 7,
                ballot: ballot(7, "b1"),
                len: 4,
            }),
            Message::Run(RunMsg::Ack {
                site: site(),
                run: 7,
                ballot: ballot(7, "b1"),
                ok: true,
                promised: ballot(7, "b1"),
                len: 4,
            }),
            Message::Run(RunMsg::Prepare {
                site: site(),
                run: 7,
                ballot: ballot(9, "c1"),
                trigger: RunTrigger::Failback,
                start_at: WallTime::from_millis(1_767_225_602_000),
                held_ballot: ballot(7, "b1"),
                held: 2,
            }),
            Message::Run(RunMsg::Promise {
                site: site(),
                run: 7,
                ballot: ballot(9, "c1"),
                ok: true,
                promised: ballot(9, "c1"),
                record: Some(record()),
                from: 2,
                len: 4,
            }),
            Message::Lock(LockMsg::Prepare {
                site: site(),
                gen: 3,
                ballot: ballot(1, "b1"),
                last: Some(decided(2)),
            }),
            Message::Lock(LockMsg::Promise {
                site: site(),
                gen: 3,
                ballot: ballot(1, "b1"),
                ok: true,
                promised: ballot(1, "b1"),
                accepted: Some(LockAccepted {
                    gen: 3,
                    ballot: ballot(1, "c1"),
                    value: lock_value(),
                }),
                decided: None,
                view: SiteView {
                    epoch: 9,
                    down: Some(9),
                    alarms: lock_value().alarms,
                },
            }),
            Message::Lock(LockMsg::Accept {
                site: site(),
                gen: 3,
                ballot: ballot(1, "b1"),
                value: lock_value(),
                last: None,
            }),
            Message::Lock(LockMsg::AcceptReply {
                site: site(),
                gen: 3,
                ballot: ballot(1, "b1"),
                ok: false,
                promised: ballot(2, "c1"),
                decided: Some(decided(3)),
            }),
            Message::Lock(LockMsg::Commit {
                site: site(),
                decided: decided(3),
            }),
        ];
        msgs.into_iter()
            .enumerate()
            .map(|(i, m)| {
                let kind = match &m {
                    Message::Lock(l) => format!("lock-{i}-{}", lock_kind(l)),
                    other => format!("{i}-{}", other.kind().replace('/', "-")),
                };
                (kind, m)
            })
            .collect()
    }

    fn lock_kind(m: &LockMsg) -> &'static str {
        match m {
            LockMsg::Prepare { .. } => "prepare",
            LockMsg::Promise { .. } => "promise",
            LockMsg::Accept { .. } => "accept",
            LockMsg::AcceptReply { .. } => "accept-reply",
            LockMsg::Commit { .. } => "commit",
        }
    }

    pub fn encoded_messages() -> Vec<(String, Vec<u8>)> {
        messages()
            .into_iter()
            .map(|(k, m)| (k, encode_message(&m).expect("a seed message encodes")))
            .collect()
    }

    /// A probe and its answer sealed with the `probe_packet` target's keys, and a ready packet.
    pub fn sealed_probe_packets() -> Vec<(String, Vec<u8>)> {
        use quorate::net::probe::{seal, Kind, ProbePacket, SessionKeys};
        let keys = SessionKeys::from_material(&crate::fuzz_checks::PROBE_FUZZ_MATERIAL);
        let packet = |kind, seq| ProbePacket {
            kind,
            discriminator: keys.discriminator,
            seq,
            nonce: 0x1234_5678_9abc,
            sent_us: 1_767_225_600_000_000,
            health: ServiceHealth::Unchecked,
            opinion: Opinion::Unknown,
        };
        vec![
            (
                "probe".into(),
                seal(&packet(Kind::Probe, 7), &keys.probe).to_vec(),
            ),
            (
                "answer".into(),
                seal(&packet(Kind::Answer, 8), &keys.answer).to_vec(),
            ),
            (
                "ready".into(),
                seal(&packet(Kind::Ready, 1), &keys.answer).to_vec(),
            ),
            (
                "probe-site-up".into(),
                seal(
                    &ProbePacket {
                        opinion: Opinion::Up,
                        ..packet(Kind::Probe, 10)
                    },
                    &keys.probe,
                )
                .to_vec(),
            ),
            (
                "answer-service-failing".into(),
                seal(
                    &ProbePacket {
                        health: ServiceHealth::Failing,
                        ..packet(Kind::Answer, 9)
                    },
                    &keys.answer,
                )
                .to_vec(),
            ),
        ]
    }

    pub fn encoded_datagrams() -> Vec<(String, Vec<u8>)> {
        vec![
            (
                "probe".into(),
                encode_datagram(&Datagram::Probe {
                    nonce: 0x1234_5678_9abc,
                    sent_us: 1_767_225_600_000_000,
                    opinion: Opinion::Suspect,
                }),
            ),
            (
                "answer".into(),
                encode_datagram(&Datagram::Answer {
                    nonce: 1,
                    sent_us: u64::MAX,
                }),
            ),
        ]
    }
}

/// The step tables of a fleet file's plans, as the actuators receive them (the step's own
/// keys removed), each with its kind.
fn step_tables(text: &str) -> Vec<(String, serde_json::Value)> {
    fn collect(t: &toml::Table, out: &mut Vec<(String, serde_json::Value)>) {
        let mut params = serde_json::Map::new();
        for (k, v) in t {
            if !quorate::config::STEP_KEYS.contains(&k.as_str()) {
                params.insert(k.clone(), serde_json::to_value(v).expect("toml as json"));
            }
        }
        if let Some(kind) = t.get("kind").and_then(|k| k.as_str()) {
            out.push((kind.to_string(), serde_json::Value::Object(params)));
        }
        if let Some(toml::Value::Table(c)) = t.get("compensation") {
            collect(c, out);
        }
    }
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let watches = doc.get("watch").and_then(|w| w.as_array()).cloned();
    for w in watches.unwrap_or_default() {
        let pipeline = w.get("pipeline").and_then(|p| p.as_table());
        let lists = ["precheck", "step", "post"]
            .iter()
            .filter_map(|k| pipeline.and_then(|p| p.get(*k)))
            .chain(w.get("isolation"));
        for list in lists {
            for t in list.as_array().into_iter().flatten() {
                if let Some(t) = t.as_table() {
                    collect(t, &mut out);
                }
            }
        }
    }
    out
}

/// Writes the seeds every corpus started from into fuzz/work/seeds/<target>/ (ignored by git);
/// `cargo fuzz cmin` then folds them into fuzz/corpus/. See fuzz/README.md.
#[test]
#[ignore = "writes the fuzz seed corpora; run by hand (fuzz/README.md)"]
fn write_seed_corpus() {
    let root = fuzz_dir().join("work").join("seeds");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    for (name, bytes) in seeds::encoded_datagrams() {
        write("wire_datagram", &name, &bytes);
    }
    for (name, bytes) in seeds::encoded_messages() {
        write("wire_message", &name, &bytes);
    }
    for (name, bytes) in seeds::sealed_probe_packets() {
        write("probe_packet", &name, &bytes);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut fleets = files(&repo.join("config"));
    fleets.extend(files(&repo.join("tests/fleets/broken")));
    fleets.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    let mut steps = 0;
    for path in &fleets {
        let text = std::fs::read_to_string(path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        write("fleet_toml", &stem, text.as_bytes());
        for (kind, params) in step_tables(&text) {
            let pick = ["exec", "http", "bgp", "vpn"]
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(0) as u8;
            let mut data = vec![pick];
            data.extend(serde_json::to_vec(&params).unwrap());
            write("step_params", &format!("{stem}-{steps}-{kind}"), &data);
            steps += 1;
        }
    }
    assert!(steps > 0, "no step table in the example fleets");
    // The vpn step's two forms, which the example fleets do not use.
    for (name, json) in [
        (
            "vpn-local",
            r#"{"interface":"wg-quorate","action":"up","config":"/etc/wireguard/wg-quorate.conf","addresses":["198.18.5.1/24","2001:db8::1/64"],"netns":"site-b","dry_run":"skip"}"#,
        ),
        (
            "vpn-controller",
            r#"{"interface":"wg0","action":"down","controller_url":"https://vpn.example.net/v1/tunnels","method":"PUT","headers":{"X-Team":"dr"},"success":[200,204],"token_env":"VPN_TOKEN"}"#,
        ),
        (
            "exabgp",
            r#"{"action":"announce","prefixes":["198.19.255.0/24","2001:db8:ff::/48"],"backend":"exabgp","pipe":"/run/quorate/exabgp.fifo","state_file":"/var/lib/quorate/exabgp.json"}"#,
        ),
        (
            "exec-shell",
            r#"{"shell":true,"command":"/usr/local/bin/failover.sh --fast","env":{"MODE":"dr","N":3,"X":true},"cwd":"/tmp"}"#,
        ),
    ] {
        let pick = match name {
            "exabgp" => 2,
            "exec-shell" => 0,
            _ => 3,
        };
        let mut data = vec![pick];
        data.extend(json.as_bytes());
        write("step_params", name, &data);
    }
    for (name, pick, body) in [
        (
            "failover",
            0u8,
            r#"{"site":"a","reason":"site a lost power","force":true}"#,
        ),
        ("drill", 1, r#"{"site":"a"}"#),
        ("failback", 2, r#"{"site":"a"}"#),
        (
            "maintenance-until",
            3,
            r#"{"until":"2030-01-31T22:00:00Z"}"#,
        ),
        ("maintenance-duration", 3, r#"{"duration_s":3600.5}"#),
        ("empty", 1, "  \n"),
    ] {
        let mut data = vec![pick];
        data.extend(body.as_bytes());
        write("rest_body", name, &data);
    }
    for (name, text) in [
        ("v4", "198.19.255.0/24"),
        ("v6", "2001:db8::/48"),
        ("v6-upper", "2001:DB8:0::/32"),
        ("v4-host", "10.0.0.1/24"),
        ("v4-mapped", "::ffff:192.0.2.0/120"),
        ("default", "0.0.0.0/0"),
        ("full", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"),
        ("zero-len", "198.19.255.0/024"),
    ] {
        write("prefix", name, text.as_bytes());
    }
    let bird = "# Written by quorate's bgp actuator: one line per announced prefix.\n\
                # Do not edit while quorate runs; it replaces this file.\n\
                route 198.19.255.0/24 blackhole;\nroute 2001:db8:ff::/48 blackhole;\n";
    write("bgp_router_output", "bird-include", bird.as_bytes());
    write(
        "bgp_router_output",
        "exabgp-state",
        br#"{"announced":["198.19.255.0/24","2001:db8:ff::/48"]}"#,
    );
    write(
        "bgp_router_output",
        "birdc-status",
        b"BIRD 2.0.12 ready.\n\0BIRD 2.0.12\nRouter ID is 198.18.0.2\n\
          Current server time is 2026-11-21 10:00:00.000\n\0Daemon is up and running\n",
    );
    write(
        "bgp_router_output",
        "birdc-configure",
        b"BIRD 2.0.12 ready.\nReading configuration from /etc/bird/bird.conf\n\0Reconfigured\n",
    );
    write(
        "bgp_router_output",
        "birdc-error",
        b"Unable to connect to server control socket (/run/bird/bird.ctl): No such file or directory\n",
    );
    write(
        "wg_config",
        "interface-and-peer",
        b"[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nListenPort = 51820\n\
          FwMark = 0x1\n\n# site b\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
          PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=\n\
          AllowedIPs = 198.18.5.0/24, 2001:db8::/64\nEndpoint = 198.18.0.2:51820\n\
          PersistentKeepalive = 25\n",
    );
    write(
        "wg_config",
        "wg-quick",
        b"[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.0.0.1/24\n",
    );
    // Every seed passes its target as it is.
    let (ran, failures) = {
        let mut failures = Vec::new();
        let mut ran = 0;
        for (name, check) in TARGETS {
            for file in files(&root.join(name)) {
                ran += 1;
                let data = std::fs::read(&file).unwrap();
                if std::panic::catch_unwind(|| check(&data)).is_err() {
                    failures.push(file.display().to_string());
                }
            }
        }
        (ran, failures)
    };
    assert!(failures.is_empty(), "seeds that fail: {failures:?}");
    eprintln!("{ran} seeds written to {}", root.display());
}
