//! One write: a database transaction that locks the rows it reads for a change, writes the
//! change, and appends the events it raises just before it commits.
//!
//! Locking: every write about an order first takes the order's row lock (`SELECT … FOR
//! UPDATE`), then the locks of the rows it changes (refund, split, return). Writers of one
//! order, in any process, therefore run one after the other and each sees the other's
//! committed result, which is what keeps refunds, splits and returns within their bounds.
//!
//! Feed positions: the events of a write are numbered by updating the one row of
//! `ledger_counters` as the transaction's last statement before COMMIT. That row lock is held
//! until the commit, so the next writer gets N+1 only once N is committed (or rolled back, and
//! then reuses N): positions are dense and readers never see N+1 before N. A sequence would
//! hand numbers out at insert time and let a later number commit first, so a reader paging by
//! `after` could skip an event for good. The lock is taken last to keep it short.

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{decode, encode, ms, pg_error, PgLedger};
use crate::ledger::events::Delivery;
use crate::ledger::rules::queued;
use crate::ledger::{Inserted, LedgerError, Order, Refund, Split, SplitReturn};
use crate::order::events::{order_events, Event, EventType, Subject};

/// A table of records keyed by their number: how a row is read, and read locked.
pub(super) struct Table {
    pub(super) get: &'static str,
    pub(super) lock: &'static str,
    /// What a row is, for messages.
    what: &'static str,
}

pub(super) const REFUNDS: Table = Table {
    get: "SELECT record FROM refunds WHERE out_refund_no = $1",
    lock: "SELECT record FROM refunds WHERE out_refund_no = $1 FOR UPDATE",
    what: "refund",
};

pub(super) const SPLITS: Table = Table {
    get: "SELECT record FROM splits WHERE out_split_no = $1",
    lock: "SELECT record FROM splits WHERE out_split_no = $1 FOR UPDATE",
    what: "split",
};

pub(super) const RETURNS: Table = Table {
    get: "SELECT record FROM split_returns WHERE out_return_no = $1",
    lock: "SELECT record FROM split_returns WHERE out_return_no = $1 FOR UPDATE",
    what: "split return",
};

/// Where an insert stands once its order is locked.
pub(super) enum Claim<T> {
    /// The number is taken: the stored record.
    Taken(T),
    /// The number is free; the order, locked.
    Free(Box<Versioned<Order>>),
}

/// A stored row and the version it had when read (orders carry one).
#[derive(Debug)]
pub(super) struct Versioned<T> {
    pub(super) value: T,
    pub(super) version: i64,
}

/// What an event raised in this write is about (kept until the feed position is known).
enum About {
    Payment(Box<Order>),
    Refund(Refund),
    Split(Split),
    SplitReturn(SplitReturn),
    Notice {
        queue: String,
        data: serde_json::Value,
    },
}

impl About {
    fn subject(&self) -> Subject<'_> {
        match self {
            About::Payment(o) => Subject::Payment(o),
            About::Refund(r) => Subject::Refund(r),
            About::Split(s) => Subject::Split(s),
            About::SplitReturn(r) => Subject::SplitReturn(r),
            About::Notice { queue, data } => Subject::Notice { queue, data },
        }
    }
}

struct Raised {
    event_type: EventType,
    about: About,
    at: chrono::DateTime<chrono::Utc>,
}

/// A write in progress.
pub(super) struct Tx<'c> {
    tx: Transaction<'c>,
    ledger: &'c PgLedger,
    raised: Vec<Raised>,
}

