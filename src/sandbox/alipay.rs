//! The Alipay OpenAPI gateway simulator: verifies request signatures as the gateway does,
//! keeps trades and refunds, answers with signed `*_response` objects, and sends signed
//! notifications when a trade is paid through the sandbox control.
//!
//! Barcode `auth_code`s: 16–24 digits starting with 25–30 are valid. Codes starting with `28`
//! leave the trade waiting for the customer's password (code 10003; pay it through the control
//! API); codes starting with `29` are declined for insufficient balance.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::shared::{conflict, not_found};
use super::{ControlError, Credentials, GatewayRequest, Outgoing, Sim, SimChannel, Simulator};
use crate::channels::alipay::signing::{self, Params};
use crate::channels::alipay::transformers::{self as tf, TradeStatus};
use crate::crypto::{PrivateKey, PublicKey};
use crate::money::{fen_to_yuan, yuan_to_fen, MAX_AMOUNT_FEN};

/// A trade at the simulator.
#[derive(Debug, Clone)]
struct Trade {
    trade_no: String,
    out_trade_no: String,
    amount: u64,
    subject: String,
    /// The biz_content fields that define the order (to detect inconsistent repeats).
    content: String,
    status: TradeStatus,
    qr_code: Option<String>,
    notify_url: Option<String>,
    created: String,
    paid_at: Option<String>,
    refunds: BTreeMap<String, u64>,
    /// A precreate QR code becomes a trade at Alipay only when the buyer scans it (protocol
    /// reference §8.1): until then query, close, cancel and refund answer
    /// `ACQ.TRADE_NOT_EXIST`, and the code stays payable. Cashier orders (app, wap, page)
    /// exist from the moment the cashier is opened.
    scanned: bool,
}

impl Trade {
    fn refunded(&self) -> u64 {
        self.refunds.values().sum()
    }
}

/// What the control API shows about a trade.
#[derive(Debug, Serialize)]
pub struct TradeView {
    pub out_trade_no: String,
    pub trade_no: String,
    pub trade_status: &'static str,
    pub amount: u64,
    pub refunded: u64,
    pub refunds: BTreeMap<String, u64>,
    /// False for a QR code nobody has scanned yet: not a trade at the gateway.
    pub scanned: bool,
}

/// The simulator of one Alipay channel.
pub type AlipaySim = Sim<Gateway>;

/// The Alipay OpenAPI gateway's side of the protocol.
#[derive(Debug)]
pub struct Gateway {
    app_id: String,
    merchant_key: PublicKey,
    platform_key: Arc<PrivateKey>,
    trades: Mutex<HashMap<String, Trade>>,
    seq: AtomicU64,
}

/// An error the gateway answers with: (code, msg, sub_code, sub_msg).
type GwError = (&'static str, &'static str, String, String);

/// The trade the gateway knows as `no`: a QR code nobody has scanned is not one yet.
fn existing<'a>(
    trades: &'a mut HashMap<String, Trade>,
    no: &str,
) -> Result<&'a mut Trade, GwError> {
    trades
        .get_mut(no)
        .filter(|t| t.scanned)
        .ok_or_else(|| biz_err("ACQ.TRADE_NOT_EXIST", "trade does not exist"))
}

fn biz_err(sub_code: &str, sub_msg: &str) -> GwError {
    (
        "40004",
        "Business Failed",
        sub_code.to_string(),
        sub_msg.to_string(),
    )
}

impl Gateway {
    fn trades(&self) -> std::sync::MutexGuard<'_, HashMap<String, Trade>> {
        self.trades.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The simulator's view of a trade.
    pub fn order_view(&self, out_trade_no: &str) -> Option<TradeView> {
        self.trades().get(out_trade_no).map(view)
    }

