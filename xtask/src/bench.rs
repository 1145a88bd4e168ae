//! `cargo xtask bench`: builds and runs the bench binary (`harness/benches/mproc.rs`, release
//! profile) with the given options; its exit code is ours (0 ok, 1 a gate regression, 2 bad
//! input or a failed run). See `cargo xtask bench --help`.

use std::process::ExitCode;

/// Runs the benchmarks with `args` (everything after `bench`).
pub fn bench(args: &[String]) -> ExitCode {
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
    cmd.args(args);
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
