//! The WeChat Pay API v3 simulator: verifies the Authorization header as the gateway does
//! (wrong signature, stale timestamp or unknown serial → 401 SIGN_ERROR), keeps transactions,
//! refunds and profit-sharing orders and returns, serves trade bills, signs every response
//! with its platform key (bill files excepted, as WeChat Pay does), and sends encrypted, signed
//! notifications when a transaction is paid through the sandbox control.
//!
//! `handlers.rs`: authentication and the operations; `sharing.rs`: profit sharing (receivers,
//! splits, unfreeze, returns); `bills.rs`: trade bills and their download; `state.rs`: the
//! transactions, how the API shows them, and the control's pay; `notify.rs`: notifications and
//! forgeries; `settings.rs`: the rewrite's side.

mod bills;
mod handlers;
mod notify;
mod settings;
mod sharing;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{Method, StatusCode};
use serde_json::Value;

use self::handlers::error;
pub use self::notify::{Forgery, SignedNotification};
use self::sharing::Receiver;
use self::state::Transaction;
use super::kit::{spoil_at, Answer, Seq};
use super::shared::{ReceiverBehaviour, StatementEdits};
use super::{
    ControlError, Credentials, FaultKind, GatewayRequest, Outgoing, Sim, SimChannel, Simulator,
};
use crate::channels::wechatpay::{bill, transformers as tf};
use crate::crypto::{PrivateKey, PublicKey, SymmetricKey};

/// The simulator of one WeChat Pay channel.
pub type WechatSim = Sim<Gateway>;

/// The WeChat Pay API v3 gateway's side of the protocol.
#[derive(Debug)]
pub struct Gateway {
    mchid: String,
    appid: String,
    merchant_key: PublicKey,
    merchant_serial: String,
    platform_key: Arc<PrivateKey>,
    platform_key_id: String,
    apiv3_key: Arc<SymmetricKey>,
    trades: Mutex<HashMap<String, Transaction>>,
    /// Profit-sharing receivers by account (locked before `trades` when both are needed).
    receivers: Mutex<HashMap<String, Receiver>>,
    /// Trade bills: the control's edits and the files made (locked after `trades`, never
    /// held while taking it).
    statements: Mutex<bills::Statements>,
    seq: Seq,
}

/// Where a transaction is addressed by merchant order number.
const ORDER: &str = "/v3/pay/transactions/out-trade-no/";
/// Where refunds are made, and looked up by refund number.
const REFUNDS: &str = "/v3/refund/domestic/refunds";
/// Where profit-sharing orders are made, and looked up by number.
const SPLITS: &str = "/v3/profitsharing/orders";
/// Where profit-sharing returns are made, and looked up by number.
const RETURNS: &str = "/v3/profitsharing/return-orders";

/// A query-string parameter.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

