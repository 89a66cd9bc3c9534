//! The WeChat Pay API v3 channel (direct merchant). Builds Authorization-signed requests,
//! verifies every response's `Wechatpay-Signature` (204 included), decrypts notifications.
//! Wire details live in `wechatpay/transformers.rs`, the error table in `wechatpay/errors.rs`.
//!
//! Scenes: `qr` (native), `jsapi`, `app`, `h5`. API v3 offers a direct merchant no barcode
//! (code pay) operation whose fields are confirmed, so `barcode` is not supported here.
//!
//! Profit sharing (`/v3/profitsharing/…`): receivers/add, orders (split), the order query,
//! orders/unfreeze (finish), return-orders and the return query. Receiver names are RSA-OAEP
//! encrypted to the platform key, named in the request's `Wechatpay-Serial`. Returns are taken
//! from merchant receivers only, by a call of their own (not with the refund).
//!
//! Statements: the trade bill of a day (`/v3/bill/tradebill`, gzip, SHA-1 checked by the
//! caller), downloaded with a signed GET whose answer is not signed; `wechatpay/bill.rs`.

pub mod bill;
pub mod errors;
pub mod settings;
pub mod signing;
pub mod transformers;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use self::errors::Disposition;
use self::transformers::{
    self as tf, PlatformKeys, PrepayResponse, RefundResponse, RefundState, TradeState,
    TransactionResponse,
};
use super::{
    BuildError, Channel, ChannelPayState, ChannelRefundState, ChannelReturnState,
    ChannelSplitState, InboundNotification, NotificationEvent, NotifyError, NotifyReply, Op,
    Outcome, PaymentIntent, PaymentReport, Prepared, RawResponse, RefundReport, ReturnReport,
    ShareReport, ShareState, SplitIntent, SplitReport,
};
use crate::bills::{BillError, BillLocation, Lines, StatementFile};
use crate::crypto::{PrivateKey, SymmetricKey};
use crate::domain::{ClientAction, JsapiParams, PayMethod, ReceiverType, Scene, WechatAppParams};
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// The scenes WeChat Pay offers a direct merchant, and the prepay path of each.
pub const SCENES: &[(Scene, &str)] = &[
    (Scene::Qr, "/v3/pay/transactions/native"),
    (Scene::Jsapi, "/v3/pay/transactions/jsapi"),
    (Scene::App, "/v3/pay/transactions/app"),
    (Scene::H5, "/v3/pay/transactions/h5"),
];

/// The receiver types a WeChat Pay split takes (`MERCHANT_ID`, `PERSONAL_OPENID`).
pub const RECEIVER_TYPES: &[ReceiverType] = &[ReceiverType::Merchant, ReceiverType::Openid];

/// `relation_type` of a receiver whose intent names none.
pub const DEFAULT_RELATION: &str = "PARTNER";

/// `description` of an unfreeze (`Op::SplitFinish`), which the intent does not carry.
pub const FINISH_DESCRIPTION: &str = "解冻全部剩余资金";

/// What an operation sends.
#[derive(Debug)]
struct Wire {
    method: &'static str,
    /// Path with query: what the signature covers as the canonical URL.
    path: String,
    body: String,
    /// The platform key serial the body's encrypted fields are for (`Wechatpay-Serial`).
    serial: Option<String>,
}

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

fn wire_type(t: ReceiverType) -> Result<&'static str, BuildError> {
    tf::receiver_type(t).ok_or_else(|| {
        BuildError::Invalid(format!(
            "WeChat Pay splits take merchant and openid receivers, not {}",
            t.as_str()
        ))
    })
}

/// The paid order's `transaction_id`, which every profit-sharing call names.
fn transaction_id(s: &SplitIntent) -> Result<&str, BuildError> {
    s.channel_trade_no.as_deref().ok_or_else(|| {
        BuildError::Invalid("a WeChat Pay split needs the payment's transaction_id".into())
    })
}

fn split_not_found() -> Outcome {
    Outcome::Split(SplitReport {
        state: ChannelSplitState::NotFound,
        channel_split_no: None,
        shares: Vec::new(),
    })
}

