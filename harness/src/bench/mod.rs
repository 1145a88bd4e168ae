//! The benchmark harness behind `cargo xtask bench`.
//!
//! - [`workload`]: workloads declared as data (`cases/bench/*.toml`: the case format's steps
//!   plus a `[bench]` table).
//! - [`kernel`]: compiles a workload's steps into closures for one start method.
//! - [`limits`]: the raw OS limits and Rust references, measured in the same run.
//! - [`measure`]: sampling, by whole-process timing or by criterion.
//! - [`results`]: `results.json` and the targets; [`report`]: `report.html`.
//! - [`gate`]: the baseline, the comparison and the calibration of thresholds.
//! - [`run`]: the orchestration and the command line of the bench binary
//!   (`harness/benches/mproc.rs`), which `cargo xtask bench` runs.

pub mod gate;
pub mod kernel;
pub mod limits;
pub mod measure;
pub mod probe;
pub mod report;
pub mod results;
pub mod run;
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
