//! The split and return bounds, and their transitions.
use super::*;
use crate::domain::PaymentStatus;
use crate::order::tests::{at, order};

fn paid_split_order() -> Order {
    let mut o = order(PaymentStatus::Succeeded);
    o.request.split = true;
    o
}

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

pub(crate) fn split(no: &str, shares: Vec<Share>, finish: bool) -> Split {
    Split {
        out_split_no: no.into(),
        out_trade_no: "ORDER0001".into(),
        channel: "wx".into(),
        shares,
        finish,
        fingerprint: "fp".into(),
        status: SplitStatus::Pending,
        sent: false,
        channel_split_no: None,
        failure: None,
        created_at: at(1),
        updated_at: at(1),
    }
}

fn ret(no: &str, account: &str, amount: u64) -> SplitReturn {
    SplitReturn {
        out_return_no: no.into(),
        out_split_no: "S1".into(),
        out_trade_no: "ORDER0001".into(),
        channel: "wx".into(),
        receiver_type: ReceiverType::Merchant,
        account: account.into(),
        amount: Fen(amount),
        description: "d".into(),
        fingerprint: "fp".into(),
        status: SplitStatus::Pending,
        refund: None,
        with_refund: false,
        sent: false,
        channel_return_no: None,
        failure: None,
        created_at: at(2),
        updated_at: at(2),
    }
}

fn settled(mut s: Split, results: &[SplitStatus]) -> Split {
    s.status = SplitStatus::Succeeded;
    for (sh, r) in s.shares.iter_mut().zip(results) {
        sh.status = *r;
    }
    s
}

#[test]
fn a_split_takes_only_what_is_held() {
    let mut o = paid_split_order();
    assert_eq!(o.held(), Fen(1500));
    o.refund_reserved = Fen(500);
    let too_much = split("S1", vec![share("A", 600), share("B", 401)], false);
    assert_eq!(
        reserve_split(&mut o, &too_much),
        Err(SplitRefusal::ExceedsHeld {
            available: Fen(1000)
        })
    );
    assert_eq!(
        o.split_reserved,
        Fen::ZERO,
        "a refused split reserves nothing"
    );
    let fits = split("S1", vec![share("A", 600), share("B", 400)], false);
    reserve_split(&mut o, &fits).unwrap();
    assert_eq!((o.split_reserved, o.held()), (Fen(1000), Fen::ZERO));
    // Nothing held: neither another split nor a refund fits.
    let one = split("S2", vec![share("A", 1)], false);
    assert!(matches!(
        reserve_split(&mut o, &one),
        Err(SplitRefusal::ExceedsHeld { .. })
    ));
}

#[test]
fn splits_need_a_paid_split_payment_not_yet_finished() {
    let s = split("S1", vec![share("A", 1)], false);
    let mut pending = paid_split_order();
    pending.status = PaymentStatus::Pending;
    assert_eq!(reserve_split(&mut pending, &s), Err(SplitRefusal::NotPaid));
    let mut plain = order(PaymentStatus::Succeeded);
    assert_eq!(
        reserve_split(&mut plain, &s),
        Err(SplitRefusal::NotSplitPayment)
    );
    let mut o = paid_split_order();
    reserve_split(&mut o, &split("S0", vec![share("A", 1)], true)).unwrap();
    assert!(o.split_finished);
    assert_eq!(reserve_split(&mut o, &s), Err(SplitRefusal::Finished));
}

#[test]
fn failed_shares_give_their_money_back_to_the_merchant() {
    let mut o = paid_split_order();
    let s = split("S1", vec![share("A", 600), share("B", 400)], false);
    reserve_split(&mut o, &s).unwrap();
    let after = settled(s.clone(), &[SplitStatus::Succeeded, SplitStatus::Failed]);
    let stored = apply_split_transition(&mut o, &s, &after);
    assert_eq!(stored.status, SplitStatus::Succeeded);
    assert_eq!((o.split_reserved, o.held()), (Fen(600), Fen(900)));
    // Settled: a later report changes nothing.
    let again = settled(s.clone(), &[SplitStatus::Failed, SplitStatus::Failed]);
    assert_eq!(apply_split_transition(&mut o, &stored, &again), stored);
    assert_eq!(o.split_reserved, Fen(600));
}

#[test]
fn a_split_settles_only_when_every_share_has() {
    let mut o = paid_split_order();
    let s = split("S1", vec![share("A", 600), share("B", 400)], false);
    reserve_split(&mut o, &s).unwrap();
    let half = settled(s.clone(), &[SplitStatus::Succeeded, SplitStatus::Pending]);
    let stored = apply_split_transition(&mut o, &s, &half);
    assert_eq!(stored.status, SplitStatus::Pending);
    assert_eq!(stored.shares[0].status, SplitStatus::Succeeded);
    let all_failed = settled(
        stored.clone(),
        &[SplitStatus::Succeeded, SplitStatus::Failed],
    );
    let done = apply_split_transition(&mut o, &stored, &all_failed);
    assert_eq!(done.status, SplitStatus::Succeeded);
    assert_eq!(
        done.shares[0].status,
        SplitStatus::Succeeded,
        "a settled share stays"
    );
}

