//! Failover, circuit breakers and rate limits with sandbox fault injection.

mod common;

use std::time::Duration;

use common::{order_no, Harness};
use serde_json::{json, Value};

/// payroute with the sandbox, the sample's channels (plus `extra` channel settings for
/// pingpp) and the given rules.
async fn with_rules(rules: &str, pingpp_extra: &str, top: &str) -> (Harness, tempfile::TempDir) {
    let sample = common::sample();
    let channels = &sample[..sample.find("\n# Rules are tried").unwrap()];
    // Without the sample's maintenance window, so that one-channel rules are valid all week.
    let channels = channels.replace(
        "    maintenance:\n      - { days: [sun], start: \"04:00\", end: \"04:10\", timezone: Asia/Shanghai }\n",
        "",
    );
    let channels = channels.replace(
        "    fee: { rate: \"0.38%\" }\n",
        &format!("    fee: {{ rate: \"0.38%\" }}\n{pingpp_extra}"),
    );
    // A patient breaker on the direct channel: these tests look at failover, not at the breaker.
    let channels = channels.replace(
        "    timeouts: { connect_ms: 3000, request_ms: 10000 }\n",
        "    timeouts: { connect_ms: 3000, request_ms: 10000 }\n    circuit: { consecutive_failures: 100, min_calls: 1000 }\n",
    );
    let (dir, config) = common::config_dir(&format!("{top}{channels}\nrules:\n{rules}"));
    let h = Harness::start_with(|args| args.config = config).await;
    (h, dir)
}

/// The channel and outcome of the payment's attempt `i`.
fn attempt(payment: &Value, i: usize) -> (&str, &str) {
    let a = &payment["route"]["attempts"][i];
    (
        a["channel"].as_str().unwrap_or_default(),
        a["outcome"].as_str().unwrap_or_default(),
    )
}

/// Why the payment's attempt `i` ended as it did.
fn reason(payment: &Value, i: usize) -> &str {
    payment["route"]["attempts"][i]["reason"]
        .as_str()
        .unwrap_or_default()
}

/// The first late payment's refund succeeded.
fn late_refunded(payment: &Value) -> bool {
    payment["late_payments"][0]["refund_status"] == "succeeded"
}

fn qr(no: &str, amount: u64) -> Value {
    json!({"out_trade_no": no, "amount": amount, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "failover"})
}

#[tokio::test]
async fn refused_first_channel_fails_over_and_shows_both_attempts() {
    let h = Harness::start().await;
    h.fault("pingpp", json!({"kind": "refuse"})).await;
    let no = order_no("FO");
    let r = h.api("POST", "/v1/payments", Some(qr(&no, 800))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], "alipay");
    assert_eq!(attempt(&r.json, 0), ("pingpp", "declined"));
    assert!(reason(&r.json, 0).contains("not sent"));
    assert_eq!(attempt(&r.json, 1), ("alipay", "accepted"));
    let m = h.admin("GET", "/metrics", None).await.text;
    assert!(
        m.contains("payroute_failovers_total{from=\"pingpp\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn unknown_outcome_on_a_prepay_scene_abandons_and_a_later_payment_there_is_a_refunded_duplicate(
) {
    let rules = "  - name: small\n    match: { method: [alipay], scene: [qr] }\n    channels: [pingpp, alipay]\n  - name: rest\n    channels: [alipay, wechatpay]\n";
    let (h, _dir) = with_rules(rules, "", "refund_duplicates: true\n").await;
    // Ping++ creates the charge but its answer is garbled: outcome unknown.
    h.fault("pingpp", json!({"kind": "bad_signature"})).await;
    let no = order_no("AB");
    let r = h.api("POST", "/v1/payments", Some(qr(&no, 800))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], "alipay");
    assert_eq!(attempt(&r.json, 0), ("pingpp", "abandoned"));
    assert_eq!(attempt(&r.json, 1).1, "accepted");
    h.clear_faults("pingpp").await;
    // Ping++ cannot close it, so the customer can still pay the abandoned charge.
    let paid = h.pay("pingpp", &no).await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    let v = h
        .wait_for(&no, "the duplicate refunded", late_refunded)
        .await;
    assert_eq!(v["anomalies"], json!(["duplicate_payment:pingpp"]), "{v}");
    let late = &v["late_payments"][0];
    assert_eq!(
        (
            late["channel"].as_str(),
            late["kind"].as_str(),
            late["refund_status"].as_str()
        ),
        (Some("pingpp"), Some("duplicate"), Some("succeeded")),
        "the duplicate was refunded: {v}"
    );
    assert_eq!(
        h.pingpp().order_view(&no).unwrap()["refunded"],
        800,
        "the duplicate was refunded"
    );
    let m = h.admin("GET", "/metrics", None).await.text;
    assert!(
        m.contains("payroute_duplicate_payments_total{channel=\"pingpp\"} 1"),
        "{m}"
    );
    // The order itself is the Alipay one, still pending there.
    let q = h.payment(&no).await;
    assert_eq!(q["status"], "pending");
    assert!(reason(&q, 0).contains("expires at the channel"), "{q}");
}

