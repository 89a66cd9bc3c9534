//! WeChat Pay API v3 signatures: the Authorization header, what request, response and
//! notification signatures cover, AES-256-GCM resources, and client pay signatures. Pure
//! functions; the simulator in `sandbox::wechatpay` uses them too.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::crypto::{PrivateKey, PublicKey, SymmetricKey};

/// The signature scheme token.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
/// Responses whose timestamp is further off than this are rejected.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n` — what a request's signature covers.
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{canonical_url}\n{timestamp}\n{nonce}\n{body}\n")
}

/// `TIMESTAMP\nNONCE\nBODY\n` — what a response's or notification's signature covers.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 64);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The request parts a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub method: &'a str,
    pub canonical_url: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub body: &'a str,
}

/// The parameters of an Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

impl Authorization {
    /// Signs a request and returns its Authorization parameters.
    pub fn sign(mchid: &str, serial_no: &str, key: &PrivateKey, m: &Message<'_>) -> Authorization {
        let message = request_message(m.method, m.canonical_url, m.timestamp, m.nonce, m.body);
        Authorization {
            mchid: mchid.into(),
            nonce_str: m.nonce.into(),
            signature: key.sign_sha256_b64(message.as_bytes()),
            timestamp: m.timestamp.into(),
            serial_no: serial_no.into(),
        }
    }

    /// The header value, in the order the official Python SDK writes it.
    pub fn header(&self) -> String {
        format!(
            "{SCHEME} mchid=\"{}\",nonce_str=\"{}\",signature=\"{}\",timestamp=\"{}\",serial_no=\"{}\"",
            self.mchid, self.nonce_str, self.signature, self.timestamp, self.serial_no
        )
    }

    /// Parses a header value (parameters in any order).
    pub fn parse(header: &str) -> Option<Authorization> {
        let rest = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
        let mut map = HashMap::new();
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            let v = v.strip_prefix('"')?.strip_suffix('"')?;
            map.insert(k.to_string(), v.to_string());
        }
        let mut take = |k: &str| map.remove(k);
        Some(Authorization {
            mchid: take("mchid")?,
            nonce_str: take("nonce_str")?,
            signature: take("signature")?,
            timestamp: take("timestamp")?,
            serial_no: take("serial_no")?,
        })
    }
}

/// The keys a response or notification may be signed with, by serial (platform certificate
/// serial, or `PUB_KEY_ID_…` in public-key mode). Serials compare case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct PlatformKeys {
    entries: Vec<(String, PublicKey)>,
}

impl PlatformKeys {
    /// Adds a key under its serial or public-key id.
    pub fn insert(&mut self, serial: &str, key: PublicKey) {
        self.entries.push((serial.to_ascii_uppercase(), key));
    }

    /// The key to encrypt sensitive request fields with, and the serial the request names it
    /// by in `Wechatpay-Serial`: the first configured (public-key mode has exactly one).
    pub fn encryption_key(&self) -> Option<(&str, &PublicKey)> {
        self.entries.first().map(|(k, v)| (k.as_str(), v))
    }

    /// The key for `serial`.
    pub fn get(&self, serial: &str) -> Option<&PublicKey> {
        let s = serial.trim().to_ascii_uppercase();
        self.entries.iter().find(|(k, _)| *k == s).map(|(_, v)| v)
    }
}

/// Why a signed response or notification was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("signature type is not {SCHEME}")]
    WrongType,
    #[error("timestamp is more than {MAX_CLOCK_SKEW_SECS} s off")]
    Stale,
    #[error("unknown serial {0}")]
    UnknownSerial(String),
    #[error("signature is invalid")]
    BadSignature,
}

