use http::{Method, StatusCode};
use serde_json::json;

use super::Gateway;
use crate::sandbox::kit::{test_channel, test_request};
use crate::sandbox::Simulator;

fn gateway() -> Gateway {
    Gateway::new(&test_channel("wechatpay").0)
}

fn native(g: &Gateway, no: &str, description: &str) -> serde_json::Value {
    json!({
        "appid": g.appid, "mchid": g.mchid, "out_trade_no": no, "description": description,
        "notify_url": "http://127.0.0.1:1/notify/wechatpay", "amount": { "total": 1000 },
    })
}

#[test]
fn calls_are_counted_without_order_numbers() {
    let cases = [
        (
            Method::POST,
            "/v3/pay/transactions/native",
            "POST /v3/pay/transactions/native",
        ),
        (
            Method::POST,
            "/v3/pay/transactions/out-trade-no/N1/close",
            "POST /v3/pay/transactions/out-trade-no/{}/close",
        ),
        (
            Method::GET,
            "/v3/pay/transactions/out-trade-no/N1",
            "GET /v3/pay/transactions/out-trade-no/{}",
        ),
        (
            Method::GET,
            "/v3/refund/domestic/refunds/R1",
            "GET /v3/refund/domestic/refunds/{}",
        ),
    ];
    let g = gateway();
    for (method, path, label) in cases {
        assert_eq!(g.call_label(&test_request(method, path)), label);
    }
}

#[test]
fn a_repeated_prepay_is_answered_again_unless_it_differs() {
    let g = gateway();
    let (status, first) = g.prepay("NATIVE", &native(&g, "N000001", "tea"));
    assert_eq!(status, StatusCode::OK);
    assert!(first["code_url"].as_str().unwrap().starts_with("weixin://"));
    assert_eq!(g.prepay("NATIVE", &native(&g, "N000001", "tea")).1, first);
    let (status, changed) = g.prepay("NATIVE", &native(&g, "N000001", "coffee"));
    assert_eq!(
        (status, &changed["code"]),
        (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST"))
    );
}

#[test]
fn a_refund_settles_by_its_first_query() {
    let g = gateway();
    g.prepay("NATIVE", &native(&g, "N000002", "tea"));
    g.pay("N000002", false).unwrap();
    let refund = json!({
        "out_trade_no": "N000002", "out_refund_no": "RF1", "amount": { "refund": 400, "total": 1000, "currency": "CNY" },
    });
    let (status, made) = g.refund(&refund);
    assert_eq!(
        (status, &made["status"]),
        (StatusCode::OK, &json!("PROCESSING"))
    );
    assert_eq!(g.refund_query("RF1").1["status"], "SUCCESS");
    assert_eq!(g.order_view("N000002").unwrap()["refunded"], 400);
}

#[test]
fn a_paid_order_cannot_be_closed() {
    let g = gateway();
    g.prepay("NATIVE", &native(&g, "N000003", "tea"));
    g.pay("N000003", false).unwrap();
    let (status, answer) = g.close("N000003", &json!({ "mchid": g.mchid }));
    assert_eq!(
        (status, &answer["code"]),
        (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST"))
    );
}
