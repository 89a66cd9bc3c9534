//! Reaching the database: the URL (whose password never reaches a log or an error), the
//! password file, TLS through rustls, and the connection pool.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};

use crate::ledger::LedgerError;

/// A `postgres://` URL (libpq's URL form: `postgres://user[:password]@host[:port]/dbname
/// [?sslmode=require&…]`). `Debug` shows it without its password.
#[derive(Clone)]
pub struct LedgerUrl(String);

impl FromStr for LedgerUrl {
    type Err = std::convert::Infallible;

    /// Takes any text: it is checked when the ledger is opened ([`LedgerUrl::config`]), whose
    /// errors never repeat it (clap's own would show the value, password and all).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(LedgerUrl(s.to_string()))
    }
}

impl std::fmt::Debug for LedgerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl LedgerUrl {
    /// The connection settings the URL gives; the error never repeats the URL.
    pub fn config(&self) -> Result<tokio_postgres::Config, LedgerError> {
        if !(self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")) {
            return Err(LedgerError::Storage(
                "the ledger URL must start with postgres:// or postgresql://".into(),
            ));
        }
        tokio_postgres::Config::from_str(&self.0)
            .map_err(|e| LedgerError::Storage(format!("invalid ledger URL: {e}")))
    }

    /// The URL as logs may show it: user, hosts, ports, database and TLS mode; no password,
    /// no other parameter.
    pub fn redacted(&self) -> String {
        match tokio_postgres::Config::from_str(&self.0) {
            Ok(c) => shown(&c),
            Err(_) => "postgres://[unreadable URL]".into(),
        }
    }
}

/// How payroute reaches the PostgreSQL ledger.
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub url: LedgerUrl,
    /// A file holding the password (a Kubernetes Secret mount); it takes precedence over a
    /// password in the URL. Surrounding whitespace (the file's final newline) is ignored.
    pub password_file: Option<PathBuf>,
    /// PEM certificates trusted for the server besides the public web roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Most connections the pool opens.
    pub max_connections: usize,
    /// Extra connection parameters, after the URL's: tests set a `search_path` here.
    pub options: Option<String>,
}

impl PgOptions {
    /// Options for `url` with the defaults of the command line.
    pub fn new(url: LedgerUrl) -> Self {
        PgOptions {
            url,
            password_file: None,
            ca_file: None,
            max_connections: 16,
            options: None,
        }
    }
}

/// Longest wait for a connection to be set up (TCP, TLS and authentication).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a free connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The pool described by `opts` (no connection is made yet), and the URL as logs show it.
pub(super) fn pool(opts: &PgOptions) -> Result<(Pool, String), LedgerError> {
    let mut config = opts.url.config()?;
    if let Some(file) = &opts.password_file {
        config.password(read_password(file)?);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("payroute");
    }
    if let Some(extra) = &opts.options {
        let options = match config.get_options() {
            Some(own) => format!("{own} {extra}"),
            None => extra.clone(),
        };
        config.options(options);
    }
    // Anything but `require` is plain TCP: TLS without a verified certificate protects from
    // nothing, so payroute does not try it "when available" (libpq's `prefer`).
    let tls = config.get_ssl_mode() == SslMode::Require;
    if !tls {
        if opts.ca_file.is_some() {
            return Err(LedgerError::Storage(
                "--ledger-ca-file needs sslmode=require in the ledger URL".into(),
            ));
        }
        config.ssl_mode(SslMode::Disable);
    }
    let shown = shown(&config);
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if tls {
        let tls =
            tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(opts.ca_file.as_deref())?);
        Manager::from_config(config, tls, manager_config)
    } else {
        Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    };
    let pool = Pool::builder(manager)
        .max_size(opts.max_connections.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| LedgerError::Storage(format!("ledger connection pool: {e}")))?;
    Ok((pool, shown))
}

fn read_password(file: &Path) -> Result<String, LedgerError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        LedgerError::Storage(format!(
            "cannot read the ledger password file {}: {e}",
            file.display()
        ))
    })?;
    Ok(text.trim().to_string())
}

/// rustls with the public web roots and the CA file's certificates: the server's certificate
/// and host name are always verified (libpq's `verify-full`).
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, LedgerError> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(file) = ca_file {
        let bad = |e: &dyn std::fmt::Display| {
            LedgerError::Storage(format!("ledger CA file {}: {e}", file.display()))
        };
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(file).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad(&"no PEM certificate in it"));
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LedgerError::Storage(format!("ledger TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// `postgres://user@host:port,…/dbname?sslmode=…`, from a parsed configuration.
fn shown(c: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match c.get_ports().get(i).or(c.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let mode = match c.get_ssl_mode() {
        SslMode::Require => "require",
        SslMode::Disable => "disable",
        _ => "prefer",
    };
    format!(
        "postgres://{user}{}/{}?sslmode={mode}",
        hosts.join(","),
        c.get_dbname().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        let url: LedgerUrl = "postgres://app:s3cr%40t@db.example.com:6432/pay?sslmode=require"
            .parse()
            .unwrap();
        let shown = format!("{url:?}");
        assert_eq!(
            shown,
            "postgres://app@db.example.com:6432/pay?sslmode=require"
        );
        assert!(!shown.contains("s3cr"));
        let bare: LedgerUrl = "postgresql://localhost/test".parse().unwrap();
        assert_eq!(
            bare.redacted(),
            "postgres://localhost:5432/test?sslmode=prefer"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        for bad in [
            "mysql://app:hunter2@db/pay",
            "postgres://app:hunter2@db/pay?sslmode=bogus",
            "postgres://app:hunter2@db:notaport/pay",
        ] {
            let url: LedgerUrl = bad.parse().unwrap();
            let e = pool(&PgOptions::new(url.clone())).unwrap_err().to_string();
            assert!(e.contains("ledger URL"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
            assert!(!format!("{url:?}").contains("hunter2"));
        }
    }

    #[test]
    fn a_password_file_is_read_trimmed_and_a_ca_file_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(read_password(&file).unwrap(), "from-file");
        let missing = read_password(&dir.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("password file"), "{missing}");
        let mut opts = PgOptions::new("postgres://u:p@127.0.0.1/test".parse().unwrap());
        opts.ca_file = Some(file.clone());
        let e = pool(&opts).unwrap_err().to_string();
        assert!(e.contains("sslmode=require"), "{e}");
        // With TLS, a CA file without a certificate in it is refused.
        opts.url = "postgres://u:p@127.0.0.1/test?sslmode=require"
            .parse()
            .unwrap();
        let e = pool(&opts).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
