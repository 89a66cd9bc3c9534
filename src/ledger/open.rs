//! Opening the ledger the settings name: PostgreSQL with `--ledger-url`, else the embedded
//! ledger in the data directory.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use super::postgres::{PgLedger, PgOptions};
use super::{EventStore, Ledger, RedbLedger};

/// An open ledger: its two faces (the same store) and where it is, as logs may show it.
pub struct Opened {
    pub ledger: Arc<dyn Ledger>,
    pub events: Arc<dyn EventStore>,
    pub shown: String,
}

/// Opens the PostgreSQL ledger `postgres` names, or else the embedded one in `data_dir`;
/// `deliver`: events are queued for delivery to the app; `commits` counts committed writes.
pub async fn open(
    postgres: Option<PgOptions>,
    data_dir: &Path,
    commits: prometheus::IntCounter,
    deliver: bool,
) -> anyhow::Result<Opened> {
    let Some(opts) = postgres else {
        let redb = Arc::new(
            RedbLedger::open_counting(data_dir, commits)
                .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?
                .delivering_events(deliver),
        );
        return Ok(Opened {
            ledger: redb.clone(),
            events: redb,
            shown: data_dir.display().to_string(),
        });
    };
    // Errors name the database without its password (see `LedgerUrl`).
    let pg = PgLedger::connect(&opts)
        .await
        .context("cannot open the PostgreSQL ledger")?;
    let pg = Arc::new(pg.delivering_events(deliver).counting_commits(commits));
    Ok(Opened {
        shown: pg.shown().to_string(),
        ledger: pg.clone(),
        events: pg,
    })
}
