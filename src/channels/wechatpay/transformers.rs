//! WeChat Pay API v3 wire format: state translations and the typed request/response bodies of
//! each operation. The signatures are in `signing.rs`, re-exported here so that the channel's
//! whole wire format is reached through one path.

use serde::{Deserialize, Serialize};

pub use super::signing::*;
use crate::channels::wire::Known;
use crate::channels::{ChannelPayState, ChannelReturnState, ChannelSplitState, ShareState};
use crate::domain::ReceiverType;
use crate::money::Fen;

/// `trade_state` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TradeState {
    Success,
    Refund,
    NotPay,
    Closed,
    Revoked,
    UserPaying,
    PayError,
}

impl TradeState {
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<TradeState> {
        Some(match s {
            "SUCCESS" => TradeState::Success,
            "REFUND" => TradeState::Refund,
            "NOTPAY" => TradeState::NotPay,
            "CLOSED" => TradeState::Closed,
            "REVOKED" => TradeState::Revoked,
            "USERPAYING" => TradeState::UserPaying,
            "PAYERROR" => TradeState::PayError,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
        }
    }
}

/// Refund `status` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefundState {
    Success,
    Closed,
    Processing,
    Abnormal,
}

impl RefundState {
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<RefundState> {
        Some(match s {
            "SUCCESS" => RefundState::Success,
            "CLOSED" => RefundState::Closed,
            "PROCESSING" => RefundState::Processing,
            "ABNORMAL" => RefundState::Abnormal,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Success => "SUCCESS",
            RefundState::Closed => "CLOSED",
            RefundState::Processing => "PROCESSING",
            RefundState::Abnormal => "ABNORMAL",
        }
    }
}

impl From<TradeState> for ChannelPayState {
    fn from(s: TradeState) -> Self {
        match s {
            TradeState::Success | TradeState::Refund => ChannelPayState::Paid,
            TradeState::NotPay | TradeState::UserPaying => ChannelPayState::Waiting,
            TradeState::Closed | TradeState::Revoked | TradeState::PayError => {
                ChannelPayState::Closed
            }
        }
    }
}

/// The currency every amount is in.
pub const CNY: &str = "CNY";

/// Body of a prepay request (`/v3/pay/transactions/{native,jsapi,app,h5}`). The signature
/// covers the body text, so the field order here is the wire order.
#[derive(Debug, Serialize)]
pub struct PrepayRequest<'a> {
    pub appid: &'a str,
    pub mchid: &'a str,
    pub description: &'a str,
    pub out_trade_no: &'a str,
    pub notify_url: &'a str,
    pub amount: PrepayAmount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<SceneInfo<'a>>,
    /// Split payments only (left out otherwise, so other bodies stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_info: Option<SettleInfo>,
}

/// `settle_info` of a prepay request: `profit_sharing` freezes the money for later
/// `/v3/profitsharing/orders` calls.
#[derive(Debug, Serialize)]
pub struct SettleInfo {
    pub profit_sharing: bool,
}

/// `amount` of a prepay request.
#[derive(Debug, Serialize)]
pub struct PrepayAmount {
    pub total: Fen,
    pub currency: &'static str,
}

/// `payer` of a JSAPI prepay request.
#[derive(Debug, Serialize)]
pub struct Payer<'a> {
    pub openid: &'a str,
}

/// `scene_info` of a prepay request.
#[derive(Debug, Serialize)]
pub struct SceneInfo<'a> {
    pub payer_client_ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h5_info: Option<H5Info>,
}

/// `scene_info.h5_info` of an H5 prepay request.
#[derive(Debug, Serialize)]
pub struct H5Info {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Body of a close request.
#[derive(Debug, Serialize)]
pub struct CloseRequest<'a> {
    pub mchid: &'a str,
}

/// Body of a refund request (`/v3/refund/domestic/refunds`).
#[derive(Debug, Serialize)]
pub struct RefundRequest<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    pub amount: RefundAmount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// `amount` of a refund request.
#[derive(Debug, Serialize)]
pub struct RefundAmount {
    pub refund: Fen,
    pub total: Fen,
    pub currency: &'static str,
}

