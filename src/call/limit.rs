//! The channel's rate limit for calls on existing orders (close, query, refund of new
//! traffic): they cannot move to another channel, so they wait a bounded time for quota.
//! New payments take their quota while being routed (a saturated channel is skipped there),
//! and settling traffic never waits.

use std::sync::Arc;
use std::time::Duration;

use super::concern::{Concern, Inner};
use super::{Call, CallFuture, Exchange, Reply, Target, Traffic};
use crate::channels::OpKind;
use crate::limits::Limiter;
use crate::metrics::Metrics;

/// The longest a call waits for its channel's quota.
pub const LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Waits up to [`LIMIT_WAIT`] for quota, then sends or answers `RateLimited`.
#[derive(Clone)]
pub(super) struct Limit {
    channel: Arc<str>,
    limiter: Option<Arc<Limiter>>,
    metrics: Arc<Metrics>,
}

impl Limit {
    pub(super) fn new(target: &Target, metrics: &Arc<Metrics>) -> Self {
        Limit {
            channel: target.name.clone(),
            limiter: target.limiter.clone(),
            metrics: metrics.clone(),
        }
    }
}

impl Concern for Limit {
    fn around<'a, S: Inner<'a>>(&self, ex: Exchange<'a>, inner: &mut S) -> CallFuture<'a> {
        let limiter = match &self.limiter {
            Some(l) if ex.traffic == Traffic::New && ex.op.kind() != OpKind::Create => l.clone(),
            _ => return inner.call(ex),
        };
        // The service that was made ready goes into the future; a clone stays behind.
        let clone = inner.clone();
        let mut inner = std::mem::replace(inner, clone);
        let limited = self
            .metrics
            .rate_limited
            .with_label_values(&[&*self.channel]);
        Box::pin(async move {
            if tokio::time::timeout(LIMIT_WAIT, limiter.until_ready())
                .await
                .is_err()
            {
                limited.inc();
                let call = Call::RateLimited(LIMIT_WAIT);
                return Ok(Reply::held_back(call, "rate limit reached"));
            }
            inner.call(ex).await
        })
    }
}
