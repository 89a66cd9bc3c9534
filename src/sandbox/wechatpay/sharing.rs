//! Profit sharing as WeChat Pay API v3 answers it: receivers/add, orders (split), the order
//! query, unfreeze, return-orders and the return query; the sandbox control's receiver
//! behaviours and split view.
//!
//! Results are asynchronous: a new order answers `PROCESSING` with its receivers `PENDING`,
//! and the first query afterwards settles it (each receiver `SUCCESS`, or `CLOSED` with the
//! receiver's `share_fail`, or `NO_RELATION` for a receiver never added); a return answers
//! `PROCESSING` and its first query settles it (`SUCCESS`, or `FAILED` with `return_fail`).

use std::collections::{BTreeMap, HashMap};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::StatusCode;
use serde_json::{json, Value};

use super::handlers::{error, invalid_request, param_error};
use super::state::{
    now_rfc3339, return_json, split_json, Share, ShareReturn, SplitOrder, Transaction,
};
use super::Gateway;
use crate::channels::wechatpay::transformers::{
    ReturnResult, ShareResult, SplitOrderState, RELATIONS,
};
use crate::sandbox::kit::{lock, text, Answer};
use crate::sandbox::shared::{ControlError, ReceiverBehaviour};

/// The receiver types WeChat Pay takes.
const RECEIVER_TYPES: [&str; 2] = ["MERCHANT_ID", "PERSONAL_OPENID"];
/// The description WeChat Pay gives the merchant's own line of an unfreeze.
const UNFREEZE_LINE: &str = "解冻给分账方";

/// A receiver as the simulator knows it: added through receivers/add, and how the sandbox
/// control makes it behave.
#[derive(Debug, Clone, Default)]
pub(super) struct Receiver {
    pub bound: bool,
    pub behaviour: ReceiverBehaviour,
}

fn not_exists(message: &str) -> Answer {
    error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", message)
}

/// The merchant order number that owns the profit-sharing order `out_order_no`.
fn owner_of_split(trades: &HashMap<String, Transaction>, out_order_no: &str) -> Option<String> {
    trades
        .values()
        .find(|t| t.splits.contains_key(out_order_no))
        .map(|t| t.out_trade_no.clone())
}

/// The merchant order number and `out_order_no` of the return `out_return_no`.
fn owner_of_return(
    trades: &HashMap<String, Transaction>,
    out_return_no: &str,
) -> Option<(String, String)> {
    trades.values().find_map(|t| {
        t.splits
            .iter()
            .find(|(_, o)| o.returns.contains_key(out_return_no))
            .map(|(no, _)| (t.out_trade_no.clone(), no.clone()))
    })
}

/// An encrypted receiver name: base64 of an RSA-2048 block, under the platform key the
/// request names in `Wechatpay-Serial`.
fn check_name(name: &Value, serial: Option<&str>, platform_key_id: &str) -> Result<(), Answer> {
    let Some(name) = name.as_str() else {
        return Err(param_error("name must be a string"));
    };
    if !serial.is_some_and(|s| s.eq_ignore_ascii_case(platform_key_id)) {
        return Err(param_error(
            "Wechatpay-Serial must name the platform key the name is encrypted with",
        ));
    }
    match B64.decode(name.as_bytes()) {
        Ok(sealed) if sealed.len() >= 256 => Ok(()),
        _ => Err(param_error("name must be encrypted with the platform key")),
    }
}

/// The receivers of an order request, or what is wrong with them.
fn receivers_of(body: &Value, serial: Option<&str>, key_id: &str) -> Result<Vec<Share>, Answer> {
    let Some(list) = body.get("receivers").and_then(Value::as_array) else {
        return Err(param_error("receivers is required"));
    };
    if list.is_empty() || list.len() > 50 {
        return Err(param_error("receivers must hold 1 to 50 receivers"));
    }
    let mut shares = Vec::with_capacity(list.len());
    for r in list {
        let kind = text(r.get("type"));
        let (account, description) = (text(r.get("account")), text(r.get("description")));
        let amount = r.get("amount").and_then(Value::as_u64).filter(|a| *a > 0);
        let Some(amount) = amount else {
            return Err(param_error("receivers[].amount must be a positive integer"));
        };
        if !RECEIVER_TYPES.contains(&kind.as_str()) || account.is_empty() || description.is_empty()
        {
            return Err(param_error(
                "receivers[] needs type, account and description",
            ));
        }
        if let Some(name) = r.get("name") {
            check_name(name, serial, key_id)?;
        }
        shares.push(Share {
            kind,
            account,
            amount,
            description,
            result: ShareResult::Pending,
            fail_reason: None,
            detail_id: String::new(),
            own: false,
        });
    }
    Ok(shares)
}

