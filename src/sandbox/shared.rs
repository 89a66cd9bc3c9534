//! What every simulator shares, whatever its protocol: the fault switchboard applied around
//! the gateway handler, call counts, the notifications switch, sending notifications (with
//! retries) and the listener address. A channel's simulator implements [`Simulator`] and keeps
//! only its protocol: verify requests, keep trades, sign answers, build notifications.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use super::faults::{FaultKind, Faults};
use super::kit::lock;
use super::SimChannel;
use crate::channels::client::{is_loopback_host, ChannelClient};
use crate::crypto::{PrivateKey, PublicKey, SymmetricKey};

/// One request to a simulated gateway.
#[derive(Debug)]
pub struct GatewayRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl GatewayRequest {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Why a control action (pay, scan) was refused: status, code, message.
pub type ControlError = (StatusCode, &'static str, String);

/// The order is not at the simulator.
pub fn not_found(code: &'static str, message: &str) -> ControlError {
    (StatusCode::NOT_FOUND, code, message.to_string())
}

/// The order's state does not allow the action.
pub fn conflict(code: &'static str, message: &str) -> ControlError {
    (StatusCode::CONFLICT, code, message.to_string())
}

/// A notification ready to post to the merchant.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// What payroute must be configured with to talk to a simulator (besides its endpoint).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The key the simulator's answers and notifications verify with.
    pub platform_public_key: PublicKey,
    /// WeChat Pay: the id answers are signed under (`PUB_KEY_ID_…` or a certificate serial).
    pub platform_key_id: Option<String>,
    /// WeChat Pay: the APIv3 key notifications are encrypted with.
    pub apiv3_key: Option<Arc<SymmetricKey>>,
    /// Ping++: the secret key requests must carry.
    pub secret_key: Option<String>,
}

impl Credentials {
    /// Answers and notifications signed with `platform_key`, nothing else to configure.
    pub fn signed_by(platform_key: &PrivateKey) -> Self {
        Credentials {
            platform_public_key: platform_key.public_key(),
            platform_key_id: None,
            apiv3_key: None,
            secret_key: None,
        }
    }
}

/// A channel's protocol, as its simulator speaks it.
pub trait Simulator: Send + Sync + std::fmt::Debug + Sized + 'static {
    /// The channel kind simulated (`kind:` in routes.yaml).
    const KIND: &'static str;
    /// The one path the gateway answers on (Alipay's `/gateway.do`); `None`: every path.
    const PATH: Option<&'static str> = None;
    /// A second path served besides `PATH` (Alipay's statement downloads); given to `handle`
    /// like the gateway's.
    const FILE_PATH: Option<&'static str> = None;

    /// A simulator for the given channel.
    fn new(c: &SimChannel) -> Self;
    /// The name a gateway call is counted under (ids replaced by `{}`).
    fn call_label(&self, req: &GatewayRequest) -> String;
    /// Verifies, processes and answers a request; `tamper`: sign the answer wrongly.
    fn handle(&self, req: &GatewayRequest, tamper: bool) -> Response;
    /// The answer to a request refused by an `http_500` or `rate_limit` fault.
    fn refused(&self, kind: FaultKind) -> Response {
        match kind {
            FaultKind::RateLimit => (
                StatusCode::TOO_MANY_REQUESTS,
                [(http::header::RETRY_AFTER, "1")],
                "Too Many Requests",
            )
                .into_response(),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response(),
        }
    }
    /// The customer pays; `even_if_closed` models a channel that takes the payment although
    /// it had closed the order (a race with the close, or a channel fault).
    fn pay(&self, no: &str, even_if_closed: bool) -> Result<Value, ControlError>;
    /// The buyer scans the QR code (or opens the cashier) without paying. Only channels whose
    /// orders come into being at the scan (Alipay precreate) change anything.
    fn scan(&self, no: &str) -> Result<Value, ControlError> {
        self.view(no)
            .ok_or_else(|| not_found("not_found", "no such order at the simulator"))
    }
    /// What the control API shows about an order.
    fn view(&self, no: &str) -> Option<Value>;
    /// The notification of the order's current state.
    fn notification(&self, no: &str) -> Result<Outgoing, String>;
    /// Whether the merchant's answer acknowledges a notification.
    fn acknowledged(&self, status: u16, body: &str) -> bool;
    /// What payroute verifies this simulator with.
    fn credentials(&self) -> Credentials;
    /// Where payroute's notification listener is (`<base>/notify/<channel>`), for channels
    /// whose notification URL is set in a dashboard rather than per request.
    fn set_notify_url(&self, _url: String) {}
    /// Profit sharing: how the receiver `account` behaves from now on. Channels that do not
    /// split keep this default.
    fn set_receiver(
        &self,
        _account: &str,
        _behaviour: ReceiverBehaviour,
    ) -> Result<(), ControlError> {
        Err(conflict(
            "operation_unsupported",
            "this simulator does not model profit sharing",
        ))
    }
    /// What the control API shows about a split (its receivers' results and its returns).
    fn split_view(&self, _out_split_no: &str) -> Option<Value> {
        None
    }
    /// Changes the statements this simulator serves from now on (discrepancies to test
    /// reconciliation with). Channels without statements keep this default.
    fn set_statement_edits(&self, _edits: StatementEdits) -> Result<(), ControlError> {
        Err(conflict(
            "operation_unsupported",
            "this simulator does not serve statements",
        ))
    }
}

