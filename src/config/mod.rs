//! routes.yaml: raw serde types → validated, compiled `Snapshot` (channels with their keys and
//! clients, rules). A snapshot is immutable; the server holds the active one in an `ArcSwap`.

mod analysis;
mod breaker;
mod channel;
mod fee;
mod raw;
mod rules;
mod sections;
mod windows;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use self::analysis::warnings;
pub use self::breaker::BreakerConfig;
use self::channel::compile_channel;
pub use self::channel::{ChannelEntry, ClientSettings};
pub use self::fee::{FeeSchedule, Rate};
pub use self::raw::{KeyRef, RawChannel, RawConfig, Strategy};
use self::rules::compile_rules;
pub use self::rules::Rule;
pub use self::windows::Window;
pub use crate::channels::settings::problem::Problem;

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
    /// How channel rate limits are enforced: this process's share, or shared through Redis.
    pub limits: crate::limits::LimitPlan,
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

#[cfg(test)]
mod tests;