#[tokio::test]
async fn an_abandoned_attempt_is_closed_at_its_channel() {
    let rules = "  - name: direct-first\n    match: { method: [alipay], scene: [qr] }\n    channels: [alipay, pingpp]\n  - name: rest\n    channels: [alipay, wechatpay]\n";
    let (h, _dir) = with_rules(rules, "", "").await;
    h.fault("alipay", json!({"kind": "bad_signature"})).await;
    let no = order_no("AC");
    let r = h.api("POST", "/v1/payments", Some(qr(&no, 1500))).await;
    assert_eq!(r.json["channel"], "pingpp", "{}", r.text);
    // The QR code at Alipay was never handed out; say someone scanned it all the same, so that
    // the trade exists there and the background close has something to close.
    let scan = h
        .admin("POST", &format!("/sandbox/alipay/payments/{no}/scan"), None)
        .await;
    assert_eq!(scan.status, 200, "{}", scan.text);
    h.clear_faults("alipay").await;
    h.wait_for(&no, "closed at the channel", |v| {
        reason(v, 0).contains("closed at the channel")
    })
    .await;
    assert_eq!(
        h.alipay().order_view(&no).unwrap().trade_status,
        "TRADE_CLOSED",
        "closed in the background"
    );
    assert_eq!(h.pay("alipay", &no).await.status, 409);
}

#[tokio::test]
async fn barcode_never_moves_after_an_unknown_outcome() {
    let rules = "  - name: barcode\n    match: { scene: [barcode] }\n    channels: [alipay, pingpp]\n  - name: rest\n    channels: [alipay]\n";
    let (h, _dir) = with_rules(rules, "", "").await;
    h.fault("alipay", json!({"kind": "bad_signature"})).await;
    let no = order_no("BN");
    let body = json!({"out_trade_no": no, "amount": 900, "currency": "CNY", "method": "alipay", "scene": "barcode", "subject": "till", "auth_code": "251234567890123456"});
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    // Never another channel; the outcome stays unknown while the channel cannot be trusted.
    assert_eq!(r.status, 502, "{}", r.text);
    let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
    assert_eq!(q.json["route"]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(q.json["channel"], "alipay");
    // The unconfirmable payment was reversed at the channel (cancel), and is never kept.
    h.clear_faults("alipay").await;
    assert_eq!(
        h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"],
        "closed"
    );
    let t = h.alipay().order_view(&no).unwrap();
    assert_eq!((t.trade_status, t.refunded), ("TRADE_CLOSED", 900));
    assert_eq!(h.calls("alipay.trade.cancel").await, 1);
}

#[tokio::test]
async fn breaker_opens_routes_around_probes_and_closes() {
    let extra = "    circuit: { consecutive_failures: 2, open_secs: 1 }\n";
    let rules = "  - name: small\n    match: { method: [alipay], scene: [qr] }\n    channels: [pingpp, alipay]\n  - name: rest\n    channels: [alipay, wechatpay]\n";
    let (h, _dir) = with_rules(rules, extra, "").await;
    h.fault("pingpp", json!({"kind": "refuse"})).await;
    for _ in 0..2 {
        let r = h
            .api("POST", "/v1/payments", Some(qr(&order_no("BR"), 800)))
            .await;
        assert_eq!(r.json["channel"], "alipay", "{}", r.text);
    }
    let m = h.admin("GET", "/metrics", None).await.text;
    assert!(
        m.contains("payroute_channel_circuit_state{channel=\"pingpp\"} 2"),
        "open: {m}"
    );
    // Open: pingpp is not even tried.
    let r = h
        .api("POST", "/v1/payments", Some(qr(&order_no("BR"), 800)))
        .await;
    assert_eq!(
        r.json["route"]["attempts"].as_array().unwrap().len(),
        1,
        "{}",
        r.text
    );
    let ex = h
        .admin(
            "GET",
            "/admin/explain?method=alipay&scene=qr&amount=800",
            None,
        )
        .await;
    assert!(ex.text.contains("circuit_open"), "{}", ex.text);
    // Fault cleared, cool-down over: a probe goes through and closes the circuit.
    h.clear_faults("pingpp").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = h
        .api("POST", "/v1/payments", Some(qr(&order_no("BR"), 800)))
        .await;
    assert_eq!(r.json["channel"], "pingpp", "{}", r.text);
    let m = h.admin("GET", "/metrics", None).await.text;
    assert!(
        m.contains("payroute_channel_circuit_state{channel=\"pingpp\"} 0"),
        "closed: {m}"
    );
}

#[tokio::test]
async fn a_saturated_channel_spills_to_the_next_and_a_lone_one_answers_429() {
    let extra = "    rate_limit: { per_second: 1, burst: 1 }\n";
    let rules = "  - name: small\n    match: { method: [alipay], scene: [qr], max_amount: 1000 }\n    channels: [pingpp, alipay]\n  - name: wechat-agg\n    match: { method: [wechat], scene: [qr] }\n    channels: [pingpp]\n  - name: rest\n    channels: [alipay, wechatpay]\n";
    let (h, _dir) = with_rules(rules, extra, "").await;
    let first = h
        .api("POST", "/v1/payments", Some(qr(&order_no("RL"), 800)))
        .await;
    assert_eq!(first.json["channel"], "pingpp", "{}", first.text);
    let second = h
        .api("POST", "/v1/payments", Some(qr(&order_no("RL"), 800)))
        .await;
    assert_eq!(second.json["channel"], "alipay", "spilled: {}", second.text);
    let wx = json!({"out_trade_no": order_no("RW"), "amount": 800, "currency": "CNY", "method": "wechat", "scene": "qr", "subject": "limited"});
    let r = h.api("POST", "/v1/payments", Some(wx)).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (429, json!("rate_limited")),
        "{}",
        r.text
    );
    assert!(r.json["retry_after"].as_u64().unwrap() >= 1);
    let m = h.admin("GET", "/metrics", None).await.text;
    assert!(
        m.contains("payroute_rate_limited_total{channel=\"pingpp\"} 2"),
        "{m}"
    );
    // Routing and `explain` see the spent limit (without spending quota to find out).
    let explain = h
        .admin(
            "GET",
            "/admin/explain?method=wechat&scene=qr&amount=800",
            None,
        )
        .await;
    assert!(explain.text.contains("rate_limited"), "{}", explain.text);
}

