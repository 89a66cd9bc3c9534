//! Alipay OpenAPI 2.0 wire format: protocol constants, China-time timestamps, trade and refund
//! statuses, and the typed `biz_content` and `*_response` bodies of each operation. Signing
//! lives in `signing.rs`, the error table in `errors.rs`.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::signing::Params;
use crate::channels::wire::Known;
use crate::channels::ChannelPayState;
use crate::domain::{ReceiverType, Scene};
use crate::money::Fen;

/// Alipay's fixed protocol version.
pub const VERSION: &str = "1.0";
/// The only charset payroute sends.
pub const CHARSET: &str = "utf-8";

/// `yyyy-MM-dd HH:mm:ss` in China time (UTC+8), as the gateway expects.
pub fn china_timestamp(now: DateTime<Utc>) -> String {
    let china = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    now.with_timezone(&china)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Parses a China-time `yyyy-MM-dd HH:mm:ss` timestamp.
pub fn parse_china_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    let china = FixedOffset::east_opt(8 * 3600)?;
    naive
        .and_local_timezone(china)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Alipay's `trade_status` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeStatus {
    WaitBuyerPay,
    TradeClosed,
    TradeSuccess,
    TradeFinished,
}

impl TradeStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
            TradeStatus::TradeSuccess => "TRADE_SUCCESS",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
        }
    }
}

impl From<TradeStatus> for ChannelPayState {
    fn from(s: TradeStatus) -> Self {
        match s {
            TradeStatus::WaitBuyerPay => ChannelPayState::Waiting,
            TradeStatus::TradeSuccess | TradeStatus::TradeFinished => ChannelPayState::Paid,
            TradeStatus::TradeClosed => ChannelPayState::Closed,
        }
    }
}

/// `refund_status` of a refund query: its only value; an absent field means the refund was
/// not received (or failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    RefundSuccess,
}

/// A `Y`/`N` flag (`fund_change`, `retry_flag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Flag {
    Y,
    N,
}

/// `product_code` of a create: which Alipay product serves the scene.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProductCode {
    FaceToFacePayment,
    QuickMsecurityPay,
    QuickWapWay,
    FastInstantTradePay,
}

impl From<Scene> for ProductCode {
    fn from(scene: Scene) -> Self {
        match scene {
            Scene::Qr | Scene::Barcode => ProductCode::FaceToFacePayment,
            Scene::App => ProductCode::QuickMsecurityPay,
            Scene::H5 => ProductCode::QuickWapWay,
            Scene::Page | Scene::Jsapi => ProductCode::FastInstantTradePay,
        }
    }
}

/// `scene` of a barcode payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeScene {
    BarCode,
}

/// `biz_content` of every create (`precreate`, `app.pay`, `wap.pay`, `page.pay`, `pay`). The
/// signature covers the text, and the app order string must match the official SDKs byte for
/// byte, so the field order here is the wire order.
#[derive(Debug, Serialize)]
pub struct CreateBiz<'a> {
    pub out_trade_no: &'a str,
    pub total_amount: String,
    pub subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'a str>,
    pub product_code: ProductCode,
    /// Barcode payments only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene: Option<CodeScene>,
    /// Barcode payments only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    /// Split payments only (left out otherwise, so other bodies stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extend_params: Option<ExtendParams>,
}

/// `extend_params` of a create: `royalty_freeze` freezes the money for later
/// `alipay.trade.order.settle` calls. The field is in the published `ExtendParams` model; its
/// semantics are unconfirmed (see README).
#[derive(Debug, Serialize)]
pub struct ExtendParams {
    /// `"true"`: a string on the wire, as the model declares it.
    pub royalty_freeze: &'static str,
}

/// `biz_content` naming one trade: query, close and cancel. An empty value is left out.
#[derive(Debug, Serialize)]
pub struct TradeBiz<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub out_trade_no: &'a str,
}

