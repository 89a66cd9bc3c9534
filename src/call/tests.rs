//! The stack on paused tokio time with a scripted transport: classification and metrics,
//! breaker admission and probes, the rate limit, settling traffic, the deadline.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;
use tower::ServiceExt;

use super::fake::{FakeTransport, FakeTransports, ScriptedChannel, Step};
use super::*;
use crate::health::State;
use crate::routing::HealthView;

const QUERY: Op<'static> = Op::Query {
    out_trade_no: "ORDER1",
    channel_trade_no: None,
};

fn deps() -> Deps {
    Deps {
        health: Arc::new(Health::default()),
        metrics: Arc::new(Metrics::new()),
    }
}

fn breaker() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        failure_ratio_percent: 75,
        min_calls: 4,
        open_for: Duration::from_secs(30),
        ..BreakerConfig::default()
    }
}

fn target() -> Target {
    Target {
        name: "ch".into(),
        adapter: Arc::new(ScriptedChannel { name: "ch".into() }),
        breaker: breaker(),
        limiter: None,
        request_timeout: Duration::from_secs(2),
    }
}

/// A limiter whose only call this minute is spent.
fn spent_limiter() -> Arc<crate::limits::Limiter> {
    let limiter = RateLimiter::direct(Quota::per_minute(NonZeroU32::MIN));
    assert!(limiter.check().is_ok());
    Arc::new(crate::limits::Limiter::Local(limiter))
}

async fn run(deps: &Deps, target: &Target, fake: &FakeTransport, op: Op<'_>, t: Traffic) -> Reply {
    let exchange = Exchange {
        op,
        traffic: t,
        request: http::Request::post("http://127.0.0.1/x")
            .body(Bytes::new())
            .unwrap(),
    };
    match stack(deps, target, fake.clone()).oneshot(exchange).await {
        Ok(reply) => reply,
        Err(never) => match never {},
    }
}

fn count(deps: &Deps, operation: &str, outcome: &str) -> u64 {
    deps.metrics
        .channel_requests
        .with_label_values(&["ch", operation, outcome])
        .get()
}

fn circuit_gauge(deps: &Deps) -> i64 {
    deps.metrics.circuit_state.with_label_values(&["ch"]).get()
}

/// Opens the circuit with three unknown outcomes.
async fn open(deps: &Deps, target: &Target) {
    let fake = FakeTransport::new(Step::answer("garbage"));
    for _ in 0..3 {
        run(deps, target, &fake, QUERY, Traffic::New).await;
    }
    assert_eq!(deps.health.state("ch"), State::Open);
}

