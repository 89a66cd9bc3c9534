//! Load benchmark of payroute (issue 8): `cargo bench --bench load`.
//!
//! Starts `payroute sandbox` (the Alipay simulator, its own process) and `payroute serve` with
//! one Alipay channel pointed at it, then measures on loopback:
//!
//! - saturation: payment creations per second with N keep-alive connections (closed loop);
//! - latency at half that rate (open loop, timed from each request's scheduled send time, so a
//!   stall is not hidden by the generator waiting for it), and the same for pre-signed requests
//!   sent straight to the simulator; the difference is what payroute adds;
//! - payroute's CPU time per payment, in units of one RSA-2048 signature plus one verification;
//! - peak RSS, and how long a rewritten routes.yaml takes to become visible on the admin listener;
//! - for context: the simulator's and the generator's CPU per payment, payroute's threads and
//!   context switches, the ledger's size per payment, and the disk's fsync and redb commit rates.
//!
//! Results are printed as a table and written to `<target>/bench/load-<unix-ts>.json` and
//! `<target>/bench/latest.json`. Flags: `--quick` (short phases, for smoke runs), `--conns N`
//! (skip the connection-count probe), `--load F` (latency phases at F × saturation instead of
//! 0.5), `--perf` (run `perf record -g` on payroute during the
//! saturation window, into `<target>/bench/perf.data`), `--compare A.json B.json`. Unknown flags
//! (cargo passes `--bench`) are ignored.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use payroute::channels::alipay::{Alipay, AlipayConfig};
use payroute::channels::{Channel as _, Op, PaymentIntent, Prepared};
use payroute::crypto::{PrivateKey, PublicKey};
use payroute::domain::{PayMethod, Scene};

/// The payroute binary, built by cargo in the bench profile.
const PAYROUTE_BIN: &str = env!("CARGO_BIN_EXE_payroute");
/// The repository root (keys are read from `sandbox/keys/` there).
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// The Alipay app id of the bench channel (any value both sides agree on).
const APP_ID: &str = "2021000000000001";
/// The channel name in the bench routes.yaml.
const CHANNEL: &str = "alipay";
/// Upper bound of any single HTTP exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The simulator's platform key as payroute's routes.yaml (in `<tmp>/config/`) refers to it.
const PLATFORM_KEY_REF: &str = "../sandbox/alipay_platform_public.pem";
/// Connection counts tried by the saturation probe.
const PROBE_CONNS: &[usize] = &[16, 32, 64];
/// Targets of issue 8.
const TARGET_CPU_RATIO: f64 = 1.3;
const TARGET_RSS_MIB: f64 = 40.0;
const TARGET_RELOAD_MS: f64 = 100.0;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(Mode::Compare(a, b)) => compare(&a, &b),
        Ok(Mode::Run(opts)) => run(&opts),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// What was asked for on the command line.
enum Mode {
    Run(Opts),
    Compare(PathBuf, PathBuf),
}

/// Options of a measuring run.
struct Opts {
    quick: bool,
    conns: Option<usize>,
    perf: bool,
    /// The latency phases' arrival rate as a fraction of saturation (default one half).
    load: f64,
}

/// Durations of the phases (shorter with `--quick`).
struct Phases {
    warmup: Duration,
    probe: Duration,
    saturation: Duration,
    latency: Duration,
    reloads: usize,
    rsa_iterations: u32,
}

impl Phases {
    fn new(quick: bool) -> Self {
        if quick {
            Phases {
                warmup: Duration::from_millis(500),
                probe: Duration::from_secs(1),
                saturation: Duration::from_secs(3),
                latency: Duration::from_secs(3),
                reloads: 2,
                rsa_iterations: 100,
            }
        } else {
            Phases {
                warmup: Duration::from_secs(2),
                probe: Duration::from_secs(3),
                saturation: Duration::from_secs(15),
                latency: Duration::from_secs(15),
                reloads: 5,
                rsa_iterations: 500,
            }
        }
    }
}

fn parse_args(args: &[String]) -> anyhow::Result<Mode> {
    let mut opts = Opts {
        quick: false,
        conns: None,
        perf: false,
        load: 0.5,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--compare" => {
                let (Some(a), Some(b)) = (args.get(i + 1), args.get(i + 2)) else {
                    bail!("--compare takes two JSON files");
                };
                return Ok(Mode::Compare(a.into(), b.into()));
            }
            "--quick" => opts.quick = true,
            "--perf" => opts.perf = true,
            "--conns" => {
                let n = args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
                match n {
                    Some(n) if (1..=1024).contains(&n) => opts.conns = Some(n),
                    _ => bail!("--conns takes a number from 1 to 1024"),
                }
                i += 1;
            }
            "--load" => {
                let f = args.get(i + 1).and_then(|v| v.parse::<f64>().ok());
                match f {
                    Some(f) if f > 0.0 && f <= 1.0 => opts.load = f,
                    _ => bail!("--load takes a fraction of saturation, e.g. 0.25"),
                }
                i += 1;
            }
            // `cargo bench` passes `--bench`, and maybe a filter: not ours.
            _ => {}
        }
        i += 1;
    }
    Ok(Mode::Run(opts))
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process that is killed (by its pid) and reaped when dropped, also on error or panic.
struct ChildGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of the child's log when it has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of its log:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn spawn(name: &'static str, args: &[String], log: PathBuf) -> anyhow::Result<ChildGuard> {
    let file = std::fs::File::create(&log)?;
    let child = Command::new(PAYROUTE_BIN)
        .args(args)
        .env("PAYROUTE_LOG", "warn")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {PAYROUTE_BIN}"))?;
    Ok(ChildGuard { name, child, log })
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `ready` every 20 ms until it holds, the child dies, or `limit` passes.
fn wait_until(
    child: &mut ChildGuard,
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        child.check_alive()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "{what} not ready after {limit:?}; end of log:\n{}",
        log_tail(&child.log)
    )
}

