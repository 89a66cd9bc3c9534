//! The WeChat Pay API v3 channel (direct merchant). Builds Authorization-signed requests,
//! verifies every response's `Wechatpay-Signature` (204 included), decrypts notifications.
//! Wire details live in `wechatpay/transformers.rs`, the error table in `wechatpay/errors.rs`.
//!
//! Scenes: `qr` (native), `jsapi`, `app`, `h5`. API v3 offers a direct merchant no barcode
//! (code pay) operation whose fields are confirmed, so `barcode` is not supported here.

pub mod errors;
pub mod settings;
pub mod signing;
pub mod transformers;

use std::sync::Arc;

use self::errors::Disposition;
use self::transformers::{
    self as tf, PlatformKeys, PrepayResponse, RefundResponse, RefundState, TradeState,
    TransactionResponse,
};
use super::{
    BuildError, Channel, ChannelPayState, ChannelRefundState, InboundNotification,
    NotificationEvent, NotifyError, NotifyReply, Op, Outcome, PaymentIntent, PaymentReport,
    Prepared, RawResponse, RefundReport,
};
use crate::crypto::{PrivateKey, SymmetricKey};
use crate::domain::{ClientAction, JsapiParams, PayMethod, Scene, WechatAppParams};
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// The scenes WeChat Pay offers a direct merchant, and the prepay path of each.
pub const SCENES: &[(Scene, &str)] = &[
    (Scene::Qr, "/v3/pay/transactions/native"),
    (Scene::Jsapi, "/v3/pay/transactions/jsapi"),
    (Scene::App, "/v3/pay/transactions/app"),
    (Scene::H5, "/v3/pay/transactions/h5"),
];

/// Everything the adapter needs, compiled from routes.yaml.
#[derive(Debug)]
pub struct WechatPayConfig {
    pub name: String,
    pub mchid: String,
    pub appid: String,
    /// Base URL, e.g. `https://api.mch.weixin.qq.com`.
    pub base_url: String,
    pub merchant_key: Arc<PrivateKey>,
    /// Serial of the merchant API certificate (upper-case hex).
    pub merchant_serial: String,
    /// Keys responses and notifications may be signed with (certificate serials or a public-key id).
    pub platform_keys: PlatformKeys,
    pub apiv3_key: Arc<SymmetricKey>,
    pub notify_url: Option<String>,
    pub scenes: Vec<Scene>,
}

/// The WeChat Pay adapter.
#[derive(Debug)]
pub struct WechatPay {
    cfg: WechatPayConfig,
}

fn unknown(reason: impl Into<String>) -> Outcome {
    Outcome::Unknown {
        reason: reason.into(),
    }
}

fn pay_report(state: ChannelPayState, action: Option<ClientAction>) -> Outcome {
    Outcome::Payment(PaymentReport {
        state,
        channel_trade_no: None,
        amount: None,
        action,
    })
}

/// A request body as JSON text (what the signature covers).
fn to_json(body: &impl serde::Serialize) -> Result<String, BuildError> {
    serde_json::to_string(body).map_err(|e| BuildError::Invalid(format!("request body: {e}")))
}

/// A 2xx answer's typed body; an empty body (204) reads as all fields absent.
fn from_answer<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Option<T> {
    if body.is_empty() {
        Some(T::default())
    } else {
        serde_json::from_slice(body).ok()
    }
}

fn nonce() -> String {
    crate::crypto::random_hex(16).to_ascii_uppercase()
}

impl WechatPay {
    /// Creates the adapter.
    pub fn new(cfg: WechatPayConfig) -> Self {
        WechatPay { cfg }
    }

