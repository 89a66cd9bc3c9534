//! Process settings: command-line flags with `PAYROUTE_*` environment fallbacks (12-factor).
//! Routing rules and channels come from routes.yaml instead.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "payroute", version, about = "Payment channel-routing sidecar")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar.
    Serve(Box<ServeArgs>),
    /// Validate a routes.yaml: exit 0 when valid, otherwise print every problem as
    /// `file:line:column: message` and exit 1.
    Check {
        /// The file to check.
        path: PathBuf,
        /// Check it as `serve --sandbox` runs it: every channel reaches a simulator, so the
        /// sandbox's published TEST keys are allowed with any endpoint.
        #[arg(long)]
        sandbox: bool,
        /// A data directory with reconciliation reports: warn where a channel's statement
        /// shows another fee rate than its `fee`.
        #[arg(long, env = "PAYROUTE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run only the channel simulators (to point a separately started payroute at them).
    Sandbox(SandboxArgs),
    /// Print where a payment would be routed, and why each channel was kept or excluded.
    Explain(ExplainArgs),
    /// Print the JSON Schema of routes.yaml (committed as schema/routes.schema.json).
    Schema,
    /// Reconcile a channel's statement of a day against the ledger, through a running
    /// payroute: progress on a terminal, the report's summary as JSON on stdout; exit 0 when
    /// completed, 1 when it failed, 2 when payroute cannot be reached.
    Reconcile(ReconcileArgs),
}