/// Why a transaction cannot be shared (any more).
fn unshareable(t: &Transaction) -> Option<Answer> {
    if !t.paid() {
        return Some(invalid_request("the order is not paid"));
    }
    if !t.profit_sharing {
        return Some(invalid_request(
            "the order was not created with settle_info.profit_sharing",
        ));
    }
    if t.unfrozen {
        return Some(invalid_request(
            "the order's unsplit amount is unfrozen: nothing more can be shared",
        ));
    }
    None
}

/// Settles a processing order: each receiver's result is decided by how it behaves.
fn settle_split(o: &mut SplitOrder, receivers: &HashMap<String, Receiver>) {
    if o.state != SplitOrderState::Processing {
        return;
    }
    for r in o
        .receivers
        .iter_mut()
        .filter(|r| r.result == ShareResult::Pending)
    {
        let known = receivers.get(&r.account);
        let fail = if r.own {
            None
        } else if let Some(reason) = known.and_then(|k| k.behaviour.share_fail.clone()) {
            Some(reason)
        } else if !known.is_some_and(|k| k.bound) {
            Some("NO_RELATION".to_string())
        } else {
            None
        };
        r.result = if fail.is_some() {
            ShareResult::Closed
        } else {
            ShareResult::Success
        };
        r.fail_reason = fail;
    }
    o.state = SplitOrderState::Finished;
}

impl Gateway {
    pub(super) fn receivers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Receiver>> {
        lock(&self.receivers)
    }

    /// A new order (split or unfreeze), processing.
    fn open_order(&self, content: String, mut receivers: Vec<Share>) -> SplitOrder {
        for r in &mut receivers {
            r.detail_id = self.next_id("3600");
        }
        SplitOrder {
            order_id: self.next_id("3008"),
            content,
            state: SplitOrderState::Processing,
            receivers,
            returns: BTreeMap::new(),
            created: now_rfc3339(),
        }
    }

    /// `POST /v3/profitsharing/receivers/add`.
    pub(super) fn add_receiver(&self, body: &Value, serial: Option<&str>) -> Answer {
        let s = |k: &str| text(body.get(k));
        if s("appid") != self.appid {
            return error(
                StatusCode::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "appid and mchid do not match",
            );
        }
        let (kind, account, relation) = (s("type"), s("account"), s("relation_type"));
        if !RECEIVER_TYPES.contains(&kind.as_str()) || account.is_empty() {
            return param_error("type and account are required");
        }
        if !RELATIONS.contains(&relation.as_str()) {
            return param_error("relation_type is not one of the listed relations");
        }
        if relation == "CUSTOM" && s("custom_relation").is_empty() {
            return param_error("custom_relation is required for relation_type CUSTOM");
        }
        match body.get("name") {
            Some(name) => {
                if let Err(answer) = check_name(name, serial, &self.platform_key_id) {
                    return answer;
                }
            }
            // The merchant's full name is required for merchant receivers.
            None if kind == "MERCHANT_ID" => {
                return param_error("name is required for MERCHANT_ID receivers")
            }
            None => {}
        }
        let mut receivers = self.receivers();
        let r = receivers.entry(account.clone()).or_default();
        if let Some(code) = &r.behaviour.bind_fail {
            return error(
                StatusCode::BAD_REQUEST,
                code,
                "the receiver cannot be added",
            );
        }
        r.bound = true;
        let mut answer = json!({ "type": kind, "account": account, "relation_type": relation });
        for k in ["name", "custom_relation"] {
            if let Some(v) = body.get(k) {
                answer[k] = v.clone();
            }
        }
        (StatusCode::OK, answer)
    }

