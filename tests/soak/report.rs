//! What the soak concludes from what it recorded: every DOWN verdict classified against the
//! blackout windows, every failover and failback run checked for steps that ran exactly once,
//! and the processes' memory and descriptors.

use crate::fleet::unix_ms;
use crate::procs::{flatness, Flatness, Procs};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A DOWN verdict committed up to this long after site a is seen up again still belongs to
/// the blackout: a vote round in flight when a came back (probe budget 0.08 s + 3 vote rounds
/// of 0.1 s in the testbed's fleet file) commits within 0.38 s; the rest covers the soak's
/// polling interval.
pub const IN_FLIGHT_GRACE_MS: i64 = 2_000;

/// Steps of the testbed's plan allowed to fail without failing the run: withdrawing a's route
/// on a router that the blackout killed (on_failure = "continue"), and the fence of a, whose
/// action may fail on the dark site while its confirmation (a's route gone from the
/// observer), which the run's state covers, decides.
const MAY_FAIL: [&str; 2] = ["withdraw-a-route", "fence-a"];

#[derive(Clone, Debug, Default, Serialize)]
pub struct Blackout {
    pub index: usize,
    /// When the testbed cut a's links (unix ms).
    pub cut_ms: i64,
    /// The epoch of a's verdict before the cut.
    pub epoch_before: u64,
    /// When the soak first saw a DOWN verdict of a newer epoch, and its epoch.
    pub down_seen_ms: Option<i64>,
    pub down_epoch: Option<u64>,
    /// When b's include file held the prefix (quorate told b's router to announce).
    pub b_announced_ms: Option<i64>,
    /// When the failover run of the DOWN epoch was seen succeeded.
    pub failover_done_ms: Option<i64>,
    /// heal + loss back + start of a.
    pub restored_ms: Option<i64>,
    /// When every running voter of a's electorate showed a's verdict up again.
    pub a_up_ms: Option<i64>,
    pub failback_epoch: Option<u64>,
    pub failback_done_ms: Option<i64>,
    /// When the fleet was back to normal (routes reset, observer prefers a).
    pub normal_ms: Option<i64>,
    pub problems: Vec<String>,
}

