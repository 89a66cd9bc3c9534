//! The closed-loop phases: the connection-count probe and the measured saturation window, with
//! payroute's CPU, memory and context switches per payment.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{self, Conn, MakeReq, Tally, REQUEST_TIMEOUT};
use crate::cpu::{self, CpuSample};
use crate::processes::Setup;
use crate::report::{self, Table};
use crate::Phases;

/// Connection counts tried by the saturation probe.
const PROBE_CONNS: &[usize] = &[16, 32, 64];

/// Outcome of a closed-loop phase.
struct Closed {
    tally: Tally,
    secs: f64,
    cpu: (CpuSample, CpuSample),
}

impl Closed {
    /// Successes per second of the measurement window.
    fn rate(&self) -> f64 {
        self.tally.ok as f64 / self.secs
    }
}

/// `conns` connections each sending back to back for `warmup + measure`; successes completed
/// inside the measurement window are counted.
async fn closed_loop(
    addr: SocketAddr,
    conns: usize,
    warmup: Duration,
    measure: Duration,
    make: MakeReq,
    pids: (u32, u32),
) -> anyhow::Result<Closed> {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let mut conn = Conn::open(addr).await?;
        let (stop, next, make) = (stop.clone(), next.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            let mut done: Vec<(Instant, Result<(), String>)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = make(next.fetch_add(1, Ordering::Relaxed));
                let answer = conn.send(&req).await;
                if answer.is_err() {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                done.push((Instant::now(), client::judge(&answer, client::payroute_ok)));
            }
            done
        }));
    }
    tokio::time::sleep(warmup).await;
    let c0 = cpu::sample(pids.0, pids.1)?;
    tokio::time::sleep(measure).await;
    let c1 = cpu::sample(pids.0, pids.1)?;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for w in workers {
        let done = tokio::time::timeout(REQUEST_TIMEOUT * 2, w).await??;
        for (at, outcome) in done {
            if at >= c0.at && at <= c1.at {
                tally.add(outcome);
            }
        }
    }
    Ok(Closed {
        tally,
        secs: c1.at.duration_since(c0.at).as_secs_f64(),
        cpu: (c0, c1),
    })
}

/// Short closed-loop runs with each of `PROBE_CONNS`; the count with the highest rate wins.
pub async fn probe_conns(setup: &Setup, phases: &Phases, run: &str) -> anyhow::Result<usize> {
    let mut best = (0.0, PROBE_CONNS[0]);
    for (k, &n) in PROBE_CONNS.iter().enumerate() {
        let phase = char::from(b'a' + u8::try_from(k).unwrap_or(0));
        let r = closed_loop(
            setup.api,
            n,
            phases.warmup,
            phases.probe,
            client::payroute_requests(run, phase),
            setup.pids(),
        )
        .await?;
        eprintln!(
            "probe: {n} connections: {:.0}/s ({} errors)",
            r.rate(),
            r.tally.errors
        );
        if r.rate() > best.0 {
            best = (r.rate(), n);
        }
    }
    Ok(best.1)
}

/// The measured saturation window with `conns` connections (under `perf` when asked); adds its
/// rows and returns the creations per second.
pub async fn saturation(
    setup: &Setup,
    phases: &Phases,
    conns: usize,
    perf: bool,
    run: &str,
    table: &mut Table,
) -> anyhow::Result<f64> {
    eprintln!(
        "saturation: {conns} connections for {:?}",
        phases.saturation
    );
    let perf = if perf {
        Some(cpu::start_perf(setup.serve.pid(), phases)?)
    } else {
        None
    };
    let (sat, floor) = beside_loaded_floor(closed_loop(
        setup.api,
        conns,
        phases.warmup,
        phases.saturation,
        client::payroute_requests(run, 'T'),
        setup.pids(),
    ))
    .await?;
    if let Some(p) = perf {
        cpu::finish_perf(p).await?;
    }
    let rate = sat.rate();
    let ok = sat.tally.ok.max(1) as f64;
    let (c0, c1) = sat.cpu;
    let tck = cpu::clk_tck();
    let per_payment_ms = |a: u64, b: u64| (b - a) as f64 / tck / ok * 1e3;
    table.row(
        "creates_per_s",
        "saturation: payment creations/s",
        rate,
        "1/s",
    );
    table.row(
        "saturation_errors",
        "saturation: errors",
        sat.tally.errors as f64,
        "",
    );
    table.row(
        "saturation_conns",
        "saturation: connections",
        conns as f64,
        "",
    );
    table.row(
        "serve_cpu_ms_per_payment",
        "payroute CPU per payment",
        per_payment_ms(c0.serve, c1.serve),
        "ms",
    );
    loaded_floor_row(table, "", floor);
    table.row(
        "sandbox_cpu_ms_per_payment",
        "simulator CPU per payment (info)",
        per_payment_ms(c0.sandbox, c1.sandbox),
        "ms",
    );
    table.row(
        "generator_cpu_ms_per_payment",
        "load generator CPU per payment (info)",
        per_payment_ms(c0.generator, c1.generator),
        "ms",
    );
    if let Some(e) = &sat.tally.first_error {
        table.note(format!(
            "first saturation error: {}",
            report::truncate(e, 200)
        ));
    }
    let rss_mib = cpu::peak_rss_mib(setup.serve.pid())?;
    let ledger_mib = setup.ledger_bytes()? as f64 / (1024.0 * 1024.0);
    table.note(format!(
        "peak RSS after saturation measured with {} orders in the ledger ({ledger_mib:.1} MiB file)",
        client::CREATED.load(Ordering::Relaxed)
    ));
    table.push(
        report::row(
            "serve_peak_rss_mib",
            "payroute peak RSS (VmHWM) after saturation",
            rss_mib,
            "MiB",
        )
        .with_target(crate::TARGET_RSS_MIB),
    );
    // What the peak is made of, at this moment: the heap and stacks, and the binary's pages.
    for (key, label, field) in [
        (
            "serve_rss_anon_mib",
            "payroute RSS after saturation: anonymous (heap, stacks) (info)",
            "RssAnon",
        ),
        (
            "serve_rss_file_mib",
            "payroute RSS after saturation: file pages (code) (info)",
            "RssFile",
        ),
    ] {
        table.row(
            key,
            label,
            cpu::status_field(setup.serve.pid(), field)? as f64 / 1024.0,
            "MiB",
        );
    }
    table.row(
        "serve_threads",
        "payroute threads after saturation (info)",
        cpu::status_field(setup.serve.pid(), "Threads")? as f64,
        "",
    );
    table.row(
        "serve_switches_per_payment",
        "payroute context switches per payment (info)",
        c1.switches.saturating_sub(c0.switches) as f64 / ok,
        "",
    );
    Ok(rate)
}

