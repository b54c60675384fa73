//! Fences: a step whose confirmation must read the fenced state before the run goes on.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn at(n_ms: u64) -> Now {
    Now::at_micros(n_ms * 1000)
}
fn site() -> SiteId {
    SiteId("a".into())
}
const EPOCH: u64 = 7;

fn fence_ref() -> StepRef {
    StepRef::new(Phase::Fence, 0)
}
fn confirm_ref() -> StepRef {
    StepRef::new(Phase::Confirm, 0)
}
fn st(i: usize) -> StepRef {
    StepRef::new(Phase::Step, i)
}

/// A power-off fence confirmed by up to three reads 500 ms apart, then one takeover step.
fn fenced_plan() -> PipelineSpec {
    let confirm = StepSpec {
        retries: 2,
        backoff: ms(500),
        ..StepSpec::new("power-off-a-confirm", ActuatorKind::Http, ms(200))
    };
    let fence = StepSpec {
        confirm: Some(Box::new(confirm)),
        ..StepSpec::new("power-off-a", ActuatorKind::Http, ms(1000))
    };
    PipelineSpec {
        prechecks: vec![StepSpec::new("ready", ActuatorKind::Http, ms(1000))],
        fences: vec![fence],
        steps: vec![StepSpec::new("announce-b", ActuatorKind::Bgp, ms(1000))],
        post: vec![],
    }
}

fn drain(p: &mut Pipeline) -> Vec<PipelineAction> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

/// The (step, attempt) of every start among `actions`.
fn starts(actions: &[PipelineAction]) -> Vec<(StepRef, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            PipelineAction::Start { step, attempt, .. } => Some((*step, *attempt)),
            _ => None,
        })
        .collect()
}

