//! The Ping++ simulator: checks the secret key and the `Pingplusplus-Signature` of every
//! request (failures → the real `{"error":{…}}` shape), keeps charges and refunds, and sends
//! webhooks signed with its platform key when a charge is paid through the sandbox control.
//! Credential shapes per channel are modelled (the protocol reference marks them unconfirmed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::shared::{conflict, not_found};
use super::{
    ControlError, Credentials, FaultKind, GatewayRequest, Outgoing, Sim, SimChannel, Simulator,
};
use crate::channels::pingpp::transformers as tf;
use crate::crypto::{PrivateKey, PublicKey};

#[derive(Debug, Clone)]
struct Refund {
    id: String,
    amount: u64,
    status: &'static str,
    description: String,
    metadata: Value,
    created: i64,
}

#[derive(Debug, Clone)]
struct Charge {
    json: Value,
    /// The request fields that define the charge (to detect inconsistent repeats).
    content: String,
    refunds: Vec<Refund>,
}

impl Charge {
    fn amount(&self) -> u64 {
        self.json["amount"].as_u64().unwrap_or(0)
    }
    fn refunded(&self) -> u64 {
        self.refunds
            .iter()
            .filter(|r| r.status != "failed")
            .map(|r| r.amount)
            .sum()
    }
}

/// The simulator of one Ping++ channel.
pub type PingppSim = Sim<Gateway>;

/// The Ping++ API's side of the protocol.
#[derive(Debug)]
pub struct Gateway {
    app_id: String,
    secret_key: String,
    merchant_key: PublicKey,
    platform_key: Arc<PrivateKey>,
    charges: Mutex<HashMap<String, Charge>>,
    by_order: Mutex<HashMap<String, String>>,
    seq: AtomicU64,
    webhook_url: Mutex<Option<String>>,
}

type Answer = (StatusCode, Value);

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Answer {
    (
        status,
        json!({ "error": { "type": kind, "code": code, "message": message } }),
    )
}

fn bad_request(message: &str) -> Answer {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_param",
        message,
    )
}

/// The channels the simulator knows, with the `extra` field each requires.
const CHANNELS: &[(&str, Option<&str>)] = &[
    ("alipay_qr", None),
    ("alipay", None),
    ("alipay_wap", Some("success_url")),
    ("alipay_pc_direct", Some("success_url")),
    ("wx_pub_qr", Some("product_id")),
    ("wx_pub", Some("open_id")),
    ("wx", None),
    ("wx_wap", None),
];

