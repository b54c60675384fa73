//! Tables for people from the JSON the REST API answers. Pure: each function takes the
//! node's answer (and the wall time to measure ages against) and returns text, so the
//! layout is tested without a node. A field the answer lacks shows as `-`, never a panic: an
//! older or newer node may answer with other fields.

use comfy_table::{presets, CellAlignment, Table};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// What a missing or null field shows.
const NONE: &str = "-";

/// A borderless table: columns separated by two spaces, headers in capitals.
fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_uppercase()));
    t
}

/// The table's text without the padding comfy-table puts at the start and end of each line.
fn finish(mut t: Table, right_aligned: &[usize]) -> String {
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, 2));
        if right_aligned.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A field as one cell: strings as they are, numbers in decimal, booleans yes/no, lists
/// comma-separated, null `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => NONE.to_string(),
        Value::String(s) if s.is_empty() => NONE.to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => NONE.to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
    }
}

/// `items` of an answer as a list, empty when absent.
fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A duration for people, to the second above a minute ("3m 12s"), in ms below a second.
fn span(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// An RFC 3339 time as the node sent it (to the second) and how long ago that was.
fn when(v: &Value, now: SystemTime) -> String {
    let Some(text) = v.as_str() else {
        return NONE.to_string();
    };
    let Ok(t) = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')) else {
        return text.to_string();
    };
    let shown = humantime::format_rfc3339_seconds(t).to_string();
    match now.duration_since(t) {
        Ok(ago) => format!("{shown} ({} ago)", span(ago)),
        Err(ahead) => format!("{shown} (in {})", span(ahead.duration())),
    }
}

/// The first `n` characters of a fleet hash: enough to tell versions apart.
fn short_hash(v: &Value) -> String {
    v.as_str()
        .map(|h| h.chars().take(12).collect())
        .unwrap_or_else(|| NONE.to_string())
}

/// `GET /v1/status` as a table of sites and one of peers. `failovers` (`GET /v1/failovers`)
/// adds each site's newest run and its state.
pub fn status(status: &Value, failovers: Option<&Value>, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {}  site {}  roles {}  fleet {}",
        cell(&status["node"]),
        cell(&status["site"]),
        cell(&status["roles"]),
        short_hash(&status["fleet_hash"]),
    );
    for (key, label) in [
        ("fleet_error", "fleet file refused"),
        ("voting_disabled", "voting disabled"),
    ] {
        if !status[key].is_null() {
            let _ = writeln!(out, "{label}: {}", cell(&status[key]));
        }
    }
    if !list(status, "fleet_mismatch").is_empty() {
        let _ = writeln!(
            out,
            "peers with another fleet file: {}",
            cell(&status["fleet_mismatch"])
        );
    }
    let iso = &status["isolation"];
    if iso["isolated"] == true {
        let _ = writeln!(
            out,
            "ISOLATED: hears {} of the {} electorate members it needs; isolation steps: {}",
            cell(&iso["heard"]),
            cell(&iso["needed"]),
            cell(&iso["last_steps"]),
        );
    }
    let checks = list(status, "service_checks");
    if !checks.is_empty() {
        let _ = writeln!(
            out,
            "service {} (what this Indicator's probe answers say)",
            cell(&status["service_health"])
        );
        for c in checks {
            let why = c["last_error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  check {} ({} {}) {}{why}",
                cell(&c["name"]),
                cell(&c["kind"]),
                cell(&c["target"]),
                cell(&c["state"]),
            );
        }
    }
    out.push('\n');

    let runs = failovers.map(|f| list(f, "failovers")).unwrap_or(&[]);
    let mut sites = table(&[
        "site", "opinion", "verdict", "epoch", "leader", "decided", "failover", "last run",
    ]);
    let mut notes = Vec::new();
    for s in list(status, "sites") {
        let id = s["id"].as_str().unwrap_or(NONE);
        // Runs are newest first.
        let last_run = runs
            .iter()
            .find(|r| r["site"].as_str() == Some(id))
            .map(|r| format!("{} {}", cell(&r["id"]), cell(&r["state"])))
            .unwrap_or_else(|| NONE.to_string());
        sites.add_row(vec![
            id.to_string(),
            cell(&s["opinion"]),
            cell(&s["verdict"]),
            cell(&s["epoch"]),
            cell(&s["leader"]),
            when(&s["decided_at"], now),
            cell(&s["failover"]),
            last_run,
        ]);
        if !s["maintenance_until"].is_null() {
            notes.push(format!(
                "{id}: maintenance until {}",
                when(&s["maintenance_until"], now)
            ));
        }
        if !s["hold_down_until"].is_null() {
            notes.push(format!(
                "{id}: no automatic failover before {}",
                when(&s["hold_down_until"], now)
            ));
        }
        for a in list(s, "alarms") {
            notes.push(format!(
                "{id}: {} alarm from {} since {} ({}): {} (on_alarm = {})",
                cell(&a["severity"]),
                cell(&a["source"]),
                when(&a["set_at"], now),
                cell(&a["by"]),
                cell(&a["reason"]),
                cell(&s["on_alarm"]),
            ));
        }
    }
    out.push_str(&finish(sites, &[3]));
    for n in notes {
        let _ = writeln!(out, "{n}");
    }
    out.push('\n');

    let own = status["fleet_hash"].as_str();
    let mut peers = table(&["peer", "site", "reachable", "last seen", "fleet hash"]);
    for p in list(status, "peers") {
        let seen = p["last_seen_ms_ago"]
            .as_u64()
            .map(|ms| format!("{} ago", span(Duration::from_millis(ms))))
            .unwrap_or_else(|| "never".to_string());
        let hash = match p["fleet_hash"].as_str() {
            Some(h) if Some(h) == own => format!("{} (same)", short_hash(&p["fleet_hash"])),
            Some(_) => format!("{} (DIFFERS)", short_hash(&p["fleet_hash"])),
            None => NONE.to_string(),
        };
        peers.add_row(vec![
            cell(&p["node"]),
            cell(&p["site"]),
            cell(&p["reachable"]),
            seen,
            hash,
        ]);
    }
    out.push_str(&finish(peers, &[3]));
    out
}

