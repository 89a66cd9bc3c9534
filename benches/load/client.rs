//! The load generator's HTTP/1.1 client (tokio + hyper, keep-alive connections), the requests
//! creating payments through payroute, and how answers are counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

/// Upper bound of any single HTTP exchange.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// One request of the load: method, origin-form target, content type, body.
#[derive(Clone)]
pub struct Req {
    pub method: http::Method,
    pub target: String,
    pub content_type: &'static str,
    pub body: Bytes,
}

/// Builds request number `i` of a phase.
pub type MakeReq = Arc<dyn Fn(u64) -> Req + Send + Sync>;
/// Whether an answer counts as a success.
pub type IsOk = fn(u16, &[u8]) -> bool;

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    tx: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection to `addr`, connected.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let mut c = Conn { addr, tx: None };
        c.connect().await?;
        Ok(c)
    }

    /// (Re)connects, with Nagle off.
    async fn connect(&mut self) -> anyhow::Result<()> {
        let stream =
            tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
                .await??;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.tx = Some(tx);
        Ok(())
    }

    /// Sends one request; reconnects first when the previous exchange broke the connection.
    pub async fn send(&mut self, req: &Req) -> anyhow::Result<(u16, Bytes)> {
        if self.tx.as_ref().is_none_or(|t| t.is_closed()) {
            self.connect().await?;
        }
        let exchange = async {
            let tx = self.tx.as_mut().ok_or_else(|| anyhow!("not connected"))?;
            tx.ready().await?;
            let request = http::Request::builder()
                .method(req.method.clone())
                .uri(req.target.as_str())
                .header(http::header::HOST, self.addr.to_string())
                .header(http::header::CONTENT_TYPE, req.content_type)
                .body(Full::new(req.body.clone()))?;
            let response = tx.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.tx = None;
                Err(e)
            }
            Err(_) => {
                self.tx = None;
                bail!("no answer within {REQUEST_TIMEOUT:?}")
            }
        }
    }
}

/// The body of a GET that must answer 200, on a connection of its own.
pub async fn get_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut c = Conn::open(addr).await?;
    let (status, body) = c
        .send(&Req {
            method: http::Method::GET,
            target: path.into(),
            content_type: "text/plain",
            body: Bytes::new(),
        })
        .await?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A success, or what went wrong: the failing answer or the transport error.
pub fn judge(answer: &anyhow::Result<(u16, Bytes)>, is_ok: IsOk) -> Result<(), String> {
    match answer {
        Ok((s, b)) if is_ok(*s, b) => Ok(()),
        Ok((s, b)) => Err(format!("HTTP {s}: {}", String::from_utf8_lossy(b))),
        Err(e) => Err(e.to_string()),
    }
}

/// Successes and failures of a phase, with the first failure's message.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    /// Counts one judged answer.
    pub fn add(&mut self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Payments created through payroute in this run (every phase), for per-order ledger size.
pub static CREATED: AtomicU64 = AtomicU64::new(0);

/// A created (201) or repeated (200) payment; counts it in `CREATED`.
pub fn payroute_ok(status: u16, _: &[u8]) -> bool {
    let ok = status == 201 || status == 200;
    if ok {
        CREATED.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Requests creating alipay/qr payments through payroute, numbered within one phase.
pub fn payroute_requests(run: &str, phase: char) -> MakeReq {
    let prefix = format!("B{run}{phase}");
    Arc::new(move |i| {
        let body = json!({
            "out_trade_no": format!("{prefix}{i:09}"),
            "amount": 1000 + (i % 9000),
            "currency": "CNY",
            "method": "alipay",
            "scene": "qr",
            "subject": "Bench order",
        });
        Req {
            method: http::Method::POST,
            target: "/v1/payments".into(),
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
        }
    })
}
