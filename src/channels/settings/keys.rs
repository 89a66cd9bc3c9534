//! Keys in routes.yaml (`KeyRef`: a file or an environment variable) and the context a channel
//! kind's settings are compiled in (`ChannelCtx`: loads keys, collects located problems).
//!
//! A leaf: channels' settings import it, it imports nothing from channels.

use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub use super::problem::at;
use super::problem::Problem;
use super::test_keys::Fingerprint;
use crate::crypto::{PrivateKey, Secret};
use crate::domain::Scene;

/// Where a key comes from: a file (relative to routes.yaml) or an environment variable.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// Path of the key file (a Kubernetes Secret mount), relative to routes.yaml.
    #[serde(default)]
    pub file: Option<String>,
    /// Name of an environment variable holding the key.
    #[serde(default)]
    pub env: Option<String>,
    /// The key's text, held in memory: only a rewrite of the parsed file (the sandbox pointing
    /// a channel at its simulator) sets it; a routes.yaml cannot (`inline` is an unknown key).
    #[serde(skip)]
    #[schemars(skip)]
    inline: Option<Secret<String>>,
}

impl KeyRef {
    /// A key given as text rather than read from a file or the environment.
    pub fn inline(text: String) -> Self {
        KeyRef {
            file: None,
            env: None,
            inline: Some(Secret::new(text)),
        }
    }

    /// The in-memory text, when the key is one.
    pub fn inline_text(&self) -> Option<&str> {
        self.inline.as_ref().map(|t| t.expose().as_str())
    }
}

/// What one channel definition needs while it is compiled.
pub struct ChannelCtx<'a> {
    pub name: &'a str,
    /// The channel's `kind` (problems without a key of their own are put there).
    pub kind: &'a Spanned<String>,
    /// Where relative key paths start.
    pub base: &'a Path,
    pub endpoint: String,
    pub notify_url: Option<String>,
    pub scenes: Vec<Scene>,
    pub problems: Vec<Problem>,
    /// The keys loaded: (field, where it is referenced, fingerprint).
    pub keys: Vec<(String, (u64, u64), String)>,
}

impl ChannelCtx<'_> {
    pub fn problem(&mut self, message: String) {
        let p = at(self.kind, message);
        self.problems.push(p);
    }

    /// A required plain field.
    pub fn required(&mut self, value: &Option<String>, key: &str) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v.clone(),
            _ => {
                let kind = self.kind.value.clone();
                self.problem(format!("channel `{}` ({kind}) needs {key}", self.name));
                String::new()
            }
        }
    }

    /// Fields that belong to other kinds are mistakes, not silently ignored settings.
    pub fn forbid(&mut self, present: bool, key: &str) {
        if present {
            let kind = self.kind.value.clone();
            self.problem(format!(
                "channel `{}`: `{key}` does not apply to kind {kind}",
                self.name
            ));
        }
    }

    /// Notes a loaded key, to refuse published TEST keys.
    pub fn loaded(&mut self, field: &str, at: &serde_saphyr::Location, key: &impl Fingerprint) {
        let field = field.split_whitespace().next().unwrap_or(field).to_string();
        self.keys
            .push((field, (at.line(), at.column()), key.fingerprint()));
    }

    pub fn load<K: Fingerprint>(
        &mut self,
        r: &Option<Spanned<KeyRef>>,
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
                let kind = self.kind.value.clone();
                self.problem(format!("channel `{}` ({kind}) needs {key}", self.name));
                None
            }
        }
    }

    /// The merchant signing key.
    pub fn merchant_key(
        &mut self,
        r: &Option<Spanned<KeyRef>>,
        key: &str,
    ) -> Option<Arc<PrivateKey>> {
        self.load(r, key, PrivateKey::from_file, PrivateKey::from_text)
            .map(Arc::new)
    }
}

/// Reads a key: in memory, from a file (relative to `base`) or from an environment variable.
pub fn load_key<K>(
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
