//! `cargo xtask`: the project's automation, after matklad's cargo-xtask pattern.
//!
//! - `cargo xtask bench`: the benchmarks and the regression gate; with `--gate` (or
//!   `--gate-selftest`) it first builds the baseline revision's bench binary under
//!   `target/gate/` (see `bench.rs` and `cargo xtask bench --help`).
//! - `cargo xtask ci`: formatting check, clippy with warnings as errors, and every test
//!   (nextest for the integration tests, each in its own process; then the doc tests).
//!
//! - `cargo xtask conformance [--cases DIR] [--method M]... [--filter TEXT]
//!   [--reference auto|python|none] [--format human|json] [--jobs N]`: runs every case under
//!   every start method (and CPython's `multiprocessing` as the reference), prints the table and
//!   `conformance: N passed, N failed`, writes `target/xtask/conformance/report.json` and
//!   `report.html`. Exit 0: all passed; 1: a case failed; 2: bad input.
//!
//! `cargo xtask ci` green means CI green: `.ci/run` calls exactly this (and then conformance).

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => return bench::bench(&args[1..]),
        Some("ci") => ci(),
        Some("conformance") => return conformance(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         commands:\n  \
         ci           format check, clippy (-D warnings), all tests (nextest + doc tests)\n  \
         conformance  run the cases under fork/spawn/forkserver and CPython; see --help\n  \
         bench        benchmarks vs raw OS limits, CPython, procspawn; --quick, --gate (A/B against\n               \
                      the baseline build); see --help\n"
    );
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(step: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: {step}: {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: cannot run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("format check", fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("clippy", clippy)?;

    if !has_nextest() {
        return Err(
            "cargo-nextest is required (tests fork, so each must run in its own process): \
                    install it with `cargo install cargo-nextest --locked`"
                .into(),
        );
    }
    let mut tests = cargo();
    tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    run("tests", tests)?;

    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    run("doc tests", doc)?;
    Ok(())
}

const CONFORMANCE_HELP: &str = "cargo xtask conformance [flags]

  --cases DIR                   the cases' folder (default: cases/)
  --method M                    only this start method (repeatable): fork, spawn, forkserver
  --filter TEXT                 only cases whose id (group/name) contains TEXT (A,B: either)
  --reference auto|python|none  CPython as the reference (auto: if python3 >= 3.11 is there)
  --format human|json           the table, or the report as JSON on stdout
  --jobs N                      runs at a time (default 2)

Writes target/xtask/conformance/report.json and report.html.
Exit status: 0 all passed, 1 a case failed, 2 bad input (a malformed case, a bad flag).";

fn conformance(args: &[String]) -> ExitCode {
    match conformance_inner(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask conformance: {e}");
            ExitCode::from(2)
        }
    }
}

fn conformance_inner(args: &[String]) -> Result<u8, String> {
    use mproc_harness::suite::{self, Options, Reference, Tools};
    use std::io::IsTerminal;
    let root = root();
    let mut opts = Options {
        cases: root.join("cases"),
        methods: Vec::new(),
        filter: None,
        reference: Reference::Auto,
        jobs: 2,
    };
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--cases" => opts.cases = PathBuf::from(value()?),
            "--method" => {
                let m = value()?;
                opts.methods.push(
                    m.parse()
                        .map_err(|_| format!("unknown start method {m:?}"))?,
                );
            }
            "--filter" => opts.filter = Some(value()?),
            "--reference" => {
                opts.reference = match value()?.as_str() {
                    "auto" => Reference::Auto,
                    "python" => Reference::Python,
                    "none" => Reference::None,
                    other => {
                        return Err(format!(
                            "--reference {other:?}: expected auto, python or none"
                        ))
                    }
                }
            }
            "--format" => {
                json = match value()?.as_str() {
                    "human" => false,
                    "json" => true,
                    other => return Err(format!("--format {other:?}: expected human or json")),
                }
            }
            "--jobs" => {
                opts.jobs = value()?
                    .parse()
                    .map_err(|_| "--jobs takes a number".to_string())?
            }
            "-h" | "--help" => {
                println!("{CONFORMANCE_HELP}");
                return Ok(0);
            }
            other => return Err(format!("unknown flag {other:?}\n{CONFORMANCE_HELP}")),
        }
    }
    if !opts.cases.is_dir() {
        return Err(format!("--cases {}: not a folder", opts.cases.display()));
    }
    let mut build = cargo();
    build.args([
        "build",
        "--quiet",
        "-p",
        "mproc-harness",
        "--bin",
        "mproc-case",
    ]);
    run("build mproc-case", build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out_dir = target.join("xtask").join("conformance");
    let work = out_dir.join("runs");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let tools = Tools {
        case_bin: target.join("debug").join("mproc-case"),
        python: Some(PathBuf::from("python3")),
        reference: root.join("harness").join("py").join("reference.py"),
        work,
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let progress = |done: usize, total: usize, what: &str| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
            b.set_message(what.to_string());
        }
    };
    let mut report = suite::run_suite(&opts, &tools, &progress).map_err(|e| e.0)?;
    // Paths relative to the workspace read better (and equal on every machine).
    let rel = |p: &mut String| {
        if let Ok(r) = Path::new(p.as_str()).strip_prefix(&root) {
            *p = r.display().to_string();
        }
    };
    report.cases.iter_mut().for_each(|c| rel(&mut c.path));
    report.bad.iter_mut().for_each(|b| rel(&mut b.path));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let text = serde_json_pretty(&report)?;
    std::fs::write(out_dir.join("report.json"), &text).map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("report.html"), report.html()).map_err(|e| e.to_string())?;
    if json {
        println!("{text}");
    } else {
        print!("{}", report.table());
        println!("report: {}", out_dir.join("report.html").display());
    }
    Ok(report.exit_code())
}

fn serde_json_pretty(report: &mproc_harness::report::Report) -> Result<String, String> {
    mproc_harness::report::to_json(report)
}