/// `payroute reconcile`.
#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// The channel (a name from routes.yaml).
    #[arg(long)]
    pub channel: String,
    /// The day, China time (`YYYY-MM-DD`); default: yesterday.
    #[arg(long)]
    pub date: Option<chrono::NaiveDate>,
    /// The running payroute's unified API.
    #[arg(long, env = "PAYROUTE_API", default_value = "http://127.0.0.1:8700")]
    pub api: String,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// `payroute explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The routing rules and channels.
    #[arg(long, env = "PAYROUTE_CONFIG", default_value = "routes.yaml")]
    pub config: PathBuf,
    /// A data directory with reconciliation reports: show each channel's measured fee rate.
    #[arg(long, env = "PAYROUTE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `alipay` or `wechat`.
    #[arg(long)]
    pub method: String,
    /// `qr`, `app`, `h5`, `jsapi`, `page` or `barcode`.
    #[arg(long)]
    pub scene: String,
    /// Amount in fen.
    #[arg(long)]
    pub amount: u64,
    /// Currency (only `CNY`).
    #[arg(long, default_value = "CNY")]
    pub currency: String,
    /// Metadata `key=value`, repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// The merchant order number (decides `weighted` rules).
    #[arg(long, default_value = "EXPLAIN000001")]
    pub out_trade_no: String,
    /// Route as of this RFC 3339 time (maintenance windows); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// A split payment (`"split": true`): only channels that can split are kept.
    #[arg(long)]
    pub split: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `payroute serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The routing rules and channels.
    #[arg(long, env = "PAYROUTE_CONFIG", default_value = "routes.yaml")]
    pub config: PathBuf,
    /// Start the channel simulators in-process and point every channel at them.
    #[arg(long, env = "PAYROUTE_SANDBOX")]
    pub sandbox: bool,
    /// Unified API listener (for the app in the same pod).
    #[arg(long, env = "PAYROUTE_API_LISTEN", default_value = "127.0.0.1:8700")]
    pub api_listen: SocketAddr,
    /// Channel notification listener.
    #[arg(long, env = "PAYROUTE_NOTIFY_LISTEN", default_value = "0.0.0.0:8701")]
    pub notify_listen: SocketAddr,
    /// Admin listener (probes, metrics, read-only admin, sandbox control).
    #[arg(long, env = "PAYROUTE_ADMIN_LISTEN", default_value = "0.0.0.0:8702")]
    pub admin_listen: SocketAddr,
    /// Public base URL of the notification listener, as the channels reach it
    /// (e.g. `https://pay.example.com`); channels get `<base>/notify/<channel>`.
    #[arg(long, env = "PAYROUTE_NOTIFY_BASE_URL")]
    pub notify_base_url: Option<String>,
    /// Ledger directory (also where reconciliation reports are kept). Default `payroute-data`;
    /// with `--sandbox`, a fresh temporary directory per run (the simulators keep their state
    /// in memory).
    #[arg(long, env = "PAYROUTE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds to finish in-flight requests after SIGTERM.
    #[arg(long, env = "PAYROUTE_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Watch the configuration directory for changes (set `false` where inotify is unavailable;
    /// the periodic check and SIGHUP still work).
    #[arg(long, env = "PAYROUTE_WATCH_CONFIG", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_config: bool,
    /// Milliseconds between content checks of routes.yaml (besides directory events and SIGHUP).
    #[arg(long, env = "PAYROUTE_RELOAD_POLL_MS", default_value_t = 2000)]
    pub reload_poll_ms: u64,
    /// Milliseconds after which a create tries no further candidate channel.
    #[arg(long, env = "PAYROUTE_CREATE_DEADLINE_MS", default_value_t = 30_000)]
    pub create_deadline_ms: u64,
    /// First delay (ms, doubling) between attempts to close an abandoned attempt at its channel.
    #[arg(long, env = "PAYROUTE_ABANDON_RETRY_MS", default_value_t = 2000)]
    pub abandon_retry_ms: u64,
    /// Reconcile every channel's statement of the day before, each day at this hour (0-23,
    /// China time), retrying every 30 minutes while the statement is not ready; off if unset.
    #[arg(long, env = "PAYROUTE_RECONCILE_AT_HOUR", value_parser = clap::value_parser!(u8).range(0..=23))]
    pub reconcile_at_hour: Option<u8>,
    /// Seconds a prepay order stays payable when the request gives no `expires_at`.
    #[arg(long, env = "PAYROUTE_PAYMENT_TTL_SECS", default_value_t = 7200)]
    pub payment_ttl_secs: u64,
    /// Milliseconds between queries while a barcode payment is unconfirmed.
    #[arg(long, env = "PAYROUTE_BARCODE_POLL_MS", default_value_t = 3000)]
    pub barcode_poll_ms: u64,
    /// Queries before an unconfirmed barcode payment is reversed.
    #[arg(long, env = "PAYROUTE_BARCODE_POLL_ATTEMPTS", default_value_t = 10)]
    pub barcode_poll_attempts: u32,
    /// Log format: `json` or `text`.
    #[arg(long, env = "PAYROUTE_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// The ledger: embedded in `--data-dir` (default) or in PostgreSQL.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// App events: where and how they are delivered.
    #[command(flatten)]
    pub events: EventsArgs,
    /// Timeouts and connection caps of the three listeners.
    #[command(flatten)]
    pub limits: ListenerArgs,
    /// How many replicas run, and where they share rate limits.
    #[command(flatten)]
    pub replicas: ReplicaArgs,
}

/// Several replicas of the app, each with its payroute: how the channels' rate limits hold
/// for all of them together.
#[derive(Clone, Args)]
pub struct ReplicaArgs {
    /// How many replicas run. Without `--redis-url` (and while Redis does not answer), each
    /// enforces `1/replicas` of every channel's rate limit.
    #[arg(long, env = "PAYROUTE_REPLICAS", default_value_t = NonZeroU32::MIN)]
    pub replicas: NonZeroU32,
    /// Redis that every replica uses to enforce each channel's whole rate limit together,
    /// `redis://[:password@]host:port[/db]`.
    #[arg(long, env = "PAYROUTE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Each channel's key in Redis is this prefix and the channel's name. Apps whose channels
    /// have the same names but are different merchant accounts need different prefixes.
    #[arg(long, env = "PAYROUTE_REDIS_KEY_PREFIX", default_value = crate::limits::KEY_PREFIX)]
    pub redis_key_prefix: String,
    /// Milliseconds a rate-limit decision waits for Redis before it uses the local share.
    #[arg(long, env = "PAYROUTE_REDIS_TIMEOUT_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,
}

impl Default for ReplicaArgs {
    /// The same values as the command line's defaults.
    fn default() -> Self {
        ReplicaArgs {
            replicas: NonZeroU32::MIN,
            redis_url: None,
            redis_key_prefix: crate::limits::KEY_PREFIX.into(),
            redis_timeout_ms: 50,
        }
    }
}

