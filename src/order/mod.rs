//! The domain entities — orders, attempts, refunds, late payments — and their pure state
//! transitions. No I/O: the ledger stores them, the payment flows drive them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channels::{ChannelPayState, PaymentReport};
use crate::domain::{ClientAction, Currency, PayMethod, PaymentStatus, RefundStatus, Scene};
use crate::money::Fen;

pub mod events;
mod late;
mod records;
pub mod splits;
pub mod views;
use records::AttemptRecord;

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
#[serde(from = "AttemptRecord")]
pub struct Attempt {
    pub channel: String,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: AttemptOutcome,
    /// For people: why the attempt ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an abandoned attempt: what became of it at its channel, once settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<Closing>,
}

impl Attempt {
    /// A new attempt at `channel`, recorded before anything is sent there.
    pub fn in_flight(channel: &str, started_at: DateTime<Utc>) -> Attempt {
        Attempt {
            channel: channel.to_string(),
            started_at,
            finished_at: None,
            outcome: AttemptOutcome::InFlight,
            reason: None,
            closing: None,
        }
    }
}

/// What became of an abandoned attempt at its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closing {
    /// `close` (or a query) found it closed at the channel.
    Closed,
    /// No trade existed at the channel; `cancel` closed what could still become one.
    Cancelled,
    /// No trade at the channel, and nothing confirmed it cannot become one: the late-payment
    /// guard refunds a payment that still arrives.
    NoTrade,
    /// The channel cannot close it (it expires there); guarded the same way.
    CannotClose,
    /// The channel reported it paid: a duplicate payment, refunded by the guard.
    PaidThere,
}

impl Closing {
    /// The note recorded in the attempt's `reason`.
    pub fn note(self) -> &'static str {
        match self {
            Closing::Closed => "closed at the channel",
            Closing::Cancelled => "cancelled at the channel",
            Closing::NoTrade => {
                "no trade at the channel; a payment that still arrives is refunded automatically"
            }
            Closing::CannotClose => {
                "the channel cannot close it: it expires at the channel, and a payment that still arrives is refunded automatically"
            }
            Closing::PaidThere => "paid at the channel: a duplicate payment",
        }
    }
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
    pub amount: Fen,
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

/// A definite failure: the channel's own code, or one of payroute's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
}

/// A failure's code. payroute's own codes drive decisions; a channel's code is kept verbatim.
/// Stored and served as the plain string, so every record ever written still loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FailureCode {
    /// `channel_unavailable`: no candidate accepted the payment; nothing was created anywhere,
    /// and a repeat of the same request routes it again.
    NothingCreated,
    /// `payment_reversed`: a barcode payment not confirmed in time was reversed.
    PaymentReversed,
    /// The channel's code (e.g. `ACQ.TRADE_HAS_CLOSE`).
    Channel(String),
}

impl FailureCode {
    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            FailureCode::NothingCreated => "channel_unavailable",
            FailureCode::PaymentReversed => "payment_reversed",
            FailureCode::Channel(code) => code,
        }
    }
}

/// Something about an order that needs reconciliation. Served as a string
/// (`paid_after_close`, `duplicate_payment:<channel>`); records of older versions load too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Anomaly {
    /// The order's channel reported payment after payroute closed or failed the order.
    PaidAfterClose,
    /// The channel of an abandoned attempt reported the order paid.
    DuplicatePayment { channel: String },
    /// A note this version does not know (kept as written).
    Other(String),
}

/// The request as the app sent it (kept to answer repeats and detect conflicts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub out_trade_no: String,
    pub amount: Fen,
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
    /// Created for profit sharing (the channel freezes the money for later splits). Left out
    /// when false, so that records and fingerprints of earlier versions stay as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
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
    pub fee: Option<Fen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub attempts: Vec<Attempt>,
    /// Refunds counted against the order: pending + succeeded (fen).
    pub refund_reserved: Fen,
    /// Refunds that succeeded (fen).
    pub refunded: Fen,
    /// Split shares counted against the order: pending + succeeded (fen).
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub split_reserved: Fen,
    /// Split money returned by receivers: succeeded returns (fen).
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub split_returned: Fen,
    /// A split with `finish` settled the rest to the merchant: no further split.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_finished: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// When the order stops being payable (sent to the channel as its expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Things that need reconciliation, e.g. `paid_after_close`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Anomaly>,
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
    /// The ledger's version of this order: 1 once inserted, one more with every write. A
    /// write of a copy read at another version is refused (`LedgerError::Stale`), so no writer
    /// overwrites a newer state it has not seen. 0: not stored yet (or stored before versions).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
            refund_reserved: Fen::ZERO,
            refunded: Fen::ZERO,
            split_reserved: Fen::ZERO,
            split_returned: Fen::ZERO,
            split_finished: false,
            failure: None,
            anomalies: vec![],
            close_confirmed: None,
            late_payments: vec![],
            expires_at,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// The most recent attempt.
    pub fn last_attempt_mut(&mut self) -> Option<&mut Attempt> {
        self.attempts.last_mut()
    }

    /// Ends the most recent attempt with `outcome`.
    pub fn finish_attempt(
        &mut self,
        outcome: AttemptOutcome,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) {
        if let Some(a) = self.last_attempt_mut() {
            a.outcome = outcome;
            a.finished_at = Some(now);
            a.reason = reason;
        }
        self.updated_at = now;
    }

    /// Applies a channel's report. A paid report whose amount differs from the order's is
    /// refused (it would mean someone paid something else). A closed or failed order reported
    /// paid is left as it is: that is the late-payment guard's business.
    pub fn apply_report(
        &mut self,
        report: &PaymentReport,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        if let (ChannelPayState::Paid, Some(amount)) = (report.state, report.amount) {
            if amount != self.request.amount {
                return Err(format!(
                    "channel reports {amount} fen paid, the order is for {} fen",
                    self.request.amount
                ));
            }
        }
        let (status, trade_no) = (self.status, self.channel_trade_no.clone());
        if report.channel_trade_no.is_some() {
            self.channel_trade_no.clone_from(&report.channel_trade_no);
        }
        match (self.status, report.state) {
            (PaymentStatus::Pending, ChannelPayState::Paid) => {
                self.status = PaymentStatus::Succeeded;
                self.failure = None;
            }
            (PaymentStatus::Pending, ChannelPayState::Closed) => {
                self.status = PaymentStatus::Closed
            }
            _ => {}
        }
        if self.status != status || self.channel_trade_no != trade_no {
            self.updated_at = now;
        }
        Ok(())
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
        self.attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Abandoned && a.closing.is_none())
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

/// The start of an abandoned attempt's `reason` once its closing is settled (for people; the
/// state is `Attempt::closing`).
pub const ABANDONED_SETTLED: &str = "abandoned;";

/// A refund and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub amount: Fen,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub fingerprint: String,
    pub status: RefundStatus,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_refund_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Split returns that fund this refund (`split_returns`): the refund is sent only once
    /// those that are not sent with it have succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub funded_by: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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
        order.status = if order.refunded == Fen::ZERO {
            PaymentStatus::Succeeded
        } else if order.refunded >= order.request.amount {
            PaymentStatus::Refunded
        } else {
            PaymentStatus::PartiallyRefunded
        };
    }
    order.updated_at = after.updated_at;
}

#[cfg(test)]
pub(crate) mod tests;
