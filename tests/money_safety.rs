//! Issue 12's money points: a close that holds (and the late-payment guard behind it), a
//! prepay order that lost its action, barcode settlement past open breakers, and credential
//! refusals that fail over. Each scenario runs against the real simulators.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::own_sandbox;
use common::{order_no, qr, repo, Harness};
use payroute::crypto::SymmetricKey;
use payroute::sandbox::{fresh_key, SimChannel};
use serde_json::{json, Value};

fn wechat_qr(no: &str, amount: u64) -> Value {
    json!({"out_trade_no": no, "amount": amount, "currency": "CNY", "method": "wechat", "scene": "qr", "subject": "late"})
}

fn refunded(v: &Value) -> bool {
    v["late_payments"][0]["refund_status"] == "succeeded"
}

fn recorded(v: &Value) -> bool {
    !v["late_payments"].is_null()
}

/// One case of the late-payment scenario: the channel, the create body, whether the channel
/// confirms the close, and whether the customer's payment must force its way past a close
/// the channel did confirm (a payment racing the close).
struct LateCase {
    channel: &'static str,
    body: Value,
    confirmed: bool,
}

#[tokio::test]
async fn a_payment_after_close_is_refunded_automatically_on_every_channel() {
    let h = Harness::start().await;
    let cases = [
        // An Alipay QR code nobody scanned yet: close and cancel find no trade, and the code
        // stays payable until it expires.
        LateCase {
            channel: "alipay",
            body: qr(&order_no("LA"), 1300),
            confirmed: false,
        },
        // Ping++ cannot close a charge at all.
        LateCase {
            channel: "pingpp",
            body: qr(&order_no("LP"), 800),
            confirmed: false,
        },
        // WeChat Pay confirms the close; the payment races it.
        LateCase {
            channel: "wechatpay",
            body: wechat_qr(&order_no("LW"), 2500),
            confirmed: true,
        },
    ];
    for case in cases {
        let no = case.body["out_trade_no"].as_str().unwrap().to_string();
        let amount = case.body["amount"].as_u64().unwrap();
        let c = h.api("POST", "/v1/payments", Some(case.body.clone())).await;
        assert_eq!(
            (c.status, c.json["channel"].as_str()),
            (201, Some(case.channel)),
            "{}",
            c.text
        );
        let closed = h
            .api("POST", &format!("/v1/payments/{no}/close"), None)
            .await;
        assert_eq!(
            (
                closed.status,
                closed.json["status"].clone(),
                closed.json["close_confirmed"].clone()
            ),
            (200, json!("closed"), json!(case.confirmed)),
            "{}: {}",
            case.channel,
            closed.text
        );
        let path = if case.confirmed {
            format!(
                "/sandbox/{}/payments/{no}/pay?even_if_closed=true",
                case.channel
            )
        } else {
            format!("/sandbox/{}/payments/{no}/pay", case.channel)
        };
        let paid = h.admin("POST", &path, None).await;
        assert_eq!(
            paid.status, 200,
            "{}: the customer pays: {}",
            case.channel, paid.text
        );

        let v = h.wait_for(&no, "refunded", refunded).await;
        assert_eq!(v["status"], "closed", "{v}");
        assert_eq!(v["anomalies"], json!(["paid_after_close"]), "{v}");
        let late = &v["late_payments"][0];
        assert_eq!(late["channel"], case.channel);
        assert_eq!(late["kind"], "after_close");
        assert_eq!(late["amount"], amount);
        assert!(
            late["out_refund_no"]
                .as_str()
                .unwrap()
                .starts_with(&format!("LP_{no}_")),
            "{late}"
        );
        // The money is back with the customer, at the channel.
        let at = h.at_channel(case.channel, &no).await;
        assert_eq!(at.json["refunded"], amount, "{}: {}", case.channel, at.text);

        // The channel repeats its notification: nothing is refunded twice.
        let again = h
            .admin(
                "POST",
                &format!("/sandbox/{}/payments/{no}/notify", case.channel),
                None,
            )
            .await;
        assert_eq!(again.status, 200, "{}", again.text);
        let v = h.payment(&no).await;
        assert_eq!(v["late_payments"].as_array().unwrap().len(), 1, "{v}");
        let at = h.at_channel(case.channel, &no).await;
        assert_eq!(at.json["refunded"], amount, "refunded once: {}", at.text);
    }
    let m = h.admin("GET", "/metrics", None).await.text;
    for channel in ["alipay", "pingpp", "wechatpay"] {
        for want in [
            format!("payroute_late_payments_total{{channel=\"{channel}\",kind=\"after_close\"}} 1"),
            format!("payroute_late_payment_refunds_total{{channel=\"{channel}\",result=\"succeeded\"}} 1"),
        ] {
            assert!(m.contains(&want), "{want}");
        }
    }
}

