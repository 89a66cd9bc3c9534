//! The profit-sharing operations of the adapter: what each sends, and how each answer reads.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::transformers::{self as tf, PlatformKeys};
use super::{WechatPay, WechatPayConfig, FINISH_DESCRIPTION};
use crate::channels::{
    BuildError, Channel, ChannelReturnState, ChannelSplitState, Op, Outcome, Prepared, RawResponse,
    ReceiverIntent, ReturnReport, ShareIntent, ShareReport, ShareState, SplitIntent, SplitReport,
    SplitReturnIntent,
};
use crate::crypto::{generate_private_key_pem, PrivateKey, Secret, SymmetricKey};
use crate::domain::{ReceiverType, Scene};
use crate::money::Fen;

const MCHID: &str = "1900000001";
const KEY_ID: &str = "PUB_KEY_ID_0119000000012024010100000000000001";

/// The platform key pair (generated once): answers are signed with it, names encrypted to it.
fn platform_pem() -> &'static Secret<String> {
    static PEM: OnceLock<Secret<String>> = OnceLock::new();
    PEM.get_or_init(generate_private_key_pem)
}

fn platform_key() -> PrivateKey {
    PrivateKey::from_text(platform_pem().expose()).unwrap()
}

pub(super) fn adapter() -> WechatPay {
    let merchant = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sandbox/keys/wechat_merchant_private.pem");
    let mut keys = PlatformKeys::default();
    keys.insert(KEY_ID, platform_key().public_key());
    WechatPay::new(WechatPayConfig {
        name: "wechatpay".into(),
        mchid: MCHID.into(),
        appid: "wxd678efh567hg6787".into(),
        base_url: "https://api.mch.weixin.qq.com".into(),
        merchant_key: Arc::new(PrivateKey::from_file(&merchant).unwrap()),
        merchant_serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
        platform_keys: keys,
        apiv3_key: Arc::new(SymmetricKey::generate()),
        notify_url: None,
        scenes: vec![Scene::Qr],
    })
}

fn share(kind: ReceiverType, account: &str, amount: u64) -> ShareIntent {
    ShareIntent {
        receiver_type: kind,
        account: account.into(),
        name: None,
        amount: Fen(amount),
        description: "分给商户A".into(),
    }
}

fn split() -> SplitIntent {
    SplitIntent {
        out_trade_no: "ORDER-1".into(),
        channel_trade_no: Some("4208450740201411110007820472".into()),
        out_split_no: "P20150806125346".into(),
        channel_split_no: None,
        shares: vec![
            share(ReceiverType::Merchant, "86693852", 888),
            share(ReceiverType::Openid, "oSandbox", 12),
        ],
        finish: true,
        total: Fen(1000),
    }
}

fn split_return(kind: ReceiverType) -> SplitReturnIntent {
    SplitReturnIntent {
        out_trade_no: "ORDER-1".into(),
        channel_trade_no: Some("4208450740201411110007820472".into()),
        out_split_no: "P20150806125346".into(),
        channel_split_no: Some("3008450740201411110007820472".into()),
        out_return_no: "R20190516001".into(),
        receiver_type: kind,
        account: "86693852".into(),
        amount: Fen(10),
        description: "用户退款".into(),
    }
}

fn receiver(kind: ReceiverType, name: Option<&str>) -> ReceiverIntent {
    ReceiverIntent {
        receiver_type: kind,
        account: "86693852".into(),
        name: name.map(Into::into),
        relation: None,
        request_no: "B1".into(),
    }
}

fn sent(op: Op<'_>) -> http::Request<bytes::Bytes> {
    match adapter().build(op, chrono::Utc::now()) {
        Ok(Prepared::Send(req)) => req,
        other => panic!("{other:?}"),
    }
}

fn body(req: &http::Request<bytes::Bytes>) -> Value {
    serde_json::from_slice(req.body()).unwrap()
}

fn target(req: &http::Request<bytes::Bytes>) -> (String, String) {
    (
        req.method().to_string(),
        req.uri().path_and_query().unwrap().to_string(),
    )
}

