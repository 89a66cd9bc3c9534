//! Routing rules: what a compiled rule is, how it matches a payment, and how the rules of
//! routes.yaml are checked and compiled.

use std::collections::BTreeMap;

use super::raw::{RawConfig, RawRule, Strategy};
use super::{AmountRange, Problem};
use crate::channels::settings::problem::at;
use crate::domain::{Currency, PayMethod, Scene};
use crate::money::MAX_AMOUNT_FEN;

/// A routing rule: first match wins.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Empty: any.
    pub methods: Vec<PayMethod>,
    /// Empty: any.
    pub scenes: Vec<Scene>,
    /// Empty: any.
    pub currencies: Vec<Currency>,
    pub amount: AmountRange,
    /// Required metadata: exact values, or `*` for any value.
    pub metadata: BTreeMap<String, String>,
    pub channels: Vec<String>,
    pub strategy: Strategy,
    pub weights: BTreeMap<String, u32>,
    /// Where the rule is written (line, column).
    pub location: (u64, u64),
}

impl Rule {
    /// Why the rule does not apply to this payment, or `None` when it does.
    pub fn mismatch(
        &self,
        method: PayMethod,
        scene: Scene,
        currency: Currency,
        amount: u64,
        metadata: &BTreeMap<String, String>,
    ) -> Option<String> {
        if !self.methods.is_empty() && !self.methods.contains(&method) {
            return Some(format!("method {} not in the rule", method.as_str()));
        }
        if !self.scenes.is_empty() && !self.scenes.contains(&scene) {
            return Some(format!("scene {} not in the rule", scene.as_str()));
        }
        if !self.currencies.is_empty() && !self.currencies.contains(&currency) {
            return Some("currency not in the rule".into());
        }
        if !self.amount.contains(amount) {
            return Some(format!(
                "amount {amount} outside {}..={}",
                self.amount.min, self.amount.max
            ));
        }
        for (k, want) in &self.metadata {
            match metadata.get(k) {
                None => return Some(format!("metadata `{k}` missing")),
                Some(v) if want != "*" && v != want => {
                    return Some(format!("metadata `{k}` is not `{want}`"))
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Whether the rule has no criteria at all (it matches every payment).
    pub fn is_catch_all(&self) -> bool {
        self.methods.is_empty()
            && self.scenes.is_empty()
            && self.currencies.is_empty()
            && self.metadata.is_empty()
            && self.amount
                == AmountRange {
                    min: 1,
                    max: MAX_AMOUNT_FEN,
                }
    }
}

/// `names`: every channel written, also those whose definition has problems.
pub(super) fn compile_rules(
    raw: &RawConfig,
    names: &[String],
    problems: &mut Vec<Problem>,
) -> Vec<Rule> {
    if raw.rules.is_empty() {
        return vec![Rule {
            name: "default".into(),
            methods: vec![],
            scenes: vec![],
            currencies: vec![],
            amount: AmountRange {
                min: 1,
                max: MAX_AMOUNT_FEN,
            },
            metadata: BTreeMap::new(),
            channels: raw.channels.keys().cloned().collect(),
            strategy: Strategy::Priority,
            weights: BTreeMap::new(),
            location: (1, 1),
        }];
    }
    raw.rules
        .iter()
        .map(|r: &RawRule| {
            let name = r.name.value.clone();
            for c in &r.channels {
                if !names.contains(&c.value) {
                    problems.push(at(c, format!("rule `{name}` names undefined channel `{}`", c.value)));
                }
            }
            let (min, max) = (r.when.min_amount.unwrap_or(1), r.when.max_amount.unwrap_or(MAX_AMOUNT_FEN));
            if min > max {
                problems.push(at(&r.name, format!("rule `{name}`: min_amount is above max_amount")));
            }
            if r.channels.is_empty() {
                problems.push(at(&r.name, format!("rule `{name}` lists no channels")));
            }
            match r.strategy {
                Strategy::Weighted => {
                    for c in &r.channels {
                        if !r.weights.contains_key(&c.value) {
                            problems.push(at(c, format!("rule `{name}` (weighted) gives no weight for `{}`", c.value)));
                        }
                    }
                    for k in r.weights.keys() {
                        if !r.channels.iter().any(|c| &c.value == k) {
                            problems.push(at(&r.name, format!("rule `{name}`: weight for `{k}`, which is not among its channels")));
                        }
                    }
                    if r.weights.values().all(|w| *w == 0) {
                        problems.push(at(&r.name, format!("rule `{name}`: weights must not all be 0")));
                    }
                }
                _ if !r.weights.is_empty() => {
                    problems.push(at(&r.name, format!("rule `{name}`: weights apply only to strategy weighted")));
                }
                _ => {}
            }
            Rule {
                name,
                methods: r.when.method.clone(),
                scenes: r.when.scene.clone(),
                currencies: r.when.currency.clone(),
                amount: AmountRange { min, max },
                metadata: r.when.metadata.clone(),
                channels: r.channels.iter().map(|c| c.value.clone()).collect(),
                strategy: r.strategy,
                weights: r.weights.clone(),
                location: (r.name.referenced.line(), r.name.referenced.column()),
            }
        })
        .collect()
}
