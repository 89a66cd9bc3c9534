//! End-to-end: payments through the Ping++ aggregator simulator.

mod common;

use std::time::Duration;

use common::{order_no, Harness};
use payroute::crypto::PrivateKey;
use serde_json::{json, Value};

fn small(no: &str, method: &str) -> Value {
    json!({"out_trade_no": no, "amount": 800, "currency": "CNY", "method": method,
           "scene": "qr", "subject": "aggregator e2e"})
}

#[tokio::test]
async fn both_methods_through_the_aggregator_with_webhooks() {
    let h = Harness::start().await;
    for (method, prefix) in [
        ("alipay", "https://qr.alipay.com/"),
        ("wechat", "weixin://"),
    ] {
        let no = order_no("PG");
        let r = h
            .api("POST", "/v1/payments", Some(small(&no, method)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["channel"], "pingpp");
        assert_eq!(r.json["fee"], 3, "0.38% of 8.00 yuan");
        assert!(
            r.json["action"]["code_url"]
                .as_str()
                .unwrap()
                .starts_with(prefix),
            "{}",
            r.text
        );
        assert!(r.json["channel_trade_no"]
            .as_str()
            .unwrap()
            .starts_with("ch_"));
        let paid = h
            .admin("POST", &format!("/sandbox/pingpp/payments/{no}/pay"), None)
            .await;
        assert_eq!(paid.status, 200, "{}", paid.text);
        let sim = h.run.sandbox.as_ref().unwrap().pingpp("pingpp").unwrap();
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
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            sim.calls().get("GET /v1/charges/{}").copied().unwrap_or(0),
            0,
            "{method}: paid by the webhook"
        );
        h.wait_status(&no, "succeeded").await;
    }
}

#[tokio::test]
async fn query_without_webhook_refund_and_refund_query() {
    let h = Harness::start().await;
    h.admin(
        "PUT",
        "/sandbox/pingpp/notifications",
        Some(json!({"enabled": false})),
    )
    .await;
    let no = order_no("PQ");
    h.api("POST", "/v1/payments", Some(small(&no, "alipay")))
        .await;
    assert_eq!(
        h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"],
        "pending"
    );
    h.admin("POST", &format!("/sandbox/pingpp/payments/{no}/pay"), None)
        .await;
    assert_eq!(
        h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"],
        "succeeded"
    );

    let r = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(json!({"out_refund_no": format!("{no}R1"), "amount": 300, "reason": "test"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["status"].clone()),
        (201, json!("succeeded")),
        "{}",
        r.text
    );
    assert!(r.json["channel_refund_no"]
        .as_str()
        .unwrap()
        .starts_with("re_"));
    let over = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(json!({"out_refund_no": format!("{no}R2"), "amount": 600})),
        )
        .await;
    assert_eq!(over.status, 422);
    let q = h.api("GET", &format!("/v1/refunds/{no}R1"), None).await;
    assert_eq!(
        (q.json["status"].clone(), q.json["amount"].clone()),
        (json!("succeeded"), json!(300))
    );
    assert_eq!(
        h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"],
        "partially_refunded"
    );
    // Ping++ cannot close charges: the order is closed in the ledger, the answer says the
    // channel did not confirm it, and a payment that still arrives is refunded (see
    // tests/money_safety.rs).
    let other = order_no("PX");
    h.api("POST", "/v1/payments", Some(small(&other, "wechat")))
        .await;
    let c = h
        .api("POST", &format!("/v1/payments/{other}/close"), None)
        .await;
    assert_eq!(
        (
            c.status,
            c.json["status"].clone(),
            c.json["close_confirmed"].clone()
        ),
        (200, json!("closed"), json!(false)),
        "{}",
        c.text
    );
}

