//! Load benchmark of payroute (issue 8): `cargo bench --bench load`.
//!
//! Starts `payroute sandbox` (the Alipay simulator, its own process) and `payroute serve` with
//! one Alipay channel pointed at it, then measures on loopback:
//!
//! - saturation: payment creations per second with N keep-alive connections (closed loop);
//! - latency at a quarter and at half of that rate (open loop, timed from each request's scheduled send time, so a
//!   stall is not hidden by the generator waiting for it), and the same for pre-signed requests
//!   sent straight to the simulator; the difference is what payroute adds;
//! - payroute's CPU time per payment, in units of one RSA-2048 signature plus one verification;
//! - peak RSS, and how long a rewritten routes.yaml takes to become visible on the admin listener;
//! - for context: the simulator's and the generator's CPU per payment, payroute's threads and
//!   context switches, the ledger's size per payment, and the disk's fsync and redb commit rates.
//!
//! Results are printed as a table and written to `<target>/bench/load-<unix-ts>.json` and
//! `<target>/bench/latest.json`. Flags: `--quick` (short phases, for smoke runs), `--conns N`
//! (skip the connection-count probe), `--load F` (latency phases at F × saturation only, instead
//! of 0.25 and 0.5), `--ledger postgres` (after the saturation phase, the same phase against a second
//! payroute whose ledger is in PostgreSQL, `PAYROUTE_BENCH_POSTGRES_URL`, default the machine's
//! server, in a schema of its own; its creations/s, payroute's and the database's CPU per
//! payment, and the ratio to the embedded ledger's rate), `--perf` (run `perf record -g` on payroute during the
//! saturation window, into `<target>/bench/perf.data`), `--compare A.json B.json`. Unknown flags
//! (cargo passes `--bench`) are ignored.
//!
//! This file holds the command line and the order of the phases; each phase and each kind of
//! measurement has its own module.

mod client;
mod cpu;
mod direct;
mod disk;
mod metrics;
mod open_loop;
mod pg;
mod probe;
mod processes;
mod reload;
mod report;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use serde_json::json;

use report::Table;

/// Target of issue 18: payroute's CPU per payment, in units of one aws-lc-rs RSA sign + verify.
const TARGET_CPU_RATIO: f64 = 1.6;
/// Target of issue 18: the same on the PostgreSQL ledger.
const TARGET_PG_CPU_RATIO: f64 = 1.8;
/// Target of issue 18: payroute's peak RSS after saturation (with 50,000 orders), MiB.
const TARGET_RSS_MIB: f64 = 24.0;
/// Targets of issue 18: added latency p99 at a quarter and at half of saturation, and p99.9, ms.
const TARGET_ADDED_P99_QUARTER_MS: f64 = 1.5;
const TARGET_ADDED_P99_HALF_MS: f64 = 3.0;
const TARGET_ADDED_P999_MS: f64 = 10.0;
/// Target of issue 8: routes.yaml write → new rules served, ms.
const TARGET_RELOAD_MS: f64 = 100.0;
/// Target of issue 17: creations/s on the PostgreSQL ledger / on the embedded ledger.
const TARGET_PG_VS_EMBEDDED: f64 = 0.8;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(Mode::Compare(a, b)) => report::compare(&a, &b),
        Ok(Mode::Run(opts)) => run(&opts),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What was asked for on the command line.
enum Mode {
    Run(Opts),
    Compare(PathBuf, PathBuf),
}

/// Options of a measuring run.
struct Opts {
    quick: bool,
    conns: Option<usize>,
    perf: bool,
    /// The latency phases' arrival rate as a fraction of saturation (default one half).
    /// Fractions of the saturation rate the latency phases run at.
    loads: Vec<f64>,
    /// `--ledger postgres`: the saturation phase again on the PostgreSQL ledger.
    postgres: bool,
}

/// Durations of the phases (shorter with `--quick`).
struct Phases {
    warmup: Duration,
    probe: Duration,
    saturation: Duration,
    latency: Duration,
    reloads: usize,
    rsa_iterations: u32,
}

