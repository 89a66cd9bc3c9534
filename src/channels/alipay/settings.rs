//! An Alipay channel in routes.yaml: its own keys, and how they compile into the adapter.

use std::sync::Arc;

use serde_saphyr::Spanned;

use super::{Alipay, AlipayConfig, SCENES};
use crate::channels::settings::keys::{ChannelCtx, KeyRef};
use crate::channels::SharedChannel;
use crate::crypto::PublicKey;
use crate::domain::{PayMethod, Scene};

crate::channel_settings! {
    /// An Alipay channel in routes.yaml.
    AlipayChannel;
    /// Alipay's own keys (documented on `AlipayChannel`).
    AlipaySettings {
        /// Alipay application id.
        #[serde(default)]
        pub app_id: Option<String>,
        /// The merchant (app) private key, PKCS#1/PKCS#8 PEM or raw base64.
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub app_private_key: Option<Spanned<KeyRef>>,
        /// The Alipay public key that signs responses and notifications.
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub alipay_public_key: Option<Spanned<KeyRef>>,
        /// Browser return URL for page/H5 payments.
        #[serde(default)]
        pub return_url: Option<String>,
    }
}

/// The method and scenes Alipay offers.
pub fn offered() -> (Vec<PayMethod>, Vec<Scene>) {
    (
        vec![PayMethod::Alipay],
        SCENES.iter().map(|(s, _)| *s).collect(),
    )
}

/// The adapter, or `None` with the problems in `cx`.
pub fn compile(s: &AlipaySettings, cx: &mut ChannelCtx<'_>) -> Option<SharedChannel> {
    let app_id = cx.required(&s.app_id, "app_id");
    let private_key = cx.merchant_key(&s.app_private_key, "app_private_key");
    let public_key = cx.load(
        &s.alipay_public_key,
        "alipay_public_key",
        PublicKey::from_file,
        PublicKey::from_text,
    );
    let (private_key, public_key) = (private_key?, public_key?);
    Some(Arc::new(Alipay::new(AlipayConfig {
        name: cx.name.to_string(),
        app_id,
        gateway: cx.endpoint.clone(),
        app_private_key: private_key,
        alipay_public_key: public_key,
        notify_url: cx.notify_url.clone(),
        return_url: s.return_url.clone(),
        scenes: cx.scenes.clone(),
    })))
}
