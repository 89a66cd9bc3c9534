//! The whole call's deadline: a backstop over everything below, so a transport that ignores
//! its own timeout cannot hold a payment flow (the real client times out first).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::{Call, CallFuture, Exchange, Reach, Reply};
use crate::channels::Outcome;

/// Room left past the limiter's wait and the transport's timeout before the deadline fires.
pub(super) const GRACE: Duration = Duration::from_secs(1);

/// Adds [`Deadline`].
pub(super) struct DeadlineLayer {
    budget: Duration,
}

impl DeadlineLayer {
    pub(super) fn new(budget: Duration) -> Self {
        DeadlineLayer { budget }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            budget: self.budget,
        }
    }
}

/// A call not finished within the budget is dropped, its outcome unknown (it may have been sent).
pub(super) struct Deadline<S> {
    inner: S,
    budget: Duration,
}

impl<'a, S> Service<Exchange<'a>> for Deadline<S>
where
    S: Service<Exchange<'a>, Response = Reply, Error = Infallible, Future = CallFuture<'a>>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = CallFuture<'a>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, ex: Exchange<'a>) -> Self::Future {
        let budget = self.budget;
        let inner = self.inner.call(ex);
        Box::pin(async move {
            match tokio::time::timeout(budget, inner).await {
                Ok(reply) => reply,
                Err(_) => Ok(Reply {
                    call: Call::Answer(Outcome::Unknown {
                        reason: format!("no answer within {budget:?}"),
                    }),
                    reach: Reach::Sent(budget),
                }),
            }
        })
    }
}
