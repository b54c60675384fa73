//! What changed between two snapshots a node published, as the events of `/v1/events`. Pure:
//! two snapshots in, a list of changes out, oldest first. The driver publishes a snapshot
//! after every change (at most every 20 ms), and everything an event says is read from the
//! snapshots themselves, so a reader that saw both snapshots sees the same events.
//!
//! Verdicts and vote rounds are lists in the snapshot (verdict history, the last rounds per
//! site), so none is lost even when snapshots in between were never read. Other state
//! (opinions, runs, maintenance, peers) is compared as it stands: a change that came and went
//! between two snapshots this side read is not seen.

use crate::core::types::{NodeId, SiteId};
use crate::node::snapshot::{FailoverView, NodeSnapshot, RoundView, SiteView};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One event before it is numbered: its SSE name and its JSON fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub kind: &'static str,
    pub data: Value,
}

impl Change {
    fn new(kind: &'static str, data: Value) -> Change {
        Change { kind, data }
    }
}

/// Every event name `/v1/events` may send, the opening ones included.
pub const KINDS: &[&str] = &[
    "hello",
    "reset",
    "verdict",
    "opinion",
    "round",
    "run",
    "step",
    "maintenance",
    "hold_down",
    "alarm",
    "fleet_mismatch",
    "peer",
    "lagged",
];

/// The changes from `prev` to `next`, oldest first where the snapshot says the order.
pub fn diff(prev: &NodeSnapshot, next: &NodeSnapshot) -> Vec<Change> {
    let mut out = Vec::new();
    verdicts(prev, next, &mut out);
    for site in &next.sites {
        let Some(before) = prev.sites.iter().find(|s| s.id == site.id) else {
            continue;
        };
        if before.opinion != site.opinion {
            out.push(Change::new(
                "opinion",
                json!({ "site": site.id, "from": before.opinion, "to": site.opinion }),
            ));
        }
        rounds(before, site, &mut out);
        window(
            "maintenance",
            &site.id,
            (&before.maintenance_until, before.maintenance_until_unix_ms),
            (&site.maintenance_until, site.maintenance_until_unix_ms),
            &mut out,
        );
        window(
            "hold_down",
            &site.id,
            (&before.hold_down_until, before.hold_down_until_unix_ms),
            (&site.hold_down_until, site.hold_down_until_unix_ms),
            &mut out,
        );
    }
    alarms(prev, next, &mut out);
    runs(prev, next, &mut out);
    peers(prev, next, &mut out);
    out
}

/// Alarm calls new since `prev` (raised or cleared), by site and source.
fn alarms(prev: &NodeSnapshot, next: &NodeSnapshot, out: &mut Vec<Change>) {
    for a in &next.alarms {
        let known = prev
            .alarms
            .iter()
            .find(|p| p.site == a.site && p.source == a.source);
        if known.is_some_and(|p| p.set_at == a.set_at && p.state == a.state) {
            continue;
        }
        out.push(Change::new(
            "alarm",
            json!({
                "site": a.site,
                "source": a.source,
                "state": a.state,
                "severity": a.severity,
                "reason": a.reason,
                "set_at": a.set_at,
                "by": a.by,
            }),
        ));
    }
}

/// New entries of the verdict history, each with the verdict of its site it replaces.
fn verdicts(prev: &NodeSnapshot, next: &NodeSnapshot, out: &mut Vec<Change>) {
    let key = |v: &crate::node::snapshot::VerdictView| {
        (v.site.clone(), v.slot, v.epoch, v.verdict, v.leader.clone())
    };
    let seen: BTreeSet<_> = prev.history.iter().map(key).collect();
    // What each site's committed verdict was before: replaced in turn by the new ones.
    let mut current: BTreeMap<SiteId, (&'static str, Option<u64>)> = prev
        .sites
        .iter()
        .map(|s| (s.id.clone(), (s.verdict, s.epoch)))
        .collect();
    // The history is newest first.
    for v in next
        .history
        .iter()
        .rev()
        .filter(|v| !seen.contains(&key(v)))
    {
        let replaces = match current.get(&v.site) {
            Some((verdict, epoch)) if *verdict != "none" => {
                json!({ "verdict": verdict, "epoch": epoch })
            }
            _ => Value::Null,
        };
        current.insert(v.site.clone(), (v.verdict, Some(v.epoch)));
        out.push(Change::new(
            "verdict",
            json!({
                "site": v.site,
                "verdict": v.verdict,
                "epoch": v.epoch,
                "slot": v.slot,
                "leader": v.leader,
                "decided_at": v.decided_at,
                "replaces": replaces,
            }),
        ));
    }
}

/// Rounds that ended since `before`: those newer than its newest (the lists are newest first).
fn rounds(before: &SiteView, site: &SiteView, out: &mut Vec<Change>) {
    let key = |r: &RoundView| (r.slot, r.epoch, r.attempt, r.target);
    let new = match before.rounds.first() {
        None => &site.rounds[..],
        Some(newest) => {
            let k = key(newest);
            match site.rounds.iter().position(|r| key(r) == k) {
                Some(i) => &site.rounds[..i],
                // More rounds ended than the snapshot keeps: all it keeps are new.
                None => &site.rounds[..],
            }
        }
    };
    for r in new.iter().rev() {
        let mut data = json!(r);
        data["site"] = json!(site.id);
        out.push(Change::new("round", data));
    }
}

/// An end time the snapshot spells again each time from the wall clock and a monotonic
/// remainder: it wobbles by a millisecond or so, and only a larger move is a change.
const WOBBLE_MS: i64 = 1000;

/// A maintenance window or hold-down of a site set, moved or ended.
fn window(
    kind: &'static str,
    site: &SiteId,
    (before, before_ms): (&Option<String>, Option<i64>),
    (after, after_ms): (&Option<String>, Option<i64>),
    out: &mut Vec<Change>,
) {
    let moved = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() > WOBBLE_MS,
        // Without the numbers, the text decides.
        _ => before != after,
    };
    let state = match (before, after) {
        (None, None) => return,
        (Some(_), None) => "ended",
        (None, Some(_)) => "set",
        (Some(_), Some(_)) if moved(before_ms, after_ms) => "set",
        (Some(_), Some(_)) => return,
    };
    out.push(Change::new(
        kind,
        json!({ "site": site, "state": state, "until": after, "was_until": before }),
    ));
}

