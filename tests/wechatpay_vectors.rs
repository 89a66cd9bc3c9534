//! Reproduces ../shared/protocols/testvectors/wechatpay.json byte for byte.

mod common;

use std::sync::Arc;

use common::vectors::{key_text, s};
use payroute::channels::wechatpay::transformers::{
    self as tf, Authorization, Message, PlatformKeys, VerifyError,
};
use payroute::channels::wechatpay::{WechatPay, WechatPayConfig};
use payroute::channels::{ChannelPayState, InboundNotification, NotificationEvent, NotifyError};
use payroute::crypto::{certificate_serial_and_key, PrivateKey, PublicKey, SymmetricKey};
use payroute::domain::Scene;
use serde_json::Value;

fn vectors() -> Value {
    common::vectors::load("wechatpay")
}

fn merchant_key() -> PrivateKey {
    PrivateKey::from_text(&key_text("wechat_merchant_private_pkcs8.pem")).unwrap()
}

fn public_key_mode() -> PlatformKeys {
    let c = &vectors()["constants"];
    let mut keys = PlatformKeys::default();
    keys.insert(
        s(&c["wechatpay_public_key_id"]),
        PublicKey::from_text(&key_text("wechat_platform_public.pem")).unwrap(),
    );
    keys
}

fn headers(v: &Value) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, val) in v.as_object().unwrap() {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            s(val).parse().unwrap(),
        );
    }
    h
}

#[test]
fn authorization_headers_reproduce() {
    let all = vectors();
    let c = &all["constants"];
    for name in ["request_native_prepay", "request_query_get"] {
        let v = &all[name];
        let m = Message {
            method: s(&v["method"]),
            canonical_url: s(&v["url_path"]),
            timestamp: s(&v["timestamp"]),
            nonce: s(&v["nonce_str"]),
            body: s(&v["body"]),
        };
        assert_eq!(
            tf::request_message(m.method, m.canonical_url, m.timestamp, m.nonce, m.body),
            s(&v["sign_string"]),
            "{name}"
        );
        let auth = Authorization::sign(
            s(&c["mchid"]),
            s(&c["merchant_cert_serial_no"]),
            &merchant_key(),
            &m,
        );
        if let Some(expected) = v.get("authorization") {
            assert_eq!(auth.header(), s(expected), "{name}");
        }
        // PKCS#1 form of the same key signs identically.
        let pkcs1 = PrivateKey::from_text(&key_text("wechat_merchant_private_pkcs1.pem")).unwrap();
        assert_eq!(
            Authorization::sign(s(&c["mchid"]), s(&c["merchant_cert_serial_no"]), &pkcs1, &m),
            auth
        );
    }
}

#[test]
fn merchant_and_platform_certificate_serials() {
    let c = &vectors()["constants"];
    let (serial, _) = certificate_serial_and_key(&key_text("wechat_merchant_cert.pem")).unwrap();
    assert_eq!(serial, s(&c["merchant_cert_serial_no"]));
    let (serial, key) = certificate_serial_and_key(&key_text("wechat_platform_cert.pem")).unwrap();
    assert_eq!(serial, s(&c["platform_cert_serial"]));
    let spki = PublicKey::from_text(&key_text("wechat_platform_public.pem")).unwrap();
    assert_eq!(key.to_pem(), spki.to_pem());
    assert!(certificate_serial_and_key(&key_text("wechat_platform_public.pem")).is_err());
}

