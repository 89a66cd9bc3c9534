//! The Alipay OpenAPI gateway simulator: verifies request signatures as the gateway does,
//! keeps trades and refunds, answers with signed `*_response` objects, and sends signed
//! notifications when a trade is paid through the sandbox control.
//!
//! Barcode `auth_code`s: 16–24 digits starting with 25–30 are valid. Codes starting with `28`
//! leave the trade waiting for the customer's password (code 10003; pay it through the control
//! API); codes starting with `29` are declined for insufficient balance.
//!
//! Royalty (分账): receivers are bound with `alipay.trade.royalty.relation.bind`, frozen trades
//! settled with `alipay.trade.order.settle` (asynchronously: see `royalty.rs`), and refunds
//! take split money back with `refund_royalty_parameters`. The control's receiver switches
//! (`PUT /sandbox/{channel}/receivers/{account}`) fail binds, shares or returns, and
//! `GET /sandbox/{channel}/splits/{out_request_no}` shows a settle with its returns.
//!
//! Statements: `alipay.data.dataservice.bill.downloadurl.query` answers a one-time address on
//! this simulator (`GET /bills/download?token=…`) serving the day's ZIP, built from the trades;
//! `PUT /sandbox/{channel}/statements` puts discrepancies in it (see `bills.rs`).
//!
//! `envelope.rs`: parameters, authentication and signed answers; `handlers.rs`: the business
//! methods; `royalty.rs`: the royalty methods; `bills.rs`: statements and their downloads;
//! `state.rs`: the trades, settles and receivers, and the control's pay and scan; `notify.rs`:
//! notifications; `settings.rs`: the rewrite's side.

#[cfg(test)]
mod bill_tests;
mod bills;
mod envelope;
mod handlers;
mod notify;
mod royalty;
mod settings;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use serde_json::Value;

use self::envelope::{is_cashier, params};
pub use self::state::TradeView;
use self::state::{Receivers, Trade};
use super::kit::Seq;
use super::shared::{ReceiverBehaviour, StatementEdits};
use super::{ControlError, Credentials, GatewayRequest, Outgoing, Sim, SimChannel, Simulator};
use crate::channels::alipay::bill;
use crate::crypto::{PrivateKey, PublicKey};

/// The simulator of one Alipay channel.
pub type AlipaySim = Sim<Gateway>;

/// The Alipay OpenAPI gateway's side of the protocol.
#[derive(Debug)]
pub struct Gateway {
    app_id: String,
    merchant_key: PublicKey,
    platform_key: Arc<PrivateKey>,
    trades: Mutex<HashMap<String, Trade>>,
    /// Locked after `trades` when both are needed.
    receivers: Mutex<Receivers>,
    /// Statement edits and files waiting to be downloaded.
    statements: Mutex<bills::Statements>,
    seq: Seq,
}

impl Simulator for Gateway {
    const KIND: &'static str = "alipay";
    const PATH: Option<&'static str> = Some("/gateway.do");
    const FILE_PATH: Option<&'static str> = Some(bills::DOWNLOAD_PATH);

    fn new(c: &SimChannel) -> Self {
        Gateway {
            app_id: c.app_id.clone(),
            merchant_key: c.merchant_public_key.clone(),
            platform_key: c.platform_key.clone(),
            trades: Mutex::default(),
            receivers: Mutex::default(),
            statements: Mutex::default(),
            seq: Seq::default(),
        }
    }

    /// Calls are counted by `method` (signature-checked or not), downloads as
    /// `GET /bills/download`.
    fn call_label(&self, req: &GatewayRequest) -> String {
        if req.uri.path() == bills::DOWNLOAD_PATH {
            return format!("{} {}", req.method, bills::DOWNLOAD_PATH);
        }
        params(req).get("method").unwrap_or_default().to_string()
    }

    fn handle(&self, req: &GatewayRequest, tamper: bool) -> Response {
        if req.uri.path() == bills::DOWNLOAD_PATH {
            return self.download(req);
        }
        let params = params(req);
        let method = params.get("method").unwrap_or_default().to_string();
        let result = self.authenticate(&params).and_then(|(m, biz)| {
            let answer = if m == bill::METHOD {
                self.bill_query(&biz, &bills::base_url(req))
            } else {
                self.business(&m, &params, &biz)
            };
            answer.map(|r| (m, r))
        });
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
        Credentials::signed_by(&self.platform_key)
    }

    fn set_receiver(&self, account: &str, b: ReceiverBehaviour) -> Result<(), ControlError> {
        self.set_receiver_behaviour(account, b);
        Ok(())
    }

    fn split_view(&self, out_split_no: &str) -> Option<Value> {
        self.settle_view(out_split_no)
    }

    fn set_statement_edits(&self, edits: StatementEdits) -> Result<(), ControlError> {
        self.set_edits(edits);
        Ok(())
    }
}
