//! Table tests of the router: every criterion and tie-break.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{TimeZone, Utc};

use super::*;
use crate::config::{compile, CompileOptions, Snapshot};

fn anchor() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml"))
}

const CHANNELS: &str = r#"
channels:
  ali:
    kind: alipay
    endpoint: https://openapi.alipay.com/gateway.do
    app_id: "2021000000000001"
    app_private_key: { file: sandbox/keys/alipay_app_private.pem }
    alipay_public_key: { file: sandbox/keys/alipay_public.pem }
    fee: { rate: "0.6%" }
    limits: { max_amount: 5000000 }
  agg:
    kind: pingpp
    endpoint: https://api.pingxx.com
    app_id: app_1
    secret_key: { file: sandbox/keys/pingpp_secret.key }
    merchant_private_key: { file: sandbox/keys/pingpp_merchant_private.pem }
    pingpp_public_key: { file: sandbox/keys/pingpp_public.pem }
    fee: { rate: "0.38%", fixed: 10 }
    limits: { max_amount: 100000 }
  wx:
    kind: wechatpay
    endpoint: https://api.mch.weixin.qq.com
    mchid: "1900000001"
    app_id: wx1
    merchant_private_key: { file: sandbox/keys/wechat_merchant_private.pem }
    merchant_serial_no: ABC123
    apiv3_key: { file: sandbox/keys/wechat_apiv3.key }
    wechatpay_public_key: { file: sandbox/keys/wechatpay_public.pem }
    wechatpay_public_key_id: PUB_KEY_ID_01
    fee: { rate: "0.6%" }
"#;

fn snap(rules: &str) -> Snapshot {
    compile(
        &format!("{CHANNELS}{rules}"),
        anchor(),
        &CompileOptions::default(),
    )
    .unwrap_or_else(|p| panic!("{p:?}"))
}

fn pay(method: PayMethod, scene: Scene, amount: u64) -> RoutingInput {
    RoutingInput {
        out_trade_no: "ORDER000001".into(),
        method,
        scene,
        currency: Currency::Cny,
        amount,
        metadata: BTreeMap::new(),
        split: false,
        now: Utc.with_ymd_and_hms(2026, 11, 25, 4, 0, 0).unwrap(),
    }
}

fn ranked(s: &Snapshot, input: &RoutingInput) -> Vec<String> {
    route(input, s, &AllHealthy).candidates
}

fn verdict_of(d: &Decision, channel: &str) -> String {
    d.trace
        .iter()
        .find(|t| t.channel.as_deref() == Some(channel))
        .map(|t| t.verdict.clone())
        .unwrap_or_default()
}

#[test]
fn priority_keeps_the_order_written_and_explains_exclusions() {
    let s = snap("rules:\n  - name: r\n    channels: [agg, ali, wx]\n");
    let d = route(&pay(PayMethod::Alipay, Scene::Qr, 1999), &s, &AllHealthy);
    assert_eq!(d.candidates, ["agg", "ali"]);
    assert_eq!(verdict_of(&d, "wx"), "method_or_scene_unsupported");
    // Above the aggregator's cap.
    let d = route(&pay(PayMethod::Alipay, Scene::Qr, 200_000), &s, &AllHealthy);
    assert_eq!(d.candidates, ["ali"]);
    assert_eq!(verdict_of(&d, "agg"), "amount_out_of_range");
    // A scene nobody here offers for the method.
    assert!(ranked(&s, &pay(PayMethod::Wechat, Scene::Barcode, 100)).is_empty());
}

#[test]
fn split_payments_go_only_to_channels_that_can_split() {
    let s = snap("rules:\n  - name: r\n    channels: [agg, ali, wx]\n");
    let split = RoutingInput {
        split: true,
        ..pay(PayMethod::Alipay, Scene::Qr, 1999)
    };
    let d = route(&split, &s, &AllHealthy);
    assert_eq!(d.candidates, ["ali"]);
    assert_eq!(verdict_of(&d, "agg"), "split_unsupported");
    let why = d.trace.iter().find(|t| t.channel.as_deref() == Some("agg"));
    assert_eq!(
        why.and_then(|t| t.detail.as_deref()),
        Some("a split payment; pingpp channels cannot split")
    );
    // A split payment only the aggregator could take: nobody is left.
    let s = snap("rules:\n  - name: r\n    channels: [agg]\n");
    assert!(route(&split, &s, &AllHealthy).candidates.is_empty());
    assert!(explain_text(&split, &route(&split, &s, &AllHealthy))
        .starts_with("payment: split alipay qr 1999 fen"));
}

