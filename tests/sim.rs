//! The simulator's own guarantees: thousands of faulty seeded worlds keep every invariant, a
//! deliberately wrong electorate is caught, every failover rule switched off is caught by its
//! invariant, and a seed reproduces its run exactly.

use quorate::core::node::BrokenRules;
use quorate::sim::actuator::StepProfile;
use quorate::sim::faults::Scenario;
use quorate::sim::invariants::ViolationKind;
use quorate::sim::{run_many, run_seed, SimConfig};

#[test]
fn two_thousand_seeds_across_every_scenario_keep_every_invariant() {
    let cfg = SimConfig::default();
    let sum = run_many(&cfg, 0..2_000);
    eprintln!("{sum}");
    if let Some(v) = sum.violations.first() {
        panic!("{v}\n{}", v.trace.join("\n"));
    }
    assert_eq!(sum.seeds, 2_000);
    assert_eq!(sum.false_verdicts, 0);
    // Every blackout scenario with a live majority was decided.
    assert!(sum.detect_first_ms.len() > 600, "{sum}");
}

#[test]
fn a_minority_electorate_is_caught_deciding_during_a_wan_cut() {
    let cfg = SimConfig {
        scenario: Some(Scenario::WanCut),
        broken_quorum: true,
        ..SimConfig::default()
    };
    let sum = run_many(&cfg, 0..20);
    assert!(!sum.violations.is_empty(), "the checker missed it: {sum}");
    for v in &sum.violations {
        assert!(
            matches!(
                v.kind,
                ViolationKind::FalseVerdict | ViolationKind::Agreement
            ),
            "{v}"
        );
        assert!(!v.trace.is_empty());
    }
    // The same worlds with the right electorate are fine.
    let sound = run_many(
        &SimConfig {
            broken_quorum: false,
            ..cfg
        },
        0..20,
    );
    assert!(sound.violations.is_empty(), "{sound}");
}

#[test]
fn the_same_seed_gives_the_identical_report_twice() {
    let cfg = SimConfig::default();
    for seed in [0, 1, 2, 3, 4, 5, 1234] {
        let a = run_seed(&cfg, seed).expect("seed passes");
        let b = run_seed(&cfg, seed).expect("seed passes");
        assert_eq!(a, b, "seed {seed}");
    }
    let fast = SimConfig::default().fast();
    assert_eq!(run_seed(&fast, 42).unwrap(), run_seed(&fast, 42).unwrap());
}

#[test]
fn a_blackout_is_decided_within_the_bound_under_the_fast_profile_and_loss() {
    let cfg = SimConfig {
        scenario: Some(Scenario::Blackout),
        loss: 0.1,
        ..SimConfig::default()
    }
    .fast();
    let sum = run_many(&cfg, 0..100);
    assert!(sum.violations.is_empty(), "{:?}", sum.violations.first());
    assert_eq!(sum.detect_first_ms.len(), 100, "{sum}");
}

/// Seeds that once failed while the simulator was built, kept as they failed. Both were the
/// fault model's or the checker's error, not the core's: network delays near the fast
/// profile's 20 ms probe timeout made honest Pingers miss probes, and at 30 % loss one Pinger
/// lost 15 probes in a row (about 4e-5 per window), which the detection rule rightly reads as
/// DOWN. They must stay clean.
#[test]
fn pinned_seeds_that_once_failed_stay_clean() {
    let fast_mixed = SimConfig {
        scenario: Some(Scenario::Mixed),
        ..SimConfig::default()
    }
    .fast();
    run_seed(&fast_mixed, 35).unwrap_or_else(|v| panic!("{v}\n{}", v.trace.join("\n")));
    let lossy_cut = SimConfig {
        scenario: Some(Scenario::WanCut),
        loss: 0.3,
        ..SimConfig::default()
    };
    run_seed(&lossy_cut, 7).unwrap_or_else(|v| panic!("{v}\n{}", v.trace.join("\n")));
}

/// The failover scenario with one rule of every core switched off.
fn failover_with(broken: BrokenRules) -> SimConfig {
    SimConfig {
        scenario: Some(Scenario::Failover),
        broken,
        ..SimConfig::default()
    }
}

