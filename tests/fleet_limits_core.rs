//! A fleet at the largest values the fleet file allows, run through the pure node cores for
//! about four simulated weeks: site a is dead from the start, b and c probe it with the
//! longest budget, vote with the longest timeouts and reach a DOWN verdict; then the clock is
//! moved to its far end. Nothing may panic or overflow on the way.

use quorate::config::limits;
use quorate::config::Fleet;
use quorate::core::node::{Action, Boot, Input, NodeCore, ProbeHeard};
use quorate::core::types::{NodeId, Now, SiteId};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The fast three-site fleet with every timing, delay and step value at its limit.
fn fleet_at_the_limits() -> Arc<Fleet> {
    let text = quorate::demo::THREE_SITES_FAST;
    let timing = text
        .find("[timing]")
        .expect("the fleet has a [timing] table");
    let sites = text.find("\n[[site]]").expect("the fleet has sites");
    let watches = text.find("[[watch]]").expect("the fleet has watches");
    let text = format!(
        r#"{}[timing]
probe_interval_ms = 60000
probe_timeout_ms = 60000
retries = 100
vote_timeout_ms = 60000
max_vote_rounds = 100
hold_down_s = 2592000
revote_after_ms = 86400000
status_interval_ms = 60000
{}
[[watch]]
site = "a"
by = ["b", "c"]
takeover_delay_s = 86400
self_fence_after_s = 3600
[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 3600
retries = 1000
backoff_ms = 3600000
argv = ["/bin/true"]
[[watch.isolation]]
name = "withdraw-a"
kind = "exec"
timeout_s = 3600
retries = 1000
backoff_ms = 3600000
argv = ["/bin/true"]
"#,
        &text[..timing],
        &text[sites..watches]
    );
    Arc::new(Fleet::parse(&text).expect("a fleet at the limits is valid"))
}

fn at(us: u64) -> Now {
    Now::at_micros(us)
}

#[test]
fn a_fleet_at_the_largest_allowed_values_reaches_its_verdict_without_a_panic() {
    let fleet = fleet_at_the_limits();
    assert_eq!(fleet.timing.hold_down, limits::MAX_HOLD_DOWN);
    let dead = SiteId::from("a");
    let mut cores: BTreeMap<NodeId, NodeCore> = fleet
        .nodes
        .iter()
        .filter(|n| n.site != dead)
        .map(|n| {
            let core = NodeCore::new(fleet.clone(), &n.id, Boot::default(), at(0), 7)
                .expect("the node is in the fleet");
            (n.id.clone(), core)
        })
        .collect();
    let site_of: BTreeMap<NodeId, SiteId> = fleet
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.site.clone()))
        .collect();

    let mut now = 0u64;
    let mut queue: VecDeque<(NodeId, Input)> = VecDeque::new();
    let mut attempts = 0u32;
    let mut first_attempt_at = None;
    for _ in 0..200_000 {
        // Deliver everything due now, then move the clock to the next deadline.
        while let Some((to, input)) = queue.pop_front() {
            let Some(core) = cores.get_mut(&to) else {
                continue;
            };
            core.handle(at(now), input);
            while let Some(action) = core.poll_action() {
                match action {
                    Action::SendProbe {
                        indicator,
                        nonce,
                        opinion,
                    } if site_of[&indicator] != dead => {
                        // The probe is heard where it arrives (its self-fence listens), and
                        // answered.
                        let heard = ProbeHeard {
                            pinger: to.clone(),
                            at: at(now).mono,
                            opinion,
                        };
                        queue.push_back((indicator.clone(), Input::ProbesHeard(vec![heard])));
                        let answer = Input::ProbeAnswer {
                            indicator,
                            nonce,
                            at: at(now).mono,
                            health: Default::default(),
                        };
                        queue.push_back((to.clone(), answer));
                    }
                    Action::Send { to: peer, msg } => {
                        let from = to.clone();
                        queue.push_back((peer, Input::Message { from, msg }));
                    }
                    Action::Broadcast { msg, except } => {
                        let to_all = site_of.keys().filter(|p| **p != to);
                        for peer in to_all.filter(|p| except.binary_search(p).is_err()) {
                            let from = to.clone();
                            let msg = msg.clone();
                            queue.push_back((peer.clone(), Input::Message { from, msg }));
                        }
                    }
                    Action::StartStep(s) => {
                        attempts += 1;
                        first_attempt_at.get_or_insert(now);
                        // Every attempt fails: the longest retry schedule runs to its end.
                        let done = s.done(false, "exit 1".into());
                        queue.push_back((to.clone(), Input::StepDone(done)));
                    }
                    _ => {}
                }
            }
        }
        let Some(next) = cores.values().filter_map(|c| c.poll_timeout()).min() else {
            break;
        };
        now = now.max(next.as_micros());
        for (id, core) in &cores {
            if core.poll_timeout().is_some_and(|t| t.as_micros() <= now) {
                queue.push_back((id.clone(), Input::Tick));
            }
        }
        if attempts > limits::MAX_STEP_RETRIES as u32 && queue.is_empty() {
            break;
        }
    }
    // Detection (probe budget 6060 s) and the vote ran to a DOWN verdict on every live node.
    for (id, core) in &cores {
        assert!(
            core.voter().verdict(&dead).is_some(),
            "{id} has no verdict on a at {now} µs"
        );
    }
    // Steps are counted when this harness gets that far; it need not for the no-panic claim.
    if let Some(first) = first_attempt_at {
        assert!(first >= 86_400_000_000, "first attempt at {first} µs");
        assert!(attempts <= limits::MAX_STEP_RETRIES as u32 + 1);
    }

    // The far end of the clock: deadlines saturate instead of wrapping.
    for core in cores.values_mut() {
        core.handle(at(u64::MAX - 1), Input::Tick);
        while core.poll_action().is_some() {}
        let _ = core.poll_timeout();
    }
}
