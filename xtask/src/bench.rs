//! `cargo xtask bench`: builds and runs the bench binary (`harness/benches/mproc.rs`, release
//! profile) with the given options; its exit code is ours (0 ok or an inconclusive gate, 1 a
//! gate regression, 2 bad input or a failed run). See `cargo xtask bench --help`.
//!
//! With `--gate` (or `--gate-selftest`), first builds the baseline revision's bench binary in a
//! worktree under `target/gate/` (`mproc_harness::bench::ab::build_baseline`) and hands it to
//! the bench as `--baseline-bin`; where that is impossible (the revision is not in this clone,
//! it does not build), hands over the reason instead, and the gate falls back loudly to the
//! stored ratios and counts.

use mproc_harness::bench::run::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Runs the benchmarks with `args`, given on the command line as `raw` (everything after
/// `bench`), which the bench binary parses again.
pub fn bench(args: &Args, raw: &[String]) -> ExitCode {
    let root = crate::root();
    let mut extra: Vec<String> = Vec::new();
    if args.gate || args.gate_selftest.is_some() {
        let against = args.against.as_deref();
        let baseline_file = args
            .baseline
            .as_ref()
            .map(|f| root.join(f))
            .unwrap_or_else(|| root.join("reports/baseline.json"));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let t0 = Instant::now();
        let built =
            mproc_harness::bench::ab::baseline_rev(&baseline_file, against).and_then(|rev| {
                eprintln!(
                    "xtask: bench: building the baseline revision {rev} in {}",
                    mproc_harness::bench::ab::WORKTREE
                );
                mproc_harness::bench::ab::build_baseline(&root, &rev, &target).map(|b| (rev, b))
            });
        match built {
            Ok((rev, bin)) => {
                eprintln!(
                    "xtask: bench: baseline build ready in {:.0} s: {}",
                    t0.elapsed().as_secs_f64(),
                    bin.display()
                );
                extra.extend([
                    "--baseline-bin".into(),
                    bin.display().to_string(),
                    "--baseline-rev".into(),
                    rev,
                ]);
            }
            Err(why) => {
                eprintln!("xtask: bench: NO BASELINE BUILD: {why}");
                extra.extend(["--baseline-unavailable".into(), why]);
            }
        }
    }
    let mut cmd = crate::cargo();
    cmd.args([
        "bench",
        "--quiet",
        "--package",
        "mproc-harness",
        "--bench",
        "mproc",
        "--",
    ]);
    cmd.args(raw);
    cmd.args(&extra);
    eprintln!("xtask: bench: {cmd:?}");
    match cmd.status() {
        Ok(s) => match s.code() {
            Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
            None => ExitCode::from(2),
        },
        Err(e) => {
            eprintln!("xtask: bench: cannot run cargo: {e}");
            ExitCode::from(2)
        }
    }
}