impl Gateway {
    fn charges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Charge>> {
        self.charges.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn charge_id_of(&self, order_no: &str) -> Option<String> {
        self.by_order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(order_no)
            .cloned()
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{}{:08}", &crate::crypto::random_hex(8)[..16], n)
    }

    /// The simulator's view of the charge for `order_no`.
    pub fn order_view(&self, order_no: &str) -> Option<Value> {
        let id = self.charge_id_of(order_no)?;
        let charges = self.charges();
        let c = charges.get(&id)?;
        Some(json!({
            "order_no": order_no, "charge": id, "paid": c.json["paid"], "amount": c.amount(),
            "refunded": c.refunded(),
            "refunds": c.refunds.iter().map(|r| json!({"id": r.id, "amount": r.amount, "status": r.status})).collect::<Vec<_>>(),
        }))
    }

    /// The customer pays: the charge becomes paid and `charge.succeeded` is sent.
    fn pay_charge(&self, order_no: &str) -> Result<Value, ControlError> {
        let id = self
            .charge_id_of(order_no)
            .ok_or_else(|| not_found("resource_missing", "no such charge"))?;
        {
            let mut charges = self.charges();
            let c = charges
                .get_mut(&id)
                .ok_or_else(|| not_found("resource_missing", "no such charge"))?;
            if c.json["paid"] == true {
                return Err(conflict("charge_paid", "the charge is already paid"));
            }
            let now = Utc::now().timestamp();
            if c.json["time_expire"].as_i64().is_some_and(|t| t < now) {
                return Err(conflict("charge_expired", "the charge has expired"));
            }
            c.json["paid"] = json!(true);
            c.json["time_paid"] = json!(now);
            c.json["transaction_no"] = json!(format!(
                "{}",
                2_024_000_000_000_000_000u64 + self.seq.fetch_add(1, Ordering::Relaxed)
            ));
            c.json["credential"] = json!({});
        }
        Ok(self.order_view(order_no).unwrap_or(Value::Null))
    }

    /// A `charge.succeeded` event for the order and its signature; with `tamper` the signed
    /// body differs from the one returned.
    pub fn webhook(&self, order_no: &str, tamper: bool) -> Option<(String, String)> {
        let id = self.charge_id_of(order_no)?;
        let charge = self.charges().get(&id)?.json.clone();
        let body = json!({
            "id": self.next_id("evt_"),
            "created": Utc::now().timestamp(),
            "livemode": false,
            "type": "charge.succeeded",
            "data": { "object": charge },
            "object": "event",
            "pending_webhooks": 0,
            "request": self.next_id("iar_"),
        })
        .to_string();
        let sig = self.platform_key.sign_sha256_b64(body.as_bytes());
        let body = if tamper {
            body.replacen("\"paid\":true", "\"paid\":true ", 1)
        } else {
            body
        };
        Some((sig, body))
    }

    fn authenticate(&self, req: &GatewayRequest) -> Result<(), Answer> {
        let (method, uri, headers, body) = (&req.method, &req.uri, &req.headers, &req.body[..]);
        let auth_error = |m: &str| {
            error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "authentication_failed",
                m,
            )
        };
        let auth = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key = if let Some(k) = auth.strip_prefix("Bearer ") {
            k.to_string()
        } else if let Some(b) = auth.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .unwrap_or_default();
            String::from_utf8_lossy(&decoded)
                .trim_end_matches(':')
                .to_string()
        } else {
            return Err(auth_error("No API key provided"));
        };
        if key != self.secret_key {
            return Err(auth_error("Invalid API key provided"));
        }
        let ts = headers
            .get(tf::TIMESTAMP_HEADER)
            .and_then(|v| v.to_str().ok());
        let sig = headers
            .get(tf::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        let (Some(ts), Some(sig)) = (ts, sig) else {
            return Err(auth_error("Request signature is required"));
        };
        let t: i64 = ts
            .parse()
            .map_err(|_| auth_error("Invalid request timestamp"))?;
        if (Utc::now().timestamp() - t).abs() > 300 {
            return Err(auth_error(
                "Request timestamp is too far from the server time",
            ));
        }
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let body = if *method == Method::GET || *method == Method::DELETE {
            ""
        } else {
            std::str::from_utf8(body).unwrap_or("")
        };
        if !self
            .merchant_key
            .verify_sha256_b64(tf::signed_string(body, target, ts).as_bytes(), sig)
        {
            return Err(auth_error("Request signature verification failed"));
        }
        Ok(())
    }

