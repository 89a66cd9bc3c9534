//! Splits and split returns, on every backend: every bound holds atomically, also under
//! concurrent writes and across a reopen, and each settlement raises its event once.

use chrono::Utc;

use super::conformance::{on_both_backends, Backend, Shared};
use super::events::EventType;
use super::tests::{order, refund};
use super::{Inserted, LedgerError, ReceiverKey, SplitRefusal};
use crate::domain::{PaymentStatus, ReceiverType, RefundStatus};
use crate::money::Fen;
use crate::order::splits::{Share, Split, SplitReturn, SplitStatus};

fn share(account: &str, amount: u64) -> Share {
    Share {
        receiver_type: ReceiverType::Merchant,
        account: account.into(),
        name: None,
        relation: None,
        amount: Fen(amount),
        description: "d".into(),
        status: SplitStatus::Pending,
        fail_reason: None,
        detail_id: None,
        returned: Fen::ZERO,
    }
}

fn split(no: &str, trade: &str, shares: Vec<Share>) -> Split {
    let now = Utc::now();
    Split {
        out_split_no: no.into(),
        out_trade_no: trade.into(),
        channel: "alipay".into(),
        shares,
        finish: false,
        fingerprint: format!("fp-{no}"),
        status: SplitStatus::Pending,
        sent: false,
        channel_split_no: None,
        failure: None,
        created_at: now,
        updated_at: now,
    }
}

/// A split `no` of payment `trade` with one share of `amount` fen, to receiver `A`.
pub(super) fn one_share(no: &str, trade: &str, amount: u64) -> Split {
    split(no, trade, vec![share("A", amount)])
}

fn ret(no: &str, s: &str, trade: &str, account: &str, amount: u64) -> SplitReturn {
    let now = Utc::now();
    SplitReturn {
        out_return_no: no.into(),
        out_split_no: s.into(),
        out_trade_no: trade.into(),
        channel: "alipay".into(),
        receiver_type: ReceiverType::Merchant,
        account: account.into(),
        amount: Fen(amount),
        description: "d".into(),
        fingerprint: format!("fp-{no}"),
        status: SplitStatus::Pending,
        refund: None,
        with_refund: false,
        sent: false,
        channel_return_no: None,
        failure: None,
        created_at: now,
        updated_at: now,
    }
}

/// `ret` as a return that funds refund `refund`.
fn funding(refund: &str, mut ret: SplitReturn) -> SplitReturn {
    ret.refund = Some(refund.into());
    ret
}

/// `refund` funded by `returns`.
fn funded(mut refund: crate::order::Refund, returns: &[SplitReturn]) -> crate::order::Refund {
    refund.funded_by = returns.iter().map(|r| r.out_return_no.clone()).collect();
    refund
}

async fn split_order(ledger: &Shared, no: &str, amount: u64) {
    let mut o = order(no, amount, PaymentStatus::Succeeded);
    o.request.split = true;
    ledger.insert_order(o).await.unwrap();
}

/// Settles every share of the stored split `no` as `results` say.
async fn settle(ledger: &Shared, no: &str, results: &[SplitStatus]) -> Split {
    let mut s = ledger.get_split(no).await.unwrap().unwrap();
    s.status = SplitStatus::Succeeded;
    for (sh, r) in s.shares.iter_mut().zip(results) {
        sh.status = *r;
    }
    ledger.update_split(&s).await.unwrap()
}

on_both_backends!(
    splits_and_refunds_never_take_more_than_the_merchant_holds,
    concurrent_splits_never_exceed_what_was_paid,
    only_paid_split_payments_split_and_finish_ends_splitting,
    settled_splits_and_returns_move_the_totals_once_and_raise_one_event,
    a_funded_refund_and_its_returns_are_written_together_or_not_at_all,
    returns_fund_only_the_refund_they_name,
    a_failed_refund_fails_its_carried_returns,
    pending_splits_and_receivers_survive_a_reopen,
);

fn created<T>(i: Result<Inserted<T>, LedgerError>) -> T {
    match i.unwrap() {
        Inserted::Created(t) => t,
        Inserted::Existing(_) => panic!("expected a new record"),
    }
}

