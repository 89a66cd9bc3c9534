//! What payroute logs while it runs inside a test process, captured as the JSON lines
//! `--log-format json` writes (`payroute::logging::JsonLine`), so that a test can assert what
//! an operator would read. One capture serves every test of the binary (a process has one
//! global subscriber); tests tell their lines apart by their own order numbers.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// The captured output of this test process.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (at `info`, as payroute logs by default) and returns the capture; call
/// before starting payroute. Panics when another subscriber was installed first.
pub fn capture() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let out = captured.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_ansi(false)
                .with_writer(move || out.clone())
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(payroute::logging::JsonLine)
                .try_init()
                .expect("no other subscriber is installed");
            captured
        })
        .clone()
}

impl Captured {
    /// Every line captured so far.
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The lines that name `out_trade_no`.
    pub fn about(&self, out_trade_no: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["out_trade_no"] == out_trade_no)
            .collect()
    }
}