    fn create_charge(&self, b: &Value) -> Answer {
        let s = |k: &str| {
            b.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let order_no = s("order_no");
        if order_no.is_empty()
            || s("client_ip").is_empty()
            || s("subject").is_empty()
            || s("body").is_empty()
        {
            return bad_request("order_no, client_ip, subject and body are required");
        }
        if b.pointer("/app/id").and_then(|v| v.as_str()) != Some(self.app_id.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "app_not_found",
                "No such app",
            );
        }
        let channel = s("channel");
        let Some((_, required)) = CHANNELS.iter().find(|(c, _)| *c == channel) else {
            return bad_request("channel is not supported");
        };
        if let Some(field) = required {
            if b.pointer(&format!("/extra/{field}"))
                .and_then(|v| v.as_str())
                .is_none_or(str::is_empty)
            {
                return bad_request(&format!("extra.{field} is required for {channel}"));
            }
        }
        let Some(amount) = b.get("amount").and_then(|v| v.as_u64()).filter(|a| *a > 0) else {
            return bad_request("amount must be a positive integer");
        };
        if s("currency") != "cny" {
            return bad_request("currency must be cny");
        }
        if s("subject").chars().count() > 32 || s("body").chars().count() > 128 {
            return bad_request("subject or body is too long");
        }
        let content = format!("{channel}|{amount}|{}", s("subject"));
        if let Some(id) = self.charge_id_of(&order_no) {
            let charges = self.charges();
            let c = &charges[&id];
            return if c.content == content {
                (StatusCode::OK, c.json.clone())
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "order_no_used",
                    "order_no has been used",
                )
            };
        }
        let id = format!("ch_{}", &crate::crypto::random_hex(12)[..24]);
        let now = Utc::now().timestamp();
        let token = crate::crypto::random_hex(10);
        let credential = match channel.as_str() {
            "alipay_qr" => json!(format!("https://qr.alipay.com/bax{token}")),
            "wx_pub_qr" => json!(format!("weixin://wxpay/bizpayurl?pr={}", &token[..7])),
            "alipay" => {
                json!({ "orderInfo": format!("app_id=2021000000000001&biz_content=%7B%22out_trade_no%22%3A%22{order_no}%22%7D&sign={token}") })
            }
            "alipay_wap" | "alipay_pc_direct" => json!(format!(
                "https://openapi.alipay.com/gateway.do?charge={id}&token={token}"
            )),
            "wx_wap" => json!(format!(
                "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx{token}"
            )),
            "wx_pub" => {
                json!({ "appId": "wxd678efh567hg6787", "timeStamp": now.to_string(), "nonceStr": token,
                                "package": format!("prepay_id=wx{token}"), "signType": "RSA", "paySign": crate::crypto::random_hex(32) })
            }
            _ => {
                json!({ "appId": "wxd678efh567hg6787", "partnerId": "1900000001", "prepayId": format!("wx{token}"),
                         "nonceStr": token, "timeStamp": now.to_string(), "packageValue": "Sign=WXPay", "sign": crate::crypto::random_hex(32) })
            }
        };
        let json = json!({
            "id": id, "object": "charge", "created": now, "livemode": false, "paid": false,
            "refunded": false, "reversed": false, "app": self.app_id, "channel": channel,
            "order_no": order_no, "client_ip": s("client_ip"), "amount": amount, "amount_settle": amount,
            "currency": "cny", "subject": s("subject"), "body": s("body"), "extra": b.get("extra").cloned().unwrap_or(json!({})),
            "time_paid": null, "time_expire": b.get("time_expire").and_then(|t| t.as_i64()).unwrap_or(now + 86_400),
            "time_settle": null, "transaction_no": null,
            "refunds": { "object": "list", "url": format!("/v1/charges/{id}/refunds"), "has_more": false, "data": [] },
            "amount_refunded": 0, "failure_code": null, "failure_msg": null, "metadata": b.get("metadata").cloned().unwrap_or(json!({})),
            "credential": { "object": "credential" }, "description": null,
        });
        let mut json = json;
        json["credential"][channel.as_str()] = credential;
        self.by_order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(order_no, id.clone());
        self.charges().insert(
            id,
            Charge {
                json: json.clone(),
                content,
                refunds: vec![],
            },
        );
        (StatusCode::OK, json)
    }

    fn refund_json(charge: &Charge, r: &Refund) -> Value {
        json!({
            "id": r.id, "object": "refund", "order_no": charge.json["order_no"], "amount": r.amount,
            "created": r.created, "succeed": r.status == "succeeded", "status": r.status,
            "time_succeed": if r.status == "succeeded" { json!(Utc::now().timestamp()) } else { Value::Null },
            "description": r.description, "failure_code": null, "failure_msg": null, "metadata": r.metadata,
            "charge": charge.json["id"], "charge_order_no": charge.json["order_no"],
            "transaction_no": charge.json["transaction_no"], "extra": {},
        })
    }

    fn create_refund(&self, charge_id: &str, b: &Value) -> Answer {
        let mut charges = self.charges();
        let Some(c) = charges.get_mut(charge_id) else {
            return error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                "No such charge",
            );
        };
        if c.json["paid"] != true {
            return bad_request("the charge is not paid");
        }
        let description = b
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        if description.is_empty() {
            return bad_request("description is required");
        }
        let left = c.amount() - c.refunded();
        let amount = match b.get("amount") {
            None => left,
            Some(a) => match a.as_u64().filter(|a| *a > 0) {
                Some(a) => a,
                None => return bad_request("amount must be a positive integer"),
            },
        };
        if amount > left {
            return bad_request("refund amount exceeds the refundable amount");
        }
        let r = Refund {
            id: format!("re_{}", &crate::crypto::random_hex(12)[..24]),
            amount,
            status: "pending",
            description: description.to_string(),
            metadata: b.get("metadata").cloned().unwrap_or(json!({})),
            created: Utc::now().timestamp(),
        };
        c.refunds.push(r.clone());
        c.json["amount_refunded"] = json!(c.refunded());
        c.json["refunded"] = json!(c.refunded() == c.amount());
        (StatusCode::OK, Self::refund_json(c, &r))
    }

    /// Refunds settle between the refund call and the first look at them.
    fn settle_refunds(c: &mut Charge) {
        for r in &mut c.refunds {
            if r.status == "pending" {
                r.status = "succeeded";
            }
        }
    }

    fn route(&self, req: &GatewayRequest) -> Answer {
        let (method, uri, body) = (&req.method, &req.uri, &req.body[..]);
        let path = uri.path();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let b = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        let missing = || {
            error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                "No such charge",
            )
        };
        match (method.as_str(), parts.as_slice()) {
            ("POST", ["v1", "charges"]) => self.create_charge(&b()),
            ("GET", ["v1", "charges", id]) => self
                .charges()
                .get(*id)
                .map(|c| (StatusCode::OK, c.json.clone()))
                .unwrap_or_else(missing),
            ("POST", ["v1", "charges", id, "refunds"]) => self.create_refund(id, &b()),
            ("GET", ["v1", "charges", id, "refunds"]) => {
                let mut charges = self.charges();
                match charges.get_mut(*id) {
                    Some(c) => {
                        Self::settle_refunds(c);
                        let data: Vec<Value> =
                            c.refunds.iter().map(|r| Self::refund_json(c, r)).collect();
                        (
                            StatusCode::OK,
                            json!({ "object": "list", "url": format!("/v1/charges/{id}/refunds"), "has_more": false, "data": data }),
                        )
                    }
                    None => missing(),
                }
            }
            ("GET", ["v1", "charges", id, "refunds", re]) => {
                let mut charges = self.charges();
                match charges.get_mut(*id) {
                    Some(c) => {
                        Self::settle_refunds(c);
                        match c.refunds.iter().find(|r| r.id == *re) {
                            Some(r) => (StatusCode::OK, Self::refund_json(c, r)),
                            None => error(
                                StatusCode::NOT_FOUND,
                                "invalid_request_error",
                                "resource_missing",
                                "No such refund",
                            ),
                        }
                    }
                    None => missing(),
                }
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                "Unrecognized request URL",
            ),
        }
    }
}

