//! Channel simulators: faithful stand-ins for the channels' gateways, used by tests,
//! benchmarks and `serve --sandbox`. They verify payroute's signatures as the real gateways
//! do, keep order state, sign what they send, and inject faults on request.
//!
//! Each simulator listens on its own loopback port (so that one channel can refuse
//! connections while the others work) and serves its gateway path there; the control API
//! (`/sandbox/{channel}/…`) is merged into the admin listener (or served on its own listener
//! by `payroute sandbox`).

pub mod alipay;
mod faults;
pub mod pingpp;
pub mod wechatpay;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use http::StatusCode;
use tokio::sync::watch;

pub use self::faults::{Fault, FaultKind, Faults};
use crate::config::{ChannelOverride, RawConfig};
use crate::crypto::{PrivateKey, PublicKey, SymmetricKey};

/// One simulator of any kind.
#[derive(Debug, Clone)]
pub enum Sim {
    Alipay(Arc<alipay::AlipaySim>),
    Wechat(Arc<wechatpay::WechatSim>),
    Pingpp(Arc<pingpp::PingppSim>),
}

impl Sim {
    fn faults(&self) -> &Faults {
        match self {
            Sim::Alipay(s) => s.faults(),
            Sim::Wechat(s) => s.faults(),
            Sim::Pingpp(s) => s.faults(),
        }
    }

    /// The customer pays; `even_if_closed` models a channel that takes the payment although
    /// it had closed the order (a race with the close, or a channel fault). Ping++ charges
    /// cannot be closed, so the switch changes nothing there.
    fn pay(
        &self,
        no: &str,
        even_if_closed: bool,
    ) -> Result<serde_json::Value, (StatusCode, &'static str, String)> {
        match (self, even_if_closed) {
            (Sim::Alipay(s), false) => s
                .pay(no)
                .map(|v| serde_json::to_value(v).unwrap_or_default()),
            (Sim::Alipay(s), true) => s
                .pay_even_if_closed(no)
                .map(|v| serde_json::to_value(v).unwrap_or_default()),
            (Sim::Wechat(s), false) => s.pay(no),
            (Sim::Wechat(s), true) => s.pay_even_if_closed(no),
            (Sim::Pingpp(s), _) => s.pay(no),
        }
    }

    /// The buyer scans the QR code (or opens the cashier) without paying. Only Alipay
    /// distinguishes this: WeChat Pay and Ping++ orders exist from their creation.
    fn scan(&self, no: &str) -> Result<serde_json::Value, (StatusCode, &'static str, String)> {
        match self {
            Sim::Alipay(s) => s
                .scan(no)
                .map(|v| serde_json::to_value(v).unwrap_or_default()),
            other => other.order_view(no).ok_or((
                StatusCode::NOT_FOUND,
                "not_found",
                "no such order at the simulator".to_string(),
            )),
        }
    }

    fn order_view(&self, no: &str) -> Option<serde_json::Value> {
        match self {
            Sim::Alipay(s) => s
                .order_view(no)
                .map(|v| serde_json::to_value(v).unwrap_or_default()),
            Sim::Wechat(s) => s.order_view(no),
            Sim::Pingpp(s) => s.order_view(no),
        }
    }

    fn set_notifications(&self, enabled: bool) {
        match self {
            Sim::Alipay(s) => s.set_notifications(enabled),
            Sim::Wechat(s) => s.set_notifications(enabled),
            Sim::Pingpp(s) => s.set_notifications(enabled),
        }
    }

    fn calls(&self) -> BTreeMap<String, u64> {
        match self {
            Sim::Alipay(s) => s.calls(),
            Sim::Wechat(s) => s.calls(),
            Sim::Pingpp(s) => s.calls(),
        }
    }

    async fn notify_once(&self, no: &str) -> Result<(u16, String), String> {
        match self {
            Sim::Alipay(s) => s.notify_once(no).await,
            Sim::Wechat(s) => s.notify_once(no).await,
            Sim::Pingpp(s) => s.notify_once(no).await,
        }
    }

    /// The endpoint payroute is configured with for this simulator.
    pub fn endpoint(&self) -> String {
        match self {
            Sim::Alipay(s) => format!("http://{}/gateway.do", s.addr()),
            Sim::Wechat(s) => format!("http://{}", s.addr()),
            Sim::Pingpp(s) => format!("http://{}", s.addr()),
        }
    }
}