/// Discrepancies a simulator puts in the statements it serves
/// (`PUT /sandbox/{channel}/statements`); each call replaces the previous edits.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementEdits {
    /// Paid payments the statement shows that the merchant never created.
    #[serde(default)]
    pub extra: Vec<ExtraPayment>,
    /// Orders the statement shows with another amount (fen).
    #[serde(default)]
    pub amounts: BTreeMap<String, u64>,
    /// Orders (and their refunds) the statement leaves out.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Serve a damaged file: its bytes do not match the hash given and do not unpack.
    #[serde(default)]
    pub corrupt: bool,
}

/// A payment in a statement only (see [`StatementEdits::extra`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraPayment {
    pub out_trade_no: String,
    pub amount: u64,
}

/// How a split receiver behaves at a simulator (`PUT /sandbox/{channel}/receivers/{account}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverBehaviour {
    /// Shares to this receiver end failed (CLOSED) with this reason, e.g. `NO_RELATION`.
    #[serde(default)]
    pub share_fail: Option<String>,
    /// Returns from this receiver fail with this reason, e.g. `BALANCE_NOT_ENOUGH`.
    #[serde(default)]
    pub return_fail: Option<String>,
    /// Binding this receiver is refused with this reason.
    #[serde(default)]
    pub bind_fail: Option<String>,
}

/// A running simulator: the shared core around one channel's protocol. It dereferences to
/// the protocol, so protocol-specific helpers (`notification_body`, `webhook`, …) are at hand.
#[derive(Debug)]
pub struct Sim<S> {
    name: String,
    gateway: S,
    faults: Faults,
    notifications: AtomicBool,
    calls: Mutex<BTreeMap<String, u64>>,
    addr: OnceLock<SocketAddr>,
    notifier: ChannelClient,
}

impl<S> std::ops::Deref for Sim<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.gateway
    }
}

/// The retry schedule of notifications (the first is sent at once).
const NOTIFY_DELAYS_MS: [u64; 4] = [0, 200, 1_000, 3_000];

impl<S: Simulator> Sim<S> {
    fn new(c: &SimChannel) -> Self {
        Sim {
            name: c.name.clone(),
            gateway: S::new(c),
            faults: Faults::default(),
            notifications: AtomicBool::new(true),
            calls: Mutex::default(),
            addr: OnceLock::new(),
            notifier: ChannelClient::new(Duration::from_secs(2), Duration::from_secs(5)),
        }
    }

    /// The fault switchboard.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Where the gateway listens.
    pub fn addr(&self) -> SocketAddr {
        *self.addr.get().expect("simulator started")
    }

