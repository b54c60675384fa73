use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn at(n_ms: u64) -> Now {
    Now::at_micros(n_ms * 1000)
}
fn wall(n_ms: u64) -> WallTime {
    at(n_ms).wall
}
fn site() -> SiteId {
    SiteId("a".into())
}
const EPOCH: u64 = 7;

fn spec_step(name: &str) -> StepSpec {
    StepSpec {
        backoff: ms(100),
        ..StepSpec::new(name, ActuatorKind::Exec, ms(1000))
    }
}
fn pre(i: usize) -> StepRef {
    StepRef::new(Phase::Precheck, i)
}
fn st(i: usize) -> StepRef {
    StepRef::new(Phase::Step, i)
}
fn post(i: usize) -> StepRef {
    StepRef::new(Phase::Post, i)
}
fn comp(i: usize) -> StepRef {
    StepRef::new(Phase::Compensation, i)
}

fn three_steps() -> PipelineSpec {
    PipelineSpec {
        prechecks: vec![],
        steps: vec![
            spec_step("withdraw-route"),
            spec_step("promote-volumes"),
            spec_step("announce-route"),
        ],
        post: vec![],
        fences: vec![],
    }
}

fn entry(step: StepRef, name: &str, attempt: u32, t: u64, kind: JournalKind) -> JournalEntry {
    JournalEntry {
        site: site(),
        epoch: EPOCH,
        term: EPOCH,
        step,
        name: name.into(),
        attempt,
        at: wall(t),
        kind,
    }
}
fn started(step: StepRef, name: &str, attempt: u32, t: u64) -> PipelineAction {
    PipelineAction::Journal(entry(step, name, attempt, t, JournalKind::Started))
}
fn finished(step: StepRef, name: &str, attempt: u32, t: u64, ok: bool, d: &str) -> PipelineAction {
    PipelineAction::Journal(entry(
        step,
        name,
        attempt,
        t,
        JournalKind::Finished {
            ok,
            detail: d.into(),
        },
    ))
}
fn run_finished(step: StepRef, name: &str, t: u64, outcome: RunOutcome) -> PipelineAction {
    PipelineAction::Journal(entry(
        step,
        name,
        0,
        t,
        JournalKind::RunFinished { outcome },
    ))
}
fn start_dry(step: StepRef, name: &str, attempt: u32, dry_run: bool) -> PipelineAction {
    PipelineAction::Start {
        step,
        name: name.into(),
        actuator: ActuatorKind::Exec,
        epoch: EPOCH,
        attempt,
        idempotency_key: idempotency_key(&site(), EPOCH, step, name),
        dry_run,
        timeout: ms(1000),
    }
}
fn start(step: StepRef, name: &str, attempt: u32) -> PipelineAction {
    start_dry(step, name, attempt, false)
}
fn succeeded() -> RunOutcome {
    RunOutcome::Succeeded {
        continued: vec![],
        post_failed: vec![],
    }
}
fn report(
    step: StepRef,
    name: &str,
    attempts: u32,
    ok: bool,
    detail: &str,
    from: u64,
    to: u64,
) -> StepReport {
    StepReport {
        step,
        name: name.into(),
        attempts,
        ok,
        detail: detail.into(),
        started_at: wall(from),
        finished_at: Some(wall(to)),
    }
}

fn drain(p: &mut Pipeline) -> Vec<PipelineAction> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

