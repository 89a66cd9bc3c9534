use http::{Method, StatusCode};
use serde_json::json;

use super::Gateway;
use crate::sandbox::kit::{test_channel, test_request};
use crate::sandbox::Simulator;

pub(super) fn gateway() -> Gateway {
    Gateway::new(&test_channel("wechatpay").0)
}

pub(super) fn native(g: &Gateway, no: &str, description: &str) -> serde_json::Value {
    json!({
        "appid": g.appid, "mchid": g.mchid, "out_trade_no": no, "description": description,
        "notify_url": "http://127.0.0.1:1/notify/wechatpay", "amount": { "total": 1000 },
    })
}

#[test]
fn calls_are_counted_without_order_numbers() {
    let cases = [
        (
            Method::POST,
            "/v3/pay/transactions/native",
            "POST /v3/pay/transactions/native",
        ),
        (
            Method::POST,
            "/v3/pay/transactions/out-trade-no/N1/close",
            "POST /v3/pay/transactions/out-trade-no/{}/close",
        ),
        (
            Method::GET,
            "/v3/pay/transactions/out-trade-no/N1",
            "GET /v3/pay/transactions/out-trade-no/{}",
        ),
        (
            Method::GET,
            "/v3/refund/domestic/refunds/R1",
            "GET /v3/refund/domestic/refunds/{}",
        ),
    ];
    let g = gateway();
    for (method, path, label) in cases {
        assert_eq!(g.call_label(&test_request(method, path)), label);
    }
}

