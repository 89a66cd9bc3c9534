//! The gateway's royalty (分账) methods: bind a receiver, settle part of a frozen trade to
//! receivers, and look a settle up (protocol reference §8.9).
//!
//! Modelled, beyond the reference: a settle is taken only for a paid trade created with
//! `extend_params.royalty_freeze = "true"`, for no more than the merchant still holds of it,
//! and not after a settle with `royalty_finish = "true"`; shares are `PROCESSING` until the
//! first query after the settle, which settles them (`SUCCESS`, or `FAIL` for a receiver
//! that was not bound or whose `share_fail` is switched on). The sub_codes are the
//! simulator's choice where the reference names none.

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::handlers::{biz_err, success, Answer, GwError};
use super::state::{Detail, DetailState, Settle, Trade};
use super::Gateway;
use crate::channels::alipay::transformers as tf;
use crate::channels::alipay::transformers::TradeStatus;
use crate::money::{fen_to_yuan, yuan_to_fen};
use crate::sandbox::kit::text;

/// The seller's own user id, the `trans_out` of every share.
const SELLER_ID: &str = "2088102177846000";

/// The error code of a share to a receiver that was not bound (name modelled).
pub(super) const NOT_BOUND: &str = "RELATION_NOT_EXIST";

fn invalid(message: &str) -> GwError {
    biz_err("ACQ.INVALID_PARAMETER", message)
}

/// One requested share, as read from `royalty_parameters`.
struct Share {
    account_type: String,
    account: String,
    amount: u64,
    desc: String,
}

fn shares(biz: &Map<String, Value>) -> Result<Vec<Share>, GwError> {
    let Some(Value::Array(entries)) = biz.get("royalty_parameters") else {
        return Err(invalid("royalty_parameters is required"));
    };
    if entries.is_empty() {
        return Err(invalid("royalty_parameters is empty"));
    }
    entries
        .iter()
        .map(|e| {
            let field = |k: &str| text(e.get(k));
            if !matches!(field("royalty_type").as_str(), "" | "transfer") {
                return Err(invalid("only transfer royalties are modelled"));
            }
            let account_type = field("trans_in_type");
            if !matches!(account_type.as_str(), "userId" | "loginName") {
                return Err(invalid("trans_in_type must be userId or loginName"));
            }
            let account = field("trans_in");
            let amount = yuan_to_fen(&field("amount")).filter(|a| *a > 0);
            match (account.is_empty(), amount) {
                (false, Some(amount)) => Ok(Share {
                    account_type,
                    account,
                    amount,
                    desc: field("desc"),
                }),
                _ => Err(invalid("trans_in and a positive amount are required")),
            }
        })
        .collect()
}

/// `extend_params.royalty_finish`: `"true"` or `"false"`, absent meaning false.
fn royalty_finish(biz: &Map<String, Value>) -> Result<bool, GwError> {
    match biz
        .get("extend_params")
        .and_then(|e| e.get("royalty_finish"))
    {
        None => Ok(false),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(invalid(
            "extend_params.royalty_finish must be \"true\" or \"false\"",
        )),
    }
}

fn by_trade_no<'a>(
    trades: &'a mut std::collections::HashMap<String, Trade>,
    trade_no: &str,
) -> Result<&'a mut Trade, GwError> {
    trades
        .values_mut()
        .find(|t| t.scanned && !trade_no.is_empty() && t.trade_no == trade_no)
        .ok_or_else(|| biz_err("ACQ.TRADE_NOT_EXIST", "trade does not exist"))
}

impl Gateway {
    /// `alipay.trade.royalty.relation.bind`: the receivers become the merchant's (again).
    pub(super) fn relation_bind(&self, biz: &Map<String, Value>) -> Result<Answer, GwError> {
        if text(biz.get("out_request_no")).is_empty() {
            return Err(invalid("out_request_no is required"));
        }
        let Some(Value::Array(list)) = biz.get("receiver_list") else {
            return Err(invalid("receiver_list is required"));
        };
        let mut receivers = self.receivers();
        let mut accounts = Vec::with_capacity(list.len());
        for r in list {
            let account = text(r.get("account"));
            if account.is_empty()
                || !matches!(
                    text(r.get("type")).as_str(),
                    "userId" | "loginName" | "openId"
                )
            {
                return Err(invalid("each receiver needs a type and an account"));
            }
            if let Some(code) = receivers.behaviour(&account).bind_fail {
                return Err(biz_err(&code, "the receiver cannot be bound"));
            }
            accounts.push(account);
        }
        if accounts.is_empty() {
            return Err(invalid("receiver_list is empty"));
        }
        receivers.bound.extend(accounts);
        let mut ok = success();
        ok.insert("result_code".into(), json!("SUCCESS"));
        Ok(ok)
    }