    /// The endpoint payroute is configured with for this simulator.
    pub fn endpoint(&self) -> String {
        format!("http://{}{}", self.addr(), S::PATH.unwrap_or(""))
    }

    /// Turns notifications on or off.
    pub fn set_notifications(&self, enabled: bool) {
        self.notifications.store(enabled, Ordering::Relaxed);
    }

    /// Gateway calls received (faulted ones too), by label.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }

    /// The customer pays, and the notification is sent (while notifications are on).
    pub fn pay(self: &Arc<Self>, no: &str) -> Result<Value, ControlError> {
        self.pay_as(no, false)
    }

    /// The customer pays an order the channel had closed: models a payment that races the
    /// close, or a channel fault. Tests use it to see the late-payment guard at work.
    pub fn pay_even_if_closed(self: &Arc<Self>, no: &str) -> Result<Value, ControlError> {
        self.pay_as(no, true)
    }

    fn pay_as(self: &Arc<Self>, no: &str, even_if_closed: bool) -> Result<Value, ControlError> {
        let view = self.gateway.pay(no, even_if_closed)?;
        if self.notifications.load(Ordering::Relaxed) {
            match self.gateway.notification(no) {
                Ok(n) => {
                    let sim = self.clone();
                    let no = no.to_string();
                    tokio::spawn(async move { sim.deliver_with_retries(&no, n).await });
                }
                Err(e) => {
                    tracing::warn!(channel = self.name.as_str(), error = %e, "notification not sent")
                }
            }
        }
        Ok(view)
    }

    /// (Re)sends the notification of the order's current state once; returns payroute's
    /// HTTP status and body.
    pub async fn notify_once(&self, no: &str) -> Result<(u16, String), String> {
        let n = self.gateway.notification(no)?;
        self.post(&n).await
    }

