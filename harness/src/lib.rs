//! The mproc harness: declarative cases run under every start method, checked against their
//! expectations, compared across start methods and with CPython's `multiprocessing`; and the
//! benchmarks, whose workloads are files of the same format.
//!
//! The modules, each using only those above it:
//!
//! - [`node`]: TOML as a tree of nodes that remember their position (`path:line:column`).
//! - [`template`]: field values with `$var` references, resolved when a step runs.
//! - [`expr`]: timing bounds over a case's parameters.
//! - [`catalogue`]: the task functions of cases; [`ctypes`]: shared values of every typecode.
//! - [`vocab`]: the step vocabulary, module by module, as typed [`vocab::Op`]s.
//! - [`case`]: the file model and its loader (steps, `[expect]`, `[bench]`).
//! - [`model`]: raw traces, normalised traces, run outcomes, the report's data.
//! - [`exec`]: the interpreter of one case under one start method (one file per vocabulary
//!   module), run in a process of its own (the `mproc-case` binary); writes a raw trace.
//! - [`trace`]: normalising traces, checking expectations, comparing.
//! - [`suite`]: runs many cases in parallel (ours and the CPython reference) into a report.
//! - [`report`]: the report as a table, JSON and HTML.
//! - [`mod@bench`]: the benchmarks (`cargo xtask bench`).

pub mod case;
pub mod catalogue;
pub mod ctypes;
pub mod exec;
pub mod expr;
pub mod model;
pub mod node;
pub mod report;
pub mod suite;
pub mod template;
pub mod trace;
pub mod vocab;

pub mod bench;
