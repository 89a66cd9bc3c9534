//! The same end-to-end scenarios over every channel (parametrized): payments found by a query
//! when notifications never come, and answers that cannot be trusted. Channel-specific
//! behaviour stays in `e2e_<channel>.rs`.

mod common;

use common::{order_no, qr, Harness};
use serde_json::{json, Value};

/// One channel as the sample routes reach it.
struct Case {
    channel: &'static str,
    /// A create the sample's rules send to this channel.
    body: fn(&str) -> Value,
    /// The simulator's call labels of a create and of a payment query.
    create: &'static str,
    query: &'static str,
}

fn wechat_qr(no: &str) -> Value {
    json!({"out_trade_no": no, "amount": 1300, "currency": "CNY", "method": "wechat", "scene": "qr", "subject": "e2e"})
}

fn cases() -> [Case; 3] {
    [
        Case {
            channel: "alipay",
            body: |no| qr(no, 1500),
            create: "alipay.trade.precreate",
            query: "alipay.trade.query",
        },
        Case {
            channel: "wechatpay",
            body: wechat_qr,
            create: "POST /v3/pay/transactions/native",
            query: "GET /v3/pay/transactions/out-trade-no/{}",
        },
        // Small QR payments go through the aggregator.
        Case {
            channel: "pingpp",
            body: |no| qr(no, 800),
            create: "POST /v1/charges",
            query: "GET /v1/charges/{}",
        },
    ]
}

async fn calls(h: &Harness, channel: &str, label: &str) -> u64 {
    let r = h
        .admin("GET", &format!("/sandbox/{channel}/calls"), None)
        .await;
    r.json[label].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn without_notifications_a_query_finds_the_payment_on_every_channel() {
    let h = Harness::start().await;
    for case in cases() {
        let off = h
            .admin(
                "PUT",
                &format!("/sandbox/{}/notifications", case.channel),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(off.status, 204);
        let no = order_no("QN");
        let c = h.api("POST", "/v1/payments", Some((case.body)(&no))).await;
        assert_eq!(
            (c.status, c.json["channel"].as_str()),
            (201, Some(case.channel)),
            "{}",
            c.text
        );
        let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
        assert_eq!(q.json["status"], "pending", "{}: {}", case.channel, q.text);
        let before = calls(&h, case.channel, case.query).await;
        h.admin(
            "POST",
            &format!("/sandbox/{}/payments/{no}/pay", case.channel),
            None,
        )
        .await;
        let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
        assert_eq!(
            q.json["status"], "succeeded",
            "{}: {}",
            case.channel, q.text
        );
        assert!(
            calls(&h, case.channel, case.query).await > before,
            "{}: found by a query",
            case.channel
        );
    }
}

/// A direct channel whose answer's signature does not verify: the order stays pending (never
/// failed), and repeating the request once the channel answers properly recovers the action.
/// (Ping++ does not sign its answers; its garbled answers are covered by the failover tests.)
#[tokio::test]
async fn an_answer_that_does_not_verify_leaves_the_order_pending_on_every_direct_channel() {
    let h = Harness::start().await;
    for case in cases().into_iter().filter(|c| c.channel != "pingpp") {
        h.fault(case.channel, json!({"kind": "bad_signature"}))
            .await;
        let no = order_no("TS");
        let r = h.api("POST", "/v1/payments", Some((case.body)(&no))).await;
        assert_eq!(
            (
                r.status,
                r.json["code"].clone(),
                r.json["payment_status"].clone()
            ),
            (502, json!("channel_outcome_unknown"), json!("pending")),
            "{}: {}",
            case.channel,
            r.text
        );
        let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
        assert_eq!(q.json["status"], "pending", "{}", q.text);
        assert_eq!(q.json["route"]["attempts"][0]["outcome"], "unknown");
        assert!(
            q.json["route"]["attempts"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("signature"),
            "{}",
            q.text
        );
        h.clear_faults(case.channel).await;
        let sent = calls(&h, case.channel, case.create).await;
        let again = h.api("POST", "/v1/payments", Some((case.body)(&no))).await;
        assert_eq!(again.status, 201, "{}: {}", case.channel, again.text);
        assert!(
            again.json["action"]["code_url"].is_string(),
            "{}",
            again.text
        );
        assert_eq!(
            calls(&h, case.channel, case.create).await,
            sent + 1,
            "{}: asked again with the same order number",
            case.channel
        );
    }
}
