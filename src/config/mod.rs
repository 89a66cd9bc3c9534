//! routes.yaml: raw serde types → validated, compiled `Snapshot` (channels with their keys and
//! clients, rules). A snapshot is immutable; the server holds the active one in an `ArcSwap`.

mod analysis;
mod breaker;
mod fee;
mod raw;
mod reload;
mod sections;
mod test_keys;
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
use self::raw::RawRule;
pub use self::raw::{KeyRef, RawChannel, RawConfig, Strategy};
pub use self::reload::{spawn_watcher, ConfigStore, ReloadOutcome, ReloadStatus};
use self::test_keys::Fingerprint;
pub use self::windows::Window;
use crate::channels::alipay::{Alipay, AlipayConfig};
use crate::channels::client::{is_loopback_host, ChannelClient};
use crate::channels::pingpp::{Pingpp, PingppConfig};
use crate::channels::wechatpay::transformers::PlatformKeys;
use crate::channels::wechatpay::{WechatPay, WechatPayConfig};
use crate::channels::SharedChannel;
use crate::crypto::{PrivateKey, PublicKey, Secret, SymmetricKey};
use crate::domain::{Currency, PayMethod, Scene};
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
    if parsed.channel_names.is_empty() && !problems.iter().any(|p| p.message.contains("channels")) {
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

fn at<T>(s: &serde_saphyr::Spanned<T>, message: impl Into<String>) -> Problem {
    Problem {
        line: s.referenced.line(),
        column: s.referenced.column(),
        message: message.into(),
    }
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

/// The kinds payroute speaks, with the scenes and method each protocol offers.
fn kind_info(kind: &str) -> Option<(Vec<PayMethod>, Vec<Scene>)> {
    let scenes = |table: &[(Scene, &str)]| table.iter().map(|(s, _)| *s).collect();
    match kind {
        "alipay" => Some((
            vec![PayMethod::Alipay],
            scenes(crate::channels::alipay::SCENES),
        )),
        "wechatpay" => Some((
            vec![PayMethod::Wechat],
            scenes(crate::channels::wechatpay::SCENES),
        )),
        "pingpp" => {
            let offered = crate::channels::pingpp::transformers::offered();
            let mut scenes: Vec<Scene> = offered.iter().map(|(_, s)| *s).collect();
            scenes.dedup();
            scenes.sort();
            scenes.dedup();
            Some((PayMethod::ALL.to_vec(), scenes))
        }
        _ => None,
    }
}

/// What one channel definition needs while it is compiled.
struct ChannelCtx<'a> {
    name: &'a str,
    ch: &'a RawChannel,
    base: &'a Path,
    endpoint: String,
    notify_url: Option<String>,
    scenes: Vec<Scene>,
    problems: Vec<Problem>,
    /// The keys loaded: (field, where it is referenced, fingerprint).
    keys: Vec<(String, (u64, u64), String)>,
}

impl ChannelCtx<'_> {
    fn problem(&mut self, message: String) {
        let p = at(&self.ch.kind, message);
        self.problems.push(p);
    }

    /// A required plain field.
    fn required(&mut self, value: &Option<String>, key: &str) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v.clone(),
            _ => {
                let kind = self.ch.kind.value.clone();
                self.problem(format!("channel `{}` ({kind}) needs {key}", self.name));
                String::new()
            }
        }
    }

    /// Fields that belong to other kinds are mistakes, not silently ignored settings.
    fn forbid(&mut self, present: bool, key: &str) {
        if present {
            let kind = self.ch.kind.value.clone();
            self.problem(format!(
                "channel `{}`: `{key}` does not apply to kind {kind}",
                self.name
            ));
        }
    }

    /// Notes a loaded key, to refuse published TEST keys.
    fn loaded(&mut self, field: &str, at: &serde_saphyr::Location, key: &impl Fingerprint) {
        let field = field.split_whitespace().next().unwrap_or(field).to_string();
        self.keys
            .push((field, (at.line(), at.column()), key.fingerprint()));
    }

    fn load<K: Fingerprint>(
        &mut self,
        r: &Option<serde_saphyr::Spanned<KeyRef>>,
        key: &str,
        from_file: impl Fn(&Path) -> Result<K, crate::crypto::KeyError>,
        from_text: impl Fn(&str) -> Result<K, crate::crypto::KeyError>,
    ) -> Option<K> {
        match r {
            Some(k) => match load_key(&k.value, self.base, from_file, from_text) {
                Ok(v) => {
                    self.loaded(key, &k.referenced, &v);
                    Some(v)
                }
                Err(msg) => {
                    self.problems.push(at(k, format!("{key}: {msg}")));
                    None
                }
            },
            None => {
                let kind = self.ch.kind.value.clone();
                self.problem(format!("channel `{}` ({kind}) needs {key}", self.name));
                None
            }
        }
    }

    /// The merchant signing key.
    fn merchant_key(
        &mut self,
        r: &Option<serde_saphyr::Spanned<KeyRef>>,
        key: &str,
    ) -> Option<Arc<PrivateKey>> {
        self.load(r, key, PrivateKey::from_file, PrivateKey::from_text)
            .map(Arc::new)
    }
}

