//! Reproduces tests/vectors/wechatpay_splits.json byte for byte: the profit-sharing requests
//! the adapter builds (method, URL with query, body, Authorization header) for the vectors'
//! fixed timestamp and nonce, against signatures computed with openssl (the command is in the
//! JSON file).

mod common;

use std::sync::Arc;

use common::vectors::{key_text, s};
use payroute::channels::wechatpay::transformers::{self as tf, PlatformKeys};
use payroute::channels::wechatpay::{WechatPay, WechatPayConfig};
use payroute::channels::{
    Op, Prepared, ReceiverIntent, ShareIntent, SplitIntent, SplitReturnIntent,
};
use payroute::crypto::{PrivateKey, PublicKey, SymmetricKey};
use payroute::domain::{ReceiverType, Scene};
use payroute::money::Fen;
use serde_json::Value;

fn vectors() -> Value {
    let path = common::repo().join("tests/vectors/wechatpay_splits.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn adapter(c: &Value) -> WechatPay {
    let mut keys = PlatformKeys::default();
    keys.insert(
        "PUB_KEY_ID_0119000000012024010100000000000001",
        PublicKey::from_text(&key_text("wechat_platform_public.pem")).unwrap(),
    );
    WechatPay::new(WechatPayConfig {
        name: "wechatpay".into(),
        mchid: s(&c["mchid"]).into(),
        appid: s(&c["appid"]).into(),
        base_url: "https://api.mch.weixin.qq.com".into(),
        merchant_key: Arc::new(
            PrivateKey::from_text(&key_text("wechat_merchant_private_pkcs8.pem")).unwrap(),
        ),
        merchant_serial: s(&c["merchant_cert_serial_no"]).into(),
        platform_keys: keys,
        apiv3_key: Arc::new(SymmetricKey::from_text("TestApiV3Key0123456789abcdefABCD").unwrap()),
        notify_url: None,
        scenes: vec![Scene::Qr],
    })
}

const TRANSACTION_ID: &str = "4208450740201411110007820472";

fn split(out_split_no: &str, shares: Vec<ShareIntent>) -> SplitIntent {
    SplitIntent {
        out_trade_no: "ORDER-20240101-0001".into(),
        channel_trade_no: Some(TRANSACTION_ID.into()),
        out_split_no: out_split_no.into(),
        channel_split_no: None,
        shares,
        finish: false,
        total: Fen(8888),
    }
}

fn share(kind: ReceiverType, account: &str, amount: u64, description: &str) -> ShareIntent {
    ShareIntent {
        receiver_type: kind,
        account: account.into(),
        name: None,
        amount: Fen(amount),
        description: description.into(),
    }
}

/// Checks one vector against the request the adapter builds for `op`.
fn reproduce(wp: &WechatPay, c: &Value, v: &Value, name: &str, op: Op<'_>) {
    let ts: i64 = s(&c["timestamp"]).parse().unwrap();
    let now = chrono::DateTime::from_timestamp(ts, 0).unwrap();
    let Prepared::Send(req) = wp.build_signed(op, now, s(&c["nonce_str"])).unwrap() else {
        panic!("{name}: profit sharing is sent");
    };
    assert_eq!(req.method().as_str(), s(&v["method"]), "{name}");
    assert_eq!(
        req.uri().path_and_query().unwrap().as_str(),
        s(&v["url_path"]),
        "{name}"
    );
    assert_eq!(
        std::str::from_utf8(req.body()).unwrap(),
        s(&v["body"]),
        "{name}"
    );
    assert_eq!(
        tf::request_message(
            s(&v["method"]),
            s(&v["url_path"]),
            s(&c["timestamp"]),
            s(&c["nonce_str"]),
            s(&v["body"])
        ),
        s(&v["sign_string"]),
        "{name}"
    );
    assert_eq!(
        req.headers()[http::header::AUTHORIZATION].as_bytes(),
        s(&v["authorization"]).as_bytes(),
        "{name}"
    );
    // Independently of the adapter: openssl's signature verifies with the merchant public key.
    let public = PublicKey::from_text(&key_text("wechat_merchant_public.pem")).unwrap();
    assert!(
        public.verify_sha256_b64(s(&v["sign_string"]).as_bytes(), s(&v["signature"])),
        "{name}"
    );
}

#[test]
fn profit_sharing_requests_reproduce_the_openssl_vectors() {
    let all = vectors();
    let c = &all["constants"];
    let wp = adapter(c);

    let shares = vec![
        share(ReceiverType::Merchant, "86693852", 888, "分给商户A"),
        share(
            ReceiverType::Openid,
            "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            12,
            "分给用户B",
        ),
    ];
    let order = split("P20150806125346", shares);
    reproduce(&wp, c, &all["split_post"], "split_post", Op::Split(&order));
    reproduce(
        &wp,
        c,
        &all["split_query_get"],
        "split_query_get",
        Op::SplitQuery(&order),
    );

    let finish = split("P20150806125347", Vec::new());
    reproduce(
        &wp,
        c,
        &all["unfreeze_post"],
        "unfreeze_post",
        Op::SplitFinish(&finish),
    );

    let ret = SplitReturnIntent {
        out_trade_no: "ORDER-20240101-0001".into(),
        channel_trade_no: Some(TRANSACTION_ID.into()),
        out_split_no: "P20150806125346".into(),
        channel_split_no: None,
        out_return_no: "R20190516001".into(),
        receiver_type: ReceiverType::Merchant,
        account: "86693852".into(),
        amount: Fen(10),
        description: "用户退款".into(),
    };
    reproduce(
        &wp,
        c,
        &all["return_post"],
        "return_post",
        Op::SplitReturn(&ret),
    );
    reproduce(
        &wp,
        c,
        &all["return_query_get"],
        "return_query_get",
        Op::SplitReturnQuery(&ret),
    );

    let receiver = ReceiverIntent {
        receiver_type: ReceiverType::Openid,
        account: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
        name: None,
        relation: None,
        request_no: "B1".into(),
    };
    reproduce(
        &wp,
        c,
        &all["receiver_add_post"],
        "receiver_add_post",
        Op::BindReceiver {
            out_trade_no: "ORDER-20240101-0001",
            receiver: &receiver,
        },
    );
}

/// An encrypted name makes the body differ on every request, so it has no fixed vector: the
/// request names the key it encrypted to, and the name opens with that key's private half.
#[test]
fn an_encrypted_receiver_name_opens_with_the_platform_private_key() {
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey;
    let all = vectors();
    let c = &all["constants"];
    let mut order = split(
        "P20150806125346",
        vec![share(ReceiverType::Merchant, "86693852", 888, "分给商户A")],
    );
    order.shares[0].name = Some("示例商户全称".into());
    let ts: i64 = s(&c["timestamp"]).parse().unwrap();
    let now = chrono::DateTime::from_timestamp(ts, 0).unwrap();
    let Prepared::Send(req) = adapter(c)
        .build_signed(Op::Split(&order), now, s(&c["nonce_str"]))
        .unwrap()
    else {
        panic!("sent");
    };
    assert_eq!(
        req.headers()["Wechatpay-Serial"],
        "PUB_KEY_ID_0119000000012024010100000000000001"
    );
    let body: Value = serde_json::from_slice(req.body()).unwrap();
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(s(&body["receivers"][0]["name"]))
        .unwrap();
    let key =
        rsa::PrivateKey::from_pkcs8_pem(&key_text("wechat_platform_private_pkcs8.pem")).unwrap();
    let plain = key.oaep_decrypt::<sha1::Sha1>(&sealed).unwrap();
    assert_eq!(std::str::from_utf8(&plain).unwrap(), "示例商户全称");
    // Without the name, the body is the one the unnamed split sends.
    let mut without = body.clone();
    without["receivers"][0]
        .as_object_mut()
        .unwrap()
        .shift_remove("name");
    order.shares[0].name = None;
    let Prepared::Send(unnamed) = adapter(c)
        .build_signed(Op::Split(&order), now, s(&c["nonce_str"]))
        .unwrap()
    else {
        panic!("sent");
    };
    assert_eq!(
        serde_json::to_string(&without).unwrap().as_bytes(),
        &unnamed.body()[..]
    );
    assert!(unnamed.headers().get("Wechatpay-Serial").is_none());
}