/// `biz_content` of `alipay.trade.refund`. Empty values are left out.
#[derive(Debug, Serialize)]
pub struct RefundBiz<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub out_trade_no: &'a str,
    pub refund_amount: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub out_request_no: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub refund_reason: &'a str,
    /// Split money this refund takes back from receivers (left out when there is none, so
    /// that other refunds stay as they were).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refund_royalty_parameters: Vec<RefundRoyaltyParameter<'a>>,
}

/// One entry of `refund_royalty_parameters`: money taken back from a receiver with a refund.
///
/// Protocol reference §8.7 names the field only; its entries are modelled on the settle's
/// `royalty_parameters` with the direction reversed (`trans_out` = the receiver). These field
/// names are **unconfirmed** and live here alone, so that a correction touches one struct.
#[derive(Debug, Serialize)]
pub struct RefundRoyaltyParameter<'a> {
    pub royalty_type: RoyaltyType,
    pub trans_out_type: AccountType,
    pub trans_out: &'a str,
    pub amount: String,
}

/// `biz_content` of `alipay.trade.fastpay.refund.query`. Empty values are left out.
#[derive(Debug, Serialize)]
pub struct RefundQueryBiz<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub out_trade_no: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub out_request_no: &'a str,
}

/// The account types of Alipay's royalty calls (`type`, `trans_in_type`, `trans_out_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AccountType {
    #[serde(rename = "userId")]
    UserId,
    #[serde(rename = "loginName")]
    LoginName,
}

impl AccountType {
    /// The account type of a receiver type; `None` for types Alipay does not take.
    pub fn of(t: ReceiverType) -> Option<AccountType> {
        match t {
            ReceiverType::User => Some(AccountType::UserId),
            ReceiverType::LoginName => Some(AccountType::LoginName),
            ReceiverType::Merchant | ReceiverType::Openid => None,
        }
    }
}

/// `royalty_type` of a settle (or refund) entry: payroute only transfers (`replenish`
/// subsidies are not used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoyaltyType {
    Transfer,
}

/// `biz_content` of `alipay.trade.royalty.relation.bind` (protocol reference §8.9).
#[derive(Debug, Serialize)]
pub struct RelationBindBiz<'a> {
    pub out_request_no: &'a str,
    pub receiver_list: Vec<RoyaltyReceiver<'a>>,
}

/// One receiver of a relation bind.
#[derive(Debug, Serialize)]
pub struct RoyaltyReceiver<'a> {
    #[serde(rename = "type")]
    pub account_type: AccountType,
    pub account: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

/// `biz_content` of `alipay.trade.order.settle` (protocol reference §8.9).
#[derive(Debug, Serialize)]
pub struct SettleBiz<'a> {
    /// The idempotency key: payroute's `out_split_no`, the same on every repeat.
    pub out_request_no: &'a str,
    pub trade_no: &'a str,
    pub royalty_parameters: Vec<RoyaltyParameter<'a>>,
    pub extend_params: SettleExtendParams,
    pub royalty_mode: RoyaltyMode,
}

/// One share of a settle.
#[derive(Debug, Serialize)]
pub struct RoyaltyParameter<'a> {
    pub royalty_type: RoyaltyType,
    pub trans_in_type: AccountType,
    pub trans_in: &'a str,
    pub amount: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub desc: &'a str,
}

/// `extend_params` of a settle.
#[derive(Debug, Serialize)]
pub struct SettleExtendParams {
    /// `"true"`: unfreeze what is not shared once this settle is done (a string on the wire).
    pub royalty_finish: &'static str,
}

/// `royalty_mode` of a settle: payroute asks for `async` and reads the results by query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoyaltyMode {
    Async,
}

/// `biz_content` of `alipay.trade.order.settle.query`: the settle by its request number and
/// trade.
#[derive(Debug, Serialize)]
pub struct SettleQueryBiz<'a> {
    pub out_request_no: &'a str,
    pub trade_no: &'a str,
}