fn compile_alipay(cx: &mut ChannelCtx<'_>) -> Option<SharedChannel> {
    let ch = cx.ch;
    cx.forbid(ch.mchid.is_some(), "mchid");
    cx.forbid(ch.merchant_private_key.is_some(), "merchant_private_key");
    cx.forbid(ch.merchant_serial_no.is_some(), "merchant_serial_no");
    cx.forbid(ch.apiv3_key.is_some(), "apiv3_key");
    cx.forbid(
        ch.wechatpay_public_key.is_some() || ch.wechatpay_public_key_id.is_some(),
        "wechatpay_public_key",
    );
    cx.forbid(ch.platform_certificates.is_some(), "platform_certificates");
    let app_id = cx.required(&ch.app_id, "app_id");
    let private_key = cx.merchant_key(&ch.app_private_key, "app_private_key");
    let public_key = cx.load(
        &ch.alipay_public_key,
        "alipay_public_key",
        PublicKey::from_file,
        PublicKey::from_text,
    );
    let (private_key, public_key) = (private_key?, public_key?);
    Some(Arc::new(Alipay::new(AlipayConfig {
        name: cx.name.to_string(),
        app_id,
        gateway: cx.endpoint.clone(),
        app_private_key: private_key,
        alipay_public_key: public_key,
        notify_url: cx.notify_url.clone(),
        return_url: ch.return_url.clone(),
        scenes: cx.scenes.clone(),
    })))
}