/// Verifies `Wechatpay-*` signature headers over the raw body at time `now` (Unix seconds).
pub fn verify(
    headers: &http::HeaderMap,
    body: &[u8],
    keys: &PlatformKeys,
    now: i64,
) -> Result<(), VerifyError> {
    let get = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::Missing(name))
    };
    let timestamp = get("Wechatpay-Timestamp")?;
    let nonce = get("Wechatpay-Nonce")?;
    let signature = get("Wechatpay-Signature")?;
    let serial = get("Wechatpay-Serial")?;
    if let Some(t) = headers.get("Wechatpay-Signature-Type") {
        if t.as_bytes() != SCHEME.as_bytes() {
            return Err(VerifyError::WrongType);
        }
    }
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::Stale)?;
    if (now - ts).abs() >= MAX_CLOCK_SKEW_SECS {
        return Err(VerifyError::Stale);
    }
    let key = keys
        .get(serial)
        .ok_or_else(|| VerifyError::UnknownSerial(serial.to_string()))?;
    if key.verify_sha256_b64(&response_message(timestamp, nonce, body), signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The headers a WeChat Pay server signs a response or notification with.
pub fn signature_headers(
    key: &PrivateKey,
    serial: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let ts = timestamp.to_string();
    let signature = key.sign_sha256_b64(&response_message(&ts, nonce, body));
    vec![
        ("Wechatpay-Timestamp", ts),
        ("Wechatpay-Nonce", nonce.to_string()),
        ("Wechatpay-Signature", signature),
        ("Wechatpay-Serial", serial.to_string()),
        ("Wechatpay-Signature-Type", SCHEME.to_string()),
    ]
}

/// Decrypts a notification `resource` (AEAD_AES_256_GCM with the APIv3 key).
pub fn decrypt_resource(
    key: &SymmetricKey,
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Option<Vec<u8>> {
    let sealed = B64.decode(ciphertext_b64.as_bytes()).ok()?;
    key.open(nonce.as_bytes(), associated_data.as_bytes(), &sealed)
}

/// Encrypts a notification `resource`; returns base64(ciphertext ‖ tag).
pub fn encrypt_resource(
    key: &SymmetricKey,
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Option<String> {
    key.seal(nonce.as_bytes(), associated_data.as_bytes(), plaintext)
        .map(|b| B64.encode(b))
}

/// `paySign` for JSAPI / mini-program: over `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn jsapi_pay_sign(
    key: &PrivateKey,
    app_id: &str,
    timestamp: &str,
    nonce: &str,
    package: &str,
) -> String {
    key.sign_sha256_b64(format!("{app_id}\n{timestamp}\n{nonce}\n{package}\n").as_bytes())
}

/// `sign` for app payments: over `appid\ntimestamp\nnoncestr\nprepayid\n`.
pub fn app_pay_sign(
    key: &PrivateKey,
    app_id: &str,
    timestamp: &str,
    nonce: &str,
    prepay_id: &str,
) -> String {
    key.sign_sha256_b64(format!("{app_id}\n{timestamp}\n{nonce}\n{prepay_id}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_round_trips_in_any_order() {
        let h = r#"WECHATPAY2-SHA256-RSA2048 serial_no="AB",mchid="1",timestamp="2",nonce_str="n",signature="s==""#;
        let a = Authorization::parse(h).unwrap();
        assert_eq!(
            (a.mchid.as_str(), a.serial_no.as_str(), a.signature.as_str()),
            ("1", "AB", "s==")
        );
        assert_eq!(Authorization::parse(&a.header()), Some(a));
        assert!(Authorization::parse("Bearer x").is_none());
        assert!(Authorization::parse(r#"WECHATPAY2-SHA256-RSA2048 mchid="1""#).is_none());
    }

    #[test]
    fn resources_round_trip_and_detect_tampering() {
        let key = SymmetricKey::from_text("TestApiV3Key0123456789abcdefABCD").unwrap();
        let ct = encrypt_resource(&key, "0123456789ab", "transaction", b"{\"a\":1}").unwrap();
        assert_eq!(
            decrypt_resource(&key, "0123456789ab", "transaction", &ct).unwrap(),
            b"{\"a\":1}"
        );
        assert!(decrypt_resource(&key, "0123456789ab", "refund", &ct).is_none());
        let other = SymmetricKey::from_text("OtherApiV3Key0123456789abcdefABC").unwrap();
        assert!(decrypt_resource(&other, "0123456789ab", "transaction", &ct).is_none());
        assert!(SymmetricKey::from_text("short").is_err());
    }
}
