//! Ping++ wire format: the request signature, webhook signatures, channel names per
//! (method, scene), the error table, and the typed request/response bodies of each operation.
//! Pure functions; `sandbox::pingpp` uses them too.

use serde::{Deserialize, Serialize};

use crate::channels::wire::Known;
use crate::channels::OpKind;
use crate::crypto::{PrivateKey, PublicKey};
use crate::domain::{PayMethod, Scene};
use crate::money::Fen;

/// Header carrying the request time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "Pingplusplus-Request-Timestamp";
/// Header carrying the request signature.
pub const SIGNATURE_HEADER: &str = "Pingplusplus-Signature";
/// Header carrying a webhook's signature.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "X-Pingplusplus-Signature";

/// What a request signature covers: raw body, then the request target (path and query as
/// sent), then the timestamp, with no separators.
pub fn signed_string(body: &str, request_target: &str, timestamp: &str) -> String {
    format!("{body}{request_target}{timestamp}")
}

/// Signs a request (RSA-SHA256 with the merchant key), base64.
pub fn sign_request(key: &PrivateKey, body: &str, request_target: &str, timestamp: &str) -> String {
    key.sign_sha256_b64(signed_string(body, request_target, timestamp).as_bytes())
}

/// Verifies a webhook: RSA-SHA256 over the raw body with the Ping++ public key.
pub fn verify_webhook(key: &PublicKey, body: &[u8], signature_b64: &str) -> bool {
    key.verify_sha256_b64(body, signature_b64)
}

/// The Ping++ channel name for a method and scene, if Ping++ offers it here.
pub fn channel_name(method: PayMethod, scene: Scene) -> Option<&'static str> {
    Some(match (method, scene) {
        (PayMethod::Alipay, Scene::Qr) => "alipay_qr",
        (PayMethod::Alipay, Scene::App) => "alipay",
        (PayMethod::Alipay, Scene::H5) => "alipay_wap",
        (PayMethod::Alipay, Scene::Page) => "alipay_pc_direct",
        (PayMethod::Wechat, Scene::Qr) => "wx_pub_qr",
        (PayMethod::Wechat, Scene::Jsapi) => "wx_pub",
        (PayMethod::Wechat, Scene::App) => "wx",
        (PayMethod::Wechat, Scene::H5) => "wx_wap",
        // Scan channels (alipay_scan, wx_pub_scan) and alipay_lite have unconfirmed fields.
        (PayMethod::Alipay, Scene::Jsapi | Scene::Barcode)
        | (PayMethod::Wechat, Scene::Page | Scene::Barcode) => return None,
    })
}

/// Every (method, scene) Ping++ carries here.
pub fn offered() -> Vec<(PayMethod, Scene)> {
    PayMethod::ALL
        .into_iter()
        .flat_map(|m| Scene::ALL.map(|s| (m, s)))
        .filter(|&(m, s)| channel_name(m, s).is_some())
        .collect()
}

/// Body of a charge request (`POST /v1/charges`). The signature covers the body text, so the
/// field order here is the wire order.
#[derive(Debug, Serialize)]
pub struct ChargeRequest<'a> {
    pub order_no: &'a str,
    pub app: AppRef<'a>,
    pub channel: &'a str,
    pub amount: Fen,
    pub client_ip: &'a str,
    pub currency: &'static str,
    pub subject: String,
    pub body: String,
    pub extra: ChargeExtra<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<i64>,
}

/// `app` of a charge request.
#[derive(Debug, Serialize)]
pub struct AppRef<'a> {
    pub id: &'a str,
}

/// `extra` of a charge request: the one field the channel needs, if any.
#[derive(Debug, Default, Serialize)]
pub struct ChargeExtra<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_url: Option<&'a str>,
}

/// Body of a refund request (`POST /v1/charges/{id}/refunds`).
#[derive(Debug, Serialize)]
pub struct RefundRequest<'a> {
    pub amount: Fen,
    pub description: String,
    pub metadata: RefundMetadata<'a>,
}

/// `metadata` of a refund request: how payroute finds the refund again.
#[derive(Debug, Serialize)]
pub struct RefundMetadata<'a> {
    pub out_refund_no: &'a str,
}

/// A charge object (create and retrieve answers, `charge.succeeded` webhooks).
#[derive(Debug, Deserialize)]
pub struct Charge {
    pub id: Option<String>,
    pub app: Option<String>,
    pub order_no: Option<String>,
    pub paid: Option<bool>,
    pub reversed: Option<bool>,
    pub time_expire: Option<i64>,
    pub amount: Option<Fen>,
    /// Read per channel (`credential.<channel>`) only when a client action is needed.
    pub credential: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `credential.<channel>` that is a link (`alipay_qr`, `wx_pub_qr`, `alipay_wap`,
/// `alipay_pc_direct`, `wx_wap`): plain text or `{ "url": … }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LinkCredential {
    Text(String),
    Object { url: String },
}

/// `credential.alipay` (app pay): plain text or `{ "orderInfo": … }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OrderInfoCredential {
    Text(String),
    Object {
        #[serde(rename = "orderInfo")]
        order_info: String,
    },
}

/// `credential.wx_pub` (JSAPI).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WxPubCredential {
    pub app_id: String,
    pub time_stamp: String,
    pub nonce_str: String,
    pub package: String,
    pub sign_type: String,
    pub pay_sign: String,
}

