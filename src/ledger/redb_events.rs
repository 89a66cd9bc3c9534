//! The events feed, the outbox and the order list of the embedded ledger.

use chrono::{DateTime, Utc};
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::events::{
    matches, Delivery, DeliveryState, DeliveryUpdate, Event, EventStore, EventType, OrderCursor,
    OrderPage, OrderQuery, OutboxStats, Subject, LIST_SCAN_LIMIT,
};
use super::redb_store::{
    append_event, decode, encode, storage, RedbLedger, BY_CREATED, EVENTS, ORDERS, OUTBOX,
};
use super::rules::{delivery_change, requeued, DeliveryChange};
use super::{LedgerError, Order};

/// Feed position → (): the deliveries that gave up, a subset of the outbox (for counting).
pub(super) const FAILED: TableDefinition<u64, ()> = TableDefinition::new("outbox_failed");
/// (out_trade_no, ticket) → feed position: each order's queue of deliveries not done, in the
/// order they were queued (a redelivered event queues behind the order's waiting ones).
pub(super) const QUEUE: TableDefinition<(&str, u64), u64> = TableDefinition::new("outbox_queue");
/// The last queue ticket handed out.
pub(super) const TICKETS: TableDefinition<(), u64> = TableDefinition::new("outbox_tickets");
/// (next attempt in ms, feed position) → (): the pending heads of the order queues, by time.
pub(super) const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("outbox_due");

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn read_delivery(tx: &WriteTransaction, seq: u64) -> Result<Option<Delivery>, LedgerError> {
    let t = tx.open_table(OUTBOX).map_err(storage)?;
    let v = t.get(seq).map_err(storage)?;
    v.map(|g| decode(g.value())).transpose()
}

fn write_delivery(tx: &WriteTransaction, d: &Delivery) -> Result<(), LedgerError> {
    tx.open_table(OUTBOX)
        .map_err(storage)?
        .insert(d.seq, encode(d)?.as_slice())
        .map_err(storage)?;
    let mut failed = tx.open_table(FAILED).map_err(storage)?;
    match d.state {
        DeliveryState::Failed => failed.insert(d.seq, ()).map(drop),
        DeliveryState::Pending => failed.remove(d.seq).map(drop),
    }
    .map_err(storage)
}

/// The first delivery in `order`'s queue.
fn head(tx: &WriteTransaction, order: &str) -> Result<Option<u64>, LedgerError> {
    let q = tx.open_table(QUEUE).map_err(storage)?;
    let first = q
        .range((order, 0)..=(order, u64::MAX))
        .map_err(storage)?
        .next()
        .transpose()
        .map_err(storage)?;
    Ok(first.map(|(_, v)| v.value()))
}

/// Makes `d` due at its `next_at` if it heads its order's queue and is pending.
fn schedule(tx: &WriteTransaction, d: &Delivery) -> Result<(), LedgerError> {
    if d.state == DeliveryState::Pending && head(tx, &d.out_trade_no)? == Some(d.seq) {
        tx.open_table(DUE)
            .map_err(storage)?
            .insert((ms(d.next_at), d.seq), ())
            .map_err(storage)?;
    }
    Ok(())
}

fn unschedule(tx: &WriteTransaction, d: &Delivery) -> Result<(), LedgerError> {
    tx.open_table(DUE)
        .map_err(storage)?
        .remove((ms(d.next_at), d.seq))
        .map_err(storage)?;
    Ok(())
}

/// Queues a pending delivery behind its order's waiting ones (`d.ticket` is assigned here).
pub(super) fn enqueue(tx: &WriteTransaction, d: &Delivery) -> Result<(), LedgerError> {
    let ticket = {
        let mut t = tx.open_table(TICKETS).map_err(storage)?;
        let next = t.get(()).map_err(storage)?.map_or(0, |g| g.value()) + 1;
        t.insert((), next).map_err(storage)?;
        next
    };
    let d = Delivery {
        ticket,
        ..d.clone()
    };
    write_delivery(tx, &d)?;
    tx.open_table(QUEUE)
        .map_err(storage)?
        .insert((d.out_trade_no.as_str(), ticket), d.seq)
        .map_err(storage)?;
    schedule(tx, &d)
}

/// Removes a delivered delivery; its order's next one becomes due.
fn dequeue(tx: &WriteTransaction, d: &Delivery) -> Result<(), LedgerError> {
    unschedule(tx, d)?;
    tx.open_table(OUTBOX)
        .map_err(storage)?
        .remove(d.seq)
        .map_err(storage)?;
    tx.open_table(FAILED)
        .map_err(storage)?
        .remove(d.seq)
        .map_err(storage)?;
    tx.open_table(QUEUE)
        .map_err(storage)?
        .remove((d.out_trade_no.as_str(), d.ticket))
        .map_err(storage)?;
    if let Some(next) = head(tx, &d.out_trade_no)? {
        if let Some(n) = read_delivery(tx, next)? {
            schedule(tx, &n)?;
        }
    }
    Ok(())
}

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

    async fn record_event(
        &self,
        event_type: EventType,
        subject: Subject<'_>,
        at: DateTime<Utc>,
    ) -> Result<Event, LedgerError> {
        let (queue, data) = super::rules::notice(subject)?;
        let (queue, data, ob) = (queue.to_string(), data.clone(), self.outbox.clone());
        self.write(move |tx| {
            let subject = Subject::Notice {
                queue: &queue,
                data: &data,
            };
            append_event(tx, &ob, event_type, subject, at)
        })
        .await
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

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<DateTime<Utc>>), LedgerError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let due = tx.open_table(DUE).map_err(storage)?;
        let outbox = tx.open_table(OUTBOX).map_err(storage)?;
        let mut out = Vec::new();
        for row in due
            .range(..=(ms(now), u64::MAX))
            .map_err(storage)?
            .take(limit)
        {
            let (k, _) = row.map_err(storage)?;
            if let Some(g) = outbox.get(k.value().1).map_err(storage)? {
                out.push(decode(g.value())?);
            }
        }
        let next = due
            .range((ms(now).saturating_add(1), 0)..)
            .map_err(storage)?
            .next()
            .transpose()
            .map_err(storage)?
            .and_then(|(k, _)| DateTime::from_timestamp_millis(k.value().0));
        Ok((out, next))
    }

    async fn record_delivery(&self, seq: u64, update: DeliveryUpdate) -> Result<bool, LedgerError> {
        self.write(move |tx| {
            match delivery_change(read_delivery(tx, seq)?, update) {
                DeliveryChange::Ignored => return Ok(false),
                DeliveryChange::Delivered(d) => dequeue(tx, &d)?,
                DeliveryChange::Updated { before, after } => {
                    unschedule(tx, &before)?;
                    write_delivery(tx, &after)?;
                    schedule(tx, &after)?;
                }
                DeliveryChange::Requeue { now } => {
                    let events = tx.open_table(EVENTS).map_err(storage)?;
                    let Some(g) = events.get(seq).map_err(storage)? else {
                        return Ok(false);
                    };
                    let event: Event = decode(g.value())?;
                    drop(g);
                    drop(events);
                    enqueue(tx, &requeued(event, now))?;
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
        // The first pending row (feed order is queueing order, but for redeliveries); failed
        // rows in front are skipped, a bounded number of them.
        let mut oldest_pending = None;
        for row in outbox.iter().map_err(storage)?.take(10_000) {
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
