//! Whole-file checks beyond single values: rules that can never match, and maintenance windows
//! that leave a rule without any channel.

use chrono::{DateTime, Utc};

use super::{ChannelEntry, Problem, Rule, Snapshot};
use crate::domain::{PayMethod, Scene};

fn problem(rule: &Rule, message: String) -> Problem {
    Problem {
        line: rule.location.0,
        column: rule.location.1,
        message,
    }
}

/// Errors: a rule whose channels are all in maintenance at some minute of the coming week.
pub fn uncovered_rules(
    rules: &[Rule],
    channels: &[ChannelEntry],
    now: DateTime<Utc>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for rule in rules {
        let chans: Vec<&ChannelEntry> = rule
            .channels
            .iter()
            .filter_map(|n| channels.iter().find(|c| &c.name == n))
            .collect();
        if chans.is_empty() || chans.iter().any(|c| c.maintenance.is_empty()) {
            continue;
        }
        let all_down = |t: DateTime<Utc>| {
            chans
                .iter()
                .all(|c| c.maintenance.iter().any(|w| w.contains(t)))
        };
        if let Some(t) = super::windows::first_minute_in_week(now, all_down) {
            out.push(problem(
                rule,
                format!(
                    "rule `{}` has no channel at {} UTC: the maintenance windows of all its channels overlap",
                    rule.name,
                    t.format("%a %H:%M")
                ),
            ));
        }
    }
    out
}

fn subset<T: PartialEq>(inner: &[T], outer: &[T]) -> bool {
    outer.is_empty() || (!inner.is_empty() && inner.iter().all(|x| outer.contains(x)))
}

/// Whether every payment `later` matches is matched by `earlier` first.
fn subsumes(earlier: &Rule, later: &Rule) -> bool {
    subset(&later.methods, &earlier.methods)
        && subset(&later.scenes, &earlier.scenes)
        && subset(&later.currencies, &earlier.currencies)
        && earlier.amount.min <= later.amount.min
        && later.amount.max <= earlier.amount.max
        && earlier
            .metadata
            .iter()
            .all(|(k, v)| later.metadata.get(k).is_some_and(|lv| v == "*" || v == lv))
}

/// Warnings: rules that can never match, or never find a channel.
pub fn warnings(snap: &Snapshot) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, rule) in snap.rules.iter().enumerate() {
        if let Some(e) = snap.rules[..i].iter().find(|e| subsumes(e, rule)) {
            out.push(problem(
                rule,
                format!(
                    "rule `{}` can never match: rule `{}` before it matches every payment it would",
                    rule.name, e.name
                ),
            ));
            continue;
        }
        let methods: &[PayMethod] = if rule.methods.is_empty() {
            &PayMethod::ALL
        } else {
            &rule.methods
        };
        let scenes: &[Scene] = if rule.scenes.is_empty() {
            &Scene::ALL
        } else {
            &rule.scenes
        };
        let routable = rule
            .channels
            .iter()
            .filter_map(|n| snap.channel(n))
            .any(|c| {
                methods.iter().any(|m| {
                    scenes.iter().any(|s| {
                        c.methods.contains(m) && c.scenes.contains(s) && c.adapter.supports(*m, *s)
                    })
                }) && c.limits.min <= rule.amount.max
                    && rule.amount.min <= c.limits.max
            });
        if !routable {
            out.push(problem(rule, format!("rule `{}` can never route a payment: none of its channels takes what it matches", rule.name)));
        }
    }
    out
}
