//! App events: which state changes the app is told about, decided from an entity before and
//! after a write. Pure: every ledger backend calls these inside the transaction that writes
//! the change, so a change is never stored without its event, nor an event without its change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::splits::{Split, SplitReturn, SplitStatus};
use super::views::{PaymentView, RefundView, SplitReturnView, SplitView};
use super::{LateRefund, Order, Refund};
use crate::domain::{PaymentStatus, RefundStatus};

/// The kinds of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.closed")]
    PaymentClosed,
    /// A late or duplicate payment was found, or its automatic refund settled.
    #[serde(rename = "payment.anomaly")]
    PaymentAnomaly,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    #[serde(rename = "refund.failed")]
    RefundFailed,
    /// Every share of a split settled (some may have failed: see each receiver's status).
    #[serde(rename = "split.succeeded")]
    SplitSucceeded,
    /// Nothing was shared: the channel refused the split, or every share failed.
    #[serde(rename = "split.failed")]
    SplitFailed,
    #[serde(rename = "split_return.succeeded")]
    SplitReturnSucceeded,
    #[serde(rename = "split_return.failed")]
    SplitReturnFailed,
    /// A channel's statement of a day was checked against the ledger (with the counts).
    #[serde(rename = "reconciliation.completed")]
    ReconciliationCompleted,
}

impl EventType {
    /// The wire name, e.g. `payment.succeeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentClosed => "payment.closed",
            EventType::PaymentAnomaly => "payment.anomaly",
            EventType::RefundSucceeded => "refund.succeeded",
            EventType::RefundFailed => "refund.failed",
            EventType::SplitSucceeded => "split.succeeded",
            EventType::SplitFailed => "split.failed",
            EventType::SplitReturnSucceeded => "split_return.succeeded",
            EventType::SplitReturnFailed => "split_return.failed",
            EventType::ReconciliationCompleted => "reconciliation.completed",
        }
    }
}

/// The events a write of `after` over `before` (none: a new order) raises, in the order they
/// happened. A repeated write of the same state raises nothing.
pub fn order_events(before: Option<&Order>, after: &Order) -> Vec<EventType> {
    let was = before.map(|o| o.status);
    let mut out = Vec::new();
    let entered = |s: PaymentStatus| after.status == s && was != Some(s);
    if after.status.is_paid() && !was.is_some_and(PaymentStatus::is_paid) {
        out.push(EventType::PaymentSucceeded);
    }
    if entered(PaymentStatus::Failed) {
        out.push(EventType::PaymentFailed);
    }
    if entered(PaymentStatus::Closed) {
        out.push(EventType::PaymentClosed);
    }
    if anomaly_news(before, after) {
        out.push(EventType::PaymentAnomaly);
    }
    out
}

/// Whether the write adds an anomaly or a late payment, or settles a late payment's refund.
fn anomaly_news(before: Option<&Order>, after: &Order) -> bool {
    let (anomalies, late) = match before {
        Some(b) => (&b.anomalies[..], &b.late_payments[..]),
        None => (&[][..], &[][..]),
    };
    let settled = |r: LateRefund| matches!(r, LateRefund::Succeeded | LateRefund::Failed);
    after.anomalies.iter().any(|a| !anomalies.contains(a))
        || after.late_payments.iter().any(|l| {
            match late.iter().find(|b| b.out_refund_no == l.out_refund_no) {
                None => true,
                Some(b) => settled(l.refund_status) && b.refund_status != l.refund_status,
            }
        })
}

/// The event a refund's write raises: its settlement, once.
pub fn refund_event(before: Option<RefundStatus>, after: &Refund) -> Option<EventType> {
    match (before, after.status) {
        (Some(RefundStatus::Succeeded), _) | (Some(RefundStatus::Failed), _) => None,
        (_, RefundStatus::Succeeded) => Some(EventType::RefundSucceeded),
        (_, RefundStatus::Failed) => Some(EventType::RefundFailed),
        (_, RefundStatus::Pending) => None,
    }
}