impl Phases {
    /// The full or the `--quick` durations.
    fn new(quick: bool) -> Self {
        if quick {
            Phases {
                warmup: Duration::from_millis(500),
                probe: Duration::from_secs(1),
                saturation: Duration::from_secs(3),
                latency: Duration::from_secs(3),
                reloads: 2,
                rsa_iterations: 300,
            }
        } else {
            Phases {
                warmup: Duration::from_secs(2),
                probe: Duration::from_secs(3),
                saturation: Duration::from_secs(15),
                latency: Duration::from_secs(15),
                reloads: 5,
                rsa_iterations: 1000,
            }
        }
    }
}

/// The command line after the program name; unknown arguments are ignored.
fn parse_args(args: &[String]) -> anyhow::Result<Mode> {
    let mut opts = Opts {
        quick: false,
        conns: None,
        perf: false,
        loads: vec![0.25, 0.5],
        postgres: false,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--compare" => {
                let (Some(a), Some(b)) = (args.get(i + 1), args.get(i + 2)) else {
                    bail!("--compare takes two JSON files");
                };
                return Ok(Mode::Compare(a.into(), b.into()));
            }
            "--quick" => opts.quick = true,
            "--ledger" => {
                match args.get(i + 1).map(String::as_str) {
                    Some("postgres") => opts.postgres = true,
                    Some("embedded") => opts.postgres = false,
                    _ => bail!("--ledger takes embedded or postgres"),
                }
                i += 1;
            }
            "--perf" => opts.perf = true,
            "--conns" => {
                let n = args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
                match n {
                    Some(n) if (1..=1024).contains(&n) => opts.conns = Some(n),
                    _ => bail!("--conns takes a number from 1 to 1024"),
                }
                i += 1;
            }
            "--load" => {
                let f = args.get(i + 1).and_then(|v| v.parse::<f64>().ok());
                match f {
                    Some(f) if f > 0.0 && f <= 1.0 => opts.loads = vec![f],
                    _ => bail!("--load takes a fraction of saturation, e.g. 0.25"),
                }
                i += 1;
            }
            // `cargo bench` passes `--bench`, and maybe a filter: not ours.
            _ => {}
        }
        i += 1;
    }
    Ok(Mode::Run(opts))
}

