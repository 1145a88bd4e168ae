//! `results.json`: every metric with its value, samples and ratios; the machine and revision;
//! the targets of issue 6 with the numbers reached.

use super::measure::stats;
use super::workload::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema tag of `results.json`.
pub const SCHEMA: &str = "mproc-bench/1";

/// Samples, in the metric's unit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// How many.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

/// One measured metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// What it measures.
    pub title: String,
    /// The workload file (or `limit`, `procspawn`).
    pub workload: String,
    /// The start method, if it has one.
    pub method: Option<String>,
    /// Latency or throughput.
    pub kind: Kind,
    /// The value's unit: `s` (per operation), `ops/s` or `B/s`.
    pub unit: String,
    /// The median, in `unit`.
    pub value: f64,
    /// The samples, in `unit`.
    pub samples: Samples,
    /// The median cost of one operation, in seconds.
    pub cost_s: f64,
    /// The raw OS limit this is compared with.
    pub limit: Option<String>,
    /// The limit's cost per operation (measured next to this metric), in seconds.
    pub limit_cost_s: Option<f64>,
    /// Our cost ÷ the limit's cost (medians of samples taken in alternation with the limit's):
    /// 1.0 is the limit, lower is better.
    pub vs_limit: Option<f64>,
    /// The same-run reference the gate compares with (the limit, or a Rust reference).
    pub reference: Option<String>,
    /// The reference's cost per operation, in seconds.
    pub reference_cost_s: Option<f64>,
    /// Our lower decile ÷ the reference's lower decile (samples taken in alternation): the
    /// ratio stored in the baseline, the gate's second check.
    pub vs_reference: Option<f64>,
    /// CPython's median cost per operation on the same workload, in seconds.
    pub cpython_cost_s: Option<f64>,
    /// CPython's samples, in `unit`.
    pub cpython_samples: Option<Samples>,
    /// CPython's cost ÷ ours: higher is better.
    pub vs_cpython: Option<f64>,
    /// The CPU placement of this figure (`same-cpu`, `split`, `free`; see `placement`).
    #[serde(default)]
    pub placement: Option<String>,
}

/// One point of a cost curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The x parameter's value.
    pub x: i64,
    /// Our median cost per operation (item, process, message), seconds.
    pub cost_s: f64,
    /// Our samples, in seconds per operation.
    pub samples: Samples,
    /// The raw limit's (or reference's) median cost per operation at this point.
    pub limit_cost_s: Option<f64>,
    /// CPython's median cost per operation at this point.
    pub cpython_cost_s: Option<f64>,
}

/// A cost curve: how cost per operation grows with the work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveResult {
    /// What it measures.
    pub title: String,
    /// The workload file.
    pub workload: String,
    /// The start method, if it has one.
    pub method: Option<String>,
    /// The x parameter.
    pub x: String,
    /// Bytes per operation at each point come from the `size` parameter (throughput curves).
    pub kind: Kind,
    /// The raw limit (or Rust reference) measured at each point.
    pub limit: Option<String>,
    /// The placement.
    pub placement: String,
    /// The points, by x.
    pub points: Vec<CurvePoint>,
}

impl CurveResult {
    /// The largest step up, from one point to the next, of our cost per operation relative to
    /// the limit's (or of our cost alone where there is no limit): 1.0 or less is flat or
    /// falling.
    pub fn worst_bend(&self) -> Option<f64> {
        let rel: Vec<f64> = self
            .points
            .iter()
            .map(|p| match p.limit_cost_s {
                Some(l) if self.limit.is_some() => p.cost_s / l,
                _ => p.cost_s,
            })
            .collect();
        rel.windows(2)
            .map(|w| w[1] / w[0])
            .filter(|r| r.is_finite())
            .reduce(f64::max)
    }
}

/// How much a curve may rise from one point to the next, relative to its limit, before it
/// counts as bending upward (noise allowance).
pub const BEND_TOLERANCE: f64 = 1.25;

