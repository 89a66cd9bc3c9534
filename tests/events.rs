//! Telling the app (#14), end to end: the real binary (`serve --sandbox`) delivers its events to
//! a real receiver that verifies every delivery with the official Standard Webhooks library
//! (tests/events/receiver.py). Success (and late-payment anomalies), retries after 5xx and
//! timeouts, ordering per order, secret rotation, SIGKILL before and during the delivery,
//! SIGTERM with a hung endpoint, a receiver down for a while, giving up and redelivery, the
//! metrics, the events feed and the payments list.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
#[path = "events/receiver.rs"]
mod receiver;

use bytes::Bytes;
use common::order_no;
use common::process::{json_request, serve_args, wait_until, Ports, Proc, BIN};
use payroute::channels::client::ChannelClient;
use receiver::{library, new_secret, Line, Receiver};
use serde_json::{json, Value};

/// Sends a request; answers of the unified API are checked against the OpenAPI document.
async fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = ChannelClient::new(Duration::from_secs(2), Duration::from_secs(20));
    let resp = client
        .send(json_request(method, url, body))
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let path = url.parse::<http::Uri>().unwrap().path().to_string();
    if path.starts_with("/v1/") {
        common::openapi::assert_documented(method, &path, resp.status, &resp.headers, &resp.body);
    }
    let json = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status, json)
}

