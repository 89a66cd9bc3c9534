//! The WeChat Pay API v3 simulator: verifies the Authorization header as the gateway does
//! (wrong signature, stale timestamp or unknown serial → 401 SIGN_ERROR), keeps transactions
//! and refunds, signs every response with its platform key, and sends encrypted, signed
//! notifications when a transaction is paid through the sandbox control.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::shared::{conflict, not_found};
use super::{
    ControlError, Credentials, FaultKind, GatewayRequest, Outgoing, Sim, SimChannel, Simulator,
};
use crate::channels::wechatpay::transformers::{
    self as tf, Authorization, RefundState, TradeState,
};
use crate::crypto::{PrivateKey, PublicKey, SymmetricKey};

#[derive(Debug, Clone)]
struct Refund {
    refund_id: String,
    amount: u64,
    status: RefundState,
    created: String,
}

#[derive(Debug, Clone)]
struct Transaction {
    out_trade_no: String,
    transaction_id: String,
    trade_type: &'static str,
    amount: u64,
    /// The request fields that define the order (to detect inconsistent repeats).
    content: String,
    state: TradeState,
    prepay: Value,
    notify_url: Option<String>,
    success_time: Option<String>,
    refunds: BTreeMap<String, Refund>,
}

impl Transaction {
    fn refunded(&self) -> u64 {
        self.refunds
            .values()
            .filter(|r| r.status != RefundState::Closed)
            .map(|r| r.amount)
            .sum()
    }
}

/// How to spoil a notification, for tests of payroute's defences.
#[derive(Debug, Default, Clone)]
pub struct Forgery {
    /// Encrypt with this key instead of the merchant's APIv3 key.
    pub wrong_apiv3_key: Option<Arc<SymmetricKey>>,
    /// Sign with this key instead of the platform key.
    pub wrong_signing_key: Option<Arc<PrivateKey>>,
    /// Shift the signed timestamp by this many seconds.
    pub timestamp_offset_secs: i64,
    /// Report this amount instead of the real one.
    pub amount: Option<u64>,
}

/// A notification ready to send: headers and body.
#[derive(Debug, Clone)]
pub struct SignedNotification {
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The simulator of one WeChat Pay channel.
pub type WechatSim = Sim<Gateway>;

/// The WeChat Pay API v3 gateway's side of the protocol.
#[derive(Debug)]
pub struct Gateway {
    mchid: String,
    appid: String,
    merchant_key: PublicKey,
    merchant_serial: String,
    platform_key: Arc<PrivateKey>,
    platform_key_id: String,
    apiv3_key: Arc<SymmetricKey>,
    trades: Mutex<HashMap<String, Transaction>>,
    seq: AtomicU64,
}

type Answer = (StatusCode, Value);

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, json!({ "code": code, "message": message }))
}

fn now_rfc3339() -> String {
    tf::china_rfc3339(Utc::now())
}