/// The result fields every response object carries.
#[derive(Debug, Deserialize)]
pub struct ResultCode {
    pub code: String,
    #[serde(default)]
    pub msg: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
}

/// A yuan amount as Alipay writes it (`"88.88"`), in fen; one that does not read is `None`.
fn yuan<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Fen>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .as_deref()
        .and_then(Fen::from_yuan))
}

/// Answer to `alipay.trade.pay` (barcode), paid (`10000`) or waiting for the buyer (`10003`).
#[derive(Debug, Default, Deserialize)]
pub struct PayResponse {
    pub trade_no: Option<String>,
    #[serde(default, deserialize_with = "yuan")]
    pub total_amount: Option<Fen>,
}

/// Answer to `alipay.trade.precreate`.
#[derive(Debug, Default, Deserialize)]
pub struct PrecreateResponse {
    pub trade_no: Option<String>,
    pub qr_code: Option<String>,
}

/// Answer to `alipay.trade.query`.
#[derive(Debug, Default, Deserialize)]
pub struct QueryResponse {
    pub trade_no: Option<String>,
    pub trade_status: Option<Known<TradeStatus>>,
    #[serde(default, deserialize_with = "yuan")]
    pub total_amount: Option<Fen>,
}

/// Answer to `alipay.trade.cancel`.
#[derive(Debug, Default, Deserialize)]
pub struct CancelResponse {
    /// `Y`: the cancel must be retried.
    pub retry_flag: Option<Known<Flag>>,
}

/// Answer to `alipay.trade.refund`.
#[derive(Debug, Default, Deserialize)]
pub struct RefundResponse {
    pub trade_no: Option<String>,
    /// `Y`: money moved by this call. Anything else only means the refund was accepted.
    pub fund_change: Option<Known<Flag>>,
}

/// Answer to `alipay.trade.fastpay.refund.query`.
#[derive(Debug, Default, Deserialize)]
pub struct RefundQueryResponse {
    pub trade_no: Option<String>,
    pub refund_status: Option<Known<RefundStatus>>,
}

/// `result_code` of a relation bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BindResult {
    Success,
    Fail,
}

/// Answer to `alipay.trade.royalty.relation.bind`.
#[derive(Debug, Default, Deserialize)]
pub struct RelationBindResponse {
    pub result_code: Option<Known<BindResult>>,
}

/// Answer to `alipay.trade.order.settle`.
#[derive(Debug, Default, Deserialize)]
pub struct SettleResponse {
    pub trade_no: Option<String>,
    pub settle_no: Option<String>,
}

/// `state` of one royalty detail (value set **unconfirmed**, protocol reference §8.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoyaltyState {
    Success,
    Fail,
    Processing,
}

/// `operation_type` of a royalty detail: only transfers are shares of a settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationType {
    Transfer,
}

/// One entry of a settle query's `royalty_detail_list`.
#[derive(Debug, Default, Deserialize)]
pub struct RoyaltyDetail {
    pub operation_type: Option<Known<OperationType>>,
    pub trans_in: Option<String>,
    pub trans_in_type: Option<String>,
    /// The yuan text as sent; read exactly by the adapter (a malformed amount makes the
    /// whole answer unknown).
    pub amount: Option<String>,
    pub state: Option<Known<RoyaltyState>>,
    pub detail_id: Option<String>,
    pub error_code: Option<String>,
    pub error_desc: Option<String>,
}

/// Answer to `alipay.trade.order.settle.query`.
#[derive(Debug, Default, Deserialize)]
pub struct SettleQueryResponse {
    pub out_request_no: Option<String>,
    pub settle_no: Option<String>,
    #[serde(default)]
    pub royalty_detail_list: Vec<RoyaltyDetail>,
}

/// An asynchronous trade notification (form parameters, read after the signature checked out).
#[derive(Debug, Default, Deserialize)]
pub struct TradeNotification {
    pub app_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub trade_no: Option<String>,
    pub trade_status: Option<Known<TradeStatus>>,
    pub total_amount: Option<String>,
}