/// Writes the secrets file the way a rotation should: whole, by renaming a finished file.
fn write_secrets(path: &Path, secrets: &[&str]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, secrets.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `payroute serve --sandbox` delivering events to `url`, restartable on the same data
/// directory and ports.
struct Payroute {
    proc: Option<Proc>,
    args: Vec<OsString>,
    log: PathBuf,
    api: String,
    admin: String,
}

impl Payroute {
    /// Short retries (100 ms, doubling, at most 500 ms) keep the tests quick. Ports free a
    /// moment ago can be taken before payroute binds them (by another test's outgoing
    /// connection): then it starts again on other ports.
    async fn start(dir: &Path, url: &str, secrets: &Path, extra: &[&str]) -> Payroute {
        let mut last = String::new();
        for _ in 0..3 {
            let ports = Ports::free();
            let mut args = serve_args(&common::sample_config(), &dir.join("data"), &ports);
            args.extend(["--sandbox".into(), "--log-format".into(), "text".into()]);
            args.extend(["--events-url".into(), url.into()]);
            args.extend(["--events-secret-file".into(), secrets.into()]);
            for (flag, ms) in [
                ("--events-retry-ms", "100"),
                ("--events-retry-max-ms", "500"),
            ] {
                args.extend([flag.into(), ms.into()]);
            }
            args.extend(extra.iter().map(OsString::from));
            let mut p = Payroute {
                proc: None,
                args,
                log: dir.join("payroute.log"),
                api: format!("http://{}", ports.api),
                admin: format!("http://{}", ports.admin),
            };
            match p.run().await {
                Ok(()) => return p,
                Err(log) if log.contains("cannot listen") => last = log,
                Err(log) => panic!("payroute exited at start:\n{log}"),
            }
        }
        panic!("payroute could not listen on three sets of free ports:\n{last}");
    }

    /// Starts the process and waits until it is ready; `Err` with its log when it exits first.
    async fn run(&mut self) -> Result<(), String> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        let url = format!("{}/readyz", self.admin);
        let mut exited = false;
        wait_until("payroute ready", async || {
            if let Some(p) = self.proc.as_mut() {
                if p.0.try_wait().ok().flatten().is_some() {
                    exited = true;
                    return true;
                }
            }
            let req = http::Request::get(&url).body(Bytes::new()).unwrap();
            let client = ChannelClient::new(Duration::from_millis(200), Duration::from_secs(2));
            client.send(req).await.is_ok_and(|r| r.status == 200)
        })
        .await;
        if exited {
            self.proc = None;
            return Err(std::fs::read_to_string(&self.log).unwrap_or_default());
        }
        Ok(())
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM; returns how long the drain took and the exit code.
    fn sigterm(&mut self) -> (Duration, Option<i32>) {
        let mut p = self.proc.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &p.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let start = Instant::now();
        let code = p.0.wait().unwrap().code();
        (start.elapsed(), code)
    }

    /// Starts again on the same data directory and ports.
    async fn restart(&mut self) {
        self.kill9();
        if let Err(log) = self.run().await {
            panic!("payroute exited at restart:\n{log}");
        }
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(method, &format!("{}{path}", self.api), body).await
    }

    /// A QR payment the sample rules send to Alipay.
    async fn create(&self, no: &str) -> Value {
        let body = json!({"out_trade_no": no, "amount": 1999, "currency": "CNY",
                          "method": "alipay", "scene": "qr", "subject": "events"});
        let (s, v) = self.api("POST", "/v1/payments", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        v
    }

    /// The customer pays; returns the payment once succeeded.
    async fn pay(&self, no: &str) -> Value {
        let url = format!("{}/sandbox/alipay/payments/{no}/pay", self.admin);
        let (s, v) = call("POST", &url, None).await;
        assert_eq!(s, 200, "{v}");
        let mut last = Value::Null;
        wait_until("the payment succeeded", async || {
            last = self.api("GET", &format!("/v1/payments/{no}"), None).await.1;
            last["status"] == "succeeded"
        })
        .await;
        last
    }

    async fn create_paid(&self, no: &str) -> Value {
        self.create(no).await;
        self.pay(no).await
    }

    /// Refunds 5 yuan; returns the refund (settled at once by the sandbox).
    async fn refund(&self, no: &str, refund_no: &str) -> Value {
        let body = json!({"out_refund_no": refund_no, "amount": 500});
        let path = format!("/v1/payments/{no}/refunds");
        let (s, v) = self.api("POST", &path, Some(body)).await;
        assert_eq!((s, &v["status"]), (201, &json!("succeeded")), "{v}");
        v
    }

    async fn close(&self, no: &str) -> Value {
        let path = format!("/v1/payments/{no}/close");
        let (s, v) = self.api("POST", &path, None).await;
        assert_eq!((s, &v["status"]), (200, &json!("closed")), "{v}");
        v
    }

    /// Every item of the list at `endpoint` (filters in `query`, each `&name=value`), read
    /// `limit` at a time with `after=next_cursor`.
    async fn list(&self, endpoint: &str, query: &str, limit: usize) -> Vec<Value> {
        let (mut all, mut after) = (Vec::new(), String::new());
        loop {
            let path = format!("{endpoint}?limit={limit}{query}{after}");
            let (s, page) = self.api("GET", &path, None).await;
            assert_eq!(s, 200, "{page}");
            let data = page["data"].as_array().expect("data");
            assert!(data.len() <= limit);
            all.extend(data.iter().cloned());
            if page["has_more"] != true {
                return all;
            }
            let cursor = page["next_cursor"].as_str().expect("next_cursor");
            after = format!("&after={cursor}");
        }
    }

    /// The events feed, whole.
    async fn feed(&self, query: &str, limit: usize) -> Vec<Value> {
        self.list("/v1/events", query, limit).await
    }

    /// The `out_trade_no`s of the payments list, whole.
    async fn payments(&self, query: &str, limit: usize) -> Vec<String> {
        let all = self.list("/v1/payments", query, limit).await;
        all.iter()
            .map(|p| p["out_trade_no"].as_str().unwrap().to_string())
            .collect()
    }

    /// A series of `/metrics` (labels as exposed, alphabetical), 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let req = http::Request::get(format!("{}/metrics", self.admin))
            .body(Bytes::new())
            .unwrap();
        let client = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(5));
        let text = String::from_utf8(client.send(req).await.unwrap().body.to_vec()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_metric(&self, series: &str, ok: impl Fn(f64) -> bool) {
        let mut last = 0.0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            last = self.metric(series).await;
            if ok(last) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{series} stayed at {last}");
    }
}

impl Drop for Payroute {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(30);
            eprintln!("payroute log (last lines):\n{}", lines[from..].join("\n"));
        }
        self.kill9();
    }
}

