//! Prometheus metrics (text format on the admin listener's `/metrics`).
//!
//! Every label value comes from a bounded set: channel and rule names from routes.yaml,
//! operation names and outcomes from enums, HTTP status codes. Order numbers and error texts
//! never become labels. The `process_*` families (CPU, memory, file descriptors, start time)
//! come from the prometheus crate's process collector, on Linux.

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets for a sidecar on loopback: from 0.25 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Latency buckets for ledger writes (an fsync'd commit): from 50 µs to 2.5 s.
const LEDGER_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];

/// Reads a channel's circuit for `payroute_channel_circuit_state` (implemented by
/// `health::Health`; metrics do not depend on the breaker).
pub trait CircuitGauge {
    /// 0 closed, 1 half-open, 2 open.
    fn circuit_gauge(&self, channel: &str) -> i64;
}

/// The process's metric families.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `payroute_config_reloads_total{result="ok"|"error"}`.
    pub config_reloads: IntCounterVec,
    /// `payroute_config_last_reload_successful`: 0 while routes.yaml on disk is rejected.
    pub config_last_reload_ok: IntGauge,
    /// `payroute_config_info{hash}` = 1 for the active rules.
    pub config_info: IntGaugeVec,
    /// `payroute_channel_requests_total{channel,operation,outcome}`.
    pub channel_requests: IntCounterVec,
    /// `payroute_channel_request_duration_seconds{channel,operation}`.
    pub channel_duration: HistogramVec,
    /// `payroute_channel_circuit_state{channel}`: 0 closed, 1 half-open, 2 open.
    pub circuit_state: IntGaugeVec,
    /// `payroute_rate_limited_total{channel}`: calls held back by a channel's rate limit.
    pub rate_limited: IntCounterVec,
    /// `payroute_rate_limit_shared{channel}`: 1 while the channel's limit is enforced across
    /// replicas through Redis, 0 while this replica enforces its share.
    pub rate_limit_shared: IntGaugeVec,
    /// `payroute_rate_limit_fallbacks_total{channel}`: rate-limit decisions this replica made
    /// with its share because Redis did not answer.
    pub rate_limit_fallbacks: IntCounterVec,
    /// `payroute_failovers_total{from}`: payments moved on from a channel to the next candidate.
    pub failovers: IntCounterVec,
    /// `payroute_duplicate_payments_total{channel}`: payments an abandoned attempt's channel reported.
    pub duplicate_payments: IntCounterVec,
    /// `payroute_late_payments_total{channel,kind}`: payments a channel took for an order payroute
    /// had closed or failed there (`after_close`) or abandoned there (`duplicate`).
    pub late_payments: IntCounterVec,
    /// `payroute_late_payment_refunds_total{channel,result}`: automatic refunds of late payments
    /// settled (`succeeded`, `failed`).
    pub late_payment_refunds: IntCounterVec,
    /// `payroute_splits_total{channel,result}`: splits settled (`succeeded`, `failed`).
    pub splits: IntCounterVec,
    /// `payroute_split_amount_fen_total{channel}`: fen that reached receivers.
    pub split_amount: IntCounterVec,
    /// `payroute_split_returns_total{channel,result}`: split returns settled.
    pub split_returns: IntCounterVec,
    /// `payroute_reconciliation_discrepancies{channel,kind}`: discrepancies of the last completed
    /// reconciliation of each channel (payments and refunds together).
    pub reconciliation_discrepancies: IntGaugeVec,
    /// `payroute_reconciliation_last_success_timestamp_seconds{channel}`.
    pub reconciliation_last_success: IntGaugeVec,
    /// `payroute_reconciliation_failures_total{channel}`: scheduled reconciliations that gave up.
    pub reconciliation_failures: IntCounterVec,
    /// `payroute_route_decisions_total{rule,channel}`: new payments routed (channel `none`: no candidate).
    pub route_decisions: IntCounterVec,
    /// `payroute_http_requests_total{operation,status}`: unified API requests.
    pub http_requests: IntCounterVec,
    /// `payroute_http_request_duration_seconds{operation}`.
    pub http_duration: HistogramVec,
    /// `payroute_paid_amount_fen_total{channel}`: amounts of payments that succeeded.
    pub paid_amount: IntCounterVec,
    /// `payroute_estimated_fee_fen_total{channel}`: the channel fee those payments cost, by the
    /// fee schedule in routes.yaml.
    pub estimated_fee: IntCounterVec,
    /// `payroute_notifications_total{channel,result}`.
    pub notifications: IntCounterVec,
    /// `payroute_ledger_write_duration_seconds{operation}`.
    pub ledger_write: HistogramVec,
    /// `payroute_ledger_commits_total`: group commits (one fsync each).
    pub ledger_commits: IntCounter,
    /// `payroute_event_deliveries_total{type,result}`: attempts to deliver app events
    /// (`delivered`, `retry`: failed and scheduled again, `failed`: given up).
    pub event_deliveries: IntCounterVec,
    /// `payroute_events_pending`: events waiting for delivery (new or retrying).
    pub events_pending: IntGauge,
    /// `payroute_events_failed`: events whose delivery was given up, waiting for ops.
    pub events_failed: IntGauge,
    /// `payroute_events_oldest_pending_age_seconds`: age of the oldest event not delivered yet.
    pub events_oldest_age: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, c.clone());
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, g.clone());
    g
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    register(registry, g.clone());
    g
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    register(registry, h.clone());
    h
}

