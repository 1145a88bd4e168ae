//! `[bench]`: what a benchmark workload times and compares (see `cases/bench/README.md`).

use super::Loader;
use crate::node::{CaseError, Node, NodeKind, Span};
use mproc::StartMethod;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

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

/// A limit or reference: one for all methods or one per method.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// A cost curve: the parameter on the x axis and the points (each a table of parameter
/// overrides, which must set `x`).
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The parameter on the x axis.
    pub x: String,
    /// The points.
    pub points: Vec<BTreeMap<String, i64>>,
    /// Samples per point in a `--quick` run (default 3).
    pub quick_samples: Option<usize>,
}

/// The slowdown the A/B gate fails on unless a workload says otherwise.
pub const DEFAULT_EFFECT: f64 = 1.2;

/// The `[bench]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchSpec {
    /// The metric id; `{method}` is replaced by the start method (`start_join/{method}`).
    pub metric: String,
    /// The label of the timed steps: the steps carrying it form one pass; steps before them are
    /// setup, steps after them teardown.
    pub timed: String,
    /// Operations in one pass over the timed steps (`ops`, an integer or `"$param"`).
    pub ops: u64,
    /// Latency or throughput.
    pub kind: Kind,
    /// For throughput in bytes: the bytes one operation moves.
    pub bytes_per_op: Option<u64>,
    /// Whole-process timing or criterion.
    pub timing: Timing,
    /// Samples in a full run.
    pub samples: usize,
    /// Samples in a `--quick` run.
    pub quick_samples: usize,
    /// Passes over the timed steps per sample (process timing).
    pub iters: u64,
    /// The raw OS limit (`vs_limit`), if there is one.
    pub limit: Option<PerMethod>,
    /// The same-run Rust reference the gate compares with when there is no limit.
    pub reference: Option<PerMethod>,
    /// The procspawn peer measured next to it, if any (`spawn_join`, `pool_rtt`).
    pub procspawn: Option<String>,
    /// Whether CPython runs it (default true).
    pub cpython: bool,
    /// Samples CPython takes (default: the same as ours, at most 10; quick: at most 5).
    pub cpython_samples: Option<usize>,
    /// Whether the gate compares this metric (default: yes, but not for curves).
    pub gate: Option<bool>,
    /// The slowdown the A/B gate fails on (default [`DEFAULT_EFFECT`]: 20% slower).
    pub gate_threshold: Option<f64>,
    /// A cost curve: the workload is measured at each point (parameter overrides), and so is
    /// its limit.
    pub curve: Option<Curve>,
}

const BENCH_KEYS: &[&str] = &[
    "metric",
    "kind",
    "timed",
    "ops",
    "bytes_per_op",
    "timing",
    "samples",
    "quick_samples",
    "iters",
    "limit",
    "reference",
    "procspawn",
    "cpython",
    "cpython_samples",
    "gate",
    "gate_threshold",
    "curve",
];

/// The entries of one table of `[bench]`, read with `path:line:column` for every complaint.
struct Table<'a> {
    l: &'a Loader<'a>,
    node: &'a Node,
    prefix: &'static str,
}

impl<'a> Table<'a> {
    fn new(
        l: &'a Loader<'a>,
        node: &'a Node,
        prefix: &'static str,
        keys: &[&str],
    ) -> Result<Table<'a>, CaseError> {
        for (k, ks, _) in l.table(node, &format!("`{prefix}`"))? {
            if !keys.contains(&k.as_str()) {
                return Err(l.err(
                    ks,
                    format!(
                        "unknown key `{k}` in `{prefix}` (known: {})",
                        keys.join(", ")
                    ),
                ));
            }
        }
        Ok(Table { l, node, prefix })
    }

    fn what(&self, key: &str) -> String {
        format!("`{}.{key}`", self.prefix)
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.node.get(key)
    }

    fn str(&self, key: &str) -> Result<Option<String>, CaseError> {
        self.get(key)
            .map(|n| self.l.str(n, &self.what(key)).map(str::to_string))
            .transpose()
    }

    fn choice<T: Copy>(&self, key: &str, choices: &[(&str, T)]) -> Result<Option<T>, CaseError> {
        let Some(n) = self.get(key) else {
            return Ok(None);
        };
        let s = self.l.str(n, &self.what(key))?;
        match choices.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Ok(Some(*v)),
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
                Err(self.l.err(
                    &n.span,
                    format!(
                        "{} must be {}, not {s:?}",
                        self.what(key),
                        names.join(" or ")
                    ),
                ))
            }
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, CaseError> {
        self.get(key)
            .map(|n| match n.kind {
                NodeKind::Bool(b) => Ok(b),
                _ => Err(self.l.src.wrong_type(n, &self.what(key), "a boolean")),
            })
            .transpose()
    }

    fn float(&self, key: &str) -> Result<Option<(f64, &'a Span)>, CaseError> {
        self.get(key)
            .map(|n| match n.kind {
                NodeKind::Float(x) => Ok((x, &n.span)),
                NodeKind::Int(i) => Ok((i as f64, &n.span)),
                _ => Err(self.l.src.wrong_type(n, &self.what(key), "a number")),
            })
            .transpose()
    }

    /// An integer of at least `min`: a number, or (`params` given) a `"$param"`.
    fn int(
        &self,
        key: &str,
        min: i64,
        params: Option<&BTreeMap<String, Value>>,
    ) -> Result<Option<u64>, CaseError> {
        let Some(n) = self.get(key) else {
            return Ok(None);
        };
        let v = match (&n.kind, params) {
            (NodeKind::Int(i), _) => *i,
            (NodeKind::Str(s), Some(p)) if s.starts_with('$') => match p.get(&s[1..]) {
                Some(v) => v.as_i64().ok_or_else(|| {
                    self.l.err(
                        &n.span,
                        format!("parameter `{}` is not an integer: {v}", &s[1..]),
                    )
                })?,
                None => {
                    return Err(self
                        .l
                        .err(&n.span, format!("unknown parameter `{}`", &s[1..])))
                }
            },
            _ if params.is_some() => {
                return Err(self
                    .l
                    .src
                    .wrong_type(n, &self.what(key), "an integer or \"$param\""))
            }
            _ => return Err(self.l.src.wrong_type(n, &self.what(key), "an integer")),
        };
        if v < min {
            return Err(self.l.err(
                &n.span,
                format!("{} must be at least {min}, not {v}", self.what(key)),
            ));
        }
        Ok(Some(v as u64))
    }

    fn per_method(&self, key: &str) -> Result<Option<PerMethod>, CaseError> {
        let Some(n) = self.get(key) else {
            return Ok(None);
        };
        match &n.kind {
            NodeKind::Str(s) => Ok(Some(PerMethod::All(s.clone()))),
            NodeKind::Table(t) => {
                let mut m = BTreeMap::new();
                for (method, ms, v) in t {
                    if method.parse::<StartMethod>().is_err() {
                        return Err(self.l.err(
                            ms,
                            format!("unknown start method `{method}` (fork, spawn, forkserver)"),
                        ));
                    }
                    m.insert(method.clone(), self.l.str(v, &self.what(key))?.to_string());
                }
                Ok(Some(PerMethod::Each(m)))
            }
            _ => Err(self.l.src.wrong_type(
                n,
                &self.what(key),
                "an id or a table of ids by start method",
            )),
        }
    }
}