fn deliveries(result: &str, event_type: &str) -> String {
    format!("payroute_event_deliveries_total{{result=\"{result}\",type=\"{event_type}\"}}")
}

/// A test's world: a receiver holding one secret (`app`) and payroute delivering to it.
struct World {
    // Dropped first: payroute stops delivering before the receiver goes.
    payroute: Payroute,
    receiver: Receiver,
    _dir: tempfile::TempDir,
}

impl World {
    /// `receiver_up`: start the receiver before payroute (else only its port is reserved).
    async fn start(test: &str, receiver_up: bool, extra: &[&str]) -> Option<World> {
        let lib = library(test)?;
        let dir = tempfile::tempdir().unwrap();
        let secret = new_secret();
        let secrets = dir.path().join("events.secret");
        write_secrets(&secrets, &[&secret]);
        let mut receiver = Receiver::new(&lib, dir.path(), &[("app", &secret)]);
        if receiver_up {
            receiver.start().await;
        } else {
            receiver.reserve_port();
        }
        let payroute = Payroute::start(dir.path(), &receiver.url(), &secrets, extra).await;
        Some(World {
            payroute,
            receiver,
            _dir: dir,
        })
    }

    /// Waits until an event of `event_type` about order `no` is delivered; returns its line.
    /// The event is as the OpenAPI document's webhook describes it.
    async fn delivered(&self, no: &str, event_type: &str) -> Line {
        let mut found = None;
        wait_until(&format!("{event_type} of {no} delivered"), async || {
            found = self
                .receiver
                .delivered()
                .into_iter()
                .find(|l| l.out_trade_no() == no && l.event_type() == event_type);
            found.is_some()
        })
        .await;
        let line = found.unwrap();
        let event = line.event.as_ref().expect("verified");
        common::openapi::spec()
            .check_schema("Event", event)
            .unwrap();
        line
    }
}

/// The position of the first line matching `f`.
fn first(lines: &[Line], f: impl Fn(&Line) -> bool) -> usize {
    lines.iter().position(f).expect("a matching receiver line")
}

