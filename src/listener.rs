//! Accepting and serving connections with per-listener timeouts and a connection cap, so that
//! idle or slow clients cannot hold the process's file descriptors: the admin probes keep
//! answering and a reload can still open routes.yaml and its key files.
//!
//! A connection is in one of four phases, each with its own deadline:
//! - *new*: waiting for its first request's headers — the header timeout from accept;
//! - *idle*: kept alive between requests, nothing received — the idle timeout;
//! - *partial*: the first bytes of a later request arrived — the header timeout from them;
//! - *busy*: a request is being handled — no connection deadline (the body read has its own,
//!   see `api::edge`, and handlers bound their channel calls).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::settings::ListenerArgs;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// The limits of the three listeners of `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub api: Limits,
    pub notify: Limits,
    pub admin: Limits,
}

/// Connection caps derived from the open-files limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub api: usize,
    pub notify: usize,
    pub admin: usize,
}

/// Descriptors kept for everything that is not an inbound connection: stdio, the runtime, the
/// ledger, the configuration watcher, a reload's routes.yaml and key files.
const RESERVED_FDS: u64 = 64;
/// The admin listener's share: probes and scrapes are few, and must always find room.
const ADMIN_CAP: u64 = 32;
/// Above this, more connections only mean more memory; the open-files limit is no longer the bound.
const MAX_CAP: u64 = 4096;
/// Below this a listener is useless; such a low open-files limit gets a warning instead.
const MIN_CAP: u64 = 4;

/// Caps for an open-files limit (`None`: unlimited or unknown). What is left after the
/// reserve and the admin share goes half to the notification listener, a quarter to the API
/// and a quarter to outbound channel connections (each API request may hold one).
pub fn derive_caps(nofile: Option<u64>) -> Caps {
    let nofile = nofile.unwrap_or(u64::MAX);
    let available = nofile.saturating_sub(RESERVED_FDS + ADMIN_CAP);
    let clamp = |n: u64| n.clamp(MIN_CAP, MAX_CAP) as usize;
    Caps {
        api: clamp(available / 4),
        notify: clamp(available / 2),
        admin: clamp(ADMIN_CAP.min(nofile / 8)),
    }
}

/// The soft open-files limit (`RLIMIT_NOFILE`), `None` when unlimited.
pub fn nofile_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

impl ListenerLimits {
    /// The limits from the settings; unset caps come from `caps`.
    pub fn from_args(a: &ListenerArgs, caps: Caps) -> ListenerLimits {
        let ms = Duration::from_millis;
        ListenerLimits {
            api: Limits {
                header_timeout: ms(a.api_header_timeout_ms),
                idle_timeout: ms(a.api_idle_timeout_ms),
                body_timeout: ms(a.api_body_timeout_ms),
                max_connections: a.api_max_connections.unwrap_or(caps.api).max(1),
            },
            notify: Limits {
                header_timeout: ms(a.notify_header_timeout_ms),
                idle_timeout: ms(a.notify_idle_timeout_ms),
                body_timeout: ms(a.notify_body_timeout_ms),
                max_connections: a.notify_max_connections.unwrap_or(caps.notify).max(1),
            },
            admin: Limits {
                header_timeout: ms(a.admin_header_timeout_ms),
                idle_timeout: ms(a.admin_idle_timeout_ms),
                body_timeout: ms(a.admin_body_timeout_ms),
                max_connections: a.admin_max_connections.unwrap_or(caps.admin).max(1),
            },
        }
    }
}

impl Default for Limits {
    /// The defaults of the admin listener; used by `payroute sandbox`'s control listener.
    fn default() -> Self {
        ListenerLimits::from_args(&ListenerArgs::default(), derive_caps(nofile_limit())).admin
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    New { since: Instant },
    Idle { since: Instant },
    Partial { since: Instant },
    Busy,
}

/// What a connection is doing, shared by its reader, its service and its watchdog.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::New {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn set(&self, f: impl FnOnce(Phase) -> Option<Phase>) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(next) = f(*phase) {
            *phase = next;
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: on an idle connection they start a request, timed from now.
    fn received_at(&self, now: Instant) {
        self.set(|p| match p {
            Phase::Idle { .. } => Some(Phase::Partial { since: now }),
            _ => None,
        });
    }

    fn idle_at(&self, now: Instant) {
        self.set(|_| Some(Phase::Idle { since: now }));
    }

    /// When the connection is to be closed, `None` while a request is handled.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(|p| p.into_inner()) {
            Phase::New { since } | Phase::Partial { since } => Some(since + limits.header_timeout),
            Phase::Idle { since } => Some(since + limits.idle_timeout),
            Phase::Busy => None,
        }
    }
}

