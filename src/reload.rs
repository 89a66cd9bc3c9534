//! Hot reload: parse → validate → compile → swap, or keep the old snapshot. The watcher only
//! signals (directory events, a periodic content check, SIGHUP); `ConfigStore::reload` decides.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::config::{compile_reusing, CompileOptions, Snapshot};
use crate::metrics::Metrics;

/// What the last reloads did (shown by `/admin/routes`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// The outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied { hash: String },
    Unchanged,
    Rejected { error: String },
}

/// The active configuration and how to reload it.
#[derive(Debug)]
pub struct ConfigStore {
    current: Arc<ArcSwap<Snapshot>>,
    path: PathBuf,
    opts: CompileOptions,
    status: Mutex<ReloadStatus>,
    metrics: Arc<Metrics>,
    /// Serializes reloads (watcher, poller and SIGHUP may fire together).
    reloading: Mutex<()>,
}

impl ConfigStore {
    /// Wraps an already loaded snapshot.
    pub fn new(
        current: Arc<ArcSwap<Snapshot>>,
        path: PathBuf,
        opts: CompileOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_config(&current.load().hash);
        metrics.register_channels(current.load().channels.iter().map(|c| c.name.as_str()));
        ConfigStore {
            current,
            path,
            opts,
            status: Mutex::default(),
            metrics,
            reloading: Mutex::new(()),
        }
    }

    /// The shared snapshot handle.
    pub fn handle(&self) -> Arc<ArcSwap<Snapshot>> {
        self.current.clone()
    }

    /// The reload status.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the file; if its content changed, compiles it completely and swaps it in.
    /// An invalid file changes nothing but the status and the error counter.
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = match std::fs::read_to_string(&self.path) {
            Err(e) => ReloadOutcome::Rejected {
                error: format!("cannot read {}: {e}", self.path.display()),
            },
            Ok(text) if crate::crypto::sha256_hex(text.as_bytes()) == self.current.load().hash => {
                ReloadOutcome::Unchanged
            }
            Ok(text) => {
                match compile_reusing(&text, &self.path, &self.opts, Some(&self.current.load())) {
                    Ok(snap) => {
                        let hash = snap.hash.clone();
                        self.metrics
                            .register_channels(snap.channels.iter().map(|c| c.name.as_str()));
                        self.current.store(Arc::new(snap));
                        ReloadOutcome::Applied { hash }
                    }
                    Err(problems) => ReloadOutcome::Rejected {
                        error: problems
                            .iter()
                            .map(|p| format!("{}:{p}", self.path.display()))
                            .collect::<Vec<_>>()
                            .join("; "),
                    },
                }
            }
        };
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match &outcome {
            ReloadOutcome::Applied { hash } => {
                st.reloads_ok += 1;
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.set_config(hash);
                tracing::info!(hash = hash.as_str(), "routes reloaded");
            }
            ReloadOutcome::Rejected { error } => {
                // The same broken file is reported once, not on every periodic check.
                if st.last_error.as_deref() != Some(error.as_str()) {
                    st.reloads_failed += 1;
                    self.metrics
                        .config_reloads
                        .with_label_values(&["error"])
                        .inc();
                    tracing::error!(
                        error = error.as_str(),
                        "routes reload rejected; the previous rules keep serving"
                    );
                }
                st.last_error = Some(error.clone());
                st.last_error_at = Some(Utc::now());
            }
            ReloadOutcome::Unchanged => {}
        }
        if matches!(
            outcome,
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged
        ) {
            // The file on disk is the active rules again: nothing is left to report.
            st.last_error = None;
        }
        self.metrics
            .config_last_reload_ok
            .set(i64::from(st.last_error.is_none()));
        outcome
    }
}

/// How long a burst of file events is left to settle before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(25);

/// Watches the directory holding the file (ConfigMaps swap a `..data` symlink; editors rename
/// over the file), debounces, and also re-checks the content every `poll` and on SIGHUP.
pub fn spawn_watcher(
    store: Arc<ConfigStore>,
    watch_dir: bool,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let dir: PathBuf = store
        .path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let watcher = {
        let tx = tx.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reads (ours included) change nothing: reacting to them would re-read forever.
            if event.is_ok_and(|e| matches!(e.kind, notify::EventKind::Access(_))) {
                return;
            }
            let _ = tx.try_send(());
        })
        .and_then(|mut w| {
            use notify::Watcher as _;
            w.watch(&dir, notify::RecursiveMode::NonRecursive)
                .map(|_| w)
        })
    };
    let watcher = match watcher {
        Ok(_) if !watch_dir => None,
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration directory; relying on the periodic check");
            None
        }
    };
    tokio::spawn(async move {
        let _keep = watcher;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async { let _ = shutdown.wait_for(|s| *s).await.map(|_| ()); } => break,
                _ = tick.tick() => {}
                Some(()) = rx.recv() => {
                    // Debounce: a ConfigMap update or an editor save is a burst of events that
                    // ends within milliseconds; events after this pause trigger another check.
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading routes");
                }
            }
            let s = store.clone();
            let _ = tokio::task::spawn_blocking(move || s.reload()).await;
        }
    })
}
