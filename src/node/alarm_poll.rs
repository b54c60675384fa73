//! The pollers of `[[alarm_source]] kind = "exec"`: each node named in a source's `nodes`
//! runs its `argv` every `interval_s` and tells its own core when the reading differs from the
//! alarm it knows, through the same command channel the REST API uses (so a poll's raise is
//! entitled exactly as the hook's: for the source's sites, at a voter of their electorate).
//! Sources are read from the published snapshot, so a fleet reload adds and drops pollers.
//!
//! The contract with the program (docs/alarms.md):
//! - it runs with an environment built from nothing but `PATH` (the system directories),
//!   `QUORATE_NODE`, `QUORATE_ALARM_SOURCE` and `QUORATE_ALARM_SITES` (the source's sites,
//!   space-separated), stdin closed, in a process group of its own that is killed at
//!   `timeout_s`;
//! - exit 0: its sites' alarm is clear; exit 1: raised, critical; exit 2: raised, warning;
//!   the last non-empty line it printed is the reason (its first 512 characters);
//! - any other exit, a timeout or a program that cannot start is a failed poll: nothing
//!   changes (the alarm stays as it was), and the failure is logged. A broken poller never
//!   raises or clears anything.

use super::snapshot::NodeSnapshot;
use super::{Command, CommandKind};
use crate::actuators::process::{run_process_with_input, Leftovers, ProcessResult, SAFE_PATH};
use crate::config::alarm::{AlarmSource, AlarmSourceKind};
use crate::core::alarm::MAX_REASON_LEN;
use crate::core::node::AlarmCall;
use crate::core::types::{NodeId, SiteId};
use crate::wire::AlarmSeverity;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// What one poll read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    Clear,
    Raised {
        severity: AlarmSeverity,
        reason: String,
    },
}

/// The reading of a program that exited with `code` after printing `output`; None for a
/// failed poll.
pub fn reading(code: Option<i32>, output: &str) -> Option<Reading> {
    let reason = || {
        let line = output
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("");
        line.chars().take(MAX_REASON_LEN).collect::<String>()
    };
    match code? {
        0 => Some(Reading::Clear),
        1 => Some(Reading::Raised {
            severity: AlarmSeverity::Critical,
            reason: reason(),
        }),
        2 => Some(Reading::Raised {
            severity: AlarmSeverity::Warning,
            reason: reason(),
        }),
        _ => None,
    }
}

/// The exec sources `me` polls.
fn polled_by(snap: &NodeSnapshot, me: &NodeId) -> Vec<AlarmSource> {
    snap.alarm_sources
        .iter()
        .filter(|s| matches!(&s.kind, AlarmSourceKind::Exec { nodes, .. } if nodes.contains(me)))
        .cloned()
        .collect()
}

/// Runs the pollers of `me` until `stop`.
pub async fn run(
    me: NodeId,
    snapshot: watch::Receiver<Arc<NodeSnapshot>>,
    commands: mpsc::Sender<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(AlarmSource, Option<Reading>)>();
    let mut next: BTreeMap<String, Instant> = BTreeMap::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let sources = polled_by(&snapshot.borrow(), &me);
        next.retain(|name, _| sources.iter().any(|s| &s.name == name));
        let now = Instant::now();
        for s in sources {
            let AlarmSourceKind::Exec { interval, .. } = &s.kind else {
                continue;
            };
            if running.contains(&s.name) || next.get(&s.name).is_some_and(|t| *t > now) {
                continue;
            }
            next.insert(s.name.clone(), now + *interval);
            running.insert(s.name.clone());
            let (tx, me) = (tx.clone(), me.clone());
            tokio::spawn(async move {
                let r = poll(&me, &s).await;
                let _ = tx.send((s, r));
            });
        }
        let wake = next
            .values()
            .copied()
            .min()
            .unwrap_or(now + Duration::from_secs(1))
            .min(now + Duration::from_secs(1));
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            done = rx.recv() => {
                if let Some((source, r)) = done {
                    running.remove(&source.name);
                    if let Some(r) = r {
                        apply(&snapshot, &commands, &source, r).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// One run of the source's program.
async fn poll(me: &NodeId, s: &AlarmSource) -> Option<Reading> {
    let AlarmSourceKind::Exec { argv, timeout, .. } = &s.kind else {
        return None;
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().env("PATH", SAFE_PATH);
    let sites: Vec<&str> = s.sites.iter().map(SiteId::as_str).collect();
    cmd.env("QUORATE_NODE", me.as_str())
        .env("QUORATE_ALARM_SOURCE", &s.name)
        .env("QUORATE_ALARM_SITES", sites.join(" "));
    let run = run_process_with_input(cmd, None, *timeout, Leftovers::Kill).await;
    let code = match &run.result {
        ProcessResult::Exited(status) => status.code(),
        _ => None,
    };
    let r = reading(code, &run.output);
    if r.is_none() {
        warn!(source = %s.name, outcome = %run.describe(), "alarm poll failed; the alarm stays as it was (exit 0: clear, 1: raised critical, 2: raised warning)");
    }
    r
}

/// Tells the core a reading that differs from the alarm it knows, site by site.
async fn apply(
    snapshot: &watch::Receiver<Arc<NodeSnapshot>>,
    commands: &mpsc::Sender<Command>,
    source: &AlarmSource,
    r: Reading,
) {
    for site in &source.sites {
        let known_raised = snapshot
            .borrow()
            .alarms
            .iter()
            .find(|a| &a.site == site && a.source == source.name)
            .is_some_and(|a| a.state == "raised");
        let (raised, severity, reason) = match &r {
            Reading::Clear if known_raised => (
                false,
                AlarmSeverity::Warning,
                "poll reads clear".to_string(),
            ),
            Reading::Raised { severity, reason } if !known_raised => {
                (true, *severity, reason.clone())
            }
            _ => continue,
        };
        let call = AlarmCall {
            site: site.clone(),
            source: source.name.clone(),
            severity,
            reason,
            raised,
            via: Some(source.name.clone()),
        };
        let (reply, answer) = oneshot::channel();
        let cmd = Command {
            kind: CommandKind::Alarm(call),
            reply,
        };
        if commands.send(cmd).await.is_err() {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(Ok(_))) => {
                info!(source = %source.name, %site, raised, "alarm poll changed the alarm")
            }
            Ok(Ok(Err(e))) => warn!(source = %source.name, %site, error = %e, "alarm poll refused"),
            _ => warn!(source = %source.name, %site, "alarm poll: the node did not answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_says_the_reading_and_the_last_line_the_reason() {
        assert_eq!(reading(Some(0), "all fine\n"), Some(Reading::Clear));
        assert_eq!(
            reading(Some(1), "polling ups\nON BATTERY 12 min left\n\n"),
            Some(Reading::Raised {
                severity: AlarmSeverity::Critical,
                reason: "ON BATTERY 12 min left".into()
            })
        );
        assert!(matches!(
            reading(Some(2), ""),
            Some(Reading::Raised { severity: AlarmSeverity::Warning, reason }) if reason.is_empty()
        ));
        // Anything else is a failed poll, not a reading.
        assert_eq!(reading(Some(3), "oops"), None);
        assert_eq!(reading(None, ""), None);
        let long = "é".repeat(MAX_REASON_LEN + 3);
        match reading(Some(1), &long) {
            Some(Reading::Raised { reason, .. }) => {
                assert_eq!(reason.chars().count(), MAX_REASON_LEN)
            }
            other => panic!("{other:?}"),
        }
    }
}
