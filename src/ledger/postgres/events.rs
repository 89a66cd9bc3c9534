//! The events feed, the outbox and the order list in PostgreSQL.
//!
//! Each order's deliveries queue by ticket; a delivery is due when it is pending, its time has
//! come and no delivery of its order has an earlier ticket (it heads its queue). The embedded
//! ledger keeps that set as a table of its own; here it is the query itself, so no write has
//! to maintain it.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::orders::in_tx;
use super::tx::Tx;
use super::{big, decode, encode, ms, pg_error, PgLedger};
use crate::ledger::events::{
    matches, Delivery, DeliveryState, DeliveryUpdate, Event, EventStore, EventType, OrderCursor,
    OrderPage, OrderQuery, OutboxStats, Subject, LIST_SCAN_LIMIT,
};
use crate::ledger::rules::{delivery_change, requeued, DeliveryChange};
use crate::ledger::{LedgerError, Order};

/// The heads of the order queues: no delivery of the same order queued before.
const HEAD: &str = "NOT EXISTS (SELECT 1 FROM outbox w \
                    WHERE w.out_trade_no = o.out_trade_no AND w.ticket < o.ticket)";

/// Writes a new delivery (its ticket given by the caller).
pub(super) async fn insert_delivery(
    tx: &deadpool_postgres::Transaction<'_>,
    d: &Delivery,
) -> Result<(), LedgerError> {
    let st = tx
        .prepare_cached(
            "INSERT INTO outbox (seq, out_trade_no, ticket, failed, next_ms, record) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(
        &st,
        &[
            &big(d.seq),
            &d.out_trade_no,
            &big(d.ticket),
            &(d.state == DeliveryState::Failed),
            &ms(d.next_at),
            &encode(d)?,
        ],
    )
    .await
    .map_err(pg_error)
    .map(drop)
}

async fn write_delivery(tx: &Tx<'_>, d: &Delivery) -> Result<(), LedgerError> {
    tx.exec(
        "UPDATE outbox SET failed = $2, next_ms = $3, record = $4 WHERE seq = $1",
        &[
            &big(d.seq),
            &(d.state == DeliveryState::Failed),
            &ms(d.next_at),
            &encode(d)?,
        ],
    )
    .await
    .map(drop)
}

/// Queues `event` again behind its order's waiting deliveries, due at `now`.
async fn requeue(tx: &Tx<'_>, event: Event, now: DateTime<Utc>) -> Result<(), LedgerError> {
    let ticket: i64 = tx
        .row(
            "UPDATE ledger_counters SET last_ticket = last_ticket + 1 RETURNING last_ticket",
            &[],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| LedgerError::Storage("the ledger's counters row is missing".into()))?;
    let d = Delivery {
        ticket: ticket as u64,
        ..requeued(event, now)
    };
    // Another replica may have queued it since this write looked: then it is queued.
    tx.exec(
        "INSERT INTO outbox (seq, out_trade_no, ticket, failed, next_ms, record) \
         VALUES ($1, $2, $3, false, $4, $5) ON CONFLICT (seq) DO NOTHING",
        &[
            &big(d.seq),
            &d.out_trade_no,
            &ticket,
            &ms(now),
            &encode(&d)?,
        ],
    )
    .await?;
    Ok(())
}

/// Applies `update` to the delivery of event `seq`, locked by this write. See
/// `EventStore::record_delivery`.
async fn record(tx: &Tx<'_>, seq: u64, update: DeliveryUpdate) -> Result<bool, LedgerError> {
    let current: Option<Delivery> = tx
        .row(
            "SELECT record FROM outbox WHERE seq = $1 FOR UPDATE",
            &[&big(seq)],
        )
        .await?
        .map(|r| decode(r.get(0)))
        .transpose()?;
    match delivery_change(current, update) {
        DeliveryChange::Ignored => return Ok(false),
        DeliveryChange::Delivered(_) => {
            tx.exec("DELETE FROM outbox WHERE seq = $1", &[&big(seq)])
                .await?;
        }
        DeliveryChange::Updated { after, .. } => write_delivery(tx, &after).await?,
        DeliveryChange::Requeue { now } => {
            let Some(row) = tx
                .row("SELECT record FROM events WHERE seq = $1", &[&big(seq)])
                .await?
            else {
                return Ok(false);
            };
            requeue(tx, decode(row.get(0))?, now).await?;
        }
    }
    Ok(true)
}

fn decode_all<T: serde::de::DeserializeOwned>(rows: &[Row]) -> Result<Vec<T>, LedgerError> {
    rows.iter().map(|r| decode(r.get(0))).collect()
}

#[async_trait::async_trait]
impl EventStore for PgLedger {
    fn ledger_id(&self) -> &str {
        &self.ledger_id
    }

    async fn delivers(&self) -> Result<bool, LedgerError> {
        self.locks.deliverer().await
    }

