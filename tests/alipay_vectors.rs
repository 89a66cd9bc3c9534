//! Reproduces ../shared/protocols/testvectors/alipay.json byte for byte.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::vectors::{key_text, s};
use payroute::channels::alipay::signing::{self as tf, Params};
use payroute::channels::alipay::transformers::PrecreateResponse;
use payroute::channels::alipay::{Alipay, AlipayConfig};
use payroute::channels::{Channel, Op, Outcome, PaymentIntent, Prepared};
use payroute::crypto::{PrivateKey, PublicKey};
use payroute::domain::{ClientAction, PayMethod, Scene};
use serde_json::Value;

fn vectors() -> Value {
    common::vectors::load("alipay")
}

fn app_key() -> PrivateKey {
    PrivateKey::from_text(&key_text("alipay_app_private_pkcs1.pem")).unwrap()
}

fn platform_public() -> PublicKey {
    PublicKey::from_text(&key_text("alipay_platform_public.pem")).unwrap()
}

/// The adapter as the vectors were made: the sample's app, its notify URL, offering `scenes`.
fn adapter(scenes: Vec<Scene>) -> Alipay {
    Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: "2021000000000001".into(),
        gateway: "https://openapi.alipay.com/gateway.do".into(),
        app_private_key: Arc::new(app_key()),
        alipay_public_key: platform_public(),
        notify_url: Some("https://merchant.example.com/alipay/notify".into()),
        return_url: None,
        scenes,
    })
}

/// An 88.88 yuan payment.
fn intent(out_trade_no: &str, scene: Scene, subject: &str) -> PaymentIntent {
    PaymentIntent {
        out_trade_no: out_trade_no.into(),
        amount: payroute::money::Fen(8888),
        method: PayMethod::Alipay,
        scene,
        subject: subject.into(),
        description: None,
        auth_code: None,
        payer_id: None,
        client_ip: None,
        expires_at: None,
        split: false,
    }
}

/// Four in the morning UTC, noon in China.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap()
}

/// Params of a URL or form text, decoded once.
fn params_of_query(url_or_query: &str) -> Params {
    let q = url_or_query
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or(url_or_query);
    Params::decode(q.as_bytes())
}

#[test]
fn precreate_sign_string_and_signature() {
    let v = &vectors()["request_precreate_node_and_python"];
    let sent = v["params_sent"].as_object().unwrap();
    let pairs: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (k.as_str(), s(v))).collect();
    let content = tf::sign_content(pairs.iter().copied(), &[]);
    assert_eq!(content, s(&v["sign_string"]));
    assert_eq!(
        app_key().sign_sha256_b64(content.as_bytes()),
        s(&v["signature"])
    );
}

#[test]
fn every_key_format_gives_the_same_signature() {
    let v = &vectors()["request_precreate_node_and_python"];
    let msg = s(&v["sign_string"]).as_bytes();
    for name in [
        "alipay_app_private_pkcs1.pem",
        "alipay_app_private_pkcs8.pem",
        "alipay_app_private_pkcs1.b64",
        "alipay_app_private_pkcs8.b64",
    ] {
        let key = PrivateKey::from_text(&key_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.sign_sha256_b64(msg), s(&v["signature"]), "{name}");
    }
    for name in ["alipay_app_public.pem", "alipay_app_public.b64"] {
        let public = PublicKey::from_text(&key_text(name)).unwrap();
        assert!(public.verify_sha256_b64(msg, s(&v["signature"])), "{name}");
    }
}

#[test]
fn signed_urls_and_order_strings_reproduce() {
    let all = vectors();
    let cases = [
        ("request_page_pay_python_official", "url"),
        ("request_page_pay_pageExecute_GET_node", "url"),
        ("request_app_pay_sdkExecute", "order_string"),
        ("request_precreate_python_alipay_sdk_fzlee", "query_string"),
    ];
    for (name, field) in cases {
        let v = &all[name];
        let params = params_of_query(s(&v[field]));
        let sign = params.get("sign").unwrap().to_string();
        let content = tf::sign_content(params.iter(), &[]);
        if let Some(expected) = v.get("sign_string") {
            assert_eq!(content, s(expected), "{name}");
        }
        // Signing is deterministic (PKCS#1 v1.5): our signature equals the SDK's.
        let mut unsigned = Params(
            params
                .0
                .iter()
                .filter(|(k, _)| k != "sign")
                .cloned()
                .collect(),
        );
        unsigned.sign(&app_key());
        assert_eq!(unsigned.get("sign"), Some(sign.as_str()), "{name}");
    }
}

