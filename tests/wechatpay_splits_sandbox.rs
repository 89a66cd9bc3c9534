//! WeChat Pay profit sharing over the wire: payroute's configured adapter and client against
//! the sandbox's simulator (real Authorization checks, signed answers), and the sandbox
//! control's receiver behaviours and split view.

mod common;

use common::{order_no, Harness};
use payroute::channels::{
    ChannelReturnState, ChannelSplitState, Op, Outcome, Prepared, ReceiverIntent, ShareIntent,
    ShareState, SplitIntent, SplitReturnIntent,
};
use payroute::domain::ReceiverType;
use payroute::money::Fen;
use serde_json::json;

/// `op` through the configured WeChat Pay adapter and client.
async fn call(h: &Harness, op: Op<'_>) -> Outcome {
    let snapshot = h.run.payments.snapshot();
    let entry = snapshot.channel("wechatpay").expect("sample has wechatpay");
    let Prepared::Send(req) = entry.adapter.build(op, chrono::Utc::now()).unwrap() else {
        panic!("profit sharing is sent");
    };
    let resp = entry.client.send(req).await.expect("simulator answers");
    entry.adapter.parse(op, &resp)
}

fn receiver(kind: ReceiverType, account: &str, name: Option<&str>) -> ReceiverIntent {
    ReceiverIntent {
        receiver_type: kind,
        account: account.into(),
        name: name.map(Into::into),
        relation: None,
        request_no: format!("B-{account}"),
    }
}

fn share(kind: ReceiverType, account: &str, amount: u64) -> ShareIntent {
    ShareIntent {
        receiver_type: kind,
        account: account.into(),
        name: None,
        amount: Fen(amount),
        description: "分账".into(),
    }
}

