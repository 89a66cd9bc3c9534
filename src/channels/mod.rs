//! Channels: the adapters that speak each payment provider's protocol.
//!
//! An adapter builds a signed `http::Request` and parses the response; it never does I/O.
//! `client.rs` is the only code that sends anything to a channel.

pub mod alipay;
pub mod client;
pub mod pingpp;
pub mod registry;
pub mod settings;
pub mod split;
pub mod wechatpay;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::{ClientAction, PayMethod, ReceiverType, Scene};
use crate::money::Fen;

pub use self::split::{
    ChannelReturnState, ChannelSplitState, ReceiverIntent, RefundReturn, ReturnReport, ShareIntent,
    ShareReport, ShareState, SplitIntent, SplitReport, SplitReturnIntent,
};

/// A payment as the channel adapters see it.
#[derive(Clone, Debug)]
pub struct PaymentIntent {
    pub out_trade_no: String,
    pub amount: Fen,
    pub method: PayMethod,
    pub scene: Scene,
    pub subject: String,
    pub description: Option<String>,
    pub auth_code: Option<String>,
    pub payer_id: Option<String>,
    pub client_ip: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Created for profit sharing: the channel holds the money for later splits.
    pub split: bool,
}

/// One refund as the channel adapters see it.
#[derive(Clone, Debug)]
pub struct RefundIntent {
    pub out_trade_no: String,
    /// The channel's id of the paid order, when known.
    pub channel_trade_no: Option<String>,
    /// The channel's id of this refund, once it has one.
    pub channel_refund_no: Option<String>,
    pub out_refund_no: String,
    pub amount: Fen,
    pub total: Fen,
    pub reason: Option<String>,
    /// Split money this refund takes back from receivers, for channels whose refund carries
    /// the returns (`Channel::returns_with_refund`); empty otherwise.
    pub returns: Vec<RefundReturn>,
}

/// The operations a channel performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Create,
    Query,
    Close,
    Cancel,
    Refund,
    RefundQuery,
    BindReceiver,
    Split,
    SplitQuery,
    SplitFinish,
    SplitReturn,
    SplitReturnQuery,
    BillQuery,
}

impl OpKind {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Query => "query",
            OpKind::Close => "close",
            OpKind::Cancel => "cancel",
            OpKind::Refund => "refund",
            OpKind::RefundQuery => "refund_query",
            OpKind::BindReceiver => "bind_receiver",
            OpKind::Split => "split",
            OpKind::SplitQuery => "split_query",
            OpKind::SplitFinish => "split_finish",
            OpKind::SplitReturn => "split_return",
            OpKind::SplitReturnQuery => "split_return_query",
            OpKind::BillQuery => "bill_query",
        }
    }
}