/// The event a split's or a return's write raises: its settlement, once.
pub fn split_event(before: SplitStatus, after: SplitStatus, ret: bool) -> Option<EventType> {
    match (before, after, ret) {
        (SplitStatus::Pending, SplitStatus::Succeeded, false) => Some(EventType::SplitSucceeded),
        (SplitStatus::Pending, SplitStatus::Failed, false) => Some(EventType::SplitFailed),
        (SplitStatus::Pending, SplitStatus::Succeeded, true) => {
            Some(EventType::SplitReturnSucceeded)
        }
        (SplitStatus::Pending, SplitStatus::Failed, true) => Some(EventType::SplitReturnFailed),
        _ => None,
    }
}

/// An event as stored: its place in the feed, its id and the exact bytes delivered (the
/// resource as it was when the event happened, rendered once so every delivery is the same).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the ledger's feed (1, 2, …).
    pub seq: u64,
    /// `evt_…`, unique across ledgers (the `webhook-id` of every delivery of it).
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
    /// The order it is about: deliveries keep the order of its events.
    pub out_trade_no: String,
    /// The JSON body: `{id, type, created_at, data}`.
    pub body: String,
}

/// What an event is about.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    Payment(&'a Order),
    Refund(&'a Refund),
    Split(&'a Split),
    SplitReturn(&'a SplitReturn),
    /// Not about an order (e.g. a reconciliation): its own delivery queue, which no order
    /// number can name (it holds a `:`), and its data as the API shows it.
    Notice {
        queue: &'a str,
        data: &'a serde_json::Value,
    },
}

impl Event {
    /// The event `event_type` about `subject`, at feed position `seq` of the ledger `ledger_id`;
    /// `nonce` (random) keeps its id unique should the ledger ever be restored from a backup.
    pub fn new(
        ledger_id: &str,
        seq: u64,
        nonce: &str,
        event_type: EventType,
        subject: Subject<'_>,
        created_at: DateTime<Utc>,
    ) -> Result<Event, serde_json::Error> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Data<'a> {
            Payment(PaymentView<'a>),
            Refund(RefundView<'a>),
            Split(SplitView<'a>),
            SplitReturn(SplitReturnView<'a>),
            Notice(&'a serde_json::Value),
        }
        #[derive(Serialize)]
        struct Body<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            event_type: &'static str,
            created_at: DateTime<Utc>,
            data: Data<'a>,
        }
        let id = event_id(ledger_id, seq, nonce);
        let (out_trade_no, data) = match subject {
            Subject::Payment(o) => (
                o.request.out_trade_no.as_str(),
                Data::Payment(PaymentView::of(o)),
            ),
            Subject::Refund(r) => (r.out_trade_no.as_str(), Data::Refund(RefundView::of(r))),
            Subject::Split(s) => (s.out_trade_no.as_str(), Data::Split(SplitView::of(s))),
            Subject::SplitReturn(r) => (
                r.out_trade_no.as_str(),
                Data::SplitReturn(SplitReturnView::of(r)),
            ),
            Subject::Notice { queue, data } => (queue, Data::Notice(data)),
        };
        let body = Body {
            id: &id,
            event_type: event_type.as_str(),
            created_at,
            data,
        };
        Ok(Event {
            seq,
            body: serde_json::to_string(&body)?,
            id,
            event_type,
            created_at,
            out_trade_no: out_trade_no.to_string(),
        })
    }
}

/// `evt_<ledger id>_<seq>_<nonce>`: the ledger's random id keeps ids unique if a data directory
/// is started afresh, the nonce if a ledger is restored from a backup (a receiver that
/// de-duplicates by id then drops nothing new).
pub fn event_id(ledger_id: &str, seq: u64, nonce: &str) -> String {
    format!("evt_{ledger_id}_{seq:012}_{nonce}")
}

/// The feed position named by an event id of this ledger (the caller checks the whole id
/// against the stored event).
pub fn parse_event_id(ledger_id: &str, id: &str) -> Option<u64> {
    let rest = id
        .strip_prefix("evt_")?
        .strip_prefix(ledger_id)?
        .strip_prefix('_')?;
    let (seq, nonce) = rest.split_once('_')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    (seq.len() == 12
        && seq.bytes().all(|b| b.is_ascii_digit())
        && !nonce.is_empty()
        && digits(nonce))
    .then(|| seq.parse().ok())
    .flatten()
}

#[cfg(test)]
mod tests;