/// An Alipay QR code nobody scanned, or a cashier order (app, h5, page) nobody opened, is no
/// trade at Alipay yet (alipay.md §8.1): close finds none and is followed by cancel.
#[tokio::test]
async fn alipay_close_of_an_unscanned_qr_code_or_unopened_cashier_is_followed_by_cancel() {
    let h = Harness::start().await;
    for scene in ["qr", "app", "h5", "page"] {
        let no = order_no("AC");
        let mut body = qr(&no, 1300);
        body["scene"] = json!(scene);
        let created = h.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(
            created.json["channel"], "alipay",
            "{scene}: {}",
            created.text
        );
        let (close, cancel) = (
            h.calls("alipay.trade.close").await,
            h.calls("alipay.trade.cancel").await,
        );
        let c = h
            .api("POST", &format!("/v1/payments/{no}/close"), None)
            .await;
        assert_eq!(c.json["close_confirmed"], false, "{scene}: {}", c.text);
        assert_eq!(h.calls("alipay.trade.close").await, close + 1, "{scene}");
        assert_eq!(
            h.calls("alipay.trade.cancel").await,
            cancel + 1,
            "{scene}: TRADE_NOT_EXIST is followed by cancel"
        );
        // A repeated close answers from the ledger.
        let again = h
            .api("POST", &format!("/v1/payments/{no}/close"), None)
            .await;
        assert_eq!(
            (again.status, again.json["status"].clone()),
            (200, json!("closed")),
            "{scene}"
        );
        assert_eq!(h.calls("alipay.trade.cancel").await, cancel + 1, "{scene}");
    }
}

#[tokio::test]
async fn a_late_payment_found_by_a_query_is_refunded_too() {
    let h = Harness::start().await;
    let no = order_no("LQ");
    h.api("POST", "/v1/payments", Some(qr(&no, 800))).await;
    let c = h
        .api("POST", &format!("/v1/payments/{no}/close"), None)
        .await;
    assert_eq!(c.json["close_confirmed"], false, "{}", c.text);
    // The webhook never arrives; the app's next query finds the payment.
    h.notifications("pingpp", false).await;
    h.pay("pingpp", &no).await;
    let v = h.wait_for(&no, "refunded", refunded).await;
    assert_eq!(v["late_payments"][0]["amount"], 800);
    let at = h.at_channel("pingpp", &no).await;
    assert_eq!(at.json["refunded"], 800, "{}", at.text);
}

