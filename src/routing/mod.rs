//! Routing: a pure function of (payment projection, rules snapshot, health view) → ranked
//! candidates plus a trace of every rule and channel considered. No I/O; the clock is an input.
//!
//! Tie-breaks: `cheapest` keeps the order written among equal fees; `weighted` picks one
//! channel by weight from a hash of `out_trade_no` (a retry lands on the same channel) and keeps
//! the others, in the order written, as fallbacks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{ChannelEntry, Rule, Snapshot, Strategy};
use crate::domain::{Currency, PayMethod, Scene};

/// The flat projection of a payment that routing looks at.
#[derive(Debug, Clone)]
pub struct RoutingInput {
    pub out_trade_no: String,
    pub method: PayMethod,
    pub scene: Scene,
    pub currency: Currency,
    pub amount: u64,
    pub metadata: BTreeMap<String, String>,
    /// Created for profit sharing: only channels that can split take it.
    pub split: bool,
    /// The moment of routing (maintenance windows).
    pub now: DateTime<Utc>,
}

/// What routing knows about channel health (circuit breakers, rate limits).
pub trait HealthView {
    /// The channel's circuit is open: it is skipped.
    fn circuit_open(&self, _channel: &str) -> bool {
        false
    }
    /// The channel's rate limit is exhausted: it is skipped.
    fn rate_limited(&self, _channel: &str) -> bool {
        false
    }
}

/// Every channel healthy.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllHealthy;

impl HealthView for AllHealthy {}

/// Why a channel was kept or left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Candidate,
    Undefined,
    Disabled,
    MethodOrSceneUnsupported,
    /// A split payment, and the channel's kind cannot split.
    SplitUnsupported,
    AmountOutOfRange,
    InMaintenance,
    CircuitOpen,
    RateLimited,
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Candidate => "candidate",
            Verdict::Undefined => "undefined",
            Verdict::Disabled => "disabled",
            Verdict::MethodOrSceneUnsupported => "method_or_scene_unsupported",
            Verdict::SplitUnsupported => "split_unsupported",
            Verdict::AmountOutOfRange => "amount_out_of_range",
            Verdict::InMaintenance => "in_maintenance",
            Verdict::CircuitOpen => "circuit_open",
            Verdict::RateLimited => "rate_limited",
        }
    }
}

/// One line of the explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `matched`, `skipped` (rules) or a channel verdict.
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Estimated fee (fen) of a kept channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<u64>,
}

/// The routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The rule that matched, if any.
    pub rule: Option<String>,
    pub strategy: Option<Strategy>,
    /// Channel names, best first.
    pub candidates: Vec<String>,
    /// Estimated fee (fen) of each candidate, same order.
    pub fees: Vec<u64>,
    pub trace: Vec<TraceEntry>,
}

fn verdict(
    c: &ChannelEntry,
    input: &RoutingInput,
    health: &dyn HealthView,
) -> (Verdict, Option<String>) {
    if !c.enabled {
        return (Verdict::Disabled, None);
    }
    if !c.methods.contains(&input.method)
        || !c.scenes.contains(&input.scene)
        || !c.adapter.supports(input.method, input.scene)
    {
        return (Verdict::MethodOrSceneUnsupported, None);
    }
    if input.split && !c.adapter.can_split() {
        return (
            Verdict::SplitUnsupported,
            Some(format!(
                "a split payment; {} channels cannot split",
                c.adapter.kind()
            )),
        );
    }
    if !c.limits.contains(input.amount) {
        return (
            Verdict::AmountOutOfRange,
            Some(format!("limits {}..={}", c.limits.min, c.limits.max)),
        );
    }
    if c.maintenance.iter().any(|w| w.contains(input.now)) {
        return (Verdict::InMaintenance, None);
    }
    if health.circuit_open(&c.name) {
        return (Verdict::CircuitOpen, None);
    }
    if health.rate_limited(&c.name) {
        return (Verdict::RateLimited, None);
    }
    (Verdict::Candidate, None)
}

/// A stable 64-bit hash of `key` (SHA-256 prefix: the same on every machine and release).
fn stable_hash(key: &str) -> u64 {
    let hex = crate::crypto::sha256_hex(key.as_bytes());
    u64::from_str_radix(&hex[..16], 16).unwrap_or(0)
}

fn order(rule: &Rule, kept: Vec<(String, u64)>, out_trade_no: &str) -> Vec<(String, u64)> {
    match rule.strategy {
        Strategy::Priority => kept,
        Strategy::Cheapest => {
            let mut k = kept;
            k.sort_by_key(|(_, fee)| *fee); // stable: equal fees keep the order written
            k
        }
        Strategy::Weighted => {
            let weight = |name: &str| u64::from(rule.weights.get(name).copied().unwrap_or(0));
            let total: u64 = kept.iter().map(|(n, _)| weight(n)).sum();
            if total == 0 {
                return kept;
            }
            let mut point = stable_hash(out_trade_no) % total;
            let pick = kept
                .iter()
                .position(|(n, _)| {
                    let w = weight(n);
                    if point < w {
                        true
                    } else {
                        point -= w;
                        false
                    }
                })
                .unwrap_or(0);
            let mut k = kept;
            let chosen = k.remove(pick);
            k.insert(0, chosen);
            k
        }
    }
}

