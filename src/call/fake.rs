//! Test doubles for the call stack: a transport that answers from a script (with delays, on
//! tokio time) and counts its calls, and an adapter that reads a scripted outcome back.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tower::Service;

use super::{BoxTransport, Transports};
use crate::channels::client::SendError;
use crate::channels::{
    BuildError, Channel, ChannelPayState, InboundNotification, NotificationEvent, NotifyError,
    NotifyReply, Op, Outcome, PaymentReport, Prepared, RawResponse,
};
use crate::config::ChannelEntry;
use crate::domain::{PayMethod, Scene};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Step {
    delay: Duration,
    result: Result<RawResponse, Failure>,
}

/// A scripted transport failure (`SendError` itself is not `Clone`).
#[derive(Clone, Copy, Debug)]
enum Failure {
    Refused,
    TimedOut(Duration),
}

impl From<Failure> for SendError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused => SendError::Connect("connection refused".into()),
            Failure::TimedOut(after) => SendError::Timeout(after),
        }
    }
}

impl Step {
    /// A 200 answer whose body [`ScriptedChannel`] reads as an outcome: `paid`, `waiting`,
    /// `closed`, `declined`, `not_accepted`; anything else is unknown.
    pub fn answer(body: &'static str) -> Self {
        Step {
            delay: Duration::ZERO,
            result: Ok(RawResponse {
                status: 200,
                headers: http::HeaderMap::new(),
                body: Bytes::from_static(body.as_bytes()),
            }),
        }
    }

    /// No connection: provably nothing sent.
    pub fn refused() -> Self {
        Step {
            delay: Duration::ZERO,
            result: Err(Failure::Refused),
        }
    }

    /// Timed out after sending: outcome unknown.
    pub fn timeout(after: Duration) -> Self {
        Step {
            delay: after,
            result: Err(Failure::TimedOut(after)),
        }
    }

    /// The same step, given after `delay` (tokio time).
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug)]
struct Script {
    steps: VecDeque<Step>,
    /// Given once the script is spent.
    otherwise: Step,
    requests: Vec<http::Request<Bytes>>,
}

/// A transport answering from a script; clones share it.
#[derive(Clone, Debug)]
pub struct FakeTransport {
    script: Arc<Mutex<Script>>,
}

impl Default for FakeTransport {
    fn default() -> Self {
        FakeTransport::new(Step::answer("closed"))
    }
}

impl FakeTransport {
    /// A transport that gives `otherwise` once its script is spent.
    pub fn new(otherwise: Step) -> Self {
        FakeTransport {
            script: Arc::new(Mutex::new(Script {
                steps: VecDeque::new(),
                otherwise,
                requests: Vec::new(),
            })),
        }
    }

    /// Adds a step to the script.
    pub fn push(&self, step: Step) -> &Self {
        self.lock().steps.push_back(step);
        self
    }

    /// How many requests reached the transport.
    pub fn calls(&self) -> usize {
        self.lock().requests.len()
    }

    /// The URIs of the requests that reached the transport, in order.
    pub fn uris(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.uri().to_string())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Service<http::Request<Bytes>> for FakeTransport {
    type Response = RawResponse;
    type Error = SendError;
    type Future = Pin<Box<dyn Future<Output = Result<RawResponse, SendError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let step = {
            let mut script = self.lock();
            script.requests.push(req);
            let otherwise = script.otherwise.clone();
            script.steps.pop_front().unwrap_or(otherwise)
        };
        Box::pin(async move {
            tokio::time::sleep(step.delay).await;
            step.result.map_err(SendError::from)
        })
    }
}

/// Fake transports by channel name, for a [`Caller`](super::Caller).
#[derive(Debug, Default)]
pub struct FakeTransports {
    by_channel: Mutex<HashMap<String, FakeTransport>>,
}

impl FakeTransports {
    /// The channel's transport (created on first use, answering `closed`).
    pub fn channel(&self, name: &str) -> FakeTransport {
        let mut map = self.by_channel.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string()).or_default().clone()
    }
}

impl Transports for FakeTransports {
    fn transport(&self, entry: &ChannelEntry) -> BoxTransport {
        BoxTransport::new(self.channel(&entry.name))
    }
}

/// An adapter whose requests are empty and whose answers are read from a one-word body.
#[derive(Debug)]
pub struct ScriptedChannel {
    pub name: String,
}

impl Channel for ScriptedChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn supports(&self, _method: PayMethod, _scene: Scene) -> bool {
        true
    }

    fn build(&self, op: Op<'_>, _now: DateTime<Utc>) -> Result<Prepared, BuildError> {
        let uri = format!("http://127.0.0.1/{}", op.kind().as_str());
        let req = http::Request::post(uri)
            .body(Bytes::new())
            .map_err(|e| BuildError::Invalid(e.to_string()))?;
        Ok(Prepared::Send(req))
    }

    fn parse(&self, _op: Op<'_>, response: &RawResponse) -> Outcome {
        let payment = |state| {
            Outcome::Payment(PaymentReport {
                state,
                channel_trade_no: Some("T1".into()),
                amount: None,
                action: None,
            })
        };
        match &response.body[..] {
            b"paid" => payment(ChannelPayState::Paid),
            b"waiting" => payment(ChannelPayState::Waiting),
            b"closed" => Outcome::Closed,
            b"declined" => Outcome::Declined {
                code: "NO_MONEY".into(),
                message: "declined".into(),
            },
            b"not_accepted" => Outcome::NotAccepted {
                code: "BAD_SIGN".into(),
                message: "not accepted".into(),
            },
            other => Outcome::Unknown {
                reason: String::from_utf8_lossy(other).into_owned(),
            },
        }
    }

    fn verify_notification(
        &self,
        _notification: &InboundNotification<'_>,
    ) -> Result<NotificationEvent, NotifyError> {
        Err(NotifyError::BadSignature)
    }

    fn notify_reply(&self, accepted: bool) -> NotifyReply {
        NotifyReply {
            status: if accepted { 200 } else { 500 },
            content_type: "text/plain",
            body: Bytes::new(),
        }
    }
}
