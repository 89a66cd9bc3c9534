//! The trades the Alipay simulator keeps, and what the sandbox control does to them: the
//! customer scans or pays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::MutexGuard;

use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};

use super::Gateway;
use crate::channels::alipay::transformers::{self as tf, TradeStatus};
use crate::sandbox::kit::lock;
use crate::sandbox::shared::{conflict, not_found, ControlError, ReceiverBehaviour};

/// A trade at the simulator.
#[derive(Debug, Clone)]
pub(super) struct Trade {
    pub trade_no: String,
    pub out_trade_no: String,
    pub amount: u64,
    pub subject: String,
    /// The biz_content fields that define the order (to detect inconsistent repeats).
    pub content: String,
    pub status: TradeStatus,
    pub qr_code: Option<String>,
    pub notify_url: Option<String>,
    pub created: String,
    /// When the trade was paid (China time), for statements.
    pub paid_at: Option<String>,
    pub refunds: BTreeMap<String, u64>,
    /// When each refund succeeded (China time), for statements.
    pub refunded_at: BTreeMap<String, String>,
    /// A precreate QR code becomes a trade at Alipay only when the buyer scans it (protocol
    /// reference §8.1): until then query, close, cancel and refund answer
    /// `ACQ.TRADE_NOT_EXIST`, and the code stays payable. Cashier orders (app, wap, page)
    /// exist from the moment the cashier is opened.
    pub scanned: bool,
    /// Created with `extend_params.royalty_freeze = "true"`: held for settlement (splits).
    pub royalty_freeze: bool,
    /// Settles and returns (royalty trades only).
    pub royalty: Royalty,
}

impl Trade {
    pub fn refunded(&self) -> u64 {
        self.refunds.values().sum()
    }

    /// A refund succeeded now (its time is kept from the first time it did).
    pub fn record_refund(&mut self, request_no: String, amount: u64) {
        self.refunded_at
            .entry(request_no.clone())
            .or_insert_with(|| tf::china_timestamp(Utc::now()));
        self.refunds.insert(request_no, amount);
    }

    /// The trade is paid now (its time is kept from the first time it was).
    pub fn record_paid(&mut self) {
        self.paid_at
            .get_or_insert_with(|| tf::china_timestamp(Utc::now()));
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
    /// Created for settlement (`extend_params.royalty_freeze`).
    pub royalty_freeze: bool,
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
        royalty_freeze: t.royalty_freeze,
    }
}

impl Gateway {
    pub(super) fn trades(&self) -> MutexGuard<'_, HashMap<String, Trade>> {
        lock(&self.trades)
    }

    /// The simulator's view of a trade.
    pub fn order_view(&self, out_trade_no: &str) -> Option<TradeView> {
        self.trades().get(out_trade_no).map(view)
    }

    pub(super) fn next_trade_no(&self) -> String {
        format!("{}2200{:012}", Utc::now().format("%Y%m%d"), self.seq.next())
    }

    pub(super) fn pay_as(
        &self,
        out_trade_no: &str,
        even_if_closed: bool,
    ) -> Result<TradeView, ControlError> {
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
        t.record_paid();
        Ok(view(t))
    }

    /// The buyer scans a QR code (or opens a cashier) without paying yet: the trade now exists
    /// at the gateway, waiting for payment.
    pub(super) fn scan_trade(&self, out_trade_no: &str) -> Result<TradeView, ControlError> {
        let mut trades = self.trades();
        let t = trades
            .get_mut(out_trade_no)
            .ok_or_else(|| not_found("ACQ.TRADE_NOT_EXIST", "no such QR code or cashier order"))?;
        t.scanned = true;
        Ok(view(t))
    }
}

/// A royalty detail's state at the simulator (`royalty_detail_list[].state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DetailState {
    Processing,
    Success,
    Fail,
}

impl DetailState {
    pub fn as_str(self) -> &'static str {
        match self {
            DetailState::Processing => "PROCESSING",
            DetailState::Success => "SUCCESS",
            DetailState::Fail => "FAIL",
        }
    }
}

/// One share of a settle.
#[derive(Debug, Clone)]
pub(super) struct Detail {
    pub detail_id: String,
    pub account_type: String,
    pub account: String,
    pub amount: u64,
    pub desc: String,
    /// The relation was bound when the settle was made (else the share fails).
    pub bound: bool,
    pub state: DetailState,
    pub error_code: Option<String>,
}

