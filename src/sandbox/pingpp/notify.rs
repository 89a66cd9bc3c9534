//! The signed `charge.succeeded` webhooks the Ping++ simulator posts to the URL set in its
//! (simulated) dashboard.

use chrono::Utc;
use serde_json::json;

use super::Gateway;
use crate::channels::pingpp::transformers as tf;
use crate::sandbox::kit::lock;
use crate::sandbox::{Outgoing, Sim};

impl Gateway {
    /// A `charge.succeeded` event for the order and its signature; with `tamper` the signed
    /// body differs from the one returned.
    pub fn webhook(&self, order_no: &str, tamper: bool) -> Option<(String, String)> {
        let id = self.charge_id_of(order_no)?;
        let charge = self.charges().get(&id)?.json.clone();
        let body = json!({
            "id": self.next_id("evt_"),
            "created": Utc::now().timestamp(),
            "livemode": false,
            "type": "charge.succeeded",
            "data": { "object": charge },
            "object": "event",
            "pending_webhooks": 0,
            "request": self.next_id("iar_"),
        })
        .to_string();
        let sig = self.platform_key.sign_sha256_b64(body.as_bytes());
        let body = if tamper {
            body.replacen("\"paid\":true", "\"paid\":true ", 1)
        } else {
            body
        };
        Some((sig, body))
    }

    /// A webhook addressed to the URL set in the (simulated) dashboard.
    pub(super) fn outgoing(&self, signature: &str, body: String) -> Result<Outgoing, String> {
        let url = lock(&self.webhook_url)
            .clone()
            .ok_or("no webhook URL is set")?;
        Ok(Outgoing {
            url,
            content_type: "application/json",
            headers: vec![(tf::WEBHOOK_SIGNATURE_HEADER, signature.to_string())],
            body,
        })
    }
}

impl Sim<Gateway> {
    /// Posts a webhook to payroute; returns its status and body.
    pub async fn deliver(&self, signature: &str, body: &str) -> Result<(u16, String), String> {
        let n = self.outgoing(signature, body.to_string())?;
        self.post(&n).await
    }
}