#[tokio::test]
async fn a_split_payment_is_shared_queried_and_returned_at_the_simulator() {
    let h = Harness::start().await;
    let no = order_no("WS");
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(
                json!({"out_trade_no": no, "amount": 1000, "currency": "CNY",
                        "method": "wechat", "scene": "qr", "subject": "split", "split": true}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], "wechatpay", "{}", r.text);
    assert_eq!(h.pay("wechatpay", &no).await.status, 200);
    let tid = h.at_channel("wechatpay", &no).await.json["transaction_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The control: a receiver whose shares fail, and one that cannot be added.
    let put = |account: &'static str, body| {
        let h = &h;
        async move {
            h.admin(
                "PUT",
                &format!("/sandbox/wechatpay/receivers/{account}"),
                Some(body),
            )
            .await
        }
    };
    assert_eq!(
        put("o-risky", json!({"share_fail": "RECEIVER_HIGH_RISK"}))
            .await
            .status,
        204
    );
    assert_eq!(
        put("o-refused", json!({"bind_fail": "INVALID_REQUEST"}))
            .await
            .status,
        204
    );
    assert_eq!(put("o-x", json!({"fail": "x"})).await.status, 400);

    // Receivers are added; a merchant with its name encrypted to the platform key.
    for rcv in [
        receiver(ReceiverType::Merchant, "1900000109", Some("示例商户全称")),
        receiver(ReceiverType::Openid, "o-risky", None),
    ] {
        let op = Op::BindReceiver {
            out_trade_no: &no,
            receiver: &rcv,
        };
        assert_eq!(call(&h, op).await, Outcome::Bound, "{}", rcv.account);
    }
    let refused = receiver(ReceiverType::Openid, "o-refused", None);
    let op = Op::BindReceiver {
        out_trade_no: &no,
        receiver: &refused,
    };
    assert!(matches!(call(&h, op).await,
        Outcome::Declined { code, .. } if code == "INVALID_REQUEST"));

    let split = SplitIntent {
        out_trade_no: no.clone(),
        channel_trade_no: Some(tid.clone()),
        out_split_no: format!("{no}-S1"),
        channel_split_no: None,
        shares: vec![
            share(ReceiverType::Merchant, "1900000109", 500),
            share(ReceiverType::Openid, "o-risky", 100),
        ],
        finish: false,
        total: Fen(1000),
    };
    let Outcome::Split(made) = call(&h, Op::Split(&split)).await else {
        panic!("split")
    };
    assert_eq!(made.state, ChannelSplitState::Processing);
    // A repeat is the same order, shared once.
    let Outcome::Split(again) = call(&h, Op::Split(&split)).await else {
        panic!("repeat")
    };
    assert_eq!(again.channel_split_no, made.channel_split_no);
    let Outcome::Split(settled) = call(&h, Op::SplitQuery(&split)).await else {
        panic!("query")
    };
    assert_eq!(settled.state, ChannelSplitState::Finished);
    let results: Vec<_> = settled
        .shares
        .iter()
        .map(|s| (s.account.as_str(), s.state, s.fail_reason.as_deref()))
        .collect();
    assert_eq!(
        results,
        [
            ("1900000109", ShareState::Succeeded, None),
            ("o-risky", ShareState::Failed, Some("RECEIVER_HIGH_RISK")),
        ]
    );

    // Over-split: 1000 paid, 500 shared (the closed 100 stayed).
    let mut over = split.clone();
    over.out_split_no = format!("{no}-S2");
    over.shares = vec![share(ReceiverType::Merchant, "1900000109", 501)];
    assert!(matches!(call(&h, Op::Split(&over)).await,
        Outcome::Declined { code, .. } if code == "NOT_ENOUGH"));

    let ret = SplitReturnIntent {
        out_trade_no: no.clone(),
        channel_trade_no: Some(tid.clone()),
        out_split_no: split.out_split_no.clone(),
        channel_split_no: made.channel_split_no.clone(),
        out_return_no: format!("{no}-R1"),
        receiver_type: ReceiverType::Merchant,
        account: "1900000109".into(),
        amount: Fen(200),
        description: "退款".into(),
    };
    let Outcome::SplitReturn(r) = call(&h, Op::SplitReturn(&ret)).await else {
        panic!("return")
    };
    assert_eq!(r.state, ChannelReturnState::Processing);
    let Outcome::SplitReturn(r) = call(&h, Op::SplitReturnQuery(&ret)).await else {
        panic!("return query")
    };
    assert_eq!(r.state, ChannelReturnState::Succeeded);
    let mut over_return = ret.clone();
    over_return.out_return_no = format!("{no}-R2");
    over_return.amount = Fen(301);
    assert!(matches!(call(&h, Op::SplitReturn(&over_return)).await,
        Outcome::Declined { code, .. } if code == "INVALID_REQUEST"));

    // The control's view proves what moved, once.
    let view = h
        .admin(
            "GET",
            &format!("/sandbox/wechatpay/splits/{}", split.out_split_no),
            None,
        )
        .await;
    assert_eq!(view.status, 200, "{}", view.text);
    assert_eq!(view.json["state"], "FINISHED");
    assert_eq!(
        view.json["receivers"],
        json!([
            {"type": "MERCHANT_ID", "account": "1900000109", "amount": 500, "result": "SUCCESS", "fail_reason": null},
            {"type": "PERSONAL_OPENID", "account": "o-risky", "amount": 100, "result": "CLOSED", "fail_reason": "RECEIVER_HIGH_RISK"},
        ])
    );
    assert_eq!(
        view.json["returns"],
        json!([{"out_return_no": ret.out_return_no, "account": "1900000109", "amount": 200,
                "result": "SUCCESS", "fail_reason": null}])
    );
    assert_eq!(view.json["order"]["held"], 700);
    let missing = h
        .admin("GET", "/sandbox/wechatpay/splits/NO-SUCH-SPLIT", None)
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        h.calls_at("wechatpay", "POST /v3/profitsharing/orders")
            .await,
        3
    );
    assert_eq!(
        h.calls_at("wechatpay", "GET /v3/profitsharing/orders/{}")
            .await,
        1
    );
    assert_eq!(
        h.calls_at("wechatpay", "POST /v3/profitsharing/receivers/add")
            .await,
        3
    );
}
