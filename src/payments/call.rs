//! One channel call: build and sign the request, respect the channel's limits, send it, and say what the answer means.

use super::*;

impl Payments {
    pub(super) async fn call(&self, entry: &ChannelEntry, op: Op<'_>, traffic: Traffic) -> Call {
        let prepared = prepare(entry, op);
        self.send(entry, op, prepared, traffic).await
    }

    /// Sends what [`prepare`] built for `op` and says what the channel's answer means.
    pub(super) async fn send(
        &self,
        entry: &ChannelEntry,
        op: Op<'_>,
        prepared: Result<Prepared, Call>,
        traffic: Traffic,
    ) -> Call {
        let req = match prepared {
            Err(not_built) => return not_built,
            Ok(Prepared::Local(outcome)) => return Call::Answer(outcome),
            Ok(Prepared::Send(req)) => req,
        };
        let operation = op.kind().as_str();
        let out_trade_no = op.out_trade_no();
        let skipped = |why: &str| {
            self.metrics
                .channel_requests
                .with_label_values(&[entry.name.as_str(), operation, "not_sent"])
                .inc();
            info!(
                channel = entry.name.as_str(),
                out_trade_no,
                operation,
                outcome = "not_sent",
                why,
                "channel call"
            );
        };
        if traffic == Traffic::New {
            if op.kind() != crate::channels::OpKind::Create {
                // Operations on an existing order never move: wait briefly for the quota.
                if let Some(limiter) = &entry.limiter {
                    if tokio::time::timeout(Duration::from_secs(1), limiter.until_ready())
                        .await
                        .is_err()
                    {
                        self.metrics
                            .rate_limited
                            .with_label_values(&[entry.name.as_str()])
                            .inc();
                        skipped("rate limit reached");
                        return Call::RateLimited(Duration::from_secs(1));
                    }
                }
            }
            if !self.health.admit(&entry.name) {
                skipped("circuit open");
                return Call::NotSent(format!("circuit of channel {} is open", entry.name));
            }
        }
        let started = std::time::Instant::now();
        let result = entry.client.send(req).await;
        let outcome = match result {
            Ok(resp) => match entry.adapter.parse(op, &resp) {
                Outcome::NotAccepted { code, message } => {
                    warn!(channel = entry.name.as_str(), out_trade_no, operation, %code, %message, "channel did not accept the request: check its configuration");
                    Call::NotSent(format!("not accepted: {code}: {message}"))
                }
                other => Call::Answer(other),
            },
            Err(e) if e.nothing_sent() => Call::NotSent(e.to_string()),
            Err(e) => Call::Answer(Outcome::Unknown {
                reason: e.to_string(),
            }),
        };
        // Answers are health, whatever their business result; no answer is a failure.
        let answered = matches!(&outcome, Call::Answer(o) if !matches!(o, Outcome::Unknown { .. }));
        self.health.record(&entry.name, &entry.breaker, answered);
        self.metrics
            .circuit_state
            .with_label_values(&[entry.name.as_str()])
            .set(self.health.state(&entry.name).gauge());
        let label = match &outcome {
            Call::NotSent(_) | Call::Unsupported(_) | Call::RateLimited(_) => "not_sent",
            Call::Answer(Outcome::Unknown { .. }) => "unknown",
            Call::Answer(Outcome::Declined { .. }) => "declined",
            Call::Answer(_) => "ok",
        };
        self.metrics
            .channel_requests
            .with_label_values(&[entry.name.as_str(), operation, label])
            .inc();
        self.metrics
            .channel_duration
            .with_label_values(&[entry.name.as_str(), operation])
            .observe(started.elapsed().as_secs_f64());
        info!(
            channel = entry.name.as_str(),
            out_trade_no,
            operation,
            outcome = label,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "channel call"
        );
        outcome
    }
}

/// Builds (and signs) the channel request for `op`; a request that cannot be built is a call
/// that was not sent.
pub(super) fn prepare(entry: &ChannelEntry, op: Op<'_>) -> Result<Prepared, Call> {
    entry.adapter.build(op, Utc::now()).map_err(|e| match e {
        crate::channels::BuildError::Unsupported(m) => Call::Unsupported(m),
        e => Call::NotSent(e.to_string()),
    })
}

/// Takes one call from the channel's rate limit; `Some(wait)` when it is exhausted.
pub(super) fn take_quota(entry: &ChannelEntry) -> Option<Duration> {
    use governor::clock::Clock as _;
    let limiter = entry.limiter.as_ref()?;
    match limiter.check() {
        Ok(()) => None,
        Err(not_until) => {
            Some(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
        }
    }
}