impl std::fmt::Debug for ReplicaArgs {
    /// The Redis URL may hold a password: only whether it is set is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaArgs")
            .field("replicas", &self.replicas)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[redacted]"))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .finish()
    }
}

/// Default milliseconds for a request's headers to arrive (from accept, or from the first byte
/// of a later request on a kept-alive connection).
pub const HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default milliseconds for a request body to arrive once its headers have.
pub const BODY_TIMEOUT_MS: u64 = 30_000;
/// Default keep-alive idle milliseconds of the unified API: above the idle time of the usual
/// HTTP client pools (Go 90 s, OkHttp 5 min), so that the app never reuses a connection that
/// payroute is closing.
pub const API_IDLE_TIMEOUT_MS: u64 = 600_000;
/// Default keep-alive idle milliseconds of the notification listener (reachable from outside).
pub const NOTIFY_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Default keep-alive idle milliseconds of the admin listener (above a 60 s scrape interval).
pub const ADMIN_IDLE_TIMEOUT_MS: u64 = 90_000;

/// Per-listener limits. A connection cap left unset is derived from the open-files limit.
#[derive(Debug, Clone, Args)]
pub struct ListenerArgs {
    /// Unified API: milliseconds for a request's headers to arrive.
    #[arg(long, env = "PAYROUTE_API_HEADER_TIMEOUT_MS", default_value_t = HEADER_TIMEOUT_MS)]
    pub api_header_timeout_ms: u64,
    /// Unified API: milliseconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "PAYROUTE_API_IDLE_TIMEOUT_MS", default_value_t = API_IDLE_TIMEOUT_MS)]
    pub api_idle_timeout_ms: u64,
    /// Unified API: milliseconds for a request body to arrive.
    #[arg(long, env = "PAYROUTE_API_BODY_TIMEOUT_MS", default_value_t = BODY_TIMEOUT_MS)]
    pub api_body_timeout_ms: u64,
    /// Unified API: open connections at most (default: derived from the open-files limit).
    #[arg(long, env = "PAYROUTE_API_MAX_CONNECTIONS")]
    pub api_max_connections: Option<usize>,
    /// Notifications: milliseconds for a request's headers to arrive.
    #[arg(long, env = "PAYROUTE_NOTIFY_HEADER_TIMEOUT_MS", default_value_t = HEADER_TIMEOUT_MS)]
    pub notify_header_timeout_ms: u64,
    /// Notifications: milliseconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "PAYROUTE_NOTIFY_IDLE_TIMEOUT_MS", default_value_t = NOTIFY_IDLE_TIMEOUT_MS)]
    pub notify_idle_timeout_ms: u64,
    /// Notifications: milliseconds for a request body to arrive.
    #[arg(long, env = "PAYROUTE_NOTIFY_BODY_TIMEOUT_MS", default_value_t = BODY_TIMEOUT_MS)]
    pub notify_body_timeout_ms: u64,
    /// Notifications: open connections at most (default: derived from the open-files limit).
    #[arg(long, env = "PAYROUTE_NOTIFY_MAX_CONNECTIONS")]
    pub notify_max_connections: Option<usize>,
    /// Admin: milliseconds for a request's headers to arrive.
    #[arg(long, env = "PAYROUTE_ADMIN_HEADER_TIMEOUT_MS", default_value_t = HEADER_TIMEOUT_MS)]
    pub admin_header_timeout_ms: u64,
    /// Admin: milliseconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "PAYROUTE_ADMIN_IDLE_TIMEOUT_MS", default_value_t = ADMIN_IDLE_TIMEOUT_MS)]
    pub admin_idle_timeout_ms: u64,
    /// Admin: milliseconds for a request body to arrive.
    #[arg(long, env = "PAYROUTE_ADMIN_BODY_TIMEOUT_MS", default_value_t = BODY_TIMEOUT_MS)]
    pub admin_body_timeout_ms: u64,
    /// Admin: open connections at most (default: derived from the open-files limit).
    #[arg(long, env = "PAYROUTE_ADMIN_MAX_CONNECTIONS")]
    pub admin_max_connections: Option<usize>,
}