/// `credential.wx` (app pay).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WxCredential {
    pub app_id: String,
    pub partner_id: String,
    pub prepay_id: String,
    pub package_value: String,
    pub nonce_str: String,
    pub time_stamp: String,
    pub sign: String,
}

/// Refund `status` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundStatus {
    Succeeded,
    Pending,
    Failed,
}

/// A refund object.
#[derive(Debug, Default, Deserialize)]
pub struct Refund {
    pub id: Option<String>,
    pub status: Option<Known<RefundStatus>>,
    pub failure_code: Option<String>,
    pub failure_msg: Option<String>,
    pub metadata: Option<RefundMetadataAnswer>,
}

/// `metadata` of a refund object.
#[derive(Debug, Default, Deserialize)]
pub struct RefundMetadataAnswer {
    pub out_refund_no: Option<String>,
}

/// Answer to a refund or refund query: one refund, or (`object: "list"`) a list of them.
#[derive(Debug, Deserialize)]
pub struct RefundAnswer {
    pub object: Option<String>,
    #[serde(default)]
    pub data: Vec<Refund>,
    #[serde(flatten)]
    pub refund: Refund,
}

/// An error answer: `{ "error": { "type", "code", "message" } }`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorAnswer {
    pub error: Option<ApiError>,
}

/// The `error` of an error answer.
#[derive(Debug, Default, Deserialize)]
pub struct ApiError {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// A webhook event's type (read first: only `charge.succeeded` is read further).
#[derive(Debug, Deserialize)]
pub struct EventType {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A `charge.*` webhook event.
#[derive(Debug, Deserialize)]
pub struct ChargeEvent {
    pub data: Option<ChargeEventData>,
}

/// `data` of a `charge.*` webhook event.
#[derive(Debug, Deserialize)]
pub struct ChargeEventData {
    pub object: Option<Charge>,
}

/// What an error answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Definitely failed: nothing created or moved.
    Failed,
    /// Not accepted at all (credentials, signature): nothing created; another channel may be tried.
    NotAccepted,
    /// Unknown: retrieve (or retry) to learn the outcome.
    Unknown,
    /// The resource does not exist.
    NotFound,
}

/// One row of the error table.
#[derive(Clone, Copy, Debug)]
pub struct ErrorRule {
    pub status: u16,
    /// `None` matches any operation.
    pub op: Option<OpKind>,
    pub disposition: Disposition,
}

const fn rule(status: u16, op: Option<OpKind>, disposition: Disposition) -> ErrorRule {
    ErrorRule {
        status,
        op,
        disposition,
    }
}

use Disposition::{Failed, NotAccepted, NotFound, Unknown};

/// Ping++ HTTP statuses (protocol reference §A5) and what they mean per operation. An
/// operation-specific row wins; anything unlisted is `Unknown`.
pub static ERROR_TABLE: &[ErrorRule] = &[
    rule(400, None, Failed),
    rule(404, None, NotFound),
    rule(404, Some(OpKind::Create), Failed),
    rule(404, Some(OpKind::Refund), Failed),
    rule(401, None, NotAccepted),
    // The payment channel refused; for a charge whose state is unknown, retrieve it.
    rule(402, None, Failed),
    rule(402, Some(OpKind::Query), Unknown),
    rule(402, Some(OpKind::RefundQuery), Unknown),
    // Throttled: the request was refused before processing.
    rule(403, None, NotAccepted),
    rule(403, Some(OpKind::Refund), Unknown),
    rule(500, None, Unknown),
    rule(502, None, Unknown),
    rule(503, None, Unknown),
];

/// Looks up what an HTTP error status means for `op`.
pub fn disposition(status: u16, op: OpKind) -> Disposition {
    ERROR_TABLE
        .iter()
        .filter(|r| r.status == status && r.op.is_none_or(|o| o == op))
        .max_by_key(|r| r.op.is_some())
        .map(|r| r.disposition)
        .unwrap_or(Disposition::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table_rows() {
        let cases = [
            (400, OpKind::Create, Failed),
            (401, OpKind::Create, NotAccepted),
            (401, OpKind::Refund, NotAccepted),
            (402, OpKind::Create, Failed),
            (402, OpKind::Query, Unknown),
            (403, OpKind::Create, NotAccepted),
            (403, OpKind::Refund, Unknown),
            (404, OpKind::Query, NotFound),
            (404, OpKind::RefundQuery, NotFound),
            (404, OpKind::Refund, Failed),
            (500, OpKind::Refund, Unknown),
            (503, OpKind::Create, Unknown),
            (418, OpKind::Create, Unknown),
        ];
        for (status, op, want) in cases {
            assert_eq!(disposition(status, op), want, "{status} {op:?}");
        }
    }

    #[test]
    fn channel_names() {
        assert_eq!(
            channel_name(PayMethod::Alipay, Scene::Qr),
            Some("alipay_qr")
        );
        assert_eq!(
            channel_name(PayMethod::Wechat, Scene::Jsapi),
            Some("wx_pub")
        );
        assert_eq!(channel_name(PayMethod::Wechat, Scene::Barcode), None);
        assert_eq!(offered().len(), 8);
    }
}
