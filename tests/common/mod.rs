//! Test harness: payroute with its sandbox on ephemeral loopback ports, and a small client.
#![allow(dead_code)]

pub mod channels;
pub mod logs;
pub mod openapi;
pub mod own_sandbox;
pub mod pg;
pub mod process;
pub mod vectors;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use payroute::app::{start, Running};
use payroute::channels::client::ChannelClient;
use payroute::ledger::Order;
use payroute::sandbox::alipay::AlipaySim;

use payroute::settings::ServeArgs;
use serde_json::{json, Value};

/// The repository (where routes.yaml and the sandbox's keys are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's sample routes.yaml.
pub fn sample_config() -> PathBuf {
    repo().join("routes.yaml")
}

/// The sample routes.yaml's text.
pub fn sample() -> String {
    std::fs::read_to_string(sample_config()).unwrap()
}

/// A configuration directory of the test's own, with `text` as its routes.yaml; the sample's
/// key files are reachable from it as they are from the sample. Returns the directory and the
/// routes.yaml path.
pub fn config_dir(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("sandbox"), dir.path().join("sandbox")).unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

/// Serve arguments for payroute without its sandbox, on `yaml` written to `dir/routes.yaml`
/// (key files it names are read relative to it) and a ledger in `dir/data`.
pub fn configured_args(dir: &Path, yaml: &str) -> ServeArgs {
    let config = dir.join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut args = test_args(dir.join("data"));
    args.config = config;
    args.sandbox = false;
    args
}

/// Serve arguments for tests: ephemeral ports, a private ledger, fast barcode polling.
pub fn test_args(data_dir: PathBuf) -> ServeArgs {
    ServeArgs {
        config: sample_config(),
        sandbox: true,
        api_listen: "127.0.0.1:0".parse().unwrap(),
        notify_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        notify_base_url: None,
        data_dir: Some(data_dir),
        shutdown_grace_secs: 5,
        barcode_poll_ms: 100,
        barcode_poll_attempts: 5,
        payment_ttl_secs: 7200,
        reload_poll_ms: 2000,
        watch_config: true,
        create_deadline_ms: 30_000,
        abandon_retry_ms: 100,
        reconcile_at_hour: None,
        log_format: "text".into(),
        limits: Default::default(),
        ledger: Default::default(),
        events: Default::default(),
        replicas: Default::default(),
    }
}