impl TradeNotification {
    /// Reads the notification's fields from its (verified, duplicate-free) parameters.
    pub fn from_params(params: &Params) -> Option<TradeNotification> {
        let map: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_is_utc_plus_8() {
        let t = DateTime::parse_from_rfc3339("2024-01-01T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(china_timestamp(t), "2024-01-01 12:00:00");
        assert_eq!(parse_china_timestamp("2024-01-01 12:00:00"), Some(t));
    }

    #[test]
    fn trade_statuses_read_their_wire_names() {
        use TradeStatus as S;
        for s in [
            S::WaitBuyerPay,
            S::TradeClosed,
            S::TradeSuccess,
            S::TradeFinished,
        ] {
            let read: Known<S> = serde_json::from_value(s.as_str().into()).unwrap();
            assert_eq!(read.known(), Some(s));
        }
        let read: Known<S> = serde_json::from_str("\"TRADE_PENDING\"").unwrap();
        assert_eq!(read.known(), None);
    }

    #[test]
    fn answers_read_typed_and_unfamiliar_values_stay_unknown() {
        let q: QueryResponse = serde_json::from_str(
            r#"{"code":"10000","trade_no":"2024","trade_status":"WAIT_BUYER_PAY","total_amount":"88.88"}"#,
        )
        .unwrap();
        let state = q.trade_status.as_ref().and_then(Known::known).unwrap();
        assert_eq!(ChannelPayState::from(state), ChannelPayState::Waiting);
        assert_eq!(q.total_amount, Some(Fen(8888)));
        let q: QueryResponse = serde_json::from_str(r#"{"trade_status":"PAID_LATER"}"#).unwrap();
        assert_eq!(q.trade_status.and_then(|s| s.known()), None);
        let r: RefundResponse = serde_json::from_str(r#"{"fund_change":"Y"}"#).unwrap();
        assert_eq!(r.fund_change.and_then(|f| f.known()), Some(Flag::Y));
        let r: RefundQueryResponse =
            serde_json::from_str(r#"{"refund_status":"REFUND_PROCESSING"}"#).unwrap();
        assert_eq!(
            r.refund_status,
            Some(Known::Other("REFUND_PROCESSING".into()))
        );
    }

    #[test]
    fn biz_content_keeps_wire_order_and_drops_empty_values() {
        let create = CreateBiz {
            out_trade_no: "T1",
            total_amount: "1.00".into(),
            subject: "",
            body: None,
            product_code: Scene::Barcode.into(),
            scene: Some(CodeScene::BarCode),
            auth_code: Some("28"),
            time_expire: None,
            extend_params: None,
        };
        assert_eq!(
            serde_json::to_string(&create).unwrap(),
            r#"{"out_trade_no":"T1","total_amount":"1.00","subject":"","product_code":"FACE_TO_FACE_PAYMENT","scene":"bar_code","auth_code":"28"}"#
        );
        let refund = RefundBiz {
            out_trade_no: "T1",
            refund_amount: "0.50".into(),
            out_request_no: "R1",
            refund_reason: "",
            refund_royalty_parameters: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&refund).unwrap(),
            r#"{"out_trade_no":"T1","refund_amount":"0.50","out_request_no":"R1"}"#
        );
        let query = TradeBiz { out_trade_no: "" };
        assert_eq!(serde_json::to_string(&query).unwrap(), "{}");
    }

    #[test]
    fn notifications_read_from_their_parameters() {
        let params = Params::decode(b"trade_status=TRADE_SUCCESS&total_amount=88.88&app_id=1");
        let n = TradeNotification::from_params(&params).unwrap();
        assert_eq!(
            n.trade_status.and_then(|s| s.known()),
            Some(TradeStatus::TradeSuccess)
        );
        assert_eq!(n.total_amount.as_deref(), Some("88.88"));
        assert_eq!(n.out_trade_no, None);
    }
}
