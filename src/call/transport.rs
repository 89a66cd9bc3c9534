//! The seam under the stack: a [`Transport`] sends one signed request and returns the raw
//! answer; [`Exchanger`] puts it at the bottom of the stack and has the adapter parse it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};
use tracing::warn;

use super::{Call, CallFuture, Exchange, Reach, Reply, Target};
use crate::channels::client::{ChannelClient, SendError};
use crate::channels::{Outcome, RawResponse, SharedChannel};
use crate::config::ChannelEntry;

/// Sends one request to a channel: the real HTTP client, or a fake in tests.
pub trait Transport:
    Service<http::Request<Bytes>, Response = RawResponse, Error = SendError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<T> Transport for T where
    T: Service<
            http::Request<Bytes>,
            Response = RawResponse,
            Error = SendError,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A transport of any type.
pub type BoxTransport = BoxCloneService<http::Request<Bytes>, RawResponse, SendError>;

/// Gives the transport that reaches a channel.
pub trait Transports: Send + Sync + std::fmt::Debug {
    /// The transport for this channel.
    fn transport(&self, entry: &ChannelEntry) -> BoxTransport;
}

/// Production: every channel is reached with its own HTTP client (and connection pool).
#[derive(Debug)]
pub struct ChannelClients;

impl Transports for ChannelClients {
    fn transport(&self, entry: &ChannelEntry) -> BoxTransport {
        let client = ChannelClient::clone(&entry.client);
        BoxCloneService::new(tower::service_fn(move |req| {
            let client = client.clone();
            async move { client.send(req).await }
        }))
    }
}

/// The bottom of the stack: sends the request and turns the result into a [`Call`].
#[derive(Clone)]
pub(super) struct Exchanger<T> {
    transport: T,
    name: Arc<str>,
    adapter: SharedChannel,
}

impl<T> Exchanger<T> {
    pub(super) fn new(transport: T, target: &Target) -> Self {
        Exchanger {
            transport,
            name: target.name.clone(),
            adapter: target.adapter.clone(),
        }
    }
}

impl<'a, T: Transport> Service<Exchange<'a>> for Exchanger<T> {
    type Response = Reply;
    type Error = Infallible;
    type Future = CallFuture<'a>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Transport errors are answers (`Call::NotSent` or unknown), given by `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, ex: Exchange<'a>) -> Self::Future {
        let transport = self.transport.clone();
        let (name, adapter) = (self.name.clone(), self.adapter.clone());
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = transport.oneshot(ex.request).await;
            let call = match result {
                Ok(resp) => match adapter.parse(ex.op, &resp) {
                    Outcome::NotAccepted { code, message } => {
                        warn!(channel = &*name, out_trade_no = ex.op.out_trade_no(), operation = ex.op.kind().as_str(), %code, %message, "channel did not accept the request: check its configuration");
                        Call::NotSent(format!("not accepted: {code}: {message}"))
                    }
                    other => Call::Answer(other),
                },
                Err(e) if e.nothing_sent() => Call::NotSent(e.to_string()),
                Err(e) => Call::Answer(Outcome::Unknown {
                    reason: e.to_string(),
                }),
            };
            Ok(Reply {
                call,
                reach: Reach::Sent(started.elapsed()),
            })
        })
    }
}
