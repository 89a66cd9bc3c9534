//! Prometheus metrics (text format on the admin listener's `/metrics`).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process's metric families.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `payroute_config_reloads_total{result="ok"|"error"}`.
    pub config_reloads: IntCounterVec,
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
    /// `payroute_failovers_total{from}`: payments moved on from a channel to the next candidate.
    pub failovers: IntCounterVec,
    /// `payroute_duplicate_payments_total{channel}`: payments an abandoned attempt's channel reported.
    pub duplicate_payments: IntCounterVec,
    /// `payroute_route_decisions_total{rule,channel}`: new payments routed (channel `none`: no candidate).
    pub route_decisions: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "payroute_config_reloads_total",
                "Reloads of routes.yaml by result (an error leaves the old rules serving).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let config_info = IntGaugeVec::new(
            Opts::new(
                "payroute_config_info",
                "The active routes.yaml, by content hash.",
            ),
            &["hash"],
        )
        .expect("valid metric");
        let channel_requests = IntCounterVec::new(
            Opts::new(
                "payroute_channel_requests_total",
                "Calls to payment channels by channel, operation and outcome.",
            ),
            &["channel", "operation", "outcome"],
        )
        .expect("valid metric");
        let channel_duration = HistogramVec::new(
            HistogramOpts::new(
                "payroute_channel_request_duration_seconds",
                "Latency of calls to payment channels.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["channel", "operation"],
        )
        .expect("valid metric");
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "payroute_channel_circuit_state",
                "Circuit breaker state per channel: 0 closed, 1 half-open, 2 open.",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "payroute_rate_limited_total",
                "Calls held back by a channel's rate limit.",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let failovers = IntCounterVec::new(
            Opts::new(
                "payroute_failovers_total",
                "Payments moved on from a channel to the next candidate.",
            ),
            &["from"],
        )
        .expect("valid metric");
        let duplicate_payments = IntCounterVec::new(
            Opts::new(
                "payroute_duplicate_payments_total",
                "Payments reported by the channel of an abandoned attempt.",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let route_decisions = IntCounterVec::new(
            Opts::new(
                "payroute_route_decisions_total",
                "Routing decisions for new payments by rule and first-ranked channel.",
            ),
            &["rule", "channel"],
        )
        .expect("valid metric");
        for c in [
            Box::new(route_decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(circuit_state.clone()),
            Box::new(rate_limited.clone()),
            Box::new(failovers.clone()),
            Box::new(duplicate_payments.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_info.clone()),
            Box::new(channel_requests.clone()),
            Box::new(channel_duration.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        config_reloads.with_label_values(&["ok"]);
        config_reloads.with_label_values(&["error"]);
        Metrics {
            registry,
            config_reloads,
            config_info,
            channel_requests,
            channel_duration,
            circuit_state,
            rate_limited,
            failovers,
            duplicate_payments,
            route_decisions,
        }
    }

    /// Exposes every channel's series from the start (at 0), so that dashboards and alerts see
    /// them before the first event.
    pub fn register_channels<'a>(&self, channels: impl IntoIterator<Item = &'a str>) {
        for c in channels {
            self.circuit_state.with_label_values(&[c]);
            self.rate_limited.with_label_values(&[c]);
            self.failovers.with_label_values(&[c]);
            self.duplicate_payments.with_label_values(&[c]);
        }
    }

    /// Marks `hash` as the active rules.
    pub fn set_config(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
