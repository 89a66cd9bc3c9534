//! End-to-end: the unified API itself, whichever channel serves it: request validation as
//! problems that name the field, lookups, the OpenAPI document and the admin listener.

mod common;

use common::channels;
use common::{order_no, qr, Harness};
use serde_json::{json, Value};

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
    // Nothing reached a channel.
    for case in channels::cases() {
        assert_eq!(
            h.calls_at(case.channel, case.create).await,
            0,
            "{}",
            case.channel
        );
    }

    // A supported method and scene that no configured channel takes, or an amount over every
    // channel's limit: 422 no_channel.
    let mut wechat_page = with("method", json!("wechat"));
    wechat_page["scene"] = json!("page"); // WeChat Pay offers no desktop page scene.
    for (label, body) in [
        ("wechat page", wechat_page),
        ("over every limit", with("amount", json!(6_000_000))),
    ] {
        let r = h.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(
            (r.status, r.json["code"].clone()),
            (422, json!("no_channel")),
            "{label}: {}",
            r.text
        );
    }

    let url = format!("http://{}/v1/payments", h.run.api);
    let base_text = base.to_string();
    for (label, body, content_type, status, code) in [
        (
            "not JSON",
            "{not json",
            "application/json",
            400,
            "invalid_json",
        ),
        ("not an object", "[]", "application/json", 400, ""),
        (
            "not said to be JSON",
            &base_text,
            "text/plain",
            415,
            "unsupported_media_type",
        ),
    ] {
        let r = h
            .raw("POST", url.clone(), Some(body.into()), Some(content_type))
            .await;
        assert_eq!(r.status, status, "{label}: {}", r.text);
        if !code.is_empty() {
            assert_eq!(r.json["code"], code, "{label}: {}", r.text);
        }
    }
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