/// One measuring run: baselines, both processes, every phase, the table and the JSON file.
fn run(opts: &Opts) -> anyhow::Result<()> {
    let phases = Phases::new(opts.quick);
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let load_before = cpu::load_average();
    eprintln!("load average before: {load_before}");
    let floor_before = cpu::rsa_baseline(phases.rsa_iterations)?;
    eprintln!(
        "RSA sign+verify: {:.3} ms with aws-lc-rs, {:.3} ms with ring ({})",
        floor_before.aws_lc * 1e3,
        floor_before.ring * 1e3,
        floor_before.clock
    );
    // The disk as the ledger finds it, before any load (again after the run, for comparison).
    let disk_before = disk::probe(tempfile::tempdir()?.path())?;
    let mut setup = processes::start()?;
    eprintln!(
        "payroute serve pid {} (api {}, admin {}), sandbox pid {} ({})",
        setup.serve.pid(),
        setup.api,
        setup.admin,
        setup.sandbox.pid(),
        setup.endpoint
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(measure(&setup, &phases, opts, started));
    setup.serve.check_alive()?;
    setup.sandbox.check_alive()?;
    let mut table = out?;
    // Measured again once the load has stopped: this machine's speed drifts over a run, and
    // the mean of the two brackets the phases that payroute's CPU was measured in.
    let floor_after = cpu::rsa_baseline(phases.rsa_iterations)?;
    let rsa_secs = (floor_before.aws_lc + floor_after.aws_lc) / 2.0;
    table.row(
        "rsa_sign_verify_ms",
        "RSA-2048 sign + verify, the floor (aws-lc-rs, 1 thread)",
        rsa_secs * 1e3,
        "ms",
    );
    table.row(
        "rsa_sign_verify_before_ms",
        "  the floor, measured before the run (info)",
        floor_before.aws_lc * 1e3,
        "ms",
    );
    table.row(
        "rsa_sign_verify_after_ms",
        "  the floor, measured after the run (info)",
        floor_after.aws_lc * 1e3,
        "ms",
    );
    table.row(
        "rsa_sign_verify_ring_ms",
        "RSA-2048 sign + verify with ring, for reference (info)",
        (floor_before.ring + floor_after.ring) / 2.0 * 1e3,
        "ms",
    );
    let drift = (floor_after.aws_lc / floor_before.aws_lc - 1.0).abs();
    if drift > 0.1 {
        table.note(format!(
            "the floor moved by {:.0}% between the start and the end of the run: the machine's \
             speed drifted, and the CPU ratios are uncertain by about as much",
            drift * 100.0
        ));
    }
    let disk_after = disk::probe(setup.dir.path())?;
    disk::rows(&mut table, disk_before, disk_after);
    if let Some(ms) = table.value("serve_cpu_ms_per_payment") {
        let ratio = report::row(
            "cpu_ratio",
            "payroute CPU per payment / (sign+verify)",
            ms / 1e3 / rsa_secs,
            "x",
        );
        table.rows.insert(3, ratio.with_target(TARGET_CPU_RATIO));
        // The same against the floor timed during the phase itself, in the same conditions.
        if let Some(loaded) = table.value("rsa_sign_verify_loaded_ms") {
            let ratio = report::row(
                "cpu_ratio_loaded",
                "  the same, against the floor measured during saturation",
                ms / loaded,
                "x",
            );
            table.rows.insert(4, ratio.with_target(TARGET_CPU_RATIO));
        }
    }
    if let Some(ms) = table.value("pg_serve_cpu_ms_per_payment") {
        table.push(
            report::row(
                "pg_cpu_ratio",
                "PostgreSQL ledger: payroute CPU per payment / (sign+verify)",
                ms / 1e3 / rsa_secs,
                "x",
            )
            .with_target(TARGET_PG_CPU_RATIO),
        );
        if let Some(loaded) = table.value("pg_rsa_sign_verify_loaded_ms") {
            table.push(
                report::row(
                    "pg_cpu_ratio_loaded",
                    "  the same, against the floor measured during that phase",
                    ms / loaded,
                    "x",
                )
                .with_target(TARGET_PG_CPU_RATIO),
            );
        }
    }
    let load_after = cpu::load_average();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    table.note(format!(
        "load average before {load_before}, after {load_after}; {cpus} CPUs"
    ));
    table.note(format!(
        "RSA floor: the mean of a measure before and one after the run, each with {}",
        floor_before.clock
    ));
    table.print();
    let doc = json!({
        "schema": 1,
        "timestamp": started,
        "git": report::git_revision(),
        "quick": opts.quick,
        "cpus": cpus,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": table.rows_json(),
        "notes": table.notes,
    });
    let path = report::write_results(&doc, started)?;
    println!("results: {} (and latest.json)", path.display());
    Ok(())
}

/// Every measured phase, in order; returns the table rows and notes.
async fn measure(
    setup: &processes::Setup,
    phases: &Phases,
    opts: &Opts,
    started: u64,
) -> anyhow::Result<Table> {
    let run = format!("{started}");
    let mut table = Table::default();
    let conns = match opts.conns {
        Some(n) => n,
        None => probe::probe_conns(setup, phases, &run).await?,
    };
    let rate = probe::saturation(setup, phases, conns, opts.perf, &run, &mut table).await?;
    metrics::ledger_rows(setup, &mut table).await;
    if opts.postgres {
        let schema = pg::Schema::create(&run).await?;
        let measured = async {
            let (serve, api) = processes::start_postgres_serve(setup, &schema.ledger_url())?;
            let serve = (serve, api);
            let r = probe::saturation_postgres(
                setup,
                (serve.0.pid(), serve.1),
                phases,
                conns,
                &run,
                rate,
                &mut table,
            )
            .await;
            drop(serve);
            r
        }
        .await;
        schema.drop().await;
        measured?;
    }
    for &load in &opts.loads {
        open_loop::latency(setup, phases, &run, rate, load, conns, &mut table).await?;
    }
    reload::reload_rows(setup, phases.reloads, &mut table).await?;
    table.row(
        "serve_peak_rss_end_mib",
        "payroute peak RSS at the end of the run (info)",
        cpu::peak_rss_mib(setup.serve.pid())?,
        "MiB",
    );
    let created = client::CREATED
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(1);
    table.row(
        "ledger_bytes_per_payment",
        "ledger file size per payment created (info)",
        setup.ledger_bytes()? as f64 / created as f64,
        "B",
    );
    Ok(table)
}
