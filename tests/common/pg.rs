//! `PAYROUTE_TEST_LEDGER=postgres`: the payroute the harness starts keeps its ledger in
//! PostgreSQL, in a schema of its own on `PAYROUTE_TEST_POSTGRES_URL` (dropped when the test
//! ends), so that an end-to-end file can be run once on that backend:
//! `PAYROUTE_TEST_LEDGER=postgres cargo test --test e2e_api`.

use payroute::ledger::postgres::LedgerUrl;

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// A schema for one payroute's ledger.
pub struct Schema {
    url: String,
    name: String,
}

impl Schema {
    /// A fresh schema when `PAYROUTE_TEST_LEDGER=postgres`; panics when the server does not
    /// answer then (the run asked for it).
    pub async fn when_asked() -> Option<Schema> {
        if std::env::var("PAYROUTE_TEST_LEDGER").ok()?.as_str() != "postgres" {
            return None;
        }
        let made = Schema::make().await;
        Some(made.expect("PAYROUTE_TEST_LEDGER=postgres: the test server answers"))
    }

    /// A fresh schema for a test that needs PostgreSQL: `None` (with a notice) when the server
    /// does not answer outside CI; under CI (`CI` set) a server that does not answer fails
    /// the test.
    pub async fn for_test() -> Option<Schema> {
        match Schema::make().await {
            Ok(s) => Some(s),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: no PostgreSQL for the test ({e})");
                None
            }
            Err(e) => panic!("the test PostgreSQL does not answer: {e}"),
        }
    }

    async fn make() -> Result<Schema, String> {
        let url =
            std::env::var("PAYROUTE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
        let name = format!("payroute_e2e_{}", payroute::crypto::random_hex(6));
        run(&url, format!("CREATE SCHEMA {name}")).await?;
        Ok(Schema { url, name })
    }

    /// `--ledger-url` for a payroute whose tables live in this schema.
    pub fn ledger_url(&self) -> LedgerUrl {
        self.url_text().parse().expect("a valid test URL")
    }

    /// [`Schema::ledger_url`] as text, for a command line.
    pub fn url_text(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }
}

impl Drop for Schema {
    /// Drops the schema from a thread of its own: `Drop` cannot wait on the test's runtime.
    fn drop(&mut self) {
        let (url, sql) = (
            self.url.clone(),
            format!("DROP SCHEMA {} CASCADE", self.name),
        );
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(run(&url, sql))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("test schema {} was not dropped: {dropped:?}", self.name);
        }
    }
}

/// Runs one statement on a connection of its own.
async fn run(url: &str, sql: String) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    client.batch_execute(&sql).await.map_err(|e| e.to_string())
}
