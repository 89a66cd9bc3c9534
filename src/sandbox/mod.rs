//! Channel simulators: faithful stand-ins for the channels' gateways, used by tests,
//! benchmarks and `serve --sandbox`. They verify payroute's signatures as the real gateways
//! do, keep order state, sign what they send, and inject faults on request.
//!
//! Each simulator listens on its own loopback port (so that one channel can refuse
//! connections while the others work) and serves its gateway path there; the control API
//! (`/sandbox/{channel}/…`) is merged into the admin listener (or served on its own listener
//! by `payroute sandbox`).
//!
//! The kinds come from the registry's table (`channels::registry::with_kinds!`): kind `<k>` is
//! simulated by `sandbox::<k>::Gateway` (a [`Simulator`]), and its settings type implements
//! `rewrite::SimSettings` there, so a new kind's simulator is its folder plus its `mod` line.

pub mod alipay;
mod control;
mod faults;
mod kit;
pub mod pingpp;
mod rewrite;
mod shared;
pub mod wechatpay;

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use tokio::sync::watch;

pub use self::faults::{Fault, FaultKind, Faults};
use self::rewrite::SimSettings;
pub use self::rewrite::{channels_from_config, fresh_key, GeneratedKeys, Rewrite};
use self::shared::AnySim;
pub use self::shared::{
    ControlError, Credentials, GatewayRequest, Outgoing, ReceiverBehaviour, Sim, Simulator,
    StatementEdits,
};
use crate::channels::registry::ChannelSettings;
use crate::crypto::{PrivateKey, PublicKey, SymmetricKey};

/// The simulator of each kind in the registry's table.
macro_rules! simulators {
    ($( $variant:ident: $module:ident::{$settings:ident, $file:ident}, )*) => {
        /// The kinds simulated, as their simulators name them.
        #[cfg(test)]
        const SIMULATED: &[&str] = &[$( $module::Gateway::KIND, )*];

        /// Starts channel `c`'s simulator on an ephemeral port of `ip`; `None`: its kind has none.
        async fn start_one(
            c: &SimChannel,
            ip: IpAddr,
            shutdown: watch::Receiver<bool>,
        ) -> io::Result<Option<Arc<dyn AnySim>>> {
            Ok(Some(match c.kind.as_str() {
                $( $module::Gateway::KIND => Sim::<$module::Gateway>::start(c, ip, shutdown).await?, )*
                _ => return Ok(None),
            }))
        }

        /// What the sandbox reads from a channel's own settings.
        fn sim_settings(s: &ChannelSettings) -> &dyn SimSettings {
            match s {
                $( ChannelSettings::$variant(s) => s, )*
            }
        }

        /// What the sandbox rewrites in a channel's own settings.
        fn sim_settings_mut(s: &mut ChannelSettings) -> &mut dyn SimSettings {
            match s {
                $( ChannelSettings::$variant(s) => s, )*
            }
        }
    };
}

crate::channels::registry::with_kinds!(simulators);

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

impl Sandbox {
    /// Starts one gateway per channel on an ephemeral port of `ip` (a loopback address).
    pub async fn start(
        channels: Vec<SimChannel>,
        ip: IpAddr,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<Sandbox> {
        let mut sims: BTreeMap<String, Arc<dyn AnySim>> = BTreeMap::new();
        for c in channels {
            if let Some(sim) = start_one(&c, ip, shutdown.clone()).await? {
                sims.insert(c.name.clone(), sim);
            }
        }
        Ok(Sandbox {
            sims: Arc::new(sims),
        })
    }

    /// The endpoint of channel `name`'s simulator.
    pub fn endpoint(&self, name: &str) -> Option<String> {
        self.sims.get(name).map(|s| s.endpoint())
    }

    /// The simulators, by channel name: endpoint and credentials.
    pub fn targets(&self) -> BTreeMap<String, (String, Credentials)> {
        self.sims
            .iter()
            .map(|(name, sim)| (name.clone(), (sim.endpoint(), sim.credentials())))
            .collect()
    }

    /// The rewrite that points routes.yaml's channels at these simulators; `generated`: the
    /// merchant keys made for channels whose configured key cannot be read.
    pub fn rewrite(&self, generated: GeneratedKeys) -> Rewrite {
        Rewrite::new(self.targets(), generated)
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_in_the_registry_has_its_simulator() {
        assert_eq!(super::SIMULATED, crate::channels::registry::KINDS);
    }
}
