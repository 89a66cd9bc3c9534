//! Simulators a test starts itself, outside payroute, for configurations written by hand
//! (payroute then runs without its own sandbox).

use std::sync::Arc;

use payroute::crypto::{PrivateKey, PublicKey};
use payroute::sandbox::{Sandbox, SimChannel};

/// Running simulators; they stop when this is dropped.
pub struct OwnSandbox {
    pub sandbox: Sandbox,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for OwnSandbox {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// Starts one simulator per channel on loopback.
pub async fn start(channels: Vec<SimChannel>) -> OwnSandbox {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let sandbox = Sandbox::start(channels, "127.0.0.1".parse().unwrap(), rx)
        .await
        .expect("the simulators start");
    OwnSandbox {
        sandbox,
        _stop: stop,
    }
}

/// A simulator that knows the merchant's public key and signs with `platform_key`; the
/// channel-specific fields are empty (set them with struct update syntax).
pub fn channel(
    name: &str,
    kind: &str,
    merchant_public_key: PublicKey,
    platform_key: Arc<PrivateKey>,
) -> SimChannel {
    SimChannel {
        name: name.into(),
        kind: kind.into(),
        app_id: String::new(),
        mchid: String::new(),
        merchant_public_key,
        merchant_serial: String::new(),
        platform_key,
        platform_key_id: String::new(),
        apiv3_key: None,
        secret_key: None,
    }
}

/// The public half of one of the sandbox's merchant keys (`sandbox/keys/<file>`).
pub fn merchant_public(file: &str) -> PublicKey {
    PrivateKey::from_file(&super::repo().join("sandbox/keys").join(file))
        .unwrap()
        .public_key()
}
