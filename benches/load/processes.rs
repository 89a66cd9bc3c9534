//! The two processes under test: `payroute sandbox` and `payroute serve`, started from the
//! binary cargo built, on loopback ports, with their files in a temporary directory.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// The payroute binary, built by cargo in the bench profile.
pub const PAYROUTE_BIN: &str = env!("CARGO_BIN_EXE_payroute");
/// The repository root (keys are read from `sandbox/keys/` there).
pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// The Alipay app id of the bench channel (any value both sides agree on).
pub const APP_ID: &str = "2021000000000001";
/// The channel name in the bench routes.yaml.
pub const CHANNEL: &str = "alipay";
/// The simulator's platform key as payroute's routes.yaml (in `<tmp>/config/`) refers to it.
pub const PLATFORM_KEY_REF: &str = "../sandbox/alipay_platform_public.pem";

/// A child process that is killed (by its pid) and reaped when dropped, also on error or panic.
pub struct ChildGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of the child's log when it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
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

/// The last 20 lines of a child's log.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The binary that runs `payroute serve`: this checkout's, or another build named by
/// `PAYROUTE_BENCH_SERVE_BIN` (to compare two builds against the same simulator and generator).
fn serve_bin() -> PathBuf {
    std::env::var_os("PAYROUTE_BENCH_SERVE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PAYROUTE_BIN))
}

/// Starts `payroute <args>` with warn-level logs going to `log`.
fn spawn(name: &'static str, args: &[String], log: PathBuf) -> anyhow::Result<ChildGuard> {
    let file = std::fs::File::create(&log)?;
    let bin = match name {
        "payroute sandbox" => PathBuf::from(PAYROUTE_BIN),
        _ => serve_bin(),
    };
    let child = Command::new(&bin)
        .args(args)
        .env("PAYROUTE_LOG", "warn")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok(ChildGuard { name, child, log })
}

/// A loopback address on a port that was free a moment ago.
fn free_loopback() -> anyhow::Result<SocketAddr> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
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
pub fn routes_yaml(endpoint: &str, public_key: &str, keys: &str, rule: &str) -> String {
    format!(
        "channels:\n  {CHANNEL}:\n    kind: alipay\n    endpoint: {endpoint}\n    app_id: \"{APP_ID}\"\n    \
         app_private_key: {{ file: {keys}/alipay_app_private.pem }}\n    \
         alipay_public_key: {{ file: {public_key} }}\n    methods: [alipay]\n    scenes: [qr]\n    \
         fee: {{ rate: \"0.6%\" }}\n    timeouts: {{ connect_ms: 3000, request_ms: 10000 }}\n\
         rules:\n  - name: {rule}\n    match: {{ method: [alipay], scene: [qr] }}\n    channels: [{CHANNEL}]\n"
    )
}

/// Both processes, their addresses and files.
pub struct Setup {
    // Field order = drop order: payroute stops before the simulator, the directory goes last.
    /// `payroute serve`.
    pub serve: ChildGuard,
    /// `payroute sandbox`.
    pub sandbox: ChildGuard,
    /// payroute's API listener.
    pub api: SocketAddr,
    /// payroute's admin listener (`/metrics`, `/admin/routes`).
    pub admin: SocketAddr,
    /// payroute's notification listener.
    pub notify: SocketAddr,
    /// payroute's routes.yaml.
    pub config: PathBuf,
    /// The simulator's Alipay gateway URL.
    pub endpoint: String,
    /// The simulator's platform public key.
    pub platform_public: PathBuf,
    /// The merchant's private key.
    pub app_private: PathBuf,
    /// The temporary directory holding everything above.
    pub dir: tempfile::TempDir,
}

/// Starts the simulator, then payroute pointed at it; returns when payroute is ready.
pub fn start() -> anyhow::Result<Setup> {
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
    let control = free_loopback()?;
    let notify = free_loopback()?;
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
    let api = free_loopback()?;
    let admin = free_loopback()?;
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

/// A second `payroute serve` on the same channel and simulator, its ledger in PostgreSQL at
/// `ledger_url` (the PostgreSQL phase); returns it and its API listener once it is ready.
pub fn start_postgres_serve(
    setup: &Setup,
    ledger_url: &str,
) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    let (api, notify, admin) = (free_loopback()?, free_loopback()?, free_loopback()?);
    let mut serve = spawn(
        "payroute serve (PostgreSQL ledger)",
        &[
            "serve".into(),
            "--config".into(),
            setup.config.display().to_string(),
            "--data-dir".into(),
            setup.dir.path().join("data-pg").display().to_string(),
            "--ledger-url".into(),
            ledger_url.into(),
            "--api-listen".into(),
            api.to_string(),
            "--notify-listen".into(),
            notify.to_string(),
            "--admin-listen".into(),
            admin.to_string(),
            "--notify-base-url".into(),
            format!("http://{}", setup.notify),
            "--log-format".into(),
            "json".into(),
        ],
        setup.dir.path().join("serve-pg.log"),
    )?;
    wait_until(
        &mut serve,
        Duration::from_secs(60),
        "payroute (PostgreSQL ledger) /readyz",
        || blocking_get_status(admin, "/readyz") == Some(200),
    )?;
    Ok((serve, api))
}

impl Setup {
    /// The process ids of payroute and of the simulator.
    pub fn pids(&self) -> (u32, u32) {
        (self.serve.pid(), self.sandbox.pid())
    }

    /// The simulator's gateway address, from its endpoint URL.
    pub fn endpoint_addr(&self) -> anyhow::Result<SocketAddr> {
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

    /// The size of payroute's ledger file.
    pub fn ledger_bytes(&self) -> anyhow::Result<u64> {
        Ok(std::fs::metadata(self.dir.path().join("data/ledger.redb"))?.len())
    }
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
