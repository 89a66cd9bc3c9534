//! Channel simulators: faithful stand-ins for the channels' gateways, used by tests,
//! benchmarks and `serve --sandbox`. They verify payroute's signatures as the real gateways
//! do, keep order state, sign what they send, and inject faults on request.
//!
//! Each simulator listens on its own loopback port (so that one channel can refuse
//! connections while the others work) and serves its gateway path there; the control API
//! (`/sandbox/{channel}/…`) is merged into the admin listener (or served on its own listener
//! by `payroute sandbox`).

pub mod alipay;
mod control;
mod faults;
pub mod pingpp;
mod shared;
pub mod wechatpay;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use tokio::sync::watch;

pub use self::faults::{Fault, FaultKind, Faults};
use self::shared::AnySim;
pub use self::shared::{ControlError, Credentials, GatewayRequest, Outgoing, Sim, Simulator};
use crate::config::{ChannelOverride, RawConfig};
use crate::crypto::{PrivateKey, PublicKey, SymmetricKey};

/// The simulators of one payroute configuration.
#[derive(Debug, Clone)]
pub struct Sandbox {
    sims: Arc<BTreeMap<String, Arc<dyn AnySim>>>,
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
        let mut sims: BTreeMap<String, Arc<dyn AnySim>> = BTreeMap::new();
        for c in channels {
            let sd = shutdown.clone();
            // The simulators, one line per channel kind.
            let sim: Arc<dyn AnySim> = match c.kind.as_str() {
                alipay::Gateway::KIND => Sim::<alipay::Gateway>::start(&c, ip, sd).await?,
                wechatpay::Gateway::KIND => Sim::<wechatpay::Gateway>::start(&c, ip, sd).await?,
                pingpp::Gateway::KIND => Sim::<pingpp::Gateway>::start(&c, ip, sd).await?,
                _ => continue,
            };
            sims.insert(c.name.clone(), sim);
        }
        Ok(Sandbox {
            sims: Arc::new(sims),
        })
    }

    /// The endpoint of channel `name`'s simulator.
    pub fn endpoint(&self, name: &str) -> Option<String> {
        self.sims.get(name).map(|s| s.endpoint())
    }

    /// The sandbox replacements for payroute's configuration.
    pub fn overrides(
        &self,
        fallback_keys: &BTreeMap<String, Arc<PrivateKey>>,
    ) -> BTreeMap<String, ChannelOverride> {
        self.sims
            .iter()
            .map(|(name, sim)| {
                let c = sim.credentials();
                let over = ChannelOverride {
                    endpoint: sim.endpoint(),
                    platform_public_key: c.platform_public_key,
                    platform_key_id: c.platform_key_id.unwrap_or_default(),
                    apiv3_key: c.apiv3_key,
                    secret_key: c
                        .secret_key
                        .map(|k| Arc::new(crate::crypto::Secret::new(k))),
                    fallback_private_key: fallback_keys
                        .get(name)
                        .cloned()
                        .unwrap_or_else(fresh_key),
                };
                (name.clone(), over)
            })
            .collect()
    }

    /// The simulator of channel `name`, if it simulates protocol `S`.
    pub fn sim<S: Simulator>(&self, name: &str) -> Option<Arc<Sim<S>>> {
        self.sims.get(name)?.clone().into_any().downcast().ok()
    }

    /// The Alipay simulator of channel `name`.
    pub fn alipay(&self, name: &str) -> Option<Arc<alipay::AlipaySim>> {
        self.sim(name)
    }

    /// The WeChat Pay simulator of channel `name`.
    pub fn wechat(&self, name: &str) -> Option<Arc<wechatpay::WechatSim>> {
        self.sim(name)
    }

    /// The Ping++ simulator of channel `name`.
    pub fn pingpp(&self, name: &str) -> Option<Arc<pingpp::PingppSim>> {
        self.sim(name)
    }

    /// Tells webhook-style simulators (configured in a dashboard, not per request) where
    /// payroute's notification listener is: `<base>/notify/<channel>`.
    pub fn set_notify_base(&self, base: &str) {
        for (name, sim) in self.sims.iter() {
            sim.set_notify_url(format!("{}/notify/{name}", base.trim_end_matches('/')));
        }
    }

    /// The sandbox control API (`/sandbox/{channel}/…`).
    pub fn control_router(&self) -> Router {
        control::router(self.sims.clone())
    }
}
