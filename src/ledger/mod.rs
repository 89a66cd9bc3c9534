//! The ledger: every order, attempt and refund, written durably before a channel is called
//! and updated after. `Ledger` is the storage trait; `redb_store` is the embedded default and
//! `postgres` the shared one (`--ledger-url`). Both call the same pure rules (`rules`).

#[cfg(test)]
mod conformance;
pub mod events;
pub mod open;
#[cfg(test)]
mod outbox_tests;
pub mod postgres;
mod redb_events;
mod redb_splits;
mod redb_store;
pub(crate) mod rules;
#[cfg(test)]
mod split_tests;

pub use self::events::EventStore;
pub use self::postgres::PgLedger;
pub use self::redb_store::RedbLedger;
use crate::domain::PaymentStatus;
pub use crate::order::splits::{Share, Split, SplitRefusal, SplitReturn, SplitStatus};
pub use crate::order::{
    apply_refund_transition, Attempt, AttemptOutcome, Failure, LateKind, LatePayment, LateRefund,
    Order, OrderRequest, Refund, ABANDONED_SETTLED,
};

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
    ExceedsRefundable { available: crate::money::Fen },
    #[error("no split {0}")]
    SplitNotFound(String),
    #[error("no split return {0}")]
    ReturnNotFound(String),
    #[error("{0}")]
    SplitRefused(#[from] SplitRefusal),
    /// A write that contradicts what it refers to (a caller's mistake; nothing was written).
    #[error("inconsistent ledger write: {0}")]
    Inconsistent(String),
    /// A write of an order read at a version that is no longer the stored one: another writer
    /// (another replica) changed it meanwhile. Nothing was written; read it again.
    #[error("order {no} changed since it was read (version {read}, now {stored})")]
    Stale { no: String, read: u64, stored: u64 },
}

/// A receiver registered with a channel for splits (kept so that it is registered once).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReceiverKey {
    pub channel: String,
    pub receiver_type: crate::domain::ReceiverType,
    pub account: String,
}

impl ReceiverKey {
    /// The stored key.
    pub fn text(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.channel,
            self.receiver_type.as_str(),
            self.account
        )
    }
}

/// Result of inserting something that may already exist.
#[derive(Debug)]
pub enum Inserted<T> {
    Created(T),
    Existing(T),
}

impl<T> Inserted<T> {
    /// The stored record, whether this insert wrote it or found it.
    pub fn stored(self) -> T {
        match self {
            Inserted::Created(t) | Inserted::Existing(t) => t,
        }
    }
}

/// Durable storage for orders and refunds. Every write is durable when the call returns.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Inserts `order` unless an order with its `out_trade_no` exists (then returns that one).
    async fn insert_order(&self, order: Order) -> Result<Inserted<Order>, LedgerError>;
    /// The order, if any.
    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, LedgerError>;
    /// Replaces a stored order: a compare-and-set on its version, which must be the stored
    /// one (else `Stale`, nothing written); on success `order` carries its new version.
    async fn put_order(&self, order: &mut Order) -> Result<(), LedgerError>;
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
    /// Refunds requested in [from, to) (for reconciliation; reads every refund).
    async fn refunds_between(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Refund>, LedgerError>;
    /// Orders with an attempt still in flight or unknown (for recovery after a crash).
    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError>;

    /// Inserts a refund funded by new split returns, atomically: the returns reserve their
    /// amounts on their splits, and the refund may take what the order holds plus them. An
    /// existing `out_refund_no` is returned unchanged (and no return is written).
    async fn insert_funded_refund(
        &self,
        refund: Refund,
        returns: Vec<SplitReturn>,
    ) -> Result<Inserted<Refund>, LedgerError>;
    /// Inserts a split and reserves its shares on the order, atomically, unless the order may
    /// not be split (see [`SplitRefusal`]); an existing `out_split_no` is returned unchanged.
    async fn insert_split(&self, split: Split) -> Result<Inserted<Split>, LedgerError>;
    async fn get_split(&self, out_split_no: &str) -> Result<Option<Split>, LedgerError>;
    /// Applies a split's new state (only pending things move) with the order's totals,
    /// atomically; returns the split as stored.
    async fn update_split(&self, split: &Split) -> Result<Split, LedgerError>;
    /// The splits of a payment, oldest first.
    async fn splits_of(&self, out_trade_no: &str) -> Result<Vec<Split>, LedgerError>;
    /// Inserts a return and reserves its amount on the receiver's share, atomically; an
    /// existing `out_return_no` is returned unchanged.
    async fn insert_split_return(
        &self,
        ret: SplitReturn,
    ) -> Result<Inserted<SplitReturn>, LedgerError>;
    async fn get_split_return(
        &self,
        out_return_no: &str,
    ) -> Result<Option<SplitReturn>, LedgerError>;
    /// Applies a return's new state with its split's and order's totals, atomically; returns
    /// the return as stored.
    async fn update_split_return(&self, ret: &SplitReturn) -> Result<SplitReturn, LedgerError>;
    /// Splits and returns whose outcome is not known yet (for recovery after a crash).
    async fn pending_splits(&self) -> Result<(Vec<Split>, Vec<SplitReturn>), LedgerError>;
    /// Whether the receiver is registered with its channel.
    async fn receiver_bound(&self, key: &ReceiverKey) -> Result<bool, LedgerError>;
    /// Records that the receiver is registered with its channel.
    async fn record_receiver(&self, key: &ReceiverKey) -> Result<(), LedgerError>;

    /// Keeps every other process sharing this ledger off order `out_trade_no` until the
    /// answer is dropped. `None`: no other process can write this ledger (the embedded one
    /// locks its file), and the service's own lock suffices.
    async fn lock_order(&self, _out_trade_no: &str) -> Result<Option<SharedLock>, LedgerError> {
        Ok(None)
    }

    /// Takes over the work in flight of the processes sharing this ledger that are no longer
    /// alive: their orders with something left to do, and those orders' pending refunds,
    /// splits and returns. Each is taken over by exactly one live process. `None`: the ledger
    /// is not shared, and recovery at start finds everything left in flight.
    async fn adopt_orphans(&self) -> Result<Option<Orphans>, LedgerError> {
        Ok(None)
    }
}

