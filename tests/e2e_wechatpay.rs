//! End-to-end: the unified API over the WeChat Pay API v3 simulator.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{order_no, Harness};
use payroute::crypto::{PrivateKey, PublicKey, SymmetricKey};
use payroute::sandbox::wechatpay::Forgery;
use serde_json::{json, Value};

fn wx(no: &str, amount: u64, scene: &str) -> Value {
    json!({"out_trade_no": no, "amount": amount, "currency": "CNY", "method": "wechat",
           "scene": scene, "subject": "wechat e2e"})
}

fn merchant_public() -> PublicKey {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sandbox/keys/wechat_merchant_private.pem"
    );
    PrivateKey::from_file(std::path::Path::new(path))
        .unwrap()
        .public_key()
}

/// An order number that the sample's 90/10 canary rule sends to the direct channel.
fn direct_app_order(h: &Harness) -> String {
    let snap = h.run.payments.snapshot();
    for _ in 0..100 {
        let no = order_no("WA");
        let input = payroute::routing::input_from_text(
            &no,
            "wechat",
            "app",
            "CNY",
            100,
            Default::default(),
            None,
        )
        .unwrap();
        if payroute::routing::route(&input, &snap, &payroute::routing::AllHealthy).candidates[0]
            == "wechatpay"
        {
            return no;
        }
    }
    panic!("the canary never chose the direct channel");
}

async fn pay(h: &Harness, no: &str) -> u16 {
    h.admin(
        "POST",
        &format!("/sandbox/wechatpay/payments/{no}/pay"),
        None,
    )
    .await
    .status
}

fn calls(h: &Harness, key: &str) -> u64 {
    h.wechat().calls().get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn qr_pay_notification_succeeded() {
    let h = Harness::start().await;
    let no = order_no("WQ");
    let r = h
        .api("POST", "/v1/payments", Some(wx(&no, 1999, "qr")))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], "wechatpay");
    assert!(r.json["action"]["code_url"]
        .as_str()
        .unwrap()
        .starts_with("weixin://wxpay/bizpayurl?pr="));
    assert_eq!(pay(&h, &no).await, 200);
    for _ in 0..50 {
        let o = h
            .run
            .payments
            .ledger()
            .get_order(&no)
            .await
            .unwrap()
            .unwrap();
        if o.status == payroute::domain::PaymentStatus::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        calls(&h, "GET /v3/pay/transactions/out-trade-no/{}"),
        0,
        "paid by the notification alone"
    );
    let q = h.wait_status(&no, "succeeded").await;
    assert!(q["channel_trade_no"].as_str().unwrap().starts_with("4200"));
}

#[tokio::test]
async fn jsapi_app_and_h5_parameters() {
    let h = Harness::start().await;
    let key = merchant_public();
    let mut body = wx(&order_no("WJ"), 100, "jsapi");
    body["payer_id"] = json!("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let p = &r.json["action"]["params"];
    assert_eq!(r.json["action"]["type"], "jsapi_pay");
    assert_eq!(p["signType"], "RSA");
    assert!(p["package"].as_str().unwrap().starts_with("prepay_id=wx"));
    let msg = format!(
        "{}\n{}\n{}\n{}\n",
        p["appId"].as_str().unwrap(),
        p["timeStamp"].as_str().unwrap(),
        p["nonceStr"].as_str().unwrap(),
        p["package"].as_str().unwrap()
    );
    assert!(
        key.verify_sha256_b64(msg.as_bytes(), p["paySign"].as_str().unwrap()),
        "paySign verifies with the merchant key"
    );

    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(wx(&direct_app_order(&h), 100, "app")),
        )
        .await;
    let p = &r.json["action"]["params"];
    assert_eq!(r.json["action"]["type"], "wechat_app_pay", "{}", r.text);
    assert_eq!(
        (p["package"].as_str(), p["partnerid"].as_str()),
        (Some("Sign=WXPay"), Some("1900000001"))
    );
    let msg = format!(
        "{}\n{}\n{}\n{}\n",
        p["appid"].as_str().unwrap(),
        p["timestamp"].as_str().unwrap(),
        p["noncestr"].as_str().unwrap(),
        p["prepayid"].as_str().unwrap()
    );
    assert!(key.verify_sha256_b64(msg.as_bytes(), p["sign"].as_str().unwrap()));

    let no = order_no("WH");
    let missing_ip = h
        .api("POST", "/v1/payments", Some(wx(&no, 100, "h5")))
        .await;
    assert_eq!(
        (missing_ip.status, missing_ip.json["field"].clone()),
        (400, json!("client_ip"))
    );
    let mut body = wx(&no, 100, "h5");
    body["client_ip"] = json!("203.0.113.7");
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(r.json["action"]["type"], "redirect", "{}", r.text);
    assert!(r.json["action"]["url"]
        .as_str()
        .unwrap()
        .contains("prepay_id="));

    // Barcode is not offered by this channel: routing finds none.
    let mut bc = wx(&order_no("WB"), 100, "barcode");
    bc["auth_code"] = json!("134567890123456789");
    let r = h.api("POST", "/v1/payments", Some(bc)).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (422, json!("no_channel")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn close_and_refunds() {
    let h = Harness::start().await;
    let no = order_no("WC");
    h.api("POST", "/v1/payments", Some(wx(&no, 1800, "qr")))
        .await;
    let c = h
        .api("POST", &format!("/v1/payments/{no}/close"), None)
        .await;
    assert_eq!(
        (c.status, c.json["status"].clone()),
        (200, json!("closed")),
        "{}",
        c.text
    );
    assert_eq!(
        pay(&h, &no).await,
        409,
        "a closed transaction cannot be paid"
    );

    let no = order_no("WR");
    h.api("POST", "/v1/payments", Some(wx(&no, 2000, "qr")))
        .await;
    pay(&h, &no).await;
    h.wait_status(&no, "succeeded").await;
    let c = h
        .api("POST", &format!("/v1/payments/{no}/close"), None)
        .await;
    assert_eq!(
        (c.status, c.json["code"].clone()),
        (409, json!("order_paid")),
        "{}",
        c.text
    );

    let refund =
        |n: &str, amount: u64| json!({"out_refund_no": format!("{no}{n}"), "amount": amount});
    let r1 = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R1", 300)),
        )
        .await;
    assert_eq!(
        (r1.status, r1.json["status"].clone()),
        (201, json!("succeeded")),
        "{}",
        r1.text
    );
    assert!(r1.json["channel_refund_no"].is_string());
    let over = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R2", 1800)),
        )
        .await;
    assert_eq!(over.status, 422);
    let r2 = h
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(refund("R3", 1700)),
        )
        .await;
    assert_eq!(r2.json["status"], "succeeded", "{}", r2.text);
    let q = h.api("GET", &format!("/v1/refunds/{no}R1"), None).await;
    assert_eq!(
        (q.json["amount"].clone(), q.json["status"].clone()),
        (json!(300), json!("succeeded"))
    );
    assert_eq!(
        h.api("GET", &format!("/v1/payments/{no}"), None).await.json["status"],
        "refunded"
    );
    assert_eq!(h.wechat().order_view(&no).unwrap()["refunded"], 2000);
}

