#![forbid(unsafe_code)]
//! The `payroute` binary: parses the command line and calls the library.

use std::process::ExitCode;

use clap::Parser;
use payroute::settings::{Cli, Command};

/// Lines about the fees the statements under `data_dir` measured for `snap`'s channels:
/// warnings (where they differ from `fee`) or, when `all`, every measurement.
fn fee_notes(
    snap: &payroute::config::Snapshot,
    data_dir: Option<&std::path::Path>,
    all: bool,
) -> Vec<String> {
    use payroute::reconcile::fees::{measured_fees, FeeCheck};
    let Some(dir) = data_dir else {
        return vec![];
    };
    let measured = measured_fees(dir);
    snap.channels
        .iter()
        .filter_map(|c| {
            let m = measured.get(&c.name)?;
            let differs = matches!(m.check(&c.fee), FeeCheck::Differs { .. });
            (all || differs).then(|| m.describe(&c.name, &c.fee))
        })
        .collect()
}

fn check(path: &std::path::Path, sandbox: bool, data_dir: Option<&std::path::Path>) -> ExitCode {
    match payroute::config::load(path, &payroute::config::CompileOptions::default()) {
        Ok(snap) => {
            // A real gateway with a published TEST key: `serve` refuses to start with it (and
            // `serve --sandbox` never sends it anywhere), so the file itself is valid.
            if !sandbox {
                let serve = payroute::config::CompileOptions {
                    refuse_test_keys: true,
                    ..Default::default()
                };
                if let Err(e) = payroute::config::load(path, &serve) {
                    for line in e.to_string().lines() {
                        println!("warning: {line} (`payroute serve` refuses to start with it)");
                    }
                }
            }
            for note in fee_notes(&snap, data_dir, false) {
                println!("{}: warning: {note}", path.display());
            }
            for w in payroute::config::warnings(&snap) {
                println!(
                    "{}:{}:{}: warning: {}",
                    path.display(),
                    w.line,
                    w.column,
                    w.message
                );
            }
            println!(
                "{}: ok ({} channels, {} rules, sha256 {})",
                path.display(),
                snap.channels.len(),
                snap.rules.len(),
                snap.hash
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn explain(args: &payroute::settings::ExplainArgs) -> ExitCode {
    let snap =
        match payroute::config::load(&args.config, &payroute::config::CompileOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
    let mut metadata = std::collections::BTreeMap::new();
    for kv in &args.metadata {
        match kv.split_once('=') {
            Some((k, v)) => {
                metadata.insert(k.to_string(), v.to_string());
            }
            None => {
                eprintln!("--metadata takes KEY=VALUE, got `{kv}`");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut input = match payroute::routing::input_from_text(
        &args.out_trade_no,
        &args.method,
        &args.scene,
        &args.currency,
        args.amount,
        metadata,
        args.at.as_deref(),
    ) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    input.split = args.split;
    let decision = payroute::routing::route(&input, &snap, &payroute::routing::AllHealthy);
    let notes = fee_notes(&snap, args.data_dir.as_deref(), true);
    if args.json {
        let mut out = serde_json::to_value(&decision).unwrap_or_default();
        if let (Some(o), Some(dir)) = (out.as_object_mut(), &args.data_dir) {
            let measured = payroute::reconcile::fees::measured_fees(dir);
            o.insert("measured_fees".into(), serde_json::json!(measured));
        }
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", payroute::routing::explain_text(&input, &decision));
        for note in notes {
            println!("measured: {note}");
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Ledger reads and reloads are short; a small pool keeps a sidecar's memory flat.
        .max_blocking_threads(8)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Check {
            path,
            sandbox,
            data_dir,
        } => return check(&path, sandbox, data_dir.as_deref()),
        Command::Explain(args) => return explain(&args),
        Command::Schema => {
            let schema = schemars::schema_for!(payroute::config::RawConfig);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            return ExitCode::SUCCESS;
        }
        Command::Serve(args) => {
            payroute::app::init_logging(&args.log_format);
            runtime.block_on(payroute::app::serve(*args))
        }
        Command::Reconcile(args) => return runtime.block_on(payroute::reconcile::cli::run(args)),
        Command::Sandbox(args) => {
            payroute::app::init_logging(&args.log_format);
            runtime.block_on(payroute::app::run_sandbox(args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payroute: {e:#}");
            ExitCode::FAILURE
        }
    }
}
