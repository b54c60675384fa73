//! The proposer's side of what the members know beyond the lock: each Promise carries the
//! acceptor's `SiteView`, and a proposer with nothing accepted to complete fits its own value
//! to the views of the majority that promised.

use super::{AlarmStamp, LockAccepted, LockValue, ProposalEnd, SiteView};
use crate::core::alarm::MAX_SOURCES_PER_SITE;
use crate::core::replica::RunTrigger;
use crate::core::types::{Ballot, EpochKind};
use std::collections::BTreeMap;
use std::time::Duration;

/// An acceptor's Promise, as its proposer weighs it.
pub(super) struct PromiseAnswer {
    pub(super) ok: bool,
    pub(super) promised: Ballot,
    pub(super) accepted: Option<LockAccepted>,
    pub(super) view: SiteView,
}

/// The proposer's own value, once a majority promised with nothing accepted, fitted to what
/// the promisers know (every majority holds a member that accepted each verdict, and, unless
/// the member that took it crashed before telling anyone, one that holds each alarm call):
/// - its run goes above every epoch they know of the site: a member that just restarted may
///   not know a verdict the others committed, and a run sharing a verdict's epoch would be two
///   runs under one journal key;
/// - an alarm reaction is dropped when they know a DOWN verdict newer than the lock's last
///   decision (`last_run`): that verdict's failover is due, and a run above it would fence it
///   out;
/// - an alarm reaction is dropped when the newest calls they know (with the proposer's own)
///   do not ask for it: a prestage or alarm failover needs an alarm still raised, an unstage
///   none;
/// - its basis becomes those newest calls, so that later reactions wait for members to learn
///   them.
pub(super) fn fit_own(
    own: &LockValue,
    views: &[&SiteView],
    last_run: u64,
    bound: Duration,
) -> Result<LockValue, ProposalEnd> {
    let alarms = newest_calls(
        own.alarms
            .iter()
            .chain(views.iter().flat_map(|v| &v.alarms)),
    );
    let raised = alarms.iter().any(|a| a.raised);
    match own.trigger {
        RunTrigger::Prestage | RunTrigger::Unstage | RunTrigger::Alarm => {
            let down = views
                .iter()
                .filter_map(|v| v.down)
                .filter(|d| *d > last_run);
            if let Some(verdict) = down.max() {
                return Err(ProposalEnd::Outrun { verdict });
            }
            if raised == (own.trigger == RunTrigger::Unstage) {
                return Err(ProposalEnd::Outdated);
            }
        }
        RunTrigger::Verdict | RunTrigger::Manual | RunTrigger::Failback => {}
    }
    let known = views.iter().map(|v| v.epoch).max().unwrap_or(0);
    let run = match EpochKind::LockRun.above(known) {
        Some(above) => own.run.max(above),
        None => return Err(ProposalEnd::Undecided { bound }),
    };
    Ok(LockValue {
        run,
        alarms,
        ..own.clone()
    })
}

/// The newest call per source among `calls`, sorted by source; at most
/// `MAX_SOURCES_PER_SITE` of them (the newest, should members know different sources).
pub fn newest_calls<'a>(calls: impl Iterator<Item = &'a AlarmStamp>) -> Vec<AlarmStamp> {
    let mut newest: BTreeMap<&str, &AlarmStamp> = BTreeMap::new();
    for c in calls {
        let e = newest.entry(c.source.as_str()).or_insert(c);
        if c.set_at_unix_ms > e.set_at_unix_ms {
            *e = c;
        }
    }
    let mut out: Vec<AlarmStamp> = newest.into_values().cloned().collect();
    if out.len() > MAX_SOURCES_PER_SITE {
        out.sort_by_key(|a| std::cmp::Reverse(a.set_at_unix_ms));
        out.truncate(MAX_SOURCES_PER_SITE);
        out.sort();
    }
    out
}
