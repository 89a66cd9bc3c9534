//! End-to-end: the unified API over the Alipay simulator, on ephemeral ports.

mod common;

use std::time::Duration;

use common::{order_no, qr, Harness};
use serde_json::{json, Value};

#[tokio::test]
async fn qr_payment_is_paid_and_notified() {
    let h = Harness::start().await;
    let no = order_no("QR");
    let r = h.api("POST", "/v1/payments", Some(qr(&no, 1999))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "pending");
    assert_eq!(r.json["channel"], "alipay");
    assert_eq!(r.json["fee"], 12, "0.6% of 19.99 yuan, rounded half up");
    // A default expiry travels to the channel, so the QR code dies with the order.
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.json["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((7100..=7200).contains(&ttl), "{ttl}");
    let code_url = r.json["action"]["code_url"].as_str().unwrap();
    assert!(code_url.starts_with("https://qr.alipay.com/"), "{code_url}");
    assert_eq!(r.json["route"]["attempts"][0]["outcome"], "accepted");

    let paid = h
        .admin("POST", &format!("/sandbox/alipay/payments/{no}/pay"), None)
        .await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    // The notification alone moves the order: the ledger says succeeded without a query.
    for _ in 0..50 {
        let o = h
            .run
            .payments
            .ledger()
            .get_order(&no)
            .await
            .unwrap()
            .unwrap();
        if o.status == payroute::domain::PaymentStatus::Succeeded {
            assert!(o.channel_trade_no.is_some());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.calls("alipay.trade.query").await,
        0,
        "succeeded by notification, not by query"
    );
    let q = h.wait_status(&no, "succeeded").await;
    assert_eq!(q["amount"], 1999);
}

fn barcode(no: &str, auth_code: &str) -> Value {
    json!({"out_trade_no": no, "amount": 2500, "currency": "CNY", "method": "alipay",
           "scene": "barcode", "subject": "counter", "auth_code": auth_code})
}

#[tokio::test]
async fn barcode_payments() {
    let h = Harness::start().await;
    // Paid synchronously.
    let no = order_no("BC");
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(barcode(&no, "251234567890123456")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "succeeded");
    assert!(r.json["channel_trade_no"].is_string());
    assert!(r.json.get("action").is_none());

    // Customer confirms while payroute polls.
    let no2 = order_no("BW");
    let paying = {
        let sim = h.alipay();
        let no2 = no2.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            sim.pay(&no2).map(|_| ())
        })
    };
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(barcode(&no2, "281234567890123456")),
        )
        .await;
    paying.await.unwrap().unwrap();
    assert_eq!(r.json["status"], "succeeded", "{}", r.text);

    // Customer never confirms: reversed at the channel, reported failed.
    let no3 = order_no("BX");
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(barcode(&no3, "281234567890123457")),
        )
        .await;
    assert_eq!(r.json["status"], "failed", "{}", r.text);
    assert_eq!(r.json["failure"]["code"], "payment_reversed");
    assert_eq!(
        h.alipay().order_view(&no3).unwrap().trade_status,
        "TRADE_CLOSED"
    );
    assert_eq!(h.calls("alipay.trade.cancel").await, 1);

    // Declined by the channel: a definite failure, never retried elsewhere.
    let no4 = order_no("BD");
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(barcode(&no4, "291234567890123456")),
        )
        .await;
    assert_eq!(r.json["status"], "failed", "{}", r.text);
    assert_eq!(r.json["failure"]["code"], "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    assert_eq!(r.json["route"]["attempts"][0]["outcome"], "declined");

    // A code the gateway rejects.
    let no5 = order_no("BI");
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(barcode(&no5, "991234567890123456")),
        )
        .await;
    assert_eq!(
        r.json["failure"]["code"], "ACQ.PAYMENT_AUTH_CODE_INVALID",
        "{}",
        r.text
    );
}

