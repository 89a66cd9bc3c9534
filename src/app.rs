//! Wiring: configuration, ledger, sandbox and the three listeners, and the graceful drain.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{admin_router, api_router, notify_router, AppState};
use crate::config::{self, CompileOptions};
use crate::crypto::PrivateKey;
use crate::ledger::Ledger;
use crate::limits::{LimitPlan, SharedLimits, SharedOptions};
use crate::listener::{Limits, ListenerLimits};
use crate::payments::{Payments, ServiceSettings};
use crate::reload::ConfigStore;
use crate::sandbox::{self, Sandbox};
use crate::settings::{SandboxArgs, ServeArgs};

/// How often a replica on a shared ledger looks for work a gone replica left in flight.
const ADOPT_EVERY: Duration = Duration::from_secs(3);

/// A started payroute: its bound addresses and what is needed to stop it.
#[derive(Debug)]
pub struct Running {
    pub api: SocketAddr,
    pub notify: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub sandbox: Option<Sandbox>,
    pub payments: Arc<Payments>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    grace: Duration,
}

/// Sets up logging to stderr (`RUST_LOG` or `PAYROUTE_LOG` filter, default `info`): one JSON
/// object per line (see `logging`), or text, coloured only on a terminal.
pub fn init_logging(format: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYROUTE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "text" {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    } else {
        builder
            .with_ansi(false)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(crate::logging::JsonLine)
            .try_init()
    };
}

fn sandbox_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn endpoint_is_loopback(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(crate::channels::client::is_loopback_host))
        .unwrap_or(false)
}

fn default_notify_base(notify: SocketAddr) -> String {
    let host = if notify.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        notify.ip()
    };
    format!("http://{}", SocketAddr::new(host, notify.port()))
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))
}

/// Serves one listener: its routes inside the request context and bounded body read, behind
/// its timeouts and connection cap.
fn spawn_server(
    listener: tokio::net::TcpListener,
    name: &'static str,
    router: Router,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let router = crate::api::edge::layered(router, name, limits.body_timeout);
    crate::listener::spawn(listener, name, router, limits, shutdown)
}

/// The listeners' limits, with connection caps that leave descriptors for everything else.
fn listener_limits(args: &ServeArgs) -> ListenerLimits {
    let nofile = crate::listener::nofile_limit();
    let limits = ListenerLimits::from_args(&args.limits, crate::listener::derive_caps(nofile));
    let total =
        limits.api.max_connections + limits.notify.max_connections + limits.admin.max_connections;
    if nofile.is_some_and(|n| total as u64 * 2 > n) {
        tracing::warn!(
            nofile = nofile,
            max_connections = total,
            "the connection caps leave few open files for the ledger, reloads and channels; \
             raise the open-files limit or lower the caps"
        );
    }
    for (name, l) in [
        ("api", limits.api),
        ("notify", limits.notify),
        ("admin", limits.admin),
    ] {
        tracing::info!(
            listener = name,
            nofile = nofile,
            max_connections = l.max_connections,
            header_timeout_ms = l.header_timeout.as_millis() as u64,
            idle_timeout_ms = l.idle_timeout.as_millis() as u64,
            body_timeout_ms = l.body_timeout.as_millis() as u64,
            "listener limits"
        );
    }
    limits
}

