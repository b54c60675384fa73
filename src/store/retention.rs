//! How long a node keeps what it no longer needs: committed verdicts, finished failover runs
//! (register and journal) and fleet versions older than [`Retention::max_age`] go, except
//! the newest [`Retention::keep_last`] of each site (of fleet versions: overall), so that a
//! quiet fleet never forgets its latest verdict or run. This module only decides, from the
//! ages a store reports ([`Inventory`]); the store deletes ([`super::Storage::prune`]) and
//! the driver says when. It must never choose a run that has not finished, the newest run or
//! verdict of a site, or the running fleet version: a run that has not finished is what
//! resumes after a crash, and the newest run of a site carries its highest epoch (the fence
//! a stale leader is held to).

use crate::core::types::SiteId;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a node keeps; set with `quorate run --keep-days/--keep-last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Records older than this may be pruned.
    pub max_age: Duration,
    /// The newest this many verdicts and finished runs of each site, and fleet versions,
    /// stay whatever their age.
    pub keep_last: usize,
}

/// 90 days, and the newest 20 of each.
impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_age: Duration::from_secs(90 * DAY_S),
            keep_last: 20,
        }
    }
}

const DAY_S: u64 = 24 * 3600;

/// Why a retention setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("retention must keep at least {} day (got {} s): operators read recent runs and verdicts after an incident", Retention::MIN_AGE.as_secs() / DAY_S, .0.as_secs())]
    TooShort(Duration),
    #[error("retention must keep at least the newest record of each site (keep_last >= 1)")]
    KeepsNothing,
}

impl Retention {
    /// Shortest `max_age` accepted; far beyond any hold-down or takeover delay.
    pub const MIN_AGE: Duration = Duration::from_secs(DAY_S);

    /// `days` days, keeping the newest `keep_last` of each.
    pub fn days(days: u64, keep_last: usize) -> Result<Retention, RetentionError> {
        let r = Retention {
            max_age: Duration::from_secs(days.saturating_mul(DAY_S)),
            keep_last,
        };
        r.validate()?;
        Ok(r)
    }

    pub fn validate(&self) -> Result<(), RetentionError> {
        if self.max_age < Retention::MIN_AGE {
            return Err(RetentionError::TooShort(self.max_age));
        }
        if self.keep_last == 0 {
            return Err(RetentionError::KeepsNothing);
        }
        Ok(())
    }

    /// Records last touched before this Unix time (ms) are old enough to prune.
    fn cutoff_ms(&self, now_unix_ms: i64) -> i64 {
        let age = i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX);
        now_unix_ms.saturating_sub(age)
    }
}

/// How old each prunable record of a store is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub verdicts: Vec<VerdictAge>,
    pub runs: Vec<RunAge>,
    pub fleet_versions: Vec<FleetAge>,
    /// The running fleet's hash: never pruned.
    pub current_fleet: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictAge {
    pub site: SiteId,
    pub slot: u64,
    pub learned_at_unix_ms: i64,
}

/// One run, known by its register, its journal or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAge {
    pub site: SiteId,
    pub run: u64,
    /// Its journal holds a `RunFinished` entry.
    pub finished: bool,
    /// The latest of its journal entries' times and its register's start time.
    pub last_at_unix_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetAge {
    pub hash: String,
    pub loaded_at_unix_ms: i64,
}

/// What to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prune {
    pub verdicts: Vec<(SiteId, u64)>,
    /// (site, run): the register and the whole journal.
    pub runs: Vec<(SiteId, u64)>,
    pub fleet_versions: Vec<String>,
}

impl Prune {
    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty() && self.runs.is_empty() && self.fleet_versions.is_empty()
    }
}

/// What a prune deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub verdicts: usize,
    pub runs: usize,
    pub fleet_versions: usize,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// What `policy` prunes from `inventory` at `now_unix_ms` (wall clock).
pub fn plan(policy: &Retention, now_unix_ms: i64, inventory: &Inventory) -> Prune {
    let cutoff = policy.cutoff_ms(now_unix_ms);
    // Never fewer than one of each: the newest verdict and run of a site are load-bearing.
    let keep = policy.keep_last.max(1);

    let mut verdicts: BTreeMap<&SiteId, Vec<&VerdictAge>> = BTreeMap::new();
    for v in &inventory.verdicts {
        verdicts.entry(&v.site).or_default().push(v);
    }
    let mut prune = Prune::default();
    for (_, mut vs) in verdicts {
        vs.sort_by_key(|v| std::cmp::Reverse(v.slot));
        prune.verdicts.extend(
            vs.into_iter()
                .skip(keep)
                .filter(|v| v.learned_at_unix_ms < cutoff)
                .map(|v| (v.site.clone(), v.slot)),
        );
    }

    let mut runs: BTreeMap<&SiteId, Vec<&RunAge>> = BTreeMap::new();
    for r in &inventory.runs {
        runs.entry(&r.site).or_default().push(r);
    }
    for (_, mut rs) in runs {
        // The newest runs by number, whatever their state: the highest is the site's fence.
        rs.sort_by_key(|r| std::cmp::Reverse(r.run));
        prune.runs.extend(
            rs.into_iter()
                .skip(keep)
                .filter(|r| r.finished && r.last_at_unix_ms < cutoff)
                .map(|r| (r.site.clone(), r.run)),
        );
    }

    let mut fleets: Vec<&FleetAge> = inventory.fleet_versions.iter().collect();
    fleets.sort_by_key(|f| std::cmp::Reverse(f.loaded_at_unix_ms));
    prune.fleet_versions = fleets
        .into_iter()
        .skip(keep)
        .filter(|f| f.loaded_at_unix_ms < cutoff)
        .filter(|f| inventory.current_fleet.as_deref() != Some(f.hash.as_str()))
        .map(|f| f.hash.clone())
        .collect();
    prune
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 24 * 3600 * 1000;
    const NOW: i64 = 1_000 * DAY_MS;

    fn policy(days: u64, keep_last: usize) -> Retention {
        Retention::days(days, keep_last).unwrap()
    }

    fn verdict(site: &str, slot: u64, age_days: i64) -> VerdictAge {
        VerdictAge {
            site: SiteId::from(site),
            slot,
            learned_at_unix_ms: NOW - age_days * DAY_MS,
        }
    }

    fn run(site: &str, run: u64, finished: bool, age_days: i64) -> RunAge {
        RunAge {
            site: SiteId::from(site),
            run,
            finished,
            last_at_unix_ms: NOW - age_days * DAY_MS,
        }
    }

    fn fleet(hash: &str, age_days: i64) -> FleetAge {
        FleetAge {
            hash: hash.into(),
            loaded_at_unix_ms: NOW - age_days * DAY_MS,
        }
    }

    fn key(site: &str, n: u64) -> (SiteId, u64) {
        (SiteId::from(site), n)
    }

    #[test]
    fn the_default_keeps_ninety_days_and_the_newest_twenty() {
        let r = Retention::default();
        assert_eq!(r.max_age, Duration::from_secs(90 * 24 * 3600));
        assert_eq!(r.keep_last, 20);
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn a_retention_shorter_than_a_day_or_keeping_nothing_is_refused() {
        assert!(matches!(
            Retention::days(0, 5),
            Err(RetentionError::TooShort(_))
        ));
        assert_eq!(Retention::days(30, 0), Err(RetentionError::KeepsNothing));
        let msg = Retention::days(0, 5).unwrap_err().to_string();
        assert!(msg.contains("at least 1 day"), "{msg}");
    }

    #[test]
    fn old_verdicts_go_except_the_newest_of_each_site() {
        let inv = Inventory {
            verdicts: vec![
                verdict("a", 0, 200),
                verdict("a", 1, 150),
                verdict("a", 2, 100),
                verdict("a", 3, 10),
                // A quiet site: its only verdicts are old, the newest stays.
                verdict("b", 0, 400),
                verdict("b", 1, 300),
            ],
            ..Inventory::default()
        };
        let p = plan(&policy(90, 1), NOW, &inv);
        assert_eq!(
            p.verdicts,
            vec![key("a", 2), key("a", 1), key("a", 0), key("b", 0)]
        );
        assert!(p.runs.is_empty() && p.fleet_versions.is_empty());
    }

    #[test]
    fn keep_last_holds_that_many_per_site_whatever_their_age() {
        let inv = Inventory {
            verdicts: (0..6).map(|s| verdict("a", s, 500)).collect(),
            ..Inventory::default()
        };
        let p = plan(&policy(90, 4), NOW, &inv);
        assert_eq!(p.verdicts, vec![key("a", 1), key("a", 0)]);
    }

    #[test]
    fn nothing_younger_than_max_age_goes() {
        let inv = Inventory {
            verdicts: (0..50).map(|s| verdict("a", s, 89)).collect(),
            runs: (0..50).map(|r| run("a", r, true, 89)).collect(),
            fleet_versions: (0..50).map(|i| fleet(&format!("h{i}"), 89)).collect(),
            current_fleet: Some("h0".into()),
        };
        assert!(plan(&policy(90, 1), NOW, &inv).is_empty());
    }

    #[test]
    fn a_run_that_has_not_finished_is_never_pruned_however_old() {
        let inv = Inventory {
            runs: vec![
                run("a", 1, false, 900),
                run("a", 2, true, 800),
                run("a", 3, true, 700),
            ],
            ..Inventory::default()
        };
        assert_eq!(plan(&policy(90, 1), NOW, &inv).runs, vec![key("a", 2)]);
    }

    #[test]
    fn the_newest_run_of_each_site_stays_as_its_epoch_fence() {
        let inv = Inventory {
            runs: vec![
                run("a", 4, true, 500),
                run("a", 9, true, 400),
                run("b", 2, true, 600),
            ],
            ..Inventory::default()
        };
        // Run 9 is the newest by number even though run 4 is older by time here.
        assert_eq!(plan(&policy(90, 1), NOW, &inv).runs, vec![key("a", 4)]);
    }

    #[test]
    fn the_running_fleet_version_is_never_pruned() {
        let inv = Inventory {
            fleet_versions: vec![fleet("old", 500), fleet("cur", 400), fleet("new", 300)],
            // Returned to an older version after trying a newer one.
            current_fleet: Some("cur".into()),
            ..Inventory::default()
        };
        assert_eq!(plan(&policy(90, 1), NOW, &inv).fleet_versions, vec!["old"]);
    }

    #[test]
    fn a_clock_before_every_record_prunes_nothing() {
        let inv = Inventory {
            verdicts: (0..5).map(|s| verdict("a", s, 1)).collect(),
            runs: (0..5).map(|r| run("a", r, true, 1)).collect(),
            ..Inventory::default()
        };
        assert!(plan(&policy(90, 1), 0, &inv).is_empty());
    }
}
