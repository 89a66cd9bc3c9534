//! Channel rate limits shared by replicas through the real Redis on 127.0.0.1:6379: two
//! limiters ("replicas") on one key, the fallback to the local share while Redis does not
//! answer, and the way back. A test that needs Redis is skipped with a message when it is not
//! running, except under CI (`CI` set), where that fails. Each test has a key prefix of its own.
//! Timing assertions are bounds (the machine may be busy), never exact times.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use payroute::limits::{LimitPlan, Limiter, RateLimit, SharedLimits, SharedOptions};
use payroute::metrics::Metrics;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const REDIS: &str = "127.0.0.1:6379";

/// Whether Redis answers on 127.0.0.1:6379; outside CI a test without it is skipped.
async fn redis_running() -> bool {
    let up = matches!(
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(REDIS)).await,
        Ok(Ok(_))
    );
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "Redis does not answer on {REDIS} (.ci/run starts it)"
        );
        eprintln!("skipped: Redis does not answer on {REDIS}");
    }
    up
}

/// A key prefix no other test (or run) uses.
fn prefix() -> String {
    format!("payroute-test:{}:rl:", payroute::crypto::random_hex(8))
}

/// Generous call timeouts (a busy machine must not look like a Redis outage), quick probes.
fn options(key_prefix: &str) -> SharedOptions {
    SharedOptions {
        key_prefix: key_prefix.into(),
        timeout: Duration::from_millis(500),
        probe_every: Duration::from_millis(100),
        probe_timeout: Duration::from_secs(1),
    }
}

fn limit(per_second: u32, burst: u32) -> RateLimit {
    RateLimit::new(per_second, burst).unwrap()
}

/// One replica: its own connection to Redis, its own metrics.
struct Replica {
    shared: Arc<SharedLimits>,
    metrics: Metrics,
}

impl Replica {
    async fn start(url: &str, key_prefix: &str) -> Replica {
        let metrics = Metrics::new();
        let shared = SharedLimits::start(
            url,
            options(key_prefix),
            metrics.rate_limit_fallbacks.clone(),
        )
        .await
        .expect("a usable Redis URL");
        Replica { shared, metrics }
    }

    fn limiter(&self, replicas: u32, limit: RateLimit) -> Limiter {
        let plan = LimitPlan {
            replicas: NonZeroU32::new(replicas).unwrap(),
            shared: Some(self.shared.clone()),
        };
        plan.limiter("ch", limit)
    }

    fn fallbacks(&self) -> u64 {
        self.metrics
            .rate_limit_fallbacks
            .with_label_values(&["ch"])
            .get()
    }

    /// `payroute_rate_limit_shared{channel="ch"}` as a scrape shows it.
    fn shared_gauge(&self, limiter: &Limiter) -> i64 {
        self.metrics
            .refresh_rate_limits([("ch", limiter.is_shared())]);
        self.metrics
            .rate_limit_shared
            .with_label_values(&["ch"])
            .get()
    }
}

/// Two replicas on the real Redis with one key prefix (`None`: skipped, no Redis).
async fn two_replicas() -> Option<(Replica, Replica)> {
    if !redis_running().await {
        return None;
    }
    let (url, key_prefix) = (format!("redis://{REDIS}/"), prefix());
    Some((
        Replica::start(&url, &key_prefix).await,
        Replica::start(&url, &key_prefix).await,
    ))
}

/// Calls allowed out of `tries` made back to back.
async fn allowed(limiter: &Limiter, tries: usize) -> usize {
    let mut n = 0;
    for _ in 0..tries {
        n += usize::from(limiter.check().await.is_ok());
    }
    n
}

