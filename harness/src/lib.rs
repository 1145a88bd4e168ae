//! The mproc harness: declarative cases run under every start method, checked against their
//! expectations, compared across start methods and with CPython's `multiprocessing`.
//!
//! - [`case`]: the case format (TOML), parsed with exact positions.
//! - [`vocab`]: the step vocabulary; [`catalogue`]: the task functions.
//! - [`exec`]: the interpreter that runs one case under one start method (in its own process,
//!   the `mproc-case` binary) and writes a raw trace.
//! - [`trace`]: normalised traces, expectations, comparison.
//! - [`suite`]: runs many cases in parallel (ours and the CPython reference) into a report;
//!   [`report`] renders it as JSON, a table and HTML.

pub mod case;
pub mod catalogue;
pub mod exec;
pub mod expr;
pub mod node;
pub mod report;
pub mod suite;
pub mod trace;
pub mod vocab;

pub mod bench;
