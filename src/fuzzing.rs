//! Entry points for the fuzz targets in `fuzz/` and for the regression tests that replay the
//! inputs they found (`tests/fuzz.rs`). Each takes the bytes a stranger could send,
//! runs them through the same code the server runs, and panics only when a property fails, so
//! a fuzz crash and a failing regression test are the same thing. Not an API.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::channels::alipay::{signing as alipay_signing, Alipay, AlipayConfig};
use crate::channels::pingpp::{Pingpp, PingppConfig};
use crate::channels::wechatpay::signing as wechatpay_signing;
use crate::channels::wechatpay::transformers::PlatformKeys;
use crate::channels::wechatpay::{WechatPay, WechatPayConfig};
use crate::channels::{
    Channel, InboundNotification, NotificationEvent, NotifyError, Op, Outcome, PaymentIntent,
    RawResponse, ReceiverIntent, RefundIntent, ShareIntent, SplitIntent, SplitReturnIntent,
};
use crate::crypto::{PrivateKey, PublicKey, Secret, SymmetricKey};
use crate::domain::{PayMethod, ReceiverType, Scene};
use crate::money::Fen;
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

/// A `POST /v1/payments/{out_trade_no}/splits` body: a split that validates, encoded again,
/// validates to the same.
pub fn split(data: &[u8]) {
    reparses_alike(data, "split", crate::api::splits::parse_split);
}

/// A `POST /v1/splits/{out_split_no}/returns` body: a split return that validates, encoded
/// again, validates to the same.
pub fn split_return(data: &[u8]) {
    reparses_alike(data, "split return", crate::api::splits::parse_return);
}

/// One `receivers[]` member of a split, alone (what registers a receiver with the channel): a
/// receiver that validates, encoded again, validates to the same.
pub fn receiver(data: &[u8]) {
    reparses_alike(data, "receiver", crate::api::splits::parse_receiver);
}

/// The property of the request targets whose parsed type encodes as the API documents the
/// body (`Serialize`): parsing never panics, and a body that validates, encoded again from
/// what was parsed, validates to the same value, so nothing the parser accepts is lost or
/// changed on the way to the ledger.
fn reparses_alike<T, E>(data: &[u8], what: &str, parse: impl Fn(&[u8]) -> Result<T, E>)
where
    T: serde::Serialize + PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let Ok(request) = parse(data) else {
        return;
    };
    let again = serde_json::to_vec(&request).expect("a request encodes");
    let reparsed =
        parse(&again).unwrap_or_else(|p| panic!("a valid {what} re-encoded is refused: {p:?}"));
    assert_eq!(request, reparsed);
}

/// The three channel adapters, configured as the protocol test vectors were made
/// (`../shared/protocols/testvectors`), so that the vectors are valid seeds: their notification
/// verifiers and their response parsers. With them, the platforms' private keys of the vectors,
/// which sign what a response target asks to have signed.
#[derive(Debug)]
pub struct Notifiers {
    alipay: Alipay,
    wechatpay: WechatPay,
    pingpp: Pingpp,
    alipay_platform_key: PrivateKey,
    wechat_platform_key: PrivateKey,
}