/// Answer to a prepay request: the field the scene uses.
#[derive(Debug, Default, Deserialize)]
pub struct PrepayResponse {
    pub code_url: Option<String>,
    pub h5_url: Option<String>,
    pub prepay_id: Option<String>,
}

/// A transaction: the answer to a query, and a notification's decrypted resource.
#[derive(Debug, Default, Deserialize)]
pub struct TransactionResponse {
    pub mchid: Option<String>,
    pub appid: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub trade_state: Option<Known<TradeState>>,
    pub amount: Option<TransactionAmount>,
}

impl TransactionResponse {
    /// `amount.total`, when present.
    pub fn total(&self) -> Option<Fen> {
        self.amount.as_ref().and_then(|a| a.total)
    }
}

/// `amount` of a transaction.
#[derive(Debug, Default, Deserialize)]
pub struct TransactionAmount {
    pub total: Option<Fen>,
}

/// Answer to a refund or refund query.
#[derive(Debug, Default, Deserialize)]
pub struct RefundResponse {
    pub refund_id: Option<String>,
    pub status: Option<Known<RefundState>>,
}

/// A profit-sharing order's `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SplitOrderState {
    Processing,
    Finished,
}

impl SplitOrderState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitOrderState::Processing => "PROCESSING",
            SplitOrderState::Finished => "FINISHED",
        }
    }
}

impl From<SplitOrderState> for ChannelSplitState {
    fn from(s: SplitOrderState) -> Self {
        match s {
            SplitOrderState::Processing => ChannelSplitState::Processing,
            SplitOrderState::Finished => ChannelSplitState::Finished,
        }
    }
}

/// A profit-sharing receiver's `result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ShareResult {
    Pending,
    Success,
    Closed,
}

impl ShareResult {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareResult::Pending => "PENDING",
            ShareResult::Success => "SUCCESS",
            ShareResult::Closed => "CLOSED",
        }
    }
}

impl From<ShareResult> for ShareState {
    fn from(s: ShareResult) -> Self {
        match s {
            ShareResult::Pending => ShareState::Pending,
            ShareResult::Success => ShareState::Succeeded,
            ShareResult::Closed => ShareState::Failed,
        }
    }
}

/// A profit-sharing return's `result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReturnResult {
    Processing,
    Success,
    Failed,
}

impl ReturnResult {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnResult::Processing => "PROCESSING",
            ReturnResult::Success => "SUCCESS",
            ReturnResult::Failed => "FAILED",
        }
    }
}

impl From<ReturnResult> for ChannelReturnState {
    fn from(s: ReturnResult) -> Self {
        match s {
            ReturnResult::Processing => ChannelReturnState::Processing,
            ReturnResult::Success => ChannelReturnState::Succeeded,
            ReturnResult::Failed => ChannelReturnState::Failed,
        }
    }
}

/// A receiver type's wire name (`MERCHANT_ID`, `PERSONAL_OPENID`); `None` for the types WeChat
/// Pay does not take.
pub fn receiver_type(t: ReceiverType) -> Option<&'static str> {
    match t {
        ReceiverType::Merchant => Some("MERCHANT_ID"),
        ReceiverType::Openid => Some("PERSONAL_OPENID"),
        ReceiverType::User | ReceiverType::LoginName => None,
    }
}

/// Body of `POST /v3/profitsharing/receivers/add`.
#[derive(Debug, Serialize)]
pub struct ReceiverAddRequest<'a> {
    pub appid: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub account: &'a str,
    /// RSA-OAEP encrypted with the platform key (the request names it in `Wechatpay-Serial`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub relation_type: &'a str,
}

/// Body of `POST /v3/profitsharing/orders`.
#[derive(Debug, Serialize)]
pub struct SplitRequest<'a> {
    pub appid: &'a str,
    pub transaction_id: &'a str,
    pub out_order_no: &'a str,
    pub receivers: Vec<SplitReceiver<'a>>,
    pub unfreeze_unsplit: bool,
}

/// One receiver of a profit-sharing order.
#[derive(Debug, Serialize)]
pub struct SplitReceiver<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub account: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub amount: Fen,
    pub description: &'a str,
}