fn decrypt(name_b64: &str) -> String {
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::PrivateKey::from_pkcs8_pem(platform_pem().expose()).unwrap();
    let plain = key
        .oaep_decrypt::<sha1::Sha1>(&B64.decode(name_b64).unwrap())
        .unwrap();
    String::from_utf8(plain).unwrap()
}

#[test]
fn wechat_pay_splits_take_merchants_and_openids() {
    let wp = adapter();
    assert!(wp.can_split());
    assert_eq!(
        wp.receiver_types(),
        [ReceiverType::Merchant, ReceiverType::Openid]
    );
    assert!(!wp.returns_with_refund());
}

#[test]
fn a_receiver_is_added_with_its_name_encrypted_to_the_platform_key() {
    let req = sent(Op::BindReceiver {
        out_trade_no: "ORDER-1",
        receiver: &receiver(ReceiverType::Openid, None),
    });
    assert_eq!(
        target(&req),
        ("POST".into(), "/v3/profitsharing/receivers/add".into())
    );
    assert_eq!(
        std::str::from_utf8(req.body()).unwrap(),
        r#"{"appid":"wxd678efh567hg6787","type":"PERSONAL_OPENID","account":"86693852","relation_type":"PARTNER"}"#
    );
    assert!(req.headers().get("Wechatpay-Serial").is_none());

    let mut named = receiver(ReceiverType::Merchant, Some("示例商户全称"));
    named.relation = Some("SUPPLIER".into());
    let req = sent(Op::BindReceiver {
        out_trade_no: "ORDER-1",
        receiver: &named,
    });
    let b = body(&req);
    assert_eq!(
        (&b["type"], &b["relation_type"]),
        (&json!("MERCHANT_ID"), &json!("SUPPLIER"))
    );
    assert_eq!(decrypt(b["name"].as_str().unwrap()), "示例商户全称");
    assert_eq!(req.headers()["Wechatpay-Serial"], KEY_ID);

    let alipay_user = receiver(ReceiverType::User, None);
    let err = adapter().build(
        Op::BindReceiver {
            out_trade_no: "ORDER-1",
            receiver: &alipay_user,
        },
        chrono::Utc::now(),
    );
    assert!(matches!(err, Err(BuildError::Invalid(_))), "{err:?}");
}

#[test]
fn a_split_names_the_transaction_and_its_receivers() {
    let req = sent(Op::Split(&split()));
    assert_eq!(
        target(&req),
        ("POST".into(), "/v3/profitsharing/orders".into())
    );
    assert_eq!(
        std::str::from_utf8(req.body()).unwrap(),
        concat!(
            r#"{"appid":"wxd678efh567hg6787","transaction_id":"4208450740201411110007820472","#,
            r#""out_order_no":"P20150806125346","receivers":["#,
            r#"{"type":"MERCHANT_ID","account":"86693852","amount":888,"description":"分给商户A"},"#,
            r#"{"type":"PERSONAL_OPENID","account":"oSandbox","amount":12,"description":"分给商户A"}],"#,
            r#""unfreeze_unsplit":true}"#
        )
    );
    let mut named = split();
    named.shares[0].name = Some("示例商户全称".into());
    let req = sent(Op::Split(&named));
    assert_eq!(
        decrypt(body(&req)["receivers"][0]["name"].as_str().unwrap()),
        "示例商户全称"
    );
    assert!(body(&req)["receivers"][1].get("name").is_none());
    assert_eq!(req.headers()["Wechatpay-Serial"], KEY_ID);

    let wp = adapter();
    let now = chrono::Utc::now();
    let mut unpaid = split();
    unpaid.channel_trade_no = None;
    for op in [
        Op::Split(&unpaid),
        Op::SplitQuery(&unpaid),
        Op::SplitFinish(&unpaid),
    ] {
        assert!(matches!(wp.build(op, now), Err(BuildError::Invalid(_))));
    }
    let mut empty = split();
    empty.shares.clear();
    assert!(matches!(
        wp.build(Op::Split(&empty), now),
        Err(BuildError::Invalid(_))
    ));
    let mut login = split();
    login.shares[1].receiver_type = ReceiverType::LoginName;
    assert!(matches!(
        wp.build(Op::Split(&login), now),
        Err(BuildError::Invalid(_))
    ));
}

