//! Reproduces ../shared/protocols/testvectors/pingpp.json byte for byte.

mod common;

use std::sync::Arc;

use common::vectors::{key_text, s};
use payroute::channels::pingpp::transformers as tf;
use payroute::channels::pingpp::{Pingpp, PingppConfig};
use payroute::channels::{
    Channel, InboundNotification, NotificationEvent, NotifyError, Op, PaymentIntent, Prepared,
};
use payroute::crypto::{PrivateKey, PublicKey, Secret};
use payroute::domain::{PayMethod, Scene};
use serde_json::Value;

fn vectors() -> Value {
    common::vectors::load("pingpp")
}

#[test]
fn request_signatures_for_post_and_get() {
    let all = vectors();
    for name in ["request_charge_create", "request_charge_list"] {
        let v = &all[name];
        assert_eq!(
            tf::signed_string(s(&v["body"]), s(&v["path"]), s(&v["timestamp"])),
            s(&v["signed_string"]),
            "{name}"
        );
        for key in [
            "pingpp_merchant_private_pkcs1.pem",
            "pingpp_merchant_private_pkcs8.pem",
        ] {
            let k = PrivateKey::from_text(&key_text(key)).unwrap();
            assert_eq!(
                tf::sign_request(&k, s(&v["body"]), s(&v["path"]), s(&v["timestamp"])),
                s(&v["signature"]),
                "{name} {key}"
            );
        }
    }
}

fn adapter(webhook_key: &str) -> Pingpp {
    Pingpp::new(PingppConfig {
        name: "pingpp".into(),
        app_id: "app_1Gqj58ynP0mHeX1q".into(),
        base_url: "https://api.pingxx.com".into(),
        secret_key: Arc::new(Secret::new("sk_test_123".into())),
        merchant_key: Arc::new(
            PrivateKey::from_text(&key_text("pingpp_merchant_private_pkcs1.pem")).unwrap(),
        ),
        pingpp_public_key: PublicKey::from_text(&key_text(webhook_key)).unwrap(),
        return_url: None,
        scenes: vec![Scene::Qr],
    })
}

#[test]
fn webhooks_verify_and_tampering_fails() {
    let all = vectors();
    let v = &all["webhook_charge_succeeded"];
    let body = s(&v["raw_body"]).as_bytes();
    let sig = s(&v["header_x_pingplusplus_signature"]);
    let platform = PublicKey::from_text(&key_text("pingpp_platform_public.pem")).unwrap();
    assert!(tf::verify_webhook(&platform, body, sig));
    assert!(!tf::verify_webhook(
        &platform,
        s(&v["raw_body"])
            .replace("\"amount\":100", "\"amount\":1")
            .as_bytes(),
        sig
    ));

    let mut h = http::HeaderMap::new();
    h.insert("x-pingplusplus-signature", sig.parse().unwrap());
    match adapter("pingpp_platform_public.pem")
        .verify_notification(&InboundNotification { headers: &h, body })
        .unwrap()
    {
        NotificationEvent::Payment {
            out_trade_no,
            report,
        } => {
            assert_eq!(out_trade_no, "123456789");
            assert_eq!(report.amount, Some(payroute::money::Fen(100)));
            assert_eq!(
                report.channel_trade_no.as_deref(),
                Some("ch_L8qn10mLmr1GS8e5OODmHaL4")
            );
        }
        other => panic!("{other:?}"),
    }
    let tampered = s(&v["raw_body"]).replace("123456789", "123456780");
    let err = adapter("pingpp_platform_public.pem").verify_notification(&InboundNotification {
        headers: &h,
        body: tampered.as_bytes(),
    });
    assert_eq!(err.unwrap_err(), NotifyError::BadSignature);
    let no_header = http::HeaderMap::new();
    let err = adapter("pingpp_platform_public.pem").verify_notification(&InboundNotification {
        headers: &no_header,
        body,
    });
    assert_eq!(err.unwrap_err(), NotifyError::BadSignature);

    // The official SDK example vector, with the SDK's example key.
    let e = &all["webhook_official_sdk_example"];
    let key = PublicKey::from_text(&key_text("pingpp_sdk_example_webhook_public.pem")).unwrap();
    assert!(tf::verify_webhook(
        &key,
        s(&e["raw_body"]).as_bytes(),
        s(&e["header_x_pingplusplus_signature"])
    ));
    // It is for another app: verified, then refused as the wrong account.
    let mut h = http::HeaderMap::new();
    h.insert(
        "x-pingplusplus-signature",
        s(&e["header_x_pingplusplus_signature"]).parse().unwrap(),
    );
    let r = adapter("pingpp_sdk_example_webhook_public.pem").verify_notification(
        &InboundNotification {
            headers: &h,
            body: s(&e["raw_body"]).as_bytes(),
        },
    );
    assert_eq!(r.unwrap_err(), NotifyError::WrongAccount);
}