/// The bench's routes.yaml: one Alipay channel, one rule named `rule` routing alipay/qr to it.
fn routes_yaml(endpoint: &str, public_key: &str, keys: &str, rule: &str) -> String {
    format!(
        "channels:\n  {CHANNEL}:\n    kind: alipay\n    endpoint: {endpoint}\n    app_id: \"{APP_ID}\"\n    \
         app_private_key: {{ file: {keys}/alipay_app_private.pem }}\n    \
         alipay_public_key: {{ file: {public_key} }}\n    methods: [alipay]\n    scenes: [qr]\n    \
         fee: {{ rate: \"0.6%\" }}\n    timeouts: {{ connect_ms: 3000, request_ms: 10000 }}\n\
         rules:\n  - name: {rule}\n    match: {{ method: [alipay], scene: [qr] }}\n    channels: [{CHANNEL}]\n"
    )
}

/// Both processes, their addresses and files.
struct Setup {
    // Field order = drop order: payroute stops before the simulator, the directory goes last.
    serve: ChildGuard,
    sandbox: ChildGuard,
    api: SocketAddr,
    admin: SocketAddr,
    notify: SocketAddr,
    config: PathBuf,
    endpoint: String,
    platform_public: PathBuf,
    app_private: PathBuf,
    dir: tempfile::TempDir,
}

fn start_processes() -> anyhow::Result<Setup> {
    // On the disk the ledger would use (not tmpfs), so that fsync costs what it costs.
    let dir = tempfile::Builder::new()
        .prefix("payroute-bench-")
        .tempdir()?;
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys)?;
    let app_private = keys.join("alipay_app_private.pem");
    let repo_keys = Path::new(MANIFEST_DIR).join("sandbox/keys");
    std::fs::copy(repo_keys.join("alipay_app_private.pem"), &app_private)?;
    std::fs::copy(
        repo_keys.join("alipay_public.pem"),
        keys.join("alipay_public.pem"),
    )?;

    // The simulator reads the merchant key from a routes.yaml; the endpoint is not used there.
    let sandbox_cfg = dir.path().join("sandbox-routes.yaml");
    std::fs::write(
        &sandbox_cfg,
        routes_yaml(
            "http://127.0.0.1:9/gateway.do",
            "keys/alipay_public.pem",
            "keys",
            "sim",
        ),
    )?;
    let sim_dir = dir.path().join("sandbox");
    let control = loopback(free_port()?);
    let notify = loopback(free_port()?);
    let mut sandbox = spawn(
        "payroute sandbox",
        &[
            "sandbox".into(),
            "--config".into(),
            sandbox_cfg.display().to_string(),
            "--dir".into(),
            sim_dir.display().to_string(),
            "--listen".into(),
            control.to_string(),
            "--notify-base-url".into(),
            format!("http://{notify}"),
        ],
        dir.path().join("sandbox.log"),
    )?;
    // The control listener is bound after the endpoint and key files are written.
    wait_until(&mut sandbox, Duration::from_secs(60), "sandbox", || {
        std::net::TcpStream::connect_timeout(&control, Duration::from_millis(200)).is_ok()
    })?;
    let endpoint = std::fs::read_to_string(sim_dir.join(format!("{CHANNEL}.endpoint")))?
        .trim()
        .to_string();
    let platform_public = sim_dir.join(format!("{CHANNEL}_platform_public.pem"));

    // Alone in its directory, as in a ConfigMap mount: payroute watches the whole directory.
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir)?;
    let config = config_dir.join("routes.yaml");
    std::fs::write(
        &config,
        routes_yaml(&endpoint, PLATFORM_KEY_REF, "../keys", "bench-0"),
    )?;
    let api = loopback(free_port()?);
    let admin = loopback(free_port()?);
    let mut serve = spawn(
        "payroute serve",
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--api-listen".into(),
            api.to_string(),
            "--notify-listen".into(),
            notify.to_string(),
            "--admin-listen".into(),
            admin.to_string(),
            "--notify-base-url".into(),
            format!("http://{notify}"),
            "--log-format".into(),
            "json".into(),
        ],
        dir.path().join("serve.log"),
    )?;
    wait_until(
        &mut serve,
        Duration::from_secs(60),
        "payroute /readyz",
        || blocking_get_status(admin, "/readyz") == Some(200),
    )?;
    Ok(Setup {
        serve,
        sandbox,
        api,
        admin,
        notify,
        config,
        endpoint,
        platform_public,
        app_private,
        dir,
    })
}

/// A minimal blocking GET (readiness polling happens before the runtime starts).
fn blocking_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 when getconf is unavailable).
fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse()?)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state field.
    Ok(tick(11)? + tick(12)?)
}

/// A `/proc/<pid>/status` field in its unit (KiB for memory), e.g. `VmHWM`, `Threads`.
fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// Context switches (voluntary + involuntary) of the process's live threads.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten().take(10_000) {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// CPU time of the calling thread in nanoseconds (`/proc/thread-self/schedstat`), if available.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU ticks of payroute, the simulator and this generator at one moment.
#[derive(Clone, Copy)]
struct CpuSample {
    serve: u64,
    sandbox: u64,
    generator: u64,
    /// Context switches of payroute's threads.
    switches: u64,
    at: Instant,
}

fn cpu_sample(serve: u32, sandbox: u32) -> anyhow::Result<CpuSample> {
    Ok(CpuSample {
        serve: cpu_ticks(&serve.to_string())?,
        sandbox: cpu_ticks(&sandbox.to_string())?,
        generator: cpu_ticks("self")?,
        switches: context_switches(serve),
        at: Instant::now(),
    })
}

// ---------------------------------------------------------------------------------------------
// RSA baseline and disk

