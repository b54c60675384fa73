//! Exactly once under `kill -9` of the leader, at 24 points of a four-step failover run: before
//! and after the journal write of each step's start, between the majority's acknowledgement
//! and the actuator call, while the step runs, and before and after the journal write of its
//! end. The voters of site a's electorate run as real `quorate run` processes; the one that
//! reaches the armed point first freezes there (see `quorate::failpoint`) and is killed.
//!
//! Each step is an `exec` stand-in that deduplicates on its idempotency key (an atomic mkdir)
//! and then appends "EPOCH STEP" to a log. After every kill the run must complete under
//! another voter with a higher term, every step's line must be in the log exactly once and in
//! order, and the killed leader, restarted, must not run anything again.

mod common;

use common::*;
use quorate::localfleet::LocalFleet;
use std::path::Path;
use std::time::Duration;

const STEPS: [&str; 4] = ["s0", "s1", "s2", "s3"];

/// The fast fleet with status every 100 ms (a 600 ms run lease) and four stand-in steps.
fn fleet(octet: u8, dir: &Path) -> String {
    let text = fleet_text(octet).replace("[timing]\n", "[timing]\nstatus_interval_ms = 100\n");
    let cut = text.find("[[watch]]").expect("the fleet has watches");
    let script = format!(
        r#"k="{d}/keys/$(printf %s "$QUORATE_IDEMPOTENCY_KEY" | tr / _)"; mkdir "$k" 2>/dev/null || exit 0; echo "$QUORATE_EPOCH $QUORATE_STEP" >> "{d}/steps.log"; touch "{d}/running-$QUORATE_STEP"; sleep 0.4"#,
        d = dir.display()
    );
    let steps: String = STEPS
        .iter()
        .map(|name| {
            format!(
                "\n[[watch.pipeline.step]]\nname = \"{name}\"\nkind = \"exec\"\ntimeout_s = 10\nargv = [\"/bin/sh\", \"-c\", {script:?}]\n"
            )
        })
        .collect();
    format!(
        "{head}\n[[watch]]\nsite = \"a\"\nby = [\"b\", \"c\"]\ntakeover_delay_s = 0.5\nself_fence_after_s = 0.2\n{steps}\n[[watch]]\nsite = \"b\"\nby = [\"a\", \"c\"]\n",
        head = &text[..cut],
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Kills the leader of a's failover at `point` ("during:STEP" = while STEP's actuator runs;
/// otherwise a failpoint name) and checks the run completes exactly once.
async fn kill_leader_at(octet: u8, point: &str) {
    init_tracing();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("keys")).unwrap();
    let log = work.path().join("steps.log");
    let once = work.path().join("failpoint-reached");
    let mut f = LocalFleet::prepare(&fleet(octet, work.path()), None, true).expect("fleet");
    start_all_but(&mut f, &A_VOTERS).await;
    let once_s = once.display().to_string();
    let during = point.strip_prefix("during:");
    let env: Vec<(&str, &str)> = match during {
        Some(_) => Vec::new(),
        None => vec![
            ("QUORATE_FAILPOINT", point),
            ("QUORATE_FAILPOINT_ONCE", once_s.as_str()),
        ],
    };
    let mut children: Vec<(String, ChildGuard)> = A_VOTERS
        .iter()
        .map(|v| (v.to_string(), spawn_node(&f, v, &env)))
        .collect();
    let rest = Rest::new();
    let voters = apis(&f, &A_VOTERS);
    wait_opinion(&rest, &voters, "a", "up").await;

    f.stop_site(&site("a")).await;
    // Any one voter's view will do: the leader may already be frozen at its point.
    let (run, leader) = eventually("a DOWN verdict of a", || {
        let rest = &rest;
        let voters = &voters;
        async move {
            for (_, addr) in voters {
                if let Ok(v) = rest.try_site(*addr, "a").await {
                    if v["verdict"] == "down" {
                        let leader = v["leader"].as_str().unwrap_or("").to_string();
                        return Ok((v["epoch"].as_u64().unwrap_or(0), leader));
                    }
                }
            }
            Err("no voter shows a down yet".to_string())
        }
    })
    .await;

    // Wait for the point, then kill -9 the node that reached it.
    let victim = eventually(&format!("the leader to reach {point}"), || {
        let once = once.clone();
        let marker = during.map(|s| work.path().join(format!("running-{s}")));
        let leader = leader.clone();
        async move {
            match &marker {
                Some(m) if m.exists() => Ok(leader),
                Some(_) => Err("the step has not started".to_string()),
                None => std::fs::read_to_string(&once)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| "no node reached it".to_string()),
            }
        }
    })
    .await;
    let (_, child) = children
        .iter_mut()
        .find(|(id, _)| *id == victim)
        .expect("the victim is one of the voters");
    child.kill();

    // The run completes under another voter with a higher term.
    let survivors: Vec<_> = voters
        .iter()
        .filter(|(id, _)| *id != victim)
        .cloned()
        .collect();
    let done = eventually("the run to complete under another voter", || {
        let rest = &rest;
        let survivors = &survivors;
        let victim = victim.clone();
        let log = &log;
        async move {
            for (_, addr) in survivors {
                let Ok(runs) = rest.try_get(*addr, "/v1/failovers").await else {
                    continue;
                };
                let Some(r) = runs["failovers"]
                    .as_array()
                    .and_then(|l| l.iter().find(|r| r["id"] == format!("a-{run}")))
                else {
                    continue;
                };
                if r["state"] == "succeeded" && r["leader"] != victim.as_str() {
                    return Ok(r.clone());
                }
            }
            Err(format!("not yet; log {:?}", lines(log)))
        }
    })
    .await;
    assert!(
        done["term"].as_u64().unwrap() > run,
        "a takeover runs under a higher term: {done}"
    );

    // The killed leader comes back: it must not act for the run again.
    let (_, child) = children
        .iter_mut()
        .find(|(id, _)| *id == victim)
        .expect("victim");
    *child = spawn_node(&f, &victim, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let l = lines(&log);
    let names: Vec<&str> = l
        .iter()
        .map(|line| line.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        names, STEPS,
        "each step exactly once, in order (killed at {point}): {l:?}"
    );
    for line in &l {
        let epoch: u64 = line.split(' ').next().unwrap().parse().unwrap();
        assert!(
            epoch >= run,
            "{line}: fencing tokens never go below the run"
        );
    }
    drop(children);
    f.shutdown().await;
}

macro_rules! points {
    ($($name:ident: $octet:expr, $point:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                kill_leader_at($octet, $point).await;
            }
        )*
    };
}