/// An `alipay.trade.order.settle` at the simulator.
#[derive(Debug, Clone)]
pub(super) struct Settle {
    pub settle_no: String,
    pub out_request_no: String,
    /// The request's shares and finish flag, to tell a repeat from a different settle.
    pub content: String,
    pub finish: bool,
    pub details: Vec<Detail>,
    pub created: String,
}

impl Settle {
    /// What this settle holds or gave away: every share that has not failed.
    pub fn settled(&self) -> u64 {
        self.details
            .iter()
            .filter(|d| d.state != DetailState::Fail)
            .map(|d| d.amount)
            .sum()
    }
}

/// Split money a refund took back from a receiver (`refund_royalty_parameters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoyaltyReturn {
    /// The refund's `out_request_no`.
    pub refund_no: String,
    pub account: String,
    pub amount: u64,
}

/// The royalty side of a trade.
#[derive(Debug, Clone, Default)]
pub(super) struct Royalty {
    /// By `out_request_no`.
    pub settles: BTreeMap<String, Settle>,
    pub returns: Vec<RoyaltyReturn>,
    /// A settle with `royalty_finish = "true"` was made: no more settles.
    pub finished: bool,
}

impl Royalty {
    /// Shared to `account` and received by it (succeeded shares).
    pub fn received_by(&self, account: &str) -> u64 {
        self.settles
            .values()
            .flat_map(|s| &s.details)
            .filter(|d| d.account == account && d.state == DetailState::Success)
            .map(|d| d.amount)
            .sum()
    }

    /// Taken back from `account` by refunds.
    pub fn returned_by(&self, account: &str) -> u64 {
        self.returns
            .iter()
            .filter(|r| r.account == account)
            .map(|r| r.amount)
            .sum()
    }
}

impl Trade {
    /// What the merchant holds for this trade: paid − refunded − settled + returned.
    pub fn held(&self) -> u64 {
        let settled: u64 = self.royalty.settles.values().map(Settle::settled).sum();
        let returned: u64 = self.royalty.returns.iter().map(|r| r.amount).sum();
        (self.amount + returned).saturating_sub(self.refunded() + settled)
    }
}

/// The receivers the merchant has bound and how the sandbox control makes them behave.
#[derive(Debug, Default)]
pub(super) struct Receivers {
    pub bound: BTreeSet<String>,
    pub behaviour: HashMap<String, ReceiverBehaviour>,
}

impl Receivers {
    pub fn behaviour(&self, account: &str) -> ReceiverBehaviour {
        self.behaviour.get(account).cloned().unwrap_or_default()
    }
}

impl Gateway {
    pub(super) fn receivers(&self) -> MutexGuard<'_, Receivers> {
        lock(&self.receivers)
    }

    pub(super) fn set_receiver_behaviour(&self, account: &str, b: ReceiverBehaviour) {
        self.receivers().behaviour.insert(account.to_string(), b);
    }

    /// What the control API shows about a settle: its shares and the returns taken from its
    /// receivers by refunds of the trade.
    pub fn settle_view(&self, out_request_no: &str) -> Option<Value> {
        let trades = self.trades();
        let (t, s) = trades
            .values()
            .find_map(|t| t.royalty.settles.get(out_request_no).map(|s| (t, s)))?;
        let processing = s.details.iter().any(|d| d.state == DetailState::Processing);
        let details: Vec<Value> = s
            .details
            .iter()
            .map(|d| {
                json!({
                    "account": d.account,
                    "account_type": d.account_type,
                    "amount": d.amount,
                    "state": d.state.as_str(),
                    "error_code": d.error_code,
                    "detail_id": d.detail_id,
                    "desc": d.desc,
                })
            })
            .collect();
        let returns: Vec<Value> = t
            .royalty
            .returns
            .iter()
            .filter(|r| s.details.iter().any(|d| d.account == r.account))
            .map(|r| json!({ "out_request_no": r.refund_no, "account": r.account, "amount": r.amount }))
            .collect();
        Some(json!({
            "out_split_no": s.out_request_no,
            "settle_no": s.settle_no,
            "out_trade_no": t.out_trade_no,
            "trade_no": t.trade_no,
            "state": if processing { "PROCESSING" } else { "FINISHED" },
            "finish": s.finish,
            "details": details,
            "returns": returns,
        }))
    }
}
