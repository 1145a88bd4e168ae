//! Benchmark workloads declared as data: `cases/bench/*.toml`.
//!
//! A workload file is a case in the harness's format (`title`, `source`, `methods`, `params`,
//! `[[step]]`s from the step vocabulary) plus a `[bench]` table that says which steps are timed,
//! how many operations one pass over them makes, how the result reads (latency or throughput),
//! how many samples to take, and what it is compared with. See `cases/bench/README.md`.

use mproc::StartMethod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a metric's value means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Seconds per operation (lower is better).
    Latency,
    /// Operations (or bytes, with `bytes_per_op`) per second (higher is better).
    Throughput,
}

/// How the timed steps are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Timing {
    /// Whole-process timing: each sample runs setup, `iters` passes over the timed steps, then
    /// teardown; the clock covers only the timed passes.
    Process,
    /// criterion drives the iteration counts; setup and teardown run once around it.
    Criterion,
}

/// The raw OS limit a metric is compared with: one for all methods or one per method.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PerMethod {
    /// The same for every method.
    All(String),
    /// One per method name.
    Each(BTreeMap<String, String>),
}

impl PerMethod {
    /// The id for `method`.
    pub fn for_method(&self, method: StartMethod) -> Option<String> {
        match self {
            PerMethod::All(s) => Some(s.clone()),
            PerMethod::Each(m) => m.get(method.as_str()).cloned(),
        }
    }
}

/// The `[bench]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSpec {
    /// The metric id; `{method}` is replaced by the start method (`start_join/{method}`).
    pub metric: String,
    /// The label of the timed steps: the steps carrying it form one pass; steps before them are
    /// setup, steps after them teardown.
    #[serde(default = "default_timed")]
    pub timed: String,
    /// Operations in one pass over the timed steps (an integer or `"$param"`).
    #[serde(default = "one")]
    pub ops: toml::Value,
    /// Latency or throughput.
    pub kind: Kind,
    /// For throughput in bytes: the bytes one operation moves (an integer or `"$param"`).
    #[serde(default)]
    pub bytes_per_op: Option<toml::Value>,
    /// Whole-process timing or criterion.
    #[serde(default = "default_timing")]
    pub timing: Timing,
    /// Samples in a full run.
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// Samples in a `--quick` run.
    #[serde(default = "default_quick")]
    pub quick_samples: usize,
    /// Passes over the timed steps per sample (process timing).
    #[serde(default = "one_u64")]
    pub iters: u64,
    /// The raw OS limit (`vs_limit`), if there is one.
    #[serde(default)]
    pub limit: Option<PerMethod>,
    /// The same-run Rust reference the gate compares with when there is no limit.
    #[serde(default)]
    pub reference: Option<PerMethod>,
    /// The procspawn peer measured next to it, if any (`spawn_join`, `pool_rtt`).
    #[serde(default)]
    pub procspawn: Option<String>,
    /// Whether CPython runs it (default true).
    #[serde(default = "yes")]
    pub cpython: bool,
    /// Samples CPython takes (default: the same as ours, at most 10; quick: at most 5).
    #[serde(default)]
    pub cpython_samples: Option<usize>,
    /// Whether the gate compares this metric (default: yes, but not for curves).
    #[serde(default)]
    pub gate: Option<bool>,
    /// The slowdown the A/B gate fails on (default [`DEFAULT_EFFECT`]: 20% slower).
    #[serde(default)]
    pub gate_threshold: Option<f64>,
    /// A cost curve: the workload is measured at each point (parameter overrides), and so is
    /// its limit.
    #[serde(default)]
    pub curve: Option<Curve>,
}

/// The slowdown the A/B gate fails on unless a workload says otherwise.
pub const DEFAULT_EFFECT: f64 = 1.2;

/// A cost curve: the parameter on the x axis and the points (each a table of parameter
/// overrides, which must set `x`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    /// The parameter on the x axis.
    pub x: String,
    /// The points.
    pub points: Vec<BTreeMap<String, i64>>,
    /// Samples per point in a `--quick` run (default 3).
    #[serde(default)]
    pub quick_samples: Option<usize>,
}

