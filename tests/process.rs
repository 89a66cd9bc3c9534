//! The real binary: `check`, SIGTERM drain, and SIGKILL + restart losing nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::free_port;
use payroute::channels::client::ChannelClient;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_payroute");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn client() -> ChannelClient {
    ChannelClient::new(Duration::from_secs(1), Duration::from_secs(20))
}

async fn call(method: &str, url: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let mut b = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b
        .body(Bytes::from(body.map(|v| v.to_string()).unwrap_or_default()))
        .unwrap();
    let resp = client().send(req).await.ok()?;
    let path = url.parse::<http::Uri>().unwrap().path().to_string();
    if path.starts_with("/v1/") {
        common::openapi::assert_documented(method, &path, resp.status, &resp.headers, &resp.body);
    }
    Some((
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    ))
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A child process that is killed if the test panics.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `payroute sandbox` in its own process (its files under `dir/sandbox`), and a routes.yaml in
/// `dir` with one Alipay channel pointed at it. Returns the process, the config and the sandbox
/// control URL.
async fn alipay_sandbox(dir: &Path) -> (Proc, PathBuf, String) {
    let sb_dir = dir.join("sandbox");
    let control_port = free_port();
    let sandbox = Proc(
        Command::new(BIN)
            .arg("sandbox")
            .arg("--config")
            .arg(repo().join("routes.yaml"))
            .args(["--listen", &format!("127.0.0.1:{control_port}")])
            .arg("--dir")
            .arg(&sb_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint_file = sb_dir.join("alipay.endpoint");
    // The key is written after the endpoint: once it is there, both are complete.
    let key_file = sb_dir.join("alipay_platform_public.pem");
    wait_until("sandbox endpoint", async || {
        key_file.exists()
            && std::fs::read_to_string(&endpoint_file).is_ok_and(|e| e.starts_with("http"))
    })
    .await;
    let config = dir.join("routes.yaml");
    std::fs::write(
        &config,
        format!(
            "channels:\n  alipay:\n    kind: alipay\n    endpoint: {}\n    app_id: \"2021000000000001\"\n    \
             app_private_key: {{ file: {} }}\n    alipay_public_key: {{ file: {} }}\n",
            std::fs::read_to_string(&endpoint_file).unwrap(),
            repo().join("sandbox/keys/alipay_app_private.pem").display(),
            sb_dir.join("alipay_platform_public.pem").display()
        ),
    )
    .unwrap();
    (sandbox, config, format!("http://127.0.0.1:{control_port}"))
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

struct Ports {
    api: u16,
    notify: u16,
    admin: u16,
}

fn serve(config: &Path, data: &Path, ports: &Ports, extra: &[&str]) -> Proc {
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--api-listen", &format!("127.0.0.1:{}", ports.api)])
        .args(["--notify-listen", &format!("127.0.0.1:{}", ports.notify)])
        .args(["--admin-listen", &format!("127.0.0.1:{}", ports.admin)])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

async fn ready(ports: &Ports) {
    let url = format!("http://127.0.0.1:{}/readyz", ports.admin);
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
    let ports = Ports {
        api: free_port(),
        notify: free_port(),
        admin: free_port(),
    };
    let mut p = serve(
        &repo().join("routes.yaml"),
        dir.path(),
        &ports,
        &["--sandbox"],
    );
    ready(&ports).await;
    let admin = format!("http://127.0.0.1:{}", ports.admin);
    let (s, _) = call(
        "PUT",
        &format!("{admin}/sandbox/alipay/faults"),
        Some(json!({"kind": "latency", "ms": 1500})),
    )
    .await
    .unwrap();
    assert_eq!(s, 204);
    let api = format!("http://127.0.0.1:{}/v1/payments", ports.api);
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
    let start = Instant::now();
    let code = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code.code(), Some(0));
}

#[tokio::test]
async fn sigkill_after_acknowledged_create_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, config, control) = alipay_sandbox(dir.path()).await;
    let data = dir.path().join("data");
    let ports = Ports {
        api: free_port(),
        notify: free_port(),
        admin: free_port(),
    };
    let api = format!("http://127.0.0.1:{}", ports.api);

    let mut first = serve(&config, &data, &ports, &[]);
    ready(&ports).await;
    let no = "KILL9ORDER01";
    let body = json!({"out_trade_no": no, "amount": 1999, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "crash"});
    let (s, created) = call("POST", &format!("{api}/v1/payments"), Some(body))
        .await
        .unwrap();
    assert_eq!(s, 201, "{created}");
    first.0.kill().unwrap(); // SIGKILL right after the acknowledgement
    first.0.wait().unwrap();

    let _second = serve(&config, &data, &ports, &[]);
    ready(&ports).await;
    let (s, q) = call("GET", &format!("{api}/v1/payments/{no}"), None)
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(q["status"], "pending");
    assert_eq!(q["action"], created["action"]);

    let (s, _) = call(
        "POST",
        &format!("{control}/sandbox/alipay/payments/{no}/pay"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    wait_until("succeeded", async || {
        matches!(call("GET", &format!("{api}/v1/payments/{no}"), None).await, Some((200, v)) if v["status"] == "succeeded")
    })
    .await;
    let (s, r) = call(
        "POST",
        &format!("{api}/v1/payments/{no}/refunds"),
        Some(json!({"out_refund_no": "KILL9REFUND1", "amount": 999})),
    )
    .await
    .unwrap();
    assert_eq!((s, r["status"].clone()), (201, json!("succeeded")), "{r}");
    drop(sandbox);
}

#[tokio::test]
async fn sighup_forces_a_reload() {
    // No directory watch and a periodic check 10 minutes away: only SIGHUP can pick the change up.
    let watched = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("sandbox"), watched.path().join("sandbox")).unwrap();
    let config = watched.path().join("routes.yaml");
    let sample = std::fs::read_to_string(repo().join("routes.yaml")).unwrap();
    std::fs::write(&config, &sample).unwrap();
    let data = tempfile::tempdir().unwrap();
    let ports = Ports {
        api: free_port(),
        notify: free_port(),
        admin: free_port(),
    };
    let mut p = serve(
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
    let routes = format!("http://127.0.0.1:{}/admin/routes", ports.admin);
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
    assert_eq!(p.0.wait().unwrap().code(), Some(0));
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
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, control) = alipay_sandbox(dir.path()).await;
    let data = dir.path().join("data");
    let ports = Ports {
        api: free_port(),
        notify: free_port(),
        admin: free_port(),
    };
    let mut first = serve(&config, &data, &ports, &[]);
    ready(&ports).await;
    // The gateway takes the precreate and never answers.
    let (s, _) = call(
        "PUT",
        &format!("{control}/sandbox/alipay/faults"),
        Some(json!({"kind": "timeout"})),
    )
    .await
    .unwrap();
    assert_eq!(s, 204);
    let no = "HANG0RDER0001";
    let api = format!("http://127.0.0.1:{}", ports.api);
    let body = json!({"out_trade_no": no, "amount": 1999, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "hang"});
    let hanging = tokio::spawn({
        let api = api.clone();
        async move { call("POST", &format!("{api}/v1/payments"), Some(body)).await }
    });
    wait_until("the call reached the gateway", async || {
        matches!(
            call(
                "GET",
                &format!("{control}/sandbox/alipay/payments/{no}"),
                None
            )
            .await,
            Some((200, _))
        )
    })
    .await;
    first.0.kill().unwrap(); // SIGKILL with the channel call in flight
    first.0.wait().unwrap();
    let _ = hanging.await;
    call("DELETE", &format!("{control}/sandbox/alipay/faults"), None).await;
    let (_, before) = call("GET", &format!("{control}/sandbox/alipay/calls"), None)
        .await
        .unwrap();
    let queries_before = before["alipay.trade.query"].as_u64().unwrap_or(0);

    let _second = serve(&config, &data, &ports, &[]);
    ready(&ports).await;
    // Recovery asks the channel by itself, before the app asks anything.
    wait_until("recovery query", async || {
        let (_, c) = call("GET", &format!("{control}/sandbox/alipay/calls"), None)
            .await
            .unwrap();
        c["alipay.trade.query"].as_u64().unwrap_or(0) > queries_before
    })
    .await;
    let (s, q) = call("GET", &format!("{api}/v1/payments/{no}"), None)
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(q["status"], "pending");
    assert!(
        q["action"].is_null(),
        "the QR code never reached payroute: {q}"
    );
    // The app repeats its create: the channel hands out the same QR code again.
    let body = json!({"out_trade_no": no, "amount": 1999, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "hang"});
    let (s, again) = call("POST", &format!("{api}/v1/payments"), Some(body))
        .await
        .unwrap();
    assert_eq!(s, 201, "{again}");
    assert_eq!(again["action"]["type"], "qr_code", "{again}");
    assert_eq!(
        again["route"]["attempts"][0]["outcome"], "accepted",
        "{again}"
    );
    // And it completes normally.
    call(
        "POST",
        &format!("{control}/sandbox/alipay/payments/{no}/pay"),
        None,
    )
    .await
    .unwrap();
    wait_until("succeeded", async || {
        matches!(call("GET", &format!("{api}/v1/payments/{no}"), None).await, Some((200, v)) if v["status"] == "succeeded")
    })
    .await;
}

/// A payment that arrives after the order was closed is recorded, its refund fails at the
/// gateway, payroute is SIGKILLed; the next process refunds it, exactly once, and a repeated
/// notification refunds nothing more (the simulator is a separate process and sees it all).
#[tokio::test]
async fn sigkill_with_a_late_payment_refund_pending_refunds_it_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, control) = alipay_sandbox(dir.path()).await;
    let data = dir.path().join("data");
    let ports = Ports {
        api: free_port(),
        notify: free_port(),
        admin: free_port(),
    };
    let api = format!("http://127.0.0.1:{}", ports.api);
    let mut first = serve(&config, &data, &ports, &[]);
    ready(&ports).await;
    let no = "KILL9LATE001";
    let body = json!({"out_trade_no": no, "amount": 1999, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "late"});
    let (s, _) = call("POST", &format!("{api}/v1/payments"), Some(body))
        .await
        .unwrap();
    assert_eq!(s, 201);
    let (s, closed) = call("POST", &format!("{api}/v1/payments/{no}/close"), None)
        .await
        .unwrap();
    assert_eq!(
        (s, closed["close_confirmed"].clone()),
        (200, json!(false)),
        "{closed}"
    );
    // From now on the gateway answers 500 without processing: the refund cannot go through.
    let (s, _) = call(
        "PUT",
        &format!("{control}/sandbox/alipay/faults"),
        Some(json!({"kind": "http_500"})),
    )
    .await
    .unwrap();
    assert_eq!(s, 204);
    // The customer scans the QR code that stayed payable, and pays.
    let (s, _) = call(
        "POST",
        &format!("{control}/sandbox/alipay/payments/{no}/pay"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    wait_until("the late payment recorded", async || {
        matches!(call("GET", &format!("{api}/v1/payments/{no}"), None).await,
            Some((200, v)) if v["late_payments"][0]["refund_status"] == "pending")
    })
    .await;
    first.0.kill().unwrap(); // SIGKILL with the refund pending
    first.0.wait().unwrap();
    let shown = |v: &Value| {
        (
            v["refunded"].clone(),
            v["refunds"].as_object().map(|r| r.len()),
        )
    };
    let (_, at) = call(
        "GET",
        &format!("{control}/sandbox/alipay/payments/{no}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        shown(&at),
        (json!(0), Some(0)),
        "nothing refunded yet: {at}"
    );

    call("DELETE", &format!("{control}/sandbox/alipay/faults"), None).await;
    let _second = serve(&config, &data, &ports, &[]);
    ready(&ports).await;
    wait_until("refunded by recovery", async || {
        matches!(call("GET", &format!("{api}/v1/payments/{no}"), None).await,
            Some((200, v)) if v["late_payments"][0]["refund_status"] == "succeeded")
    })
    .await;
    let (s, _) = call(
        "POST",
        &format!("{control}/sandbox/alipay/payments/{no}/notify"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    let (_, at) = call(
        "GET",
        &format!("{control}/sandbox/alipay/payments/{no}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(shown(&at), (json!(1999), Some(1)), "refunded once: {at}");
    let (_, q) = call("GET", &format!("{api}/v1/payments/{no}"), None)
        .await
        .unwrap();
    assert_eq!(q["status"], "closed");
    assert_eq!(q["late_payments"].as_array().unwrap().len(), 1, "{q}");
}