#[tokio::test]
async fn deliveries_are_verified_and_carry_the_resource_as_the_api_shows_it() {
    let Some(w) = World::start("events: success", true, &[]).await else {
        return;
    };
    let p = &w.payroute;

    // Paid: payment.succeeded, verified by the library, with the payment as GET shows it.
    let no = order_no("EVOK");
    let paid = p.create_paid(&no).await;
    let line = w.delivered(&no, "payment.succeeded").await;
    assert_eq!(line.verified_by, ["app"]);
    let event = line.event.clone().unwrap();
    assert_eq!(line.webhook_id.as_deref(), Some(line.event_id()));
    assert!(line.event_id().starts_with("evt_"), "{event}");
    assert!(event["created_at"].is_string(), "{event}");
    assert_eq!(event["data"], paid);

    // Refunded: refund.succeeded after it, with the refund as GET shows it.
    let refund_no = order_no("EVOKR");
    p.refund(&no, &refund_no).await;
    let line = w.delivered(&no, "refund.succeeded").await;
    let (_, refund) = p
        .api("GET", &format!("/v1/refunds/{refund_no}"), None)
        .await;
    assert_eq!(line.event.as_ref().unwrap()["data"], refund);

    // Closed: payment.closed.
    let closed_no = order_no("EVCL");
    p.create(&closed_no).await;
    let closed = p.close(&closed_no).await;
    let line = w.delivered(&closed_no, "payment.closed").await;
    assert_eq!(line.event.as_ref().unwrap()["data"], closed);

    // The customer pays the closed order anyway (an unscanned Alipay code stays payable):
    // payment.anomaly, and again once the automatic refund settled.
    let url = format!("{}/sandbox/alipay/payments/{closed_no}/pay", p.admin);
    assert_eq!(call("POST", &url, None).await.0, 200);
    let mut late = Value::Null;
    wait_until("the late payment refunded", async || {
        late = p
            .api("GET", &format!("/v1/payments/{closed_no}"), None)
            .await
            .1;
        late["late_payments"][0]["refund_status"] == "succeeded"
    })
    .await;
    wait_until("two payment.anomaly delivered", async || {
        w.receiver.delivered().len() == 5
    })
    .await;
    let anomalies: Vec<Value> = w.receiver.lines()[3..]
        .iter()
        .map(|l| l.event.clone().unwrap())
        .collect();
    assert!(anomalies.iter().all(|e| e["type"] == "payment.anomaly"));
    let found = &anomalies[0]["data"];
    assert_eq!(found["anomalies"], json!(["paid_after_close"]), "{found}");
    assert_eq!(found["late_payments"][0]["refund_status"], "pending");
    assert_eq!(anomalies[1]["data"], late);

    // Every request verified; each event delivered once, in the feed's order.
    let lines = w.receiver.lines();
    assert!(lines.iter().all(|l| l.delivered()), "{lines:?}");
    let got: Vec<Value> = lines.iter().map(|l| l.event.clone().unwrap()).collect();
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "payment.succeeded",
            "refund.succeeded",
            "payment.closed",
            "payment.anomaly",
            "payment.anomaly"
        ]
    );

    // The feed: ordered, resumable with after=next_cursor, the same bodies as delivered.
    let feed = p.feed("", 1).await;
    assert_eq!(feed, got);
    assert_eq!(p.feed("", 500).await, feed);
    let (_, page) = p.api("GET", "/v1/events?limit=2", None).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"].as_array().unwrap()[..], feed[..2]);
    let rest = p
        .api("GET", &format!("/v1/events?after={cursor}"), None)
        .await
        .1;
    assert_eq!(rest["data"].as_array().unwrap()[..], feed[2..]);
    assert_eq!(rest["has_more"], false);
    // Resuming at the end gives nothing new, and the same cursor back.
    let end = rest["next_cursor"].as_str().unwrap().to_string();
    let none = p
        .api("GET", &format!("/v1/events?after={end}"), None)
        .await
        .1;
    assert_eq!(none["data"], json!([]));
    assert_eq!(none["next_cursor"], json!(end));

    // Delivered counts; nothing left waiting.
    for (t, n) in [
        ("payment.succeeded", 1.0),
        ("refund.succeeded", 1.0),
        ("payment.closed", 1.0),
        ("payment.anomaly", 2.0),
    ] {
        p.wait_metric(&deliveries("delivered", t), |v| v == n).await;
    }
    p.wait_metric("payroute_events_pending", |v| v == 0.0).await;
    assert_eq!(p.metric("payroute_events_failed").await, 0.0);
    assert_eq!(
        p.metric("payroute_events_oldest_pending_age_seconds").await,
        0.0
    );
}

