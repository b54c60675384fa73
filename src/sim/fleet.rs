//! The fleet file of a simulated layout, written as TOML and read by `Fleet::parse`, so that
//! every simulated node runs exactly what a deployed node would read (validation included).
//! Addresses are placeholders: the simulated network routes by node index, never by address.
//! The failover scenario adds a plan to the first site's watch (prechecks, exec steps with
//! retries and compensations, make-before-break bgp steps over a declared `[[anycast]]`
//! prefix, a post step and isolation steps) and a plan behind `single_vantage = "manual"` on
//! the second site's watch, which must never run on its own.

use crate::config::{Fleet, Timing};
use crate::core::types::{NodeId, SiteId};
use std::fmt::Write;
use std::time::Duration;

/// One node of the layout.
#[derive(Clone, Debug)]
pub struct LayoutNode {
    pub id: NodeId,
    pub site: SiteId,
    pub voter: bool,
    pub indicator: bool,
}

/// The prefix the failover plan moves.
pub const ANYCAST_PREFIX: &str = "198.19.255.0/24";

/// Delays of the failover plan: the takeover waits out the self-fence plus the probe budget
/// plus the isolation steps' own worst case (see `isolation_bound`).
pub const TAKEOVER_DELAY: Duration = Duration::from_millis(2_500);
pub const SELF_FENCE_AFTER: Duration = Duration::from_secs(1);
/// The failover scenario's status interval: a lease of 1.5 s, so that takeovers fit the run.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(500);

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// What an alarm of the first site does (the alarm scenario's fleets), and the source that
/// may speak for it.
pub const ALARM_SOURCE: &str = "fire-a";
/// The prestage step of the first site's plan, and its compensation.
pub const PRESTAGE_STEP: &str = "reserve-bandwidth";
pub const UNSTAGE_STEP: &str = "cancel-bandwidth";

/// The TOML of the layout. `plans` adds the failover scenario's plans; `on_alarm` (with
/// plans) the first site's `on_alarm`, its prestage step and an alarm source for it.
pub fn toml(
    timing: &Timing,
    sites: &[SiteId],
    nodes: &[LayoutNode],
    plans: bool,
    on_alarm: Option<&str>,
) -> String {
    let mut t = String::new();
    let hold_down_s = timing.hold_down.as_secs().max(1);
    let _ = writeln!(
        t,
        "[timing]\nprobe_interval_ms = {}\nprobe_timeout_ms = {}\nretries = {}\n\
         vote_timeout_ms = {}\nmax_vote_rounds = {}\nhold_down_s = {}\nrevote_after_ms = {}\n\
         status_interval_ms = {}\n",
        ms(timing.probe_interval),
        ms(timing.probe_timeout),
        timing.retries,
        ms(timing.vote_timeout),
        timing.max_vote_rounds,
        hold_down_s,
        ms(timing.revote_after),
        ms(timing.status_interval)
    );
    let witness = sites.len() - 1;
    for (i, s) in sites.iter().enumerate() {
        let kind = match i {
            0 => "primary",
            i if i == witness => "witness",
            _ => "backup",
        };
        let _ = writeln!(t, "[[site]]\nid = \"{s}\"\nkind = \"{kind}\"\n");
    }
    for (k, n) in nodes.iter().enumerate() {
        let mut roles = Vec::new();
        if n.indicator {
            roles.push("\"indicator\"");
        }
        if n.voter {
            roles.extend(["\"pinger\"", "\"voter\""]);
        }
        // Unique placeholder addresses: 10.x.y.z from the node's index.
        let (hi, lo) = (k / 250, k % 250 + 1);
        let _ = writeln!(
            t,
            "[[node]]\nid = \"{}\"\nsite = \"{}\"\nroles = [{}]\nmesh = \"10.0.{hi}.{lo}:7401\"\napi = \"10.0.{hi}.{lo}:7501\"\n",
            n.id,
            n.site,
            roles.join(", ")
        );
    }
    if let (true, Some(_)) = (plans, on_alarm) {
        let _ = writeln!(
            t,
            "[[alarm_source]]\nname = \"{ALARM_SOURCE}\"\nsites = [\"{}\"]\nkind = \"http\"\ntoken_file = \"/etc/quorate/{ALARM_SOURCE}.token\"\n",
            sites[0]
        );
    }
    if plans {
        let _ = writeln!(
            t,
            "[[anycast]]\nprefix = \"{ANYCAST_PREFIX}\"\nsites = [\"{}\", \"{}\"]\nannounced_by = [\"{}\"]\n",
            sites[0], sites[1], sites[0]
        );
    }
    for (i, s) in sites[..witness].iter().enumerate() {
        let by: Vec<String> = sites
            .iter()
            .filter(|o| *o != s)
            .map(|o| format!("\"{o}\""))
            .collect();
        let _ = writeln!(t, "[[watch]]\nsite = \"{s}\"\nby = [{}]", by.join(", "));
        if plans && i == 0 {
            t += &primary_plan(&sites[0], &sites[1], on_alarm);
        } else if plans && i == 1 {
            t += &manual_plan();
        }
        t += "\n";
    }
    t
}

