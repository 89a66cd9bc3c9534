//! What one replica may send when the channel's limit is enforced by each replica on its own:
//! an equal share, so that the replicas together stay within the configured limit.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use super::RateLimit;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// One replica's share of `limit` when `replicas` enforce it each on its own.
///
/// The rate is divided exactly, as a longer interval between calls (`replicas / per_second`
/// seconds, rounded up to the nanosecond), so that it never rounds up to more than the total
/// and never to zero: 10/s over 3 replicas is one call every 300 ms each (3.33/s), 2/s over 3
/// replicas one call every 1.5 s each. The burst is divided and rounded down, but is at least 1
/// (a limiter needs room for one call): the replicas' bursts add up to at most the configured
/// burst, except when it is smaller than the number of replicas.
pub fn local_share(limit: RateLimit, replicas: NonZeroU32) -> Quota {
    let interval = share_interval(limit.per_second, replicas);
    let burst = NonZeroU32::new(limit.burst.get() / replicas.get()).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(interval)
        .expect("a share's interval is at least 1 ns")
        .allow_burst(burst)
}

/// `replicas / per_second` seconds, rounded up to the nanosecond.
fn share_interval(per_second: NonZeroU32, replicas: NonZeroU32) -> Duration {
    let nanos = (NANOS_PER_SEC * u64::from(replicas.get())).div_ceil(u64::from(per_second.get()));
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit::new(per_second, burst).unwrap()
    }

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    /// (per_second, burst, replicas) → (interval between calls, burst) of one replica.
    #[test]
    fn each_replica_takes_an_equal_share_rounded_towards_less() {
        let ms = Duration::from_millis;
        let table = [
            // One replica: the whole limit, as before replicas existed.
            ((50, 100, 1), (ms(20), 100)),
            ((1, 1, 1), (ms(1000), 1)),
            // Divides evenly.
            ((50, 100, 2), (ms(40), 50)),
            ((30, 9, 3), (ms(100), 3)),
            // 10/s over 3: 3.33/s each; the burst 5 rounds down to 1 each.
            ((10, 5, 3), (Duration::from_nanos(300_000_000), 1)),
            // 7/s over 3: 2.33/s each, the interval rounded up to the nanosecond.
            ((7, 7, 3), (Duration::from_nanos(428_571_429), 2)),
            // Fewer calls per second than replicas: less than one per second each, never zero.
            ((2, 2, 3), (ms(1500), 1)),
            ((1, 1, 4), (ms(4000), 1)),
        ];
        for ((ps, burst, replicas), (interval, share_burst)) in table {
            let q = local_share(limit(ps, burst), n(replicas));
            assert_eq!(
                (q.replenish_interval(), q.burst_size().get()),
                (interval, share_burst),
                "{ps}/s burst {burst} over {replicas} replicas"
            );
        }
    }

    #[test]
    fn the_replicas_together_never_exceed_the_configured_rate() {
        for ps in [1, 2, 3, 7, 10, 49, 50, 1000, 999_983, u32::MAX] {
            for replicas in [1, 2, 3, 5, 8, 64, 1000] {
                let interval = share_interval(n(ps), n(replicas)).as_nanos();
                // replicas × (1 s / interval) ≤ ps  ⇔  replicas × 1 s ≤ ps × interval
                assert!(
                    u128::from(replicas) * 1_000_000_000 <= u128::from(ps) * interval,
                    "{ps}/s over {replicas}: {interval} ns each"
                );
                // …and the rounding costs at most 1 ns per interval.
                assert!(
                    u128::from(replicas) * 1_000_000_000 > u128::from(ps) * (interval - 1),
                    "{ps}/s over {replicas}: {interval} ns each is more than needed"
                );
            }
        }
    }

    #[test]
    fn the_replicas_bursts_add_up_to_at_most_the_configured_burst_unless_it_is_below_one_each() {
        for burst in 1..=40 {
            for replicas in 1..=12 {
                let q = local_share(limit(10, burst), n(replicas));
                let total = q.burst_size().get() * replicas;
                if burst >= replicas {
                    assert!(total <= burst, "burst {burst} over {replicas}: {total}");
                    assert!(
                        total > burst - replicas,
                        "burst {burst} over {replicas}: {total}"
                    );
                } else {
                    assert_eq!(q.burst_size().get(), 1, "at least one call each");
                }
            }
        }
    }
}