#[tokio::test]
async fn app_h5_and_page_return_what_the_client_needs() {
    let h = Harness::start().await;
    let gateway = h.run.sandbox.as_ref().unwrap().endpoint("alipay").unwrap();
    for (scene, kind) in [("app", "app_pay"), ("h5", "redirect"), ("page", "redirect")] {
        let no = order_no("CL");
        let mut body = qr(&no, 1234);
        body["scene"] = json!(scene);
        let r = h.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(r.status, 201, "{scene}: {}", r.text);
        assert_eq!(r.json["action"]["type"], kind, "{scene}");
        // The client opens it at the gateway, which verifies payroute's signature.
        let reply = match scene {
            "app" => {
                let order_string = r.json["action"]["order_string"].as_str().unwrap();
                h.raw(
                    "POST",
                    gateway.clone(),
                    Some(order_string.as_bytes().to_vec()),
                    Some("application/x-www-form-urlencoded"),
                )
                .await
            }
            _ => {
                let url = r.json["action"]["url"].as_str().unwrap().to_string();
                assert!(url.starts_with(&gateway), "{url}");
                h.raw("GET", url, None, None).await
            }
        };
        assert_eq!(reply.status, 200, "{scene}: {}", reply.text);
        assert!(reply.text.contains(&no), "{scene}: {}", reply.text);
        // A tampered link is refused by the gateway.
        if scene != "app" {
            let url = r.json["action"]["url"]
                .as_str()
                .unwrap()
                .replace("12.34", "0.01");
            assert_eq!(h.raw("GET", url, None, None).await.status, 400, "{scene}");
        }
        h.admin("POST", &format!("/sandbox/alipay/payments/{no}/pay"), None)
            .await;
        h.wait_status(&no, "succeeded").await;
    }
}

#[tokio::test]
async fn refunds_partial_second_over_and_query() {
    let h = Harness::start().await;
    let no = order_no("RF");
    h.api("POST", "/v1/payments", Some(qr(&no, 1999))).await;
    // Not paid yet: nothing to refund.
    let early = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(json!({"out_refund_no": format!("{no}R0"), "amount": 1})),
        )
        .await;
    assert_eq!(early.status, 409, "{}", early.text);
    assert_eq!(early.json["code"], "not_refundable");
    h.admin("POST", &format!("/sandbox/alipay/payments/{no}/pay"), None)
        .await;
    h.wait_status(&no, "succeeded").await;

    let refund = |n: &str, amount: u64| json!({"out_refund_no": format!("{no}{n}"), "amount": amount, "reason": "test"});
    let r1 = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R1", 500)),
        )
        .await;
    assert_eq!(r1.status, 201, "{}", r1.text);
    assert_eq!(r1.json["status"], "succeeded");
    let r2 = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R2", 1000)),
        )
        .await;
    assert_eq!(r2.json["status"], "succeeded", "{}", r2.text);
    let over = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R3", 1000)),
        )
        .await;
    assert_eq!(over.status, 422, "{}", over.text);
    assert_eq!(over.json["code"], "refund_exceeds_paid");
    assert!(over.content_type.contains("problem+json"));
    assert_eq!(
        h.calls("alipay.trade.refund").await,
        2,
        "the over-refund never reached the channel"
    );

    let q = h.api("GET", &format!("/v1/refunds/{no}R1"), None).await;
    assert_eq!(
        (q.status, q.json["amount"].clone(), q.json["status"].clone()),
        (200, json!(500), json!("succeeded"))
    );
    let p = h.api("GET", &format!("/v1/payments/{no}"), None).await;
    assert_eq!(p.json["status"], "partially_refunded");
    assert_eq!(p.json["refunded_amount"], 1500);

    // Repeats: same content → same refund, no new call; different content → 409.
    let again = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R1", 500)),
        )
        .await;
    assert_eq!(again.json, r1.json);
    let conflict = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R1", 400)),
        )
        .await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.json["code"], "idempotency_conflict");
    assert_eq!(h.calls("alipay.trade.refund").await, 2);

    // The rest: fully refunded.
    let last = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R4", 499)),
        )
        .await;
    assert_eq!(last.json["status"], "succeeded", "{}", last.text);
    assert_eq!(
        h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"],
        "refunded"
    );
    assert_eq!(h.alipay().order_view(&no).unwrap().refunded, 1999);
    assert_eq!(
        h.api("GET", "/v1/refunds/NOSUCHREFUND", None).await.status,
        404
    );
}

