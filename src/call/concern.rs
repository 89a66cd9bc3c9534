//! The tower plumbing shared by every layer of the stack, so that each concern writes only
//! what it does around the rest of the call.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{CallFuture, Exchange, Reply};

/// What the rest of the stack is, seen from a layer.
pub(super) trait Inner<'a>:
    Service<Exchange<'a>, Response = Reply, Error = Infallible, Future = CallFuture<'a>>
    + Clone
    + Send
    + 'a
{
}

impl<'a, S> Inner<'a> for S where
    S: Service<Exchange<'a>, Response = Reply, Error = Infallible, Future = CallFuture<'a>>
        + Clone
        + Send
        + 'a
{
}

/// One concern of the stack (deadline, metrics, breaker, limit).
pub(super) trait Concern: Clone {
    /// Handles `ex`, handing it to `inner` (ready) or answering itself.
    fn around<'a, S: Inner<'a>>(&self, ex: Exchange<'a>, inner: &mut S) -> CallFuture<'a>;
}

/// A concern as a tower layer.
pub(super) struct Layered<C>(pub(super) C);

impl<C: Clone, S> Layer<S> for Layered<C> {
    type Service = Around<C, S>;

    fn layer(&self, inner: S) -> Around<C, S> {
        Around {
            concern: self.0.clone(),
            inner,
        }
    }
}

/// A concern wrapped around the rest of the stack.
#[derive(Clone)]
pub(super) struct Around<C, S> {
    concern: C,
    inner: S,
}

impl<'a, C: Concern, S: Inner<'a>> Service<Exchange<'a>> for Around<C, S> {
    type Response = Reply;
    type Error = Infallible;
    type Future = CallFuture<'a>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, ex: Exchange<'a>) -> CallFuture<'a> {
        self.concern.around(ex, &mut self.inner)
    }
}