impl<'c> Tx<'c> {
    pub(super) async fn begin(
        client: &'c mut deadpool_postgres::Client,
        ledger: &'c PgLedger,
    ) -> Result<Tx<'c>, LedgerError> {
        Ok(Tx {
            tx: client.transaction().await.map_err(pg_error)?,
            ledger,
            raised: Vec::new(),
        })
    }

    /// Commits when `result` is a success (with the events raised), else rolls back; answers
    /// `result`, or the storage error that kept it from committing.
    pub(super) async fn finish<T>(self, result: Result<T, LedgerError>) -> Result<T, LedgerError> {
        match result {
            Ok(v) => self.commit().await.map(|_| v),
            Err(e) => {
                // A failed rollback leaves nothing behind either: the server discards an
                // unfinished transaction when its connection goes.
                let _ = self.tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Appends the events raised and commits; answers the events as stored.
    pub(super) async fn commit(self) -> Result<Vec<Event>, LedgerError> {
        let Tx { tx, ledger, raised } = self;
        let events = append_events(&tx, &ledger.ledger_id, ledger.deliver, raised).await?;
        tx.commit().await.map_err(pg_error)?;
        ledger.commits.inc();
        Ok(events)
    }

    /// Runs `sql` and answers its only row, if any.
    pub(super) async fn row(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, LedgerError> {
        let st = self.tx.prepare_cached(sql).await.map_err(pg_error)?;
        self.tx.query_opt(&st, params).await.map_err(pg_error)
    }

    /// Runs `sql` and answers its rows.
    pub(super) async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, LedgerError> {
        let st = self.tx.prepare_cached(sql).await.map_err(pg_error)?;
        self.tx.query(&st, params).await.map_err(pg_error)
    }

    /// Raises the events of `before` becoming `after` (written by this write).
    pub(super) fn raise_order_events(&mut self, before: Option<&Order>, after: &Order) {
        for t in order_events(before, after) {
            self.raise(t, About::Payment(Box::new(after.clone())), after.updated_at);
        }
    }

    /// Runs `sql` and answers how many rows it changed.
    pub(super) async fn exec(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, LedgerError> {
        let st = self.tx.prepare_cached(sql).await.map_err(pg_error)?;
        self.tx.execute(&st, params).await.map_err(pg_error)
    }

    /// The record of the row `sql` selects (its first column), decoded.
    pub(super) async fn record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        key: &str,
    ) -> Result<Option<T>, LedgerError> {
        self.row(sql, &[&key])
            .await?
            .map(|r| decode(r.get(0)))
            .transpose()
    }

    /// The order, locked until this write ends.
    pub(super) async fn lock_order(
        &self,
        no: &str,
    ) -> Result<Option<Versioned<Order>>, LedgerError> {
        let row = self
            .row(
                "SELECT record, version FROM orders WHERE out_trade_no = $1 FOR UPDATE",
                &[&no],
            )
            .await?;
        row.map(|r| {
            Ok(Versioned {
                value: decode(r.get(0))?,
                version: r.get(1),
            })
        })
        .transpose()
    }

    /// [`Tx::lock_order`], which must exist.
    pub(super) async fn order_of(&self, no: &str) -> Result<Versioned<Order>, LedgerError> {
        self.lock_order(no)
            .await?
            .ok_or_else(|| LedgerError::OrderNotFound(no.to_string()))
    }

    /// The first steps of inserting `key` into `table` for order `order`: the stored record
    /// when the number is taken — looked up before the order's lock and again after it, so
    /// that a repeat committed while this write waited is answered as such rather than refused
    /// for what it reserved — else the order, locked.
    pub(super) async fn claim<T: serde::de::DeserializeOwned>(
        &self,
        table: &Table,
        key: &str,
        order: &str,
    ) -> Result<Claim<T>, LedgerError> {
        if let Some(t) = self.record(table.get, key).await? {
            return Ok(Claim::Taken(t));
        }
        let locked = self.order_of(order).await?;
        Ok(match self.record(table.get, key).await? {
            Some(t) => Claim::Taken(t),
            None => Claim::Free(Box::new(locked)),
        })
    }

    /// The stored record `key`, as the answer of an insert whose number a write committed
    /// meanwhile took (nothing of this write is written yet).
    pub(super) async fn existing<T: serde::de::DeserializeOwned>(
        &self,
        table: &Table,
        key: &str,
    ) -> Result<Inserted<T>, LedgerError> {
        let found = self.record(table.get, key).await?;
        found.map(Inserted::Existing).ok_or_else(|| {
            LedgerError::Storage(format!(
                "{} {key} vanished while it was inserted",
                table.what
            ))
        })
    }

    /// The record `key` and the order `owner` names for it, both locked: the record is found,
    /// its order locked, then the record read again under that lock (what committed meanwhile
    /// counts). `missing`: the error when there is no such record.
    pub(super) async fn lock_with_order<T: serde::de::DeserializeOwned>(
        &self,
        table: &Table,
        key: &str,
        owner: impl Fn(&T) -> String,
        missing: impl Fn() -> LedgerError,
    ) -> Result<(Versioned<Order>, T), LedgerError> {
        let found: T = self.record(table.get, key).await?.ok_or_else(&missing)?;
        let order = self.order_of(&owner(&found)).await?;
        let locked = self.record(table.lock, key).await?.ok_or_else(&missing)?;
        Ok((order, locked))
    }

    /// Writes `after` over `before` (locked by this write; none: a new order) as its next
    /// version (set in `after`), owned by this replica, and raises the events of the change.
    /// The update names the version it read: a compare-and-set. `false`: a new order's number
    /// is taken (nothing was written).
    pub(super) async fn store_order(
        &mut self,
        before: Option<&Versioned<Order>>,
        after: &mut Order,
    ) -> Result<bool, LedgerError> {
        after.version = before.map_or(1, |b| b.value.version + 1);
        let record = encode(&*after)?;
        let status = super::status_text(after.status)?;
        let (no, recovery) = (&after.request.out_trade_no, after.needs_recovery());
        let (version, owner) = (super::big(after.version), self.ledger.replica());
        let written = match before {
            Some(b) => {
                self.exec(
                    "UPDATE orders SET record = $2, status = $3, channel = $4, \
                     needs_recovery = $5, version = $7, owner = $8 \
                     WHERE out_trade_no = $1 AND version = $6",
                    &[
                        no,
                        &record,
                        &status,
                        &after.channel,
                        &recovery,
                        &b.version,
                        &version,
                        &owner,
                    ],
                )
                .await?
            }
            None => {
                self.exec(
                    INSERT_ORDER,
                    &[
                        no,
                        &record,
                        &status,
                        &after.channel,
                        &ms(after.created_at),
                        &recovery,
                        &version,
                        &owner,
                    ],
                )
                .await?
            }
        };
        match (before, written) {
            (_, 1) => {}
            (None, _) => return Ok(false),
            (Some(_), _) => {
                return Err(LedgerError::Storage(format!(
                    "order {no} changed under a write that held its lock"
                )))
            }
        }
        for t in order_events(before.map(|b| &b.value), after) {
            self.raise(t, About::Payment(Box::new(after.clone())), after.updated_at);
        }
        Ok(true)
    }

    pub(super) fn raise_refund(&mut self, t: EventType, refund: &Refund) {
        self.raise(t, About::Refund(refund.clone()), refund.updated_at);
    }

    pub(super) fn raise_split(&mut self, t: EventType, split: &Split) {
        self.raise(t, About::Split(split.clone()), split.updated_at);
    }

    pub(super) fn raise_return(&mut self, t: EventType, ret: &SplitReturn) {
        self.raise(t, About::SplitReturn(ret.clone()), ret.updated_at);
    }

    /// Raises an event about no order, on its own `queue`.
    pub(super) fn raise_notice(
        &mut self,
        t: EventType,
        queue: &str,
        data: &serde_json::Value,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        let about = About::Notice {
            queue: queue.to_string(),
            data: data.clone(),
        };
        self.raise(t, about, at);
    }

    fn raise(&mut self, event_type: EventType, about: About, at: chrono::DateTime<chrono::Utc>) {
        self.raised.push(Raised {
            event_type,
            about,
            at,
        });
    }
}

/// Inserts a new order: `$1` number, `$2` record, `$3` status, `$4` channel, `$5` creation
/// (ms), `$6` needs recovery, `$7` version, `$8` owner; nothing when the number is taken.
pub(super) const INSERT_ORDER: &str = "INSERT INTO orders (out_trade_no, record, status, \
     channel, created_ms, needs_recovery, version, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (out_trade_no) DO NOTHING";

/// Numbers the raised events (see the module documentation), writes them to the feed and,
/// when delivering, queues each behind its order's waiting deliveries.
async fn append_events(
    tx: &Transaction<'_>,
    ledger_id: &str,
    deliver: bool,
    raised: Vec<Raised>,
) -> Result<Vec<Event>, LedgerError> {
    if raised.is_empty() {
        return Ok(Vec::new());
    }
    let n = raised.len() as i64;
    let tickets = if deliver { n } else { 0 };
    let st = tx
        .prepare_cached(
            "UPDATE ledger_counters SET last_seq = last_seq + $1, \
             last_ticket = last_ticket + $2 RETURNING last_seq, last_ticket",
        )
        .await
        .map_err(pg_error)?;
    let row = tx.query_one(&st, &[&n, &tickets]).await.map_err(pg_error)?;
    let (last_seq, last_ticket): (i64, i64) = (row.get(0), row.get(1));
    let insert_event = tx
        .prepare_cached("INSERT INTO events (seq, out_trade_no, record) VALUES ($1, $2, $3)")
        .await
        .map_err(pg_error)?;
    let mut events = Vec::with_capacity(raised.len());
    for (i, r) in raised.into_iter().enumerate() {
        let seq = last_seq - n + 1 + i as i64;
        let nonce = crate::crypto::random_hex(4);
        let event = Event::new(
            ledger_id,
            seq as u64,
            &nonce,
            r.event_type,
            r.about.subject(),
            r.at,
        )
        .map_err(super::storage)?;
        tx.execute(
            &insert_event,
            &[&seq, &event.out_trade_no, &encode(&event)?],
        )
        .await
        .map_err(pg_error)?;
        if deliver {
            let delivery = Delivery {
                ticket: (last_ticket - tickets + 1 + i as i64) as u64,
                ..queued(seq as u64, event.out_trade_no.clone(), chrono::Utc::now())
            };
            super::events::insert_delivery(tx, &delivery).await?;
        }
        events.push(event);
    }
    Ok(events)
}