#[tokio::test]
async fn closing_an_unpaid_order_stops_payment() {
    let h = Harness::start().await;
    let no = order_no("CX");
    h.api("POST", "/v1/payments", Some(qr(&no, 1300))).await;
    // The buyer scanned the QR code: the trade exists at Alipay, so the close reaches it.
    let scan = h
        .admin("POST", &format!("/sandbox/alipay/payments/{no}/scan"), None)
        .await;
    assert_eq!(scan.status, 200, "{}", scan.text);
    let c = h
        .api("POST", &format!("/v1/payments/{no}/close"), None)
        .await;
    assert_eq!(
        (
            c.status,
            c.json["status"].clone(),
            c.json["close_confirmed"].clone()
        ),
        (200, json!("closed"), json!(true)),
        "{}",
        c.text
    );
    let pay = h
        .admin("POST", &format!("/sandbox/alipay/payments/{no}/pay"), None)
        .await;
    assert_eq!(
        pay.status, 409,
        "paying a closed order fails at the simulator: {}",
        pay.text
    );
    assert_eq!(pay.json["code"], "ACQ.TRADE_HAS_CLOSE");
    assert_eq!(
        h.api("POST", &format!("/v1/payments/{no}/close"), None)
            .await
            .json["status"],
        "closed"
    );

    let paid = order_no("CP");
    h.api("POST", "/v1/payments", Some(qr(&paid, 1300))).await;
    h.admin(
        "POST",
        &format!("/sandbox/alipay/payments/{paid}/pay"),
        None,
    )
    .await;
    h.wait_status(&paid, "succeeded").await;
    let c = h
        .api("POST", &format!("/v1/payments/{paid}/close"), None)
        .await;
    assert_eq!(
        (c.status, c.json["code"].clone()),
        (409, json!("order_paid"))
    );
}

#[tokio::test]
async fn notifications_bad_signature_replay_and_wrong_amount() {
    let h = Harness::start().await;
    let no = order_no("NT");
    h.api("POST", "/v1/payments", Some(qr(&no, 4200))).await;
    let sim = h.alipay();
    h.admin(
        "PUT",
        "/sandbox/alipay/notifications",
        Some(json!({"enabled": false})),
    )
    .await;
    h.admin("POST", &format!("/sandbox/alipay/payments/{no}/pay"), None)
        .await;
    let before = h
        .run
        .payments
        .ledger()
        .get_order(&no)
        .await
        .unwrap()
        .unwrap();

    // A signature that does not verify: 4xx, ledger unchanged.
    let good = sim.notification_body(&no, &[]).unwrap();
    let forged = good.replace("total_amount=42.00", "total_amount=42.01");
    let r = h.notify("alipay", forged).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_ne!(r.text, "success");
    // Correctly signed but for another amount: refused too.
    let wrong = sim
        .notification_body(&no, &[("total_amount", "0.01")])
        .unwrap();
    assert_eq!(h.notify("alipay", wrong).await.status, 400);
    // Not form data at all.
    assert_eq!(h.notify("alipay", "garbage".into()).await.status, 400);
    assert_eq!(h.notify("nosuchchannel", good.clone()).await.status, 404);
    assert_eq!(
        h.run
            .payments
            .ledger()
            .get_order(&no)
            .await
            .unwrap()
            .unwrap(),
        before
    );

    // The genuine one is applied once; replays answer success and change nothing.
    let r = h.notify("alipay", good.clone()).await;
    assert_eq!((r.status, r.text.as_str()), (200, "success"));
    let after = h
        .run
        .payments
        .ledger()
        .get_order(&no)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, payroute::domain::PaymentStatus::Succeeded);
    for _ in 0..2 {
        let r = h.notify("alipay", good.clone()).await;
        assert_eq!((r.status, r.text.as_str()), (200, "success"));
    }
    let resent = h
        .admin(
            "POST",
            &format!("/sandbox/alipay/payments/{no}/notify"),
            None,
        )
        .await;
    assert_eq!(resent.json["body"], "success");
    assert_eq!(
        h.run
            .payments
            .ledger()
            .get_order(&no)
            .await
            .unwrap()
            .unwrap(),
        after
    );
}

