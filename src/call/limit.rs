//! The channel's rate limit for calls on existing orders (close, query, refund of new
//! traffic): they cannot move to another channel, so they wait a bounded time for quota.
//! New payments take their quota while being routed (a saturated channel is skipped there),
//! and settling traffic never waits.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use tower::{Layer, Service};

use super::{Call, CallFuture, Exchange, Reply, Target, Traffic};
use crate::channels::OpKind;
use crate::metrics::Metrics;

/// The longest a call waits for its channel's quota.
pub const LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Adds [`Limit`].
pub(super) struct LimitLayer {
    channel: Arc<str>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    metrics: Arc<Metrics>,
}

impl LimitLayer {
    pub(super) fn new(target: &Target, metrics: &Arc<Metrics>) -> Self {
        LimitLayer {
            channel: target.name.clone(),
            limiter: target.limiter.clone(),
            metrics: metrics.clone(),
        }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Limit<S> {
        Limit {
            inner,
            channel: self.channel.clone(),
            limiter: self.limiter.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Waits up to [`LIMIT_WAIT`] for quota, then sends or answers `RateLimited`.
pub(super) struct Limit<S> {
    inner: S,
    channel: Arc<str>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    metrics: Arc<Metrics>,
}

impl<'a, S> Service<Exchange<'a>> for Limit<S>
where
    S: Service<Exchange<'a>, Response = Reply, Error = Infallible, Future = CallFuture<'a>>
        + Clone
        + Send
        + 'a,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = CallFuture<'a>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, ex: Exchange<'a>) -> Self::Future {
        let limiter = match &self.limiter {
            Some(l) if ex.traffic == Traffic::New && ex.op.kind() != OpKind::Create => l.clone(),
            _ => return self.inner.call(ex),
        };
        // The service that was made ready goes into the future; a clone stays for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
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
