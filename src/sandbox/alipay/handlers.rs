//! The gateway's business methods: create, query, close, cancel, refund or look up a refund,
//! as Alipay answers them.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::state::{Receivers, RoyaltyReturn, Trade};
use super::Gateway;
use crate::channels::alipay::signing::Params;
use crate::channels::alipay::transformers::{self as tf, TradeStatus};
use crate::money::{fen_to_yuan, yuan_to_fen, MAX_AMOUNT_FEN};
use crate::sandbox::kit::text;

/// An error the gateway answers with: (code, msg, sub_code, sub_msg).
pub(super) type GwError = (&'static str, &'static str, String, String);

/// The business answer being built (`code`, `msg`, then the method's fields).
pub(super) type Answer = Map<String, Value>;

/// The start of every successful answer.
pub(super) fn success() -> Answer {
    let mut ok = Map::new();
    ok.insert("code".into(), json!("10000"));
    ok.insert("msg".into(), json!("Success"));
    ok
}

pub(super) fn biz_err(sub_code: &str, sub_msg: &str) -> GwError {
    (
        "40004",
        "Business Failed",
        sub_code.to_string(),
        sub_msg.to_string(),
    )
}

/// `extend_params.royalty_freeze` of a create: the string `"true"` or `"false"` (the model
/// declares a string), absent meaning false.
fn royalty_freeze(biz: &Map<String, Value>) -> Result<bool, GwError> {
    match biz
        .get("extend_params")
        .and_then(|e| e.get("royalty_freeze"))
    {
        None => Ok(false),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(biz_err(
            "ACQ.INVALID_PARAMETER",
            "extend_params.royalty_freeze must be \"true\" or \"false\"",
        )),
    }
}

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

impl Gateway {
    /// Runs an authenticated business method.
    pub(super) fn business(
        &self,
        method: &str,
        params: &Params,
        biz: &Map<String, Value>,
    ) -> Result<Answer, GwError> {
        // The royalty methods name the trade by `trade_no`, or no trade at all.
        match method {
            "alipay.trade.royalty.relation.bind" => return self.relation_bind(biz),
            "alipay.trade.order.settle" => return self.settle(biz),
            "alipay.trade.order.settle.query" => return self.settle_query(biz),
            _ => {}
        }
        let no = text(biz.get("out_trade_no"));
        if no.is_empty() {
            return Err(biz_err("ACQ.INVALID_PARAMETER", "out_trade_no is required"));
        }
        let mut trades = self.trades();
        let mut ok = success();
        match method {
            "alipay.trade.precreate"
            | "alipay.trade.pay"
            | "alipay.trade.app.pay"
            | "alipay.trade.wap.pay"
            | "alipay.trade.page.pay" => {
                let order = Order {
                    method,
                    no: &no,
                    biz,
                    notify_url: params.get("notify_url"),
                };
                self.create(&mut trades, &order, &mut ok)?
            }
            "alipay.trade.query" => query(existing(&mut trades, &no)?, &mut ok),
            "alipay.trade.close" => close(existing(&mut trades, &no)?, &mut ok)?,
            "alipay.trade.cancel" => cancel(existing(&mut trades, &no)?, &mut ok)?,
            "alipay.trade.refund" => {
                let t = existing(&mut trades, &no)?;
                refund(t, biz, &self.receivers(), &mut ok)?
            }
            "alipay.trade.fastpay.refund.query" => {
                refund_query(existing(&mut trades, &no)?, biz, &mut ok)
            }
            _ => {
                return Err((
                    "40002",
                    "Invalid Arguments",
                    "isv.invalid-method".into(),
                    format!("unknown method {method}"),
                ))
            }
        }
        Ok(ok)
    }

