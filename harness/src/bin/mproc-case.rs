//! `mproc-case`: runs one conformance case under one start method in this process.
//!
//! - `mproc-case exec CASE --method M [--trace-out FILE]`: run the steps, write the raw trace.
//! - `mproc-case run CASE --method M`: run `exec` in a child process, normalise its trace, check
//!   the expectations, and print the normalised trace as JSON on stdout (exit 1 if an
//!   expectation failed).
//! - `mproc-case check CASE...`: load the cases and report any error as `path:line:column`.
//!
//! Exit status 2: bad input (a flag, a case file).

use clap::{Parser, Subcommand};
use mproc::StartMethod;
use mproc_harness::case::Case;
use mproc_harness::suite::{self, Runner, Tools};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs one conformance case (cases/README.md) under one start method.
#[derive(Debug, Parser)]
#[command(name = "mproc-case")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the case's steps in this process and write the raw trace.
    Exec {
        /// The case file.
        case: PathBuf,
        /// The start method: fork, spawn or forkserver.
        #[arg(long, value_parser = method)]
        method: StartMethod,
        /// Where to write the raw trace (default: stdout).
        #[arg(long)]
        trace_out: Option<PathBuf>,
    },
    /// Run `exec` in a child process, check the expectations and print the normalised trace
    /// (exit 1 if an expectation failed).
    Run {
        /// The case file.
        case: PathBuf,
        /// The start method: fork, spawn or forkserver.
        #[arg(long, value_parser = method)]
        method: StartMethod,
    },
    /// Load the cases and print every error as `path:line:column: message` (exit 2 if any).
    Check {
        /// The case files.
        cases: Vec<PathBuf>,
    },
}

fn method(s: &str) -> Result<StartMethod, String> {
    s.parse().map_err(|e: mproc::Error| e.to_string())
}

fn main() -> ExitCode {
    mproc::init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("mproc-case: {msg}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &Path) -> Result<Case, String> {
    Case::load(path).map_err(|e| e.to_string())
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Exec {
            case,
            method,
            trace_out,
        } => {
            let case = load(&case)?;
            let raw = mproc_harness::exec::run(&case, method);
            let text = serde_json::to_string(&raw).map_err(|e| e.to_string())?;
            match trace_out {
                Some(p) => std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?,
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { case, method } => {
            let case = load(&case)?;
            let work = tempfile::Builder::new()
                .prefix("mproc-case-")
                .tempdir()
                .map_err(|e| format!("a scratch folder: {e}"))?;
            let tools = Tools {
                case_bin: std::env::current_exe().map_err(|e| e.to_string())?,
                python: None,
                reference: PathBuf::new(),
                work: work.path().to_path_buf(),
            };
            let out = suite::run_job(&case, Runner::Mproc, method, &tools);
            println!(
                "{}",
                serde_json::to_string_pretty(&out.trace).map_err(|e| e.to_string())?
            );
            for f in &out.failures {
                eprintln!("{}: {f}", case.path);
            }
            Ok(if out.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Check { cases } => {
            let mut bad = false;
            for p in &cases {
                if let Err(e) = load(p) {
                    println!("{e}");
                    bad = true;
                }
            }
            Ok(if bad {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