/// The simulators of one payroute configuration.
#[derive(Debug, Clone)]
pub struct Sandbox {
    sims: Arc<BTreeMap<String, Sim>>,
}

/// What the sandbox needs to know about a channel of routes.yaml.
#[derive(Debug)]
pub struct SimChannel {
    pub name: String,
    pub kind: String,
    /// Alipay app id / WeChat Pay appid.
    pub app_id: String,
    /// WeChat Pay merchant id.
    pub mchid: String,
    /// The merchant's public key (what the merchant uploaded to the channel).
    pub merchant_public_key: PublicKey,
    /// WeChat Pay: serial of the merchant API certificate.
    pub merchant_serial: String,
    /// The key the simulator signs with.
    pub platform_key: Arc<PrivateKey>,
    /// WeChat Pay: the id responses are signed under (`PUB_KEY_ID_…` or a certificate serial).
    pub platform_key_id: String,
    /// WeChat Pay: the APIv3 key notifications are encrypted with.
    pub apiv3_key: Option<Arc<SymmetricKey>>,
    /// Ping++: the secret key requests must carry.
    pub secret_key: Option<String>,
}

/// Keys generated for channels whose configured key cannot be read.
#[derive(Debug)]
pub struct GeneratedKeys {
    pub merchant: Arc<PrivateKey>,
}

/// The Ping++ secret key configured for a channel, when it can be read.
fn configured_secret(ch: &crate::config::RawChannel, base: &Path) -> Option<String> {
    let k = &ch.secret_key.as_ref()?.value;
    let text = match (&k.file, &k.env) {
        (Some(f), None) => std::fs::read_to_string(base.join(f)).ok()?,
        (None, Some(v)) => std::env::var(v).ok()?,
        _ => return None,
    };
    Some(text.trim().to_string())
}

/// Makes a fresh 2048-bit key.
pub fn fresh_key() -> Arc<PrivateKey> {
    let pem = crate::crypto::generate_private_key_pem();
    Arc::new(PrivateKey::from_text(pem.expose()).expect("generated key parses"))
}

/// Reads the sandbox-relevant part of a routes.yaml: channel names, kinds, app ids and the
/// merchant key (derived public key), or a generated key when it cannot be read.
pub fn channels_from_config(
    raw: &RawConfig,
    base: &Path,
    platform_key_for: &mut dyn FnMut(&str) -> Arc<PrivateKey>,
) -> (Vec<SimChannel>, BTreeMap<String, Arc<PrivateKey>>) {
    let mut out = Vec::new();
    let mut generated = BTreeMap::new();
    for (name, ch) in &raw.channels {
        let merchant_ref = if ch.kind.value == "alipay" {
            &ch.app_private_key
        } else {
            &ch.merchant_private_key
        };
        let configured = merchant_ref.as_ref().and_then(|k| {
            let k = &k.value;
            match (&k.file, &k.env) {
                (Some(f), None) => PrivateKey::from_file(&base.join(f)).ok(),
                (None, Some(v)) => std::env::var(v)
                    .ok()
                    .and_then(|t| PrivateKey::from_text(&t).ok()),
                _ => None,
            }
        });
        let merchant = match configured {
            Some(k) => Arc::new(k),
            None => {
                let k = fresh_key();
                generated.insert(name.clone(), k.clone());
                k
            }
        };
        let digits: String = crate::crypto::random_hex(16)
            .bytes()
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        out.push(SimChannel {
            name: name.clone(),
            kind: ch.kind.value.clone(),
            app_id: ch.app_id.clone().unwrap_or_default(),
            mchid: ch.mchid.clone().unwrap_or_default(),
            merchant_public_key: merchant.public_key(),
            merchant_serial: ch.merchant_serial_no.clone().unwrap_or_default(),
            platform_key: platform_key_for(name),
            platform_key_id: format!("PUB_KEY_ID_01{digits}"),
            apiv3_key: Some(Arc::new(SymmetricKey::generate())),
            secret_key: Some(
                configured_secret(ch, base)
                    .unwrap_or_else(|| format!("sk_test_{}", crate::crypto::random_hex(12))),
            ),
        });
    }
    (out, generated)
}

