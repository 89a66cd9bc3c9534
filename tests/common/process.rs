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
