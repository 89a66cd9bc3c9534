//! The transactions and refunds the WeChat Pay simulator keeps, as the API shows them, and
//! what the sandbox control does to them: the customer pays. Profit sharing keeps its orders
//! and returns under the transaction they share (`SplitOrder`), and one model of the money:
//! the merchant holds `paid − refunded − shared + returned` of an order (`held`), and both
//! splits and refunds are limited by it.

use std::collections::{BTreeMap, HashMap};
use std::sync::MutexGuard;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Gateway;
use crate::channels::wechatpay::transformers::{
    self as tf, RefundState, ReturnResult, ShareResult, SplitOrderState, TradeState,
};
use crate::sandbox::kit::lock;
use crate::sandbox::shared::{conflict, not_found, ControlError};

#[derive(Debug, Clone)]
pub(super) struct Refund {
    pub refund_id: String,
    pub amount: u64,
    pub status: RefundState,
    pub created: String,
    /// When the refund succeeded (its statement day).
    pub succeeded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub(super) struct Transaction {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub trade_type: &'static str,
    pub amount: u64,
    /// The request's `description` (the statement's 商品名称).
    pub description: String,
    /// The request fields that define the order (to detect inconsistent repeats).
    pub content: String,
    pub state: TradeState,
    pub prepay: Value,
    pub notify_url: Option<String>,
    /// When the customer paid (`success_time`, and the statement day).
    pub paid_at: Option<DateTime<Utc>>,
    pub refunds: BTreeMap<String, Refund>,
    /// Created with `settle_info.profit_sharing = true`: held for profit sharing.
    pub profit_sharing: bool,
    /// Profit-sharing orders (splits and the unfreeze), by `out_order_no`.
    pub splits: BTreeMap<String, SplitOrder>,
    /// The unsplit amount was unfrozen (by an unfreeze, or a split with `unfreeze_unsplit`):
    /// nothing more can be shared.
    pub unfrozen: bool,
}

impl Transaction {
    pub fn refunded(&self) -> u64 {
        self.refunds
            .values()
            .filter(|r| r.status != RefundState::Closed)
            .map(|r| r.amount)
            .sum()
    }

    /// Paid: profit sharing and refunds need it.
    pub fn paid(&self) -> bool {
        matches!(self.state, TradeState::Success | TradeState::Refund)
    }

    /// What left the merchant for receivers: shares not closed (a pending share is on its way).
    pub fn shared(&self) -> u64 {
        self.splits
            .values()
            .flat_map(|o| o.receivers.iter())
            .filter(|r| !r.own && r.result != ShareResult::Closed)
            .map(|r| r.amount)
            .sum()
    }

    /// What receivers gave back (returns that succeeded).
    pub fn returned(&self) -> u64 {
        self.splits
            .values()
            .flat_map(|o| o.returns.values())
            .filter(|r| r.result == ReturnResult::Success)
            .map(|r| r.amount)
            .sum()
    }

    /// What the merchant still holds of this order: `paid − refunded − shared + returned`.
    pub fn held(&self) -> u64 {
        let paid = if self.paid() { self.amount } else { 0 };
        (paid + self.returned()).saturating_sub(self.refunded() + self.shared())
    }
}

/// One receiver's line of a profit-sharing order.
#[derive(Debug, Clone)]
pub(super) struct Share {
    /// `MERCHANT_ID` or `PERSONAL_OPENID`.
    pub kind: String,
    pub account: String,
    pub amount: u64,
    pub description: String,
    pub result: ShareResult,
    pub fail_reason: Option<String>,
    pub detail_id: String,
    /// The merchant's own line: the unfreeze of what was not shared (not a receiver).
    pub own: bool,
}

/// Money pulled back from a receiver of a profit-sharing order.
#[derive(Debug, Clone)]
pub(super) struct ShareReturn {
    pub return_id: String,
    pub account: String,
    pub amount: u64,
    pub description: String,
    /// The fields that define the return (to detect inconsistent repeats).
    pub content: String,
    pub result: ReturnResult,
    pub fail_reason: Option<String>,
    pub created: String,
}

/// A profit-sharing order: a split, or the unfreeze of the rest.
#[derive(Debug, Clone)]
pub(super) struct SplitOrder {
    pub order_id: String,
    /// The fields that define the order (to detect inconsistent repeats).
    pub content: String,
    pub state: SplitOrderState,
    pub receivers: Vec<Share>,
    /// Returns from this order's receivers, by `out_return_no`.
    pub returns: BTreeMap<String, ShareReturn>,
    pub created: String,
}

impl SplitOrder {
    /// What `account` got from this order and has not given back (nor is giving back).
    pub fn returnable(&self, account: &str) -> u64 {
        let got: u64 = self
            .receivers
            .iter()
            .filter(|r| !r.own && r.account == account && r.result == ShareResult::Success)
            .map(|r| r.amount)
            .sum();
        let back: u64 = self
            .returns
            .values()
            .filter(|r| r.account == account && r.result != ReturnResult::Failed)
            .map(|r| r.amount)
            .sum();
        got.saturating_sub(back)
    }
}

/// A profit-sharing order as the API shows it.
pub(super) fn split_json(t: &Transaction, out_order_no: &str, o: &SplitOrder) -> Value {
    let receivers: Vec<Value> = o
        .receivers
        .iter()
        .map(|r| {
            let mut v = json!({
                "amount": r.amount, "description": r.description, "type": r.kind,
                "account": r.account, "result": r.result.as_str(), "detail_id": r.detail_id,
                "create_time": o.created,
            });
            if let Some(reason) = &r.fail_reason {
                v["fail_reason"] = json!(reason);
            }
            if r.result != ShareResult::Pending {
                v["finish_time"] = json!(now_rfc3339());
            }
            v
        })
        .collect();
    json!({
        "transaction_id": t.transaction_id, "out_order_no": out_order_no,
        "order_id": o.order_id, "state": o.state.as_str(), "receivers": receivers,
    })
}

/// A profit-sharing return as the API shows it.
pub(super) fn return_json(
    out_order_no: &str,
    o: &SplitOrder,
    out_return_no: &str,
    r: &ShareReturn,
) -> Value {
    let mut v = json!({
        "order_id": o.order_id, "out_order_no": out_order_no, "out_return_no": out_return_no,
        "return_id": r.return_id, "return_mchid": r.account, "amount": r.amount,
        "description": r.description, "result": r.result.as_str(), "create_time": r.created,
    });
    if let Some(reason) = &r.fail_reason {
        v["fail_reason"] = json!(reason);
    }
    if r.result != ReturnResult::Processing {
        v["finish_time"] = json!(now_rfc3339());
    }
    v
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
    if let Some(at) = r.succeeded_at {
        v["success_time"] = json!(tf::china_rfc3339(at));
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
                "profit_sharing": t.profit_sharing, "shared": t.shared(), "returned": t.returned(),
                "held": t.held(), "unfrozen": t.unfrozen, "splits": t.splits.keys().collect::<Vec<_>>(),
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
            t.paid_at = Some(Utc::now());
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
        if let Some(at) = t.paid_at {
            v["transaction_id"] = json!(t.transaction_id);
            v["success_time"] = json!(tf::china_rfc3339(at));
            v["bank_type"] = json!("OTHERS");
            v["payer"] = json!({ "openid": "oSandboxPayer0000000000000000" });
            v["amount"]["payer_total"] = json!(amount.unwrap_or(t.amount));
            v["amount"]["payer_currency"] = json!("CNY");
        }
        v
    }
}
