//! Reconciliation: a channel's statement of a day, downloaded and stored as the channel gave it,
//! checked line by line against the ledger, with a stored report of every discrepancy and what
//! to do about it.
//!
//! Files, under the data directory: `bills/<channel>/<date>.<csv.gz|zip>` (the original, kept
//! only once it matched the channel's hash and could be read), `bills/<channel>/<date>.json`
//! (its size, SHA-1 and format) and `reconciliations/<id>.json` (the last completed report of
//! a channel and day; a re-run replaces it).

pub mod cli;
pub mod engine;
pub mod fees;
pub mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use self::fees::{MeasuredFee, FEE_WARN_PPM};
use self::report::{Report, RunStatus, StatementInfo};
use crate::bills::{BillError, Lines, StatementFormat};
use crate::ledger::events::{EventStore, EventType, Subject};
use crate::payments::Payments;

/// The largest statement payroute downloads.
const MAX_STATEMENT_BYTES: u64 = 4 << 30;

/// A statement stored in the data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatement {
    /// The original file.
    pub path: PathBuf,
    pub bytes: u64,
    pub sha1: String,
    pub format: StatementFormat,
}

/// Runs reconciliations and keeps their reports.
#[derive(Debug)]
pub struct Reconciler {
    payments: Arc<Payments>,
    events: Arc<dyn EventStore>,
    dir: PathBuf,
    metrics: Arc<crate::metrics::Metrics>,
    /// Reconciliations running, or whose last run failed (by id), with their progress.
    runs: Mutex<HashMap<String, (Report, Arc<AtomicU64>)>>,
    /// One download at a time per channel and day.
    fetching: tokio::sync::Mutex<()>,
    /// The fees each channel's latest completed reconciliation measured.
    measured: Mutex<HashMap<String, MeasuredFee>>,
}

/// The UTC bounds of a China-time day.
pub fn china_day(date: NaiveDate) -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let tz = chrono_tz::Asia::Shanghai;
    let start = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
            .single()
            .expect("China has no DST")
            .with_timezone(&Utc)
    };
    (start(date), start(date.succ_opt().unwrap_or(date)))
}

impl Reconciler {
    /// A reconciler over `payments`' channels and ledger, storing under `data_dir`.
    pub fn new(
        payments: Arc<Payments>,
        events: Arc<dyn EventStore>,
        data_dir: &Path,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        Arc::new(Reconciler {
            payments,
            events,
            dir: data_dir.to_path_buf(),
            metrics,
            runs: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
            measured: Mutex::new(fees::measured_fees(data_dir)),
        })
    }

    /// The fees the latest reconciliation of `channel` measured.
    pub fn measured_fee(&self, channel: &str) -> Option<MeasuredFee> {
        self.measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
    }

