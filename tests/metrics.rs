//! Metrics as operators see them: the series a payment, a failover and a notification leave
//! behind; `promtool check metrics`; and a real Prometheus server scraping payroute.
//!
//! The last two need Debian's `prometheus` package (`promtool`, `prometheus`). Without it they
//! are skipped with a message, except under CI (`CI` set), where a missing tool fails the test.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, order_no, qr, Harness};
use serde_json::{json, Value};

/// The value of the series `name{labels}` (labels written as exposed: in alphabetical order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A tool on PATH, or `None` (skip) outside CI; under CI a missing tool is a failure.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed: apt-get install prometheus"
        );
        eprintln!("skipped: {name} not found (apt-get install prometheus)");
    }
    found
}

/// Traffic that touches every family: a payment that fails over from a refused channel and is
/// then paid (a notification), a refused notification, a client error and a lookup.
async fn drive(h: &Harness) -> String {
    let fault = json!({"kind": "refuse"});
    h.fault("pingpp", fault).await;
    let no = order_no("MET");
    let r = h.api("POST", "/v1/payments", Some(qr(&no, 800))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], "alipay", "{}", r.text);
    h.clear_faults("pingpp").await;
    let paid = h
        .admin("POST", &format!("/sandbox/alipay/payments/{no}/pay"), None)
        .await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    h.wait_status(&no, "succeeded").await;
    // The simulator notifies in the background; a query may have found the payment first.
    let accepted = "payroute_notifications_total{channel=\"alipay\",result=\"accepted\"}";
    for _ in 0..50 {
        let m = h.admin("GET", "/metrics", None).await.text;
        if sample(&m, accepted).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let forged = h
        .notify(
            "alipay",
            format!("out_trade_no={no}&trade_status=TRADE_SUCCESS&sign=AAAA"),
        )
        .await;
    assert_ne!(forged.text, "success");
    let bad = h
        .api("POST", "/v1/payments", Some(json!({"amount": "ten"})))
        .await;
    assert_eq!(bad.status, 400);
    no
}

#[tokio::test]
async fn a_failover_a_payment_and_notifications_show_in_the_metrics() {
    let h = Harness::start().await;
    let no = drive(&h).await;
    let m = h.admin("GET", "/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(
        m.content_type.starts_with("text/plain"),
        "{}",
        m.content_type
    );
    let t = &m.text;
    let v = |series: &str| sample(t, series).unwrap_or_else(|| panic!("no {series} in\n{t}"));
    // The failover: pingpp refused (nothing sent), alipay took it.
    assert_eq!(v("payroute_failovers_total{from=\"pingpp\"}"), 1.0);
    assert_eq!(
        v("payroute_channel_requests_total{channel=\"pingpp\",operation=\"create\",outcome=\"not_sent\"}"),
        1.0
    );
    assert_eq!(
        v("payroute_channel_requests_total{channel=\"alipay\",operation=\"create\",outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        v("payroute_channel_request_duration_seconds_count{channel=\"alipay\",operation=\"create\"}"),
        1.0
    );
    assert_eq!(
        v("payroute_route_decisions_total{channel=\"pingpp\",rule=\"small-qr-alipay\"}"),
        1.0
    );
    // The payment succeeded at alipay: 800 fen at 0.6% is 4.8, rounded half up to 5 fen.
    assert_eq!(
        v("payroute_paid_amount_fen_total{channel=\"alipay\"}"),
        800.0
    );
    assert_eq!(
        v("payroute_estimated_fee_fen_total{channel=\"alipay\"}"),
        5.0
    );
    assert_eq!(v("payroute_paid_amount_fen_total{channel=\"pingpp\"}"), 0.0);
    assert_eq!(
        v("payroute_notifications_total{channel=\"alipay\",result=\"accepted\"}"),
        1.0
    );
    assert_eq!(
        v("payroute_notifications_total{channel=\"alipay\",result=\"rejected\"}"),
        1.0
    );
    // Inbound API by operation and status.
    assert_eq!(
        v("payroute_http_requests_total{operation=\"create_payment\",status=\"201\"}"),
        1.0
    );
    assert_eq!(
        v("payroute_http_requests_total{operation=\"create_payment\",status=\"400\"}"),
        1.0
    );
    assert!(v("payroute_http_requests_total{operation=\"get_payment\",status=\"200\"}") >= 1.0);
    assert!(v("payroute_http_request_duration_seconds_count{operation=\"create_payment\"}") >= 2.0);
    // Ledger writes: the order before the call, and its updates.
    assert_eq!(
        v("payroute_ledger_write_duration_seconds_count{operation=\"insert_order\"}"),
        1.0
    );
    assert!(v("payroute_ledger_write_duration_seconds_count{operation=\"put_order\"}") >= 2.0);
    let commits = v("payroute_ledger_commits_total");
    assert!(
        commits >= 1.0
            && commits
                <= v("payroute_ledger_write_duration_seconds_count{operation=\"put_order\"}") + 1.0
    );
    assert_eq!(
        v(&format!(
            "payroute_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(v("payroute_config_last_reload_successful"), 1.0);
    assert_eq!(v("payroute_channel_circuit_state{channel=\"alipay\"}"), 0.0);
    // No rate limit in the sample: nothing fell back from Redis, and no channel has the gauge.
    assert_eq!(
        v("payroute_rate_limit_fallbacks_total{channel=\"alipay\"}"),
        0.0
    );
    assert!(!t.contains("payroute_rate_limit_shared{"), "{t}");
    // Bounded labels: no order number, no error text.
    assert!(!t.contains(&no), "an order number became a label");
    assert!(!t.contains("refused"), "an error text became a label");
    h.run.stop().await;
}

#[tokio::test]
async fn promtool_finds_the_exposition_clean() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let h = Harness::start().await;
    drive(&h).await;
    let text = h.admin("GET", "/metrics", None).await.text;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    h.run.stop().await;
}

/// A Prometheus server we started; killed (by its pid) when dropped.
struct PromServer(Child);

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_payroute_and_answers_queries() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let h = Harness::start().await;
    drive(&h).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: payroute\n    static_configs:\n      - targets: ['{}']\n",
            h.run.admin
        ),
    )
    .unwrap();
    let port = free_port();
    let _server = PromServer(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let query = |q: &str| {
        format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        )
    };
    // Prometheus starts, scrapes every second, and answers from its own storage (bounded wait).
    let mut last = Value::Null;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Until Prometheus listens, connections are refused: try again.
        let req = http::Request::get(query("payroute_failovers_total{from=\"pingpp\"}"))
            .body(bytes::Bytes::new())
            .unwrap();
        let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), h.client.send(req)).await
        else {
            continue;
        };
        last = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if last["data"]["result"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
    }
    let result = &last["data"]["result"][0];
    assert_eq!(result["metric"]["job"], "payroute", "{last}");
    assert_eq!(result["value"][1], "1", "{last}");
    // A second family, with a label match and aggregation done by Prometheus.
    let r = h
        .raw(
            "GET",
            query("sum by (channel) (payroute_paid_amount_fen_total{channel=\"alipay\"})"),
            None,
            None,
        )
        .await;
    assert_eq!(r.json["data"]["result"][0]["value"][1], "800", "{}", r.text);
    let up = h
        .raw("GET", query("up{job=\"payroute\"}"), None, None)
        .await;
    assert_eq!(up.json["data"]["result"][0]["value"][1], "1", "{}", up.text);
    h.run.stop().await;
}