fn default_timed() -> String {
    "timed".into()
}
fn one() -> toml::Value {
    toml::Value::Integer(1)
}
fn one_u64() -> u64 {
    1
}
fn default_timing() -> Timing {
    Timing::Process
}
fn default_samples() -> usize {
    20
}
fn default_quick() -> usize {
    10
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    title: String,
    source: String,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    params: toml::Table,
    step: Vec<toml::Table>,
    #[serde(default)]
    expect: Option<toml::Table>,
    bench: BenchSpec,
}

/// One action of a step: its vocabulary name and its fields (a bare value is kept as is).
#[derive(Clone, Debug)]
pub struct Action {
    /// The vocabulary name.
    pub op: String,
    /// The value: a table of fields or the primary field's value.
    pub value: toml::Value,
}

/// One `[[step]]`.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1-based index.
    pub index: usize,
    /// The line of its `[[step]]` header.
    pub line: usize,
    /// Its label.
    pub label: Option<String>,
    /// How many times it repeats (`each = { i = "0..N" }` or a list).
    pub repeat: u64,
    /// Its actions in document order.
    pub actions: Vec<Action>,
}

/// A loaded workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The file.
    pub path: PathBuf,
    /// The file stem.
    pub name: String,
    /// What it measures.
    pub title: String,
    /// Where the workload comes from.
    pub source: String,
    /// The start methods it runs under.
    pub methods: Vec<StartMethod>,
    /// Parameters.
    pub params: toml::Table,
    /// Steps.
    pub steps: Vec<Step>,
    /// Whether the file has an `[expect]` table (checked by the conformance runner only).
    pub has_expect: bool,
    /// The `[bench]` table.
    pub bench: BenchSpec,
}

/// A workload file that cannot be used, as `path:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

