//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one signature per secret so that a receiver holding either
//! the old or the new secret verifies during a rotation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::crypto::Secret;

/// Most secrets a file may hold (the current one and the one being rotated out, with room
/// for an overlap).
pub const MAX_SECRETS: usize = 3;

/// The signing secrets, from a file of one `whsec_<base64>` per line (blank lines and lines
/// starting with `#` are skipped). The key is the base64-decoded part.
#[derive(Debug)]
pub struct Secrets(Vec<Secret<aws_lc_rs::hmac::Key>>);

/// Why a secrets file is not usable. Never contains a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("cannot read the events secret file {0}: {1}")]
    Read(String, String),
    #[error("the events secret file {0} holds no secret (one `whsec_…` per line)")]
    Empty(String),
    #[error("the events secret file {path}, line {line}: not a `whsec_` secret with base64 of at least 24 bytes")]
    Malformed { path: String, line: usize },
    #[error("the events secret file {0} holds more than {MAX_SECRETS} secrets")]
    TooMany(String),
}

impl Secrets {
    /// Parses the file's text; `path` is only for messages.
    pub fn parse(text: &str, path: &str) -> Result<Secrets, SecretsError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = line
                .strip_prefix("whsec_")
                .and_then(|b| B64.decode(b).ok())
                .filter(|b| b.len() >= 24)
                .ok_or(SecretsError::Malformed {
                    path: path.to_string(),
                    line: i + 1,
                })?;
            keys.push(Secret::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &bytes,
            )));
        }
        match keys.len() {
            0 => Err(SecretsError::Empty(path.to_string())),
            n if n > MAX_SECRETS => Err(SecretsError::TooMany(path.to_string())),
            _ => Ok(Secrets(keys)),
        }
    }

    /// The `webhook-signature` header value for one delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut signed = Vec::with_capacity(id.len() + body.len() + 24);
        signed.extend_from_slice(id.as_bytes());
        signed.extend_from_slice(format!(".{timestamp}.").as_bytes());
        signed.extend_from_slice(body);
        self.0
            .iter()
            .map(|k| {
                format!(
                    "v1,{}",
                    B64.encode(aws_lc_rs::hmac::sign(k.expose(), &signed))
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The secrets file, read again whenever it changes (a rotation needs no restart: Kubernetes
/// updates a mounted Secret in place). A file that becomes unreadable or invalid keeps the last
/// good secrets in use, and says so in the log.
#[derive(Debug)]
pub struct SecretsFile {
    path: PathBuf,
    current: Mutex<(Option<SystemTime>, Arc<Secrets>)>,
}

impl SecretsFile {
    /// Reads the file; an unusable file is an error at start.
    pub fn open(path: &Path) -> Result<SecretsFile, SecretsError> {
        let (modified, secrets) = read(path)?;
        Ok(SecretsFile {
            path: path.to_path_buf(),
            current: Mutex::new((modified, Arc::new(secrets))),
        })
    }

    /// The secrets to sign with now.
    pub fn current(&self) -> Arc<Secrets> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if modified.is_some() && modified != cur.0 {
            match read(&self.path) {
                Ok((m, s)) => *cur = (m, Arc::new(s)),
                Err(e) => {
                    tracing::error!(error = %e, "events: keeping the previous signing secrets");
                    cur.0 = modified;
                }
            }
        }
        cur.1.clone()
    }
}

fn read(path: &Path) -> Result<(Option<SystemTime>, Secrets), SecretsError> {
    let shown = path.display().to_string();
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|e| SecretsError::Read(shown.clone(), e.to_string()))?;
    Ok((modified, Secrets::parse(&text, &shown)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_as_the_specification_s_example() {
        let s = Secrets::parse(SECRET, "f").unwrap();
        assert_eq!(s.sign(ID, TS, BODY), SIGNATURE);
    }

    #[test]
    fn two_secrets_give_two_signatures_in_file_order() {
        let other = format!("whsec_{}", B64.encode([7u8; 32]));
        let s = Secrets::parse(&format!("# rotation\n{other}\n\n{SECRET}\n"), "f").unwrap();
        let header = s.sign(ID, TS, BODY);
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SIGNATURE);
        assert_ne!(parts[0], SIGNATURE);
    }

    #[test]
    fn bad_files_are_refused_without_showing_the_secret() {
        let e = Secrets::parse("", "f").unwrap_err();
        assert_eq!(e, SecretsError::Empty("f".into()));
        let e = Secrets::parse("whsec_!!!notbase64", "f").unwrap_err();
        assert_eq!(
            e,
            SecretsError::Malformed {
                path: "f".into(),
                line: 1
            }
        );
        assert!(!e.to_string().contains("notbase64"));
        let short = format!("whsec_{}", B64.encode([1u8; 8]));
        assert!(Secrets::parse(&short, "f").is_err());
        let many = [SECRET; 4].join("\n");
        assert_eq!(
            Secrets::parse(&many, "f").unwrap_err(),
            SecretsError::TooMany("f".into())
        );
        assert!(!format!("{:?}", Secrets::parse(SECRET, "f").unwrap()).contains("MfKQ"));
    }

    #[test]
    fn a_rotated_file_is_read_again_and_a_broken_one_keeps_the_last_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, SECRET).unwrap();
        let file = SecretsFile::open(&path).unwrap();
        assert_eq!(file.current().sign(ID, TS, BODY), SIGNATURE);
        let other = format!("whsec_{}", B64.encode([9u8; 32]));
        std::fs::write(&path, format!("{other}\n{SECRET}\n")).unwrap();
        bump_mtime(&path, 5);
        assert_eq!(file.current().sign(ID, TS, BODY).split(' ').count(), 2);
        std::fs::write(&path, "garbage").unwrap();
        bump_mtime(&path, 10);
        assert_eq!(file.current().sign(ID, TS, BODY).split(' ').count(), 2);
    }

    fn bump_mtime(path: &Path, secs: u64) {
        let t = SystemTime::now() + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
}
