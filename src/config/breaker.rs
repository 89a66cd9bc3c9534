//! Circuit breaker thresholds: routes.yaml `circuit` compiled into a [`BreakerConfig`].
//!
//! The breaker itself (in `health`) reads this; configuration never reads the breaker.

use std::time::Duration;

/// Breaker thresholds (from routes.yaml `circuit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Open after this many failures in a row.
    pub consecutive_failures: u32,
    /// Or when at least `min_calls` calls in `window` failed at this ratio (percent).
    pub failure_ratio_percent: u32,
    pub window: Duration,
    pub min_calls: u32,
    /// How long to stay open before probing.
    pub open_for: Duration,
    /// Successful probes needed to close again.
    pub probes_to_close: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_ratio_percent: 50,
            window: Duration::from_secs(30),
            min_calls: 20,
            open_for: Duration::from_secs(30),
            probes_to_close: 1,
        }
    }
}

/// Compiles a channel's `circuit` section; unset fields take the defaults.
pub(super) fn compile_breaker(
    raw: &crate::channels::settings::common::RawCircuit,
) -> Result<BreakerConfig, String> {
    let d = BreakerConfig::default();
    let ratio = match &raw.failure_ratio {
        None => d.failure_ratio_percent,
        Some(t) => t
            .strip_suffix('%')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| format!("failure_ratio `{t}` must be a percentage such as \"50%\""))?,
    };
    let cfg = BreakerConfig {
        consecutive_failures: raw.consecutive_failures.unwrap_or(d.consecutive_failures),
        failure_ratio_percent: ratio,
        window: raw.window_secs.map(Duration::from_secs).unwrap_or(d.window),
        min_calls: raw.min_calls.unwrap_or(d.min_calls),
        open_for: raw.open_secs.map(Duration::from_secs).unwrap_or(d.open_for),
        probes_to_close: raw.probes_to_close.unwrap_or(d.probes_to_close),
    };
    if cfg.consecutive_failures == 0 || cfg.probes_to_close == 0 {
        return Err("consecutive_failures and probes_to_close must be at least 1".into());
    }
    Ok(cfg)
}