impl Default for ListenerArgs {
    /// The same values as the command line's defaults.
    fn default() -> Self {
        ListenerArgs {
            api_header_timeout_ms: HEADER_TIMEOUT_MS,
            api_idle_timeout_ms: API_IDLE_TIMEOUT_MS,
            api_body_timeout_ms: BODY_TIMEOUT_MS,
            api_max_connections: None,
            notify_header_timeout_ms: HEADER_TIMEOUT_MS,
            notify_idle_timeout_ms: NOTIFY_IDLE_TIMEOUT_MS,
            notify_body_timeout_ms: BODY_TIMEOUT_MS,
            notify_max_connections: None,
            admin_header_timeout_ms: HEADER_TIMEOUT_MS,
            admin_idle_timeout_ms: ADMIN_IDLE_TIMEOUT_MS,
            admin_body_timeout_ms: BODY_TIMEOUT_MS,
            admin_max_connections: None,
        }
    }
}

/// `payroute sandbox`.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// The routes.yaml whose channels are simulated (merchant keys are read from it).
    #[arg(long, env = "PAYROUTE_CONFIG", default_value = "routes.yaml")]
    pub config: PathBuf,
    /// Listener of the sandbox control API.
    #[arg(
        long,
        env = "PAYROUTE_SANDBOX_LISTEN",
        default_value = "127.0.0.1:8710"
    )]
    pub listen: SocketAddr,
    /// Directory for the simulators' platform keys (reused when present) and, per channel,
    /// `<channel>.endpoint` and `<channel>_platform_public.pem` for payroute's configuration.
    #[arg(long, env = "PAYROUTE_SANDBOX_DIR", default_value = "payroute-sandbox")]
    pub dir: PathBuf,
    /// payroute's notification base URL, for simulators whose webhook URL is configured in a
    /// dashboard rather than per request (Ping++): `<base>/notify/<channel>`.
    #[arg(
        long,
        env = "PAYROUTE_NOTIFY_BASE_URL",
        default_value = "http://127.0.0.1:8701"
    )]
    pub notify_base_url: String,
    /// Log format: `json` or `text`.
    #[arg(long, env = "PAYROUTE_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

/// The PostgreSQL ledger (`--ledger-url`); without it the ledger is embedded in `--data-dir`.
/// Ids are explicit: clap names an argument after its field, and `url` is taken by
/// `--events-url`.
#[derive(Debug, Clone, Args)]
pub struct LedgerArgs {
    /// A PostgreSQL database for the ledger, shared by every replica, e.g.
    /// `postgres://payroute@db:5432/payroute?sslmode=require` (`sslmode=require`: TLS with the
    /// server certificate verified). Unset: the embedded ledger in `--data-dir`.
    #[arg(
        id = "ledger_url",
        long = "ledger-url",
        value_name = "URL",
        env = "PAYROUTE_LEDGER_URL",
        hide_env_values = true
    )]
    pub url: Option<crate::ledger::postgres::LedgerUrl>,
    /// File holding the database password (instead of a password in the URL).
    #[arg(
        id = "ledger_password_file",
        long = "ledger-password-file",
        env = "PAYROUTE_LEDGER_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// PEM certificates of a private CA that signs the database's certificate (with
    /// `sslmode=require`; the public web roots are always trusted).
    #[arg(
        id = "ledger_ca_file",
        long = "ledger-ca-file",
        env = "PAYROUTE_LEDGER_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// Most connections to the database.
    #[arg(
        id = "ledger_max_connections",
        long = "ledger-max-connections",
        env = "PAYROUTE_LEDGER_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: usize,
}

impl LedgerArgs {
    /// How to reach the PostgreSQL ledger, when `--ledger-url` is set.
    pub fn postgres(&self) -> Option<crate::ledger::postgres::PgOptions> {
        let url = self.url.clone()?;
        Some(crate::ledger::postgres::PgOptions {
            password_file: self.password_file.clone(),
            ca_file: self.ca_file.clone(),
            max_connections: self.max_connections,
            ..crate::ledger::postgres::PgOptions::new(url)
        })
    }
}

impl Default for LedgerArgs {
    /// The embedded ledger, with the command line's defaults for the rest.
    fn default() -> Self {
        LedgerArgs {
            url: None,
            password_file: None,
            ca_file: None,
            max_connections: 16,
        }
    }
}