/// payroute on the sample configuration with `extra` added to the pingpp channel (the sandbox
/// keys linked beside it, since routes.yaml names them relative to itself).
async fn with_pingpp(extra: &str) -> (Harness, tempfile::TempDir) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("sandbox"), dir.path().join("sandbox")).unwrap();
    let sample = std::fs::read_to_string(repo.join("routes.yaml")).unwrap();
    let anchor = "    fee: { rate: \"0.38%\" }\n";
    assert!(sample.contains(anchor));
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, sample.replace(anchor, &format!("{anchor}{extra}"))).unwrap();
    let mut args = common::test_args(dir.path().join("data"));
    args.config = config;
    let run = payroute::app::start(&args).await.expect("starts");
    (Harness::from_running(run), dir)
}

#[tokio::test]
async fn the_circuit_gauge_turns_half_open_when_the_open_time_ends_without_a_call() {
    let (h, _dir) = with_pingpp("    circuit: { consecutive_failures: 2, open_secs: 1 }\n").await;
    h.fault("pingpp", json!({"kind": "refuse"})).await;
    for _ in 0..2 {
        let r = h
            .api("POST", "/v1/payments", Some(qr(&order_no("CG"), 800)))
            .await;
        assert_eq!(r.json["channel"], "alipay", "{}", r.text);
    }
    let gauge = "payroute_channel_circuit_state{channel=\"pingpp\"}";
    let m = h.admin("GET", "/metrics", None).await.text;
    assert_eq!(sample(&m, gauge), Some(2.0), "open: {m}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // No payment, no call to pingpp: the scrape alone shows the breaker waiting for a probe.
    let m = h.admin("GET", "/metrics", None).await.text;
    assert_eq!(sample(&m, gauge), Some(1.0), "half-open: {m}");
    assert_eq!(
        sample(&m, "payroute_channel_circuit_state{channel=\"alipay\"}"),
        Some(0.0)
    );
    h.run.stop().await;
}

#[tokio::test]
async fn process_metrics_are_scraped() {
    let h = Harness::start().await;
    let m = h.admin("GET", "/metrics", None).await.text;
    let v = |name: &str| sample(&m, name).unwrap_or_else(|| panic!("no {name} in\n{m}"));
    assert!(v("process_resident_memory_bytes") > 0.0);
    assert!(
        v("process_open_fds") >= 3.0,
        "listeners and the ledger are open"
    );
    assert!(v("process_max_fds") >= v("process_open_fds"));
    assert!(v("process_cpu_seconds_total") >= 0.0);
    assert!(v("process_threads") >= 1.0);
    let started = v("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 3600.0,
        "{started} vs {now}"
    );
    h.run.stop().await;
}