fn journal_of(actions: &[PipelineAction]) -> Vec<JournalEntry> {
    actions
        .iter()
        .filter_map(|a| match a {
            PipelineAction::Journal(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn idempotency_keys_name_site_epoch_phase_index_and_step() {
    assert_eq!(
        idempotency_key(&site(), 7, st(2), "promote-volumes"),
        "a/7/step/2/promote-volumes"
    );
    assert_eq!(
        idempotency_key(&site(), 7, comp(0), "restore-route"),
        "a/7/compensation/0/restore-route"
    );
}

#[test]
fn retry_delay_doubles_and_is_capped_at_eight_times_the_backoff() {
    let s = spec_step("x");
    let delays: Vec<_> = (1..=6).map(|f| s.retry_delay(f)).collect();
    assert_eq!(
        delays,
        vec![ms(100), ms(200), ms(400), ms(800), ms(800), ms(800)]
    );
}

#[test]
fn the_happy_path_journals_before_each_start_and_after_each_result() {
    let mut p = Pipeline::new(three_steps(), site(), EPOCH, false, at(0));
    assert_eq!(
        drain(&mut p),
        vec![
            started(st(0), "withdraw-route", 1, 0),
            start(st(0), "withdraw-route", 1)
        ]
    );
    assert_eq!(p.poll_timeout(), Some(at(1000).mono));
    p.handle_result(at(10), st(0), 1, true, "withdrawn".into());
    assert_eq!(
        drain(&mut p),
        vec![
            finished(st(0), "withdraw-route", 1, 10, true, "withdrawn"),
            started(st(1), "promote-volumes", 1, 10),
            start(st(1), "promote-volumes", 1),
        ]
    );
    p.handle_result(at(30), st(1), 1, true, "promoted".into());
    drain(&mut p);
    p.handle_result(at(60), st(2), 1, true, "announced".into());
    assert_eq!(
        drain(&mut p),
        vec![
            finished(st(2), "announce-route", 1, 60, true, "announced"),
            run_finished(st(2), "announce-route", 60, succeeded()),
            PipelineAction::Finished(RunReport {
                site: site(),
                epoch: EPOCH,
                outcome: succeeded(),
                steps: vec![
                    report(st(0), "withdraw-route", 1, true, "withdrawn", 0, 10),
                    report(st(1), "promote-volumes", 1, true, "promoted", 10, 30),
                    report(st(2), "announce-route", 1, true, "announced", 30, 60),
                ],
            }),
        ]
    );
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(p.outcome(), Some(&succeeded()));
}

#[test]
fn a_failed_attempt_is_retried_after_a_doubling_backoff_with_the_same_key() {
    let mut spec = three_steps();
    spec.steps.truncate(1);
    spec.steps[0].retries = 2;
    let mut p = Pipeline::new(spec, site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_result(at(50), st(0), 1, false, "exit 1".into());
    assert_eq!(
        drain(&mut p),
        vec![finished(st(0), "withdraw-route", 1, 50, false, "exit 1")]
    );
    assert_eq!(p.poll_timeout(), Some(at(150).mono));
    p.handle_timeout(at(149));
    assert_eq!(drain(&mut p), vec![]);
    p.handle_timeout(at(150));
    assert_eq!(
        drain(&mut p),
        vec![
            started(st(0), "withdraw-route", 2, 150),
            start(st(0), "withdraw-route", 2),
        ]
    );
    p.handle_result(at(160), st(0), 2, false, "exit 1".into());
    drain(&mut p);
    assert_eq!(
        p.poll_timeout(),
        Some(at(360).mono),
        "second retry waits 2x"
    );
    p.handle_timeout(at(360));
    assert_eq!(
        drain(&mut p),
        vec![
            started(st(0), "withdraw-route", 3, 360),
            start(st(0), "withdraw-route", 3),
        ]
    );
    p.handle_result(at(370), st(0), 3, true, "ok".into());
    let actions = drain(&mut p);
    assert_eq!(
        actions[0],
        finished(st(0), "withdraw-route", 3, 370, true, "ok")
    );
    assert_eq!(p.outcome(), Some(&succeeded()));
    assert_eq!(p.steps()[0].attempts, 3);
}

#[test]
fn a_step_past_its_timeout_fails_and_its_late_result_is_ignored() {
    let mut spec = three_steps();
    spec.steps[0].retries = 1;
    let mut p = Pipeline::new(spec, site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_timeout(at(999));
    assert_eq!(drain(&mut p), vec![]);
    p.handle_timeout(at(1000));
    assert_eq!(
        drain(&mut p),
        vec![finished(
            st(0),
            "withdraw-route",
            1,
            1000,
            false,
            "timed out after 1s"
        )]
    );
    p.handle_result(at(1050), st(0), 1, true, "late".into());
    assert_eq!(
        drain(&mut p),
        vec![],
        "the timed-out attempt's result is stale"
    );
    assert_eq!(p.poll_timeout(), Some(at(1100).mono));
    p.handle_timeout(at(1100));
    assert_eq!(
        drain(&mut p),
        vec![
            started(st(0), "withdraw-route", 2, 1100),
            start(st(0), "withdraw-route", 2),
        ]
    );
    p.handle_result(at(1110), st(1), 1, true, "wrong step".into());
    assert_eq!(drain(&mut p), vec![]);
}

#[test]
fn an_aborting_step_stops_the_run_and_later_steps_never_start() {
    let mut p = Pipeline::new(three_steps(), site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_result(at(10), st(0), 1, true, "".into());
    drain(&mut p);
    p.handle_result(at(20), st(1), 1, false, "no quorum on storage".into());
    let outcome = RunOutcome::Aborted {
        step: st(1),
        detail: "no quorum on storage".into(),
    };
    assert_eq!(
        drain(&mut p),
        vec![
            finished(
                st(1),
                "promote-volumes",
                1,
                20,
                false,
                "no quorum on storage"
            ),
            run_finished(st(1), "promote-volumes", 20, outcome.clone()),
            PipelineAction::Finished(RunReport {
                site: site(),
                epoch: EPOCH,
                outcome,
                steps: vec![
                    report(st(0), "withdraw-route", 1, true, "", 0, 10),
                    report(
                        st(1),
                        "promote-volumes",
                        1,
                        false,
                        "no quorum on storage",
                        10,
                        20
                    ),
                ],
            }),
        ]
    );
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn a_continuing_step_records_its_failure_and_the_run_goes_on() {
    let mut spec = three_steps();
    spec.steps[1].on_failure = OnFailure::Continue;
    let mut p = Pipeline::new(spec, site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_result(at(10), st(0), 1, true, "".into());
    drain(&mut p);
    p.handle_result(at(20), st(1), 1, false, "slow replica".into());
    assert_eq!(
        drain(&mut p),
        vec![
            finished(st(1), "promote-volumes", 1, 20, false, "slow replica"),
            started(st(2), "announce-route", 1, 20),
            start(st(2), "announce-route", 1),
        ]
    );
    p.handle_result(at(30), st(2), 1, true, "".into());
    let outcome = RunOutcome::Succeeded {
        continued: vec![st(1)],
        post_failed: vec![],
    };
    assert_eq!(p.outcome(), Some(&outcome));
    assert!(outcome.summary().contains("continued past: step/1"));
}

#[test]
fn compensation_undoes_the_failed_and_earlier_steps_newest_first_skipping_those_without_one() {
    let mut spec = three_steps();
    spec.steps.push(spec_step("switch-dns"));
    spec.steps[0].compensation = Some(Box::new(spec_step("restore-route")));
    spec.steps[2].compensation = Some(Box::new(spec_step("withdraw-announce")));
    spec.steps[2].on_failure = OnFailure::Compensate;
    let mut p = Pipeline::new(spec, site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_result(at(10), st(0), 1, true, "".into());
    p.handle_result(at(20), st(1), 1, true, "".into());
    drain(&mut p);
    p.handle_result(at(30), st(2), 1, false, "peer refused".into());
    assert_eq!(
        drain(&mut p),
        vec![
            finished(st(2), "announce-route", 1, 30, false, "peer refused"),
            started(comp(2), "withdraw-announce", 1, 30),
            start(comp(2), "withdraw-announce", 1),
        ]
    );
    p.handle_result(at(40), comp(2), 1, true, "".into());
    assert_eq!(
        drain(&mut p),
        vec![
            finished(comp(2), "withdraw-announce", 1, 40, true, ""),
            started(comp(0), "restore-route", 1, 40),
            start(comp(0), "restore-route", 1),
        ],
        "promote-volumes has no compensation; switch-dns never ran"
    );
    p.handle_result(at(50), comp(0), 1, false, "router gone".into());
    let outcome = RunOutcome::Compensated {
        step: st(2),
        detail: "peer refused".into(),
        compensation_failed: vec![comp(0)],
    };
    let actions = drain(&mut p);
    assert_eq!(
        actions[..2],
        [
            finished(comp(0), "restore-route", 1, 50, false, "router gone"),
            run_finished(comp(0), "restore-route", 50, outcome.clone()),
        ]
    );
    let PipelineAction::Finished(r) = &actions[2] else {
        panic!("expected the report, got {:?}", actions[2]);
    };
    assert_eq!(r.outcome, outcome);
    let order: Vec<_> = r.steps.iter().map(|s| s.step).collect();
    assert_eq!(order, vec![st(0), st(1), st(2), comp(2), comp(0)]);
}

#[test]
fn a_failing_precheck_stops_the_run_before_any_step_starts() {
    let mut spec = three_steps();
    spec.prechecks = vec![spec_step("backup-healthy"), spec_step("replication-lag")];
    spec.prechecks[1].retries = 1;
    let mut p = Pipeline::new(spec, site(), EPOCH, false, at(0));
    assert_eq!(
        drain(&mut p),
        vec![
            started(pre(0), "backup-healthy", 1, 0),
            start(pre(0), "backup-healthy", 1),
        ]
    );
    p.handle_result(at(10), pre(0), 1, true, "".into());
    drain(&mut p);
    p.handle_result(at(20), pre(1), 1, false, "lag 40s".into());
    p.handle_timeout(at(120));
    p.handle_result(at(130), pre(1), 2, false, "lag 41s".into());
    let outcome = RunOutcome::PrecheckFailed {
        step: pre(1),
        detail: "lag 41s".into(),
    };
    let actions = drain(&mut p);
    assert_eq!(
        actions[..6],
        [
            finished(pre(1), "replication-lag", 1, 20, false, "lag 40s"),
            started(pre(1), "replication-lag", 2, 120),
            start(pre(1), "replication-lag", 2),
            finished(pre(1), "replication-lag", 2, 130, false, "lag 41s"),
            run_finished(pre(1), "replication-lag", 130, outcome.clone()),
            PipelineAction::Finished(RunReport {
                site: site(),
                epoch: EPOCH,
                outcome,
                steps: vec![
                    report(pre(0), "backup-healthy", 1, true, "", 0, 10),
                    report(pre(1), "replication-lag", 2, false, "lag 41s", 10, 130),
                ],
            }),
        ]
    );
    assert_eq!(actions.len(), 6);
}

#[test]
fn post_steps_run_after_the_steps_and_their_failure_leaves_the_run_succeeded() {
    let mut spec = three_steps();
    spec.steps.truncate(1);
    spec.steps[0].on_failure = OnFailure::Continue;
    spec.post = vec![spec_step("page-oncall"), spec_step("warm-caches")];
    let mut p = Pipeline::new(spec, site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_result(at(10), st(0), 1, true, "".into());
    assert_eq!(
        drain(&mut p),
        vec![
            finished(st(0), "withdraw-route", 1, 10, true, ""),
            started(post(0), "page-oncall", 1, 10),
            start(post(0), "page-oncall", 1),
        ]
    );
    p.handle_result(at(20), post(0), 1, false, "pager down".into());
    assert_eq!(
        drain(&mut p),
        vec![
            finished(post(0), "page-oncall", 1, 20, false, "pager down"),
            started(post(1), "warm-caches", 1, 20),
            start(post(1), "warm-caches", 1),
        ]
    );
    p.handle_result(at(30), post(1), 1, true, "".into());
    let outcome = RunOutcome::Succeeded {
        continued: vec![],
        post_failed: vec![post(0)],
    };
    assert_eq!(p.outcome(), Some(&outcome));
    assert!(outcome.is_success());
    assert_eq!(
        outcome.summary(),
        "succeeded; post steps failed: post/0 (the failover itself stands)"
    );
}

#[test]
fn post_steps_do_not_run_after_an_abort() {
    let mut spec = three_steps();
    spec.steps.truncate(1);
    spec.post = vec![spec_step("page-oncall")];
    let mut p = Pipeline::new(spec, site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_result(at(10), st(0), 1, false, "".into());
    let starts = drain(&mut p)
        .into_iter()
        .filter(|a| matches!(a, PipelineAction::Start { .. }))
        .count();
    assert_eq!(starts, 0);
}

#[test]
fn a_dry_run_marks_every_start_and_is_otherwise_identical() {
    let mut spec = three_steps();
    spec.prechecks = vec![spec_step("backup-healthy")];
    spec.post = vec![spec_step("page-oncall")];
    let run = |dry: bool| {
        let mut p = Pipeline::new(spec.clone(), site(), EPOCH, dry, at(0));
        let mut all = drain(&mut p);
        let mut t = 0;
        while p.outcome().is_none() {
            t += 10;
            let (step, attempt) = all
                .iter()
                .rev()
                .find_map(|a| match a {
                    PipelineAction::Start { step, attempt, .. } => Some((*step, *attempt)),
                    _ => None,
                })
                .unwrap();
            p.handle_result(at(t), step, attempt, true, "".into());
            all.extend(drain(&mut p));
        }
        all
    };
    let dry = run(true);
    let real = run(false);
    let starts: Vec<_> = dry
        .iter()
        .filter_map(|a| match a {
            PipelineAction::Start { dry_run, .. } => Some(*dry_run),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![true; 5]);
    let undry: Vec<_> = dry
        .into_iter()
        .map(|a| match a {
            PipelineAction::Start {
                step,
                name,
                attempt,
                ..
            } => start(step, &name, attempt),
            other => other,
        })
        .collect();
    assert_eq!(undry, real);
}

/// The full journal of a 3-step run where every step succeeds at once (10 ms each).
fn full_journal() -> Vec<JournalEntry> {
    let mut p = Pipeline::new(three_steps(), site(), EPOCH, false, at(0));
    let mut all = drain(&mut p);
    for i in 0..3 {
        p.handle_result(at(10 * (i as u64 + 1)), st(i), 1, true, "ok".into());
        all.extend(drain(&mut p));
    }
    journal_of(&all)
}

#[test]
fn journal_entries_survive_a_serde_round_trip() {
    let journal = full_journal();
    let text = serde_json::to_string(&journal).unwrap();
    let back: Vec<JournalEntry> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, journal);
}

#[test]
fn an_empty_pipeline_succeeds_at_once() {
    let mut p = Pipeline::new(PipelineSpec::default(), site(), EPOCH, false, at(0));
    let actions = drain(&mut p);
    assert_eq!(actions.len(), 2);
    assert_eq!(
        actions[0],
        run_finished(st(0), "", 0, succeeded()),
        "nothing ran"
    );
}

#[path = "pipeline_resume_tests.rs"]
mod resume;
