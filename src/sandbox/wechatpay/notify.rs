//! The encrypted, signed `TRANSACTION.SUCCESS` notifications the WeChat Pay simulator posts,
//! and the forgeries tests spoil them with.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::state::now_rfc3339;
use super::Gateway;
use crate::channels::wechatpay::transformers as tf;
use crate::crypto::{PrivateKey, SymmetricKey};

/// How to spoil a notification, for tests of payroute's defences.
#[derive(Debug, Default, Clone)]
pub struct Forgery {
    /// Encrypt with this key instead of the merchant's APIv3 key.
    pub wrong_apiv3_key: Option<Arc<SymmetricKey>>,
    /// Sign with this key instead of the platform key.
    pub wrong_signing_key: Option<Arc<PrivateKey>>,
    /// Shift the signed timestamp by this many seconds.
    pub timestamp_offset_secs: i64,
    /// Report this amount instead of the real one.
    pub amount: Option<u64>,
}

/// A notification ready to send: headers and body.
#[derive(Debug, Clone)]
pub struct SignedNotification {
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Gateway {
    /// A signed, encrypted `TRANSACTION.SUCCESS` notification for the transaction's current
    /// state, optionally spoiled as `forgery` says.
    pub fn notification(
        &self,
        out_trade_no: &str,
        forgery: &Forgery,
    ) -> Option<SignedNotification> {
        let t = self.trades().get(out_trade_no).cloned()?;
        let plaintext = self.transaction_json(&t, forgery.amount).to_string();
        let nonce = &crate::crypto::random_hex(6);
        let key = forgery.wrong_apiv3_key.as_ref().unwrap_or(&self.apiv3_key);
        let ciphertext = tf::encrypt_resource(key, nonce, "transaction", plaintext.as_bytes())?;
        let body = json!({
            "id": format!("EV-{}", crate::crypto::random_hex(10)),
            "create_time": now_rfc3339(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext, "associated_data": "transaction", "nonce": nonce,
            },
        })
        .to_string();
        let signer = forgery
            .wrong_signing_key
            .as_ref()
            .unwrap_or(&self.platform_key);
        let ts = Utc::now().timestamp() + forgery.timestamp_offset_secs;
        let headers = tf::signature_headers(
            signer,
            &self.platform_key_id,
            ts,
            &crate::crypto::random_hex(16),
            body.as_bytes(),
        );
        Some(SignedNotification { headers, body })
    }
}
