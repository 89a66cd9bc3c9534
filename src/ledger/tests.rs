//! The ledger's events feed, outbox and order list, on every backend: an event commits with
//! the write that raises it, feed positions only grow, deliveries move through their states,
//! and orders list newest first.

use chrono::{DateTime, Duration, Utc};

use super::conformance::{on_both_backends, Backend, Shared};
use super::events::{
    DeliveryState, DeliveryUpdate, EventType, OrderCursor, OrderQuery, OutboxStats,
};
use super::{Order, Refund};
use crate::domain::{PaymentStatus, RefundStatus};
use crate::money::Fen;
use crate::order::events::parse_event_id;

/// An Alipay QR order of `amount` fen created now, with no attempt yet.
pub(crate) fn order(no: &str, amount: u64, status: PaymentStatus) -> Order {
    let mut o = crate::order::tests::order(status);
    o.request.out_trade_no = no.into();
    o.request.amount = Fen(amount);
    o.request.subject = "ledger test".into();
    o.fingerprint = format!("fp-{no}");
    o.channel = Some("alipay".into());
    o.attempts.clear();
    let now = Utc::now();
    (o.created_at, o.updated_at) = (now, now);
    o
}

/// A pending Alipay refund of `amount` fen of order `trade`, requested now.
pub(crate) fn refund(no: &str, trade: &str, amount: u64) -> Refund {
    let now = Utc::now();
    Refund {
        out_refund_no: no.into(),
        out_trade_no: trade.into(),
        amount: Fen(amount),
        reason: None,
        fingerprint: format!("fp-{no}"),
        status: RefundStatus::Pending,
        channel: "alipay".into(),
        channel_refund_no: None,
        failure: None,
        funded_by: vec![],
        created_at: now,
        updated_at: now,
    }
}

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
}

on_both_backends!(
    a_write_and_its_events_commit_together_and_survive_a_reopen,
    a_refused_write_raises_no_event,
    feed_positions_strictly_increase_across_concurrent_writes_and_reopens,
    deliveries_move_through_their_states,
    without_delivery_events_are_written_but_not_queued,
    orders_list_newest_first_with_ties_broken_by_number,
    a_redelivery_keeps_the_events_age_and_restarts_its_retries,
    every_order_write_is_a_compare_and_set_on_its_version,
);

/// Two writers read the order at one version; the second to write is refused, whatever it
/// writes, and a refund the ledger reserved meanwhile moves the version too.
async fn every_order_write_is_a_compare_and_set_on_its_version(b: Backend) {
    let ledger = b.open(false).await;
    let o = order("CAS0000001", 1000, PaymentStatus::Pending);
    let mut first = ledger.insert_order(o).await.unwrap().stored();
    assert_eq!(first.version, 1);
    let mut second = ledger.get_order("CAS0000001").await.unwrap().unwrap();
    assert_eq!(second.version, 1);

    first.status = PaymentStatus::Succeeded;
    ledger.put_order(&mut first).await.unwrap();
    assert_eq!(first.version, 2);
    second.status = PaymentStatus::Failed;
    match ledger.put_order(&mut second).await {
        Err(super::LedgerError::Stale {
            read: 1, stored: 2, ..
        }) => {}
        other => panic!("the stale write is refused, not {other:?}"),
    }
    assert_eq!(
        second.version, 1,
        "a refused write leaves the copy as it was"
    );
    let stored = ledger.get_order("CAS0000001").await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version),
        (PaymentStatus::Succeeded, 2)
    );

    // A write inside the ledger (a refund's reservation) is a new version too: a copy read
    // before it cannot undo the reservation.
    ledger
        .insert_refund(refund("RCAS000001", "CAS0000001", 300))
        .await
        .unwrap();
    let mut before_refund = first.clone();
    before_refund.refund_reserved = Fen(0);
    assert!(matches!(
        ledger.put_order(&mut before_refund).await,
        Err(super::LedgerError::Stale {
            read: 2,
            stored: 3,
            ..
        })
    ));
    let stored = ledger.get_order("CAS0000001").await.unwrap().unwrap();
    assert_eq!((stored.refund_reserved, stored.version), (Fen(300), 3));

    // Read again, it writes.
    let mut fresh = stored;
    fresh.anomalies.clear();
    ledger.put_order(&mut fresh).await.unwrap();
    assert_eq!(fresh.version, 4);
}

/// A succeeded order created at `created`.
pub(super) fn paid_at(no: &str, created: DateTime<Utc>) -> Order {
    let mut o = order(no, 100, PaymentStatus::Succeeded);
    o.created_at = created;
    o.updated_at = created;
    o
}

pub(super) fn numbers(orders: &[Order]) -> Vec<&str> {
    orders
        .iter()
        .map(|o| o.request.out_trade_no.as_str())
        .collect()
}