#[test]
fn a_split_whose_every_share_failed_failed() {
    let mut o = paid_split_order();
    let s = split("S1", vec![share("A", 600)], true);
    reserve_split(&mut o, &s).unwrap();
    let stored = apply_split_transition(&mut o, &s, &settled(s.clone(), &[SplitStatus::Failed]));
    assert_eq!(stored.status, SplitStatus::Failed);
    assert_eq!(o.split_reserved, Fen::ZERO);
    assert!(
        o.split_finished,
        "the channel finished it although no share arrived"
    );
}

#[test]
fn a_refused_split_releases_everything_and_does_not_finish() {
    let mut o = paid_split_order();
    let s = split("S1", vec![share("A", 600), share("B", 400)], true);
    reserve_split(&mut o, &s).unwrap();
    let mut refused = s.clone();
    refused.status = SplitStatus::Failed;
    let stored = apply_split_transition(&mut o, &s, &refused);
    assert!(stored
        .shares
        .iter()
        .all(|s| s.status == SplitStatus::Failed));
    assert_eq!((o.split_reserved, o.split_finished), (Fen::ZERO, false));
}

#[test]
fn returns_take_at_most_what_the_receiver_got() {
    let mut o = paid_split_order();
    let s = split("S1", vec![share("A", 600), share("B", 400)], false);
    reserve_split(&mut o, &s).unwrap();
    // Before the share arrived nothing can be returned.
    let mut pending = s.clone();
    assert_eq!(
        reserve_return(&mut pending, &ret("R0", "A", 1)),
        Err(SplitRefusal::ShareNotSettled("A".into()))
    );
    let mut s = apply_split_transition(
        &mut o,
        &s,
        &settled(s.clone(), &[SplitStatus::Succeeded, SplitStatus::Failed]),
    );
    assert_eq!(
        reserve_return(&mut s, &ret("R1", "B", 1)),
        Err(SplitRefusal::ShareNotSettled("B".into()))
    );
    assert_eq!(
        reserve_return(&mut s, &ret("R1", "C", 1)),
        Err(SplitRefusal::NoShare("C".into()))
    );
    let r1 = ret("R1", "A", 400);
    reserve_return(&mut s, &r1).unwrap();
    assert_eq!(
        reserve_return(&mut s, &ret("R2", "A", 201)),
        Err(SplitRefusal::ExceedsReturnable {
            available: Fen(200)
        })
    );
    // A failed return gives its reservation back; a succeeded one gives money to the merchant.
    let mut failed = r1.clone();
    failed.status = SplitStatus::Failed;
    let stored = apply_return_transition(&mut o, &mut s, &r1, &failed);
    assert_eq!(stored.status, SplitStatus::Failed);
    assert_eq!(s.shares[0].returned, Fen::ZERO);
    let r2 = ret("R2", "A", 600);
    reserve_return(&mut s, &r2).unwrap();
    let held = o.held();
    let mut ok = r2.clone();
    ok.status = SplitStatus::Succeeded;
    apply_return_transition(&mut o, &mut s, &r2, &ok);
    assert_eq!(o.held(), Fen(held.get() + 600));
    // Settled returns never move again.
    let mut late = ok.clone();
    late.status = SplitStatus::Failed;
    assert_eq!(
        apply_return_transition(&mut o, &mut s, &ok, &late).status,
        SplitStatus::Succeeded
    );
    assert_eq!(s.shares[0].returned, Fen(600));
}

#[test]
fn refunds_and_splits_share_one_bound() {
    let mut o = paid_split_order();
    reserve_split(&mut o, &split("S1", vec![share("A", 1000)], false)).unwrap();
    // What a refund may take is what is held: 500 of 1,500.
    assert_eq!(o.held(), Fen(500));
    o.refund_reserved = Fen(500);
    assert_eq!(o.held(), Fen::ZERO);
}

#[test]
fn auto_return_numbers_are_deterministic_and_short() {
    assert_eq!(auto_return_no("RF1", 1), "RF1_R1");
    let long = "X".repeat(64);
    let a = auto_return_no(&long, 2);
    assert!(a.len() <= 64 && a.ends_with("_R2"));
    assert_eq!(a, auto_return_no(&long, 2));
    assert_ne!(a, auto_return_no(&"Y".repeat(64), 2));
}

#[test]
fn a_refusal_after_money_reached_a_receiver_does_not_fail_the_split() {
    let mut o = paid_split_order();
    let s = split("S1", vec![share("A", 600), share("B", 400)], false);
    reserve_split(&mut o, &s).unwrap();
    let half = settled(s.clone(), &[SplitStatus::Succeeded, SplitStatus::Pending]);
    let stored = apply_split_transition(&mut o, &s, &half);
    let mut refused = stored.clone();
    refused.status = SplitStatus::Failed;
    let after = apply_split_transition(&mut o, &stored, &refused);
    assert_eq!(after.status, SplitStatus::Pending);
    assert_eq!(after.shares[1].status, SplitStatus::Pending);
    assert_eq!(o.split_reserved, Fen(1000), "nothing released");
}
