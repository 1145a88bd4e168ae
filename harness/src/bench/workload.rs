//! Benchmark workloads declared as data: `cases/bench/*.toml`.
//!
//! A workload file is a case of the harness's one format, loaded by the case loader
//! ([`crate::case`]): `title`, `source`, `methods`, `params`, `[[step]]`s of the one vocabulary,
//! naming the bench's tasks ([`super::kernel::TASKS`]), and a `[bench]` table that says which
//! steps are timed, how many operations one pass over them makes, how the result reads
//! (latency or throughput), how many samples to take, and what it is compared with. See
//! `cases/bench/README.md`.

use super::kernel;
use crate::case::{Case, Needs, Rules};
use crate::node::CaseError;
use mproc::StartMethod;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::case::{BenchSpec, Curve, Kind, PerMethod, Timing, DEFAULT_EFFECT};

/// The rules of workload files: the bench's tasks, a `[bench]` table.
pub const WORKLOAD: Rules = Rules {
    tasks: kernel::TASKS,
    needs: Needs::Bench,
};

/// A loaded workload: its case and its `[bench]` table.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The file.
    pub path: PathBuf,
    /// The file stem.
    pub name: String,
    /// What it measures.
    pub title: String,
    /// The start methods it runs under.
    pub methods: Vec<StartMethod>,
    /// The file as a case: its parameters and steps.
    pub case: Case,
    /// The `[bench]` table.
    pub bench: BenchSpec,
}

/// A workload file that cannot be used, as `path:line:column: message`.
pub type LoadError = CaseError;

impl Workload {
    /// Reads and checks a workload file.
    pub fn load(path: &Path) -> Result<Workload, LoadError> {
        Self::load_with(path, &BTreeMap::new())
    }

    /// Reads a workload file with some parameters overridden (a curve's point).
    pub fn load_with(path: &Path, params: &BTreeMap<String, i64>) -> Result<Workload, LoadError> {
        Self::from_case(path, Case::load_with(path, &WORKLOAD, params)?)
    }

    /// Checks the workload text `text` of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Workload, LoadError> {
        Self::parse_with(path, text, &BTreeMap::new())
    }

    /// [`Workload::parse`] with some parameters overridden.
    pub fn parse_with(
        path: &Path,
        text: &str,
        overrides: &BTreeMap<String, i64>,
    ) -> Result<Workload, LoadError> {
        let shown = path.display().to_string();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let case = Case::parse_with(&shown, "bench", &name, text, &WORKLOAD, overrides)?;
        Self::from_case(path, case)
    }

    fn from_case(path: &Path, mut case: Case) -> Result<Workload, LoadError> {
        let bench = case.bench.take().ok_or_else(|| CaseError {
            path: path.display().to_string(),
            line: 1,
            column: 1,
            message: "missing `[bench]`".into(),
        })?;
        Ok(Workload {
            path: path.to_path_buf(),
            name: case.name.clone(),
            title: case.title.clone(),
            methods: case.methods.clone(),
            case,
            bench,
        })
    }

    /// Operations per pass over the timed steps.
    pub fn ops(&self) -> u64 {
        self.bench.ops
    }

    /// Bytes per operation, if the throughput is in bytes.
    pub fn bytes_per_op(&self) -> Option<u64> {
        self.bench.bytes_per_op
    }

    /// The metric id under `method`.
    pub fn metric_id(&self, method: StartMethod) -> String {
        self.bench.metric.replace("{method}", method.as_str())
    }

    /// The group of the metric (its first path segment): one chart per group.
    pub fn group(&self) -> String {
        self.bench
            .metric
            .split('/')
            .next()
            .unwrap_or(&self.bench.metric)
            .to_string()
    }

    /// Whether the gate compares this workload's metrics.
    pub fn gated(&self) -> bool {
        self.bench.gate.unwrap_or(self.bench.curve.is_none())
    }

    /// The slowdown the A/B gate fails on.
    pub fn effect_threshold(&self) -> f64 {
        self.bench.gate_threshold.unwrap_or(DEFAULT_EFFECT)
    }

    /// The display unit of the value.
    pub fn unit(&self) -> &'static str {
        match (self.bench.kind, self.bytes_per_op()) {
            (Kind::Latency, _) => "s",
            (Kind::Throughput, Some(_)) => "B/s",
            (Kind::Throughput, None) => "ops/s",
        }
    }
}

/// Loads every `*.toml` in `dir` (sorted by name). Returns the workloads and the files that
/// could not be loaded.
pub fn load_dir(dir: &Path) -> (Vec<Workload>, Vec<LoadError>) {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            return (
                Vec::new(),
                vec![CaseError {
                    path: dir.display().to_string(),
                    line: 1,
                    column: 1,
                    message: format!("cannot read: {e}"),
                }],
            )
        }
    };
    files.sort();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        match Workload::load(&f) {
            Ok(w) => ok.push(w),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}
