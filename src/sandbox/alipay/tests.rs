use serde_json::{json, Map, Value};

use super::handlers::GwError;
use super::Gateway;
use crate::channels::alipay::signing::Params;
use crate::sandbox::kit::test_channel;
use crate::sandbox::{ReceiverBehaviour, Simulator};

fn gateway() -> Gateway {
    Gateway::new(&test_channel("alipay").0)
}

/// Runs `method` with `biz` as business content, past authentication.
fn call(g: &Gateway, method: &str, biz: Value) -> Result<Map<String, Value>, GwError> {
    let Value::Object(biz) = biz else {
        panic!("biz content is an object")
    };
    g.business(method, &Params::default(), &biz)
}

fn sub_code(r: Result<Map<String, Value>, GwError>) -> String {
    r.expect_err("an error").2
}

#[test]
fn a_qr_code_is_a_trade_only_once_scanned() {
    let g = gateway();
    let order = json!({ "out_trade_no": "T1", "total_amount": "19.99", "subject": "tea" });
    let created = call(&g, "alipay.trade.precreate", order).unwrap();
    assert!(created["qr_code"]
        .as_str()
        .unwrap()
        .starts_with("https://qr.alipay.com/"));
    let query = json!({ "out_trade_no": "T1" });
    assert_eq!(
        sub_code(call(&g, "alipay.trade.query", query.clone())),
        "ACQ.TRADE_NOT_EXIST"
    );
    g.scan("T1").unwrap();
    let found = call(&g, "alipay.trade.query", query).unwrap();
    assert_eq!(found["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(found["total_amount"], "19.99");
}

/// A cashier order (app, wap, page) is signed by the merchant and never sent by it: Alipay
/// has no trade until the buyer's app or browser opens the cashier with it, so query, close
/// and cancel find none, and the buyer cannot pay before opening it (alipay.md §5.2, §8.2–8.3).
#[test]
fn a_cashier_order_is_a_trade_only_once_opened() {
    let g = gateway();
    for (i, method) in [
        "alipay.trade.app.pay",
        "alipay.trade.wap.pay",
        "alipay.trade.page.pay",
    ]
    .into_iter()
    .enumerate()
    {
        let no = format!("C{i}");
        let by_no = json!({ "out_trade_no": no });
        for m in [
            "alipay.trade.query",
            "alipay.trade.close",
            "alipay.trade.cancel",
        ] {
            assert_eq!(
                sub_code(call(&g, m, by_no.clone())),
                "ACQ.TRADE_NOT_EXIST",
                "{method}: {m} before the cashier is opened"
            );
        }
        assert!(g.pay(&no, false).is_err(), "{method}: paid before opened");
        // The buyer opens the cashier: the gateway receives the signed order.
        let order = json!({ "out_trade_no": no, "total_amount": "12.34", "subject": "tea" });
        call(&g, method, order).unwrap();
        let found = call(&g, "alipay.trade.query", by_no.clone()).unwrap();
        assert_eq!(found["trade_status"], "WAIT_BUYER_PAY", "{method}");
        g.pay(&no, false).unwrap();
        let paid = call(&g, "alipay.trade.query", by_no).unwrap();
        assert_eq!(paid["trade_status"], "TRADE_SUCCESS", "{method}");
    }
}

#[test]
fn barcode_auth_codes_decide_the_outcome() {
    let g = gateway();
    let pay = |no: &str, code: &str| {
        let biz = json!({ "out_trade_no": no, "total_amount": "1.00", "subject": "s", "auth_code": code });
        call(&g, "alipay.trade.pay", biz)
    };
    assert_eq!(pay("B1", "281234567890123456").unwrap()["code"], "10003");
    assert_eq!(
        sub_code(pay("B2", "291234567890123456")),
        "ACQ.BUYER_BALANCE_NOT_ENOUGH"
    );
    assert_eq!(
        sub_code(pay("B3", "121234567890123456")),
        "ACQ.PAYMENT_AUTH_CODE_INVALID"
    );
    assert!(g.order_view("B2").is_none() && g.order_view("B3").is_none());
    let paid = pay("B4", "251234567890123456").unwrap();
    assert_eq!(
        (&paid["code"], &paid["receipt_amount"]),
        (&json!("10000"), &json!("1.00"))
    );
}

#[test]
fn a_repeated_refund_moves_no_money_twice() {
    let g = gateway();
    let biz = json!({ "out_trade_no": "R1", "total_amount": "10.00", "subject": "s", "auth_code": "251234567890123456" });
    call(&g, "alipay.trade.pay", biz).unwrap();
    let refund = |amount: &str| {
        let biz =
            json!({ "out_trade_no": "R1", "refund_amount": amount, "out_request_no": "R1-1" });
        call(&g, "alipay.trade.refund", biz)
    };
    assert_eq!(refund("4.00").unwrap()["fund_change"], "Y");
    assert_eq!(refund("4.00").unwrap()["fund_change"], "N");
    assert_eq!(sub_code(refund("5.00")), "ACQ.DISCORDANT_REPEAT_REQUEST");
    assert_eq!(g.order_view("R1").unwrap().refunded, 400);
}

#[test]
fn unknown_methods_and_missing_order_numbers_are_refused() {
    let g = gateway();
    assert_eq!(
        sub_code(call(
            &g,
            "alipay.trade.nonsense",
            json!({ "out_trade_no": "X" })
        )),
        "isv.invalid-method"
    );
    assert_eq!(
        sub_code(call(&g, "alipay.trade.query", json!({}))),
        "ACQ.INVALID_PARAMETER"
    );
}

// Royalty (分账).

/// A paid barcode trade of 100.00 yuan, created for royalty unless `freeze` is false; its
/// `trade_no`.
fn paid(g: &Gateway, no: &str, freeze: bool) -> String {
    let mut biz = json!({ "out_trade_no": no, "total_amount": "100.00", "subject": "s",
                          "auth_code": "251234567890123456" });
    if freeze {
        biz["extend_params"] = json!({ "royalty_freeze": "true" });
    }
    let paid = call(g, "alipay.trade.pay", biz).unwrap();
    paid["trade_no"].as_str().unwrap().to_string()
}

fn bind(g: &Gateway, account: &str) -> Result<Map<String, Value>, GwError> {
    call(
        g,
        "alipay.trade.royalty.relation.bind",
        json!({ "out_request_no": format!("B-{account}"),
                "receiver_list": [{ "type": "userId", "account": account }] }),
    )
}

/// Settles `shares` (account, yuan) of `trade_no` under `no`.
fn settle(
    g: &Gateway,
    trade_no: &str,
    no: &str,
    shares: &[(&str, &str)],
    finish: bool,
) -> Result<Map<String, Value>, GwError> {
    let params: Vec<Value> = shares
        .iter()
        .map(|(a, y)| json!({ "royalty_type": "transfer", "trans_in_type": "userId", "trans_in": a, "amount": y }))
        .collect();
    call(
        g,
        "alipay.trade.order.settle",
        json!({ "out_request_no": no, "trade_no": trade_no, "royalty_parameters": params,
                "extend_params": { "royalty_finish": if finish { "true" } else { "false" } },
                "royalty_mode": "async" }),
    )
}

fn settle_query(g: &Gateway, trade_no: &str, no: &str) -> Result<Map<String, Value>, GwError> {
    call(
        g,
        "alipay.trade.order.settle.query",
        json!({ "out_request_no": no, "trade_no": trade_no }),
    )
}

/// Refunds `yuan` under `no`, taking `returns` (account, yuan) back from receivers.
fn refund_with(
    g: &Gateway,
    out_trade_no: &str,
    no: &str,
    yuan: &str,
    returns: &[(&str, &str)],
) -> Result<Map<String, Value>, GwError> {
    let mut biz =
        json!({ "out_trade_no": out_trade_no, "refund_amount": yuan, "out_request_no": no });
    if !returns.is_empty() {
        biz["refund_royalty_parameters"] = returns
            .iter()
            .map(|(a, y)| json!({ "royalty_type": "transfer", "trans_out_type": "userId", "trans_out": a, "amount": y }))
            .collect();
    }
    call(g, "alipay.trade.refund", biz)
}

fn states(details: &Value) -> Vec<(String, String)> {
    details
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["trans_in"]
                    .as_str()
                    .or(d["account"].as_str())
                    .unwrap()
                    .to_string(),
                d["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, s: &str) -> (String, String) {
    (a.to_string(), s.to_string())
}

#[test]
fn a_settle_is_answered_at_once_and_settles_at_the_first_query() {
    let g = gateway();
    let trade_no = paid(&g, "S1", true);
    bind(&g, "2088A").unwrap();
    bind(&g, "2088B").unwrap();
    let ok = settle(
        &g,
        &trade_no,
        "SP1",
        &[("2088A", "10.00"), ("2088B", "5.00")],
        false,
    )
    .unwrap();
    let settle_no = ok["settle_no"].as_str().unwrap().to_string();
    assert_eq!(ok["trade_no"], json!(trade_no));
    let view = g.settle_view("SP1").unwrap();
    assert_eq!(view["state"], "PROCESSING");
    assert_eq!(view["settle_no"], json!(settle_no));
    assert_eq!(
        states(&view["details"]),
        [pair("2088A", "PROCESSING"), pair("2088B", "PROCESSING")]
    );
    let q = settle_query(&g, &trade_no, "SP1").unwrap();
    assert_eq!(
        states(&q["royalty_detail_list"]),
        [pair("2088A", "SUCCESS"), pair("2088B", "SUCCESS")]
    );
    assert_eq!(q["royalty_detail_list"][0]["amount"], "10.00");
    // By settle_no too.
    let by_no = call(
        &g,
        "alipay.trade.order.settle.query",
        json!({ "settle_no": settle_no }),
    )
    .unwrap();
    assert_eq!(by_no["out_request_no"], "SP1");
    assert_eq!(g.settle_view("SP1").unwrap()["state"], "FINISHED");
    assert_eq!(
        sub_code(settle_query(&g, &trade_no, "SP-NONE")),
        "ACQ.TRADE_NOT_EXIST"
    );
}

#[test]
fn unbound_receivers_and_share_failures_end_failed() {
    let g = gateway();
    let trade_no = paid(&g, "S2", true);
    bind(&g, "2088A").unwrap();
    bind(&g, "2088C").unwrap();
    g.set_receiver(
        "2088C",
        ReceiverBehaviour {
            share_fail: Some("TRANS_IN_ACCOUNT_FROZEN".into()),
            ..Default::default()
        },
    )
    .unwrap();
    settle(
        &g,
        &trade_no,
        "SP2",
        &[("2088A", "1.00"), ("2088X", "2.00"), ("2088C", "3.00")],
        false,
    )
    .unwrap();
    let q = settle_query(&g, &trade_no, "SP2").unwrap();
    assert_eq!(
        states(&q["royalty_detail_list"]),
        [
            pair("2088A", "SUCCESS"),
            pair("2088X", "FAIL"),
            pair("2088C", "FAIL")
        ]
    );
    let list = &q["royalty_detail_list"];
    assert_eq!(list[1]["error_code"], "RELATION_NOT_EXIST");
    assert_eq!(list[2]["error_code"], "TRANS_IN_ACCOUNT_FROZEN");
    assert_eq!(
        g.settle_view("SP2").unwrap()["details"][1]["error_code"],
        "RELATION_NOT_EXIST"
    );
    // Failed shares stay with the merchant: 99.00 is still there to settle.
    settle(&g, &trade_no, "SP3", &[("2088A", "99.00")], false).unwrap();
}

#[test]
fn a_failed_bind_answers_with_its_code_and_binds_nothing() {
    let g = gateway();
    g.set_receiver(
        "2088F",
        ReceiverBehaviour {
            bind_fail: Some("ACQ.INVALID_PARAMETER".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sub_code(bind(&g, "2088F")), "ACQ.INVALID_PARAMETER");
    assert_eq!(bind(&g, "2088A").unwrap()["result_code"], "SUCCESS");
    assert_eq!(
        bind(&g, "2088A").unwrap()["result_code"],
        "SUCCESS",
        "idempotent"
    );
    let trade_no = paid(&g, "S3", true);
    settle(&g, &trade_no, "SP4", &[("2088F", "1.00")], false).unwrap();
    let q = settle_query(&g, &trade_no, "SP4").unwrap();
    assert_eq!(q["royalty_detail_list"][0]["state"], "FAIL");
}

#[test]
fn settles_are_refused_beyond_what_the_merchant_holds_or_may_settle() {
    let g = gateway();
    let plain = paid(&g, "S4", false);
    assert_eq!(
        sub_code(settle(&g, &plain, "SP5", &[("2088A", "1.00")], false)),
        "ACQ.TRADE_SETTLE_ERROR"
    );
    let trade_no = paid(&g, "S5", true);
    assert_eq!(
        sub_code(settle(
            &g,
            &trade_no,
            "SP6",
            &[("2088A", "60.00"), ("2088B", "40.01")],
            false
        )),
        "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR"
    );
    assert!(g.settle_view("SP6").is_none(), "nothing was kept");
    // A refund lowers what is left to settle.
    refund_with(&g, "S5", "R1", "50.00", &[]).unwrap();
    assert_eq!(
        sub_code(settle(&g, &trade_no, "SP7", &[("2088A", "50.01")], false)),
        "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR"
    );
    settle(&g, &trade_no, "SP8", &[("2088A", "10.00")], true).unwrap();
    assert_eq!(
        sub_code(settle(&g, &trade_no, "SP9", &[("2088A", "1.00")], false)),
        "ACQ.TRADE_SETTLE_ERROR",
        "royalty finished"
    );
    assert_eq!(
        sub_code(settle(&g, "2088NOPE", "SP10", &[("2088A", "1.00")], false)),
        "ACQ.TRADE_NOT_EXIST"
    );
    // An unpaid trade.
    call(
        &g,
        "alipay.trade.precreate",
        json!({ "out_trade_no": "S6", "total_amount": "1.00", "subject": "s",
        "extend_params": { "royalty_freeze": "true" } }),
    )
    .unwrap();
    g.scan("S6").unwrap();
    let unpaid = g.order_view("S6").unwrap().trade_no;
    assert_eq!(
        sub_code(settle(&g, &unpaid, "SP11", &[("2088A", "1.00")], false)),
        "ACQ.TRADE_STATUS_ERROR"
    );
    assert_eq!(
        sub_code(call(
            &g,
            "alipay.trade.order.settle",
            json!({ "out_request_no": "SP12", "trade_no": trade_no })
        )),
        "ACQ.INVALID_PARAMETER"
    );
}

#[test]
fn a_repeated_settle_is_the_same_settle() {
    let g = gateway();
    let trade_no = paid(&g, "S7", true);
    let first = settle(&g, &trade_no, "SP13", &[("2088A", "30.00")], false).unwrap();
    let again = settle(&g, &trade_no, "SP13", &[("2088A", "30.00")], false).unwrap();
    assert_eq!(first["settle_no"], again["settle_no"]);
    assert_eq!(
        sub_code(settle(&g, &trade_no, "SP13", &[("2088A", "30.01")], false)),
        "ACQ.DISCORDANT_REPEAT_REQUEST"
    );
    assert_eq!(
        g.settle_view("SP13").unwrap()["details"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Settled once: 70.00 is left, not 40.00.
    settle(&g, &trade_no, "SP14", &[("2088B", "70.00")], false).unwrap();
}

#[test]
fn refunds_take_split_money_back_from_receivers() {
    let g = gateway();
    let trade_no = paid(&g, "S8", true);
    bind(&g, "2088A").unwrap();
    bind(&g, "2088B").unwrap();
    settle(
        &g,
        &trade_no,
        "SP15",
        &[("2088A", "60.00"), ("2088B", "30.00")],
        false,
    )
    .unwrap();
    settle_query(&g, &trade_no, "SP15").unwrap();
    // The merchant holds 10.00: a bigger refund needs returns.
    assert_eq!(
        sub_code(refund_with(&g, "S8", "R1", "10.01", &[])),
        "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    );
    assert_eq!(
        sub_code(refund_with(&g, "S8", "R1", "30.00", &[("2088A", "19.99")])),
        "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    );
    assert_eq!(
        sub_code(refund_with(&g, "S8", "R1", "40.00", &[("2088B", "30.01")])),
        "ACQ.INVALID_PARAMETER",
        "more than the receiver got"
    );
    let ok = refund_with(&g, "S8", "R1", "30.00", &[("2088A", "20.00")]).unwrap();
    assert_eq!(ok["fund_change"], "Y");
    let again = refund_with(&g, "S8", "R1", "30.00", &[("2088A", "20.00")]).unwrap();
    assert_eq!(again["fund_change"], "N", "nothing moves twice");
    assert_eq!(
        sub_code(refund_with(&g, "S8", "R1", "30.00", &[("2088A", "25.00")])),
        "ACQ.DISCORDANT_REPEAT_REQUEST"
    );
    // 2088A got 60.00 and gave 20.00 back: 40.01 is more than it has left.
    assert_eq!(
        sub_code(refund_with(&g, "S8", "R2", "50.00", &[("2088A", "40.01")])),
        "ACQ.INVALID_PARAMETER"
    );
    g.set_receiver(
        "2088B",
        ReceiverBehaviour {
            return_fail: Some("ACQ.TRANS_OUT_BALANCE_NOT_ENOUGH".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        sub_code(refund_with(
            &g,
            "S8",
            "R2",
            "50.00",
            &[("2088A", "40.00"), ("2088B", "10.00")]
        )),
        "ACQ.TRANS_OUT_BALANCE_NOT_ENOUGH"
    );
    assert_eq!(
        g.order_view("S8").unwrap().refunded,
        3000,
        "the failed refund moved nothing"
    );
    let view = g.settle_view("SP15").unwrap();
    assert_eq!(
        view["returns"],
        json!([{ "out_request_no": "R1", "account": "2088A", "amount": 2000 }])
    );
    let q = call(
        &g,
        "alipay.trade.fastpay.refund.query",
        json!({ "out_trade_no": "S8", "out_request_no": "R1" }),
    )
    .unwrap();
    assert_eq!(q["refund_status"], "REFUND_SUCCESS");
    assert_eq!(q["refund_royaltys"][0]["trans_out"], "2088A");
    assert_eq!(q["refund_royaltys"][0]["refund_amount"], "20.00");
}

/// The adapter, configured as payroute is against this simulator.
fn adapter_for(g: &Gateway, app_key: crate::crypto::PrivateKey) -> crate::channels::alipay::Alipay {
    use crate::channels::alipay::{Alipay, AlipayConfig};
    Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: "2021000000000001".into(),
        gateway: "http://127.0.0.1/gateway.do".into(),
        app_private_key: std::sync::Arc::new(app_key),
        alipay_public_key: g.credentials().platform_public_key,
        notify_url: None,
        return_url: None,
        scenes: Vec::new(),
    })
}

/// Builds `op` with the adapter, has the simulator answer it (signatures checked both ways),
/// and reads the answer back.
async fn round_trip(
    g: &Gateway,
    a: &crate::channels::alipay::Alipay,
    op: crate::channels::Op<'_>,
) -> crate::channels::Outcome {
    use crate::channels::{Channel, Prepared, RawResponse};
    let Prepared::Send(req) = a.build(op, chrono::Utc::now()).unwrap() else {
        panic!("sent")
    };
    let (parts, body) = req.into_parts();
    let gw = crate::sandbox::GatewayRequest {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    };
    let resp = g.handle(&gw, false);
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    a.parse(
        op,
        &RawResponse {
            status,
            headers: http::HeaderMap::new(),
            body,
        },
    )
}

#[tokio::test]
async fn the_adapter_and_the_simulator_agree_on_royalty() {
    use crate::channels::{
        ChannelSplitState, Op, Outcome, ReceiverIntent, RefundIntent, RefundReturn, ShareIntent,
        ShareState, SplitIntent,
    };
    use crate::domain::ReceiverType;
    use crate::money::Fen;
    let (channel, app_key) = test_channel("alipay");
    let g = Gateway::new(&channel);
    let a = adapter_for(&g, app_key);
    let trade_no = paid(&g, "RT1", true);
    let receiver = ReceiverIntent {
        receiver_type: ReceiverType::User,
        account: "2088A".into(),
        name: None,
        relation: None,
        request_no: "BIND-2088A".into(),
    };
    let bind = Op::BindReceiver {
        out_trade_no: "RT1",
        receiver: &receiver,
    };
    assert_eq!(round_trip(&g, &a, bind).await, Outcome::Bound);

    let share = |account: &str, fen| ShareIntent {
        receiver_type: ReceiverType::User,
        account: account.into(),
        name: None,
        amount: Fen(fen),
        description: "fee".into(),
    };
    let mut split = SplitIntent {
        out_trade_no: "RT1".into(),
        channel_trade_no: Some(trade_no.clone()),
        out_split_no: "RT-SP1".into(),
        channel_split_no: None,
        shares: vec![share("2088A", 6000), share("2088Z", 1000)],
        finish: false,
        total: Fen(10_000),
    };
    let Outcome::Split(accepted) = round_trip(&g, &a, Op::Split(&split)).await else {
        panic!("accepted")
    };
    assert_eq!(accepted.state, ChannelSplitState::Processing);
    assert!(accepted.channel_split_no.is_some());
    split.channel_split_no = accepted.channel_split_no.clone();
    let Outcome::Split(done) = round_trip(&g, &a, Op::SplitQuery(&split)).await else {
        panic!("queried")
    };
    assert_eq!(done.state, ChannelSplitState::Finished);
    let got: Vec<_> = done
        .shares
        .iter()
        .map(|s| (s.account.as_str(), s.amount, s.state))
        .collect();
    assert_eq!(
        got,
        [
            ("2088A", Fen(6000), ShareState::Succeeded),
            ("2088Z", Fen(1000), ShareState::Failed)
        ]
    );
    // A repeat reads the same settle; over-splitting is declined.
    let Outcome::Split(again) = round_trip(&g, &a, Op::Split(&split)).await else {
        panic!("repeat")
    };
    assert_eq!(again.channel_split_no, accepted.channel_split_no);
    let over = SplitIntent {
        out_split_no: "RT-SP2".into(),
        shares: vec![share("2088A", 4001)],
        ..split.clone()
    };
    assert!(matches!(
        round_trip(&g, &a, Op::Split(&over)).await,
        Outcome::Declined { code, .. } if code == "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR"
    ));
    let missing = SplitIntent {
        out_split_no: "RT-NONE".into(),
        ..split.clone()
    };
    assert!(matches!(
        round_trip(&g, &a, Op::SplitQuery(&missing)).await,
        Outcome::Split(r) if r.state == ChannelSplitState::NotFound
    ));

    // The merchant holds 40.00 (the failed share came back): a 50.00 refund needs a return.
    let mut refund = RefundIntent {
        out_trade_no: "RT1".into(),
        channel_trade_no: None,
        channel_refund_no: None,
        out_refund_no: "RT-R1".into(),
        amount: Fen(5000),
        total: Fen(10_000),
        reason: None,
        returns: Vec::new(),
    };
    assert!(matches!(
        round_trip(&g, &a, Op::Refund(&refund)).await,
        Outcome::Declined { code, .. } if code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    ));
    refund.returns.push(RefundReturn {
        out_return_no: "RT-B1".into(),
        receiver_type: ReceiverType::User,
        account: "2088A".into(),
        amount: Fen(1000),
    });
    assert!(matches!(
        round_trip(&g, &a, Op::Refund(&refund)).await,
        Outcome::Refund(r) if r.state == crate::channels::ChannelRefundState::Succeeded
    ));
    assert!(matches!(
        round_trip(&g, &a, Op::RefundQuery(&refund)).await,
        Outcome::Refund(r) if r.state == crate::channels::ChannelRefundState::Succeeded
    ));
    let view = g.settle_view("RT-SP1").unwrap();
    assert_eq!(
        view["returns"],
        json!([{ "out_request_no": "RT-R1", "account": "2088A", "amount": 1000 }])
    );
}

#[test]
fn a_settled_trade_cannot_be_cancelled() {
    let g = gateway();
    let trade_no = paid(&g, "S9", true);
    settle(&g, &trade_no, "SP16", &[("2088A", "1.00")], false).unwrap();
    assert_eq!(
        sub_code(call(
            &g,
            "alipay.trade.cancel",
            json!({ "out_trade_no": "S9" })
        )),
        "ACQ.CANCEL_NOT_ALLOWED"
    );
    assert_eq!(g.order_view("S9").unwrap().refunded, 0);
}
