//! The payment service: the unified operations on top of the ledger and the channels.
//! It is the only place that decides what to do with a channel's outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::channels::{
    ChannelPayState, ChannelRefundState, Op, Outcome, PaymentIntent, PaymentReport, Prepared,
    RefundIntent,
};
use crate::config::{ChannelEntry, Snapshot};
use crate::domain::{ErrorCode, PaymentStatus, RefundStatus, Scene};
use crate::ledger::{
    Attempt, AttemptOutcome, Failure, Inserted, LateKind, LatePayment, LateRefund, Ledger,
    LedgerError, Order, OrderRequest, Orphans, Refund, ABANDONED_SETTLED,
};
use crate::money::Fen;
use crate::order::{Anomaly, Closing, FailureCode};
use crate::routing::{route, RoutingInput};

/// Errors of the unified operations; `api::problem` maps each to a response.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{detail}")]
    Conflict { code: ErrorCode, detail: String },
    #[error("{detail}")]
    Unprocessable { code: ErrorCode, detail: String },
    #[error("{detail}")]
    OutcomeUnknown {
        detail: String,
        status: PaymentStatus,
    },
    /// Nothing was created; repeating later may succeed (after `retry_after`, when known).
    #[error("{detail}")]
    ChannelUnavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("{detail}")]
    RateLimited {
        retry_after: Duration,
        detail: String,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A refund request from the API.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub out_refund_no: String,
    pub amount: Fen,
    pub reason: Option<String>,
    /// For a split payment: the returns that fund this refund, or `Auto`.
    pub split_returns: Option<SplitReturns>,
}

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Interval between queries while a barcode payment's outcome is unknown.
    pub barcode_poll_interval: Duration,
    /// Number of such queries before the payment is cancelled (reversed).
    pub barcode_poll_attempts: u32,
    /// How long a prepay order stays payable when the request gives no `expires_at`.
    pub payment_ttl: Duration,
    /// No new candidate is tried once a create has run this long.
    pub create_deadline: Duration,
    /// First delay between attempts to close an abandoned attempt (doubling, 6 tries).
    pub abandon_retry: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            barcode_poll_interval: Duration::from_secs(3),
            barcode_poll_attempts: 10,
            payment_ttl: Duration::from_secs(7200),
            create_deadline: Duration::from_secs(30),
            abandon_retry: Duration::from_secs(2),
        }
    }
}

/// Serializes operations on the same order within this process (and, first, keeps this
/// process's tasks queued here rather than each waiting on the ledger's shared lock).
#[derive(Debug, Default)]
struct KeyedLocks {
    map: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, v| Arc::strong_count(v) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// An order's lock: this process's, and the ledger's shared one when other processes share the
/// ledger. Fields drop in order: the shared lock is given back first.
struct OrderGuard {
    _shared: Option<crate::ledger::SharedLock>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

pub use self::split::{ReceiverRequest, SplitRequest};
pub use self::split_return::{ReturnRequest, SplitReturns};
pub use crate::call::{Call, Traffic};

/// What a create leaves to do once the order's lock is released.
enum Next {
    Done(Order),
    /// A barcode payment whose outcome is not known yet: query, then reverse.
    SettleBarcode(Order),
    /// Another writer recorded the order first (another replica, sharing the ledger): the
    /// request is answered as a repeat of that one.
    Recorded(Order),
}

/// The unified payment operations.
#[derive(Debug)]
pub struct Payments {
    ledger: Arc<dyn Ledger>,
    config: Arc<ArcSwap<Snapshot>>,
    locks: KeyedLocks,
    settings: ServiceSettings,
    metrics: Arc<crate::metrics::Metrics>,
    /// Every channel call goes down this stack (limits, breaker, metrics, transport).
    caller: crate::call::Caller,
    /// This service, for background work (closing abandoned attempts).
    me: std::sync::Weak<Payments>,
    /// Late payments (order, channel) whose refund this process is working on.
    late_refunds: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

/// The fingerprint of a create request: equal content ⇔ equal fingerprint.
pub fn fingerprint<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("request types serialize");
    crate::crypto::sha256_hex(&bytes)
}

mod abandoned;
mod barcode;
mod bills;
mod call;
mod close;
mod create;
mod late;
mod notify;
mod query;
mod recover;
mod refund;
mod repeat;
mod split;
mod split_return;
#[cfg(test)]
mod tests;
mod unavailable;

pub(super) fn intent(order: &Order) -> PaymentIntent {
    let req = &order.request;
    PaymentIntent {
        out_trade_no: req.out_trade_no.clone(),
        amount: req.amount,
        method: req.method,
        scene: req.scene,
        subject: req.subject.clone(),
        description: req.description.clone(),
        auth_code: req.auth_code.clone(),
        payer_id: req.payer_id.clone(),
        client_ip: req.client_ip.clone(),
        expires_at: order.expires_at.or(req.expires_at),
        split: req.split,
    }
}

pub(super) fn refund_intent(order: &Order, refund: &Refund) -> RefundIntent {
    RefundIntent {
        out_trade_no: refund.out_trade_no.clone(),
        channel_trade_no: order.channel_trade_no.clone(),
        channel_refund_no: refund.channel_refund_no.clone(),
        out_refund_no: refund.out_refund_no.clone(),
        amount: refund.amount,
        total: order.request.amount,
        reason: refund.reason.clone(),
        returns: vec![],
    }
}

impl Payments {
    /// Creates the service.
    pub fn new(
        ledger: Arc<dyn Ledger>,
        config: Arc<ArcSwap<Snapshot>>,
        settings: ServiceSettings,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        let caller =
            crate::call::Caller::new(Arc::new(crate::health::Health::default()), metrics.clone());
        Self::with_caller(ledger, config, settings, metrics, caller)
    }