#[tokio::test]
async fn deliveries_are_retried_after_a_timeout_and_5xx_and_keep_the_order_of_their_order() {
    let extra = ["--events-timeout-ms", "300"];
    let Some(w) = World::start("events: retries", true, &extra).await else {
        return;
    };
    let p = &w.payroute;
    // The first delivery is taken and never answered, the next ones get 503.
    w.receiver
        .control(json!({"hang": 1, "hang_ms": 5000, "fail": -1}))
        .await;
    let no = order_no("EVRT");
    p.create_paid(&no).await;
    let failed_attempts = || {
        w.receiver
            .lines()
            .iter()
            .filter(|l| l.event_type() == "payment.succeeded" && l.answer == 503)
            .count()
    };
    wait_until("a 503 after the timeout", async || failed_attempts() > 0).await;

    // The refund happens while its payment's event is being retried: it waits its turn.
    p.refund(&no, &order_no("EVRTR")).await;
    let before = failed_attempts();
    wait_until("two more retries", async || failed_attempts() >= before + 2).await;
    w.receiver.control(json!({"fail": 0})).await;
    w.delivered(&no, "refund.succeeded").await;

    let lines = w.receiver.lines();
    assert!(lines.iter().all(|l| l.verified_by == ["app"]), "{lines:?}");
    let payment: Vec<&Line> = lines
        .iter()
        .filter(|l| l.event_type() == "payment.succeeded")
        .collect();
    // The same event every time: hang (timed out), 503…, then 200.
    assert_eq!(payment[0].answer, "hang");
    assert!(payment[1..payment.len() - 1]
        .iter()
        .all(|l| l.answer == 503));
    assert!(payment.last().unwrap().delivered());
    assert!(payment
        .iter()
        .all(|l| l.webhook_id == payment[0].webhook_id));
    // The timeout, not the receiver's 5 s hang, ended the first attempt.
    assert!(payment[1].at - payment[0].at < 3.0, "{payment:?}");
    // Nothing of the refund was sent before its payment's event was delivered.
    let delivered = first(&lines, |l| {
        l.event_type() == "payment.succeeded" && l.delivered()
    });
    let refund = first(&lines, |l| l.event_type() == "refund.succeeded");
    assert!(delivered < refund, "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.delivered()).count(),
        2,
        "{lines:?}"
    );

    // Counted once the answer is in (the receiver logs before it answers).
    let retries = (payment.len() - 1) as f64;
    p.wait_metric(&deliveries("retry", "payment.succeeded"), |v| v == retries)
        .await;
    p.wait_metric(&deliveries("delivered", "payment.succeeded"), |v| v == 1.0)
        .await;
    p.wait_metric(&deliveries("delivered", "refund.succeeded"), |v| v == 1.0)
        .await;
}

#[tokio::test]
async fn a_rotated_secret_verifies_with_the_old_and_the_new_one_during_the_overlap() {
    let Some(lib) = library("events: rotation") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (new_secret(), new_secret());
    let secrets = dir.path().join("events.secret");
    write_secrets(&secrets, &[&old]);
    // Two receivers in one: each delivery is verified with the old secret alone and with the
    // new one alone.
    let mut receiver = Receiver::new(&lib, dir.path(), &[("old", &old), ("new", &new)]);
    receiver.start().await;
    let p = Payroute::start(dir.path(), &receiver.url(), &secrets, &[]).await;
    let paid = async |prefix: &str| {
        let no = order_no(prefix);
        p.create_paid(&no).await;
        let mut line = None;
        wait_until("payment.succeeded delivered", async || {
            line = receiver
                .delivered()
                .into_iter()
                .find(|l| l.out_trade_no() == no);
            line.is_some()
        })
        .await;
        line.unwrap()
    };

    let line = paid("EVROT1").await;
    assert_eq!(line.verified_by, ["old"]);
    assert_eq!(line.rejected_by["new"], "No matching signature found");

    // The rotation starts: the new secret is added, the old one kept (no restart).
    write_secrets(&secrets, &[&new, &old]);
    let line = paid("EVROT2").await;
    assert_eq!(line.verified_by, ["new", "old"]);

    // Every receiver has the new secret: the old one is dropped.
    write_secrets(&secrets, &[&new]);
    let line = paid("EVROT3").await;
    assert_eq!(line.verified_by, ["new"]);
    assert_eq!(line.rejected_by["old"], "No matching signature found");
}