/// Seconds of CPU for one RSA-2048 PKCS#1 v1.5 SHA-256 signature plus one verification with ring,
/// as payroute does them, single-threaded.
fn rsa_baseline(iterations: u32) -> anyhow::Result<(f64, &'static str)> {
    use base64::Engine as _;
    use ring::signature::{KeyPair as _, RsaKeyPair, UnparsedPublicKey};
    let pem = std::fs::read_to_string(
        Path::new(MANIFEST_DIR).join("sandbox/keys/alipay_app_private.pem"),
    )?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
    let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow!("TEST key: {e}"))?;
    let public = UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref().to_vec(),
    );
    let rng = ring::rand::SystemRandom::new();
    // About the size of an Alipay precreate sign string.
    let message = "app_id=2021000000000001&biz_content={\"out_trade_no\":\"BENCH0000000001\",\
        \"total_amount\":\"19.99\",\"subject\":\"bench\",\"product_code\":\"FACE_TO_FACE_PAYMENT\"}\
        &charset=utf-8&method=alipay.trade.precreate&notify_url=http://127.0.0.1:8701/notify/alipay\
        &sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"
        .repeat(2);
    let mut sig = vec![0u8; pair.public().modulus_len()];
    let mut once = || -> anyhow::Result<()> {
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &rng,
            message.as_bytes(),
            &mut sig,
        )
        .map_err(|e| anyhow!("sign: {e}"))?;
        public
            .verify(message.as_bytes(), &sig)
            .map_err(|e| anyhow!("verify: {e}"))
    };
    for _ in 0..20 {
        once()?;
    }
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    for _ in 0..iterations {
        once()?;
    }
    let wall = wall0.elapsed().as_secs_f64() / f64::from(iterations);
    match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Ok((
            (b - a) as f64 / 1e9 / f64::from(iterations),
            "thread CPU time",
        )),
        _ => Ok((wall, "wall time")),
    }
}

/// fsync'd 4 KiB overwrites of a preallocated file per second (what a database's commit pays),
/// one thread, for about `limit`.
fn fsync_rate(dir: &Path, limit: Duration) -> anyhow::Result<f64> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    const BLOCKS: u64 = 256;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    for _ in 0..BLOCKS {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < limit && n < 100_000 {
        f.seek(SeekFrom::Start(u64::from(n) % BLOCKS * 4096))?;
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Durable redb write transactions per second (one ~1.5 KiB record each, like one ledger write
/// of payroute), one thread, for about `limit`, on the ledger's disk.
fn redb_commit_rate(dir: &Path, limit: Duration) -> anyhow::Result<f64> {
    const PROBE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("probe");
    let path = dir.join("probe.redb");
    let db = redb::Database::create(&path)?;
    let value = vec![b'x'; 1536];
    // Untimed first commits: creating and growing a fresh file costs more than steady state.
    for i in 0..200u32 {
        let tx = db.begin_write()?;
        tx.open_table(PROBE)?
            .insert(format!("warm{i:09}").as_str(), value.as_slice())?;
        tx.commit()?;
    }
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < limit && n < 100_000 {
        let tx = db.begin_write()?;
        tx.open_table(PROBE)?
            .insert(format!("order{n:09}").as_str(), value.as_slice())?;
        tx.commit()?;
        n += 1;
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// One request of the load: method, origin-form target, content type, body.
#[derive(Clone)]
struct Req {
    method: http::Method,
    target: String,
    content_type: &'static str,
    body: Bytes,
}

/// Builds request number `i` of a phase.
type MakeReq = Arc<dyn Fn(u64) -> Req + Send + Sync>;
/// Whether an answer counts as a success.
type IsOk = fn(u16, &[u8]) -> bool;

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    tx: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let mut c = Conn { addr, tx: None };
        c.connect().await?;
        Ok(c)
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let stream =
            tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
                .await??;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.tx = Some(tx);
        Ok(())
    }

    /// Sends one request; reconnects first when the previous exchange broke the connection.
    async fn send(&mut self, req: &Req) -> anyhow::Result<(u16, Bytes)> {
        if self.tx.as_ref().is_none_or(|t| t.is_closed()) {
            self.connect().await?;
        }
        let exchange = async {
            let tx = self.tx.as_mut().ok_or_else(|| anyhow!("not connected"))?;
            tx.ready().await?;
            let request = http::Request::builder()
                .method(req.method.clone())
                .uri(req.target.as_str())
                .header(http::header::HOST, self.addr.to_string())
                .header(http::header::CONTENT_TYPE, req.content_type)
                .body(Full::new(req.body.clone()))?;
            let response = tx.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.tx = None;
                Err(e)
            }
            Err(_) => {
                self.tx = None;
                bail!("no answer within {REQUEST_TIMEOUT:?}")
            }
        }
    }
}

async fn get_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut c = Conn::open(addr).await?;
    let (status, body) = c
        .send(&Req {
            method: http::Method::GET,
            target: path.into(),
            content_type: "text/plain",
            body: Bytes::new(),
        })
        .await?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Payments created through payroute in this run (every phase), for per-order ledger size.
static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn payroute_ok(status: u16, _: &[u8]) -> bool {
    let ok = status == 201 || status == 200;
    if ok {
        CREATED.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

fn simulator_ok(status: u16, body: &[u8]) -> bool {
    const SUCCESS: &[u8] = b"\"code\":\"10000\"";
    status == 200 && body.windows(SUCCESS.len()).any(|w| w == SUCCESS)
}

/// Requests creating alipay/qr payments through payroute, numbered within one phase.
fn payroute_requests(run: &str, phase: char) -> MakeReq {
    let prefix = format!("B{run}{phase}");
    Arc::new(move |i| {
        let body = json!({
            "out_trade_no": format!("{prefix}{i:09}"),
            "amount": 1000 + (i % 9000),
            "currency": "CNY",
            "method": "alipay",
            "scene": "qr",
            "subject": "Bench order",
        });
        Req {
            method: http::Method::POST,
            target: "/v1/payments".into(),
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
        }
    })
}

/// `n` precreate requests signed by payroute's own Alipay adapter, as payroute would send them.
fn presigned_simulator_requests(setup: &Setup, run: &str, n: u64) -> anyhow::Result<MakeReq> {
    let adapter = Alipay::new(AlipayConfig {
        name: CHANNEL.into(),
        app_id: APP_ID.into(),
        gateway: setup.endpoint.clone(),
        app_private_key: Arc::new(PrivateKey::from_file(&setup.app_private)?),
        alipay_public_key: PublicKey::from_file(&setup.platform_public)?,
        notify_url: Some(format!("http://{}/notify/{CHANNEL}", setup.notify)),
        return_url: None,
        scenes: vec![Scene::Qr],
    });
    let mut reqs = Vec::new();
    for i in 0..n {
        let intent = PaymentIntent {
            out_trade_no: format!("B{run}S{i:09}"),
            amount: payroute::money::Fen(1000 + (i % 9000)),
            method: PayMethod::Alipay,
            scene: Scene::Qr,
            subject: "Bench order".into(),
            description: None,
            auth_code: None,
            payer_id: None,
            client_ip: None,
            expires_at: None,
        };
        let Prepared::Send(req) = adapter.build(Op::Create(&intent), chrono::Utc::now())? else {
            bail!("the Alipay adapter did not prepare a gateway call for a QR payment");
        };
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .ok_or_else(|| anyhow!("gateway URL without a path"))?;
        reqs.push(Req {
            method: http::Method::POST,
            target,
            content_type: "application/x-www-form-urlencoded;charset=utf-8",
            body: req.into_body(),
        });
    }
    let reqs = Arc::new(reqs);
    Ok(Arc::new(move |i| {
        // The open loop never asks for more than `n`; the modulo only keeps this total.
        reqs[usize::try_from(i).unwrap_or(0) % reqs.len()].clone()
    }))
}

// ---------------------------------------------------------------------------------------------
// Load generators

/// Outcome of a closed-loop phase.
struct Closed {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    cpu: (CpuSample, CpuSample),
}

impl Closed {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
}

/// `conns` connections each sending back to back for `warmup + measure`; successes completed
/// inside the measurement window are counted.
async fn closed_loop(
    addr: SocketAddr,
    conns: usize,
    warmup: Duration,
    measure: Duration,
    make: MakeReq,
    pids: (u32, u32),
) -> anyhow::Result<Closed> {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let mut conn = Conn::open(addr).await?;
        let (stop, next, make) = (stop.clone(), next.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            let mut done: Vec<(Instant, bool, Option<String>)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = make(next.fetch_add(1, Ordering::Relaxed));
                let (ok, err) = match conn.send(&req).await {
                    Ok((s, b)) if payroute_ok(s, &b) => (true, None),
                    Ok((s, b)) => (
                        false,
                        Some(format!("HTTP {s}: {}", String::from_utf8_lossy(&b))),
                    ),
                    Err(e) => {
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        (false, Some(e.to_string()))
                    }
                };
                done.push((Instant::now(), ok, err));
            }
            done
        }));
    }
    tokio::time::sleep(warmup).await;
    let c0 = cpu_sample(pids.0, pids.1)?;
    tokio::time::sleep(measure).await;
    let c1 = cpu_sample(pids.0, pids.1)?;
    stop.store(true, Ordering::Relaxed);
    let mut out = Closed {
        ok: 0,
        errors: 0,
        first_error: None,
        secs: c1.at.duration_since(c0.at).as_secs_f64(),
        cpu: (c0, c1),
    };
    for w in workers {
        let done = tokio::time::timeout(REQUEST_TIMEOUT * 2, w).await??;
        for (at, ok, err) in done {
            if at < c0.at || at > c1.at {
                continue;
            }
            if ok {
                out.ok += 1;
            } else {
                out.errors += 1;
                out.first_error = out.first_error.or(err);
            }
        }
    }
    Ok(out)
}

