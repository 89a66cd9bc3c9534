//! Many replicas, one ledger: three `payroute serve` processes on one PostgreSQL database and
//! one `payroute sandbox` process, as a Deployment of three pods runs them. Each replica's
//! channels notify the next replica (the notify Service picks any pod), and the simulator,
//! a process of its own, keeps the record of what every replica sent.
//!
//! Needs PostgreSQL (`PAYROUTE_TEST_POSTGRES_URL`, default the machine's) and uses Redis on
//! 127.0.0.1:6379 for the shared rate limit when it answers (without it each replica takes its
//! third of the limit: the total holds either way). Skipped, with a notice, when PostgreSQL does
//! not answer outside CI.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::pg::Schema;
use common::process::{json_request, sandbox_process, serve_args, wait_until, Ports, Proc, BIN};
use common::repo;
use payroute::channels::client::ChannelClient;
use serde_json::{json, Value};

const REPLICAS: usize = 3;
/// The `alipay_burst` channel's limit: calls per second, and burst.
const BURST_RATE: f64 = 4.0;
const BURST: f64 = 4.0;

async fn call(method: &str, url: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let client = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(30));
    let resp = client.send(json_request(method, url, body)).await.ok()?;
    let path = url.parse::<http::Uri>().unwrap().path().to_string();
    if path.starts_with("/v1/") {
        common::openapi::assert_documented(method, &path, resp.status, &resp.headers, &resp.body);
    }
    Some((
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    ))
}

/// The sandbox, and three replicas serving two Alipay channels on it from one ledger.
struct Fleet {
    dir: tempfile::TempDir,
    _sandbox: Proc,
    control: String,
    config: PathBuf,
    schema: Schema,
    redis_prefix: String,
    ports: Vec<Ports>,
    procs: Vec<Option<Proc>>,
}