    async fn record_event(
        &self,
        event_type: EventType,
        subject: Subject<'_>,
        at: DateTime<Utc>,
    ) -> Result<Event, LedgerError> {
        let (queue, data) = crate::ledger::rules::notice(subject)?;
        let mut client = self.client().await?;
        let mut tx = Tx::begin(&mut client, self).await?;
        tx.raise_notice(event_type, queue, data, at);
        let event = tx.commit().await?.pop();
        event.ok_or_else(|| LedgerError::Storage("a recorded event was not written".into()))
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, LedgerError> {
        self.records(
            "SELECT record FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&big(after), &big(limit as u64)],
        )
        .await
    }

    async fn event(&self, seq: u64) -> Result<Option<Event>, LedgerError> {
        let rows = self
            .read("SELECT record FROM events WHERE seq = $1", &[&big(seq)])
            .await?;
        Ok(decode_all(&rows)?.into_iter().next())
    }

    async fn outbox(&self, after: u64, limit: usize) -> Result<Vec<Delivery>, LedgerError> {
        self.records(
            "SELECT record FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&big(after), &big(limit as u64)],
        )
        .await
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<DateTime<Utc>>), LedgerError> {
        let due = self
            .records(
                &format!(
                    "SELECT o.record FROM outbox o WHERE NOT o.failed AND o.next_ms <= $1 \
                     AND {HEAD} ORDER BY o.next_ms, o.seq LIMIT $2"
                ),
                &[&ms(now), &big(limit as u64)],
            )
            .await?;
        let next = self
            .read(
                &format!(
                    "SELECT min(o.next_ms) FROM outbox o WHERE NOT o.failed \
                     AND o.next_ms > $1 AND {HEAD}"
                ),
                &[&ms(now)],
            )
            .await?
            .first()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .and_then(DateTime::from_timestamp_millis);
        Ok((due, next))
    }

    async fn record_delivery(&self, seq: u64, update: DeliveryUpdate) -> Result<bool, LedgerError> {
        in_tx!(self, tx => record(&tx, seq, update))
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, LedgerError> {
        let counts = self
            .read(
                "SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed) \
                 FROM outbox",
                &[],
            )
            .await?;
        let (pending, failed) = counts
            .first()
            .map_or((0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
        // The first pending row in feed order (queueing order, but for redeliveries).
        let oldest: Vec<Delivery> = self
            .records(
                "SELECT record FROM outbox WHERE NOT failed ORDER BY seq LIMIT 1",
                &[],
            )
            .await?;
        Ok(OutboxStats {
            pending: pending as u64,
            failed: failed as u64,
            oldest_pending: oldest.first().map(|d| d.created_at),
        })
    }

    async fn list_orders(&self, q: &OrderQuery) -> Result<OrderPage, LedgerError> {
        list_orders(self, q).await
    }
}

/// Orders newest first, as the embedded ledger lists them: the rows of the creation index in
/// the query's window, read in batches, filtered exactly by `matches`, at most
/// `LIST_SCAN_LIMIT` rows read per page.
async fn list_orders(ledger: &PgLedger, q: &OrderQuery) -> Result<OrderPage, LedgerError> {
    let lower_ms = q.created_after.map_or(i64::MIN, ms);
    // Orders created in the before-millisecond are filtered precisely by `matches`.
    let upper_ms = q.created_before.map_or(i64::MAX, ms);
    let batch = (q.limit.saturating_add(1)).clamp(1, 500) as i64;
    // Where the index is read from: the cursor (exclusive) or the top of the window.
    let mut from: Option<(i64, String)> = q
        .after
        .as_ref()
        .map(|c| (c.created_ms, c.out_trade_no.clone()));
    let (mut page, mut last, mut more, mut scanned) = (Vec::new(), None, false, 0usize);
    'scan: loop {
        let rows = match &from {
            Some((at, no)) => {
                ledger
                    .read(
                        "SELECT created_ms, out_trade_no, record FROM orders \
                         WHERE created_ms >= $1 AND (created_ms, out_trade_no) < ($2, $3) \
                         ORDER BY created_ms DESC, out_trade_no DESC LIMIT $4",
                        &[&lower_ms, at, no, &batch],
                    )
                    .await?
            }
            None => {
                ledger
                    .read(
                        "SELECT created_ms, out_trade_no, record FROM orders \
                         WHERE created_ms >= $1 AND created_ms <= $2 \
                         ORDER BY created_ms DESC, out_trade_no DESC LIMIT $3",
                        &[&lower_ms, &upper_ms, &batch],
                    )
                    .await?
            }
        };
        let exhausted = (rows.len() as i64) < batch;
        for row in &rows {
            if page.len() == q.limit || scanned == LIST_SCAN_LIMIT {
                more = true;
                break 'scan;
            }
            scanned += 1;
            let cursor = OrderCursor {
                created_ms: row.get(0),
                out_trade_no: row.get(1),
            };
            let o: Order = decode(row.get(2))?;
            if matches(q, &o) {
                page.push(o);
            }
            last = Some(cursor);
        }
        if exhausted {
            break;
        }
        from = last
            .as_ref()
            .map(|c| (c.created_ms, c.out_trade_no.clone()));
    }
    Ok(OrderPage {
        orders: page,
        next: if more { last } else { None },
    })
}
