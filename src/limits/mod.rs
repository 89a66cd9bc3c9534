//! Channel rate limits: enforced in this process (governor), or across every replica of the
//! app through Redis with this replica's share standing in while Redis does not answer.
//!
//! Without Redis each of `--replicas` replicas enforces an equal share of a channel's limit
//! (see [`local_share`]), so that together they stay within it; with `--redis-url` the whole
//! limit is enforced once, for all of them, by one atomic script per decision (GCRA on Redis's
//! clock, the algorithm governor runs in-process).

mod share;
mod shared;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::DefaultDirectRateLimiter;

pub use self::share::local_share;
pub use self::shared::{Gcra, SharedLimits, SharedOptions, Unanswered, KEY_PREFIX};

/// A channel's `rate_limit` from routes.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls per second, sustained.
    pub per_second: NonZeroU32,
    /// Calls allowed at once after a quiet time.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `per_second` calls per second with bursts of `burst`; `None` when either is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit {
            per_second: NonZeroU32::new(per_second)?,
            burst: NonZeroU32::new(burst)?,
        })
    }

    /// (per second, burst).
    pub fn pair(self) -> (u32, u32) {
        (self.per_second.get(), self.burst.get())
    }
}

/// How this process enforces rate limits: fixed for its lifetime, so a limiter kept across a
/// reload stays right.
#[derive(Debug, Clone)]
pub struct LimitPlan {
    /// How many replicas share each limit (each enforces `1 / replicas` of it without Redis,
    /// and while Redis does not answer).
    pub replicas: NonZeroU32,
    /// Redis, when the limits are shared.
    pub shared: Option<Arc<SharedLimits>>,
}

impl Default for LimitPlan {
    /// One replica, no Redis: the whole limit in this process.
    fn default() -> Self {
        LimitPlan {
            replicas: NonZeroU32::MIN,
            shared: None,
        }
    }
}

impl LimitPlan {
    /// The limiter of `channel`, with a fresh budget.
    pub fn limiter(&self, channel: &str, limit: RateLimit) -> Limiter {
        let share = DefaultDirectRateLimiter::direct(local_share(limit, self.replicas));
        match &self.shared {
            None => Limiter::Local(share),
            Some(redis) => Limiter::Shared(Shared {
                channel: channel.into(),
                key: redis.key(channel),
                gcra: Gcra::new(limit),
                redis: redis.clone(),
                share,
            }),
        }
    }
}

/// One channel's rate limiter.
#[derive(Debug)]
pub enum Limiter {
    /// This process's share of the limit (the whole limit with one replica).
    Local(DefaultDirectRateLimiter),
    /// The whole limit, shared by every replica through Redis.
    Shared(Shared),
}

/// A limit enforced through Redis, with this replica's share for when Redis does not answer.
#[derive(Debug)]
pub struct Shared {
    channel: String,
    key: String,
    gcra: Gcra,
    redis: Arc<SharedLimits>,
    share: DefaultDirectRateLimiter,
}

/// The shortest pause between two tries while waiting for quota (a wait Redis rounds down to
/// a few µs must not become a busy loop).
const MIN_PAUSE: Duration = Duration::from_millis(1);

impl Limiter {
    /// Takes one call: `Ok` when allowed (and spent), otherwise how long until a call may be
    /// allowed (nothing is spent).
    pub async fn check(&self) -> Result<(), Duration> {
        match self {
            Limiter::Local(share) => check_local(share),
            Limiter::Shared(s) => s.check().await,
        }
    }

    /// Waits until a call is allowed and takes it (callers bound the wait). Like governor's
    /// own wait: sleep for the time the limiter names, then try again, since another caller
    /// (or, shared, another replica) may take that call first.
    pub async fn until_ready(&self) {
        match self {
            Limiter::Local(share) => share.until_ready().await,
            Limiter::Shared(s) => {
                while let Err(wait) = s.check().await {
                    tokio::time::sleep(wait.max(MIN_PAUSE)).await;
                }
            }
        }
    }

    /// Whether decisions go through Redis right now (`payroute_rate_limit_shared`).
    pub fn is_shared(&self) -> bool {
        match self {
            Limiter::Local(_) => false,
            Limiter::Shared(s) => s.redis.is_up(),
        }
    }
}

impl Shared {
    async fn check(&self) -> Result<(), Duration> {
        if self.redis.is_up() {
            if let Ok(decision) = self.redis.take(&self.key, self.gcra).await {
                return decision;
            }
        }
        self.redis.count_fallback(&self.channel);
        check_local(&self.share)
    }
}

fn check_local(limiter: &DefaultDirectRateLimiter) -> Result<(), Duration> {
    limiter
        .check()
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit::new(per_second, burst).unwrap()
    }

    #[tokio::test]
    async fn without_redis_each_replica_enforces_its_share() {
        let plan = LimitPlan {
            replicas: NonZeroU32::new(4).unwrap(),
            shared: None,
        };
        // 1/s burst 8 over 4 replicas: 2 at once, then one every 4 s.
        let limiter = plan.limiter("ch", limit(1, 8));
        assert!(!limiter.is_shared());
        assert_eq!(limiter.check().await, Ok(()));
        assert_eq!(limiter.check().await, Ok(()));
        let wait = limiter
            .check()
            .await
            .expect_err("the share's burst is spent");
        assert!(
            wait > Duration::from_millis(3_000) && wait <= Duration::from_secs(4),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn one_replica_keeps_the_whole_limit() {
        let limiter = LimitPlan::default().limiter("ch", limit(1, 3));
        for _ in 0..3 {
            assert_eq!(limiter.check().await, Ok(()));
        }
        assert!(limiter.check().await.is_err());
    }

    #[test]
    fn gcra_parameters_match_governors() {
        for (ps, burst) in [(1, 1), (1, 5), (50, 100), (3, 2), (1_000_000, 1)] {
            let g = Gcra::new(limit(ps, burst));
            let q = governor::Quota::per_second(NonZeroU32::new(ps).unwrap())
                .allow_burst(NonZeroU32::new(burst).unwrap());
            // governor's interval in ns, rounded up to the µs here.
            let interval = q.replenish_interval().as_nanos().div_ceil(1_000);
            assert_eq!(u128::from(g.interval_us), interval, "{ps}/s");
            assert_eq!(g.tolerance_us, g.interval_us * u64::from(burst - 1));
        }
    }
}
