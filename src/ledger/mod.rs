//! The ledger: every order, attempt and refund, written durably before a channel is called
//! and updated after. `Ledger` is the storage trait; `redb_store` is the embedded default.

mod redb_store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use self::redb_store::RedbLedger;
use crate::domain::{ClientAction, Currency, PayMethod, PaymentStatus, RefundStatus, Scene};

/// How one attempt at one channel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Recorded, then sent (or about to be): the outcome is not known yet.
    InFlight,
    /// The channel accepted the order.
    Accepted,
    /// The channel definitely rejected it: nothing exists there.
    Declined,
    /// The answer could not be trusted or did not arrive.
    Unknown,
    /// Given up in favour of another channel; closed there in the background.
    Abandoned,
}

/// One attempt to create the order at one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub channel: String,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a payment that arrived is not the order's money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateKind {
    /// The order's own channel reported it paid after payroute closed or failed the order.
    AfterClose,
    /// A channel whose attempt was abandoned reported it paid (the order went elsewhere).
    Duplicate,
}

/// Where the automatic refund of a late payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateRefund {
    /// Recorded; sent or about to be sent, not confirmed yet (recovery resumes it).
    Pending,
    /// The channel confirmed the refund.
    Succeeded,
    /// The channel refused the refund: the money needs a person.
    Failed,
    /// Automatic refunds are switched off (`refund_duplicates: false`).
    Off,
}

/// A payment the channel took for an order that payroute had closed, failed or abandoned
/// there; refunded in full automatically (recorded before the refund is sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatePayment {
    pub channel: String,
    pub kind: LateKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_trade_no: Option<String>,
    /// Fen the channel took.
    pub amount: u64,
    /// The refund number sent to the channel (deterministic: a repeat never refunds twice).
    pub out_refund_no: String,
    pub refund_status: LateRefund,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_refund_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_failure: Option<Failure>,
    pub detected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl LatePayment {
    /// The refund number for a late payment of `out_trade_no` at `channel`: at most 43
    /// characters of `[A-Za-z0-9_]`, which every channel accepts as a refund number.
    pub fn refund_no(out_trade_no: &str, channel: &str) -> String {
        let tag = &crate::crypto::sha256_hex(channel.as_bytes())[..6];
        format!("LP_{out_trade_no}_{tag}")
    }
}

/// A definite failure reported by a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// The request as the app sent it (kept to answer repeats and detect conflicts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub out_trade_no: String,
    pub amount: u64,
    pub currency: Currency,
    pub method: PayMethod,
    pub scene: Scene,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// A payment order and everything payroute knows about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub request: OrderRequest,
    /// SHA-256 of the canonical request: equal content ⇔ equal fingerprint.
    pub fingerprint: String,
    pub status: PaymentStatus,
    /// The channel that owns the order (the last attempt's channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ClientAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub attempts: Vec<Attempt>,
    /// Refunds counted against the order: pending + succeeded (fen).
    pub refund_reserved: u64,
    /// Refunds that succeeded (fen).
    pub refunded: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// When the order stops being payable (sent to the channel as its expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Things that need reconciliation, e.g. `paid_after_close`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
    /// Set when payroute closed the order: whether the channel confirmed that nothing can be
    /// paid any more (`false`: a QR code or link may stay payable until it expires, and a
    /// payment that still arrives is refunded automatically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_confirmed: Option<bool>,
    /// Payments that arrived after the order was closed, failed or abandoned at a channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_payments: Vec<LatePayment>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// A new order as the app asked for it: pending, not routed, no attempt yet.
    pub fn pending(
        request: OrderRequest,
        fingerprint: String,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Order {
        Order {
            request,
            fingerprint,
            status: PaymentStatus::Pending,
            channel: None,
            channel_trade_no: None,
            action: None,
            fee: None,
            rule: None,
            attempts: vec![],
            refund_reserved: 0,
            refunded: 0,
            failure: None,
            anomalies: vec![],
            close_confirmed: None,
            late_payments: vec![],
            expires_at,
            created_at: now,
            updated_at: now,
        }
    }

    /// The most recent attempt.
    pub fn last_attempt_mut(&mut self) -> Option<&mut Attempt> {
        self.attempts.last_mut()
    }

    /// The channel has the order after all: an attempt still in doubt is adopted as accepted.
    pub fn adopt_last_attempt(&mut self, now: DateTime<Utc>) {
        if let Some(a) = self.attempts.last_mut().filter(|a| {
            matches!(
                a.outcome,
                AttemptOutcome::InFlight | AttemptOutcome::Unknown
            )
        }) {
            a.outcome = AttemptOutcome::Accepted;
            a.finished_at = Some(now);
        }
    }

    /// Whether the last attempt's outcome is still open (in flight or unknown).
    pub fn in_doubt(&self) -> bool {
        self.attempts.last().is_some_and(|a| {
            matches!(
                a.outcome,
                AttemptOutcome::InFlight | AttemptOutcome::Unknown
            )
        })
    }

    /// Abandoned attempts whose closing at their channel is not settled yet.
    pub fn unclosed_abandoned(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter().filter(|a| {
            a.outcome == AttemptOutcome::Abandoned
                && !a
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(ABANDONED_SETTLED))
        })
    }

    /// Whether something about the order is left for recovery after a crash: an attempt in
    /// doubt, an abandoned attempt not closed yet, or a late payment's refund not confirmed.
    pub fn needs_recovery(&self) -> bool {
        let open_attempt = self.status == PaymentStatus::Pending
            && self.attempts.iter().any(|a| {
                matches!(
                    a.outcome,
                    AttemptOutcome::InFlight | AttemptOutcome::Unknown
                )
            });
        open_attempt
            || self.unclosed_abandoned().next().is_some()
            || self
                .late_payments
                .iter()
                .any(|l| l.refund_status == LateRefund::Pending)
    }
}