    /// The service with its own call stack (tests: one that sends through fake transports).
    pub fn with_caller(
        ledger: Arc<dyn Ledger>,
        config: Arc<ArcSwap<Snapshot>>,
        settings: ServiceSettings,
        metrics: Arc<crate::metrics::Metrics>,
        caller: crate::call::Caller,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Payments {
            ledger,
            config,
            locks: KeyedLocks::default(),
            settings,
            metrics,
            caller,
            me: me.clone(),
            late_refunds: std::sync::Mutex::default(),
        })
    }

    /// Locks order `out_trade_no` against every other task acting on it, in this process and
    /// in every other sharing the ledger.
    async fn lock(&self, out_trade_no: &str) -> Result<OrderGuard, LedgerError> {
        let local = self.locks.lock(out_trade_no).await;
        let shared = self.ledger.lock_order(out_trade_no).await?;
        Ok(OrderGuard {
            _shared: shared,
            _local: local,
        })
    }

    /// Channel health (circuit breakers).
    pub fn health(&self) -> &crate::health::Health {
        self.caller.health()
    }

    /// The active configuration snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load_full()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Applies a channel's report to the order (see [`apply_report`]) and counts a payment that
    /// has just succeeded in the amount and fee metrics.
    pub(super) fn apply_report(
        &self,
        order: &mut Order,
        report: &PaymentReport,
    ) -> Result<(), String> {
        let before = order.status;
        order.apply_report(report, Utc::now())?;
        if !before.is_paid() && order.status.is_paid() {
            if let Some(channel) = order.channel.as_deref() {
                let fee = self
                    .snapshot()
                    .channel(channel)
                    .map_or(0, |c| c.fee.estimate(order.request.amount.get()));
                self.metrics
                    .record_paid(channel, order.request.amount.get(), fee);
            }
        }
        Ok(())
    }

    /// The stored order (its channel named on the request's span, when there is one).
    pub(super) async fn load(&self, out_trade_no: &str) -> Result<Order, ServiceError> {
        let order = self
            .ledger
            .get_order(out_trade_no)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("payment {out_trade_no}")))?;
        if let Some(channel) = order.channel.as_deref() {
            crate::logging::record_channel(channel);
        }
        Ok(order)
    }
}

pub(super) fn paid_conflict(out_trade_no: &str) -> ServiceError {
    ServiceError::Conflict {
        code: ErrorCode::OrderPaid,
        detail: format!("payment {out_trade_no} is already paid and cannot be closed"),
    }
}

pub(super) fn not_refundable(order: &Order) -> ServiceError {
    ServiceError::Conflict {
        code: ErrorCode::NotRefundable,
        detail: format!(
            "payment {} is {:?}; only paid payments can be refunded",
            order.request.out_trade_no, order.status
        ),
    }
}
