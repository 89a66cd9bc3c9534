//! The routes.yaml file as written (serde types; unknown keys are errors). The JSON Schema in
//! `schema/routes.schema.json` is generated from these types (`payroute schema`).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::crypto::Secret;
use crate::domain::{Currency, PayMethod, Scene};

/// The whole file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Channels by name, in file order (the name is used in rules, responses, metrics and
    /// `/notify/{name}`).
    pub channels: IndexMap<String, RawChannel>,
    /// Routing rules, first match wins. Without rules every channel is a candidate, in file order.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// The late-payment guard: refund in full, automatically, a payment that a channel reports
    /// for an order payroute closed, failed or abandoned there (default `true`).
    #[serde(default = "default_true")]
    pub refund_duplicates: bool,
}

fn default_true() -> bool {
    true
}

/// A channel definition.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    /// Protocol: `alipay`, `wechatpay` or `pingpp`.
    #[schemars(with = "ChannelKind")]
    pub kind: Spanned<String>,
    /// `false` takes the channel out of routing (default `true`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Gateway URL: `https://…`, or `http://` to a loopback host.
    #[schemars(with = "String")]
    pub endpoint: Spanned<String>,
    /// Alipay application id, WeChat Pay appid, or Ping++ app id.
    #[serde(default)]
    pub app_id: Option<String>,
    /// WeChat Pay: merchant id.
    #[serde(default)]
    pub mchid: Option<String>,
    /// WeChat Pay merchant API key, or Ping++ request-signing key.
    #[serde(default)]
    #[schemars(with = "Option<KeyRef>")]
    pub merchant_private_key: Option<Spanned<KeyRef>>,
    /// WeChat Pay: serial number of the merchant API certificate.
    #[serde(default)]
    pub merchant_serial_no: Option<String>,
    /// WeChat Pay: the 32-character APIv3 key (decrypts notifications).
    #[serde(default)]
    #[schemars(with = "Option<KeyRef>")]
    pub apiv3_key: Option<Spanned<KeyRef>>,
    /// WeChat Pay public-key mode: the WeChat Pay public key.
    #[serde(default)]
    #[schemars(with = "Option<KeyRef>")]
    pub wechatpay_public_key: Option<Spanned<KeyRef>>,
    /// WeChat Pay public-key mode: the key's id, `PUB_KEY_ID_…`.
    #[serde(default)]
    pub wechatpay_public_key_id: Option<String>,
    /// Ping++: the API secret key (`sk_live_…` / `sk_test_…`).
    #[serde(default)]
    #[schemars(with = "Option<KeyRef>")]
    pub secret_key: Option<Spanned<KeyRef>>,
    /// Ping++: the public key webhooks are verified with.
    #[serde(default)]
    #[schemars(with = "Option<KeyRef>")]
    pub pingpp_public_key: Option<Spanned<KeyRef>>,
    /// WeChat Pay platform-certificate mode: the platform certificates (serials are read from them).
    #[serde(default)]
    #[schemars(with = "Option<Vec<KeyRef>>")]
    pub platform_certificates: Option<Vec<Spanned<KeyRef>>>,
    /// Alipay: the merchant (app) private key, PKCS#1/PKCS#8 PEM or raw base64.
    #[serde(default)]
    #[schemars(with = "Option<KeyRef>")]
    pub app_private_key: Option<Spanned<KeyRef>>,
    /// Alipay: the Alipay public key that signs responses and notifications.
    #[serde(default)]
    #[schemars(with = "Option<KeyRef>")]
    pub alipay_public_key: Option<Spanned<KeyRef>>,
    /// Full notification URL; default `<notify base URL>/notify/<name>`.
    #[serde(default)]
    pub notify_url: Option<String>,
    /// Browser return URL for page/H5 payments.
    #[serde(default)]
    pub return_url: Option<String>,
    /// Payment methods the channel takes (default: all its protocol offers).
    #[serde(default)]
    pub methods: Option<Vec<PayMethod>>,
    /// Scenes the channel takes (default: all its protocol offers).
    #[serde(default)]
    pub scenes: Option<Vec<Scene>>,
    /// What the channel costs per payment.
    #[serde(default)]
    pub fee: RawFee,
    /// Single-payment limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Network timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Circuit breaker thresholds.
    #[serde(default)]
    pub circuit: RawCircuit,
    /// Calls per second allowed to this channel (none: unlimited).
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    /// Recurring windows in which the channel takes no new payments.
    #[serde(default)]
    #[schemars(with = "Vec<RawWindow>")]
    pub maintenance: Vec<Spanned<RawWindow>>,
}

/// The channel protocols (for the schema).
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ChannelKind {
    Alipay,
    Wechatpay,
    Pingpp,
}