/// Outcome of an open-loop phase.
struct Open {
    sent: u64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// Milliseconds from each request's scheduled send time to its complete answer (successes).
    latencies_ms: Vec<f64>,
    /// How late the pacer released requests (generator error, in every latency): p99, ms.
    pacer_lag_p99_ms: f64,
}

/// Requests at a fixed arrival rate for `duration`, served by up to `conns` connections; a
/// request waits for a free connection when all are busy, and that wait counts.
async fn open_loop(
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    conns: usize,
    make: MakeReq,
    is_ok: IsOk,
) -> anyhow::Result<Open> {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let mut pool = Vec::new();
    for _ in 0..conns {
        pool.push(Conn::open(addr).await?);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::new();
    for mut conn in pool {
        let (rx, make) = (rx.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            let mut done: Vec<(f64, f64, bool, Option<String>)> = Vec::new();
            loop {
                let job = rx.lock().await.recv().await;
                let Some((i, scheduled, released)) = job else {
                    break;
                };
                let req = make(i);
                let (ok, err) = match conn.send(&req).await {
                    Ok((s, b)) if is_ok(s, &b) => (true, None),
                    Ok((s, b)) => (
                        false,
                        Some(format!("HTTP {s}: {}", String::from_utf8_lossy(&b))),
                    ),
                    Err(e) => (false, Some(e.to_string())),
                };
                let ms = scheduled.elapsed().as_secs_f64() * 1e3;
                let lag = released.duration_since(scheduled).as_secs_f64() * 1e3;
                done.push((ms, lag, ok, err));
            }
            done
        }));
    }
    // The pacer is an OS thread: `thread::sleep` is finer than tokio's 1 ms timer wheel.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let pacer = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(20);
        for i in 0..total {
            let at = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send((i, at, Instant::now())).is_err() {
                break;
            }
        }
    });
    let limit = duration + REQUEST_TIMEOUT * 2;
    let mut out = Open {
        sent: total,
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_ms: Vec::new(),
        pacer_lag_p99_ms: 0.0,
    };
    let mut lags = Vec::new();
    for w in workers {
        for (ms, lag, ok, err) in tokio::time::timeout(limit, w).await?? {
            lags.push(lag);
            if ok {
                out.ok += 1;
                out.latencies_ms.push(ms);
            } else {
                out.errors += 1;
                out.first_error = out.first_error.or(err);
            }
        }
    }
    pacer.join().map_err(|_| anyhow!("pacer thread panicked"))?;
    out.latencies_ms.sort_by(f64::total_cmp);
    lags.sort_by(f64::total_cmp);
    out.pacer_lag_p99_ms = percentile(&lags, 0.99);
    Ok(out)
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// Reload