/// A running payroute with sandbox.
pub struct Harness {
    pub run: Running,
    pub client: ChannelClient,
    _dir: tempfile::TempDir,
    /// The ledger's schema with `PAYROUTE_TEST_LEDGER=postgres` (see `pg`); dropped after the
    /// payroute that uses it.
    _ledger: Option<pg::Schema>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: http::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Harness {
    /// Starts payroute with the sample configuration.
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// Starts payroute with the test arguments as `edit` changes them (its ledger in a
    /// directory of its own).
    pub async fn start_with(edit: impl FnOnce(&mut ServeArgs)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut args = test_args(dir.path().to_path_buf());
        let ledger = pg::Schema::when_asked().await;
        args.ledger.url = ledger.as_ref().map(pg::Schema::ledger_url);
        edit(&mut args);
        let run = start(&args).await.expect("payroute starts");
        Harness {
            run,
            client: ChannelClient::new(Duration::from_secs(2), Duration::from_secs(30)),
            _dir: dir,
            _ledger: ledger,
        }
    }

    /// Starts payroute with `args` as given.
    pub async fn start_args(args: &ServeArgs) -> Harness {
        Harness::from_running(start(args).await.expect("payroute starts"))
    }

    /// Wraps an already started payroute.
    pub fn from_running(run: Running) -> Harness {
        Harness {
            run,
            client: ChannelClient::new(Duration::from_secs(2), Duration::from_secs(30)),
            _dir: tempfile::tempdir().unwrap(),
            _ledger: None,
        }
    }

    /// The Alipay simulator.
    pub fn alipay(&self) -> Arc<AlipaySim> {
        self.run.sandbox.as_ref().unwrap().alipay("alipay").unwrap()
    }

    pub async fn raw(
        &self,
        method: &str,
        url: String,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Reply {
        let mut b = http::Request::builder().method(method).uri(&url);
        if let Some(ct) = content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        self.send(b.body(Bytes::from(body.unwrap_or_default())).unwrap())
            .await
    }

    /// Sends a request as built (answers of the unified API are checked against its OpenAPI
    /// document).
    pub async fn send(&self, req: http::Request<Bytes>) -> Reply {
        let (method, url) = (req.method().to_string(), req.uri().to_string());
        let resp = self.client.send(req).await.expect("request answered");
        self.check_api_answer(&method, &url, &resp);
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        Reply {
            status: resp.status,
            content_type: resp
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            headers: resp.headers,
        }
    }

    /// Answers of the unified API must be documented by its OpenAPI document.
    fn check_api_answer(&self, method: &str, url: &str, resp: &payroute::channels::RawResponse) {
        let uri: http::Uri = url.parse().expect("a valid URL");
        if uri.authority().map(|a| a.as_str()) == Some(self.run.api.to_string().as_str()) {
            openapi::assert_documented(method, uri.path(), resp.status, &resp.headers, &resp.body);
        }
    }

    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let url = format!("http://{}{path}", self.run.api);
        let ct = body.as_ref().map(|_| "application/json");
        self.raw(method, url, body.map(|b| b.to_string().into_bytes()), ct)
            .await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let url = format!("http://{}{path}", self.run.admin);
        let ct = body.as_ref().map(|_| "application/json");
        self.raw(method, url, body.map(|b| b.to_string().into_bytes()), ct)
            .await
    }

    /// Injects a fault into a channel's simulator (see README *Sandbox*).
    pub async fn fault(&self, channel: &str, fault: Value) {
        let r = self
            .admin("PUT", &format!("/sandbox/{channel}/faults"), Some(fault))
            .await;
        assert_eq!(r.status, 204, "fault not injected: {}", r.text);
    }

    /// Clears a channel simulator's faults.
    pub async fn clear_faults(&self, channel: &str) {
        let r = self
            .admin("DELETE", &format!("/sandbox/{channel}/faults"), None)
            .await;
        assert_eq!(r.status, 204, "faults not cleared: {}", r.text);
    }

    /// POSTs a form to payroute's notification listener.
    pub async fn notify(&self, channel: &str, form: String) -> Reply {
        let url = format!("http://{}/notify/{channel}", self.run.notify);
        self.raw(
            "POST",
            url,
            Some(form.into_bytes()),
            Some("application/x-www-form-urlencoded; charset=utf-8"),
        )
        .await
    }

    /// Polls the payment until it has `status` (bounded), returning the last view.
    pub async fn wait_status(&self, no: &str, status: &str) -> Value {
        self.wait_for(no, status, |v| v["status"] == status).await
    }

    /// Polls the payment until `done` holds (bounded), returning the last view.
    pub async fn wait_for(&self, no: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..100 {
            last = self.payment(no).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("payment {no}: never {what}: {last}");
    }

    /// The payment as the unified API shows it.
    pub async fn payment(&self, no: &str) -> Value {
        self.api("GET", &format!("/v1/payments/{no}"), None)
            .await
            .json
    }

    /// The order as the ledger holds it.
    pub async fn order(&self, no: &str) -> Order {
        self.run
            .payments
            .ledger()
            .get_order(no)
            .await
            .unwrap()
            .expect("the order is in the ledger")
    }

    /// Waits until the ledger has the order succeeded, without asking the API (whose query
    /// could settle it): what moved it is then a notification.
    pub async fn wait_succeeded_in_ledger(&self, no: &str) -> Order {
        self.wait_in_ledger(no, "succeeded", |o| {
            o.status == payroute::domain::PaymentStatus::Succeeded
        })
        .await
    }

    /// Waits (bounded) until the ledger's order satisfies `done`, without asking the API
    /// (whose query could be what settles it).
    pub async fn wait_in_ledger(
        &self,
        no: &str,
        what: &str,
        done: impl Fn(&Order) -> bool,
    ) -> Order {
        let mut last = None;
        for _ in 0..100 {
            let o = self.order(no).await;
            if done(&o) {
                return o;
            }
            last = Some(o);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("order {no} never {what} in the ledger: {last:?}");
    }

    /// The customer pays the order at `channel`'s simulator (sandbox control).
    pub async fn pay(&self, channel: &str, no: &str) -> Reply {
        self.admin(
            "POST",
            &format!("/sandbox/{channel}/payments/{no}/pay"),
            None,
        )
        .await
    }

    /// The order as `channel`'s simulator shows it (sandbox control).
    pub async fn at_channel(&self, channel: &str, no: &str) -> Reply {
        self.admin("GET", &format!("/sandbox/{channel}/payments/{no}"), None)
            .await
    }

    /// Turns `channel`'s simulator's notifications on or off.
    pub async fn notifications(&self, channel: &str, enabled: bool) {
        let r = self
            .admin(
                "PUT",
                &format!("/sandbox/{channel}/notifications"),
                Some(json!({ "enabled": enabled })),
            )
            .await;
        assert_eq!(r.status, 204, "notifications not switched: {}", r.text);
    }

    /// How many calls `channel`'s simulator received under `label` (sandbox control).
    pub async fn calls_at(&self, channel: &str, label: &str) -> u64 {
        let r = self
            .admin("GET", &format!("/sandbox/{channel}/calls"), None)
            .await;
        r.json[label].as_u64().unwrap_or(0)
    }

    /// The WeChat Pay simulator.
    pub fn wechat(&self) -> Arc<payroute::sandbox::wechatpay::WechatSim> {
        self.run
            .sandbox
            .as_ref()
            .unwrap()
            .wechat("wechatpay")
            .unwrap()
    }

    /// The Ping++ simulator.
    pub fn pingpp(&self) -> Arc<payroute::sandbox::pingpp::PingppSim> {
        self.run.sandbox.as_ref().unwrap().pingpp("pingpp").unwrap()
    }

    /// Opens a channel's circuit as its breaker's run of failed calls would.
    pub fn open_circuit(&self, channel: &str) {
        let snap = self.run.payments.snapshot();
        let entry = snap.channel(channel).unwrap();
        let health = self.run.payments.health();
        for _ in 0..entry.breaker.consecutive_failures {
            health.record(channel, &entry.breaker, false);
        }
        assert!(self.circuit_open(channel), "circuit open");
    }

    /// Whether the channel's circuit is open now (holding back new payments).
    pub fn circuit_open(&self, channel: &str) -> bool {
        self.run.payments.health().state(channel) == payroute::health::State::Open
    }

    /// The Alipay simulator's call counts.
    pub async fn calls(&self, method: &str) -> u64 {
        self.alipay().calls().get(method).copied().unwrap_or(0)
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh merchant order number.
pub fn order_no(prefix: &str) -> String {
    format!("{prefix}{}", payroute::crypto::random_hex(8))
}

/// A QR payment request body.
pub fn qr(no: &str, amount: u64) -> Value {
    json!({
        "out_trade_no": no, "amount": amount, "currency": "CNY",
        "method": "alipay", "scene": "qr", "subject": "e2e test"
    })
}
