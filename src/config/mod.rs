//! routes.yaml: raw serde types → validated, compiled `Snapshot` (channels with their keys and
//! clients, rules). A snapshot is immutable; the server holds the active one in an `ArcSwap`.

mod analysis;
mod breaker;
pub mod common;
mod fee;
pub mod keys;
mod problem;
mod raw;
mod reload;
mod sections;
pub mod test_keys;
mod windows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use self::analysis::warnings;
use self::breaker::compile_breaker;
pub use self::breaker::BreakerConfig;
pub use self::fee::{FeeSchedule, Rate};
use self::keys::ChannelCtx;
use self::problem::at;
pub use self::problem::Problem;
use self::raw::RawRule;
pub use self::raw::{KeyRef, RawChannel, RawConfig, Strategy};
pub use self::reload::{spawn_watcher, ConfigStore, ReloadOutcome, ReloadStatus};
pub use self::windows::Window;
use crate::channels::client::{is_loopback_host, ChannelClient};
use crate::channels::registry;
use crate::channels::SharedChannel;
use crate::domain::{Currency, PayMethod, Scene};
use crate::money::MAX_AMOUNT_FEN;

/// Why a routes.yaml could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .problems.iter().map(|p| format!("{}:{}", .path, p)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

/// A step between parsing and compiling: changes the file as written before it is compiled,
/// at start and on every reload (the sandbox points each channel at its simulator this way,
/// so compiling knows nothing about the sandbox).
pub trait Rewrite: Send + Sync + std::fmt::Debug {
    /// Rewrites the parsed file; `base` is the directory relative key paths start from.
    fn rewrite(&self, raw: &mut RawConfig, base: &Path);
}

/// Options for compiling a snapshot.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Base URL of the notification listener as channels reach it, e.g. `https://pay.example.com`.
    pub notify_base_url: Option<String>,
    /// Applied to the parsed file before it is compiled.
    pub rewrite: Option<Arc<dyn Rewrite>>,
    /// Reject a channel that reaches a non-loopback endpoint with one of the keys the sandbox and
    /// the protocol test vectors publish (`serve` and `check`; `explain` sends nothing).
    pub refuse_test_keys: bool,
}

/// Amount limits of a channel or rule, in fen (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountRange {
    pub min: u64,
    pub max: u64,
}

impl AmountRange {
    /// Whether `amount` is inside.
    pub fn contains(&self, amount: u64) -> bool {
        self.min <= amount && amount <= self.max
    }
}

/// A channel ready to use: adapter, HTTP client and routing attributes.
#[derive(Debug, Clone)]
pub struct ChannelEntry {
    pub name: String,
    pub kind: String,
    /// Where the channel is reached.
    pub endpoint: String,
    pub enabled: bool,
    pub adapter: SharedChannel,
    /// The HTTP client and its connection pool; kept across reloads while `client_settings` is.
    pub client: Arc<ChannelClient>,
    /// What the client is built from.
    pub client_settings: ClientSettings,
    pub methods: Vec<PayMethod>,
    pub scenes: Vec<Scene>,
    pub fee: FeeSchedule,
    pub limits: AmountRange,
    /// Recurring windows without new payments.
    pub maintenance: Vec<Window>,
    /// Circuit breaker thresholds.
    pub breaker: BreakerConfig,
    /// Calls per second allowed; the limiter (and its spent budget) is kept across reloads while
    /// `rate_limit` is unchanged.
    pub limiter: Option<Arc<governor::DefaultDirectRateLimiter>>,
    /// The effective `rate_limit`: (per_second, burst).
    pub rate_limit: Option<(u32, u32)>,
}

/// Everything a channel's HTTP client is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub endpoint: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// A routing rule: first match wins.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Empty: any.
    pub methods: Vec<PayMethod>,
    /// Empty: any.
    pub scenes: Vec<Scene>,
    /// Empty: any.
    pub currencies: Vec<Currency>,
    pub amount: AmountRange,
    /// Required metadata: exact values, or `*` for any value.
    pub metadata: BTreeMap<String, String>,
    pub channels: Vec<String>,
    pub strategy: Strategy,
    pub weights: BTreeMap<String, u32>,
    /// Where the rule is written (line, column).
    pub location: (u64, u64),
}

