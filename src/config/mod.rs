//! routes.yaml: raw serde types → validated, compiled `Snapshot` (channels with their keys and
//! clients, rules). A snapshot is immutable; the server holds the active one in an `ArcSwap`.

mod fee;
mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use self::fee::{FeeSchedule, Rate};
pub use self::raw::RawConfig;
use self::raw::{KeyRef, RawChannel, RawRule};
use crate::channels::alipay::{Alipay, AlipayConfig};
use crate::channels::client::{is_loopback_host, ChannelClient};
use crate::channels::SharedChannel;
use crate::crypto::{PrivateKey, PublicKey};
use crate::domain::{PayMethod, Scene};
use crate::money::MAX_AMOUNT_FEN;

/// One problem in a routes.yaml file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

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

/// Replacements applied when running against the in-process sandbox.
#[derive(Debug, Clone)]
pub struct ChannelOverride {
    /// The simulator's endpoint.
    pub endpoint: String,
    /// The simulator's platform public key (replaces the channel's platform key reference).
    pub platform_public_key: PublicKey,
    /// A merchant key to use when the configured one cannot be read.
    pub fallback_private_key: Arc<PrivateKey>,
}

/// Options for compiling a snapshot.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Base URL of the notification listener as channels reach it, e.g. `https://pay.example.com`.
    pub notify_base_url: Option<String>,
    /// Per-channel sandbox replacements.
    pub overrides: BTreeMap<String, ChannelOverride>,
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
    pub enabled: bool,
    pub adapter: SharedChannel,
    pub client: ChannelClient,
    pub methods: Vec<PayMethod>,
    pub scenes: Vec<Scene>,
    pub fee: FeeSchedule,
    pub limits: AmountRange,
}

/// A routing rule: first match wins.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub methods: Vec<PayMethod>,
    pub scenes: Vec<Scene>,
    pub amount: AmountRange,
    pub channels: Vec<String>,
}

