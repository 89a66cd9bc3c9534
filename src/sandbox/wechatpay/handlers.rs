//! The API's checks and operations: authenticate a request, then prepay, query, close,
//! refund or look up a refund, as WeChat Pay API v3 answers them.

use std::collections::BTreeMap;

use chrono::Utc;
use http::StatusCode;
use serde_json::{json, Value};

use super::state::{now_rfc3339, refund_json, Refund, Transaction};
use super::Gateway;
use crate::channels::wechatpay::transformers::{
    self as tf, Authorization, RefundState, TradeState,
};
use crate::sandbox::kit::{text, Answer};
use crate::sandbox::GatewayRequest;

/// An error answer: `{"code", "message"}`.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, json!({ "code": code, "message": message }))
}

pub(super) fn param_error(message: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
}

pub(super) fn invalid_request(message: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
}

impl Gateway {
    /// Verifies the Authorization header as the API does (401 SIGN_ERROR otherwise).
    pub(super) fn authenticate(&self, req: &GatewayRequest) -> Result<(), Answer> {
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

    /// A prepay (native, jsapi, app, h5): the order, or the same answer again for a repeat.
    pub(super) fn prepay(&self, trade_type: &'static str, body: &Value) -> Answer {
        let s = |p: &str| text(body.pointer(p));
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
            return param_error("amount.total must be a positive integer");
        };
        if !(6..=32).contains(&no.len())
            || s("/description").is_empty()
            || s("/notify_url").is_empty()
        {
            return param_error("out_trade_no, description and notify_url are required");
        }
        if body
            .pointer("/amount/currency")
            .and_then(|v| v.as_str())
            .is_some_and(|c| c != "CNY")
        {
            return param_error("currency must be CNY");
        }
        if trade_type == "JSAPI" && s("/payer/openid").is_empty() {
            return param_error("payer.openid is required");
        }
        if trade_type == "MWEB" && s("/scene_info/payer_client_ip").is_empty() {
            return param_error("scene_info.payer_client_ip is required");
        }
        let profit_sharing = match body.pointer("/settle_info/profit_sharing") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return param_error("settle_info.profit_sharing must be a boolean"),
        };
        let content = format!("{trade_type}|{total}|{}", s("/description"));
        let mut trades = self.trades();
        if let Some(t) = trades.get(&no) {
            if t.content != content {
                return invalid_request("out_trade_no was used with different parameters");
            }
            return match t.state {
                TradeState::NotPay => (StatusCode::OK, t.prepay.clone()),
                TradeState::Closed | TradeState::Revoked => {
                    error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "order is closed")
                }
                _ => invalid_request("order is already paid"),
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
                description: s("/description"),
                content,
                state: TradeState::NotPay,
                prepay: prepay.clone(),
                notify_url: Some(s("/notify_url")),
                paid_at: None,
                refunds: BTreeMap::new(),
                profit_sharing,
                splits: BTreeMap::new(),
                unfrozen: false,
            },
        );
        (StatusCode::OK, prepay)
    }

    /// A transaction by merchant order number (`mchid` in the query string).
    pub(super) fn query(&self, no: &str, mchid: Option<String>) -> Answer {
        match (mchid, self.trades().get(no)) {
            (Some(m), _) if m != self.mchid => error(
                StatusCode::BAD_REQUEST,
                "MCH_NOT_EXISTS",
                "mchid does not exist",
            ),
            (None, _) => param_error("mchid is required"),
            (_, Some(t)) => (StatusCode::OK, self.transaction_json(t, None)),
            (_, None) => error(
                StatusCode::NOT_FOUND,
                "ORDER_NOT_EXIST",
                "order does not exist",
            ),
        }
    }

    pub(super) fn close(&self, no: &str, body: &Value) -> Answer {
        if body.get("mchid").and_then(|m| m.as_str()) != Some(self.mchid.as_str()) {
            return param_error("mchid is required");
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
            _ => invalid_request("the order is paid and cannot be closed"),
        }
    }

    /// A refund; the same `out_refund_no` with the same amount is answered again, unchanged.
    pub(super) fn refund(&self, body: &Value) -> Answer {
        let (no, refund_no) = (
            text(body.pointer("/out_trade_no")),
            text(body.pointer("/out_refund_no")),
        );
        let amount = body
            .pointer("/amount/refund")
            .and_then(|v| v.as_u64())
            .filter(|a| *a > 0);
        let total = body.pointer("/amount/total").and_then(|v| v.as_u64());
        let (Some(amount), Some(total)) = (amount, total) else {
            return param_error("amount.refund and amount.total are required");
        };
        if refund_no.is_empty() {
            return param_error("out_refund_no is required");
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
            return param_error("amount.total does not match the order");
        }
        if let Some(r) = t.refunds.get(&refund_no) {
            if r.amount != amount {
                return invalid_request("out_refund_no was used with a different amount");
            }
            let r = r.clone();
            return (StatusCode::OK, refund_json(t, &refund_no, &r));
        }
        if !matches!(t.state, TradeState::Success | TradeState::Refund) {
            return invalid_request("the order is not paid");
        }
        if amount > t.amount - t.refunded() {
            return invalid_request("refund amount exceeds the refundable amount");
        }
        // Shared money is with the receivers: a refund takes only what the merchant holds.
        if t.profit_sharing && amount > t.held() {
            return error(
                StatusCode::FORBIDDEN,
                "NOT_ENOUGH",
                "the merchant does not hold enough of this order (shared to receivers)",
            );
        }
        let r = Refund {
            refund_id: self.next_id("5030"),
            amount,
            status: RefundState::Processing,
            created: now_rfc3339(),
            succeeded_at: None,
        };
        t.refunds.insert(refund_no.clone(), r.clone());
        t.state = TradeState::Refund;
        (StatusCode::OK, refund_json(t, &refund_no, &r))
    }

    pub(super) fn refund_query(&self, refund_no: &str) -> Answer {
        let mut trades = self.trades();
        for t in trades.values_mut() {
            if let Some(r) = t.refunds.get_mut(refund_no) {
                // Refunds settle between the refund call and the first query.
                if r.status == RefundState::Processing {
                    r.status = RefundState::Success;
                    r.succeeded_at.get_or_insert_with(Utc::now);
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
}