#[test]
fn disabled_channels_are_skipped() {
    let text = format!(
        "{}rules:\n  - name: r\n    channels: [agg, ali]\n",
        CHANNELS.replace(
            "    fee: { rate: \"0.38%\", fixed: 10 }",
            "    fee: { rate: \"0.38%\", fixed: 10 }\n    enabled: false"
        )
    );
    let s = compile(&text, anchor(), &CompileOptions::default()).unwrap();
    let d = route(&pay(PayMethod::Alipay, Scene::Qr, 1999), &s, &AllHealthy);
    assert_eq!(d.candidates, ["ali"]);
    assert_eq!(verdict_of(&d, "agg"), "disabled");
}

#[test]
fn cheapest_ranks_by_the_fee_of_this_amount_with_ties_in_written_order() {
    let s = snap("rules:\n  - name: r\n    strategy: cheapest\n    channels: [ali, agg]\n");
    // 0.6% of 1000 = 6; 0.38% of 1000 + 10 = 14: the direct channel is cheaper for small amounts.
    assert_eq!(
        ranked(&s, &pay(PayMethod::Alipay, Scene::Qr, 1000)),
        ["ali", "agg"]
    );
    // 0.6% of 100000 = 600; 0.38% + 10 = 390: the aggregator is cheaper for large ones.
    assert_eq!(
        ranked(&s, &pay(PayMethod::Alipay, Scene::Qr, 100_000)),
        ["agg", "ali"]
    );
    // 0.6% of 4545 = 27.27 → 27; 0.38% of 4545 = 17.27 → 17, + 10 = 27: a tie keeps the order written.
    let d = route(&pay(PayMethod::Alipay, Scene::Qr, 4545), &s, &AllHealthy);
    assert_eq!(d.fees, [27, 27]);
    assert_eq!(d.candidates, ["ali", "agg"]);
}

#[test]
fn weighted_is_deterministic_per_order_and_follows_the_weights() {
    let s = snap("rules:\n  - name: canary\n    strategy: weighted\n    weights: { ali: 90, agg: 10 }\n    channels: [ali, agg]\n");
    let mut input = pay(PayMethod::Alipay, Scene::Qr, 1999);
    let mut agg_first = 0;
    for i in 0..2000 {
        input.out_trade_no = format!("ORDER{i:06}");
        let first = ranked(&s, &input);
        assert_eq!(
            first,
            ranked(&s, &input),
            "a retry lands on the same channel"
        );
        assert_eq!(first.len(), 2, "the other channel stays as a fallback");
        if first[0] == "agg" {
            agg_first += 1;
        }
    }
    assert!(
        (140..=260).contains(&agg_first),
        "about 10% of 2000, got {agg_first}"
    );
    let zero = snap("rules:\n  - name: r\n    strategy: weighted\n    weights: { ali: 0, agg: 1 }\n    channels: [ali, agg]\n");
    for i in 0..50 {
        input.out_trade_no = format!("ORDER{i:06}");
        assert_eq!(ranked(&zero, &input), ["agg", "ali"]);
    }
}

#[test]
fn maintenance_windows_and_health_exclude_channels() {
    let text = format!(
        "{}rules:\n  - name: r\n    channels: [agg, ali]\n",
        CHANNELS.replace(
            "    limits: { max_amount: 100000 }",
            "    limits: { max_amount: 100000 }\n    maintenance:\n      - { start: \"23:00\", end: \"00:30\", timezone: Asia/Shanghai }"
        )
    );
    let s = compile(&text, anchor(), &CompileOptions::default()).unwrap();
    let mut input = pay(PayMethod::Alipay, Scene::Qr, 1999);
    input.now = chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
        .unwrap()
        .with_timezone(&Utc);
    let d = route(&input, &s, &AllHealthy);
    assert_eq!(d.candidates, ["ali"]);
    assert_eq!(verdict_of(&d, "agg"), "in_maintenance");
    input.now = chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 11, 26, 0, 30, 0)
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(ranked(&s, &input), ["agg", "ali"]);

    struct Sick;
    impl HealthView for Sick {
        fn circuit_open(&self, c: &str) -> bool {
            c == "agg"
        }
        fn rate_limited(&self, c: &str) -> bool {
            c == "ali"
        }
    }
    let d = route(&input, &s, &Sick);
    assert!(d.candidates.is_empty());
    assert_eq!(
        (verdict_of(&d, "agg"), verdict_of(&d, "ali")),
        ("circuit_open".into(), "rate_limited".into())
    );
}

