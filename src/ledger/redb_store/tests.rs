//! What is the embedded ledger's own: group commit (concurrent writes share commits, stay
//! atomic and survive a reopen) and the order index rebuilt for files written without it.
use std::path::Path;

use redb::ReadableDatabase as _;

use super::*;
use crate::domain::PaymentStatus;
use crate::ledger::events::{EventStore, OrderQuery};
use crate::ledger::tests::{at, numbers, order, paid_at, refund};
use crate::ledger::LedgerError;
use crate::money::Fen;

/// Closes `ledger` and opens its file again (the writer thread lets go of the file once the
/// last handle is dropped, a moment later).
fn reopen(ledger: RedbLedger, dir: &Path) -> RedbLedger {
    drop(ledger);
    for _ in 0..100 {
        if let Ok(l) = RedbLedger::open(dir) {
            return l;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the ledger does not reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits_and_all_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path()).unwrap();
    let before = ledger.commits();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let l = ledger.clone();
            tokio::spawn(async move {
                l.insert_order(order(&format!("GROUP{i:04}"), 100, PaymentStatus::Pending))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(Inserted::Created(_))));
    }
    let commits = ledger.commits() - before;
    assert!(
        (1..200).contains(&commits),
        "{commits} commits for 200 writes"
    );
    // The file opens again with every order.
    let ledger = reopen(ledger, dir.path());
    for i in 0..200 {
        let no = format!("GROUP{i:04}");
        assert_eq!(
            ledger
                .get_order(&no)
                .await
                .unwrap()
                .unwrap()
                .request
                .out_trade_no,
            no
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_batch_keeps_each_write_atomic_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = RedbLedger::open(dir.path()).unwrap();
    // The same order number inserted concurrently: exactly one is created.
    let same: Vec<_> = (0..20)
        .map(|_| {
            let l = ledger.clone();
            tokio::spawn(async move {
                l.insert_order(order("SAME000001", 1000, PaymentStatus::Succeeded))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in same {
        if let Inserted::Created(_) = t.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    // Twenty refunds of 100 against 1000 paid: ten are reserved, ten exceed what is left.
    let refunds: Vec<_> = (0..20)
        .map(|i| {
            let l = ledger.clone();
            tokio::spawn(async move {
                l.insert_refund(refund(&format!("R{i:07}"), "SAME000001", 100))
                    .await
            })
        })
        .collect();
    let (mut ok, mut exceeded) = (0, 0);
    for t in refunds {
        match t.await.unwrap() {
            Ok(Inserted::Created(_)) => ok += 1,
            Err(LedgerError::ExceedsRefundable { available: Fen(0) }) => exceeded += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, exceeded), (10, 10));
    let o = ledger.get_order("SAME000001").await.unwrap().unwrap();
    assert_eq!(o.refund_reserved, Fen(1000));
    // A refund for an order that does not exist fails alone; its batch commits the rest.
    let mut other = order("OTHER00001", 5, PaymentStatus::Pending);
    let (a, b) = tokio::join!(
        ledger.insert_refund(refund("RMISSING01", "NOSUCHORDER", 1)),
        ledger.put_order(&mut other),
    );
    assert!(matches!(a, Err(LedgerError::OrderNotFound(_))));
    b.unwrap();
    assert!(ledger.get_order("OTHER00001").await.unwrap().is_some());
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
