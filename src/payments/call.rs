//! One channel call, through the stack in `crate::call` (limits, breaker, metrics,
//! transport), and the routing-time quota check of a new payment.

use super::*;

impl Payments {
    /// Builds the request for `op` and sends it down the call stack. The channel is named on
    /// the request's span first (when there is one): the channel a request talks to is its
    /// order's, and the request's lines, errors included, then say so.
    pub(super) async fn call(&self, entry: &ChannelEntry, op: Op<'_>, traffic: Traffic) -> Call {
        crate::logging::record_channel(&entry.name);
        self.caller.call(entry, op, traffic).await
    }

    /// Sends what [`prepare`] built for `op` and says what the channel's answer means.
    pub(super) async fn send(
        &self,
        entry: &ChannelEntry,
        op: Op<'_>,
        prepared: Result<Prepared, Call>,
        traffic: Traffic,
    ) -> Call {
        crate::logging::record_channel(&entry.name);
        self.caller.send(entry, op, prepared, traffic).await
    }
}

pub(super) use crate::call::prepare;

/// Takes one call from the channel's rate limit; `Some(wait)` when it is exhausted.
pub(super) async fn take_quota(entry: &ChannelEntry) -> Option<Duration> {
    entry.limiter.as_ref()?.check().await.err()
}
