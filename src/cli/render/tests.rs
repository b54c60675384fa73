use super::*;
use serde_json::json;

/// 2030-01-01T00:01:00Z: every time in the answers below is a round number of seconds
/// before it.
fn now() -> SystemTime {
    humantime::parse_rfc3339("2030-01-01T00:01:00Z").unwrap()
}

fn status_answer() -> Value {
    json!({
        "node": "b1", "site": "b", "roles": ["indicator", "pinger", "voter"],
        "fleet_hash": "0123456789abcdef0123", "fleet_error": null, "fleet_mismatch": ["c2"],
        "voting_disabled": null, "isolation": null,
        "peers": [
            {"node": "a1", "site": "a", "reachable": false, "fleet_hash": "0123456789abcdef0123",
             "last_seen_ms_ago": 93000},
            {"node": "c2", "site": "c", "reachable": true, "fleet_hash": "ffff456789abcdef0123",
             "last_seen_ms_ago": 120},
            {"node": "c1", "site": "c", "reachable": false, "fleet_hash": null,
             "last_seen_ms_ago": null}
        ],
        "sites": [
            {"id": "a", "opinion": "down", "verdict": "down", "epoch": 3,
             "decided_at": "2030-01-01T00:00:30.250Z", "leader": "c2", "failover": "automatic",
             "hold_down_until": "2030-01-01T00:05:30Z", "maintenance_until": null},
            {"id": "b", "opinion": "up", "verdict": "none", "epoch": null, "decided_at": null,
             "leader": null, "failover": "manual: one site holds a majority",
             "hold_down_until": null, "maintenance_until": "2030-01-01T01:01:00Z"}
        ]
    })
}

/// The rows of a rendered table, each split into its cells (two or more spaces apart).
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn status_shows_sites_with_their_newest_run_and_peers_with_their_fleet_hash() {
    let runs = json!({"failovers": [
        {"id": "a-3", "site": "a", "state": "running", "steps": []},
        {"id": "a-1", "site": "a", "state": "succeeded", "steps": []}
    ]});
    let text = status(&status_answer(), Some(&runs), now());
    let rows = rows(&text);
    assert_eq!(
        rows[0],
        [
            "node b1",
            "site b",
            "roles indicator, pinger, voter",
            "fleet 0123456789ab"
        ]
    );
    assert!(text.contains("peers with another fleet file: c2"), "{text}");
    let header = rows
        .iter()
        .position(|r| r.first().map(String::as_str) == Some("SITE"))
        .expect("sites header");
    assert_eq!(
        rows[header],
        ["SITE", "OPINION", "VERDICT", "EPOCH", "LEADER", "DECIDED", "FAILOVER", "LAST RUN"]
    );
    assert_eq!(
        rows[header + 1],
        [
            "a",
            "down",
            "down",
            "3",
            "c2",
            "2030-01-01T00:00:30Z (29.8 s ago)",
            "automatic",
            "a-3 running"
        ]
    );
    assert_eq!(
        rows[header + 2],
        [
            "b",
            "up",
            "none",
            "-",
            "-",
            "-",
            "manual: one site holds a majority",
            "-"
        ]
    );
    assert!(
        text.contains("a: no automatic failover before 2030-01-01T00:05:30Z (in 4m 30s)"),
        "{text}"
    );
    assert!(
        text.contains("b: maintenance until 2030-01-01T01:01:00Z (in 1h)"),
        "{text}"
    );
    let peers = rows
        .iter()
        .position(|r| r.first().map(String::as_str) == Some("PEER"))
        .expect("peers header");
    assert_eq!(
        rows[peers],
        ["PEER", "SITE", "REACHABLE", "LAST SEEN", "FLEET HASH"]
    );
    assert_eq!(
        rows[peers + 1],
        ["a1", "a", "no", "1m 33s ago", "0123456789ab (same)"]
    );
    assert_eq!(
        rows[peers + 2],
        ["c2", "c", "yes", "120 ms ago", "ffff456789ab (DIFFERS)"]
    );
    assert_eq!(rows[peers + 3], ["c1", "c", "no", "never", "-"]);
}

