//! Profit sharing end to end, on each channel that splits, against its simulator (real
//! signatures both ways): pay → split to two receivers → query → return → refund, and every
//! refusal on the way (over-split, over-return, split before payment, split of a payment not
//! made for splits, repeats with the same and with other content, receiver failures).

mod common;

use common::{order_no, Harness};
use serde_json::{json, Value};

/// What differs between the channels that split.
struct Splitter {
    channel: &'static str,
    method: &'static str,
    receiver_type: &'static str,
    accounts: [&'static str; 3],
    /// Whether a return is a call of its own (WeChat Pay) or rides on a refund (Alipay).
    own_returns: bool,
}

const SPLITTERS: [Splitter; 2] = [
    Splitter {
        channel: "wechatpay",
        method: "wechat",
        receiver_type: "merchant",
        accounts: ["1900000201", "1900000202", "1900000203"],
        own_returns: true,
    },
    Splitter {
        channel: "alipay",
        method: "alipay",
        receiver_type: "user",
        accounts: ["2088000000000201", "2088000000000202", "2088000000000203"],
        own_returns: false,
    },
];

impl Splitter {
    fn receiver(&self, account: &str, amount: u64) -> Value {
        json!({"type": self.receiver_type, "account": account, "amount": amount,
               "description": "share", "name": "Test Receiver Co"})
    }
}

/// Creates a 100-yuan split payment at `s`'s channel and has the customer pay it.
async fn paid_split_payment(h: &Harness, s: &Splitter, split: bool) -> String {
    let no = order_no("SP");
    let body = json!({"out_trade_no": no, "amount": 10_000, "currency": "CNY",
                      "method": s.method, "scene": "qr", "subject": "split e2e", "split": split});
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(r.status, 201, "{}: {}", s.channel, r.text);
    assert_eq!(r.json["channel"], s.channel, "{}", r.text);
    let paid = h.pay(s.channel, &no).await;
    assert_eq!(paid.status, 200, "{}: {}", s.channel, paid.text);
    h.wait_status(&no, "succeeded").await;
    no
}

async fn split(h: &Harness, no: &str, body: Value) -> common::Reply {
    h.api("POST", &format!("/v1/payments/{no}/splits"), Some(body))
        .await
}

#[tokio::test]
async fn pay_split_query_return_and_refund_on_each_channel() {
    let h = Harness::start().await;
    for s in &SPLITTERS {
        let ch = s.channel;
        let [a, b, _] = s.accounts;
        let no = paid_split_payment(&h, s, true).await;
        let sp = order_no("S1_");
        let body =
            json!({"out_split_no": sp, "receivers": [s.receiver(a, 3000), s.receiver(b, 2000)]});
        let r = split(&h, &no, body.clone()).await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        assert_eq!(r.json["amount"], 5000, "{ch}: {}", r.text);
        assert_eq!(r.json["channel"], ch);
        // Asynchronous at the channel; the query settles it.
        let q = h.api("GET", &format!("/v1/splits/{sp}"), None).await;
        assert_eq!(q.status, 200, "{ch}: {}", q.text);
        assert_eq!(q.json["status"], "succeeded", "{ch}: {}", q.text);
        let statuses: Vec<&Value> = q.json["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["status"])
            .collect();
        assert_eq!(statuses, [&json!("succeeded"), &json!("succeeded")], "{ch}");
        // The same request again answers the same split; other content under the number is refused.
        let again = split(&h, &no, body).await;
        assert_eq!(again.status, 201, "{ch}: {}", again.text);
        assert_eq!(again.json["status"], "succeeded");
        let other = split(
            &h,
            &no,
            json!({"out_split_no": sp, "receivers": [s.receiver(a, 1)]}),
        )
        .await;
        assert_eq!(
            (other.status, &other.json["code"]),
            (409, &json!("idempotency_conflict")),
            "{ch}: {}",
            other.text
        );
        let at = h
            .admin("GET", &format!("/sandbox/{ch}/splits/{sp}"), None)
            .await;
        assert_eq!(at.status, 200, "{ch}: {}", at.text);

        // 5,000 of 10,000 went to receivers: a split of 5,001 is refused, the payment says why.
        let over = split(
            &h,
            &no,
            json!({"out_split_no": order_no("S2_"), "receivers": [s.receiver(a, 5001)]}),
        )
        .await;
        assert_eq!(
            (over.status, &over.json["code"]),
            (422, &json!("split_exceeds_held")),
            "{ch}: {}",
            over.text
        );
        let p = h.payment(&no).await;
        assert_eq!(
            p["splits"],
            json!({"split_amount": 5000, "returned_amount": 0, "held_amount": 5000, "finished": false}),
            "{ch}"
        );

        // A refund larger than what the merchant holds needs the receivers' money first.
        let refund = |no_: &str, amount: u64, returns: Option<Value>| {
            let mut body = json!({"out_refund_no": no_, "amount": amount});
            if let Some(r) = returns {
                body["split_returns"] = r;
            }
            body
        };
        let rf = order_no("RF");
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(refund(&rf, 6000, None)),
            )
            .await;
        assert_eq!(
            (r.status, &r.json["code"]),
            (422, &json!("refund_exceeds_held")),
            "{ch}: {}",
            r.text
        );

        if s.own_returns {
            let ret = order_no("RT");
            let path = format!("/v1/splits/{sp}/returns");
            let over = h
                .api(
                    "POST",
                    &path,
                    Some(json!({"out_return_no": ret, "account": a, "amount": 3001})),
                )
                .await;
            assert_eq!(
                (over.status, &over.json["code"]),
                (422, &json!("return_exceeds_split")),
                "{ch}: {}",
                over.text
            );
            let r = h
                .api(
                    "POST",
                    &path,
                    Some(json!({"out_return_no": ret, "account": a, "amount": 1000})),
                )
                .await;
            assert_eq!(r.status, 201, "{ch}: {}", r.text);
            let q = h
                .api("GET", &format!("/v1/split-returns/{ret}"), None)
                .await;
            assert_eq!(q.json["status"], "succeeded", "{ch}: {}", q.text);
            // Named returns fund the refund.
            let r = h
                .api(
                    "POST",
                    &format!("/v1/payments/{no}/refunds"),
                    Some(refund(&rf, 6000, Some(json!([ret])))),
                )
                .await;
            assert_eq!(r.status, 201, "{ch}: {}", r.text);
            assert_eq!(r.json["status"], "succeeded", "{ch}: {}", r.text);
            assert_eq!(r.json["split_returns"], json!([ret]));
        } else {
            let r = h
                .api(
                    "POST",
                    &format!("/v1/splits/{sp}/returns"),
                    Some(json!({"out_return_no": order_no("RT"), "account": a, "amount": 1000})),
                )
                .await;
            assert_eq!(
                (r.status, &r.json["code"]),
                (422, &json!("operation_unsupported")),
                "{ch}: {}",
                r.text
            );
            let r = h
                .api(
                    "POST",
                    &format!("/v1/payments/{no}/refunds"),
                    Some(refund(&rf, 6000, Some(json!("auto")))),
                )
                .await;
            assert_eq!(r.status, 201, "{ch}: {}", r.text);
            assert_eq!(r.json["status"], "succeeded", "{ch}: {}", r.text);
        }
        // Then payroute returns what the next refund needs by itself.
        let rf2 = order_no("RF");
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(refund(&rf2, 2500, Some(json!("auto")))),
            )
            .await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        assert_eq!(r.json["status"], "succeeded", "{ch}: {}", r.text);
        let funded = r.json["split_returns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!funded.is_empty(), "{ch}: {}", r.text);
        for ret in &funded {
            let q = h
                .api(
                    "GET",
                    &format!("/v1/split-returns/{}", ret.as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(q.json["status"], "succeeded", "{ch}: {}", q.text);
            assert_eq!(q.json["out_refund_no"], json!(rf2), "{ch}");
        }
        let p = h.payment(&no).await;
        assert_eq!(p["refunded_amount"], 8500, "{ch}: {p}");
        assert_eq!(p["status"], "partially_refunded", "{ch}");
        // 5,000 split, 3,500 back: 1,500 still with the receivers, nothing held.
        assert_eq!(p["splits"]["returned_amount"], 3500, "{ch}: {p}");
        assert_eq!(p["splits"]["held_amount"], 0, "{ch}: {p}");
        // The simulator agrees: one split, returns of 3,500 in all.
        let at = h
            .admin("GET", &format!("/sandbox/{ch}/splits/{sp}"), None)
            .await;
        let returned: u64 = at.json["returns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["amount"].as_u64().unwrap())
            .sum();
        assert_eq!(returned, 3500, "{ch}: {}", at.text);
        // Repeating the refunds sends nothing more.
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(refund(&rf2, 2500, Some(json!("auto")))),
            )
            .await;
        assert_eq!(
            (r.status, &r.json["status"]),
            (201, &json!("succeeded")),
            "{ch}: {}",
            r.text
        );
        let at = h
            .admin("GET", &format!("/sandbox/{ch}/splits/{sp}"), None)
            .await;
        let again: u64 = at.json["returns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["amount"].as_u64().unwrap())
            .sum();
        assert_eq!(again, 3500, "{ch}");
        // Nothing left to refund: the receivers' remaining 1,500 come back first.
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(refund(&order_no("RF"), 1501, Some(json!("auto")))),
            )
            .await;
        assert_eq!(
            (r.status, &r.json["code"]),
            (422, &json!("refund_exceeds_held")),
            "{ch}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn splits_need_a_paid_split_payment() {
    let h = Harness::start().await;
    for s in &SPLITTERS {
        let ch = s.channel;
        let body =
            |sp: &str| json!({"out_split_no": sp, "receivers": [s.receiver(s.accounts[0], 100)]});
        // Not paid yet.
        let no = order_no("UP");
        let create = json!({"out_trade_no": no, "amount": 10_000, "currency": "CNY",
                            "method": s.method, "scene": "qr", "subject": "s", "split": true});
        assert_eq!(
            h.api("POST", "/v1/payments", Some(create)).await.status,
            201
        );
        let r = split(&h, &no, body(&order_no("SU_"))).await;
        assert_eq!(
            (r.status, &r.json["code"]),
            (409, &json!("split_not_allowed")),
            "{ch}: {}",
            r.text
        );
        // Paid, but not created for splits.
        let plain = paid_split_payment(&h, s, false).await;
        let r = split(&h, &plain, body(&order_no("SN_"))).await;
        assert_eq!(
            (r.status, &r.json["code"]),
            (409, &json!("split_not_allowed")),
            "{ch}: {}",
            r.text
        );
        assert!(
            r.json["detail"]
                .as_str()
                .unwrap()
                .contains("\"split\": true"),
            "{}",
            r.text
        );
        // No such payment.
        let r = split(&h, "NOSUCH0RDER1", body(&order_no("SX_"))).await;
        assert_eq!(r.status, 404, "{ch}: {}", r.text);
        // A receiver type of the other channel.
        let no = paid_split_payment(&h, s, true).await;
        let other = if s.receiver_type == "user" {
            "merchant"
        } else {
            "user"
        };
        let r = split(&h, &no, json!({"out_split_no": order_no("ST_"), "receivers": [
            {"type": other, "account": "X1234567", "amount": 100, "description": "d", "name": "N"}]})).await;
        assert_eq!(
            (r.status, &r.json["code"]),
            (422, &json!("invalid_field")),
            "{ch}: {}",
            r.text
        );
        // Bad requests name the field.
        for (bad, field) in [
            (
                json!({"out_split_no": "x", "receivers": [s.receiver("A1234567", 1)]}),
                "out_split_no",
            ),
            (json!({"out_split_no": order_no("SB_")}), "receivers"),
            (
                json!({"out_split_no": order_no("SB_"), "receivers": [s.receiver("A1234567", 0)]}),
                "receivers[0].amount",
            ),
            (
                json!({"out_split_no": order_no("SB_"), "receivers": [s.receiver("A1234567", 1), s.receiver("A1234567", 2)]}),
                "receivers[1].account",
            ),
            (
                json!({"out_split_no": order_no("SB_"), "receivers": [s.receiver("A1234567", 1)], "extra": 1}),
                "extra",
            ),
        ] {
            let r = split(&h, &no, bad).await;
            assert_eq!(r.status, 400, "{ch} {field}: {}", r.text);
            assert_eq!(r.json["field"], field, "{ch}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn a_failed_share_gives_its_money_back_and_finish_ends_splitting() {
    let h = Harness::start().await;
    for s in &SPLITTERS {
        let ch = s.channel;
        let [a, _, c] = s.accounts;
        let r = h
            .admin(
                "PUT",
                &format!("/sandbox/{ch}/receivers/{c}"),
                Some(json!({"share_fail": "RECEIVER_HIGH_RISK"})),
            )
            .await;
        assert_eq!(r.status, 204, "{ch}: {}", r.text);
        let no = paid_split_payment(&h, s, true).await;
        let sp = order_no("SF_");
        let r = split(
            &h,
            &no,
            json!({"out_split_no": sp, "finish": true,
            "receivers": [s.receiver(a, 1000), s.receiver(c, 2000)]}),
        )
        .await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        let q = h.api("GET", &format!("/v1/splits/{sp}"), None).await;
        assert_eq!(q.json["status"], "succeeded", "{ch}: {}", q.text);
        assert_eq!(
            q.json["receivers"][1]["status"], "failed",
            "{ch}: {}",
            q.text
        );
        assert_eq!(
            q.json["receivers"][1]["fail_reason"], "RECEIVER_HIGH_RISK",
            "{ch}: {}",
            q.text
        );
        let p = h.payment(&no).await;
        assert_eq!(p["splits"]["held_amount"], 9000, "{ch}: {p}");
        assert_eq!(p["splits"]["finished"], true, "{ch}: {p}");
        let r = split(
            &h,
            &no,
            json!({"out_split_no": order_no("SG_"), "receivers": [s.receiver(a, 1)]}),
        )
        .await;
        assert_eq!(
            (r.status, &r.json["code"]),
            (409, &json!("split_not_allowed")),
            "{ch}: {}",
            r.text
        );
        // The whole 9,000 held can be refunded.
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(json!({"out_refund_no": order_no("RF"), "amount": 9000})),
            )
            .await;
        assert_eq!(
            (r.status, &r.json["status"]),
            (201, &json!("succeeded")),
            "{ch}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn a_receiver_the_channel_will_not_register_fails_the_split_and_nothing_is_shared() {
    let h = Harness::start().await;
    for s in &SPLITTERS {
        let ch = s.channel;
        let bad = "2088000000000999";
        let bad = if s.receiver_type == "merchant" {
            "1900000999"
        } else {
            bad
        };
        // A definite refusal in each channel's words (an unfamiliar code would read as unknown).
        let code = if ch == "alipay" {
            "ACQ.INVALID_PARAMETER"
        } else {
            "INVALID_REQUEST"
        };
        let r = h
            .admin(
                "PUT",
                &format!("/sandbox/{ch}/receivers/{bad}"),
                Some(json!({"bind_fail": code})),
            )
            .await;
        assert_eq!(r.status, 204, "{ch}: {}", r.text);
        let no = paid_split_payment(&h, s, true).await;
        let sp = order_no("SR_");
        let r = split(
            &h,
            &no,
            json!({"out_split_no": sp, "receivers": [s.receiver(bad, 1000)]}),
        )
        .await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        assert_eq!(r.json["status"], "failed", "{ch}: {}", r.text);
        assert!(
            r.json["failure"]["message"].as_str().unwrap().contains(bad),
            "{ch}: {}",
            r.text
        );
        let p = h.payment(&no).await;
        assert_eq!(p["splits"]["held_amount"], 10_000, "{ch}: {p}");
        let at = h
            .admin("GET", &format!("/sandbox/{ch}/splits/{sp}"), None)
            .await;
        assert_eq!(
            at.status, 404,
            "{ch}: nothing reached the channel: {}",
            at.text
        );
    }
}

#[tokio::test]
async fn a_pingpp_payment_cannot_be_split() {
    let h = Harness::start().await;
    let no = order_no("PP");
    let body = json!({"out_trade_no": no, "amount": 500, "currency": "CNY", "method": "alipay",
                      "scene": "qr", "subject": "small"});
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(r.json["channel"], "pingpp", "{}", r.text);
    assert_eq!(h.pay("pingpp", &no).await.status, 200);
    h.wait_status(&no, "succeeded").await;
    let r = split(
        &h,
        &no,
        json!({"out_split_no": order_no("SP_"), "receivers": [
        {"type": "user", "account": "2088000000000201", "amount": 100, "description": "d"}]}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json["code"]),
        (422, &json!("operation_unsupported")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_receiver_that_does_not_give_back_fails_the_refund_and_keeps_every_total() {
    let h = Harness::start().await;
    for s in &SPLITTERS {
        let ch = s.channel;
        let [_, _, c] = s.accounts;
        // A receiver of its own for this test (the other tests make c's shares fail).
        let c = &format!("{}7", &c[..c.len() - 1]);
        let code = if ch == "alipay" {
            "ACQ.INVALID_PARAMETER"
        } else {
            "BALANCE_NOT_ENOUGH"
        };
        let no = paid_split_payment(&h, s, true).await;
        let sp = order_no("SB_");
        let r = split(
            &h,
            &no,
            json!({"out_split_no": sp, "receivers": [s.receiver(c, 8000)]}),
        )
        .await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        let q = h.api("GET", &format!("/v1/splits/{sp}"), None).await;
        assert_eq!(q.json["status"], "succeeded", "{ch}: {}", q.text);
        let r = h
            .admin(
                "PUT",
                &format!("/sandbox/{ch}/receivers/{c}"),
                Some(json!({"return_fail": code})),
            )
            .await;
        assert_eq!(r.status, 204, "{ch}: {}", r.text);
        let rf = order_no("RF");
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(json!({"out_refund_no": rf, "amount": 5000, "split_returns": "auto"})),
            )
            .await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        assert_eq!(r.json["status"], "failed", "{ch}: {}", r.text);
        let ret = r.json["split_returns"][0].as_str().unwrap().to_string();
        let q = h
            .api("GET", &format!("/v1/split-returns/{ret}"), None)
            .await;
        assert_eq!(q.json["status"], "failed", "{ch}: {}", q.text);
        // Nothing moved: the receiver keeps its 8,000, the merchant holds 2,000, nothing refunded.
        let p = h.payment(&no).await;
        assert_eq!(p["refunded_amount"], 0, "{ch}: {p}");
        assert_eq!(p["splits"]["held_amount"], 2000, "{ch}: {p}");
        assert_eq!(p["splits"]["returned_amount"], 0, "{ch}: {p}");
        let q = h.api("GET", &format!("/v1/splits/{sp}"), None).await;
        assert_eq!(
            q.json["receivers"][0]["returned_amount"], 0,
            "{ch}: {}",
            q.text
        );
        // The refund of what is held still goes through.
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(json!({"out_refund_no": order_no("RF"), "amount": 2000})),
            )
            .await;
        assert_eq!(
            (r.status, &r.json["status"]),
            (201, &json!("succeeded")),
            "{ch}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn settled_splits_and_returns_are_events() {
    let h = Harness::start().await;
    let s = &SPLITTERS[0];
    let no = paid_split_payment(&h, s, true).await;
    let sp = order_no("SE_");
    let r = split(
        &h,
        &no,
        json!({"out_split_no": sp, "receivers": [s.receiver(s.accounts[0], 1000)]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    h.api("GET", &format!("/v1/splits/{sp}"), None).await;
    let ret = order_no("RT");
    let r = h
        .api(
            "POST",
            &format!("/v1/splits/{sp}/returns"),
            Some(json!({"out_return_no": ret, "account": s.accounts[0], "amount": 400})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    h.api("GET", &format!("/v1/split-returns/{ret}"), None)
        .await;
    let feed = h.api("GET", "/v1/events?limit=100", None).await;
    assert_eq!(feed.status, 200, "{}", feed.text);
    let events: Vec<&Value> = feed.json["events"]
        .as_array()
        .or_else(|| feed.json["data"].as_array())
        .unwrap()
        .iter()
        .filter(|e| e["data"]["out_trade_no"] == json!(no))
        .collect();
    let of = |t: &str| events.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();
    let split_done = of("split.succeeded");
    assert_eq!(split_done.len(), 1, "{}", feed.text);
    assert_eq!(split_done[0]["data"]["out_split_no"], json!(sp));
    assert_eq!(split_done[0]["data"]["receivers"][0]["status"], "succeeded");
    let back = of("split_return.succeeded");
    assert_eq!(back.len(), 1, "{}", feed.text);
    assert_eq!(back[0]["data"]["amount"], 400);

    let metrics = h.admin("GET", "/metrics", None).await;
    for line in [
        "payroute_splits_total{channel=\"wechatpay\",result=\"succeeded\"} 1",
        "payroute_split_amount_fen_total{channel=\"wechatpay\"} 1000",
        "payroute_split_returns_total{channel=\"wechatpay\",result=\"succeeded\"} 1",
    ] {
        assert!(metrics.text.contains(line), "{line} in\n{}", metrics.text);
    }
}

#[tokio::test]
async fn finishing_without_a_share_settles_the_rest_where_the_channel_can() {
    let h = Harness::start().await;
    for s in &SPLITTERS {
        let ch = s.channel;
        let no = paid_split_payment(&h, s, true).await;
        let sp = order_no("SZ_");
        let r = split(&h, &no, json!({"out_split_no": sp, "finish": true})).await;
        if ch == "wechatpay" {
            assert_eq!(r.status, 201, "{ch}: {}", r.text);
            let q = h.api("GET", &format!("/v1/splits/{sp}"), None).await;
            assert_eq!(q.json["status"], "succeeded", "{ch}: {}", q.text);
            assert_eq!(q.json["amount"], 0, "{ch}: {}", q.text);
            let p = h.payment(&no).await;
            assert_eq!(p["splits"]["finished"], true, "{ch}: {p}");
            assert_eq!(p["splits"]["held_amount"], 10_000, "{ch}: {p}");
        } else {
            assert_eq!(
                (r.status, &r.json["code"]),
                (422, &json!("operation_unsupported")),
                "{ch}: {}",
                r.text
            );
            assert_eq!(h.payment(&no).await["splits"]["finished"], false);
        }
    }
}

#[tokio::test]
async fn a_split_without_an_answer_stays_pending_and_a_query_settles_it_without_sending_it_again() {
    let h = Harness::start().await;
    for s in &SPLITTERS {
        let ch = s.channel;
        let [a, b, _] = s.accounts;
        let no = paid_split_payment(&h, s, true).await;
        // Register the receivers first, so that the next call is the split itself.
        let r = split(&h, &no, json!({"out_split_no": order_no("SW_"), "receivers": [s.receiver(a, 100), s.receiver(b, 100)]})).await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        let label = if ch == "alipay" {
            "alipay.trade.order.settle"
        } else {
            "POST /v3/profitsharing/orders"
        };
        let sent = h.calls_at(ch, label).await;
        h.fault(ch, json!({"kind": "timeout"})).await;
        let sp = order_no("SX_");
        let body =
            json!({"out_split_no": sp, "receivers": [s.receiver(a, 1000), s.receiver(b, 500)]});
        let r = split(&h, &no, body.clone()).await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        assert_eq!(r.json["status"], "pending", "{ch}: {}", r.text);
        // Pending shares count: nothing else may take them meanwhile.
        assert_eq!(
            h.payment(&no).await["splits"]["held_amount"],
            10_000 - 1700,
            "{ch}"
        );
        h.clear_faults(ch).await;
        let r = split(&h, &no, body).await;
        assert_eq!(
            (r.status, &r.json["status"]),
            (201, &json!("succeeded")),
            "{ch}: {}",
            r.text
        );
        assert_eq!(
            h.calls_at(ch, label).await,
            sent + 1,
            "{ch}: the split was sent once"
        );
    }
}

#[tokio::test]
async fn a_refund_waiting_for_a_return_goes_through_without_the_app_asking() {
    let h = Harness::start().await;
    let s = &SPLITTERS[0];
    let ch = s.channel;
    let no = paid_split_payment(&h, s, true).await;
    let sp = order_no("SW_");
    let r = split(
        &h,
        &no,
        json!({"out_split_no": sp, "receivers": [s.receiver(s.accounts[0], 6000)]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    h.api("GET", &format!("/v1/splits/{sp}"), None).await;
    // The return reaches WeChat Pay, its answer never comes back.
    h.fault(ch, json!({"kind": "timeout"})).await;
    let rf = order_no("RW");
    let r = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(json!({"out_refund_no": rf, "amount": 7000, "split_returns": "auto"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "pending", "{}", r.text);
    h.clear_faults(ch).await;
    // Nobody asks: payroute follows the return, then sends the refund.
    h.wait_for(&no, "refunded", |p| p["refunded_amount"] == 7000)
        .await;
    assert_eq!(
        h.calls_at(ch, "POST /v3/profitsharing/return-orders").await,
        1,
        "the return was sent once"
    );
    assert_eq!(
        h.calls_at(ch, "POST /v3/refund/domestic/refunds").await,
        1,
        "the refund was sent once"
    );
    let q = h.api("GET", &format!("/v1/refunds/{rf}"), None).await;
    assert_eq!(q.json["status"], "succeeded", "{}", q.text);
}

#[tokio::test]
async fn an_automatic_return_number_taken_by_the_app_is_a_conflict() {
    let h = Harness::start().await;
    let s = &SPLITTERS[0];
    let no = paid_split_payment(&h, s, true).await;
    let sp = order_no("SC_");
    let r = split(
        &h,
        &no,
        json!({"out_split_no": sp, "receivers": [s.receiver(s.accounts[0], 6000)]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    h.api("GET", &format!("/v1/splits/{sp}"), None).await;
    let rf = order_no("RC");
    // The app's own return takes the number payroute would give the refund's first return.
    let taken = format!("{rf}_R1");
    let r = h
        .api(
            "POST",
            &format!("/v1/splits/{sp}/returns"),
            Some(json!({"out_return_no": taken, "account": s.accounts[0], "amount": 100})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(json!({"out_refund_no": rf, "amount": 5000, "split_returns": "auto"})),
        )
        .await;
    assert_eq!(
        (r.status, &r.json["code"]),
        (409, &json!("idempotency_conflict")),
        "{}",
        r.text
    );
    // Nothing was recorded: another refund number goes through.
    let r = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(json!({"out_refund_no": order_no("RC"), "amount": 5000, "split_returns": "auto"})),
        )
        .await;
    assert_eq!(
        (r.status, &r.json["status"]),
        (201, &json!("succeeded")),
        "{}",
        r.text
    );
}