/// The PostgreSQL phase: the same saturation run against `payroute serve` with its ledger in
/// PostgreSQL (`serve`, listening on `api`), with the database server's CPU beside payroute's;
/// `embedded` is the embedded ledger's rate measured just before.
pub async fn saturation_postgres(
    setup: &Setup,
    serve: (u32, SocketAddr),
    phases: &Phases,
    conns: usize,
    run: &str,
    embedded: f64,
    table: &mut Table,
) -> anyhow::Result<()> {
    eprintln!(
        "saturation, PostgreSQL ledger: {conns} connections for {:?}",
        phases.saturation
    );
    let (pid, api) = serve;
    let (sat, floor) = beside_loaded_floor(closed_loop(
        api,
        conns,
        phases.warmup,
        phases.saturation,
        client::payroute_requests(run, 'P'),
        (pid, setup.sandbox.pid()),
    ))
    .await?;
    let rate = sat.rate();
    let ok = sat.tally.ok.max(1) as f64;
    let (c0, c1) = sat.cpu;
    let per_payment_ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / cpu::clk_tck() / ok * 1e3;
    table.row(
        "pg_creates_per_s",
        "PostgreSQL ledger, saturation: payment creations/s",
        rate,
        "1/s",
    );
    table.push(
        report::row(
            "pg_vs_embedded_creates",
            "PostgreSQL ledger creations/s / embedded ledger's",
            rate / embedded.max(1e-9),
            "x",
        )
        .with_min_target(crate::TARGET_PG_VS_EMBEDDED),
    );
    table.row(
        "pg_saturation_errors",
        "PostgreSQL ledger, saturation: errors",
        sat.tally.errors as f64,
        "",
    );
    table.row(
        "pg_serve_cpu_ms_per_payment",
        "PostgreSQL ledger: payroute CPU per payment",
        per_payment_ms(c0.serve, c1.serve),
        "ms",
    );
    loaded_floor_row(table, "pg_", floor);
    table.row(
        "pg_database_cpu_ms_per_payment",
        "PostgreSQL ledger: database server CPU per payment (info)",
        per_payment_ms(c0.database, c1.database),
        "ms",
    );
    if let Some(e) = &sat.tally.first_error {
        table.note(format!(
            "first PostgreSQL saturation error: {}",
            report::truncate(e, 200)
        ));
    }
    Ok(())
}

/// Runs a saturation phase with the floor timed beside it (the thread is stopped whether or
/// not the phase succeeds).
async fn beside_loaded_floor<T>(
    phase: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Option<f64>)> {
    let floor = cpu::LoadedFloor::start()?;
    let result = phase.await;
    let floor = floor.finish()?;
    Ok((result?, floor))
}

/// The floor as measured during a saturation phase (`prefix`: "" or "pg_"), which `main`
/// divides that phase's CPU per payment by.
fn loaded_floor_row(table: &mut Table, prefix: &str, floor: Option<f64>) {
    if let Some(secs) = floor {
        let phase = if prefix.is_empty() {
            ""
        } else {
            ", PostgreSQL phase"
        };
        table.row(
            format!("{prefix}rsa_sign_verify_loaded_ms"),
            format!("  the floor, measured during saturation{phase} (info)"),
            secs * 1e3,
            "ms",
        );
    }
}