/// The start of an abandoned attempt's `reason` once its closing is settled.
pub const ABANDONED_SETTLED: &str = "abandoned;";

/// A refund and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub fingerprint: String,
    pub status: RefundStatus,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_refund_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Storage failures (the disk, not the caller).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger storage: {0}")]
    Storage(String),
    #[error("no order {0}")]
    OrderNotFound(String),
    #[error("no refund {0}")]
    RefundNotFound(String),
    #[error("order is {0:?}, not refundable")]
    NotRefundable(PaymentStatus),
    #[error("refund exceeds the refundable amount ({available} fen left)")]
    ExceedsRefundable { available: u64 },
}

/// Result of inserting something that may already exist.
#[derive(Debug)]
pub enum Inserted<T> {
    Created(T),
    Existing(T),
}

/// Durable storage for orders and refunds. Every write is durable when the call returns.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Inserts `order` unless an order with its `out_trade_no` exists (then returns that one).
    async fn insert_order(&self, order: Order) -> Result<Inserted<Order>, LedgerError>;
    /// The order, if any.
    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, LedgerError>;
    /// Replaces a stored order.
    async fn put_order(&self, order: &Order) -> Result<(), LedgerError>;
    /// Inserts a refund and reserves its amount on the order, atomically, unless it would
    /// exceed what was paid; an existing `out_refund_no` is returned unchanged.
    async fn insert_refund(&self, refund: Refund) -> Result<Inserted<Refund>, LedgerError>;
    /// The refund, if any.
    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, LedgerError>;
    /// Replaces a pending refund's details (e.g. the channel's refund id); never its state.
    async fn update_refund(&self, refund: &Refund) -> Result<(), LedgerError>;
    /// Records a refund's new state and the order's totals, atomically.
    async fn settle_refund(&self, refund: &Refund) -> Result<Order, LedgerError>;
    /// Refunds whose outcome is not known yet (for recovery after a crash).
    async fn pending_refunds(&self) -> Result<Vec<Refund>, LedgerError>;
    /// Orders with an attempt still in flight or unknown (for recovery after a crash).
    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError>;
}

/// Applies a refund's new state to its order's totals (shared by every backend).
pub fn apply_refund_transition(order: &mut Order, before: RefundStatus, after: &Refund) {
    use RefundStatus::*;
    match (before, after.status) {
        (Pending, Succeeded) => order.refunded += after.amount,
        (Pending, Failed) => {
            order.refund_reserved = order.refund_reserved.saturating_sub(after.amount)
        }
        _ => {}
    }
    if order.status.is_paid() {
        order.status = if order.refunded == 0 {
            PaymentStatus::Succeeded
        } else if order.refunded >= order.request.amount {
            PaymentStatus::Refunded
        } else {
            PaymentStatus::PartiallyRefunded
        };
    }
    order.updated_at = after.updated_at;
}

/// A ledger whose writes are timed in `payroute_ledger_write_duration_seconds{operation}`.
#[derive(Debug)]
pub struct Instrumented {
    inner: std::sync::Arc<dyn Ledger>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(
        inner: std::sync::Arc<dyn Ledger>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        Instrumented { inner, metrics }
    }

    async fn timed<T>(&self, operation: &str, write: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = write.await;
        self.metrics
            .ledger_write
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait::async_trait]
impl Ledger for Instrumented {
    async fn insert_order(&self, order: Order) -> Result<Inserted<Order>, LedgerError> {
        self.timed("insert_order", self.inner.insert_order(order))
            .await
    }
    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, LedgerError> {
        self.inner.get_order(out_trade_no).await
    }
    async fn put_order(&self, order: &Order) -> Result<(), LedgerError> {
        self.timed("put_order", self.inner.put_order(order)).await
    }
    async fn insert_refund(&self, refund: Refund) -> Result<Inserted<Refund>, LedgerError> {
        self.timed("insert_refund", self.inner.insert_refund(refund))
            .await
    }
    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, LedgerError> {
        self.inner.get_refund(out_refund_no).await
    }
    async fn update_refund(&self, refund: &Refund) -> Result<(), LedgerError> {
        self.timed("update_refund", self.inner.update_refund(refund))
            .await
    }
    async fn settle_refund(&self, refund: &Refund) -> Result<Order, LedgerError> {
        self.timed("settle_refund", self.inner.settle_refund(refund))
            .await
    }
    async fn pending_refunds(&self) -> Result<Vec<Refund>, LedgerError> {
        self.inner.pending_refunds().await
    }
    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError> {
        self.inner.unresolved_orders().await
    }
}