/// Converts costs per operation (seconds) into values in the metric's unit.
pub fn to_unit(kind: Kind, bytes_per_op: Option<u64>, cost: f64) -> f64 {
    match kind {
        Kind::Latency => cost,
        Kind::Throughput => bytes_per_op.unwrap_or(1) as f64 / cost,
    }
}

/// Samples (costs per operation) as [`Samples`] in the metric's unit.
pub fn samples_in_unit(kind: Kind, bytes_per_op: Option<u64>, costs: &[f64]) -> Samples {
    let s = stats(costs);
    let (a, b) = (
        to_unit(kind, bytes_per_op, s.min),
        to_unit(kind, bytes_per_op, s.max),
    );
    Samples {
        n: costs.len(),
        min: a.min(b),
        median: to_unit(kind, bytes_per_op, s.median),
        max: a.max(b),
    }
}

/// The unit of a kind.
pub fn unit_of(kind: Kind, bytes_per_op: Option<u64>) -> &'static str {
    match (kind, bytes_per_op) {
        (Kind::Latency, _) => "s",
        (Kind::Throughput, Some(_)) => "B/s",
        (Kind::Throughput, None) => "ops/s",
    }
}

/// The machine the run was on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// The CPU model.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// The load average when the run began.
    pub loadavg: String,
}

impl Machine {
    /// Describes this machine.
    pub fn here() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Machine {
            cpus: mproc::cpu_count(),
            cpu_model,
            kernel,
            loadavg,
        }
    }
}

/// The revision measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Git {
    /// The commit (`git rev-parse HEAD`), or empty outside a repository.
    pub rev: String,
    /// Whether the work tree had changes.
    pub dirty: bool,
}

impl Git {
    /// The revision of the repository at `root`.
    pub fn of(root: &std::path::Path) -> Git {
        let out = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        Git {
            rev: out(&["rev-parse", "HEAD"]).unwrap_or_default(),
            dirty: out(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
        }
    }
}

/// A comparison peer (CPython, procspawn): whether it ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Whether its numbers are in this run.
    pub available: bool,
    /// Its version.
    pub version: Option<String>,
    /// Why it is missing, or what went wrong.
    pub notice: Option<String>,
}

/// One target of issue 6 and the number reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// The metric.
    pub metric: String,
    /// What is compared (`vs_limit`, `vs_cpython`, `÷ start_join/fork`, `value`).
    pub what: String,
    /// `<=` or `>=`.
    pub cmp: String,
    /// The bound.
    pub bound: f64,
    /// The number reached (absent when not measured).
    pub value: Option<f64>,
    /// Whether it is met (absent when not measured).
    pub met: Option<bool>,
    /// Why, in a few words (the figure compared with, or what is missing).
    #[serde(default)]
    pub note: Option<String>,
}

/// `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: String,
    /// Seconds since the epoch when the run ended.
    pub created_unix: u64,
    /// Whether it was a `--quick` run.
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// The revision.
    pub git: Git,
    /// CPython's `multiprocessing` on the same workloads.
    pub cpython: PeerInfo,
    /// procspawn.
    pub procspawn: PeerInfo,
    /// The raw OS limits and Rust references, measured on their own.
    pub limits: BTreeMap<String, Metric>,
    /// The workloads' metrics, keyed by metric id.
    pub metrics: BTreeMap<String, Metric>,
    /// The procspawn peers (`procspawn/spawn_join`, `procspawn/pool_rtt`).
    pub peers: BTreeMap<String, Metric>,
    /// The targets and the numbers reached.
    pub targets: Vec<TargetCheck>,
    /// Workload files that could not be used, failed runs, skipped peers.
    pub notices: Vec<String>,
    /// The placement of the figures in `limits` and `metrics` (the stable one, which the gate
    /// uses), the placements measured, and why one is missing.
    #[serde(default)]
    pub placement: Option<super::placement::Offer>,
    /// The limits measured under the split placement.
    #[serde(default)]
    pub limits_split: BTreeMap<String, Metric>,
    /// The workloads' metrics under the split placement.
    #[serde(default)]
    pub split: BTreeMap<String, Metric>,
    /// The cost curves, keyed by metric id.
    #[serde(default)]
    pub curves: BTreeMap<String, CurveResult>,
    /// The instruction counts of the counted programs (when valgrind ran).
    #[serde(default)]
    pub counts: BTreeMap<String, super::counts::Count>,
    /// The gate's report (`--gate`).
    #[serde(default)]
    pub gate: Option<super::ab::GateReport>,
    /// Resident memory per child and per pool worker (`rss/child/fork`, ...), and of a raw
    /// fork child (`rss/raw_fork`).
    #[serde(default)]
    pub memory: BTreeMap<String, MemoryFigure>,
}