/// Runs `seeds` with the rule broken and without: broken, the checker reports `kind` (and only
/// failover kinds); intact, the same worlds keep every invariant.
fn caught(cfg: SimConfig, seeds: std::ops::Range<u64>, kind: ViolationKind) {
    let sum = run_many(&cfg, seeds.clone());
    assert!(
        sum.violations.iter().any(|v| v.kind == kind),
        "the checker missed {kind:?}: {sum}"
    );
    for v in &sum.violations {
        assert!(!v.trace.is_empty(), "{v}");
    }
    let sound = run_many(
        &SimConfig {
            broken: BrokenRules::default(),
            ..cfg
        },
        seeds,
    );
    if let Some(v) = sound.violations.first() {
        panic!("the intact core failed too: {v}\n{}", v.trace.join("\n"));
    }
}

#[test]
fn a_second_automatic_run_within_hold_down_is_caught() {
    let b = BrokenRules {
        hold_down: true,
        ..BrokenRules::default()
    };
    caught(failover_with(b), 0..10, ViolationKind::ForbiddenRun);
}

#[test]
fn an_automatic_run_during_maintenance_is_caught() {
    let b = BrokenRules {
        maintenance: true,
        ..BrokenRules::default()
    };
    caught(failover_with(b), 12..24, ViolationKind::ForbiddenRun);
}

#[test]
fn an_automatic_run_of_a_manual_watch_is_caught() {
    let b = BrokenRules {
        single_vantage: true,
        ..BrokenRules::default()
    };
    caught(failover_with(b), 8..20, ViolationKind::ForbiddenRun);
}

#[test]
fn a_step_of_an_older_run_after_a_newer_run_began_is_caught() {
    let b = BrokenRules {
        epoch_fence: true,
        ..BrokenRules::default()
    };
    // Slow steps keep runs going long enough for an operator's failback to begin meanwhile.
    let cfg = SimConfig {
        steps: Some(StepProfile {
            fail: 0.2,
            slow: 0.3,
        }),
        ..failover_with(b)
    };
    // Few worlds show it since a run taken over before its first step checks its verdict
    // again when that step is released (the verdict check stops most stale runs first):
    // about 1 in 300 seeds, so the range is one where it shows (found by scanning 0..3000;
    // a change of the core's message pattern moves it).
    caught(cfg, 0..40, ViolationKind::StaleRunActed);
}

#[test]
fn a_withdraw_leaving_the_anycast_prefix_to_no_live_site_is_caught() {
    // Steps fail often, so runs compensate: withdraw-anycast-b while a is judged dead.
    let cfg = SimConfig {
        steps: Some(StepProfile {
            fail: 0.5,
            slow: 0.05,
        }),
        ..failover_with(BrokenRules {
            anycast: true,
            ..BrokenRules::default()
        })
    };
    caught(cfg, 0..200, ViolationKind::PrefixUnannounced);
}

#[test]
fn steps_started_before_a_majority_holds_them_are_caught_acting_twice() {
    let b = BrokenRules {
        start_unreplicated: true,
        ..BrokenRules::default()
    };
    caught(failover_with(b), 32..36, ViolationKind::DuplicateEffect);
}

#[test]
fn a_takeover_that_does_not_wait_for_the_self_fence_is_caught() {
    let b = BrokenRules {
        takeover_delay: true,
        ..BrokenRules::default()
    };
    caught(failover_with(b), 0..12, ViolationKind::IsolationLate);
}

#[test]
fn a_run_whose_lost_leader_is_never_taken_over_is_caught() {
    let b = BrokenRules {
        takeover: true,
        ..BrokenRules::default()
    };
    caught(failover_with(b), 25..28, ViolationKind::RunNotCompleted);
}

/// The leader a DOWN verdict names crashes as the verdict commits, before its register
/// leaves, or (named by the fast round) keeps seeing the site up: with no member expecting
/// the run, nobody ever runs it.
#[test]
fn a_verdict_whose_leader_never_registers_its_run_is_caught_unrun() {
    let b = BrokenRules {
        expect_runs: true,
        ..BrokenRules::default()
    };
    caught(failover_with(b), 0..40, ViolationKind::VerdictNotRun);
    let sum = run_many(&failover_with(b), 0..40);
    for how in ["crashed as it committed", "seeing the site up"] {
        assert!(
            sum.violations
                .iter()
                .any(|v| v.kind == ViolationKind::VerdictNotRun && v.detail.contains(how)),
            "no unrun verdict whose leader was {how}: {sum}"
        );
    }
}