    fn note_fees(&self, report: &Report) {
        let m = MeasuredFee::of(report);
        if let Some((actual, estimated)) = m.off() {
            tracing::warn!(channel = report.channel.as_str(), date = %report.date,
                measured_rate_ppm = actual, configured_rate_ppm = estimated,
                "the channel's statement shows another fee rate than routes.yaml's `fee`: correct it, routing ranks channels by it");
        }
        let mut measured = self.measured.lock().unwrap_or_else(|p| p.into_inner());
        let newer = measured
            .get(&report.channel)
            .is_none_or(|old| old.date <= m.date);
        if newer {
            measured.insert(report.channel.clone(), m);
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Report, Arc<AtomicU64>)>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report_path(&self, id: &str) -> PathBuf {
        self.dir.join("reconciliations").join(format!("{id}.json"))
    }

    /// The report `id`: a run in progress or failed last, else the stored one.
    pub fn get(&self, id: &str) -> Result<Option<Report>, BillError> {
        if let Some((report, progress)) = self.runs().get(id) {
            let mut report = report.clone();
            if report.status == RunStatus::Running {
                report.lines_read = progress.load(Ordering::Relaxed);
            }
            return Ok(Some(report));
        }
        match std::fs::read(self.report_path(id)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| BillError::Io(format!("report {id}: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BillError::Io(format!("report {id}: {e}"))),
        }
    }

    /// Starts reconciling `channel` on `date` in the background (unless it is running) and
    /// answers the running report.
    pub fn start(self: &Arc<Self>, channel: &str, date: NaiveDate) -> Report {
        let id = Report::id_for(channel, date);
        let mut runs = self.runs();
        if let Some((r, _)) = runs
            .get(&id)
            .filter(|(r, _)| r.status == RunStatus::Running)
        {
            return r.clone();
        }
        let report = Report::running(channel, date, Utc::now());
        runs.insert(id, (report.clone(), Arc::new(AtomicU64::new(0))));
        drop(runs);
        let (me, channel) = (self.clone(), channel.to_string());
        tokio::spawn(async move {
            let _ = me.run(&channel, date).await;
        });
        report
    }

    /// Each day at `hour` (China time), reconciles every configured channel's statement of the
    /// day before; a statement not ready yet (or a channel not answering) is tried again every
    /// 30 minutes, 12 times; channels without statements are left out.
    pub async fn daily(
        self: Arc<Self>,
        hour: u8,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let now = Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
            let Some(next) = next_run(now, hour) else {
                return;
            };
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            let date = next.date_naive().pred_opt().unwrap_or(next.date_naive());
            let channels: Vec<String> = self
                .payments
                .snapshot()
                .channels
                .iter()
                .map(|c| c.name.clone())
                .collect();
            for channel in channels {
                let me = self.clone();
                tokio::spawn(async move { me.with_retries(&channel, date).await });
            }
        }
    }

    async fn with_retries(&self, channel: &str, date: NaiveDate) {
        for _ in 0..12 {
            match self.run(channel, date).await {
                Ok(_) | Err(BillError::Unsupported(_)) => return,
                Err(BillError::NotReady(_) | BillError::Unavailable(_)) => {
                    tokio::time::sleep(std::time::Duration::from_secs(1800)).await;
                }
                Err(e) => {
                    tracing::error!(channel, %date, error = %e, "scheduled reconciliation failed");
                    self.metrics
                        .reconciliation_failures
                        .with_label_values(&[channel])
                        .inc();
                    return;
                }
            }
        }
        tracing::error!(channel, %date, "scheduled reconciliation gave up: no statement after 6 hours");
        self.metrics
            .reconciliation_failures
            .with_label_values(&[channel])
            .inc();
    }

    /// Reconciles `channel` on `date` now and answers the report (stored when completed; a
    /// failure stores nothing and leaves an earlier report as it was).
    pub async fn run(&self, channel: &str, date: NaiveDate) -> Result<Report, BillError> {
        let id = Report::id_for(channel, date);
        let progress = {
            let mut runs = self.runs();
            let entry = runs
                .entry(id.clone())
                .or_insert_with(|| (Report::running(channel, date, Utc::now()), Arc::default()));
            entry.0 = Report::running(channel, date, Utc::now());
            entry.1.store(0, Ordering::Relaxed);
            entry.1.clone()
        };
        let result = self.reconcile(channel, date, progress).await;
        let mut runs = self.runs();
        match result {
            Ok(report) => {
                runs.remove(&id);
                self.metrics.record_reconciliation(&report);
                self.note_fees(&report);
                Ok(report)
            }
            Err(e) => {
                if let Some((r, progress)) = runs.get_mut(&id) {
                    r.status = RunStatus::Failed;
                    r.error = Some(e.to_string());
                    r.finished_at = Some(Utc::now());
                    r.lines_read = progress.load(Ordering::Relaxed);
                }
                tracing::warn!(channel, %date, error = %e, "reconciliation failed");
                Err(e)
            }
        }
    }

    async fn reconcile(
        &self,
        channel: &str,
        date: NaiveDate,
        progress: Arc<AtomicU64>,
    ) -> Result<Report, BillError> {
        let stored = self.statement(channel, date).await?;
        let snap = self.payments.snapshot();
        let entry = snap
            .channel(channel)
            .ok_or_else(|| BillError::Unavailable(format!("no channel {channel} is configured")))?;
        let lines = self.open(entry.adapter.as_ref(), &stored)?;
        let mut report = Report::running(channel, date, Utc::now());
        report.statement = Some(StatementInfo {
            file: stored
                .path
                .strip_prefix(&self.dir)
                .unwrap_or(&stored.path)
                .display()
                .to_string(),
            bytes: stored.bytes,
            sha1: stored.sha1.clone(),
            lines: 0,
        });
        let (ledger, events) = (self.payments.ledger().clone(), self.events.clone());
        let fee = entry.fee;
        let (channel_name, rt) = (channel.to_string(), tokio::runtime::Handle::current());
        let done = tokio::task::spawn_blocking(move || {
            let inputs = engine::Inputs {
                channel: &channel_name,
                ledger: ledger.as_ref(),
                events: events.as_ref(),
                fee: Some(&fee),
                day: china_day(date),
                progress: &progress,
            };
            let r = engine::compare(lines, &inputs, &mut report, &rt);
            r.map(|()| report)
        })
        .await
        .map_err(|e| BillError::Io(format!("reconciliation stopped: {e}")))?;
        let mut report = match done {
            Ok(report) => report,
            Err(e @ (BillError::Damaged(_) | BillError::Line { .. })) => {
                // Not a statement payroute can read: keep nothing of it, fetch it anew next time.
                remove_statement(&stored);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        report.status = RunStatus::Completed;
        report.finished_at = Some(Utc::now());
        if let Some(s) = report.statement.as_mut() {
            s.lines = report.lines_read;
        }
        write_atomically(&self.report_path(&report.id), &report)?;
        self.announce(&report).await;
        tracing::info!(channel, %date, lines = report.lines_read,
            payment_discrepancies = report.payments.discrepancies(),
            refund_discrepancies = report.refunds.discrepancies(), "reconciliation completed");
        Ok(report)
    }

    /// Tells the app a reconciliation completed (`reconciliation.completed`, one delivery queue
    /// per channel). The report is stored already: an event that cannot be recorded is logged.
    async fn announce(&self, report: &Report) {
        let data = match serde_json::to_value(report::Summary::of(report)) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(channel = report.channel.as_str(), error = %e, "reconciliation.completed: cannot render the event");
                return;
            }
        };
        let queue = format!("reconciliation:{}", report.channel);
        let subject = Subject::Notice {
            queue: &queue,
            data: &data,
        };
        let recorded = self
            .events
            .record_event(EventType::ReconciliationCompleted, subject, Utc::now())
            .await;
        if let Err(e) = recorded {
            tracing::warn!(channel = report.channel.as_str(), date = %report.date, error = %e,
                "reconciliation.completed: the event could not be recorded");
        }
    }

    /// The statement's lines (the file is opened here, read on the caller's thread).
    pub fn open(
        &self,
        adapter: &dyn crate::channels::Channel,
        stored: &StoredStatement,
    ) -> Result<Lines, BillError> {
        let file = std::fs::File::open(&stored.path)
            .map_err(|e| BillError::Io(format!("{}: {e}", stored.path.display())))?;
        adapter.statement_lines(file).inspect_err(|e| {
            if matches!(e, BillError::Damaged(_) | BillError::Line { .. }) {
                remove_statement(stored);
            }
        })
    }

    fn statement_paths(&self, channel: &str, date: NaiveDate) -> (PathBuf, PathBuf) {
        let dir = self.dir.join("bills").join(channel);
        (dir.join(format!("{date}.json")), dir)
    }

    /// The stored statement of `channel` on `date`, downloaded first when it is not stored.
    pub async fn statement(
        &self,
        channel: &str,
        date: NaiveDate,
    ) -> Result<StoredStatement, BillError> {
        let _one = self.fetching.lock().await;
        let (meta, dir) = self.statement_paths(channel, date);
        if let Ok(bytes) = std::fs::read(&meta) {
            if let Ok(stored) = serde_json::from_slice::<StoredStatement>(&bytes) {
                if stored.path.exists() {
                    return Ok(stored);
                }
            }
        }
        let location = self.payments.bill_location(channel, date).await?;
        let snap = self.payments.snapshot();
        let entry = snap
            .channel(channel)
            .ok_or_else(|| BillError::Unavailable(format!("no channel {channel} is configured")))?;
        let req = entry
            .adapter
            .download_request(&location, Utc::now())
            .map_err(|e| BillError::Unsupported(e.to_string()))?;
        let io = |e: std::io::Error| BillError::Io(format!("{}: {e}", dir.display()));
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let part = dir.join(format!(".{date}.part"));
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let got = entry
            .client
            .download(req, &mut file, MAX_STATEMENT_BYTES)
            .await;
        drop(file);
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(BillError::Unavailable(format!(
                    "downloading the statement of {channel} for {date}: {e}"
                )));
            }
        };
        if let Some(want) = &location.sha1 {
            if !want.eq_ignore_ascii_case(&got.sha1) {
                let _ = std::fs::remove_file(&part);
                return Err(BillError::Damaged(format!(
                    "the file's SHA-1 is {}, the channel gave {want}",
                    got.sha1
                )));
            }
        }
        let path = dir.join(format!("{date}.{}", location.format.extension()));
        tokio::fs::rename(&part, &path).await.map_err(io)?;
        let stored = StoredStatement {
            path,
            bytes: got.bytes,
            sha1: got.sha1,
            format: location.format,
        };
        write_atomically(&meta, &stored)?;
        Ok(stored)
    }
}

/// The next `hour`:00 (China time) after `now`.
pub fn next_run(
    now: chrono::DateTime<chrono_tz::Tz>,
    hour: u8,
) -> Option<chrono::DateTime<chrono_tz::Tz>> {
    let tz = now.timezone();
    let at = |d: NaiveDate| {
        d.and_hms_opt(u32::from(hour), 0, 0)
            .and_then(|t| tz.from_local_datetime(&t).single())
    };
    let today = at(now.date_naive())?;
    if today > now {
        Some(today)
    } else {
        at(now.date_naive().succ_opt()?)
    }
}

/// Forgets a stored statement that cannot be read (the next request downloads it anew).
pub fn remove_statement(stored: &StoredStatement) {
    let _ = std::fs::remove_file(&stored.path);
    if let Some(dir) = stored.path.parent() {
        if let Some(stem) = stored.path.file_name().and_then(|n| n.to_str()) {
            let date = stem.split('.').next().unwrap_or_default();
            let _ = std::fs::remove_file(dir.join(format!("{date}.json")));
        }
    }
}

/// Writes `value` as JSON to `path` through a temporary file and a rename.
fn write_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), BillError> {
    let io = |e: std::io::Error| BillError::Io(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("json.part");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| BillError::Io(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests;