    fn next_trade_no(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}2200{:012}", Utc::now().format("%Y%m%d"), n)
    }

    fn pay_as(&self, out_trade_no: &str, even_if_closed: bool) -> Result<TradeView, ControlError> {
        let mut trades = self.trades();
        let t = trades.get_mut(out_trade_no).ok_or_else(|| {
            not_found(
                "ACQ.TRADE_NOT_EXIST",
                "no such trade (for app/h5/page orders, open the cashier URL first)",
            )
        })?;
        // Paying a QR code scans it first: the trade comes into being now.
        t.scanned = true;
        match t.status {
            TradeStatus::WaitBuyerPay => {}
            TradeStatus::TradeClosed if even_if_closed && t.refunded() == 0 => {}
            TradeStatus::TradeClosed => {
                return Err(conflict("ACQ.TRADE_HAS_CLOSE", "the trade is closed"))
            }
            TradeStatus::TradeSuccess | TradeStatus::TradeFinished => {
                return Err(conflict(
                    "ACQ.TRADE_HAS_SUCCESS",
                    "the trade is already paid",
                ))
            }
        }
        t.status = TradeStatus::TradeSuccess;
        t.paid_at = Some(tf::china_timestamp(Utc::now()));
        Ok(view(t))
    }

    /// The buyer scans a QR code (or opens a cashier) without paying yet: the trade now exists
    /// at the gateway, waiting for payment.
    fn scan_trade(&self, out_trade_no: &str) -> Result<TradeView, ControlError> {
        let mut trades = self.trades();
        let t = trades
            .get_mut(out_trade_no)
            .ok_or_else(|| not_found("ACQ.TRADE_NOT_EXIST", "no such QR code or cashier order"))?;
        t.scanned = true;
        Ok(view(t))
    }

    fn notification_params(&self, t: &Trade) -> Params {
        let now = tf::china_timestamp(Utc::now());
        let amount = fen_to_yuan(t.amount);
        let mut p = Params::default();
        p.push("notify_time", now.clone());
        p.push("notify_type", "trade_status_sync");
        p.push("notify_id", crate::crypto::random_hex(16));
        p.push("app_id", self.app_id.clone());
        p.push("auth_app_id", self.app_id.clone());
        p.push("charset", tf::CHARSET);
        p.push("version", tf::VERSION);
        p.push("trade_no", t.trade_no.clone());
        p.push("out_trade_no", t.out_trade_no.clone());
        p.push("buyer_id", "2088102177846880");
        p.push("seller_id", "2088102177846000");
        p.push("trade_status", t.status.as_str());
        p.push("total_amount", amount.clone());
        p.push("receipt_amount", amount.clone());
        p.push("buyer_pay_amount", amount.clone());
        p.push("invoice_amount", amount.clone());
        p.push("point_amount", "0.00");
        p.push("subject", t.subject.clone());
        p.push("gmt_create", t.created.clone());
        p.push("gmt_payment", t.paid_at.clone().unwrap_or(now));
        p.push(
            "fund_bill_list",
            format!("[{{\"amount\":\"{amount}\",\"fundChannel\":\"ALIPAYACCOUNT\"}}]"),
        );
        signing::sign_notification(&mut p, &self.platform_key);
        p
    }

    /// A signed notification body for the trade's current state, with some fields replaced
    /// before signing (to build well-signed but wrong notifications in tests).
    pub fn notification_body(
        &self,
        out_trade_no: &str,
        replace: &[(&str, &str)],
    ) -> Option<String> {
        let t = self.trades().get(out_trade_no)?.clone();
        let mut p = self.notification_params(&t);
        p.0.retain(|(k, _)| k != "sign" && k != "sign_type");
        for (k, v) in replace {
            match p.0.iter_mut().find(|(key, _)| key == k) {
                Some(pair) => pair.1 = v.to_string(),
                None => p.push(k, *v),
            }
        }
        signing::sign_notification(&mut p, &self.platform_key);
        Some(p.encode(|_| true))
    }

    fn respond(&self, method: &str, obj: &Map<String, Value>, tamper: bool) -> Response {
        // Alipay escapes `/` in its JSON; keep that so clients must verify the raw bytes.
        let text = Value::Object(obj.clone()).to_string().replace('/', "\\/");
        let key = if method.is_empty() {
            "error_response".to_string()
        } else {
            signing::response_key(method)
        };
        let mut body = signing::sign_response(&key, &text, &self.platform_key);
        if tamper {
            // Same content, a signature that does not match it: only verification can tell.
            if let Some(i) = body.rfind("\"sign\":\"") {
                let at = i + 8;
                let flipped = if body[at..].starts_with('A') {
                    "B"
                } else {
                    "A"
                };
                body.replace_range(at..at + 1, flipped);
            }
        }
        (
            [(http::header::CONTENT_TYPE, "application/json;charset=utf-8")],
            body,
        )
            .into_response()
    }

    fn error_obj((code, msg, sub_code, sub_msg): GwError) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("code".into(), json!(code));
        m.insert("msg".into(), json!(msg));
        m.insert("sub_code".into(), json!(sub_code));
        m.insert("sub_msg".into(), json!(sub_msg));
        m
    }

    /// Verifies the request as the gateway does; returns the method and business content.
    fn authenticate(&self, params: &Params) -> Result<(String, Map<String, Value>), GwError> {
        if params.has_duplicate_keys() {
            return Err((
                "40002",
                "Invalid Arguments",
                "isv.invalid-parameter".into(),
                "a parameter is repeated".into(),
            ));
        }
        let missing = |what: &str| {
            (
                "40001",
                "Missing Required Arguments",
                format!("isv.missing-{what}"),
                format!("missing {what}"),
            )
        };
        let method = params
            .get("method")
            .ok_or_else(|| missing("method"))?
            .to_string();
        let app_id = params.get("app_id").ok_or_else(|| missing("app-id"))?;
        let sign = params.get("sign").ok_or_else(|| missing("signature"))?;
        params
            .get("sign_type")
            .ok_or_else(|| missing("signature-type"))?;
        params
            .get("timestamp")
            .ok_or_else(|| missing("timestamp"))?;
        params.get("version").ok_or_else(|| missing("version"))?;
        let invalid = |sub: &str, msg: String| ("40002", "Invalid Arguments", sub.to_string(), msg);
        if app_id != self.app_id {
            return Err(invalid("isv.invalid-app-id", "unknown app_id".into()));
        }
        if params.get("sign_type") != Some(signing::SIGN_TYPE) {
            return Err(invalid(
                "isv.invalid-signature-type",
                "only RSA2 is accepted".into(),
            ));
        }
        let content = signing::sign_content(params.iter(), &[]);
        if !self
            .merchant_key
            .verify_sha256_b64(content.as_bytes(), sign)
        {
            let shown = content.replace('&', "&amp;");
            return Err(invalid("isv.invalid-signature", format!("验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{shown}")));
        }
        let sent = params.get("timestamp").and_then(tf::parse_china_timestamp);
        match sent {
            Some(t) if (Utc::now() - t).num_minutes().abs() <= 15 => {}
            _ => {
                return Err(invalid(
                    "isv.invalid-timestamp",
                    "timestamp is missing, malformed or more than 15 minutes off".into(),
                ))
            }
        }
        let biz = match params.get("biz_content") {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(invalid(
                        "isv.invalid-biz-content",
                        "biz_content is not a JSON object".into(),
                    ))
                }
            },
        };
        Ok((method, biz))
    }

    fn business(
        &self,
        method: &str,
        params: &Params,
        biz: &Map<String, Value>,
    ) -> Result<Map<String, Value>, GwError> {
        let s = |k: &str| {
            biz.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let no = s("out_trade_no");
        if no.is_empty() {
            return Err((
                "40004",
                "Business Failed",
                "ACQ.INVALID_PARAMETER".into(),
                "out_trade_no is required".into(),
            ));
        }
        let mut trades = self.trades();
        let mut ok = Map::new();
        ok.insert("code".into(), json!("10000"));
        ok.insert("msg".into(), json!("Success"));
        match method {
            "alipay.trade.precreate"
            | "alipay.trade.pay"
            | "alipay.trade.app.pay"
            | "alipay.trade.wap.pay"
            | "alipay.trade.page.pay" => {
                let amount = yuan_to_fen(&s("total_amount"))
                    .filter(|a| *a > 0 && *a <= MAX_AMOUNT_FEN)
                    .ok_or_else(|| {
                        biz_err(
                            "ACQ.INVALID_PARAMETER",
                            "total_amount is missing or invalid",
                        )
                    })?;
                if s("subject").is_empty() {
                    return Err(biz_err("ACQ.INVALID_PARAMETER", "subject is required"));
                }
                let content = format!("{}|{}|{}", s("total_amount"), s("subject"), method);
                if let Some(t) = trades.get(&no) {
                    if t.content != content {
                        return Err(biz_err(
                            "ACQ.CONTEXT_INCONSISTENT",
                            "the same out_trade_no was used with different content",
                        ));
                    }
                    match t.status {
                        TradeStatus::TradeClosed => {
                            return Err(biz_err("ACQ.TRADE_HAS_CLOSE", "trade is closed"))
                        }
                        TradeStatus::TradeSuccess | TradeStatus::TradeFinished => {
                            return Err(biz_err("ACQ.TRADE_HAS_SUCCESS", "trade is already paid"))
                        }
                        TradeStatus::WaitBuyerPay => {}
                    }
                } else {
                    let qr = (method == "alipay.trade.precreate").then(|| {
                        format!("https://qr.alipay.com/bax{}", crate::crypto::random_hex(10))
                    });
                    trades.insert(
                        no.clone(),
                        Trade {
                            trade_no: self.next_trade_no(),
                            out_trade_no: no.clone(),
                            amount,
                            subject: s("subject"),
                            content,
                            status: TradeStatus::WaitBuyerPay,
                            qr_code: qr,
                            notify_url: params.get("notify_url").map(str::to_string),
                            created: tf::china_timestamp(Utc::now()),
                            paid_at: None,
                            refunds: BTreeMap::new(),
                            scanned: method != "alipay.trade.precreate",
                        },
                    );
                }
                let t = trades.get_mut(&no).expect("just inserted");
                ok.insert("out_trade_no".into(), json!(no));
                if method == "alipay.trade.pay" {
                    let code = s("auth_code");
                    let valid = (16..=24).contains(&code.len())
                        && code.bytes().all(|b| b.is_ascii_digit())
                        && matches!(&code[..2], "25" | "26" | "27" | "28" | "29" | "30");
                    if !valid {
                        trades.remove(&no);
                        return Err(biz_err(
                            "ACQ.PAYMENT_AUTH_CODE_INVALID",
                            "the payment code is invalid",
                        ));
                    }
                    if code.starts_with("29") {
                        trades.remove(&no);
                        return Err(biz_err(
                            "ACQ.BUYER_BALANCE_NOT_ENOUGH",
                            "the buyer's balance is not enough",
                        ));
                    }
                    ok.insert("trade_no".into(), json!(t.trade_no));
                    ok.insert("total_amount".into(), json!(fen_to_yuan(t.amount)));
                    if code.starts_with("28") {
                        ok.insert("code".into(), json!("10003"));
                        ok.insert("msg".into(), json!(" order success pay inprocess"));
                        return Ok(ok);
                    }
                    t.status = TradeStatus::TradeSuccess;
                    t.paid_at = Some(tf::china_timestamp(Utc::now()));
                    ok.insert("buyer_logon_id".into(), json!("tes***@example.com"));
                    ok.insert("receipt_amount".into(), json!(fen_to_yuan(t.amount)));
                    ok.insert("gmt_payment".into(), json!(t.paid_at));
                } else if let Some(qr) = &t.qr_code {
                    ok.insert("qr_code".into(), json!(qr));
                }
                Ok(ok)
            }
            "alipay.trade.query" => {
                let t = existing(&mut trades, &no)?;
                ok.insert("trade_no".into(), json!(t.trade_no));
                ok.insert("out_trade_no".into(), json!(no));
                ok.insert("trade_status".into(), json!(t.status.as_str()));
                ok.insert("total_amount".into(), json!(fen_to_yuan(t.amount)));
                if let Some(p) = &t.paid_at {
                    ok.insert("send_pay_date".into(), json!(p));
                    ok.insert("buyer_pay_amount".into(), json!(fen_to_yuan(t.amount)));
                }
                Ok(ok)
            }
            "alipay.trade.close" => {
                let t = existing(&mut trades, &no)?;
                match t.status {
                    TradeStatus::WaitBuyerPay | TradeStatus::TradeClosed => {
                        t.status = TradeStatus::TradeClosed
                    }
                    _ => {
                        return Err(biz_err(
                            "ACQ.TRADE_STATUS_ERROR",
                            "trade status does not allow closing",
                        ))
                    }
                }
                ok.insert("trade_no".into(), json!(t.trade_no));
                ok.insert("out_trade_no".into(), json!(no));
                Ok(ok)
            }
            "alipay.trade.cancel" => {
                let t = existing(&mut trades, &no)?;
                let action = match t.status {
                    TradeStatus::WaitBuyerPay => "close",
                    TradeStatus::TradeSuccess => {
                        let rest = t.amount - t.refunded();
                        t.refunds.insert(format!("cancel-{}", t.out_trade_no), rest);
                        "refund"
                    }
                    TradeStatus::TradeClosed => "",
                    TradeStatus::TradeFinished => {
                        return Err(biz_err(
                            "ACQ.CANCEL_NOT_ALLOWED",
                            "finished trades cannot be cancelled",
                        ))
                    }
                };
                t.status = TradeStatus::TradeClosed;
                ok.insert("trade_no".into(), json!(t.trade_no));
                ok.insert("out_trade_no".into(), json!(no));
                ok.insert("retry_flag".into(), json!("N"));
                ok.insert("action".into(), json!(action));
                Ok(ok)
            }
            "alipay.trade.refund" => {
                let t = existing(&mut trades, &no)?;
                let amount = yuan_to_fen(&s("refund_amount"))
                    .filter(|a| *a > 0)
                    .ok_or_else(|| {
                        biz_err(
                            "ACQ.INVALID_PARAMETER",
                            "refund_amount is missing or invalid",
                        )
                    })?;
                let request_no = match s("out_request_no") {
                    r if r.is_empty() && amount != t.amount => {
                        return Err(biz_err(
                            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                            "partial refunds need out_request_no",
                        ))
                    }
                    r if r.is_empty() => no.clone(),
                    r => r,
                };
                let fund_change = match t.refunds.get(&request_no) {
                    Some(a) if *a == amount => "N",
                    Some(_) => {
                        return Err(biz_err(
                            "ACQ.DISCORDANT_REPEAT_REQUEST",
                            "same out_request_no, different amount",
                        ))
                    }
                    None => {
                        if t.status != TradeStatus::TradeSuccess {
                            return Err(biz_err(
                                "ACQ.TRADE_STATUS_ERROR",
                                "trade status does not allow refunds",
                            ));
                        }
                        if amount > t.amount - t.refunded() {
                            return Err(biz_err(
                                "ACQ.REASON_TRADE_REFUND_FEE_ERR",
                                "refund amount exceeds what is refundable",
                            ));
                        }
                        t.refunds.insert(request_no, amount);
                        if t.refunded() == t.amount {
                            t.status = TradeStatus::TradeClosed;
                        }
                        "Y"
                    }
                };
                ok.insert("trade_no".into(), json!(t.trade_no));
                ok.insert("out_trade_no".into(), json!(no));
                ok.insert("buyer_logon_id".into(), json!("tes***@example.com"));
                ok.insert("fund_change".into(), json!(fund_change));
                ok.insert("refund_fee".into(), json!(fen_to_yuan(t.refunded())));
                ok.insert(
                    "gmt_refund_pay".into(),
                    json!(tf::china_timestamp(Utc::now())),
                );
                Ok(ok)
            }
            "alipay.trade.fastpay.refund.query" => {
                let t = existing(&mut trades, &no)?;
                let request_no = match s("out_request_no") {
                    r if r.is_empty() => no.clone(),
                    r => r,
                };
                ok.insert("trade_no".into(), json!(t.trade_no));
                ok.insert("out_trade_no".into(), json!(no));
                ok.insert("out_request_no".into(), json!(request_no));
                ok.insert("total_amount".into(), json!(fen_to_yuan(t.amount)));
                if let Some(a) = t.refunds.get(&request_no) {
                    ok.insert("refund_amount".into(), json!(fen_to_yuan(*a)));
                    ok.insert("refund_status".into(), json!("REFUND_SUCCESS"));
                }
                Ok(ok)
            }
            _ => Err((
                "40002",
                "Invalid Arguments",
                "isv.invalid-method".into(),
                format!("unknown method {method}"),
            )),
        }
    }
}