#[tokio::test]
async fn tampered_webhook_is_rejected_and_ledger_unchanged() {
    let h = Harness::start().await;
    h.admin(
        "PUT",
        "/sandbox/pingpp/notifications",
        Some(json!({"enabled": false})),
    )
    .await;
    let no = order_no("PT");
    h.api("POST", "/v1/payments", Some(small(&no, "wechat")))
        .await;
    h.admin("POST", &format!("/sandbox/pingpp/payments/{no}/pay"), None)
        .await;
    let sim = h.run.sandbox.as_ref().unwrap().pingpp("pingpp").unwrap();
    let before = h
        .run
        .payments
        .ledger()
        .get_order(&no)
        .await
        .unwrap()
        .unwrap();
    let (sig, body) = sim.webhook(&no, true).unwrap();
    assert_eq!(sim.deliver(&sig, &body).await.unwrap().0, 400);
    let (_, unsigned) = sim.webhook(&no, false).unwrap();
    assert_eq!(sim.deliver("", &unsigned).await.unwrap().0, 400);
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
    let (sig, body) = sim.webhook(&no, false).unwrap();
    assert_eq!(sim.deliver(&sig, &body).await.unwrap().0, 200);
    assert_eq!(
        h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"],
        "succeeded"
    );
    let after = h
        .run
        .payments
        .ledger()
        .get_order(&no)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.deliver(&sig, &body).await.unwrap().0,
        200,
        "a replay is acknowledged"
    );
    assert_eq!(
        h.run
            .payments
            .ledger()
            .get_order(&no)
            .await
            .unwrap()
            .unwrap(),
        after,
        "and changes nothing"
    );
}

#[tokio::test]
async fn wrong_secret_key_is_a_clear_configuration_error() {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let merchant = repo.join("sandbox/keys/pingpp_merchant_private.pem");
    let platform = payroute::sandbox::fresh_key();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let sandbox = payroute::sandbox::Sandbox::start(
        vec![payroute::sandbox::SimChannel {
            name: "pingpp".into(),
            kind: "pingpp".into(),
            app_id: "app_1Gqj58ynP0mHeX1q".into(),
            mchid: String::new(),
            merchant_public_key: PrivateKey::from_file(&merchant).unwrap().public_key(),
            merchant_serial: String::new(),
            platform_key: platform.clone(),
            platform_key_id: String::new(),
            apiv3_key: None,
            secret_key: Some("sk_test_therightone".into()),
        }],
        "127.0.0.1".parse().unwrap(),
        rx,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.key"), "sk_test_thewrongone\n").unwrap();
    std::fs::write(
        dir.path().join("webhook.pem"),
        platform.public_key().to_pem(),
    )
    .unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, format!(
        "channels:\n  pingpp:\n    kind: pingpp\n    endpoint: {}\n    app_id: app_1Gqj58ynP0mHeX1q\n    \
         secret_key: {{ file: secret.key }}\n    merchant_private_key: {{ file: {} }}\n    pingpp_public_key: {{ file: webhook.pem }}\n",
        sandbox.endpoint("pingpp").unwrap(), merchant.display()
    )).unwrap();
    let mut args = common::test_args(dir.path().join("data"));
    args.config = config;
    args.sandbox = false;
    let run = payroute::app::start(&args).await.unwrap();
    let client = payroute::channels::client::ChannelClient::new(
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let send = |body: Value| {
        let req = http::Request::post(format!("http://{}/v1/payments", run.api))
            .header("content-type", "application/json")
            .body(bytes::Bytes::from(body.to_string()))
            .unwrap();
        client.send(req)
    };
    let no = order_no("PW");
    let resp = send(small(&no, "alipay")).await.unwrap();
    common::openapi::assert_documented(
        "POST",
        "/v1/payments",
        resp.status,
        &resp.headers,
        &resp.body,
    );
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        (resp.status, v["code"].clone()),
        (503, json!("channel_unavailable")),
        "{v}"
    );
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("not accepted") && detail.contains("API key"),
        "{detail}"
    );
    assert!(
        !detail.contains("thewrongone"),
        "the secret never reaches an error body"
    );
    // The process is fine and answers the next request.
    let again = send(small(&order_no("PW"), "alipay")).await.unwrap();
    assert_eq!(again.status, 503);
    run.stop().await;
}
