//! The sandbox's side of routes.yaml: which simulators a file asks for, and the rewrite that
//! points its channels at them (endpoint, platform key, key id, APIv3 key, Ping++ secret key,
//! and the merchant key when the configured one cannot be read) before it is compiled, at
//! start and on every reload. Compiling itself knows nothing about the sandbox.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::{Credentials, SimChannel};
use crate::channels::registry::ChannelSettings;
use crate::config::{KeyRef, RawChannel, RawConfig};
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

/// The channel's merchant key reference (Alipay calls it the app private key).
fn merchant_ref(s: &ChannelSettings) -> Option<&Spanned<KeyRef>> {
    match s {
        ChannelSettings::Alipay(s) => s.app_private_key.as_ref(),
        ChannelSettings::Wechatpay(s) => s.merchant_private_key.as_ref(),
        ChannelSettings::Pingpp(s) => s.merchant_private_key.as_ref(),
    }
}

/// Where the channel's merchant key reference is kept.
fn merchant_slot(s: &mut ChannelSettings) -> &mut Option<Spanned<KeyRef>> {
    match s {
        ChannelSettings::Alipay(s) => &mut s.app_private_key,
        ChannelSettings::Wechatpay(s) => &mut s.merchant_private_key,
        ChannelSettings::Pingpp(s) => &mut s.merchant_private_key,
    }
}

/// What the simulator needs to know of a channel: app id, merchant id, merchant serial.
fn ids(s: &ChannelSettings) -> (Option<&String>, Option<&String>, Option<&String>) {
    match s {
        ChannelSettings::Alipay(s) => (s.app_id.as_ref(), None, None),
        ChannelSettings::Wechatpay(s) => (
            s.app_id.as_ref(),
            s.mchid.as_ref(),
            s.merchant_serial_no.as_ref(),
        ),
        ChannelSettings::Pingpp(s) => (s.app_id.as_ref(), None, None),
    }
}

/// The Ping++ secret key configured for a channel, when it can be read.
fn configured_secret(ch: &RawChannel, base: &Path) -> Option<String> {
    let ChannelSettings::Pingpp(s) = &ch.settings else {
        return None;
    };
    let k = &s.secret_key.as_ref()?.value;
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
        let configured = merchant_ref(&ch.settings).and_then(|k| read_private(&k.value, base));
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
        let (app_id, mchid, serial) = ids(&ch.settings);
        out.push(SimChannel {
            name: name.clone(),
            kind: ch.kind.value.clone(),
            app_id: app_id.cloned().unwrap_or_default(),
            mchid: mchid.cloned().unwrap_or_default(),
            merchant_public_key: merchant.public_key(),
            merchant_serial: serial.cloned().unwrap_or_default(),
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
            // Where a replaced key was referenced (or the channel, for one not written), so
            // that a problem with it still points into the file.
            let at = ch.kind.referenced;
            let inline = |old: &Option<Spanned<KeyRef>>, text: String| {
                let (referenced, defined) =
                    old.as_ref().map_or((at, at), |k| (k.referenced, k.defined));
                Some(Spanned::new(KeyRef::inline(text), referenced, defined))
            };
            ch.common.endpoint.value = endpoint.clone();
            let platform = creds.platform_public_key.to_pem();
            match &mut ch.settings {
                ChannelSettings::Alipay(s) => {
                    s.alipay_public_key = inline(&s.alipay_public_key, platform);
                }
                ChannelSettings::Wechatpay(s) => {
                    s.wechatpay_public_key = inline(&s.wechatpay_public_key, platform);
                    s.wechatpay_public_key_id = creds.platform_key_id.clone();
                    s.platform_certificates = None;
                    if let Some(k) = &creds.apiv3_key {
                        s.apiv3_key = inline(&s.apiv3_key, k.expose_text());
                    }
                }
                ChannelSettings::Pingpp(s) => {
                    s.pingpp_public_key = inline(&s.pingpp_public_key, platform);
                    if let Some(k) = &creds.secret_key {
                        s.secret_key = inline(&s.secret_key, k.clone());
                    }
                }
            }
            let readable =
                merchant_ref(&ch.settings).is_some_and(|k| read_private(&k.value, base).is_some());
            if !readable {
                let slot = merchant_slot(&mut ch.settings);
                *slot = inline(slot, self.fallback_merchant_key(name));
            }
        }
    }
}
