//! End-to-end over the Ping++ aggregator simulator: what only Ping++ has (its secret API key).
//! The scenarios every channel shares, the aggregator with both of its wallets, are in
//! `e2e_channels.rs` and `e2e_notifications.rs`.

mod common;

use common::own_sandbox;
use common::{order_no, Harness};
use payroute::sandbox::SimChannel;
use serde_json::{json, Value};

fn small(no: &str, method: &str) -> Value {
    json!({"out_trade_no": no, "amount": 800, "currency": "CNY", "method": method,
           "scene": "qr", "subject": "aggregator e2e"})
}

#[tokio::test]
async fn wrong_secret_key_is_a_clear_configuration_error() {
    let platform = payroute::sandbox::fresh_key();
    let sandbox = own_sandbox::start(vec![SimChannel {
        app_id: "app_1Gqj58ynP0mHeX1q".into(),
        secret_key: Some("sk_test_therightone".into()),
        ..own_sandbox::channel(
            "pingpp",
            "pingpp",
            own_sandbox::merchant_public("pingpp_merchant_private.pem"),
            platform.clone(),
        )
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.key"), "sk_test_thewrongone\n").unwrap();
    std::fs::write(
        dir.path().join("webhook.pem"),
        platform.public_key().to_pem(),
    )
    .unwrap();
    let args = common::configured_args(dir.path(), &format!(
        "channels:\n  pingpp:\n    kind: pingpp\n    endpoint: {}\n    app_id: app_1Gqj58ynP0mHeX1q\n    \
         secret_key: {{ file: secret.key }}\n    merchant_private_key: {{ file: {} }}\n    pingpp_public_key: {{ file: webhook.pem }}\n",
        sandbox.endpoint("pingpp").unwrap(),
        common::repo().join("sandbox/keys/pingpp_merchant_private.pem").display()
    ));
    let h = Harness::start_args(&args).await;
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(small(&order_no("PW"), "alipay")),
        )
        .await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (503, json!("channel_unavailable")),
        "{}",
        r.text
    );
    let detail = r.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("not accepted") && detail.contains("API key"),
        "{detail}"
    );
    assert!(
        !detail.contains("thewrongone"),
        "the secret never reaches an error body"
    );
    // The process is fine and answers the next request.
    let again = h
        .api(
            "POST",
            "/v1/payments",
            Some(small(&order_no("PW"), "alipay")),
        )
        .await;
    assert_eq!(again.status, 503);
    h.run.stop().await;
}
