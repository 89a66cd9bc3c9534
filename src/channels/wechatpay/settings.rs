//! A WeChat Pay channel in routes.yaml: its own keys, and how they compile into the adapter.

use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::transformers::PlatformKeys;
use super::{WechatPay, WechatPayConfig, SCENES};
use crate::channels::settings::keys::{load_key, ChannelCtx, KeyRef};
use crate::channels::SharedChannel;
use crate::crypto::{PublicKey, SymmetricKey};
use crate::domain::{PayMethod, Scene};

crate::channel_settings! {
    /// A WeChat Pay (API v3) channel in routes.yaml.
    WechatpayChannel;
    /// WeChat Pay's own keys (documented on `WechatpayChannel`).
    WechatpaySettings {
        /// WeChat Pay appid.
        #[serde(default)]
        pub app_id: Option<String>,
        /// Merchant id.
        #[serde(default)]
        pub mchid: Option<String>,
        /// The merchant API key.
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub merchant_private_key: Option<Spanned<KeyRef>>,
        /// Serial number of the merchant API certificate.
        #[serde(default)]
        pub merchant_serial_no: Option<String>,
        /// The 32-character APIv3 key (decrypts notifications).
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub apiv3_key: Option<Spanned<KeyRef>>,
        /// Public-key mode: the WeChat Pay public key.
        #[serde(default)]
        #[schemars(with = "Option<KeyRef>")]
        pub wechatpay_public_key: Option<Spanned<KeyRef>>,
        /// Public-key mode: the key's id, `PUB_KEY_ID_…`.
        #[serde(default)]
        pub wechatpay_public_key_id: Option<String>,
        /// Platform-certificate mode: the platform certificates (serials are read from them).
        #[serde(default)]
        #[schemars(with = "Option<Vec<KeyRef>>")]
        pub platform_certificates: Option<Vec<Spanned<KeyRef>>>,
    }
}

/// The method and scenes WeChat Pay offers.
pub fn offered() -> (Vec<PayMethod>, Vec<Scene>) {
    (
        vec![PayMethod::Wechat],
        SCENES.iter().map(|(s, _)| *s).collect(),
    )
}

/// The adapter, or `None` with the problems in `cx`.
pub fn compile(s: &WechatpaySettings, cx: &mut ChannelCtx<'_>) -> Option<SharedChannel> {
    let mchid = cx.required(&s.mchid, "mchid");
    let appid = cx.required(&s.app_id, "app_id");
    let serial = cx
        .required(&s.merchant_serial_no, "merchant_serial_no")
        .to_ascii_uppercase();
    let merchant_key = cx.merchant_key(&s.merchant_private_key, "merchant_private_key");
    let apiv3_key = cx
        .load(
            &s.apiv3_key,
            "apiv3_key",
            SymmetricKey::from_file,
            SymmetricKey::from_text,
        )
        .map(Arc::new);
    let mut keys = PlatformKeys::default();
    match (&s.wechatpay_public_key, &s.platform_certificates) {
        (Some(_), Some(_)) => cx.problem(format!(
            "channel `{}`: choose one verification mode: wechatpay_public_key (+ wechatpay_public_key_id) or platform_certificates",
            cx.name
        )),
        (Some(_), None) => {
            let id = cx.required(&s.wechatpay_public_key_id, "wechatpay_public_key_id");
            if !id.is_empty() && !id.starts_with("PUB_KEY_ID_") {
                cx.problem(format!("channel `{}`: wechatpay_public_key_id must start with PUB_KEY_ID_", cx.name));
            }
            if let Some(k) = cx.load(&s.wechatpay_public_key, "wechatpay_public_key", PublicKey::from_file, PublicKey::from_text) {
                keys.insert(&id, k);
            }
        }
        (None, Some(certs)) => {
            cx.forbid(s.wechatpay_public_key_id.is_some(), "wechatpay_public_key_id");
            if certs.is_empty() {
                cx.problem(format!("channel `{}`: platform_certificates is empty", cx.name));
            }
            for c in certs {
                let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| crate::crypto::KeyError::Read { path: p.display().to_string(), source });
                match load_key(&c.value, cx.base, |p| read(p).and_then(|t| crate::crypto::certificate_serial_and_key(&t)), crate::crypto::certificate_serial_and_key) {
                    Ok((serial, key)) => {
                        cx.loaded("platform_certificates", &c.referenced, &key);
                        keys.insert(&serial, key)
                    }
                    Err(msg) => cx.problems.push(crate::channels::settings::keys::at(c, format!("platform certificate: {msg}"))),
                }
            }
        }
        (None, None) => cx.problem(format!(
            "channel `{}` (wechatpay) needs wechatpay_public_key + wechatpay_public_key_id, or platform_certificates",
            cx.name
        )),
    }
    let (merchant_key, apiv3_key) = (merchant_key?, apiv3_key?);
    Some(Arc::new(WechatPay::new(WechatPayConfig {
        name: cx.name.to_string(),
        mchid,
        appid,
        base_url: cx.endpoint.clone(),
        merchant_key,
        merchant_serial: serial,
        platform_keys: keys,
        apiv3_key,
        notify_url: cx.notify_url.clone(),
        scenes: cx.scenes.clone(),
    })))
}