fn compile_wechatpay(cx: &mut ChannelCtx<'_>) -> Option<SharedChannel> {
    let ch = cx.ch;
    cx.forbid(ch.app_private_key.is_some(), "app_private_key");
    cx.forbid(ch.alipay_public_key.is_some(), "alipay_public_key");
    cx.forbid(ch.return_url.is_some(), "return_url");
    let mchid = cx.required(&ch.mchid, "mchid");
    let appid = cx.required(&ch.app_id, "app_id");
    let serial = cx
        .required(&ch.merchant_serial_no, "merchant_serial_no")
        .to_ascii_uppercase();
    let merchant_key = cx.merchant_key(&ch.merchant_private_key, "merchant_private_key");
    let apiv3_key = cx
        .load(
            &ch.apiv3_key,
            "apiv3_key",
            SymmetricKey::from_file,
            SymmetricKey::from_text,
        )
        .map(Arc::new);
    let mut keys = PlatformKeys::default();
    match (&ch.wechatpay_public_key, &ch.platform_certificates) {
        (Some(_), Some(_)) => cx.problem(format!(
            "channel `{}`: choose one verification mode: wechatpay_public_key (+ wechatpay_public_key_id) or platform_certificates",
            cx.name
        )),
        (Some(_), None) => {
            let id = cx.required(&ch.wechatpay_public_key_id, "wechatpay_public_key_id");
            if !id.is_empty() && !id.starts_with("PUB_KEY_ID_") {
                cx.problem(format!("channel `{}`: wechatpay_public_key_id must start with PUB_KEY_ID_", cx.name));
            }
            if let Some(k) = cx.load(&ch.wechatpay_public_key, "wechatpay_public_key", PublicKey::from_file, PublicKey::from_text) {
                keys.insert(&id, k);
            }
        }
        (None, Some(certs)) => {
            cx.forbid(ch.wechatpay_public_key_id.is_some(), "wechatpay_public_key_id");
            if certs.is_empty() {
                cx.problem(format!("channel `{}`: platform_certificates is empty", cx.name));
            }
            for c in certs {
                let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| crate::crypto::KeyError::Read { path: p.display().to_string(), source });
                match load_key(&c.value, cx.base, |p| read(p).and_then(|t| crate::crypto::certificate_serial_and_key(&t)), crate::crypto::certificate_serial_and_key) {
                    Ok((serial, key)) => {
                        cx.loaded("platform_certificates", &c.referenced, &key);
                        keys.insert(&serial, key)
                    }
                    Err(msg) => cx.problems.push(at(c, format!("platform certificate: {msg}"))),
                }
            }
        }
        (None, None) => cx.problem(format!(
            "channel `{}` (wechatpay) needs wechatpay_public_key + wechatpay_public_key_id, or platform_certificates",
            cx.name
        )),
    }
    let (merchant_key, apiv3_key) = (merchant_key?, apiv3_key?);
    Some(Arc::new(WechatPay::new(WechatPayConfig {
        name: cx.name.to_string(),
        mchid,
        appid,
        base_url: cx.endpoint.clone(),
        merchant_key,
        merchant_serial: serial,
        platform_keys: keys,
        apiv3_key,
        notify_url: cx.notify_url.clone(),
        scenes: cx.scenes.clone(),
    })))
}

/// A Ping++ secret key: `sk_live_…` or `sk_test_…`.
fn secret_key(text: &str) -> Result<Secret<String>, crate::crypto::KeyError> {
    let t = text.trim();
    if (t.starts_with("sk_live_") || t.starts_with("sk_test_")) && t.len() > 8 {
        Ok(Secret::new(t.to_string()))
    } else {
        Err(crate::crypto::KeyError::Encoding)
    }
}

fn compile_pingpp(cx: &mut ChannelCtx<'_>) -> Option<SharedChannel> {
    let ch = cx.ch;
    cx.forbid(ch.app_private_key.is_some(), "app_private_key");
    cx.forbid(ch.alipay_public_key.is_some(), "alipay_public_key");
    cx.forbid(ch.mchid.is_some(), "mchid");
    cx.forbid(ch.merchant_serial_no.is_some(), "merchant_serial_no");
    cx.forbid(ch.apiv3_key.is_some(), "apiv3_key");
    cx.forbid(
        ch.wechatpay_public_key.is_some() || ch.wechatpay_public_key_id.is_some(),
        "wechatpay_public_key",
    );
    cx.forbid(ch.platform_certificates.is_some(), "platform_certificates");
    let app_id = cx.required(&ch.app_id, "app_id");
    let merchant_key = cx.merchant_key(&ch.merchant_private_key, "merchant_private_key");
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|source| crate::crypto::KeyError::Read {
                path: p.display().to_string(),
                source,
            })
            .and_then(|t| secret_key(&t))
    };
    let secret = cx
        .load(
            &ch.secret_key,
            "secret_key (sk_live_… or sk_test_…)",
            read,
            secret_key,
        )
        .map(Arc::new);
    let public = cx.load(
        &ch.pingpp_public_key,
        "pingpp_public_key",
        PublicKey::from_file,
        PublicKey::from_text,
    );
    let (merchant_key, secret, public) = (merchant_key?, secret?, public?);
    Some(Arc::new(Pingpp::new(PingppConfig {
        name: cx.name.to_string(),
        app_id,
        base_url: cx.endpoint.clone(),
        secret_key: secret,
        merchant_key,
        pingpp_public_key: public,
        return_url: ch.return_url.clone(),
        scenes: cx.scenes.clone(),
    })))
}