/// Resident memory of one kind of child: medians of the readings, in bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryFigure {
    /// `VmRSS` (counts pages shared with the parent).
    pub rss_bytes: f64,
    /// Private pages: what the child costs on its own.
    pub private_bytes: f64,
    /// Readings.
    pub n: usize,
    /// CPython's `VmRSS` for the same kind of child.
    pub cpython_rss_bytes: Option<f64>,
    /// CPython's private pages.
    pub cpython_private_bytes: Option<f64>,
}

fn target(metric: &str, what: &str, cmp: &str, bound: f64) -> (String, String, String, f64) {
    (metric.into(), what.into(), cmp.into(), bound)
}

/// Issue 6's targets.
pub fn target_list() -> Vec<(String, String, String, f64)> {
    let mut t = vec![
        target("start_join/fork", "vs_limit", "<=", 1.5),
        target("start_join/spawn", "vs_limit", "<=", 1.5),
        target("start_join/forkserver", "vs_limit", "<=", 2.0),
        target("start_join/fork", "vs_cpython", ">=", 5.0),
        target("start_join/spawn", "vs_cpython", ">=", 50.0),
        target("start_join/forkserver", "vs_cpython", ">=", 20.0),
    ];
    for m in ["fork", "spawn", "forkserver"] {
        t.push(target(
            &format!("pool_lifecycle/{m}"),
            &format!("÷ start_join/{m}"),
            "<=",
            3.0,
        ));
    }
    for m in ["fork", "spawn", "forkserver"] {
        t.push(target(
            &format!("pool_map/{m}/chunk_1"),
            "vs_cpython",
            ">=",
            10.0,
        ));
        t.push(target(
            &format!("pool_map/{m}/chunk_default"),
            "vs_cpython",
            ">=",
            3.0,
        ));
    }
    for m in ["fork", "spawn", "forkserver"] {
        t.push(target(&format!("apply_rtt/{m}"), "vs_limit", "<=", 3.0));
    }
    for m in ["fork", "spawn", "forkserver"] {
        t.push(target(&format!("apply_rtt/{m}"), "vs_limit", "<=", 1.5));
    }
    t.push(target("pipe_rtt", "vs_limit", "<=", 1.3));
    t.push(target("pipe_rtt", "vs_limit", "<=", 1.15));
    t.push(target("pipe_throughput", "vs_limit", "<=", 2.0));
    t.push(target("queue_throughput/1x1", "value", ">=", 2e6));
    t.push(target("queue_throughput/1x1", "value", ">=", 5e6));
    t.push(target("queue_throughput/1x1", "vs_cpython", ">=", 15.0));
    t.push(target("value_lock/1", "vs_cpython", ">=", 20.0));
    t.push(target("value_lock/2", "vs_cpython", ">=", 10.0));
    t
}

/// Checks the targets against `metrics`.
pub fn check_targets(metrics: &BTreeMap<String, Metric>) -> Vec<TargetCheck> {
    target_list()
        .into_iter()
        .map(|(metric, what, cmp, bound)| {
            let m = metrics.get(&metric);
            let value = m.and_then(|m| match what.as_str() {
                "vs_limit" => m.vs_limit,
                "vs_cpython" => m.vs_cpython,
                "value" => Some(m.value),
                w => w
                    .strip_prefix("÷ ")
                    .and_then(|other| metrics.get(other))
                    .map(|o| m.cost_s / o.cost_s),
            });
            let met = value.map(|v| if cmp == "<=" { v <= bound } else { v >= bound });
            TargetCheck {
                note: m.and_then(|m| m.placement.clone()),
                metric,
                what,
                cmp,
                bound,
                value,
                met,
            }
        })
        .collect()
}