fn view(t: &Trade) -> TradeView {
    TradeView {
        out_trade_no: t.out_trade_no.clone(),
        trade_no: t.trade_no.clone(),
        trade_status: t.status.as_str(),
        amount: t.amount,
        refunded: t.refunded(),
        refunds: t.refunds.clone(),
        scanned: t.scanned,
    }
}

/// Methods a browser or app SDK opens (the cashier), answered with a page, not JSON.
fn is_cashier(method: &str) -> bool {
    matches!(
        method,
        "alipay.trade.app.pay" | "alipay.trade.wap.pay" | "alipay.trade.page.pay"
    )
}

/// The request's parameters: the query string's and the form body's, merged.
fn params(req: &GatewayRequest) -> Params {
    let mut params = Params::decode(req.uri.query().unwrap_or_default().as_bytes());
    params.0.extend(Params::decode(&req.body).0);
    params
}

impl Simulator for Gateway {
    const KIND: &'static str = "alipay";
    const PATH: Option<&'static str> = Some("/gateway.do");

    fn new(c: &SimChannel) -> Self {
        Gateway {
            app_id: c.app_id.clone(),
            merchant_key: c.merchant_public_key.clone(),
            platform_key: c.platform_key.clone(),
            trades: Mutex::default(),
            seq: AtomicU64::new(1),
        }
    }

