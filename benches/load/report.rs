//! The results: rows and notes, the printed table, the JSON file under `<target>/bench/`, and
//! `--compare` of two such files.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::processes::{MANIFEST_DIR, PAYROUTE_BIN};

/// One row of the results table.
pub struct Row {
    key: Cow<'static, str>,
    label: Cow<'static, str>,
    value: Option<f64>,
    unit: &'static str,
    target: Option<String>,
    met: Option<bool>,
}

/// A measured row without a target.
pub fn row(
    key: impl Into<Cow<'static, str>>,
    label: impl Into<Cow<'static, str>>,
    value: f64,
    unit: &'static str,
) -> Row {
    Row {
        key: key.into(),
        label: label.into(),
        value: Some(value),
        unit,
        target: None,
        met: None,
    }
}

impl Row {
    /// The row with a target it meets at or below `target`.
    pub fn with_target(mut self, target: f64) -> Row {
        self.target = Some(format!("≤ {target}"));
        self.met = self.value.map(|v| v <= target);
        self
    }

    /// The row with a target it meets at or above `target`.
    pub fn with_min_target(mut self, target: f64) -> Row {
        self.target = Some(format!("≥ {target}"));
        self.met = self.value.map(|v| v >= target);
        self
    }
}

/// The rows and notes of a run, in the order they are printed and written.
#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Table {
    /// Appends a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Appends a measured row without a target.
    pub fn row(
        &mut self,
        key: impl Into<Cow<'static, str>>,
        label: impl Into<Cow<'static, str>>,
        value: f64,
        unit: &'static str,
    ) {
        self.push(row(key, label, value, unit));
    }

    /// Appends a note, printed under the table.
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// The value of the row named `key`, if measured.
    pub fn value(&self, key: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.key == key)
            .and_then(|r| r.value)
    }

    /// Prints the table, then the notes.
    pub fn print(&self) {
        println!();
        println!(
            "{:<48} {:>10} {:<4} {:>7} {:>4}",
            "metric", "value", "unit", "target", "met"
        );
        println!("{}", "-".repeat(77));
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            println!(
                "{:<48} {:>10} {:<4} {:>7} {:>4}",
                r.label,
                fmt_value(r.value),
                r.unit,
                r.target.as_deref().unwrap_or(""),
                met
            );
        }
        println!();
        for n in &self.notes {
            println!("note: {n}");
        }
    }

    /// The rows as the JSON file's `rows` array.
    pub fn rows_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    json!({ "key": r.key, "label": r.label, "value": r.value, "unit": r.unit,
                            "target": r.target, "met": r.met })
                })
                .collect(),
        )
    }
}

/// A value with about three significant digits, `n/a` when absent.
fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The first `n` characters of `s`.
pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `<target dir>/bench`, next to the profile directory holding the payroute binary.
pub fn results_dir() -> PathBuf {
    Path::new(PAYROUTE_BIN)
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("bench"))
        .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("target/bench"))
}

/// The short commit id of the checkout, when it is a git checkout (`+changes` when tracked files
/// differ from it).
pub fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(MANIFEST_DIR)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short", "HEAD"])?;
    // A run of uncommitted changes says so, rather than passing for the commit below them.
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}+changes") } else { rev })
}

/// Writes `load-<ts>.json` and `latest.json` into the results directory.
pub fn write_results(doc: &Value, ts: u64) -> anyhow::Result<PathBuf> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(doc)?;
    let path = dir.join(format!("load-{ts}.json"));
    std::fs::write(&path, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    Ok(path)
}

/// Prints two result files side by side: A, B, their difference and ratio, row by row.
pub fn compare(a: &Path, b: &Path) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let (da, db) = (read(a)?, read(b)?);
    for (name, path, d) in [("A", a, &da), ("B", b, &db)] {
        println!(
            "{name}: {} (rev {}, load average before {}{})",
            path.display(),
            d["git"].as_str().unwrap_or("?"),
            d["load_average_before"].as_str().unwrap_or("?"),
            if d["quick"] == true { ", quick" } else { "" }
        );
    }
    println!();
    println!(
        "{:<48} {:>10} {:>10} {:>10} {:>6}",
        "metric", "A", "B", "B-A", "B/A"
    );
    println!("{}", "-".repeat(88));
    let empty = Vec::new();
    let rows_a = da["rows"].as_array().unwrap_or(&empty);
    let rows_b = db["rows"].as_array().unwrap_or(&empty);
    // A's rows in A's order, then rows only B has.
    let mut keys: Vec<&Value> = rows_a.iter().map(|r| &r["key"]).collect();
    keys.extend(
        rows_b
            .iter()
            .map(|r| &r["key"])
            .filter(|k| !rows_a.iter().any(|r| &r["key"] == *k)),
    );
    let find = |rows: &[Value], key: &Value| rows.iter().find(|r| &r["key"] == key).cloned();
    for key in keys {
        let (ra, rb) = (find(rows_a, key), find(rows_b, key));
        let label = ra
            .as_ref()
            .or(rb.as_ref())
            .and_then(|r| r["label"].as_str().map(String::from));
        let va = ra.as_ref().and_then(|r| r["value"].as_f64());
        let vb = rb.as_ref().and_then(|r| r["value"].as_f64());
        let (delta, ratio) = match (va, vb) {
            (Some(x), Some(y)) if x != 0.0 => (fmt_value(Some(y - x)), format!("{:.2}", y / x)),
            (Some(x), Some(y)) => (fmt_value(Some(y - x)), String::new()),
            _ => (String::new(), String::new()),
        };
        println!(
            "{:<48} {:>10} {:>10} {:>10} {:>6}",
            label.unwrap_or_default(),
            fmt_value(va),
            fmt_value(vb),
            delta,
            ratio
        );
    }
    Ok(())
}
