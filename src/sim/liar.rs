//! A lying member: an indicator-only node (inside the judged site, authenticated like any
//! member, but entitled to originate nothing but probe answers) that sends forged verdicts
//! (`Commit`, status `verdicts`), forged maintenance calls in its status, and forged run
//! registers (`Append`) and lease renewals (`Heartbeat`), and fast-round acceptances
//! (`FastAccept`) for a DOWN slot, and alarms of its site said to be accepted by a voter of
//! the electorate (the world makes no alarm calls, so any alarm a node stores is forged). Every forged number is at least `FORGED_FROM` (but half of
//! the acceptances, which carry slot 0's fast value exactly as a voter would: counted, one
//! could tip a vote into a false verdict, which the checker catches) and every forged
//! maintenance call is remembered, so the world recognises a forgery that a node accepted and
//! stored. The trust model says none may change anything.

use crate::core::pipeline::{JournalEntry, JournalKind, Phase, StepRef};
use crate::core::replica::{RunMsg, RunRecord, RunTrigger};
use crate::core::types::{Ballot, NodeId, Opinion, Outcome, SiteId, Value, Verdict, WallTime};
use crate::wire::{MaintenanceWindow, Message, PeerStatus, VoteMsg};
use rand::rngs::StdRng;
use rand::Rng;

/// Every epoch, slot, run and term a liar forges is at least this.
pub const FORGED_FROM: u64 = 1 << 40;

/// One forged message about `site`, from `liar`; `real_runs` are runs of the site the world
/// has seen (a forged heartbeat for a real run tries to steal its lease).
pub fn forge(
    rng: &mut StdRng,
    liar: &NodeId,
    site: &SiteId,
    electorate: &[NodeId],
    real_runs: &[u64],
    wall: WallTime,
) -> Message {
    let n = FORGED_FROM + rng.random_range(0..1000u64);
    // A leader from the electorate: the forgery is as plausible as a message can be.
    let leader = electorate[rng.random_range(0..electorate.len())].clone();
    let verdict = Verdict {
        site: site.clone(),
        slot: n & !1,
        value: Value {
            outcome: Outcome::Down,
            epoch: n,
            leader: leader.clone(),
        },
    };
    match rng.random_range(0..7) {
        6 => Message::Alarms(vec![crate::wire::Alarm {
            site: site.clone(),
            source: "forged".to_string(),
            severity: crate::wire::AlarmSeverity::Critical,
            reason: "a fire only the liar sees".to_string(),
            raised: true,
            set_at_unix_ms: wall.as_millis() + rng.random_range(0..1000),
            by: leader,
        }]),
        0 => Message::Vote(VoteMsg::Commit { verdict }),
        // As plausible as it gets: the very value a voter accepts in slot 0's fast round, or
        // in a later even slot's.
        5 => Message::Vote(VoteMsg::FastAccept {
            site: site.clone(),
            slot: if n % 2 == 0 { 0 } else { n & !1 },
            value: Value {
                outcome: Outcome::Down,
                epoch: if n % 2 == 0 { 1 } else { n },
                leader,
            },
            opinion: Opinion::Down,
            evidence_age_ms: 0,
        }),
        1 => Message::Status(PeerStatus {
            node: liar.clone(),
            fleet_hash: String::new(),
            opinions: Vec::new(),
            verdicts: vec![verdict],
            maintenance: Vec::new(),
        }),
        2 => Message::Status(PeerStatus {
            node: liar.clone(),
            fleet_hash: String::new(),
            opinions: Vec::new(),
            verdicts: Vec::new(),
            maintenance: vec![MaintenanceWindow {
                site: site.clone(),
                until_unix_ms: wall.as_millis() + 3_600_000,
                set_at_unix_ms: wall.as_millis() + rng.random_range(0..1000),
            }],
        }),
        3 => {
            let ballot = Ballot {
                epoch: n,
                proposer: liar.clone(),
            };
            let step = StepRef::new(Phase::Step, 0);
            let entry = JournalEntry {
                site: site.clone(),
                epoch: n,
                term: n,
                step,
                name: "forged".into(),
                attempt: 1,
                at: wall,
                kind: JournalKind::Started,
            };
            Message::Run(RunMsg::Append {
                record: RunRecord {
                    site: site.clone(),
                    run: n,
                    trigger: RunTrigger::Manual,
                    promised: ballot.clone(),
                    journal_ballot: ballot,
                    journal: vec![entry],
                    forced: true,
                    start_at: wall,
                },
                from: 0,
                len: 1,
            })
        }
        _ => {
            let run = if real_runs.is_empty() {
                n
            } else {
                real_runs[rng.random_range(0..real_runs.len())]
            };
            Message::Run(RunMsg::Heartbeat {
                site: site.clone(),
                run,
                ballot: Ballot {
                    epoch: n,
                    proposer: liar.clone(),
                },
                len: 0,
            })
        }
    }
}
