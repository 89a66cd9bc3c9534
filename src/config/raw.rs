//! The routes.yaml file as written (serde types; unknown keys are errors).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::domain::{PayMethod, Scene};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Channels by name (the name is used in rules, responses, metrics and `/notify/{name}`).
    pub channels: BTreeMap<String, RawChannel>,
    /// Routing rules, first match wins. Without rules every channel is a candidate, in order.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// A channel definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    /// Protocol: `alipay`.
    pub kind: Spanned<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Gateway URL.
    pub endpoint: Spanned<String>,
    /// Alipay application id, or WeChat Pay appid.
    #[serde(default)]
    pub app_id: Option<String>,
    /// WeChat Pay: merchant id.
    #[serde(default)]
    pub mchid: Option<String>,
    /// WeChat Pay: the merchant API private key (`apiclient_key.pem`).
    #[serde(default)]
    pub merchant_private_key: Option<Spanned<KeyRef>>,
    /// WeChat Pay: serial number of the merchant API certificate.
    #[serde(default)]
    pub merchant_serial_no: Option<String>,
    /// WeChat Pay: the 32-character APIv3 key (decrypts notifications).
    #[serde(default)]
    pub apiv3_key: Option<Spanned<KeyRef>>,
    /// WeChat Pay public-key mode: the WeChat Pay public key and its `PUB_KEY_ID_…`.
    #[serde(default)]
    pub wechatpay_public_key: Option<Spanned<KeyRef>>,
    #[serde(default)]
    pub wechatpay_public_key_id: Option<String>,
    /// Ping++: the API secret key (`sk_live_…` / `sk_test_…`).
    #[serde(default)]
    pub secret_key: Option<Spanned<KeyRef>>,
    /// Ping++: the public key webhooks are verified with.
    #[serde(default)]
    pub pingpp_public_key: Option<Spanned<KeyRef>>,
    /// WeChat Pay platform-certificate mode: the platform certificates (serials are read from them).
    #[serde(default)]
    pub platform_certificates: Option<Vec<Spanned<KeyRef>>>,
    /// Alipay: the merchant (app) private key, PKCS#1/PKCS#8 PEM or raw base64.
    #[serde(default)]
    pub app_private_key: Option<Spanned<KeyRef>>,
    /// Alipay: the Alipay public key that signs responses and notifications.
    #[serde(default)]
    pub alipay_public_key: Option<Spanned<KeyRef>>,
    /// Full notification URL; default `<notify base URL>/notify/<name>`.
    #[serde(default)]
    pub notify_url: Option<String>,
    /// Browser return URL for page/H5 payments.
    #[serde(default)]
    pub return_url: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<PayMethod>>,
    #[serde(default)]
    pub scenes: Option<Vec<Scene>>,
    #[serde(default)]
    pub fee: RawFee,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

/// Where a key comes from: a file (relative to routes.yaml) or an environment variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
}

/// Fee schedule; `rate` is an exact decimal percentage such as `"0.38%"`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFee {
    #[serde(default)]
    pub rate: Option<String>,
    /// Fixed part per transaction, fen.
    #[serde(default)]
    pub fixed: Option<u64>,
    /// Minimum fee per transaction, fen.
    #[serde(default)]
    pub min: Option<u64>,
    /// Maximum fee per transaction, fen.
    #[serde(default)]
    pub max: Option<u64>,
}

/// Amount limits, fen.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub min_amount: Option<u64>,
    #[serde(default)]
    pub max_amount: Option<u64>,
}

/// Network timeouts, milliseconds.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default)]
    pub connect_ms: Option<u64>,
    #[serde(default)]
    pub request_ms: Option<u64>,
}

/// A routing rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub when: RawMatch,
    /// Candidate channels, in priority order.
    pub channels: Vec<Spanned<String>>,
}

/// What a rule matches; every given criterion must hold.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub method: Vec<PayMethod>,
    #[serde(default)]
    pub scene: Vec<Scene>,
    #[serde(default)]
    pub min_amount: Option<u64>,
    #[serde(default)]
    pub max_amount: Option<u64>,
}