/// `GET /v1/sites/{id}`: the verdict, the electorate, every Pinger's evidence and the last
/// vote rounds of one site.
pub fn site(site: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "site {}  opinion {}  verdict {}  epoch {}  slot {}  leader {}",
        cell(&site["id"]),
        cell(&site["opinion"]),
        cell(&site["verdict"]),
        cell(&site["epoch"]),
        cell(&site["slot"]),
        cell(&site["leader"]),
    );
    let _ = writeln!(out, "decided      {}", when(&site["decided_at"], now));
    let _ = writeln!(out, "failover     {}", cell(&site["failover"]));
    let _ = writeln!(out, "judged by    {}", cell(&site["judge"]));
    let _ = writeln!(
        out,
        "electorate   {} (majority {})",
        cell(&site["electorate"]),
        cell(&site["majority"])
    );
    for (key, label) in [
        ("hold_down_until", "hold-down   "),
        ("maintenance_until", "maintenance "),
    ] {
        if !site[key].is_null() {
            let _ = writeln!(out, "{label} until {}", when(&site[key], now));
        }
    }
    out.push('\n');

    let mut evidence = table(&[
        "pinger",
        "opinion",
        "suspect",
        "reported",
        "indicator",
        "reachable",
        "service",
        "misses",
        "rtt",
        "last answer",
    ]);
    for p in list(site, "evidence") {
        let reported = p["reported_ms_ago"]
            .as_u64()
            .map(|ms| format!("{} ago", span(Duration::from_millis(ms))))
            .unwrap_or_else(|| NONE.to_string());
        let indicators = list(p, "indicators");
        if indicators.is_empty() {
            evidence.add_row(vec![
                cell(&p["pinger"]),
                cell(&p["opinion"]),
                cell(&p["suspect"]),
                reported.clone(),
            ]);
        }
        for i in indicators {
            let rtt = i["last_rtt_us"]
                .as_u64()
                .map(|us| format!("{:.2} ms", us as f64 / 1000.0))
                .unwrap_or_else(|| NONE.to_string());
            let seen = i["last_seen_age_ms"]
                .as_u64()
                .map(|ms| format!("{} ago", span(Duration::from_millis(ms))))
                .unwrap_or_else(|| "never".to_string());
            evidence.add_row(vec![
                cell(&p["pinger"]),
                cell(&p["opinion"]),
                cell(&p["suspect"]),
                reported.clone(),
                cell(&i["node"]),
                cell(&i["reachable"]),
                cell(&i["service"]),
                cell(&i["misses"]),
                rtt,
                seen,
            ]);
        }
    }
    out.push_str("evidence\n");
    out.push_str(&finish(evidence, &[3, 7, 8, 9]));

    let rounds = list(site, "rounds");
    if !rounds.is_empty() {
        let mut t = table(&[
            "slot", "target", "epoch", "attempt", "outcome", "took", "ended", "answers",
        ]);
        for r in rounds {
            let answers: Vec<String> = list(r, "answers")
                .iter()
                .map(|a| {
                    let suspect = if a["suspect"] == true {
                        " (suspect)"
                    } else {
                        ""
                    };
                    format!("{} {}{suspect}", cell(&a["voter"]), cell(&a["opinion"]))
                })
                .collect();
            t.add_row(vec![
                cell(&r["slot"]),
                cell(&r["target"]),
                cell(&r["epoch"]),
                cell(&r["attempt"]),
                cell(&r["outcome"]),
                r["duration_ms"]
                    .as_f64()
                    .map(|ms| format!("{ms:.1} ms"))
                    .unwrap_or_else(|| NONE.to_string()),
                when(&r["ended_at"], now),
                answers.join(", "),
            ]);
        }
        out.push_str("\nvote rounds (newest first)\n");
        out.push_str(&finish(t, &[0, 2, 3, 5]));
    }
    out
}