#[tokio::test]
async fn with_the_guard_off_a_late_payment_is_recorded_but_not_refunded() {
    let (_dir, config) =
        common::config_dir(&format!("refund_duplicates: false\n{}", common::sample()));
    let h = Harness::start_with(|args| args.config = config).await;
    let no = order_no("LO");
    h.api("POST", "/v1/payments", Some(qr(&no, 800))).await;
    h.api("POST", &format!("/v1/payments/{no}/close"), None)
        .await;
    h.pay("pingpp", &no).await;
    let v = h.wait_for(&no, "recorded", recorded).await;
    assert_eq!(v["late_payments"][0]["refund_status"], "off", "{v}");
    assert_eq!(v["anomalies"], json!(["paid_after_close"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = h.at_channel("pingpp", &no).await;
    assert_eq!(at.json["refunded"], 0, "{}", at.text);
}

#[tokio::test]
async fn a_prepay_order_that_lost_its_action_gets_it_when_the_create_is_repeated() {
    let h = Harness::start().await;
    let no = order_no("LA");
    let body = wechat_qr(&no, 2500);
    // WeChat Pay creates the order, but its answer cannot be trusted.
    h.fault("wechatpay", json!({"kind": "bad_signature"})).await;
    let r = h.api("POST", "/v1/payments", Some(body.clone())).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (502, json!("channel_outcome_unknown")),
        "{}",
        r.text
    );
    h.clear_faults("wechatpay").await;
    // A query finds the order waiting at the channel: adopted, but without a QR code.
    let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
    assert_eq!(
        q.json["route"]["attempts"][0]["outcome"], "accepted",
        "{}",
        q.text
    );
    assert!(q.json["action"].is_null(), "{}", q.text);
    let native = |h: &Harness| {
        h.wechat()
            .calls()
            .get("POST /v3/pay/transactions/native")
            .copied()
            .unwrap_or(0)
    };
    let native_before = native(&h);
    // The app repeats the create: the channel is asked again with the same order number.
    let again = h.api("POST", "/v1/payments", Some(body.clone())).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json["action"]["type"], "qr_code", "{}", again.text);
    assert!(again.json["action"]["code_url"]
        .as_str()
        .unwrap()
        .starts_with("weixin://"));
    assert_eq!(native(&h), native_before + 1, "asked again");
    // From now on a repeat answers from the ledger.
    let third = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(third.json["action"], again.json["action"]);
    assert_eq!(native(&h), native_before + 1);
    // And the customer can pay it.
    h.pay("wechatpay", &no).await;
    h.wait_status(&no, "succeeded").await;
}

fn barcode(no: &str, auth_code: &str) -> Value {
    json!({"out_trade_no": no, "amount": 1500, "currency": "CNY", "method": "alipay", "scene": "barcode", "subject": "bc", "auth_code": auth_code})
}

/// payroute with slow barcode polling (4 queries, 0.4 s apart).
async fn slow_barcode_harness() -> Arc<Harness> {
    let h = Harness::start_with(|args| {
        args.barcode_poll_ms = 400;
        args.barcode_poll_attempts = 4;
    })
    .await;
    Arc::new(h)
}

/// Starts a barcode create in the background and waits until the simulator has the trade.
async fn start_barcode(
    h: &Arc<Harness>,
    no: &str,
    auth_code: &str,
) -> tokio::task::JoinHandle<common::Reply> {
    let create = tokio::spawn({
        let (h, body) = (h.clone(), barcode(no, auth_code));
        async move { h.api("POST", "/v1/payments", Some(body)).await }
    });
    for _ in 0..100 {
        if h.alipay().order_view(no).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    create
}

#[tokio::test]
async fn barcode_reversal_is_not_held_back_by_an_open_circuit_nor_holds_the_order_lock() {
    let h = slow_barcode_harness().await;
    // The customer is still confirming (codes starting 28) and never does: reversed although
    // the circuit is open the whole time.
    let no = order_no("BR");
    let create = start_barcode(&h, &no, "2800000000000001").await;
    h.open_circuit("alipay");
    // A query answers while the poll is running (the order's lock is not held by the poll).
    let q = h.api("GET", &format!("/v1/payments/{no}"), None).await;
    assert_eq!(q.json["status"], "pending", "{}", q.text);
    assert!(
        !create.is_finished(),
        "the query answered before the poll ended"
    );
    let r = create.await.unwrap();
    assert_eq!(r.json["failure"]["code"], "payment_reversed", "{}", r.text);
    assert!(
        h.calls("alipay.trade.query").await >= 1,
        "queried through the open circuit"
    );
    assert_eq!(
        h.calls("alipay.trade.cancel").await,
        1,
        "reversed through the open circuit"
    );
    assert_eq!(
        h.alipay().order_view(&no).unwrap().trade_status,
        "TRADE_CLOSED"
    );
    let m = h.admin("GET", "/metrics", None).await.text;
    assert!(
        m.contains("payroute_channel_requests_total{channel=\"alipay\",operation=\"query\",outcome=\"not_sent\"} 1"),
        "the app's query was held back by the open circuit and counted as not_sent"
    );
}

#[tokio::test]
async fn barcode_payment_is_confirmed_through_an_open_circuit() {
    let h = slow_barcode_harness().await;
    let paid = order_no("BP");
    let create = start_barcode(&h, &paid, "2800000000000002").await;
    h.open_circuit("alipay");
    h.pay("alipay", &paid).await;
    let r = create.await.unwrap();
    assert_eq!(r.json["status"], "succeeded", "{}", r.text);
}

#[tokio::test]
async fn recovery_settles_barcode_payments_in_doubt_concurrently() {
    use payroute::ledger::{Attempt, Ledger, Order, OrderRequest, RedbLedger};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let n = 6;
    let created = chrono::Utc::now() - chrono::Duration::minutes(1);
    {
        // Six barcode payments a crash left in flight at the channel.
        let ledger = RedbLedger::open(&data).unwrap();
        for i in 0..n {
            let req = OrderRequest {
                out_trade_no: format!("RECOVERBC{i:04}"),
                amount: payroute::money::Fen(1500),
                currency: payroute::domain::Currency::Cny,
                method: payroute::domain::PayMethod::Alipay,
                scene: payroute::domain::Scene::Barcode,
                subject: "bc".into(),
                description: None,
                payer_id: None,
                auth_code: Some("2800000000000003".into()),
                client_ip: None,
                expires_at: None,
                metadata: Default::default(),
                split: false,
            };
            let mut o = Order::pending(req, "fp".into(), None, created);
            o.channel = Some("alipay".into());
            o.attempts.push(Attempt::in_flight("alipay", created));
            ledger.insert_order(o).await.unwrap();
        }
    }
    let mut args = common::test_args(data);
    args.barcode_poll_ms = 500;
    args.barcode_poll_attempts = 4;
    let started = std::time::Instant::now();
    let h = Harness::start_args(&args).await;
    for i in 0..n {
        h.wait_status(&format!("RECOVERBC{i:04}"), "failed").await;
    }
    // One settlement takes 4 polls of 0.5 s; six in series would take 12 s.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "settled concurrently: {took:?}"
    );
    assert_eq!(h.calls("alipay.trade.cancel").await, n as u64);
}

/// A sandbox whose Alipay and WeChat Pay simulators know other merchant keys than the ones
/// payroute signs with (credentials refused), with Ping++ as the fallback.
#[tokio::test]
async fn refused_credentials_fail_over_on_every_channel() {
    let keys = repo().join("sandbox/keys");
    let platform = fresh_key();
    let stranger = fresh_key().public_key();
    let apiv3 = "TestApiV3Key0123456789abcdefABCD";
    let sim = |name: &str, kind: &str| SimChannel {
        app_id: if kind == "pingpp" {
            "app_1Gqj58ynP0mHeX1q".into()
        } else {
            "wxd678efh567hg6787".into()
        },
        mchid: "1900000001".into(),
        merchant_serial: "3775B6A45ACD588826D15E583A95F5DD".into(),
        platform_key_id: "PUB_KEY_ID_0119000000012024010100000000000001".into(),
        apiv3_key: Some(Arc::new(SymmetricKey::from_text(apiv3).unwrap())),
        secret_key: Some("sk_test_therightone".into()),
        ..own_sandbox::channel(
            name,
            kind,
            if kind == "pingpp" {
                own_sandbox::merchant_public("pingpp_merchant_private.pem")
            } else {
                stranger.clone()
            },
            platform.clone(),
        )
    };
    let sandbox = own_sandbox::start(vec![
        sim("alipay", "alipay"),
        sim("wechatpay", "wechatpay"),
        sim("pingpp", "pingpp"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("platform.pem"), platform.public_key().to_pem()).unwrap();
    std::fs::write(d.join("apiv3.key"), apiv3).unwrap();
    std::fs::write(d.join("secret.key"), "sk_test_therightone\n").unwrap();
    let args = common::configured_args(
        d,
        &format!(
            "channels:\n  alipay:\n    kind: alipay\n    endpoint: {alipay}\n    app_id: wxd678efh567hg6787\n    \
             app_private_key: {{ file: {keys}/alipay_app_private.pem }}\n    alipay_public_key: {{ file: platform.pem }}\n  \
             wechatpay:\n    kind: wechatpay\n    endpoint: {wechat}\n    mchid: \"1900000001\"\n    app_id: wxd678efh567hg6787\n    \
             merchant_private_key: {{ file: {keys}/wechat_merchant_private.pem }}\n    merchant_serial_no: 3775B6A45ACD588826D15E583A95F5DD\n    \
             apiv3_key: {{ file: apiv3.key }}\n    wechatpay_public_key: {{ file: platform.pem }}\n    \
             wechatpay_public_key_id: PUB_KEY_ID_0119000000012024010100000000000001\n  \
             pingpp:\n    kind: pingpp\n    endpoint: {pingpp}\n    app_id: app_1Gqj58ynP0mHeX1q\n    \
             secret_key: {{ file: secret.key }}\n    merchant_private_key: {{ file: {keys}/pingpp_merchant_private.pem }}\n    \
             pingpp_public_key: {{ file: platform.pem }}\n\
             rules:\n  - name: alipay-first\n    match: {{ method: [alipay] }}\n    channels: [alipay, pingpp]\n  \
             - name: wechat-first\n    match: {{ method: [wechat] }}\n    channels: [wechatpay, pingpp]\n",
            alipay = sandbox.endpoint("alipay").unwrap(),
            wechat = sandbox.endpoint("wechatpay").unwrap(),
            pingpp = sandbox.endpoint("pingpp").unwrap(),
            keys = keys.display(),
        ),
    );
    let h = Harness::start_args(&args).await;
    for (first, body) in [
        ("alipay", qr(&order_no("CA"), 1300)),
        ("wechatpay", wechat_qr(&order_no("CW"), 1300)),
    ] {
        let r = h.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(
            (r.status, r.json["channel"].as_str()),
            (201, Some("pingpp")),
            "{first}: {}",
            r.text
        );
        let a = &r.json["route"]["attempts"][0];
        assert_eq!(
            (a["channel"].as_str(), a["outcome"].as_str()),
            (Some(first), Some("declined")),
            "{}",
            r.text
        );
        assert!(
            a["reason"].as_str().unwrap().contains("not accepted"),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn an_open_circuit_on_the_only_candidate_is_a_503_with_retry_after() {
    let h = Harness::start().await;
    h.open_circuit("wechatpay");
    let create = |amount: u64| {
        h.api(
            "POST",
            "/v1/payments",
            Some(wechat_qr(&order_no("OC"), amount)),
        )
    };
    let r = create(2500).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (503, json!("channel_unavailable")),
        "{}",
        r.text
    );
    let wait = r.json["retry_after"].as_u64().unwrap();
    assert!((1..=30).contains(&wait), "{}", r.text);
    // The header says the same, for clients and proxies that read only headers.
    let header = r
        .headers
        .get(http::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap());
    assert_eq!(header, Some(wait.to_string().as_str()), "{:?}", r.headers);
    assert!(r.text.contains("circuit_open"), "{}", r.text);
    // What repeating cannot fix stays a 422.
    let r = create(30_000_000).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (422, json!("no_channel")),
        "{}",
        r.text
    );
}

/// Starts payroute once the previous instance's background work (which still holds the ledger
/// for a moment after `stop`) has let go of the data directory.
async fn start_when_released(args: &payroute::settings::ServeArgs) -> payroute::app::Running {
    for _ in 0..100 {
        match payroute::app::start(args).await {
            Ok(run) => return run,
            Err(e) if format!("{e:#}").contains("already open") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e:#}"),
        }
    }
    panic!("the ledger was never released");
}

/// A late payment whose refund could not be sent before payroute stopped is refunded by the
/// next process's recovery, exactly once (the simulator outlives both processes).
#[tokio::test]
async fn a_late_payment_refund_left_pending_is_finished_after_a_restart_exactly_once() {
    let platform = fresh_key();
    let sandbox = own_sandbox::start(vec![SimChannel {
        app_id: "2021000000000001".into(),
        ..own_sandbox::channel(
            "alipay",
            "alipay",
            own_sandbox::merchant_public("alipay_app_private.pem"),
            platform.clone(),
        )
    }])
    .await;
    let sim = sandbox.alipay("alipay").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("platform.pem"),
        platform.public_key().to_pem(),
    )
    .unwrap();
    let mut args = common::configured_args(
        dir.path(),
        &format!(
            "channels:\n  alipay:\n    kind: alipay\n    endpoint: {}\n    app_id: \"2021000000000001\"\n    \
             app_private_key: {{ file: {} }}\n    alipay_public_key: {{ file: platform.pem }}\n",
            sandbox.endpoint("alipay").unwrap(),
            repo().join("sandbox/keys/alipay_app_private.pem").display()
        ),
    );
    args.abandon_retry_ms = 50;

    let first = Harness::start_args(&args).await;
    let no = order_no("LR");
    first.api("POST", "/v1/payments", Some(qr(&no, 1300))).await;
    let c = first
        .api("POST", &format!("/v1/payments/{no}/close"), None)
        .await;
    assert_eq!(c.json["close_confirmed"], false, "{}", c.text);
    // The gateway fails every call from now on, except that the customer can still pay.
    sim.faults()
        .set(serde_json::from_value(json!({"kind": "http_500"})).unwrap())
        .await;
    sim.pay(&no).unwrap();
    let v = first.wait_for(&no, "recorded", recorded).await;
    assert_eq!(v["late_payments"][0]["refund_status"], "pending", "{v}");
    first.run.stop().await;
    // The stopped process's retries give up while the gateway still fails (it lets go of the
    // ledger then): only recovery can finish the refund.
    let data = dir.path().join("data");
    let mut released = false;
    for _ in 0..100 {
        if payroute::ledger::RedbLedger::open(&data).is_ok() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released, "the first process's retries ended");
    assert_eq!(
        sim.order_view(&no).unwrap().refunded,
        0,
        "nothing refunded yet"
    );

    sim.faults().clear().await;
    assert_eq!(
        sim.order_view(&no).unwrap().refunded,
        0,
        "nothing refunded yet"
    );
    let second = Harness::from_running(start_when_released(&args).await);
    let v = second
        .wait_for(&no, "refunded after the restart", refunded)
        .await;
    assert_eq!(v["status"], "closed");
    let at = sim.order_view(&no).unwrap();
    assert_eq!(
        (at.refunded, at.refunds.len()),
        (1300, 1),
        "refunded once: {at:?}"
    );
    // A third start finds nothing left to do.
    second.run.stop().await;
    let third = Harness::from_running(start_when_released(&args).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.order_view(&no).unwrap().refunds.len(), 1);
    third.run.stop().await;
}