    /// Precreate, barcode pay, or open a cashier (app, wap, page).
    fn create(
        &self,
        trades: &mut HashMap<String, Trade>,
        order: &Order<'_>,
        ok: &mut Answer,
    ) -> Result<(), GwError> {
        let s = |k: &str| text(order.biz.get(k));
        let (method, no) = (order.method, order.no);
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
        if let Some(t) = trades.get(no) {
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
            let qr = (method == "alipay.trade.precreate")
                .then(|| format!("https://qr.alipay.com/bax{}", crate::crypto::random_hex(10)));
            trades.insert(
                no.to_string(),
                Trade {
                    trade_no: self.next_trade_no(),
                    out_trade_no: no.to_string(),
                    amount,
                    subject: s("subject"),
                    content,
                    status: TradeStatus::WaitBuyerPay,
                    qr_code: qr,
                    notify_url: order.notify_url.map(str::to_string),
                    created: tf::china_timestamp(Utc::now()),
                    paid_at: None,
                    refunds: BTreeMap::new(),
                    refunded_at: BTreeMap::new(),
                    scanned: method != "alipay.trade.precreate",
                    royalty_freeze: royalty_freeze(order.biz)?,
                    royalty: Default::default(),
                },
            );
        }
        let Some(t) = trades.get_mut(no) else {
            return Err(biz_err("ACQ.SYSTEM_ERROR", "the trade was not kept"));
        };
        ok.insert("out_trade_no".into(), json!(no));
        if method != "alipay.trade.pay" {
            if let Some(qr) = &t.qr_code {
                ok.insert("qr_code".into(), json!(qr));
            }
            return Ok(());
        }
        let code = s("auth_code");
        let valid = (16..=24).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_digit())
            && matches!(&code[..2], "25" | "26" | "27" | "28" | "29" | "30");
        if !valid {
            trades.remove(no);
            return Err(biz_err(
                "ACQ.PAYMENT_AUTH_CODE_INVALID",
                "the payment code is invalid",
            ));
        }
        if code.starts_with("29") {
            trades.remove(no);
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
            return Ok(());
        }
        t.status = TradeStatus::TradeSuccess;
        t.record_paid();
        ok.insert("buyer_logon_id".into(), json!("tes***@example.com"));
        ok.insert("receipt_amount".into(), json!(fen_to_yuan(t.amount)));
        ok.insert("gmt_payment".into(), json!(t.paid_at));
        Ok(())
    }
}

/// What a create call asks for.
struct Order<'a> {
    method: &'a str,
    no: &'a str,
    biz: &'a Map<String, Value>,
    notify_url: Option<&'a str>,
}

fn query(t: &Trade, ok: &mut Answer) {
    ok.insert("trade_no".into(), json!(t.trade_no));
    ok.insert("out_trade_no".into(), json!(t.out_trade_no));
    ok.insert("trade_status".into(), json!(t.status.as_str()));
    ok.insert("total_amount".into(), json!(fen_to_yuan(t.amount)));
    if let Some(p) = &t.paid_at {
        ok.insert("send_pay_date".into(), json!(p));
        ok.insert("buyer_pay_amount".into(), json!(fen_to_yuan(t.amount)));
    }
}

fn close(t: &mut Trade, ok: &mut Answer) -> Result<(), GwError> {
    match t.status {
        TradeStatus::WaitBuyerPay | TradeStatus::TradeClosed => t.status = TradeStatus::TradeClosed,
        _ => {
            return Err(biz_err(
                "ACQ.TRADE_STATUS_ERROR",
                "trade status does not allow closing",
            ))
        }
    }
    ok.insert("trade_no".into(), json!(t.trade_no));
    ok.insert("out_trade_no".into(), json!(t.out_trade_no));
    Ok(())
}