/// The curve targets: no curve bends upward against its limit's; a 256-process start costs at
/// most 1.5× 256 sequential raw starts (fork+_exit+waitpid; for spawn, fork+exec of the bench
/// binary).
pub fn check_curve_targets(
    curves: &BTreeMap<String, CurveResult>,
    limits: &BTreeMap<String, Metric>,
) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    for (id, c) in curves {
        let bend = c.worst_bend();
        out.push(TargetCheck {
            metric: id.clone(),
            what: format!(
                "worst step of cost per op ÷ {}",
                c.limit.as_deref().unwrap_or("itself")
            ),
            cmp: "<=".into(),
            bound: BEND_TOLERANCE,
            value: bend,
            met: bend.map(|b| b <= BEND_TOLERANCE),
            note: Some(format!("no upward bend ({})", c.placement)),
        });
    }
    for m in ["fork", "spawn", "forkserver"] {
        let id = format!("start_many/{m}");
        let raw = if m == "spawn" {
            "fork_exec_self"
        } else {
            "fork_exit_wait"
        };
        let at256 = curves
            .get(&id)
            .and_then(|c| c.points.iter().find(|p| p.x == 256))
            .map(|p| p.cost_s);
        let single = limits.get(raw).map(|l| l.cost_s);
        let value = at256.zip(single).map(|(a, s)| a / s);
        out.push(TargetCheck {
            metric: format!("{id} n=256"),
            what: format!("÷ 256 sequential {raw}"),
            cmp: "<=".into(),
            bound: 1.5,
            value,
            met: value.map(|v| v <= 1.5),
            note: None,
        });
    }
    out
}

/// Checks that `v` (parsed `results.json`) has the schema: every metric has value, unit,
/// samples with n/min/median/max, and the ratio fields. Returns the problems found.
pub fn schema_problems(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if v.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
        out.push(format!("`schema` is not {SCHEMA:?}"));
    }
    for key in [
        "machine",
        "git",
        "cpython",
        "procspawn",
        "targets",
        "notices",
    ] {
        if v.get(key).is_none() {
            out.push(format!("missing `{key}`"));
        }
    }
    for section in ["limits", "metrics", "peers"] {
        let Some(obj) = v.get(section).and_then(|s| s.as_object()) else {
            out.push(format!("`{section}` is not an object"));
            continue;
        };
        for (id, m) in obj {
            for f in ["value", "cost_s"] {
                if !m
                    .get(f)
                    .is_some_and(|x| x.as_f64().is_some_and(|x| x > 0.0))
                {
                    out.push(format!("{section}.{id}: `{f}` is not a positive number"));
                }
            }
            if !m.get("unit").is_some_and(|u| u.is_string()) {
                out.push(format!("{section}.{id}: no `unit`"));
            }
            match m.get("samples") {
                Some(s) => {
                    let g = |k: &str| s.get(k).and_then(|x| x.as_f64());
                    match (g("n"), g("min"), g("median"), g("max")) {
                        (Some(n), Some(a), Some(md), Some(b)) if n >= 1.0 && a <= md && md <= b => {
                        }
                        _ => out.push(format!("{section}.{id}: bad `samples` {s}")),
                    }
                }
                None => out.push(format!("{section}.{id}: no `samples`")),
            }
            for f in ["vs_limit", "vs_cpython", "vs_reference"] {
                match m.get(f) {
                    None => out.push(format!("{section}.{id}: no `{f}` (null when absent)")),
                    Some(x) if !(x.is_null() || x.as_f64().is_some_and(|x| x > 0.0)) => {
                        out.push(format!("{section}.{id}: `{f}` is {x}"))
                    }
                    _ => {}
                }
            }
        }
    }
    out
}
