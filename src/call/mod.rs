//! One channel call as a tower stack: deadline → metrics and log → breaker → rate limit →
//! transport. Each concern is one layer in its own file; [`stack`] writes their order once.
//!
//! The transport is a seam ([`Transport`]): production sends with the channel's
//! [`ChannelClient`](crate::channels::client::ChannelClient); tests answer from a script on
//! paused tokio time.

mod breaker;
mod concern;
mod deadline;
#[cfg(test)]
pub mod fake;
mod limit;
mod observe;
mod transport;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tower::{Service, ServiceBuilder};

pub use self::breaker::{classify, Class};
use self::concern::Layered;
pub use self::limit::LIMIT_WAIT;
pub use self::transport::{BoxTransport, ChannelClients, Transport, Transports};
use crate::channels::{BuildError, Op, Outcome, Prepared, SharedChannel};
use crate::config::{BreakerConfig, ChannelEntry};
use crate::health::Health;
use crate::metrics::Metrics;

/// Why a channel call is made: new traffic waits for the channel's rate limit and is held
/// back by an open circuit; settling money already in flight (barcode queries and reversals,
/// closing abandoned attempts, refunds of late payments, recovery) never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// A new payment, or an operation the app asked for now.
    New,
    /// Settling money already in flight.
    Settle,
}

/// The answer of one channel call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// The channel answered (or the adapter answered locally).
    Answer(Outcome),
    /// Provably nothing was created at the channel: no connection, the request could not be
    /// built, or the channel did not accept it (authentication, configuration).
    NotSent(String),
    /// The channel's protocol has no such operation.
    Unsupported(String),
    /// The channel's rate limit stayed exhausted for the bounded wait; nothing was sent.
    RateLimited(Duration),
}

/// One call on its way down the stack.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// What the request does (the adapter parses the answer against it).
    pub op: Op<'a>,
    /// Whether the breaker and the limiter may hold it back.
    pub traffic: Traffic,
    /// The signed request the adapter built.
    pub request: http::Request<Bytes>,
}

/// What comes back up the stack: the call's meaning and how far down it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// What the call means to the payment flow.
    pub call: Call,
    /// Whether it was sent (metrics, the breaker's classifier).
    pub reach: Reach,
}

/// How far a call went down the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A layer held it back (circuit open, rate limit): nothing was sent.
    HeldBack(&'static str),
    /// The transport had it for this long.
    Sent(Duration),
}

impl Reply {
    /// A call a layer answered without sending it.
    fn held_back(call: Call, why: &'static str) -> Self {
        Reply {
            call,
            reach: Reach::HeldBack(why),
        }
    }
}

/// The future every layer returns; it may borrow the operation it carries.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send + 'a>>;

/// What the stack needs to know about one channel, taken from its [`ChannelEntry`].
#[derive(Clone, Debug)]
pub struct Target {
    /// The channel's name from routes.yaml (metrics label, breaker key).
    pub name: Arc<str>,
    /// Parses the answers.
    pub adapter: SharedChannel,
    /// The breaker's thresholds.
    pub breaker: BreakerConfig,
    /// The channel's rate limit, shared with routing (which takes quota for new payments).
    pub limiter: Option<Arc<crate::limits::Limiter>>,
    /// The transport's own time limit; the stack's deadline leaves it room.
    pub request_timeout: Duration,
}

impl From<&ChannelEntry> for Target {
    fn from(entry: &ChannelEntry) -> Self {
        Target {
            name: entry.name.as_str().into(),
            adapter: entry.adapter.clone(),
            breaker: entry.breaker,
            limiter: entry.limiter.clone(),
            request_timeout: entry.client_settings.request_timeout,
        }
    }
}

/// The shared state every call reports to.
#[derive(Clone, Debug)]
pub struct Deps {
    /// Every channel's breaker.
    pub health: Arc<Health>,
    /// Where calls are counted.
    pub metrics: Arc<Metrics>,
}