fn faults() -> Vec<(&'static str, Value)> {
    vec![
        ("refuse", json!({"kind": "refuse"})),
        ("timeout", json!({"kind": "timeout"})),
        ("http_500", json!({"kind": "http_500"})),
        ("rate_limit", json!({"kind": "rate_limit"})),
        ("latency", json!({"kind": "latency", "ms": 1500})),
        ("bad_signature", json!({"kind": "bad_signature"})),
    ]
}

/// The direct channel answers within 400 ms or not at all.
async fn matrix_harness(rules: &str) -> (Harness, tempfile::TempDir) {
    let (h, dir) = with_rules(rules, "", "").await;
    let path = dir.path().join("routes.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("request_ms: 10000", "request_ms: 400");
    std::fs::write(&path, &text).unwrap();
    // Reloaded by the watcher; wait until the short timeout is active.
    let want = payroute::crypto::sha256_hex(text.as_bytes());
    for _ in 0..100 {
        if h.run.payments.snapshot().hash == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(h.run.payments.snapshot().hash, want);
    (h, dir)
}

async fn paid_at_alipay(h: &Harness, no: &str) -> bool {
    h.alipay()
        .order_view(no)
        .is_some_and(|t| t.trade_status == "TRADE_SUCCESS" && t.refunded == 0)
}

async fn paid_at_pingpp(h: &Harness, no: &str) -> bool {
    h.pingpp()
        .order_view(no)
        .is_some_and(|v| v["paid"] == true && v["refunded"] == 0)
}

#[tokio::test]
async fn fault_matrix_qr_fails_over_and_never_two_paid_orders() {
    let rules = "  - name: direct-first\n    match: { method: [alipay], scene: [qr] }\n    channels: [alipay, pingpp]\n  - name: rest\n    channels: [alipay, wechatpay]\n";
    let (h, _dir) = matrix_harness(rules).await;
    for (name, fault) in faults() {
        h.fault("alipay", fault).await;
        let no = order_no("MQ");
        let r = h.api("POST", "/v1/payments", Some(qr(&no, 1500))).await;
        assert_eq!(
            (r.status, r.json["channel"].as_str()),
            (201, Some("pingpp")),
            "{name}: {}",
            r.text
        );
        let first = attempt(&r.json, 0).1;
        let expected = if name == "refuse" {
            "declined"
        } else {
            "abandoned"
        };
        assert_eq!(first, expected, "{name}");
        h.clear_faults("alipay").await;
        if expected == "abandoned" {
            // Closed there, or found not to exist there (a QR code nobody scanned).
            h.wait_for(&no, &format!("{name}: the abandoned attempt closed"), |v| {
                reason(v, 0).starts_with("abandoned;")
            })
            .await;
        }
        // The customer pays the order payroute handed out, and (say the abandoned QR code got
        // out all the same) the abandoned one too if the channel still takes it.
        let abandoned_paid = h.pay("alipay", &no).await.status == 200;
        assert_eq!(h.pay("pingpp", &no).await.status, 200, "{name}");
        h.wait_status(&no, "succeeded").await;
        if abandoned_paid {
            h.wait_for(
                &no,
                &format!("{name}: the duplicate refunded"),
                late_refunded,
            )
            .await;
        }
        let paid =
            usize::from(paid_at_alipay(&h, &no).await) + usize::from(paid_at_pingpp(&h, &no).await);
        assert_eq!(paid, 1, "{name}: exactly one paid order");
    }
}

#[tokio::test]
async fn fault_matrix_barcode_never_moves_and_keeps_no_unconfirmed_money() {
    let rules = "  - name: till\n    match: { scene: [barcode] }\n    channels: [alipay, pingpp]\n  - name: rest\n    channels: [alipay, wechatpay]\n";
    let (h, _dir) = matrix_harness(rules).await;
    for (name, fault) in faults() {
        h.fault("alipay", fault).await;
        let no = order_no("MB");
        let body = json!({"out_trade_no": no, "amount": 900, "currency": "CNY", "method": "alipay", "scene": "barcode", "subject": "till", "auth_code": "251234567890123456"});
        let r = h.api("POST", "/v1/payments", Some(body.clone())).await;
        let expected = if name == "refuse" { 503 } else { 502 };
        assert_eq!(r.status, expected, "{name}: {}", r.text);
        h.clear_faults("alipay").await;
        // Resolution: the same request again (never re-sent to the channel), or a query.
        let again = h.api("POST", "/v1/payments", Some(body)).await;
        let status = h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            ["closed", "failed", "succeeded"].contains(&status.as_str()),
            "{name}: {status} {}",
            again.text
        );
        let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
        for a in q.json["route"]["attempts"].as_array().unwrap() {
            assert_ne!(
                a["channel"], "pingpp",
                "{name}: a barcode payment never moves"
            );
        }
        assert!(h.pingpp().order_view(&no).is_none());
        // Money is kept only when payroute says succeeded.
        assert_eq!(
            paid_at_alipay(&h, &no).await,
            status == "succeeded",
            "{name}: {status}"
        );
        assert!(
            h.calls("alipay.trade.pay").await <= 6,
            "trade.pay is never re-sent for the same order"
        );
    }
}

#[tokio::test]
async fn fault_matrix_refunds_never_move_and_never_apply_twice() {
    let rules = "  - name: direct\n    channels: [alipay, wechatpay]\n";
    let (h, _dir) = matrix_harness(rules).await;
    for (name, fault) in faults() {
        let no = order_no("MR");
        assert_eq!(
            h.api("POST", "/v1/payments", Some(qr(&no, 2000)))
                .await
                .status,
            201
        );
        h.pay("alipay", &no).await;
        h.wait_status(&no, "succeeded").await;
        h.fault("alipay", fault).await;
        let refund = json!({"out_refund_no": format!("{no}R"), "amount": 500, "reason": "matrix"});
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{no}/refunds"),
                Some(refund.clone()),
            )
            .await;
        assert_eq!(
            (r.status, r.json["status"].as_str()),
            (201, Some("pending")),
            "{name}: {}",
            r.text
        );
        h.clear_faults("alipay").await;
        // Resolved with the same refund number, by query or by repeating the request.
        let q = h.api("GET", &format!("/v1/refunds/{no}R"), None).await;
        let again = h
            .api("POST", &format!("/v1/payments/{no}/refunds"), Some(refund))
            .await;
        let final_status =
            h.api("GET", &format!("/v1/refunds/{no}R"), None).await.json["status"].clone();
        assert_eq!(
            final_status, "succeeded",
            "{name}: {} / {}",
            q.text, again.text
        );
        let t = h.alipay().order_view(&no).unwrap();
        assert_eq!(
            (t.refunded, t.refunds.len()),
            (500, 1),
            "{name}: applied exactly once"
        );
        assert_eq!(
            h.api("GET", &format!("/v1/payments/{no}"), None).await.json["refunded_amount"],
            500
        );
    }
}