fn journal(actions: &[PipelineAction]) -> Vec<JournalEntry> {
    actions
        .iter()
        .filter_map(|a| match a {
            PipelineAction::Journal(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn outcome(actions: &[PipelineAction]) -> Option<RunOutcome> {
    actions.iter().find_map(|a| match a {
        PipelineAction::Finished(r) => Some(r.outcome.clone()),
        _ => None,
    })
}

/// Runs the precheck and the fence action (ok) of `fenced_plan`; the first read is queued.
fn up_to_the_first_read(forced: bool) -> (Pipeline, Vec<PipelineAction>) {
    let mut p = Pipeline::new_forced(fenced_plan(), site(), EPOCH, false, forced, at(0));
    let mut all = drain(&mut p);
    p.handle_result(
        at(10),
        StepRef::new(Phase::Precheck, 0),
        1,
        true,
        "ok".into(),
    );
    all.extend(drain(&mut p));
    p.handle_result(at(20), fence_ref(), 1, true, "POST .../Reset -> 204".into());
    all.extend(drain(&mut p));
    (p, all)
}

#[test]
fn the_fence_runs_after_the_prechecks_and_its_confirmation_before_any_step() {
    let (mut p, mut all) = up_to_the_first_read(false);
    p.handle_result(
        at(30),
        confirm_ref(),
        1,
        true,
        "confirmed: /PowerState reads \"Off\"".into(),
    );
    all.extend(drain(&mut p));
    p.handle_result(at(40), st(0), 1, true, "announced".into());
    all.extend(drain(&mut p));
    assert_eq!(
        starts(&all),
        vec![
            (StepRef::new(Phase::Precheck, 0), 1),
            (fence_ref(), 1),
            (confirm_ref(), 1),
            (st(0), 1)
        ]
    );
    assert!(outcome(&all).is_some_and(|o| o.is_success()), "{all:?}");
    // Each has a key of its own: the fence and its read are journaled like any step.
    let keys: Vec<String> = all
        .iter()
        .filter_map(|a| match a {
            PipelineAction::Start {
                idempotency_key, ..
            } => Some(idempotency_key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys[1], "a/7/fence/0/power-off-a");
    assert_eq!(keys[2], "a/7/confirm/0/power-off-a-confirm");
}

#[test]
fn the_confirmation_polls_at_its_steady_interval_until_it_reads_the_fenced_state() {
    let (mut p, _) = up_to_the_first_read(false);
    p.handle_result(
        at(30),
        confirm_ref(),
        1,
        false,
        "/PowerState reads \"On\"".into(),
    );
    assert!(starts(&drain(&mut p)).is_empty());
    // Not doubled: the second wait is as long as the first.
    assert_eq!(p.poll_timeout(), Some(at(530).mono));
    p.handle_timeout(at(530));
    assert_eq!(starts(&drain(&mut p)), vec![(confirm_ref(), 2)]);
    p.handle_result(
        at(540),
        confirm_ref(),
        2,
        false,
        "/PowerState reads \"On\"".into(),
    );
    drain(&mut p);
    assert_eq!(p.poll_timeout(), Some(at(1040).mono));
    p.handle_timeout(at(1040));
    drain(&mut p);
    p.handle_result(at(1050), confirm_ref(), 3, true, "confirmed".into());
    assert_eq!(starts(&drain(&mut p)), vec![(st(0), 1)]);
}

#[test]
fn an_unconfirmed_fence_stops_the_run_naming_the_fence_and_the_last_read() {
    let (mut p, _) = up_to_the_first_read(false);
    let mut all = Vec::new();
    for (i, t) in [(1, 30), (2, 535), (3, 1040)] {
        if i > 1 {
            p.handle_timeout(at(t));
        }
        all.extend(drain(&mut p));
        p.handle_result(
            at(t + 5),
            confirm_ref(),
            i,
            false,
            format!("/PowerState reads \"On\" ({i})"),
        );
    }
    all.extend(drain(&mut p));
    assert!(
        !starts(&all).contains(&(st(0), 1)),
        "the takeover step must not start"
    );
    let Some(RunOutcome::Aborted { step, detail }) = outcome(&all) else {
        panic!("not aborted: {all:?}");
    };
    assert_eq!(step, confirm_ref());
    assert!(
        detail.contains("fence \"power-off-a\" not confirmed after 3 reads")
            && detail.contains("the fence action reported success")
            && detail.ends_with("last read: /PowerState reads \"On\" (3)"),
        "{detail}"
    );
    let summary = p.outcome().unwrap().summary();
    assert!(
        summary.starts_with("stopped at the fence (confirm/0)"),
        "{summary}"
    );
}

#[test]
fn a_forced_run_goes_on_past_an_unconfirmed_fence_and_the_journal_says_so() {
    let (mut p, _) = up_to_the_first_read(true);
    let mut all = Vec::new();
    for (i, t) in [(1, 30), (2, 535), (3, 1040)] {
        if i > 1 {
            p.handle_timeout(at(t));
        }
        all.extend(drain(&mut p));
        p.handle_result(at(t + 5), confirm_ref(), i, false, "reads \"On\"".into());
    }
    all.extend(drain(&mut p));
    assert_eq!(starts(&all).last(), Some(&(st(0), 1)));
    let last_read = journal(&all)
        .into_iter()
        .filter(|e| e.step == confirm_ref())
        .filter_map(|e| match e.kind {
            JournalKind::Finished { ok: false, detail } => Some(detail),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(last_read.len(), 3);
    assert!(!last_read[1].contains("forced"), "{last_read:?}");
    assert!(last_read[2].contains("the run was forced"), "{last_read:?}");
    p.handle_result(at(1100), st(0), 1, true, "announced".into());
    let end = drain(&mut p);
    assert_eq!(
        outcome(&end),
        Some(RunOutcome::Succeeded {
            continued: vec![confirm_ref()],
            post_failed: vec![]
        })
    );
}

#[test]
fn a_failed_fence_action_is_still_judged_by_its_confirmation() {
    // A dark site's power controller may be unreachable: the read decides.
    let mut p = Pipeline::new(fenced_plan(), site(), EPOCH, false, at(0));
    drain(&mut p);
    p.handle_result(
        at(10),
        StepRef::new(Phase::Precheck, 0),
        1,
        true,
        "ok".into(),
    );
    drain(&mut p);
    p.handle_result(at(20), fence_ref(), 1, false, "connection refused".into());
    assert_eq!(starts(&drain(&mut p)), vec![(confirm_ref(), 1)]);
    p.handle_result(at(30), confirm_ref(), 1, true, "confirmed".into());
    assert_eq!(starts(&drain(&mut p)), vec![(st(0), 1)]);
}

#[test]
fn a_resumed_run_never_repeats_a_confirmed_fence_and_reads_again_after_a_crash_mid_read() {
    // Crash after the fence was confirmed and the takeover step started: that step, which
    // may have acted, runs again; neither the fence nor its read does.
    let (mut p, mut all) = up_to_the_first_read(false);
    p.handle_result(at(30), confirm_ref(), 1, true, "confirmed".into());
    all.extend(drain(&mut p));
    let j = journal(&all);
    let mut r = Pipeline::resume(fenced_plan(), site(), EPOCH, false, &j, at(5000));
    assert_eq!(starts(&drain(&mut r)), vec![(st(0), 2)]);

    // Crash during a read: the action is not repeated, the read is made again.
    let (_, all) = up_to_the_first_read(false);
    let j = journal(&all);
    assert!(j
        .last()
        .is_some_and(|e| e.step == confirm_ref() && e.kind == JournalKind::Started));
    let mut r = Pipeline::resume(fenced_plan(), site(), EPOCH, false, &j, at(5000));
    assert_eq!(starts(&drain(&mut r)), vec![(confirm_ref(), 2)]);
}

#[test]
fn a_resumed_forced_run_past_an_unconfirmed_fence_goes_on_with_the_step_after_it() {
    let (mut p, mut all) = up_to_the_first_read(true);
    for (i, t) in [(1, 30), (2, 535), (3, 1040)] {
        if i > 1 {
            p.handle_timeout(at(t));
        }
        all.extend(drain(&mut p));
        p.handle_result(at(t + 5), confirm_ref(), i, false, "reads \"On\"".into());
    }
    all.extend(drain(&mut p));
    let j = journal(&all);
    let mut r = Pipeline::take_over_forced(
        fenced_plan(),
        site(),
        EPOCH,
        EPOCH + 1,
        false,
        true,
        &j,
        at(5000),
    );
    assert_eq!(starts(&drain(&mut r)), vec![(st(0), 2)]);
    // Its journal detail was written once, not again by the replay.
    let steps = r.steps();
    let detail = &steps
        .iter()
        .find(|s| s.step == confirm_ref())
        .unwrap()
        .detail;
    assert_eq!(detail.matches("forced").count(), 1, "{detail}");
}