/// Waits (at most 5 s) until `shared` finds Redis up or down as `up` says.
async fn until_up(shared: &SharedLimits, up: bool) -> bool {
    for _ in 0..250 {
        if shared.is_up() == up {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn two_replicas_on_one_key_admit_no_more_than_the_rate_over_the_window_plus_the_burst() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let (per_second, burst) = (40, 10);
    let limiters = [
        Arc::new(a.limiter(2, limit(per_second, burst))),
        Arc::new(b.limiter(2, limit(per_second, burst))),
    ];
    assert!(limiters.iter().all(|l| l.is_shared()));
    let window = Duration::from_millis(1500);
    let started = Instant::now();
    let tasks: Vec<_> = limiters
        .iter()
        .map(|l| {
            let l = l.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                // Bounded: at most 1,000 tries, one every 2 ms, within the window.
                for _ in 0..1_000 {
                    if started.elapsed() >= window {
                        break;
                    }
                    n += u64::from(l.check().await.is_ok());
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                n
            })
        })
        .collect();
    let mut each = Vec::new();
    for t in tasks {
        each.push(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = each.iter().sum();
    // GCRA from a fresh key: the burst, then one call per interval.
    let most = burst as f64 + (per_second as f64 * elapsed).ceil() + 1.0;
    assert!(
        (total as f64) <= most,
        "{total} calls ({each:?}) in {elapsed:.2} s; at most {most} together"
    );
    // Both took part, and together well above one replica's share (5 + 20/s).
    assert!(each.iter().all(|&n| n > 0), "{each:?}");
    assert!(total >= u64::from(burst) + 20, "{total} calls ({each:?})");
    assert_eq!(
        (a.fallbacks(), b.fallbacks()),
        (0, 0),
        "Redis decided every call"
    );
}

#[tokio::test]
async fn one_replica_may_spend_the_whole_shared_burst_and_the_other_then_waits() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    // 1/s, burst 6, three replicas: each one's local share would be a burst of 2.
    let (la, lb) = (a.limiter(3, limit(1, 6)), b.limiter(3, limit(1, 6)));
    assert_eq!(a.shared_gauge(&la), 1);
    assert_eq!(allowed(&la, 6).await, 6, "the whole burst, through Redis");
    let wait = lb.check().await.expect_err("the shared burst is spent");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    // The wait is one interval at most: after it, B gets a call (or A's next would).
    tokio::time::sleep(wait).await;
    tokio::time::timeout(Duration::from_secs(3), lb.until_ready())
        .await
        .expect("a call within an interval of the wait");
    // The theoretical arrival time is kept with a TTL: it expires once it has passed.
    let client = redis::Client::open(format!("redis://{REDIS}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = a.shared.key("ch");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 7_001, "{key}: PTTL {pttl}");
    assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));
}

#[tokio::test]
async fn while_redis_does_not_answer_each_replica_enforces_its_share_and_says_so() {
    // Nothing listens on port 1: no Redis needed.
    let replica = Replica::start("redis://127.0.0.1:1/", &prefix()).await;
    assert!(!replica.shared.is_up());
    // 10/s, burst 4, two replicas: a share of 5/s, burst 2.
    let limiter = replica.limiter(2, limit(10, 4));
    assert_eq!(replica.shared_gauge(&limiter), 0);
    let started = Instant::now();
    assert_eq!(allowed(&limiter, 2).await, 2, "the share's burst");
    match limiter.check().await {
        Err(wait) => assert!(wait <= Duration::from_millis(200), "{wait:?}"),
        Ok(()) => panic!("a third call in the share's burst of 2"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "calls do not wait for a Redis that is down"
    );
    assert_eq!(replica.fallbacks(), 3, "every decision counted");
}

#[tokio::test]
async fn shared_limits_come_back_when_redis_does() {
    if !redis_running().await {
        return;
    }
    let proxy = Proxy::start(REDIS.parse().unwrap()).await;
    let replica = Replica::start(&format!("redis://{}/", proxy.addr), &prefix()).await;
    // 1/s, burst 4, two replicas: a local share of burst 2, then one call every 2 s.
    let limiter = replica.limiter(2, limit(1, 4));
    assert!(!replica.shared.is_up(), "the proxy drops every connection");
    assert_eq!(allowed(&limiter, 3).await, 2, "the local share");
    assert_eq!(replica.fallbacks(), 3);

    proxy.set_up(true);
    assert!(
        until_up(&replica.shared, true).await,
        "found back by the probe"
    );
    assert_eq!(replica.shared_gauge(&limiter), 1);
    assert_eq!(
        allowed(&limiter, 5).await,
        4,
        "the whole burst, through Redis"
    );
    assert_eq!(replica.fallbacks(), 3, "Redis decided");

    // Redis goes away again, with the connection in use: the next call falls back (whether it
    // or the probe finds Redis gone first), without waiting longer than a call's timeout.
    proxy.set_up(false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let _ = limiter.check().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!replica.shared.is_up());
    assert_eq!(replica.shared_gauge(&limiter), 0);
    assert_eq!(replica.fallbacks(), 4);

    proxy.set_up(true);
    assert!(until_up(&replica.shared, true).await, "found back again");
    let before = replica.fallbacks();
    let _ = limiter.check().await;
    assert_eq!(replica.fallbacks(), before, "Redis decides again");
}

/// A TCP proxy to Redis that can be cut: while down it accepts and drops every connection
/// and cuts those it carries. It lives as long as the test's runtime.
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if !*rx.borrow_and_update() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { addr, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// The whole process: `--replicas` and `--redis-url` reach the channels' limiters, and the
/// metrics show which limit applies.
mod serve {
    use super::*;
    use common::{config_dir, order_no, sample, Harness};

    /// The sample routes.yaml with alipay limited to 1/s, burst 4.
    fn limited() -> String {
        let line = "    timeouts: { connect_ms: 3000, request_ms: 10000 }";
        let text = sample();
        assert!(text.contains(line));
        text.replacen(
            line,
            &format!("{line}\n    rate_limit: {{ per_second: 1, burst: 4 }}"),
            1,
        )
    }

    /// Creates alipay payments (routed to alipay only) until one is refused: how many were
    /// created, and in how many seconds.
    async fn created_before_429(h: &Harness) -> (usize, f64) {
        let started = Instant::now();
        for n in 0..10 {
            let body = json!({"out_trade_no": order_no("SL"), "amount": 5000, "currency": "CNY",
                              "method": "alipay", "scene": "qr", "subject": "shared limit"});
            let r = h.api("POST", "/v1/payments", Some(body)).await;
            if r.status == 429 {
                assert_eq!(r.json["code"], "rate_limited", "{}", r.text);
                return (n, started.elapsed().as_secs_f64());
            }
            assert_eq!(r.status, 201, "{}", r.text);
        }
        panic!("ten payments in a row on a limit with a burst of 4");
    }

    fn sample_of(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    async fn start(redis_url: String, key_prefix: String) -> (Harness, tempfile::TempDir) {
        let (dir, config) = config_dir(&limited());
        let h = Harness::start_with(|a| {
            a.config = config;
            a.replicas.replicas = NonZeroU32::new(2).unwrap();
            a.replicas.redis_url = Some(redis_url);
            a.replicas.redis_key_prefix = key_prefix;
        })
        .await;
        (h, dir)
    }

    #[tokio::test]
    async fn without_redis_a_replica_creates_its_share_and_the_metrics_say_why() {
        let (h, _dir) = start("redis://127.0.0.1:1/".into(), prefix()).await;
        // Half the burst of 4, and one call every 2 s after it.
        let (n, secs) = created_before_429(&h).await;
        assert!(n >= 2 && n as f64 <= 2.0 + secs / 2.0, "{n} in {secs:.2} s");
        let text = h.admin("GET", "/metrics", None).await.text;
        let shared = "payroute_rate_limit_shared{channel=\"alipay\"}";
        assert_eq!(sample_of(&text, shared), Some(0.0), "{text}");
        let fallbacks = "payroute_rate_limit_fallbacks_total{channel=\"alipay\"}";
        assert_eq!(
            sample_of(&text, fallbacks),
            Some(n as f64 + 1.0),
            "each decision"
        );
        // Only channels with a rate limit have the gauge.
        assert_eq!(
            sample_of(&text, "payroute_rate_limit_shared{channel=\"wechatpay\"}"),
            None
        );
        h.run.stop().await;
    }

    #[tokio::test]
    async fn with_redis_a_replica_may_use_the_whole_limit() {
        if !redis_running().await {
            return;
        }
        let (h, _dir) = start(format!("redis://{REDIS}/"), prefix()).await;
        // The whole burst of 4, and one call a second after it.
        let (n, secs) = created_before_429(&h).await;
        assert!(n >= 4 && n as f64 <= 4.0 + secs, "{n} in {secs:.2} s");
        let text = h.admin("GET", "/metrics", None).await.text;
        let shared = "payroute_rate_limit_shared{channel=\"alipay\"}";
        assert_eq!(sample_of(&text, shared), Some(1.0), "{text}");
        let fallbacks = "payroute_rate_limit_fallbacks_total{channel=\"alipay\"}";
        assert_eq!(sample_of(&text, fallbacks), Some(0.0));
        h.run.stop().await;
    }
}
