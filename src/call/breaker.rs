//! The circuit breaker as a layer: new traffic is admitted by the channel's breaker
//! ([`Health`]), and every sent call feeds it through a response classifier ([`classify`]).
//! Settling traffic is never held back, but its answers count like any other.

use std::sync::Arc;

use super::concern::{Concern, Inner};
use super::{Call, CallFuture, Deps, Exchange, Reach, Reply, Target, Traffic};
use crate::channels::Outcome;
use crate::config::BreakerConfig;
use crate::health::{Admission, Health};
use crate::metrics::Metrics;

/// What a reply says about the channel's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The channel answered, whatever the business result (a decline is an answer).
    Success,
    /// No usable answer: unknown outcome, no connection, or the request was not accepted.
    Failure,
    /// Nothing was sent: says nothing about the channel.
    Uncounted,
}

/// Classifies a reply for the breaker.
pub fn classify(reply: &Reply) -> Class {
    match (&reply.reach, &reply.call) {
        (Reach::HeldBack(_), _) => Class::Uncounted,
        (Reach::Sent(_), Call::Answer(Outcome::Unknown { .. })) => Class::Failure,
        (Reach::Sent(_), Call::Answer(_)) => Class::Success,
        (Reach::Sent(_), Call::NotSent(_) | Call::Unsupported(_) | Call::RateLimited(_)) => {
            Class::Failure
        }
    }
}

/// Holds new traffic back from an open circuit and records what sent calls say.
#[derive(Clone)]
pub(super) struct Breaker {
    channel: Arc<str>,
    config: BreakerConfig,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl Breaker {
    pub(super) fn new(target: &Target, deps: &Deps) -> Self {
        Breaker {
            channel: target.name.clone(),
            config: target.breaker,
            health: deps.health.clone(),
            metrics: deps.metrics.clone(),
        }
    }
}

impl Concern for Breaker {
    fn around<'a, S: Inner<'a>>(&self, ex: Exchange<'a>, inner: &mut S) -> CallFuture<'a> {
        let admission = match ex.traffic {
            Traffic::Settle => None,
            Traffic::New => match self.health.admission(&self.channel) {
                Some(admission) => Some(admission),
                None => {
                    let call =
                        Call::NotSent(format!("circuit of channel {} is open", self.channel));
                    return Box::pin(async move { Ok(Reply::held_back(call, "circuit open")) });
                }
            },
        };
        let mut probe = Probe {
            health: self.health.clone(),
            channel: self.channel.clone(),
            held: admission == Some(Admission::Probe),
        };
        let (config, metrics) = (self.config, self.metrics.clone());
        let inner = inner.call(ex);
        Box::pin(async move {
            let reply = inner.await?;
            let answered = match classify(&reply) {
                Class::Uncounted => return Ok(reply),
                class => class == Class::Success,
            };
            probe.held = false; // `record` ends the probe
            probe.health.record(&probe.channel, &config, answered);
            metrics
                .circuit_state
                .with_label_values(&[&*probe.channel])
                .set(probe.health.state(&probe.channel).gauge());
            Ok(reply)
        })
    }
}

/// The half-open probe slot a call holds until its outcome is recorded; given back if the
/// call ends without one (held back below, or dropped), so the circuit is not stuck half-open.
struct Probe {
    health: Arc<Health>,
    channel: Arc<str>,
    held: bool,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.held {
            self.health.release_probe(&self.channel);
        }
    }
}
