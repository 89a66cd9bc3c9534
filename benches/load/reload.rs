//! Hot reload: how long after a write of routes.yaml `/admin/routes` serves the new rules.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use crate::client::get_text;
use crate::processes::{routes_yaml, Setup, PLATFORM_KEY_REF};
use crate::report::{percentile, row, Table};
use crate::TARGET_RELOAD_MS;

/// The name of the first rule `/admin/routes` shows.
async fn active_rule(admin: SocketAddr) -> anyhow::Result<String> {
    let v: Value = serde_json::from_str(&get_text(admin, "/admin/routes").await?)?;
    Ok(v["rules"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Milliseconds from the end of each write of routes.yaml to the new rule name showing on the
/// admin listener; `rename` writes a temporary file and renames it over (editors, kubelet).
async fn reload_times(setup: &Setup, n: usize, rename: bool) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for k in 0..n {
        let rule = format!("bench-{}-{k}", if rename { "rename" } else { "write" });
        let text = routes_yaml(&setup.endpoint, PLATFORM_KEY_REF, "../keys", &rule);
        if rename {
            let tmp = setup.config.with_extension("yaml.tmp");
            std::fs::write(&tmp, &text)?;
            std::fs::rename(&tmp, &setup.config)?;
        } else {
            std::fs::write(&setup.config, &text)?;
        }
        let written = Instant::now();
        let deadline = written + Duration::from_secs(10);
        loop {
            if active_rule(setup.admin).await? == rule {
                times.push(written.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                bail!("rule {rule} not visible 10 s after the write");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Let the watcher's debounce window pass before the next write, with a gap that varies
        // (golden-ratio steps over 0-100 ms) so the writes do not phase-lock to a periodic check.
        let jitter = (k as f64 * 0.618_034).fract() * 100.0;
        tokio::time::sleep(Duration::from_millis(300) + Duration::from_secs_f64(jitter / 1e3))
            .await;
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// `reloads` rewrites by rename, then as many in place; adds their median and max rows.
pub async fn reload_rows(setup: &Setup, reloads: usize, table: &mut Table) -> anyhow::Result<()> {
    for (rename, kmed, lmed, kmax, lmax) in [
        (
            true,
            "reload_rename_median_ms",
            "reload, temp file + rename: median",
            "reload_rename_max_ms",
            "reload, temp file + rename: max",
        ),
        (
            false,
            "reload_inplace_median_ms",
            "reload, in-place write: median",
            "reload_inplace_max_ms",
            "reload, in-place write: max",
        ),
    ] {
        let t = reload_times(setup, reloads, rename).await?;
        let max = t.last().copied().unwrap_or(0.0);
        table.push(row(kmed, lmed, percentile(&t, 0.5), "ms").with_target(TARGET_RELOAD_MS));
        table.push(row(kmax, lmax, max, "ms").with_target(TARGET_RELOAD_MS));
    }
    Ok(())
}
