//! Table tests of the order transitions and of loading older records.
use super::*;
use PaymentStatus::*;

pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
}

pub(crate) fn order(status: PaymentStatus) -> Order {
    let request = OrderRequest {
        out_trade_no: "ORDER0001".into(),
        amount: Fen(1500),
        currency: Currency::Cny,
        method: PayMethod::Alipay,
        scene: Scene::Qr,
        subject: "s".into(),
        description: None,
        payer_id: None,
        auth_code: None,
        client_ip: None,
        expires_at: None,
        metadata: Default::default(),
        split: false,
    };
    let mut o = Order::pending(request, "fp".into(), None, at(0));
    o.status = status;
    o.attempts.push(Attempt::in_flight("alipay", at(0)));
    o
}

fn report(state: ChannelPayState, amount: Option<u64>) -> PaymentReport {
    PaymentReport {
        state,
        channel_trade_no: Some("T1".into()),
        amount: amount.map(Fen),
        action: None,
    }
}

#[test]
fn every_report_on_every_status() {
    use ChannelPayState::{Closed as ChClosed, NotFound, Paid, Waiting};
    let statuses = [
        Pending,
        Succeeded,
        PaymentStatus::Closed,
        Failed,
        Refunded,
        PartiallyRefunded,
    ];
    for status in statuses {
        for state in [Waiting, Paid, ChClosed, NotFound] {
            let mut o = order(status);
            o.apply_report(&report(state, Some(1500)), at(5)).unwrap();
            let want = match (status, state) {
                (Pending, Paid) => Succeeded,
                (Pending, ChClosed) => PaymentStatus::Closed,
                // A closed or failed order reported paid stays as it is (the late-payment
                // guard takes it from there); nothing else moves a settled order.
                (s, _) => s,
            };
            assert_eq!(o.status, want, "{status:?} + {state:?}");
            assert_eq!(o.channel_trade_no.as_deref(), Some("T1"));
            // The trade number is new to the order, so it counts as a change.
            assert_eq!(o.updated_at, at(5));
        }
    }
}

#[test]
fn a_paid_report_for_another_amount_is_refused_and_changes_nothing() {
    let mut o = order(Pending);
    let before = o.clone();
    let e = o
        .apply_report(&report(ChannelPayState::Paid, Some(1499)), at(5))
        .unwrap_err();
    assert!(e.contains("1499"), "{e}");
    assert_eq!(o, before);
    // Without an amount the report is taken (the amount is checked where it is given).
    o.apply_report(&report(ChannelPayState::Paid, None), at(5))
        .unwrap();
    assert_eq!(o.status, Succeeded);
}

#[test]
fn attempts_finish_and_are_adopted() {
    let mut o = order(Pending);
    assert!(o.in_doubt());
    o.finish_attempt(AttemptOutcome::Unknown, Some("timeout".into()), at(3));
    assert!(o.in_doubt(), "unknown is still in doubt");
    assert_eq!(o.updated_at, at(3));
    o.adopt_last_attempt(at(4));
    let a = &o.attempts[0];
    assert_eq!(
        (a.outcome, a.finished_at),
        (AttemptOutcome::Accepted, Some(at(4)))
    );
    assert!(!o.in_doubt());
    // Adopting never rewrites a settled attempt.
    o.finish_attempt(AttemptOutcome::Declined, None, at(6));
    o.adopt_last_attempt(at(7));
    assert_eq!(o.attempts[0].outcome, AttemptOutcome::Declined);
}

/// A late payment of ORDER0001 at `channel`, its refund at `refund_status`.
fn late(channel: &str, refund_status: LateRefund) -> LatePayment {
    LatePayment {
        channel: channel.into(),
        kind: LateKind::AfterClose,
        channel_trade_no: None,
        amount: Fen(1500),
        out_refund_no: LatePayment::refund_no("ORDER0001", channel),
        refund_status,
        channel_refund_no: None,
        refund_failure: None,
        detected_at: at(1),
        updated_at: at(1),
    }
}