/// Runs that appeared or changed state, term or leader, and their steps that started or moved
/// on. Step output is left out: it is shown only to callers with the read token.
fn runs(prev: &NodeSnapshot, next: &NodeSnapshot, out: &mut Vec<Change>) {
    let before: BTreeMap<&str, &FailoverView> =
        prev.failovers.iter().map(|f| (f.id.as_str(), f)).collect();
    // Oldest run first, as far as epochs tell.
    let mut runs: Vec<&FailoverView> = next.failovers.iter().collect();
    runs.sort_by_key(|f| (f.epoch, f.id.clone()));
    for run in runs {
        let old = before.get(run.id.as_str()).copied();
        let moved = old.is_none_or(|o| {
            (o.state, o.term, &o.leader, &o.summary)
                != (run.state, run.term, &run.leader, &run.summary)
        });
        if moved {
            out.push(Change::new(
                "run",
                json!({
                    "id": run.id,
                    "site": run.site,
                    "epoch": run.epoch,
                    "term": run.term,
                    "leader": run.leader,
                    "trigger": run.trigger,
                    "state": run.state,
                    "was_state": old.map(|o| o.state),
                    "summary": run.summary,
                }),
            ));
        }
        for (i, step) in run.steps.iter().enumerate() {
            let was = old.and_then(|o| o.steps.get(i));
            let changed = was.is_none_or(|w| {
                (w.step.as_str(), w.attempts, w.ok, &w.finished_at)
                    != (
                        step.step.as_str(),
                        step.attempts,
                        step.ok,
                        &step.finished_at,
                    )
            });
            if changed {
                out.push(Change::new(
                    "step",
                    json!({
                        "run": run.id,
                        "site": run.site,
                        "index": i,
                        "step": step.step,
                        "name": step.name,
                        "attempts": step.attempts,
                        "ok": step.ok,
                        "started_at": step.started_at,
                        "finished_at": step.finished_at,
                        "duration_ms": step.duration_ms,
                    }),
                ));
            }
        }
    }
}

/// Peers whose fleet file hash (as last reported) differs from this node's.
pub fn mismatched(snap: &NodeSnapshot) -> BTreeMap<&NodeId, &str> {
    snap.peers
        .iter()
        .filter_map(|p| {
            p.fleet_hash
                .as_deref()
                .filter(|h| *h != snap.fleet_hash)
                .map(|h| (&p.node, h))
        })
        .collect()
}

/// Fleet-hash mismatches appearing and clearing, and peers becoming reachable or not.
fn peers(prev: &NodeSnapshot, next: &NodeSnapshot, out: &mut Vec<Change>) {
    let (was, is) = (mismatched(prev), mismatched(next));
    for (peer, hash) in &is {
        if was.get(peer) != Some(hash) {
            out.push(Change::new(
                "fleet_mismatch",
                json!({ "peer": peer, "state": "appeared", "peer_hash": hash, "fleet_hash": next.fleet_hash }),
            ));
        }
    }
    for peer in was.keys().filter(|p| !is.contains_key(*p)) {
        out.push(Change::new(
            "fleet_mismatch",
            json!({ "peer": peer, "state": "cleared", "fleet_hash": next.fleet_hash }),
        ));
    }
    for p in &next.peers {
        let before = prev.peers.iter().find(|q| q.node == p.node);
        if before.is_some_and(|b| b.reachable != p.reachable) {
            out.push(Change::new(
                "peer",
                json!({ "peer": p.node, "site": p.site, "reachable": p.reachable }),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
