//! A Ping++ channel in routes.yaml: its own keys, and how they compile into the adapter.

use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::{Pingpp, PingppConfig};
use crate::channels::settings::keys::{ChannelCtx, KeyRef};
use crate::channels::SharedChannel;
use crate::crypto::{PublicKey, Secret};
use crate::domain::{PayMethod, Scene};

crate::channel_settings! {
    /// A Ping++ channel in routes.yaml.
    PingppChannel;
    /// Ping++'s own keys (documented on `PingppChannel`).
    PingppSettings {
        /// Ping++ app id.
        #[serde(default)]
        pub app_id: Option<String>,
        /// The request-signing key.
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub merchant_private_key: Option<Spanned<KeyRef>>,
        /// The API secret key (`sk_live_…` / `sk_test_…`).
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub secret_key: Option<Spanned<KeyRef>>,
        /// The public key webhooks are verified with.
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub pingpp_public_key: Option<Spanned<KeyRef>>,
        /// Browser return URL for page/H5 payments.
        #[serde(default)]
        pub return_url: Option<String>,
    }
}

/// Every method, and the scenes Ping++ offers for them.
pub fn offered() -> (Vec<PayMethod>, Vec<Scene>) {
    let offered = super::transformers::offered();
    let mut scenes: Vec<Scene> = offered.iter().map(|(_, s)| *s).collect();
    scenes.sort();
    scenes.dedup();
    (PayMethod::ALL.to_vec(), scenes)
}

/// A Ping++ secret key: `sk_live_…` or `sk_test_…`.
pub fn secret_key(text: &str) -> Result<Secret<String>, crate::crypto::KeyError> {
    let t = text.trim();
    if (t.starts_with("sk_live_") || t.starts_with("sk_test_")) && t.len() > 8 {
        Ok(Secret::new(t.to_string()))
    } else {
        Err(crate::crypto::KeyError::Encoding)
    }
}

/// The adapter, or `None` with the problems in `cx`.
pub fn compile(s: &PingppSettings, cx: &mut ChannelCtx<'_>) -> Option<SharedChannel> {
    let app_id = cx.required(&s.app_id, "app_id");
    let merchant_key = cx.merchant_key(&s.merchant_private_key, "merchant_private_key");
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|source| crate::crypto::KeyError::Read {
                path: p.display().to_string(),
                source,
            })
            .and_then(|t| secret_key(&t))
    };
    let secret = cx
        .load(
            &s.secret_key,
            "secret_key (sk_live_… or sk_test_…)",
            read,
            secret_key,
        )
        .map(Arc::new);
    let public = cx.load(
        &s.pingpp_public_key,
        "pingpp_public_key",
        PublicKey::from_file,
        PublicKey::from_text,
    );
    let (merchant_key, secret, public) = (merchant_key?, secret?, public?);
    Some(Arc::new(Pingpp::new(PingppConfig {
        name: cx.name.to_string(),
        app_id,
        base_url: cx.endpoint.clone(),
        secret_key: secret,
        merchant_key,
        pingpp_public_key: public,
        return_url: s.return_url.clone(),
        scenes: cx.scenes.clone(),
    })))
}
