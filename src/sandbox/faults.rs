//! Fault injection for the simulators, and a listener that can really refuse connections.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use serde::Deserialize;
use tokio::sync::watch;

use super::kit::lock;

/// The kinds of fault a simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Close the listener: connections are refused.
    Refuse,
    /// Process the request, then never answer (the client times out after sending).
    Timeout,
    /// Answer HTTP 500 without processing.
    #[serde(rename = "http_500")]
    Http500,
    /// Answer HTTP 429 without processing.
    RateLimit,
    /// Wait `ms` before processing and answering.
    Latency,
    /// Process the request and answer with a corrupted signature.
    BadSignature,
}

/// One fault, as set by `PUT /sandbox/{channel}/faults`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub kind: FaultKind,
    /// Delay for `latency`.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Share of requests affected, 0 < ratio ≤ 1 (default 1).
    #[serde(default)]
    pub ratio: Option<f64>,
}

impl Fault {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(r) = self.ratio {
            if !(r > 0.0 && r <= 1.0) {
                return Err("ratio must be in (0, 1]".into());
            }
        }
        match (self.kind, self.ms) {
            (FaultKind::Latency, None) => Err("latency needs ms".into()),
            (FaultKind::Latency, Some(ms)) if ms > 600_000 => {
                Err("ms must be at most 600000".into())
            }
            _ => Ok(()),
        }
    }
}

/// The active fault of one simulator, whether its listener must refuse, and whether its
/// listening socket is open right now.
#[derive(Debug, Clone)]
pub struct Faults {
    active: Arc<Mutex<Option<Fault>>>,
    refusing: watch::Sender<bool>,
    /// `None` until a listener is served for this simulator (in-process tests serve none).
    listening: watch::Sender<Option<bool>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            active: Arc::default(),
            refusing: watch::channel(false).0,
            listening: watch::channel(None).0,
        }
    }
}

/// How long a fault change waits for the listening socket to close or open again.
const LISTENER_SETTLE: Duration = Duration::from_secs(5);

impl Faults {
    /// Replaces the active fault. Returns once the listener is in the state the fault asks
    /// for (closed for `refuse`, open otherwise), so a request sent after it sees the fault.
    pub async fn set(&self, f: Fault) {
        let refuse = f.kind == FaultKind::Refuse;
        *lock(&self.active) = Some(f);
        self.refusing.send_replace(refuse);
        self.settle(!refuse).await;
    }

    /// Clears every fault; returns once the listener accepts connections again.
    pub async fn clear(&self) {
        *lock(&self.active) = None;
        self.refusing.send_replace(false);
        self.settle(true).await;
    }

    /// Waits (bounded) until the listening socket is open (`true`) or closed (`false`).
    async fn settle(&self, open: bool) {
        let mut rx = self.listening.subscribe();
        let settled = rx.wait_for(|v| v.is_none_or(|now| now == open));
        let _ = tokio::time::timeout(LISTENER_SETTLE, settled).await;
    }

    /// The fault to apply to this request, if any (drawn against `ratio`).
    pub fn draw(&self) -> Option<Fault> {
        let f = lock(&self.active).clone()?;
        let ratio = f.ratio.unwrap_or(1.0);
        if ratio >= 1.0 {
            return Some(f);
        }
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).ok()?;
        let x = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
        (x < ratio).then_some(f)
    }
}

/// Serves `router` on `addr`; while a `refuse` fault is active the listening socket is
/// closed (so connections are refused) and it is bound again on the same address afterwards.
pub async fn serve_refusable(
    addr: SocketAddr,
    router: Router,
    faults: Faults,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let mut refusing = faults.refusing.subscribe();
    let listening = faults.listening.clone();
    tokio::spawn(async move {
        let mut listener = Some(listener);
        loop {
            let Some(l) = listener.take() else { break };
            let mut stop = refusing.clone();
            let mut sd = shutdown.clone();
            let l = Tracked::open(l, listening.clone());
            let served =
                axum::serve(no_delay(l), router.clone()).with_graceful_shutdown(async move {
                    tokio::select! {
                        _ = wait_until(&mut stop, true) => {}
                        _ = wait_until(&mut sd, true) => {}
                    }
                });
            // Connections still open finish in the background; the socket is closed now.
            let handle = tokio::spawn(served.into_future());
            tokio::select! {
                _ = wait_until(&mut refusing, true) => {}
                _ = wait_until(&mut shutdown, true) => { let _ = handle.await; break; }
            }
            drop(handle);
            tokio::select! {
                _ = wait_until(&mut refusing, false) => {}
                _ = wait_until(&mut shutdown, true) => break,
            }
            // Bind the same address again (bounded retries while the old socket lets go).
            for _ in 0..100 {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    });
    Ok(addr)
}

/// Waits until the watched flag equals `want` (or its sender is gone).
async fn wait_until(rx: &mut watch::Receiver<bool>, want: bool) {
    let _ = rx.wait_for(|v| *v == want).await.map(|_| ());
}

/// A listening socket that reports, through `listening`, when it is open and when it has
/// been dropped (closed), so fault changes can wait for the socket's real state.
struct Tracked {
    inner: tokio::net::TcpListener,
    listening: watch::Sender<Option<bool>>,
}

impl Tracked {
    fn open(inner: tokio::net::TcpListener, listening: watch::Sender<Option<bool>>) -> Self {
        listening.send_replace(Some(true));
        Tracked { inner, listening }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.listening.send_replace(Some(false));
    }
}

impl axum::serve::Listener for Tracked {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl std::future::Future<Output = (Self::Io, Self::Addr)> + Send {
        axum::serve::Listener::accept(&mut self.inner)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        axum::serve::Listener::local_addr(&self.inner)
    }
}

/// Answers without Nagle's delay, as payroute's own listeners do.
fn no_delay(
    listener: Tracked,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = SocketAddr> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}
