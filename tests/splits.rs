//! Split-capable payments (`"split": true`): routed only to channels that can split, created
//! there with the channel's profit-sharing flag (WeChat Pay `settle_info.profit_sharing`,
//! Alipay `extend_params.royalty_freeze`), and part of the request's idempotency content.

mod common;

use common::{config_dir, order_no, sample, Harness};
use payroute::channels::{Op, PaymentIntent, Prepared};
use payroute::domain::{PayMethod, Scene};
use serde_json::{json, Value};

/// The sample configuration with a first rule that offers an Alipay payment only the aggregator
/// (for payments with `metadata.route = pingpp`; WeChat Pay keeps the rule valid during the
/// aggregator's maintenance window).
fn with_pingpp_only_rule() -> String {
    let rule = "rules:\n  - name: pingpp-only\n    match: { metadata: { route: pingpp } }\n    channels: [pingpp, wechatpay]\n";
    let text = sample();
    assert!(
        text.contains("\nrules:\n"),
        "the sample has a rules section"
    );
    text.replacen("\nrules:\n", &format!("\n{rule}"), 1)
}

async fn harness() -> (Harness, tempfile::TempDir) {
    let (dir, config) = config_dir(&with_pingpp_only_rule());
    let h = Harness::start_with(|a| a.config = config).await;
    (h, dir)
}

/// A QR payment the sample's rules send to Ping++ first (cheapest for small amounts).
fn small_qr(no: &str, method: &str, split: bool) -> Value {
    json!({"out_trade_no": no, "amount": 500, "currency": "CNY", "method": method,
           "scene": "qr", "subject": "split", "split": split})
}

#[tokio::test]
async fn a_split_payment_skips_channels_that_cannot_split_and_carries_the_flag() {
    let (h, _dir) = harness().await;
    for (method, channel, flag) in [
        ("alipay", "alipay", "royalty_freeze"),
        ("wechat", "wechatpay", "profit_sharing"),
    ] {
        // Not split: the aggregator takes it, as the rules say.
        let plain = order_no("NS");
        let r = h
            .api(
                "POST",
                "/v1/payments",
                Some(small_qr(&plain, method, false)),
            )
            .await;
        assert_eq!(r.status, 201, "{method}: {}", r.text);
        assert_eq!(r.json["channel"], "pingpp", "{method}");
        assert!(r.json.get("split").is_none(), "{method}: {}", r.text);

        let no = order_no("SP");
        let r = h
            .api("POST", "/v1/payments", Some(small_qr(&no, method, true)))
            .await;
        assert_eq!(r.status, 201, "{method}: {}", r.text);
        assert_eq!(r.json["channel"], channel, "{method}: {}", r.text);
        assert_eq!(r.json["split"], true, "{method}");
        assert_eq!(h.payment(&no).await["split"], true, "{method}");
        let at = h.at_channel(channel, &no).await;
        assert_eq!(at.status, 200, "{method}: {}", at.text);
        assert_eq!(at.json[flag], true, "{method}: {}", at.text);

        // A payment without split at the same channel goes there without the flag.
        let direct = order_no("ND");
        let body = json!({"out_trade_no": direct, "amount": 150_000, "currency": "CNY",
                          "method": method, "scene": "qr", "subject": "plain"});
        let r = h.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(r.json["channel"], channel, "{method}: {}", r.text);
        let at = h.at_channel(channel, &direct).await;
        assert_eq!(at.json[flag], false, "{method}: {}", at.text);
    }
}

#[tokio::test]
async fn split_is_part_of_the_idempotency_content() {
    let (h, _dir) = harness().await;
    let no = order_no("SI");
    let first = h
        .api("POST", "/v1/payments", Some(small_qr(&no, "alipay", true)))
        .await;
    let again = h
        .api("POST", "/v1/payments", Some(small_qr(&no, "alipay", true)))
        .await;
    assert_eq!((first.status, again.status), (201, 201), "{}", again.text);
    assert_eq!(first.text, again.text);
    let other = h
        .api("POST", "/v1/payments", Some(small_qr(&no, "alipay", false)))
        .await;
    assert_eq!(other.status, 409, "{}", other.text);
    assert_eq!(other.json["code"], "idempotency_conflict");

    // `"split": false` is the same request as no `split` at all.
    let no = order_no("SF");
    let mut absent = small_qr(&no, "alipay", false);
    absent.as_object_mut().unwrap().remove("split");
    let a = h.api("POST", "/v1/payments", Some(absent)).await;
    let b = h
        .api("POST", "/v1/payments", Some(small_qr(&no, "alipay", false)))
        .await;
    assert_eq!((a.status, b.status), (201, 201), "{}", b.text);
    assert_eq!(a.text, b.text);

    let bad = h
        .api(
            "POST",
            "/v1/payments",
            Some(json!({"out_trade_no": order_no("SB"),
            "amount": 500, "currency": "CNY", "method": "alipay", "scene": "qr",
            "subject": "s", "split": "yes"})),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json["field"], "split", "{}", bad.text);
}