#[test]
fn sync_response_verifies_over_the_raw_substring() {
    let v = &vectors()["sync_response"];
    let raw = s(&v["raw_body"]);
    assert_eq!(
        tf::extract_object(raw, "alipay_trade_precreate_response"),
        Some(s(&v["signed_substring"]))
    );
    let ok = tf::verify_response(
        200,
        raw.as_bytes(),
        "alipay.trade.precreate",
        &platform_public(),
    )
    .unwrap();
    assert_eq!(ok.code, "10000");
    let answer: PrecreateResponse = ok.fields().unwrap();
    assert_eq!(
        answer.qr_code.as_deref(),
        Some("https://qr.alipay.com/bax00000000000000000000")
    );
    // The simulator signs the same object bytes to the same signature.
    let platform = PrivateKey::from_text(&key_text("alipay_platform_private_pkcs8.pem")).unwrap();
    let signed = tf::sign_response(
        "alipay_trade_precreate_response",
        s(&v["signed_substring"]),
        &platform,
    );
    assert_eq!(signed, raw);

    let tampered = raw.replace("bax0000", "bax9999");
    assert_eq!(
        tf::verify_response(
            200,
            tampered.as_bytes(),
            "alipay.trade.precreate",
            &platform_public()
        )
        .unwrap_err(),
        tf::ResponseError::BadSignature
    );
    // Re-serializing (unescaping `\/`) would break the signature: it must not be done.
    let unescaped = raw.replace("\\/", "/");
    assert!(tf::verify_response(
        200,
        unescaped.as_bytes(),
        "alipay.trade.precreate",
        &platform_public()
    )
    .is_err());
    let unsigned = raw.split(",\"sign\"").next().unwrap().to_string() + "}";
    assert_eq!(
        tf::verify_response(
            200,
            unsigned.as_bytes(),
            "alipay.trade.precreate",
            &platform_public()
        )
        .unwrap_err(),
        tf::ResponseError::Unsigned
    );
    assert_eq!(
        tf::verify_response(
            502,
            raw.as_bytes(),
            "alipay.trade.precreate",
            &platform_public()
        )
        .unwrap_err(),
        tf::ResponseError::Status(502)
    );
}

#[test]
fn notification_verifies_and_tampering_fails() {
    let v = &vectors()["notify_trade_success"];
    let params = Params::decode(s(&v["form_body"]).as_bytes());
    assert_eq!(
        tf::sign_content(params.iter(), &["sign_type"]),
        s(&v["sign_content"])
    );
    assert!(tf::verify_notification(&params, &platform_public()));

    let mut tampered = params.clone();
    for (k, val) in tampered.0.iter_mut() {
        if k == "total_amount" {
            *val = "0.01".into();
        }
    }
    assert!(!tf::verify_notification(&tampered, &platform_public()));

    // The simulator's notification signer reproduces Alipay's signature.
    let platform = PrivateKey::from_text(&key_text("alipay_platform_private_pkcs8.pem")).unwrap();
    let mut resigned = Params(
        params
            .0
            .iter()
            .filter(|(k, _)| k != "sign" && k != "sign_type")
            .cloned()
            .collect(),
    );
    tf::sign_notification(&mut resigned, &platform);
    assert_eq!(resigned.get("sign"), params.get("sign"));
}

#[test]
fn adapter_requests_carry_a_valid_signature_and_china_time() {
    let adapter = adapter(vec![Scene::Qr, Scene::Page]);
    let intent = intent("ORDER_20240101_0001", Scene::Qr, "测试商品 Test");
    let Prepared::Send(req) = adapter.build(Op::Create(&intent), now()).unwrap() else {
        panic!("precreate is sent")
    };
    let mut params = params_of_query(&req.uri().to_string());
    assert!(
        params.get("biz_content").is_none(),
        "biz_content travels in the body"
    );
    params.0.extend(Params::decode(req.body()).0);
    assert_eq!(params.get("timestamp"), Some("2024-01-01 12:00:00"));
    assert_eq!(params.get("method"), Some("alipay.trade.precreate"));
    let biz: Value = serde_json::from_str(params.get("biz_content").unwrap()).unwrap();
    assert_eq!(biz["total_amount"], "88.88");
    assert_eq!(biz["subject"], "测试商品 Test");
    let content = tf::sign_content(params.iter(), &[]);
    let public = PublicKey::from_text(&key_text("alipay_app_public.pem")).unwrap();
    assert!(public.verify_sha256_b64(content.as_bytes(), params.get("sign").unwrap()));

    // Page pay is a signed gateway URL for the browser; nothing is sent by payroute.
    let page = PaymentIntent {
        scene: Scene::Page,
        ..intent
    };
    let Prepared::Local(outcome) = adapter.build(Op::Create(&page), now()).unwrap() else {
        panic!("page pay is local")
    };
    let Outcome::Payment(report) = outcome else {
        panic!()
    };
    let Some(ClientAction::Redirect { url }) = report.action else {
        panic!()
    };
    let params = params_of_query(&url);
    assert_eq!(params.get("method"), Some("alipay.trade.page.pay"));
    assert!(public.verify_sha256_b64(
        tf::sign_content(params.iter(), &[]).as_bytes(),
        params.get("sign").unwrap()
    ));
}

#[test]
fn app_order_string_is_byte_identical_to_the_node_sdk() {
    let v = vectors();
    let adapter = adapter(vec![Scene::App]);
    let intent = intent("ORDER-20240101-0001", Scene::App, "Test");
    let Prepared::Local(Outcome::Payment(report)) =
        adapter.build(Op::Create(&intent), now()).unwrap()
    else {
        panic!("app pay is built locally")
    };
    let Some(ClientAction::AppPay { order_string }) = report.action else {
        panic!()
    };
    assert_eq!(
        order_string,
        s(&v["request_app_pay_sdkExecute"]["order_string"])
    );
}
