//! The same end-to-end scenarios over every channel (parametrized): a QR payment from create
//! to notification, repeated creates, closes, refunds, payments found by a query when
//! notifications never come, and answers that cannot be trusted. Notifications, genuine and
//! forged, are in `e2e_notifications.rs`; channel-specific behaviour stays in `e2e_<channel>.rs`.

mod common;

use common::channels::{cases, Case, PINGPP_WECHAT};
use common::{order_no, Harness};
use serde_json::json;

/// Every channel, the aggregator with both of its wallets.
fn every_route() -> [Case; 4] {
    let [alipay, wechatpay, pingpp] = cases();
    [alipay, wechatpay, pingpp, PINGPP_WECHAT]
}

#[tokio::test]
async fn a_qr_payment_is_paid_by_its_notification_alone_on_every_channel() {
    let h = Harness::start().await;
    for case in every_route() {
        let ch = case.channel;
        let no = order_no("QR");
        let queries = h.calls_at(ch, case.query).await;
        let r = h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        assert_eq!(r.status, 201, "{ch}: {}", r.text);
        assert_eq!(r.json["status"], "pending", "{ch}");
        assert_eq!(r.json["channel"], ch);
        assert_eq!(r.json["fee"], case.fee, "{ch}: its fee, rounded half up");
        // A default expiry travels to the channel, so the QR code dies with the order.
        let expires =
            chrono::DateTime::parse_from_rfc3339(r.json["expires_at"].as_str().unwrap()).unwrap();
        let ttl = expires.timestamp() - chrono::Utc::now().timestamp();
        assert!((7100..=7200).contains(&ttl), "{ch}: {ttl}");
        let code_url = r.json["action"]["code_url"].as_str().unwrap();
        assert!(code_url.starts_with(case.code_url), "{ch}: {code_url}");
        assert_eq!(
            r.json["route"]["attempts"][0]["outcome"], "accepted",
            "{ch}"
        );
        if case.trade_no_at_create {
            assert!(
                r.json["channel_trade_no"]
                    .as_str()
                    .unwrap()
                    .starts_with(case.trade_no),
                "{ch}: {}",
                r.text
            );
        }

        let paid = h.pay(ch, &no).await;
        assert_eq!(paid.status, 200, "{ch}: {}", paid.text);
        // The notification alone moves the order: the ledger says succeeded without a query.
        let o = h.wait_succeeded_in_ledger(&no).await;
        assert!(o.channel_trade_no.is_some(), "{ch}");
        assert_eq!(
            h.calls_at(ch, case.query).await,
            queries,
            "{ch}: succeeded by notification, not by query"
        );
        let q = h.wait_status(&no, "succeeded").await;
        assert_eq!(q["amount"], case.amount, "{ch}");
        assert!(
            q["channel_trade_no"]
                .as_str()
                .unwrap()
                .starts_with(case.trade_no),
            "{ch}: {q}"
        );
    }
}

#[tokio::test]
async fn a_repeated_create_is_idempotent_and_a_different_one_is_409_on_every_channel() {
    let h = Harness::start().await;
    for case in cases() {
        let ch = case.channel;
        let creates = h.calls_at(ch, case.create).await;
        let no = order_no("ID");
        let first = h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        let second = h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        assert_eq!((first.status, second.status), (201, 201), "{ch}");
        assert_eq!(first.text, second.text, "{ch}: identical response");
        assert_eq!(
            h.calls_at(ch, case.create).await,
            creates + 1,
            "{ch}: exactly one call at the simulator"
        );
        let mut other = case.qr(&no);
        other["amount"] = json!(case.amount + 1);
        let conflict = h.api("POST", "/v1/payments", Some(other)).await;
        assert_eq!(conflict.status, 409, "{ch}");
        assert!(conflict.content_type.contains("application/problem+json"));
        assert_eq!(conflict.json["code"], "idempotency_conflict", "{ch}");
        assert_eq!(h.calls_at(ch, case.create).await, creates + 1, "{ch}");

        // Concurrent repeats still make one call.
        let no2 = order_no("IC");
        let (a, b) = tokio::join!(
            h.api("POST", "/v1/payments", Some(case.qr(&no2))),
            h.api("POST", "/v1/payments", Some(case.qr(&no2)))
        );
        assert_eq!(a.text, b.text, "{ch}");
        assert_eq!(h.calls_at(ch, case.create).await, creates + 2, "{ch}");
    }
}

#[tokio::test]
async fn closing_an_unpaid_order_stops_payment_on_every_channel() {
    let h = Harness::start().await;
    for case in cases() {
        let ch = case.channel;
        let no = order_no("CX");
        h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        // The buyer scanned the QR code: where the trade only then exists at the channel
        // (Alipay), the close reaches it.
        let scan = h
            .admin("POST", &format!("/sandbox/{ch}/payments/{no}/scan"), None)
            .await;
        assert_eq!(scan.status, 200, "{ch}: {}", scan.text);
        let c = h
            .api("POST", &format!("/v1/payments/{no}/close"), None)
            .await;
        assert_eq!(
            (
                c.status,
                c.json["status"].clone(),
                c.json["close_confirmed"].clone()
            ),
            (200, json!("closed"), json!(case.closed_code.is_some())),
            "{ch}: {}",
            c.text
        );
        if let Some(code) = case.closed_code {
            let pay = h.pay(ch, &no).await;
            assert_eq!(
                (pay.status, pay.json["code"].clone()),
                (409, json!(code)),
                "{ch}: paying a closed order fails at the simulator: {}",
                pay.text
            );
        }
        assert_eq!(
            h.api("POST", &format!("/v1/payments/{no}/close"), None)
                .await
                .json["status"],
            "closed",
            "{ch}"
        );

        let paid = order_no("CP");
        h.api("POST", "/v1/payments", Some(case.qr(&paid))).await;
        h.pay(ch, &paid).await;
        h.wait_status(&paid, "succeeded").await;
        let c = h
            .api("POST", &format!("/v1/payments/{paid}/close"), None)
            .await;
        assert_eq!(
            (c.status, c.json["code"].clone()),
            (409, json!("order_paid")),
            "{ch}: {}",
            c.text
        );
    }
}