async fn post_notification(
    h: &Harness,
    n: &payroute::sandbox::wechatpay::SignedNotification,
) -> u16 {
    let url = format!("http://{}/notify/wechatpay", h.run.notify);
    let mut req = http::Request::post(url).header("content-type", "application/json");
    for (k, v) in &n.headers {
        req = req.header(*k, v);
    }
    h.client
        .send(req.body(bytes::Bytes::from(n.body.clone())).unwrap())
        .await
        .unwrap()
        .status
}

#[tokio::test]
async fn forged_notifications_are_rejected_and_replays_change_nothing() {
    let h = Harness::start().await;
    h.admin(
        "PUT",
        "/sandbox/wechatpay/notifications",
        Some(json!({"enabled": false})),
    )
    .await;
    let no = order_no("WF");
    h.api("POST", "/v1/payments", Some(wx(&no, 4200, "qr")))
        .await;
    pay(&h, &no).await;
    let sim = h.wechat();
    let before = h
        .run
        .payments
        .ledger()
        .get_order(&no)
        .await
        .unwrap()
        .unwrap();
    let forgeries = [
        (
            "bad signature",
            Forgery {
                wrong_signing_key: Some(payroute::sandbox::fresh_key()),
                ..Default::default()
            },
        ),
        (
            "wrong APIv3 key",
            Forgery {
                wrong_apiv3_key: Some(Arc::new(SymmetricKey::generate())),
                ..Default::default()
            },
        ),
        (
            "stale timestamp",
            Forgery {
                timestamp_offset_secs: -600,
                ..Default::default()
            },
        ),
        (
            "wrong amount",
            Forgery {
                amount: Some(1),
                ..Default::default()
            },
        ),
    ];
    for (label, f) in forgeries {
        let n = sim.notification(&no, &f).unwrap();
        let status = post_notification(&h, &n).await;
        assert!((400..500).contains(&status), "{label}: {status}");
        assert_eq!(
            h.run
                .payments
                .ledger()
                .get_order(&no)
                .await
                .unwrap()
                .unwrap(),
            before,
            "{label}"
        );
    }
    let genuine = sim.notification(&no, &Forgery::default()).unwrap();
    assert_eq!(post_notification(&h, &genuine).await, 204);
    let after = h
        .run
        .payments
        .ledger()
        .get_order(&no)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, payroute::domain::PaymentStatus::Succeeded);
    assert_eq!(
        post_notification(&h, &genuine).await,
        204,
        "replay is acknowledged"
    );
    let resent = h
        .admin(
            "POST",
            &format!("/sandbox/wechatpay/payments/{no}/notify"),
            None,
        )
        .await;
    assert_eq!(resent.json["status"], 204);
    assert_eq!(
        h.run
            .payments
            .ledger()
            .get_order(&no)
            .await
            .unwrap()
            .unwrap(),
        after,
        "replays change nothing"
    );
}

