//! Review of issue 12: defects found in the money-safety changes, each shown against the
//! real simulators.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{order_no, qr, Harness};
use serde_json::{json, Value};

fn barcode(no: &str, auth_code: &str) -> Value {
    json!({"out_trade_no": no, "amount": 1500, "currency": "CNY", "method": "alipay", "scene": "barcode", "subject": "bc", "auth_code": auth_code})
}

/// The barcode poll no longer holds the order's lock. When it gives up and reverses
/// (`alipay.trade.cancel`), the customer may confirm at the last moment: the channel reports
/// the payment (notification) and then the reversal returns the money. The order must not
/// end up `succeeded` while the customer got the money back.
#[tokio::test]
async fn a_barcode_payment_confirmed_while_its_reversal_is_in_flight_is_not_left_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::test_args(dir.path().to_path_buf());
    args.barcode_poll_ms = 100;
    args.barcode_poll_attempts = 2;
    let h = Arc::new(Harness::from_running(
        payroute::app::start(&args).await.unwrap(),
    ));
    let no = order_no("BX");
    let create = tokio::spawn({
        let (h, body) = (h.clone(), barcode(&no, "2800000000000009"));
        async move { h.api("POST", "/v1/payments", Some(body)).await }
    });
    for _ in 0..100 {
        if h.alipay().order_view(&no).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every gateway call now takes a while: the reversal is in flight for 1.5 s.
    h.fault("alipay", json!({"kind": "latency", "ms": 1500}))
        .await;
    for _ in 0..800 {
        if h.calls("alipay.trade.cancel").await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.calls("alipay.trade.cancel").await,
        1,
        "the reversal was sent"
    );
    // The customer confirms on the phone just now; Alipay notifies payroute at once.
    h.alipay().pay(&no).expect("the customer pays");
    let r = create.await.unwrap();
    h.clear_faults("alipay").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sim = h.alipay().order_view(&no).unwrap();
    assert_eq!(
        sim.trade_status, "TRADE_CLOSED",
        "the cancel reversed the payment"
    );
    assert_eq!(sim.refunded, 1500, "the customer got the money back");
    let v = h.api("GET", &format!("/v1/payments/{no}"), None).await.json;
    assert_ne!(
        v["status"], "succeeded",
        "payroute reports a reversed payment as succeeded (create answered {}): {v}",
        r.text
    );
}

/// A prepay create whose first candidate's outcome is unknown (abandoned there) and whose next
/// candidate provably received nothing (connection refused) answers 502 with the order
/// pending. Nothing the customer could pay exists, so repeating the create routes the order
/// again, never back to the channel where it was abandoned: 201 with the next candidate's
/// QR code. (It used to answer 201 `pending` with no `action`, forever: the last attempt was
/// `declined`, so neither the in-doubt nor the lost-action path ran.)
#[tokio::test]
async fn a_repeat_after_abandon_then_not_sent_is_not_left_pending_without_an_action() {
    let h = Harness::start().await;
    // small-qr-alipay: [pingpp, alipay], Ping++ first (cheapest).
    let no = order_no("AS");
    h.fault("pingpp", json!({"kind": "bad_signature"})).await;
    h.fault("alipay", json!({"kind": "refuse"})).await;
    let r = h.api("POST", "/v1/payments", Some(qr(&no, 800))).await;
    assert_eq!(r.status, 502, "{}", r.text);
    h.clear_faults("pingpp").await;
    h.clear_faults("alipay").await;
    let charges = h.calls_at("pingpp", "POST /v1/charges").await;
    assert_eq!(charges, 1, "the first create reached Ping++");
    let again = h.api("POST", "/v1/payments", Some(qr(&no, 800))).await;
    assert_eq!(
        (
            again.status,
            again.json["status"].as_str(),
            again.json["channel"].as_str(),
            again.json["action"]["type"].as_str(),
        ),
        (201, Some("pending"), Some("alipay"), Some("qr_code")),
        "{}",
        again.text
    );
    assert!(
        again.json["action"]["code_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://qr.alipay.com/")),
        "{}",
        again.text
    );
    assert_eq!(
        h.calls_at("pingpp", "POST /v1/charges").await,
        charges,
        "not sent again where it was abandoned"
    );
    let attempts: Vec<(&str, &str)> = again.json["route"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("pingpp", "abandoned"),
            ("alipay", "declined"),
            ("alipay", "accepted")
        ],
        "{}",
        again.text
    );
    // And the customer can pay it.
    h.pay("alipay", &no).await;
    h.wait_status(&no, "succeeded").await;
}
