//! The Ping++ simulator: checks the secret key and the `Pingplusplus-Signature` of every
//! request (failures → the real `{"error":{…}}` shape), keeps charges and refunds, and sends
//! webhooks signed with its platform key when a charge is paid through the sandbox control.
//! Credential shapes per channel are modelled (the protocol reference marks them unconfirmed).
//!
//! `handlers.rs`: authentication and the operations; `state.rs`: the charges, how the API
//! shows them, and the control's pay; `notify.rs`: webhooks; `settings.rs`: the rewrite's side.

mod handlers;
mod notify;
mod settings;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};

use self::handlers::{error, missing};
use self::state::Charge;
use super::kit::{lock, Answer, Seq};
use super::{
    ControlError, Credentials, FaultKind, GatewayRequest, Outgoing, Sim, SimChannel, Simulator,
};
use crate::crypto::{PrivateKey, PublicKey};

/// The simulator of one Ping++ channel.
pub type PingppSim = Sim<Gateway>;

/// The Ping++ API's side of the protocol.
#[derive(Debug)]
pub struct Gateway {
    app_id: String,
    secret_key: String,
    merchant_key: PublicKey,
    platform_key: Arc<PrivateKey>,
    charges: Mutex<HashMap<String, Charge>>,
    by_order: Mutex<HashMap<String, String>>,
    seq: Seq,
    webhook_url: Mutex<Option<String>>,
}

impl Gateway {
    /// The operation a request asks for.
    fn route(&self, req: &GatewayRequest) -> Answer {
        let path = req.uri.path();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("POST", ["v1", "charges"]) => self.create_charge(&req.json()),
            ("GET", ["v1", "charges", id]) => self
                .charges()
                .get(*id)
                .map(|c| (StatusCode::OK, c.json.clone()))
                .unwrap_or_else(|| missing("No such charge")),
            ("POST", ["v1", "charges", id, "refunds"]) => self.create_refund(id, &req.json()),
            ("GET", ["v1", "charges", id, "refunds"]) => self.refunds(id, None),
            ("GET", ["v1", "charges", id, "refunds", re]) => self.refunds(id, Some(re)),
            _ => missing("Unrecognized request URL"),
        }
    }
}

impl Simulator for Gateway {
    const KIND: &'static str = "pingpp";

    fn new(c: &SimChannel) -> Self {
        Gateway {
            app_id: c.app_id.clone(),
            secret_key: c.secret_key.clone().unwrap_or_default(),
            merchant_key: c.merchant_public_key.clone(),
            platform_key: c.platform_key.clone(),
            charges: Mutex::default(),
            by_order: Mutex::default(),
            seq: Seq::default(),
            webhook_url: Mutex::default(),
        }
    }

    /// `METHOD /path`, with charge and refund ids replaced by `{}`.
    fn call_label(&self, req: &GatewayRequest) -> String {
        let path = req.uri.path();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let template = match parts.as_slice() {
            ["v1", "charges", _] => "/v1/charges/{}",
            ["v1", "charges", _, "refunds"] => "/v1/charges/{}/refunds",
            ["v1", "charges", _, "refunds", _] => "/v1/charges/{}/refunds/{}",
            _ => path,
        };
        format!("{} {template}", req.method)
    }

    /// Authentication, dispatch. Ping++ does not sign responses: a `bad_signature` fault
    /// garbles the answer instead.
    fn handle(&self, req: &GatewayRequest, tamper: bool) -> Response {
        let (status, answer) = self
            .authenticate(req)
            .map_or_else(|e| e, |()| self.route(req));
        let answer = if tamper {
            json!({ "garbled": true })
        } else {
            answer
        };
        (status, axum::Json(answer)).into_response()
    }

    fn refused(&self, kind: FaultKind) -> Response {
        let (s, v) = match kind {
            FaultKind::RateLimit => error(
                StatusCode::FORBIDDEN,
                "rate_limit_error",
                "rate_limit",
                "Too many requests",
            ),
            _ => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
                "Internal server error",
            ),
        };
        (s, axum::Json(v)).into_response()
    }

    /// Ping++ charges cannot be closed, so `even_if_closed` changes nothing.
    fn pay(&self, no: &str, _even_if_closed: bool) -> Result<Value, ControlError> {
        self.pay_charge(no)
    }

    fn view(&self, no: &str) -> Option<Value> {
        self.order_view(no)
    }

    fn notification(&self, no: &str) -> Result<Outgoing, String> {
        let (signature, body) = self.webhook(no, false).ok_or("no such charge")?;
        self.outgoing(&signature, body)
    }

    fn acknowledged(&self, status: u16, _body: &str) -> bool {
        (200..300).contains(&status)
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            secret_key: Some(self.secret_key.clone()),
            ..Credentials::signed_by(&self.platform_key)
        }
    }

    fn set_notify_url(&self, url: String) {
        *lock(&self.webhook_url) = Some(url);
    }
}