/// The same fault with the electorate expecting the run: every orphaned verdict is run.
#[test]
fn every_orphaned_verdict_is_run_by_the_electorate() {
    let cfg = SimConfig {
        liars: true,
        ..failover_with(BrokenRules::default())
    };
    let sum = run_many(&cfg, 0..400);
    if let Some(v) = sum.violations.first() {
        panic!("{v}\n{}", v.trace.join("\n"));
    }
    assert!(
        sum.orphaned > 30,
        "too few orphaned verdicts to judge: {sum}"
    );
}

#[test]
fn a_failover_seed_replays_identically_and_its_runs_act() {
    let cfg = failover_with(BrokenRules::default());
    let a = run_seed(&cfg, 3).expect("seed passes");
    assert_eq!(a, run_seed(&cfg, 3).expect("seed passes"));
    assert!(a.counters.effects > 0, "{a:?}");
    assert!(a.counters.runs_finished > 0, "{a:?}");
}

/// Two defects the simulator found are fixed in the core: a start held back past its timeout
/// is never released with its retry (two attempts of a key never overlap), and an automatic
/// run checks its verdict again when its first start is released. Their signatures must not
/// come back; seed 26 once showed the first, under `strict` too.
#[test]
fn the_fixed_core_defects_stay_fixed() {
    let cfg = failover_with(BrokenRules::default());
    let sum = run_many(&cfg, 0..200);
    assert!(sum.violations.is_empty(), "{sum}");
    assert_eq!(sum.known.retry_overlaps, 0, "{sum}");
    assert_eq!(sum.known.stale_begins, 0, "{sum}");
    let strict = SimConfig {
        strict: true,
        ..cfg
    };
    run_seed(&strict, 26).unwrap_or_else(|v| panic!("{v}\n{}", v.trace.join("\n")));
}

/// A lying indicator-only node's forged commits, statuses, maintenance calls and run messages
/// change nothing anywhere (`ForgeryAccepted` would say otherwise).
#[test]
fn forgeries_of_a_lying_member_change_nothing() {
    let cfg = SimConfig {
        liars: true,
        ..failover_with(BrokenRules::default())
    };
    let sum = run_many(&cfg, 0..5);
    if let Some(v) = sum.violations.first() {
        panic!("{v}");
    }
}

/// The alarm scenario: alarm calls at the electorate with crashes around them keep every
/// alarm invariant, prestages, unstages and alarm failovers do happen, and the seeds that
/// found core defects stay clean: an unstage before the prestage it undoes ran (12); an
/// unstage fencing out a new DOWN verdict's failover (157); a voter that missed a clear
/// prestaging again after the unstage decided on it (5615); a lock run and a verdict under
/// one epoch, picked by a voter just restarted (3136) or by the fast round after a lock run
/// (6651); a prestage decided above a DOWN verdict a majority had accepted or committed
/// (386, 5815, 5867) or whose failover was still running after an UP verdict (2600);
/// candidates that woke together refusing each other's takeover for ever (5521), and a run
/// stopped by a newer run that had been dropped before its first step (5486).
#[test]
fn alarm_episodes_keep_every_alarm_invariant() {
    let cfg = SimConfig {
        scenario: Some(Scenario::Alarm),
        liars: true,
        ..SimConfig::default()
    };
    let sum = run_many(&cfg, 0..40);
    eprintln!("{sum}");
    if let Some(v) = sum.violations.first() {
        panic!("{v}\n{}", v.trace.join("\n"));
    }
    let a = sum.alarms;
    assert!(a.accepted > 0 && a.episodes > 0, "{a}");
    assert!(a.prestaged > 0 && a.unstaged > 0 && a.alarm_runs > 0, "{a}");
    for seed in [12, 157, 5615, 3136, 6651, 386, 5815, 5867, 2600, 5521, 5486] {
        run_seed(&cfg, seed).unwrap_or_else(|v| panic!("{v}\n{}", v.trace.join("\n")));
    }
}
