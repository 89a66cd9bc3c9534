//! Versioned schema migrations, embedded in the binary and applied at start.
//!
//! Several replicas may start at once on a fresh database: each runs `migrate` in one
//! transaction holding a transaction-scoped advisory lock, so the first applies what is
//! missing and the others, waiting on the lock, find it applied. A migration and its row in
//! `schema_migrations` commit together, so a crash leaves either both or neither.

use super::{pg_error, pg_text, Client};
use crate::ledger::LedgerError;

/// A schema change: applied once, in version order, never edited once released.
pub(super) struct Migration {
    pub(super) version: i32,
    pub(super) name: &'static str,
    pub(super) sql: &'static str,
}

/// Every migration, oldest first.
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "ledger",
    sql: include_str!("migrations/0001_ledger.sql"),
}];

/// The advisory lock's first key ("payr"): the second is the schema's, so that ledgers in
/// different schemas of one database migrate independently.
const LOCK_CLASS: i32 = 0x7061_7972;

/// Applies the migrations the schema lacks; returns the versions applied by this call.
pub(super) async fn migrate(client: &mut Client) -> Result<Vec<i32>, LedgerError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    match apply(&tx).await {
        Ok(done) => {
            tx.commit().await.map_err(pg_error)?;
            Ok(done)
        }
        Err(e) => {
            // At once, not when the connection next runs: the lock and the half-applied
            // migration must not outlive the failure.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn apply(tx: &deadpool_postgres::Transaction<'_>) -> Result<Vec<i32>, LedgerError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&LOCK_CLASS],
    )
    .await
    .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error)?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(newer) = applied.iter().max().filter(|v| **v > latest()) {
        return Err(LedgerError::Storage(format!(
            "the ledger database has schema version {newer}, newer than this payroute knows \
             ({}): run a newer payroute",
            latest()
        )));
    }
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(m.sql).await.map_err(|e| {
            LedgerError::Storage(format!(
                "migration {} ({}): {}",
                m.version,
                m.name,
                pg_text(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "ledger migration applied"
        );
        done.push(m.version);
    }
    Ok(done)
}

/// The newest schema version this build knows.
fn latest() -> i32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}