/// The name of the first rule `/admin/routes` shows.
async fn active_rule(admin: SocketAddr) -> anyhow::Result<String> {
    let v: Value = serde_json::from_str(&get_text(admin, "/admin/routes").await?)?;
    Ok(v["rules"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Milliseconds from the end of each write of routes.yaml to the new rule name showing on the
/// admin listener; `rename` writes a temporary file and renames it over (editors, kubelet).
async fn reload_times(setup: &Setup, n: usize, rename: bool) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for k in 0..n {
        let rule = format!("bench-{}-{k}", if rename { "rename" } else { "write" });
        let text = routes_yaml(&setup.endpoint, PLATFORM_KEY_REF, "../keys", &rule);
        let written = if rename {
            let tmp = setup.config.with_extension("yaml.tmp");
            std::fs::write(&tmp, &text)?;
            std::fs::rename(&tmp, &setup.config)?;
            Instant::now()
        } else {
            std::fs::write(&setup.config, &text)?;
            Instant::now()
        };
        let deadline = written + Duration::from_secs(10);
        loop {
            if active_rule(setup.admin).await? == rule {
                times.push(written.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                bail!("rule {rule} not visible 10 s after the write");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Let the watcher's debounce window pass before the next write, with a gap that varies
        // (golden-ratio steps over 0-100 ms) so the writes do not phase-lock to a periodic check.
        let jitter = (k as f64 * 0.618_034).fract() * 100.0;
        tokio::time::sleep(Duration::from_millis(300) + Duration::from_secs_f64(jitter / 1e3))
            .await;
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

// ---------------------------------------------------------------------------------------------
// Metrics scraping

/// Sum of `<name>_sum` and of `<name>_count` over all label sets (None when absent).
fn histogram_totals(metrics: &str, name: &str, label: Option<&str>) -> Option<(f64, f64)> {
    let (mut sum, mut count, mut seen) = (0.0, 0.0, false);
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if label.is_some_and(|l| !key.contains(l)) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or(0.0);
        let metric = key.split('{').next().unwrap_or(key);
        if metric == format!("{name}_sum") {
            sum += value;
            seen = true;
        } else if metric == format!("{name}_count") {
            count += value;
        }
    }
    seen.then_some((sum, count))
}

// ---------------------------------------------------------------------------------------------
// Results

/// One row of the results table.
struct Row {
    key: &'static str,
    label: &'static str,
    value: Option<f64>,
    unit: &'static str,
    target: Option<String>,
    met: Option<bool>,
}

fn row(key: &'static str, label: &'static str, value: f64, unit: &'static str) -> Row {
    Row {
        key,
        label,
        value: Some(value),
        unit,
        target: None,
        met: None,
    }
}

fn with_target(mut r: Row, target: f64) -> Row {
    r.target = Some(format!("≤ {target}"));
    r.met = r.value.map(|v| v <= target);
    r
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn print_table(rows: &[Row], notes: &[String]) {
    println!();
    println!(
        "{:<48} {:>10} {:<4} {:>7} {:>4}",
        "metric", "value", "unit", "target", "met"
    );
    println!("{}", "-".repeat(77));
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!(
            "{:<48} {:>10} {:<4} {:>7} {:>4}",
            r.label,
            fmt_value(r.value),
            r.unit,
            r.target.as_deref().unwrap_or(""),
            met
        );
    }
    println!();
    for n in notes {
        println!("note: {n}");
    }
}

fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({ "key": r.key, "label": r.label, "value": r.value, "unit": r.unit,
                        "target": r.target, "met": r.met })
            })
            .collect(),
    )
}

/// `<target dir>/bench`, next to the profile directory holding the payroute binary.
fn results_dir() -> PathBuf {
    Path::new(PAYROUTE_BIN)
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("bench"))
        .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("target/bench"))
}

fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(MANIFEST_DIR)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write_results(doc: &Value, ts: u64) -> anyhow::Result<PathBuf> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(doc)?;
    let path = dir.join(format!("load-{ts}.json"));
    std::fs::write(&path, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    Ok(path)
}