#[test]
fn columns_line_up_and_lines_carry_no_trailing_space() {
    let text = status(&status_answer(), None, now());
    for line in text.lines() {
        assert_eq!(line, line.trim_end(), "trailing space in {line:?}");
    }
    // Every row of the sites table starts its VERDICT cell in the header's column.
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("SITE")).unwrap();
    let col = lines[header].find("VERDICT").unwrap();
    assert_eq!(&lines[header + 1][col..col + 4], "down");
    assert_eq!(&lines[header + 2][col..col + 4], "none");
}

#[test]
fn an_isolated_node_and_a_refused_fleet_file_are_said_first() {
    let mut answer = status_answer();
    answer["isolation"] = json!({"isolated": true, "heard": 1, "needed": 3, "isolations": 1, "last_steps": "running"});
    answer["fleet_error"] = json!("timing.retries = 0 is below the limit of 1");
    let text = status(&answer, None, now());
    let head: Vec<&str> = text.lines().take(4).collect();
    assert_eq!(
        head[1],
        "fleet file refused: timing.retries = 0 is below the limit of 1"
    );
    assert_eq!(head[2], "peers with another fleet file: c2");
    assert_eq!(
        head[3],
        "ISOLATED: hears 1 of the 3 electorate members it needs; isolation steps: running"
    );
}

#[test]
fn verdicts_are_one_line_each_and_an_empty_history_says_so() {
    let answer = json!({"verdicts": [
        {"site": "a", "verdict": "up", "epoch": 4, "slot": 1, "leader": "b2",
         "decided_at": "2030-01-01T00:00:50Z"},
        {"site": "a", "verdict": "down", "epoch": 3, "slot": 0, "leader": "c2",
         "decided_at": "2030-01-01T00:00:00Z"}
    ]});
    let rows = rows(&verdicts(&answer, now()));
    assert_eq!(
        rows[0],
        ["SITE", "VERDICT", "EPOCH", "SLOT", "LEADER", "DECIDED"]
    );
    assert_eq!(
        rows[1],
        [
            "a",
            "up",
            "4",
            "1",
            "b2",
            "2030-01-01T00:00:50Z (10.0 s ago)"
        ]
    );
    assert_eq!(
        rows[2],
        ["a", "down", "3", "0", "c2", "2030-01-01T00:00:00Z (1m ago)"]
    );
    assert_eq!(
        verdicts(&json!({"verdicts": []}), now()),
        "no verdicts yet\n"
    );
}

fn run_answer() -> Value {
    json!({
        "id": "a-3", "site": "a", "epoch": 3, "term": 5, "leader": "c2", "trigger": "verdict",
        "state": "running", "summary": null,
        "steps": [
            {"step": "precheck/0", "name": "orchestrator-up", "attempts": 1, "ok": true,
             "detail": "200 OK", "started_at": "2030-01-01T00:00:40.000Z",
             "finished_at": "2030-01-01T00:00:40.012Z", "duration_ms": 12.0},
            {"step": "step/0", "name": "announce-b", "attempts": 3, "ok": false,
             "detail": "birdc: connection refused\nretrying", "started_at": "2030-01-01T00:00:40.250Z",
             "finished_at": "2030-01-01T00:00:42.750Z", "duration_ms": 2500.0},
            {"step": "step/1", "name": "promote", "attempts": 1, "ok": false, "detail": "",
             "started_at": "2030-01-01T00:00:43.000Z", "finished_at": null, "duration_ms": null}
        ]
    })
}

#[test]
fn a_run_is_a_timeline_of_its_steps_relative_to_the_first() {
    let text = run(&run_answer(), now());
    let rows = rows(&text);
    assert_eq!(
        rows[0],
        [
            "run a-3",
            "site a",
            "epoch 3",
            "term 5",
            "leader c2",
            "trigger verdict",
            "state running"
        ]
    );
    assert_eq!(
        rows[1],
        ["first step started 2030-01-01T00:00:40Z (20.0 s ago)"]
    );
    assert_eq!(
        rows[3],
        ["#", "STEP", "NAME", "AT", "TOOK", "ATTEMPTS", "RESULT"]
    );
    assert_eq!(
        rows[4],
        [
            "1",
            "precheck/0",
            "orchestrator-up",
            "+0.000 s",
            "12 ms",
            "1",
            "ok"
        ]
    );
    assert_eq!(
        rows[5],
        [
            "2",
            "step/0",
            "announce-b",
            "+0.250 s",
            "2.5 s",
            "3",
            "FAILED"
        ]
    );
    assert_eq!(
        rows[6],
        ["3", "step/1", "promote", "+3.000 s", "-", "1", "running"]
    );
    assert!(
        text.ends_with(
            "output\norchestrator-up:\n    200 OK\nannounce-b:\n    birdc: connection refused\n    retrying\n"
        ),
        "{text}"
    );
}