/// The channel call pipeline, in order: each layer, and why it sits where it does.
pub fn stack<'a, T: Transport>(deps: &Deps, target: &Target, transport: T) -> CallStack<'a> {
    let stack = ServiceBuilder::new()
        // Outermost, so nothing below can hold a caller longer than the limiter's wait plus the
        // transport's own timeout (which fires first and is what the breaker counts).
        .layer(Layered(deadline::Deadline::new(
            LIMIT_WAIT + target.request_timeout + deadline::GRACE,
        )))
        // Above the breaker and the limiter, so a call they hold back is counted and logged too.
        .layer(Layered(observe::Observe::new(&target.name, &deps.metrics)))
        // Above the limiter: an open circuit answers at once, without waiting for or spending
        // quota; it is fed by `classify`, which sees the parsed outcome.
        .layer(Layered(breaker::Breaker::new(target, deps)))
        // Right above the transport: only a call that is about to be sent waits for quota.
        .layer(Layered(limit::Limit::new(target, &deps.metrics)))
        // Sends, and has the adapter say what the answer means.
        .service(transport::Exchanger::new(transport, target));
    Box::new(stack)
}

/// The assembled stack, type-erased so that the futures holding it are plainly `Send`.
pub type CallStack<'a> = Box<
    dyn Service<Exchange<'a>, Response = Reply, Error = Infallible, Future = CallFuture<'a>>
        + Send
        + 'a,
>;

/// Builds (and signs) the channel request for `op`; a request that cannot be built is a call
/// that was not sent.
pub fn prepare(entry: &ChannelEntry, op: Op<'_>) -> Result<Prepared, Call> {
    entry.adapter.build(op, Utc::now()).map_err(|e| match e {
        BuildError::Unsupported(m) => Call::Unsupported(m),
        e => Call::NotSent(e.to_string()),
    })
}

/// The future of one whole call (see [`Caller::send`]).
pub type CallOutcome<'a> = Pin<Box<dyn Future<Output = Call> + Send + 'a>>;

/// Makes channel calls: the one entry point of the payment flows into the stack.
#[derive(Clone, Debug)]
pub struct Caller {
    deps: Deps,
    transports: Arc<dyn Transports>,
}

impl Caller {
    /// A caller that sends with each channel's own HTTP client.
    pub fn new(health: Arc<Health>, metrics: Arc<Metrics>) -> Self {
        Self::with_transports(health, metrics, Arc::new(ChannelClients))
    }

    /// A caller that sends through `transports` (tests: a scripted fake).
    pub fn with_transports(
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        transports: Arc<dyn Transports>,
    ) -> Self {
        Caller {
            deps: Deps { health, metrics },
            transports,
        }
    }

    /// Channel health (circuit breakers).
    pub fn health(&self) -> &Arc<Health> {
        &self.deps.health
    }

    /// Builds the request for `op` and sends it.
    pub fn call<'a>(
        &'a self,
        entry: &'a ChannelEntry,
        op: Op<'a>,
        traffic: Traffic,
    ) -> CallOutcome<'a> {
        self.send(entry, op, prepare(entry, op), traffic)
    }

    /// Sends what [`prepare`] built for `op` and says what the channel's answer means.
    pub fn send<'a>(
        &'a self,
        entry: &'a ChannelEntry,
        op: Op<'a>,
        prepared: Result<Prepared, Call>,
        traffic: Traffic,
    ) -> CallOutcome<'a> {
        let request = match prepared {
            Err(not_built) => return Box::pin(std::future::ready(not_built)),
            Ok(Prepared::Local(outcome)) => {
                return Box::pin(std::future::ready(Call::Answer(outcome)))
            }
            Ok(Prepared::Send(request)) => request,
        };
        let target = Target::from(entry);
        let mut stack = stack(&self.deps, &target, self.transports.transport(entry));
        // Every layer is always ready (the transport reports its errors as answers), so the
        // call is made here and only its boxed future is awaited: a future that held the stack
        // itself could not be proven `Send` for every lifetime of the exchange it carries.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match stack.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => {
                return Box::pin(std::future::ready(Call::NotSent(
                    "the call stack was not ready".into(),
                )))
            }
        }
        let reply = stack.call(Exchange {
            op,
            traffic,
            request,
        });
        Box::pin(async move {
            match reply.await {
                Ok(reply) => reply.call,
                Err(never) => match never {},
            }
        })
    }
}
