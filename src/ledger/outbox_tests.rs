//! The outbox as the delivery loop sees it: per-order queues (only a head is ever due), a
//! given-up head holding its order back until redelivered, stale attempt results ignored,
//! and every event queued in the transaction of its change.
use chrono::{Duration, Utc};

use super::conformance::{on_both_backends, Backend, Shared};
use super::events::{DeliveryState, DeliveryUpdate};
use super::tests::{order, refund};
use crate::domain::{PaymentStatus, RefundStatus};

async fn paid(l: &Shared, no: &str) {
    let o = order(no, 1000, PaymentStatus::Pending);
    let mut o = l.insert_order(o).await.unwrap().stored();
    o.status = PaymentStatus::Succeeded;
    l.put_order(&mut o).await.unwrap();
}

async fn refunded(l: &Shared, no: &str, refund_no: &str) {
    let mut r = refund(refund_no, no, 100);
    l.insert_refund(r.clone()).await.unwrap();
    r.status = RefundStatus::Succeeded;
    l.settle_refund(&r).await.unwrap();
}

on_both_backends!(
    only_the_head_of_each_order_is_due_and_delivery_moves_the_queue,
    a_given_up_head_holds_its_order_back_until_ops_redeliver_it,
    events_are_written_with_their_change_and_queued_only_when_delivering,
    an_event_about_no_order_has_a_queue_of_its_own,
);

/// The sequence numbers due now.
async fn due(l: &Shared) -> Vec<u64> {
    let (d, _) = l.due(Utc::now(), 100).await.unwrap();
    d.iter().map(|d| d.seq).collect()
}

async fn only_the_head_of_each_order_is_due_and_delivery_moves_the_queue(b: Backend) {
    let l = b.open(true).await;
    paid(&l, "ORDER_A01").await; // 1: payment.succeeded
    paid(&l, "ORDER_B01").await; // 2: payment.succeeded
    refunded(&l, "ORDER_A01", "REFUND_A01").await; // 3: refund.succeeded of A
    let feed = l.events_after(0, 10).await.unwrap();
    let kinds: Vec<_> = feed
        .iter()
        .map(|e| (e.seq, e.event_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "payment.succeeded"),
            (2, "payment.succeeded"),
            (3, "refund.succeeded")
        ]
    );
    assert_eq!(due(&l).await, [1, 2], "A's refund waits behind A's payment");
    // A delivery attempt that fails pushes A's head back; the refund still waits.
    let later = Utc::now() + Duration::seconds(60);
    let retry = DeliveryUpdate::Retry {
        attempts: 0,
        next_at: later,
        error: "HTTP 500".into(),
    };
    assert!(l.record_delivery(1, retry.clone()).await.unwrap());
    assert_eq!(due(&l).await, [2]);
    let (_, next) = l.due(Utc::now(), 10).await.unwrap();
    assert_eq!(
        next.map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );
    // The same result again (a stale attempt) changes nothing.
    assert!(!l.record_delivery(1, retry).await.unwrap());
    // Delivered (at the attempt count it was made at): the refund becomes due.
    let at = |attempts| DeliveryUpdate::Delivered { attempts };
    assert!(!l.record_delivery(1, at(0)).await.unwrap(), "stale");
    assert!(l.record_delivery(1, at(1)).await.unwrap());
    assert_eq!(due(&l).await, [2, 3]);
    assert!(l.record_delivery(3, at(0)).await.unwrap());
    assert!(l.record_delivery(2, at(0)).await.unwrap());
    assert_eq!(due(&l).await, Vec::<u64>::new());
    assert_eq!(l.outbox_stats().await.unwrap().pending, 0);
}