    /// `POST /v3/profitsharing/orders`: a split, answered `PROCESSING`; the same
    /// `out_order_no` with the same content is answered again with the order as it is.
    pub(super) fn split(&self, body: &Value, serial: Option<&str>) -> Answer {
        let s = |k: &str| text(body.get(k));
        if s("appid") != self.appid {
            return error(
                StatusCode::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "appid and mchid do not match",
            );
        }
        let (tid, no) = (s("transaction_id"), s("out_order_no"));
        if tid.is_empty() || no.is_empty() {
            return param_error("transaction_id and out_order_no are required");
        }
        let Some(unfreeze) = body.get("unfreeze_unsplit").and_then(Value::as_bool) else {
            return param_error("unfreeze_unsplit must be a boolean");
        };
        let shares = match receivers_of(body, serial, &self.platform_key_id) {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        // The encrypted name differs on every request; what defines the order is the rest.
        let lines: Vec<String> = shares
            .iter()
            .map(|r| format!("{},{},{},{}", r.kind, r.account, r.amount, r.description))
            .collect();
        let content = format!("split|{tid}|{unfreeze}|{}", lines.join(";"));
        let mut trades = self.trades();
        if let Some(owner) = owner_of_split(&trades, &no) {
            let t = &trades[&owner];
            let o = &t.splits[&no];
            if o.content != content {
                return invalid_request("out_order_no was used with different parameters");
            }
            return (StatusCode::OK, split_json(t, &no, o));
        }
        let Some(t) = trades.values_mut().find(|t| t.transaction_id == tid) else {
            return param_error("transaction_id does not exist");
        };
        if let Some(refused) = unshareable(t) {
            return refused;
        }
        if shares.iter().any(|r| r.account == self.mchid) {
            return invalid_request("the merchant cannot share with itself");
        }
        let total = shares
            .iter()
            .try_fold(0u64, |sum, r| sum.checked_add(r.amount));
        let Some(total) = total else {
            return param_error("the receivers' amounts add up to more than any order");
        };
        if total > t.held() {
            return error(
                StatusCode::FORBIDDEN,
                "NOT_ENOUGH",
                "the unsplit amount of the order is not enough",
            );
        }
        let mut lines = shares;
        if unfreeze {
            lines.extend(own_line(t.held() - total, &self.mchid));
            t.unfrozen = true;
        }
        let order = self.open_order(content, lines);
        let answer = split_json(t, &no, &order);
        t.splits.insert(no, order);
        (StatusCode::OK, answer)
    }

    /// `POST /v3/profitsharing/orders/unfreeze`: the unshared rest goes to the merchant; an
    /// order of its own (`out_order_no`), answered `PROCESSING`.
    pub(super) fn unfreeze(&self, body: &Value) -> Answer {
        let s = |k: &str| text(body.get(k));
        let (tid, no) = (s("transaction_id"), s("out_order_no"));
        if tid.is_empty() || no.is_empty() || s("description").is_empty() {
            return param_error("transaction_id, out_order_no and description are required");
        }
        let content = format!("unfreeze|{tid}");
        let mut trades = self.trades();
        if let Some(owner) = owner_of_split(&trades, &no) {
            let t = &trades[&owner];
            let o = &t.splits[&no];
            if o.content != content {
                return invalid_request("out_order_no was used with different parameters");
            }
            return (StatusCode::OK, split_json(t, &no, o));
        }
        let Some(t) = trades.values_mut().find(|t| t.transaction_id == tid) else {
            return param_error("transaction_id does not exist");
        };
        if let Some(refused) = unshareable(t) {
            return refused;
        }
        let lines = own_line(t.held(), &self.mchid).into_iter().collect();
        t.unfrozen = true;
        let order = self.open_order(content, lines);
        let answer = split_json(t, &no, &order);
        t.splits.insert(no, order);
        (StatusCode::OK, answer)
    }

    /// `GET /v3/profitsharing/orders/{out_order_no}?transaction_id=…`: settles a processing
    /// order.
    pub(super) fn split_query(&self, no: &str, transaction_id: Option<String>) -> Answer {
        let Some(tid) = transaction_id.filter(|t| !t.is_empty()) else {
            return param_error("transaction_id is required");
        };
        let receivers = self.receivers().clone();
        let mut trades = self.trades();
        let Some(t) = trades
            .values_mut()
            .find(|t| t.transaction_id == tid && t.splits.contains_key(no))
        else {
            return not_exists("the profit-sharing order does not exist");
        };
        let Some(o) = t.splits.get_mut(no) else {
            return not_exists("the profit-sharing order does not exist");
        };
        settle_split(o, &receivers);
        let o = o.clone();
        (StatusCode::OK, split_json(t, no, &o))
    }

    /// `POST /v3/profitsharing/return-orders`: money back from a merchant receiver, answered
    /// `PROCESSING`; never more than the receiver got minus what it already gave back.
    pub(super) fn split_return(&self, body: &Value) -> Answer {
        let s = |k: &str| text(body.get(k));
        let (order_no, order_id) = (s("out_order_no"), s("order_id"));
        let (return_no, mchid, description) =
            (s("out_return_no"), s("return_mchid"), s("description"));
        let amount = body
            .get("amount")
            .and_then(Value::as_u64)
            .filter(|a| *a > 0);
        let Some(amount) = amount else {
            return param_error("amount must be a positive integer");
        };
        if (order_no.is_empty() && order_id.is_empty())
            || return_no.is_empty()
            || mchid.is_empty()
            || description.is_empty()
        {
            return param_error(
                "out_order_no (or order_id), out_return_no, return_mchid and description are required",
            );
        }
        let content = format!("{order_no}|{order_id}|{mchid}|{amount}|{description}");
        let mut trades = self.trades();
        if let Some((owner, split_no)) = owner_of_return(&trades, &return_no) {
            let o = &trades[&owner].splits[&split_no];
            let r = &o.returns[&return_no];
            if r.content != content {
                return invalid_request("out_return_no was used with different parameters");
            }
            return (StatusCode::OK, return_json(&split_no, o, &return_no, r));
        }
        let found = trades.values_mut().find_map(|t| {
            t.splits
                .iter_mut()
                .find(|(no, o)| {
                    (!order_no.is_empty() && **no == order_no)
                        || (order_no.is_empty() && o.order_id == order_id)
                })
                .map(|(no, o)| (no.clone(), o))
        });
        let Some((split_no, o)) = found else {
            return not_exists("the profit-sharing order does not exist");
        };
        if !o
            .receivers
            .iter()
            .any(|r| !r.own && r.kind == "MERCHANT_ID" && r.account == mchid)
        {
            return invalid_request("return_mchid is not a merchant receiver of this order");
        }
        if amount > o.returnable(&mchid) {
            return invalid_request(
                "the return exceeds what the receiver got and has not returned",
            );
        }
        let r = ShareReturn {
            return_id: self.next_id("3009"),
            account: mchid,
            amount,
            description,
            content,
            result: ReturnResult::Processing,
            fail_reason: None,
            created: now_rfc3339(),
        };
        let answer = return_json(&split_no, o, &return_no, &r);
        o.returns.insert(return_no, r);
        (StatusCode::OK, answer)
    }

    /// `GET /v3/profitsharing/return-orders/{out_return_no}?out_order_no=…`: settles a
    /// processing return.
    pub(super) fn return_query(&self, return_no: &str, out_order_no: Option<String>) -> Answer {
        let Some(order_no) = out_order_no.filter(|n| !n.is_empty()) else {
            return param_error("out_order_no is required");
        };
        let receivers = self.receivers().clone();
        let mut trades = self.trades();
        let found = trades
            .values_mut()
            .find_map(|t| t.splits.get_mut(&order_no))
            .filter(|o| o.returns.contains_key(return_no));
        let Some(o) = found else {
            return not_exists("the return does not exist");
        };
        let Some(r) = o.returns.get_mut(return_no) else {
            return not_exists("the return does not exist");
        };
        if r.result == ReturnResult::Processing {
            let fail = receivers
                .get(&r.account)
                .and_then(|k| k.behaviour.return_fail.clone());
            r.result = if fail.is_some() {
                ReturnResult::Failed
            } else {
                ReturnResult::Success
            };
            r.fail_reason = fail;
        }
        let r = r.clone();
        (StatusCode::OK, return_json(&order_no, o, return_no, &r))
    }

    /// The sandbox control: how receiver `account` behaves from now on (keeps whether it was
    /// added).
    pub(super) fn behave(
        &self,
        account: &str,
        behaviour: ReceiverBehaviour,
    ) -> Result<(), ControlError> {
        self.receivers()
            .entry(account.to_string())
            .or_default()
            .behaviour = behaviour;
        Ok(())
    }

    /// The sandbox control's view of a profit-sharing order: its receivers' results, its
    /// returns, and the money of the order it shares.
    pub(super) fn split_view_of(&self, out_order_no: &str) -> Option<Value> {
        let trades = self.trades();
        let t = trades
            .values()
            .find(|t| t.splits.contains_key(out_order_no))?;
        let o = t.splits.get(out_order_no)?;
        let receivers: Vec<Value> = o
            .receivers
            .iter()
            .filter(|r| !r.own)
            .map(|r| {
                json!({ "type": r.kind, "account": r.account, "amount": r.amount,
                        "result": r.result.as_str(), "fail_reason": r.fail_reason })
            })
            .collect();
        let returns: Vec<Value> = o
            .returns
            .iter()
            .map(|(no, r)| {
                json!({ "out_return_no": no, "account": r.account, "amount": r.amount,
                        "result": r.result.as_str(), "fail_reason": r.fail_reason })
            })
            .collect();
        let unfrozen: u64 = o.receivers.iter().filter(|r| r.own).map(|r| r.amount).sum();
        Some(json!({
            "out_order_no": out_order_no, "order_id": o.order_id, "state": o.state.as_str(),
            "out_trade_no": t.out_trade_no, "transaction_id": t.transaction_id,
            "receivers": receivers, "returns": returns,
            "unfreeze": o.receivers.iter().any(|r| r.own), "unfrozen_amount": unfrozen,
            "order": { "amount": t.amount, "refunded": t.refunded(), "shared": t.shared(),
                       "returned": t.returned(), "held": t.held() },
        }))
    }
}

/// The merchant's own line of an order that unfreezes `amount` (none for nothing).
fn own_line(amount: u64, mchid: &str) -> Option<Share> {
    (amount > 0).then(|| Share {
        kind: "MERCHANT_ID".into(),
        account: mchid.to_string(),
        amount,
        description: UNFREEZE_LINE.into(),
        result: ShareResult::Pending,
        fail_reason: None,
        detail_id: String::new(),
        own: true,
    })
}
