//! Which writes raise which events: every status change, anomalies, late payments and their
//! refunds, refunds; and the stored body.
use super::super::tests::{at, order};
use super::*;
use crate::domain::RefundStatus;
use crate::money::Fen;
use crate::order::{Anomaly, LateKind, LatePayment};
use EventType::*;
use PaymentStatus::*;

#[test]
fn every_status_change_raises_its_event_once() {
    let table: &[(Option<PaymentStatus>, PaymentStatus, &[EventType])] = &[
        (None, Pending, &[]),
        (None, Succeeded, &[PaymentSucceeded]),
        (Some(Pending), Pending, &[]),
        (Some(Pending), Succeeded, &[PaymentSucceeded]),
        (Some(Pending), Failed, &[PaymentFailed]),
        (Some(Pending), Closed, &[PaymentClosed]),
        (Some(Succeeded), Succeeded, &[]),
        (Some(Succeeded), PartiallyRefunded, &[]),
        (Some(PartiallyRefunded), Refunded, &[]),
        (Some(Failed), Failed, &[]),
        (Some(Closed), Closed, &[]),
        // A close that turned out paid (the channel answered "already paid").
        (Some(Closed), Succeeded, &[PaymentSucceeded]),
        (Some(Failed), Succeeded, &[PaymentSucceeded]),
    ];
    for (before, after, want) in table {
        let b = before.map(order);
        let a = order(*after);
        assert_eq!(
            order_events(b.as_ref(), &a),
            want.to_vec(),
            "{before:?} -> {after:?}"
        );
    }
}

fn late(status: LateRefund) -> LatePayment {
    LatePayment {
        channel: "alipay".into(),
        kind: LateKind::AfterClose,
        channel_trade_no: None,
        amount: Fen(1500),
        out_refund_no: "LP_ORDER0001_abcdef".into(),
        refund_status: status,
        channel_refund_no: None,
        refund_failure: None,
        detected_at: at(1),
        updated_at: at(1),
    }
}

#[test]
fn late_payments_raise_an_anomaly_when_found_and_when_their_refund_settles() {
    let closed = order(Closed);
    let mut found = closed.clone();
    found.late_payments.push(late(LateRefund::Pending));
    found.anomalies.push(Anomaly::PaidAfterClose);
    assert_eq!(order_events(Some(&closed), &found), vec![PaymentAnomaly]);
    // Written again unchanged: nothing new.
    assert_eq!(order_events(Some(&found), &found), vec![]);
    let mut refunded = found.clone();
    refunded.late_payments[0].refund_status = LateRefund::Succeeded;
    assert_eq!(order_events(Some(&found), &refunded), vec![PaymentAnomaly]);
    let mut failed = found.clone();
    failed.late_payments[0].refund_status = LateRefund::Failed;
    assert_eq!(order_events(Some(&found), &failed), vec![PaymentAnomaly]);
    // A retry that changes only the refund's details raises nothing.
    let mut detail = found.clone();
    detail.late_payments[0].channel_refund_no = Some("R1".into());
    assert_eq!(order_events(Some(&found), &detail), vec![]);
    // A duplicate payment on an order that succeeded elsewhere.
    let paid = order(Succeeded);
    let mut dup = paid.clone();
    dup.anomalies.push(Anomaly::DuplicatePayment {
        channel: "wechatpay".into(),
    });
    assert_eq!(order_events(Some(&paid), &dup), vec![PaymentAnomaly]);
}

#[test]
fn a_refund_raises_its_settlement_once() {
    let mut r = Refund {
        out_refund_no: "R0001".into(),
        out_trade_no: "ORDER0001".into(),
        amount: Fen(100),
        reason: None,
        fingerprint: "f".into(),
        status: RefundStatus::Pending,
        channel: "alipay".into(),
        channel_refund_no: None,
        failure: None,
        funded_by: vec![],
        created_at: at(0),
        updated_at: at(0),
    };
    assert_eq!(refund_event(None, &r), None);
    assert_eq!(refund_event(Some(RefundStatus::Pending), &r), None);
    r.status = RefundStatus::Succeeded;
    assert_eq!(
        refund_event(Some(RefundStatus::Pending), &r),
        Some(RefundSucceeded)
    );
    assert_eq!(refund_event(Some(RefundStatus::Succeeded), &r), None);
    r.status = RefundStatus::Failed;
    assert_eq!(
        refund_event(Some(RefundStatus::Pending), &r),
        Some(RefundFailed)
    );
    assert_eq!(refund_event(Some(RefundStatus::Failed), &r), None);
}

#[test]
fn the_body_is_the_resource_as_the_api_renders_it() {
    let o = order(Succeeded);
    let e = Event::new(
        "a1b2c3d4",
        7,
        "f00d",
        PaymentSucceeded,
        Subject::Payment(&o),
        at(5),
    )
    .unwrap();
    assert_eq!(e.id, "evt_a1b2c3d4_000000000007_f00d");
    assert_eq!(parse_event_id("a1b2c3d4", &e.id), Some(7));
    assert_eq!(parse_event_id("other000", &e.id), None);
    assert_eq!(parse_event_id("a1b2c3d4", "evt_a1b2c3d4_7_f00d"), None);
    assert_eq!(
        parse_event_id("a1b2c3d4", "evt_a1b2c3d4_000000000007"),
        None
    );
    assert_eq!(
        parse_event_id("a1b2c3d4", "evt_a1b2c3d4_000000000007_"),
        None
    );
    let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
    assert_eq!(v["id"], e.id.as_str());
    assert_eq!(v["type"], "payment.succeeded");
    assert_eq!(
        v["data"],
        serde_json::to_value(PaymentView::of(&o)).unwrap()
    );
    assert_eq!(v["data"]["status"], "succeeded");
}
