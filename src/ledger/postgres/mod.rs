//! The PostgreSQL ledger (`--ledger-url`): the same contract as the embedded ledger, shared by
//! every replica that points at the same database.
//!
//! Records are the embedded ledger's JSON, in `text` columns beside the columns that are
//! queried. Every write is one transaction that locks the order it is about (see `tx`), calls
//! the same pure rules as the embedded ledger (`ledger::rules`, `order`, `order::splits`,
//! `order::events`), and appends its events before it commits.

mod batch;
mod connect;
mod events;
mod locks;
mod migrate;
mod orders;
mod splits;
mod tx;

#[cfg(test)]
pub(crate) mod testdb;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use self::connect::{LedgerUrl, PgOptions};
use super::LedgerError;
use crate::domain::PaymentStatus;

type Client = deadpool_postgres::Client;

/// Connections of the lock pool: one lock session, and room to open the next while a broken
/// one is still referenced by the locks taken on it.
const LOCK_CONNECTIONS: usize = 4;

/// The PostgreSQL-backed ledger. Clones share one connection pool.
#[derive(Clone)]
pub struct PgLedger {
    pool: deadpool_postgres::Pool,
    ledger_id: Arc<str>,
    /// Whether events are queued for delivery to the app (`--events-url`).
    deliver: bool,
    /// Committed write transactions (`payroute_ledger_commits_total`).
    commits: prometheus::IntCounter,
    /// The database as logs may show it.
    shown: Arc<str>,
    /// This replica's lock session and lease (see `locks`).
    locks: Arc<locks::Locks>,
    /// The group-commit writer of order inserts and writes (see `batch`).
    batch: Arc<batch::Batcher>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgLedger({})", self.shown)
    }
}

impl PgLedger {
    /// Connects, applies the migrations the database lacks (safe when several replicas start
    /// at once) and reads the ledger's id (made by the first one).
    pub async fn connect(opts: &PgOptions) -> Result<Self, LedgerError> {
        let (pool, shown) = connect::pool(opts)?;
        let mut client = pool.get().await.map_err(|e| {
            LedgerError::Storage(format!(
                "cannot connect to the ledger at {shown}: {}",
                chain(&e)
            ))
        })?;
        migrate::migrate(&mut client).await?;
        let ledger_id = ledger_id(&client).await?;
        let schema: String = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        drop(client);
        let lock_opts = PgOptions {
            max_connections: LOCK_CONNECTIONS,
            ..opts.clone()
        };
        let locks = locks::Locks::start(connect::pool(&lock_opts)?.0, schema).await?;
        tracing::info!(replica = locks.replica(), "ledger lease taken");
        Ok(PgLedger {
            pool,
            ledger_id: ledger_id.into(),
            deliver: false,
            commits: prometheus::IntCounter::new("ledger_commits", "commits").map_err(storage)?,
            shown: shown.into(),
            locks: Arc::new(locks),
            batch: Arc::default(),
        })
    }

    /// This replica's number in the `owner` columns (its lease).
    pub(super) fn replica(&self) -> i32 {
        self.locks.replica()
    }

    /// Counts committed writes in `commits` (`payroute_ledger_commits_total`).
    pub fn counting_commits(mut self, commits: prometheus::IntCounter) -> Self {
        self.commits = commits;
        self
    }

    /// Queues every event written from now on for delivery to the app (`--events-url`).
    /// Without it events are still written (the feed), and nothing is queued.
    pub fn delivering_events(mut self, deliver: bool) -> Self {
        self.deliver = deliver;
        self
    }

    /// The database as logs may show it (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    async fn client(&self) -> Result<Client, LedgerError> {
        self.pool
            .get()
            .await
            .map_err(|e| LedgerError::Storage(format!("ledger connection: {}", chain(&e))))
    }

    /// Runs `sql` (a cached prepared statement) outside a write and answers its rows.
    async fn read(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, LedgerError> {
        let client = self.client().await?;
        let st = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.query(&st, params).await.map_err(pg_error)
    }

    /// The records (first column) of the rows `sql` selects, decoded.
    async fn records<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<T>, LedgerError> {
        self.read(sql, params)
            .await?
            .iter()
            .map(|r| decode(r.get(0)))
            .collect()
    }

    /// The record of the row `sql` selects by `key`, if any.
    async fn record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        key: &str,
    ) -> Result<Option<T>, LedgerError> {
        Ok(self.records(sql, &[&key]).await?.into_iter().next())
    }
}

/// The ledger id, made by the first process that finds none.
async fn ledger_id(client: &Client) -> Result<String, LedgerError> {
    let made = crate::crypto::random_hex(4);
    client
        .execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('ledger_id', $1) \
             ON CONFLICT (key) DO NOTHING",
            &[&made],
        )
        .await
        .map_err(pg_error)?;
    let row = client
        .query_one("SELECT value FROM ledger_meta WHERE key = 'ledger_id'", &[])
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}

/// A driver error as a storage error (see [`pg_text`]).
fn pg_error(e: tokio_postgres::Error) -> LedgerError {
    LedgerError::Storage(pg_text(&e))
}

/// A driver error as text: the server's own message and SQLSTATE when there is one (the
/// driver's `Display` says only "db error"). Neither carries the password.
fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "postgres {}: {}{}",
            db.code().code(),
            db.message(),
            db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        None => format!("postgres: {}", chain(e)),
    }
}

/// An error and its causes, `outer: inner: …` (the pool's and the driver's own `Display` leave
/// the cause out, e.g. which certificate check failed).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, LedgerError> {
    serde_json::to_string(v).map_err(storage)
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, LedgerError> {
    serde_json::from_str(s).map_err(storage)
}

/// Milliseconds since the epoch: the precision of the indexes, as in the embedded ledger.
fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// A feed position or count as the database stores it (`bigint`); beyond it, the largest.
fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A status as its API name (`partially_refunded`), for the `status` column.
fn status_text(s: PaymentStatus) -> Result<String, LedgerError> {
    match serde_json::to_value(s).map_err(storage)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(storage(format!("status encodes as {other}"))),
    }
}