/// The WeChat Pay platform key's id in the vectors (`Wechatpay-Serial`).
const WECHATPAY_KEY_ID: &str = "PUB_KEY_ID_0119000000012024010100000000000001";

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
        platform_keys.insert(WECHATPAY_KEY_ID, public("wechat_platform_public.pem"));
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
            alipay_platform_key: PrivateKey::from_text(&key("alipay_platform_private_pkcs8.pem"))
                .unwrap(),
            wechat_platform_key: PrivateKey::from_text(&key("wechat_platform_private_pkcs8.pem"))
                .unwrap(),
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

    /// An Alipay gateway answer as [`response_input`] reads it. `signed`: the body is the
    /// `*_response` object (`signed-error`: the `error_response` one), which the harness wraps
    /// and signs with the vectors' platform key, so that the fuzzer reaches the fields.
    pub fn alipay_response(&self, data: &[u8]) -> Outcome {
        let input = response_input(data, PayMethod::Alipay);
        let intents = Intents::new(&input, ReceiverType::User);
        let op = intents.op(input.op);
        let body = match (input.sign, std::str::from_utf8(input.body)) {
            (Sign::No, _) | (_, Err(_)) => input.body.to_vec(),
            (sign, Ok(object)) => {
                let key = match (sign, Alipay::method_for(op)) {
                    (Sign::Response, Ok(method)) => alipay_signing::response_key(method),
                    _ => "error_response".to_string(),
                };
                alipay_signing::sign_response(&key, object, &self.alipay_platform_key).into_bytes()
            }
        };
        self.alipay.parse(op, &input.response(body))
    }

    /// A WeChat Pay API answer as [`response_input`] reads it, checked at [`WECHATPAY_NOW`].
    /// `signed` (or `signed-error`): the harness adds the signature headers of the body, made
    /// with the vectors' platform key, so that the fuzzer reaches the fields.
    pub fn wechatpay_response(&self, data: &[u8]) -> Outcome {
        let mut input = response_input(data, PayMethod::Wechat);
        if input.sign != Sign::No {
            for (name, value) in wechatpay_signing::signature_headers(
                &self.wechat_platform_key,
                WECHATPAY_KEY_ID,
                WECHATPAY_NOW - 30,
                "fuzz",
                input.body,
            ) {
                input
                    .headers
                    .insert(name, http::HeaderValue::from_str(&value).unwrap());
            }
        }
        let intents = Intents::new(&input, ReceiverType::Merchant);
        let op = intents.op(input.op);
        self.wechatpay
            .parse_at(op, &input.response(input.body.to_vec()), WECHATPAY_NOW)
    }

    /// A Ping++ API answer as [`response_input`] reads it (Ping++ does not sign its answers),
    /// at [`WECHATPAY_NOW`].
    pub fn pingpp_response(&self, data: &[u8]) -> Outcome {
        let input = response_input(data, PayMethod::Alipay);
        let intents = Intents::new(&input, ReceiverType::User);
        let op = intents.op(input.op);
        self.pingpp
            .parse_at(op, &input.response(input.body.to_vec()), WECHATPAY_NOW)
    }
}

/// Whether (and as what) a response target signs its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sign {
    No,
    Response,
    Error,
}

/// A channel's answer to one operation, as a response target reads its input.
#[derive(Debug)]
pub struct ResponseInput<'a> {
    op: &'a str,
    scene: Scene,
    method: PayMethod,
    status: u16,
    sign: Sign,
    headers: http::HeaderMap,
    body: &'a [u8],
}

impl ResponseInput<'_> {
    fn response(&self, body: Vec<u8>) -> RawResponse {
        RawResponse {
            status: self.status,
            headers: self.headers.clone(),
            body: body.into(),
        }
    }
}

/// Reads a response target's input: a first line of words, then the answer as [`split_request`]
/// reads a request (headers, an empty line, the body). The first word names the operation
/// (`create`, `query`, `close`, `cancel`, `refund`, `refund_query`, `bind_receiver`, `split`,
/// `split_query`, `split_finish`, `split_return`, `split_return_query`, `bill_query`; anything
/// else is `query`); the others, in any order: a scene (`qr`, `app`, …; `qr` by default), a
/// method (`alipay`, `wechat`; by default the channel's own), an HTTP status (200 by default),
/// and `signed` or `signed-error` (see the targets). Words that are none of these are skipped.
pub fn response_input(data: &[u8], method: PayMethod) -> ResponseInput<'_> {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &data[data.len()..]),
    };
    let first = std::str::from_utf8(first).unwrap_or("");
    let mut words = first.split_ascii_whitespace();
    let mut input = ResponseInput {
        op: words.next().unwrap_or(""),
        scene: Scene::Qr,
        method,
        status: 200,
        sign: Sign::No,
        headers: http::HeaderMap::new(),
        body: &[],
    };
    for word in words {
        if let Ok(status) = word.parse::<u16>() {
            input.status = status;
        } else if let Ok(scene) = serde_json::from_value::<Scene>(json!(word)) {
            input.scene = scene;
        } else if let Ok(method) = serde_json::from_value::<PayMethod>(json!(word)) {
            input.method = method;
        } else if word == "signed" {
            input.sign = Sign::Response;
        } else if word == "signed-error" {
            input.sign = Sign::Error;
        }
    }
    let (headers, body) = split_request(rest);
    input.headers = headers;
    input.body = body;
    input
}

