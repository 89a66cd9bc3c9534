//! The listeners as a client sees them: limits under a low open-files limit (the real binary),
//! problem+json for every malformed request, request ids and the log formats.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::process::{serve_args, Ports, Proc, BIN};
use common::Harness;
use serde_json::{json, Value};

/// An HTTP/1.1 answer, headers lower-cased.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A problem+json with this status and code.
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.json()["code"], code, "{self:?}");
    }
}

/// One request on a fresh connection (`Connection: close`), raw bytes in the path and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("content-type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_answer(&raw)
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

// ---- point 9: no plain-text rejection on any listener ----

#[tokio::test]
async fn malformed_requests_are_problems_on_every_listener() {
    let h = Harness::start().await;
    let (api, notify, admin) = (h.run.api, h.run.notify, h.run.admin);
    let order = r#"{"out_trade_no":"TRAIL000001","amount":1100,"currency":"CNY","method":"alipay","scene":"qr","subject":"t"}"#;
    let run = move |addr, method: &'static str, path: String, body: String| {
        tokio::task::spawn_blocking(move || http(addr, method, &path, &[], &body))
    };
    // Bytes after the JSON body, on every JSON body endpoint.
    for body in [
        format!("{order} xyz"),
        format!("{order}{order}"),
        format!("{order} ,"),
    ] {
        run(api, "POST", "/v1/payments".into(), body)
            .await
            .unwrap()
            .assert_problem(400, "invalid_json");
    }
    let refund = r#"{"out_refund_no":"TRAILREFUND1","amount":1}"#;
    run(
        api,
        "POST",
        "/v1/payments/TRAIL000001/refunds".into(),
        format!("{refund} 1"),
    )
    .await
    .unwrap()
    .assert_problem(400, "invalid_json");
    // Nothing was created by those.
    run(api, "GET", "/v1/payments/TRAIL000001".into(), String::new())
        .await
        .unwrap()
        .assert_problem(404, "not_found");
    // Trailing whitespace is still one JSON document.
    let ok = run(api, "POST", "/v1/payments".into(), format!("{order} \r\n"))
        .await
        .unwrap();
    assert_eq!(ok.status, 201, "{ok:?}");

    // Path segments that are not UTF-8, on every path-parameter endpoint.
    for (method, path, code) in [
        ("GET", "/v1/payments/%FF%FE", "invalid_out_trade_no"),
        ("POST", "/v1/payments/%FF%FE/close", "invalid_out_trade_no"),
        (
            "POST",
            "/v1/payments/%FF%FE/refunds",
            "invalid_out_trade_no",
        ),
        ("GET", "/v1/refunds/%FF%FE", "invalid_out_refund_no"),
    ] {
        run(api, method, path.into(), String::new())
            .await
            .unwrap()
            .assert_problem(400, code);
    }
    run(notify, "POST", "/notify/%FF%FE".into(), "{}".into())
        .await
        .unwrap()
        .assert_problem(400, "invalid_path");
    run(notify, "POST", "/notify/nosuchchannel".into(), "{}".into())
        .await
        .unwrap()
        .assert_problem(404, "not_found");
    run(notify, "GET", "/notify/alipay".into(), String::new())
        .await
        .unwrap()
        .assert_problem(405, "method_not_allowed");
    run(notify, "GET", "/elsewhere".into(), String::new())
        .await
        .unwrap()
        .assert_problem(404, "not_found");
    // The admin listener, with the sandbox control merged in.
    run(
        admin,
        "POST",
        "/sandbox/alipay/payments/%FF%FE/pay".into(),
        String::new(),
    )
    .await
    .unwrap()
    .assert_problem(400, "invalid_path");
    run(admin, "PUT", "/healthz".into(), String::new())
        .await
        .unwrap()
        .assert_problem(405, "method_not_allowed");
    for query in [
        "method=%FF%FE&scene=qr&amount=100",
        "method=alipay&scene=qr&amount=%FF",
        "method=alipay&scene=qr&amount=100&at=%FF",
    ] {
        let a = run(
            admin,
            "GET",
            format!("/admin/explain?{query}"),
            String::new(),
        )
        .await
        .unwrap();
        assert_eq!(a.status, 400, "{query}: {a:?}");
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
    }
    h.run.stop().await;
}

// ---- point 10: request ids, traceparent, log formats (the real binary) ----

/// `payroute serve --sandbox` on the sample configuration under an open-files limit, its
/// stderr in `dir/stderr.log` (see [`Served::logs`]).
struct Served {
    dir: tempfile::TempDir,
    ports: Ports,
    process: Proc,
}