impl Rule {
    /// Whether the rule applies to this payment.
    pub fn matches(&self, method: PayMethod, scene: Scene, amount: u64) -> bool {
        (self.methods.is_empty() || self.methods.contains(&method))
            && (self.scenes.is_empty() || self.scenes.contains(&scene))
            && self.amount.contains(amount)
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

/// Parses YAML text into the raw types, with line:column on failure.
pub fn parse(text: &str) -> Result<RawConfig, Vec<Problem>> {
    serde_saphyr::from_str::<RawConfig>(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let message = e.to_string();
        // The rendered error repeats the location and a snippet; keep its first line.
        let first = message.lines().next().unwrap_or("invalid YAML");
        // Drop the renderer's own "error: line L column C: " prefix; the location is ours.
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let first = match first.split_once(": ") {
            Some((loc, rest)) if loc.starts_with("line ") => rest.to_string(),
            _ => first.to_string(),
        };
        vec![Problem {
            line,
            column,
            message: first,
        }]
    })
}

/// Validates and compiles YAML text. `path` anchors relative key file paths.
pub fn compile(text: &str, path: &Path, opts: &CompileOptions) -> Result<Snapshot, Vec<Problem>> {
    let raw = parse(text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut channels = Vec::new();
    if raw.channels.is_empty() {
        problems.push(Problem {
            line: 1,
            column: 1,
            message: "no channels defined".into(),
        });
    }
    for (name, ch) in &raw.channels {
        match compile_channel(name, ch, base, opts) {
            Ok(c) => channels.push(c),
            Err(mut p) => problems.append(&mut p),
        }
    }
    let rules = compile_rules(&raw, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Snapshot {
        hash: crate::crypto::sha256_hex(text.as_bytes()),
        loaded_at: Utc::now(),
        source: path.to_path_buf(),
        channels,
        rules,
    })
}

fn at<T>(s: &serde_saphyr::Spanned<T>, message: impl Into<String>) -> Problem {
    Problem {
        line: s.referenced.line(),
        column: s.referenced.column(),
        message: message.into(),
    }
}

fn compile_rules(raw: &RawConfig, problems: &mut Vec<Problem>) -> Vec<Rule> {
    if raw.rules.is_empty() {
        return vec![Rule {
            name: "default".into(),
            methods: vec![],
            scenes: vec![],
            amount: AmountRange {
                min: 1,
                max: MAX_AMOUNT_FEN,
            },
            channels: raw.channels.keys().cloned().collect(),
        }];
    }
    raw.rules
        .iter()
        .map(|r: &RawRule| {
            for c in &r.channels {
                if !raw.channels.contains_key(&c.value) {
                    problems.push(at(
                        c,
                        format!("rule `{}` names undefined channel `{}`", r.name, c.value),
                    ));
                }
            }
            let (min, max) = (
                r.when.min_amount.unwrap_or(1),
                r.when.max_amount.unwrap_or(MAX_AMOUNT_FEN),
            );
            if min > max {
                problems.push(Problem {
                    line: 1,
                    column: 1,
                    message: format!("rule `{}`: min_amount is above max_amount", r.name),
                });
            }
            Rule {
                name: r.name.clone(),
                methods: r.when.method.clone(),
                scenes: r.when.scene.clone(),
                amount: AmountRange { min, max },
                channels: r.channels.iter().map(|c| c.value.clone()).collect(),
            }
        })
        .collect()
}

fn compile_channel(
    name: &str,
    ch: &RawChannel,
    base: &Path,
    opts: &CompileOptions,
) -> Result<ChannelEntry, Vec<Problem>> {
    let mut problems = Vec::new();
    let over = opts.overrides.get(name);
    if ch.kind.value != "alipay" {
        problems.push(at(
            &ch.kind,
            format!(
                "unknown channel kind `{}` (supported: alipay)",
                ch.kind.value
            ),
        ));
        return Err(problems);
    }
    let endpoint = over
        .map(|o| o.endpoint.clone())
        .unwrap_or_else(|| ch.endpoint.value.clone());
    if let Err(msg) = check_endpoint(&endpoint) {
        problems.push(at(&ch.endpoint, msg));
    }
    let app_id = match &ch.app_id {
        Some(a) if !a.is_empty() => a.clone(),
        _ => {
            problems.push(at(
                &ch.kind,
                format!("channel `{name}` (alipay) needs app_id"),
            ));
            String::new()
        }
    };
    let private_key = match (&ch.app_private_key, over) {
        (Some(k), over) => {
            match load_key(&k.value, base, PrivateKey::from_file, PrivateKey::from_text) {
                Ok(key) => Some(Arc::new(key)),
                Err(_) if over.is_some() => over.map(|o| o.fallback_private_key.clone()),
                Err(msg) => {
                    problems.push(at(k, format!("app_private_key: {msg}")));
                    None
                }
            }
        }
        (None, Some(o)) => Some(o.fallback_private_key.clone()),
        (None, None) => {
            problems.push(at(
                &ch.kind,
                format!("channel `{name}` (alipay) needs app_private_key"),
            ));
            None
        }
    };
    let public_key = match (over, &ch.alipay_public_key) {
        (Some(o), _) => Some(o.platform_public_key.clone()),
        (None, Some(k)) => {
            match load_key(&k.value, base, PublicKey::from_file, PublicKey::from_text) {
                Ok(key) => Some(key),
                Err(msg) => {
                    problems.push(at(k, format!("alipay_public_key: {msg}")));
                    None
                }
            }
        }
        (None, None) => {
            problems.push(at(
                &ch.kind,
                format!("channel `{name}` (alipay) needs alipay_public_key"),
            ));
            None
        }
    };
    let fee = match FeeSchedule::from_raw(&ch.fee) {
        Ok(f) => f,
        Err(msg) => {
            problems.push(at(&ch.kind, format!("channel `{name}` fee: {msg}")));
            FeeSchedule::default()
        }
    };
    let limits = AmountRange {
        min: ch.limits.min_amount.unwrap_or(1).max(1),
        max: ch
            .limits
            .max_amount
            .unwrap_or(MAX_AMOUNT_FEN)
            .min(MAX_AMOUNT_FEN),
    };
    if limits.min > limits.max {
        problems.push(at(
            &ch.kind,
            format!("channel `{name}`: min_amount is above max_amount"),
        ));
    }
    let scenes = ch.scenes.clone().unwrap_or_else(|| {
        crate::channels::alipay::SCENES
            .iter()
            .map(|(s, _)| *s)
            .collect()
    });
    for s in &scenes {
        if !crate::channels::alipay::SCENES.iter().any(|(x, _)| x == s) {
            problems.push(at(
                &ch.kind,
                format!("channel `{name}`: alipay has no `{}` scene", s.as_str()),
            ));
        }
    }
    let methods = ch
        .methods
        .clone()
        .unwrap_or_else(|| vec![PayMethod::Alipay]);
    if methods.iter().any(|m| *m != PayMethod::Alipay) {
        problems.push(at(
            &ch.kind,
            format!("channel `{name}`: alipay carries only the alipay method"),
        ));
    }
    let (Some(private_key), Some(public_key), true) =
        (private_key, public_key, problems.is_empty())
    else {
        return Err(problems);
    };
    let notify_url = ch.notify_url.clone().or_else(|| {
        opts.notify_base_url
            .as_ref()
            .map(|b| format!("{}/notify/{name}", b.trim_end_matches('/')))
    });
    let adapter = Alipay::new(AlipayConfig {
        name: name.to_string(),
        app_id,
        gateway: endpoint,
        app_private_key: private_key,
        alipay_public_key: public_key,
        notify_url,
        return_url: ch.return_url.clone(),
        scenes: scenes.clone(),
    });
    let client = ChannelClient::new(
        Duration::from_millis(ch.timeouts.connect_ms.unwrap_or(3_000)),
        Duration::from_millis(ch.timeouts.request_ms.unwrap_or(10_000)),
    );
    Ok(ChannelEntry {
        name: name.to_string(),
        kind: ch.kind.value.clone(),
        enabled: ch.enabled.unwrap_or(true),
        adapter: Arc::new(adapter),
        client,
        methods,
        scenes,
        fee,
        limits,
    })
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

fn load_key<K>(
    r: &KeyRef,
    base: &Path,
    from_file: impl Fn(&Path) -> Result<K, crate::crypto::KeyError>,
    from_text: impl Fn(&str) -> Result<K, crate::crypto::KeyError>,
) -> Result<K, String> {
    match (&r.file, &r.env) {
        (Some(f), None) => {
            let p = base.join(f);
            from_file(&p).map_err(|e| e.to_string())
        }
        (None, Some(var)) => {
            let text =
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
            from_text(&text).map_err(|e| format!("{var}: {e}"))
        }
        _ => Err("give exactly one of `file` or `env`".into()),
    }
}

#[cfg(test)]
mod tests;