#[tokio::test(start_paused = true)]
async fn every_classification_has_its_label_and_breaker_class() {
    let not_sent = |c: &Call| matches!(c, Call::NotSent(_));
    let answered = |c: &Call| matches!(c, Call::Answer(o) if !matches!(o, Outcome::Unknown { .. }));
    let unknown = |c: &Call| matches!(c, Call::Answer(Outcome::Unknown { .. }));
    type Check = fn(&Call) -> bool;
    let table: [(Step, Check, &str, Class); 7] = [
        (Step::answer("paid"), answered, "ok", Class::Success),
        (Step::answer("closed"), answered, "ok", Class::Success),
        (
            Step::answer("declined"),
            answered,
            "declined",
            Class::Success,
        ),
        (Step::answer("garbage"), unknown, "unknown", Class::Failure),
        // The channel refused the request itself: nothing was created, and it is not healthy.
        (
            Step::answer("not_accepted"),
            not_sent,
            "not_sent",
            Class::Failure,
        ),
        (Step::refused(), not_sent, "not_sent", Class::Failure),
        (
            Step::timeout(Duration::from_secs(2)),
            unknown,
            "unknown",
            Class::Failure,
        ),
    ];
    for (step, check, label, class) in table {
        let (deps, target) = (deps(), target());
        let reply = run(
            &deps,
            &target,
            &FakeTransport::new(step),
            QUERY,
            Traffic::New,
        )
        .await;
        assert!(check(&reply.call), "{label}: {reply:?}");
        assert_eq!(classify(&reply), class, "{reply:?}");
        assert!(matches!(reply.reach, Reach::Sent(_)), "{reply:?}");
        assert_eq!(count(&deps, "query", label), 1, "{label}");
        let total: u64 = ["ok", "declined", "unknown", "not_sent"]
            .iter()
            .map(|l| count(&deps, "query", l))
            .sum();
        assert_eq!(total, 1, "{label}: counted once");
        let durations = deps
            .metrics
            .channel_duration
            .with_label_values(&["ch", "query"]);
        assert_eq!(
            durations.get_sample_count(),
            1,
            "{label}: duration observed"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures_and_holds_new_traffic_back() {
    let (deps, mut target) = (deps(), target());
    target.breaker.min_calls = 100; // the ratio stays out of it
    let fake = FakeTransport::new(Step::answer("garbage"));
    for _ in 0..2 {
        run(&deps, &target, &fake, QUERY, Traffic::New).await;
    }
    assert_eq!(deps.health.state("ch"), State::Closed);
    fake.push(Step::answer("declined")); // an answer resets the run
    run(&deps, &target, &fake, QUERY, Traffic::New).await;
    for _ in 0..3 {
        run(&deps, &target, &fake, QUERY, Traffic::New).await;
    }
    assert_eq!(deps.health.state("ch"), State::Open);
    assert_eq!(circuit_gauge(&deps), 2);
    let reply = run(&deps, &target, &fake, QUERY, Traffic::New).await;
    assert_eq!(
        reply,
        Reply::held_back(
            Call::NotSent("circuit of channel ch is open".into()),
            "circuit open"
        )
    );
    assert_eq!(fake.calls(), 6, "nothing sent while open");
    assert_eq!(count(&deps, "query", "not_sent"), 1);
}

#[tokio::test(start_paused = true)]
async fn opens_on_failure_ratio() {
    let (deps, mut target) = (deps(), target());
    target.breaker.consecutive_failures = 100;
    let fake = FakeTransport::default();
    for body in ["garbage", "paid", "garbage", "garbage"] {
        fake.push(Step::answer(body));
    }
    for _ in 0..3 {
        run(&deps, &target, &fake, QUERY, Traffic::New).await;
    }
    assert_eq!(deps.health.state("ch"), State::Closed, "under min_calls");
    run(&deps, &target, &fake, QUERY, Traffic::New).await;
    assert_eq!(deps.health.state("ch"), State::Open, "3 of 4 failed");
}

#[tokio::test(start_paused = true)]
async fn half_open_after_open_time_without_any_call() {
    let (deps, target) = (deps(), target());
    open(&deps, &target).await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(deps.health.circuit_open("ch"));
    assert_eq!(deps.health.reopens_in("ch"), Some(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(deps.health.state("ch"), State::HalfOpen);
    assert!(!deps.health.circuit_open("ch"), "routing may send a probe");
}

#[tokio::test(start_paused = true)]
async fn one_probe_at_a_time_then_closed() {
    let (deps, target) = (deps(), target());
    open(&deps, &target).await;
    tokio::time::sleep(breaker().open_for).await;
    let fake = FakeTransport::new(Step::answer("paid").after(Duration::from_secs(1)));
    let probe = run(&deps, &target, &fake, QUERY, Traffic::New);
    let second = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(deps.health.circuit_open("ch"), "a probe is in flight");
        run(&deps, &target, &fake, QUERY, Traffic::New).await
    };
    let (probe, second) = tokio::join!(probe, second);
    assert!(matches!(probe.call, Call::Answer(Outcome::Payment(_))));
    assert_eq!(second.reach, Reach::HeldBack("circuit open"));
    assert_eq!(fake.calls(), 1);
    assert_eq!(deps.health.state("ch"), State::Closed);
    assert_eq!(circuit_gauge(&deps), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens() {
    let (deps, target) = (deps(), target());
    open(&deps, &target).await;
    tokio::time::sleep(breaker().open_for).await;
    let fake = FakeTransport::new(Step::refused());
    run(&deps, &target, &fake, QUERY, Traffic::New).await;
    assert_eq!(deps.health.state("ch"), State::Open);
}

#[tokio::test(start_paused = true)]
async fn settle_calls_pass_an_open_circuit_and_a_spent_limiter() {
    let (deps, mut target) = (deps(), target());
    open(&deps, &target).await;
    target.limiter = Some(spent_limiter());
    let fake = FakeTransport::new(Step::answer("closed"));
    let started = Instant::now();
    let reply = run(&deps, &target, &fake, QUERY, Traffic::Settle).await;
    assert_eq!(reply.call, Call::Answer(Outcome::Closed));
    assert_eq!(started.elapsed(), Duration::ZERO, "no wait for quota");
    assert_eq!(fake.calls(), 1);
    assert_eq!(count(&deps, "query", "ok"), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_new_calls_wait_at_most_a_second() {
    let (deps, mut target) = (deps(), target());
    target.limiter = Some(spent_limiter());
    let fake = FakeTransport::default();
    let started = Instant::now();
    let reply = run(&deps, &target, &fake, QUERY, Traffic::New).await;
    assert_eq!(started.elapsed(), LIMIT_WAIT);
    assert_eq!(
        reply,
        Reply::held_back(Call::RateLimited(LIMIT_WAIT), "rate limit reached")
    );
    assert_eq!(fake.calls(), 0);
    assert_eq!(count(&deps, "query", "not_sent"), 1);
    let limited = deps.metrics.rate_limited.with_label_values(&["ch"]).get();
    assert_eq!(limited, 1);
    assert_eq!(deps.health.state("ch"), State::Closed, "not a failure");
}

#[tokio::test(start_paused = true)]
async fn creates_take_their_quota_while_routed_not_here() {
    let (deps, mut target) = (deps(), target());
    target.limiter = Some(spent_limiter());
    let intent = crate::channels::PaymentIntent {
        out_trade_no: "ORDER1".into(),
        amount: crate::money::Fen(100),
        method: crate::domain::PayMethod::Alipay,
        scene: crate::domain::Scene::Qr,
        subject: "s".into(),
        description: None,
        auth_code: None,
        payer_id: None,
        client_ip: None,
        expires_at: None,
        split: false,
    };
    let fake = FakeTransport::new(Step::answer("waiting"));
    let reply = run(&deps, &target, &fake, Op::Create(&intent), Traffic::New).await;
    assert!(matches!(reply.call, Call::Answer(Outcome::Payment(_))));
    assert_eq!(count(&deps, "create", "ok"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_probe_held_back_by_the_limiter_gives_its_slot_back() {
    let (deps, mut target) = (deps(), target());
    open(&deps, &target).await;
    tokio::time::sleep(breaker().open_for).await;
    target.limiter = Some(spent_limiter());
    let reply = run(
        &deps,
        &target,
        &FakeTransport::default(),
        QUERY,
        Traffic::New,
    )
    .await;
    assert_eq!(reply.call, Call::RateLimited(LIMIT_WAIT));
    assert_eq!(deps.health.state("ch"), State::HalfOpen);
    assert!(deps.health.admit("ch"), "the next call may probe");
}

#[tokio::test(start_paused = true)]
async fn a_transport_past_its_deadline_is_unknown_and_counted() {
    let (deps, target) = (deps(), target());
    open(&deps, &target).await;
    tokio::time::sleep(breaker().open_for).await;
    let fake = FakeTransport::new(Step::answer("paid").after(Duration::from_secs(60)));
    let started = Instant::now();
    let reply = run(&deps, &target, &fake, QUERY, Traffic::New).await;
    let budget = LIMIT_WAIT + target.request_timeout + deadline::GRACE;
    assert_eq!(started.elapsed(), budget);
    assert!(matches!(reply.call, Call::Answer(Outcome::Unknown { .. })));
    assert_eq!(
        count(&deps, "query", "unknown"),
        4,
        "three to open, one abandoned"
    );
    assert!(
        deps.health.admit("ch"),
        "the abandoned probe gave its slot back"
    );
}

/// The sample routes.yaml's first channel, renamed `ch`, with a scripted adapter.
fn entry() -> ChannelEntry {
    let sample = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml"));
    let snapshot = crate::config::load(sample, &Default::default()).expect("sample loads");
    let mut entry = snapshot.channels[0].clone();
    entry.name = "ch".into();
    entry.adapter = Arc::new(ScriptedChannel { name: "ch".into() });
    entry
}

#[tokio::test(start_paused = true)]
async fn the_caller_builds_sends_and_answers() {
    let fakes = Arc::new(FakeTransports::default());
    let deps = deps();
    let caller = Caller::with_transports(deps.health.clone(), deps.metrics.clone(), fakes.clone());
    let entry = entry();
    fakes.channel("ch").push(Step::answer("declined"));
    let call = caller.call(&entry, QUERY, Traffic::New).await;
    assert!(
        matches!(call, Call::Answer(Outcome::Declined { .. })),
        "{call:?}"
    );
    assert_eq!(fakes.channel("ch").uris(), ["http://127.0.0.1/query"]);
    assert_eq!(count(&deps, "query", "declined"), 1);
    // A request that could not be built is not sent, and not counted.
    let not_built = Err(Call::NotSent("bad input".into()));
    let call = caller.send(&entry, QUERY, not_built, Traffic::New).await;
    assert_eq!(call, Call::NotSent("bad input".into()));
    assert_eq!(fakes.channel("ch").calls(), 1);
}

#[tokio::test]
async fn production_transport_is_the_channel_client() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let (mut socket, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).unwrap();
        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\ndeclined";
        socket.write_all(answer.as_bytes()).unwrap();
    });
    let transport = ChannelClients.transport(&entry());
    let request = http::Request::post(format!("http://{addr}/query"))
        .body(Bytes::new())
        .unwrap();
    let answer = transport.oneshot(request).await.expect("answered");
    assert_eq!((answer.status, &answer.body[..]), (200, &b"declined"[..]));
    server.await.unwrap();
}
