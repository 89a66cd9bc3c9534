//! End-to-end over the WeChat Pay API v3 simulator: what only WeChat Pay has (the signed
//! client parameters of jsapi/app/h5, the gateway's request authentication, platform-certificate
//! mode). The scenarios every channel shares are in `e2e_channels.rs` and
//! `e2e_notifications.rs`.

mod common;

use std::sync::Arc;

use common::own_sandbox;
use common::{order_no, Harness};
use payroute::crypto::{PrivateKey, PublicKey, SymmetricKey};
use payroute::sandbox::SimChannel;
use serde_json::{json, Value};

fn wx(no: &str, amount: u64, scene: &str) -> Value {
    json!({"out_trade_no": no, "amount": amount, "currency": "CNY", "method": "wechat",
           "scene": scene, "subject": "wechat e2e"})
}

fn merchant_public() -> PublicKey {
    own_sandbox::merchant_public("wechat_merchant_private.pem")
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
    let key =
        PrivateKey::from_file(&common::repo().join("sandbox/keys/wechat_merchant_private.pem"))
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
    let vectors = common::vectors::dir().join("keys");
    let platform =
        PrivateKey::from_file(&vectors.join("wechat_platform_private_pkcs8.pem")).unwrap();
    let apiv3 = "TestApiV3Key0123456789abcdefABCD";
    let sandbox = own_sandbox::start(vec![SimChannel {
        app_id: "wxd678efh567hg6787".into(),
        mchid: "1900000001".into(),
        merchant_serial: "3775B6A45ACD588826D15E583A95F5DD".into(),
        platform_key_id: "7132D72A03E93CDDF8C03BBD1F37EEDF00000001".into(),
        apiv3_key: Some(Arc::new(SymmetricKey::from_text(apiv3).unwrap())),
        ..own_sandbox::channel("wx", "wechatpay", merchant_public(), Arc::new(platform))
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apiv3.key"), apiv3).unwrap();
    let args = common::configured_args(dir.path(), &format!(
        "channels:\n  wx:\n    kind: wechatpay\n    endpoint: {}\n    mchid: \"1900000001\"\n    app_id: wxd678efh567hg6787\n    \
         merchant_private_key: {{ file: {} }}\n    merchant_serial_no: 3775B6A45ACD588826D15E583A95F5DD\n    \
         apiv3_key: {{ file: apiv3.key }}\n    platform_certificates:\n      - {{ file: {} }}\n",
        sandbox.endpoint("wx").unwrap(),
        common::repo().join("sandbox/keys/wechat_merchant_private.pem").display(),
        vectors.join("wechat_platform_cert.pem").display()
    ));
    let h = Harness::start_args(&args).await;
    let no = order_no("WX");
    let r = h
        .api("POST", "/v1/payments", Some(wx(&no, 1500, "qr")))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    sandbox.wechat("wx").unwrap().pay(&no).unwrap();
    // The certificate-mode notification was accepted.
    h.wait_succeeded_in_ledger(&no).await;
    h.run.stop().await;
}
