//! Test databases: each test gets a schema of its own on the test server (found in
//! `PAYROUTE_TEST_POSTGRES_URL`), dropped when the test ends, also when it fails.
//!
//! Without a reachable server the PostgreSQL tests are skipped with a notice, except under CI
//! (`CI` set, as the other tests that need a service read it), where they fail: CI starts PostgreSQL, and a suite that silently tested one
//! backend would claim what it did not check.

use std::time::Duration;

use super::{PgLedger, PgOptions};

/// The server the tests use when `PAYROUTE_TEST_POSTGRES_URL` is unset.
pub(crate) const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// The test server's URL.
pub(crate) fn url() -> String {
    std::env::var("PAYROUTE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A schema of the test's own.
#[derive(Debug)]
pub(crate) struct TestDb {
    url: String,
    pub(crate) schema: String,
}

impl TestDb {
    /// A fresh, empty schema; `None` when the server cannot be reached outside CI.
    pub(crate) async fn create() -> Option<TestDb> {
        let url = url();
        let client = match connect(&url).await {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("CI: the test PostgreSQL server does not answer: {e}")
            }
            Err(e) => {
                eprintln!(
                    "NOTICE: PostgreSQL ledger test skipped: no server at \
                     PAYROUTE_TEST_POSTGRES_URL ({e})"
                );
                return None;
            }
        };
        let schema = format!("payroute_test_{}", crate::crypto::random_hex(6));
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create the test schema");
        Some(TestDb { url, schema })
    }

    /// Options that reach this schema (it is the connections' `search_path`).
    pub(crate) fn options(&self) -> PgOptions {
        let mut opts = PgOptions::new(self.url.parse().expect("a valid test URL"));
        opts.options = Some(format!("-c search_path={}", self.schema));
        opts.max_connections = 8;
        opts
    }

    /// A ledger in this schema (migrated on the way).
    pub(crate) async fn ledger(&self) -> PgLedger {
        PgLedger::connect(&self.options())
            .await
            .expect("connect to the test schema")
    }
}

impl Drop for TestDb {
    /// Drops the schema from a thread of its own: `Drop` cannot wait on the test's runtime.
    /// Tests run on a multi-thread runtime, so that the connections of ledgers still open can
    /// finish their transactions (whose locks the drop waits for) meanwhile.
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = connect(&url).await?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("test schema {} was not dropped: {dropped:?}", self.schema);
        }
    }
}

/// A plain connection whose driver runs in the background.
async fn connect(url: &str) -> Result<tokio_postgres::Client, std::io::Error> {
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tokio::spawn(connection);
    Ok(client)
}