/// App event delivery (Standard Webhooks).
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Where app events are delivered as Standard Webhooks, e.g.
    /// `http://127.0.0.1:8080/payroute-events` (plain http to loopback only). Unset: events are
    /// only in the feed, `GET /v1/events`.
    #[arg(long = "events-url", env = "PAYROUTE_EVENTS_URL")]
    pub url: Option<String>,
    /// File of the events signing secrets: one `whsec_…` per line (two during a rotation).
    /// Required with `--events-url`; read again when it changes.
    #[arg(long = "events-secret-file", env = "PAYROUTE_EVENTS_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Milliseconds before the first retry of a failed event delivery (doubling, with jitter).
    #[arg(
        long = "events-retry-ms",
        env = "PAYROUTE_EVENTS_RETRY_MS",
        default_value_t = 5_000
    )]
    pub retry_ms: u64,
    /// Longest wait between two delivery attempts, in milliseconds.
    #[arg(
        long = "events-retry-max-ms",
        env = "PAYROUTE_EVENTS_RETRY_MAX_MS",
        default_value_t = 3_600_000
    )]
    pub retry_max_ms: u64,
    /// Hours after an event was written when its delivery is given up (listed as failed).
    #[arg(
        long = "events-give-up-hours",
        env = "PAYROUTE_EVENTS_GIVE_UP_HOURS",
        default_value_t = 26
    )]
    pub give_up_hours: u64,
    /// Milliseconds each delivery may take (the endpoint should answer at once and work later).
    #[arg(
        long = "events-timeout-ms",
        env = "PAYROUTE_EVENTS_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub timeout_ms: u64,
}

impl Default for EventsArgs {
    fn default() -> Self {
        EventsArgs {
            url: None,
            secret_file: None,
            retry_ms: 5_000,
            retry_max_ms: 3_600_000,
            give_up_hours: 26,
            timeout_ms: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["payroute", "serve"], args].concat())?;
        match cli.command {
            Command::Serve(serve) => Ok(*serve),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replicas_and_redis_flags_parse_and_the_url_stays_out_of_debug_output() {
        let default = serve(&[]).unwrap().replicas;
        assert_eq!(default.replicas.get(), 1);
        assert_eq!(default.redis_url, None);
        assert_eq!(default.redis_key_prefix, "payroute:rl:");
        assert_eq!(default.redis_timeout_ms, 50);
        let set = serve(&[
            "--replicas",
            "3",
            "--redis-url",
            "redis://:hunter2@redis.shop:6379/0",
        ])
        .unwrap()
        .replicas;
        assert_eq!(set.replicas.get(), 3);
        assert_eq!(
            set.redis_url.as_deref(),
            Some("redis://:hunter2@redis.shop:6379/0")
        );
        let shown = format!("{set:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("[redacted]"),
            "{shown}"
        );
        assert!(serve(&["--replicas", "0"]).is_err(), "at least one replica");
        assert!(serve(&["--redis-timeout-ms", "0"]).is_err());
    }

    #[test]
    fn the_ledger_url_parses_and_its_password_is_never_printed() {
        let args = serve(&[
            "--ledger-url",
            "postgres://payroute:hunter2@db.internal:5432/pay?sslmode=require",
            "--ledger-password-file",
            "/run/secrets/ledger",
        ])
        .unwrap();
        let shown = format!("{args:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://payroute@db.internal:5432/pay?sslmode=require"));
        let opts = args.ledger.postgres().expect("a PostgreSQL ledger");
        assert_eq!(opts.max_connections, 16);
        assert_eq!(
            opts.password_file.as_deref(),
            Some(std::path::Path::new("/run/secrets/ledger"))
        );
        // Without a URL: the embedded ledger.
        assert!(serve(&[]).unwrap().ledger.postgres().is_none());
        // Any text is taken here (clap would repeat a refused value in its error): it is
        // checked, without repeating it, when the ledger opens.
        let odd = serve(&["--ledger-url", "mysql://u:hunter2@h/d"]);
        assert!(!format!("{odd:?}").contains("hunter2"));
    }
}
