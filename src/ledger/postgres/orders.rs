//! Orders and refunds in PostgreSQL: the `Ledger` trait, each write one transaction (`tx`).

use super::batch::{Done, Job};
use super::tx::{Claim, Tx, REFUNDS, RETURNS, SPLITS};
use super::{encode, ms, pg_error, PgLedger};
use crate::domain::RefundStatus;
use crate::ledger::SharedLock;
use crate::ledger::{rules, Inserted, Ledger, LedgerError, Order, Orphans, ReceiverKey, Refund};
use crate::ledger::{Split, SplitReturn};
use crate::order::events::{order_events, refund_event};

/// Runs `$body` (an async expression using the write `$tx`) in one transaction of `$ledger`:
/// committed with its events when it succeeds, rolled back when it fails.
macro_rules! in_tx {
    ($ledger:expr, $tx:ident => $body:expr) => {{
        let mut client = $ledger.client().await?;
        #[allow(unused_mut)]
        let mut $tx = Tx::begin(&mut client, &$ledger).await?;
        let result = $body.await;
        $tx.finish(result).await
    }};
}
pub(super) use in_tx;

const ORDER: &str = "SELECT record FROM orders WHERE out_trade_no = $1";

#[async_trait::async_trait]
impl Ledger for PgLedger {
    async fn insert_order(&self, order: Order) -> Result<Inserted<Order>, LedgerError> {
        if order_events(None, &order).is_empty() {
            // Raises no event: group-committed with the other writes waiting (see `batch`).
            let created = Order {
                version: 1,
                ..order.clone()
            };
            return match self.batched(Job::Insert(order)).await? {
                Done::Written(_) => Ok(Inserted::Created(created)),
                // Taken, by now committed: the insert waited for the writer that holds it.
                Done::Declined => {
                    let existing = self.get_order(&created.request.out_trade_no).await?;
                    existing.map(Inserted::Existing).ok_or_else(|| {
                        LedgerError::Storage("an order vanished while it was inserted".into())
                    })
                }
            };
        }
        in_tx!(self, tx => insert_order(&mut tx, order))
    }

    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, LedgerError> {
        self.record(ORDER, out_trade_no).await
    }

    async fn put_order(&self, order: &mut Order) -> Result<(), LedgerError> {
        if order.version > 0 {
            // The usual case, group-committed (see `batch`); what the batch declines (a stale
            // copy, an order not stored) is told apart one at a time below.
            if let Done::Written(v) = self.batched(Job::Put(order.clone())).await? {
                order.version = v;
                return Ok(());
            }
        }
        let mut next = order.clone();
        in_tx!(self, tx => put_order(&mut tx, &mut next))?;
        order.version = next.version;
        Ok(())
    }

