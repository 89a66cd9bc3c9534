//! Metrics and the log line of every channel call:
//! `payroute_channel_requests_total{channel,operation,outcome}` (ok / declined / unknown /
//! not_sent), the duration of calls that were sent, and one `channel call` info line.

use std::sync::Arc;

use tracing::info;

use super::concern::{Concern, Inner};
use super::{Call, CallFuture, Exchange, Reach, Reply};
use crate::channels::{Op, Outcome};
use crate::metrics::Metrics;

/// The `outcome` label of a call.
pub(super) fn outcome_label(call: &Call) -> &'static str {
    match call {
        Call::NotSent(_) | Call::Unsupported(_) | Call::RateLimited(_) => "not_sent",
        Call::Answer(Outcome::Unknown { .. }) => "unknown",
        Call::Answer(Outcome::Declined { .. }) => "declined",
        Call::Answer(_) => "ok",
    }
}

/// Counts and logs each call once, whether it was sent or held back.
#[derive(Clone)]
pub(super) struct Observe {
    channel: Arc<str>,
    metrics: Arc<Metrics>,
}

impl Observe {
    pub(super) fn new(channel: &Arc<str>, metrics: &Arc<Metrics>) -> Self {
        Observe {
            channel: channel.clone(),
            metrics: metrics.clone(),
        }
    }
}

impl Concern for Observe {
    fn around<'a, S: Inner<'a>>(&self, ex: Exchange<'a>, inner: &mut S) -> CallFuture<'a> {
        let mut watch = Watch {
            channel: self.channel.clone(),
            metrics: self.metrics.clone(),
            operation: ex.op.kind().as_str(),
            op: ex.op,
            started: tokio::time::Instant::now(),
            done: false,
        };
        let inner = inner.call(ex);
        Box::pin(async move {
            let reply = inner.await?;
            watch.finish(&reply);
            Ok(reply)
        })
    }
}

/// One call being observed; a call dropped before it finished (its deadline passed, or its
/// caller went away) is counted as unknown: it may have been sent.
struct Watch<'a> {
    channel: Arc<str>,
    metrics: Arc<Metrics>,
    operation: &'static str,
    op: Op<'a>,
    started: tokio::time::Instant,
    done: bool,
}

impl Watch<'_> {
    fn finish(&mut self, reply: &Reply) {
        self.done = true;
        let label = outcome_label(&reply.call);
        self.count(label);
        let (channel, out_trade_no, operation) =
            (&*self.channel, self.op.out_trade_no(), self.operation);
        match reply.reach {
            Reach::HeldBack(why) => {
                info!(
                    channel,
                    out_trade_no,
                    operation,
                    outcome = label,
                    why,
                    "channel call"
                );
            }
            Reach::Sent(elapsed) => {
                self.metrics
                    .channel_duration
                    .with_label_values(&[channel, operation])
                    .observe(elapsed.as_secs_f64());
                info!(
                    channel,
                    out_trade_no,
                    operation,
                    outcome = label,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "channel call"
                );
            }
        }
    }

    fn count(&self, label: &str) {
        self.metrics
            .channel_requests
            .with_label_values(&[&*self.channel, self.operation, label])
            .inc();
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.count("unknown");
            info!(
                channel = &*self.channel,
                out_trade_no = self.op.out_trade_no(),
                operation = self.operation,
                outcome = "unknown",
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                why = "abandoned before an answer",
                "channel call"
            );
        }
    }
}