    /// `alipay.trade.order.settle`: answered at once with a `settle_no`; the shares settle
    /// later (see the module note). A repeat of the same request gets the same answer.
    pub(super) fn settle(&self, biz: &Map<String, Value>) -> Result<Answer, GwError> {
        let request_no = text(biz.get("out_request_no"));
        if request_no.is_empty() {
            return Err(invalid("out_request_no is required"));
        }
        let shares = shares(biz)?;
        let finish = royalty_finish(biz)?;
        let content = shares
            .iter()
            .map(|s| format!("{}:{}:{}", s.account_type, s.account, s.amount))
            .collect::<Vec<_>>()
            .join(",")
            + if finish { "|finish" } else { "" };
        let mut trades = self.trades();
        let t = by_trade_no(&mut trades, &text(biz.get("trade_no")))?;
        let mut ok = success();
        ok.insert("trade_no".into(), json!(t.trade_no));
        if let Some(s) = t.royalty.settles.get(&request_no) {
            if s.content != content {
                return Err(biz_err(
                    "ACQ.DISCORDANT_REPEAT_REQUEST",
                    "the same out_request_no was used for a different settle",
                ));
            }
            ok.insert("settle_no".into(), json!(s.settle_no));
            return Ok(ok);
        }
        if t.status != TradeStatus::TradeSuccess {
            return Err(biz_err(
                "ACQ.TRADE_STATUS_ERROR",
                "only a paid trade can be settled",
            ));
        }
        if !t.royalty_freeze {
            return Err(biz_err(
                "ACQ.TRADE_SETTLE_ERROR",
                "the trade was not created for royalty (extend_params.royalty_freeze)",
            ));
        }
        if t.royalty.finished {
            return Err(biz_err(
                "ACQ.TRADE_SETTLE_ERROR",
                "royalty for this trade is finished",
            ));
        }
        let total: u64 = shares.iter().map(|s| s.amount).sum();
        if total > t.held() {
            return Err(biz_err(
                "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR",
                "the shares exceed what is left to settle",
            ));
        }
        let receivers = self.receivers();
        let details = shares
            .into_iter()
            .map(|s| Detail {
                detail_id: format!("{}{:012}", Utc::now().format("%Y%m%d"), self.seq.next()),
                bound: receivers.bound.contains(&s.account),
                account_type: s.account_type,
                account: s.account,
                amount: s.amount,
                desc: s.desc,
                state: DetailState::Processing,
                error_code: None,
            })
            .collect();
        let settle_no = format!("{}0025{:012}", Utc::now().format("%Y%m%d"), self.seq.next());
        t.royalty.settles.insert(
            request_no.clone(),
            Settle {
                settle_no: settle_no.clone(),
                out_request_no: request_no,
                content,
                finish,
                details,
                created: tf::china_timestamp(Utc::now()),
            },
        );
        t.royalty.finished |= finish;
        ok.insert("settle_no".into(), json!(settle_no));
        Ok(ok)
    }

    /// `alipay.trade.order.settle.query`, by `settle_no` or by `out_request_no` + `trade_no`.
    /// The first query settles the shares that are still processing.
    pub(super) fn settle_query(&self, biz: &Map<String, Value>) -> Result<Answer, GwError> {
        let settle_no = text(biz.get("settle_no"));
        let request_no = text(biz.get("out_request_no"));
        let trade_no = text(biz.get("trade_no"));
        if settle_no.is_empty() && (request_no.is_empty() || trade_no.is_empty()) {
            return Err(invalid(
                "settle_no, or out_request_no and trade_no, are required",
            ));
        }
        let no_settle = || biz_err("ACQ.TRADE_NOT_EXIST", "no such settle");
        let mut trades = self.trades();
        let receivers = self.receivers();
        let s = if settle_no.is_empty() {
            by_trade_no(&mut trades, &trade_no)
                .map_err(|_| no_settle())?
                .royalty
                .settles
                .get_mut(&request_no)
        } else {
            trades
                .values_mut()
                .flat_map(|t| t.royalty.settles.values_mut())
                .find(|s| s.settle_no == settle_no)
        }
        .ok_or_else(no_settle)?;
        for d in s
            .details
            .iter_mut()
            .filter(|d| d.state == DetailState::Processing)
        {
            let fail = if d.bound {
                receivers.behaviour(&d.account).share_fail
            } else {
                Some(NOT_BOUND.to_string())
            };
            d.state = if fail.is_some() {
                DetailState::Fail
            } else {
                DetailState::Success
            };
            d.error_code = fail;
        }
        let details: Vec<Value> = s
            .details
            .iter()
            .map(|d| {
                let mut v = json!({
                    "operation_type": "transfer",
                    "execute_dt": s.created,
                    "trans_out": SELLER_ID,
                    "trans_out_type": "userId",
                    "trans_in": d.account,
                    "trans_in_type": d.account_type,
                    "amount": fen_to_yuan(d.amount),
                    "state": d.state.as_str(),
                    "detail_id": d.detail_id,
                });
                if let Some(code) = &d.error_code {
                    v["error_code"] = json!(code);
                    v["error_desc"] = json!("the share was not settled");
                }
                v
            })
            .collect();
        let mut ok = success();
        ok.insert("out_request_no".into(), json!(s.out_request_no));
        ok.insert("operation_dt".into(), json!(s.created));
        ok.insert("royalty_detail_list".into(), Value::Array(details));
        Ok(ok)
    }
}
