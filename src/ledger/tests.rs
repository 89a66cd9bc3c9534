//! The embedded ledger's events feed, outbox and order list: an event commits with the write
//! that raises it, feed positions only grow, deliveries move through their states, and orders
//! list newest first, also from an index rebuilt for a ledger written before it existed.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use redb::ReadableDatabase as _;

use super::events::{
    DeliveryState, DeliveryUpdate, EventStore, EventType, OrderCursor, OrderQuery, OutboxStats,
};
use super::redb_store::BY_CREATED;
use super::{Ledger, Order, RedbLedger, Refund};
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

/// Closes `ledger` and opens its file again (the writer thread lets go of the file once the
/// last handle is dropped, a moment later).
pub(super) fn reopen(ledger: RedbLedger, dir: &Path) -> RedbLedger {
    drop(ledger);
    for _ in 0..100 {
        if let Ok(l) = RedbLedger::open(dir) {
            return l;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the ledger does not reopen");
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
}

/// A succeeded order created at `created`.
fn paid_at(no: &str, created: DateTime<Utc>) -> Order {
    let mut o = order(no, 100, PaymentStatus::Succeeded);
    o.created_at = created;
    o.updated_at = created;
    o
}

fn numbers(orders: &[Order]) -> Vec<&str> {
    orders
        .iter()
        .map(|o| o.request.out_trade_no.as_str())
        .collect()
}

/// Every page of `query`, following the cursors; the orders in the order they came.
async fn all_pages(ledger: &RedbLedger, query: OrderQuery) -> (Vec<Order>, usize) {
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

#[tokio::test]
async fn a_write_and_its_events_commit_together_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path())
        .unwrap()
        .delivering_events(true);
    let pending = order("EVENTS0001", 1500, PaymentStatus::Pending);
    ledger.insert_order(pending.clone()).await.unwrap();
    assert!(
        ledger.events_after(0, 10).await.unwrap().is_empty(),
        "a new pending order is no news"
    );
    let mut paid = pending.clone();
    paid.status = PaymentStatus::Succeeded;
    ledger.put_order(&paid).await.unwrap();
    let r = refund("REVENTS0001", "EVENTS0001", 500);
    ledger.insert_refund(r.clone()).await.unwrap();
    let mut settled = r.clone();
    settled.status = RefundStatus::Succeeded;
    ledger.settle_refund(&settled).await.unwrap();
    let ledger_id = ledger.ledger_id().to_string();

    let ledger = reopen(ledger, dir.path());
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

#[tokio::test]
async fn a_refused_write_raises_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path())
        .unwrap()
        .delivering_events(true);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_positions_strictly_increase_across_concurrent_writes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path()).unwrap();
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
    let ledger = reopen(ledger, dir.path());
    ledger
        .insert_order(order("SEQAFTER01", 100, PaymentStatus::Succeeded))
        .await
        .unwrap();
    let last = ledger.events_after(40, 10).await.unwrap();
    assert_eq!(last.iter().map(|e| e.seq).collect::<Vec<_>>(), [41]);
}

#[tokio::test]
async fn deliveries_move_through_their_states() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path())
        .unwrap()
        .delivering_events(true);
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

#[tokio::test]
async fn without_delivery_events_are_written_but_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path())
        .unwrap()
        .delivering_events(false);
    ledger
        .insert_order(order("FEEDONLY01", 100, PaymentStatus::Succeeded))
        .await
        .unwrap();
    assert_eq!(ledger.events_after(0, 10).await.unwrap().len(), 1);
    assert!(ledger.outbox(0, 10).await.unwrap().is_empty());
    assert_eq!(ledger.outbox_stats().await.unwrap(), OutboxStats::default());
    // Delivery turned on later queues the events written from then on, not the earlier ones.
    let ledger = reopen(ledger, dir.path()).delivering_events(true);
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

#[tokio::test]
async fn orders_list_newest_first_with_ties_broken_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path()).unwrap();
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

#[tokio::test]
async fn the_order_index_is_rebuilt_for_a_ledger_written_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path()).unwrap();
    let nos = ["OLD0000001", "OLD0000002", "OLD0000003", "OLD0000004"];
    for (i, no) in nos.iter().enumerate() {
        ledger
            .insert_order(paid_at(no, at(i as i64)))
            .await
            .unwrap();
    }
    let newest_first: Vec<&str> = nos.iter().rev().copied().collect();
    let everything = OrderQuery {
        limit: 10,
        ..Default::default()
    };
    // A version without the index: the table is not there at all.
    {
        let tx = ledger.db.begin_write().unwrap();
        assert!(tx.delete_table(BY_CREATED).unwrap());
        tx.commit().unwrap();
    }
    let ledger = reopen(ledger, dir.path());
    let page = ledger.list_orders(&everything).await.unwrap();
    assert_eq!(numbers(&page.orders), newest_first);
    // An index missing some rows is completed as well.
    {
        let tx = ledger.db.begin_write().unwrap();
        let mut index = tx.open_table(BY_CREATED).unwrap();
        index
            .remove((at(1).timestamp_millis(), "OLD0000002"))
            .unwrap();
        drop(index);
        tx.commit().unwrap();
    }
    let read = ledger.db.begin_read().unwrap();
    let rows = redb::ReadableTableMetadata::len(&read.open_table(BY_CREATED).unwrap()).unwrap();
    assert_eq!(rows, 3);
    drop(read);
    let ledger = reopen(ledger, dir.path());
    let page = ledger.list_orders(&everything).await.unwrap();
    assert_eq!(numbers(&page.orders), newest_first);
}

#[tokio::test]
async fn a_redelivery_keeps_the_events_age_and_restarts_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path())
        .unwrap()
        .delivering_events(true);
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
