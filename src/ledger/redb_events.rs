//! The events feed, the outbox and the order list of the embedded ledger.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::events::{
    matches, Delivery, DeliveryState, DeliveryUpdate, Event, EventStore, OrderCursor, OrderPage,
    OrderQuery, OutboxStats, LIST_SCAN_LIMIT,
};
use super::redb_store::{decode, encode, storage, RedbLedger, BY_CREATED, EVENTS, ORDERS, OUTBOX};
use super::{LedgerError, Order};

/// Feed position → (): the deliveries that gave up, a subset of the outbox (for counting).
pub(super) const FAILED: TableDefinition<u64, ()> = TableDefinition::new("outbox_failed");

/// The rows of a feed-ordered table after position `after`, at most `limit`.
fn rows_after<T: serde::de::DeserializeOwned>(
    db: &redb::Database,
    table: TableDefinition<u64, &[u8]>,
    after: u64,
    limit: usize,
) -> Result<Vec<T>, LedgerError> {
    let tx = db.begin_read().map_err(storage)?;
    let t = tx.open_table(table).map_err(storage)?;
    let mut out = Vec::new();
    for row in t
        .range(after.saturating_add(1)..)
        .map_err(storage)?
        .take(limit)
    {
        let (_, v) = row.map_err(storage)?;
        out.push(decode(v.value())?);
    }
    Ok(out)
}

#[async_trait::async_trait]
impl EventStore for RedbLedger {
    fn ledger_id(&self) -> &str {
        &self.outbox.ledger_id
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, LedgerError> {
        rows_after(&self.db, EVENTS, after, limit)
    }

    async fn event(&self, seq: u64) -> Result<Option<Event>, LedgerError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let t = tx.open_table(EVENTS).map_err(storage)?;
        let v = t.get(seq).map_err(storage)?;
        v.map(|g| decode(g.value())).transpose()
    }

    async fn outbox(&self, after: u64, limit: usize) -> Result<Vec<Delivery>, LedgerError> {
        rows_after(&self.db, OUTBOX, after, limit)
    }

    async fn record_delivery(&self, seq: u64, update: DeliveryUpdate) -> Result<bool, LedgerError> {
        self.write(move |tx| {
            let mut outbox = tx.open_table(OUTBOX).map_err(storage)?;
            let mut failed = tx.open_table(FAILED).map_err(storage)?;
            let current: Option<Delivery> = match outbox.get(seq).map_err(storage)? {
                Some(g) => Some(decode(g.value())?),
                None => None,
            };
            let written = current.as_ref().map(|d| d.created_at);
            let pending = current.filter(|d| d.state == DeliveryState::Pending);
            let next = match (update, pending) {
                (DeliveryUpdate::Delivered, Some(_)) => None,
                (DeliveryUpdate::Retry { next_at, error }, Some(d)) => Some(Delivery {
                    attempts: d.attempts.saturating_add(1),
                    next_at,
                    last_error: Some(error),
                    ..d
                }),
                (DeliveryUpdate::Failed { error }, Some(d)) => Some(Delivery {
                    state: DeliveryState::Failed,
                    attempts: d.attempts.saturating_add(1),
                    last_error: Some(error),
                    ..d
                }),
                (DeliveryUpdate::Redeliver { now }, _) => {
                    let events = tx.open_table(EVENTS).map_err(storage)?;
                    let Some(g) = events.get(seq).map_err(storage)? else {
                        return Ok(false);
                    };
                    let event: Event = decode(g.value())?;
                    // It keeps its age (the outbox's oldest-first order and the age gauge
                    // rely on it); only its retries start again.
                    Some(Delivery {
                        seq,
                        out_trade_no: event.out_trade_no,
                        state: DeliveryState::Pending,
                        attempts: 0,
                        next_at: now,
                        created_at: written.unwrap_or(event.created_at),
                        last_error: None,
                        redelivered_at: Some(now),
                    })
                }
                (_, None) => return Ok(false),
            };
            match next {
                None => {
                    outbox.remove(seq).map_err(storage)?;
                    failed.remove(seq).map_err(storage)?;
                }
                Some(d) => {
                    if d.state == DeliveryState::Failed {
                        failed.insert(seq, ()).map_err(storage)?;
                    } else {
                        failed.remove(seq).map_err(storage)?;
                    }
                    outbox
                        .insert(seq, encode(&d)?.as_slice())
                        .map_err(storage)?;
                }
            }
            Ok(true)
        })
        .await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, LedgerError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let outbox = tx.open_table(OUTBOX).map_err(storage)?;
        let failed = tx.open_table(FAILED).map_err(storage)?;
        let (all, failed_n) = (
            outbox.len().map_err(storage)?,
            failed.len().map_err(storage)?,
        );
        // The first pending row: failed rows are few, pending ones are in feed order.
        let mut oldest_pending = None;
        for row in outbox.iter().map_err(storage)? {
            let (_, v) = row.map_err(storage)?;
            let d: Delivery = decode(v.value())?;
            if d.state == DeliveryState::Pending {
                oldest_pending = Some(d.created_at);
                break;
            }
        }
        Ok(OutboxStats {
            pending: all.saturating_sub(failed_n),
            failed: failed_n,
            oldest_pending,
        })
    }

    async fn list_orders(&self, q: &OrderQuery) -> Result<OrderPage, LedgerError> {
        let db = self.db.clone();
        let q = q.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(storage)?;
            let index = tx.open_table(BY_CREATED).map_err(storage)?;
            let orders = tx.open_table(ORDERS).map_err(storage)?;
            let upper_ms = q.created_before.map(|t| t.timestamp_millis());
            let lower_ms = q.created_after.map_or(i64::MIN, |t| t.timestamp_millis());
            let rows = match &q.after {
                Some(c) => index.range((lower_ms, "")..(c.created_ms, c.out_trade_no.as_str())),
                None => match upper_ms {
                    // Orders created in the before-millisecond are filtered precisely below.
                    Some(ms) => index.range((lower_ms, "")..=(ms, "\u{10FFFF}")),
                    None => index.range((lower_ms, "")..),
                },
            }
            .map_err(storage)?;
            let (mut page, mut last, mut more) = (Vec::new(), None, false);
            for (scanned, row) in rows.rev().enumerate() {
                if page.len() == q.limit || scanned == LIST_SCAN_LIMIT {
                    more = true;
                    break;
                }
                let (k, _) = row.map_err(storage)?;
                let (created_ms, no) = k.value();
                last = Some(OrderCursor {
                    created_ms,
                    out_trade_no: no.to_string(),
                });
                let Some(g) = orders.get(no).map_err(storage)? else {
                    continue;
                };
                let o: Order = decode(g.value())?;
                if matches(&q, &o) {
                    page.push(o);
                }
            }
            // More may follow: the next page continues after the last row read.
            let page = OrderPage {
                orders: page,
                next: if more { last } else { None },
            };
            Ok(page)
        })
        .await
        .map_err(storage)?
    }
}
