//! Embedded ledger on local disk (redb: ACID, copy-on-write B-trees, fsync on commit).
//! Records are JSON so that the format is readable and migrations stay simple.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{apply_refund_transition, Inserted, Ledger, LedgerError, Order, Refund};
use crate::domain::RefundStatus;
use crate::ledger::AttemptOutcome;

const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
const REFUNDS: TableDefinition<&str, &[u8]> = TableDefinition::new("refunds");

/// The redb-backed ledger.
#[derive(Clone)]
pub struct RedbLedger {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbLedger")
    }
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(v).map_err(storage)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(b).map_err(storage)
}

impl RedbLedger {
    /// Opens (or creates) the ledger file `dir/ledger.redb`.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let db = Database::create(dir.join("ledger.redb")).map_err(storage)?;
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(ORDERS).map_err(storage)?;
        tx.open_table(REFUNDS).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(RedbLedger { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(storage)?
    }
}

fn read_order(db: &Database, no: &str) -> Result<Option<Order>, LedgerError> {
    let tx = db.begin_read().map_err(storage)?;
    let t = tx.open_table(ORDERS).map_err(storage)?;
    let v = t.get(no).map_err(storage)?;
    v.map(|g| decode(g.value())).transpose()
}

#[async_trait::async_trait]
impl Ledger for RedbLedger {
    async fn insert_order(&self, order: Order) -> Result<Inserted<Order>, LedgerError> {
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(storage)?;
            let existing = {
                let mut t = tx.open_table(ORDERS).map_err(storage)?;
                let key = order.request.out_trade_no.as_str();
                let existing: Option<Order> = match t.get(key).map_err(storage)? {
                    Some(g) => Some(decode(g.value())?),
                    None => None,
                };
                if existing.is_none() {
                    t.insert(key, encode(&order)?.as_slice()).map_err(storage)?;
                }
                existing
            };
            match existing {
                Some(o) => Ok(Inserted::Existing(o)),
                None => {
                    tx.commit().map_err(storage)?;
                    Ok(Inserted::Created(order))
                }
            }
        })
        .await
    }

    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, LedgerError> {
        let no = out_trade_no.to_string();
        self.blocking(move |db| read_order(db, &no)).await
    }

    async fn put_order(&self, order: &Order) -> Result<(), LedgerError> {
        let order = order.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(storage)?;
            {
                let mut t = tx.open_table(ORDERS).map_err(storage)?;
                t.insert(
                    order.request.out_trade_no.as_str(),
                    encode(&order)?.as_slice(),
                )
                .map_err(storage)?;
            }
            tx.commit().map_err(storage)
        })
        .await
    }

    async fn insert_refund(&self, refund: Refund) -> Result<Inserted<Refund>, LedgerError> {
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(storage)?;
            {
                let mut refunds = tx.open_table(REFUNDS).map_err(storage)?;
                if let Some(g) = refunds
                    .get(refund.out_refund_no.as_str())
                    .map_err(storage)?
                {
                    return Ok(Inserted::Existing(decode(g.value())?));
                }
                let mut orders = tx.open_table(ORDERS).map_err(storage)?;
                let mut order: Order = match orders
                    .get(refund.out_trade_no.as_str())
                    .map_err(storage)?
                {
                    Some(g) => decode(g.value())?,
                    None => return Err(LedgerError::OrderNotFound(refund.out_trade_no.clone())),
                };
                if !order.status.is_paid() {
                    return Err(LedgerError::NotRefundable(order.status));
                }
                let available = order.request.amount.saturating_sub(order.refund_reserved);
                if refund.amount > available {
                    return Err(LedgerError::ExceedsRefundable { available });
                }
                order.refund_reserved += refund.amount;
                order.updated_at = refund.created_at;
                orders
                    .insert(
                        order.request.out_trade_no.as_str(),
                        encode(&order)?.as_slice(),
                    )
                    .map_err(storage)?;
                refunds
                    .insert(refund.out_refund_no.as_str(), encode(&refund)?.as_slice())
                    .map_err(storage)?;
            }
            tx.commit().map_err(storage)?;
            Ok(Inserted::Created(refund))
        })
        .await
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, LedgerError> {
        let no = out_refund_no.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let t = tx.open_table(REFUNDS).map_err(storage)?;
            let v = t.get(no.as_str()).map_err(storage)?;
            v.map(|g| decode(g.value())).transpose()
        })
        .await
    }

    async fn update_refund(&self, refund: &Refund) -> Result<(), LedgerError> {
        let refund = refund.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(storage)?;
            {
                let mut refunds = tx.open_table(REFUNDS).map_err(storage)?;
                let before: Refund = match refunds
                    .get(refund.out_refund_no.as_str())
                    .map_err(storage)?
                {
                    Some(g) => decode(g.value())?,
                    None => return Err(LedgerError::RefundNotFound(refund.out_refund_no.clone())),
                };
                let mut merged = refund.clone();
                merged.status = before.status;
                refunds
                    .insert(refund.out_refund_no.as_str(), encode(&merged)?.as_slice())
                    .map_err(storage)?;
            }
            tx.commit().map_err(storage)
        })
        .await
    }

    async fn settle_refund(&self, refund: &Refund) -> Result<Order, LedgerError> {
        let refund = refund.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(storage)?;
            let order = {
                let mut refunds = tx.open_table(REFUNDS).map_err(storage)?;
                let before: Refund = match refunds
                    .get(refund.out_refund_no.as_str())
                    .map_err(storage)?
                {
                    Some(g) => decode(g.value())?,
                    None => return Err(LedgerError::RefundNotFound(refund.out_refund_no.clone())),
                };
                let mut orders = tx.open_table(ORDERS).map_err(storage)?;
                let mut order: Order = match orders
                    .get(refund.out_trade_no.as_str())
                    .map_err(storage)?
                {
                    Some(g) => decode(g.value())?,
                    None => return Err(LedgerError::OrderNotFound(refund.out_trade_no.clone())),
                };
                // Only a pending refund moves; a settled one never changes the totals again.
                let refund = if before.status == RefundStatus::Pending {
                    refund
                } else {
                    before.clone()
                };
                apply_refund_transition(&mut order, before.status, &refund);
                refunds
                    .insert(refund.out_refund_no.as_str(), encode(&refund)?.as_slice())
                    .map_err(storage)?;
                orders
                    .insert(
                        order.request.out_trade_no.as_str(),
                        encode(&order)?.as_slice(),
                    )
                    .map_err(storage)?;
                order
            };
            tx.commit().map_err(storage)?;
            Ok(order)
        })
        .await
    }

    async fn pending_refunds(&self) -> Result<Vec<Refund>, LedgerError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(storage)?;
            let t = tx.open_table(REFUNDS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let r: Refund = decode(v.value())?;
                if r.status == RefundStatus::Pending {
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(storage)?;
            let t = tx.open_table(ORDERS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let o: Order = decode(v.value())?;
                let open = o.attempts.iter().any(|a| {
                    matches!(
                        a.outcome,
                        AttemptOutcome::InFlight | AttemptOutcome::Unknown
                    )
                });
                // An abandoned attempt stays open until its closing is confirmed.
                let unclosed = o.attempts.iter().any(|a| {
                    a.outcome == AttemptOutcome::Abandoned
                        && !a
                            .reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with("abandoned;"))
                });
                if (open && o.status == crate::domain::PaymentStatus::Pending) || unclosed {
                    out.push(o);
                }
            }
            Ok(out)
        })
        .await
    }
}