/// One operation with its inputs.
#[derive(Clone, Copy, Debug)]
pub enum Op<'a> {
    Create(&'a PaymentIntent),
    Query {
        out_trade_no: &'a str,
        /// The channel's id for the order, when known (some channels look orders up by it).
        channel_trade_no: Option<&'a str>,
    },
    Close {
        out_trade_no: &'a str,
        channel_trade_no: Option<&'a str>,
    },
    /// Reverse a barcode payment whose outcome could not be confirmed.
    Cancel {
        out_trade_no: &'a str,
        channel_trade_no: Option<&'a str>,
    },
    Refund(&'a RefundIntent),
    RefundQuery(&'a RefundIntent),
    /// Register a receiver for splits (idempotent at the channel).
    BindReceiver {
        out_trade_no: &'a str,
        receiver: &'a ReceiverIntent,
    },
    /// Share part of a paid payment with receivers.
    Split(&'a SplitIntent),
    /// Look a split up by its number (before repeating it, or while it is processing).
    SplitQuery(&'a SplitIntent),
    /// Unfreeze what is not shared, without sharing anything (`shares` is empty).
    SplitFinish(&'a SplitIntent),
    /// Take shared money back from one receiver.
    SplitReturn(&'a SplitReturnIntent),
    SplitReturnQuery(&'a SplitReturnIntent),
    /// Where the trade statement of `date` (China time) is.
    BillQuery {
        date: chrono::NaiveDate,
    },
}

impl Op<'_> {
    /// The merchant order number the operation is about (for logs).
    pub fn out_trade_no(&self) -> &str {
        match self {
            Op::Create(p) => &p.out_trade_no,
            Op::Query { out_trade_no, .. }
            | Op::Close { out_trade_no, .. }
            | Op::Cancel { out_trade_no, .. } => out_trade_no,
            Op::Refund(r) | Op::RefundQuery(r) => &r.out_trade_no,
            Op::BindReceiver { out_trade_no, .. } => out_trade_no,
            Op::Split(s) | Op::SplitQuery(s) | Op::SplitFinish(s) => &s.out_trade_no,
            Op::SplitReturn(r) | Op::SplitReturnQuery(r) => &r.out_trade_no,
            Op::BillQuery { .. } => "",
        }
    }

    /// The default answer of an adapter that does not perform this operation: adapters end
    /// their matches with `_ => Err(op.unsupported("<Channel>"))`, so that an operation added
    /// later touches only the adapters that perform it.
    pub fn unsupported(&self, channel: &str) -> BuildError {
        BuildError::Unsupported(format!(
            "{channel} does not perform `{}`",
            self.kind().as_str()
        ))
    }

    /// The kind of this operation.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Create(_) => OpKind::Create,
            Op::Query { .. } => OpKind::Query,
            Op::Close { .. } => OpKind::Close,
            Op::Cancel { .. } => OpKind::Cancel,
            Op::Refund(_) => OpKind::Refund,
            Op::RefundQuery(_) => OpKind::RefundQuery,
            Op::BindReceiver { .. } => OpKind::BindReceiver,
            Op::Split(_) => OpKind::Split,
            Op::SplitQuery(_) => OpKind::SplitQuery,
            Op::SplitFinish(_) => OpKind::SplitFinish,
            Op::SplitReturn(_) => OpKind::SplitReturn,
            Op::SplitReturnQuery(_) => OpKind::SplitReturnQuery,
            Op::BillQuery { .. } => OpKind::BillQuery,
        }
    }
}

/// What an adapter prepared for an operation.
#[derive(Debug)]
pub enum Prepared {
    /// Send this request and give the response to `Channel::parse`.
    Send(http::Request<Bytes>),
    /// No server call is needed (the client talks to the wallet itself, e.g. app pay).
    Local(Outcome),
}

/// A channel's raw HTTP answer.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A payment's state at the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelPayState {
    /// Created and waiting for the customer.
    Waiting,
    /// Paid.
    Paid,
    /// Closed or reversed without (remaining) payment.
    Closed,
    /// The channel has no such payment (for prepay scenes: not opened yet).
    NotFound,
}

/// What the channel said about a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentReport {
    pub state: ChannelPayState,
    pub channel_trade_no: Option<String>,
    /// Amount the channel says the order is for, when it says (checked against the ledger).
    pub amount: Option<Fen>,
    pub action: Option<ClientAction>,
}

/// A refund's state at the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRefundState {
    Succeeded,
    /// Accepted, not (yet) confirmed: ask again with the same refund number.
    Processing,
    NotFound,
}

/// What the channel said about a refund.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundReport {
    pub state: ChannelRefundState,
    pub channel_refund_no: Option<String>,
}

/// The outcome of one channel call, as understood by the adapter.
///
/// `Declined` means provably nothing happened at the channel; `Unknown` means it may have.
/// Whether to retry or move on is decided by the caller from this distinction alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Payment(PaymentReport),
    Refund(RefundReport),
    /// A split's state (answer to `Split`, `SplitQuery`, `SplitFinish`).
    Split(SplitReport),
    /// A return's state (answer to `SplitReturn`, `SplitReturnQuery`).
    SplitReturn(ReturnReport),
    /// The receiver is registered (answer to `BindReceiver`, also when it already was).
    Bound,
    /// Where the statement is (answer to `BillQuery`).
    Bill(crate::bills::BillLocation),
    /// The channel has no statement for that day yet (answer to `BillQuery`).
    BillNotReady,
    /// The order is closed (or there was nothing to close).
    Closed,
    /// A definite rejection: nothing was created or moved.
    Declined {
        code: String,
        message: String,
    },
    /// The channel did not accept the request at all (authentication, configuration):
    /// nothing was created, and another channel may be tried.
    NotAccepted {
        code: String,
        message: String,
    },
    /// The outcome cannot be known from this answer (timeout, 5xx, bad signature, system error).
    Unknown {
        reason: String,
    },
}