/// The primary's plan, in the order of config/dr-openstack.toml with short timeouts.
fn primary_plan(a: &SiteId, b: &SiteId, on_alarm: Option<&str>) -> String {
    let (on_alarm, prestage) = match on_alarm {
        Some(mode) => (format!("on_alarm = \"{mode}\"\n"), prestage()),
        None => (String::new(), String::new()),
    };
    format!(
        r#"takeover_delay_s = {takeover}
self_fence_after_s = {fence}
{on_alarm}
[watch.pipeline]
{prestage}
[[watch.pipeline.precheck]]
name = "orchestrator-ready"
kind = "exec"
timeout_s = 0.3
retries = 1
backoff_ms = 100
argv = ["/bin/true"]

[[watch.pipeline.step]]
name = "promote-volumes"
kind = "exec"
timeout_s = 0.6
retries = 2
backoff_ms = 100
on_failure = "compensate"
argv = ["/bin/true"]
[watch.pipeline.step.compensation]
name = "demote-volumes"
kind = "exec"
timeout_s = 0.5
argv = ["/bin/true"]

[[watch.pipeline.step]]
name = "announce-anycast-{b}"
kind = "bgp"
site = "{b}"
timeout_s = 0.3
retries = 2
backoff_ms = 100
on_failure = "compensate"
action = "announce"
backend = "bird"
include_file = "/etc/bird/quorate-anycast.conf"
prefixes = ["{ANYCAST_PREFIX}"]
[watch.pipeline.step.compensation]
name = "withdraw-anycast-{b}"
kind = "bgp"
site = "{b}"
timeout_s = 0.3
action = "withdraw"
backend = "bird"
include_file = "/etc/bird/quorate-anycast.conf"
prefixes = ["{ANYCAST_PREFIX}"]

[[watch.pipeline.step]]
name = "withdraw-anycast-{a}"
kind = "bgp"
site = "{a}"
timeout_s = 0.3
retries = 1
backoff_ms = 100
on_failure = "continue"
action = "withdraw"
backend = "gobgp"
api = "198.18.0.10:50051"
prefixes = ["{ANYCAST_PREFIX}"]
[watch.pipeline.step.compensation]
name = "reannounce-anycast-{a}"
kind = "bgp"
site = "{a}"
timeout_s = 0.3
action = "announce"
backend = "gobgp"
api = "198.18.0.10:50051"
prefixes = ["{ANYCAST_PREFIX}"]

[[watch.pipeline.step]]
name = "restore-vms"
kind = "exec"
timeout_s = 0.8
retries = 1
backoff_ms = 200
on_failure = "compensate"
argv = ["/bin/true"]
[watch.pipeline.step.compensation]
name = "release-restored-vms"
kind = "exec"
timeout_s = 0.5
argv = ["/bin/true"]

[[watch.pipeline.post]]
name = "notify-on-call"
kind = "exec"
timeout_s = 0.3
retries = 1
backoff_ms = 100
argv = ["/bin/true"]

[[watch.isolation]]
name = "self-withdraw-anycast-{a}"
kind = "bgp"
site = "{a}"
timeout_s = 0.2
retries = 2
backoff_ms = 100
action = "withdraw"
backend = "bird"
include_file = "/etc/bird/quorate-anycast.conf"
prefixes = ["{ANYCAST_PREFIX}"]
"#,
        takeover = TAKEOVER_DELAY.as_secs_f64(),
        fence = SELF_FENCE_AFTER.as_secs_f64(),
    )
}

/// The alarm scenario's prestage step: reserve bandwidth, released by its compensation.
fn prestage() -> String {
    format!(
        r#"[[watch.pipeline.prestage]]
name = "{PRESTAGE_STEP}"
kind = "exec"
timeout_s = 0.4
retries = 2
backoff_ms = 100
argv = ["/bin/true"]
[watch.pipeline.prestage.compensation]
name = "{UNSTAGE_STEP}"
kind = "exec"
timeout_s = 0.4
retries = 2
backoff_ms = 100
argv = ["/bin/true"]
"#
    )
}

/// A plan that only an operator may start.
fn manual_plan() -> String {
    format!(
        r#"single_vantage = "manual"
takeover_delay_s = {}
self_fence_after_s = {}

[watch.pipeline]
[[watch.pipeline.step]]
name = "start-standby"
kind = "exec"
timeout_s = 0.5
argv = ["/bin/true"]
"#,
        TAKEOVER_DELAY.as_secs_f64(),
        SELF_FENCE_AFTER.as_secs_f64(),
    )
}

/// The fleet of the layout; a layout the fleet file rules refuse is a simulator bug.
pub fn build(
    timing: &Timing,
    sites: &[SiteId],
    nodes: &[LayoutNode],
    plans: bool,
    on_alarm: Option<&str>,
) -> Fleet {
    let text = toml(timing, sites, nodes, plans, on_alarm);
    Fleet::parse(&text)
        .unwrap_or_else(|e| panic!("the simulated fleet file is invalid: {e}\n{text}"))
}
