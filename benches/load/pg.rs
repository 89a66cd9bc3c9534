//! The PostgreSQL phase (`--ledger postgres`): a schema of its own for the run's ledger, on
//! `PAYROUTE_BENCH_POSTGRES_URL` (default the machine's server, database `test`).

use anyhow::Context as _;

/// The server the PostgreSQL phase uses when `PAYROUTE_BENCH_POSTGRES_URL` is unset.
const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// A fresh schema, dropped by [`Schema::drop`].
pub struct Schema {
    url: String,
    name: String,
}

impl Schema {
    /// Creates `payroute_bench_<run>` on the server.
    pub async fn create(run: &str) -> anyhow::Result<Schema> {
        let url =
            std::env::var("PAYROUTE_BENCH_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let schema = Schema {
            url,
            name: format!("payroute_bench_{run}"),
        };
        schema
            .run(&format!("CREATE SCHEMA {}", schema.name))
            .await
            .context("the PostgreSQL phase needs a server (PAYROUTE_BENCH_POSTGRES_URL)")?;
        Ok(schema)
    }

    /// `--ledger-url` for a payroute whose tables live in this schema.
    pub fn ledger_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// Drops the schema and everything the run wrote in it.
    pub async fn drop(self) {
        if let Err(e) = self
            .run(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
        {
            eprintln!("schema {} was not dropped: {e:#}", self.name);
        }
    }

    async fn run(&self, sql: &str) -> anyhow::Result<()> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(connection);
        client.batch_execute(sql).await?;
        drop(client);
        let _ = conn.await;
        Ok(())
    }
}