fn compile_channel(
    name: &str,
    ch: &RawChannel,
    base: &Path,
    opts: &CompileOptions,
    before: Option<&ChannelEntry>,
) -> Result<ChannelEntry, Vec<Problem>> {
    let Some((kind_methods, offered)) = kind_info(&ch.kind.value) else {
        return Err(vec![at(
            &ch.kind,
            format!(
                "unknown channel kind `{}` (supported: alipay, wechatpay, pingpp)",
                ch.kind.value
            ),
        )]);
    };
    let endpoint = ch.endpoint.value.clone();
    let notify_url = ch.notify_url.clone().or_else(|| {
        opts.notify_base_url
            .as_ref()
            .map(|b| format!("{}/notify/{name}", b.trim_end_matches('/')))
    });
    let mut cx = ChannelCtx {
        name,
        ch,
        base,
        endpoint,
        notify_url,
        scenes: ch.scenes.clone().unwrap_or_else(|| offered.clone()),
        problems: Vec::new(),
        keys: Vec::new(),
    };
    if let Err(msg) = check_endpoint(&cx.endpoint) {
        cx.problems.push(at(&ch.endpoint, msg));
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
    let methods = ch.methods.clone().unwrap_or_else(|| kind_methods.clone());
    for m in &methods {
        if !kind_methods.contains(m) {
            cx.problem(format!(
                "channel `{name}`: {} does not carry the {} method",
                ch.kind.value,
                m.as_str()
            ));
        }
    }
    let fee = FeeSchedule::from_raw(&ch.fee).unwrap_or_else(|(msg, at)| {
        cx.problems.push(Problem {
            line: at.line(),
            column: at.column(),
            message: format!("channel `{name}` fee: {msg}"),
        });
        FeeSchedule::default()
    });
    let limits = AmountRange {
        min: ch.limits.min_amount.unwrap_or(1).max(1),
        max: ch
            .limits
            .max_amount
            .unwrap_or(MAX_AMOUNT_FEN)
            .min(MAX_AMOUNT_FEN),
    };
    if limits.min > limits.max {
        cx.problem(format!("channel `{name}`: min_amount is above max_amount"));
    }
    let mut maintenance = Vec::new();
    for w in &ch.maintenance {
        match Window::compile(&w.value) {
            Ok(win) => maintenance.push(win),
            Err(msg) => cx
                .problems
                .push(at(w, format!("channel `{name}` maintenance: {msg}"))),
        }
    }
    let breaker = compile_breaker(&ch.circuit).unwrap_or_else(|msg| {
        cx.problem(format!("channel `{name}` circuit: {msg}"));
        BreakerConfig::default()
    });
    let rate_limit = match &ch.rate_limit {
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
    let adapter = match ch.kind.value.as_str() {
        "alipay" => compile_alipay(&mut cx),
        "wechatpay" => compile_wechatpay(&mut cx),
        _ => compile_pingpp(&mut cx),
    };
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
        connect_timeout: Duration::from_millis(ch.timeouts.connect_ms.unwrap_or(3_000)),
        request_timeout: Duration::from_millis(ch.timeouts.request_ms.unwrap_or(10_000)),
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
        enabled: ch.enabled.unwrap_or(true),
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

fn load_key<K>(
    r: &KeyRef,
    base: &Path,
    from_file: impl Fn(&Path) -> Result<K, crate::crypto::KeyError>,
    from_text: impl Fn(&str) -> Result<K, crate::crypto::KeyError>,
) -> Result<K, String> {
    if let Some(text) = r.inline_text() {
        return from_text(text).map_err(|e| e.to_string());
    }
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