fn register(registry: &Registry, c: impl Collector + 'static) {
    registry.register(Box::new(c)).expect("unique metric names");
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let r = Registry::new();
        let build_info = gauge(
            &r,
            "payroute_build_info",
            "The running payroute build (value 1).",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let config_last_reload_ok = IntGauge::new(
            "payroute_config_last_reload_successful",
            "1 when the last read of routes.yaml was applied or unchanged, 0 while it is rejected.",
        )
        .expect("valid metric");
        register(&r, config_last_reload_ok.clone());
        config_last_reload_ok.set(1);
        let m = Metrics {
            config_reloads: counter(
                &r,
                "payroute_config_reloads_total",
                "Reloads of routes.yaml by result (an error leaves the old rules serving).",
                &["result"],
            ),
            config_last_reload_ok,
            config_info: gauge(
                &r,
                "payroute_config_info",
                "The active routes.yaml, by content hash (value 1).",
                &["hash"],
            ),
            channel_requests: counter(
                &r,
                "payroute_channel_requests_total",
                "Calls to payment channels by channel, operation and outcome \
                 (ok, declined, unknown, not_sent).",
                &["channel", "operation", "outcome"],
            ),
            channel_duration: histogram(
                &r,
                "payroute_channel_request_duration_seconds",
                "Latency of calls to payment channels, signing and verification included.",
                LATENCY_BUCKETS,
                &["channel", "operation"],
            ),
            circuit_state: gauge(
                &r,
                "payroute_channel_circuit_state",
                "Circuit breaker state per channel: 0 closed, 1 half-open, 2 open.",
                &["channel"],
            ),
            rate_limited: counter(
                &r,
                "payroute_rate_limited_total",
                "Calls held back by a channel's rate limit.",
                &["channel"],
            ),
            rate_limit_shared: gauge(
                &r,
                "payroute_rate_limit_shared",
                "1 while a channel's rate limit is enforced across replicas through Redis, 0 while \
                 this replica enforces its share of it (no --redis-url, or Redis does not answer).",
                &["channel"],
            ),
            rate_limit_fallbacks: counter(
                &r,
                "payroute_rate_limit_fallbacks_total",
                "Rate-limit decisions made with this replica's share because Redis did not answer.",
                &["channel"],
            ),
            failovers: counter(
                &r,
                "payroute_failovers_total",
                "Payments moved on from a channel to the next candidate.",
                &["from"],
            ),
            duplicate_payments: counter(
                &r,
                "payroute_duplicate_payments_total",
                "Payments reported by the channel of an abandoned attempt.",
                &["channel"],
            ),
            late_payments: counter(
                &r,
                "payroute_late_payments_total",
                "Payments a channel took for an order that payroute had closed, failed or \
                 abandoned there (kind after_close or duplicate); each is refunded automatically.",
                &["channel", "kind"],
            ),
            late_payment_refunds: counter(
                &r,
                "payroute_late_payment_refunds_total",
                "Automatic refunds of late payments, by result (succeeded, failed).",
                &["channel", "result"],
            ),
            splits: counter(
                &r,
                "payroute_splits_total",
                "Splits settled at the channel, by result (succeeded: every share final; failed: \
                 nothing shared).",
                &["channel", "result"],
            ),
            split_amount: counter(
                &r,
                "payroute_split_amount_fen_total",
                "Fen that reached split receivers.",
                &["channel"],
            ),
            split_returns: counter(
                &r,
                "payroute_split_returns_total",
                "Split returns settled at the channel, by result (succeeded, failed).",
                &["channel", "result"],
            ),
            reconciliation_discrepancies: gauge(
                &r,
                "payroute_reconciliation_discrepancies",
                "Discrepancies the last completed reconciliation of a channel found, by kind \
                 (missing_in_ledger, missing_at_channel, amount_mismatch, status_mismatch).",
                &["channel", "kind"],
            ),
            reconciliation_last_success: gauge(
                &r,
                "payroute_reconciliation_last_success_timestamp_seconds",
                "When the last reconciliation of a channel completed (Unix seconds).",
                &["channel"],
            ),
            reconciliation_failures: counter(
                &r,
                "payroute_reconciliation_failures_total",
                "Scheduled reconciliations that failed or gave up waiting for the statement.",
                &["channel"],
            ),
            route_decisions: counter(
                &r,
                "payroute_route_decisions_total",
                "Routing decisions for new payments by rule and first-ranked channel \
                 (channel \"none\": no channel could take it).",
                &["rule", "channel"],
            ),
            http_requests: counter(
                &r,
                "payroute_http_requests_total",
                "Unified API requests by operation and HTTP status.",
                &["operation", "status"],
            ),
            http_duration: histogram(
                &r,
                "payroute_http_request_duration_seconds",
                "Latency of unified API requests, channel calls included.",
                LATENCY_BUCKETS,
                &["operation"],
            ),
            paid_amount: counter(
                &r,
                "payroute_paid_amount_fen_total",
                "Amount of the payments that succeeded, in fen, by channel.",
                &["channel"],
            ),
            estimated_fee: counter(
                &r,
                "payroute_estimated_fee_fen_total",
                "Channel fees of the payments that succeeded, in fen, estimated from the fee \
                 schedule in routes.yaml.",
                &["channel"],
            ),
            notifications: counter(
                &r,
                "payroute_notifications_total",
                "Channel notifications received, by channel and result \
                 (accepted, ignored, rejected, unknown_order, error).",
                &["channel", "result"],
            ),
            ledger_write: histogram(
                &r,
                "payroute_ledger_write_duration_seconds",
                "Latency of durable ledger writes (commit and fsync included).",
                LEDGER_BUCKETS,
                &["operation"],
            ),
            ledger_commits: {
                let c = IntCounter::new(
                    "payroute_ledger_commits_total",
                    "Durable ledger commits, one fsync each; writes per commit is the group-commit \
                     batch size.",
                )
                .expect("valid metric");
                register(&r, c.clone());
                c
            },
            event_deliveries: counter(
                &r,
                "payroute_event_deliveries_total",
                "Attempts to deliver app events by event type and result (delivered; retry: \
                 failed, scheduled again; failed: retries exhausted).",
                &["type", "result"],
            ),
            events_pending: int_gauge(
                &r,
                "payroute_events_pending",
                "App events waiting for delivery (new or retrying).",
            ),
            events_failed: int_gauge(
                &r,
                "payroute_events_failed",
                "App events whose delivery was given up; list them with GET /v1/events?delivery=failed.",
            ),
            events_oldest_age: int_gauge(
                &r,
                "payroute_events_oldest_pending_age_seconds",
                "Age of the oldest app event not delivered yet (0 when none is waiting).",
            ),
            registry: r,
        };
        for result in ["ok", "error"] {
            m.config_reloads.with_label_values(&[result]);
        }
        #[cfg(target_os = "linux")]
        register(
            &m.registry,
            prometheus::process_collector::ProcessCollector::for_self(),
        );
        m
    }

    /// Sets every configured channel's circuit gauge from its breaker as of now, and drops the
    /// series of channels no longer configured. Called before each scrape: an open circuit turns
    /// half-open when its cool-down ends, with or without a call to the channel.
    pub fn refresh_circuits<'a>(
        &self,
        health: &dyn CircuitGauge,
        channels: impl IntoIterator<Item = &'a str>,
    ) {
        let states: Vec<_> = channels
            .into_iter()
            .map(|c| (c, health.circuit_gauge(c)))
            .collect();
        self.circuit_state.reset();
        for (c, state) in states {
            self.circuit_state.with_label_values(&[c]).set(state);
        }
    }

    /// Sets `payroute_rate_limit_shared` of every channel with a rate limit, given as (channel,
    /// shared now), and drops the series of the others. Called before each scrape: Redis is
    /// found down or back in the background, with or without calls.
    pub fn refresh_rate_limits<'a>(&self, channels: impl IntoIterator<Item = (&'a str, bool)>) {
        let states: Vec<_> = channels.into_iter().collect();
        self.rate_limit_shared.reset();
        for (c, shared) in states {
            self.rate_limit_shared
                .with_label_values(&[c])
                .set(i64::from(shared));
        }
    }

    /// Exposes every channel's series from the start (at 0), so that dashboards and alerts see
    /// them before the first event.
    pub fn register_channels<'a>(&self, channels: impl IntoIterator<Item = &'a str>) {
        for c in channels {
            self.circuit_state.with_label_values(&[c]);
            self.rate_limited.with_label_values(&[c]);
            self.rate_limit_fallbacks.with_label_values(&[c]);
            self.failovers.with_label_values(&[c]);
            self.duplicate_payments.with_label_values(&[c]);
            for kind in ["after_close", "duplicate"] {
                self.late_payments.with_label_values(&[c, kind]);
            }
            for result in ["succeeded", "failed"] {
                self.late_payment_refunds.with_label_values(&[c, result]);
                self.splits.with_label_values(&[c, result]);
                self.split_returns.with_label_values(&[c, result]);
            }
            self.split_amount.with_label_values(&[c]);
            self.paid_amount.with_label_values(&[c]);
            self.estimated_fee.with_label_values(&[c]);
        }
    }

    /// Counts one delivery attempt of an app event of type `event_type`.
    pub fn event_delivery(&self, event_type: &str, result: &str) {
        self.event_deliveries
            .with_label_values(&[event_type, result])
            .inc();
    }

    /// Sets the outbox gauges: events waiting, given up, and the oldest one's age.
    pub fn record_outbox(&self, pending: u64, failed: u64, oldest_age_secs: i64) {
        self.events_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.events_failed
            .set(i64::try_from(failed).unwrap_or(i64::MAX));
        self.events_oldest_age.set(oldest_age_secs.max(0));
    }

    /// Marks `hash` as the active rules.
    pub fn set_config(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// Counts a payment that succeeded on `channel`.
    pub fn record_paid(&self, channel: &str, amount: u64, fee: u64) {
        self.paid_amount
            .with_label_values(&[channel])
            .inc_by(amount);
        self.estimated_fee.with_label_values(&[channel]).inc_by(fee);
    }

    /// Counts a settled split and the fen that reached its receivers.
    pub fn record_split(&self, channel: &str, succeeded: bool, shared: u64) {
        let result = if succeeded { "succeeded" } else { "failed" };
        self.splits.with_label_values(&[channel, result]).inc();
        self.split_amount
            .with_label_values(&[channel])
            .inc_by(shared);
    }

    /// Shows a completed reconciliation's findings.
    pub fn record_reconciliation(&self, report: &crate::reconcile::report::Report) {
        let (p, r) = (&report.payments, &report.refunds);
        for (kind, n) in [
            (
                "missing_in_ledger",
                p.missing_in_ledger + r.missing_in_ledger,
            ),
            (
                "missing_at_channel",
                p.missing_at_channel + r.missing_at_channel,
            ),
            ("amount_mismatch", p.amount_mismatch + r.amount_mismatch),
            ("status_mismatch", p.status_mismatch + r.status_mismatch),
        ] {
            self.reconciliation_discrepancies
                .with_label_values(&[&report.channel, kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let at = report.finished_at.unwrap_or_else(chrono::Utc::now);
        self.reconciliation_last_success
            .with_label_values(&[&report.channel])
            .set(at.timestamp());
    }

    /// Counts a settled split return.
    pub fn record_split_return(&self, channel: &str, succeeded: bool) {
        let result = if succeeded { "succeeded" } else { "failed" };
        self.split_returns
            .with_label_values(&[channel, result])
            .inc();
    }

    /// Counts a late payment (and a duplicate among them).
    pub fn record_late_payment(&self, channel: &str, kind: crate::order::LateKind) {
        let kind = match kind {
            crate::order::LateKind::AfterClose => "after_close",
            crate::order::LateKind::Duplicate => {
                self.duplicate_payments.with_label_values(&[channel]).inc();
                "duplicate"
            }
        };
        self.late_payments.with_label_values(&[channel, kind]).inc();
    }

    /// Counts a late payment's refund that has settled.
    pub fn record_late_refund(&self, channel: &str, status: crate::order::LateRefund) {
        let result = match status {
            crate::order::LateRefund::Succeeded => "succeeded",
            crate::order::LateRefund::Failed => "failed",
            crate::order::LateRefund::Pending | crate::order::LateRefund::Off => return,
        };
        self.late_payment_refunds
            .with_label_values(&[channel, result])
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_naming_rules() {
        let m = Metrics::new();
        m.register_channels(["alipay"]);
        m.record_paid("alipay", 10_000, 60);
        m.http_requests
            .with_label_values(&["create_payment", "201"])
            .inc();
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                name.starts_with("payroute_") || name.starts_with("process_"),
                "{name}"
            );
            match kind {
                "counter" => assert!(name.ends_with("_total"), "{name}"),
                "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                _ => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
        assert!(text.contains("payroute_paid_amount_fen_total{channel=\"alipay\"} 10000"));
        assert!(text.contains("payroute_estimated_fee_fen_total{channel=\"alipay\"} 60"));
        assert!(text.contains(&format!(
            "payroute_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("payroute_config_last_reload_successful 1"));
    }

    /// The value of the series `name` (labels included) in the exposition.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn circuit_gauge_turns_half_open_when_the_cool_down_ends_without_a_call() {
        use crate::health::{BreakerConfig, Health};
        use std::time::Duration;
        let m = Metrics::new();
        m.register_channels(["a", "b"]);
        let health = Health::default();
        let cfg = BreakerConfig {
            consecutive_failures: 1,
            open_for: Duration::from_millis(50),
            ..Default::default()
        };
        health.record("a", &cfg, false);
        m.refresh_circuits(&health, ["a", "b"]);
        let text = m.render();
        assert_eq!(
            value(&text, "payroute_channel_circuit_state{channel=\"a\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "payroute_channel_circuit_state{channel=\"b\"}"),
            Some(0.0)
        );
        std::thread::sleep(Duration::from_millis(60));
        m.refresh_circuits(&health, ["a"]);
        let text = m.render();
        assert_eq!(
            value(&text, "payroute_channel_circuit_state{channel=\"a\"}"),
            Some(1.0),
            "half-open at the next scrape, no call needed"
        );
        assert_eq!(
            value(&text, "payroute_channel_circuit_state{channel=\"b\"}"),
            None,
            "a channel no longer configured loses its series"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exposed() {
        let text = Metrics::new().render();
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
        ] {
            let v = value(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
            assert!(v >= 0.0, "{name} {v}");
        }
        assert!(value(&text, "process_resident_memory_bytes").unwrap() > 0.0);
        assert!(value(&text, "process_start_time_seconds").unwrap() > 1.6e9);
    }
}