#[test]
fn a_repeated_prepay_is_answered_again_unless_it_differs() {
    let g = gateway();
    let (status, first) = g.prepay("NATIVE", &native(&g, "N000001", "tea"));
    assert_eq!(status, StatusCode::OK);
    assert!(first["code_url"].as_str().unwrap().starts_with("weixin://"));
    assert_eq!(g.prepay("NATIVE", &native(&g, "N000001", "tea")).1, first);
    let (status, changed) = g.prepay("NATIVE", &native(&g, "N000001", "coffee"));
    assert_eq!(
        (status, &changed["code"]),
        (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST"))
    );
}

#[test]
fn a_refund_settles_by_its_first_query() {
    let g = gateway();
    g.prepay("NATIVE", &native(&g, "N000002", "tea"));
    g.pay("N000002", false).unwrap();
    let refund = json!({
        "out_trade_no": "N000002", "out_refund_no": "RF1", "amount": { "refund": 400, "total": 1000, "currency": "CNY" },
    });
    let (status, made) = g.refund(&refund);
    assert_eq!(
        (status, &made["status"]),
        (StatusCode::OK, &json!("PROCESSING"))
    );
    assert_eq!(g.refund_query("RF1").1["status"], "SUCCESS");
    assert_eq!(g.order_view("N000002").unwrap()["refunded"], 400);
}

#[test]
fn a_paid_order_cannot_be_closed() {
    let g = gateway();
    g.prepay("NATIVE", &native(&g, "N000003", "tea"));
    g.pay("N000003", false).unwrap();
    let (status, answer) = g.close("N000003", &json!({ "mchid": g.mchid }));
    assert_eq!(
        (status, &answer["code"]),
        (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST"))
    );
}

// Profit sharing.

use std::sync::Arc;

use serde_json::Value;

use crate::channels::wechatpay::transformers::PlatformKeys;
use crate::channels::wechatpay::{WechatPay, WechatPayConfig};
use crate::channels::{
    Channel, ChannelReturnState, ChannelSplitState, Op, Outcome, Prepared, RawResponse,
    ReceiverIntent, ShareIntent, ShareState, SplitIntent, SplitReturnIntent,
};
use crate::crypto::PrivateKey;
use crate::domain::{ReceiverType, Scene};
use crate::money::Fen;
use crate::sandbox::shared::ReceiverBehaviour;

/// A paid order of 1000 fen (`profit_sharing` as given); its transaction_id.
fn paid(g: &Gateway, no: &str, profit_sharing: bool) -> String {
    let mut body = native(g, no, "tea");
    body["settle_info"] = json!({ "profit_sharing": profit_sharing });
    assert_eq!(g.prepay("NATIVE", &body).0, StatusCode::OK);
    g.pay(no, false).unwrap();
    g.order_view(no).unwrap()["transaction_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn bind(g: &Gateway, account: &str) {
    let (status, answer) = g.add_receiver(
        &json!({ "appid": g.appid, "type": "PERSONAL_OPENID", "account": account, "relation_type": "PARTNER" }),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
}

fn bind_merchant(g: &Gateway, account: &str) {
    g.receivers().entry(account.into()).or_default().bound = true;
}

fn split_body(
    g: &Gateway,
    tid: &str,
    no: &str,
    receivers: &[(&str, &str, u64)],
    unfreeze: bool,
) -> Value {
    let receivers: Vec<Value> = receivers
        .iter()
        .map(|(kind, account, amount)| {
            json!({ "type": kind, "account": account, "amount": amount, "description": "share" })
        })
        .collect();
    json!({ "appid": g.appid, "transaction_id": tid, "out_order_no": no,
            "receivers": receivers, "unfreeze_unsplit": unfreeze })
}

fn code(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (answer.0, answer.1["code"].as_str().unwrap_or_default())
}

#[test]
fn profit_sharing_calls_are_counted_without_numbers() {
    let g = gateway();
    for (method, path, label) in [
        (
            Method::GET,
            "/v3/profitsharing/orders/S1?transaction_id=42",
            "GET /v3/profitsharing/orders/{}",
        ),
        (
            Method::GET,
            "/v3/profitsharing/return-orders/R1?out_order_no=S1",
            "GET /v3/profitsharing/return-orders/{}",
        ),
        (
            Method::POST,
            "/v3/profitsharing/orders",
            "POST /v3/profitsharing/orders",
        ),
        (
            Method::POST,
            "/v3/profitsharing/orders/unfreeze",
            "POST /v3/profitsharing/orders/unfreeze",
        ),
        (
            Method::POST,
            "/v3/profitsharing/return-orders",
            "POST /v3/profitsharing/return-orders",
        ),
        (
            Method::POST,
            "/v3/profitsharing/receivers/add",
            "POST /v3/profitsharing/receivers/add",
        ),
    ] {
        assert_eq!(g.call_label(&test_request(method, path)), label);
    }
}

#[test]
fn only_paid_profit_sharing_orders_can_be_split() {
    let g = gateway();
    bind(&g, "o1");
    let plain = paid(&g, "PS00001", false);
    let answer = g.split(
        &split_body(&g, &plain, "S1", &[("PERSONAL_OPENID", "o1", 100)], false),
        None,
    );
    assert_eq!(code(&answer), (StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    // Created for profit sharing, not paid yet.
    let mut body = native(&g, "PS00002", "tea");
    body["settle_info"] = json!({ "profit_sharing": true });
    g.prepay("NATIVE", &body);
    let tid = g.trades()["PS00002"].transaction_id.clone();
    let answer = g.split(
        &split_body(&g, &tid, "S2", &[("PERSONAL_OPENID", "o1", 100)], false),
        None,
    );
    assert_eq!(code(&answer), (StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    let answer = g.split(
        &split_body(
            &g,
            "4200nope",
            "S3",
            &[("PERSONAL_OPENID", "o1", 100)],
            false,
        ),
        None,
    );
    assert_eq!(code(&answer), (StatusCode::BAD_REQUEST, "PARAM_ERROR"));
    assert!(g.split_view_of("S1").is_none());
}

#[test]
fn a_split_settles_by_its_first_query() {
    let g = gateway();
    let tid = paid(&g, "PS00010", true);
    bind(&g, "o-ok");
    bind(&g, "o-risky");
    g.behave(
        "o-risky",
        ReceiverBehaviour {
            share_fail: Some("RECEIVER_HIGH_RISK".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let receivers = [
        ("PERSONAL_OPENID", "o-ok", 100),
        ("PERSONAL_OPENID", "o-risky", 50),
        ("PERSONAL_OPENID", "o-stranger", 30),
    ];
    let (status, made) = g.split(&split_body(&g, &tid, "S10", &receivers, false), None);
    assert_eq!(status, StatusCode::OK, "{made}");
    assert_eq!(made["state"], "PROCESSING");
    assert!(made["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["result"] == "PENDING"));
    // Pending shares have left the merchant.
    assert_eq!(g.order_view("PS00010").unwrap()["held"], 820);

    let (status, settled) = g.split_query("S10", Some(tid.clone()));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled["state"], "FINISHED");
    assert_eq!(settled["order_id"], made["order_id"]);
    let results: Vec<(&str, &str)> = settled["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["result"].as_str().unwrap(),
                r["fail_reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("SUCCESS", ""),
            ("CLOSED", "RECEIVER_HIGH_RISK"),
            ("CLOSED", "NO_RELATION")
        ]
    );
    // Closed shares stay with the merchant.
    assert_eq!(g.order_view("PS00010").unwrap()["held"], 900);
    // Settled once: the next query answers the same.
    assert_eq!(
        g.split_query("S10", Some(tid.clone())).1["receivers"],
        settled["receivers"]
    );
    assert_eq!(
        code(&g.split_query("S10", Some("other".into()))),
        (StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS")
    );
    assert_eq!(
        code(&g.split_query("S99", Some(tid))),
        (StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS")
    );
    assert_eq!(
        code(&g.split_query("S10", None)),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR")
    );

    let view = g.split_view_of("S10").unwrap();
    assert_eq!(view["state"], "FINISHED");
    assert_eq!(
        view["receivers"][0],
        json!({"type": "PERSONAL_OPENID", "account": "o-ok", "amount": 100, "result": "SUCCESS", "fail_reason": null})
    );
    assert_eq!(view["receivers"][2]["fail_reason"], "NO_RELATION");
}

#[test]
fn splits_never_exceed_what_the_merchant_holds() {
    let g = gateway();
    let tid = paid(&g, "PS00020", true);
    bind(&g, "o1");
    let over = g.split(
        &split_body(&g, &tid, "S20", &[("PERSONAL_OPENID", "o1", 1001)], false),
        None,
    );
    assert_eq!(code(&over), (StatusCode::FORBIDDEN, "NOT_ENOUGH"));
    let ok = g.split(
        &split_body(&g, &tid, "S21", &[("PERSONAL_OPENID", "o1", 600)], false),
        None,
    );
    assert_eq!(ok.0, StatusCode::OK);
    let over = g.split(
        &split_body(
            &g,
            &tid,
            "S22",
            &[
                ("PERSONAL_OPENID", "o1", 300),
                ("PERSONAL_OPENID", "o2", 101),
            ],
            false,
        ),
        None,
    );
    assert_eq!(code(&over), (StatusCode::FORBIDDEN, "NOT_ENOUGH"));
    // Refunded money cannot be shared either.
    let refund = json!({ "out_trade_no": "PS00020", "out_refund_no": "RF20", "amount": { "refund": 300, "total": 1000, "currency": "CNY" } });
    assert_eq!(g.refund(&refund).0, StatusCode::OK);
    let over = g.split(
        &split_body(&g, &tid, "S23", &[("PERSONAL_OPENID", "o1", 101)], false),
        None,
    );
    assert_eq!(code(&over), (StatusCode::FORBIDDEN, "NOT_ENOUGH"));
    let exact = g.split(
        &split_body(&g, &tid, "S24", &[("PERSONAL_OPENID", "o1", 100)], false),
        None,
    );
    assert_eq!(exact.0, StatusCode::OK, "{}", exact.1);
    assert_eq!(g.order_view("PS00020").unwrap()["held"], 0);
    // Amounts that add up past any number are refused, not wrapped.
    let tid = paid(&g, "PS00021", true);
    let huge = split_body(
        &g,
        &tid,
        "S25",
        &[
            ("PERSONAL_OPENID", "o1", u64::MAX),
            ("PERSONAL_OPENID", "o2", 2),
        ],
        false,
    );
    assert_eq!(
        code(&g.split(&huge, None)),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR")
    );
}

#[test]
fn a_repeated_split_is_the_same_order_unless_it_differs() {
    let g = gateway();
    let tid = paid(&g, "PS00030", true);
    bind(&g, "o1");
    let body = split_body(&g, &tid, "S30", &[("PERSONAL_OPENID", "o1", 400)], false);
    let first = g.split(&body, None);
    let again = g.split(&body, None);
    assert_eq!((first.0, again.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first.1["order_id"], again.1["order_id"]);
    assert_eq!(
        g.order_view("PS00030").unwrap()["shared"],
        400,
        "shared once"
    );
    let changed = split_body(&g, &tid, "S30", &[("PERSONAL_OPENID", "o1", 401)], false);
    assert_eq!(
        code(&g.split(&changed, None)),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    // A repeat after the order settled answers the settled order.
    g.split_query("S30", Some(tid.clone()));
    assert_eq!(g.split(&body, None).1["state"], "FINISHED");
}

#[test]
fn nothing_is_shared_after_the_rest_is_unfrozen() {
    let g = gateway();
    bind(&g, "o1");
    // By an unfreeze of its own.
    let tid = paid(&g, "PS00040", true);
    let unfreeze =
        json!({ "transaction_id": tid, "out_order_no": "U40", "description": "解冻全部剩余资金" });
    let (status, made) = g.unfreeze(&unfreeze);
    assert_eq!(
        (status, &made["state"]),
        (StatusCode::OK, &json!("PROCESSING"))
    );
    assert_eq!(made["receivers"][0]["account"], g.mchid.as_str());
    assert_eq!(made["receivers"][0]["amount"], 1000);
    assert_eq!(
        g.unfreeze(&unfreeze).1["order_id"],
        made["order_id"],
        "idempotent"
    );
    let late = g.split(
        &split_body(&g, &tid, "S41", &[("PERSONAL_OPENID", "o1", 1)], false),
        None,
    );
    assert_eq!(code(&late), (StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    let again = json!({ "transaction_id": tid, "out_order_no": "U41", "description": "again" });
    assert_eq!(
        code(&g.unfreeze(&again)),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(g.split_query("U40", Some(tid)).1["state"], "FINISHED");
    // By a split with unfreeze_unsplit.
    let tid = paid(&g, "PS00042", true);
    let last = g.split(
        &split_body(&g, &tid, "S42", &[("PERSONAL_OPENID", "o1", 300)], true),
        None,
    );
    assert_eq!(last.0, StatusCode::OK);
    assert_eq!(
        last.1["receivers"][1]["amount"], 700,
        "the merchant's own line"
    );
    let late = g.split(
        &split_body(&g, &tid, "S43", &[("PERSONAL_OPENID", "o1", 1)], false),
        None,
    );
    assert_eq!(code(&late), (StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    let view = g.split_view_of("S42").unwrap();
    assert_eq!(view["receivers"].as_array().unwrap().len(), 1);
    assert_eq!(view["unfrozen_amount"], 700);
    assert_eq!(view["order"]["held"], 700);
}

fn return_body(split: &str, no: &str, mchid: &str, amount: u64) -> Value {
    json!({ "out_order_no": split, "out_return_no": no, "return_mchid": mchid, "amount": amount, "description": "refund" })
}

#[test]
fn returns_settle_by_query_and_never_exceed_what_the_receiver_got() {
    let g = gateway();
    let tid = paid(&g, "PS00050", true);
    bind_merchant(&g, "1900000109");
    bind(&g, "o1");
    let receivers = [
        ("MERCHANT_ID", "1900000109", 300),
        ("PERSONAL_OPENID", "o1", 100),
    ];
    g.split(&split_body(&g, &tid, "S50", &receivers, false), None);
    // Not settled yet: the receiver got nothing so far.
    let early = g.split_return(&return_body("S50", "R49", "1900000109", 1));
    assert_eq!(code(&early), (StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    g.split_query("S50", Some(tid));

    let (status, made) = g.split_return(&return_body("S50", "R50", "1900000109", 200));
    assert_eq!(
        (status, &made["result"]),
        (StatusCode::OK, &json!("PROCESSING")),
        "{made}"
    );
    assert_eq!(
        g.split_return(&return_body("S50", "R50", "1900000109", 200))
            .1["return_id"],
        made["return_id"]
    );
    assert_eq!(
        code(&g.split_return(&return_body("S50", "R50", "1900000109", 201))),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    // 300 got, 200 on its way back: 101 is too much.
    let over = g.split_return(&return_body("S50", "R51", "1900000109", 101));
    assert_eq!(code(&over), (StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    // Openid receivers cannot be returned from; strangers neither.
    assert_eq!(
        code(&g.split_return(&return_body("S50", "R52", "o1", 10))),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(
        code(&g.split_return(&return_body("S50", "R53", "1900000999", 10))),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(
        code(&g.split_return(&return_body("S99", "R54", "1900000109", 10))),
        (StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS")
    );

    assert_eq!(
        g.order_view("PS00050").unwrap()["held"],
        600,
        "a processing return is not back yet"
    );
    let (status, settled) = g.return_query("R50", Some("S50".into()));
    assert_eq!(
        (status, &settled["result"]),
        (StatusCode::OK, &json!("SUCCESS"))
    );
    assert_eq!(g.order_view("PS00050").unwrap()["held"], 800);
    assert_eq!(
        code(&g.return_query("R50", Some("S51".into()))),
        (StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS")
    );
    assert_eq!(
        code(&g.return_query("R50", None)),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR")
    );

    // A failed return gives the receiver's money no way back: it can be asked again.
    g.behave(
        "1900000109",
        ReceiverBehaviour {
            return_fail: Some("BALANCE_NOT_ENOUGH".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        g.split_return(&return_body("S50", "R55", "1900000109", 100))
            .0,
        StatusCode::OK
    );
    let failed = g.return_query("R55", Some("S50".into())).1;
    assert_eq!(
        (&failed["result"], &failed["fail_reason"]),
        (&json!("FAILED"), &json!("BALANCE_NOT_ENOUGH"))
    );
    g.behave("1900000109", ReceiverBehaviour::default())
        .unwrap();
    assert_eq!(
        g.split_return(&return_body("S50", "R56", "1900000109", 100))
            .0,
        StatusCode::OK
    );
    assert_eq!(
        code(&g.split_return(&return_body("S50", "R57", "1900000109", 1))),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );

    let view = g.split_view_of("S50").unwrap();
    let returns: Vec<(&str, u64, &str)> = view["returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["out_return_no"].as_str().unwrap(),
                r["amount"].as_u64().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        returns,
        [
            ("R50", 200, "SUCCESS"),
            ("R55", 100, "FAILED"),
            ("R56", 100, "PROCESSING")
        ]
    );
}

#[test]
fn refunds_take_only_what_the_merchant_still_holds() {
    let g = gateway();
    let tid = paid(&g, "PS00060", true);
    bind_merchant(&g, "1900000109");
    g.split(
        &split_body(
            &g,
            &tid,
            "S60",
            &[("MERCHANT_ID", "1900000109", 700)],
            false,
        ),
        None,
    );
    g.split_query("S60", Some(tid));
    let refund = |no: &str, amount: u64| {
        g.refund(&json!({ "out_trade_no": "PS00060", "out_refund_no": no,
                          "amount": { "refund": amount, "total": 1000, "currency": "CNY" } }))
    };
    // 1000 paid, 700 shared: refunding 400 would refund money that is with the receiver.
    assert_eq!(
        code(&refund("RF60", 400)),
        (StatusCode::FORBIDDEN, "NOT_ENOUGH")
    );
    assert_eq!(refund("RF61", 300).0, StatusCode::OK);
    assert_eq!(
        code(&refund("RF62", 1)),
        (StatusCode::FORBIDDEN, "NOT_ENOUGH")
    );
    // The receiver gives 200 back: now the merchant can refund it.
    g.split_return(&return_body("S60", "R60", "1900000109", 200));
    g.return_query("R60", Some("S60".into()));
    assert_eq!(refund("RF63", 200).0, StatusCode::OK);
    assert_eq!(g.order_view("PS00060").unwrap()["held"], 0);
    // Orders not held for profit sharing refund as before.
    paid(&g, "PS00061", false);
    let plain = g.refund(&json!({ "out_trade_no": "PS00061", "out_refund_no": "RF64",
                                  "amount": { "refund": 1000, "total": 1000, "currency": "CNY" } }));
    assert_eq!(plain.0, StatusCode::OK);
}

#[test]
fn receivers_are_added_unless_the_control_refuses_them() {
    let g = gateway();
    g.behave(
        "o-bad",
        ReceiverBehaviour {
            bind_fail: Some("INVALID_REQUEST".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let add = |account: &str, extra: Value| {
        let mut body = json!({ "appid": g.appid, "type": "PERSONAL_OPENID", "account": account, "relation_type": "PARTNER" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        g.add_receiver(&body, None)
    };
    assert_eq!(
        code(&add("o-bad", json!({}))),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(add("o-good", json!({})).0, StatusCode::OK);
    assert_eq!(add("o-good", json!({})).0, StatusCode::OK, "idempotent");
    assert_eq!(
        code(&add("o-x", json!({"relation_type": "FRIEND"}))),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR")
    );
    assert_eq!(
        code(&add("o-x", json!({"relation_type": "CUSTOM"}))),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR")
    );
    assert_eq!(
        code(&add("o-x", json!({"type": "MERCHANT_ID"}))),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR"),
        "merchant receivers need a name"
    );
    // A name must be encrypted under the key the request names.
    let sealed = g
        .platform_key
        .public_key()
        .encrypt_oaep_sha1_b64("张三".as_bytes())
        .unwrap();
    let mut body = json!({ "appid": g.appid, "type": "MERCHANT_ID", "account": "1900000109", "relation_type": "PARTNER", "name": sealed });
    assert_eq!(
        code(&g.add_receiver(&body, None)),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR")
    );
    assert_eq!(
        g.add_receiver(&body, Some(&g.platform_key_id.clone())).0,
        StatusCode::OK
    );
    body["name"] = json!("张三");
    assert_eq!(
        code(&g.add_receiver(&body, Some(&g.platform_key_id.clone()))),
        (StatusCode::BAD_REQUEST, "PARAM_ERROR")
    );
    assert!(g.receivers()["o-good"].bound);
    assert!(!g.receivers()["o-bad"].bound);
}

/// The adapter for the simulator's test channel.
pub(super) fn adapter(g: &Gateway, merchant_key: PrivateKey) -> WechatPay {
    let mut keys = PlatformKeys::default();
    keys.insert(&g.platform_key_id, g.platform_key.public_key());
    WechatPay::new(WechatPayConfig {
        name: "wechatpay".into(),
        mchid: g.mchid.clone(),
        appid: g.appid.clone(),
        base_url: "http://127.0.0.1:1".into(),
        merchant_key: Arc::new(merchant_key),
        merchant_serial: g.merchant_serial.clone(),
        platform_keys: keys,
        apiv3_key: g.apiv3_key.clone(),
        notify_url: None,
        scenes: vec![Scene::Qr],
    })
}

/// `op` built by the adapter, answered by the simulator, read by the adapter.
pub(super) async fn round_trip(g: &Gateway, wp: &WechatPay, op: Op<'_>) -> Outcome {
    let Prepared::Send(req) = wp.build(op, chrono::Utc::now()).unwrap() else {
        panic!("profit sharing is sent");
    };
    let (parts, body) = req.into_parts();
    let req = crate::sandbox::GatewayRequest {
        method: parts.method,
        uri: parts
            .uri
            .path_and_query()
            .unwrap()
            .as_str()
            .parse()
            .unwrap(),
        headers: parts.headers,
        body,
    };
    let resp = g.handle(&req, false);
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    wp.parse(
        op,
        &RawResponse {
            status,
            headers,
            body,
        },
    )
}

#[tokio::test]
async fn the_adapter_and_the_simulator_agree_on_profit_sharing() {
    let (channel, merchant_key) = test_channel("wechatpay");
    let g = Gateway::new(&channel);
    let wp = adapter(&g, merchant_key);
    let tid = paid(&g, "PS00070", true);

    let merchant = ReceiverIntent {
        receiver_type: ReceiverType::Merchant,
        account: "1900000109".into(),
        name: Some("示例商户全称".into()),
        relation: None,
        request_no: "B1".into(),
    };
    let op = Op::BindReceiver {
        out_trade_no: "PS00070",
        receiver: &merchant,
    };
    assert_eq!(round_trip(&g, &wp, op).await, Outcome::Bound);
    g.behave(
        "o-refused",
        ReceiverBehaviour {
            bind_fail: Some("PARAM_ERROR".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let refused = ReceiverIntent {
        receiver_type: ReceiverType::Openid,
        account: "o-refused".into(),
        name: None,
        relation: Some("USER".into()),
        request_no: "B2".into(),
    };
    let op = Op::BindReceiver {
        out_trade_no: "PS00070",
        receiver: &refused,
    };
    assert!(
        matches!(round_trip(&g, &wp, op).await, Outcome::Declined { code, .. } if code == "PARAM_ERROR")
    );

    let share = |account: &str, kind, amount| ShareIntent {
        receiver_type: kind,
        account: account.into(),
        name: None,
        amount: Fen(amount),
        description: "分给商户".into(),
    };
    let mut split = SplitIntent {
        out_trade_no: "PS00070".into(),
        channel_trade_no: Some(tid.clone()),
        out_split_no: "S70".into(),
        channel_split_no: None,
        shares: vec![
            share("1900000109", ReceiverType::Merchant, 600),
            share("o-never-added", ReceiverType::Openid, 100),
        ],
        finish: false,
        total: Fen(1000),
    };
    let Outcome::Split(made) = round_trip(&g, &wp, Op::Split(&split)).await else {
        panic!()
    };
    assert_eq!(made.state, ChannelSplitState::Processing);
    assert!(made.shares.iter().all(|s| s.state == ShareState::Pending));
    let Outcome::Split(settled) = round_trip(&g, &wp, Op::SplitQuery(&split)).await else {
        panic!()
    };
    assert_eq!(settled.state, ChannelSplitState::Finished);
    assert_eq!(settled.channel_split_no, made.channel_split_no);
    let states: Vec<_> = settled
        .shares
        .iter()
        .map(|s| {
            (
                s.account.as_str(),
                s.amount,
                s.state,
                s.fail_reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("1900000109", Fen(600), ShareState::Succeeded, None),
            (
                "o-never-added",
                Fen(100),
                ShareState::Failed,
                Some("NO_RELATION")
            )
        ]
    );

    // Over-split: 1000 − 600 shared leaves 400.
    split.out_split_no = "S71".into();
    split.shares = vec![share("1900000109", ReceiverType::Merchant, 401)];
    assert!(
        matches!(round_trip(&g, &wp, Op::Split(&split)).await, Outcome::Declined { code, .. } if code == "NOT_ENOUGH")
    );
    split.out_split_no = "S72".into();
    let Outcome::Split(missing) = round_trip(&g, &wp, Op::SplitQuery(&split)).await else {
        panic!()
    };
    assert_eq!(missing.state, ChannelSplitState::NotFound);

    let mut ret = SplitReturnIntent {
        out_trade_no: "PS00070".into(),
        channel_trade_no: Some(tid.clone()),
        out_split_no: "S70".into(),
        channel_split_no: made.channel_split_no.clone(),
        out_return_no: "R70".into(),
        receiver_type: ReceiverType::Merchant,
        account: "1900000109".into(),
        amount: Fen(250),
        description: "退款".into(),
    };
    let Outcome::SplitReturn(r) = round_trip(&g, &wp, Op::SplitReturn(&ret)).await else {
        panic!()
    };
    assert_eq!(r.state, ChannelReturnState::Processing);
    let Outcome::SplitReturn(r) = round_trip(&g, &wp, Op::SplitReturnQuery(&ret)).await else {
        panic!()
    };
    assert_eq!(r.state, ChannelReturnState::Succeeded);
    ret.out_return_no = "R71".into();
    ret.amount = Fen(351);
    assert!(
        matches!(round_trip(&g, &wp, Op::SplitReturn(&ret)).await, Outcome::Declined { code, .. } if code == "INVALID_REQUEST")
    );
    let Outcome::SplitReturn(r) = round_trip(&g, &wp, Op::SplitReturnQuery(&ret)).await else {
        panic!()
    };
    assert_eq!(r.state, ChannelReturnState::NotFound);

    split.out_split_no = "U70".into();
    split.shares.clear();
    let Outcome::Split(finish) = round_trip(&g, &wp, Op::SplitFinish(&split)).await else {
        panic!()
    };
    assert_eq!(finish.state, ChannelSplitState::Processing);
    assert!(
        finish.shares.is_empty(),
        "the merchant's own line is not a receiver"
    );
    let Outcome::Split(finish) = round_trip(&g, &wp, Op::SplitQuery(&split)).await else {
        panic!()
    };
    assert_eq!(finish.state, ChannelSplitState::Finished);
    assert_eq!(g.split_view_of("U70").unwrap()["unfrozen_amount"], 650);
}
