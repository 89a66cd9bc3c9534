//! Splits, split returns and registered receivers in the embedded ledger. Every write that
//! moves money between the merchant and receivers updates the order's totals in the same
//! transaction, through the pure transitions of `order::splits`.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::redb_store::{append_event, decode, encode, get, storage, store_order, Outbox, ORDERS};
use super::{Inserted, LedgerError, Order, ReceiverKey, RedbLedger, Refund};
use crate::order::events::{split_event, Subject};
use crate::order::splits::{
    apply_return_transition, apply_split_transition, reserve_split, Split, SplitReturn, SplitStatus,
};

/// out_split_no → split.
pub(super) const SPLITS: TableDefinition<&str, &[u8]> = TableDefinition::new("splits");
/// out_return_no → split return.
pub(super) const RETURNS: TableDefinition<&str, &[u8]> = TableDefinition::new("split_returns");
/// (out_trade_no, out_split_no) → (): the splits of a payment.
pub(super) const BY_ORDER: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("splits_by_order");
/// Receiver key → when it was registered (RFC 3339).
pub(super) const RECEIVERS: TableDefinition<&str, &str> = TableDefinition::new("receivers");

/// Creates the tables (a ledger written by an older version has none).
pub(super) fn prepare(tx: &WriteTransaction) -> Result<(), LedgerError> {
    tx.open_table(SPLITS).map_err(storage)?;
    tx.open_table(RETURNS).map_err(storage)?;
    tx.open_table(BY_ORDER).map_err(storage)?;
    tx.open_table(RECEIVERS).map_err(storage)?;
    Ok(())
}

fn order_of(tx: &WriteTransaction, out_trade_no: &str) -> Result<Order, LedgerError> {
    get::<Order>(tx, ORDERS, out_trade_no)?
        .ok_or_else(|| LedgerError::OrderNotFound(out_trade_no.to_string()))
}