    async fn insert_refund(&self, refund: Refund) -> Result<Inserted<Refund>, LedgerError> {
        self.insert_funded_refund(refund, vec![]).await
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, LedgerError> {
        self.record(REFUNDS.get, out_refund_no).await
    }

    async fn update_refund(&self, refund: &Refund) -> Result<(), LedgerError> {
        in_tx!(self, tx => update_refund(&tx, refund))
    }

    async fn settle_refund(&self, refund: &Refund) -> Result<Order, LedgerError> {
        in_tx!(self, tx => settle_refund(&mut tx, refund))
    }

    async fn pending_refunds(&self) -> Result<Vec<Refund>, LedgerError> {
        self.records(
            "SELECT record FROM refunds WHERE pending ORDER BY out_refund_no",
            &[],
        )
        .await
    }

    async fn refunds_between(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Refund>, LedgerError> {
        // The index is by millisecond; the exact bounds are applied to the records.
        let rows: Vec<Refund> = self
            .records(
                "SELECT record FROM refunds WHERE created_ms BETWEEN $1 AND $2 \
                 ORDER BY out_refund_no",
                &[&ms(from), &ms(to)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.created_at >= from && r.created_at < to)
            .collect())
    }

    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError> {
        let orders: Vec<Order> = self
            .records(
                "SELECT record FROM orders WHERE needs_recovery ORDER BY out_trade_no",
                &[],
            )
            .await?;
        Ok(orders.into_iter().filter(Order::needs_recovery).collect())
    }

    async fn insert_funded_refund(
        &self,
        refund: Refund,
        returns: Vec<SplitReturn>,
    ) -> Result<Inserted<Refund>, LedgerError> {
        in_tx!(self, tx => insert_refund(&mut tx, refund, &returns))
    }

    async fn insert_split(&self, split: Split) -> Result<Inserted<Split>, LedgerError> {
        in_tx!(self, tx => super::splits::insert_split(&mut tx, split))
    }

    async fn get_split(&self, out_split_no: &str) -> Result<Option<Split>, LedgerError> {
        self.record(SPLITS.get, out_split_no).await
    }

    async fn update_split(&self, split: &Split) -> Result<Split, LedgerError> {
        in_tx!(self, tx => super::splits::update_split(&mut tx, split))
    }

    async fn splits_of(&self, out_trade_no: &str) -> Result<Vec<Split>, LedgerError> {
        let mut splits: Vec<Split> = self
            .records(
                "SELECT record FROM splits WHERE out_trade_no = $1 ORDER BY out_split_no",
                &[&out_trade_no],
            )
            .await?;
        splits.sort_by_key(|s| s.created_at);
        Ok(splits)
    }

    async fn insert_split_return(
        &self,
        ret: SplitReturn,
    ) -> Result<Inserted<SplitReturn>, LedgerError> {
        in_tx!(self, tx => super::splits::insert_return(&tx, ret))
    }

    async fn get_split_return(
        &self,
        out_return_no: &str,
    ) -> Result<Option<SplitReturn>, LedgerError> {
        self.record(RETURNS.get, out_return_no).await
    }

    async fn update_split_return(&self, ret: &SplitReturn) -> Result<SplitReturn, LedgerError> {
        in_tx!(self, tx => super::splits::update_return(&mut tx, ret))
    }

    async fn pending_splits(&self) -> Result<(Vec<Split>, Vec<SplitReturn>), LedgerError> {
        let splits = self
            .records(
                "SELECT record FROM splits WHERE pending ORDER BY out_split_no",
                &[],
            )
            .await?;
        let returns = self
            .records(
                "SELECT record FROM split_returns WHERE pending ORDER BY out_return_no",
                &[],
            )
            .await?;
        Ok((splits, returns))
    }

    async fn receiver_bound(&self, key: &ReceiverKey) -> Result<bool, LedgerError> {
        let rows = self
            .read(
                "SELECT 1 FROM receivers \
                 WHERE channel = $1 AND receiver_type = $2 AND account = $3",
                &[&key.channel, &key.receiver_type.as_str(), &key.account],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn record_receiver(&self, key: &ReceiverKey) -> Result<(), LedgerError> {
        let _written: u64 = in_tx!(self, tx => tx.exec(
            "INSERT INTO receivers (channel, receiver_type, account) VALUES ($1, $2, $3) \
             ON CONFLICT (channel, receiver_type, account) DO UPDATE SET recorded_at = now()",
            &[&key.channel, &key.receiver_type.as_str(), &key.account],
        ))?;
        Ok(())
    }

    async fn lock_order(&self, out_trade_no: &str) -> Result<Option<SharedLock>, LedgerError> {
        let lock = self.locks.lock(out_trade_no).await?;
        Ok(Some(Box::new(lock)))
    }

    async fn adopt_orphans(&self) -> Result<Option<Orphans>, LedgerError> {
        let adopted = self.adopt().await?;
        if adopted.is_empty() {
            return Ok(Some(Orphans::default()));
        }
        let of = |table: &str, pending: &str| {
            format!(
                "SELECT record FROM {table} WHERE {pending} AND out_trade_no = ANY($1) \
                 ORDER BY out_trade_no"
            )
        };
        let orders: Vec<Order> = self
            .records(&of("orders", "needs_recovery"), &[&adopted])
            .await?;
        Ok(Some(Orphans {
            orders: orders.into_iter().filter(Order::needs_recovery).collect(),
            refunds: self.records(&of("refunds", "pending"), &[&adopted]).await?,
            splits: self.records(&of("splits", "pending"), &[&adopted]).await?,
            returns: self
                .records(&of("split_returns", "pending"), &[&adopted])
                .await?,
        }))
    }
}

impl PgLedger {
    /// Takes over the orders with work in flight whose owner holds no lease (dead, or cut off
    /// from the database); answers their numbers. One transaction: the candidates' rows are
    /// locked first (rows another replica is adopting right now are skipped), then the leases
    /// are read — after the locks, so an owner that adopted a row a moment ago counts as alive.
    async fn adopt(&self) -> Result<Vec<String>, LedgerError> {
        let me = self.replica();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let candidates = tx.query(CANDIDATES, &[&me]).await.map_err(pg_error)?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let live: Vec<i64> = tx
            .query(LEASES, &[&super::locks::LEASE_CLASS])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let orphans: Vec<String> = candidates
            .iter()
            .filter(|r| {
                r.get::<_, Option<i32>>(1)
                    .is_none_or(|owner| !live.contains(&i64::from(owner)))
            })
            .map(|r| r.get(0))
            .collect();
        if !orphans.is_empty() {
            tx.execute(
                "UPDATE orders SET owner = $1 WHERE out_trade_no = ANY($2)",
                &[&me, &orphans],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(orphans)
    }
}

/// The orders with work in flight that another replica (`$1`: this one) owns, locked.
const CANDIDATES: &str = "SELECT out_trade_no, owner FROM orders \
     WHERE out_trade_no IN ( \
         SELECT out_trade_no FROM orders WHERE needs_recovery \
         UNION SELECT out_trade_no FROM refunds WHERE pending \
         UNION SELECT out_trade_no FROM splits WHERE pending \
         UNION SELECT out_trade_no FROM split_returns WHERE pending) \
     AND owner IS DISTINCT FROM $1 \
     ORDER BY out_trade_no FOR UPDATE OF orders SKIP LOCKED";

/// The replicas holding a lease in this database (`$1`: the lease class, see `locks`).
const LEASES: &str = "SELECT objid::bigint FROM pg_locks \
     WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = $1::integer::oid \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

async fn insert_order(tx: &mut Tx<'_>, mut order: Order) -> Result<Inserted<Order>, LedgerError> {
    if tx.store_order(None, &mut order).await? {
        return Ok(Inserted::Created(order));
    }
    // Taken, by now committed: an insert of the same number waits for the writer that holds it.
    let existing = tx.record(ORDER, &order.request.out_trade_no).await?;
    existing
        .map(Inserted::Existing)
        .ok_or_else(|| LedgerError::Storage("an order vanished while it was inserted".into()))
}

/// See `Ledger::put_order`: `order` was read at `order.version`, which must still be stored.
async fn put_order(tx: &mut Tx<'_>, order: &mut Order) -> Result<(), LedgerError> {
    // Reached when the batch declined the write (or the order has no version yet): tells a
    // stale copy from an order not stored, under the row's lock.
    let no = order.request.out_trade_no.clone();
    let read = order.version;
    let before = match tx.lock_order(&no).await? {
        Some(b) => b,
        None if tx.store_order(None, order).await? => return Ok(()),
        // Inserted by another writer since the lock was asked for: it is there to lock now.
        None => tx.order_of(&no).await?,
    };
    rules::check_version(Some(&before.value), &no, read)?;
    tx.store_order(Some(&before), order).await?;
    Ok(())
}

async fn update_refund(tx: &Tx<'_>, refund: &Refund) -> Result<(), LedgerError> {
    let stored: Refund = tx
        .record(REFUNDS.lock, &refund.out_refund_no)
        .await?
        .ok_or_else(|| LedgerError::RefundNotFound(refund.out_refund_no.clone()))?;
    write_refund(tx, &rules::refund_details(&stored, refund)).await
}

async fn write_refund(tx: &Tx<'_>, refund: &Refund) -> Result<(), LedgerError> {
    tx.exec(
        "UPDATE refunds SET record = $2, pending = $3 WHERE out_refund_no = $1",
        &[
            &refund.out_refund_no,
            &encode(refund)?,
            &(refund.status == RefundStatus::Pending),
        ],
    )
    .await
    .map(drop)
}

async fn settle_refund(tx: &mut Tx<'_>, refund: &Refund) -> Result<Order, LedgerError> {
    // The order is the one the settlement names, as in the embedded ledger.
    let (before, was): (_, Refund) = tx
        .lock_with_order(
            &REFUNDS,
            &refund.out_refund_no,
            |_| refund.out_trade_no.clone(),
            || LedgerError::RefundNotFound(refund.out_refund_no.clone()),
        )
        .await?;
    let mut order = before.value.clone();
    let refund = rules::settle_refund(&mut order, &was, refund);
    write_refund(tx, &refund).await?;
    if was.status == RefundStatus::Pending {
        super::splits::settle_carried_returns(tx, &refund, &mut order).await?;
    }
    tx.store_order(Some(&before), &mut order).await?;
    if let Some(t) = refund_event(Some(was.status), &refund) {
        tx.raise_refund(t, &refund);
    }
    Ok(order)
}

/// See `Ledger::insert_funded_refund`.
async fn insert_refund(
    tx: &mut Tx<'_>,
    refund: Refund,
    returns: &[SplitReturn],
) -> Result<Inserted<Refund>, LedgerError> {
    let before = match tx
        .claim(&REFUNDS, &refund.out_refund_no, &refund.out_trade_no)
        .await?
    {
        Claim::Taken(existing) => return Ok(Inserted::Existing(existing)),
        Claim::Free(order) => *order,
    };
    let mut order = before.value.clone();
    rules::reserve_refund(&mut order, &refund, returns)?;
    // The number is claimed before anything else is written: taken (by a refund of another
    // order, committed meanwhile), nothing of this write needs undoing.
    let claimed = tx
        .exec(
            "INSERT INTO refunds (out_refund_no, out_trade_no, record, pending, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (out_refund_no) DO NOTHING",
            &[
                &refund.out_refund_no,
                &refund.out_trade_no,
                &encode(&refund)?,
                &(refund.status == RefundStatus::Pending),
                &ms(refund.created_at),
            ],
        )
        .await?;
    if claimed == 0 {
        return tx.existing(&REFUNDS, &refund.out_refund_no).await;
    }
    super::splits::reserve_returns(tx, returns).await?;
    tx.store_order(Some(&before), &mut order).await?;
    Ok(Inserted::Created(refund))
}