#[tokio::test]
async fn simulator_rejects_bad_authorization_with_the_real_error_shape() {
    let h = Harness::start().await;
    let base = h
        .run
        .sandbox
        .as_ref()
        .unwrap()
        .endpoint("wechatpay")
        .unwrap();
    let url = format!("{base}/v3/pay/transactions/out-trade-no/X123456?mchid=1900000001");
    let r = h.raw("GET", url.clone(), None, None).await;
    assert_eq!(
        (r.status, r.json["code"].clone()),
        (401, json!("SIGN_ERROR"))
    );
    let key = PrivateKey::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sandbox/keys/wechat_merchant_private.pem"
    )))
    .unwrap();
    let path = "/v3/pay/transactions/out-trade-no/X123456?mchid=1900000001";
    let sign = |ts: i64, serial: &str, k: &PrivateKey| {
        let m = payroute::channels::wechatpay::transformers::Message {
            method: "GET",
            canonical_url: path,
            timestamp: &ts.to_string(),
            nonce: "N1",
            body: "",
        };
        payroute::channels::wechatpay::transformers::Authorization::sign(
            "1900000001",
            serial,
            k,
            &m,
        )
        .header()
    };
    let now = chrono::Utc::now().timestamp();
    let cases = [
        (
            "good",
            sign(now, "3775B6A45ACD588826D15E583A95F5DD", &key),
            404,
        ),
        (
            "stale",
            sign(now - 600, "3775B6A45ACD588826D15E583A95F5DD", &key),
            401,
        ),
        ("unknown serial", sign(now, "ABCDEF", &key), 401),
        (
            "wrong key",
            sign(
                now,
                "3775B6A45ACD588826D15E583A95F5DD",
                &payroute::sandbox::fresh_key(),
            ),
            401,
        ),
    ];
    for (label, auth, want) in cases {
        let req = http::Request::get(&url)
            .header("authorization", auth)
            .body(bytes::Bytes::new())
            .unwrap();
        let resp = h.client.send(req).await.unwrap();
        assert_eq!(resp.status, want, "{label}");
        assert!(
            resp.headers.contains_key("wechatpay-signature"),
            "{label}: errors are signed too"
        );
    }
}

/// Platform-certificate mode: the simulator signs under the certificate's serial, and payroute
/// finds the key by reading the certificate.
#[tokio::test]
async fn platform_certificate_mode_end_to_end() {
    let vectors = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/protocols/testvectors/keys");
    let platform =
        PrivateKey::from_file(&vectors.join("wechat_platform_private_pkcs8.pem")).unwrap();
    let merchant = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sandbox/keys/wechat_merchant_private.pem");
    let apiv3 = "TestApiV3Key0123456789abcdefABCD";
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let sandbox = payroute::sandbox::Sandbox::start(
        vec![payroute::sandbox::SimChannel {
            name: "wx".into(),
            kind: "wechatpay".into(),
            app_id: "wxd678efh567hg6787".into(),
            mchid: "1900000001".into(),
            merchant_public_key: PrivateKey::from_file(&merchant).unwrap().public_key(),
            merchant_serial: "3775B6A45ACD588826D15E583A95F5DD".into(),
            platform_key: Arc::new(platform),
            platform_key_id: "7132D72A03E93CDDF8C03BBD1F37EEDF00000001".into(),
            apiv3_key: Some(Arc::new(SymmetricKey::from_text(apiv3).unwrap())),
            secret_key: None,
        }],
        "127.0.0.1".parse().unwrap(),
        rx,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apiv3.key"), apiv3).unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, format!(
        "channels:\n  wx:\n    kind: wechatpay\n    endpoint: {}\n    mchid: \"1900000001\"\n    app_id: wxd678efh567hg6787\n    \
         merchant_private_key: {{ file: {} }}\n    merchant_serial_no: 3775B6A45ACD588826D15E583A95F5DD\n    \
         apiv3_key: {{ file: apiv3.key }}\n    platform_certificates:\n      - {{ file: {} }}\n",
        sandbox.endpoint("wx").unwrap(), merchant.display(), vectors.join("wechat_platform_cert.pem").display()
    )).unwrap();
    let mut args = common::test_args(dir.path().join("data"));
    args.config = config;
    args.sandbox = false;
    let run = payroute::app::start(&args).await.unwrap();
    let client = payroute::channels::client::ChannelClient::new(
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let no = order_no("WX");
    let req = http::Request::post(format!("http://{}/v1/payments", run.api))
        .header("content-type", "application/json")
        .body(bytes::Bytes::from(wx(&no, 1500, "qr").to_string()))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    common::openapi::assert_documented(
        "POST",
        "/v1/payments",
        resp.status,
        &resp.headers,
        &resp.body,
    );
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    sandbox.wechat("wx").unwrap().pay(&no).unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        let o = run.payments.ledger().get_order(&no).await.unwrap().unwrap();
        status = format!("{:?}", o.status);
        if o.status == payroute::domain::PaymentStatus::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, "Succeeded",
        "the certificate-mode notification was accepted"
    );
    run.stop().await;
}
