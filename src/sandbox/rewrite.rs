//! The sandbox's side of routes.yaml: which simulators a file asks for, and the rewrite that
//! points its channels at them (endpoint, platform key, key id, APIv3 key, Ping++ secret key,
//! and the merchant key when the configured one cannot be read) before it is compiled, at
//! start and on every reload. Compiling itself knows nothing about the sandbox.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::{sim_settings, sim_settings_mut, Credentials, SimChannel};
use crate::config::{KeyRef, RawConfig};
use crate::crypto::{PrivateKey, Secret, SymmetricKey};

/// Merchant keys generated for channels whose configured key cannot be read (PEM), by channel.
pub type GeneratedKeys = BTreeMap<String, Arc<Secret<String>>>;

/// Makes a fresh 2048-bit key.
pub fn fresh_key() -> Arc<PrivateKey> {
    let pem = crate::crypto::generate_private_key_pem();
    Arc::new(PrivateKey::from_text(pem.expose()).expect("generated key parses"))
}

/// The private key a reference names, when it can be read.
fn read_private(k: &KeyRef, base: &Path) -> Option<PrivateKey> {
    if let Some(text) = k.inline_text() {
        return PrivateKey::from_text(text).ok();
    }
    match (&k.file, &k.env) {
        (Some(f), None) => PrivateKey::from_file(&base.join(f)).ok(),
        (None, Some(v)) => std::env::var(v)
            .ok()
            .and_then(|t| PrivateKey::from_text(&t).ok()),
        _ => None,
    }
}

/// A kind's side of the rewrite: what its simulator learns from the channel's own settings,
/// and how those settings are pointed at it. Each simulator's folder implements it for its
/// kind's settings (`sandbox/<kind>/settings.rs`).
pub trait SimSettings {
    /// The merchant's private key reference (Alipay calls it the app private key).
    fn merchant_key(&self) -> Option<&Spanned<KeyRef>>;
    /// Where the merchant key reference is kept.
    fn merchant_key_mut(&mut self) -> &mut Option<Spanned<KeyRef>>;
    /// Tells the simulator the ids it checks requests against (app id, merchant id, serial).
    fn describe(&self, c: &mut SimChannel);
    /// The API secret key requests carry, for kinds that have one.
    fn secret_key(&self) -> Option<&KeyRef> {
        None
    }
    /// Points the settings at the simulator: its platform key, and whatever else it signs or
    /// encrypts with.
    fn point_at(&mut self, creds: &Credentials, inline: &Inline);
}

/// Writes key text in place of a key reference, keeping where the old reference was written
/// (or the channel's `kind`, for a key not written) so that a problem with it still points
/// into the file.
#[derive(Debug)]
pub struct Inline {
    at: Location,
}

impl Inline {
    /// Puts `text` in `slot`.
    pub fn set(&self, slot: &mut Option<Spanned<KeyRef>>, text: String) {
        let (referenced, defined) = slot
            .as_ref()
            .map_or((self.at, self.at), |k| (k.referenced, k.defined));
        *slot = Some(Spanned::new(KeyRef::inline(text), referenced, defined));
    }
}

/// The secret key a reference names, when it can be read (a configured key is kept, so that
/// the merchant's own secret key works against the simulator too).
fn configured_secret(k: &KeyRef, base: &Path) -> Option<String> {
    let text = match (&k.file, &k.env) {
        (Some(f), None) => std::fs::read_to_string(base.join(f)).ok()?,
        (None, Some(v)) => std::env::var(v).ok()?,
        _ => return None,
    };
    Some(text.trim().to_string())
}

/// Reads the sandbox-relevant part of a routes.yaml: channel names, kinds, app ids and the
/// merchant key (derived public key), or a generated key when it cannot be read.
pub fn channels_from_config(
    raw: &RawConfig,
    base: &Path,
    platform_key_for: &mut dyn FnMut(&str) -> Arc<PrivateKey>,
) -> (Vec<SimChannel>, GeneratedKeys) {
    let mut out = Vec::new();
    let mut generated = GeneratedKeys::new();
    for (name, ch) in &raw.channels {
        let settings = sim_settings(&ch.settings);
        let configured = settings
            .merchant_key()
            .and_then(|k| read_private(&k.value, base));
        let merchant = match configured {
            Some(k) => k,
            None => {
                let pem = crate::crypto::generate_private_key_pem();
                let key = PrivateKey::from_text(pem.expose()).expect("generated key parses");
                generated.insert(name.clone(), Arc::new(pem));
                key
            }
        };
        let digits: String = crate::crypto::random_hex(16)
            .bytes()
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        let secret = settings
            .secret_key()
            .and_then(|k| configured_secret(k, base));
        let mut c = SimChannel {
            name: name.clone(),
            kind: ch.kind.value.clone(),
            app_id: String::new(),
            mchid: String::new(),
            merchant_public_key: merchant.public_key(),
            merchant_serial: String::new(),
            platform_key: platform_key_for(name),
            platform_key_id: format!("PUB_KEY_ID_01{digits}"),
            apiv3_key: Some(Arc::new(SymmetricKey::generate())),
            secret_key: Some(
                secret.unwrap_or_else(|| format!("sk_test_{}", crate::crypto::random_hex(12))),
            ),
        };
        settings.describe(&mut c);
        out.push(c);
    }
    (out, generated)
}

/// Points routes.yaml's channels at the simulators (see the module documentation).
#[derive(Debug)]
pub struct Rewrite {
    /// Endpoint and credentials of each channel's simulator.
    targets: BTreeMap<String, (String, Credentials)>,
    generated: GeneratedKeys,
}

impl Rewrite {
    pub(super) fn new(
        targets: BTreeMap<String, (String, Credentials)>,
        generated: GeneratedKeys,
    ) -> Self {
        Rewrite { targets, generated }
    }

    /// The merchant key to use when the configured one cannot be read: the one the simulator
    /// was given, or (a key that became unreadable since) a fresh one it will refuse.
    fn fallback_merchant_key(&self, name: &str) -> String {
        match self.generated.get(name) {
            Some(pem) => pem.expose().clone(),
            None => crate::crypto::generate_private_key_pem().expose().clone(),
        }
    }
}

impl crate::config::Rewrite for Rewrite {
    fn rewrite(&self, raw: &mut RawConfig, base: &Path) {
        for (name, ch) in raw.channels.iter_mut() {
            let Some((endpoint, creds)) = self.targets.get(name) else {
                continue;
            };
            let inline = Inline {
                at: ch.kind.referenced,
            };
            ch.common.endpoint.value = endpoint.clone();
            let settings = sim_settings_mut(&mut ch.settings);
            settings.point_at(creds, &inline);
            let readable = settings
                .merchant_key()
                .is_some_and(|k| read_private(&k.value, base).is_some());
            if !readable {
                inline.set(
                    settings.merchant_key_mut(),
                    self.fallback_merchant_key(name),
                );
            }
        }
    }
}
