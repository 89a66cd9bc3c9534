//! Entry points for the fuzz targets in `fuzz/` and for the regression tests that replay the
//! inputs they found (`tests/fuzz_regressions.rs`). Each takes the bytes a stranger could send,
//! runs them through the same code the server runs, and panics only when a property fails, so
//! a fuzz crash and a failing regression test are the same thing. Not an API.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::channels::alipay::{Alipay, AlipayConfig};
use crate::channels::pingpp::{Pingpp, PingppConfig};
use crate::channels::wechatpay::transformers::PlatformKeys;
use crate::channels::wechatpay::{WechatPay, WechatPayConfig};
use crate::channels::{Channel, InboundNotification, NotificationEvent, NotifyError};
use crate::crypto::{PrivateKey, PublicKey, Secret, SymmetricKey};
use crate::domain::Scene;
use crate::payments::RefundRequest;
use crate::payments::SplitReturns;

/// The clock requests are validated against (`expires_at` must be later): fixed, so that a
/// crash replays the same way on any day.
pub fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap()
}

/// routes.yaml text: parsing never panics; a file that compiles compiles again to the same
/// snapshot. Texts naming a key `file` are only parsed, which keeps the fuzzer off the file
/// system (`/dev/zero` as a key file is an operator's mistake, not an attack); the seeds give
/// their keys by `env`, which the harness sets.
pub fn routes_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = crate::config::parse(text);
    if text.contains("file") {
        return;
    }
    let path = Path::new("fuzz/routes.yaml");
    let opts = crate::config::CompileOptions::default();
    let Ok(first) = crate::config::compile(text, path, &opts) else {
        return;
    };
    assert!(parsed.is_ok(), "compiled a file that does not parse");
    let second = crate::config::compile(text, path, &opts).expect("compiled once, not twice");
    assert_eq!(first.hash, second.hash);
    let names = |s: &crate::config::Snapshot| -> Vec<String> {
        s.channels.iter().map(|c| c.name.clone()).collect()
    };
    assert_eq!(names(&first), names(&second));
    assert_eq!(first.rules.len(), second.rules.len());
}

/// A `POST /v1/payments` body: a request that validates, encoded again, validates to the same.
pub fn create_payment(data: &[u8]) {
    let Ok(request) = crate::api::types::parse_create(data, fixed_now()) else {
        return;
    };
    let again = serde_json::to_vec(&request).expect("a request encodes");
    let reparsed = crate::api::types::parse_create(&again, fixed_now())
        .unwrap_or_else(|p| panic!("a valid request re-encoded is refused: {p:?}"));
    assert_eq!(request, reparsed);
}

/// A refund body: a request that validates, encoded again, validates to the same.
pub fn refund(data: &[u8]) {
    let Ok(request) = crate::api::types::parse_refund(data) else {
        return;
    };
    let again = encode_refund(&request).to_string();
    let reparsed = crate::api::types::parse_refund(again.as_bytes())
        .unwrap_or_else(|p| panic!("a valid refund re-encoded is refused: {p:?}"));
    assert_eq!(format!("{request:?}"), format!("{reparsed:?}"));
}

/// The refund body the API documents, from a parsed request.
fn encode_refund(r: &RefundRequest) -> Value {
    let mut body = json!({ "out_refund_no": r.out_refund_no, "amount": r.amount.0 });
    if let Some(reason) = &r.reason {
        body["reason"] = json!(reason);
    }
    match &r.split_returns {
        None => {}
        Some(SplitReturns::Auto) => body["split_returns"] = json!("auto"),
        Some(SplitReturns::Listed(names)) => body["split_returns"] = json!(names),
    }
    body
}

/// The three notification verifiers, configured as the protocol test vectors were made
/// (`../shared/protocols/testvectors`), so that the vectors are valid seeds.
#[derive(Debug)]
pub struct Notifiers {
    alipay: Alipay,
    wechatpay: WechatPay,
    pingpp: Pingpp,
}

/// The test vectors' WeChat Pay notification time (`Wechatpay-Timestamp` of
/// `notify_transaction_success`) plus a few seconds: fresh for the seed.
pub const WECHATPAY_NOW: i64 = 1_704_081_635;

/// The verifiers the notification targets share (their keys are read once).
pub fn notifiers() -> &'static Notifiers {
    static NOTIFIERS: OnceLock<Notifiers> = OnceLock::new();
    NOTIFIERS.get_or_init(Notifiers::from_vectors)
}