/// Body of `POST /v3/profitsharing/orders/unfreeze`.
#[derive(Debug, Serialize)]
pub struct UnfreezeRequest<'a> {
    pub transaction_id: &'a str,
    pub out_order_no: &'a str,
    pub description: &'a str,
}

/// Body of `POST /v3/profitsharing/return-orders`.
#[derive(Debug, Serialize)]
pub struct ReturnRequest<'a> {
    pub out_order_no: &'a str,
    pub out_return_no: &'a str,
    pub return_mchid: &'a str,
    pub amount: Fen,
    pub description: &'a str,
}

/// A profit-sharing order: the answer to a split, its query and an unfreeze.
#[derive(Debug, Default, Deserialize)]
pub struct SplitOrderResponse {
    pub order_id: Option<String>,
    pub state: Option<Known<SplitOrderState>>,
    #[serde(default)]
    pub receivers: Vec<SplitReceiverResponse>,
}

/// One receiver of a profit-sharing order, as WeChat Pay reports it.
#[derive(Debug, Default, Deserialize)]
pub struct SplitReceiverResponse {
    pub account: Option<String>,
    pub amount: Option<Fen>,
    pub result: Option<Known<ShareResult>>,
    pub fail_reason: Option<String>,
    pub detail_id: Option<String>,
}

/// A profit-sharing return: the answer to a return and its query.
#[derive(Debug, Default, Deserialize)]
pub struct ReturnResponse {
    pub return_id: Option<String>,
    pub result: Option<Known<ReturnResult>>,
    pub fail_reason: Option<String>,
}

/// An error answer (4xx/5xx).
#[derive(Debug, Default, Deserialize)]
pub struct ErrorResponse {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// A notification's envelope.
#[derive(Debug, Deserialize)]
pub struct NotificationBody {
    pub event_type: Option<String>,
    pub resource: Option<NotificationResource>,
}

/// A notification's encrypted `resource`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NotificationResource {
    pub algorithm: String,
    pub nonce: String,
    pub associated_data: String,
    pub ciphertext: String,
}

/// `2024-01-01T12:00:00+08:00`: RFC 3339 in China time, as WeChat Pay writes times.
pub fn china_rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    t.with_timezone(&china)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The `relation_type` values a receiver is registered with (reference §7; `CUSTOM` also
/// needs a `custom_relation` text).
pub const RELATIONS: [&str; 10] = [
    "STORE",
    "STAFF",
    "STORE_OWNER",
    "PARTNER",
    "HEADQUARTER",
    "BRAND",
    "DISTRIBUTOR",
    "USER",
    "SUPPLIER",
    "CUSTOM",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_both_ways() {
        for s in [
            "SUCCESS",
            "REFUND",
            "NOTPAY",
            "CLOSED",
            "REVOKED",
            "USERPAYING",
            "PAYERROR",
        ] {
            assert_eq!(TradeState::parse(s).unwrap().as_str(), s);
        }
        for s in ["SUCCESS", "CLOSED", "PROCESSING", "ABNORMAL"] {
            assert_eq!(RefundState::parse(s).unwrap().as_str(), s);
        }
        assert!(TradeState::parse("PAID").is_none());
    }

    #[test]
    fn transactions_read_typed_and_unfamiliar_states_stay_unknown() {
        let t: TransactionResponse = serde_json::from_str(
            r#"{"trade_state":"USERPAYING","transaction_id":"42","amount":{"total":8888}}"#,
        )
        .unwrap();
        let state = t.trade_state.as_ref().and_then(|s| s.known()).unwrap();
        assert_eq!(ChannelPayState::from(state), ChannelPayState::Waiting);
        assert_eq!(t.total(), Some(Fen(8888)));
        let t: TransactionResponse =
            serde_json::from_str(r#"{"trade_state":"PAID_LATER"}"#).unwrap();
        assert_eq!(t.trade_state.and_then(|s| s.known()), None);
        let r: RefundResponse = serde_json::from_str(r#"{"status":"ABNORMAL"}"#).unwrap();
        assert_eq!(
            r.status.and_then(|s| s.known()),
            Some(RefundState::Abnormal)
        );
    }
}