impl Rule {
    /// Why the rule does not apply to this payment, or `None` when it does.
    pub fn mismatch(
        &self,
        method: PayMethod,
        scene: Scene,
        currency: Currency,
        amount: u64,
        metadata: &BTreeMap<String, String>,
    ) -> Option<String> {
        if !self.methods.is_empty() && !self.methods.contains(&method) {
            return Some(format!("method {} not in the rule", method.as_str()));
        }
        if !self.scenes.is_empty() && !self.scenes.contains(&scene) {
            return Some(format!("scene {} not in the rule", scene.as_str()));
        }
        if !self.currencies.is_empty() && !self.currencies.contains(&currency) {
            return Some("currency not in the rule".into());
        }
        if !self.amount.contains(amount) {
            return Some(format!(
                "amount {amount} outside {}..={}",
                self.amount.min, self.amount.max
            ));
        }
        for (k, want) in &self.metadata {
            match metadata.get(k) {
                None => return Some(format!("metadata `{k}` missing")),
                Some(v) if want != "*" && v != want => {
                    return Some(format!("metadata `{k}` is not `{want}`"))
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Whether the rule has no criteria at all (it matches every payment).
    pub fn is_catch_all(&self) -> bool {
        self.methods.is_empty()
            && self.scenes.is_empty()
            && self.currencies.is_empty()
            && self.metadata.is_empty()
            && self.amount
                == AmountRange {
                    min: 1,
                    max: MAX_AMOUNT_FEN,
                }
    }
}

/// The compiled, immutable routing configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// SHA-256 of the file's bytes (hex).
    pub hash: String,
    pub loaded_at: DateTime<Utc>,
    pub source: PathBuf,
    /// Channels in file order.
    pub channels: Vec<ChannelEntry>,
    /// Rules in file order; when the file has none, one `default` rule lists every channel.
    pub rules: Vec<Rule>,
    /// Refund payments that abandoned attempts' channels report as paid.
    pub refund_duplicates: bool,
}

impl Snapshot {
    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelEntry> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Reads and compiles a routes.yaml file.
pub fn load(path: &Path, opts: &CompileOptions) -> Result<Snapshot, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    compile(&text, path, opts).map_err(|problems| ConfigError::Invalid {
        path: path.display().to_string(),
        problems,
    })
}

/// Parses YAML text into the raw types; on failure, every problem with its field path and
/// line:column (each channel and rule is parsed on its own, so one bad section hides no other).
pub fn parse(text: &str) -> Result<RawConfig, Vec<Problem>> {
    match sections::parse_sections(text) {
        (Some(parsed), problems) if problems.is_empty() => Ok(parsed.raw),
        (_, problems) => Err(in_file_order(problems)),
    }
}

fn in_file_order(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    problems
}

/// Validates and compiles YAML text. `path` anchors relative key file paths.
pub fn compile(text: &str, path: &Path, opts: &CompileOptions) -> Result<Snapshot, Vec<Problem>> {
    compile_reusing(text, path, opts, None)
}

/// Like [`compile`], but a channel of `previous` with the same name keeps its runtime state: its
/// HTTP client (connection pool) while its endpoint and timeouts are unchanged, its rate limiter
/// (spent budget) while its `rate_limit` is unchanged.
pub fn compile_reusing(
    text: &str,
    path: &Path,
    opts: &CompileOptions,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, Vec<Problem>> {
    let (parsed, mut problems) = sections::parse_sections(text);
    let Some(mut parsed) = parsed else {
        return Err(problems);
    };
    let base = path.parent().unwrap_or(Path::new("."));
    if let Some(r) = &opts.rewrite {
        r.rewrite(&mut parsed.raw, base);
    }
    let raw = &parsed.raw;
    let mut channels = Vec::new();
    if parsed.channel_names.is_empty() && !parsed.channels_unreadable {
        problems.push(Problem {
            line: 1,
            column: 1,
            message: "no channels defined".into(),
        });
    }
    for (name, ch) in &raw.channels {
        let before = previous.and_then(|p| p.channel(name));
        match compile_channel(name, ch, base, opts, before) {
            Ok(c) => channels.push(c),
            Err(mut p) => problems.append(&mut p),
        }
    }
    let rules = compile_rules(raw, &parsed.channel_names, &mut problems);
    if problems.is_empty() {
        problems.extend(analysis::uncovered_rules(&rules, &channels, Utc::now()));
    }
    if !problems.is_empty() {
        return Err(in_file_order(problems));
    }
    Ok(Snapshot {
        hash: crate::crypto::sha256_hex(text.as_bytes()),
        loaded_at: Utc::now(),
        source: path.to_path_buf(),
        channels,
        rules,
        refund_duplicates: raw.refund_duplicates,
    })
}

/// `names`: every channel written, also those whose definition has problems.
fn compile_rules(raw: &RawConfig, names: &[String], problems: &mut Vec<Problem>) -> Vec<Rule> {
    if raw.rules.is_empty() {
        return vec![Rule {
            name: "default".into(),
            methods: vec![],
            scenes: vec![],
            currencies: vec![],
            amount: AmountRange {
                min: 1,
                max: MAX_AMOUNT_FEN,
            },
            metadata: BTreeMap::new(),
            channels: raw.channels.keys().cloned().collect(),
            strategy: Strategy::Priority,
            weights: BTreeMap::new(),
            location: (1, 1),
        }];
    }
    raw.rules
        .iter()
        .map(|r: &RawRule| {
            let name = r.name.value.clone();
            for c in &r.channels {
                if !names.contains(&c.value) {
                    problems.push(at(c, format!("rule `{name}` names undefined channel `{}`", c.value)));
                }
            }
            let (min, max) = (r.when.min_amount.unwrap_or(1), r.when.max_amount.unwrap_or(MAX_AMOUNT_FEN));
            if min > max {
                problems.push(at(&r.name, format!("rule `{name}`: min_amount is above max_amount")));
            }
            if r.channels.is_empty() {
                problems.push(at(&r.name, format!("rule `{name}` lists no channels")));
            }
            match r.strategy {
                Strategy::Weighted => {
                    for c in &r.channels {
                        if !r.weights.contains_key(&c.value) {
                            problems.push(at(c, format!("rule `{name}` (weighted) gives no weight for `{}`", c.value)));
                        }
                    }
                    for k in r.weights.keys() {
                        if !r.channels.iter().any(|c| &c.value == k) {
                            problems.push(at(&r.name, format!("rule `{name}`: weight for `{k}`, which is not among its channels")));
                        }
                    }
                    if r.weights.values().all(|w| *w == 0) {
                        problems.push(at(&r.name, format!("rule `{name}`: weights must not all be 0")));
                    }
                }
                _ if !r.weights.is_empty() => {
                    problems.push(at(&r.name, format!("rule `{name}`: weights apply only to strategy weighted")));
                }
                _ => {}
            }
            Rule {
                name,
                methods: r.when.method.clone(),
                scenes: r.when.scene.clone(),
                currencies: r.when.currency.clone(),
                amount: AmountRange { min, max },
                metadata: r.when.metadata.clone(),
                channels: r.channels.iter().map(|c| c.value.clone()).collect(),
                strategy: r.strategy,
                weights: r.weights.clone(),
                location: (r.name.referenced.line(), r.name.referenced.column()),
            }
        })
        .collect()
}

fn compile_channel(
    name: &str,
    ch: &RawChannel,
    base: &Path,
    opts: &CompileOptions,
    before: Option<&ChannelEntry>,
) -> Result<ChannelEntry, Vec<Problem>> {
    let (kind_methods, offered) = registry::offered(&ch.settings);
    let common = &ch.common;
    let endpoint = common.endpoint.value.clone();
    let notify_url = common.notify_url.clone().or_else(|| {
        opts.notify_base_url
            .as_ref()
            .map(|b| format!("{}/notify/{name}", b.trim_end_matches('/')))
    });
    let mut cx = ChannelCtx {
        name,
        kind: &ch.kind,
        base,
        endpoint,
        notify_url,
        scenes: common.scenes.clone().unwrap_or_else(|| offered.clone()),
        problems: Vec::new(),
        keys: Vec::new(),
    };
    if let Err(msg) = check_endpoint(&cx.endpoint) {
        cx.problems.push(at(&common.endpoint, msg));
    }
    for s in cx.scenes.clone() {
        if !offered.contains(&s) {
            cx.problem(format!(
                "channel `{name}`: {} has no `{}` scene",
                ch.kind.value,
                s.as_str()
            ));
        }
    }
    let methods = common
        .methods
        .clone()
        .unwrap_or_else(|| kind_methods.clone());
    for m in &methods {
        if !kind_methods.contains(m) {
            cx.problem(format!(
                "channel `{name}`: {} does not carry the {} method",
                ch.kind.value,
                m.as_str()
            ));
        }
    }
    let fee = FeeSchedule::from_raw(&common.fee).unwrap_or_else(|(msg, at)| {
        cx.problems.push(Problem {
            line: at.line(),
            column: at.column(),
            message: format!("channel `{name}` fee: {msg}"),
        });
        FeeSchedule::default()
    });
    let limits = AmountRange {
        min: common.limits.min_amount.unwrap_or(1).max(1),
        max: common
            .limits
            .max_amount
            .unwrap_or(MAX_AMOUNT_FEN)
            .min(MAX_AMOUNT_FEN),
    };
    if limits.min > limits.max {
        cx.problem(format!("channel `{name}`: min_amount is above max_amount"));
    }
    let mut maintenance = Vec::new();
    for w in &common.maintenance {
        match Window::compile(&w.value) {
            Ok(win) => maintenance.push(win),
            Err(msg) => cx
                .problems
                .push(at(w, format!("channel `{name}` maintenance: {msg}"))),
        }
    }
    let breaker = compile_breaker(&common.circuit).unwrap_or_else(|msg| {
        cx.problem(format!("channel `{name}` circuit: {msg}"));
        BreakerConfig::default()
    });
    let rate_limit = match &common.rate_limit {
        None => None,
        Some(r) => match std::num::NonZeroU32::new(r.per_second) {
            None => {
                cx.problem(format!(
                    "channel `{name}` rate_limit: per_second must be at least 1"
                ));
                None
            }
            Some(ps) => {
                let burst =
                    std::num::NonZeroU32::new(r.burst.unwrap_or(r.per_second)).unwrap_or(ps);
                Some((ps, burst))
            }
        },
    };
    let adapter = registry::compile(&ch.settings, &mut cx);
    if opts.refuse_test_keys && !is_loopback_url(&cx.endpoint) {
        for (field, (line, column), fingerprint) in &cx.keys {
            if let Some(source) = test_keys::published(fingerprint) {
                cx.problems.push(Problem {
                    line: *line,
                    column: *column,
                    message: format!(
                        "channel `{name}`: {field} is a published TEST key ({source}) and the endpoint `{}` is a real gateway; use your own key (TEST keys work only with a loopback endpoint or --sandbox)",
                        cx.endpoint
                    ),
                });
            }
        }
    }
    let (Some(adapter), true) = (adapter, cx.problems.is_empty()) else {
        return Err(cx.problems);
    };
    let client_settings = ClientSettings {
        endpoint: cx.endpoint.clone(),
        connect_timeout: Duration::from_millis(common.timeouts.connect_ms.unwrap_or(3_000)),
        request_timeout: Duration::from_millis(common.timeouts.request_ms.unwrap_or(10_000)),
    };
    // Runtime state survives a reload while what it is built from is unchanged.
    let client = match before {
        Some(b) if b.client_settings == client_settings => b.client.clone(),
        _ => Arc::new(ChannelClient::new(
            client_settings.connect_timeout,
            client_settings.request_timeout,
        )),
    };
    let limiter = match rate_limit {
        None => None,
        Some((ps, burst)) => match before {
            Some(b) if b.rate_limit == Some((ps.get(), burst.get())) => b.limiter.clone(),
            _ => Some(Arc::new(governor::RateLimiter::direct(
                governor::Quota::per_second(ps).allow_burst(burst),
            ))),
        },
    };
    let rate_limit = rate_limit.map(|(ps, burst)| (ps.get(), burst.get()));
    Ok(ChannelEntry {
        name: name.to_string(),
        kind: ch.kind.value.clone(),
        endpoint: cx.endpoint.clone(),
        enabled: common.enabled.unwrap_or(true),
        adapter,
        client,
        client_settings,
        methods,
        scenes: cx.scenes,
        fee,
        limits,
        maintenance,
        breaker,
        limiter,
        rate_limit,
    })
}

/// Whether the URL's host is a loopback address (the sandbox's simulators, a local stand-in).
fn is_loopback_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(is_loopback_host))
        .unwrap_or(false)
}

/// `https://` anywhere, or `http://` to a loopback host only.
fn check_endpoint(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("endpoint `{url}` is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(format!(
            "endpoint `{url}`: plain http is allowed only for loopback hosts; use https"
        )),
        _ => Err(format!("endpoint `{url}` must be an http(s) URL")),
    }
}

#[cfg(test)]
mod tests;