#[test]
fn queries_finish_and_returns_are_shaped_as_the_reference_says() {
    let req = sent(Op::SplitQuery(&split()));
    assert_eq!(
        target(&req),
        (
            "GET".into(),
            "/v3/profitsharing/orders/P20150806125346?transaction_id=4208450740201411110007820472"
                .into()
        )
    );
    assert!(req.body().is_empty());
    assert!(req.headers().get(http::header::CONTENT_TYPE).is_none());

    let mut finish = split();
    finish.shares.clear();
    let req = sent(Op::SplitFinish(&finish));
    assert_eq!(
        target(&req),
        ("POST".into(), "/v3/profitsharing/orders/unfreeze".into())
    );
    assert_eq!(
        body(&req),
        json!({"transaction_id": "4208450740201411110007820472",
               "out_order_no": "P20150806125346", "description": FINISH_DESCRIPTION})
    );

    let req = sent(Op::SplitReturn(&split_return(ReceiverType::Merchant)));
    assert_eq!(
        target(&req),
        ("POST".into(), "/v3/profitsharing/return-orders".into())
    );
    assert_eq!(
        std::str::from_utf8(req.body()).unwrap(),
        r#"{"out_order_no":"P20150806125346","out_return_no":"R20190516001","return_mchid":"86693852","amount":10,"description":"用户退款"}"#
    );
    let req = sent(Op::SplitReturnQuery(&split_return(ReceiverType::Merchant)));
    assert_eq!(
        target(&req),
        (
            "GET".into(),
            "/v3/profitsharing/return-orders/R20190516001?out_order_no=P20150806125346".into()
        )
    );
    let openid = split_return(ReceiverType::Openid);
    let err = adapter().build(Op::SplitReturn(&openid), chrono::Utc::now());
    assert!(matches!(err, Err(BuildError::Invalid(_))), "{err:?}");
}

/// An answer signed by the platform key now.
pub(super) fn answer(status: u16, body: &str) -> RawResponse {
    let mut headers = http::HeaderMap::new();
    for (k, v) in tf::signature_headers(
        &platform_key(),
        KEY_ID,
        chrono::Utc::now().timestamp(),
        "nonce",
        body.as_bytes(),
    ) {
        headers.insert(k, v.parse().unwrap());
    }
    RawResponse {
        status,
        headers,
        body: bytes::Bytes::from(body.to_string()),
    }
}

fn unknown(o: &Outcome) -> bool {
    matches!(o, Outcome::Unknown { .. })
}