#[test]
fn adapter_requests_are_signed_over_body_target_and_time() {
    use chrono::TimeZone;
    let a = adapter("pingpp_platform_public.pem");
    let intent = PaymentIntent {
        out_trade_no: "ORDER_0001".into(),
        amount: payroute::money::Fen(100),
        method: PayMethod::Wechat,
        scene: Scene::Qr,
        subject: "Your Subject".into(),
        description: None,
        auth_code: None,
        payer_id: None,
        client_ip: None,
        expires_at: None,
        split: false,
    };
    let now = chrono::Utc.timestamp_opt(1_704_081_600, 0).unwrap();
    let Prepared::Send(req) = a.build(Op::Create(&intent), now).unwrap() else {
        panic!()
    };
    assert_eq!(req.headers()["authorization"], "Bearer sk_test_123");
    assert_eq!(
        req.headers()["pingplusplus-request-timestamp"],
        "1704081600"
    );
    let body: Value = serde_json::from_slice(req.body()).unwrap();
    assert_eq!(
        (
            body["channel"].as_str(),
            body["currency"].as_str(),
            body["amount"].as_u64()
        ),
        (Some("wx_pub_qr"), Some("cny"), Some(100))
    );
    assert_eq!(body["extra"]["product_id"], "ORDER_0001");
    let public = PublicKey::from_text(&key_text("pingpp_merchant_public.pem")).unwrap();
    let signed = tf::signed_string(
        std::str::from_utf8(req.body()).unwrap(),
        "/v1/charges",
        "1704081600",
    );
    assert!(public.verify_sha256_b64(
        signed.as_bytes(),
        req.headers()["pingplusplus-signature"].to_str().unwrap()
    ));
    // A close has no Ping++ operation for these channels.
    assert!(a
        .build(
            Op::Close {
                out_trade_no: "ORDER_0001",
                channel_trade_no: Some("ch_x")
            },
            now
        )
        .is_err());
}

#[test]
fn charge_body_keeps_the_vector_field_order() {
    let all = vectors();
    let v = &all["request_charge_create"];
    let want: Value = serde_json::from_str(s(&v["body"])).unwrap();
    let intent = PaymentIntent {
        out_trade_no: s(&want["order_no"]).into(),
        amount: payroute::money::Fen(want["amount"].as_u64().unwrap()),
        method: PayMethod::Alipay,
        scene: Scene::Qr,
        subject: s(&want["subject"]).into(),
        description: Some(s(&want["body"]).into()),
        auth_code: None,
        payer_id: None,
        client_ip: None,
        expires_at: None,
        split: false,
    };
    let built = adapter("pingpp_platform_public.pem")
        .build(Op::Create(&intent), chrono::Utc::now())
        .unwrap();
    let Prepared::Send(req) = built else {
        panic!("a charge must be sent");
    };
    assert_eq!(req.uri().path(), s(&v["path"]));
    // The vector's body, plus the (empty) `extra` payroute always sends, at the end.
    let vector_body = s(&v["body"]);
    let want = format!("{},\"extra\":{{}}}}", &vector_body[..vector_body.len() - 1]);
    assert_eq!(std::str::from_utf8(req.body()).unwrap(), want);
}