fn compare(a: &Path, b: &Path) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let (da, db) = (read(a)?, read(b)?);
    for (name, path, d) in [("A", a, &da), ("B", b, &db)] {
        println!(
            "{name}: {} (rev {}, load average before {}{})",
            path.display(),
            d["git"].as_str().unwrap_or("?"),
            d["load_average_before"].as_str().unwrap_or("?"),
            if d["quick"] == true { ", quick" } else { "" }
        );
    }
    println!();
    println!(
        "{:<48} {:>10} {:>10} {:>10} {:>6}",
        "metric", "A", "B", "B-A", "B/A"
    );
    println!("{}", "-".repeat(88));
    let empty = Vec::new();
    let rows_a = da["rows"].as_array().unwrap_or(&empty);
    let rows_b = db["rows"].as_array().unwrap_or(&empty);
    // A's rows in A's order, then rows only B has.
    let mut keys: Vec<&Value> = rows_a.iter().map(|r| &r["key"]).collect();
    keys.extend(
        rows_b
            .iter()
            .map(|r| &r["key"])
            .filter(|k| !rows_a.iter().any(|r| &r["key"] == *k)),
    );
    let find = |rows: &[Value], key: &Value| rows.iter().find(|r| &r["key"] == key).cloned();
    for key in keys {
        let (ra, rb) = (find(rows_a, key), find(rows_b, key));
        let label = ra
            .as_ref()
            .or(rb.as_ref())
            .and_then(|r| r["label"].as_str().map(String::from));
        let va = ra.as_ref().and_then(|r| r["value"].as_f64());
        let vb = rb.as_ref().and_then(|r| r["value"].as_f64());
        let (delta, ratio) = match (va, vb) {
            (Some(x), Some(y)) if x != 0.0 => (fmt_value(Some(y - x)), format!("{:.2}", y / x)),
            (Some(x), Some(y)) => (fmt_value(Some(y - x)), String::new()),
            _ => (String::new(), String::new()),
        };
        println!(
            "{:<48} {:>10} {:>10} {:>10} {:>6}",
            label.unwrap_or_default(),
            fmt_value(va),
            fmt_value(vb),
            delta,
            ratio
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run

fn run(opts: &Opts) -> anyhow::Result<()> {
    let phases = Phases::new(opts.quick);
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let load_before = load_average();
    eprintln!("load average before: {load_before}");
    let (rsa_secs, rsa_clock) = rsa_baseline(phases.rsa_iterations)?;
    eprintln!("RSA sign+verify: {:.3} ms ({rsa_clock})", rsa_secs * 1e3);
    // The disk as the ledger finds it, before any load (again after the run, for comparison).
    let disk_before = disk_probe(tempfile::tempdir()?.path())?;
    let mut setup = start_processes()?;
    eprintln!(
        "payroute serve pid {} (api {}, admin {}), sandbox pid {} ({})",
        setup.serve.pid(),
        setup.api,
        setup.admin,
        setup.sandbox.pid(),
        setup.endpoint
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(measure(&setup, &phases, opts, started));
    setup.serve.check_alive()?;
    setup.sandbox.check_alive()?;
    let (mut rows, mut notes) = out?;
    rows.push(row(
        "rsa_sign_verify_ms",
        "RSA-2048 sign + verify (ring, 1 thread)",
        rsa_secs * 1e3,
        "ms",
    ));
    let disk_after = disk_probe(setup.dir.path())?;
    disk_rows(&mut rows, &mut notes, disk_before, disk_after);
    let cpu_ratio = rows
        .iter()
        .find(|r| r.key == "serve_cpu_ms_per_payment")
        .and_then(|r| r.value)
        .map(|ms| ms / 1e3 / rsa_secs);
    if let Some(ratio) = cpu_ratio {
        let r = with_target(
            row(
                "cpu_ratio",
                "payroute CPU per payment / (sign+verify)",
                ratio,
                "x",
            ),
            TARGET_CPU_RATIO,
        );
        rows.insert(3, r);
    }
    let load_after = load_average();
    notes.push(format!(
        "load average before {load_before}, after {load_after}; {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    notes.push(format!("RSA baseline measured with {rsa_clock}"));
    print_table(&rows, &notes);
    let doc = json!({
        "schema": 1,
        "timestamp": started,
        "git": git_revision(),
        "quick": opts.quick,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows_json(&rows),
        "notes": notes,
    });
    let path = write_results(&doc, started)?;
    println!("results: {} (and latest.json)", path.display());
    Ok(())
}

/// fsync'd overwrites/s and durable redb commits/s in `dir`, one thread, one second each.
fn disk_probe(dir: &Path) -> anyhow::Result<(f64, f64)> {
    Ok((
        fsync_rate(dir, Duration::from_secs(1))?,
        redb_commit_rate(dir, Duration::from_secs(1))?,
    ))
}

fn disk_rows(rows: &mut Vec<Row>, notes: &mut Vec<String>, before: (f64, f64), after: (f64, f64)) {
    rows.push(row(
        "disk_fsync_per_s",
        "disk: fsync'd 4 KiB overwrites/s, before load",
        before.0,
        "1/s",
    ));
    rows.push(row(
        "redb_commits_per_s",
        "disk: redb durable commits/s, before load",
        before.1,
        "1/s",
    ));
    rows.push(row(
        "redb_commits_per_s_after",
        "disk: redb durable commits/s, after the run",
        after.1,
        "1/s",
    ));
    let slowest = before.1.min(after.1);
    notes.push(format!(
        "payroute writes the ledger twice per create (before and after the channel call); group \
         commit shares one fsync among the writes waiting together, so the ledger caps creations \
         only above {:.0}/s × (writes per commit) / 2 (fsync'd overwrites/s after the run: {:.0})",
        slowest, after.0
    ));
}

/// Cumulative bucket counts of histogram `name` (all label sets added up), by upper bound.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(le) = key.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        match by_le.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += value,
            None => by_le.push((le, value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// The upper bound of the bucket holding quantile `q` of the observations made between two
/// expositions of histogram `name`.
fn bucket_quantile(before: &str, after: &str, name: &str, q: f64) -> Option<f64> {
    let (b, a) = (buckets(before, name), buckets(after, name));
    let delta: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, c)| {
            let old = b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
            (*le, c - old)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
}

/// The value of an unlabelled counter or gauge in a text exposition.
fn plain_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every measured phase; returns the table rows and notes.
async fn measure(
    setup: &Setup,
    phases: &Phases,
    opts: &Opts,
    started: u64,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let pids = (setup.serve.pid(), setup.sandbox.pid());
    let run = format!("{started}");
    let tck = clk_tck();
    let mut notes = Vec::new();
    let mut rows = Vec::new();

    // Saturation: probe connection counts, then the measured window.
    let conns = match opts.conns {
        Some(n) => n,
        None => probe_conns(setup, phases, &run, pids).await?,
    };
    eprintln!(
        "saturation: {conns} connections for {:?}",
        phases.saturation
    );
    let perf = if opts.perf {
        Some(start_perf(setup.serve.pid(), phases)?)
    } else {
        None
    };
    let sat = closed_loop(
        setup.api,
        conns,
        phases.warmup,
        phases.saturation,
        payroute_requests(&run, 'T'),
        pids,
    )
    .await?;
    if let Some(p) = perf {
        finish_perf(p).await?;
    }
    let rate = sat.rate();
    let ok = sat.ok.max(1) as f64;
    let (c0, c1) = sat.cpu;
    let per_payment_ms = |a: u64, b: u64| (b - a) as f64 / tck / ok * 1e3;
    rows.push(row(
        "creates_per_s",
        "saturation: payment creations/s",
        rate,
        "1/s",
    ));
    rows.push(row(
        "saturation_errors",
        "saturation: errors",
        sat.errors as f64,
        "",
    ));
    rows.push(row(
        "saturation_conns",
        "saturation: connections",
        conns as f64,
        "",
    ));
    rows.push(row(
        "serve_cpu_ms_per_payment",
        "payroute CPU per payment",
        per_payment_ms(c0.serve, c1.serve),
        "ms",
    ));
    rows.push(row(
        "sandbox_cpu_ms_per_payment",
        "simulator CPU per payment (info)",
        per_payment_ms(c0.sandbox, c1.sandbox),
        "ms",
    ));
    rows.push(row(
        "generator_cpu_ms_per_payment",
        "load generator CPU per payment (info)",
        per_payment_ms(c0.generator, c1.generator),
        "ms",
    ));
    if let Some(e) = &sat.first_error {
        notes.push(format!("first saturation error: {}", truncate(e, 200)));
    }
    let rss_mib = status_field(setup.serve.pid(), "VmHWM")? as f64 / 1024.0;
    let ledger_mib = std::fs::metadata(setup.dir.path().join("data/ledger.redb"))?.len() as f64
        / (1024.0 * 1024.0);
    notes.push(format!(
        "peak RSS after saturation measured with {} orders in the ledger ({ledger_mib:.1} MiB file)",
        CREATED.load(Ordering::Relaxed)
    ));
    rows.push(with_target(
        row(
            "serve_peak_rss_mib",
            "payroute peak RSS (VmHWM) after saturation",
            rss_mib,
            "MiB",
        ),
        TARGET_RSS_MIB,
    ));
    rows.push(row(
        "serve_threads",
        "payroute threads after saturation (info)",
        status_field(setup.serve.pid(), "Threads")? as f64,
        "",
    ));
    rows.push(row(
        "serve_switches_per_payment",
        "payroute context switches per payment (info)",
        c1.switches.saturating_sub(c0.switches) as f64 / ok,
        "",
    ));
    ledger_rows(setup, &mut rows, &mut notes).await;

    // Latency at half the saturation rate, through payroute and straight to the simulator.
    let half = (rate * opts.load).max(1.0);
    let open_conns = conns.max(32);
    let ledger_before = get_text(setup.admin, "/metrics").await.ok();
    eprintln!(
        "latency: {half:.0}/s for {:?} through payroute",
        phases.latency
    );
    let via = open_loop(
        setup.api,
        half,
        phases.latency,
        open_conns,
        payroute_requests(&run, 'L'),
        payroute_ok,
    )
    .await?;
    if let (Some(before), Ok(after)) = (ledger_before, get_text(setup.admin, "/metrics").await) {
        let name = "payroute_ledger_write_duration_seconds";
        for (q, key, label) in [
            (
                0.5,
                "ledger_write_p50_ms",
                "ledger write p50 in the latency phase (buckets)",
            ),
            (
                0.99,
                "ledger_write_p99_ms",
                "ledger write p99 in the latency phase (buckets)",
            ),
        ] {
            if let Some(le) = bucket_quantile(&before, &after, name, q) {
                rows.push(row(key, label, le * 1e3, "ms ≤"));
            }
        }
    }
    let n = (half * phases.latency.as_secs_f64()).round() as u64 + 1;
    eprintln!("latency: pre-signing {n} simulator requests");
    let signed = presigned_simulator_requests(setup, &run, n)?;
    eprintln!(
        "latency: {half:.0}/s for {:?} straight to the simulator",
        phases.latency
    );
    let sim = open_loop(
        setup.endpoint_addr()?,
        half,
        phases.latency,
        open_conns,
        signed,
        simulator_ok,
    )
    .await?;
    latency_rows(&mut rows, &mut notes, half, &via, &sim);

    // Reload.
    for (rename, kmed, lmed, kmax, lmax) in [
        (
            true,
            "reload_rename_median_ms",
            "reload, temp file + rename: median",
            "reload_rename_max_ms",
            "reload, temp file + rename: max",
        ),
        (
            false,
            "reload_inplace_median_ms",
            "reload, in-place write: median",
            "reload_inplace_max_ms",
            "reload, in-place write: max",
        ),
    ] {
        let t = reload_times(setup, phases.reloads, rename).await?;
        let max = t.last().copied().unwrap_or(0.0);
        rows.push(with_target(
            row(kmed, lmed, percentile(&t, 0.5), "ms"),
            TARGET_RELOAD_MS,
        ));
        rows.push(with_target(row(kmax, lmax, max, "ms"), TARGET_RELOAD_MS));
    }
    rows.push(row(
        "serve_peak_rss_end_mib",
        "payroute peak RSS at the end of the run (info)",
        status_field(setup.serve.pid(), "VmHWM")? as f64 / 1024.0,
        "MiB",
    ));
    let ledger = std::fs::metadata(setup.dir.path().join("data/ledger.redb"))?.len();
    let created = CREATED.load(Ordering::Relaxed).max(1);
    rows.push(row(
        "ledger_bytes_per_payment",
        "ledger file size per payment created (info)",
        ledger as f64 / created as f64,
        "B",
    ));
    Ok((rows, notes))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl Setup {
    /// The simulator's gateway address, from its endpoint URL.
    fn endpoint_addr(&self) -> anyhow::Result<SocketAddr> {
        let uri: http::Uri = self.endpoint.parse()?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("endpoint without host"))?;
        let addr: SocketAddr = authority.as_str().parse()?;
        if !addr.ip().is_loopback() {
            bail!("the simulator endpoint {addr} is not on loopback");
        }
        Ok(addr)
    }
}

/// Short closed-loop runs with each of `PROBE_CONNS`; the count with the highest rate wins.
async fn probe_conns(
    setup: &Setup,
    phases: &Phases,
    run: &str,
    pids: (u32, u32),
) -> anyhow::Result<usize> {
    let mut best = (0.0, PROBE_CONNS[0]);
    for (k, &n) in PROBE_CONNS.iter().enumerate() {
        let phase = char::from(b'a' + u8::try_from(k).unwrap_or(0));
        let r = closed_loop(
            setup.api,
            n,
            phases.warmup,
            phases.probe,
            payroute_requests(run, phase),
            pids,
        )
        .await?;
        eprintln!(
            "probe: {n} connections: {:.0}/s ({} errors)",
            r.rate(),
            r.errors
        );
        if r.rate() > best.0 {
            best = (r.rate(), n);
        }
    }
    Ok(best.1)
}

/// Ledger-write and channel-call histograms from /metrics, when payroute has them.
async fn ledger_rows(setup: &Setup, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let metrics = match get_text(setup.admin, "/metrics").await {
        Ok(m) => m,
        Err(e) => {
            notes.push(format!("cannot read /metrics: {e}"));
            return;
        }
    };
    match histogram_totals(&metrics, "payroute_ledger_write_duration_seconds", None) {
        Some((sum, count)) if count > 0.0 => {
            rows.push(row(
                "ledger_write_mean_ms",
                "ledger write mean (/metrics)",
                sum / count * 1e3,
                "ms",
            ));
            rows.push(row(
                "ledger_writes",
                "ledger writes so far (/metrics)",
                count,
                "",
            ));
        }
        _ => notes.push(
            "payroute_ledger_write_duration_seconds is not exported by this build; compare \
             creations/s with the redb commit rate below"
                .into(),
        ),
    }
    let writes = histogram_totals(&metrics, "payroute_ledger_write_duration_seconds", None)
        .map(|(_, count)| count);
    if let (Some(writes), Some(commits)) = (
        writes,
        plain_value(&metrics, "payroute_ledger_commits_total").filter(|c| *c > 0.0),
    ) {
        rows.push(row(
            "ledger_writes_per_commit",
            "ledger writes per fsync'd commit, so far (/metrics)",
            writes / commits,
            "",
        ));
    }
    if let Some((sum, count)) = histogram_totals(
        &metrics,
        "payroute_channel_request_duration_seconds",
        Some("operation=\"create\""),
    )
    .filter(|(_, c)| *c > 0.0)
    {
        rows.push(row(
            "channel_create_mean_ms",
            "channel create call mean, so far (/metrics)",
            sum / count * 1e3,
            "ms",
        ));
    }
}

fn latency_rows(rows: &mut Vec<Row>, notes: &mut Vec<String>, rate: f64, via: &Open, sim: &Open) {
    rows.push(row(
        "latency_rate_per_s",
        "latency phases: arrival rate",
        rate,
        "1/s",
    ));
    let ps = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")];
    let keys = [
        ("payroute_p50_ms", "sim_p50_ms", "added_p50_ms"),
        ("payroute_p99_ms", "sim_p99_ms", "added_p99_ms"),
        ("payroute_p999_ms", "sim_p999_ms", "added_p999_ms"),
    ];
    let labels = [
        (
            "payroute latency p50",
            "simulator latency p50",
            "added latency p50",
        ),
        (
            "payroute latency p99",
            "simulator latency p99",
            "added latency p99",
        ),
        (
            "payroute latency p99.9",
            "simulator latency p99.9",
            "added latency p99.9",
        ),
    ];
    for (((p, _), k), l) in ps.iter().zip(keys).zip(labels) {
        let a = percentile(&via.latencies_ms, *p);
        let b = percentile(&sim.latencies_ms, *p);
        rows.push(row(k.0, l.0, a, "ms"));
        rows.push(row(k.1, l.1, b, "ms"));
        rows.push(row(k.2, l.2, a - b, "ms"));
    }
    rows.push(row(
        "latency_errors",
        "latency phases: errors (payroute + simulator)",
        (via.errors + sim.errors) as f64,
        "",
    ));
    notes.push(format!(
        "p99.9 rests on the {} slowest requests of each open loop: one stall of either process \
         (e.g. a map resize in the simulator) moves it, and the added p99.9 can come out negative",
        via.latencies_ms.len().div_ceil(1000)
    ));
    for (name, o) in [("payroute", via), ("simulator", sim)] {
        notes.push(format!(
            "{name} open loop: {} scheduled, {} ok, {} errors; pacer lag p99 {:.3} ms",
            o.sent, o.ok, o.errors, o.pacer_lag_p99_ms
        ));
        if let Some(e) = &o.first_error {
            notes.push(format!("first {name} error: {}", truncate(e, 200)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// perf

/// `perf record -g` on payroute for the saturation window (it stops by itself).
fn start_perf(pid: u32, phases: &Phases) -> anyhow::Result<Child> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let secs = (phases.warmup + phases.saturation).as_secs().max(1);
    Command::new("perf")
        .args(["record", "-g", "-p", &pid.to_string(), "-o"])
        .arg(dir.join("perf.data"))
        .args(["--", "sleep", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start perf")
}

async fn finish_perf(mut perf: Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = perf.try_wait()? {
            eprintln!(
                "perf record finished ({status}): {}",
                results_dir().join("perf.data").display()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = perf.kill();
    let _ = perf.wait();
    bail!("perf record did not finish within 60 s")
}