#[test]
fn split_answers_read_as_reports() {
    let wp = adapter();
    let s = split();
    let processing = r#"{"transaction_id":"42","out_order_no":"P1","order_id":"3008","state":"PROCESSING",
        "receivers":[{"amount":888,"description":"d","type":"MERCHANT_ID","account":"86693852","result":"PENDING","detail_id":"36011"}]}"#;
    for op in [Op::Split(&s), Op::SplitQuery(&s), Op::SplitFinish(&s)] {
        assert_eq!(
            wp.parse(op, &answer(200, processing)),
            Outcome::Split(SplitReport {
                state: ChannelSplitState::Processing,
                channel_split_no: Some("3008".into()),
                shares: vec![ShareReport {
                    account: "86693852".into(),
                    amount: Fen(888),
                    state: ShareState::Pending,
                    fail_reason: None,
                    detail_id: Some("36011".into()),
                }],
            })
        );
    }
    // Settled: one succeeded, one closed; the merchant's own unfreeze line is not a share.
    let finished = format!(
        r#"{{"order_id":"3008","state":"FINISHED","receivers":[
        {{"amount":888,"type":"MERCHANT_ID","account":"86693852","result":"SUCCESS","detail_id":"1"}},
        {{"amount":12,"type":"PERSONAL_OPENID","account":"oS","result":"CLOSED","fail_reason":"NO_RELATION"}},
        {{"amount":100,"type":"MERCHANT_ID","account":"{MCHID}","result":"SUCCESS","description":"解冻给分账方"}}]}}"#
    );
    let Outcome::Split(r) = wp.parse(Op::SplitQuery(&s), &answer(200, &finished)) else {
        panic!()
    };
    assert_eq!(r.state, ChannelSplitState::Finished);
    let states: Vec<_> = r
        .shares
        .iter()
        .map(|x| (x.account.as_str(), x.state, x.fail_reason.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            ("86693852", ShareState::Succeeded, None),
            ("oS", ShareState::Failed, Some("NO_RELATION"))
        ]
    );
    // Nothing unfamiliar or incomplete is read as a result.
    for odd in [
        r#"{"order_id":"3008","state":"ACCEPTED","receivers":[]}"#,
        r#"{"order_id":"3008","receivers":[]}"#,
        r#"{"state":"FINISHED","receivers":[{"amount":1,"account":"a","result":"REVOKED"}]}"#,
        r#"{"state":"FINISHED","receivers":[{"account":"a","result":"SUCCESS"}]}"#,
        r#"{"state":"FINISHED","receivers":[{"amount":1,"result":"SUCCESS"}]}"#,
        r#"{"state":"FINISHED","receivers":[{"amount":"1","account":"a","result":"SUCCESS"}]}"#,
        r#"{"state":"FINISHED","receivers":[{"amount":1,"account":"a","result":"PENDING"}]}"#,
        r#"{"state":"FINISHED","receivers":[{"amount":-1,"account":"a","result":"SUCCESS"}]}"#,
        "not json",
        "",
    ] {
        assert!(
            unknown(&wp.parse(Op::SplitQuery(&s), &answer(200, odd))),
            "{odd}"
        );
    }
    // A good answer under a bad signature is unknown too.
    let mut forged = answer(200, processing);
    forged.body = bytes::Bytes::from(processing.replace("PROCESSING", "FINISHED"));
    assert!(unknown(&wp.parse(Op::Split(&s), &forged)));
}

#[test]
fn split_errors_read_as_the_table_says() {
    let wp = adapter();
    let s = split();
    let err =
        |status, code: &str| answer(status, &json!({"code": code, "message": "m"}).to_string());
    let declined =
        |o: Outcome, want: &str| matches!(o, Outcome::Declined { code, .. } if code == want);
    assert!(declined(
        wp.parse(Op::Split(&s), &err(403, "NOT_ENOUGH")),
        "NOT_ENOUGH"
    ));
    assert!(declined(
        wp.parse(Op::Split(&s), &err(400, "INVALID_REQUEST")),
        "INVALID_REQUEST"
    ));
    assert!(declined(
        wp.parse(Op::Split(&s), &err(403, "NO_AUTH")),
        "NO_AUTH"
    ));
    assert!(declined(
        wp.parse(Op::SplitFinish(&s), &err(400, "PARAM_ERROR")),
        "PARAM_ERROR"
    ));
    assert!(declined(
        wp.parse(Op::Split(&s), &err(404, "RESOURCE_NOT_EXISTS")),
        "RESOURCE_NOT_EXISTS"
    ));
    assert_eq!(
        wp.parse(Op::SplitQuery(&s), &err(404, "RESOURCE_NOT_EXISTS")),
        Outcome::Split(SplitReport {
            state: ChannelSplitState::NotFound,
            channel_split_no: None,
            shares: vec![],
        })
    );
    for (status, code) in [
        (500, "SYSTEM_ERROR"),
        (429, "FREQUENCY_LIMITED"),
        (503, "SERVICE_UNAVAILABLE"),
        (400, "SOMETHING_NEW"),
    ] {
        for op in [Op::Split(&s), Op::SplitQuery(&s), Op::SplitFinish(&s)] {
            assert!(
                unknown(&wp.parse(op, &err(status, code))),
                "{status} {code}"
            );
        }
    }
    assert!(unknown(
        &wp.parse(Op::Split(&s), &answer(502, "Bad Gateway"))
    ));
    let mut unsigned = err(403, "NOT_ENOUGH");
    unsigned.headers.remove("Wechatpay-Signature");
    assert!(unknown(&wp.parse(Op::Split(&s), &unsigned)));
}