impl Served {
    fn start(nofile: u32, extra: &[&str]) -> Served {
        let (dir, config) = common::config_dir(&common::sample());
        let ports = Ports::free();
        let process = serve(&config, dir.path(), &ports, nofile, extra);
        ready(&ports);
        Served {
            dir,
            ports,
            process,
        }
    }

    /// What it has logged so far.
    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Stops the process, and returns all it logged.
    fn stop(self) -> String {
        drop(self.process);
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap()
    }
}

/// `payroute serve --sandbox` under an open-files limit, its stderr in `dir/stderr.log`.
fn serve(config: &Path, dir: &Path, ports: &Ports, nofile: u32, extra: &[&str]) -> Proc {
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(serve_args(config, &dir.join("data"), ports))
        .arg("--sandbox")
        .args(["--reload-poll-ms", "200"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Proc(child)
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn get(addr: SocketAddr, path: &str) -> Option<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_answer(&raw)
}

fn ready(ports: &Ports) {
    wait_until("readyz", Duration::from_secs(60), || {
        get(ports.admin, "/readyz").is_some_and(|a| a.status == 200)
    });
}

fn create(api: SocketAddr, no: &str, headers: &[(&str, &str)]) -> Answer {
    let body = json!({"out_trade_no": no, "amount": 1100, "currency": "CNY", "method": "alipay", "scene": "qr", "subject": "t"});
    http(api, "POST", "/v1/payments", headers, &body.to_string())
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn json_logs_are_flat_and_carry_the_request_id() {
    let p = Served::start(4096, &["--log-format", "json"]);
    let ports = &p.ports;
    // The app's request id and trace context come back.
    let a = create(
        ports.api,
        "LOGJSON00001",
        &[
            ("x-request-id", "app-req-0001"),
            ("traceparent", TRACEPARENT),
        ],
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.header("x-request-id"), Some("app-req-0001"));
    assert_eq!(a.header("traceparent"), Some(TRACEPARENT));
    // Without one (or with one that is not visible ASCII) an id is generated; a malformed
    // traceparent is ignored, not an error.
    let a = create(
        ports.api,
        "LOGJSON00002",
        &[
            ("x-request-id", "has space"),
            ("traceparent", "00-zz-00f067aa0ba902b7-01"),
        ],
    );
    assert_eq!(a.status, 201, "{a:?}");
    let generated = a
        .header("x-request-id")
        .expect("an id is generated")
        .to_string();
    assert_eq!(generated.len(), 32, "{generated}");
    assert_ne!(generated, "has space");
    assert_eq!(a.header("traceparent"), None);
    // Errors carry it too.
    let a = http(ports.api, "GET", "/v1/payments/%FF", &[], "");
    assert!(a.header("x-request-id").is_some(), "{a:?}");
    // The customer pays the first; the app refunds part of it.
    let paid = http(
        ports.admin,
        "POST",
        "/sandbox/alipay/payments/LOGJSON00001/pay",
        &[],
        "",
    );
    assert_eq!(paid.status, 200, "{paid:?}");
    wait_until("the payment succeeded", Duration::from_secs(10), || {
        http(ports.api, "GET", "/v1/payments/LOGJSON00001", &[], "").json()["status"] == "succeeded"
    });
    let refund = json!({"out_refund_no": "LOGJSONRF01", "amount": 100});
    let a = http(
        ports.api,
        "POST",
        "/v1/payments/LOGJSON00001/refunds",
        &[("x-request-id", "app-req-0003")],
        &refund.to_string(),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let text = p.stop();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{text}");
    for l in &lines {
        assert!(l["message"].is_string(), "message at top level: {l}");
        assert!(l.get("fields").is_none(), "{l}");
    }
    let of = |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["request_id"] == id).collect() };
    let first = of("app-req-0001");
    assert!(!first.is_empty(), "{text}");
    assert!(
        first.iter().all(|l| l["out_trade_no"] == "LOGJSON00001"
            && l["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"),
        "{first:?}"
    );
    let second = of(&generated);
    assert!(!second.is_empty(), "{text}");
    assert!(
        second
            .iter()
            .all(|l| l["out_trade_no"] == "LOGJSON00002" && l.get("trace_id").is_none()),
        "{second:?}"
    );
    // Both creates were routed to Alipay (alipay-all): their lines, the access line included,
    // name the channel; so do the refund's.
    let refund = of("app-req-0003");
    for lines in [&first, &second, &refund] {
        assert!(lines.iter().all(|l| l["channel"] == "alipay"), "{lines:#?}");
        assert!(
            lines.iter().any(|l| l["target"] == "payroute::access"),
            "{lines:#?}"
        );
    }
}

#[test]
fn text_logs_have_no_colour_codes_off_a_terminal() {
    let p = Served::start(4096, &["--log-format", "text"]);
    let ports = &p.ports;
    let a = create(ports.api, "LOGTEXT00001", &[("x-request-id", "text-req-1")]);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.header("x-request-id"), Some("text-req-1"));
    let text = p.stop();
    assert!(!text.contains("\x1b["), "{text}");
    assert!(
        text.lines().any(|l| l.contains("request_id=\"text-req-1\"") || l.contains("request_id=text-req-1")),
        "{text}"
    );
}

// ---- point 5: idle and slow connections under a low open-files limit ----

/// True when the peer has closed the connection (EOF or reset) within `wait`.
fn closed_within(mut s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response (408) before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_and_slow_connections_cannot_starve_the_process() {
    let p = Served::start(
        256,
        &[
            "--notify-header-timeout-ms",
            "8000",
            "--notify-idle-timeout-ms",
            "1000",
            "--notify-body-timeout-ms",
            "1500",
        ],
    );
    let (ports, logs) = (&p.ports, || p.logs());
    let config = p.dir.path().join("routes.yaml");
    let sample = std::fs::read_to_string(&config).unwrap();
    // Slow clients first: headers that never finish, and a body that never finishes.
    let slow_headers: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(ports.notify).unwrap();
            s.write_all(b"POST /notify/alipay HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let slow_bodies: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(ports.notify).unwrap();
            s.write_all(
                b"POST /notify/alipay HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc",
            )
            .unwrap();
            s
        })
        .collect();
    let slow_started = Instant::now();
    // A kept-alive connection that made one request and then says nothing.
    let mut kept = TcpStream::connect(ports.notify).unwrap();
    kept.write_all(b"POST /notify/nosuchchannel HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = kept.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 404"));
    let kept_idle_since = Instant::now();
    // 300 idle connections: more than the process has open files for.
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect_timeout(&ports.notify, Duration::from_secs(2)).ok())
        .collect();
    assert!(idle.len() >= 250, "only {} connected", idle.len());

    // The unified API, the probes and a reload all still work.
    let a = create(ports.api, "SATURATED001", &[]);
    assert_eq!(a.status, 201, "{a:?}\n{}", logs());
    for probe in ["/healthz", "/readyz"] {
        let a = get(ports.admin, probe).unwrap_or_else(|| panic!("{probe} answers\n{}", logs()));
        assert_eq!(a.status, 200, "{probe}: {a:?}");
    }
    let hash = || {
        get(ports.admin, "/admin/routes")
            .map(|a| a.json()["hash"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let edited = sample.replace("rate: \"0.38%\"", "rate: \"0.37%\"");
    assert_ne!(edited, sample);
    std::fs::write(&config, &edited).unwrap();
    let want = payroute::crypto::sha256_hex(edited.as_bytes());
    wait_until("the reload", Duration::from_secs(5), || hash() == want);
    let routes = get(ports.admin, "/admin/routes").unwrap().json();
    assert!(
        !routes["reload"]
            .to_string()
            .to_lowercase()
            .contains("too many"),
        "{routes}"
    );
    assert!(
        slow_started.elapsed() < Duration::from_secs(8),
        "the checks ran while the slow connections were still open"
    );
    // Connections over the cap were closed at once, not kept.
    let refused = idle
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(1)))
        .count();
    assert!(refused >= 150, "only {refused} of 300 closed at the cap");
    assert!(logs().contains("connection limit reached"), "{}", logs());

    // Every timeout closes its connections.
    assert!(
        closed_within(&kept, Duration::from_secs(1) + Duration::from_millis(1500)),
        "kept-alive connection not closed after its idle timeout"
    );
    assert!(kept_idle_since.elapsed() >= Duration::from_millis(900));
    for s in &slow_bodies {
        let left = Duration::from_millis(1500 + 1500).saturating_sub(slow_started.elapsed());
        assert!(
            closed_within(s, left),
            "slow body not cut after its timeout"
        );
    }
    for s in slow_headers.iter().chain(idle.iter()) {
        let left = Duration::from_millis(8000 + 2000).saturating_sub(slow_started.elapsed());
        assert!(
            closed_within(s, left),
            "slow or idle connection still open after the header timeout"
        );
    }
    // And the process is still fine.
    let a = create(ports.api, "SATURATED002", &[]);
    assert_eq!(a.status, 201, "{a:?}");
    assert!(!logs().contains("Too many open files"), "{}", logs());
    drop(p);
}