    fn create_body(&self, p: &PaymentIntent) -> Result<String, BuildError> {
        let (payer, scene_info) = match p.scene {
            Scene::Jsapi => {
                let openid = p
                    .payer_id
                    .as_deref()
                    .ok_or_else(|| BuildError::Invalid("jsapi payments need payer_id".into()))?;
                (Some(tf::Payer { openid }), None)
            }
            Scene::H5 => {
                let ip = p.client_ip.as_deref().ok_or_else(|| {
                    BuildError::Invalid("WeChat H5 payments need client_ip".into())
                })?;
                let scene = tf::SceneInfo {
                    payer_client_ip: ip,
                    h5_info: Some(tf::H5Info { kind: "Wap" }),
                };
                (None, Some(scene))
            }
            _ => {
                let scene = p.client_ip.as_deref().map(|ip| tf::SceneInfo {
                    payer_client_ip: ip,
                    h5_info: None,
                });
                (None, scene)
            }
        };
        to_json(&tf::PrepayRequest {
            appid: &self.cfg.appid,
            mchid: &self.cfg.mchid,
            description: &p.subject,
            out_trade_no: &p.out_trade_no,
            notify_url: self.cfg.notify_url.as_deref().unwrap_or_default(),
            amount: tf::PrepayAmount {
                total: p.amount,
                currency: tf::CNY,
            },
            time_expire: p.expires_at.map(tf::china_rfc3339),
            payer,
            scene_info,
            settle_info: p.split.then_some(tf::SettleInfo {
                profit_sharing: true,
            }),
        })
    }

    /// (method, path with query, body) of an operation.
    fn request_parts(&self, op: Op<'_>) -> Result<(&'static str, String, String), BuildError> {
        let mchid = &self.cfg.mchid;
        Ok(match op {
            Op::Create(p) => {
                let path = SCENES
                    .iter()
                    .find(|(s, _)| *s == p.scene)
                    .map(|(_, path)| *path)
                    .ok_or_else(|| {
                        BuildError::Unsupported(format!(
                            "wechatpay has no {} scene",
                            p.scene.as_str()
                        ))
                    })?;
                ("POST", path.to_string(), self.create_body(p)?)
            }
            Op::Query { out_trade_no, .. } => (
                "GET",
                format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={mchid}"),
                String::new(),
            ),
            Op::Close { out_trade_no, .. } | Op::Cancel { out_trade_no, .. } => (
                "POST",
                format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close"),
                to_json(&tf::CloseRequest { mchid })?,
            ),
            Op::Refund(r) => {
                let body = to_json(&tf::RefundRequest {
                    out_trade_no: &r.out_trade_no,
                    out_refund_no: &r.out_refund_no,
                    amount: tf::RefundAmount {
                        refund: r.amount,
                        total: r.total,
                        currency: tf::CNY,
                    },
                    reason: r.reason.as_deref(),
                })?;
                ("POST", "/v3/refund/domestic/refunds".to_string(), body)
            }
            Op::RefundQuery(r) => (
                "GET",
                format!("/v3/refund/domestic/refunds/{}", r.out_refund_no),
                String::new(),
            ),
            _ => return Err(op.unsupported("WeChat Pay")),
        })
    }

    fn interpret_success(&self, op: Op<'_>, body: &[u8], now: i64) -> Outcome {
        match op {
            Op::Create(p) => {
                let Some(r) = from_answer::<PrepayResponse>(body) else {
                    return unknown("2xx answer is not JSON");
                };
                let action = match p.scene {
                    Scene::Qr => r.code_url.map(|code_url| ClientAction::QrCode { code_url }),
                    Scene::H5 => r.h5_url.map(|url| ClientAction::Redirect { url }),
                    Scene::Jsapi => r.prepay_id.map(|id| self.jsapi_action(&id, now)),
                    Scene::App => r.prepay_id.map(|id| self.app_action(&id, now)),
                    Scene::Page | Scene::Barcode => None,
                };
                match action {
                    Some(a) => pay_report(ChannelPayState::Waiting, Some(a)),
                    None => unknown("prepay answer lacks the expected field"),
                }
            }
            Op::Query { .. } => {
                let Some(t) = from_answer::<TransactionResponse>(body) else {
                    return unknown("2xx answer is not JSON");
                };
                let Some(state) = t.trade_state.as_ref().and_then(|s| s.known()) else {
                    return unknown("query answer without a known trade_state");
                };
                Outcome::Payment(PaymentReport {
                    state: state.into(),
                    amount: t.total(),
                    channel_trade_no: t.transaction_id,
                    action: None,
                })
            }
            Op::Close { .. } | Op::Cancel { .. } => {
                match from_answer::<serde::de::IgnoredAny>(body) {
                    Some(_) => Outcome::Closed,
                    None => unknown("2xx answer is not JSON"),
                }
            }
            Op::Refund(_) | Op::RefundQuery(_) => {
                let Some(r) = from_answer::<RefundResponse>(body) else {
                    return unknown("2xx answer is not JSON");
                };
                let Some(state) = r.status.as_ref().and_then(|s| s.known()) else {
                    return unknown("refund answer without a known status");
                };
                let state = match state {
                    RefundState::Success => ChannelRefundState::Succeeded,
                    // ABNORMAL: money left the merchant but did not reach the buyer; it needs
                    // attention, it is not a failure that frees the amount again.
                    RefundState::Processing | RefundState::Abnormal => {
                        ChannelRefundState::Processing
                    }
                    RefundState::Closed => {
                        return Outcome::Declined {
                            code: "REFUND_CLOSED".into(),
                            message: "the refund was closed by WeChat Pay".into(),
                        }
                    }
                };
                Outcome::Refund(RefundReport {
                    state,
                    channel_refund_no: r.refund_id,
                })
            }
            _ => unknown("answer to an operation this adapter does not send"),
        }
    }