/// Where a key comes from: a file (relative to routes.yaml) or an environment variable.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// Path of the key file (a Kubernetes Secret mount), relative to routes.yaml.
    #[serde(default)]
    pub file: Option<String>,
    /// Name of an environment variable holding the key.
    #[serde(default)]
    pub env: Option<String>,
    /// The key's text, held in memory: only a rewrite of the parsed file (the sandbox pointing
    /// a channel at its simulator) sets it; a routes.yaml cannot (`inline` is an unknown key).
    #[serde(skip)]
    #[schemars(skip)]
    inline: Option<Secret<String>>,
}

impl KeyRef {
    /// A key given as text rather than read from a file or the environment.
    pub fn inline(text: String) -> Self {
        KeyRef {
            file: None,
            env: None,
            inline: Some(Secret::new(text)),
        }
    }

    /// The in-memory text, when the key is one.
    pub fn inline_text(&self) -> Option<&str> {
        self.inline.as_ref().map(|t| t.expose().as_str())
    }
}

/// Fee schedule; `rate` is an exact decimal percentage such as `"0.38%"`.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFee {
    /// Percentage of the amount, e.g. `"0.38%"` (up to four decimals).
    #[serde(default)]
    #[schemars(with = "Option<String>", regex(pattern = r"^\d+(\.\d{1,4})?%$"))]
    pub rate: Option<Spanned<String>>,
    /// Fixed part per transaction, fen.
    #[serde(default)]
    pub fixed: Option<u64>,
    /// Minimum fee per transaction, fen.
    #[serde(default)]
    pub min: Option<u64>,
    /// Maximum fee per transaction, fen.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub max: Option<Spanned<u64>>,
}

/// Amount limits, fen.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub min_amount: Option<u64>,
    #[serde(default)]
    pub max_amount: Option<u64>,
}

/// Circuit breaker: open after `consecutive_failures` failures in a row, or when at least
/// `min_calls` calls in `window_secs` failed at `failure_ratio`; stay open `open_secs`, then let
/// probes through; close after `probes_to_close` successful probes.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCircuit {
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// A percentage such as `"50%"`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^\d{1,3}%$"))]
    pub failure_ratio: Option<String>,
    #[serde(default)]
    pub window_secs: Option<u64>,
    #[serde(default)]
    pub min_calls: Option<u32>,
    #[serde(default)]
    pub open_secs: Option<u64>,
    #[serde(default)]
    pub probes_to_close: Option<u32>,
}

/// A token bucket: `per_second` calls on average, bursts of `burst`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: u32,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Network timeouts, milliseconds.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default)]
    pub connect_ms: Option<u64>,
    #[serde(default)]
    pub request_ms: Option<u64>,
}

/// A recurring maintenance window, e.g. every day 23:00–00:30 Asia/Shanghai.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Days the window starts on (`mon` … `sun`); absent means every day.
    #[serde(default)]
    pub days: Option<Vec<Day>>,
    /// Start, `HH:MM`.
    #[schemars(regex(pattern = r"^\d{2}:\d{2}$"))]
    pub start: String,
    /// End, `HH:MM`; an end before the start ends on the next day.
    #[schemars(regex(pattern = r"^\d{2}:\d{2}$"))]
    pub end: String,
    /// IANA time zone of `start` and `end` (default `Asia/Shanghai`).
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// How a rule orders its candidate channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// In the order written.
    #[default]
    Priority,
    /// Lowest estimated fee for this exact amount first; ties keep the order written.
    Cheapest,
    /// One channel chosen by weight, deterministically by `out_trade_no` (a retry lands on the
    /// same channel); the others follow in the order written.
    Weighted,
}

/// A routing rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Name shown in responses and explanations.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// What the rule matches; every criterion given must hold. No `match`: the default rule.
    #[serde(default, rename = "match")]
    pub when: RawMatch,
    /// Candidate channels, in priority order.
    #[schemars(with = "Vec<String>")]
    pub channels: Vec<Spanned<String>>,
    /// How candidates are ordered (default `priority`).
    #[serde(default)]
    pub strategy: Strategy,
    /// For `weighted`: the weight of each channel (e.g. 90 and 10).
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
}

/// What a rule matches; every given criterion must hold.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub method: Vec<PayMethod>,
    #[serde(default)]
    pub scene: Vec<Scene>,
    #[serde(default)]
    pub currency: Vec<Currency>,
    /// Smallest amount matched, fen.
    #[serde(default)]
    pub min_amount: Option<u64>,
    /// Largest amount matched, fen.
    #[serde(default)]
    pub max_amount: Option<u64>,
    /// Metadata the payment must carry: exact values, or `"*"` for any value.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}