impl Simulator for Gateway {
    const KIND: &'static str = "pingpp";

    fn new(c: &SimChannel) -> Self {
        Gateway {
            app_id: c.app_id.clone(),
            secret_key: c.secret_key.clone().unwrap_or_default(),
            merchant_key: c.merchant_public_key.clone(),
            platform_key: c.platform_key.clone(),
            charges: Mutex::default(),
            by_order: Mutex::default(),
            seq: AtomicU64::new(1),
            webhook_url: Mutex::default(),
        }
    }

    fn call_label(&self, req: &GatewayRequest) -> String {
        let (method, path) = (&req.method, req.uri.path());
        call_label(method, path)
    }

    /// Authentication, dispatch. Ping++ does not sign responses: a `bad_signature` fault
    /// garbles the answer instead.
    fn handle(&self, req: &GatewayRequest, tamper: bool) -> Response {
        let (status, answer) = self
            .authenticate(req)
            .map_or_else(|e| e, |()| self.route(req));
        let answer = if tamper {
            json!({ "garbled": true })
        } else {
            answer
        };
        (status, axum::Json(answer)).into_response()
    }

    fn refused(&self, kind: FaultKind) -> Response {
        let (s, v) = match kind {
            FaultKind::RateLimit => error(
                StatusCode::FORBIDDEN,
                "rate_limit_error",
                "rate_limit",
                "Too many requests",
            ),
            _ => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
                "Internal server error",
            ),
        };
        (s, axum::Json(v)).into_response()
    }

    /// Ping++ charges cannot be closed, so `even_if_closed` changes nothing.
    fn pay(&self, no: &str, _even_if_closed: bool) -> Result<Value, ControlError> {
        self.pay_charge(no)
    }

    fn view(&self, no: &str) -> Option<Value> {
        self.order_view(no)
    }

    fn notification(&self, no: &str) -> Result<Outgoing, String> {
        let (signature, body) = self.webhook(no, false).ok_or("no such charge")?;
        self.outgoing(&signature, body)
    }

    fn acknowledged(&self, status: u16, _body: &str) -> bool {
        (200..300).contains(&status)
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            platform_public_key: self.platform_key.public_key(),
            platform_key_id: None,
            apiv3_key: None,
            secret_key: Some(self.secret_key.clone()),
        }
    }

    fn set_notify_url(&self, url: String) {
        *self.webhook_url.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }
}

impl Gateway {
    /// A webhook addressed to the URL set in the (simulated) dashboard.
    fn outgoing(&self, signature: &str, body: String) -> Result<Outgoing, String> {
        let url = self
            .webhook_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or("no webhook URL is set")?;
        Ok(Outgoing {
            url,
            content_type: "application/json",
            headers: vec![(tf::WEBHOOK_SIGNATURE_HEADER, signature.to_string())],
            body,
        })
    }
}

impl Sim<Gateway> {
    /// Posts a webhook to payroute; returns its status and body.
    pub async fn deliver(&self, signature: &str, body: &str) -> Result<(u16, String), String> {
        let n = self.outgoing(signature, body.to_string())?;
        self.post(&n).await
    }
}

/// The label a call is counted under: `METHOD /path` with ids replaced by `{}`.
fn call_label(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let template = match parts.as_slice() {
        ["v1", "charges", _] => "/v1/charges/{}",
        ["v1", "charges", _, "refunds"] => "/v1/charges/{}/refunds",
        ["v1", "charges", _, "refunds", _] => "/v1/charges/{}/refunds/{}",
        _ => path,
    };
    format!("{method} {template}")
}