    /// Calls are counted by `method` (signature-checked or not).
    fn call_label(&self, req: &GatewayRequest) -> String {
        params(req).get("method").unwrap_or_default().to_string()
    }

    fn handle(&self, req: &GatewayRequest, tamper: bool) -> Response {
        let params = params(req);
        let method = params.get("method").unwrap_or_default().to_string();
        let result = self
            .authenticate(&params)
            .and_then(|(m, biz)| self.business(&m, &params, &biz).map(|r| (m, r)));
        match result {
            Ok((m, _)) if is_cashier(&m) => {
                let no = params
                    .get("biz_content")
                    .and_then(|b| serde_json::from_str::<Value>(b).ok())
                    .and_then(|v| {
                        v.get("out_trade_no")
                            .and_then(|s| s.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                Html(format!("<!doctype html><title>Alipay sandbox cashier</title><p>Order {no} is waiting for payment.</p>")).into_response()
            }
            Ok((m, obj)) => self.respond(&m, &obj, tamper),
            Err(e) if is_cashier(&method) => (
                StatusCode::BAD_REQUEST,
                Html(format!(
                    "<!doctype html><title>Error</title><p>{}: {}</p>",
                    e.2, e.3
                )),
            )
                .into_response(),
            Err(e) => {
                let m = if method.is_empty() || e.2 == "isv.invalid-method" {
                    ""
                } else {
                    method.as_str()
                };
                self.respond(m, &Gateway::error_obj(e), tamper)
            }
        }
    }

    fn pay(&self, no: &str, even_if_closed: bool) -> Result<Value, ControlError> {
        self.pay_as(no, even_if_closed)
            .map(|v| serde_json::to_value(v).unwrap_or_default())
    }

    fn scan(&self, no: &str) -> Result<Value, ControlError> {
        self.scan_trade(no)
            .map(|v| serde_json::to_value(v).unwrap_or_default())
    }

    fn view(&self, no: &str) -> Option<Value> {
        self.order_view(no)
            .map(|v| serde_json::to_value(v).unwrap_or_default())
    }

    fn notification(&self, no: &str) -> Result<Outgoing, String> {
        let t = self.trades().get(no).cloned().ok_or("no such trade")?;
        Ok(Outgoing {
            url: t.notify_url.clone().ok_or("the trade has no notify_url")?,
            content_type: "application/x-www-form-urlencoded; charset=utf-8",
            headers: Vec::new(),
            body: self.notification_params(&t).encode(|_| true),
        })
    }

    fn acknowledged(&self, status: u16, body: &str) -> bool {
        status == 200 && body == "success"
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            platform_public_key: self.platform_key.public_key(),
            platform_key_id: None,
            apiv3_key: None,
            secret_key: None,
        }
    }
}
