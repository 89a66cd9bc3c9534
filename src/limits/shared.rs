//! Rate limits shared by every replica through Redis: one atomic script per decision (GCRA on
//! Redis's clock, see `gcra.lua`), and whether Redis answers.
//!
//! Whether Redis answers changes in the background: a probe runs the same script every
//! [`SharedOptions::probe_every`], and a call that fails marks Redis down at once. While it is
//! down, calls do not wait for it: each channel falls back to this replica's share (see
//! [`super::Limiter`]); the next successful probe brings the shared limits back. Each change is
//! logged once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::IntCounterVec;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The prefix of every channel's key: `payroute:rl:<channel>`.
pub const KEY_PREFIX: &str = "payroute:rl:";

/// How the shared limits reach Redis.
#[derive(Debug, Clone)]
pub struct SharedOptions {
    /// Keys are this prefix and the channel's name.
    pub key_prefix: String,
    /// How long a call waits for Redis's answer before it decides with the local share.
    pub timeout: Duration,
    /// How often the probe asks Redis whether it answers.
    pub probe_every: Duration,
    /// How long the probe waits (it may have to connect first).
    pub probe_timeout: Duration,
}

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions {
            key_prefix: KEY_PREFIX.into(),
            timeout: Duration::from_millis(50),
            probe_every: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// The GCRA parameters of one limit, in µs of Redis's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Between two calls at the sustained rate (rounded up, so never above the rate).
    pub interval_us: u64,
    /// How far ahead of now the theoretical arrival time may run: `interval × (burst − 1)`.
    pub tolerance_us: u64,
}

impl Gcra {
    /// The parameters of `limit`, as governor derives them for its in-process limiter.
    pub fn new(limit: super::RateLimit) -> Self {
        let interval_us = 1_000_000u64.div_ceil(u64::from(limit.per_second.get()));
        Gcra {
            interval_us,
            tolerance_us: interval_us * u64::from(limit.burst.get() - 1),
        }
    }
}

/// Why Redis gave no decision.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

/// Redis's state as this replica last found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Reach {
    /// Not asked yet.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

impl Reach {
    fn from_u8(v: u8) -> Reach {
        match v {
            1 => Reach::Up,
            2 => Reach::Down,
            _ => Reach::Unknown,
        }
    }
}

/// The connection to Redis that every channel's shared limiter uses.
pub struct SharedLimits {
    client: redis::Client,
    conn: ArcSwap<ConnectionManager>,
    script: redis::Script,
    opts: SharedOptions,
    /// `host:port`, for logs (the URL may hold a password).
    at: String,
    reach: AtomicU8,
    /// `payroute_rate_limit_fallbacks_total{channel}`.
    fallbacks: IntCounterVec,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("at", &self.at)
            .field("reach", &Reach::from_u8(self.reach.load(Ordering::Relaxed)))
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`), asks it once
    /// whether it answers, and keeps asking in the background for as long as the returned
    /// handle lives. An unreachable Redis is not an error: the limits fall back to the local
    /// share until it answers. Only a URL that cannot be used at all is.
    pub async fn start(
        url: &str,
        opts: SharedOptions,
        fallbacks: IntCounterVec,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let at = client.get_connection_info().addr().to_string();
        let conn = connection(&client, &opts)?;
        let limits = Arc::new(SharedLimits {
            client,
            conn: ArcSwap::from_pointee(conn),
            script: redis::Script::new(include_str!("gcra.lua")),
            opts,
            at,
            reach: AtomicU8::new(Reach::Unknown as u8),
            fallbacks,
        });
        limits.probe().await;
        tokio::spawn(keep_probing(Arc::downgrade(&limits)));
        Ok(limits)
    }

    /// Whether Redis answered the last call or probe (calls then decide through it).
    pub fn is_up(&self) -> bool {
        Reach::from_u8(self.reach.load(Ordering::Relaxed)) == Reach::Up
    }

    /// Where Redis is (`host:port`).
    pub fn at(&self) -> &str {
        &self.at
    }

    /// The key of `channel`'s limit.
    pub fn key(&self, channel: &str) -> String {
        format!("{}{channel}", self.opts.key_prefix)
    }

    /// One decision on `key`: `Ok(Ok(()))` allowed (and spent), `Ok(Err(wait))` not before
    /// `wait` from now; `Err` when Redis did not answer in time (Redis is then marked down).
    pub async fn take(&self, key: &str, gcra: Gcra) -> Result<Result<(), Duration>, Unanswered> {
        let answer = self.run(key, gcra, self.opts.timeout).await;
        if let Err(e) = &answer {
            self.mark(Reach::Down, Some(e));
        }
        answer
    }

    /// Counts a decision `channel` made with its local share because Redis was down.
    pub(super) fn count_fallback(&self, channel: &str) {
        self.fallbacks.with_label_values(&[channel]).inc();
    }

    async fn run(
        &self,
        key: &str,
        gcra: Gcra,
        timeout: Duration,
    ) -> Result<Result<(), Duration>, Unanswered> {
        let mut conn = ConnectionManager::clone(&self.conn.load());
        let mut call = self.script.key(key);
        call.arg(gcra.interval_us).arg(gcra.tolerance_us);
        let wait_us: u64 = tokio::time::timeout(timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| Unanswered::TimedOut(timeout))??;
        Ok(match wait_us {
            0 => Ok(()),
            us => Err(Duration::from_micros(us)),
        })
    }

    /// Asks Redis through the same script as the calls, on a key of its own that is never
    /// limited, and records the answer. A connection that failed is replaced, so that a
    /// Redis that comes back is found whatever the failure was.
    async fn probe(&self) {
        let key = format!("{}probe", self.opts.key_prefix.trim_end_matches(':'));
        let never_limited = Gcra {
            interval_us: 1,
            tolerance_us: 1_000_000,
        };
        match self.run(&key, never_limited, self.opts.probe_timeout).await {
            Ok(_) => self.mark(Reach::Up, None),
            Err(e) => {
                self.mark(Reach::Down, Some(&e));
                if let Ok(fresh) = connection(&self.client, &self.opts) {
                    self.conn.store(Arc::new(fresh));
                }
            }
        }
    }

    /// Records Redis's state and logs a change (only a change: an outage is one line).
    fn mark(&self, reach: Reach, error: Option<&Unanswered>) {
        let before = Reach::from_u8(self.reach.swap(reach as u8, Ordering::Relaxed));
        if before == reach {
            return;
        }
        match (reach, error) {
            (Reach::Up, _) => tracing::info!(
                redis = self.at.as_str(),
                "Redis answers: channel rate limits are shared by every replica"
            ),
            (_, error) => tracing::warn!(
                redis = self.at.as_str(),
                error = error.map(|e| e.to_string()).unwrap_or_default(),
                "Redis does not answer: each channel's rate limit falls back to this replica's \
                 share until it does"
            ),
        }
    }
}

/// A connection to Redis that connects when first used and reconnects after an I/O error.
fn connection(
    client: &redis::Client,
    opts: &SharedOptions,
) -> Result<ConnectionManager, redis::RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(opts.probe_timeout))
        .set_response_timeout(Some(opts.probe_timeout))
        // Reconnecting is retried by the next call or probe, never by a caller waiting.
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// Probes Redis every `probe_every` until the limits are dropped.
async fn keep_probing(limits: Weak<SharedLimits>) {
    loop {
        let Some(every) = limits.upgrade().map(|l| l.opts.probe_every) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(l) = limits.upgrade() else {
            return;
        };
        l.probe().await;
    }
}