/// Every page of `query`, following the cursors; the orders in the order they came.
async fn all_pages(ledger: &Shared, query: OrderQuery) -> (Vec<Order>, usize) {
    let (mut out, mut pages, mut q) = (Vec::new(), 0, query);
    loop {
        let page = ledger.list_orders(&q).await.unwrap();
        pages += 1;
        assert!(page.orders.len() <= q.limit);
        out.extend(page.orders);
        match page.next {
            Some(next) => q.after = Some(next),
            None => return (out, pages),
        }
        assert!(pages < 100, "the cursor does not advance");
    }
}

async fn a_write_and_its_events_commit_together_and_survive_a_reopen(b: Backend) {
    let ledger = b.open(true).await;
    let pending = order("EVENTS0001", 1500, PaymentStatus::Pending);
    let pending = ledger.insert_order(pending).await.unwrap().stored();
    assert!(
        ledger.events_after(0, 10).await.unwrap().is_empty(),
        "a new pending order is no news"
    );
    let mut paid = pending.clone();
    paid.status = PaymentStatus::Succeeded;
    ledger.put_order(&mut paid).await.unwrap();
    let r = refund("REVENTS0001", "EVENTS0001", 500);
    ledger.insert_refund(r.clone()).await.unwrap();
    let mut settled = r.clone();
    settled.status = RefundStatus::Succeeded;
    ledger.settle_refund(&settled).await.unwrap();
    let ledger_id = ledger.ledger_id().to_string();

    let ledger = b.reopen(ledger, false).await;
    assert_eq!(ledger.ledger_id(), ledger_id, "the id is the file's");
    let o = ledger.get_order("EVENTS0001").await.unwrap().unwrap();
    assert_eq!(o.status, PaymentStatus::PartiallyRefunded);
    let events = ledger.events_after(0, 10).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.seq, e.event_type)).collect();
    assert_eq!(
        kinds,
        [
            (1, EventType::PaymentSucceeded),
            (2, EventType::RefundSucceeded)
        ]
    );
    assert!(events.iter().all(|e| e.out_trade_no == "EVENTS0001"));
    // Each body is the resource as it was when its event happened.
    let body = |i: usize| serde_json::from_str::<serde_json::Value>(&events[i].body).unwrap();
    assert_eq!(body(0)["data"]["status"], "succeeded");
    assert_eq!(body(0)["id"], events[0].id);
    assert_eq!(body(1)["type"], "refund.succeeded");
    assert_eq!(body(1)["data"]["out_refund_no"], "REVENTS0001");
    // Both were queued for delivery in the same transactions.
    let outbox = ledger.outbox(0, 10).await.unwrap();
    let queued: Vec<_> = outbox
        .iter()
        .map(|d| (d.seq, d.state, d.attempts))
        .collect();
    assert_eq!(
        queued,
        [
            (1, DeliveryState::Pending, 0),
            (2, DeliveryState::Pending, 0)
        ]
    );
}

async fn a_refused_write_raises_no_event(b: Backend) {
    let ledger = b.open(true).await;
    ledger
        .insert_order(order("REFUSED001", 100, PaymentStatus::Pending))
        .await
        .unwrap();
    let e = ledger
        .insert_refund(refund("RREFUSED001", "REFUSED001", 100))
        .await
        .unwrap_err();
    assert!(matches!(e, super::LedgerError::NotRefundable(_)), "{e}");
    assert!(ledger.events_after(0, 10).await.unwrap().is_empty());
    assert!(ledger.outbox(0, 10).await.unwrap().is_empty());
}

