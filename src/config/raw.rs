//! The routes.yaml file as written (serde types; unknown keys are errors). The JSON Schema in
//! `schema/routes.schema.json` is generated from these types (`payroute schema`).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub use crate::channels::registry::RawChannel;
pub use crate::channels::settings::keys::KeyRef;
use crate::domain::{Currency, PayMethod, Scene};

/// The whole file.
/// Parsed in two passes (`sections.rs`): each channel's `kind` first, then the channel as its
/// kind's settings, so that every key stays located and a key of another kind is an unknown key.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Channels by name, in file order (the name is used in rules, responses, metrics and
    /// `/notify/{name}`).
    #[schemars(with = "IndexMap<String, crate::channels::registry::ChannelSchema>")]
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
