#![forbid(unsafe_code)]
//! The `payroute` binary: parses the command line and calls the library.

use std::process::ExitCode;

use clap::Parser;
use payroute::settings::{Cli, Command};

fn check(path: &std::path::Path) -> ExitCode {
    let opts = payroute::config::CompileOptions::default();
    match payroute::config::load(path, &opts) {
        Ok(snap) => {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Check { path } => return check(&path),
        Command::Serve(args) => {
            payroute::app::init_logging(&args.log_format);
            runtime.block_on(payroute::app::serve(args))
        }
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
