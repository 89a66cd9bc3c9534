//! The API's checks and operations: authenticate a request, then create or look up a charge,
//! create a refund, list or look up refunds, as Ping++ answers them.

use base64::Engine as _;
use chrono::Utc;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::state::{Charge, Refund};
use super::Gateway;
use crate::channels::pingpp::transformers as tf;
use crate::sandbox::kit::{lock, text, Answer};
use crate::sandbox::GatewayRequest;

/// An error answer: `{"error": {"type", "code", "message"}}`.
pub(super) fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Answer {
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

/// A resource that does not exist (`what`: "No such charge", …).
pub(super) fn missing(what: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "resource_missing",
        what,
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
    /// Checks the secret key and the request signature as the API does.
    pub(super) fn authenticate(&self, req: &GatewayRequest) -> Result<(), Answer> {
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

    /// A charge; the same `order_no` with the same content is answered with the same charge.
    pub(super) fn create_charge(&self, b: &Value) -> Answer {
        let s = |k: &str| text(b.get(k));
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
        let mut json = json!({
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
        json["credential"][channel.as_str()] = credential;
        lock(&self.by_order).insert(order_no, id.clone());
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

    /// A refund of a paid charge (the whole rest when no amount is given).
    pub(super) fn create_refund(&self, charge_id: &str, b: &Value) -> Answer {
        let mut charges = self.charges();
        let Some(c) = charges.get_mut(charge_id) else {
            return missing("No such charge");
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
        (StatusCode::OK, c.refund_json(&r))
    }

    /// A charge's refunds (`re`: only that one), settled.
    pub(super) fn refunds(&self, charge_id: &str, re: Option<&str>) -> Answer {
        let mut charges = self.charges();
        let Some(c) = charges.get_mut(charge_id) else {
            return missing("No such charge");
        };
        c.settle_refunds();
        match re {
            Some(re) => match c.refunds.iter().find(|r| r.id == re) {
                Some(r) => (StatusCode::OK, c.refund_json(r)),
                None => missing("No such refund"),
            },
            None => {
                let data: Vec<Value> = c.refunds.iter().map(|r| c.refund_json(r)).collect();
                (
                    StatusCode::OK,
                    json!({ "object": "list", "url": format!("/v1/charges/{charge_id}/refunds"), "has_more": false, "data": data }),
                )
            }
        }
    }
}
