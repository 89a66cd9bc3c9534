//! The unified payment vocabulary shared by the API, the router, the channels and the ledger.

use serde::{Deserialize, Serialize};

/// How the customer pays: which wallet.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PayMethod {
    Alipay,
    Wechat,
}

/// Where and how the payment happens.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scene {
    /// Merchant shows a QR code, the customer scans it.
    Qr,
    /// Native app SDK.
    App,
    /// Mobile browser.
    H5,
    /// In-wallet web page or mini-program (WeChat JSAPI).
    Jsapi,
    /// Desktop web page.
    Page,
    /// Merchant scans the customer's payment code.
    Barcode,
}

impl Scene {
    /// Every scene.
    pub const ALL: [Scene; 6] = [
        Scene::Qr,
        Scene::App,
        Scene::H5,
        Scene::Jsapi,
        Scene::Page,
        Scene::Barcode,
    ];

    /// Prepay scenes charge nothing until the customer acts on the returned action.
    pub fn is_prepay(self) -> bool {
        !matches!(self, Scene::Barcode)
    }

    /// The name used in the API and in routes.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Scene::Qr => "qr",
            Scene::App => "app",
            Scene::H5 => "h5",
            Scene::Jsapi => "jsapi",
            Scene::Page => "page",
            Scene::Barcode => "barcode",
        }
    }
}

impl PayMethod {
    /// Every method.
    pub const ALL: [PayMethod; 2] = [PayMethod::Alipay, PayMethod::Wechat];

    /// The name used in the API and in routes.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            PayMethod::Alipay => "alipay",
            PayMethod::Wechat => "wechat",
        }
    }
}

/// Currencies the unified API accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Currency {
    #[serde(rename = "CNY")]
    Cny,
}

/// The state of a payment as the app sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Closed,
    Failed,
    Refunded,
    PartiallyRefunded,
}

impl PaymentStatus {
    /// Paid at some point (refunds included).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded | PaymentStatus::Refunded | PaymentStatus::PartiallyRefunded
        )
    }
}

/// The state of one refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

/// Who receives split money: WeChat Pay `MERCHANT_ID` / `PERSONAL_OPENID`, Alipay `userId` /
/// `loginName`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverType {
    /// A WeChat Pay merchant id (`MERCHANT_ID`).
    Merchant,
    /// A WeChat user's openid under the merchant's appid (`PERSONAL_OPENID`).
    Openid,
    /// An Alipay user id, `2088…` (`userId`).
    User,
    /// An Alipay login name, a phone number or e-mail (`loginName`).
    LoginName,
}

impl ReceiverType {
    /// The wire name in the unified API.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverType::Merchant => "merchant",
            ReceiverType::Openid => "openid",
            ReceiverType::User => "user",
            ReceiverType::LoginName => "login_name",
        }
    }
}

/// What the client needs to let the customer pay (prepay scenes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientAction {
    /// Render `code_url` as a QR code.
    QrCode { code_url: String },
    /// Hand `order_string` to the wallet's app SDK.
    AppPay { order_string: String },
    /// Send the browser to `url` (mobile H5 or desktop page).
    Redirect { url: String },
    /// Pass `params` to `wx.requestPayment` / `WeixinJSBridge` (WeChat JSAPI, mini-program).
    JsapiPay { params: Box<JsapiParams> },
    /// Pass `params` to the WeChat app SDK's `PayReq`.
    WechatAppPay { params: Box<WechatAppParams> },
}

/// Signed JSAPI payment parameters, named as the WeChat front-end API expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsapiParams {
    pub app_id: String,
    pub time_stamp: String,
    pub nonce_str: String,
    pub package: String,
    pub sign_type: String,
    pub pay_sign: String,
}

/// Signed WeChat app payment parameters (`PayReq`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatAppParams {
    pub appid: String,
    pub partnerid: String,
    pub prepayid: String,
    pub package: String,
    pub noncestr: String,
    pub timestamp: String,
    pub sign: String,
}

