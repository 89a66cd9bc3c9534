//! The transactions and refunds the WeChat Pay simulator keeps, as the API shows them, and
//! what the sandbox control does to them: the customer pays.

use std::collections::{BTreeMap, HashMap};
use std::sync::MutexGuard;

use chrono::Utc;
use serde_json::{json, Value};

use super::Gateway;
use crate::channels::wechatpay::transformers::{self as tf, RefundState, TradeState};
use crate::sandbox::kit::lock;
use crate::sandbox::shared::{conflict, not_found, ControlError};

#[derive(Debug, Clone)]
pub(super) struct Refund {
    pub refund_id: String,
    pub amount: u64,
    pub status: RefundState,
    pub created: String,
}

#[derive(Debug, Clone)]
pub(super) struct Transaction {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub trade_type: &'static str,
    pub amount: u64,
    /// The request fields that define the order (to detect inconsistent repeats).
    pub content: String,
    pub state: TradeState,
    pub prepay: Value,
    pub notify_url: Option<String>,
    pub success_time: Option<String>,
    pub refunds: BTreeMap<String, Refund>,
    /// Created with `settle_info.profit_sharing = true`: held for profit sharing.
    pub profit_sharing: bool,
}

impl Transaction {
    pub fn refunded(&self) -> u64 {
        self.refunds
            .values()
            .filter(|r| r.status != RefundState::Closed)
            .map(|r| r.amount)
            .sum()
    }
}

pub(super) fn now_rfc3339() -> String {
    tf::china_rfc3339(Utc::now())
}

/// A refund as the API shows it.
pub(super) fn refund_json(t: &Transaction, refund_no: &str, r: &Refund) -> Value {
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

impl Gateway {
    pub(super) fn trades(&self) -> MutexGuard<'_, HashMap<String, Transaction>> {
        lock(&self.trades)
    }

    pub(super) fn next_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}{:012}",
            Utc::now().format("%Y%m%d"),
            self.seq.next()
        )
    }

    /// The simulator's view of a transaction.
    pub fn order_view(&self, out_trade_no: &str) -> Option<Value> {
        self.trades().get(out_trade_no).map(|t| {
            json!({
                "out_trade_no": t.out_trade_no, "transaction_id": t.transaction_id,
                "trade_state": t.state.as_str(), "amount": t.amount, "refunded": t.refunded(),
                "profit_sharing": t.profit_sharing,
                "refunds": t.refunds.iter().map(|(k, r)| (k.clone(), json!({"amount": r.amount, "status": r.status.as_str()}))).collect::<serde_json::Map<_, _>>(),
            })
        })
    }

    pub(super) fn pay_as(
        &self,
        out_trade_no: &str,
        even_if_closed: bool,
    ) -> Result<Value, ControlError> {
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

    /// A transaction as the API shows it (`amount`: report this amount instead).
    pub(super) fn transaction_json(&self, t: &Transaction, amount: Option<u64>) -> Value {
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
}
