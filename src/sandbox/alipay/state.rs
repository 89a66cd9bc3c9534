//! The trades the Alipay simulator keeps, and what the sandbox control does to them: the
//! customer scans or pays.

use std::collections::{BTreeMap, HashMap};
use std::sync::MutexGuard;

use chrono::Utc;
use serde::Serialize;

use super::Gateway;
use crate::channels::alipay::transformers::{self as tf, TradeStatus};
use crate::sandbox::kit::lock;
use crate::sandbox::shared::{conflict, not_found, ControlError};

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
    pub paid_at: Option<String>,
    pub refunds: BTreeMap<String, u64>,
    /// A precreate QR code becomes a trade at Alipay only when the buyer scans it (protocol
    /// reference §8.1): until then query, close, cancel and refund answer
    /// `ACQ.TRADE_NOT_EXIST`, and the code stays payable. Cashier orders (app, wap, page)
    /// exist from the moment the cashier is opened.
    pub scanned: bool,
    /// Created with `extend_params.royalty_freeze = "true"`: held for settlement (splits).
    pub royalty_freeze: bool,
}

impl Trade {
    pub fn refunded(&self) -> u64 {
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
        t.paid_at = Some(tf::china_timestamp(Utc::now()));
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