/// The operations a response answers, with fixed inputs (order and receiver numbers as in the
/// vectors and the sandbox).
struct Intents {
    payment: PaymentIntent,
    refund: RefundIntent,
    split: SplitIntent,
    finish: SplitIntent,
    receiver: ReceiverIntent,
    split_return: SplitReturnIntent,
}

impl Intents {
    fn new(input: &ResponseInput<'_>, receiver_type: ReceiverType) -> Self {
        let out_trade_no = "ORDER-20240101-0001".to_string();
        let channel_trade_no = Some("2024010122001400000000000001".to_string());
        let account = "2088000000000001".to_string();
        let split = SplitIntent {
            out_trade_no: out_trade_no.clone(),
            channel_trade_no: channel_trade_no.clone(),
            out_split_no: "S-0001".into(),
            channel_split_no: None,
            shares: vec![ShareIntent {
                receiver_type,
                account: account.clone(),
                name: None,
                amount: Fen(10),
                description: "fuzz".into(),
            }],
            finish: false,
            total: Fen(100),
        };
        Intents {
            payment: PaymentIntent {
                out_trade_no: out_trade_no.clone(),
                amount: Fen(100),
                method: input.method,
                scene: input.scene,
                subject: "fuzz".into(),
                description: None,
                auth_code: (input.scene == Scene::Barcode).then(|| "134567890123456789".into()),
                payer_id: (input.scene == Scene::Jsapi)
                    .then(|| "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
                client_ip: Some("127.0.0.1".into()),
                expires_at: None,
                split: false,
            },
            refund: RefundIntent {
                out_trade_no: out_trade_no.clone(),
                channel_trade_no: channel_trade_no.clone(),
                channel_refund_no: None,
                out_refund_no: "R-0001".into(),
                amount: Fen(100),
                total: Fen(100),
                reason: None,
                returns: Vec::new(),
            },
            finish: SplitIntent {
                shares: Vec::new(),
                finish: true,
                ..split.clone()
            },
            split,
            receiver: ReceiverIntent {
                receiver_type,
                account: account.clone(),
                name: None,
                relation: None,
                request_no: "B-0001".into(),
            },
            split_return: SplitReturnIntent {
                out_trade_no,
                channel_trade_no,
                out_split_no: "S-0001".into(),
                channel_split_no: None,
                out_return_no: "SR-0001".into(),
                receiver_type,
                account,
                amount: Fen(10),
                description: "fuzz".into(),
            },
        }
    }

    fn op(&self, name: &str) -> Op<'_> {
        let out_trade_no = &self.payment.out_trade_no;
        let channel_trade_no = self.refund.channel_trade_no.as_deref();
        match name {
            "create" => Op::Create(&self.payment),
            "close" => Op::Close {
                out_trade_no,
                channel_trade_no,
            },
            "cancel" => Op::Cancel {
                out_trade_no,
                channel_trade_no,
            },
            "refund" => Op::Refund(&self.refund),
            "refund_query" => Op::RefundQuery(&self.refund),
            "bind_receiver" => Op::BindReceiver {
                out_trade_no,
                receiver: &self.receiver,
            },
            "split" => Op::Split(&self.split),
            "split_query" => Op::SplitQuery(&self.split),
            "split_finish" => Op::SplitFinish(&self.finish),
            "split_return" => Op::SplitReturn(&self.split_return),
            "split_return_query" => Op::SplitReturnQuery(&self.split_return),
            "bill_query" => Op::BillQuery {
                date: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            },
            _ => Op::Query {
                out_trade_no,
                channel_trade_no,
            },
        }
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
