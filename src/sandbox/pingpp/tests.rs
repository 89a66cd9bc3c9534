use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::Gateway;
use crate::sandbox::kit::{test_channel, test_request};
use crate::sandbox::Simulator;

fn gateway() -> Gateway {
    Gateway::new(&test_channel("pingpp").0)
}

fn charge(g: &Gateway, order_no: &str, channel: &str, extra: Value) -> Value {
    json!({
        "order_no": order_no, "app": { "id": g.app_id }, "channel": channel, "amount": 1000,
        "client_ip": "127.0.0.1", "currency": "cny", "subject": "tea", "body": "a cup", "extra": extra,
    })
}

#[test]
fn calls_are_counted_without_ids() {
    let cases = [
        (Method::POST, "/v1/charges", "POST /v1/charges"),
        (Method::GET, "/v1/charges/ch_1", "GET /v1/charges/{}"),
        (
            Method::POST,
            "/v1/charges/ch_1/refunds",
            "POST /v1/charges/{}/refunds",
        ),
        (
            Method::GET,
            "/v1/charges/ch_1/refunds/re_1",
            "GET /v1/charges/{}/refunds/{}",
        ),
    ];
    let g = gateway();
    for (method, path, label) in cases {
        assert_eq!(g.call_label(&test_request(method, path)), label);
    }
}

#[test]
fn a_charge_needs_its_channels_extra_and_repeats_answer_the_same_charge() {
    let g = gateway();
    let (status, refused) = g.create_charge(&charge(&g, "P1", "wx_pub", json!({})));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused["error"]["message"],
        "extra.open_id is required for wx_pub"
    );
    let (status, first) = g.create_charge(&charge(&g, "P1", "alipay_qr", json!({})));
    assert_eq!(status, StatusCode::OK);
    assert!(first["credential"]["alipay_qr"]
        .as_str()
        .unwrap()
        .starts_with("https://qr.alipay.com/"));
    assert_eq!(
        g.create_charge(&charge(&g, "P1", "alipay_qr", json!({}))).1["id"],
        first["id"]
    );
}

#[test]
fn refunds_settle_by_the_first_look() {
    let g = gateway();
    let id = g.create_charge(&charge(&g, "P2", "alipay_qr", json!({}))).1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unpaid = g.create_refund(&id, &json!({ "description": "sorry" }));
    assert_eq!(unpaid.0, StatusCode::BAD_REQUEST);
    g.pay("P2", false).unwrap();
    let (status, refund) = g.create_refund(&id, &json!({ "description": "sorry", "amount": 300 }));
    assert_eq!(
        (status, &refund["status"]),
        (StatusCode::OK, &json!("pending"))
    );
    let re = refund["id"].as_str().unwrap();
    assert_eq!(g.refunds(&id, Some(re)).1["status"], "succeeded");
    assert_eq!(g.order_view("P2").unwrap()["refunded"], 300);
}
