//! Routing: a pure function of (payment projection, snapshot) → ranked candidates + trace.
//! No I/O and no clock, so it is table-tested and can be explained.

use serde::Serialize;

use crate::config::Snapshot;
use crate::domain::{Currency, PayMethod, Scene};

/// The flat projection of a payment that routing looks at.
#[derive(Debug, Clone)]
pub struct RoutingInput {
    pub method: PayMethod,
    pub scene: Scene,
    pub currency: Currency,
    pub amount: u64,
}

/// Why a channel was kept or left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Candidate,
    Disabled,
    MethodOrSceneUnsupported,
    AmountOutOfRange,
    Undefined,
}

/// One line of the explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub verdict: String,
}

/// The routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The rule that matched, if any.
    pub rule: Option<String>,
    /// Channel names, best first.
    pub candidates: Vec<String>,
    /// (candidate, estimated fee in fen) in the same order.
    pub fees: Vec<u64>,
    pub trace: Vec<TraceEntry>,
}

/// Chooses the candidate channels for a new payment. First matching rule wins; its channels
/// are kept in the order written when they are enabled, support the method and scene, and
/// accept the amount.
pub fn route(input: &RoutingInput, snap: &Snapshot) -> Decision {
    let mut trace = Vec::new();
    for rule in &snap.rules {
        if !rule.matches(input.method, input.scene, input.amount) {
            trace.push(TraceEntry {
                rule: rule.name.clone(),
                channel: None,
                verdict: "rule does not match".into(),
            });
            continue;
        }
        let mut candidates = Vec::new();
        let mut fees = Vec::new();
        for name in &rule.channels {
            let verdict = match snap.channel(name) {
                None => Verdict::Undefined,
                Some(c) if !c.enabled => Verdict::Disabled,
                Some(c)
                    if !c.methods.contains(&input.method)
                        || !c.scenes.contains(&input.scene)
                        || !c.adapter.supports(input.method, input.scene) =>
                {
                    Verdict::MethodOrSceneUnsupported
                }
                Some(c) if !c.limits.contains(input.amount) => Verdict::AmountOutOfRange,
                Some(c) => {
                    candidates.push(name.clone());
                    fees.push(c.fee.estimate(input.amount));
                    Verdict::Candidate
                }
            };
            trace.push(TraceEntry {
                rule: rule.name.clone(),
                channel: Some(name.clone()),
                verdict: serde_json::to_value(&verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            });
        }
        return Decision {
            rule: Some(rule.name.clone()),
            candidates,
            fees,
            trace,
        };
    }
    Decision {
        rule: None,
        candidates: vec![],
        fees: vec![],
        trace,
    }
}
