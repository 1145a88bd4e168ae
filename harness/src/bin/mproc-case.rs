//! `mproc-case`: runs one case under one start method in this process.
//!
//! - `mproc-case exec CASE --method M --trace-out FILE`: run the steps, write the raw trace.
//! - `mproc-case run CASE --method M`: run `exec` in a child process, normalise its trace, check
//!   the expectations, and print the normalised trace as JSON on stdout (exit 1 if an
//!   expectation failed).
//! - `mproc-case check CASE...`: load the cases and report any error as `path:line:column`.

use mproc::StartMethod;
use mproc_harness::case::Case;
use mproc_harness::suite::{self, Runner, Tools};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    mproc::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("mproc-case: {msg}");
            ExitCode::from(2)
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn method(args: &[String]) -> Result<StartMethod, String> {
    flag(args, "--method")
        .ok_or("--method fork|spawn|forkserver is required")?
        .parse()
        .map_err(|e: mproc::Error| e.to_string())
}

fn load(path: &str) -> Result<Case, String> {
    Case::load(Path::new(path)).map_err(|e| e.to_string())
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("exec") => {
            let case = load(args.get(1).ok_or("exec CASE")?)?;
            let m = method(args)?;
            let raw = mproc_harness::exec::run(&case, m);
            let text = serde_json::to_string(&raw).map_err(|e| e.to_string())?;
            match flag(args, "--trace-out") {
                Some(p) => std::fs::write(&p, text).map_err(|e| format!("{p}: {e}"))?,
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("run") => {
            let case = load(args.get(1).ok_or("run CASE")?)?;
            let m = method(args)?;
            let work = std::env::temp_dir().join(format!("mproc-case-{}", std::process::id()));
            let tools = Tools {
                case_bin: std::env::current_exe().map_err(|e| e.to_string())?,
                python: None,
                reference: PathBuf::new(),
                work: work.clone(),
            };
            let out = suite::run_job(&case, Runner::Mproc, m, &tools);
            let _ = std::fs::remove_dir_all(&work);
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
        Some("check") => {
            let mut bad = false;
            for p in &args[1..] {
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
        _ => Err(
            "usage: mproc-case exec|run CASE --method M [--trace-out FILE] | check CASE...".into(),
        ),
    }
}
