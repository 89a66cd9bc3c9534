//! What payroute's own `/metrics` says about the run: ledger writes, group commits and channel
//! calls, read from the Prometheus text exposition.

use crate::client;
use crate::processes::Setup;
use crate::report::Table;

/// The histogram of payroute's ledger writes.
const LEDGER_WRITE: &str = "payroute_ledger_write_duration_seconds";

/// Sum of `<name>_sum` and of `<name>_count` over all label sets (None when absent).
fn histogram_totals(metrics: &str, name: &str, label: Option<&str>) -> Option<(f64, f64)> {
    let (mut sum, mut count, mut seen) = (0.0, 0.0, false);
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if label.is_some_and(|l| !key.contains(l)) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or(0.0);
        let metric = key.split('{').next().unwrap_or(key);
        if metric == format!("{name}_sum") {
            sum += value;
            seen = true;
        } else if metric == format!("{name}_count") {
            count += value;
        }
    }
    seen.then_some((sum, count))
}

/// Cumulative bucket counts of histogram `name` (all label sets added up), by upper bound.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(le) = key.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        match by_le.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += value,
            None => by_le.push((le, value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// The upper bound of the bucket holding quantile `q` of the observations made between two
/// expositions of histogram `name`.
fn bucket_quantile(before: &str, after: &str, name: &str, q: f64) -> Option<f64> {
    let (b, a) = (buckets(before, name), buckets(after, name));
    let delta: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, c)| {
            let old = b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
            (*le, c - old)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
}

/// The value of an unlabelled counter or gauge in a text exposition.
fn plain_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Ledger-write and channel-call histograms from /metrics, when payroute has them.
pub async fn ledger_rows(setup: &Setup, table: &mut Table) {
    let metrics = match client::get_text(setup.admin, "/metrics").await {
        Ok(m) => m,
        Err(e) => {
            table.note(format!("cannot read /metrics: {e}"));
            return;
        }
    };
    let writes = histogram_totals(&metrics, LEDGER_WRITE, None);
    match writes {
        Some((sum, count)) if count > 0.0 => {
            table.row(
                "ledger_write_mean_ms",
                "ledger write mean (/metrics)",
                sum / count * 1e3,
                "ms",
            );
            table.row(
                "ledger_writes",
                "ledger writes so far (/metrics)",
                count,
                "",
            );
        }
        _ => table.note(format!(
            "{LEDGER_WRITE} is not exported by this build; compare creations/s with the redb \
             commit rate below"
        )),
    }
    if let (Some((_, writes)), Some(commits)) = (
        writes,
        plain_value(&metrics, "payroute_ledger_commits_total").filter(|c| *c > 0.0),
    ) {
        table.row(
            "ledger_writes_per_commit",
            "ledger writes per fsync'd commit, so far (/metrics)",
            writes / commits,
            "",
        );
    }
    if let Some((sum, count)) = histogram_totals(
        &metrics,
        "payroute_channel_request_duration_seconds",
        Some("operation=\"create\""),
    )
    .filter(|(_, c)| *c > 0.0)
    {
        table.row(
            "channel_create_mean_ms",
            "channel create call mean, so far (/metrics)",
            sum / count * 1e3,
            "ms",
        );
    }
}

/// The ledger writes' p50 and p99 between two expositions, as bucket upper bounds.
pub fn ledger_write_quantile_rows(before: &str, after: &str, load: f64, table: &mut Table) {
    let at = format!("at {:.0}% of saturation", load * 100.0);
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        if let Some(le) = bucket_quantile(before, after, LEDGER_WRITE, q) {
            table.row(
                crate::open_loop::tier_key(load, &format!("ledger_write_{name}_ms")),
                format!("ledger write {name} in the latency phase {at} (buckets)"),
                le * 1e3,
                "ms ≤",
            );
        }
    }
}