#[tokio::test]
async fn refunds_partial_second_over_repeated_and_query_on_every_channel() {
    let h = Harness::start().await;
    for case in cases() {
        let ch = case.channel;
        let no = order_no("RF");
        let refunds = format!("/v1/payments/{no}/refunds");
        h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        // Not paid yet: nothing to refund.
        let early = h
            .api(
                "POST",
                &refunds,
                Some(json!({"out_refund_no": format!("{no}R0"), "amount": 1})),
            )
            .await;
        assert_eq!(early.status, 409, "{ch}: {}", early.text);
        assert_eq!(early.json["code"], "not_refundable", "{ch}");
        h.pay(ch, &no).await;
        h.wait_status(&no, "succeeded").await;

        let sent = h.calls_at(ch, case.refund).await;
        let refund = |n: &str, amount: u64| json!({"out_refund_no": format!("{no}{n}"), "amount": amount, "reason": "test"});
        let (first, second) = (case.amount / 4, case.amount / 2);
        let r1 = h.api("POST", &refunds, Some(refund("R1", first))).await;
        assert_eq!(
            (r1.status, r1.json["status"].clone()),
            (201, json!("succeeded")),
            "{ch}: {}",
            r1.text
        );
        assert!(
            r1.json["channel_refund_no"]
                .as_str()
                .unwrap()
                .starts_with(case.refund_no),
            "{ch}: {}",
            r1.text
        );
        let r2 = h.api("POST", &refunds, Some(refund("R2", second))).await;
        assert_eq!(r2.json["status"], "succeeded", "{ch}: {}", r2.text);
        // More than is left.
        let over = h.api("POST", &refunds, Some(refund("R3", second))).await;
        assert_eq!(over.status, 422, "{ch}: {}", over.text);
        assert_eq!(over.json["code"], "refund_exceeds_paid", "{ch}");
        assert!(over.content_type.contains("problem+json"), "{ch}");
        assert_eq!(
            h.calls_at(ch, case.refund).await,
            sent + 2,
            "{ch}: the over-refund never reached the channel"
        );

        let q = h.api("GET", &format!("/v1/refunds/{no}R1"), None).await;
        assert_eq!(
            (q.status, q.json["amount"].clone(), q.json["status"].clone()),
            (200, json!(first), json!("succeeded")),
            "{ch}"
        );
        let p = h.payment(&no).await;
        assert_eq!(p["status"], "partially_refunded", "{ch}");
        assert_eq!(p["refunded_amount"], first + second, "{ch}");

        // Repeats: same content → same refund, no new call; different content → 409.
        let again = h.api("POST", &refunds, Some(refund("R1", first))).await;
        assert_eq!(again.json, r1.json, "{ch}");
        let conflict = h.api("POST", &refunds, Some(refund("R1", first - 1))).await;
        assert_eq!(conflict.status, 409, "{ch}");
        assert_eq!(conflict.json["code"], "idempotency_conflict", "{ch}");
        assert_eq!(h.calls_at(ch, case.refund).await, sent + 2, "{ch}");

        // The rest: fully refunded.
        let rest = case.amount - first - second;
        let last = h.api("POST", &refunds, Some(refund("R4", rest))).await;
        assert_eq!(last.json["status"], "succeeded", "{ch}: {}", last.text);
        assert_eq!(h.payment(&no).await["status"], "refunded", "{ch}");
        let at = h.at_channel(ch, &no).await;
        assert_eq!(at.json["refunded"], case.amount, "{ch}: {}", at.text);
    }
    assert_eq!(
        h.api("GET", "/v1/refunds/NOSUCHREFUND", None).await.status,
        404
    );
}

#[tokio::test]
async fn without_notifications_a_query_finds_the_payment_on_every_channel() {
    let h = Harness::start().await;
    for case in cases() {
        let ch = case.channel;
        h.notifications(ch, false).await;
        let no = order_no("QN");
        let c = h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        assert_eq!(
            (c.status, c.json["channel"].as_str()),
            (201, Some(ch)),
            "{}",
            c.text
        );
        let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
        assert_eq!(q.json["status"], "pending", "{ch}: {}", q.text);
        let before = h.calls_at(ch, case.query).await;
        h.pay(ch, &no).await;
        let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
        assert_eq!(q.json["status"], "succeeded", "{ch}: {}", q.text);
        assert!(
            h.calls_at(ch, case.query).await > before,
            "{ch}: found by a query"
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
        let ch = case.channel;
        h.fault(ch, json!({"kind": "bad_signature"})).await;
        let no = order_no("TS");
        let r = h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        assert_eq!(
            (
                r.status,
                r.json["code"].clone(),
                r.json["payment_status"].clone()
            ),
            (502, json!("channel_outcome_unknown"), json!("pending")),
            "{ch}: {}",
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
        h.clear_faults(ch).await;
        let sent = h.calls_at(ch, case.create).await;
        let again = h.api("POST", "/v1/payments", Some(case.qr(&no))).await;
        assert_eq!(again.status, 201, "{ch}: {}", again.text);
        assert!(
            again.json["action"]["code_url"].is_string(),
            "{}",
            again.text
        );
        assert_eq!(
            h.calls_at(ch, case.create).await,
            sent + 1,
            "{ch}: asked again with the same order number"
        );
    }
}