impl Sandbox {
    /// Starts one gateway per channel on an ephemeral port of `ip` (a loopback address).
    pub async fn start(
        channels: Vec<SimChannel>,
        ip: IpAddr,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Sandbox> {
        let mut sims = BTreeMap::new();
        for c in channels {
            // Each simulator gets its own listener, so that one can refuse while others work.
            let (sim, router, faults) = match c.kind.as_str() {
                "alipay" => {
                    let sim = Arc::new(alipay::AlipaySim::new(&c));
                    let router = Router::new()
                        .route("/gateway.do", get(alipay::gateway).post(alipay::gateway))
                        .with_state(sim.clone());
                    (Sim::Alipay(sim.clone()), router, sim.faults().clone())
                }
                "wechatpay" => {
                    let sim = Arc::new(wechatpay::WechatSim::new(&c));
                    let router = Router::new()
                        .fallback(wechatpay::gateway)
                        .with_state(sim.clone());
                    (Sim::Wechat(sim.clone()), router, sim.faults().clone())
                }
                "pingpp" => {
                    let sim = Arc::new(pingpp::PingppSim::new(&c));
                    let router = Router::new()
                        .fallback(pingpp::gateway)
                        .with_state(sim.clone());
                    (Sim::Pingpp(sim.clone()), router, sim.faults().clone())
                }
                _ => continue,
            };
            let addr =
                faults::serve_refusable(SocketAddr::new(ip, 0), router, faults, shutdown.clone())
                    .await?;
            match &sim {
                Sim::Alipay(s) => s.set_addr(addr),
                Sim::Wechat(s) => s.set_addr(addr),
                Sim::Pingpp(s) => s.set_addr(addr),
            }
            sims.insert(c.name.clone(), sim);
        }
        Ok(Sandbox {
            sims: Arc::new(sims),
        })
    }

    /// The endpoint of channel `name`'s simulator.
    pub fn endpoint(&self, name: &str) -> Option<String> {
        self.sims.get(name).map(Sim::endpoint)
    }

    /// The sandbox replacements for payroute's configuration.
    pub fn overrides(
        &self,
        fallback_keys: &BTreeMap<String, Arc<PrivateKey>>,
    ) -> BTreeMap<String, ChannelOverride> {
        self.sims
            .iter()
            .map(|(name, sim)| {
                let (platform_public_key, platform_key_id, apiv3_key, secret_key) = match sim {
                    Sim::Alipay(s) => (s.platform_public_key(), String::new(), None, None),
                    Sim::Wechat(s) => {
                        let (k, id) = s.platform_public_key();
                        (k, id, Some(s.apiv3_key()), None)
                    }
                    Sim::Pingpp(s) => (
                        s.platform_public_key(),
                        String::new(),
                        None,
                        Some(Arc::new(crate::crypto::Secret::new(s.secret_key()))),
                    ),
                };
                let over = ChannelOverride {
                    endpoint: sim.endpoint(),
                    platform_public_key,
                    platform_key_id,
                    apiv3_key,
                    secret_key,
                    fallback_private_key: fallback_keys
                        .get(name)
                        .cloned()
                        .unwrap_or_else(fresh_key),
                };
                (name.clone(), over)
            })
            .collect()
    }

    /// The Alipay simulator of channel `name`.
    pub fn alipay(&self, name: &str) -> Option<Arc<alipay::AlipaySim>> {
        match self.sims.get(name) {
            Some(Sim::Alipay(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Tells webhook-style simulators (configured in a dashboard, not per request) where
    /// payroute's notification listener is: `<base>/notify/<channel>`.
    pub fn set_notify_base(&self, base: &str) {
        for (name, sim) in self.sims.iter() {
            if let Sim::Pingpp(s) = sim {
                s.set_webhook_url(format!("{}/notify/{name}", base.trim_end_matches('/')));
            }
        }
    }

    /// The Ping++ simulator of channel `name`.
    pub fn pingpp(&self, name: &str) -> Option<Arc<pingpp::PingppSim>> {
        match self.sims.get(name) {
            Some(Sim::Pingpp(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The WeChat Pay simulator of channel `name`.
    pub fn wechat(&self, name: &str) -> Option<Arc<wechatpay::WechatSim>> {
        match self.sims.get(name) {
            Some(Sim::Wechat(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The sandbox control API (`/sandbox/{channel}/…`).
    pub fn control_router(&self) -> Router {
        Router::new()
            .route("/sandbox/{channel}/payments/{out_trade_no}/pay", post(pay))
            .route(
                "/sandbox/{channel}/payments/{out_trade_no}/scan",
                post(scan),
            )
            .route("/sandbox/{channel}/payments/{out_trade_no}", get(show))
            .route(
                "/sandbox/{channel}/payments/{out_trade_no}/notify",
                post(renotify),
            )
            .route(
                "/sandbox/{channel}/faults",
                put(set_fault).delete(clear_faults),
            )
            .route("/sandbox/{channel}/notifications", put(set_notifications))
            .route("/sandbox/{channel}/calls", get(calls))
            .with_state(self.sims.clone())
    }
}

type Sims = Arc<BTreeMap<String, Sim>>;

fn control_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

fn unknown_channel() -> Response {
    control_error(
        StatusCode::NOT_FOUND,
        "unknown_channel",
        "no simulator for this channel",
    )
}

/// Query of the pay control: `?even_if_closed=true`.
#[derive(Debug, Default, serde::Deserialize)]
struct PayOptions {
    #[serde(default)]
    even_if_closed: bool,
}

async fn pay(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
    axum::extract::Query(options): axum::extract::Query<PayOptions>,
) -> Response {
    let Some(sim) = sims.get(&channel).cloned() else {
        return unknown_channel();
    };
    match sim.pay(&no, options.even_if_closed) {
        Ok(view) => (StatusCode::OK, axum::Json(view)).into_response(),
        Err((status, code, msg)) => control_error(status, code, &msg),
    }
}

async fn scan(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
) -> Response {
    let Some(sim) = sims.get(&channel).cloned() else {
        return unknown_channel();
    };
    match sim.scan(&no) {
        Ok(view) => (StatusCode::OK, axum::Json(view)).into_response(),
        Err((status, code, msg)) => control_error(status, code, &msg),
    }
}

async fn renotify(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
) -> Response {
    let Some(sim) = sims.get(&channel).cloned() else {
        return unknown_channel();
    };
    match sim.notify_once(&no).await {
        Ok((status, body)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": status, "body": body })),
        )
            .into_response(),
        Err(e) => control_error(StatusCode::CONFLICT, "notify_failed", &e),
    }
}

async fn show(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
) -> Response {
    let Some(sim) = sims.get(&channel).cloned() else {
        return unknown_channel();
    };
    match sim.order_view(&no) {
        Some(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        None => control_error(
            StatusCode::NOT_FOUND,
            "ACQ.TRADE_NOT_EXIST",
            "no such order at the simulator",
        ),
    }
}

async fn set_fault(
    State(sims): State<Sims>,
    UrlPath(channel): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(sim) = sims.get(&channel).cloned() else {
        return unknown_channel();
    };
    match serde_json::from_slice::<Fault>(&body) {
        Ok(f) => match f.validate() {
            Ok(()) => {
                sim.faults().set(f);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => control_error(StatusCode::BAD_REQUEST, "invalid_fault", &e),
        },
        Err(e) => control_error(StatusCode::BAD_REQUEST, "invalid_fault", &e.to_string()),
    }
}

async fn clear_faults(State(sims): State<Sims>, UrlPath(channel): UrlPath<String>) -> Response {
    match sims.get(&channel) {
        Some(s) => {
            s.faults().clear();
            StatusCode::NO_CONTENT.into_response()
        }
        None => unknown_channel(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationSettings {
    enabled: bool,
}

async fn set_notifications(
    State(sims): State<Sims>,
    UrlPath(channel): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(sim) = sims.get(&channel).cloned() else {
        return unknown_channel();
    };
    match serde_json::from_slice::<NotificationSettings>(&body) {
        Ok(s) => {
            sim.set_notifications(s.enabled);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => control_error(StatusCode::BAD_REQUEST, "invalid_settings", &e.to_string()),
    }
}

async fn calls(State(sims): State<Sims>, UrlPath(channel): UrlPath<String>) -> Response {
    match sims.get(&channel) {
        Some(s) => (StatusCode::OK, axum::Json(s.calls())).into_response(),
        None => unknown_channel(),
    }
}