impl Blackout {
    /// The window in which a DOWN verdict of a is a true one: from the cut until
    /// IN_FLIGHT_GRACE_MS after a was seen up again (or, if it never was, until `end_ms`).
    pub fn window(&self, end_ms: i64) -> (i64, i64) {
        let end = self.a_up_ms.map_or(end_ms, |t| t + IN_FLIGHT_GRACE_MS);
        (self.cut_ms, end)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Kill {
    pub node: String,
    pub killed_ms: i64,
    pub restarted_ms: Option<i64>,
    pub note: Option<String>,
}

/// One verdict as every node that holds it tells it (merged by site and epoch).
#[derive(Clone, Debug, Serialize)]
pub struct SeenVerdict {
    pub site: String,
    pub epoch: u64,
    pub verdict: String,
    pub decided_at_ms: i64,
    pub held_by: Vec<String>,
    /// "blackout N" (a true DOWN), "false", or "-" for UP verdicts.
    pub class: String,
}

pub fn merge_verdicts(histories: &BTreeMap<String, Vec<Value>>) -> Vec<SeenVerdict> {
    let mut by_key: BTreeMap<(String, u64, String), SeenVerdict> = BTreeMap::new();
    for (node, list) in histories {
        for v in list {
            let (Some(site), Some(epoch), Some(verdict)) = (
                v["site"].as_str(),
                v["epoch"].as_u64(),
                v["verdict"].as_str(),
            ) else {
                continue;
            };
            let at = unix_ms(&v["decided_at"]).unwrap_or(0);
            let e = by_key
                .entry((site.to_string(), epoch, verdict.to_string()))
                .or_insert(SeenVerdict {
                    site: site.to_string(),
                    epoch,
                    verdict: verdict.to_string(),
                    decided_at_ms: at,
                    held_by: vec![],
                    class: "-".into(),
                });
            e.decided_at_ms = e.decided_at_ms.min(at);
            e.held_by.push(node.clone());
        }
    }
    let mut out: Vec<_> = by_key.into_values().collect();
    out.sort_by_key(|v| v.decided_at_ms);
    out
}

/// Classifies every DOWN verdict; returns (false verdicts, DOWN verdicts per blackout).
pub fn classify(
    verdicts: &mut [SeenVerdict],
    blackouts: &[Blackout],
    end_ms: i64,
) -> (usize, Vec<Vec<u64>>) {
    let mut per = vec![vec![]; blackouts.len()];
    let mut false_count = 0;
    for v in verdicts.iter_mut().filter(|v| v.verdict == "down") {
        let hit = (v.site == "a")
            .then(|| {
                blackouts.iter().position(|b| {
                    let (from, to) = b.window(end_ms);
                    (from..=to).contains(&v.decided_at_ms)
                })
            })
            .flatten();
        match hit {
            Some(i) => {
                v.class = format!("blackout {}", i + 1);
                per[i].push(v.epoch);
            }
            None => {
                v.class = "false".into();
                false_count += 1;
            }
        }
    }
    (false_count, per)
}

/// The most complete copy of each run of site a (a finished state beats a running one).
pub fn merge_runs(copies: &[Value]) -> BTreeMap<u64, Value> {
    let rank = |r: &Value| match r["state"].as_str() {
        Some("waiting") => 0,
        Some("running") => 1,
        _ => 2 + r["steps"].as_array().map_or(0, |s| s.len()),
    };
    let mut out: BTreeMap<u64, Value> = BTreeMap::new();
    for r in copies.iter().filter(|r| r["site"] == "a") {
        let Some(epoch) = r["epoch"].as_u64() else {
            continue;
        };
        if out.get(&epoch).is_none_or(|old| rank(r) > rank(old)) {
            out.insert(epoch, r.clone());
        }
    }
    out
}

/// The check of one run: state succeeded, every step acted once (one successful execution;
/// at most one for a step allowed to fail), the notify post step acted once per idempotency
/// key (its side effect in notify.log) however often it was called.
#[derive(Debug, Serialize)]
pub struct RunCheck {
    pub id: String,
    pub trigger: String,
    pub state: String,
    pub leader: String,
    pub term: u64,
    /// name -> (successful executions, recorded executions, attempts)
    pub steps: BTreeMap<String, (usize, usize, u64)>,
    pub notify_acted: Option<usize>,
    pub notify_called: Option<usize>,
    pub problems: Vec<String>,
}

pub fn check_run(r: &Value, notify_log: &[String], notify_calls: &[String]) -> RunCheck {
    let epoch = r["epoch"].as_u64().unwrap_or(0);
    let trigger = r["trigger"].as_str().unwrap_or("?").to_string();
    let state = r["state"].as_str().unwrap_or("?").to_string();
    let mut steps: BTreeMap<String, (usize, usize, u64)> = BTreeMap::new();
    for s in r["steps"].as_array().into_iter().flatten() {
        let e = steps
            .entry(s["name"].as_str().unwrap_or("?").to_string())
            .or_default();
        e.0 += usize::from(s["ok"] == true);
        e.1 += 1;
        e.2 += s["attempts"].as_u64().unwrap_or(0);
    }
    let mut problems = vec![];
    if state != "succeeded" {
        problems.push(format!("state {state}, not succeeded"));
    }
    if steps.is_empty() {
        problems.push("no step recorded".into());
    }
    for (name, (ok, _, _)) in &steps {
        let need = if MAY_FAIL.contains(&name.as_str()) {
            0..=1
        } else {
            1..=1
        };
        if !need.contains(ok) {
            problems.push(format!("step {name} succeeded {ok} times"));
        }
    }
    // The notify stand-in logs "EPOCH STEP KEY"; its key is a/EPOCH/post/0/notify.
    let (mut acted, mut called) = (None, None);
    if trigger == "verdict" {
        let key = format!("a/{epoch}/post/");
        let count = |lines: &[String]| {
            lines
                .iter()
                .filter(|l| {
                    l.split_whitespace()
                        .nth(2)
                        .is_some_and(|k| k.starts_with(&key))
                })
                .count()
        };
        let (a, c) = (count(notify_log), count(notify_calls));
        if a != 1 {
            problems.push(format!("notify acted {a} times for {key}*"));
        }
        acted = Some(a);
        called = Some(c);
    }
    RunCheck {
        id: r["id"].as_str().unwrap_or("?").to_string(),
        trigger,
        state,
        leader: r["leader"].as_str().unwrap_or("?").to_string(),
        term: r["term"].as_u64().unwrap_or(0),
        steps,
        notify_acted: acted,
        notify_called: called,
        problems,
    }
}

/// Everything the soak saw, judged.
pub struct Inputs<'a> {
    pub minutes: u64,
    pub seed: u64,
    pub started_ms: i64,
    pub soak_started_ms: i64,
    pub end_ms: i64,
    pub status: &'a str,
    pub fatal: Option<&'a str>,
    pub blackouts: &'a [Blackout],
    pub kills: &'a [Kill],
    pub histories: &'a BTreeMap<String, Vec<Value>>,
    pub run_copies: &'a [Value],
    pub notify_log: &'a [String],
    pub notify_calls: &'a [String],
    pub procs: &'a Procs,
    pub timeline: &'a [String],
}

/// The report (JSON) and its failures; an empty list means the soak passed.
pub fn judge(i: &Inputs) -> (Value, Vec<String>) {
    let mut failures: Vec<String> = i.fatal.iter().map(|s| s.to_string()).collect();
    let mut verdicts = merge_verdicts(i.histories);
    let (false_count, per) = classify(&mut verdicts, i.blackouts, i.end_ms);
    for v in verdicts.iter().filter(|v| v.class == "false") {
        failures.push(format!(
            "false verdict: {} DOWN at epoch {} ({} ms after the soak started), outside every blackout window",
            v.site,
            v.epoch,
            v.decided_at_ms - i.soak_started_ms
        ));
    }
    let mut missed = 0;
    for (b, downs) in i.blackouts.iter().zip(&per) {
        if downs.is_empty() {
            missed += 1;
            failures.push(format!(
                "missed verdict: blackout {} has no DOWN verdict",
                b.index
            ));
        } else if downs.len() > 1 {
            failures.push(format!(
                "blackout {}: {} DOWN verdicts (epochs {downs:?}), not one",
                b.index,
                downs.len()
            ));
        }
        for p in &b.problems {
            failures.push(format!("blackout {}: {p}", b.index));
        }
    }
    let runs = merge_runs(i.run_copies);
    let checks: Vec<RunCheck> = runs
        .values()
        .map(|r| check_run(r, i.notify_log, i.notify_calls))
        .collect();
    for c in &checks {
        for p in &c.problems {
            failures.push(format!("run {}: {p}", c.id));
        }
    }
    // Every true DOWN verdict led to a run, and every blackout to a failback run.
    for (b, downs) in i.blackouts.iter().zip(&per) {
        for e in downs {
            if !runs.get(e).is_some_and(|r| r["trigger"] == "verdict") {
                failures.push(format!("blackout {}: no failover run a-{e}", b.index));
            }
        }
        match b.failback_epoch {
            Some(e) if runs.get(&e).is_some_and(|r| r["trigger"] == "failback") => {}
            Some(e) => failures.push(format!("blackout {}: no failback run a-{e}", b.index)),
            None => {}
        }
    }
    let flat: Vec<Flatness> = flatness(i.procs, i.end_ms);
    for f in &flat {
        if f.judgement != "flat" && f.judgement != "too young" {
            failures.push(format!(
                "{} (pid {}, started by {}): {}",
                f.node, f.pid, f.started_by, f.judgement
            ));
        }
    }
    let report = json!({
        "status": if failures.is_empty() && i.status == "finished" { "passed" } else if i.status == "finished" { "failed" } else { i.status },
        "minutes": i.minutes,
        "seed": i.seed,
        "started_at_ms": i.started_ms,
        "soak_started_at_ms": i.soak_started_ms,
        "ended_at_ms": i.end_ms,
        "soak_s": (i.end_ms - i.soak_started_ms) as f64 / 1000.0,
        "total_s": (i.end_ms - i.started_ms) as f64 / 1000.0,
        "window_rule": format!(
            "a DOWN verdict of a is true when decided from the cut of a blackout until {IN_FLIGHT_GRACE_MS} ms after every running voter of a's electorate shows a's verdict up again; any other DOWN verdict (of a or b) is false"
        ),
        "false_verdicts": false_count,
        "missed_verdicts": missed,
        "failures": failures,
        "blackouts": i.blackouts,
        "kills": i.kills,
        "verdicts": verdicts,
        "runs": checks,
        "processes": flat,
        "incarnations": i.procs.list,
        "timeline": i.timeline,
    });
    (report, failures)
}

/// The human summary of a report.
pub fn summary(r: &Value, failures: &[String]) -> String {
    let mut s = String::new();
    let runs = r["runs"].as_array().map_or(0, |a| a.len());
    s += &format!(
        "soak {}: {} min (seed {}), {:.0} s of soak, {:.0} s in all\n",
        r["status"].as_str().unwrap_or("?"),
        r["minutes"],
        r["seed"],
        r["soak_s"].as_f64().unwrap_or(0.0),
        r["total_s"].as_f64().unwrap_or(0.0)
    );
    s += &format!(
        "blackouts of a: {}; kills: {}; false verdicts: {}; missed verdicts: {}; runs checked: {runs}\n",
        r["blackouts"].as_array().map_or(0, |a| a.len()),
        r["kills"].as_array().map_or(0, |a| a.len()),
        r["false_verdicts"],
        r["missed_verdicts"],
    );
    for b in r["blackouts"].as_array().into_iter().flatten() {
        let rel = |k: &str| {
            b[k].as_i64().map_or("-".to_string(), |t| {
                format!(
                    "{:.1} s",
                    (t - b["cut_ms"].as_i64().unwrap_or(0)) as f64 / 1000.0
                )
            })
        };
        s += &format!(
            "  blackout {}: DOWN epoch {} seen {}, b announced {}, failover done {}, restored {}, a up {}, failback a-{} done {}, normal {}\n",
            b["index"],
            b["down_epoch"],
            rel("down_seen_ms"),
            rel("b_announced_ms"),
            rel("failover_done_ms"),
            rel("restored_ms"),
            rel("a_up_ms"),
            b["failback_epoch"],
            rel("failback_done_ms"),
            rel("normal_ms"),
        );
    }
    for c in r["runs"].as_array().into_iter().flatten() {
        let steps: Vec<String> = c["steps"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(n, v)| format!("{n} ok {}/{} attempts {}", v[0], v[1], v[2]))
            .collect();
        s += &format!(
            "  run {} ({}, leader {} term {}): {}; {}{}\n",
            c["id"].as_str().unwrap_or("?"),
            c["trigger"].as_str().unwrap_or("?"),
            c["leader"].as_str().unwrap_or("?"),
            c["term"],
            c["state"].as_str().unwrap_or("?"),
            steps.join(", "),
            if c["notify_acted"].is_null() {
                String::new()
            } else {
                format!(
                    ", notify acted {} (called {})",
                    c["notify_acted"], c["notify_called"]
                )
            }
        );
    }
    s += "  node  pid      by       age s   RSS KiB start -> end        fds start -> end   judgement\n";
    for p in r["processes"].as_array().into_iter().flatten() {
        let pair = |k: &str| {
            p[k].as_array()
                .map_or("-".to_string(), |a| format!("{} -> {}", a[0], a[1]))
        };
        s += &format!(
            "  {:<5} {:<8} {:<8} {:>6.0}   {:<26} {:<18} {}\n",
            p["node"].as_str().unwrap_or("?"),
            p["pid"],
            p["started_by"].as_str().unwrap_or("?"),
            p["age_s"].as_f64().unwrap_or(0.0),
            pair("rss_kib"),
            pair("fds"),
            p["judgement"].as_str().unwrap_or("?")
        );
    }
    if failures.is_empty() {
        s += "no failure\n";
    } else {
        for f in failures {
            s += &format!("FAILURE: {f}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(site: &str, epoch: u64, at: i64) -> SeenVerdict {
        SeenVerdict {
            site: site.into(),
            epoch,
            verdict: "down".into(),
            decided_at_ms: at,
            held_by: vec!["b1".into()],
            class: "-".into(),
        }
    }

    fn blackout(cut_ms: i64, a_up_ms: Option<i64>) -> Blackout {
        Blackout {
            index: 1,
            cut_ms,
            a_up_ms,
            ..Default::default()
        }
    }

    #[test]
    fn a_down_verdict_in_flight_when_a_returns_belongs_to_the_blackout() {
        let b = [blackout(10_000, Some(30_000))];
        let mut v = vec![
            down("a", 1, 10_400),                          // right after the cut
            down("a", 2, 30_000 + IN_FLIGHT_GRACE_MS),     // in flight, last instant
            down("a", 3, 30_000 + IN_FLIGHT_GRACE_MS + 1), // after the window
            down("a", 4, 9_999),                           // before the cut
            down("b", 5, 20_000),                          // b never blacks out
        ];
        let (false_count, per) = classify(&mut v, &b, 100_000);
        assert_eq!(false_count, 3);
        assert_eq!(per, vec![vec![1, 2]]);
        let classes: Vec<&str> = v.iter().map(|v| v.class.as_str()).collect();
        assert_eq!(
            classes,
            ["blackout 1", "blackout 1", "false", "false", "false"]
        );
    }

    #[test]
    fn a_blackout_that_never_saw_a_return_lasts_until_the_end() {
        let b = [blackout(10_000, None)];
        let mut v = vec![down("a", 1, 90_000)];
        let (false_count, per) = classify(&mut v, &b, 100_000);
        assert_eq!((false_count, per), (0, vec![vec![1]]));
    }

    #[test]
    fn a_step_that_succeeded_twice_or_notify_acting_twice_fails_the_run() {
        let run = json!({
            "id": "a-1", "epoch": 1, "trigger": "verdict", "state": "succeeded",
            "leader": "b1", "term": 2,
            "steps": [
                {"name": "announce-b", "ok": true, "attempts": 1},
                {"name": "announce-b", "ok": true, "attempts": 1},
                {"name": "withdraw-a-route", "ok": false, "attempts": 3},
                {"name": "notify", "ok": true, "attempts": 1}
            ]
        });
        let calls = vec!["1 post/0 a/1/post/0/notify".to_string(); 2];
        let c = check_run(&run, &calls, &calls);
        assert_eq!(
            c.problems,
            [
                "step announce-b succeeded 2 times",
                "notify acted 2 times for a/1/post/*"
            ]
        );
        let once = check_run(&run, &calls[..1], &calls);
        assert_eq!(once.notify_called, Some(2));
        assert_eq!(once.problems, ["step announce-b succeeded 2 times"]);
    }

    #[test]
    fn the_finished_copy_of_a_run_wins_over_a_running_one() {
        let copies = [
            json!({"site": "a", "epoch": 3, "state": "succeeded", "steps": [{}, {}]}),
            json!({"site": "a", "epoch": 3, "state": "running", "steps": [{}]}),
            json!({"site": "b", "epoch": 3, "state": "running"}),
        ];
        let runs = merge_runs(&copies);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[&3]["state"], "succeeded");
    }
}
