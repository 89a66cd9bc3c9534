//! Tests of the failover decision.
use super::*;

fn unknown() -> Call {
    Call::Answer(Outcome::Unknown {
        reason: "timeout".into(),
    })
}

fn declined() -> Outcome {
    Outcome::Declined {
        code: "ACQ.TOTAL_FEE_EXCEED".into(),
        message: "too much".into(),
    }
}

fn moved(step: &Step) -> Option<AttemptOutcome> {
    match step {
        Step::MoveOn { outcome, .. } => Some(*outcome),
        Step::Answered(_) => None,
    }
}

#[test]
fn failover_decisions() {
    use AttemptOutcome::{Abandoned, Declined};
    let cases: Vec<(&str, Call, Scene, bool, Option<AttemptOutcome>)> = vec![
        (
            "refused connection",
            Call::NotSent("refused".into()),
            Scene::Qr,
            true,
            Some(Declined),
        ),
        (
            "refused, last candidate",
            Call::NotSent("refused".into()),
            Scene::Qr,
            false,
            Some(Declined),
        ),
        (
            "refused barcode",
            Call::NotSent("refused".into()),
            Scene::Barcode,
            true,
            Some(Declined),
        ),
        (
            "unsupported",
            Call::Unsupported("no barcode".into()),
            Scene::Barcode,
            true,
            Some(Declined),
        ),
        (
            "rate limited",
            Call::RateLimited(Duration::from_secs(1)),
            Scene::App,
            true,
            Some(Declined),
        ),
        (
            "unknown prepay",
            unknown(),
            Scene::Qr,
            true,
            Some(Abandoned),
        ),
        ("unknown h5", unknown(), Scene::H5, true, Some(Abandoned)),
        (
            "unknown jsapi",
            unknown(),
            Scene::Jsapi,
            true,
            Some(Abandoned),
        ),
        ("unknown, last candidate", unknown(), Scene::Qr, false, None),
        (
            "unknown barcode never moves",
            unknown(),
            Scene::Barcode,
            true,
            None,
        ),
        ("declined", Call::Answer(declined()), Scene::Qr, true, None),
        (
            "closed",
            Call::Answer(Outcome::Closed),
            Scene::Page,
            true,
            None,
        ),
    ];
    for (name, call, scene, can_move_on, want) in cases {
        let step = failover_step(call, scene, can_move_on);
        assert_eq!(moved(&step), want, "{name}: {step:?}");
    }
}

#[test]
fn an_answer_is_passed_on_unchanged_and_reasons_name_the_cause() {
    assert_eq!(
        failover_step(Call::Answer(declined()), Scene::Qr, true),
        Step::Answered(declined())
    );
    match failover_step(Call::NotSent("connection refused".into()), Scene::Qr, true) {
        Step::MoveOn {
            reason, summary, ..
        } => {
            assert_eq!(reason, "not sent: connection refused");
            assert_eq!(summary, "connection refused");
        }
        other => panic!("{other:?}"),
    }
    match failover_step(unknown(), Scene::Qr, true) {
        Step::MoveOn { reason, .. } => assert!(reason.contains("timeout"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
