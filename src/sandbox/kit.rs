//! Small pieces the simulated gateways share: a lock that a panicking handler cannot poison
//! for the others, the sequence ids are numbered from, a JSON field's text, and spoiling a
//! signature for the `bad_signature` fault.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use http::StatusCode;
use serde_json::Value;

/// An answer before it is signed or sent: status and JSON body.
pub type Answer = (StatusCode, Value);

/// Locks `m`, also after a panic elsewhere: the simulator's state stays usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Numbers trades, refunds and events, from 1.
#[derive(Debug)]
pub struct Seq(AtomicU64);

impl Default for Seq {
    fn default() -> Self {
        Seq(AtomicU64::new(1))
    }
}

impl Seq {
    /// The next number.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// A JSON field's text; empty when it is missing or not a string.
pub fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Changes the character at byte `at` (`A` → `B`, anything else → `A`): the same content
/// under a signature that no longer matches it, which only verification can tell.
pub fn spoil_at(s: &mut String, at: usize) {
    let Some(c) = s.get(at..).and_then(|rest| rest.chars().next()) else {
        return;
    };
    let flipped = if c == 'A' { "B" } else { "A" };
    s.replace_range(at..at + c.len_utf8(), flipped);
}

/// A channel for the simulators' unit tests: the sample merchant key of `sandbox/keys/`
/// (`merchant_key`: the private half, to sign requests with) and ids of the sample routes.yaml.
#[cfg(test)]
pub fn test_channel(kind: &str) -> (super::SimChannel, crate::crypto::PrivateKey) {
    use std::sync::Arc;

    use crate::crypto::{PrivateKey, SymmetricKey};
    let pem = |file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/keys");
        PrivateKey::from_file(&path.join(file)).expect("sample key")
    };
    let merchant_key = pem("alipay_app_private.pem");
    let channel = super::SimChannel {
        name: kind.to_string(),
        kind: kind.to_string(),
        app_id: "2021000000000001".into(),
        mchid: "1900000001".into(),
        merchant_public_key: merchant_key.public_key(),
        merchant_serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
        platform_key: Arc::new(pem("pingpp_merchant_private.pem")),
        platform_key_id: "PUB_KEY_ID_0100000000000000".into(),
        apiv3_key: Some(Arc::new(SymmetricKey::generate())),
        secret_key: Some("sk_test_sandbox".into()),
    };
    (channel, merchant_key)
}

/// A bodiless request to `path`, for the simulators' unit tests.
#[cfg(test)]
pub fn test_request(method: http::Method, path: &str) -> super::GatewayRequest {
    super::GatewayRequest {
        method,
        uri: path.parse().expect("a path"),
        headers: http::HeaderMap::new(),
        body: axum::body::Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spoil_at_changes_one_character_and_never_panics() {
        let mut s = "xAy".to_string();
        spoil_at(&mut s, 1);
        assert_eq!(s, "xBy");
        spoil_at(&mut s, 1);
        assert_eq!(s, "xAy");
        for at in [3, 9] {
            spoil_at(&mut s, at);
            assert_eq!(s, "xAy");
        }
        let mut wide = "éx".to_string();
        spoil_at(&mut wide, 1);
        assert_eq!(wide, "éx", "not at a character boundary");
        spoil_at(&mut wide, 0);
        assert_eq!(wide, "Ax");
    }

    #[test]
    fn text_is_empty_for_missing_or_non_string_fields() {
        let v = json!({ "a": "x", "n": 1 });
        assert_eq!(text(v.get("a")), "x");
        assert_eq!(text(v.get("n")), "");
        assert_eq!(text(v.get("missing")), "");
    }

    #[test]
    fn seq_counts_from_one() {
        let seq = Seq::default();
        assert_eq!((seq.next(), seq.next()), (1, 2));
    }
}