/// Marks the connection busy while a request is handled.
struct BusyGuard(Arc<Activity>);

impl BusyGuard {
    fn enter(activity: &Arc<Activity>) -> BusyGuard {
        activity.set(|_| Some(Phase::Busy));
        BusyGuard(activity.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.idle_at(Instant::now());
    }
}

/// A TCP stream that reports received bytes to its connection's activity.
struct Watched {
    tcp: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received_at(Instant::now());
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Warns at most every 10 seconds, so that a flood does not flood the logs too.
struct Throttled(Option<Instant>);

impl Throttled {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.0.is_some_and(|t| now < t + Duration::from_secs(10)) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open connections finish their
/// requests (idle ones are closed at once). The task ends when the last connection has.
pub fn spawn(
    listener: TcpListener,
    name: &'static str,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut full_warning = Throttled(None);
        let mut error_warning = Throttled(None);
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: back off instead of spinning.
                    if error_warning.ready() {
                        tracing::warn!(listener = name, error = %e, "cannot accept connections");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // At the cap the connection is closed at once: it costs a descriptor for an
            // instant, not for as long as the peer keeps it.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(tcp);
                if full_warning.ready() {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections are closed"
                    );
                }
                continue;
            };
            // Small writes go out at once: without TCP_NODELAY a response written in two
            // pieces waits for the peer's delayed ACK, tens of milliseconds.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let (router, shutdown) = (router.clone(), shutdown.clone());
            tokio::spawn(async move {
                serve_connection(tcp, router, limits, shutdown).await;
                drop(slot);
            });
        }
        drop(listener);
        // Every slot back means every connection has ended.
        let _ = slots.acquire_many(limits.max_connections as u32).await;
    })
}

async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        tcp,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let busy = BusyGuard::enter(&activity);
            let router = router.clone();
            async move {
                let resp = router.oneshot(req.map(axum::body::Body::new)).await;
                drop(busy);
                resp
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        // The deadlines above replace hyper's own header timeout, which would also cut idle
        // keep-alive connections at the header timeout.
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = expired => {
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing a connection that sent no complete request in time");
                    return;
                }
            }
            _ = activity.changed.notified() => {}
            _ = shutdown.wait_for(|s| *s), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_room_for_everything_else() {
        let c = derive_caps(Some(256));
        assert_eq!(c.admin, 32);
        assert!(
            c.api + c.notify + c.admin + c.api + RESERVED_FDS as usize <= 256,
            "{c:?}"
        );
        assert!(c.api >= 32 && c.notify >= 64, "{c:?}");
        let c = derive_caps(Some(1024));
        assert_eq!((c.api, c.notify, c.admin), (232, 464, 32));
        let c = derive_caps(None);
        assert_eq!((c.api, c.notify, c.admin), (4096, 4096, 32));
        let c = derive_caps(Some(40));
        assert_eq!((c.api, c.notify, c.admin), (4, 4, 5));
    }

    #[test]
    fn explicit_caps_win_over_derived_ones() {
        let args = ListenerArgs {
            notify_max_connections: Some(7),
            ..ListenerArgs::default()
        };
        let l = ListenerLimits::from_args(&args, derive_caps(Some(1024)));
        assert_eq!(l.notify.max_connections, 7);
        assert_eq!(l.api.max_connections, 232);
        assert_eq!(l.api.idle_timeout, Duration::from_secs(600));
        assert_eq!(l.notify.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn phases_have_their_deadlines() {
        let s = Duration::from_secs;
        let limits = Limits {
            header_timeout: s(10),
            idle_timeout: s(60),
            body_timeout: s(30),
            max_connections: 1,
        };
        let a = Arc::new(Activity::new());
        let t0 = match *a.phase.lock().unwrap() {
            Phase::New { since } => since,
            p => panic!("{p:?}"),
        };
        assert_eq!(a.deadline(&limits), Some(t0 + s(10)));
        a.received_at(t0 + s(2)); // the first request's headers are timed from accept
        assert_eq!(a.deadline(&limits), Some(t0 + s(10)));
        let busy = BusyGuard::enter(&a);
        assert_eq!(a.deadline(&limits), None);
        a.received_at(t0 + s(3)); // the body of the request being handled
        assert_eq!(a.deadline(&limits), None);
        std::mem::forget(busy);
        a.idle_at(t0 + s(100));
        assert_eq!(a.deadline(&limits), Some(t0 + s(160)));
        a.received_at(t0 + s(120)); // a later request's headers are timed from their first byte
        assert_eq!(a.deadline(&limits), Some(t0 + s(130)));
        a.received_at(t0 + s(125));
        assert_eq!(a.deadline(&limits), Some(t0 + s(130)));
    }
}
