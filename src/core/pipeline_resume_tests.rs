//! A run rebuilt from its journal after a crash or a takeover: finished steps never run again,
//! an interrupted one runs again under its key, retries and backoffs carry over.

use super::*;

#[test]
fn resuming_after_a_crash_at_every_point_never_reruns_a_finished_step() {
    let journal = full_journal();
    assert_eq!(journal.len(), 7, "3 x (started, finished) + run finished");
    for crash_after in 0..=journal.len() {
        let prefix = &journal[..crash_after];
        let mut p = Pipeline::resume(three_steps(), site(), EPOCH, false, prefix, at(1000));
        let mut starts = Vec::new();
        let mut t = 1000;
        loop {
            let actions = drain(&mut p);
            let mut next = None;
            for a in actions {
                if let PipelineAction::Start {
                    step,
                    attempt,
                    idempotency_key,
                    ..
                } = a
                {
                    starts.push((step, attempt, idempotency_key));
                    next = Some((step, attempt));
                }
            }
            let Some((step, attempt)) = next else { break };
            t += 10;
            p.handle_result(at(t), step, attempt, true, "ok".into());
        }
        assert_eq!(p.outcome(), Some(&succeeded()), "crash after {crash_after}");
        for (step, attempt, key) in &starts {
            let finished_before = prefix.iter().any(|e| {
                e.step == *step && matches!(e.kind, JournalKind::Finished { ok: true, .. })
            });
            assert!(
                !finished_before,
                "crash after {crash_after}: {step} ran again"
            );
            let started_before = prefix
                .iter()
                .any(|e| e.step == *step && e.kind == JournalKind::Started);
            assert_eq!(
                *attempt,
                if started_before { 2 } else { 1 },
                "crash after {crash_after}: {step}"
            );
            let name = &three_steps().steps[step.index].name;
            assert_eq!(*key, idempotency_key(&site(), EPOCH, *step, name));
        }
        let ran: Vec<StepRef> = starts.iter().map(|s| s.0).collect();
        let done = prefix
            .iter()
            .filter(|e| matches!(e.kind, JournalKind::Finished { .. }))
            .count();
        let expected: Vec<StepRef> = (done..3).map(st).collect();
        assert_eq!(ran, expected, "crash after {crash_after}");
    }
}

#[test]
fn a_resume_reruns_the_interrupted_step_under_the_same_key_with_the_next_attempt() {
    let journal = full_journal();
    // Crash after "promote-volumes" was journaled as started, before its result.
    let mut p = Pipeline::resume(three_steps(), site(), EPOCH, false, &journal[..3], at(500));
    assert_eq!(
        drain(&mut p),
        vec![
            started(st(1), "promote-volumes", 2, 500),
            start(st(1), "promote-volumes", 2),
        ]
    );
    p.handle_result(at(510), st(1), 2, true, "ok".into());
    p.handle_result(at(520), st(2), 1, true, "ok".into());
    let actions = drain(&mut p);
    let PipelineAction::Finished(r) = actions.last().unwrap() else {
        panic!("expected the report");
    };
    assert_eq!(
        r.steps,
        vec![
            report(st(0), "withdraw-route", 1, true, "ok", 0, 10),
            report(st(1), "promote-volumes", 2, true, "ok", 10, 510),
            report(st(2), "announce-route", 1, true, "ok", 510, 520),
        ]
    );
}

#[test]
fn two_interrupted_attempts_of_one_step_resume_with_the_third() {
    // Leader 1 started promote-volumes and died; leader 2 took over, started it again
    // (attempt 2) and died too: the third leader's attempt is 3, under the same key.
    let mut journal = full_journal()[..3].to_vec();
    journal.push(entry(
        st(1),
        "promote-volumes",
        2,
        300,
        JournalKind::Started,
    ));
    let mut p = Pipeline::take_over(
        three_steps(),
        site(),
        EPOCH,
        EPOCH + 5,
        false,
        &journal,
        at(500),
    );
    let actions = drain(&mut p);
    let PipelineAction::Journal(e) = &actions[0] else {
        panic!("{actions:?}");
    };
    assert_eq!((e.step, e.attempt, e.term), (st(1), 3, EPOCH + 5));
    let PipelineAction::Start {
        attempt,
        epoch,
        idempotency_key: key,
        ..
    } = &actions[1]
    else {
        panic!("{actions:?}");
    };
    assert_eq!(
        (*attempt, *epoch),
        (3, EPOCH + 5),
        "the takeover's term is the token"
    );
    assert_eq!(
        key,
        &idempotency_key(&site(), EPOCH, st(1), "promote-volumes"),
        "the key is the run's, whatever the term"
    );
}

#[test]
fn a_resume_after_the_run_finished_only_reports_it_again() {
    let journal = full_journal();
    let mut p = Pipeline::resume(three_steps(), site(), EPOCH, false, &journal, at(500));
    let actions = drain(&mut p);
    assert_eq!(actions.len(), 1);
    assert!(matches!(&actions[0], PipelineAction::Finished(r) if r.outcome == succeeded()));
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn a_resume_after_the_last_step_finished_journals_the_run_end() {
    let journal = full_journal();
    let mut p = Pipeline::resume(three_steps(), site(), EPOCH, false, &journal[..6], at(500));
    let actions = drain(&mut p);
    assert_eq!(
        actions[0],
        run_finished(st(2), "announce-route", 500, succeeded())
    );
    assert!(matches!(actions[1], PipelineAction::Finished(_)));
    assert_eq!(actions.len(), 2);
}

#[test]
fn a_resume_keeps_the_retry_budget_and_waits_out_a_pending_backoff() {
    let mut spec = three_steps();
    spec.steps[0].retries = 1;
    let journal = vec![
        entry(st(0), "withdraw-route", 1, 0, JournalKind::Started),
        entry(
            st(0),
            "withdraw-route",
            1,
            50,
            JournalKind::Finished {
                ok: false,
                detail: "exit 1".into(),
            },
        ),
    ];
    let mut p = Pipeline::resume(spec.clone(), site(), EPOCH, false, &journal, at(100));
    assert_eq!(drain(&mut p), vec![]);
    assert_eq!(p.poll_timeout(), Some(at(150).mono));
    p.handle_timeout(at(150));
    assert_eq!(
        drain(&mut p),
        vec![
            started(st(0), "withdraw-route", 2, 150),
            start(st(0), "withdraw-route", 2),
        ]
    );
    p.handle_result(at(160), st(0), 2, false, "exit 1".into());
    let outcome = RunOutcome::Aborted {
        step: st(0),
        detail: "exit 1".into(),
    };
    assert_eq!(p.outcome(), Some(&outcome), "the one retry was used up");
}

#[test]
fn journal_entries_of_another_site_or_a_higher_epoch_are_ignored_on_resume() {
    let mut journal = full_journal();
    for e in &mut journal {
        e.epoch = EPOCH + 1;
    }
    let mut other = full_journal();
    for e in &mut other {
        e.site = SiteId("b".into());
    }
    journal.extend(other);
    let mut p = Pipeline::resume(three_steps(), site(), EPOCH, false, &journal, at(0));
    assert_eq!(
        drain(&mut p),
        vec![
            started(st(0), "withdraw-route", 1, 0),
            start(st(0), "withdraw-route", 1),
        ]
    );
}