impl Workload {
    /// Reads and checks a workload file.
    pub fn load(path: &Path) -> Result<Workload, LoadError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError(format!("{shown}:1:1: cannot read: {e}")))?;
        Self::parse(path, &text)
    }

    /// Checks the workload text `text` of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Workload, LoadError> {
        Self::parse_with(path, text, &BTreeMap::new())
    }

    /// Reads a workload file with some parameters overridden (a curve's point).
    pub fn load_with(path: &Path, params: &BTreeMap<String, i64>) -> Result<Workload, LoadError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError(format!("{shown}:1:1: cannot read: {e}")))?;
        Self::parse_with(path, &text, params)
    }

    /// [`Workload::parse`] with some parameters overridden.
    pub fn parse_with(
        path: &Path,
        text: &str,
        overrides: &BTreeMap<String, i64>,
    ) -> Result<Workload, LoadError> {
        let shown = path.display().to_string();
        let mut spec: FileSpec = toml::from_str(text).map_err(|e| {
            let (l, c) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            LoadError(format!("{shown}:{l}:{c}: {}", e.message()))
        })?;
        for (k, v) in overrides {
            spec.params.insert(k.clone(), toml::Value::Integer(*v));
        }
        let header_lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with("[[step]]"))
            .map(|(i, _)| i + 1)
            .collect();
        let at = |line: usize, msg: String| LoadError(format!("{shown}:{line}:1: {msg}"));
        let methods = match &spec.methods {
            None => vec![
                StartMethod::Fork,
                StartMethod::Spawn,
                StartMethod::Forkserver,
            ],
            Some(ms) => ms
                .iter()
                .map(|m| {
                    m.parse::<StartMethod>()
                        .map_err(|_| at(1, format!("unknown start method `{m}`")))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut steps = Vec::new();
        for (i, t) in spec.step.iter().enumerate() {
            let line = header_lines.get(i).copied().unwrap_or(1);
            let mut step = Step {
                index: i + 1,
                line,
                label: None,
                repeat: 1,
                actions: Vec::new(),
            };
            for (k, v) in t {
                match k.as_str() {
                    "label" => {
                        step.label = Some(
                            v.as_str()
                                .ok_or_else(|| at(line, "`label` must be a string".into()))?
                                .to_string(),
                        )
                    }
                    "each" => step.repeat = each_count(v, &spec.params).map_err(|m| at(line, m))?,
                    op => step.actions.push(Action {
                        op: op.to_string(),
                        value: v.clone(),
                    }),
                }
            }
            if step.actions.is_empty() {
                return Err(at(line, "a step needs at least one action".into()));
            }
            steps.push(step);
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let w = Workload {
            path: path.to_path_buf(),
            name,
            title: spec.title,
            source: spec.source,
            methods,
            params: spec.params,
            steps,
            has_expect: spec.expect.is_some(),
            bench: spec.bench,
        };
        if !w
            .steps
            .iter()
            .any(|s| s.label.as_deref() == Some(&w.bench.timed))
        {
            return Err(at(
                1,
                format!(
                    "no step is labelled `{}` (the [bench] table's `timed`)",
                    w.bench.timed
                ),
            ));
        }
        if w.bench.samples < 2 || w.bench.quick_samples < 2 {
            return Err(at(
                1,
                "`samples` and `quick_samples` must be at least 2".into(),
            ));
        }
        if w.bench.iters == 0 {
            return Err(at(1, "`iters` must be at least 1".into()));
        }
        w.ops().map_err(|m| at(1, m))?;
        w.bytes_per_op().map_err(|m| at(1, m))?;
        if let Some(c) = &w.bench.curve {
            if c.points.is_empty() || c.points.iter().any(|p| !p.contains_key(&c.x)) {
                return Err(at(
                    1,
                    format!(
                        "every point of the curve must set its x parameter `{}`",
                        c.x
                    ),
                ));
            }
        }
        if let Some(t) = w.bench.gate_threshold {
            if !(t > 1.0 && t.is_finite()) {
                return Err(at(1, format!("`gate_threshold` must be above 1, not {t}")));
            }
        }
        Ok(w)
    }

    /// Resolves an integer field: a number or `"$param"`.
    pub fn int(&self, v: &toml::Value) -> Result<i64, String> {
        resolve_int(v, &self.params)
    }

    /// Operations per pass over the timed steps.
    pub fn ops(&self) -> Result<u64, String> {
        let n = self.int(&self.bench.ops)?;
        if n < 1 {
            return Err("`ops` must be at least 1".into());
        }
        Ok(n as u64)
    }

    /// Bytes per operation, if the throughput is in bytes.
    pub fn bytes_per_op(&self) -> Result<Option<u64>, String> {
        self.bench
            .bytes_per_op
            .as_ref()
            .map(|v| self.int(v).map(|n| n.max(0) as u64))
            .transpose()
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
        match (self.bench.kind, self.bytes_per_op().ok().flatten()) {
            (Kind::Latency, _) => "s",
            (Kind::Throughput, Some(_)) => "B/s",
            (Kind::Throughput, None) => "ops/s",
        }
    }
}

/// Resolves `v` (an integer or `"$param"`) against `params`.
pub fn resolve_int(v: &toml::Value, params: &toml::Table) -> Result<i64, String> {
    match v {
        toml::Value::Integer(i) => Ok(*i),
        toml::Value::String(s) if s.starts_with('$') => match params.get(&s[1..]) {
            Some(toml::Value::Integer(i)) => Ok(*i),
            Some(other) => Err(format!(
                "parameter `{}` is not an integer: {other:?}",
                &s[1..]
            )),
            None => Err(format!("unknown parameter `{}`", &s[1..])),
        },
        other => Err(format!(
            "expected an integer or \"$param\", found {other:?}"
        )),
    }
}

fn each_count(v: &toml::Value, params: &toml::Table) -> Result<u64, String> {
    let t = v
        .as_table()
        .filter(|t| t.len() == 1)
        .ok_or("`each` takes one variable, as `each = { i = \"0..N\" }`")?;
    let (_, range) = t.iter().next().expect("one entry");
    match range {
        toml::Value::Array(a) => Ok(a.len() as u64),
        toml::Value::String(s) => {
            let (a, b) = s
                .split_once("..")
                .ok_or_else(|| format!("bad range {s:?}: expected \"A..B\""))?;
            let a = resolve_int(&parse_int_or_param(a.trim()), params)?;
            let b = resolve_int(&parse_int_or_param(b.trim()), params)?;
            Ok((b - a).max(0) as u64)
        }
        other => Err(format!(
            "`each` takes a range string or a list, found {other:?}"
        )),
    }
}

fn parse_int_or_param(s: &str) -> toml::Value {
    match s.parse::<i64>() {
        Ok(i) => toml::Value::Integer(i),
        Err(_) => toml::Value::String(s.to_string()),
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
                vec![LoadError(format!(
                    "{}:1:1: cannot read: {e}",
                    dir.display()
                ))],
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