async fn splits_and_refunds_never_take_more_than_the_merchant_holds(b: Backend) {
    let ledger = b.open(false).await;
    split_order(&ledger, "O1", 1000).await;
    created(
        ledger
            .insert_split(split("S1", "O1", vec![share("A", 600)]))
            .await,
    );
    let err = ledger
        .insert_split(split("S2", "O1", vec![share("B", 401)]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::SplitRefused(SplitRefusal::ExceedsHeld {
            available: Fen(400)
        })
    ));
    assert!(ledger.get_split("S2").await.unwrap().is_none());
    // A refund may take only what is held, although 1,000 were paid.
    let err = ledger
        .insert_refund(refund("R1", "O1", 401))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::ExceedsRefundable {
            available: Fen(400)
        }
    ));
    created(ledger.insert_refund(refund("R1", "O1", 400)).await);
    let o = ledger.get_order("O1").await.unwrap().unwrap();
    assert_eq!(
        (o.split_reserved, o.refund_reserved, o.held()),
        (Fen(600), Fen(400), Fen::ZERO)
    );
    // The same number again answers the stored split, whatever it carries.
    assert!(matches!(
        ledger.insert_split(split("S1", "O1", vec![share("Z", 1)])).await.unwrap(),
        Inserted::Existing(s) if s.shares[0].account == "A"
    ));
}

async fn concurrent_splits_never_exceed_what_was_paid(b: Backend) {
    let ledger = b.open(false).await;
    split_order(&ledger, "O1", 1500).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let l = ledger.clone();
            tokio::spawn(async move {
                l.insert_split(split(&format!("S{i}"), "O1", vec![share("A", 100)]))
                    .await
            })
        })
        .collect();
    let mut made = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Inserted::Created(_)) => made += 1,
            Err(LedgerError::SplitRefused(SplitRefusal::ExceedsHeld { .. })) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(made, 15);
    let o = ledger.get_order("O1").await.unwrap().unwrap();
    assert_eq!((o.split_reserved, o.held()), (Fen(1500), Fen::ZERO));
}

async fn only_paid_split_payments_split_and_finish_ends_splitting(b: Backend) {
    let ledger = b.open(false).await;
    ledger
        .insert_order(order("PLAIN", 1000, PaymentStatus::Succeeded))
        .await
        .unwrap();
    let mut pending = order("PENDING", 1000, PaymentStatus::Pending);
    pending.request.split = true;
    ledger.insert_order(pending).await.unwrap();
    for (trade, want) in [
        ("PLAIN", SplitRefusal::NotSplitPayment),
        ("PENDING", SplitRefusal::NotPaid),
    ] {
        let err = ledger
            .insert_split(split(&format!("S-{trade}"), trade, vec![share("A", 1)]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::SplitRefused(ref r) if *r == want),
            "{err:?}"
        );
    }
    assert!(matches!(
        ledger
            .insert_split(split("S-NONE", "NONE", vec![share("A", 1)]))
            .await,
        Err(LedgerError::OrderNotFound(_))
    ));
    split_order(&ledger, "O1", 1000).await;
    let mut fin = split("S1", "O1", vec![share("A", 100)]);
    fin.finish = true;
    created(ledger.insert_split(fin).await);
    assert!(matches!(
        ledger
            .insert_split(split("S2", "O1", vec![share("A", 1)]))
            .await,
        Err(LedgerError::SplitRefused(SplitRefusal::Finished))
    ));
}