#[test]
fn first_matching_rule_wins_on_method_scene_currency_amount_and_metadata() {
    let s = snap(
        "rules:\n  - name: vip\n    match: { metadata: { tier: gold } }\n    channels: [ali]\n  \
         - name: tagged\n    match: { metadata: { campaign: \"*\" } }\n    channels: [agg]\n  \
         - name: small-wechat\n    match: { method: [wechat], scene: [qr], currency: [CNY], max_amount: 1000 }\n    channels: [agg, wx]\n  \
         - name: default\n    channels: [ali, wx]\n",
    );
    let mut input = pay(PayMethod::Wechat, Scene::Qr, 800);
    assert_eq!(
        route(&input, &s, &AllHealthy).rule.as_deref(),
        Some("small-wechat")
    );
    input.amount = 1001;
    let d = route(&input, &s, &AllHealthy);
    assert_eq!(
        (d.rule.as_deref(), d.candidates.clone()),
        (Some("default"), vec!["wx".to_string()])
    );
    assert!(d.trace.iter().any(|t| t.rule == "small-wechat"
        && t.verdict == "skipped"
        && t.detail.as_deref().unwrap().contains("amount")));
    input.metadata.insert("campaign".into(), "x".into());
    assert_eq!(
        route(&input, &s, &AllHealthy).rule.as_deref(),
        Some("tagged")
    );
    input.metadata.insert("tier".into(), "silver".into());
    assert_eq!(
        route(&input, &s, &AllHealthy).rule.as_deref(),
        Some("tagged")
    );
    input.metadata.insert("tier".into(), "gold".into());
    assert_eq!(route(&input, &s, &AllHealthy).rule.as_deref(), Some("vip"));
    let none = snap(
        "rules:\n  - name: only-alipay\n    match: { method: [alipay] }\n    channels: [ali]\n",
    );
    let d = route(&pay(PayMethod::Wechat, Scene::Qr, 100), &none, &AllHealthy);
    assert_eq!((d.rule, d.candidates.len()), (None, 0));
}

#[test]
fn check_finds_uncovered_maintenance_and_rules_that_never_match() {
    let text = format!(
        "{}rules:\n  - name: r\n    channels: [agg]\n",
        CHANNELS.replace("    limits: { max_amount: 100000 }", "    limits: { max_amount: 100000 }\n    maintenance:\n      - { days: [sun], start: \"03:00\", end: \"04:00\" }")
    );
    let p = compile(&text, anchor(), &CompileOptions::default()).unwrap_err();
    // Sunday 03:00 in Shanghai is Saturday 19:00 UTC.
    assert!(
        p[0].message.contains("has no channel at Sat 19:00 UTC"),
        "{p:?}"
    );
    assert_eq!(
        p[0].line,
        text.lines().position(|l| l.contains("- name: r")).unwrap() as u64 + 1
    );

    let s = snap(
        "rules:\n  - name: all-alipay\n    match: { method: [alipay] }\n    channels: [ali]\n  \
         - name: shadowed\n    match: { method: [alipay], scene: [qr] }\n    channels: [agg]\n  \
         - name: hopeless\n    match: { method: [wechat], scene: [barcode] }\n    channels: [wx, agg]\n",
    );
    let w = crate::config::warnings(&s);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].message.contains("`shadowed` can never match") && w[0].message.contains("all-alipay")
    );
    assert!(w[1].message.contains("`hopeless` can never route"));
}

#[test]
fn explain_text_lists_rules_channels_and_ranking() {
    let s = snap("rules:\n  - name: wx-only\n    match: { method: [wechat] }\n    channels: [wx]\n  - name: main\n    strategy: cheapest\n    channels: [ali, agg]\n");
    let input = pay(PayMethod::Alipay, Scene::Qr, 100_000);
    let text = explain_text(&input, &route(&input, &s, &AllHealthy));
    let expected = [
        "rule wx-only: skipped (method alipay not in the rule)",
        "rule main: matched",
        "  channel ali: candidate, fee 600 fen",
        "  channel agg: candidate, fee 390 fen",
        "ranked by main (cheapest):",
        "  1. agg (fee 390 fen)",
        "  2. ali (fee 600 fen)",
    ];
    for line in expected {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}