fn put<T: serde::Serialize>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), LedgerError> {
    tx.open_table(table)
        .map_err(storage)?
        .insert(key, encode(value)?.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// Inserts new returns on their splits (in `tx`), reserving each; the caller writes the order.
/// Every check is made before the first write: a refusal leaves the transaction untouched.
fn reserve_returns(tx: &WriteTransaction, returns: &[SplitReturn]) -> Result<(), LedgerError> {
    let mut taken = Vec::with_capacity(returns.len());
    for ret in returns {
        taken.push(get::<SplitReturn>(tx, RETURNS, &ret.out_return_no)?.is_some());
    }
    let mut splits: Vec<Split> = Vec::new();
    for no in super::rules::named_splits(returns) {
        splits.extend(get::<Split>(tx, SPLITS, no)?);
    }
    super::rules::reserve_returns(returns, &taken, &mut splits)?;
    for split in &splits {
        put(tx, SPLITS, &split.out_split_no, split)?;
    }
    for ret in returns {
        put(tx, RETURNS, &ret.out_return_no, ret)?;
    }
    Ok(())
}

/// Inserts a refund (and the returns that fund it) in `tx`: see `Ledger::insert_funded_refund`.
pub(super) fn insert_refund(
    tx: &WriteTransaction,
    ob: &Outbox,
    refund: Refund,
    returns: &[SplitReturn],
) -> Result<Inserted<Refund>, LedgerError> {
    if let Some(existing) = get(tx, super::redb_store::REFUNDS, &refund.out_refund_no)? {
        return Ok(Inserted::Existing(existing));
    }
    let before = order_of(tx, &refund.out_trade_no)?;
    let mut order = before.clone();
    super::rules::reserve_refund(&mut order, &refund, returns)?;
    reserve_returns(tx, returns)?;
    store_order(tx, ob, Some(&before), &mut order, None)?;
    put(
        tx,
        super::redb_store::REFUNDS,
        &refund.out_refund_no,
        &refund,
    )?;
    Ok(Inserted::Created(refund))
}

/// Settles the returns a refund carried (sent with it): they end as the refund did.
pub(super) fn settle_carried_returns(
    tx: &WriteTransaction,
    ob: &Outbox,
    refund: &Refund,
    order: &mut Order,
) -> Result<(), LedgerError> {
    for no in &refund.funded_by {
        let Some(before) = get::<SplitReturn>(tx, RETURNS, no)? else {
            continue;
        };
        if let Some(after) = super::rules::carried_return(refund, &before) {
            apply_return(tx, ob, order, &before, &after)?;
        }
    }
    Ok(())
}

/// Applies a return's transition to its split and `order` and stores the return and split
/// (the caller stores the order).
fn apply_return(
    tx: &WriteTransaction,
    ob: &Outbox,
    order: &mut Order,
    before: &SplitReturn,
    after: &SplitReturn,
) -> Result<SplitReturn, LedgerError> {
    // Every return is written with its split; a missing split is storage damage.
    let mut split = get::<Split>(tx, SPLITS, &before.out_split_no)?.ok_or_else(|| {
        LedgerError::Storage(format!(
            "split {} of a return is missing",
            before.out_split_no
        ))
    })?;
    let stored = apply_return_transition(order, &mut split, before, after);
    put(tx, SPLITS, &split.out_split_no, &split)?;
    put(tx, RETURNS, &stored.out_return_no, &stored)?;
    if let Some(t) = split_event(before.status, stored.status, true) {
        append_event(tx, ob, t, Subject::SplitReturn(&stored), stored.updated_at)?;
    }
    Ok(stored)
}

impl RedbLedger {
    pub(super) async fn insert_split_impl(
        &self,
        split: Split,
    ) -> Result<Inserted<Split>, LedgerError> {
        let ob = self.outbox.clone();
        self.write(move |tx| {
            if let Some(existing) = get(tx, SPLITS, &split.out_split_no)? {
                return Ok(Inserted::Existing(existing));
            }
            let before = order_of(tx, &split.out_trade_no)?;
            let mut order = before.clone();
            reserve_split(&mut order, &split)?;
            store_order(tx, &ob, Some(&before), &mut order, None)?;
            put(tx, SPLITS, &split.out_split_no, &split)?;
            tx.open_table(BY_ORDER)
                .map_err(storage)?
                .insert(
                    (split.out_trade_no.as_str(), split.out_split_no.as_str()),
                    (),
                )
                .map_err(storage)?;
            Ok(Inserted::Created(split))
        })
        .await
    }

    pub(super) fn read<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, LedgerError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let t = tx.open_table(table).map_err(storage)?;
        let v = t.get(key).map_err(storage)?;
        v.map(|g| decode(g.value())).transpose()
    }

    pub(super) async fn update_split_impl(&self, split: &Split) -> Result<Split, LedgerError> {
        let split = split.clone();
        let ob = self.outbox.clone();
        self.write(move |tx| {
            let before = get::<Split>(tx, SPLITS, &split.out_split_no)?
                .ok_or_else(|| LedgerError::SplitNotFound(split.out_split_no.clone()))?;
            let was = order_of(tx, &before.out_trade_no)?;
            let mut order = was.clone();
            let stored = apply_split_transition(&mut order, &before, &split);
            put(tx, SPLITS, &stored.out_split_no, &stored)?;
            if order != was {
                store_order(tx, &ob, Some(&was), &mut order, None)?;
            }
            if let Some(t) = split_event(before.status, stored.status, false) {
                append_event(tx, &ob, t, Subject::Split(&stored), stored.updated_at)?;
            }
            Ok(stored)
        })
        .await
    }

    pub(super) async fn splits_of_impl(
        &self,
        out_trade_no: &str,
    ) -> Result<Vec<Split>, LedgerError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let index = tx.open_table(BY_ORDER).map_err(storage)?;
        let splits = tx.open_table(SPLITS).map_err(storage)?;
        let mut out = Vec::new();
        for row in index.range((out_trade_no, "")..).map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            let (order, no) = k.value();
            if order != out_trade_no {
                break;
            }
            if let Some(v) = splits.get(no).map_err(storage)? {
                out.push(decode::<Split>(v.value())?);
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    pub(super) async fn insert_split_return_impl(
        &self,
        ret: SplitReturn,
    ) -> Result<Inserted<SplitReturn>, LedgerError> {
        self.write(move |tx| {
            if let Some(existing) = get(tx, RETURNS, &ret.out_return_no)? {
                return Ok(Inserted::Existing(existing));
            }
            reserve_returns(tx, std::slice::from_ref(&ret))?;
            Ok(Inserted::Created(ret))
        })
        .await
    }

    pub(super) async fn update_split_return_impl(
        &self,
        ret: &SplitReturn,
    ) -> Result<SplitReturn, LedgerError> {
        let ret = ret.clone();
        let ob = self.outbox.clone();
        self.write(move |tx| {
            let before = get::<SplitReturn>(tx, RETURNS, &ret.out_return_no)?
                .ok_or_else(|| LedgerError::ReturnNotFound(ret.out_return_no.clone()))?;
            let was = order_of(tx, &before.out_trade_no)?;
            let mut order = was.clone();
            let stored = apply_return(tx, &ob, &mut order, &before, &ret)?;
            if order != was {
                store_order(tx, &ob, Some(&was), &mut order, None)?;
            }
            Ok(stored)
        })
        .await
    }

    pub(super) async fn pending_splits_impl(
        &self,
    ) -> Result<(Vec<Split>, Vec<SplitReturn>), LedgerError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(storage)?;
            let mut splits = Vec::new();
            for row in tx
                .open_table(SPLITS)
                .map_err(storage)?
                .iter()
                .map_err(storage)?
            {
                let (_, v) = row.map_err(storage)?;
                let s: Split = decode(v.value())?;
                if s.status == SplitStatus::Pending {
                    splits.push(s);
                }
            }
            let mut returns = Vec::new();
            for row in tx
                .open_table(RETURNS)
                .map_err(storage)?
                .iter()
                .map_err(storage)?
            {
                let (_, v) = row.map_err(storage)?;
                let r: SplitReturn = decode(v.value())?;
                if r.status == SplitStatus::Pending {
                    returns.push(r);
                }
            }
            Ok((splits, returns))
        })
        .await
    }

    pub(super) async fn receiver_bound_impl(&self, key: &ReceiverKey) -> Result<bool, LedgerError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let t = tx.open_table(RECEIVERS).map_err(storage)?;
        Ok(t.get(key.text().as_str()).map_err(storage)?.is_some())
    }

    pub(super) async fn record_receiver_impl(&self, key: &ReceiverKey) -> Result<(), LedgerError> {
        let key = key.text();
        self.write(move |tx| {
            let at = chrono::Utc::now().to_rfc3339();
            tx.open_table(RECEIVERS)
                .map_err(storage)?
                .insert(key.as_str(), at.as_str())
                .map_err(storage)?;
            Ok(())
        })
        .await
    }
}
