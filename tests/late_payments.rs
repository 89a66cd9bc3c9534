//! The late-payment guard beyond closed QR codes (`money_safety.rs` has those): money a
//! channel takes for an order payroute *failed* there, whether a notification or a query
//! reports it, and for an Alipay cashier order (app, h5, page) closed before the buyer opened
//! it. Each scenario runs against the real simulators and ends with the money back at the
//! simulator, the anomaly on the order and the error line in the logs.

mod common;

use common::{logs, order_no, qr, Harness};
use payroute::ledger::{LateRefund, Order};
use serde_json::{json, Value};

fn barcode(no: &str, auth_code: &str) -> Value {
    json!({"out_trade_no": no, "amount": 1500, "currency": "CNY", "method": "alipay", "scene": "barcode", "subject": "bc", "auth_code": auth_code})
}

fn refunded_in_ledger(o: &Order) -> bool {
    o.late_payments
        .first()
        .is_some_and(|l| l.refund_status == LateRefund::Succeeded)
}

fn refunded(v: &Value) -> bool {
    v["late_payments"][0]["refund_status"] == "succeeded"
}

/// payroute that gives up on an unconfirmed barcode payment quickly (2 queries, 0.1 s apart).
async fn quick_reversal() -> Harness {
    Harness::start_with(|args| {
        args.barcode_poll_ms = 100;
        args.barcode_poll_attempts = 2;
    })
    .await
}

/// A barcode payment the customer never confirms: payroute reverses it and fails the order.
/// Then the customer's confirmation gets through after all (it raced the reversal): the
/// gateway has taken money for an order payroute failed.
async fn failed_then_paid(h: &Harness, prefix: &str) -> String {
    let no = order_no(prefix);
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(barcode(&no, "2800000000000021")),
        )
        .await;
    assert_eq!(
        (
            r.json["status"].as_str(),
            r.json["failure"]["code"].as_str()
        ),
        (Some("failed"), Some("payment_reversed")),
        "{}",
        r.text
    );
    let paid = h
        .admin(
            "POST",
            &format!("/sandbox/alipay/payments/{no}/pay?even_if_closed=true"),
            None,
        )
        .await;
    assert_eq!(paid.status, 200, "the customer pays: {}", paid.text);
    no
}

/// What every late payment on a failed Alipay order must leave behind: the order still
/// failed, the anomaly, the refund with the gateway's refund number, the money back.
async fn assert_refunded_failed_order(h: &Harness, no: &str) {
    let v = h.wait_for(no, "refunded", refunded).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["anomalies"], json!(["paid_after_close"]), "{v}");
    let late = &v["late_payments"][0];
    assert_eq!(
        (&late["channel"], &late["kind"], &late["amount"]),
        (&json!("alipay"), &json!("after_close"), &json!(1500)),
        "{v}"
    );
    let at = h.at_channel("alipay", no).await;
    assert_eq!(at.json["refunded"], 1500, "{}", at.text);
    // Alipay answers a refund with the trade's number, which payroute keeps as the refund's.
    assert_eq!(late["channel_refund_no"], at.json["trade_no"], "{v}");
}