/// Chooses the candidate channels for a new payment. First matching rule wins.
pub fn route(input: &RoutingInput, snap: &Snapshot, health: &dyn HealthView) -> Decision {
    let mut trace = Vec::new();
    for rule in &snap.rules {
        if let Some(why) = rule.mismatch(
            input.method,
            input.scene,
            input.currency,
            input.amount,
            &input.metadata,
        ) {
            trace.push(TraceEntry {
                rule: rule.name.clone(),
                channel: None,
                verdict: "skipped".into(),
                detail: Some(why),
                fee: None,
            });
            continue;
        }
        trace.push(TraceEntry {
            rule: rule.name.clone(),
            channel: None,
            verdict: "matched".into(),
            detail: None,
            fee: None,
        });
        let mut kept = Vec::new();
        for name in &rule.channels {
            let (v, detail, fee) = match snap.channel(name) {
                None => (Verdict::Undefined, None, None),
                Some(c) => {
                    let (v, d) = verdict(c, input, health);
                    let fee = c.fee.estimate(input.amount);
                    if v == Verdict::Candidate {
                        kept.push((name.clone(), fee));
                    }
                    (v, d, Some(fee))
                }
            };
            trace.push(TraceEntry {
                rule: rule.name.clone(),
                channel: Some(name.clone()),
                verdict: v.as_str().into(),
                detail,
                fee: fee.filter(|_| v == Verdict::Candidate),
            });
        }
        let ranked = order(rule, kept, &input.out_trade_no);
        return Decision {
            rule: Some(rule.name.clone()),
            strategy: Some(rule.strategy),
            candidates: ranked.iter().map(|(n, _)| n.clone()).collect(),
            fees: ranked.iter().map(|(_, f)| *f).collect(),
            trace,
        };
    }
    Decision {
        rule: None,
        strategy: None,
        candidates: vec![],
        fees: vec![],
        trace,
    }
}

/// Builds a routing input from text parts (the explain CLI and admin endpoint).
pub fn input_from_text(
    out_trade_no: &str,
    method: &str,
    scene: &str,
    currency: &str,
    amount: u64,
    metadata: BTreeMap<String, String>,
    at: Option<&str>,
) -> Result<RoutingInput, String> {
    let parse = |what: &str, v: &str, allowed: &str| -> Result<serde_json::Value, String> {
        Ok(serde_json::Value::String(v.to_string())).and_then(|j| {
            if v.is_empty() {
                Err(format!("{what} is required ({allowed})"))
            } else {
                Ok(j)
            }
        })
    };
    let method: PayMethod = serde_json::from_value(parse("method", method, "alipay, wechat")?)
        .map_err(|_| format!("method must be one of alipay, wechat, got `{method}`"))?;
    let scene: Scene =
        serde_json::from_value(parse("scene", scene, "qr, app, h5, jsapi, page, barcode")?)
            .map_err(|_| {
                format!("scene must be one of qr, app, h5, jsapi, page, barcode, got `{scene}`")
            })?;
    let currency: Currency = serde_json::from_value(parse("currency", currency, "CNY")?)
        .map_err(|_| format!("currency must be CNY, got `{currency}`"))?;
    if amount == 0 || amount > crate::money::MAX_AMOUNT_FEN {
        return Err(format!(
            "amount must be 1..={} fen",
            crate::money::MAX_AMOUNT_FEN
        ));
    }
    let now = match at {
        None => Utc::now(),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map_err(|_| format!("`{t}` is not an RFC 3339 time"))?
            .with_timezone(&Utc),
    };
    Ok(RoutingInput {
        out_trade_no: out_trade_no.to_string(),
        method,
        scene,
        currency,
        amount,
        metadata,
        split: false,
        now,
    })
}

/// The decision as text, for `payroute explain`.
pub fn explain_text(input: &RoutingInput, d: &Decision) -> String {
    let mut out = format!(
        "payment: {}{} {} {} fen ({}) at {}\n",
        if input.split { "split " } else { "" },
        input.method.as_str(),
        input.scene.as_str(),
        input.amount,
        serde_json::to_value(input.currency)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        input.now.to_rfc3339()
    );
    for t in &d.trace {
        match &t.channel {
            None => out.push_str(&format!(
                "rule {}: {}{}\n",
                t.rule,
                t.verdict,
                t.detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
            Some(c) => out.push_str(&format!(
                "  channel {c}: {}{}{}\n",
                t.verdict,
                t.fee.map(|f| format!(", fee {f} fen")).unwrap_or_default(),
                t.detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
        }
    }
    match (&d.rule, d.candidates.is_empty()) {
        (None, _) => out.push_str("no rule matches: the payment would be refused (no_channel)\n"),
        (Some(r), true) => out.push_str(&format!(
            "rule {r} matched but no channel can take the payment (no_channel)\n"
        )),
        (Some(r), false) => {
            let strategy = d
                .strategy
                .map(|s| format!("{s:?}").to_lowercase())
                .unwrap_or_default();
            out.push_str(&format!("ranked by {r} ({strategy}):\n"));
            for (i, (c, f)) in d.candidates.iter().zip(&d.fees).enumerate() {
                out.push_str(&format!("  {}. {c} (fee {f} fen)\n", i + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