/// A lock held on an order across processes (see [`Ledger::lock_order`]), released on drop.
pub type SharedLock = Box<dyn std::any::Any + Send + Sync>;

/// Work in flight taken over from processes no longer alive (see [`Ledger::adopt_orphans`]).
#[derive(Debug, Default)]
pub struct Orphans {
    pub orders: Vec<Order>,
    pub refunds: Vec<Refund>,
    pub splits: Vec<Split>,
    pub returns: Vec<SplitReturn>,
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
    async fn put_order(&self, order: &mut Order) -> Result<(), LedgerError> {
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
    async fn refunds_between(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Refund>, LedgerError> {
        self.inner.refunds_between(from, to).await
    }
    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError> {
        self.inner.unresolved_orders().await
    }
    async fn insert_funded_refund(
        &self,
        refund: Refund,
        returns: Vec<SplitReturn>,
    ) -> Result<Inserted<Refund>, LedgerError> {
        self.timed(
            "insert_refund",
            self.inner.insert_funded_refund(refund, returns),
        )
        .await
    }
    async fn insert_split(&self, split: Split) -> Result<Inserted<Split>, LedgerError> {
        self.timed("insert_split", self.inner.insert_split(split))
            .await
    }
    async fn get_split(&self, out_split_no: &str) -> Result<Option<Split>, LedgerError> {
        self.inner.get_split(out_split_no).await
    }
    async fn update_split(&self, split: &Split) -> Result<Split, LedgerError> {
        self.timed("update_split", self.inner.update_split(split))
            .await
    }
    async fn splits_of(&self, out_trade_no: &str) -> Result<Vec<Split>, LedgerError> {
        self.inner.splits_of(out_trade_no).await
    }
    async fn insert_split_return(
        &self,
        ret: SplitReturn,
    ) -> Result<Inserted<SplitReturn>, LedgerError> {
        self.timed("insert_split_return", self.inner.insert_split_return(ret))
            .await
    }
    async fn get_split_return(
        &self,
        out_return_no: &str,
    ) -> Result<Option<SplitReturn>, LedgerError> {
        self.inner.get_split_return(out_return_no).await
    }
    async fn update_split_return(&self, ret: &SplitReturn) -> Result<SplitReturn, LedgerError> {
        self.timed("update_split_return", self.inner.update_split_return(ret))
            .await
    }
    async fn pending_splits(&self) -> Result<(Vec<Split>, Vec<SplitReturn>), LedgerError> {
        self.inner.pending_splits().await
    }
    async fn receiver_bound(&self, key: &ReceiverKey) -> Result<bool, LedgerError> {
        self.inner.receiver_bound(key).await
    }
    async fn record_receiver(&self, key: &ReceiverKey) -> Result<(), LedgerError> {
        self.timed("record_receiver", self.inner.record_receiver(key))
            .await
    }
    async fn lock_order(&self, out_trade_no: &str) -> Result<Option<SharedLock>, LedgerError> {
        self.inner.lock_order(out_trade_no).await
    }
    async fn adopt_orphans(&self) -> Result<Option<Orphans>, LedgerError> {
        self.inner.adopt_orphans().await
    }
}

#[cfg(test)]
pub(crate) mod tests;