#[tokio::test]
async fn repeated_create_is_idempotent_and_conflicts_are_409() {
    let h = Harness::start().await;
    let no = order_no("ID");
    let first = h.api("POST", "/v1/payments", Some(qr(&no, 1999))).await;
    let second = h.api("POST", "/v1/payments", Some(qr(&no, 1999))).await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(first.text, second.text, "identical response");
    assert_eq!(
        h.calls("alipay.trade.precreate").await,
        1,
        "exactly one call at the simulator"
    );
    let conflict = h.api("POST", "/v1/payments", Some(qr(&no, 2999))).await;
    assert_eq!(conflict.status, 409);
    assert!(conflict.content_type.contains("application/problem+json"));
    assert_eq!(conflict.json["code"], "idempotency_conflict");
    assert_eq!(h.calls("alipay.trade.precreate").await, 1);

    // Concurrent repeats still make one call.
    let no2 = order_no("IC");
    let (a, b) = tokio::join!(
        h.api("POST", "/v1/payments", Some(qr(&no2, 1010))),
        h.api("POST", "/v1/payments", Some(qr(&no2, 1010)))
    );
    assert_eq!(a.text, b.text);
    assert_eq!(h.calls("alipay.trade.precreate").await, 2);
}

#[tokio::test]
async fn invalid_requests_are_problems_that_name_the_field() {
    let h = Harness::start().await;
    let base = qr(&order_no("VA"), 100);
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "negative amount",
            with("amount", json!(-5)),
            400,
            "invalid_amount",
            "amount",
        ),
        (
            "zero amount",
            with("amount", json!(0)),
            400,
            "invalid_amount",
            "amount",
        ),
        (
            "float amount",
            with("amount", json!(19.99)),
            400,
            "invalid_amount",
            "amount",
        ),
        (
            "string amount",
            with("amount", json!("100")),
            400,
            "invalid_amount",
            "amount",
        ),
        (
            "huge amount",
            with("amount", json!(10_000_000_001u64)),
            400,
            "invalid_amount",
            "amount",
        ),
        (
            "unknown field",
            with("amout", json!(5)),
            400,
            "unknown_field",
            "amout",
        ),
        (
            "missing subject",
            without("subject"),
            400,
            "missing_field",
            "subject",
        ),
        (
            "missing amount",
            without("amount"),
            400,
            "missing_field",
            "amount",
        ),
        (
            "bad method",
            with("method", json!("bitcoin")),
            422,
            "unsupported_method",
            "method",
        ),
        (
            "bad scene",
            with("scene", json!("nfc")),
            422,
            "unsupported_scene",
            "scene",
        ),
        (
            "bad currency",
            with("currency", json!("USD")),
            422,
            "unsupported_currency",
            "currency",
        ),
        (
            "short out_trade_no",
            with("out_trade_no", json!("A1")),
            400,
            "invalid_out_trade_no",
            "out_trade_no",
        ),
        (
            "hyphen out_trade_no",
            with("out_trade_no", json!("ORDER-2024-0001")),
            400,
            "invalid_out_trade_no",
            "out_trade_no",
        ),
        (
            "long out_trade_no",
            with("out_trade_no", json!("A".repeat(33))),
            400,
            "invalid_out_trade_no",
            "out_trade_no",
        ),
        (
            "empty subject",
            with("subject", json!("  ")),
            400,
            "invalid_field",
            "subject",
        ),
        (
            "barcode without code",
            with("scene", json!("barcode")),
            400,
            "missing_field",
            "auth_code",
        ),
        (
            "auth_code on qr",
            with("auth_code", json!("251234567890123456")),
            400,
            "invalid_field",
            "auth_code",
        ),
        (
            "jsapi without payer",
            with("scene", json!("jsapi")),
            400,
            "missing_field",
            "payer_id",
        ),
        (
            "bad ip",
            with("client_ip", json!("300.1.1.1")),
            400,
            "invalid_field",
            "client_ip",
        ),
        (
            "past expiry",
            with("expires_at", json!("2001-01-01T00:00:00Z")),
            400,
            "invalid_field",
            "expires_at",
        ),
        (
            "metadata not strings",
            with("metadata", json!({"a": 1})),
            400,
            "invalid_field",
            "metadata",
        ),
    ];
    for (label, body, status, code, field) in cases {
        let r = h.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(r.status, status, "{label}: {}", r.text);
        assert_eq!(r.content_type, "application/problem+json", "{label}");
        assert_eq!(r.json["code"], code, "{label}: {}", r.text);
        assert_eq!(r.json["field"], field, "{label}: {}", r.text);
        assert!(
            r.json["detail"].as_str().unwrap().contains(field),
            "{label}: {}",
            r.text
        );
        assert_eq!(r.json["status"], status, "{label}");
    }
    // Nothing reached the channel.
    assert_eq!(h.calls("alipay.trade.precreate").await, 0);

    // A supported method and scene that no configured channel takes: 422 no_channel.
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some({
                // WeChat Pay offers no desktop page scene.
                let mut b = with("method", json!("wechat"));
                b["scene"] = json!("page");
                b
            }),
        )
        .await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (422, json!("no_channel")),
        "{}",
        r.text
    );
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(with("amount", json!(6_000_000))),
        )
        .await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (422, json!("no_channel")),
        "{}",
        r.text
    );

    let url = format!("http://{}/v1/payments", h.run.api);
    let r = h
        .raw(
            "POST",
            url.clone(),
            Some(b"{not json".to_vec()),
            Some("application/json"),
        )
        .await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (400, json!("invalid_json"))
    );
    let r = h
        .raw(
            "POST",
            url.clone(),
            Some(b"[]".to_vec()),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = h
        .raw(
            "POST",
            url.clone(),
            Some(base.to_string().into_bytes()),
            Some("text/plain"),
        )
        .await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (415, json!("unsupported_media_type"))
    );
    let big = json!({"out_trade_no": "BIG123", "subject": "x".repeat(70_000)}).to_string();
    let r = h
        .raw(
            "POST",
            url,
            Some(big.into_bytes()),
            Some("application/json"),
        )
        .await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (413, json!("body_too_large")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn lookups_openapi_and_admin() {
    let h = Harness::start().await;
    assert_eq!(
        h.api("GET", "/v1/payments/NOSUCHORDER123", None)
            .await
            .status,
        404
    );
    assert_eq!(h.api("GET", "/v1/payments/bad-no!", None).await.status, 400);
    let r = h.api("GET", "/v1/nothing", None).await;
    assert_eq!(
        (r.status, r.content_type.as_str()),
        (404, "application/problem+json")
    );
    let r = h.api("DELETE", "/v1/payments", None).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (405, json!("method_not_allowed"))
    );
    let doc = h.api("GET", "/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json["openapi"], "3.1.0");
    for path in [
        "/v1/payments",
        "/v1/payments/{out_trade_no}",
        "/v1/payments/{out_trade_no}/close",
        "/v1/payments/{out_trade_no}/refunds",
        "/v1/refunds/{out_refund_no}",
    ] {
        assert!(doc.json["paths"].get(path).is_some(), "{path}");
    }
    let ex = h
        .admin(
            "GET",
            "/admin/explain?method=alipay&scene=qr&amount=1999",
            None,
        )
        .await;
    assert_eq!(ex.status, 200, "{}", ex.text);
    assert_eq!(ex.json["decision"]["rule"], "alipay-all");
    assert_eq!(ex.json["decision"]["candidates"], json!(["alipay"]));
    let bad = h
        .admin(
            "GET",
            "/admin/explain?method=alipay&scene=qr&amount=x",
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.json["code"].clone()),
        (400, json!("invalid_amount"))
    );
    let metrics = h.admin("GET", "/metrics", None).await;
    assert!(
        metrics.text.contains("payroute_config_info{hash="),
        "{}",
        metrics.text
    );
    assert_eq!(h.admin("GET", "/healthz", None).await.status, 200);
    assert_eq!(h.admin("GET", "/readyz", None).await.status, 200);
    let routes = h.admin("GET", "/admin/routes", None).await;
    assert_eq!(routes.json["hash"].as_str().unwrap().len(), 64);
    assert_eq!(routes.json["channels"][0]["name"], "alipay");
    assert!(
        !routes.text.contains("PRIVATE"),
        "no key material in admin output"
    );
    assert_eq!(
        h.admin("POST", "/sandbox/nosuch/payments/X/pay", None)
            .await
            .status,
        404
    );
    let bad_fault = h
        .admin(
            "PUT",
            "/sandbox/alipay/faults",
            Some(json!({"kind": "meteor"})),
        )
        .await;
    assert_eq!(bad_fault.status, 400);
    // The admin listener has no mutating endpoint outside the sandbox control.
    assert_eq!(h.admin("POST", "/admin/routes", None).await.status, 405);
}