#[test]
fn responses_verify_in_both_modes_200_and_204() {
    let all = vectors();
    let c = &all["constants"];
    for name in ["response_native", "response_close_204"] {
        let v = &all[name];
        let h = headers(&v["headers"]);
        let body = s(&v["body"]).as_bytes();
        let ts: i64 = s(&v["headers"]["Wechatpay-Timestamp"]).parse().unwrap();
        assert_eq!(
            tf::response_message(
                s(&v["headers"]["Wechatpay-Timestamp"]),
                s(&v["headers"]["Wechatpay-Nonce"]),
                body
            ),
            s(&v["sign_string"]).as_bytes()
        );
        // Public-key mode: the serial is the PUB_KEY_ID.
        tf::verify(&h, body, &public_key_mode(), ts + 10).unwrap();
        // Certificate mode: the same signature under the certificate's serial.
        let (serial, key) =
            certificate_serial_and_key(&key_text("wechat_platform_cert.pem")).unwrap();
        let mut cert_keys = PlatformKeys::default();
        cert_keys.insert(&serial, key);
        let mut hc = h.clone();
        hc.insert(
            "Wechatpay-Serial",
            s(&c["platform_cert_serial"])
                .to_ascii_lowercase()
                .parse()
                .unwrap(),
        );
        tf::verify(&hc, body, &cert_keys, ts).unwrap();
        assert_eq!(
            tf::verify(&h, body, &cert_keys, ts),
            Err(VerifyError::UnknownSerial(
                s(&c["wechatpay_public_key_id"]).into()
            )),
            "{name}"
        );
        // Stale, tampered, missing.
        assert_eq!(
            tf::verify(&h, body, &public_key_mode(), ts + 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            tf::verify(&h, body, &public_key_mode(), ts - 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            tf::verify(
                &h,
                b"{\"code_url\":\"weixin://evil\"}",
                &public_key_mode(),
                ts
            ),
            Err(VerifyError::BadSignature)
        );
        let mut missing = h.clone();
        missing.remove("Wechatpay-Signature");
        assert_eq!(
            tf::verify(&missing, body, &public_key_mode(), ts),
            Err(VerifyError::Missing("Wechatpay-Signature"))
        );
    }
}

fn adapter() -> WechatPay {
    adapter_with(None)
}

fn adapter_with(notify_url: Option<String>) -> WechatPay {
    let c = &vectors()["constants"];
    WechatPay::new(WechatPayConfig {
        name: "wechatpay".into(),
        mchid: s(&c["mchid"]).into(),
        appid: s(&c["appid"]).into(),
        base_url: "https://api.mch.weixin.qq.com".into(),
        merchant_key: Arc::new(merchant_key()),
        merchant_serial: s(&c["merchant_cert_serial_no"]).into(),
        platform_keys: public_key_mode(),
        apiv3_key: Arc::new(SymmetricKey::from_text(s(&c["apiv3_key"])).unwrap()),
        notify_url,
        scenes: vec![Scene::Qr],
    })
}

#[test]
fn notification_verifies_and_decrypts() {
    let all = vectors();
    let v = &all["notify_transaction_success"];
    let c = &all["constants"];
    let h = headers(&v["headers"]);
    let body = s(&v["body"]).as_bytes();
    let ts: i64 = s(&v["headers"]["Wechatpay-Timestamp"]).parse().unwrap();
    let key = SymmetricKey::from_text(s(&c["apiv3_key"])).unwrap();
    let plain = tf::decrypt_resource(
        &key,
        s(&v["resource_nonce"]),
        s(&v["associated_data"]),
        s(&v["ciphertext_b64"]),
    )
    .unwrap();
    assert_eq!(std::str::from_utf8(&plain).unwrap(), s(&v["plaintext"]));
    // And back: the simulator's encryption gives the same bytes.
    assert_eq!(
        tf::encrypt_resource(
            &key,
            s(&v["resource_nonce"]),
            s(&v["associated_data"]),
            s(&v["plaintext"]).as_bytes()
        )
        .unwrap(),
        s(&v["ciphertext_b64"])
    );

    let n = InboundNotification { headers: &h, body };
    match adapter().verify_notification_at(&n, ts + 5).unwrap() {
        NotificationEvent::Payment {
            out_trade_no,
            report,
        } => {
            assert_eq!(out_trade_no, "ORDER-20240101-0001");
            assert_eq!(report.state, ChannelPayState::Paid);
            assert_eq!(report.amount, Some(payroute::money::Fen(8888)));
            assert_eq!(
                report.channel_trade_no.as_deref(),
                Some("4200000000202401010000000001")
            );
        }
        other => panic!("{other:?}"),
    }
    // The vector's timestamp is old: checked against the real clock it is stale.
    assert_eq!(
        adapter().verify_notification_at(&n, ts + 400).unwrap_err(),
        NotifyError::Stale
    );
    let tampered = s(&v["body"]).replace("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESS ");
    let n2 = InboundNotification {
        headers: &h,
        body: tampered.as_bytes(),
    };
    assert_eq!(
        adapter().verify_notification_at(&n2, ts).unwrap_err(),
        NotifyError::BadSignature
    );
}

#[test]
fn client_pay_signatures_reproduce() {
    let all = vectors();
    let j = &all["jsapi_pay_sign"];
    assert_eq!(
        tf::jsapi_pay_sign(
            &merchant_key(),
            s(&j["appId"]),
            s(&j["timeStamp"]),
            s(&j["nonceStr"]),
            s(&j["package"])
        ),
        s(&j["paySign"])
    );
    let a = &all["app_pay_sign"];
    assert_eq!(
        tf::app_pay_sign(
            &merchant_key(),
            s(&a["appid"]),
            s(&a["timestamp"]),
            s(&a["noncestr"]),
            s(&a["prepayid"])
        ),
        s(&a["sign"])
    );
}

#[test]
fn prepay_body_is_the_vector_body_byte_for_byte() {
    use payroute::channels::{Channel, Op, PaymentIntent, Prepared};
    let all = vectors();
    let v = &all["request_native_prepay"];
    let want: Value = serde_json::from_str(s(&v["body"])).unwrap();
    let wp = adapter_with(Some(s(&want["notify_url"]).into()));
    let intent = PaymentIntent {
        out_trade_no: s(&want["out_trade_no"]).into(),
        amount: payroute::money::Fen(want["amount"]["total"].as_u64().unwrap()),
        method: payroute::domain::PayMethod::Wechat,
        scene: Scene::Qr,
        subject: s(&want["description"]).into(),
        description: None,
        auth_code: None,
        payer_id: None,
        client_ip: None,
        expires_at: None,
        split: false,
    };
    let Prepared::Send(req) = wp.build(Op::Create(&intent), chrono::Utc::now()).unwrap() else {
        panic!("prepay must be sent");
    };
    assert_eq!(req.uri().path(), s(&v["url_path"]));
    assert_eq!(std::str::from_utf8(req.body()).unwrap(), s(&v["body"]));
}