#[tokio::test]
async fn a_payment_notified_for_a_failed_order_is_refunded_automatically() {
    let logs = logs::capture();
    let h = quick_reversal().await;
    let no = failed_then_paid(&h, "FN").await;
    // The notification alone settles it: the ledger is watched, the API not asked meanwhile.
    let o = h.wait_in_ledger(&no, "refunded", refunded_in_ledger).await;
    assert_eq!(o.late_payments.len(), 1, "{o:?}");
    assert_refunded_failed_order(&h, &no).await;
    // The operator reads which order and which channel took the money.
    let lines = logs.about(&no);
    let late = lines
        .iter()
        .find(|l| {
            l["level"] == "ERROR" && l["message"].as_str().unwrap().starts_with("late payment")
        })
        .unwrap_or_else(|| panic!("no late-payment error line: {lines:#?}"));
    assert_eq!(late["channel"], "alipay", "{late}");
    assert_eq!(late["kind"], "AfterClose", "{late}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "late payment refunded" && l["channel"] == "alipay"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_payment_found_by_a_query_of_a_failed_order_is_refunded_too() {
    let h = quick_reversal().await;
    // The notification never arrives; the app's next query finds the payment.
    h.notifications("alipay", false).await;
    let no = failed_then_paid(&h, "FQ").await;
    assert_refunded_failed_order(&h, &no).await;
    // Once the late payment is on record, a query answers from the ledger.
    let queries = h.calls("alipay.trade.query").await;
    let v = h.payment(&no).await;
    assert_eq!(v["late_payments"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(h.calls("alipay.trade.query").await, queries);
}

/// Opens an Alipay cashier order as the buyer's app or browser would: the gateway receives
/// payroute's signed order string or link, and the trade comes into being.
async fn open_cashier(h: &Harness, scene: &str, action: &Value) {
    let gateway = h.run.sandbox.as_ref().unwrap().endpoint("alipay").unwrap();
    let reply = if scene == "app" {
        let order_string = action["order_string"].as_str().unwrap();
        h.raw(
            "POST",
            gateway,
            Some(order_string.as_bytes().to_vec()),
            Some("application/x-www-form-urlencoded"),
        )
        .await
    } else {
        h.raw(
            "GET",
            action["url"].as_str().unwrap().to_string(),
            None,
            None,
        )
        .await
    };
    assert_eq!(reply.status, 200, "{scene}: {}", reply.text);
}

#[tokio::test]
async fn a_cashier_order_closed_before_it_was_opened_and_then_paid_is_refunded() {
    let h = Harness::start().await;
    for scene in ["app", "h5", "page"] {
        let no = order_no("CC");
        let mut body = qr(&no, 1234);
        body["scene"] = json!(scene);
        let c = h.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(
            (c.status, c.json["channel"].as_str()),
            (201, Some("alipay")),
            "{scene}: {}",
            c.text
        );
        // Nobody has opened the cashier: Alipay has no trade, close and cancel find none.
        let closed = h
            .api("POST", &format!("/v1/payments/{no}/close"), None)
            .await;
        assert_eq!(
            (
                closed.json["status"].clone(),
                closed.json["close_confirmed"].clone()
            ),
            (json!("closed"), json!(false)),
            "{scene}: {}",
            closed.text
        );
        // The link is still signed and valid: the buyer opens it and pays.
        open_cashier(&h, scene, &c.json["action"]).await;
        let paid = h.pay("alipay", &no).await;
        assert_eq!(paid.status, 200, "{scene}: {}", paid.text);
        let o = h.wait_in_ledger(&no, "refunded", refunded_in_ledger).await;
        assert_eq!(o.anomalies.len(), 1, "{scene}: {o:?}");
        let v = h.payment(&no).await;
        assert_eq!(
            (&v["status"], &v["anomalies"]),
            (&json!("closed"), &json!(["paid_after_close"])),
            "{scene}: {v}"
        );
        let at = h.at_channel("alipay", &no).await;
        assert_eq!(at.json["refunded"], 1234, "{scene}: {}", at.text);
    }
}

// ---- money already in flight is settled past an open circuit ----

#[tokio::test]
async fn a_late_payment_is_refunded_while_the_channels_circuit_is_open() {
    let h = Harness::start().await;
    let no = order_no("LC");
    h.api("POST", "/v1/payments", Some(qr(&no, 1300))).await;
    let c = h
        .api("POST", &format!("/v1/payments/{no}/close"), None)
        .await;
    assert_eq!(c.json["close_confirmed"], false, "{}", c.text);
    // Alipay is failing for new payments; the customer still pays the old QR code.
    h.open_circuit("alipay");
    h.pay("alipay", &no).await;
    let o = h.wait_in_ledger(&no, "refunded", refunded_in_ledger).await;
    assert!(o.late_payments[0].channel_refund_no.is_some(), "{o:?}");
    assert_eq!(h.alipay().order_view(&no).unwrap().refunded, 1300);
    assert!(h.circuit_open("alipay"), "sent through the open circuit");
}

/// The sample's rules with one in front that sends marked Alipay QR payments to Alipay first
/// and Ping++ after it, so that an attempt abandoned at Alipay has a close to send.
fn alipay_then_pingpp() -> (tempfile::TempDir, std::path::PathBuf) {
    let rule = "rules:\n  - name: alipay-then-pingpp\n    match: { metadata: { route: alipay-then-pingpp } }\n    channels: [alipay, pingpp]\n";
    common::config_dir(&common::sample().replacen("rules:\n", rule, 1))
}

#[tokio::test]
async fn an_abandoned_attempt_is_closed_while_the_channels_circuit_is_open() {
    let (_dir, config) = alipay_then_pingpp();
    let h = Harness::start_with(|args| {
        args.config = config;
        args.abandon_retry_ms = 1000;
    })
    .await;
    // Alipay creates the QR code but its answer cannot be trusted: abandoned, and Ping++ takes
    // the payment.
    h.fault("alipay", json!({"kind": "bad_signature"})).await;
    let no = order_no("AB");
    let mut body = qr(&no, 1300);
    body["metadata"] = json!({"route": "alipay-then-pingpp"});
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(
        (r.status, r.json["channel"].as_str()),
        (201, Some("pingpp")),
        "{}",
        r.text
    );
    assert_eq!(
        r.json["route"]["attempts"][0]["outcome"], "abandoned",
        "{}",
        r.text
    );
    // The first try at closing it there gets no trustworthy answer either (close, then a
    // query); the next one comes a second later.
    for _ in 0..100 {
        if h.calls("alipay.trade.query").await >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(h.calls("alipay.trade.close").await, 1);
    assert_eq!(h.calls("alipay.trade.query").await, 1);
    // Meanwhile Alipay's circuit opens, and Alipay recovers.
    h.open_circuit("alipay");
    h.clear_faults("alipay").await;
    let o = h
        .wait_in_ledger(&no, "closed at Alipay", |o| o.attempts[0].closing.is_some())
        .await;
    // Nobody scanned the code: close and cancel find no trade.
    assert_eq!(
        o.attempts[0].closing,
        Some(payroute::order::Closing::NoTrade),
        "{o:?}"
    );
    assert_eq!(h.calls("alipay.trade.close").await, 2);
    assert_eq!(h.calls("alipay.trade.cancel").await, 1);
    assert!(h.circuit_open("alipay"), "sent through the open circuit");
}
