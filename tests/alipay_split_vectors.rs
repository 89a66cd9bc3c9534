//! The adapter's signed royalty requests against `tests/vectors/alipay_splits.json`, whose
//! sign strings were written by the documented rule and whose signatures openssl computed
//! from the TEST app key (the file says how): byte for byte, at the vectors' fixed time.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::vectors::{key_text, s};
use payroute::channels::alipay::signing::{self, Params};
use payroute::channels::alipay::{Alipay, AlipayConfig};
use payroute::channels::{
    Channel, Op, Prepared, ReceiverIntent, RefundIntent, RefundReturn, ShareIntent, SplitIntent,
};
use payroute::crypto::{PrivateKey, PublicKey};
use payroute::domain::ReceiverType;
use payroute::money::Fen;
use serde_json::Value;

fn vectors() -> Value {
    let path = common::repo().join("tests/vectors/alipay_splits.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn adapter() -> Alipay {
    Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: "2021000000000001".into(),
        gateway: "https://openapi.alipay.com/gateway.do".into(),
        app_private_key: Arc::new(
            PrivateKey::from_text(&key_text("alipay_app_private_pkcs8.pem")).unwrap(),
        ),
        alipay_public_key: PublicKey::from_text(&key_text("alipay_platform_public.pem")).unwrap(),
        notify_url: Some("https://merchant.example.com/alipay/notify".into()),
        return_url: None,
        scenes: Vec::new(),
    })
}

/// 2024-01-01 12:00:00 in China.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap()
}

/// Builds `op` and checks the request against the vector `name`.
fn assert_matches_vector(op: Op<'_>, name: &str) {
    let all = vectors();
    let v = &all[name];
    let Prepared::Send(req) = adapter().build(op, now()).unwrap() else {
        panic!("{name} is sent to the gateway")
    };
    let query = req.uri().query().unwrap_or_default().to_string();
    let url_params = Params::decode(query.as_bytes());
    let body_params = Params::decode(req.body());
    assert_eq!(
        body_params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        ["biz_content"],
        "{name}: the body carries biz_content alone"
    );
    let mut params = url_params.clone();
    params.0.extend(body_params.0);
    assert!(!params.has_duplicate_keys(), "{name}");

    let sent: BTreeMap<&str, &str> = params.iter().filter(|(k, _)| *k != "sign").collect();
    let want: BTreeMap<&str, &str> = v["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, val)| (k.as_str(), s(val)))
        .collect();
    assert_eq!(sent, want, "{name}: parameters");
    assert_eq!(
        signing::sign_content(params.iter(), &[]),
        s(&v["sign_string"]),
        "{name}: sign string"
    );
    assert_eq!(
        params.get("sign"),
        Some(s(&v["signature"])),
        "{name}: signature"
    );
    // And the app's public key verifies the openssl signature over the vector's string.
    let public = PublicKey::from_text(&key_text("alipay_app_public.pem")).unwrap();
    assert!(public.verify_sha256_b64(s(&v["sign_string"]).as_bytes(), s(&v["signature"])));
}

#[test]
fn a_settle_is_signed_byte_for_byte() {
    let share = |t, account: &str, fen, description: &str| ShareIntent {
        receiver_type: t,
        account: account.into(),
        name: None,
        amount: Fen(fen),
        description: description.into(),
    };
    let split = SplitIntent {
        out_trade_no: "ORDER-20240101-0001".into(),
        channel_trade_no: Some("2024010122001400000000000001".into()),
        out_split_no: "SPLIT-20240101-0001".into(),
        channel_split_no: None,
        shares: vec![
            share(
                ReceiverType::User,
                "2088101126708402",
                1000,
                "分账 commission",
            ),
            share(
                ReceiverType::LoginName,
                "receiver@example.com",
                250,
                "platform fee",
            ),
        ],
        finish: true,
        total: Fen(8888),
    };
    assert_matches_vector(Op::Split(&split), "settle");
}

#[test]
fn a_receiver_bind_is_signed_byte_for_byte() {
    let receiver = ReceiverIntent {
        receiver_type: ReceiverType::User,
        account: "2088101126708402".into(),
        name: Some("张三".into()),
        relation: None,
        request_no: "BIND-2088101126708402".into(),
    };
    assert_matches_vector(
        Op::BindReceiver {
            out_trade_no: "ORDER-20240101-0001",
            receiver: &receiver,
        },
        "bind",
    );
}

#[test]
fn a_refund_with_returns_is_signed_byte_for_byte() {
    let refund = RefundIntent {
        out_trade_no: "ORDER-20240101-0001".into(),
        channel_trade_no: None,
        channel_refund_no: None,
        out_refund_no: "REFUND-20240101-0001".into(),
        amount: Fen(3000),
        total: Fen(8888),
        reason: None,
        returns: vec![RefundReturn {
            out_return_no: "RETURN-20240101-0001".into(),
            receiver_type: ReceiverType::User,
            account: "2088101126708402".into(),
            amount: Fen(1000),
        }],
    };
    assert_matches_vector(Op::Refund(&refund), "refund_with_returns");
}