fn return_not_found() -> Outcome {
    Outcome::SplitReturn(ReturnReport {
        state: ChannelReturnState::NotFound,
        channel_return_no: None,
        fail_reason: None,
    })
}

/// A profit-sharing return's answer.
fn return_outcome(body: &[u8]) -> Outcome {
    let Some(r) = from_answer::<tf::ReturnResponse>(body) else {
        return unknown("2xx answer is not a profit-sharing return");
    };
    let Some(result) = r.result.as_ref().and_then(|x| x.known()) else {
        return unknown("profit-sharing return answer without a known result");
    };
    Outcome::SplitReturn(ReturnReport {
        state: result.into(),
        channel_return_no: r.return_id,
        fail_reason: r.fail_reason,
    })
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

    /// What an operation sends.
    fn request_parts(&self, op: Op<'_>) -> Result<Wire, BuildError> {
        match op {
            Op::BindReceiver { .. }
            | Op::Split(_)
            | Op::SplitQuery(_)
            | Op::SplitFinish(_)
            | Op::SplitReturn(_)
            | Op::SplitReturnQuery(_) => self.sharing_parts(op),
            Op::BillQuery { date } => Ok(Wire {
                method: "GET",
                path: bill::query_path(date),
                body: String::new(),
                serial: None,
            }),
            _ => self.payment_parts(op).map(|(method, path, body)| Wire {
                method,
                path,
                body,
                serial: None,
            }),
        }
    }

    /// A receiver's `name`, encrypted with the platform key; `serial` becomes that key's serial.
    fn encrypt_name(
        &self,
        name: Option<&str>,
        serial: &mut Option<String>,
    ) -> Result<Option<String>, BuildError> {
        let Some(name) = name else {
            return Ok(None);
        };
        let (key_serial, key) = self.cfg.platform_keys.encryption_key().ok_or_else(|| {
            BuildError::Invalid("no WeChat Pay platform key to encrypt the receiver name".into())
        })?;
        let sealed = key
            .encrypt_oaep_sha1_b64(name.as_bytes())
            .map_err(|e| BuildError::Invalid(format!("receiver name: {e}")))?;
        *serial = Some(key_serial.to_string());
        Ok(Some(sealed))
    }

    /// (method, path with query, body) of a profit-sharing operation, and the serial of the
    /// key a receiver name was encrypted with.
    fn sharing_parts(&self, op: Op<'_>) -> Result<Wire, BuildError> {
        let mut serial = None;
        let (method, path, body) = match op {
            Op::BindReceiver { receiver, .. } => {
                let body = to_json(&tf::ReceiverAddRequest {
                    appid: &self.cfg.appid,
                    kind: wire_type(receiver.receiver_type)?,
                    account: &receiver.account,
                    name: self.encrypt_name(receiver.name.as_deref(), &mut serial)?,
                    relation_type: receiver.relation.as_deref().unwrap_or(DEFAULT_RELATION),
                })?;
                ("POST", "/v3/profitsharing/receivers/add".to_string(), body)
            }
            Op::Split(s) => {
                if s.shares.is_empty() {
                    return Err(BuildError::Invalid("a split needs receivers".into()));
                }
                let mut receivers = Vec::with_capacity(s.shares.len());
                for share in &s.shares {
                    receivers.push(tf::SplitReceiver {
                        kind: wire_type(share.receiver_type)?,
                        account: &share.account,
                        name: self.encrypt_name(share.name.as_deref(), &mut serial)?,
                        amount: share.amount,
                        description: &share.description,
                    });
                }
                let body = to_json(&tf::SplitRequest {
                    appid: &self.cfg.appid,
                    transaction_id: transaction_id(s)?,
                    out_order_no: &s.out_split_no,
                    receivers,
                    unfreeze_unsplit: s.finish,
                })?;
                ("POST", "/v3/profitsharing/orders".to_string(), body)
            }
            Op::SplitQuery(s) => (
                "GET",
                format!(
                    "/v3/profitsharing/orders/{}?transaction_id={}",
                    s.out_split_no,
                    transaction_id(s)?
                ),
                String::new(),
            ),
            Op::SplitFinish(s) => {
                let body = to_json(&tf::UnfreezeRequest {
                    transaction_id: transaction_id(s)?,
                    out_order_no: &s.out_split_no,
                    description: FINISH_DESCRIPTION,
                })?;
                (
                    "POST",
                    "/v3/profitsharing/orders/unfreeze".to_string(),
                    body,
                )
            }
            Op::SplitReturn(r) => {
                // WeChat Pay takes money back from merchant receivers only (`return_mchid`).
                if r.receiver_type != ReceiverType::Merchant {
                    return Err(BuildError::Invalid(format!(
                        "WeChat Pay returns split money from merchant receivers only, not {}",
                        r.receiver_type.as_str()
                    )));
                }
                let body = to_json(&tf::ReturnRequest {
                    out_order_no: &r.out_split_no,
                    out_return_no: &r.out_return_no,
                    return_mchid: &r.account,
                    amount: r.amount,
                    description: &r.description,
                })?;
                ("POST", "/v3/profitsharing/return-orders".to_string(), body)
            }
            Op::SplitReturnQuery(r) => (
                "GET",
                format!(
                    "/v3/profitsharing/return-orders/{}?out_order_no={}",
                    r.out_return_no, r.out_split_no
                ),
                String::new(),
            ),
            _ => return Err(op.unsupported("WeChat Pay")),
        };
        Ok(Wire {
            method,
            path,
            body,
            serial,
        })
    }

    /// (method, path with query, body) of a payment operation.
    fn payment_parts(&self, op: Op<'_>) -> Result<(&'static str, String, String), BuildError> {
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
            Op::BindReceiver { .. } => Outcome::Bound,
            Op::Split(_) | Op::SplitQuery(_) | Op::SplitFinish(_) => self.split_outcome(body),
            Op::SplitReturn(_) | Op::SplitReturnQuery(_) => return_outcome(body),
            Op::BillQuery { .. } => bill::location(body),
        }
    }

    /// A profit-sharing order's answer. The merchant itself may be listed (the unfreeze of
    /// what was not shared); it is not a receiver of the split.
    fn split_outcome(&self, body: &[u8]) -> Outcome {
        let Some(o) = from_answer::<tf::SplitOrderResponse>(body) else {
            return unknown("2xx answer is not a profit-sharing order");
        };
        let Some(state) = o.state.as_ref().and_then(|s| s.known()) else {
            return unknown("profit-sharing answer without a known state");
        };
        let mut shares = Vec::with_capacity(o.receivers.len());
        for r in o.receivers {
            if r.account.as_deref() == Some(self.cfg.mchid.as_str()) {
                continue;
            }
            let result = r.result.as_ref().and_then(|x| x.known());
            let (Some(account), Some(amount), Some(result)) = (r.account, r.amount, result) else {
                return unknown("profit-sharing receiver without account, amount or known result");
            };
            shares.push(ShareReport {
                account,
                amount,
                state: result.into(),
                fail_reason: r.fail_reason,
                detail_id: r.detail_id,
            });
        }
        let state = ChannelSplitState::from(state);
        if state == ChannelSplitState::Finished
            && shares.iter().any(|s| s.state == ShareState::Pending)
        {
            return unknown("profit-sharing order FINISHED with a PENDING receiver");
        }
        Outcome::Split(SplitReport {
            state,
            channel_split_no: o.order_id,
            shares,
        })
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
                Op::Split(_) | Op::SplitQuery(_) | Op::SplitFinish(_) => split_not_found(),
                Op::SplitReturn(_) | Op::SplitReturnQuery(_) => return_not_found(),
                Op::BindReceiver { .. } => Outcome::Declined { code, message },
                Op::BillQuery { .. } => Outcome::BillNotReady,
                Op::Create(_) | Op::Query { .. } | Op::Close { .. } | Op::Cancel { .. } => {
                    pay_report(ChannelPayState::NotFound, None)
                }
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

    /// Builds the signed request for `op` at time `now` with this Authorization nonce (`build`
    /// draws a random one; the test vectors fix it).
    pub fn build_signed(
        &self,
        op: Op<'_>,
        now: DateTime<Utc>,
        nonce: &str,
    ) -> Result<Prepared, BuildError> {
        let Wire {
            method,
            path,
            body,
            serial,
        } = self.request_parts(op)?;
        let url = format!("{}{path}", self.cfg.base_url.trim_end_matches('/'));
        let mut req = self.signed_request(method, &url, &path, now, nonce, &body);
        if let Some(serial) = serial {
            // Names the platform key the body's encrypted fields are for.
            req = req.header("Wechatpay-Serial", serial);
        }
        req.body(Bytes::from(body))
            .map(Prepared::Send)
            .map_err(|e| BuildError::Invalid(format!("endpoint URL: {e}")))
    }

    /// The download of a bill file at time `now` with this Authorization nonce: a GET signed
    /// over the URL's path and query (`download_request` draws a random nonce).
    pub fn download_signed(
        &self,
        location: &BillLocation,
        now: DateTime<Utc>,
        nonce: &str,
    ) -> Result<http::Request<Bytes>, BuildError> {
        let invalid = || BuildError::Invalid(format!("bill download_url {:?}", location.url));
        let uri: http::Uri = location.url.parse().map_err(|_| invalid())?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
            return Err(invalid());
        }
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .ok_or_else(invalid)?;
        self.signed_request("GET", &location.url, path, now, nonce, "")
            .body(Bytes::new())
            .map_err(|_| invalid())
    }

    /// A request to `url` with the Authorization over `method`, `path` (with query), `now`,
    /// `nonce` and `body`.
    fn signed_request(
        &self,
        method: &str,
        url: &str,
        path: &str,
        now: DateTime<Utc>,
        nonce: &str,
        body: &str,
    ) -> http::request::Builder {
        let auth = tf::Authorization::sign(
            &self.cfg.mchid,
            &self.cfg.merchant_serial,
            &self.cfg.merchant_key,
            &tf::Message {
                method,
                canonical_url: path,
                timestamp: &now.timestamp().to_string(),
                nonce,
                body,
            },
        );
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::AUTHORIZATION, auth.header())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("payroute/", env!("CARGO_PKG_VERSION")),
            );
        if !body.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        req
    }

    /// [`Channel::parse`] at `now` (Unix seconds): the response's signature, then its fields.
    pub fn parse_at(&self, op: Op<'_>, response: &RawResponse, now: i64) -> Outcome {
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

    fn receiver_types(&self) -> &'static [ReceiverType] {
        RECEIVER_TYPES
    }

    /// `return_mchid` names a merchant: money comes back only from merchant receivers.
    fn returnable(&self, receiver_type: ReceiverType) -> bool {
        receiver_type == ReceiverType::Merchant
    }

    /// `receivers/add` wants the merchant's registered name for a merchant receiver.
    fn requires_name(&self, receiver_type: ReceiverType) -> bool {
        receiver_type == ReceiverType::Merchant
    }

    fn can_finish_alone(&self) -> bool {
        true
    }

    fn build(&self, op: Op<'_>, now: DateTime<Utc>) -> Result<Prepared, BuildError> {
        self.build_signed(op, now, &nonce())
    }

    /// The answer is the file itself and is not signed: the caller checks its SHA-1.
    fn download_request(
        &self,
        location: &BillLocation,
        now: DateTime<Utc>,
    ) -> Result<http::Request<Bytes>, BuildError> {
        self.download_signed(location, now, &nonce())
    }

    fn statement_lines(&self, file: StatementFile) -> Result<Lines, BillError> {
        bill::lines(file)
    }

    fn parse(&self, op: Op<'_>, response: &RawResponse) -> Outcome {
        self.parse_at(op, response, Utc::now().timestamp())
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