/// An inbound notification (the raw request the channel sent to `/notify/{channel}`).
#[derive(Debug)]
pub struct InboundNotification<'a> {
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// A verified notification, translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationEvent {
    Payment {
        out_trade_no: String,
        report: PaymentReport,
    },
    /// A genuine notification payroute does not act on (yet); acknowledged.
    Ignored { event_type: String },
}

/// Why a notification was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotifyError {
    #[error("malformed notification: {0}")]
    Malformed(String),
    #[error("signature missing or invalid")]
    BadSignature,
    #[error("notification is for another merchant account")]
    WrongAccount,
    #[error("notification timestamp is stale")]
    Stale,
    #[error("notification resource cannot be decrypted")]
    Undecryptable,
}

/// The reply a channel expects to a notification.
#[derive(Clone, Debug)]
pub struct NotifyReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

/// Why an adapter could not build a request (a local problem; nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid input for this channel: {0}")]
    Invalid(String),
}

/// A payment channel adapter. Implementations do no I/O.
///
/// Adding an operation: a variant of [`Op`] and [`OpKind`], its flow in `src/payments/`, and
/// arms in the adapters that perform it. An adapter that does not perform every operation ends
/// its matches with a default arm answering [`Op::unsupported`] (Ping++ today), which the call
/// path reports as "this channel cannot do that" without sending anything.
pub trait Channel: Send + Sync + std::fmt::Debug {
    /// The name from routes.yaml.
    fn name(&self) -> &str;
    /// The protocol: `alipay`, `wechatpay`, `pingpp`.
    fn kind(&self) -> &'static str;
    /// Whether this channel can take a payment of this method and scene.
    fn supports(&self, method: PayMethod, scene: Scene) -> bool;
    /// Whether this channel can create a payment for profit sharing (`split`). Adapters that
    /// cannot keep this default, and routing leaves them out for split payments.
    fn can_split(&self) -> bool {
        false
    }
    /// The receiver types this channel's splits take (empty: it cannot split).
    fn receiver_types(&self) -> &'static [ReceiverType] {
        &[]
    }
    /// Whether split money goes back to receivers as part of a refund (Alipay's
    /// `refund_royalty_parameters`) rather than by a return of its own (`Op::SplitReturn`).
    fn returns_with_refund(&self) -> bool {
        false
    }
    /// Whether split money can be returned from a receiver of this type (WeChat Pay returns
    /// only from merchant receivers).
    fn returnable(&self, _receiver_type: ReceiverType) -> bool {
        true
    }
    /// Whether the channel can finish (unfreeze the rest) without sharing anything
    /// (`Op::SplitFinish`).
    fn can_finish_alone(&self) -> bool {
        false
    }
    /// The request that downloads the statement at `location` (WeChat Pay signs it like any
    /// call; the answer is the file itself, streamed to disk, not given to `parse`).
    fn download_request(
        &self,
        _location: &crate::bills::BillLocation,
        _now: DateTime<Utc>,
    ) -> Result<http::Request<Bytes>, BuildError> {
        Err(BuildError::Unsupported(format!(
            "{} offers no statement payroute can read",
            self.kind()
        )))
    }
    /// Reads a stored statement file as a stream of normalised lines.
    fn statement_lines(
        &self,
        _file: crate::bills::StatementFile,
    ) -> Result<crate::bills::Lines, crate::bills::BillError> {
        Err(crate::bills::BillError::Unsupported(format!(
            "{} offers no statement payroute can read",
            self.kind()
        )))
    }
    /// Whether a receiver of this type is registered only with its name.
    fn requires_name(&self, _receiver_type: ReceiverType) -> bool {
        false
    }
    /// Builds the signed request for `op` at time `now`.
    fn build(&self, op: Op<'_>, now: DateTime<Utc>) -> Result<Prepared, BuildError>;
    /// Verifies and interprets the channel's answer to `op`.
    fn parse(&self, op: Op<'_>, response: &RawResponse) -> Outcome;
    /// Verifies an inbound notification and translates it.
    fn verify_notification(
        &self,
        notification: &InboundNotification<'_>,
    ) -> Result<NotificationEvent, NotifyError>;
    /// The answer the channel expects: accepted, or "send it again later".
    fn notify_reply(&self, accepted: bool) -> NotifyReply;
}

/// A shared channel handle.
pub type SharedChannel = Arc<dyn Channel>;