    fn interpret_error(op: Op<'_>, status: u16, body: &[u8]) -> Outcome {
        let answer: tf::ErrorResponse = serde_json::from_slice(body).unwrap_or_default();
        let (code, message) = (
            answer.code.unwrap_or_default(),
            answer.message.unwrap_or_default(),
        );
        if code.is_empty() {
            return unknown(format!("HTTP {status} without an error code"));
        }
        match errors::disposition(status, &code, op.kind()) {
            Disposition::Failed => Outcome::Declined { code, message },
            Disposition::NotAccepted => Outcome::NotAccepted { code, message },
            Disposition::Unknown => unknown(format!("HTTP {status} {code}: {message}")),
            Disposition::NotFound => match op {
                Op::Refund(_) | Op::RefundQuery(_) => Outcome::Refund(RefundReport {
                    state: ChannelRefundState::NotFound,
                    channel_refund_no: None,
                }),
                _ => pay_report(ChannelPayState::NotFound, None),
            },
        }
    }

    fn jsapi_action(&self, prepay_id: &str, now: i64) -> ClientAction {
        let (ts, nonce, package) = (now.to_string(), nonce(), format!("prepay_id={prepay_id}"));
        let pay_sign = tf::jsapi_pay_sign(
            &self.cfg.merchant_key,
            &self.cfg.appid,
            &ts,
            &nonce,
            &package,
        );
        ClientAction::JsapiPay {
            params: Box::new(JsapiParams {
                app_id: self.cfg.appid.clone(),
                time_stamp: ts,
                nonce_str: nonce,
                package,
                sign_type: "RSA".into(),
                pay_sign,
            }),
        }
    }

    fn app_action(&self, prepay_id: &str, now: i64) -> ClientAction {
        let (ts, nonce) = (now.to_string(), nonce());
        let sign = tf::app_pay_sign(
            &self.cfg.merchant_key,
            &self.cfg.appid,
            &ts,
            &nonce,
            prepay_id,
        );
        ClientAction::WechatAppPay {
            params: Box::new(WechatAppParams {
                appid: self.cfg.appid.clone(),
                partnerid: self.cfg.mchid.clone(),
                prepayid: prepay_id.to_string(),
                package: "Sign=WXPay".into(),
                noncestr: nonce,
                timestamp: ts,
                sign,
            }),
        }
    }

