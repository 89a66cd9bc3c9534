//! Safety properties found in review: forged repeated keys, payments after close,
//! re-routing when nothing was sent, refusing to run without a notification URL.

mod common;

use common::{order_no, qr, Harness};
use serde_json::json;

#[tokio::test]
async fn repeated_form_keys_cannot_forge_a_notification() {
    let h = Harness::start().await;
    let sim = h.alipay();
    let victim = order_no("VI");
    h.api("POST", "/v1/payments", Some(qr(&victim, 9900))).await;
    let mine = order_no("MI");
    h.api("POST", "/v1/payments", Some(qr(&mine, 1001))).await;
    h.admin(
        "PUT",
        "/sandbox/alipay/notifications",
        Some(json!({"enabled": false})),
    )
    .await;
    h.admin(
        "POST",
        &format!("/sandbox/alipay/payments/{mine}/pay"),
        None,
    )
    .await;
    let genuine = sim.notification_body(&mine, &[]).unwrap();
    let forged = format!("out_trade_no={victim}&total_amount=99.00&{genuine}");
    let r = h.notify("alipay", forged).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let v = h
        .run
        .payments
        .ledger()
        .get_order(&victim)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.status, payroute::domain::PaymentStatus::Pending);
}

#[tokio::test]
async fn a_payment_reported_after_close_is_an_anomaly_not_a_success() {
    let h = Harness::start().await;
    let no = order_no("PC");
    h.api("POST", "/v1/payments", Some(qr(&no, 1500))).await;
    assert_eq!(
        h.api("POST", &format!("/v1/payments/{no}/close"), None)
            .await
            .json["status"],
        "closed"
    );
    // A correctly signed TRADE_SUCCESS for the closed order (e.g. a late confirmation).
    let late = h
        .alipay()
        .notification_body(&no, &[("trade_status", "TRADE_SUCCESS")])
        .unwrap();
    let r = h.notify("alipay", late).await;
    assert_eq!(
        r.status, 200,
        "acknowledged so the channel stops retrying: {}",
        r.text
    );
    let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
    assert_eq!(q.json["status"], "closed", "{}", q.text);
    assert_eq!(q.json["anomalies"], json!(["paid_after_close"]));
}

#[tokio::test]
async fn nothing_sent_then_repeat_routes_again() {
    let h = Harness::start().await;
    h.fault("alipay", json!({"kind": "refuse"})).await;
    let no = order_no("RR");
    let r = h.api("POST", "/v1/payments", Some(qr(&no, 1999))).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (503, json!("channel_unavailable")),
        "{}",
        r.text
    );
    assert_eq!(
        h.calls("alipay.trade.precreate").await,
        0,
        "refused connections reach nothing"
    );
    h.clear_faults("alipay").await;
    let again = h.api("POST", "/v1/payments", Some(qr(&no, 1999))).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json["status"], "pending");
    let attempts = again.json["route"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"], "declined");
    assert!(attempts[0]["reason"].as_str().unwrap().contains("not sent"));
    assert_eq!(attempts[1]["outcome"], "accepted");
}

#[tokio::test]
async fn production_mode_needs_a_notification_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::test_args(dir.path().to_path_buf());
    args.sandbox = false;
    // Own keys: the sample's published TEST keys are refused for a real gateway before this.
    let key = payroute::crypto::generate_private_key_pem();
    let public = payroute::crypto::PrivateKey::from_text(key.expose())
        .unwrap()
        .public_key()
        .to_pem();
    std::fs::write(dir.path().join("app.pem"), key.expose()).unwrap();
    std::fs::write(dir.path().join("alipay.pem"), public).unwrap();
    args.config = dir.path().join("routes.yaml");
    std::fs::write(
        &args.config,
        "channels:\n  alipay:\n    kind: alipay\n    endpoint: https://openapi.alipay.com/gateway.do\n    \
         app_id: \"2021000000000001\"\n    app_private_key: { file: app.pem }\n    alipay_public_key: { file: alipay.pem }\n",
    )
    .unwrap();
    let err = payroute::app::start(&args).await.unwrap_err().to_string();
    assert!(err.contains("PAYROUTE_NOTIFY_BASE_URL"), "{err}");
}

#[test]
fn a_response_repeating_its_key_is_read_from_the_verified_copy() {
    use payroute::channels::alipay::signing as tf;
    use payroute::channels::alipay::transformers::PrecreateResponse;
    let platform = payroute::sandbox::fresh_key();
    let signed = r#"{"code":"10000","msg":"Success","qr_code":"https://qr.alipay.com/good"}"#;
    let body = tf::sign_response("alipay_trade_precreate_response", signed, &platform);
    let forged = body.replacen(
        ",\"sign\"",
        r#","alipay_trade_precreate_response":{"code":"10000","msg":"Success","qr_code":"https://evil.example/"},"sign""#,
        1,
    );
    let v = tf::verify_response(
        200,
        forged.as_bytes(),
        "alipay.trade.precreate",
        &platform.public_key(),
    )
    .unwrap();
    let answer: PrecreateResponse = v.fields().unwrap();
    assert_eq!(
        answer.qr_code.as_deref(),
        Some("https://qr.alipay.com/good")
    );
}
