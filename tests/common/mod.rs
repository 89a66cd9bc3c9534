//! Test harness: payroute with its sandbox on ephemeral loopback ports, and a small client.
#![allow(dead_code)]

pub mod openapi;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use payroute::app::{start, Running};
use payroute::channels::client::ChannelClient;
use payroute::sandbox::alipay::AlipaySim;

use payroute::settings::ServeArgs;
use serde_json::{json, Value};

/// The repository's sample routes.yaml.
pub fn sample_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("routes.yaml")
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
        log_format: "text".into(),
        limits: Default::default(),
        events: Default::default(),
    }
}

/// A running payroute with sandbox.
pub struct Harness {
    pub run: Running,
    pub client: ChannelClient,
    _dir: tempfile::TempDir,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    pub json: Value,
}

impl Harness {
    /// Starts payroute with the sample configuration.
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let run = start(&test_args(dir.path().to_path_buf()))
            .await
            .expect("payroute starts");
        Harness {
            run,
            client: ChannelClient::new(Duration::from_secs(2), Duration::from_secs(30)),
            _dir: dir,
        }
    }

    /// Wraps an already started payroute.
    pub fn from_running(run: Running) -> Harness {
        Harness {
            run,
            client: ChannelClient::new(Duration::from_secs(2), Duration::from_secs(30)),
            _dir: tempfile::tempdir().unwrap(),
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
        let resp = self
            .client
            .send(b.body(Bytes::from(body.unwrap_or_default())).unwrap())
            .await
            .expect("request answered");
        self.check_api_answer(method, &url, &resp);
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
        let mut last = Value::Null;
        for _ in 0..50 {
            last = self
                .api("GET", &format!("/v1/payments/{no}"), None)
                .await
                .json;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("payment {no} never reached {status}: {last}");
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

    /// The simulator's call counts.
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
