//! The channel kinds payroute speaks, one line each in `with_kinds!` below: a new kind is its
//! folder (`channels/<kind>/`: adapter, wire types, `settings.rs`), its simulator's folder
//! (`sandbox/<kind>/`) and its line in the table (the compiler then asks for the two `mod`
//! lines).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::SharedChannel;
use crate::channels::settings::common::ChannelCommon;
use crate::channels::settings::keys::ChannelCtx;
use crate::domain::{PayMethod, Scene};

/// A channel as written in routes.yaml: its `kind`, the keys every channel has, and its kind's own.
#[derive(Debug)]
pub struct RawChannel {
    pub kind: Spanned<String>,
    pub common: ChannelCommon,
    pub settings: ChannelSettings,
}

macro_rules! kinds {
    ($( $variant:ident: $module:ident::{$settings:ident, $file:ident}, )*) => {
        /// A kind's own keys.
        #[derive(Debug)]
        pub enum ChannelSettings {
            $( $variant(super::$module::settings::$settings), )*
        }

        /// A channel in routes.yaml, as the JSON Schema shows it: a union tagged by `kind`.
        #[derive(JsonSchema)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        #[schemars(rename = "Channel")]
        #[allow(dead_code)]
        pub enum ChannelSchema {
            $( $variant(super::$module::settings::$file), )*
        }

        /// The kinds, as `kind:` names them.
        pub const KINDS: &[&str] = &[$( stringify!($module), )*];

        /// Reads a channel whose `kind` is `kind` (read before, by the caller).
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            kind: &str,
            d: D,
        ) -> Result<RawChannel, D::Error> {
            match kind {
                $( stringify!($module) => {
                    let (kind, common, s) = super::$module::settings::$file::deserialize(d)?.split();
                    Ok(RawChannel { kind, common, settings: ChannelSettings::$variant(s) })
                } )*
                other => Err(serde::de::Error::custom(unknown_kind(other))),
            }
        }

        /// The methods and scenes the kind's protocol offers.
        pub fn offered(s: &ChannelSettings) -> (Vec<PayMethod>, Vec<Scene>) {
            match s {
                $( ChannelSettings::$variant(_) => super::$module::settings::offered(), )*
            }
        }

        /// The kind's adapter, or `None` with the problems in `cx`.
        pub fn compile(s: &ChannelSettings, cx: &mut ChannelCtx<'_>) -> Option<SharedChannel> {
            match s {
                $( ChannelSettings::$variant(s) => super::$module::settings::compile(s, cx), )*
            }
        }
    };
}

/// The kinds, one line each: `Variant: module::{Settings, File}`. `channels::<module>` holds
/// the adapter and its `settings` (`Settings`: the kind's own keys, `File`: its routes.yaml
/// type); `sandbox::<module>::Gateway` simulates it. `with_kinds!(m)` hands the table to the
/// macro `m`: `kinds!` below here, the simulators in the sandbox.
macro_rules! with_kinds {
    ($then:ident) => {
        $then! {
            Alipay: alipay::{AlipaySettings, AlipayChannel},
            Wechatpay: wechatpay::{WechatpaySettings, WechatpayChannel},
            Pingpp: pingpp::{PingppSettings, PingppChannel},
        }
    };
}
pub(crate) use with_kinds;

with_kinds!(kinds);

/// The problem with a `kind` payroute does not speak.
pub fn unknown_kind(kind: &str) -> String {
    format!(
        "unknown channel kind `{kind}` (supported: {})",
        KINDS.join(", ")
    )
}
