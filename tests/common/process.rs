//! The real binary in child processes.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The payroute binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_payroute");

/// A child process that is killed if the test panics.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGKILL, and wait until it is gone.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

/// `payroute sandbox` in a process of its own, its files under a directory.
pub struct SandboxProc {
    pub proc: Proc,
    /// The control listener, `http://127.0.0.1:<port>`.
    pub control: String,
    /// The Alipay simulator's gateway URL.
    pub alipay_endpoint: String,
    /// The Alipay simulator's platform public key.
    pub alipay_key: std::path::PathBuf,
}

/// Starts `payroute sandbox` on the repository's routes.yaml with its files in `dir`, once its
/// Alipay endpoint and key are written.
pub async fn sandbox_process(dir: &Path) -> SandboxProc {
    let control_port = super::free_port();
    let proc = Proc(
        std::process::Command::new(BIN)
            .arg("sandbox")
            .arg("--config")
            .arg(super::repo().join("routes.yaml"))
            .args(["--listen", &format!("127.0.0.1:{control_port}")])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint_file = dir.join("alipay.endpoint");
    // The key is written after the endpoint: once it is there, both are complete.
    let key_file = dir.join("alipay_platform_public.pem");
    wait_until("sandbox endpoint", async || {
        key_file.exists()
            && std::fs::read_to_string(&endpoint_file).is_ok_and(|e| e.starts_with("http"))
    })
    .await;
    SandboxProc {
        proc,
        control: format!("http://127.0.0.1:{control_port}"),
        alipay_endpoint: std::fs::read_to_string(&endpoint_file).unwrap(),
        alipay_key: key_file,
    }
}

/// Loopback addresses for payroute's three listeners.
pub struct Ports {
    pub api: SocketAddr,
    pub notify: SocketAddr,
    pub admin: SocketAddr,
}

impl Ports {
    /// Ports that were free a moment ago.
    pub fn free() -> Ports {
        let at = |p| SocketAddr::from(([127, 0, 0, 1], p));
        Ports {
            api: at(super::free_port()),
            notify: at(super::free_port()),
            admin: at(super::free_port()),
        }
    }
}

/// The arguments of `payroute serve` on `config`, with its ledger in `data` and its listeners
/// on `ports`.
pub fn serve_args(config: &Path, data: &Path, ports: &Ports) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["serve".into(), "--config".into(), config.into()];
    args.extend(["--data-dir".into(), data.into()]);
    for (flag, addr) in [
        ("--api-listen", ports.api),
        ("--notify-listen", ports.notify),
        ("--admin-listen", ports.admin),
    ] {
        args.extend([flag.into(), addr.to_string().into()]);
    }
    args
}

/// Polls `f` until it holds (for at most a minute); panics naming `what`.
pub async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A request with an optional JSON body.
pub fn json_request(
    method: &str,
    url: &str,
    body: Option<serde_json::Value>,
) -> http::Request<bytes::Bytes> {
    let mut b = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(body.map(|v| v.to_string()).unwrap_or_default().into())
        .unwrap()
}