#[test]
fn a_drill_report_is_titled_as_a_drill() {
    let mut drill = run_answer();
    drill["dry_run"] = json!(true);
    drill["ok"] = json!(false);
    let text = run(&drill, now());
    assert!(
        text.starts_with("drill of site a  site a  epoch 3"),
        "{text}"
    );
}

#[test]
fn the_run_list_counts_the_steps_that_succeeded() {
    let answer = json!({"failovers": [run_answer()]});
    let rows = rows(&failovers(&answer, now()));
    assert_eq!(
        rows[0],
        ["ID", "SITE", "TRIGGER", "STATE", "TERM", "LEADER", "STEPS OK", "STARTED"]
    );
    assert_eq!(
        rows[1],
        [
            "a-3",
            "a",
            "verdict",
            "running",
            "5",
            "c2",
            "1/3",
            "2030-01-01T00:00:40Z (20.0 s ago)"
        ]
    );
    assert_eq!(
        failovers(&json!({"failovers": []}), now()),
        "no failover runs on this node\n"
    );
}

#[test]
fn site_detail_lists_every_indicator_seen_by_every_pinger_and_the_vote_rounds() {
    let answer = json!({
        "id": "a", "opinion": "down", "verdict": "down", "epoch": 3, "slot": 0, "leader": "c2",
        "decided_at": "2030-01-01T00:00:30Z", "failover": "automatic",
        "electorate": ["b1", "b2", "c1", "c2"], "majority": 3,
        "hold_down_until": null, "maintenance_until": null,
        "evidence": [
            {"pinger": "b1", "opinion": "down", "suspect": false, "evidence_age_ms": 40,
             "reported_ms_ago": 0, "indicators": [
                {"node": "a1", "reachable": false, "misses": 5, "last_rtt_us": 350,
                 "last_seen_age_ms": 1500},
                {"node": "a2", "reachable": null, "misses": 0, "last_rtt_us": null,
                 "last_seen_age_ms": null}
            ]}
        ],
        "rounds": [
            {"slot": 0, "target": "down", "epoch": 3, "attempt": 1, "outcome": "down",
             "duration_ms": 3.25, "ended_at": "2030-01-01T00:00:30Z", "answers": [
                {"voter": "b1", "opinion": "down", "suspect": false, "evidence_age_ms": 10,
                 "promised": true},
                {"voter": "c1", "opinion": "up", "suspect": true, "evidence_age_ms": 10,
                 "promised": true}
            ]}
        ]
    });
    let text = site(&answer, now());
    assert!(
        text.contains("electorate   b1, b2, c1, c2 (majority 3)"),
        "{text}"
    );
    let rows = rows(&text);
    let ev = rows
        .iter()
        .position(|r| r.first().is_some_and(|c| c == "PINGER"))
        .expect("evidence");
    assert_eq!(
        rows[ev + 1],
        [
            "b1",
            "down",
            "no",
            "0 ms ago",
            "a1",
            "no",
            "5",
            "0.35 ms",
            "1.5 s ago"
        ]
    );
    assert_eq!(
        rows[ev + 2],
        ["b1", "down", "no", "0 ms ago", "a2", "-", "0", "-", "never"]
    );
    let vr = rows
        .iter()
        .position(|r| r.first().is_some_and(|c| c == "SLOT"))
        .expect("rounds");
    assert_eq!(
        rows[vr + 1],
        [
            "0",
            "down",
            "3",
            "1",
            "down",
            "3.2 ms",
            "2030-01-01T00:00:30Z (30.0 s ago)",
            "b1 down, c1 up (suspect)"
        ]
    );
}

#[test]
fn a_missing_field_shows_as_a_dash_not_a_panic() {
    let text = status(&json!({}), Some(&json!([])), now());
    assert!(
        text.starts_with("node -  site -  roles -  fleet -"),
        "{text}"
    );
    let text = run(&json!({"steps": [{}]}), now());
    assert!(text.contains("running"), "{text}");
    assert_eq!(
        fields(&json!({"site": "a", "maintenance_until": null})),
        "maintenance_until  -\nsite               a\n"
    );
}
