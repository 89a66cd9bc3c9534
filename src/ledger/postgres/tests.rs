//! What only a shared database can get wrong: several replicas (separate pools on one schema)
//! writing the same order at once, migrations started together, TLS and the password.

use chrono::Utc;

use super::testdb::TestDb;
use super::{connect, migrate, PgLedger, PgOptions};
use crate::domain::{PaymentStatus, RefundStatus};
use crate::ledger::events::{EventStore, EventType};
use crate::ledger::tests::{order, refund};
use crate::ledger::{Inserted, Ledger, LedgerError};
use crate::money::Fen;

/// Two replicas of one ledger: separate pools on the same schema.
async fn replicas(db: &TestDb) -> [PgLedger; 2] {
    [db.ledger().await, db.ledger().await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_from_two_replicas_never_exceed_the_amount() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let [a, b] = replicas(&db).await;
    a.insert_order(order("RACE000001", 1000, PaymentStatus::Succeeded))
        .await
        .unwrap();
    // Twenty refunds of 100 against 1,000 paid, half sent to each replica.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                l.insert_refund(refund(&format!("RRACE{i:05}"), "RACE000001", 100))
                    .await
            })
        })
        .collect();
    let (mut made, mut refused) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Inserted::Created(r)) => made.push(r),
            Err(LedgerError::ExceedsRefundable { available: Fen(0) }) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((made.len(), refused), (10, 10));
    assert_eq!(
        b.get_order("RACE000001")
            .await
            .unwrap()
            .unwrap()
            .refund_reserved,
        Fen(1000)
    );
    // Settled concurrently over both replicas: each counts once, and the feed stays dense.
    let settles: Vec<_> = made
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            r.status = RefundStatus::Succeeded;
            r.updated_at = Utc::now();
            tokio::spawn(async move { l.settle_refund(&r).await })
        })
        .collect();
    for s in settles {
        s.await.unwrap().unwrap();
    }
    let o = a.get_order("RACE000001").await.unwrap().unwrap();
    assert_eq!((o.refunded, o.status), (Fen(1000), PaymentStatus::Refunded));
    let feed = b.events_after(0, 100).await.unwrap();
    let seqs: Vec<u64> = feed.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=feed.len() as u64).collect::<Vec<_>>());
    let refunds = feed
        .iter()
        .filter(|e| e.event_type == EventType::RefundSucceeded)
        .count();
    assert_eq!(refunds, 10);
    assert_eq!(a.ledger_id(), b.ledger_id(), "one ledger, one id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_order_created_on_two_replicas_at_once_is_created_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let [a, b] = replicas(&db).await;
    for round in 0..10 {
        let no = format!("TWICE{round:05}");
        let (x, y) = tokio::join!(
            a.insert_order(order(&no, 100, PaymentStatus::Succeeded)),
            b.insert_order(order(&no, 100, PaymentStatus::Succeeded)),
        );
        let created = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|i| matches!(i, Inserted::Created(_)))
            .count();
        assert_eq!(created, 1, "round {round}");
    }
    // One payment.succeeded per order, not one per replica.
    assert_eq!(a.events_after(0, 100).await.unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_splits_from_two_replicas_never_exceed_what_is_held() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let [a, b] = replicas(&db).await;
    let mut o = order("SPLITRACE1", 1000, PaymentStatus::Succeeded);
    o.request.split = true;
    a.insert_order(o).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let no = format!("SR{i:04}");
                let split = crate::ledger::split_tests::one_share(&no, "SPLITRACE1", 100);
                match i % 4 {
                    // Refunds compete for the same money.
                    0 => l
                        .insert_refund(refund(&format!("R{no}"), "SPLITRACE1", 100))
                        .await
                        .map(|_| ()),
                    _ => l.insert_split(split).await.map(|_| ()),
                }
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(LedgerError::ExceedsRefundable { .. } | LedgerError::SplitRefused(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 10, "1,000 held takes ten of 100");
    let o = b.get_order("SPLITRACE1").await.unwrap().unwrap();
    assert_eq!(o.held(), Fen::ZERO);
    assert_eq!(o.split_reserved + o.refund_reserved, Fen(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_of_an_order_moves_its_version() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let l = db.ledger().await;
    let version = || async {
        let client = l.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT version FROM orders WHERE out_trade_no = 'VERSION001'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    let o = order("VERSION001", 500, PaymentStatus::Pending);
    let mut o = l.insert_order(o).await.unwrap().stored();
    assert_eq!((version().await, o.version), (1, 1));
    // A repeat insert writes nothing.
    l.insert_order(o.clone()).await.unwrap();
    assert_eq!(version().await, 1);
    o.status = PaymentStatus::Succeeded;
    let stale = o.clone();
    l.put_order(&mut o).await.unwrap();
    l.put_order(&mut o).await.unwrap();
    assert_eq!(version().await, 3, "a write of the same state is a write");
    assert_eq!(o.version, 3, "the writer's copy carries the stored version");
    // A copy read before those writes is refused: it would overwrite what it has not seen.
    let mut stale = stale;
    match l.put_order(&mut stale).await {
        Err(LedgerError::Stale {
            read: 1, stored: 3, ..
        }) => {}
        other => panic!("a stale write is refused, not {other:?}"),
    }
    assert_eq!(version().await, 3);
    l.insert_refund(refund("RVERSION01", "VERSION001", 100))
        .await
        .unwrap();
    assert_eq!(version().await, 4);
    // A refused refund changes nothing.
    l.insert_refund(refund("RVERSION02", "VERSION001", 1000))
        .await
        .unwrap_err();
    assert_eq!(version().await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let opts = db.options();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let opts = opts.clone();
            tokio::spawn(async move {
                let (pool, _) = connect::pool(&opts)?;
                let mut client = pool
                    .get()
                    .await
                    .map_err(|e| LedgerError::Storage(e.to_string()))?;
                migrate::migrate(&mut client).await
            })
        })
        .collect();
    let mut applied = Vec::new();
    for r in runs {
        applied.push(r.await.unwrap().expect("every replica starts"));
    }
    let all: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        applied.iter().filter(|a| **a == all).count(),
        1,
        "{applied:?}"
    );
    assert_eq!(
        applied.iter().filter(|a| a.is_empty()).count(),
        5,
        "{applied:?}"
    );
    // And ledgers opened together agree on one id.
    let (x, y) = tokio::join!(PgLedger::connect(&opts), PgLedger::connect(&opts));
    assert_eq!(x.unwrap().ledger_id(), y.unwrap().ledger_id());
    let l = db.ledger().await;
    let rows = l
        .read(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_payroute_is_refused() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let l = db.ledger().await;
    l.read(
        "INSERT INTO schema_migrations (version, name) VALUES (9999, 'future') RETURNING 1",
        &[],
    )
    .await
    .unwrap();
    let e = PgLedger::connect(&db.options()).await.unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_never_show_the_password() {
    // Nothing listens on port 1 of the loopback.
    let mut opts = PgOptions::new(
        "postgres://payroute:hunter2@127.0.0.1:1/test"
            .parse()
            .unwrap(),
    );
    opts.max_connections = 1;
    let e = PgLedger::connect(&opts).await.unwrap_err().to_string();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("postgres://payroute@127.0.0.1:1/test"), "{e}");
}

/// TLS to the test server, when it offers it: `PAYROUTE_TEST_POSTGRES_TLS_URL` (with
/// `sslmode=require` and a host name its certificate names) and `PAYROUTE_TEST_POSTGRES_TLS_CA`
/// (the PEM that certificate chains to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_server_certificate() {
    let (Ok(url), Ok(ca)) = (
        std::env::var("PAYROUTE_TEST_POSTGRES_TLS_URL"),
        std::env::var("PAYROUTE_TEST_POSTGRES_TLS_CA"),
    ) else {
        eprintln!("NOTICE: ledger TLS test skipped: PAYROUTE_TEST_POSTGRES_TLS_URL/_CA unset");
        return;
    };
    let mut opts = PgOptions::new(url.parse().unwrap());
    opts.max_connections = 1;
    // Only the public web roots: a private certificate is not trusted.
    let e = PgLedger::connect(&opts).await.unwrap_err().to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    opts.ca_file = Some(ca.into());
    let l = PgLedger::connect(&opts)
        .await
        .expect("TLS with the CA file");
    let rows = l.read(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    );
    let ssl: bool = rows.await.unwrap()[0].get(0);
    assert!(ssl, "the connection is encrypted");
}

/// Polls `f` every 20 ms for at most 10 s.
async fn eventually(mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_lock_holds_across_replicas_until_dropped() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (a, b) = (db.ledger().await, db.ledger().await);
    let held = a
        .lock_order("LOCKED0001")
        .await
        .unwrap()
        .expect("a shared lock");
    // Another order is free meanwhile.
    drop(b.lock_order("LOCKED0002").await.unwrap());
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.lock_order("LOCKED0001").await.map(|l| l.is_some()) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second replica waits");
    drop(held);
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
    assert!(matches!(got, Ok(Ok(Ok(true)))), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_delivers_events_and_another_takes_over_once_it_is_gone() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (a, b) = (db.ledger().await, db.ledger().await);
    assert!(a.delivers().await.unwrap());
    assert!(a.delivers().await.unwrap(), "it keeps delivering");
    assert!(!b.delivers().await.unwrap(), "one replica at a time");
    drop(a);
    assert!(
        eventually(async || b.delivers().await.unwrap()).await,
        "the other takes over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_replicas_work_in_flight_is_adopted_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (gone, b, c) = (db.ledger().await, db.ledger().await, db.ledger().await);
    // An order with an attempt in flight, written by the replica that goes, and a settled one.
    let mut doubt = order("ORPHAN0001", 500, PaymentStatus::Pending);
    doubt
        .attempts
        .push(crate::ledger::Attempt::in_flight("alipay", Utc::now()));
    assert!(doubt.needs_recovery());
    gone.insert_order(doubt).await.unwrap();
    gone.insert_order(order("SETTLED001", 500, PaymentStatus::Succeeded))
        .await
        .unwrap();
    // While its owner lives, nobody adopts it.
    assert!(b.adopt_orphans().await.unwrap().unwrap().orders.is_empty());
    drop(gone);
    let mut adopted = Vec::new();
    assert!(
        eventually(async || {
            let (x, y) = tokio::join!(b.adopt_orphans(), c.adopt_orphans());
            for o in [x, y] {
                adopted.extend(o.unwrap().unwrap().orders);
            }
            !adopted.is_empty()
        })
        .await
    );
    let numbers: Vec<_> = adopted
        .iter()
        .map(|o| o.request.out_trade_no.as_str())
        .collect();
    assert_eq!(numbers, ["ORPHAN0001"], "adopted once, by one replica");
    // Adopted, it is the adopter's now: nobody adopts it again while that one lives.
    let (x, y) = tokio::join!(b.adopt_orphans(), c.adopt_orphans());
    assert!(x.unwrap().unwrap().orders.is_empty() && y.unwrap().unwrap().orders.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_order_writes_share_commits_and_a_stale_one_is_still_refused() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let commits = prometheus::IntCounter::new("commits", "commits").unwrap();
    let l = db.ledger().await.counting_commits(commits.clone());
    let mut orders = Vec::new();
    for i in 0..40 {
        let o = order(&format!("BATCH{i:05}"), 100, PaymentStatus::Pending);
        orders.push(l.insert_order(o).await.unwrap().stored());
    }
    let stale = orders[7].clone();
    let before = commits.get();
    let writes: Vec<_> = orders
        .into_iter()
        .map(|mut o| {
            let l = l.clone();
            tokio::spawn(async move {
                o.status = PaymentStatus::Succeeded;
                l.put_order(&mut o).await.map(|()| o.version)
            })
        })
        .collect();
    for w in writes {
        assert_eq!(w.await.unwrap().unwrap(), 2);
    }
    let used = commits.get() - before;
    assert!(used < 40, "40 concurrent writes took {used} commits");
    for i in 0..40 {
        let o = l.get_order(&format!("BATCH{i:05}")).await.unwrap().unwrap();
        assert_eq!((o.status, o.version), (PaymentStatus::Succeeded, 2));
    }
    // A copy read before those writes is declined by the batch and refused.
    let mut stale = stale;
    stale.status = PaymentStatus::Failed;
    assert!(matches!(
        l.put_order(&mut stale).await,
        Err(LedgerError::Stale {
            read: 1,
            stored: 2,
            ..
        })
    ));
    // The events of the writes were raised, one per order.
    let events = l.events_after(0, 100).await.unwrap();
    let succeeded = events
        .iter()
        .filter(|e| e.event_type == EventType::PaymentSucceeded)
        .count();
    assert_eq!(succeeded, 40);
}
