//! The keys every channel kind has (fee, limits, timeouts, breaker, rate limit, maintenance…),
//! and `channel_settings!`, which writes a kind's routes.yaml type: these keys plus the kind's
//! own, one flat struct per kind so that unknown keys (those of another kind too) stay located
//! errors (serde's `flatten` would lose both the locations and `deny_unknown_fields`).
//!
//! A leaf: channels' settings import it, it imports nothing from channels.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::domain::{PayMethod, Scene};

/// The keys every channel has, as written.
#[derive(Debug)]
pub struct ChannelCommon {
    pub enabled: Option<bool>,
    pub endpoint: Spanned<String>,
    pub notify_url: Option<String>,
    pub methods: Option<Vec<PayMethod>>,
    pub scenes: Option<Vec<Scene>>,
    pub fee: RawFee,
    pub limits: RawLimits,
    pub timeouts: RawTimeouts,
    pub circuit: RawCircuit,
    pub rate_limit: Option<RawRateLimit>,
    pub maintenance: Vec<Spanned<RawWindow>>,
}

/// Defines a kind's settings (`$settings`: its own keys) and its routes.yaml type (`$file`: the
/// `kind` tag, the keys every channel has, and the kind's own), with `$file::split`.
#[macro_export]
macro_rules! channel_settings {
    (
        $(#[$file_meta:meta])* $file:ident;
        $(#[$meta:meta])* $settings:ident {
            $( $(#[$attr:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $settings {
            $( pub $field: $ty, )*
        }

        $(#[$file_meta])*
        #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $file {
            /// The tag (the schema shows it on the union).
            #[schemars(skip)]
            kind: serde_saphyr::Spanned<String>,
            /// `false` takes the channel out of routing (default `true`).
            #[serde(default)]
            enabled: Option<bool>,
            /// Gateway URL: `https://…`, or `http://` to a loopback host.
            #[schemars(with = "String")]
            endpoint: serde_saphyr::Spanned<String>,
            /// Full notification URL; default `<notify base URL>/notify/<name>`.
            #[serde(default)]
            notify_url: Option<String>,
            /// Payment methods the channel takes (default: all its protocol offers).
            #[serde(default)]
            methods: Option<Vec<$crate::domain::PayMethod>>,
            /// Scenes the channel takes (default: all its protocol offers).
            #[serde(default)]
            scenes: Option<Vec<$crate::domain::Scene>>,
            /// What the channel costs per payment.
            #[serde(default)]
            fee: $crate::channels::settings::common::RawFee,
            /// Single-payment limits.
            #[serde(default)]
            limits: $crate::channels::settings::common::RawLimits,
            /// Network timeouts.
            #[serde(default)]
            timeouts: $crate::channels::settings::common::RawTimeouts,
            /// Circuit breaker thresholds.
            #[serde(default)]
            circuit: $crate::channels::settings::common::RawCircuit,
            /// Calls per second allowed to this channel (none: unlimited).
            #[serde(default)]
            rate_limit: Option<$crate::channels::settings::common::RawRateLimit>,
            /// Recurring windows in which the channel takes no new payments.
            #[serde(default)]
            #[schemars(with = "Vec<crate::channels::settings::common::RawWindow>")]
            maintenance: Vec<serde_saphyr::Spanned<$crate::channels::settings::common::RawWindow>>,
            $( $(#[$attr])* $field: $ty, )*
        }

        impl $file {
            /// The tag, the keys every channel has, and the kind's own.
            pub fn split(
                self,
            ) -> (serde_saphyr::Spanned<String>, $crate::channels::settings::common::ChannelCommon, $settings) {
                let common = $crate::channels::settings::common::ChannelCommon {
                    enabled: self.enabled,
                    endpoint: self.endpoint,
                    notify_url: self.notify_url,
                    methods: self.methods,
                    scenes: self.scenes,
                    fee: self.fee,
                    limits: self.limits,
                    timeouts: self.timeouts,
                    circuit: self.circuit,
                    rate_limit: self.rate_limit,
                    maintenance: self.maintenance,
                };
                (self.kind, common, $settings { $( $field: self.$field, )* })
            }
        }
    };
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