impl Gateway {
    fn trades(&self) -> std::sync::MutexGuard<'_, HashMap<String, Transaction>> {
        self.trades.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{}{:012}", Utc::now().format("%Y%m%d"), n)
    }

    /// The simulator's view of a transaction.
    pub fn order_view(&self, out_trade_no: &str) -> Option<Value> {
        self.trades().get(out_trade_no).map(|t| {
            json!({
                "out_trade_no": t.out_trade_no, "transaction_id": t.transaction_id,
                "trade_state": t.state.as_str(), "amount": t.amount, "refunded": t.refunded(),
                "refunds": t.refunds.iter().map(|(k, r)| (k.clone(), json!({"amount": r.amount, "status": r.status.as_str()}))).collect::<serde_json::Map<_, _>>(),
            })
        })
    }

    fn pay_as(&self, out_trade_no: &str, even_if_closed: bool) -> Result<Value, ControlError> {
        {
            let mut trades = self.trades();
            let t = trades
                .get_mut(out_trade_no)
                .ok_or_else(|| not_found("ORDER_NOT_EXIST", "no such transaction"))?;
            match t.state {
                TradeState::NotPay | TradeState::UserPaying => {}
                TradeState::Closed | TradeState::Revoked if even_if_closed => {}
                TradeState::Closed | TradeState::Revoked | TradeState::PayError => {
                    return Err(conflict("ORDER_CLOSED", "the transaction is closed"))
                }
                TradeState::Success | TradeState::Refund => {
                    return Err(conflict("ORDER_PAID", "the transaction is already paid"))
                }
            }
            t.state = TradeState::Success;
            t.success_time = Some(now_rfc3339());
        }
        Ok(self.order_view(out_trade_no).unwrap_or(Value::Null))
    }

    fn transaction_json(&self, t: &Transaction, amount: Option<u64>) -> Value {
        let mut v = json!({
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": t.out_trade_no,
            "trade_type": t.trade_type, "trade_state": t.state.as_str(),
            "trade_state_desc": match t.state { TradeState::Success => "支付成功", TradeState::NotPay => "未支付", _ => "" },
            "amount": { "total": amount.unwrap_or(t.amount), "currency": "CNY" },
        });
        if let Some(time) = &t.success_time {
            v["transaction_id"] = json!(t.transaction_id);
            v["success_time"] = json!(time);
            v["bank_type"] = json!("OTHERS");
            v["payer"] = json!({ "openid": "oSandboxPayer0000000000000000" });
            v["amount"]["payer_total"] = json!(amount.unwrap_or(t.amount));
            v["amount"]["payer_currency"] = json!("CNY");
        }
        v
    }

    /// A signed, encrypted `TRANSACTION.SUCCESS` notification for the transaction's current
    /// state, optionally spoiled as `forgery` says.
    pub fn notification(
        &self,
        out_trade_no: &str,
        forgery: &Forgery,
    ) -> Option<SignedNotification> {
        let t = self.trades().get(out_trade_no).cloned()?;
        let plaintext = self.transaction_json(&t, forgery.amount).to_string();
        let nonce = &crate::crypto::random_hex(6);
        let key = forgery.wrong_apiv3_key.as_ref().unwrap_or(&self.apiv3_key);
        let ciphertext = tf::encrypt_resource(key, nonce, "transaction", plaintext.as_bytes())?;
        let body = json!({
            "id": format!("EV-{}", crate::crypto::random_hex(10)),
            "create_time": now_rfc3339(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext, "associated_data": "transaction", "nonce": nonce,
            },
        })
        .to_string();
        let signer = forgery
            .wrong_signing_key
            .as_ref()
            .unwrap_or(&self.platform_key);
        let ts = Utc::now().timestamp() + forgery.timestamp_offset_secs;
        let headers = tf::signature_headers(
            signer,
            &self.platform_key_id,
            ts,
            &crate::crypto::random_hex(16),
            body.as_bytes(),
        );
        Some(SignedNotification { headers, body })
    }

    fn authenticate(&self, req: &GatewayRequest) -> Result<(), Answer> {
        let (method, uri, body) = (&req.method, &req.uri, &req.body[..]);
        let sign_error = |m: &str| error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", m);
        let header = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| sign_error("Authorization header is missing"))?;
        let auth = Authorization::parse(header)
            .ok_or_else(|| sign_error("Authorization header is malformed"))?;
        if auth.mchid != self.mchid {
            return Err(sign_error("mchid does not match the certificate"));
        }
        if !auth.serial_no.eq_ignore_ascii_case(&self.merchant_serial) {
            return Err(sign_error("merchant certificate serial_no not found"));
        }
        let ts: i64 = auth
            .timestamp
            .parse()
            .map_err(|_| sign_error("timestamp is not a number"))?;
        if (Utc::now().timestamp() - ts).abs() > tf::MAX_CLOCK_SKEW_SECS {
            return Err(sign_error("timestamp expired"));
        }
        let url = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let body = std::str::from_utf8(body).map_err(|_| sign_error("body is not UTF-8"))?;
        let message =
            tf::request_message(method.as_str(), url, &auth.timestamp, &auth.nonce_str, body);
        if !self
            .merchant_key
            .verify_sha256_b64(message.as_bytes(), &auth.signature)
        {
            return Err(sign_error("signature verification failed"));
        }
        Ok(())
    }

    fn prepay(&self, trade_type: &'static str, body: &Value) -> Answer {
        let s = |p: &str| {
            body.pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        if s("/mchid") != self.mchid {
            return error(
                StatusCode::BAD_REQUEST,
                "MCH_NOT_EXISTS",
                "mchid does not exist",
            );
        }
        if s("/appid") != self.appid {
            return error(
                StatusCode::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "appid and mchid do not match",
            );
        }
        let no = s("/out_trade_no");
        let total = body
            .pointer("/amount/total")
            .and_then(|v| v.as_u64())
            .filter(|t| *t > 0);
        let Some(total) = total else {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "amount.total must be a positive integer",
            );
        };
        if !(6..=32).contains(&no.len())
            || s("/description").is_empty()
            || s("/notify_url").is_empty()
        {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "out_trade_no, description and notify_url are required",
            );
        }
        if body
            .pointer("/amount/currency")
            .and_then(|v| v.as_str())
            .is_some_and(|c| c != "CNY")
        {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "currency must be CNY",
            );
        }
        if trade_type == "JSAPI" && s("/payer/openid").is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "payer.openid is required",
            );
        }
        if trade_type == "MWEB" && s("/scene_info/payer_client_ip").is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "scene_info.payer_client_ip is required",
            );
        }
        let content = format!("{trade_type}|{total}|{}", s("/description"));
        let mut trades = self.trades();
        if let Some(t) = trades.get(&no) {
            if t.content != content {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "out_trade_no was used with different parameters",
                );
            }
            return match t.state {
                TradeState::NotPay => (StatusCode::OK, t.prepay.clone()),
                TradeState::Closed | TradeState::Revoked => {
                    error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "order is closed")
                }
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "order is already paid",
                ),
            };
        }
        let prepay_id = format!("wx{}", crate::crypto::random_hex(14));
        let prepay = match trade_type {
            "NATIVE" => {
                json!({ "code_url": format!("weixin://wxpay/bizpayurl?pr={}", crate::crypto::random_hex(5)) })
            }
            "MWEB" => {
                json!({ "h5_url": format!("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package=2150917749") })
            }
            _ => json!({ "prepay_id": prepay_id }),
        };
        trades.insert(
            no.clone(),
            Transaction {
                out_trade_no: no,
                transaction_id: self.next_id("4200"),
                trade_type,
                amount: total,
                content,
                state: TradeState::NotPay,
                prepay: prepay.clone(),
                notify_url: Some(s("/notify_url")),
                success_time: None,
                refunds: BTreeMap::new(),
            },
        );
        (StatusCode::OK, prepay)
    }

    fn refund(&self, body: &Value) -> Answer {
        let s = |p: &str| {
            body.pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (no, refund_no) = (s("/out_trade_no"), s("/out_refund_no"));
        let amount = body
            .pointer("/amount/refund")
            .and_then(|v| v.as_u64())
            .filter(|a| *a > 0);
        let total = body.pointer("/amount/total").and_then(|v| v.as_u64());
        let (Some(amount), Some(total)) = (amount, total) else {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "amount.refund and amount.total are required",
            );
        };
        if refund_no.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "out_refund_no is required",
            );
        }
        let mut trades = self.trades();
        let Some(t) = trades.get_mut(&no) else {
            return error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "order does not exist",
            );
        };
        if total != t.amount {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "amount.total does not match the order",
            );
        }
        if let Some(r) = t.refunds.get(&refund_no) {
            if r.amount != amount {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "out_refund_no was used with a different amount",
                );
            }
            let r = r.clone();
            return (StatusCode::OK, refund_json(t, &refund_no, &r));
        }
        if !matches!(t.state, TradeState::Success | TradeState::Refund) {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "the order is not paid",
            );
        }
        if amount > t.amount - t.refunded() {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "refund amount exceeds the refundable amount",
            );
        }
        let r = Refund {
            refund_id: self.next_id("5030"),
            amount,
            status: RefundState::Processing,
            created: now_rfc3339(),
        };
        t.refunds.insert(refund_no.clone(), r.clone());
        t.state = TradeState::Refund;
        (StatusCode::OK, refund_json(t, &refund_no, &r))
    }

    fn refund_query(&self, refund_no: &str) -> Answer {
        let mut trades = self.trades();
        for t in trades.values_mut() {
            if let Some(r) = t.refunds.get_mut(refund_no) {
                // Refunds settle between the refund call and the first query.
                if r.status == RefundState::Processing {
                    r.status = RefundState::Success;
                }
                let r = r.clone();
                return (StatusCode::OK, refund_json(t, refund_no, &r));
            }
        }
        error(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_EXISTS",
            "refund does not exist",
        )
    }

    fn route(&self, req: &GatewayRequest) -> Answer {
        let (method, uri, body) = (&req.method, &req.uri, &req.body[..]);
        let path = uri.path();
        let json_body = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        let prepay_types = [
            ("native", "NATIVE"),
            ("jsapi", "JSAPI"),
            ("app", "APP"),
            ("h5", "MWEB"),
        ];
        if *method == Method::POST {
            if let Some(kind) = path.strip_prefix("/v3/pay/transactions/") {
                if let Some((_, t)) = prepay_types.iter().find(|(k, _)| *k == kind) {
                    return self.prepay(t, &json_body());
                }
                if let Some(no) = kind
                    .strip_prefix("out-trade-no/")
                    .and_then(|r| r.strip_suffix("/close"))
                {
                    return self.close(no, &json_body());
                }
            }
            if path == "/v3/refund/domestic/refunds" {
                return self.refund(&json_body());
            }
        }
        if *method == Method::GET {
            if let Some(no) = path.strip_prefix("/v3/pay/transactions/out-trade-no/") {
                let mchid = uri.query().and_then(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "mchid")
                        .map(|(_, v)| v.into_owned())
                });
                let answer = match (mchid, self.trades().get(no)) {
                    (Some(m), _) if m != self.mchid => error(
                        StatusCode::BAD_REQUEST,
                        "MCH_NOT_EXISTS",
                        "mchid does not exist",
                    ),
                    (None, _) => error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid is required"),
                    (_, Some(t)) => (StatusCode::OK, self.transaction_json(t, None)),
                    (_, None) => error(
                        StatusCode::NOT_FOUND,
                        "ORDER_NOT_EXIST",
                        "order does not exist",
                    ),
                };
                return answer;
            }
            if let Some(no) = path.strip_prefix("/v3/refund/domestic/refunds/") {
                return self.refund_query(no);
            }
        }
        error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "no such API")
    }

    fn close(&self, no: &str, body: &Value) -> Answer {
        if body.get("mchid").and_then(|m| m.as_str()) != Some(self.mchid.as_str()) {
            return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid is required");
        }
        let mut trades = self.trades();
        let Some(t) = trades.get_mut(no) else {
            return error(
                StatusCode::NOT_FOUND,
                "ORDER_NOT_EXIST",
                "order does not exist",
            );
        };
        match t.state {
            TradeState::NotPay | TradeState::Closed | TradeState::UserPaying => {
                t.state = TradeState::Closed;
                (StatusCode::NO_CONTENT, Value::Null)
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "the order is paid and cannot be closed",
            ),
        }
    }

    fn signed(&self, status: StatusCode, body: Value, tamper: bool) -> Response {
        let text = if status == StatusCode::NO_CONTENT {
            String::new()
        } else {
            body.to_string()
        };
        let mut headers = tf::signature_headers(
            &self.platform_key,
            &self.platform_key_id,
            Utc::now().timestamp(),
            &crate::crypto::random_hex(16),
            text.as_bytes(),
        );
        if tamper {
            if let Some(sig) = headers
                .iter_mut()
                .find(|(k, _)| *k == "Wechatpay-Signature")
            {
                let flipped = if sig.1.starts_with('A') { "B" } else { "A" };
                sig.1.replace_range(0..1, flipped);
            }
        }
        let mut resp = (status, text).into_response();
        for (k, v) in headers {
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp.headers_mut().insert(
            "Request-ID",
            http::HeaderValue::from_str(&crate::crypto::random_hex(12)).expect("hex"),
        );
        if status != StatusCode::NO_CONTENT {
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        resp
    }
}

fn refund_json(t: &Transaction, refund_no: &str, r: &Refund) -> Value {
    let mut v = json!({
        "refund_id": r.refund_id, "out_refund_no": refund_no, "transaction_id": t.transaction_id,
        "out_trade_no": t.out_trade_no, "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
        "create_time": r.created, "status": r.status.as_str(), "funds_account": "AVAILABLE",
        "amount": { "total": t.amount, "refund": r.amount, "payer_total": t.amount, "payer_refund": r.amount, "currency": "CNY" },
    });
    if r.status == RefundState::Success {
        v["success_time"] = json!(now_rfc3339());
    }
    v
}

/// The label a call is counted under: `METHOD /path` with order numbers replaced by `{}`.
fn call_label(method: &Method, path: &str) -> String {
    const ORDER: &str = "/v3/pay/transactions/out-trade-no/";
    let template = if *method == Method::POST && path.starts_with(ORDER) && path.ends_with("/close")
    {
        "/v3/pay/transactions/out-trade-no/{}/close"
    } else if *method == Method::GET && path.starts_with(ORDER) {
        "/v3/pay/transactions/out-trade-no/{}"
    } else if *method == Method::GET && path.starts_with("/v3/refund/domestic/refunds/") {
        "/v3/refund/domestic/refunds/{}"
    } else {
        path
    };
    format!("{method} {template}")
}

impl Simulator for Gateway {
    const KIND: &'static str = "wechatpay";

    fn new(c: &SimChannel) -> Self {
        Gateway {
            mchid: c.mchid.clone(),
            appid: c.app_id.clone(),
            merchant_key: c.merchant_public_key.clone(),
            merchant_serial: c.merchant_serial.to_ascii_uppercase(),
            platform_key: c.platform_key.clone(),
            platform_key_id: c.platform_key_id.clone(),
            apiv3_key: c
                .apiv3_key
                .clone()
                .unwrap_or_else(|| Arc::new(SymmetricKey::generate())),
            trades: Mutex::default(),
            seq: AtomicU64::new(1),
        }
    }

    fn call_label(&self, req: &GatewayRequest) -> String {
        call_label(&req.method, req.uri.path())
    }

    /// Authenticate, dispatch, sign the answer.
    fn handle(&self, req: &GatewayRequest, tamper: bool) -> Response {
        let (status, answer) = self
            .authenticate(req)
            .map_or_else(|e| e, |()| self.route(req));
        self.signed(status, answer, tamper)
    }

    fn refused(&self, kind: FaultKind) -> Response {
        match kind {
            FaultKind::RateLimit => {
                let (s, v) = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "FREQUENCY_LIMITED",
                    "too many requests",
                );
                self.signed(s, v, false)
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response(),
        }
    }

    fn pay(&self, no: &str, even_if_closed: bool) -> Result<Value, ControlError> {
        self.pay_as(no, even_if_closed)
    }

    fn view(&self, no: &str) -> Option<Value> {
        self.order_view(no)
    }

    fn notification(&self, no: &str) -> Result<Outgoing, String> {
        let url = self
            .trades()
            .get(no)
            .and_then(|t| t.notify_url.clone())
            .ok_or("no such transaction or no notify_url")?;
        let n = self
            .notification(no, &Forgery::default())
            .ok_or("no such transaction")?;
        Ok(Outgoing {
            url,
            content_type: "application/json",
            headers: n.headers,
            body: n.body,
        })
    }

    fn acknowledged(&self, status: u16, _body: &str) -> bool {
        matches!(status, 200 | 204)
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            platform_public_key: self.platform_key.public_key(),
            platform_key_id: Some(self.platform_key_id.clone()),
            apiv3_key: Some(self.apiv3_key.clone()),
            secret_key: None,
        }
    }
}