/// `GET /v1/verdicts`: one line per verdict, newest first.
/// `GET /v1/alarms`: one line per site and source, newest call first.
pub fn alarms(answer: &Value, now: SystemTime) -> String {
    let mut rows: Vec<&Value> = list(answer, "alarms").iter().collect();
    rows.sort_by(|a, b| b["set_at"].as_str().cmp(&a["set_at"].as_str()));
    let mut t = table(&["site", "source", "state", "severity", "set", "by", "reason"]);
    for a in rows {
        t.add_row(vec![
            cell(&a["site"]),
            cell(&a["source"]),
            cell(&a["state"]),
            cell(&a["severity"]),
            when(&a["set_at"], now),
            cell(&a["by"]),
            cell(&a["reason"]),
        ]);
    }
    finish(t, &[])
}

pub fn verdicts(answer: &Value, now: SystemTime) -> String {
    let verdicts = list(answer, "verdicts");
    if verdicts.is_empty() {
        return "no verdicts yet\n".to_string();
    }
    let mut t = table(&["site", "verdict", "epoch", "slot", "leader", "decided"]);
    for v in verdicts {
        t.add_row(vec![
            cell(&v["site"]),
            cell(&v["verdict"]),
            cell(&v["epoch"]),
            cell(&v["slot"]),
            cell(&v["leader"]),
            when(&v["decided_at"], now),
        ]);
    }
    finish(t, &[2, 3])
}

/// `GET /v1/failovers`: one line per run, newest first.
pub fn failovers(answer: &Value, now: SystemTime) -> String {
    let runs = list(answer, "failovers");
    if runs.is_empty() {
        return "no failover runs on this node\n".to_string();
    }
    let mut t = table(&[
        "id", "site", "trigger", "state", "term", "leader", "steps ok", "started",
    ]);
    for r in runs {
        let steps = list(r, "steps");
        let ok = steps.iter().filter(|s| s["ok"] == true).count();
        let started = steps
            .first()
            .map(|s| when(&s["started_at"], now))
            .unwrap_or_else(|| NONE.to_string());
        t.add_row(vec![
            cell(&r["id"]),
            cell(&r["site"]),
            cell(&r["trigger"]),
            cell(&r["state"]),
            cell(&r["term"]),
            cell(&r["leader"]),
            format!("{ok}/{}", steps.len()),
            started,
        ]);
    }
    finish(t, &[4, 6])
}

/// One run (`GET /v1/failovers/{id}`) or a drill's report: the run's facts, then its steps
/// in the order they ran, each with its start relative to the first step, its duration and
/// its outcome, then each step's output.
pub fn run(run: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let title = if run["dry_run"] == true {
        format!("drill of site {}", cell(&run["site"]))
    } else {
        format!("run {}", cell(&run["id"]))
    };
    let _ = write!(out, "{title}  site {}", cell(&run["site"]));
    for key in ["epoch", "term", "leader", "trigger", "state"] {
        if !run[key].is_null() {
            let _ = write!(out, "  {key} {}", cell(&run[key]));
        }
    }
    out.push('\n');
    if !run["summary"].is_null() {
        let _ = writeln!(out, "summary: {}", cell(&run["summary"]));
    }
    let steps = list(run, "steps");
    if steps.is_empty() {
        out.push_str("no step has started\n");
        return out;
    }
    let first = steps
        .first()
        .and_then(|s| s["started_at"].as_str())
        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
    let _ = writeln!(
        out,
        "first step started {}",
        when(&steps[0]["started_at"], now)
    );
    out.push('\n');
    let mut t = table(&["#", "step", "name", "at", "took", "attempts", "result"]);
    for (i, s) in steps.iter().enumerate() {
        let at = s["started_at"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
            .zip(first)
            .and_then(|(t, f)| t.duration_since(f).ok())
            .map(|d| format!("+{:.3} s", d.as_secs_f64()))
            .unwrap_or_else(|| NONE.to_string());
        let took = s["duration_ms"]
            .as_f64()
            .map(|ms| span(Duration::from_secs_f64(ms.max(0.0) / 1000.0)))
            .unwrap_or_else(|| NONE.to_string());
        let result = match (s["finished_at"].is_null(), s["ok"] == true) {
            (true, _) => "running",
            (false, true) => "ok",
            (false, false) => "FAILED",
        };
        t.add_row(vec![
            (i + 1).to_string(),
            cell(&s["step"]),
            cell(&s["name"]),
            at,
            took,
            cell(&s["attempts"]),
            result.to_string(),
        ]);
    }
    out.push_str(&finish(t, &[0, 3, 4, 5]));
    let details: Vec<(&Value, &str)> = steps
        .iter()
        .filter_map(|s| s["detail"].as_str().map(|d| (&s["name"], d.trim_end())))
        .filter(|(_, d)| !d.is_empty())
        .collect();
    if !details.is_empty() {
        out.push_str("\noutput\n");
        for (name, detail) in details {
            let _ = writeln!(out, "{}:", cell(name));
            for line in detail.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

/// The answer of a mutating call that is not a run (a started failover or failback, a
/// maintenance window): its fields, one per line, by name.
pub fn fields(answer: &Value) -> String {
    let Some(map) = answer.as_object() else {
        return format!("{answer}\n");
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in map {
        let _ = writeln!(out, "{k:width$}  {}", cell(v));
    }
    out
}

#[cfg(test)]
mod tests;