async fn settled_splits_and_returns_move_the_totals_once_and_raise_one_event(b: Backend) {
    let ledger = b.open(false).await;
    split_order(&ledger, "O1", 1000).await;
    created(
        ledger
            .insert_split(split("S1", "O1", vec![share("A", 600), share("B", 300)]))
            .await,
    );
    let s = settle(
        &ledger,
        "S1",
        &[SplitStatus::Succeeded, SplitStatus::Failed],
    )
    .await;
    assert_eq!(s.status, SplitStatus::Succeeded);
    // Reported again (a repeated query): nothing moves.
    settle(&ledger, "S1", &[SplitStatus::Failed, SplitStatus::Failed]).await;
    let o = ledger.get_order("O1").await.unwrap().unwrap();
    assert_eq!((o.split_reserved, o.held()), (Fen(600), Fen(400)));

    // Returns: at most what A got, and nothing from B whose share failed.
    assert!(matches!(
        ledger
            .insert_split_return(ret("RB", "S1", "O1", "B", 1))
            .await,
        Err(LedgerError::SplitRefused(SplitRefusal::ShareNotSettled(_)))
    ));
    created(
        ledger
            .insert_split_return(ret("RA1", "S1", "O1", "A", 500))
            .await,
    );
    assert!(matches!(
        ledger
            .insert_split_return(ret("RA2", "S1", "O1", "A", 101))
            .await,
        Err(LedgerError::SplitRefused(SplitRefusal::ExceedsReturnable {
            available: Fen(100)
        }))
    ));
    let mut done = ledger.get_split_return("RA1").await.unwrap().unwrap();
    done.status = SplitStatus::Succeeded;
    ledger.update_split_return(&done).await.unwrap();
    ledger.update_split_return(&done).await.unwrap();
    let o = ledger.get_order("O1").await.unwrap().unwrap();
    assert_eq!((o.split_returned, o.held()), (Fen(500), Fen(900)));

    let ledger = b.reopen(ledger, false).await;
    let types: Vec<EventType> = ledger
        .events_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    let count = |t| types.iter().filter(|x| **x == t).count();
    assert_eq!(count(EventType::SplitSucceeded), 1);
    assert_eq!(count(EventType::SplitReturnSucceeded), 1);
    assert_eq!(
        ledger.get_split("S1").await.unwrap().unwrap().shares[0].returned,
        Fen(500)
    );
}

async fn a_funded_refund_and_its_returns_are_written_together_or_not_at_all(b: Backend) {
    let ledger = b.open(false).await;
    split_order(&ledger, "O1", 1000).await;
    created(
        ledger
            .insert_split(split("S1", "O1", vec![share("A", 800)]))
            .await,
    );
    settle(&ledger, "S1", &[SplitStatus::Succeeded]).await;
    // Held 200; a refund of 700 needs 500 back from A. Asking 900 from A is refused whole.
    let too_much = vec![funding("X", ret("X-r1", "S1", "O1", "A", 900))];
    let err = ledger
        .insert_funded_refund(funded(refund("X", "O1", 1000), &too_much), too_much)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::SplitRefused(SplitRefusal::ExceedsReturnable { .. })
    ));
    assert!(ledger.get_refund("X").await.unwrap().is_none());
    assert!(ledger.get_split_return("X-r1").await.unwrap().is_none());
    // Returns of 300 do not fund a refund of 700 (200 held + 300).
    let short = vec![funding("Y", ret("Y-r1", "S1", "O1", "A", 300))];
    let err = ledger
        .insert_funded_refund(funded(refund("Y", "O1", 700), &short), short)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::ExceedsRefundable {
            available: Fen(500)
        }
    ));
    assert!(ledger.get_split_return("Y-r1").await.unwrap().is_none());

    let mut r = refund("R", "O1", 700);
    r.funded_by = vec!["R-r1".into()];
    let mut carried = ret("R-r1", "S1", "O1", "A", 500);
    (carried.refund, carried.with_refund) = (Some("R".into()), true);
    created(ledger.insert_funded_refund(r.clone(), vec![carried]).await);
    // A repeat writes nothing more.
    let again = vec![ret("R-r2", "S1", "O1", "A", 100)];
    assert!(matches!(
        ledger.insert_funded_refund(r.clone(), again).await.unwrap(),
        Inserted::Existing(_)
    ));
    assert!(ledger.get_split_return("R-r2").await.unwrap().is_none());
    // The refund settles its carried return with it.
    r.status = RefundStatus::Succeeded;
    ledger.settle_refund(&r).await.unwrap();
    let back = ledger.get_split_return("R-r1").await.unwrap().unwrap();
    assert_eq!(back.status, SplitStatus::Succeeded);
    let o = ledger.get_order("O1").await.unwrap().unwrap();
    assert_eq!(
        (o.refunded, o.split_returned, o.held()),
        (Fen(700), Fen(500), Fen::ZERO)
    );
    assert_eq!(o.status, PaymentStatus::PartiallyRefunded);
}