async fn feed_positions_strictly_increase_across_concurrent_writes_and_reopens(b: Backend) {
    let ledger = b.open(false).await;
    let writes: Vec<_> = (0..40)
        .map(|i| {
            let l = ledger.clone();
            tokio::spawn(async move {
                let no = format!("SEQ{i:07}");
                l.insert_order(order(&no, 100, PaymentStatus::Succeeded))
                    .await
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let events = ledger.events_after(0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    for e in &events {
        assert_eq!(parse_event_id(ledger.ledger_id(), &e.id), Some(e.seq));
    }
    let mut orders: Vec<_> = events.iter().map(|e| e.out_trade_no.as_str()).collect();
    orders.sort_unstable();
    orders.dedup();
    assert_eq!(orders.len(), 40, "one event per order");
    // Reads resume after a position and stop at the limit.
    let page = ledger.events_after(25, 10).await.unwrap();
    assert_eq!(page.first().map(|e| e.seq), Some(26));
    assert_eq!(page.len(), 10);
    assert!(ledger.events_after(40, 10).await.unwrap().is_empty());
    assert!(ledger.events_after(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(ledger.event(7).await.unwrap(), Some(events[6].clone()));
    assert_eq!(ledger.event(41).await.unwrap(), None);
    // A reopened ledger continues the feed.
    let ledger = b.reopen(ledger, false).await;
    ledger
        .insert_order(order("SEQAFTER01", 100, PaymentStatus::Succeeded))
        .await
        .unwrap();
    let last = ledger.events_after(40, 10).await.unwrap();
    assert_eq!(last.iter().map(|e| e.seq).collect::<Vec<_>>(), [41]);
}

async fn deliveries_move_through_their_states(b: Backend) {
    let ledger = b.open(true).await;
    for no in ["DELIVER001", "DELIVER002", "DELIVER003"] {
        ledger
            .insert_order(order(no, 100, PaymentStatus::Succeeded))
            .await
            .unwrap();
    }
    let row = |seq: u64| {
        let ledger = ledger.clone();
        async move {
            let rows = ledger.outbox(0, 10).await.unwrap();
            rows.into_iter().find(|d| d.seq == seq)
        }
    };
    let stats = ledger.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (3, 0));
    assert_eq!(stats.oldest_pending, Some(row(1).await.unwrap().created_at));

    // Retry: one more attempt, due later, with the error kept.
    let later = Utc::now() + Duration::seconds(60);
    let retry = |attempts: u32, error: &str| DeliveryUpdate::Retry {
        attempts,
        next_at: later,
        error: error.into(),
    };
    assert!(ledger
        .record_delivery(1, retry(0, "HTTP 503"))
        .await
        .unwrap());
    assert!(ledger
        .record_delivery(1, retry(1, "timeout"))
        .await
        .unwrap());
    // A result for an attempt count that has moved on (stale) changes nothing.
    assert!(!ledger.record_delivery(1, retry(1, "stale")).await.unwrap());
    let d = row(1).await.unwrap();
    assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 2));
    assert_eq!(d.next_at, later);
    assert_eq!(d.last_error.as_deref(), Some("timeout"));

    // Failed: counted apart, and no longer takes attempt results.
    let failed = DeliveryUpdate::Failed {
        attempts: 0,
        error: "gave up".into(),
    };
    assert!(ledger.record_delivery(2, failed.clone()).await.unwrap());
    let d = row(2).await.unwrap();
    assert_eq!((d.state, d.attempts), (DeliveryState::Failed, 1));
    let stats = ledger.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (2, 1));
    assert!(!ledger.record_delivery(2, retry(1, "late")).await.unwrap());
    assert!(!ledger
        .record_delivery(2, DeliveryUpdate::Delivered { attempts: 1 })
        .await
        .unwrap());
    assert_eq!(row(2).await.unwrap().state, DeliveryState::Failed);

    // Delivered: gone from the outbox, once.
    assert!(ledger
        .record_delivery(3, DeliveryUpdate::Delivered { attempts: 0 })
        .await
        .unwrap());
    assert_eq!(row(3).await, None);
    assert!(!ledger
        .record_delivery(3, DeliveryUpdate::Delivered { attempts: 0 })
        .await
        .unwrap());
    let stats = ledger.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (1, 1));

    // Redeliver: a delivered or a failed event is queued afresh, due now.
    let now = Utc::now();
    for seq in [3, 2] {
        let redeliver = DeliveryUpdate::Redeliver { now };
        assert!(ledger.record_delivery(seq, redeliver).await.unwrap());
        let d = row(seq).await.unwrap();
        assert_eq!(
            (d.state, d.attempts, d.next_at),
            (DeliveryState::Pending, 0, now)
        );
        assert_eq!(d.last_error, None);
    }
    let stats = ledger.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (3, 0));

    // An event the feed does not have: nothing changes.
    for update in [
        DeliveryUpdate::Delivered { attempts: 0 },
        retry(0, "x"),
        failed,
        DeliveryUpdate::Redeliver { now },
    ] {
        assert!(!ledger.record_delivery(99, update).await.unwrap());
    }
    assert_eq!(ledger.outbox(0, 10).await.unwrap().len(), 3);
}

async fn without_delivery_events_are_written_but_not_queued(b: Backend) {
    let ledger = b.open(false).await;
    ledger
        .insert_order(order("FEEDONLY01", 100, PaymentStatus::Succeeded))
        .await
        .unwrap();
    assert_eq!(ledger.events_after(0, 10).await.unwrap().len(), 1);
    assert!(ledger.outbox(0, 10).await.unwrap().is_empty());
    assert_eq!(ledger.outbox_stats().await.unwrap(), OutboxStats::default());
    // Delivery turned on later queues the events written from then on, not the earlier ones.
    let ledger = b.reopen(ledger, true).await;
    ledger
        .insert_order(order("FEEDONLY02", 100, PaymentStatus::Succeeded))
        .await
        .unwrap();
    let queued: Vec<u64> = ledger
        .outbox(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.seq)
        .collect();
    assert_eq!(queued, [2]);
}

async fn orders_list_newest_first_with_ties_broken_by_number(b: Backend) {
    let ledger = b.open(false).await;
    // Three orders share a millisecond; the list still has one place for each.
    for (no, secs) in [
        ("LIST000001", 0),
        ("LIST000002", 10),
        ("TIE_A00003", 20),
        ("TIE_C00003", 20),
        ("TIE_B00003", 20),
        ("LIST000004", 30),
        ("LIST000005", 40),
    ] {
        ledger.insert_order(paid_at(no, at(secs))).await.unwrap();
    }
    let newest_first = [
        "LIST000005",
        "LIST000004",
        "TIE_C00003",
        "TIE_B00003",
        "TIE_A00003",
        "LIST000002",
        "LIST000001",
    ];
    for limit in [1, 2, 3, 7, 50] {
        let (orders, pages) = all_pages(
            &ledger,
            OrderQuery {
                limit,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(numbers(&orders), newest_first, "limit {limit}");
        assert!(
            pages >= 7usize.div_ceil(limit),
            "limit {limit}: {pages} pages"
        );
    }
    // created_after is inclusive, created_before exclusive, to the millisecond.
    let window = OrderQuery {
        created_after: Some(at(10)),
        created_before: Some(at(30)),
        limit: 2,
        ..Default::default()
    };
    let (orders, _) = all_pages(&ledger, window.clone()).await;
    assert_eq!(
        numbers(&orders),
        ["TIE_C00003", "TIE_B00003", "TIE_A00003", "LIST000002"]
    );
    let just_before = at(30) - Duration::milliseconds(1);
    let (orders, _) = all_pages(
        &ledger,
        OrderQuery {
            created_after: Some(just_before),
            ..window.clone()
        },
    )
    .await;
    assert!(orders.is_empty(), "{:?}", numbers(&orders));
    // An empty or reversed window, and a cursor outside the window, answer nothing.
    for q in [
        OrderQuery {
            created_after: Some(at(30)),
            created_before: Some(at(30)),
            ..window.clone()
        },
        OrderQuery {
            created_after: Some(at(40)),
            created_before: Some(at(0)),
            ..window.clone()
        },
        OrderQuery {
            created_after: Some(at(35)),
            created_before: None,
            after: Some(OrderCursor {
                created_ms: at(10).timestamp_millis(),
                out_trade_no: "LIST000002".into(),
            }),
            ..window.clone()
        },
    ] {
        let page = ledger.list_orders(&q).await.unwrap();
        assert!(page.orders.is_empty() && page.next.is_none(), "{q:?}");
    }
}

async fn a_redelivery_keeps_the_events_age_and_restarts_its_retries(b: Backend) {
    let ledger = b.open(true).await;
    for no in ["AGE0000001", "AGE0000002"] {
        ledger
            .insert_order(order(no, 100, PaymentStatus::Succeeded))
            .await
            .unwrap();
    }
    let rows = ledger.outbox(0, 10).await.unwrap();
    let (first, second) = (rows[0].clone(), rows[1].clone());
    assert_eq!(first.retry_from, first.created_at);
    assert!(ledger
        .record_delivery(1, DeliveryUpdate::Delivered { attempts: 0 })
        .await
        .unwrap());
    let stats = ledger.outbox_stats().await.unwrap();
    assert_eq!(stats.oldest_pending, Some(second.created_at));

    // Event 1, delivered, is asked for again an hour later while event 2 still waits: the
    // oldest undelivered event is event 1, as old as its change, not an hour younger.
    let later = second.created_at + Duration::hours(1);
    let redeliver = DeliveryUpdate::Redeliver { now: later };
    assert!(ledger.record_delivery(1, redeliver).await.unwrap());
    let event = ledger.event(1).await.unwrap().unwrap();
    let stats = ledger.outbox_stats().await.unwrap();
    assert_eq!(stats.oldest_pending, Some(event.created_at));
    assert!(event.created_at <= second.created_at);
    let row = ledger.outbox(0, 1).await.unwrap().remove(0);
    assert_eq!((row.created_at, row.retry_from), (event.created_at, later));

    // A given-up event keeps its age too; its retries start again from the redelivery.
    let failed = DeliveryUpdate::Failed {
        attempts: 0,
        error: "gave up".into(),
    };
    assert!(ledger.record_delivery(2, failed).await.unwrap());
    let again = later + Duration::minutes(5);
    let redeliver = DeliveryUpdate::Redeliver { now: again };
    assert!(ledger.record_delivery(2, redeliver).await.unwrap());
    let row = ledger.outbox(1, 1).await.unwrap().remove(0);
    assert_eq!((row.created_at, row.retry_from), (second.created_at, again));
    assert_eq!((row.state, row.attempts), (DeliveryState::Pending, 0));
}
