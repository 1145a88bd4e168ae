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