impl Loader<'_> {
    pub(super) fn bench(
        &self,
        n: &Node,
        labels: &[String],
        params: &BTreeMap<String, Value>,
    ) -> Result<BenchSpec, CaseError> {
        let t = Table::new(self, n, "bench", BENCH_KEYS)?;
        let need = |key: &str| {
            self.err(
                &n.span,
                format!("missing `{key}` in [bench] (see cases/bench/README.md)"),
            )
        };
        let kinds = [("latency", Kind::Latency), ("throughput", Kind::Throughput)];
        let timings = [
            ("process", Timing::Process),
            ("criterion", Timing::Criterion),
        ];
        let spec = BenchSpec {
            metric: t.str("metric")?.ok_or_else(|| need("metric"))?,
            kind: t.choice("kind", &kinds)?.ok_or_else(|| need("kind"))?,
            timed: t.str("timed")?.unwrap_or_else(|| "timed".into()),
            ops: t.int("ops", 1, Some(params))?.unwrap_or(1),
            bytes_per_op: t.int("bytes_per_op", 0, Some(params))?,
            timing: t.choice("timing", &timings)?.unwrap_or(Timing::Process),
            samples: t.int("samples", 2, None)?.unwrap_or(20) as usize,
            quick_samples: t.int("quick_samples", 2, None)?.unwrap_or(10) as usize,
            iters: t.int("iters", 1, None)?.unwrap_or(1),
            limit: t.per_method("limit")?,
            reference: t.per_method("reference")?,
            procspawn: t.str("procspawn")?,
            cpython: t.bool("cpython")?.unwrap_or(true),
            cpython_samples: t.int("cpython_samples", 1, None)?.map(|n| n as usize),
            gate: t.bool("gate")?,
            gate_threshold: match t.float("gate_threshold")? {
                Some((x, _)) if x > 1.0 && x.is_finite() => Some(x),
                Some((x, span)) => {
                    return Err(self.err(span, format!("`gate_threshold` must be above 1, not {x}")))
                }
                None => None,
            },
            curve: t.get("curve").map(|c| self.curve(c)).transpose()?,
        };
        if !labels.contains(&spec.timed) {
            return Err(self.err(
                &n.span,
                format!(
                    "no step is labelled `{}` (the [bench] table's `timed`)",
                    spec.timed
                ),
            ));
        }
        Ok(spec)
    }

    fn curve(&self, n: &Node) -> Result<Curve, CaseError> {
        let t = Table::new(self, n, "bench.curve", &["x", "points", "quick_samples"])?;
        let x = t
            .str("x")?
            .ok_or_else(|| self.err(&n.span, "a curve needs `x`, the parameter it varies"))?;
        let points_node = t
            .get("points")
            .ok_or_else(|| self.err(&n.span, "a curve needs `points`"))?;
        let mut points = Vec::new();
        for p in self.array(points_node, "`bench.curve.points`")? {
            let mut point = BTreeMap::new();
            for (k, _, v) in self.table(p, "a point of the curve")? {
                match v.kind {
                    NodeKind::Int(i) => point.insert(k.clone(), i),
                    _ => return Err(self.src.wrong_type(v, &format!("`{k}`"), "an integer")),
                };
            }
            if !point.contains_key(&x) {
                return Err(self.err(
                    &p.span,
                    format!("every point of the curve must set its x parameter `{x}`"),
                ));
            }
            points.push(point);
        }
        if points.is_empty() {
            return Err(self.err(&points_node.span, "a curve needs at least one point"));
        }
        Ok(Curve {
            x,
            points,
            quick_samples: t.int("quick_samples", 1, None)?.map(|n| n as usize),
        })
    }
}
