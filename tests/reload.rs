//! Hot reload: the kubelet's ConfigMap update sequence, reloads under load, fee-driven routing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::order_no;
use payroute::app::{start, Running};
use payroute::channels::client::ChannelClient;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample() -> String {
    std::fs::read_to_string(repo().join("routes.yaml")).unwrap()
}

fn sha(text: &str) -> String {
    payroute::crypto::sha256_hex(text.as_bytes())
}

/// A config directory laid out as the kubelet lays out a ConfigMap volume.
struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMapDir {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(repo().join("sandbox"), dir.path().join("sandbox")).unwrap();
        let mut cm = ConfigMapDir { dir, version: 0 };
        cm.publish(text);
        std::os::unix::fs::symlink("..data/routes.yaml", cm.path()).unwrap();
        cm
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("routes.yaml")
    }

    /// New timestamped directory, `..data_tmp` symlink to it, renamed over `..data`.
    fn publish(&mut self, text: &str) {
        self.version += 1;
        let ts = format!("..2026_11_25_22_00_00.{:04}", self.version);
        std::fs::create_dir(self.dir.path().join(&ts)).unwrap();
        std::fs::write(self.dir.path().join(&ts).join("routes.yaml"), text).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

async fn serve(config: &Path, data: &Path, poll_ms: u64) -> Running {
    let mut args = common::test_args(data.to_path_buf());
    args.config = config.to_path_buf();
    args.reload_poll_ms = poll_ms;
    start(&args).await.unwrap()
}

async fn wait_hash(run: &Running, hash: &str) -> bool {
    for _ in 0..100 {
        if run.payments.snapshot().hash == hash {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    false
}

#[tokio::test]
async fn kubelet_configmap_updates_apply_twice_in_a_row() {
    let data = tempfile::tempdir().unwrap();
    let v0 = sample();
    let mut cm = ConfigMapDir::new(&v0);
    // A long poll interval: the directory watch must see the symlink swaps by itself.
    let run = serve(&cm.path(), data.path(), 60_000).await;
    assert_eq!(run.payments.snapshot().hash, sha(&v0));
    let v1 = v0.replace("rate: \"0.38%\"", "rate: \"0.39%\"");
    cm.publish(&v1);
    assert!(wait_hash(&run, &sha(&v1)).await, "first update applied");
    let v2 = v1.replace("rate: \"0.39%\"", "rate: \"0.40%\"");
    cm.publish(&v2);
    assert!(wait_hash(&run, &sha(&v2)).await, "second update applied");
    // A broken update changes nothing, and is visible in /admin/routes.
    cm.publish("channels: [this is not valid\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(run.payments.snapshot().hash, sha(&v2));
    let client = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(5));
    let req = http::Request::get(format!("http://{}/admin/routes", run.admin))
        .body(bytes::Bytes::new())
        .unwrap();
    let v: Value = serde_json::from_slice(&client.send(req).await.unwrap().body).unwrap();
    assert_eq!(v["hash"], sha(&v2));
    assert!(
        v["reload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("routes.yaml:1:"),
        "{v}"
    );
    let req = http::Request::get(format!("http://{}/metrics", run.admin))
        .body(bytes::Bytes::new())
        .unwrap();
    let metrics = String::from_utf8(client.send(req).await.unwrap().body.to_vec()).unwrap();
    assert!(
        metrics.contains("payroute_config_reloads_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("payroute_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("payroute_config_info{{hash=\"{}\"}} 1", sha(&v2))));
    run.stop().await;
}

fn rules(tag: &str, channels: &str) -> String {
    let s = sample();
    let cut = s.find("\nrules:").unwrap();
    format!(
        "{}\nrules:\n  - name: {tag}\n    match: {{ method: [alipay], scene: [qr] }}\n    channels: [{channels}]\n  - name: wechat\n    match: {{ method: [wechat] }}\n    channels: [wechatpay]\n  - name: rest\n    channels: [alipay]\n",
        &s[..cut]
    )
}

#[tokio::test]
async fn fifty_reloads_under_steady_traffic_fail_nothing_and_never_mix() {
    let data = tempfile::tempdir().unwrap();
    let a = rules("rule-a", "pingpp, alipay");
    let b = rules("rule-b", "alipay");
    let mut cm = ConfigMapDir::new(&a);
    let run = Arc::new(serve(&cm.path(), data.path(), 100).await);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (run, stop) = (run.clone(), stop.clone());
        tokio::spawn(async move {
            let client = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(10));
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) && seen.len() < 5000 {
                let body = json!({"out_trade_no": order_no("LD"), "amount": 800, "currency": "CNY",
                                  "method": "alipay", "scene": "qr", "subject": "reload load"});
                let req = http::Request::post(format!("http://{}/v1/payments", run.api))
                    .header("content-type", "application/json")
                    .body(bytes::Bytes::from(body.to_string()))
                    .unwrap();
                let resp = client.send(req).await.expect("answered");
                common::openapi::assert_documented(
                    "POST",
                    "/v1/payments",
                    resp.status,
                    &resp.headers,
                    &resp.body,
                );
                let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                seen.push((
                    resp.status,
                    v["route"]["rule"].as_str().unwrap_or("").to_string(),
                    v["channel"].as_str().unwrap_or("").to_string(),
                ));
            }
            seen
        })
    };
    let mut applied = 0;
    for i in 0..50 {
        let text = match i % 4 {
            0 => b.clone(),
            2 => a.clone(),
            _ => format!("channels:\n  broken: {{ kind: nope }}\n# {i}\n"),
        };
        cm.publish(&text);
        tokio::time::sleep(Duration::from_millis(60)).await;
        if i % 2 == 0 && wait_hash(&run, &sha(&text)).await {
            applied += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.await.unwrap();
    assert!(applied >= 20, "valid files were applied: {applied}");
    assert!(seen.len() >= 20, "a steady stream: {}", seen.len());
    let mut by_rule = std::collections::BTreeMap::new();
    for (status, rule, channel) in &seen {
        assert_eq!(*status, 201, "no failed request ({rule} {channel})");
        let expected = match rule.as_str() {
            "rule-a" => "pingpp",
            "rule-b" => "alipay",
            other => panic!("routed by an unknown rule {other:?}"),
        };
        assert_eq!(channel, expected, "old or new rules, never a mix");
        *by_rule.entry(rule.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        by_rule.len(),
        2,
        "both rule sets served traffic: {by_rule:?}"
    );
    match Arc::try_unwrap(run) {
        Ok(r) => r.stop().await,
        Err(_) => panic!("still shared"),
    }
}

#[tokio::test]
async fn fees_and_caps_decide_and_a_fee_change_flips_the_choice_live() {
    let data = tempfile::tempdir().unwrap();
    let s = sample();
    let cut = s.find("\nrules:").unwrap();
    let base = format!(
        "{}\nrules:\n  - name: cheapest\n    strategy: cheapest\n    channels: [alipay, pingpp]\n",
        &s[..cut].replace(
            "limits: { min_amount: 1, max_amount: 2000000 }",
            "limits: { min_amount: 1, max_amount: 1000 }"
        )
    );
    let mut cm = ConfigMapDir::new(&base);
    let run = serve(&cm.path(), data.path(), 100).await;
    let input = |amount: u64| {
        payroute::routing::input_from_text(
            "ORDER000001",
            "alipay",
            "qr",
            "CNY",
            amount,
            Default::default(),
            None,
        )
        .unwrap()
    };
    let first = |amount: u64| {
        payroute::routing::route(
            &input(amount),
            &run.payments.snapshot(),
            &payroute::routing::AllHealthy,
        )
        .candidates[0]
            .clone()
    };
    assert_eq!(
        first(800),
        "pingpp",
        "below its cap the aggregator is cheaper"
    );
    assert_eq!(
        first(1500),
        "alipay",
        "above its cap only the direct channel remains"
    );
    // The same through the API.
    let client = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(10));
    let create = |amount: u64| {
        let body = json!({"out_trade_no": order_no("FE"), "amount": amount, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "fees"});
        let req = http::Request::post(format!("http://{}/v1/payments", run.api))
            .header("content-type", "application/json")
            .body(bytes::Bytes::from(body.to_string()))
            .unwrap();
        client.send(req)
    };
    let v: Value = serde_json::from_slice(&create(800).await.unwrap().body).unwrap();
    assert_eq!(v["channel"], "pingpp");
    let pricier = base.replace("rate: \"0.38%\"", "rate: \"1%\"");
    cm.publish(&pricier);
    assert!(wait_hash(&run, &sha(&pricier)).await);
    assert_eq!(
        first(800),
        "alipay",
        "the fee change flipped the choice without a restart"
    );
    let v: Value = serde_json::from_slice(&create(800).await.unwrap().body).unwrap();
    assert_eq!(v["channel"], "alipay");
    run.stop().await;
}

/// A rule edit keeps each channel's runtime state: the rate limiter's spent budget and the HTTP
/// client (its connection pool). A change to the channel's own `rate_limit` starts a fresh budget.
#[tokio::test]
async fn a_rule_edit_keeps_spent_rate_limits_and_connection_pools() {
    let data = tempfile::tempdir().unwrap();
    let s = sample();
    let cut = s.find("\nrules:").unwrap();
    let channels = s[..cut].replace(
        "    timeouts: { connect_ms: 3000, request_ms: 10000 }",
        "    timeouts: { connect_ms: 3000, request_ms: 10000 }\n    rate_limit: { per_second: 1, burst: 1 }",
    );
    let with_rule =
        |name: &str| format!("{channels}\nrules:\n  - name: {name}\n    channels: [alipay]\n");
    let mut cm = ConfigMapDir::new(&with_rule("only-alipay-0"));
    let run = serve(&cm.path(), data.path(), 100).await;
    let client = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(10));
    let create = || {
        let body = json!({"out_trade_no": order_no("RL"), "amount": 800, "currency": "CNY",
                          "method": "alipay", "scene": "qr", "subject": "rate limit"});
        let req = http::Request::post(format!("http://{}/v1/payments", run.api))
            .header("content-type", "application/json")
            .body(bytes::Bytes::from(body.to_string()))
            .unwrap();
        client.send(req)
    };
    let alipay_client = |run: &Running| {
        run.payments
            .snapshot()
            .channel("alipay")
            .unwrap()
            .client
            .clone()
    };
    let pool = alipay_client(&run);
    // One call per second: the budget refills after a second, so the edit and the second create
    // must fit in it; a slow machine gets another try.
    let mut limited = None;
    for attempt in 1..=3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let spent_at = std::time::Instant::now();
        assert_eq!(create().await.unwrap().status, 201, "the budget's one call");
        let edited = with_rule(&format!("only-alipay-{attempt}"));
        cm.publish(&edited);
        assert!(
            wait_hash(&run, &sha(&edited)).await,
            "the rule edit applied"
        );
        let resp = create().await.unwrap();
        if spent_at.elapsed() < Duration::from_millis(900) {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("an edit and a create within the second");
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    assert_eq!(
        resp.status, 429,
        "the spent budget survived the reload: {v}"
    );
    assert_eq!(v["code"], "rate_limited", "{v}");
    assert!(
        Arc::ptr_eq(&pool, &alipay_client(&run)),
        "the connection pool survived the reload"
    );
    // The channel's own rate_limit changes: a fresh budget at once.
    let fresh = with_rule("only-alipay-9").replace("burst: 1 }", "burst: 2 }");
    cm.publish(&fresh);
    assert!(wait_hash(&run, &sha(&fresh)).await);
    assert_eq!(
        create().await.unwrap().status,
        201,
        "a new limiter, a new budget"
    );
    assert!(
        Arc::ptr_eq(&pool, &alipay_client(&run)),
        "timeouts unchanged"
    );
    run.stop().await;
}