impl Notifiers {
    /// The verifiers, with the vectors' keys (`../shared` beside the project, as in CI).
    pub fn from_vectors() -> Self {
        let key = |name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/protocols/testvectors/keys")
                .join(name);
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let private = |name: &str| Arc::new(PrivateKey::from_text(&key(name)).unwrap());
        let public = |name: &str| PublicKey::from_text(&key(name)).unwrap();
        let mut platform_keys = PlatformKeys::default();
        platform_keys.insert(
            "PUB_KEY_ID_0119000000012024010100000000000001",
            public("wechat_platform_public.pem"),
        );
        Notifiers {
            alipay: Alipay::new(AlipayConfig {
                name: "alipay".into(),
                app_id: "2021000000000001".into(),
                gateway: "https://openapi.alipay.com/gateway.do".into(),
                app_private_key: private("alipay_app_private_pkcs1.pem"),
                alipay_public_key: public("alipay_platform_public.pem"),
                notify_url: None,
                return_url: None,
                scenes: vec![Scene::Qr],
            }),
            wechatpay: WechatPay::new(WechatPayConfig {
                name: "wechatpay".into(),
                mchid: "1900000001".into(),
                appid: "wxd678efh567hg6787".into(),
                base_url: "https://api.mch.weixin.qq.com".into(),
                merchant_key: private("wechat_merchant_private_pkcs8.pem"),
                merchant_serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
                platform_keys,
                apiv3_key: Arc::new(
                    SymmetricKey::from_text("TestApiV3Key0123456789abcdefABCD").unwrap(),
                ),
                notify_url: None,
                scenes: vec![Scene::Qr],
            }),
            pingpp: Pingpp::new(PingppConfig {
                name: "pingpp".into(),
                app_id: "app_1Gqj58ynP0mHeX1q".into(),
                base_url: "https://api.pingxx.com".into(),
                secret_key: Arc::new(Secret::new("sk_test_123".into())),
                merchant_key: private("pingpp_merchant_private_pkcs1.pem"),
                pingpp_public_key: public("pingpp_platform_public.pem"),
                return_url: None,
                scenes: vec![Scene::Qr],
            }),
        }
    }

    /// An Alipay notification: the form body as posted.
    pub fn alipay(&self, data: &[u8]) -> Result<NotificationEvent, NotifyError> {
        let headers = http::HeaderMap::new();
        self.alipay.verify_notification(&InboundNotification {
            headers: &headers,
            body: data,
        })
    }

    /// A WeChat Pay notification as [`split_request`] reads it, checked at [`WECHATPAY_NOW`].
    pub fn wechatpay(&self, data: &[u8]) -> Result<NotificationEvent, NotifyError> {
        let (headers, body) = split_request(data);
        self.wechatpay.verify_notification_at(
            &InboundNotification {
                headers: &headers,
                body,
            },
            WECHATPAY_NOW,
        )
    }

    /// A Ping++ webhook as [`split_request`] reads it.
    pub fn pingpp(&self, data: &[u8]) -> Result<NotificationEvent, NotifyError> {
        let (headers, body) = split_request(data);
        self.pingpp.verify_notification(&InboundNotification {
            headers: &headers,
            body,
        })
    }
}

/// Reads fuzz input as a request: `name: value` header lines, an empty line, then the body
/// (lines that are not a valid header are skipped; without an empty line it is all body).
pub fn split_request(data: &[u8]) -> (http::HeaderMap, &[u8]) {
    let mut headers = http::HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = http::HeaderName::from_bytes(&line[..colon]);
        let value = http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    (headers, &data[end + 2..])
}

/// A WeChat Pay trade bill (gzip CSV): reading it to the end never panics.
pub fn wechatpay_statement(data: &[u8]) {
    drain(crate::channels::wechatpay::bill::read(
        std::io::Cursor::new(data.to_vec()),
    ));
}

/// An Alipay statement (a ZIP holding a GBK CSV): reading it to the end never panics.
pub fn alipay_statement(data: &[u8]) {
    drain(crate::channels::alipay::bill::read(std::io::Cursor::new(
        data.to_vec(),
    )));
}

/// Drives a statement's lines to the end; the stream ends after its first error.
fn drain(lines: Result<crate::bills::Lines, crate::bills::BillError>) {
    if let Ok(lines) = lines {
        for line in lines {
            if line.is_err() {
                break;
            }
        }
    }
}