/// Starts the simulators for the channels of the config at `path`.
async fn start_sandbox(
    path: &Path,
    platform_key_for: &mut dyn FnMut(&str) -> Arc<PrivateKey>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Sandbox, sandbox::GeneratedKeys)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw = config::parse(&text).map_err(|p| {
        anyhow::anyhow!(p
            .iter()
            .map(|p| format!("{}:{p}", path.display()))
            .collect::<Vec<_>>()
            .join("\n"))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let (channels, generated) = sandbox::channels_from_config(&raw, base, platform_key_for);
    let sb = Sandbox::start(channels, sandbox_ip(), shutdown).await?;
    Ok((sb, generated))
}

/// How channel rate limits are enforced: shared through Redis, or this replica's share.
async fn limit_plan(
    args: &crate::settings::ReplicaArgs,
    metrics: &crate::metrics::Metrics,
) -> anyhow::Result<LimitPlan> {
    let shared = match &args.redis_url {
        None => None,
        Some(url) => {
            let opts = SharedOptions {
                key_prefix: args.redis_key_prefix.clone(),
                timeout: Duration::from_millis(args.redis_timeout_ms),
                ..SharedOptions::default()
            };
            let shared = SharedLimits::start(url, opts, metrics.rate_limit_fallbacks.clone())
                .await
                // The error names no credentials; the URL is not repeated.
                .map_err(|e| anyhow::anyhow!("--redis-url cannot be used: {e}"))?;
            Some(shared)
        }
    };
    tracing::info!(
        replicas = args.replicas.get(),
        redis = shared.as_ref().map(|s| s.at().to_string()),
        "channel rate limits: {}",
        match (&shared, args.replicas.get()) {
            (Some(_), _) => "shared by every replica through Redis (each replica's share while Redis does not answer)",
            (None, 1) => "enforced by this process alone",
            (None, _) => "each replica enforces its share",
        }
    );
    Ok(LimitPlan {
        replicas: args.replicas,
        shared,
    })
}

/// Starts payroute: loads the configuration, opens the ledger, binds the listeners.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Running> {
    crate::channels::client::install_crypto_provider();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (sandbox, rewrite) = if args.sandbox {
        let (sb, generated) = start_sandbox(
            &args.config,
            &mut |_| sandbox::fresh_key(),
            shutdown_rx.clone(),
        )
        .await?;
        // Every compile (start and reloads) points the channels at the simulators first.
        let rewrite: Arc<dyn config::Rewrite> = Arc::new(sb.rewrite(generated));
        (Some(sb), Some(rewrite))
    } else {
        (None, None)
    };
    let notify_l = bind(args.notify_listen, "notifications").await?;
    let notify_addr = notify_l.local_addr()?;
    let notify_base_url = match (&args.notify_base_url, args.sandbox) {
        (Some(u), _) => u.clone(),
        (None, sandbox) => {
            if !sandbox {
                tracing::warn!(
                    "PAYROUTE_NOTIFY_BASE_URL is not set: channels are told to notify {}",
                    default_notify_base(notify_addr)
                );
            }
            default_notify_base(notify_addr)
        }
    };
    if let Some(sb) = &sandbox {
        sb.set_notify_base(&notify_base_url);
    }
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let opts = CompileOptions {
        notify_base_url: Some(notify_base_url),
        rewrite,
        refuse_test_keys: true,
        limits: limit_plan(&args.replicas, &metrics).await?,
    };
    let snapshot = config::load(&args.config, &opts)?;
    if args.notify_base_url.is_none() && !args.sandbox {
        let remote: Vec<&str> = snapshot
            .channels
            .iter()
            .filter(|c| !endpoint_is_loopback(&c.endpoint))
            .map(|c| c.name.as_str())
            .collect();
        if !remote.is_empty() {
            anyhow::bail!(
                "PAYROUTE_NOTIFY_BASE_URL (--notify-base-url) must be set: channels {remote:?} are remote \
                 and must be told where to send notifications"
            );
        }
    }
    tracing::info!(
        hash = snapshot.hash.as_str(),
        channels = snapshot.channels.len(),
        "configuration loaded"
    );

    let data_dir = match (&args.data_dir, args.sandbox) {
        (Some(d), _) => d.clone(),
        (None, false) => PathBuf::from("payroute-data"),
        (None, true) => {
            std::env::temp_dir().join(format!("payroute-sandbox-{}", crate::crypto::random_hex(6)))
        }
    };
    let events_target = events_target(&args.events)?;
    let opened = crate::ledger::open::open(
        args.ledger.postgres(),
        &data_dir,
        metrics.ledger_commits.clone(),
        events_target.is_some(),
    )
    .await?;
    let events = opened.events;
    let ledger: Arc<dyn Ledger> = Arc::new(crate::ledger::Instrumented::new(
        opened.ledger,
        metrics.clone(),
    ));
    let store = Arc::new(ConfigStore::new(
        Arc::new(ArcSwap::from_pointee(snapshot)),
        args.config.clone(),
        opts,
        metrics.clone(),
    ));
    let payments = Payments::new(
        ledger,
        store.handle(),
        ServiceSettings {
            barcode_poll_interval: Duration::from_millis(args.barcode_poll_ms),
            barcode_poll_attempts: args.barcode_poll_attempts,
            payment_ttl: Duration::from_secs(args.payment_ttl_secs),
            create_deadline: Duration::from_millis(args.create_deadline_ms),
            abandon_retry: Duration::from_millis(args.abandon_retry_ms),
        },
        metrics.clone(),
    );
    let ready = Arc::new(AtomicBool::new(false));
    let reconciler = crate::reconcile::Reconciler::new(
        payments.clone(),
        events.clone(),
        &data_dir,
        metrics.clone(),
    );
    let state = AppState {
        payments: payments.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        events: events.clone(),
        events_delivered: events_target.is_some(),
        reconciler: reconciler.clone(),
    };

    // Orders created from here on belong to this process, not to recovery.
    let booted = chrono::Utc::now();
    let api_l = bind(args.api_listen, "unified API").await?;
    let admin_l = bind(args.admin_listen, "admin").await?;
    let (api, admin) = (api_l.local_addr()?, admin_l.local_addr()?);
    let mut admin_app = admin_router(state.clone());
    if let Some(sb) = &sandbox {
        admin_app = admin_app.merge(sb.control_router());
    }
    let admin_app = admin_app.layer(axum::middleware::from_fn(
        crate::api::rejections_as_problems,
    ));
    let limits = listener_limits(args);
    let watcher = crate::reload::spawn_watcher(
        store.clone(),
        args.watch_config,
        Duration::from_millis(args.reload_poll_ms),
        shutdown_rx.clone(),
    );
    let mut servers = vec![
        spawn_server(
            api_l,
            "api",
            api_router(state.clone()),
            limits.api,
            shutdown_rx.clone(),
        ),
        spawn_server(
            notify_l,
            "notify",
            notify_router(state.clone()),
            limits.notify,
            shutdown_rx.clone(),
        ),
        spawn_server(
            admin_l,
            "admin",
            admin_app,
            limits.admin,
            shutdown_rx.clone(),
        ),
    ];
    servers.push(watcher);
    if let Some(target) = events_target {
        tracing::info!(url = %shown_url(&target.url), "delivering app events");
        servers.push(tokio::spawn(crate::events::deliver::run(
            events.clone(),
            Arc::new(target),
            metrics.clone(),
            shutdown_rx.clone(),
        )));
    }
    tracing::info!(%api, notify = %notify_addr, %admin, data_dir = %data_dir.display(), ledger = %opened.shown, sandbox = args.sandbox, "payroute listening");
    if let Some(hour) = args.reconcile_at_hour {
        tracing::info!(
            hour,
            "reconciling every channel's statement daily (China time)"
        );
        tokio::spawn(reconciler.daily(hour, shutdown_rx.clone()));
    }

    // Orders left in flight by a previous process are resolved by asking their channels. On a
    // ledger shared by replicas, what any replica that is gone left is taken over, at start and
    // every ADOPT_EVERY after.
    let recovering = payments.clone();
    let mut stopping = shutdown_rx.clone();
    tokio::spawn(async move {
        match recovering.recover(booted).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(orders = n, "resolved orders left in flight"),
            Err(e) => tracing::error!(error = %e, "recovery failed"),
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(ADOPT_EVERY) => {}
                _ = stopping.changed() => return,
            }
            match recovering.adopt().await {
                Ok(None) => return,
                Ok(Some(0)) => {}
                Ok(Some(n)) => tracing::info!(
                    orders = n,
                    "took over and resolved work left in flight by a replica that is gone"
                ),
                Err(e) => tracing::warn!(error = %e, "taking over a gone replica's work failed"),
            }
        }
    });
    ready.store(true, Ordering::Relaxed);
    Ok(Running {
        api,
        notify: notify_addr,
        admin,
        data_dir,
        sandbox,
        payments,
        ready,
        shutdown,
        servers,
        grace: Duration::from_secs(args.shutdown_grace_secs),
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded by the grace period).
    pub async fn stop(self) {
        self.ready.store(false, Ordering::Relaxed);
        self.shutdown.send_replace(true);
        let all = futures_join(self.servers);
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!(
                grace_secs = self.grace.as_secs(),
                "in-flight requests did not finish in time"
            );
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `payroute serve`: runs until SIGTERM, then drains and returns.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let running = start(&args).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `payroute sandbox`: only the simulators, with their control API on `listen`.
pub async fn run_sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    crate::channels::client::install_crypto_provider();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.clone();
    let mut platform_key_for = |name: &str| -> Arc<PrivateKey> {
        let path = dir.join(format!("{name}_platform_private.pem"));
        if let Ok(k) = PrivateKey::from_file(&path) {
            return Arc::new(k);
        }
        let pem = crate::crypto::generate_private_key_pem();
        if let Err(e) = write_private(&path, pem.expose()) {
            tracing::warn!(error = %e, "cannot keep the sandbox platform key");
        }
        Arc::new(PrivateKey::from_text(pem.expose()).expect("generated key parses"))
    };
    let (shutdown, rx) = watch::channel(false);
    let (sb, generated) = start_sandbox(&args.config, &mut platform_key_for, rx.clone()).await?;
    sb.set_notify_base(&args.notify_base_url);
    if !generated.is_empty() {
        anyhow::bail!(
            "the merchant keys of {:?} cannot be read from {}; the standalone sandbox needs them",
            generated.keys().collect::<Vec<_>>(),
            args.config.display()
        );
    }
    for (name, (endpoint, creds)) in sb.targets() {
        std::fs::write(args.dir.join(format!("{name}.endpoint")), &endpoint)?;
        std::fs::write(
            args.dir.join(format!("{name}_platform_public.pem")),
            creds.platform_public_key.to_pem(),
        )?;
        if let (Some(k), Some(id)) = (&creds.apiv3_key, &creds.platform_key_id) {
            std::fs::write(args.dir.join(format!("{name}.public_key_id")), id)?;
            write_private(
                &args.dir.join(format!("{name}_apiv3.key")),
                &k.expose_text(),
            )?;
        }
        tracing::info!(
            channel = name.as_str(),
            endpoint = endpoint.as_str(),
            "simulator listening"
        );
    }
    let control = bind(args.listen, "sandbox control").await?;
    let control_app = sb.control_router().layer(axum::middleware::from_fn(
        crate::api::rejections_as_problems,
    ));
    let server = spawn_server(control, "sandbox", control_app, Limits::default(), rx);
    tracing::info!(listen = %args.listen, dir = %args.dir.display(), "sandbox ready");
    shutdown_signal().await;
    shutdown.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The app's events endpoint, when `--events-url` is set (with its secrets file).
fn events_target(
    args: &crate::settings::EventsArgs,
) -> anyhow::Result<Option<crate::events::deliver::Target>> {
    use crate::events::deliver::{RetryPolicy, Target};
    let Some(url) = &args.url else {
        if args.secret_file.is_some() {
            tracing::warn!(
                "--events-secret-file is set without --events-url: events are not delivered"
            );
        }
        return Ok(None);
    };
    let uri: http::Uri = url.parse().context("--events-url is not a URL")?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => {}
        Some("http") if crate::channels::client::is_loopback_host(host) => {}
        _ => anyhow::bail!(
            "--events-url `{}`: use https, or plain http to a loopback address (the app in the same pod)",
            shown_url(&uri)
        ),
    }
    let Some(path) = &args.secret_file else {
        anyhow::bail!("--events-url needs --events-secret-file (PAYROUTE_EVENTS_SECRET_FILE): a file with a `whsec_…` secret");
    };
    let in_range = |name: &str, v: u64, lo: u64, hi: u64| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{name} must be from {lo} to {hi}, not {v}"))
        }
    };
    in_range("--events-retry-ms", args.retry_ms, 1, 3_600_000)?;
    in_range(
        "--events-retry-max-ms",
        args.retry_max_ms,
        args.retry_ms,
        86_400_000,
    )?;
    in_range("--events-give-up-hours", args.give_up_hours, 0, 24 * 365)?;
    in_range("--events-timeout-ms", args.timeout_ms, 1, 120_000)?;
    let secrets = crate::events::signing::SecretsFile::open(path)?;
    Ok(Some(Target {
        url: uri,
        secrets,
        client: crate::channels::client::ChannelClient::new(
            Duration::from_secs(3),
            Duration::from_millis(args.timeout_ms),
        ),
        policy: RetryPolicy {
            first: Duration::from_millis(args.retry_ms),
            max: Duration::from_millis(args.retry_max_ms),
            give_up_after: Duration::from_secs(args.give_up_hours.saturating_mul(3600)),
        },
        concurrency: 16,
        poll: Duration::from_millis(100),
    }))
}

/// A URL as logs and errors show it: scheme, host, port and path, never credentials or a query
/// (either may carry a token).
fn shown_url(uri: &http::Uri) -> String {
    let authority = uri.authority().map_or("", |a| a.as_str());
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{}://{host}{}", uri.scheme_str().unwrap_or("?"), uri.path())
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_urls_are_shown_without_credentials_or_query() {
        let shown = |u: &str| super::shown_url(&u.parse().unwrap());
        assert_eq!(
            shown("https://user:pass@app.example.com:8443/hook?token=s3cret"),
            "https://app.example.com:8443/hook"
        );
        assert_eq!(
            shown("http://127.0.0.1:8080/payroute-events"),
            "http://127.0.0.1:8080/payroute-events"
        );
    }
}