/// The stable, machine-readable `code` of every API error (the problem+json member clients
/// switch on). Typed so that no decision ever compares error text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BodyTimeout,
    BodyTooLarge,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    CloseDeclined,
    EventsNotConfigured,
    IdempotencyConflict,
    InvalidAmount,
    InvalidBody,
    InvalidField,
    InvalidJson,
    InvalidOutRefundNo,
    InvalidOutTradeNo,
    InvalidPath,
    InvalidQuery,
    InvalidRequest,
    LedgerUnavailable,
    MethodNotAllowed,
    MissingField,
    NoChannel,
    NotFound,
    NotRefundable,
    OperationUnsupported,
    OrderPaid,
    RateLimited,
    RefundExceedsHeld,
    RefundExceedsPaid,
    ReturnExceedsSplit,
    SplitExceedsHeld,
    SplitNotAllowed,
    SplitPending,
    StatementDamaged,
    StatementNotReady,
    UnknownField,
    UnsupportedCurrency,
    UnsupportedMediaType,
    UnsupportedMethod,
    UnsupportedScene,
}

impl ErrorCode {
    /// Every code, for documentation checks.
    pub const ALL: [ErrorCode; 38] = [
        ErrorCode::BodyTimeout,
        ErrorCode::BodyTooLarge,
        ErrorCode::ChannelOutcomeUnknown,
        ErrorCode::ChannelUnavailable,
        ErrorCode::CloseDeclined,
        ErrorCode::EventsNotConfigured,
        ErrorCode::IdempotencyConflict,
        ErrorCode::InvalidAmount,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidField,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidOutRefundNo,
        ErrorCode::InvalidOutTradeNo,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidRequest,
        ErrorCode::LedgerUnavailable,
        ErrorCode::MethodNotAllowed,
        ErrorCode::MissingField,
        ErrorCode::NoChannel,
        ErrorCode::NotFound,
        ErrorCode::NotRefundable,
        ErrorCode::OperationUnsupported,
        ErrorCode::OrderPaid,
        ErrorCode::RateLimited,
        ErrorCode::RefundExceedsHeld,
        ErrorCode::RefundExceedsPaid,
        ErrorCode::ReturnExceedsSplit,
        ErrorCode::SplitExceedsHeld,
        ErrorCode::SplitNotAllowed,
        ErrorCode::SplitPending,
        ErrorCode::StatementDamaged,
        ErrorCode::StatementNotReady,
        ErrorCode::UnknownField,
        ErrorCode::UnsupportedCurrency,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UnsupportedMethod,
        ErrorCode::UnsupportedScene,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BodyTimeout => "body_timeout",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::ChannelOutcomeUnknown => "channel_outcome_unknown",
            ErrorCode::ChannelUnavailable => "channel_unavailable",
            ErrorCode::CloseDeclined => "close_declined",
            ErrorCode::EventsNotConfigured => "events_not_configured",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::InvalidAmount => "invalid_amount",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidOutRefundNo => "invalid_out_refund_no",
            ErrorCode::InvalidOutTradeNo => "invalid_out_trade_no",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::LedgerUnavailable => "ledger_unavailable",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::NoChannel => "no_channel",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotRefundable => "not_refundable",
            ErrorCode::OperationUnsupported => "operation_unsupported",
            ErrorCode::OrderPaid => "order_paid",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RefundExceedsHeld => "refund_exceeds_held",
            ErrorCode::RefundExceedsPaid => "refund_exceeds_paid",
            ErrorCode::ReturnExceedsSplit => "return_exceeds_split",
            ErrorCode::SplitExceedsHeld => "split_exceeds_held",
            ErrorCode::SplitNotAllowed => "split_not_allowed",
            ErrorCode::SplitPending => "split_pending",
            ErrorCode::StatementDamaged => "statement_damaged",
            ErrorCode::StatementNotReady => "statement_not_ready",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::UnsupportedCurrency => "unsupported_currency",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UnsupportedMethod => "unsupported_method",
            ErrorCode::UnsupportedScene => "unsupported_scene",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