#[tokio::test]
async fn an_event_is_delivered_after_a_sigkill_between_the_change_and_its_delivery() {
    // The receiver is down: the event is written, its delivery fails, then payroute is killed.
    let Some(mut w) = World::start("events: SIGKILL", false, &[]).await else {
        return;
    };
    let no = order_no("EVK9");
    w.payroute.create_paid(&no).await;
    let mut pending = Vec::new();
    wait_until("a failed attempt", async || {
        pending = w.payroute.feed("&delivery=pending", 50).await;
        pending
            .first()
            .is_some_and(|e| e["delivery"]["attempts"].as_u64() > Some(0))
    })
    .await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap().to_string();
    w.payroute.restart().await;
    w.receiver.start().await;
    let line = w.delivered(&no, "payment.succeeded").await;
    assert_eq!(line.event_id(), id);
    assert_eq!(line.webhook_id.as_deref(), Some(id.as_str()));

    // Killed while the receiver holds the delivery unanswered: sent again after the restart
    // (at least once: the receiver sees it twice, with the same id).
    w.receiver
        .control(json!({"hang": 1, "hang_ms": 20000}))
        .await;
    let no = order_no("EVK9B");
    w.payroute.create_paid(&no).await;
    wait_until("the delivery in flight", async || {
        w.receiver.lines().iter().any(|l| l.out_trade_no() == no)
    })
    .await;
    w.payroute.restart().await;
    let line = w.delivered(&no, "payment.succeeded").await;
    let seen: Vec<Line> = w
        .receiver
        .lines()
        .into_iter()
        .filter(|l| l.out_trade_no() == no)
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].answer, "hang");
    assert_eq!(seen[0].webhook_id, line.webhook_id);
    wait_until("nothing pending", async || {
        w.payroute.feed("&delivery=pending", 50).await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_receives_everything_in_order_per_order() {
    let Some(mut w) = World::start("events: receiver down", false, &[]).await else {
        return;
    };
    let p = &w.payroute;
    let mut orders = Vec::new();
    for i in 0..3 {
        let no = order_no(&format!("EVDN{i}"));
        p.create_paid(&no).await;
        p.refund(&no, &order_no(&format!("EVDN{i}R"))).await;
        orders.push(no);
    }
    let closed = order_no("EVDNC");
    p.create(&closed).await;
    p.close(&closed).await;
    let feed = p.feed("", 500).await;
    assert_eq!(feed.len(), 7);
    // The same orders from the payments list: newest first, resumable, filtered.
    let newest_first: Vec<&str> = [closed.as_str()]
        .into_iter()
        .chain(orders.iter().rev().map(String::as_str))
        .collect();
    assert_eq!(p.payments("", 1).await, newest_first);
    assert_eq!(
        p.payments("&status=partially_refunded", 2).await,
        newest_first[1..]
    );
    assert_eq!(
        p.payments("&status=closed&channel=alipay", 50).await,
        [closed.as_str()]
    );

    // The outbox grows and ages while nobody answers; attempts are retried.
    p.wait_metric("payroute_events_pending", |v| v == 7.0).await;
    p.wait_metric("payroute_events_oldest_pending_age_seconds", |v| v >= 1.0)
        .await;
    p.wait_metric(&deliveries("retry", "payment.succeeded"), |v| v >= 3.0)
        .await;
    assert_eq!(
        p.metric(&deliveries("retry", "refund.succeeded")).await,
        0.0
    );

    w.receiver.start().await;
    wait_until("every event delivered", async || {
        let ids: std::collections::HashSet<String> = w
            .receiver
            .delivered()
            .iter()
            .map(|l| l.event_id().to_string())
            .collect();
        ids.len() == feed.len()
    })
    .await;
    let lines = w.receiver.lines();
    assert!(lines.iter().all(|l| l.verified_by == ["app"]));
    for no in &orders {
        let paid = first(&lines, |l| {
            l.out_trade_no() == no && l.event_type() == "payment.succeeded"
        });
        let refunded = first(&lines, |l| {
            l.out_trade_no() == no && l.event_type() == "refund.succeeded"
        });
        assert!(paid < refunded, "{no}: {lines:?}");
    }
    // What arrived is what the feed holds.
    for e in &feed {
        let line = lines
            .iter()
            .find(|l| l.event_id() == e["id"])
            .expect("delivered");
        assert_eq!(line.event.as_ref(), Some(e));
    }
    p.wait_metric("payroute_events_pending", |v| v == 0.0).await;
    p.wait_metric("payroute_events_oldest_pending_age_seconds", |v| v == 0.0)
        .await;
    p.wait_metric(&deliveries("delivered", "refund.succeeded"), |v| v == 3.0)
        .await;
}

#[tokio::test]
async fn a_given_up_delivery_is_listed_and_redelivered_by_ops() {
    // Retries stop at once: the first failure gives up.
    let extra = ["--events-give-up-hours", "0"];
    let Some(w) = World::start("events: give up", true, &extra).await else {
        return;
    };
    let p = &w.payroute;
    w.receiver.control(json!({"fail": -1})).await;
    let no = order_no("EVGU");
    p.create_paid(&no).await;
    p.refund(&no, &order_no("EVGUR")).await;

    // Given up, and listed for ops; the refund's event waits behind it, never attempted.
    let mut failed = Vec::new();
    wait_until("a failed delivery", async || {
        failed = p.feed("&delivery=failed", 1).await;
        !failed.is_empty()
    })
    .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let e = &failed[0];
    assert_eq!(e["type"], "payment.succeeded");
    assert_eq!(e["delivery"]["state"], "failed", "{e}");
    assert_eq!(e["delivery"]["attempts"], 1, "{e}");
    let error = e["delivery"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("503"), "{e}");
    let pending = p.feed("&delivery=pending", 50).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["type"], "refund.succeeded");
    assert_eq!(pending[0]["delivery"]["attempts"], 0);
    p.wait_metric("payroute_events_failed", |v| v == 1.0).await;
    p.wait_metric("payroute_events_pending", |v| v == 1.0).await;
    assert_eq!(
        p.metric(&deliveries("failed", "payment.succeeded")).await,
        1.0
    );
    assert_eq!(w.receiver.lines().len(), 1);

    // The app works again; ops redeliver: the payment's event, then the refund's in its turn.
    w.receiver.control(json!({"fail": 0})).await;
    let id = e["id"].as_str().unwrap();
    let (s, v) = p
        .api("POST", &format!("/v1/events/{id}/redeliver"), None)
        .await;
    assert_eq!((s, &v["id"]), (202, &e["id"]), "{v}");
    let refunded = w.delivered(&no, "refund.succeeded").await;
    let lines = w.receiver.delivered();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].webhook_id.as_deref(), Some(id));
    assert_eq!(refunded.webhook_id.as_deref(), pending[0]["id"].as_str());
    p.wait_metric("payroute_events_failed", |v| v == 0.0).await;
    assert!(p.feed("&delivery=failed", 50).await.is_empty());

    // A delivered event can be sent again, with the same id; an unknown id is not found.
    let (s, _) = p
        .api("POST", &format!("/v1/events/{id}/redeliver"), None)
        .await;
    assert_eq!(s, 202);
    wait_until("the second delivery", async || {
        w.receiver
            .delivered()
            .iter()
            .filter(|l| l.event_id() == id)
            .count()
            == 2
    })
    .await;
    for unknown in ["evt_nope_000000000001_x".to_string(), format!("{id}0")] {
        let path = format!("/v1/events/{unknown}/redeliver");
        assert_eq!(p.api("POST", &path, None).await.0, 404, "{unknown}");
    }
}

#[tokio::test]
async fn a_hung_endpoint_does_not_hold_up_a_sigterm_and_its_event_is_sent_after_the_restart() {
    // The delivery would wait 30 s for an answer; the drain allows 5 s.
    let extra = ["--events-timeout-ms", "30000", "--shutdown-grace-secs", "5"];
    let Some(mut w) = World::start("events: SIGTERM", true, &extra).await else {
        return;
    };
    w.receiver
        .control(json!({"hang": 1, "hang_ms": 60000}))
        .await;
    let no = order_no("EVTERM");
    w.payroute.create_paid(&no).await;
    wait_until("the delivery in flight", async || {
        !w.receiver.lines().is_empty()
    })
    .await;
    let (took, code) = w.payroute.sigterm();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "the drain took {took:?}");
    // Abandoned, not lost: sent again once payroute is back.
    w.payroute.restart().await;
    let line = w.delivered(&no, "payment.succeeded").await;
    assert_eq!(w.receiver.lines()[0].webhook_id, line.webhook_id);
}
