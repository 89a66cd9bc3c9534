//! The open-loop latency phases: requests at a fixed arrival rate, timed from each request's
//! scheduled send time, through payroute and straight to the simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::client::{self, Conn, IsOk, MakeReq, Tally, REQUEST_TIMEOUT};
use crate::processes::Setup;
use crate::report::{self, percentile, truncate, Table};
use crate::{direct, metrics, Phases};

/// Outcome of an open-loop phase.
struct Open {
    sent: u64,
    tally: Tally,
    /// Milliseconds from each request's scheduled send time to its complete answer (successes).
    latencies_ms: Vec<f64>,
    /// How late the pacer released requests (generator error, in every latency): p99, ms.
    pacer_lag_p99_ms: f64,
}

/// Requests at a fixed arrival rate for `duration`, served by up to `conns` connections; a
/// request waits for a free connection when all are busy, and that wait counts.
async fn open_loop(
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    conns: usize,
    make: MakeReq,
    is_ok: IsOk,
) -> anyhow::Result<Open> {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let mut pool = Vec::new();
    for _ in 0..conns {
        pool.push(Conn::open(addr).await?);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::new();
    for mut conn in pool {
        let (rx, make) = (rx.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            let mut done: Vec<(f64, f64, Result<(), String>)> = Vec::new();
            loop {
                let job = rx.lock().await.recv().await;
                let Some((i, scheduled, released)) = job else {
                    break;
                };
                let req = make(i);
                let outcome = client::judge(&conn.send(&req).await, is_ok);
                let ms = scheduled.elapsed().as_secs_f64() * 1e3;
                let lag = released.duration_since(scheduled).as_secs_f64() * 1e3;
                done.push((ms, lag, outcome));
            }
            done
        }));
    }
    // The pacer is an OS thread: `thread::sleep` is finer than tokio's 1 ms timer wheel.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let pacer = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(20);
        for i in 0..total {
            let at = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send((i, at, Instant::now())).is_err() {
                break;
            }
        }
    });
    let limit = duration + REQUEST_TIMEOUT * 2;
    let mut out = Open {
        sent: total,
        tally: Tally::default(),
        latencies_ms: Vec::new(),
        pacer_lag_p99_ms: 0.0,
    };
    let mut lags = Vec::new();
    for w in workers {
        for (ms, lag, outcome) in tokio::time::timeout(limit, w).await?? {
            lags.push(lag);
            if outcome.is_ok() {
                out.latencies_ms.push(ms);
            }
            out.tally.add(outcome);
        }
    }
    pacer.join().map_err(|_| anyhow!("pacer thread panicked"))?;
    out.latencies_ms.sort_by(f64::total_cmp);
    lags.sort_by(f64::total_cmp);
    out.pacer_lag_p99_ms = percentile(&lags, 0.99);
    Ok(out)
}

/// Both latency phases at `load` × the saturation rate (through payroute, then straight to the
/// simulator) and the ledger-write quantiles of the first; adds their rows.
pub async fn latency(
    setup: &Setup,
    phases: &Phases,
    run: &str,
    saturation: f64,
    load: f64,
    conns: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    let rate = (saturation * load).max(1.0);
    let open_conns = conns.max(32);
    let ledger_before = client::get_text(setup.admin, "/metrics").await.ok();
    eprintln!(
        "latency: {rate:.0}/s for {:?} through payroute",
        phases.latency
    );
    let via = open_loop(
        setup.api,
        rate,
        phases.latency,
        open_conns,
        client::payroute_requests(run, 'L'),
        client::payroute_ok,
    )
    .await?;
    if let (Some(before), Ok(after)) = (
        ledger_before,
        client::get_text(setup.admin, "/metrics").await,
    ) {
        metrics::ledger_write_quantile_rows(&before, &after, load, table);
    }
    let n = (rate * phases.latency.as_secs_f64()).round() as u64 + 1;
    eprintln!("latency: pre-signing {n} simulator requests");
    let signed = direct::presigned_requests(setup, run, n)?;
    eprintln!(
        "latency: {rate:.0}/s for {:?} straight to the simulator",
        phases.latency
    );
    let sim = open_loop(
        setup.endpoint_addr()?,
        rate,
        phases.latency,
        open_conns,
        signed,
        direct::simulator_ok,
    )
    .await?;
    latency_rows(table, load, rate, &via, &sim);
    Ok(())
}

/// The suffix of a latency phase's row keys: none at half of saturation (the keys earlier runs
/// wrote, so `--compare` lines them up), `_at_25` at a quarter, and so on.
pub fn tier_key(load: f64, key: &str) -> String {
    if (load - 0.5).abs() < 1e-9 {
        key.to_string()
    } else {
        format!("{key}_at_{:.0}", load * 100.0)
    }
}

/// The targets of issue 18 for the added latency p99 at this load, if it has one.
fn p99_target(load: f64) -> Option<f64> {
    if (load - 0.25).abs() < 1e-9 {
        Some(crate::TARGET_ADDED_P99_QUARTER_MS)
    } else if (load - 0.5).abs() < 1e-9 {
        Some(crate::TARGET_ADDED_P99_HALF_MS)
    } else {
        None
    }
}

/// Percentiles through payroute, of the simulator alone, and their difference.
fn latency_rows(table: &mut Table, load: f64, rate: f64, via: &Open, sim: &Open) {
    let at = format!("at {:.0}% of saturation", load * 100.0);
    table.row(
        tier_key(load, "latency_rate_per_s"),
        format!("latency phases {at}: arrival rate"),
        rate,
        "1/s",
    );
    for (p, name, shown) in [
        (0.5, "p50", "p50"),
        (0.99, "p99", "p99"),
        (0.999, "p999", "p99.9"),
    ] {
        let a = percentile(&via.latencies_ms, p);
        let b = percentile(&sim.latencies_ms, p);
        table.row(
            tier_key(load, &format!("payroute_{name}_ms")),
            format!("payroute latency {shown} {at}"),
            a,
            "ms",
        );
        table.row(
            tier_key(load, &format!("sim_{name}_ms")),
            format!("simulator latency {shown} {at}"),
            b,
            "ms",
        );
        let added = report::row(
            tier_key(load, &format!("added_{name}_ms")),
            format!("added latency {shown} {at}"),
            a - b,
            "ms",
        );
        let target = match name {
            "p99" => p99_target(load),
            "p999" => Some(crate::TARGET_ADDED_P999_MS),
            _ => None,
        };
        table.push(match target {
            Some(t) => added.with_target(t),
            None => added,
        });
    }
    table.row(
        tier_key(load, "latency_errors"),
        format!("latency phases {at}: errors (payroute + simulator)"),
        (via.tally.errors + sim.tally.errors) as f64,
        "",
    );
    table.note(format!(
        "p99.9 {at} rests on the {} slowest requests of each open loop: one stall of either \
         process (e.g. a map resize in the simulator) moves it, and the added p99.9 can come out \
         negative",
        via.latencies_ms.len().div_ceil(1000)
    ));
    for (name, o) in [("payroute", via), ("simulator", sim)] {
        table.note(format!(
            "{name} open loop {at}: {} scheduled, {} ok, {} errors; pacer lag p99 {:.3} ms",
            o.sent, o.tally.ok, o.tally.errors, o.pacer_lag_p99_ms
        ));
        if let Some(e) = &o.tally.first_error {
            table.note(format!("first {name} error: {}", truncate(e, 200)));
        }
    }
}
