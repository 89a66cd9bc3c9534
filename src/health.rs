//! Channel health: a circuit breaker per channel, fed by call outcomes, read by the router.
//!
//! Closed → (N consecutive failures, or a failure ratio over a window) → Open for a cool-down →
//! HalfOpen: one probe at a time → Closed after enough successful probes, Open again on a failure.
//! Client errors and business declines are answers, not failures.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

// Tokio's clock (the system clock in production) so that tests can run on paused time.
use tokio::time::Instant;

pub use crate::config::BreakerConfig;
use crate::routing::HealthView;

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// 0 closed, 1 half-open, 2 open (the `payroute_channel_circuit_state` gauge).
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
}

/// Why [`Health::admission`] let a call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Closed,
    /// The circuit is half-open and this call is its one probe.
    Probe,
}

/// Calls counted in one slice of the failure-ratio window.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: Instant,
    calls: u64,
    failures: u64,
}

/// Slots per window: the window's edge is exact to 1/32 of its length.
const SLOTS: u32 = 32;

#[derive(Debug)]
struct Breaker {
    state: State,
    open_for: Duration,
    consecutive: u32,
    /// Calls in the ratio window, in time slots (a fixed number per window, whatever the rate).
    recent: VecDeque<Slot>,
    /// Sums over `recent`.
    calls: u64,
    failures: u64,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    probe_successes: u32,
}

impl Breaker {
    fn new() -> Self {
        Breaker {
            state: State::Closed,
            open_for: Duration::ZERO,
            consecutive: 0,
            recent: VecDeque::new(),
            calls: 0,
            failures: 0,
            opened_at: None,
            probe_in_flight: false,
            probe_successes: 0,
        }
    }

    fn open(&mut self, now: Instant, open_for: Duration) {
        self.state = State::Open;
        self.open_for = open_for;
        self.opened_at = Some(now);
        self.probe_in_flight = false;
        self.probe_successes = 0;
        self.recent.clear();
        (self.calls, self.failures) = (0, 0);
        self.consecutive = 0;
    }

    /// Counts a call in the ratio window and forgets the slots that left it (constant time
    /// per call, whatever the request rate).
    fn count(&mut self, now: Instant, window: Duration, ok: bool) {
        let slot = window / SLOTS;
        match self.recent.back_mut() {
            Some(s) if now.duration_since(s.start) < slot => {
                s.calls += 1;
                s.failures += u64::from(!ok);
            }
            _ => self.recent.push_back(Slot {
                start: now,
                calls: 1,
                failures: u64::from(!ok),
            }),
        }
        (self.calls, self.failures) = (self.calls + 1, self.failures + u64::from(!ok));
        while let Some(old) = self
            .recent
            .front()
            .copied()
            .filter(|s| now.duration_since(s.start) > window)
        {
            self.recent.pop_front();
            self.calls -= old.calls;
            self.failures -= old.failures;
        }
    }

    /// Moves Open → HalfOpen once the cool-down is over.
    fn refresh(&mut self, now: Instant) {
        if self.state == State::Open
            && self
                .opened_at
                .is_some_and(|t| now.duration_since(t) >= self.open_for)
        {
            self.state = State::HalfOpen;
            self.probe_in_flight = false;
        }
    }
}

/// Until when a rate limit (per second, burst) has no quota left.
type Spent = (Instant, (u32, u32));

/// Every channel's breaker, and when its rate limit was last found spent.
#[derive(Debug, Default)]
pub struct Health {
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Until when each channel's limiter has no quota left (as last found by a new payment),
    /// and which limit that was (a reload that changes it brings a fresh limiter).
    limited_until: Mutex<HashMap<String, Spent>>,
}

impl Health {
    /// A new payment found the channel's rate limit spent for `wait`: routing (and `explain`)
    /// skips it until then, without spending quota to find out.
    pub fn note_rate_limited(&self, channel: &str, limit: (u32, u32), wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = self.limited_until.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(channel.to_string(), (until, limit));
    }