async fn a_given_up_head_holds_its_order_back_until_ops_redeliver_it(b: Backend) {
    let l = b.open(true).await;
    paid(&l, "ORDER_C01").await; // 1
    refunded(&l, "ORDER_C01", "REFUND_C01").await; // 2
    let failed = DeliveryUpdate::Failed {
        attempts: 0,
        error: "HTTP 410".into(),
    };
    assert!(l.record_delivery(1, failed).await.unwrap());
    assert_eq!(
        due(&l).await,
        Vec::<u64>::new(),
        "the refund never overtakes"
    );
    let stats = l.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (1, 1));
    let listed = l.outbox(0, 10).await.unwrap();
    assert_eq!(listed[0].state, DeliveryState::Failed);
    assert_eq!(listed[0].attempts, 1);
    // Ops redeliver: the payment event is due again with a fresh retry window.
    let now = Utc::now();
    assert!(l
        .record_delivery(1, DeliveryUpdate::Redeliver { now })
        .await
        .unwrap());
    assert_eq!(due(&l).await, [1]);
    let d = &l.outbox(0, 1).await.unwrap()[0];
    assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 0));
    assert_eq!(d.retry_from, now);
    // Delivered, then redelivered on request once more (queued again), in turn.
    let delivered = |attempts| DeliveryUpdate::Delivered { attempts };
    assert!(l.record_delivery(1, delivered(0)).await.unwrap());
    assert!(l
        .record_delivery(1, DeliveryUpdate::Redeliver { now: Utc::now() })
        .await
        .unwrap());
    assert_eq!(due(&l).await, [2], "queued behind the refund now waiting");
    assert!(!l
        .record_delivery(99, DeliveryUpdate::Redeliver { now: Utc::now() })
        .await
        .unwrap());
}

async fn events_are_written_with_their_change_and_queued_only_when_delivering(b: Backend) {
    let l = b.open(false).await;
    paid(&l, "ORDER_D01").await;
    assert_eq!(l.events_after(0, 10).await.unwrap().len(), 1);
    assert_eq!(l.outbox(0, 10).await.unwrap().len(), 0);
    assert_eq!(due(&l).await, Vec::<u64>::new());
    // Reopened: the event is still there, the order with it; ids stay unique by nonce.
    let l = b.reopen(l, true).await;
    let o = l.get_order("ORDER_D01").await.unwrap().unwrap();
    assert_eq!(o.status, PaymentStatus::Succeeded);
    paid(&l, "ORDER_D02").await;
    let feed = l.events_after(0, 10).await.unwrap();
    assert_eq!(feed.len(), 2);
    assert_ne!(feed[0].id, feed[1].id);
    assert_eq!(due(&l).await, [2]);
    // Ops can still push the event written while delivery was off.
    assert!(l
        .record_delivery(1, DeliveryUpdate::Redeliver { now: Utc::now() })
        .await
        .unwrap());
    let mut now_due = due(&l).await;
    now_due.sort_unstable();
    assert_eq!(now_due, [1, 2], "two orders: both due");
}

async fn an_event_about_no_order_has_a_queue_of_its_own(b: Backend) {
    use super::events::{EventType, Subject};
    let l = b.open(true).await;
    paid(&l, "ORDER_A01").await; // 1
    let data = serde_json::json!({"id": "rec_alipay_20261129", "discrepancies_total": 2});
    let subject = Subject::Notice {
        queue: "reconciliation:alipay",
        data: &data,
    };
    let e = l
        .record_event(EventType::ReconciliationCompleted, subject, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (e.seq, e.out_trade_no.as_str()),
        (2, "reconciliation:alipay")
    );
    let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
    assert_eq!(
        (&body["type"], &body["data"]),
        (&serde_json::json!("reconciliation.completed"), &data)
    );
    assert_eq!(l.event(2).await.unwrap(), Some(e));
    assert_eq!(due(&l).await, [1, 2], "not behind any order's events");
    // An order's events come only from the writes that change it.
    let o = order("ORDER_B01", 100, PaymentStatus::Succeeded);
    let refused = l
        .record_event(
            EventType::PaymentSucceeded,
            Subject::Payment(&o),
            Utc::now(),
        )
        .await;
    assert!(matches!(refused, Err(super::LedgerError::Inconsistent(_))));
    assert_eq!(l.events_after(0, 10).await.unwrap().len(), 2);
}