/// Reverses a trade: closes it, refunding what was paid.
fn cancel(t: &mut Trade, ok: &mut Answer) -> Result<(), GwError> {
    let action = match t.status {
        TradeStatus::WaitBuyerPay => "close",
        // Money already shared cannot be reversed by a cancel (modelled).
        TradeStatus::TradeSuccess if !t.royalty.settles.is_empty() => {
            return Err(biz_err(
                "ACQ.CANCEL_NOT_ALLOWED",
                "a settled trade cannot be cancelled; refund it",
            ))
        }
        TradeStatus::TradeSuccess => {
            let rest = t.amount - t.refunded();
            t.record_refund(format!("cancel-{}", t.out_trade_no), rest);
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
    ok.insert("out_trade_no".into(), json!(t.out_trade_no));
    ok.insert("retry_flag".into(), json!("N"));
    ok.insert("action".into(), json!(action));
    Ok(())
}

/// A refund; the same `out_request_no` with the same amount (and returns) is answered again,
/// unchanged. On a royalty trade the refund may take split money back from receivers
/// (`refund_royalty_parameters`), and may refund no more than the merchant holds.
fn refund(
    t: &mut Trade,
    biz: &Map<String, Value>,
    receivers: &Receivers,
    ok: &mut Answer,
) -> Result<(), GwError> {
    let amount = yuan_to_fen(&text(biz.get("refund_amount")))
        .filter(|a| *a > 0)
        .ok_or_else(|| {
            biz_err(
                "ACQ.INVALID_PARAMETER",
                "refund_amount is missing or invalid",
            )
        })?;
    let request_no = match text(biz.get("out_request_no")) {
        r if r.is_empty() && amount != t.amount => {
            return Err(biz_err(
                "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "partial refunds need out_request_no",
            ))
        }
        r if r.is_empty() => t.out_trade_no.clone(),
        r => r,
    };
    let returns = refund_returns(biz, &request_no)?;
    let fund_change = match t.refunds.get(&request_no) {
        Some(a) if *a == amount && returns_of(t, &request_no) == returns => "N",
        Some(_) => {
            return Err(biz_err(
                "ACQ.DISCORDANT_REPEAT_REQUEST",
                "same out_request_no, different amount or returns",
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
            take_returns(t, &returns, receivers)?;
            let back: u64 = returns.iter().map(|r| r.amount).sum();
            if amount > t.held() + back {
                return Err(biz_err(
                    "ACQ.SELLER_BALANCE_NOT_ENOUGH",
                    "the merchant's balance for this trade is not enough (money was shared)",
                ));
            }
            t.royalty.returns.extend(returns);
            t.record_refund(request_no, amount);
            if t.refunded() == t.amount {
                t.status = TradeStatus::TradeClosed;
            }
            "Y"
        }
    };
    ok.insert("trade_no".into(), json!(t.trade_no));
    ok.insert("out_trade_no".into(), json!(t.out_trade_no));
    ok.insert("buyer_logon_id".into(), json!("tes***@example.com"));
    ok.insert("fund_change".into(), json!(fund_change));
    ok.insert("refund_fee".into(), json!(fen_to_yuan(t.refunded())));
    ok.insert(
        "gmt_refund_pay".into(),
        json!(tf::china_timestamp(Utc::now())),
    );
    Ok(())
}

/// The returns a refund asks for (`refund_royalty_parameters`), in request order.
fn refund_returns(
    biz: &Map<String, Value>,
    request_no: &str,
) -> Result<Vec<RoyaltyReturn>, GwError> {
    let invalid = |m: &str| biz_err("ACQ.INVALID_PARAMETER", m);
    let entries = match biz.get("refund_royalty_parameters") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid("refund_royalty_parameters must be an array")),
    };
    entries
        .iter()
        .map(|e| {
            let field = |k: &str| text(e.get(k));
            if !matches!(field("royalty_type").as_str(), "" | "transfer") {
                return Err(invalid(
                    "refund_royalty_parameters: royalty_type must be transfer",
                ));
            }
            if !matches!(field("trans_out_type").as_str(), "userId" | "loginName") {
                return Err(invalid("refund_royalty_parameters: bad trans_out_type"));
            }
            let account = field("trans_out");
            let amount = yuan_to_fen(&field("amount")).filter(|a| *a > 0);
            match (account.is_empty(), amount) {
                (false, Some(amount)) => Ok(RoyaltyReturn {
                    refund_no: request_no.to_string(),
                    account,
                    amount,
                }),
                _ => Err(invalid(
                    "refund_royalty_parameters: trans_out and amount are required",
                )),
            }
        })
        .collect()
}

fn returns_of(t: &Trade, request_no: &str) -> Vec<RoyaltyReturn> {
    t.royalty
        .returns
        .iter()
        .filter(|r| r.refund_no == request_no)
        .cloned()
        .collect()
}

/// Checks that each receiver can give back what the refund asks of it: no more than it got
/// minus what it gave back already, and no `return_fail` switched on for it.
fn take_returns(
    t: &Trade,
    returns: &[RoyaltyReturn],
    receivers: &Receivers,
) -> Result<(), GwError> {
    let mut asked: BTreeMap<&str, u64> = BTreeMap::new();
    for r in returns {
        *asked.entry(&r.account).or_default() += r.amount;
    }
    for (account, amount) in asked {
        if let Some(code) = receivers.behaviour(account).return_fail {
            return Err(biz_err(&code, "the receiver did not give the money back"));
        }
        let left = t
            .royalty
            .received_by(account)
            .saturating_sub(t.royalty.returned_by(account));
        if amount > left {
            return Err(biz_err(
                "ACQ.INVALID_PARAMETER",
                "refund_royalty_parameters: more than the receiver got back from this trade",
            ));
        }
    }
    Ok(())
}

fn refund_query(t: &Trade, biz: &Map<String, Value>, ok: &mut Answer) {
    let request_no = match text(biz.get("out_request_no")) {
        r if r.is_empty() => t.out_trade_no.clone(),
        r => r,
    };
    ok.insert("trade_no".into(), json!(t.trade_no));
    ok.insert("out_trade_no".into(), json!(t.out_trade_no));
    ok.insert("out_request_no".into(), json!(request_no));
    ok.insert("total_amount".into(), json!(fen_to_yuan(t.amount)));
    if let Some(a) = t.refunds.get(&request_no) {
        ok.insert("refund_amount".into(), json!(fen_to_yuan(*a)));
        ok.insert("refund_status".into(), json!("REFUND_SUCCESS"));
        // The returns this refund took (entry fields modelled, like the request's).
        let returns: Vec<Value> = returns_of(t, &request_no)
            .iter()
            .map(|r| json!({ "trans_out": r.account, "refund_amount": fen_to_yuan(r.amount), "result_code": "SUCCESS" }))
            .collect();
        if !returns.is_empty() {
            ok.insert("refund_royaltys".into(), Value::Array(returns));
        }
    }
}
