//! The real binary: `check`, SIGTERM drain, and SIGKILL + restart losing nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::process::{json_request, sandbox_process, serve_args, wait_until, Ports, Proc, BIN};
use common::repo;
use payroute::channels::client::ChannelClient;
use serde_json::{json, Value};

fn client() -> ChannelClient {
    ChannelClient::new(Duration::from_secs(1), Duration::from_secs(20))
}

async fn call(method: &str, url: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let resp = client().send(json_request(method, url, body)).await.ok()?;
    let path = url.parse::<http::Uri>().unwrap().path().to_string();
    if path.starts_with("/v1/") {
        common::openapi::assert_documented(method, &path, resp.status, &resp.headers, &resp.body);
    }
    Some((
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    ))
}

/// `payroute sandbox` in its own process, and payroute processes serving one Alipay channel on
/// it, one after another on the same ledger and ports: they can be killed and restarted while
/// the simulator sees it all.
struct Crashable {
    dir: tempfile::TempDir,
    _sandbox: Proc,
    config: PathBuf,
    ports: Ports,
    /// The sandbox control URL.
    control: String,
}

impl Crashable {
    /// The sandbox (its files under `dir/sandbox`), and a routes.yaml in `dir` with one Alipay
    /// channel pointed at it.
    async fn start() -> Crashable {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = sandbox_process(&dir.path().join("sandbox")).await;
        let config = dir.path().join("routes.yaml");
        std::fs::write(
            &config,
            format!(
                "channels:\n  alipay:\n    kind: alipay\n    endpoint: {}\n    app_id: \"2021000000000001\"\n    \
                 app_private_key: {{ file: {} }}\n    alipay_public_key: {{ file: {} }}\n",
                sandbox.alipay_endpoint,
                repo().join("sandbox/keys/alipay_app_private.pem").display(),
                sandbox.alipay_key.display()
            ),
        )
        .unwrap();
        Crashable {
            dir,
            control: sandbox.control,
            _sandbox: sandbox.proc,
            config,
            ports: Ports::free(),
        }
    }

    /// A payroute process on the channel, once it is ready.
    async fn serve(&self) -> Proc {
        let p = serve(
            &self.config,
            &self.dir.path().join("data"),
            &self.ports,
            &[],
        );
        ready(&self.ports).await;
        p
    }

    /// A call to payroute's unified API.
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
        call(method, &format!("http://{}{path}", self.ports.api), body).await
    }

    /// Creates a QR payment (answered 201), returning the payment.
    async fn create(&self, no: &str, subject: &str) -> Value {
        let (s, created) = self
            .api("POST", "/v1/payments", Some(qr(no, subject)))
            .await
            .unwrap();
        assert_eq!(s, 201, "{created}");
        created
    }

    /// The payment as the unified API shows it (answered 200).
    async fn payment(&self, no: &str) -> Value {
        let (s, q) = self
            .api("GET", &format!("/v1/payments/{no}"), None)
            .await
            .unwrap();
        assert_eq!(s, 200, "{q}");
        q
    }

    /// A call to the Alipay simulator's control (`/sandbox/alipay<path>`).
    async fn sim(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
        let url = format!("{}/sandbox/alipay{path}", self.control);
        call(method, &url, body).await
    }

    /// Waits until the payment's view satisfies `done`.
    async fn wait_payment(&self, no: &str, what: &str, done: impl Fn(&Value) -> bool) {
        wait_until(what, async || {
            matches!(self.api("GET", &format!("/v1/payments/{no}"), None).await,
                Some((200, v)) if done(&v))
        })
        .await;
    }
}

