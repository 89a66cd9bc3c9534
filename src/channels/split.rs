//! Profit sharing as the channel adapters see it: the intents payroute sends (split, split
//! query, split return, return query, finish, receiver binding) and the reports it reads back.
//!
//! Amounts are fen. Numbers (`out_split_no`, `out_return_no`) are the merchant's and are
//! reused verbatim on every repeat, so that a channel answers a repeat idempotently.

use crate::domain::ReceiverType;
use crate::money::Fen;

/// A receiver as registered with the channel (WeChat `receivers/add`, Alipay
/// `royalty.relation.bind`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverIntent {
    pub receiver_type: ReceiverType,
    pub account: String,
    /// The receiver's real name, when the app gave one (WeChat requires it for `merchant`
    /// receivers and encrypts it; Alipay sends it as `name`).
    pub name: Option<String>,
    /// WeChat `relation_type` (e.g. `PARTNER`); adapters that need one default it.
    pub relation: Option<String>,
    /// A deterministic request number for channels that want one (Alipay `out_request_no`).
    pub request_no: String,
}

/// One receiver's share in a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareIntent {
    pub receiver_type: ReceiverType,
    pub account: String,
    pub name: Option<String>,
    pub amount: Fen,
    pub description: String,
}

/// A split of a paid payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitIntent {
    pub out_trade_no: String,
    /// The channel's id of the paid order (WeChat `transaction_id`, Alipay `trade_no`).
    pub channel_trade_no: Option<String>,
    pub out_split_no: String,
    /// The channel's id of this split once it has one (WeChat `order_id`, Alipay `settle_no`).
    pub channel_split_no: Option<String>,
    /// Empty only for a finish without shares (`Op::SplitFinish`).
    pub shares: Vec<ShareIntent>,
    /// Unfreeze (settle to the merchant) whatever is not shared once this split is done.
    pub finish: bool,
    /// The payment's amount.
    pub total: Fen,
}

/// Money pulled back from one receiver of a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitReturnIntent {
    pub out_trade_no: String,
    pub channel_trade_no: Option<String>,
    pub out_split_no: String,
    pub channel_split_no: Option<String>,
    pub out_return_no: String,
    pub receiver_type: ReceiverType,
    pub account: String,
    pub amount: Fen,
    pub description: String,
}

/// A return carried by a refund (Alipay `refund_royalty_parameters`): the refund takes this
/// much from the receiver back to the buyer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundReturn {
    pub out_return_no: String,
    pub receiver_type: ReceiverType,
    pub account: String,
    pub amount: Fen,
}

/// A split's state at the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelSplitState {
    /// Accepted; receivers not all settled yet (ask again with the same number).
    Processing,
    /// Done: every receiver's result is final (each succeeded or failed).
    Finished,
    /// The channel has no such split.
    NotFound,
}

/// One receiver's result at the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareState {
    Pending,
    Succeeded,
    /// Closed: the money stayed with the merchant.
    Failed,
}

/// What the channel said about one receiver's share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareReport {
    pub account: String,
    pub amount: Fen,
    pub state: ShareState,
    pub fail_reason: Option<String>,
    /// The channel's id of this share (WeChat `detail_id`, Alipay `detail_id`).
    pub detail_id: Option<String>,
}

/// What the channel said about a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitReport {
    pub state: ChannelSplitState,
    pub channel_split_no: Option<String>,
    /// Per-receiver results; may be empty when the channel only acknowledged the request
    /// (Alipay's settle answer), in which case a query gives them.
    pub shares: Vec<ShareReport>,
}

/// A return's state at the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelReturnState {
    Processing,
    Succeeded,
    /// The receiver did not give the money back (e.g. `BALANCE_NOT_ENOUGH`).
    Failed,
    NotFound,
}

/// What the channel said about a return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnReport {
    pub state: ChannelReturnState,
    pub channel_return_no: Option<String>,
    pub fail_reason: Option<String>,
}
