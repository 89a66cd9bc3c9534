//! The answer when no channel can take a payment now: why each candidate was passed over, and
//! whether repeating later can help (503 with `Retry-After`) or not (422).

use super::*;
use crate::health::RoutingView;

impl Payments {
    /// The error for a payment no channel can take now: 503 with `Retry-After` when a
    /// candidate is only held back for a while (open circuit, rate limit, maintenance), 422
    /// when repeating cannot help.
    pub(super) fn no_candidate(
        &self,
        req: &OrderRequest,
        decision: &crate::routing::Decision,
        snapshot: &Snapshot,
    ) -> ServiceError {
        let view = RoutingView {
            health: self.health(),
            snapshot,
        };
        use crate::routing::Verdict;
        let why: Vec<String> = decision
            .trace
            .iter()
            .filter_map(|t| t.channel.as_ref().map(|c| format!("{c}: {}", t.verdict)))
            .collect();
        let detail = format!(
            "no channel can take a {}{} {} payment of {} fen{}",
            if req.split { "split " } else { "" },
            req.method.as_str(),
            req.scene.as_str(),
            req.amount,
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            }
        );
        // Every candidate skipped only for its spent rate limit: the same 429 as when the
        // create finds them spent itself (routing learned it from an earlier create).
        let limited: Vec<(&str, Duration)> = decision
            .trace
            .iter()
            .filter(|t| t.verdict == Verdict::RateLimited.as_str())
            .filter_map(|t| {
                let channel = t.channel.as_deref()?;
                Some((channel, view.rate_limited_for(channel)?))
            })
            .collect();
        for (channel, _) in &limited {
            self.metrics
                .rate_limited
                .with_label_values(&[channel])
                .inc();
        }
        let temporary = |v: &str| {
            [
                Verdict::CircuitOpen,
                Verdict::RateLimited,
                Verdict::InMaintenance,
            ]
            .iter()
            .any(|t| t.as_str() == v)
        };
        let only_limited = !limited.is_empty()
            && decision
                .trace
                .iter()
                .filter(|t| t.channel.is_some() && temporary(&t.verdict))
                .all(|t| t.verdict == Verdict::RateLimited.as_str());
        if only_limited {
            let wait = limited.iter().map(|(_, w)| *w).min().unwrap_or_default();
            return ServiceError::RateLimited {
                retry_after: wait.max(Duration::from_secs(1)),
                detail: format!(
                    "every candidate channel is at its rate limit ({})",
                    why.join("; ")
                ),
            };
        }
        let waits: Vec<Duration> = decision
            .trace
            .iter()
            .filter_map(|t| {
                let channel = t.channel.as_deref()?;
                if t.verdict == Verdict::CircuitOpen.as_str() {
                    Some(
                        self.health()
                            .reopens_in(channel)
                            .unwrap_or(Duration::from_secs(1)),
                    )
                } else if t.verdict == Verdict::RateLimited.as_str() {
                    Some(
                        view.rate_limited_for(channel)
                            .unwrap_or(Duration::from_secs(1)),
                    )
                } else if t.verdict == Verdict::InMaintenance.as_str() {
                    Some(Duration::from_secs(60))
                } else {
                    None
                }
            })
            .collect();
        match waits.into_iter().min() {
            Some(wait) => ServiceError::ChannelUnavailable {
                detail: format!("{detail}; a channel is temporarily unavailable, try again later"),
                retry_after: Some(wait.max(Duration::from_secs(1))),
            },
            None => ServiceError::Unprocessable {
                code: ErrorCode::NoChannel,
                detail,
            },
        }
    }
}
