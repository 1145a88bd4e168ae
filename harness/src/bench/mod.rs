//! The benchmark harness behind `cargo xtask bench`.
//!
//! - [`workload`]: workloads declared as data (`cases/bench/*.toml`: the case format's steps
//!   plus a `[bench]` table).
//! - [`kernel`]: compiles a workload's steps into closures for one start method.
//! - [`limits`]: the raw OS limits and Rust references, measured in the same run.
//! - [`memory`]: resident memory per child and per pool worker.
//! - [`measure`]: sampling, by whole-process timing or by criterion.
//! - [`results`]: `results.json` and the targets; [`report`]: `report.html`.
//! - [`placement`]: CPU placement (same-cpu, split) set by the harness.
//! - [`protocol`]: the sampling protocol the bench binary speaks (one batch of samples of one
//!   workload under one method and placement, as JSON), so that two builds can be measured
//!   side by side.
//! - [`stats`]: Mann–Whitney U, the bootstrap interval on a ratio of medians, the verdicts.
//! - [`ab`]: the A/B gate: the baseline revision built in a worktree under `target/`, measured
//!   interleaved with the current tree.
//! - [`counts`]: in-process hot paths counted in instructions under callgrind.
//! - [`selftest`]: `--gate-selftest`, the gate run on an unchanged tree under a CPU hog and
//!   with an injected slowdown.
//! - [`gate`]: the baseline file, the stored same-run ratios (the second check) and the
//!   calibration of their thresholds.
//! - [`run`]: the orchestration and the command line of the bench binary
//!   (`harness/benches/mproc.rs`), which `cargo xtask bench` runs.

pub mod ab;
pub mod counts;
pub mod gate;
pub mod kernel;
pub mod limits;
pub mod measure;
pub mod memory;
pub mod placement;
pub mod probe;
pub mod protocol;
pub mod report;
pub mod results;
pub mod run;
pub mod selftest;
pub mod stats;
pub mod workload;

/// Defines, in a test or bench binary, a constructor that makes the binary exit at once when it
/// is the child of the fork+exec limit ([`limits::EXIT_AT_ONCE`]), before libtest's or
/// criterion's `main` runs. Write `mproc_harness::enable_bench_support!();` once at the top level
/// of a binary that measures the limits (next to `mproc::enable_test_support!();`).
#[macro_export]
macro_rules! enable_bench_support {
    () => {
        #[used]
        #[link_section = ".init_array"]
        static __MPROC_BENCH_INIT_ARRAY_ENTRY: extern "C" fn() = {
            extern "C" fn __mproc_bench_exit_if_limit_child() {
                $crate::bench::limits::exit_if_limit_child();
            }
            __mproc_bench_exit_if_limit_child
        };
    };
}
