//! `cargo xtask`: the project's automation, after matklad's cargo-xtask pattern.
//!
//! - `cargo xtask bench`: the benchmarks and the regression gate; with `--gate` (or
//!   `--gate-selftest`) it first builds the baseline revision's bench binary under
//!   `target/gate/` (see `bench.rs` and `cargo xtask bench --help`).
//! - `cargo xtask ci`: formatting check, clippy with warnings as errors, and every test
//!   (nextest for the integration tests, each in its own process; then the doc tests), then
//!   `cargo doc` with warnings as errors.
//!
//! - `cargo xtask conformance [--cases DIR] [--method M]... [--filter TEXT]
//!   [--reference auto|python|none] [--format human|json] [--jobs N]`: runs every case under
//!   every start method (and CPython's `multiprocessing` as the reference), prints the table and
//!   `conformance: N passed, N failed`, writes `target/xtask/conformance/report.json` and
//!   `report.html`. Exit 0: all passed; 1: a case failed; 2: bad input.
//!
//! `cargo xtask ci` green means CI green: `.ci/run` calls exactly this (and then conformance).

mod bench;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The project's automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Option<Task>,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Format check, clippy (-D warnings), all tests (nextest + doc tests), docs (-D warnings).
    Ci,
    /// Run the cases under fork/spawn/forkserver and CPython: a table, report.json and
    /// report.html in target/xtask/conformance. Exit status: 0 all passed, 1 a case failed, 2
    /// bad input (a malformed case, a bad flag).
    Conformance(ConformanceArgs),
    /// Benchmarks against the raw OS limits, CPython and procspawn; --quick, --gate (A/B
    /// against the baseline build).
    Bench(mproc_harness::bench::run::Args),
}

/// `cargo xtask conformance` flags.
#[derive(Debug, clap::Args)]
struct ConformanceArgs {
    /// The cases' folder (default: cases/).
    #[arg(long, value_name = "DIR")]
    cases: Option<PathBuf>,
    /// Only this start method (repeatable): fork, spawn, forkserver.
    #[arg(long = "method", value_name = "M", value_parser = start_method)]
    methods: Vec<mproc::StartMethod>,
    /// Only cases whose id (group/name) contains TEXT (A,B: either).
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// CPython as the reference (auto: if python3 >= 3.11 is there).
    #[arg(long, value_enum, default_value_t = ReferenceArg::Auto)]
    reference: ReferenceArg,
    /// The table, or the report as JSON on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Runs at a time.
    #[arg(long, value_name = "N", default_value_t = 2)]
    jobs: usize,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ReferenceArg {
    Auto,
    Python,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

fn start_method(s: &str) -> Result<mproc::StartMethod, String> {
    s.parse()
        .map_err(|_| format!("unknown start method {s:?} (fork, spawn, forkserver)"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // An unknown command is exit 1, as it always was; a bad flag 2; help 0.
            return match e.kind() {
                clap::error::ErrorKind::InvalidSubcommand => ExitCode::FAILURE,
                _ => ExitCode::from(e.exit_code().clamp(0, 255) as u8),
            };
        }
    };
    let result = match cli.command {
        Some(Task::Bench(args)) => {
            // The bench binary parses the same arguments again; hand them over as given.
            let raw: Vec<String> = std::env::args().skip(2).collect();
            return bench::bench(&args, &raw);
        }
        Some(Task::Ci) => ci(),
        Some(Task::Conformance(args)) => return conformance(args),
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
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

    // The docs build without a warning (broken intra-doc links, bad code blocks, ...).
    let mut docs = cargo();
    docs.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run("docs", docs)?;
    Ok(())
}

fn conformance(args: ConformanceArgs) -> ExitCode {
    match conformance_inner(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask conformance: {e}");
            ExitCode::from(2)
        }
    }
}

fn conformance_inner(args: ConformanceArgs) -> Result<u8, String> {
    use mproc_harness::suite::{self, Options, Reference, Tools};
    use std::io::IsTerminal;
    let root = root();
    let opts = Options {
        cases: args.cases.unwrap_or_else(|| root.join("cases")),
        methods: args.methods,
        filter: args.filter,
        reference: match args.reference {
            ReferenceArg::Auto => Reference::Auto,
            ReferenceArg::Python => Reference::Python,
            ReferenceArg::None => Reference::None,
        },
        jobs: args.jobs,
    };
    let json = args.format == Format::Json;
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
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    // The runs' own files (raw traces, output, timelines): scratch, gone after the report.
    let work = tempfile::Builder::new()
        .prefix("runs-")
        .tempdir_in(&out_dir)
        .map_err(|e| format!("a scratch folder in {}: {e}", out_dir.display()))?;
    let tools = Tools {
        case_bin: target.join("debug").join("mproc-case"),
        python: Some(PathBuf::from("python3")),
        reference: root.join("harness").join("py").join("reference.py"),
        work: work.path().to_path_buf(),
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

fn serde_json_pretty(report: &mproc_harness::model::Report) -> Result<String, String> {
    mproc_harness::report::to_json(report)
}
