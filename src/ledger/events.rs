//! The outbox and the lists: app events in the order they happened, their delivery state,
//! and orders by creation time. Events are appended by the ledger's own writes (see
//! `order::events`); this trait reads them and records deliveries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{LedgerError, Order};
use crate::domain::PaymentStatus;
pub use crate::order::events::{Event, EventType, Subject};

/// Where the delivery of one event stands (kept until it is delivered).
///
/// Deliveries queue per order: only the oldest undelivered event of an order (its queue's head)
/// is ever sent, so the app sees each order's events in the order they happened. A head that
/// is given up (`failed`) keeps holding back its order's later events until ops redeliver it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event's feed position.
    pub seq: u64,
    /// The event's order: its events are delivered one after the other.
    pub out_trade_no: String,
    pub state: DeliveryState,
    /// Attempts made since the delivery was queued (or redelivered).
    pub attempts: u32,
    /// When the next attempt is due (for `pending`).
    pub next_at: DateTime<Utc>,
    /// When the delivery was queued (the event was written, or ops asked for it again).
    pub created_at: DateTime<Utc>,
    /// Retries stop some time after this: when it was queued, or last redelivered by ops.
    pub retry_from: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Its place in its order's queue (given when queued).
    pub ticket: u64,
}

/// A delivery not done yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Will be attempted (again) at `next_at`, once it heads its order's queue.
    Pending,
    /// Retries are exhausted: listed for ops, who can redeliver it.
    Failed,
}

/// The result of a delivery attempt, or an operator's request. An attempt's result names the
/// `attempts` count it was made at; a result that no longer matches the stored delivery (ops
/// redelivered it meanwhile) is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryUpdate {
    /// The app answered 2xx: the delivery is done (removed; the order's next event is due).
    Delivered { attempts: u32 },
    /// Not delivered; try again at `next_at`.
    Retry {
        attempts: u32,
        next_at: DateTime<Utc>,
        error: String,
    },
    /// Not delivered and retries are exhausted.
    Failed { attempts: u32, error: String },
    /// Ops asked for a delivery of an event now: a pending one is due at once, a failed one
    /// gets a fresh retry window, a delivered one (or one written while delivery was off) is
    /// queued again.
    Redeliver { now: DateTime<Utc> },
}

/// Filters and position of `GET /v1/payments`.
#[derive(Clone, Debug, Default)]
pub struct OrderQuery {
    pub status: Option<PaymentStatus>,
    pub channel: Option<String>,
    /// Inclusive.
    pub created_after: Option<DateTime<Utc>>,
    /// Exclusive.
    pub created_before: Option<DateTime<Utc>>,
    /// Continue after this position (from the previous page), newest first.
    pub after: Option<OrderCursor>,
    pub limit: usize,
}

/// A position in the list of orders, newest first: (created_at, out_trade_no).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderCursor {
    pub created_ms: i64,
    pub out_trade_no: String,
}

impl OrderCursor {
    /// The opaque form given to clients.
    pub fn encode(&self) -> String {
        use base64::Engine as _;
        let raw = format!("{}.{}", self.created_ms, self.out_trade_no);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a cursor given by [`OrderCursor::encode`].
    pub fn decode(s: &str) -> Option<OrderCursor> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (ms, no) = raw.split_once('.')?;
        Some(OrderCursor {
            created_ms: ms.parse().ok()?,
            out_trade_no: no.to_string(),
        })
    }
}

/// One page of orders.
#[derive(Clone, Debug)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Where the next page starts, when there may be more.
    pub next: Option<OrderCursor>,
}

/// Numbers for the outbox metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: u64,
    pub failed: u64,
    /// When the oldest pending event was written.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// The events feed, the outbox and the order list. Every backend that stores orders keeps
/// these, written in the same transactions as the state changes they describe.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// The ledger's random id (part of every event id).
    fn ledger_id(&self) -> &str;
    /// Whether this process delivers the outbox: on a ledger shared by several processes one
    /// of them at a time does (so that no two send an order's events at once, out of order),
    /// and another takes over when it is gone. Always true for a ledger of one process.
    async fn delivers(&self) -> Result<bool, LedgerError> {
        Ok(true)
    }
    /// Events after feed position `after`, oldest first, at most `limit`.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, LedgerError>;
    /// The event at feed position `seq`.
    async fn event(&self, seq: u64) -> Result<Option<Event>, LedgerError>;
    /// Deliveries not done (pending and failed) after feed position `after`, oldest first, at
    /// most `limit`.
    async fn outbox(&self, after: u64, limit: usize) -> Result<Vec<Delivery>, LedgerError>;
    /// The deliveries due at `now`, each the head of its order's queue (so no two are for the
    /// same order), earliest first, at most `limit`; and when the next one falls due.
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<DateTime<Utc>>), LedgerError>;
    /// Records a delivery attempt or a redelivery request. `Ok(false)`: no such event (or,
    /// except for a redelivery, its delivery is no longer pending).
    async fn record_delivery(&self, seq: u64, update: DeliveryUpdate) -> Result<bool, LedgerError>;
    /// Appends an event not about an order (its `subject` is a [`Subject::Notice`]) to the
    /// feed and, when delivering, to the outbox; answers it as stored.
    async fn record_event(
        &self,
        event_type: EventType,
        subject: Subject<'_>,
        at: DateTime<Utc>,
    ) -> Result<Event, LedgerError>;
    /// Counts for the metrics.
    async fn outbox_stats(&self) -> Result<OutboxStats, LedgerError>;
    /// Orders, newest first, filtered.
    async fn list_orders(&self, query: &OrderQuery) -> Result<OrderPage, LedgerError>;
}

/// Most rows one list request reads (filters that match rarely answer with a cursor early).
pub const LIST_SCAN_LIMIT: usize = 20_000;

/// Whether an order passes the query's filters (every backend filters alike).
pub fn matches(q: &OrderQuery, o: &Order) -> bool {
    q.status.is_none_or(|s| o.status == s)
        && q.channel
            .as_deref()
            .is_none_or(|c| o.channel.as_deref() == Some(c))
        && q.created_after.is_none_or(|t| o.created_at >= t)
        && q.created_before.is_none_or(|t| o.created_at < t)
}