impl Gateway {
    /// The operation a request asks for.
    fn route(&self, req: &GatewayRequest) -> Answer {
        let (method, uri) = (&req.method, &req.uri);
        let path = uri.path();
        let prepay_types = [
            ("native", "NATIVE"),
            ("jsapi", "JSAPI"),
            ("app", "APP"),
            ("h5", "MWEB"),
        ];
        if *method == Method::POST {
            if let Some(kind) = path.strip_prefix("/v3/pay/transactions/") {
                if let Some((_, t)) = prepay_types.iter().find(|(k, _)| *k == kind) {
                    return self.prepay(t, &req.json());
                }
                if let Some(no) = kind
                    .strip_prefix("out-trade-no/")
                    .and_then(|r| r.strip_suffix("/close"))
                {
                    return self.close(no, &req.json());
                }
            }
            if path == REFUNDS {
                return self.refund(&req.json());
            }
            let serial = req
                .headers
                .get("Wechatpay-Serial")
                .and_then(|v| v.to_str().ok());
            match path {
                "/v3/profitsharing/receivers/add" => return self.add_receiver(&req.json(), serial),
                SPLITS => return self.split(&req.json(), serial),
                "/v3/profitsharing/orders/unfreeze" => return self.unfreeze(&req.json()),
                RETURNS => return self.split_return(&req.json()),
                _ => {}
            }
        }
        if *method == Method::GET {
            if let Some(no) = path.strip_prefix(ORDER) {
                return self.query(no, query_param(uri, "mchid"));
            }
            if let Some(no) = path.strip_prefix(SPLITS).and_then(|r| r.strip_prefix('/')) {
                return self.split_query(no, query_param(uri, "transaction_id"));
            }
            if let Some(no) = path.strip_prefix(RETURNS).and_then(|r| r.strip_prefix('/')) {
                return self.return_query(no, query_param(uri, "out_order_no"));
            }
            if let Some(no) = path.strip_prefix(REFUNDS).and_then(|r| r.strip_prefix('/')) {
                return self.refund_query(no);
            }
            if path == bill::TRADEBILL_PATH {
                return self.trade_bill(req);
            }
        }
        error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "no such API")
    }

    /// The answer, signed with the platform key (`tamper`: under a signature that does not
    /// match it).
    fn signed(&self, status: StatusCode, body: Value, tamper: bool) -> Response {
        let text = if status == StatusCode::NO_CONTENT {
            String::new()
        } else {
            body.to_string()
        };
        let mut headers = tf::signature_headers(
            &self.platform_key,
            &self.platform_key_id,
            Utc::now().timestamp(),
            &crate::crypto::random_hex(16),
            text.as_bytes(),
        );
        if tamper {
            if let Some(sig) = headers
                .iter_mut()
                .find(|(k, _)| *k == "Wechatpay-Signature")
            {
                spoil_at(&mut sig.1, 0);
            }
        }
        let mut resp = (status, text).into_response();
        for (k, v) in headers {
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp.headers_mut().insert(
            "Request-ID",
            http::HeaderValue::from_str(&crate::crypto::random_hex(12)).expect("hex"),
        );
        if status != StatusCode::NO_CONTENT {
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        resp
    }
}

impl Simulator for Gateway {
    const KIND: &'static str = "wechatpay";

    fn new(c: &SimChannel) -> Self {
        Gateway {
            mchid: c.mchid.clone(),
            appid: c.app_id.clone(),
            merchant_key: c.merchant_public_key.clone(),
            merchant_serial: c.merchant_serial.to_ascii_uppercase(),
            platform_key: c.platform_key.clone(),
            platform_key_id: c.platform_key_id.clone(),
            apiv3_key: c
                .apiv3_key
                .clone()
                .unwrap_or_else(|| Arc::new(SymmetricKey::generate())),
            trades: Mutex::default(),
            receivers: Mutex::default(),
            statements: Mutex::default(),
            seq: Seq::default(),
        }
    }

    /// `METHOD /path`, with order and refund numbers replaced by `{}`.
    fn call_label(&self, req: &GatewayRequest) -> String {
        let (method, path) = (&req.method, req.uri.path());
        let template =
            if *method == Method::POST && path.starts_with(ORDER) && path.ends_with("/close") {
                "/v3/pay/transactions/out-trade-no/{}/close"
            } else if *method == Method::GET && path.starts_with(ORDER) {
                "/v3/pay/transactions/out-trade-no/{}"
            } else if *method == Method::GET && path.starts_with("/v3/refund/domestic/refunds/") {
                "/v3/refund/domestic/refunds/{}"
            } else if *method == Method::GET && path.starts_with("/v3/profitsharing/orders/") {
                "/v3/profitsharing/orders/{}"
            } else if *method == Method::GET && path.starts_with("/v3/profitsharing/return-orders/")
            {
                "/v3/profitsharing/return-orders/{}"
            } else {
                path
            };
        format!("{method} {template}")
    }

    /// Authenticate, dispatch, sign the answer.
    fn handle(&self, req: &GatewayRequest, tamper: bool) -> Response {
        if req.method == Method::GET && req.uri.path() == bill::DOWNLOAD_PATH {
            // The file is answered unsigned; an error is a signed JSON answer like any other.
            let file = self.authenticate(req).and_then(|()| self.bill_file(req));
            return file.unwrap_or_else(|(status, answer)| self.signed(status, answer, tamper));
        }
        let (status, answer) = self
            .authenticate(req)
            .map_or_else(|e| e, |()| self.route(req));
        self.signed(status, answer, tamper)
    }

    fn refused(&self, kind: FaultKind) -> Response {
        match kind {
            FaultKind::RateLimit => {
                let (s, v) = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "FREQUENCY_LIMITED",
                    "too many requests",
                );
                self.signed(s, v, false)
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response(),
        }
    }

    fn pay(&self, no: &str, even_if_closed: bool) -> Result<Value, ControlError> {
        self.pay_as(no, even_if_closed)
    }

    fn view(&self, no: &str) -> Option<Value> {
        self.order_view(no)
    }

    fn notification(&self, no: &str) -> Result<Outgoing, String> {
        let url = self
            .trades()
            .get(no)
            .and_then(|t| t.notify_url.clone())
            .ok_or("no such transaction or no notify_url")?;
        let n = self
            .notification(no, &Forgery::default())
            .ok_or("no such transaction")?;
        Ok(Outgoing {
            url,
            content_type: "application/json",
            headers: n.headers,
            body: n.body,
        })
    }

    fn acknowledged(&self, status: u16, _body: &str) -> bool {
        matches!(status, 200 | 204)
    }

    fn set_receiver(
        &self,
        account: &str,
        behaviour: ReceiverBehaviour,
    ) -> Result<(), ControlError> {
        self.behave(account, behaviour)
    }

    fn split_view(&self, out_split_no: &str) -> Option<Value> {
        self.split_view_of(out_split_no)
    }

    fn set_statement_edits(&self, edits: StatementEdits) -> Result<(), ControlError> {
        self.edit_statements(edits);
        Ok(())
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            platform_key_id: Some(self.platform_key_id.clone()),
            apiv3_key: Some(self.apiv3_key.clone()),
            ..Credentials::signed_by(&self.platform_key)
        }
    }
}
