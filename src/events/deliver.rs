//! The delivery loop: posts the ledger's due deliveries to the app, one event of an order at a
//! time (only the head of an order's queue is ever due: a later event waits until the earlier
//! one is delivered, and behind a given-up one until ops redeliver it), several orders at
//! once, retrying with exponential backoff and jitter. A round holds at most `concurrency`
//! deliveries in memory, and the payment path only ever appends to the outbox, so a slow or
//! dead endpoint slows nothing else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::signing::SecretsFile;
use crate::channels::client::ChannelClient;
use crate::ledger::events::{Delivery, DeliveryUpdate, EventStore};
use crate::metrics::Metrics;

/// When deliveries are retried and when they are given up.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each one.
    pub first: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// How long after the event was written retries stop (the event is then `failed`).
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(5),
            max: Duration::from_secs(60 * 60),
            give_up_after: Duration::from_secs(26 * 60 * 60),
        }
    }
}

impl RetryPolicy {
    /// When to try again after `attempts` failed attempts, or `None` to give up. The wait is
    /// drawn between half and all of the exponential step (full jitter would retry a
    /// recovering endpoint in a burst).
    pub fn next(
        &self,
        attempts: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        unit: f64,
    ) -> Option<DateTime<Utc>> {
        let exp = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        let step = self.first.saturating_mul(exp).min(self.max);
        let wait = step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        let next = now.checked_add_signed(chrono::Duration::from_std(wait).ok()?)?;
        let deadline = chrono::Duration::from_std(self.give_up_after)
            .ok()
            .and_then(|d| created_at.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        (next <= deadline).then_some(next)
    }
}

/// Where and how events are delivered.
#[derive(Debug)]
pub struct Target {
    pub url: http::Uri,
    pub secrets: SecretsFile,
    pub client: ChannelClient,
    pub policy: RetryPolicy,
    /// Orders delivered to at once.
    pub concurrency: usize,
    /// How often an idle loop looks for new events.
    pub poll: Duration,
}

/// Runs the delivery loop until `shutdown` turns true.
pub async fn run(
    store: Arc<dyn EventStore>,
    target: Arc<Target>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stats_at = tokio::time::Instant::now();
    loop {
        // Shutdown abandons the deliveries in flight: they stay pending and are sent again
        // after the restart (at least once), so a hung endpoint never holds up the drain.
        // Another replica sharing the ledger delivers: look again in a while (it may be gone).
        match store.delivers().await {
            Ok(true) => {}
            Ok(false) => {
                tokio::select! {
                    () = tokio::time::sleep(IDLE_MAX) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "events: cannot tell which replica delivers");
                tokio::select! {
                    () = tokio::time::sleep(IDLE_MAX) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                continue;
            }
        }
        let result = tokio::select! {
            r = round(&*store, &target, &metrics) => r,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (sent, wait) = match result {
            Ok(r) => (r.sent, r.wait(target.poll)),
            Err(e) => {
                tracing::error!(error = %e, "events: cannot read the outbox");
                (0, IDLE_MAX)
            }
        };
        if stats_at.elapsed() >= Duration::from_secs(1) {
            stats_at = tokio::time::Instant::now();
            if let Ok(s) = store.outbox_stats().await {
                let age = s
                    .oldest_pending
                    .map_or(0, |t| (Utc::now() - t).num_seconds());
                metrics.record_outbox(s.pending, s.failed, age);
            }
        }
        if sent == 0 {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        } else if *shutdown.borrow() {
            return;
        }
    }
}

/// The longest an idle loop sleeps while deliveries wait for their retry time.
const IDLE_MAX: Duration = Duration::from_secs(1);

/// What one round did.
#[derive(Debug, Default)]
pub struct Round {
    /// Deliveries attempted.
    pub sent: usize,
    /// When the next retry among the queues' heads is due.
    pub next_due: Option<DateTime<Utc>>,
}

impl Round {
    /// How long to sleep when nothing was sent: until the next retry is due, at least `poll`
    /// (new events are looked for that often) and at most a second (a large backlog waiting
    /// for its retries is not read again and again).
    pub fn wait(&self, poll: Duration) -> Duration {
        match self.next_due {
            None => poll,
            Some(t) => (t - Utc::now())
                .to_std()
                .unwrap_or_default()
                .clamp(poll, IDLE_MAX.max(poll)),
        }
    }
}

/// One round: the due deliveries (each the head of its order's queue, so no two for the same
/// order), sent at once; at most `concurrency` of them, whatever the backlog.
pub async fn round(
    store: &dyn EventStore,
    target: &Target,
    metrics: &Metrics,
) -> Result<Round, crate::ledger::LedgerError> {
    let (due, next_due) = store.due(Utc::now(), target.concurrency.max(1)).await?;
    let n = due.len();
    let sends = due
        .into_iter()
        .map(|d| deliver_one(store, target, metrics, d));
    for r in futures_util::future::join_all(sends).await {
        r?;
    }
    Ok(Round { sent: n, next_due })
}

/// Sends one event and records the result.
async fn deliver_one(
    store: &dyn EventStore,
    target: &Target,
    metrics: &Metrics,
    d: Delivery,
) -> Result<(), crate::ledger::LedgerError> {
    let Some(event) = store.event(d.seq).await? else {
        // The outbox names an event the feed does not have: nothing can be sent.
        store
            .record_delivery(
                d.seq,
                DeliveryUpdate::Failed {
                    attempts: d.attempts,
                    error: "event missing".into(),
                },
            )
            .await?;
        return Ok(());
    };
    let timestamp = Utc::now().timestamp();
    let body = Bytes::from(event.body.into_bytes());
    let signature = target.secrets.current().sign(&event.id, timestamp, &body);
    let request = http::Request::post(target.url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("payroute/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", event.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            metrics.event_delivery(event.event_type.as_str(), "failed");
            return give_up(store, &d, format!("cannot build the request: {e}")).await;
        }
    };
    let error = match target.client.send(request).await {
        Ok(resp) if (200..300).contains(&resp.status) => {
            store
                .record_delivery(
                    d.seq,
                    DeliveryUpdate::Delivered {
                        attempts: d.attempts,
                    },
                )
                .await?;
            metrics.event_delivery(event.event_type.as_str(), "delivered");
            return Ok(());
        }
        Ok(resp) => format!("the endpoint answered HTTP {}", resp.status),
        Err(e) => e.to_string(),
    };
    let now = Utc::now();
    match target
        .policy
        .next(d.attempts + 1, d.retry_from, now, jitter())
    {
        Some(next_at) => {
            metrics.event_delivery(event.event_type.as_str(), "retry");
            tracing::warn!(event = %event.id, out_trade_no = %d.out_trade_no, attempts = d.attempts + 1, %error, "events: delivery failed, will retry");
            store
                .record_delivery(
                    d.seq,
                    DeliveryUpdate::Retry {
                        attempts: d.attempts,
                        next_at,
                        error,
                    },
                )
                .await?;
            Ok(())
        }
        None => {
            metrics.event_delivery(event.event_type.as_str(), "failed");
            give_up(store, &d, error).await
        }
    }
}

async fn give_up(
    store: &dyn EventStore,
    d: &Delivery,
    error: String,
) -> Result<(), crate::ledger::LedgerError> {
    tracing::error!(seq = d.seq, out_trade_no = %d.out_trade_no, %error, "events: delivery given up; list with GET /v1/events?delivery=failed, redeliver with POST /v1/events/{{id}}/redeliver");
    store
        .record_delivery(
            d.seq,
            DeliveryUpdate::Failed {
                attempts: d.attempts,
                error,
            },
        )
        .await
        .map(|_| ())
}

/// A uniform draw in [0, 1].
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 1.0;
    }
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_stop_after_the_window() {
        let p = RetryPolicy::default();
        let t0 = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let secs = |attempts, unit| (p.next(attempts, t0, t0, unit).unwrap() - t0).num_seconds();
        assert_eq!((secs(1, 1.0), secs(1, 0.0)), (5, 2));
        assert_eq!(secs(2, 1.0), 10);
        assert_eq!(secs(5, 1.0), 80);
        // Capped at an hour between attempts.
        assert_eq!(secs(20, 1.0), 3600);
        assert_eq!(secs(20, 0.0), 1800);
        // Attempts go on for at least 24 hours after the event, then stop.
        let day = t0 + chrono::Duration::hours(24);
        assert!(p.next(40, t0, day, 1.0).is_some());
        let late = t0 + chrono::Duration::hours(26);
        assert!(p.next(41, t0, late, 0.0).is_none());
    }
}