#[test]
fn what_recovery_takes() {
    let late = |refund_status| late("pingpp", refund_status);
    let mut cases: Vec<(&str, Order, bool)> = vec![];
    cases.push(("pending, in flight", order(Pending), true));
    let mut o = order(Pending);
    o.finish_attempt(AttemptOutcome::Accepted, None, at(1));
    cases.push(("pending, accepted", o, false));
    let mut o = order(PaymentStatus::Closed);
    o.finish_attempt(AttemptOutcome::Accepted, None, at(1));
    cases.push(("closed", o.clone(), false));
    o.late_payments.push(late(LateRefund::Pending));
    cases.push(("closed, late refund pending", o.clone(), true));
    o.late_payments[0].refund_status = LateRefund::Succeeded;
    cases.push(("closed, late refund done", o.clone(), false));
    o.late_payments[0].refund_status = LateRefund::Off;
    cases.push(("closed, guard off", o, false));
    let mut o = order(Succeeded);
    o.attempts[0].outcome = AttemptOutcome::Abandoned;
    o.attempts.push(Attempt::in_flight("pingpp", at(1)));
    o.finish_attempt(AttemptOutcome::Accepted, None, at(2));
    cases.push(("abandoned, not closed", o.clone(), true));
    o.attempts[0].closing = Some(Closing::NoTrade);
    cases.push(("abandoned, settled", o, false));
    for (name, o, want) in cases {
        assert_eq!(o.needs_recovery(), want, "{name}");
    }
}

#[test]
fn late_payment_refund_numbers_are_stable_and_fit_every_channel() {
    let a = LatePayment::refund_no("ORDER0001", "alipay");
    assert_eq!(a, LatePayment::refund_no("ORDER0001", "alipay"));
    assert_ne!(a, LatePayment::refund_no("ORDER0001", "pingpp"));
    let long = LatePayment::refund_no(&"X".repeat(32), "a-channel-with-a-long-name");
    assert!(long.len() <= 64, "{long}");
    assert!(
        long.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "{long}"
    );
}

/// An order at `status` owned by alipay, whose first attempt (at pingpp) was abandoned.
fn owned_by_alipay(status: PaymentStatus) -> Order {
    let mut o = order(status);
    o.attempts[0].channel = "pingpp".into();
    o.attempts[0].outcome = AttemptOutcome::Abandoned;
    o.attempts.push(Attempt::in_flight("alipay", at(1)));
    o.finish_attempt(AttemptOutcome::Accepted, None, at(2));
    o.channel = Some("alipay".into());
    o
}

fn failure(code: FailureCode) -> Option<Failure> {
    Some(Failure {
        code,
        message: "m".into(),
    })
}

#[test]
fn which_payments_are_late() {
    use ChannelPayState::{Closed as ChClosed, NotFound, Paid, Waiting};
    use LateKind::{AfterClose, Duplicate};
    let paid = report(Paid, Some(1500));
    let cases: &[(&str, PaymentStatus, &str, PaymentReport, Option<LateKind>)] = &[
        (
            "closed here",
            PaymentStatus::Closed,
            "alipay",
            paid.clone(),
            Some(AfterClose),
        ),
        (
            "failed here",
            Failed,
            "alipay",
            paid.clone(),
            Some(AfterClose),
        ),
        (
            "paid without an amount",
            Failed,
            "alipay",
            report(Paid, None),
            Some(AfterClose),
        ),
        (
            "pending: the order's money",
            Pending,
            "alipay",
            paid.clone(),
            None,
        ),
        (
            "succeeded: the order's money",
            Succeeded,
            "alipay",
            paid.clone(),
            None,
        ),
        (
            "another amount",
            PaymentStatus::Closed,
            "alipay",
            report(Paid, Some(1499)),
            None,
        ),
        (
            "not paid",
            PaymentStatus::Closed,
            "alipay",
            report(Waiting, Some(1500)),
            None,
        ),
        (
            "closed there",
            PaymentStatus::Closed,
            "alipay",
            report(ChClosed, Some(1500)),
            None,
        ),
        (
            "abandoned there, order paid",
            Succeeded,
            "pingpp",
            paid.clone(),
            Some(Duplicate),
        ),
        (
            "abandoned there, order pending",
            Pending,
            "pingpp",
            paid.clone(),
            Some(Duplicate),
        ),
        (
            "abandoned there, not paid",
            Succeeded,
            "pingpp",
            report(NotFound, None),
            None,
        ),
        (
            "never tried there",
            PaymentStatus::Closed,
            "wechatpay",
            paid.clone(),
            None,
        ),
    ];
    for (name, status, channel, report, want) in cases {
        let o = owned_by_alipay(*status);
        assert_eq!(o.late_payment(channel, report), *want, "{name}");
    }
}