/// An Alipay QR payment of 19.99 yuan.
fn qr(no: &str, subject: &str) -> Value {
    json!({"out_trade_no": no, "amount": 1999, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": subject})
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The process's exit code once it has exited (within `limit`).
async fn exit_code(mut p: Proc, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return s.code();
        }
        assert!(start.elapsed() < limit, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn serve(config: &Path, data: &Path, ports: &Ports, extra: &[&str]) -> Proc {
    let child = Command::new(BIN)
        .args(serve_args(config, data, ports))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

async fn ready(ports: &Ports) {
    let url = format!("http://{}/readyz", ports.admin);
    wait_until("readyz", async || {
        matches!(call("GET", &url, None).await, Some((200, _)))
    })
    .await;
}

#[test]
fn check_reports_line_and_column() {
    // The sample uses the sandbox's TEST keys: valid as `serve --sandbox` runs it.
    let out = Command::new(BIN)
        .args(["check", "--sandbox"])
        .arg(repo().join("routes.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "channels:\n  alipay:\n    kind: [unclosed\n  - nonsense: : :\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:3:11:"), "{err}");
    let out = Command::new(BIN)
        .arg("check")
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let p = serve(
        &repo().join("routes.yaml"),
        dir.path(),
        &ports,
        &["--sandbox"],
    );
    ready(&ports).await;
    let (s, _) = call(
        "PUT",
        &format!("http://{}/sandbox/alipay/faults", ports.admin),
        Some(json!({"kind": "latency", "ms": 1500})),
    )
    .await
    .unwrap();
    assert_eq!(s, 204);
    let api = format!("http://{}/v1/payments", ports.api);
    let body = json!({"out_trade_no": "DRAIN0001", "amount": 1100, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "drain"});
    let in_flight = tokio::spawn(async move { call("POST", &api, Some(body)).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigterm(&p.0);
    let (status, payment) = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(status, 201, "{payment}");
    assert!(payment["action"]["code_url"].is_string());
    assert_eq!(exit_code(p, Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn sigkill_after_acknowledged_create_loses_nothing() {
    let c = Crashable::start().await;
    let first = c.serve().await;
    let no = "KILL9ORDER01";
    let created = c.create(no, "crash").await;
    first.kill(); // SIGKILL right after the acknowledgement

    let _second = c.serve().await;
    let q = c.payment(no).await;
    assert_eq!(q["status"], "pending");
    assert_eq!(q["action"], created["action"]);

    let (s, _) = c
        .sim("POST", &format!("/payments/{no}/pay"), None)
        .await
        .unwrap();
    assert_eq!(s, 200);
    c.wait_payment(no, "succeeded", |v| v["status"] == "succeeded")
        .await;
    let (s, r) = c
        .api(
            "POST",
            &format!("/v1/payments/{no}/refunds"),
            Some(json!({"out_refund_no": "KILL9REFUND1", "amount": 999})),
        )
        .await
        .unwrap();
    assert_eq!((s, r["status"].clone()), (201, json!("succeeded")), "{r}");
}

#[tokio::test]
async fn sighup_forces_a_reload() {
    // No directory watch and a periodic check 10 minutes away: only SIGHUP can pick the change up.
    let sample = common::sample();
    let (_watched, config) = common::config_dir(&sample);
    let data = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let p = serve(
        &config,
        data.path(),
        &ports,
        &[
            "--sandbox",
            "--reload-poll-ms",
            "600000",
            "--watch-config",
            "false",
        ],
    );
    ready(&ports).await;
    let routes = format!("http://{}/admin/routes", ports.admin);
    let hash = async || {
        call("GET", &routes, None)
            .await
            .map(|(_, v)| v["hash"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let before = hash().await;
    let edited = sample.replace("rate: \"0.38%\"", "rate: \"0.37%\"");
    std::fs::write(&config, &edited).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hash().await, before, "not picked up without a signal");
    let ok = Command::new("kill")
        .args(["-HUP", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let want = payroute::crypto::sha256_hex(edited.as_bytes());
    wait_until("SIGHUP reload", async || hash().await == want).await;
    sigterm(&p.0);
    assert_eq!(exit_code(p, Duration::from_secs(15)).await, Some(0));
}

#[test]
fn explain_prints_the_ranking_and_rejects_bad_input() {
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("explain")
            .arg("--config")
            .arg(repo().join("routes.yaml"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--method", "alipay", "--scene", "qr", "--amount", "800"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rule small-qr-alipay: matched") && text.contains("1. pingpp"),
        "{text}"
    );
    let out = run(&[
        "--method",
        "alipay",
        "--scene",
        "qr",
        "--amount",
        "800",
        "--metadata",
        "tier=gold",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rule"], "vip-direct");
    assert_eq!(v["candidates"][0], "alipay");
    let out = run(&["--method", "bitcoin", "--scene", "qr", "--amount", "800"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("method must be one of"));
}

#[tokio::test]
async fn sigkill_while_a_channel_call_hangs_is_resolved_on_restart() {
    let c = Crashable::start().await;
    let first = c.serve().await;
    // The gateway takes the precreate and never answers.
    let (s, _) = c
        .sim("PUT", "/faults", Some(json!({"kind": "timeout"})))
        .await
        .unwrap();
    assert_eq!(s, 204);
    let no = "HANG0RDER0001";
    let hanging = tokio::spawn({
        let url = format!("http://{}/v1/payments", c.ports.api);
        async move { call("POST", &url, Some(qr(no, "hang"))).await }
    });
    wait_until("the call reached the gateway", async || {
        matches!(
            c.sim("GET", &format!("/payments/{no}"), None).await,
            Some((200, _))
        )
    })
    .await;
    first.kill(); // SIGKILL with the channel call in flight
    let _ = hanging.await;
    c.sim("DELETE", "/faults", None).await;
    let queries = async || {
        let (_, calls) = c.sim("GET", "/calls", None).await.unwrap();
        calls["alipay.trade.query"].as_u64().unwrap_or(0)
    };
    let queries_before = queries().await;

    let _second = c.serve().await;
    // Recovery asks the channel by itself, before the app asks anything.
    wait_until("recovery query", async || queries().await > queries_before).await;
    let q = c.payment(no).await;
    assert_eq!(q["status"], "pending");
    assert!(
        q["action"].is_null(),
        "the QR code never reached payroute: {q}"
    );
    // The app repeats its create: the channel hands out the same QR code again.
    let (s, again) = c
        .api("POST", "/v1/payments", Some(qr(no, "hang")))
        .await
        .unwrap();
    assert_eq!(s, 201, "{again}");
    assert_eq!(again["action"]["type"], "qr_code", "{again}");
    assert_eq!(
        again["route"]["attempts"][0]["outcome"], "accepted",
        "{again}"
    );
    // And it completes normally.
    c.sim("POST", &format!("/payments/{no}/pay"), None)
        .await
        .unwrap();
    c.wait_payment(no, "succeeded", |v| v["status"] == "succeeded")
        .await;
}

/// A payment that arrives after the order was closed is recorded, its refund fails at the
/// gateway, payroute is SIGKILLed; the next process refunds it, exactly once, and a repeated
/// notification refunds nothing more (the simulator is a separate process and sees it all).
#[tokio::test]
async fn sigkill_with_a_late_payment_refund_pending_refunds_it_once_after_restart() {
    let c = Crashable::start().await;
    let first = c.serve().await;
    let no = "KILL9LATE001";
    c.create(no, "late").await;
    let (s, closed) = c
        .api("POST", &format!("/v1/payments/{no}/close"), None)
        .await
        .unwrap();
    assert_eq!(
        (s, closed["close_confirmed"].clone()),
        (200, json!(false)),
        "{closed}"
    );
    // From now on the gateway answers 500 without processing: the refund cannot go through.
    let (s, _) = c
        .sim("PUT", "/faults", Some(json!({"kind": "http_500"})))
        .await
        .unwrap();
    assert_eq!(s, 204);
    // The customer scans the QR code that stayed payable, and pays.
    let (s, _) = c
        .sim("POST", &format!("/payments/{no}/pay"), None)
        .await
        .unwrap();
    assert_eq!(s, 200);
    let refund_status = |v: &Value| v["late_payments"][0]["refund_status"].clone();
    c.wait_payment(no, "the late payment recorded", |v| {
        refund_status(v) == "pending"
    })
    .await;
    first.kill(); // SIGKILL with the refund pending
    let shown = async || {
        let (_, at) = c
            .sim("GET", &format!("/payments/{no}"), None)
            .await
            .unwrap();
        let shown = (
            at["refunded"].clone(),
            at["refunds"].as_object().map(|r| r.len()),
        );
        (shown, at)
    };
    let (refunded, at) = shown().await;
    assert_eq!(refunded, (json!(0), Some(0)), "nothing refunded yet: {at}");

    c.sim("DELETE", "/faults", None).await;
    let _second = c.serve().await;
    c.wait_payment(no, "refunded by recovery", |v| {
        refund_status(v) == "succeeded"
    })
    .await;
    let (s, _) = c
        .sim("POST", &format!("/payments/{no}/notify"), None)
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (refunded, at) = shown().await;
    assert_eq!(refunded, (json!(1999), Some(1)), "refunded once: {at}");
    let q = c.payment(no).await;
    assert_eq!(q["status"], "closed");
    assert_eq!(q["late_payments"].as_array().unwrap().len(), 1, "{q}");
}

/// A split whose settle reached the gateway but whose answer never came back, and payroute is
/// SIGKILLed: the next process resolves it by query before the app asks, and never settles it
/// a second time (the simulator is a separate process and sees it all).
#[tokio::test]
async fn sigkill_during_a_split_is_resolved_by_query_after_restart_and_never_sent_twice() {
    let c = Crashable::start().await;
    let first = c.serve().await;
    let no = "KILL9SPLIT01";
    let mut body = qr(no, "split");
    body["split"] = json!(true);
    let (s, created) = c.api("POST", "/v1/payments", Some(body)).await.unwrap();
    assert_eq!(s, 201, "{created}");
    c.sim("POST", &format!("/payments/{no}/pay"), None)
        .await
        .unwrap();
    c.wait_payment(no, "succeeded", |v| v["status"] == "succeeded")
        .await;
    let receiver = |amount: u64| json!({"type": "user", "account": "2088000000000301", "amount": amount, "description": "share"});
    // A first split registers the receiver with the gateway.
    let split = |sp: &str, amount: u64| {
        let url = format!("http://{}/v1/payments/{no}/splits", c.ports.api);
        let body = json!({"out_split_no": sp, "receivers": [receiver(amount)]});
        async move { call("POST", &url, Some(body)).await }
    };
    let (s, first_split) = split("SPLIT_KILL_0", 500).await.unwrap();
    assert_eq!(s, 201, "{first_split}");
    // Then the gateway takes a settle and never answers.
    let (s, _) = c
        .sim("PUT", "/faults", Some(json!({"kind": "timeout"})))
        .await
        .unwrap();
    assert_eq!(s, 204);
    let hanging = tokio::spawn(split("SPLIT_KILL_1", 700));
    wait_until("the settle reached the gateway", async || {
        matches!(
            c.sim("GET", "/splits/SPLIT_KILL_1", None).await,
            Some((200, _))
        )
    })
    .await;
    first.kill(); // SIGKILL with the settle in flight
    let _ = hanging.await;
    c.sim("DELETE", "/faults", None).await;
    let calls = async |label: &str| {
        let (_, calls) = c.sim("GET", "/calls", None).await.unwrap();
        calls[label].as_u64().unwrap_or(0)
    };
    let queries_before = calls("alipay.trade.order.settle.query").await;
    let settles_before = calls("alipay.trade.order.settle").await;

    let _second = c.serve().await;
    // Recovery asks the gateway by itself, before the app asks anything.
    wait_until("recovery settle query", async || {
        calls("alipay.trade.order.settle.query").await > queries_before
    })
    .await;
    wait_until("the split settled", async || {
        matches!(c.api("GET", "/v1/splits/SPLIT_KILL_1", None).await,
            Some((200, v)) if v["status"] == "succeeded")
    })
    .await;
    assert_eq!(
        calls("alipay.trade.order.settle").await,
        settles_before,
        "the settle was never sent again"
    );
    let q = c.payment(no).await;
    assert_eq!(q["splits"]["split_amount"], 1200, "{q}");
    assert_eq!(q["splits"]["held_amount"], 1999 - 1200, "{q}");
    // The app repeats the split: the same answer, nothing sent.
    let (s, again) = split("SPLIT_KILL_1", 700).await.unwrap();
    assert_eq!((s, &again["status"]), (201, &json!("succeeded")), "{again}");
    assert_eq!(calls("alipay.trade.order.settle").await, settles_before);
}