    /// Verifies, decrypts and translates a notification at time `now` (Unix seconds).
    pub fn verify_notification_at(
        &self,
        n: &InboundNotification<'_>,
        now: i64,
    ) -> Result<NotificationEvent, NotifyError> {
        tf::verify(n.headers, n.body, &self.cfg.platform_keys, now).map_err(|e| match e {
            tf::VerifyError::Stale => NotifyError::Stale,
            _ => NotifyError::BadSignature,
        })?;
        let envelope: tf::NotificationBody = serde_json::from_slice(n.body)
            .map_err(|_| NotifyError::Malformed("body is not JSON".into()))?;
        let event_type = envelope.event_type.unwrap_or_default();
        let r = envelope
            .resource
            .ok_or_else(|| NotifyError::Malformed("no resource".into()))?;
        if r.algorithm != "AEAD_AES_256_GCM" {
            return Err(NotifyError::Malformed(
                "unsupported resource algorithm".into(),
            ));
        }
        let plain = tf::decrypt_resource(
            &self.cfg.apiv3_key,
            &r.nonce,
            &r.associated_data,
            &r.ciphertext,
        )
        .ok_or(NotifyError::Undecryptable)?;
        let t: TransactionResponse = serde_json::from_slice(&plain)
            .map_err(|_| NotifyError::Malformed("resource is not JSON".into()))?;
        if t.mchid.as_deref() != Some(self.cfg.mchid.as_str()) {
            return Err(NotifyError::WrongAccount);
        }
        if event_type != "TRANSACTION.SUCCESS" {
            return Ok(NotificationEvent::Ignored { event_type });
        }
        if t.appid.as_deref() != Some(self.cfg.appid.as_str()) {
            return Err(NotifyError::WrongAccount);
        }
        let amount = t.total();
        let out_trade_no = t
            .out_trade_no
            .ok_or_else(|| NotifyError::Malformed("no out_trade_no".into()))?;
        let amount = amount.ok_or_else(|| NotifyError::Malformed("no amount".into()))?;
        let state = match t.trade_state.as_ref().and_then(|s| s.known()) {
            Some(TradeState::Success) => ChannelPayState::Paid,
            _ => {
                return Err(NotifyError::Malformed(
                    "TRANSACTION.SUCCESS without trade_state SUCCESS".into(),
                ))
            }
        };
        Ok(NotificationEvent::Payment {
            out_trade_no,
            report: PaymentReport {
                state,
                channel_trade_no: t.transaction_id,
                amount: Some(amount),
                action: None,
            },
        })
    }
}

impl Channel for WechatPay {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "wechatpay"
    }

    fn supports(&self, method: PayMethod, scene: Scene) -> bool {
        method == PayMethod::Wechat
            && self.cfg.scenes.contains(&scene)
            && SCENES.iter().any(|(s, _)| *s == scene)
    }

    fn can_split(&self) -> bool {
        true
    }

    fn build(&self, op: Op<'_>, now: DateTime<Utc>) -> Result<Prepared, BuildError> {
        let (method, path, body) = self.request_parts(op)?;
        let auth = tf::Authorization::sign(
            &self.cfg.mchid,
            &self.cfg.merchant_serial,
            &self.cfg.merchant_key,
            &tf::Message {
                method,
                canonical_url: &path,
                timestamp: &now.timestamp().to_string(),
                nonce: &nonce(),
                body: &body,
            },
        );
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.cfg.base_url.trim_end_matches('/')))
            .header(http::header::AUTHORIZATION, auth.header())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("payroute/", env!("CARGO_PKG_VERSION")),
            );
        if !body.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        req.body(Bytes::from(body))
            .map(Prepared::Send)
            .map_err(|e| BuildError::Invalid(format!("endpoint URL: {e}")))
    }

    fn parse(&self, op: Op<'_>, response: &RawResponse) -> Outcome {
        let now = Utc::now().timestamp();
        if let Err(e) = tf::verify(
            &response.headers,
            &response.body,
            &self.cfg.platform_keys,
            now,
        ) {
            return unknown(format!("response rejected: {e} (HTTP {})", response.status));
        }
        if (200..300).contains(&response.status) {
            self.interpret_success(op, &response.body, now)
        } else {
            Self::interpret_error(op, response.status, &response.body)
        }
    }

    fn verify_notification(
        &self,
        n: &InboundNotification<'_>,
    ) -> Result<NotificationEvent, NotifyError> {
        self.verify_notification_at(n, Utc::now().timestamp())
    }

    fn notify_reply(&self, accepted: bool) -> NotifyReply {
        if accepted {
            NotifyReply {
                status: 204,
                content_type: "application/json",
                body: Bytes::new(),
            }
        } else {
            // Any 4xx/5xx makes WeChat Pay retry on its schedule.
            NotifyReply {
                status: 400,
                content_type: "application/json",
                body: Bytes::from_static(br#"{"code":"FAIL","message":"rejected"}"#),
            }
        }
    }
}