    /// How long the channel's rate limit `limit` (per second, burst) stays spent, as last
    /// found (`None`: not known spent, or the limit has changed since).
    pub fn rate_limited_for(&self, channel: &str, limit: (u32, u32)) -> Option<Duration> {
        let map = self.limited_until.lock().unwrap_or_else(|p| p.into_inner());
        let (until, spent) = map.get(channel)?;
        if *spent != limit {
            return None;
        }
        let left = until.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// The channel's state now.
    pub fn state(&self, channel: &str) -> State {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(channel.to_string()).or_insert_with(Breaker::new);
        b.refresh(Instant::now());
        b.state
    }

    /// Called before a call: in half-open state only one probe goes at a time.
    /// Returns false when the call must not be made.
    pub fn admit(&self, channel: &str) -> bool {
        self.admission(channel).is_some()
    }

    /// Like [`Health::admit`], saying whether the call is the half-open probe (`None`: refused).
    pub fn admission(&self, channel: &str) -> Option<Admission> {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(channel.to_string()).or_insert_with(Breaker::new);
        b.refresh(Instant::now());
        match b.state {
            State::Closed => Some(Admission::Closed),
            State::Open => None,
            State::HalfOpen if b.probe_in_flight => None,
            State::HalfOpen => {
                b.probe_in_flight = true;
                Some(Admission::Probe)
            }
        }
    }

    /// Gives back the probe slot of an admitted probe that ended without an outcome to record
    /// (held back before it was sent, or abandoned): the next call may probe.
    pub fn release_probe(&self, channel: &str) {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(channel) {
            if b.state == State::HalfOpen {
                b.probe_in_flight = false;
            }
        }
    }

    /// Records a call's outcome: `ok` = the channel answered (whatever the business result).
    pub fn record(&self, channel: &str, cfg: &BreakerConfig, ok: bool) {
        let now = Instant::now();
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(channel.to_string()).or_insert_with(Breaker::new);
        b.refresh(now);
        match b.state {
            State::HalfOpen => {
                b.probe_in_flight = false;
                if ok {
                    b.probe_successes += 1;
                    if b.probe_successes >= cfg.probes_to_close {
                        *b = Breaker::new();
                        tracing::info!(channel, "circuit closed");
                    }
                } else {
                    b.open(now, cfg.open_for);
                    tracing::warn!(channel, "circuit re-opened after a failed probe");
                }
            }
            State::Open => {}
            State::Closed => {
                b.consecutive = if ok { 0 } else { b.consecutive + 1 };
                b.count(now, cfg.window, ok);
                let (failed, total) = (b.failures, b.calls);
                let ratio_trips = total >= u64::from(cfg.min_calls)
                    && failed * 100 >= total * u64::from(cfg.failure_ratio_percent);
                if b.consecutive >= cfg.consecutive_failures || ratio_trips {
                    b.open(now, cfg.open_for);
                    tracing::warn!(channel, "circuit opened");
                }
            }
        }
    }
}

impl Health {
    /// How long until an open circuit lets a probe through (`None` when it is not open).
    pub fn reopens_in(&self, channel: &str) -> Option<Duration> {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.get_mut(channel)?;
        let now = Instant::now();
        b.refresh(now);
        match (b.state, b.opened_at) {
            (State::Open, Some(at)) => Some(b.open_for.saturating_sub(now.duration_since(at))),
            (State::HalfOpen, _) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl crate::metrics::CircuitGauge for Health {
    fn circuit_gauge(&self, channel: &str) -> i64 {
        self.state(channel).gauge()
    }
}

impl HealthView for Health {
    fn circuit_open(&self, channel: &str) -> bool {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(channel.to_string()).or_insert_with(Breaker::new);
        b.refresh(Instant::now());
        b.state == State::Open || (b.state == State::HalfOpen && b.probe_in_flight)
    }
}

/// What routing sees of the channels' health at one snapshot: open circuits, and rate limits
/// as the last payment found them spent (while that limit is still the configured one).
#[derive(Clone, Copy, Debug)]
pub struct RoutingView<'a> {
    pub health: &'a Health,
    pub snapshot: &'a crate::config::Snapshot,
}

impl RoutingView<'_> {
    /// How long `channel`'s rate limit stays spent (`None`: not known spent).
    pub fn rate_limited_for(&self, channel: &str) -> Option<Duration> {
        let limit = self.snapshot.channel(channel)?.rate_limit?;
        self.health.rate_limited_for(channel, limit)
    }
}

impl HealthView for RoutingView<'_> {
    fn circuit_open(&self, channel: &str) -> bool {
        self.health.circuit_open(channel)
    }

    fn rate_limited(&self, channel: &str) -> bool {
        self.rate_limited_for(channel).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            open_for: Duration::from_millis(50),
            min_calls: 4,
            failure_ratio_percent: 75,
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_then_closes() {
        let h = Health::default();
        let cfg = fast();
        for _ in 0..2 {
            h.record("c", &cfg, false);
        }
        assert_eq!(h.state("c"), State::Closed);
        h.record("c", &cfg, true); // a success resets the run
        for _ in 0..3 {
            h.record("c", &cfg, false);
        }
        assert_eq!(h.state("c"), State::Open);
        assert!(h.circuit_open("c") && !h.admit("c"));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(h.state("c"), State::HalfOpen);
        assert!(h.admit("c"), "one probe");
        assert!(!h.admit("c"), "only one probe at a time");
        assert!(h.circuit_open("c"));
        h.record("c", &cfg, false);
        assert_eq!(h.state("c"), State::Open, "a failed probe re-opens");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(h.admit("c"));
        h.record("c", &cfg, true);
        assert_eq!(h.state("c"), State::Closed);
        assert!(!h.circuit_open("c"));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failure_ratio() {
        let h = Health::default();
        let cfg = BreakerConfig {
            consecutive_failures: 100,
            ..fast()
        };
        for ok in [false, true, false, false] {
            h.record("c", &cfg, ok);
        }
        assert_eq!(h.state("c"), State::Open, "3 of 4 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_that_left_the_window_no_longer_count() {
        let h = Health::default();
        let cfg = BreakerConfig {
            consecutive_failures: 100,
            window: Duration::from_millis(64),
            ..fast()
        };
        for _ in 0..3 {
            h.record("c", &cfg, false); // 3 of 3 failed, under min_calls
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Had they counted, this call would make 3 failures of 4 (75%) and open the circuit.
        h.record("c", &cfg, true);
        assert_eq!(h.state("c"), State::Closed);
        for _ in 0..2 {
            h.record("c", &cfg, false);
        }
        assert_eq!(h.state("c"), State::Closed, "2 of 3, under min_calls");
        h.record("c", &cfg, false);
        assert_eq!(h.state("c"), State::Open, "3 of 4 failed within the window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_rate_limit_is_seen_by_routing_until_it_refills() {
        let h = Health::default();
        let limit = (1, 1);
        h.note_rate_limited("ch", limit, Duration::from_millis(800));
        assert_eq!(
            h.rate_limited_for("ch", limit),
            Some(Duration::from_millis(800))
        );
        assert_eq!(h.rate_limited_for("other", limit), None);
        assert_eq!(
            h.rate_limited_for("ch", (1, 5)),
            None,
            "a changed limit is a new budget"
        );
        tokio::time::advance(Duration::from_millis(799)).await;
        assert!(h.rate_limited_for("ch", limit).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(h.rate_limited_for("ch", limit), None);
    }
}