impl Fleet {
    async fn start(schema: Schema) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = sandbox_process(&dir.path().join("sandbox")).await;
        let (endpoint, key_file) = (&sandbox.alipay_endpoint, &sandbox.alipay_key);
        let channel = |name: &str, extra: &str| {
            format!(
                "  {name}:\n    kind: alipay\n    endpoint: {endpoint}\n    app_id: \"2021000000000001\"\n    \
                 app_private_key: {{ file: {} }}\n    alipay_public_key: {{ file: {} }}\n{extra}",
                repo().join("sandbox/keys/alipay_app_private.pem").display(),
                key_file.display()
            )
        };
        // Payments whose metadata says lane=burst go to a channel with a rate limit.
        let config = dir.path().join("routes.yaml");
        std::fs::write(
            &config,
            format!(
                "channels:\n{}{}rules:\n  - name: burst\n    match: {{ metadata: {{ lane: burst }} }}\n    \
                 channels: [alipay_burst]\n  - name: default\n    channels: [alipay]\n",
                channel("alipay", ""),
                channel(
                    "alipay_burst",
                    &format!("    rate_limit: {{ per_second: {BURST_RATE}, burst: {BURST} }}\n"),
                ),
            ),
        )
        .unwrap();
        let ports = (0..REPLICAS).map(|_| Ports::free()).collect();
        let mut fleet = Fleet {
            dir,
            control: sandbox.control.clone(),
            _sandbox: sandbox.proc,
            config,
            schema,
            redis_prefix: format!("payroute:test:{}:", payroute::crypto::random_hex(6)),
            ports,
            procs: (0..REPLICAS).map(|_| None).collect(),
        };
        for i in 0..REPLICAS {
            fleet.serve(i).await;
        }
        fleet
    }

    /// Starts replica `i` (its notifications go to replica i+1) and waits until it is ready.
    async fn serve(&mut self, i: usize) {
        let next = &self.ports[(i + 1) % REPLICAS];
        let child = Command::new(BIN)
            .args(serve_args(
                &self.config,
                &self.dir.path().join(format!("data{i}")),
                &self.ports[i],
            ))
            .args(["--ledger-url", &self.schema.url_text()])
            .args(["--notify-base-url", &format!("http://{}", next.notify)])
            .args(["--replicas", &REPLICAS.to_string()])
            .args(["--redis-url", "redis://127.0.0.1:6379"])
            .args(["--redis-key-prefix", &self.redis_prefix])
            .args(["--log-format", "text"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.procs[i] = Some(Proc(child));
        let url = format!("http://{}/readyz", self.ports[i].admin);
        wait_until("a replica ready", async || {
            matches!(call("GET", &url, None).await, Some((200, _)))
        })
        .await;
    }

    /// SIGKILL of replica `i`.
    fn kill(&mut self, i: usize) {
        self.procs[i].take().expect("replica running").kill();
    }

    async fn api(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("http://{}{path}", self.ports[i].api);
        call(method, &url, body).await.expect("the replica answers")
    }

    async fn payment(&self, i: usize, no: &str) -> Value {
        let (s, v) = self
            .api(i, "GET", &format!("/v1/payments/{no}"), None)
            .await;
        assert_eq!(s, 200, "replica {i}, {no}: {v}");
        v
    }

    /// A call to the Alipay simulator's control (`/sandbox/alipay<path>`).
    async fn sim(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/sandbox/alipay{path}", self.control);
        call(method, &url, body).await.expect("the sandbox answers")
    }

    /// How many calls of `method` the simulator received, from every replica.
    async fn calls(&self, method: &str) -> u64 {
        self.sim("GET", "/calls", None).await.1[method]
            .as_u64()
            .unwrap_or(0)
    }

    /// A counter of replica `i`'s metrics whose line starts with `series`.
    async fn metric(&self, i: usize, series: &str) -> f64 {
        let client = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(10));
        let url = format!("http://{}/metrics", self.ports[i].admin);
        let resp = client.send(json_request("GET", &url, None)).await.unwrap();
        String::from_utf8_lossy(&resp.body)
            .lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn qr(no: &str, amount: u64) -> Value {
    json!({"out_trade_no": no, "amount": amount, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "replicas"})
}

fn no(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:03}{}", payroute::crypto::random_hex(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_ledger_act_as_one() {
    let Some(schema) = Schema::for_test().await else {
        return;
    };
    let mut f = Fleet::start(schema).await;

    // Creates spread over the replicas; every replica answers for every order.
    let spread: Vec<String> = (0..6).map(|i| no("SPREAD", i)).collect();
    for (i, n) in spread.iter().enumerate() {
        let (s, v) = f
            .api(i % REPLICAS, "POST", "/v1/payments", Some(qr(n, 1999)))
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["action"]["type"], "qr_code", "{v}");
    }
    for n in &spread {
        for r in 0..REPLICAS {
            assert_eq!(f.payment(r, n).await["status"], "pending");
        }
    }

    // The customers pay: each notification reaches the replica after the one that created the
    // order, which accepts it (it finds the order in the shared ledger).
    let accepted = "payroute_notifications_total{channel=\"alipay\",result=\"accepted\"}";
    let unknown = "payroute_notifications_total{channel=\"alipay\",result=\"unknown_order\"}";
    for n in &spread {
        let (s, v) = f.sim("POST", &format!("/payments/{n}/pay"), None).await;
        assert_eq!(s, 200, "{v}");
    }
    wait_until("six notifications accepted", async || {
        let mut total = 0.0;
        for r in 0..REPLICAS {
            total += f.metric(r, accepted).await;
        }
        total >= 6.0
    })
    .await;
    for r in 0..REPLICAS {
        // Two orders were created on each replica, so each received two notifications.
        assert_eq!(f.metric(r, accepted).await, 2.0, "replica {r}");
        assert_eq!(f.metric(r, unknown).await, 0.0, "replica {r}");
    }
    for (i, n) in spread.iter().enumerate() {
        assert_eq!(f.payment(i % REPLICAS, n).await["status"], "succeeded");
    }

    // The same create sent to two replicas at once: one channel create, one answer.
    let precreates = f.calls("alipay.trade.precreate").await;
    for k in 0..5 {
        let n = no("TWICE", k);
        let ((s1, a), (s2, b)) = tokio::join!(
            f.api(k % REPLICAS, "POST", "/v1/payments", Some(qr(&n, 500))),
            f.api(
                (k + 1) % REPLICAS,
                "POST",
                "/v1/payments",
                Some(qr(&n, 500))
            ),
        );
        assert_eq!((s1, s2), (201, 201), "{a} {b}");
        assert_eq!(
            a["action"], b["action"],
            "both answers carry the one QR code"
        );
    }
    assert_eq!(
        f.calls("alipay.trade.precreate").await,
        precreates + 5,
        "each order was created at the channel once"
    );

    // Concurrent refunds over the replicas never exceed what was paid: 1999 fen holds three
    // refunds of 500, not four.
    let paid = &spread[0];
    let refunds: Vec<_> = (0..9)
        .map(|k| {
            let body = json!({"out_refund_no": format!("{paid}R{k}"), "amount": 500});
            let path = format!("/v1/payments/{paid}/refunds");
            let f = &f;
            async move { f.api(k % REPLICAS, "POST", &path, Some(body)).await }
        })
        .collect();
    let answers = futures_util::future::join_all(refunds).await;
    let ok = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s != 201).collect();
    assert_eq!(ok, 3, "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|(s, v)| *s == 422 && v["code"] == "refund_exceeds_paid"),
        "{refused:?}"
    );
    let (_, trade) = f.sim("GET", &format!("/payments/{paid}"), None).await;
    assert_eq!(trade["refunded"], 1500, "{trade}");
    assert_eq!(trade["refunds"].as_object().unwrap().len(), 3, "{trade}");

    // SIGKILL of a replica with a channel call in flight: another replica takes its order
    // over and finishes it, without the app asking.
    let (s, _) = f
        .sim("PUT", "/faults", Some(json!({"kind": "timeout"})))
        .await;
    assert_eq!(s, 204);
    let hung = no("HUNG", 0);
    let hanging = tokio::spawn({
        let url = format!("http://{}/v1/payments", f.ports[2].api);
        let body = qr(&hung, 800);
        async move { call("POST", &url, Some(body)).await }
    });
    wait_until("the call reached the gateway", async || {
        f.sim("GET", &format!("/payments/{hung}"), None).await.0 == 200
    })
    .await;
    f.kill(2);
    let _ = hanging.await;
    f.sim("DELETE", "/faults", None).await;
    let queries = f.calls("alipay.trade.query").await;
    wait_until("a live replica queries the orphaned order", async || {
        f.calls("alipay.trade.query").await > queries
    })
    .await;
    // The customer pays; the notification goes where the dead replica pointed it (replica 0).
    let (s, v) = f.sim("POST", &format!("/payments/{hung}/pay"), None).await;
    assert_eq!(s, 200, "{v}");
    wait_until("the orphaned order succeeded", async || {
        f.payment(1, &hung).await["status"] == "succeeded"
    })
    .await;

    // A replica comes back (a new process): the channel's rate limit holds for all of them
    // together. A burst of creates over the three replicas: what reaches the channel stays
    // within burst + rate × time.
    f.serve(2).await;
    let started = Instant::now();
    let burst: Vec<_> = (0..30)
        .map(|k| {
            let n = no("BURST", k);
            let mut body = qr(&n, 300);
            body["metadata"] = json!({"lane": "burst"});
            let f = &f;
            async move {
                (
                    n,
                    f.api(k % REPLICAS, "POST", "/v1/payments", Some(body))
                        .await,
                )
            }
        })
        .collect();
    let answers = futures_util::future::join_all(burst).await;
    let elapsed = started.elapsed().as_secs_f64();
    let created = answers.iter().filter(|(_, (s, _))| *s == 201).count();
    let limited = answers.iter().filter(|(_, (s, _))| *s == 429).count();
    assert_eq!(created + limited, answers.len(), "{answers:?}");
    let mut at_channel = 0;
    for (n, _) in &answers {
        if f.sim("GET", &format!("/payments/{n}"), None).await.0 == 200 {
            at_channel += 1;
        }
    }
    assert_eq!(
        at_channel, created,
        "what was answered 201 is what the channel has"
    );
    let bound = BURST + BURST_RATE * elapsed + 1.0;
    assert!(
        (at_channel as f64) <= bound,
        "{at_channel} creates reached the channel in {elapsed:.2} s; the limit allows {bound:.1}"
    );
    assert!(limited > 0, "the limit refused some of the burst");
}