#[tokio::test]
async fn without_a_channel_that_can_split_the_payment_is_refused_and_explain_says_why() {
    let (h, _dir) = harness().await;
    let mut body = small_qr(&order_no("SN"), "alipay", true);
    body["metadata"] = json!({"route": "pingpp"});
    let r = h.api("POST", "/v1/payments", Some(body.clone())).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json["code"], "no_channel", "{}", r.text);
    let detail = r.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("split alipay qr") && detail.contains("pingpp: split_unsupported"),
        "{detail}"
    );
    // The same payment without split goes to the aggregator.
    body["split"] = json!(false);
    body["out_trade_no"] = json!(order_no("SN"));
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!((r.status, &r.json["channel"]), (201, &json!("pingpp")));

    let explain =
        |split: &str| format!("/admin/explain?method=alipay&scene=qr&amount=500&split={split}");
    let e = h.admin("GET", &explain("true"), None).await;
    assert_eq!(e.status, 200, "{}", e.text);
    let d = &e.json["decision"];
    assert_eq!(d["candidates"], json!(["alipay"]), "{d}");
    let agg = d["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["channel"] == "pingpp")
        .unwrap();
    assert_eq!(agg["verdict"], "split_unsupported", "{agg}");
    assert!(agg["detail"].as_str().unwrap().contains("pingpp"), "{agg}");
    let e = h.admin("GET", &explain("false"), None).await;
    assert_eq!(e.json["decision"]["candidates"][0], "pingpp");
    let e = h.admin("GET", &explain("maybe"), None).await;
    assert_eq!(e.status, 400, "{}", e.text);
    assert_eq!(e.json["code"], "invalid_query");
}

/// A 5-yuan QR payment as the adapters see it.
fn intent(method: PayMethod, split: bool) -> PaymentIntent {
    PaymentIntent {
        out_trade_no: "SPLIT000001".into(),
        amount: payroute::money::Fen(500),
        method,
        scene: Scene::Qr,
        subject: "split".into(),
        description: None,
        auth_code: None,
        payer_id: None,
        client_ip: None,
        expires_at: None,
        split,
    }
}

/// The create body `channel` of the sample configuration sends for `intent`.
fn create_body(channel: &str, intent: &PaymentIntent) -> String {
    let snap = payroute::config::load(
        &common::sample_config(),
        &payroute::config::CompileOptions::default(),
    )
    .unwrap();
    let adapter = &snap.channel(channel).unwrap().adapter;
    let Prepared::Send(req) = adapter
        .build(Op::Create(intent), chrono::Utc::now())
        .unwrap()
    else {
        panic!("{channel}: a QR create is sent");
    };
    String::from_utf8(req.body().to_vec()).unwrap()
}

#[test]
fn wechatpay_sends_settle_info_only_for_split_payments() {
    let split: Value =
        serde_json::from_str(&create_body("wechatpay", &intent(PayMethod::Wechat, true))).unwrap();
    assert_eq!(split["settle_info"], json!({"profit_sharing": true}));
    let plain = create_body("wechatpay", &intent(PayMethod::Wechat, false));
    assert!(!plain.contains("settle_info"), "{plain}");
}

#[test]
fn alipay_sends_royalty_freeze_only_for_split_payments() {
    let biz = |split: bool| {
        let body = create_body("alipay", &intent(PayMethod::Alipay, split));
        form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == "biz_content")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let split: Value = serde_json::from_str(&biz(true)).unwrap();
    assert_eq!(split["extend_params"], json!({"royalty_freeze": "true"}));
    assert!(!biz(false).contains("extend_params"));
}

#[test]
fn explain_leaves_the_aggregator_out_of_a_split_payment() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payroute"))
        .arg("explain")
        .arg("--config")
        .arg(common::sample_config())
        .args(["--method", "alipay", "--scene", "qr", "--amount", "800"])
        .arg("--split")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("payment: split alipay qr 800 fen")
            && text.contains(
                "channel pingpp: split_unsupported (a split payment; pingpp channels cannot split)"
            )
            && text.contains("1. alipay"),
        "{text}"
    );
}
