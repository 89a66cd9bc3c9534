//! The app's side of event delivery: `receiver.py` in its own process, where the official
//! Standard Webhooks library (PyPI `standardwebhooks`) verifies every delivery, and what it
//! logged.
//!
//! The library is imported from `PAYROUTE_STANDARDWEBHOOKS_PATH` (a `pip install --target`
//! directory, as `.ci/run` makes) or from Python's own path. Without it the tests print why
//! they are skipped and pass, except under CI (`CI` set), where they fail.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/events/receiver.py");

/// Where Python finds `standardwebhooks`.
#[derive(Clone, Debug)]
pub struct Library {
    python_path: Option<OsString>,
}

/// The library, or `None` (the test is skipped) outside CI; under CI a missing library fails.
pub fn library(test: &str) -> Option<Library> {
    let python_path = std::env::var_os("PAYROUTE_STANDARDWEBHOOKS_PATH").filter(|p| !p.is_empty());
    let mut probe = Command::new("python3");
    probe.args(["-c", "import standardwebhooks.webhooks"]);
    if let Some(p) = &python_path {
        probe.env("PYTHONPATH", p);
    }
    if probe.output().is_ok_and(|o| o.status.success()) {
        return Some(Library { python_path });
    }
    let why = "the Python library standardwebhooks is not importable (install with python3 -m \
               pip install --target DIR standardwebhooks, then set \
               PAYROUTE_STANDARDWEBHOOKS_PATH=DIR)";
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    eprintln!("{test} skipped: {why}");
    None
}

/// A fresh `whsec_` secret (32 random bytes).
pub fn new_secret() -> String {
    let bytes = payroute::crypto::random_hex(16).into_bytes();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// What the receiver logged about one request.
#[derive(Clone, Debug, Deserialize)]
pub struct Line {
    /// When it arrived (Unix seconds).
    pub at: f64,
    pub webhook_id: Option<String>,
    /// The names of the secrets that verified the delivery, sorted.
    pub verified_by: Vec<String>,
    /// The names of the secrets that did not, with the library's reason.
    pub rejected_by: Map<String, Value>,
    /// 200, 503, 401, or "hang" (nothing answered).
    pub answer: Value,
    /// The event as the library returned it after verifying (none when nothing verified).
    pub event: Option<Value>,
}

impl Line {
    /// Answered 2xx: delivered.
    pub fn delivered(&self) -> bool {
        self.answer == 200
    }

    pub fn event_type(&self) -> &str {
        self.event
            .as_ref()
            .and_then(|e| e["type"].as_str())
            .unwrap_or_default()
    }

    pub fn event_id(&self) -> &str {
        self.event
            .as_ref()
            .and_then(|e| e["id"].as_str())
            .unwrap_or_default()
    }

    /// The order the event is about (a payment's or a refund's `out_trade_no`).
    pub fn out_trade_no(&self) -> &str {
        self.event
            .as_ref()
            .and_then(|e| e["data"]["out_trade_no"].as_str())
            .unwrap_or_default()
    }
}

/// A receiver process, started and stopped by the test; its log outlives restarts.
pub struct Receiver {
    lib: Library,
    dir: PathBuf,
    secrets: Vec<(String, String)>,
    child: Option<Child>,
    /// 0 until started or reserved.
    pub port: u16,
}

impl Receiver {
    /// A receiver holding `secrets` (name, `whsec_…`), each verifying on its own; not started.
    pub fn new(lib: &Library, dir: &Path, secrets: &[(&str, &str)]) -> Receiver {
        let dir = dir.join("receiver");
        std::fs::create_dir_all(&dir).unwrap();
        Receiver {
            lib: lib.clone(),
            dir,
            secrets: secrets
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
            child: None,
            port: 0,
        }
    }

    /// Picks the port now, so that payroute can be pointed at a receiver that is down.
    pub fn reserve_port(&mut self) {
        self.port = super::common::free_port();
    }

    /// `http://127.0.0.1:<port>/hook` (the port must be known).
    pub fn url(&self) -> String {
        assert_ne!(self.port, 0, "start the receiver or reserve its port first");
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Starts the process (on the reserved or last port, else any) and waits until it listens.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "the receiver is running");
        let port_file = self.dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT)
            .args(["--port", &self.port.to_string()])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(self.log_path())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("stderr")).unwrap());
        for (name, secret) in &self.secrets {
            cmd.arg("--secret").arg(format!("{name}={secret}"));
        }
        if let Some(p) = &self.lib.python_path {
            cmd.env("PYTHONPATH", p);
        }
        let mut child = cmd.spawn().expect("python3 runs");
        let start = Instant::now();
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.parse().ok())
            {
                break p;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the receiver exited ({status}): {}", self.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the receiver did not start: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.port = port;
        self.child = Some(child);
    }

    /// Kills the process this receiver started (its port stays reserved for a restart).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Changes how the next deliveries are answered (see receiver.py).
    pub async fn control(&self, change: Value) {
        let url = format!("http://127.0.0.1:{}/control", self.port);
        let (status, _) = super::call("POST", &url, Some(change)).await;
        assert_eq!(status, 204);
    }

    /// Every request logged so far, in arrival order.
    pub fn lines(&self) -> Vec<Line> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a receiver log line"))
            .collect()
    }

    /// The deliveries answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Line> {
        self.lines().into_iter().filter(Line::delivered).collect()
    }

    /// The last lines of the log and the process's stderr, for a failing test.
    pub fn tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(20);
        format!("{}\n{}", lines[from..].join("\n"), self.stderr())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("log.jsonl")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("receiver log (last lines):\n{}", self.tail());
        }
        self.stop();
    }
}