#[test]
fn which_settled_orders_a_query_still_asks_their_channel_about() {
    let late = |channel: &str| late(channel, LateRefund::Pending);
    let mut cases: Vec<(&str, Order, bool)> = vec![];
    cases.push(("pending (asked anyway)", owned_by_alipay(Pending), false));
    cases.push(("succeeded", owned_by_alipay(Succeeded), false));
    let mut o = owned_by_alipay(PaymentStatus::Closed);
    cases.push(("closed by the channel's report", o.clone(), false));
    o.close_confirmed = Some(true);
    cases.push(("closed, confirmed", o.clone(), false));
    o.close_confirmed = Some(false);
    cases.push(("closed, not confirmed", o.clone(), true));
    o.late_payments.push(late("pingpp"));
    cases.push(("closed, a duplicate elsewhere on record", o.clone(), true));
    o.late_payments.push(late("alipay"));
    cases.push(("closed, its late payment on record", o, false));
    let mut o = owned_by_alipay(Failed);
    o.failure = failure(FailureCode::Channel("ACQ.TRADE_HAS_CLOSE".into()));
    cases.push(("failed by the channel", o.clone(), true));
    o.failure = failure(FailureCode::PaymentReversed);
    cases.push(("failed, reversed", o.clone(), true));
    o.late_payments.push(late("alipay"));
    cases.push(("failed, its late payment on record", o.clone(), false));
    o.late_payments.clear();
    o.failure = failure(FailureCode::NothingCreated);
    cases.push(("failed, nothing created anywhere", o.clone(), false));
    o.failure = None;
    o.channel = None;
    cases.push(("failed, never routed", o, false));
    for (name, o, want) in cases {
        assert_eq!(o.watched_for_late_payment(), want, "{name}");
    }
}

#[test]
fn records_of_older_versions_load_typed() {
    let attempt: Attempt = serde_json::from_value(serde_json::json!({
        "channel": "pingpp", "started_at": "2026-01-01T00:00:00Z", "outcome": "abandoned",
        "reason": "abandoned; Ping++ cannot close charges; it expires at the channel"
    }))
    .unwrap();
    assert_eq!(attempt.closing, Some(Closing::CannotClose));
    let open: Attempt = serde_json::from_value(serde_json::json!({
        "channel": "alipay", "started_at": "2026-01-01T00:00:00Z", "outcome": "abandoned",
        "reason": "outcome unknown (timeout); closing it there"
    }))
    .unwrap();
    assert_eq!(open.closing, None);
    let closed: Attempt = serde_json::from_value(serde_json::json!({
        "channel": "alipay", "started_at": "2026-01-01T00:00:00Z", "outcome": "abandoned",
        "reason": "abandoned; closed at the channel"
    }))
    .unwrap();
    assert_eq!(closed.closing, Some(Closing::Closed));
    // A typed record round-trips.
    let json = serde_json::to_value(&attempt).unwrap();
    assert_eq!(serde_json::from_value::<Attempt>(json).unwrap(), attempt);

    let anomalies: Vec<Anomaly> = serde_json::from_value(serde_json::json!([
        "paid_after_close",
        "duplicate_refunded:pingpp",
        "duplicate_refund_pending:wx",
        "duplicate_payment:alipay",
        "something_else"
    ]))
    .unwrap();
    assert_eq!(
        anomalies,
        vec![
            Anomaly::PaidAfterClose,
            Anomaly::DuplicatePayment {
                channel: "pingpp".into()
            },
            Anomaly::DuplicatePayment {
                channel: "wx".into()
            },
            Anomaly::DuplicatePayment {
                channel: "alipay".into()
            },
            Anomaly::Other("something_else".into()),
        ]
    );
    assert_eq!(
        serde_json::to_value(&anomalies[1]).unwrap(),
        serde_json::json!("duplicate_payment:pingpp")
    );

    for (text, code) in [
        ("channel_unavailable", FailureCode::NothingCreated),
        ("payment_reversed", FailureCode::PaymentReversed),
        (
            "ACQ.TRADE_HAS_CLOSE",
            FailureCode::Channel("ACQ.TRADE_HAS_CLOSE".into()),
        ),
    ] {
        let f: Failure =
            serde_json::from_value(serde_json::json!({"code": text, "message": "m"})).unwrap();
        assert_eq!(f.code, code);
        assert_eq!(serde_json::to_value(&f).unwrap()["code"], text);
    }
}

#[test]
fn split_is_stored_only_when_set_so_older_records_and_fingerprints_stay_the_same() {
    let plain = order(Pending).request;
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("split"), "{text}");
    let loaded: OrderRequest = serde_json::from_str(&text).unwrap();
    assert!(!loaded.split);
    let split = OrderRequest {
        split: true,
        ..plain
    };
    let text = serde_json::to_string(&split).unwrap();
    assert!(text.ends_with(r#","split":true}"#), "{text}");
    assert_eq!(serde_json::from_str::<OrderRequest>(&text).unwrap(), split);
}
