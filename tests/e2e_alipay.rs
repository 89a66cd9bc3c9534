//! End-to-end over the Alipay simulator: what only Alipay has (barcode payments at the till,
//! the app/h5/page actions its gateway opens). The scenarios every channel shares are in
//! `e2e_channels.rs` and `e2e_notifications.rs`.

mod common;

use std::time::Duration;

use common::{order_no, qr, Harness};
use serde_json::{json, Value};

fn barcode(no: &str, auth_code: &str) -> Value {
    json!({"out_trade_no": no, "amount": 2500, "currency": "CNY", "method": "alipay",
           "scene": "barcode", "subject": "counter", "auth_code": auth_code})
}

#[tokio::test]
async fn barcode_payments() {
    let h = Harness::start().await;
    let at_till =
        |no: &str, auth_code: &str| h.api("POST", "/v1/payments", Some(barcode(no, auth_code)));
    // Paid synchronously.
    let no = order_no("BC");
    let r = at_till(&no, "251234567890123456").await;
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
    let r = at_till(&no2, "281234567890123456").await;
    paying.await.unwrap().unwrap();
    assert_eq!(r.json["status"], "succeeded", "{}", r.text);

    // Customer never confirms: reversed at the channel, reported failed.
    let no3 = order_no("BX");
    let r = at_till(&no3, "281234567890123457").await;
    assert_eq!(r.json["status"], "failed", "{}", r.text);
    assert_eq!(r.json["failure"]["code"], "payment_reversed");
    assert_eq!(
        h.alipay().order_view(&no3).unwrap().trade_status,
        "TRADE_CLOSED"
    );
    assert_eq!(h.calls("alipay.trade.cancel").await, 1);

    // Declined by the channel: a definite failure, never retried elsewhere.
    let no4 = order_no("BD");
    let r = at_till(&no4, "291234567890123456").await;
    assert_eq!(r.json["status"], "failed", "{}", r.text);
    assert_eq!(r.json["failure"]["code"], "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    assert_eq!(r.json["route"]["attempts"][0]["outcome"], "declined");

    // A code the gateway rejects.
    let no5 = order_no("BI");
    let r = at_till(&no5, "991234567890123456").await;
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