    /// Posts a notification (to loopback hosts only); returns payroute's status and body.
    pub async fn post(&self, n: &Outgoing) -> Result<(u16, String), String> {
        if !is_loopback_url(&n.url) {
            return Err(format!(
                "sandbox sends notifications to loopback hosts only, not {}",
                n.url
            ));
        }
        let mut req =
            http::Request::post(n.url.as_str()).header(http::header::CONTENT_TYPE, n.content_type);
        for (k, v) in &n.headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Bytes::from(n.body.clone()))
            .map_err(|e| e.to_string())?;
        let resp = self.notifier.send(req).await.map_err(|e| e.to_string())?;
        Ok((
            resp.status,
            String::from_utf8_lossy(&resp.body).into_owned(),
        ))
    }

    /// Sends the notification until the merchant acknowledges it (bounded retries).
    async fn deliver_with_retries(&self, no: &str, n: Outgoing) {
        if !is_loopback_url(&n.url) {
            tracing::warn!(
                channel = self.name.as_str(),
                url = n.url.as_str(),
                "notification not sent: the sandbox sends to loopback hosts only"
            );
            return;
        }
        for delay_ms in NOTIFY_DELAYS_MS {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if let Ok((status, body)) = self.post(&n).await {
                if self.gateway.acknowledged(status, &body) {
                    return;
                }
            }
        }
        tracing::warn!(
            channel = self.name.as_str(),
            out_trade_no = no,
            "notification not acknowledged"
        );
    }

    /// Every gateway request: counted, then faults, then the protocol.
    async fn serve(
        State(sim): State<Arc<Self>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let req = GatewayRequest {
            method,
            uri,
            headers,
            body,
        };
        *lock(&sim.calls)
            .entry(sim.gateway.call_label(&req))
            .or_default() += 1;
        let fault = sim.faults.draw();
        let kind = fault.as_ref().map(|f| f.kind);
        match kind {
            Some(k @ (FaultKind::Http500 | FaultKind::RateLimit)) => return sim.gateway.refused(k),
            Some(FaultKind::Latency) => {
                let ms = fault.as_ref().and_then(|f| f.ms).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await
            }
            _ => {}
        }
        let response = sim
            .gateway
            .handle(&req, kind == Some(FaultKind::BadSignature));
        if kind == Some(FaultKind::Timeout) {
            // Processed, but the answer never comes (bounded so the task ends).
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        response
    }

    fn router(self: &Arc<Self>) -> Router {
        let router = match S::PATH {
            Some(path) => Router::new().route(path, get(Self::serve).post(Self::serve)),
            None => Router::new().fallback(Self::serve),
        };
        let router = match S::FILE_PATH {
            Some(path) => router.route(path, get(Self::serve)),
            None => router,
        };
        router.with_state(self.clone())
    }

    /// Starts the simulator on an ephemeral port of `ip`, on its own listener (so that it can
    /// refuse connections while the others work).
    pub(super) async fn start(
        c: &SimChannel,
        ip: std::net::IpAddr,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Self>> {
        let sim = Arc::new(Self::new(c));
        let addr = super::faults::serve_refusable(
            SocketAddr::new(ip, 0),
            sim.router(),
            sim.faults.clone(),
            shutdown,
        )
        .await?;
        let _ = sim.addr.set(addr);
        Ok(sim)
    }
}

fn is_loopback_url(url: &str) -> bool {
    url.parse::<Uri>()
        .ok()
        .and_then(|u| u.host().map(is_loopback_host))
        .unwrap_or(false)
}

/// A boxed future, for the object-safe [`AnySim`].
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Any simulator, whatever its protocol: what the sandbox and its control API use.
pub(super) trait AnySim: Send + Sync + std::fmt::Debug {
    fn faults(&self) -> &Faults;
    fn calls(&self) -> BTreeMap<String, u64>;
    fn set_notifications(&self, enabled: bool);
    fn endpoint(&self) -> String;
    fn credentials(&self) -> Credentials;
    fn set_notify_url(&self, url: String);
    fn customer_pays(
        self: Arc<Self>,
        no: &str,
        even_if_closed: bool,
    ) -> Result<Value, ControlError>;
    fn scan(&self, no: &str) -> Result<Value, ControlError>;
    fn view(&self, no: &str) -> Option<Value>;
    fn set_receiver(&self, account: &str, behaviour: ReceiverBehaviour)
        -> Result<(), ControlError>;
    fn split_view(&self, out_split_no: &str) -> Option<Value>;
    fn set_statement_edits(&self, edits: StatementEdits) -> Result<(), ControlError>;
    fn notify<'a>(&'a self, no: &'a str) -> BoxFuture<'a, Result<(u16, String), String>>;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<S: Simulator> AnySim for Sim<S> {
    fn faults(&self) -> &Faults {
        &self.faults
    }
    fn calls(&self) -> BTreeMap<String, u64> {
        Sim::calls(self)
    }
    fn set_notifications(&self, enabled: bool) {
        Sim::set_notifications(self, enabled)
    }
    fn endpoint(&self) -> String {
        Sim::endpoint(self)
    }
    fn credentials(&self) -> Credentials {
        self.gateway.credentials()
    }
    fn set_notify_url(&self, url: String) {
        self.gateway.set_notify_url(url)
    }
    fn customer_pays(
        self: Arc<Self>,
        no: &str,
        even_if_closed: bool,
    ) -> Result<Value, ControlError> {
        self.pay_as(no, even_if_closed)
    }
    fn scan(&self, no: &str) -> Result<Value, ControlError> {
        self.gateway.scan(no)
    }
    fn view(&self, no: &str) -> Option<Value> {
        self.gateway.view(no)
    }
    fn set_receiver(
        &self,
        account: &str,
        behaviour: ReceiverBehaviour,
    ) -> Result<(), ControlError> {
        self.gateway.set_receiver(account, behaviour)
    }
    fn split_view(&self, out_split_no: &str) -> Option<Value> {
        self.gateway.split_view(out_split_no)
    }
    fn set_statement_edits(&self, edits: StatementEdits) -> Result<(), ControlError> {
        self.gateway.set_statement_edits(edits)
    }
    fn notify<'a>(&'a self, no: &'a str) -> BoxFuture<'a, Result<(u16, String), String>> {
        Box::pin(self.notify_once(no))
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
