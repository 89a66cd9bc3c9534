//! The real binary in child processes.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;

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
