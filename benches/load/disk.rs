//! The ledger's disk: fsync'd overwrites and durable redb commits per second, before and after
//! the load, so that ledger throughput can be read against what the disk allows.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::report::Table;

/// fsync'd overwrites/s and durable redb commits/s in `dir`, one thread, one second each.
pub fn probe(dir: &Path) -> anyhow::Result<(f64, f64)> {
    Ok((
        fsync_rate(dir, Duration::from_secs(1))?,
        redb_commit_rate(dir, Duration::from_secs(1))?,
    ))
}

/// How many times per second `op` (given its run number) completes, run back to back for about
/// `limit` and at most 100,000 times.
fn per_second(
    limit: Duration,
    mut op: impl FnMut(u32) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < limit && n < 100_000 {
        op(n)?;
        n += 1;
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

/// fsync'd 4 KiB overwrites of a preallocated file per second (what a database's commit pays),
/// one thread, for about `limit`.
fn fsync_rate(dir: &Path, limit: Duration) -> anyhow::Result<f64> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    const BLOCKS: u64 = 256;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    for _ in 0..BLOCKS {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    let rate = per_second(limit, |n| {
        f.seek(SeekFrom::Start(u64::from(n) % BLOCKS * 4096))?;
        f.write_all(&block)?;
        Ok(f.sync_data()?)
    })?;
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Durable redb write transactions per second (one ~1.5 KiB record each, like one ledger write
/// of payroute), one thread, for about `limit`, on the ledger's disk.
fn redb_commit_rate(dir: &Path, limit: Duration) -> anyhow::Result<f64> {
    const PROBE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("probe");
    let path = dir.join("probe.redb");
    let db = redb::Database::create(&path)?;
    let value = vec![b'x'; 1536];
    // Untimed first commits: creating and growing a fresh file costs more than steady state.
    for i in 0..200u32 {
        let tx = db.begin_write()?;
        tx.open_table(PROBE)?
            .insert(format!("warm{i:09}").as_str(), value.as_slice())?;
        tx.commit()?;
    }
    let rate = per_second(limit, |n| {
        let tx = db.begin_write()?;
        tx.open_table(PROBE)?
            .insert(format!("order{n:09}").as_str(), value.as_slice())?;
        Ok(tx.commit()?)
    })?;
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// The disk rows (probes before the load and after the run) and what they mean for the ledger.
pub fn rows(table: &mut Table, before: (f64, f64), after: (f64, f64)) {
    table.row(
        "disk_fsync_per_s",
        "disk: fsync'd 4 KiB overwrites/s, before load",
        before.0,
        "1/s",
    );
    table.row(
        "redb_commits_per_s",
        "disk: redb durable commits/s, before load",
        before.1,
        "1/s",
    );
    table.row(
        "redb_commits_per_s_after",
        "disk: redb durable commits/s, after the run",
        after.1,
        "1/s",
    );
    let slowest = before.1.min(after.1);
    table.note(format!(
        "payroute writes the ledger twice per create (before and after the channel call); group \
         commit shares one fsync among the writes waiting together, so the ledger caps creations \
         only above {:.0}/s × (writes per commit) / 2 (fsync'd overwrites/s after the run: {:.0})",
        slowest, after.0
    ));
}
