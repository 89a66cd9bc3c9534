//! The ledger's disk: fsync'd overwrites and durable redb commits per second, and how long one
//! commit takes, before and after the load, so that ledger throughput and the latency payroute
//! adds can be read against what the disk allows.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::report::Table;

/// What the disk allows, measured by one thread, one second per probe.
#[derive(Clone, Copy)]
pub struct Disk {
    /// fsync'd 4 KiB overwrites per second.
    pub fsyncs: f64,
    /// One fsync'd 4 KiB overwrite: median and 99th percentile, in seconds (what a commit that
    /// writes one page would take).
    pub fsync_p50: f64,
    pub fsync_p99: f64,
    /// Durable redb commits per second.
    pub commits: f64,
    /// One durable redb commit: median and 99th percentile, in seconds.
    pub commit_p50: f64,
    pub commit_p99: f64,
}

/// Probes the disk in `dir`.
pub fn probe(dir: &Path) -> anyhow::Result<Disk> {
    let fsyncs = per_second(Duration::from_secs(1), fsync_op(dir)?)?;
    let commits = per_second(Duration::from_secs(1), redb_commit_op(dir)?)?;
    let _ = std::fs::remove_file(dir.join("fsync-probe"));
    let _ = std::fs::remove_file(dir.join("probe.redb"));
    Ok(Disk {
        fsyncs: fsyncs.rate,
        fsync_p50: fsyncs.quantile(0.5),
        fsync_p99: fsyncs.quantile(0.99),
        commits: commits.rate,
        commit_p50: commits.quantile(0.5),
        commit_p99: commits.quantile(0.99),
    })
}

/// Runs of one operation: how many per second, and how long each took.
struct Runs {
    rate: f64,
    /// Seconds, sorted.
    each: Vec<f64>,
}

impl Runs {
    fn quantile(&self, q: f64) -> f64 {
        let i = ((self.each.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.each.get(i).copied().unwrap_or(f64::NAN)
    }
}

/// Runs `op` (given its run number) back to back for about `limit` and at most 100,000 times.
fn per_second(
    limit: Duration,
    mut op: impl FnMut(u32) -> anyhow::Result<()>,
) -> anyhow::Result<Runs> {
    let (start, mut n) = (Instant::now(), 0u32);
    let mut each = Vec::new();
    while start.elapsed() < limit && n < 100_000 {
        let t = Instant::now();
        op(n)?;
        each.push(t.elapsed().as_secs_f64());
        n += 1;
    }
    each.sort_by(f64::total_cmp);
    Ok(Runs {
        rate: f64::from(n) / start.elapsed().as_secs_f64(),
        each,
    })
}

/// An fsync'd 4 KiB overwrite of a preallocated file (what a database's commit pays).
fn fsync_op(dir: &Path) -> anyhow::Result<impl FnMut(u32) -> anyhow::Result<()>> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    const BLOCKS: u64 = 256;
    let mut f = std::fs::File::create(dir.join("fsync-probe"))?;
    let block = [0x5au8; 4096];
    for _ in 0..BLOCKS {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    Ok(move |n| {
        f.seek(SeekFrom::Start(u64::from(n) % BLOCKS * 4096))?;
        f.write_all(&block)?;
        Ok(f.sync_data()?)
    })
}

/// A durable redb write transaction of one ~1.5 KiB record (like one ledger write of
/// payroute), on the ledger's disk.
fn redb_commit_op(dir: &Path) -> anyhow::Result<impl FnMut(u32) -> anyhow::Result<()>> {
    const PROBE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("probe");
    let db = redb::Database::create(dir.join("probe.redb"))?;
    let value = vec![b'x'; 1536];
    // Untimed first commits: creating and growing a fresh file costs more than steady state.
    for i in 0..200u32 {
        let tx = db.begin_write()?;
        tx.open_table(PROBE)?
            .insert(format!("warm{i:09}").as_str(), value.as_slice())?;
        tx.commit()?;
    }
    Ok(move |n| {
        let tx = db.begin_write()?;
        tx.open_table(PROBE)?
            .insert(format!("order{n:09}").as_str(), value.as_slice())?;
        Ok(tx.commit()?)
    })
}

/// The disk rows (probes before the load and after the run) and what they mean for the ledger.
pub fn rows(table: &mut Table, before: Disk, after: Disk) {
    table.row(
        "disk_fsync_per_s",
        "disk: fsync'd 4 KiB overwrites/s, before load",
        before.fsyncs,
        "1/s",
    );
    table.row(
        "disk_fsync_p50_ms",
        "disk: one fsync'd 4 KiB overwrite, p50, before load",
        before.fsync_p50 * 1e3,
        "ms",
    );
    table.row(
        "disk_fsync_p99_ms",
        "disk: one fsync'd 4 KiB overwrite, p99, before load",
        before.fsync_p99 * 1e3,
        "ms",
    );
    table.row(
        "redb_commits_per_s",
        "disk: redb durable commits/s, before load",
        before.commits,
        "1/s",
    );
    table.row(
        "redb_commits_per_s_after",
        "disk: redb durable commits/s, after the run",
        after.commits,
        "1/s",
    );
    for (key, label, disk) in [
        ("", "before load", before),
        ("_after", "after the run", after),
    ] {
        table.row(
            format!("redb_commit_p50_ms{key}"),
            format!("disk: one redb durable commit, p50, {label}"),
            disk.commit_p50 * 1e3,
            "ms",
        );
        table.row(
            format!("redb_commit_p99_ms{key}"),
            format!("disk: one redb durable commit, p99, {label}"),
            disk.commit_p99 * 1e3,
            "ms",
        );
    }
    let slowest = before.commits.min(after.commits);
    table.note(format!(
        "payroute writes the ledger twice per create (before and after the channel call); group \
         commit shares one fsync among the writes waiting together, so the ledger caps creations \
         only above {:.0}/s × (writes per commit) / 2 (fsync'd overwrites/s after the run: {:.0})",
        slowest, after.fsyncs
    ));
    table.note(format!(
        "the two durable writes of a create add at least two commits to its latency: on this disk \
         {:.2} ms, twice one commit's median ({:.1} ms if both took the p99 of the probe's commits, \
         before load)",
        2.0 * before.commit_p50 * 1e3,
        2.0 * before.commit_p99 * 1e3,
    ));
}
