//! Splits and split returns in PostgreSQL. Every write that moves money between the merchant
//! and receivers holds the order's lock (and the split's) and updates the order's totals in the
//! same transaction, through the pure transitions of `order::splits`.

use super::encode;
use super::tx::{Claim, Tx, RETURNS, SPLITS};
use crate::ledger::{rules, Inserted, LedgerError, Order, Refund, Split, SplitReturn};
use crate::order::events::split_event;
use crate::order::splits::{
    apply_return_transition, apply_split_transition, reserve_split, SplitRefusal, SplitStatus,
};

fn pending(status: SplitStatus) -> bool {
    status == SplitStatus::Pending
}

async fn write_split(tx: &Tx<'_>, split: &Split) -> Result<(), LedgerError> {
    tx.exec(
        "UPDATE splits SET record = $2, pending = $3 WHERE out_split_no = $1",
        &[&split.out_split_no, &encode(split)?, &pending(split.status)],
    )
    .await
    .map(drop)
}

async fn write_return(tx: &Tx<'_>, ret: &SplitReturn) -> Result<(), LedgerError> {
    tx.exec(
        "UPDATE split_returns SET record = $2, pending = $3 WHERE out_return_no = $1",
        &[&ret.out_return_no, &encode(ret)?, &pending(ret.status)],
    )
    .await
    .map(drop)
}

/// Inserts `ret` unless its number is taken; `false`: taken (nothing written).
async fn claim_return(tx: &Tx<'_>, ret: &SplitReturn) -> Result<bool, LedgerError> {
    let n = tx
        .exec(
            "INSERT INTO split_returns (out_return_no, out_split_no, out_trade_no, record, \
             pending) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (out_return_no) DO NOTHING",
            &[
                &ret.out_return_no,
                &ret.out_split_no,
                &ret.out_trade_no,
                &encode(ret)?,
                &pending(ret.status),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Inserts new returns on their splits (locked), reserving each; the caller writes the order.
/// Every check is made before the first write, as in the embedded ledger.
pub(super) async fn reserve_returns(
    tx: &Tx<'_>,
    returns: &[SplitReturn],
) -> Result<(), LedgerError> {
    let mut taken = Vec::with_capacity(returns.len());
    for ret in returns {
        let found: Option<SplitReturn> = tx.record(RETURNS.get, &ret.out_return_no).await?;
        taken.push(found.is_some());
    }
    let mut splits: Vec<Split> = Vec::new();
    for no in rules::named_splits(returns) {
        splits.extend(tx.record::<Split>(SPLITS.lock, no).await?);
    }
    rules::reserve_returns(returns, &taken, &mut splits)?;
    for ret in returns {
        // Taken since the check above, by a write that committed meanwhile.
        if !claim_return(tx, ret).await? {
            return Err(SplitRefusal::ReturnNumberTaken(ret.out_return_no.clone()).into());
        }
    }
    for split in &splits {
        write_split(tx, split).await?;
    }
    Ok(())
}

/// Settles the returns a refund carried (sent with it): they end as the refund did.
pub(super) async fn settle_carried_returns(
    tx: &mut Tx<'_>,
    refund: &Refund,
    order: &mut Order,
) -> Result<(), LedgerError> {
    for no in &refund.funded_by {
        let Some(before) = tx.record::<SplitReturn>(RETURNS.lock, no).await? else {
            continue;
        };
        if let Some(after) = rules::carried_return(refund, &before) {
            apply_return(tx, order, &before, &after).await?;
        }
    }
    Ok(())
}

/// Applies a return's transition to its split and `order` and stores the return and split
/// (the caller stores the order).
async fn apply_return(
    tx: &mut Tx<'_>,
    order: &mut Order,
    before: &SplitReturn,
    after: &SplitReturn,
) -> Result<SplitReturn, LedgerError> {
    // Every return is written with its split; a missing split is storage damage.
    let mut split = tx
        .record::<Split>(SPLITS.lock, &before.out_split_no)
        .await?
        .ok_or_else(|| {
            LedgerError::Storage(format!(
                "split {} of a return is missing",
                before.out_split_no
            ))
        })?;
    let stored = apply_return_transition(order, &mut split, before, after);
    write_split(tx, &split).await?;
    write_return(tx, &stored).await?;
    if let Some(t) = split_event(before.status, stored.status, true) {
        tx.raise_return(t, &stored);
    }
    Ok(stored)
}

/// See `Ledger::insert_split`.
pub(super) async fn insert_split(
    tx: &mut Tx<'_>,
    split: Split,
) -> Result<Inserted<Split>, LedgerError> {
    let before = match tx
        .claim(&SPLITS, &split.out_split_no, &split.out_trade_no)
        .await?
    {
        Claim::Taken(existing) => return Ok(Inserted::Existing(existing)),
        Claim::Free(order) => *order,
    };
    let mut order = before.value.clone();
    reserve_split(&mut order, &split)?;
    let claimed = tx
        .exec(
            "INSERT INTO splits (out_split_no, out_trade_no, record, pending) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (out_split_no) DO NOTHING",
            &[
                &split.out_split_no,
                &split.out_trade_no,
                &encode(&split)?,
                &pending(split.status),
            ],
        )
        .await?;
    if claimed == 0 {
        return tx.existing(&SPLITS, &split.out_split_no).await;
    }
    tx.store_order(Some(&before), &mut order).await?;
    Ok(Inserted::Created(split))
}

/// See `Ledger::update_split`.
pub(super) async fn update_split(tx: &mut Tx<'_>, split: &Split) -> Result<Split, LedgerError> {
    let (was, before) = tx
        .lock_with_order(
            &SPLITS,
            &split.out_split_no,
            |s: &Split| s.out_trade_no.clone(),
            || LedgerError::SplitNotFound(split.out_split_no.clone()),
        )
        .await?;
    let mut order = was.value.clone();
    let stored = apply_split_transition(&mut order, &before, split);
    write_split(tx, &stored).await?;
    if order != was.value {
        tx.store_order(Some(&was), &mut order).await?;
    }
    if let Some(t) = split_event(before.status, stored.status, false) {
        tx.raise_split(t, &stored);
    }
    Ok(stored)
}

/// See `Ledger::insert_split_return`: the split's lock orders the returns of its receivers.
pub(super) async fn insert_return(
    tx: &Tx<'_>,
    ret: SplitReturn,
) -> Result<Inserted<SplitReturn>, LedgerError> {
    if let Some(existing) = tx.record(RETURNS.get, &ret.out_return_no).await? {
        return Ok(Inserted::Existing(existing));
    }
    match reserve_returns(tx, std::slice::from_ref(&ret)).await {
        Ok(()) => Ok(Inserted::Created(ret)),
        // The same number, committed while this write waited for the split's lock.
        Err(LedgerError::SplitRefused(SplitRefusal::ReturnNumberTaken(_))) => {
            tx.existing(&RETURNS, &ret.out_return_no).await
        }
        Err(e) => Err(e),
    }
}

/// See `Ledger::update_split_return`.
pub(super) async fn update_return(
    tx: &mut Tx<'_>,
    ret: &SplitReturn,
) -> Result<SplitReturn, LedgerError> {
    let (was, before) = tx
        .lock_with_order(
            &RETURNS,
            &ret.out_return_no,
            |r: &SplitReturn| r.out_trade_no.clone(),
            || LedgerError::ReturnNotFound(ret.out_return_no.clone()),
        )
        .await?;
    let mut order = was.value.clone();
    let stored = apply_return(tx, &mut order, &before, ret).await?;
    if order != was.value {
        tx.store_order(Some(&was), &mut order).await?;
    }
    Ok(stored)
}