#[test]
fn return_answers_read_as_reports() {
    let wp = adapter();
    let r = split_return(ReceiverType::Merchant);
    let report = |result: &str, reason: Option<&str>| {
        let mut v = json!({"order_id": "3008", "out_order_no": "P1", "out_return_no": "R1",
                           "return_id": "3009", "return_mchid": "86693852", "amount": 10,
                           "result": result});
        if let Some(reason) = reason {
            v["fail_reason"] = json!(reason);
        }
        answer(200, &v.to_string())
    };
    let read = |op, resp: &RawResponse| wp.parse(op, resp);
    let want = |state, fail_reason: Option<&str>| {
        Outcome::SplitReturn(ReturnReport {
            state,
            channel_return_no: Some("3009".into()),
            fail_reason: fail_reason.map(Into::into),
        })
    };
    assert_eq!(
        read(Op::SplitReturn(&r), &report("PROCESSING", None)),
        want(ChannelReturnState::Processing, None)
    );
    assert_eq!(
        read(Op::SplitReturnQuery(&r), &report("SUCCESS", None)),
        want(ChannelReturnState::Succeeded, None)
    );
    assert_eq!(
        read(
            Op::SplitReturnQuery(&r),
            &report("FAILED", Some("BALANCE_NOT_ENOUGH"))
        ),
        want(ChannelReturnState::Failed, Some("BALANCE_NOT_ENOUGH"))
    );
    for odd in [
        report("REVERSED", None),
        answer(200, r#"{"return_id":"3009"}"#),
        answer(200, ""),
    ] {
        assert!(unknown(&read(Op::SplitReturnQuery(&r), &odd)));
    }
    let err =
        |status, code: &str| answer(status, &json!({"code": code, "message": "m"}).to_string());
    assert_eq!(
        read(Op::SplitReturnQuery(&r), &err(404, "RESOURCE_NOT_EXISTS")),
        Outcome::SplitReturn(ReturnReport {
            state: ChannelReturnState::NotFound,
            channel_return_no: None,
            fail_reason: None,
        })
    );
    assert!(matches!(
        read(Op::SplitReturn(&r), &err(400, "INVALID_REQUEST")),
        Outcome::Declined { code, .. } if code == "INVALID_REQUEST"
    ));
    assert!(unknown(&read(
        Op::SplitReturn(&r),
        &err(500, "SYSTEM_ERROR")
    )));
}

#[test]
fn a_bind_answer_is_bound_or_read_as_the_table_says() {
    let wp = adapter();
    let rcv = receiver(ReceiverType::Openid, None);
    let op = Op::BindReceiver {
        out_trade_no: "ORDER-1",
        receiver: &rcv,
    };
    let echo = r#"{"type":"PERSONAL_OPENID","account":"86693852","relation_type":"PARTNER"}"#;
    assert_eq!(wp.parse(op, &answer(200, echo)), Outcome::Bound);
    let err =
        |status, code: &str| answer(status, &json!({"code": code, "message": "m"}).to_string());
    assert!(matches!(
        wp.parse(op, &err(400, "PARAM_ERROR")),
        Outcome::Declined { code, .. } if code == "PARAM_ERROR"
    ));
    assert!(matches!(
        wp.parse(op, &err(404, "ORDER_NOT_EXIST")),
        Outcome::Declined { .. }
    ));
    assert!(unknown(&wp.parse(op, &err(500, "SYSTEM_ERROR"))));
    assert!(unknown(&wp.parse(op, &err(429, "FREQUENCY_LIMITED"))));
}