points! {
    killed_before_journaling_the_start_of_s0: 150, "journal-before:started:s0";
    killed_after_journaling_the_start_of_s0: 151, "journal-after:started:s0";
    killed_before_calling_the_actuator_of_s0: 152, "start:s0";
    killed_while_s0_runs: 153, "during:s0";
    killed_before_journaling_the_end_of_s0: 154, "journal-before:finished:s0";
    killed_after_journaling_the_end_of_s0: 155, "journal-after:finished:s0";
    killed_before_journaling_the_start_of_s1: 156, "journal-before:started:s1";
    killed_after_journaling_the_start_of_s1: 157, "journal-after:started:s1";
    killed_before_calling_the_actuator_of_s1: 158, "start:s1";
    killed_while_s1_runs: 159, "during:s1";
    killed_before_journaling_the_end_of_s1: 160, "journal-before:finished:s1";
    killed_after_journaling_the_end_of_s1: 161, "journal-after:finished:s1";
    killed_before_journaling_the_start_of_s2: 162, "journal-before:started:s2";
    killed_after_journaling_the_start_of_s2: 163, "journal-after:started:s2";
    killed_before_calling_the_actuator_of_s2: 164, "start:s2";
    killed_while_s2_runs: 165, "during:s2";
    killed_before_journaling_the_end_of_s2: 166, "journal-before:finished:s2";
    killed_after_journaling_the_end_of_s2: 167, "journal-after:finished:s2";
    killed_before_journaling_the_start_of_s3: 168, "journal-before:started:s3";
    killed_after_journaling_the_start_of_s3: 169, "journal-after:started:s3";
    killed_before_calling_the_actuator_of_s3: 170, "start:s3";
    killed_while_s3_runs: 171, "during:s3";
    killed_before_journaling_the_end_of_s3: 172, "journal-before:finished:s3";
    killed_after_journaling_the_end_of_s3: 173, "journal-after:finished:s3";
}