async fn returns_fund_only_the_refund_they_name(b: Backend) {
    let ledger = b.open(false).await;
    split_order(&ledger, "O1", 1000).await;
    created(
        ledger
            .insert_split(split("S1", "O1", vec![share("A", 800)]))
            .await,
    );
    settle(&ledger, "S1", &[SplitStatus::Succeeded]).await;
    for ret in [
        ret("Z-r1", "S1", "O1", "A", 500), // names no refund
        funding("OTHER", ret("Z-r1", "S1", "O1", "A", 500)), // names another refund
    ] {
        let refund = funded(refund("Z", "O1", 700), std::slice::from_ref(&ret));
        let err = ledger
            .insert_funded_refund(refund, vec![ret])
            .await
            .unwrap_err();
        assert!(matches!(err, LedgerError::Inconsistent(_)), "{err:?}");
    }
    // Listed in the refund, or not: a return the refund does not list funds nothing.
    let unlisted = funding("Z", ret("Z-r1", "S1", "O1", "A", 500));
    let err = ledger
        .insert_funded_refund(refund("Z", "O1", 700), vec![unlisted])
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Inconsistent(_)), "{err:?}");
    assert!(ledger.get_refund("Z").await.unwrap().is_none());
    // A number taken by another return is a refusal, not a storage failure.
    created(ledger.insert_split_return(ret_no_refund("TAKEN1")).await);
    let taken = funding("Z", ret("TAKEN1", "S1", "O1", "A", 100));
    let err = ledger
        .insert_funded_refund(
            funded(refund("Z", "O1", 300), std::slice::from_ref(&taken)),
            vec![taken],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::SplitRefused(SplitRefusal::ReturnNumberTaken(_))
        ),
        "{err:?}"
    );
}

fn ret_no_refund(no: &str) -> SplitReturn {
    ret(no, "S1", "O1", "A", 100)
}

async fn a_failed_refund_fails_its_carried_returns(b: Backend) {
    let ledger = b.open(false).await;
    split_order(&ledger, "O1", 1000).await;
    created(
        ledger
            .insert_split(split("S1", "O1", vec![share("A", 1000)]))
            .await,
    );
    settle(&ledger, "S1", &[SplitStatus::Succeeded]).await;
    let mut r = refund("R", "O1", 1000);
    r.funded_by = vec!["R-r1".into()];
    let mut carried = ret("R-r1", "S1", "O1", "A", 1000);
    (carried.refund, carried.with_refund) = (Some("R".into()), true);
    created(ledger.insert_funded_refund(r.clone(), vec![carried]).await);
    r.status = RefundStatus::Failed;
    ledger.settle_refund(&r).await.unwrap();
    assert_eq!(
        ledger
            .get_split_return("R-r1")
            .await
            .unwrap()
            .unwrap()
            .status,
        SplitStatus::Failed
    );
    let s = ledger.get_split("S1").await.unwrap().unwrap();
    assert_eq!(
        s.shares[0].returned,
        Fen::ZERO,
        "the receiver keeps its share"
    );
    let o = ledger.get_order("O1").await.unwrap().unwrap();
    assert_eq!(
        (o.refund_reserved, o.split_returned, o.held()),
        (Fen::ZERO, Fen::ZERO, Fen::ZERO)
    );
}

async fn pending_splits_and_receivers_survive_a_reopen(b: Backend) {
    let ledger = b.open(false).await;
    split_order(&ledger, "O1", 1000).await;
    created(
        ledger
            .insert_split(split("S1", "O1", vec![share("A", 100)]))
            .await,
    );
    created(
        ledger
            .insert_split(split("S2", "O1", vec![share("A", 100)]))
            .await,
    );
    settle(&ledger, "S2", &[SplitStatus::Succeeded]).await;
    created(
        ledger
            .insert_split_return(ret("R1", "S2", "O1", "A", 50))
            .await,
    );
    let key = ReceiverKey {
        channel: "alipay".into(),
        receiver_type: ReceiverType::User,
        account: "2088".into(),
    };
    assert!(!ledger.receiver_bound(&key).await.unwrap());
    ledger.record_receiver(&key).await.unwrap();
    let ledger = b.reopen(ledger, false).await;
    assert!(ledger.receiver_bound(&key).await.unwrap());
    let other = ReceiverKey {
        channel: "alipay-2".into(),
        ..key
    };
    assert!(!ledger.receiver_bound(&other).await.unwrap());
    let (splits, returns) = ledger.pending_splits().await.unwrap();
    assert_eq!(
        splits
            .iter()
            .map(|s| s.out_split_no.as_str())
            .collect::<Vec<_>>(),
        ["S1"]
    );
    assert_eq!(returns.len(), 1);
    let of: Vec<String> = ledger
        .splits_of("O1")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.out_split_no)
        .collect();
    assert_eq!(of, ["S1", "S2"]);
    assert!(ledger.splits_of("O").await.unwrap().is_empty());
}
