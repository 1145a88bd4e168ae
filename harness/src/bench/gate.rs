//! The regression gate: `reports/baseline.json` holds, for each metric, the ratio of its cost to
//! a reference measured in the same run (`vs_reference`: the raw limit where there is one,
//! otherwise the Rust reference named by the workload) and a per-metric threshold. A run
//! regresses a metric when `current ratio ÷ baseline ratio > threshold`. Ratios, never absolute
//! times: machines differ, but a ratio of two costs measured side by side travels.
//!
//! Thresholds come from `--calibrate`: several runs of an unchanged tree give each metric's
//! spread; the threshold is that spread with a margin, never below [`MIN_THRESHOLD`] (so noise
//! passes) and never above [`MAX_THRESHOLD`] (so a 2× slowdown fails).

use super::results::{Git, Machine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema tag of the baseline.
pub const BASELINE_SCHEMA: &str = "mproc-bench-baseline/2";
/// The previous schema (no counts, no placement), still read.
pub const BASELINE_SCHEMA_V1: &str = "mproc-bench-baseline/1";
/// The lowest threshold calibration sets.
pub const MIN_THRESHOLD: f64 = 1.30;
/// The highest threshold calibration sets: a 2× slowdown must still fail with some noise.
pub const MAX_THRESHOLD: f64 = 1.65;
/// The threshold of a metric saved without calibration.
pub const DEFAULT_THRESHOLD: f64 = 1.5;
/// The margin over the calibrated spread.
pub const MARGIN: f64 = 1.2;

/// What calibration saw for one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Runs.
    pub runs: usize,
    /// Smallest ratio seen.
    pub min: f64,
    /// Largest ratio seen.
    pub max: f64,
    /// Whether the spread was wider than [`MAX_THRESHOLD`] allows (the threshold was capped).
    pub noisy: bool,
}

/// One metric of the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseMetric {
    /// The same-run reference of the ratio.
    pub reference: String,
    /// The baseline ratio (cost ÷ reference cost).
    pub ratio: f64,
    /// The largest allowed `current ratio ÷ baseline ratio`.
    pub threshold: f64,
    /// How the threshold was found, if by calibration.
    pub calibration: Option<Calibration>,
}

/// `reports/baseline.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// [`BASELINE_SCHEMA`].
    pub schema: String,
    /// How the file was made.
    pub note: String,
    /// Seconds since the epoch.
    pub created_unix: u64,
    /// Whether the runs were `--quick`.
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// The revision.
    pub git: Git,
    /// The metrics.
    pub metrics: BTreeMap<String, BaseMetric>,
    /// The placement the ratios were measured under (`same-cpu`; absent before placement was
    /// controlled).
    #[serde(default)]
    pub placement: Option<String>,
    /// The instruction counts of the counted programs.
    #[serde(default)]
    pub counts: BTreeMap<String, super::counts::Count>,
}

/// A metric's ratio in the current run.
#[derive(Clone, Debug, PartialEq)]
pub struct Current {
    /// The reference.
    pub reference: String,
    /// cost ÷ reference cost.
    pub ratio: f64,
}

/// The verdict on one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within its threshold.
    Pass,
    /// Worse than its threshold.
    Regressed,
    /// Not in the baseline (not gated).
    New,
    /// In the baseline but not measured in this run.
    Missing,
    /// Measured against another reference than the baseline's (not comparable).
    ReferenceChanged,
}

/// One line of the gate's report.
#[derive(Clone, Debug, PartialEq)]
pub struct GateLine {
    /// The metric.
    pub metric: String,
    /// The baseline ratio.
    pub baseline: Option<f64>,
    /// The current ratio.
    pub current: Option<f64>,
    /// current ÷ baseline.
    pub factor: Option<f64>,
    /// The threshold.
    pub threshold: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Compares the current ratios with the baseline.
pub fn compare(base: &Baseline, current: &BTreeMap<String, Current>) -> Vec<GateLine> {
    let mut out = Vec::new();
    for (id, b) in &base.metrics {
        let line = match current.get(id) {
            None => GateLine {
                metric: id.clone(),
                baseline: Some(b.ratio),
                current: None,
                factor: None,
                threshold: Some(b.threshold),
                verdict: Verdict::Missing,
            },
            Some(c) => {
                let factor = c.ratio / b.ratio;
                let verdict = if c.reference != b.reference {
                    Verdict::ReferenceChanged
                } else if factor.is_finite() && factor <= b.threshold {
                    Verdict::Pass
                } else {
                    Verdict::Regressed
                };
                GateLine {
                    metric: id.clone(),
                    baseline: Some(b.ratio),
                    current: Some(c.ratio),
                    factor: Some(factor),
                    threshold: Some(b.threshold),
                    verdict,
                }
            }
        };
        out.push(line);
    }
    for (id, c) in current {
        if !base.metrics.contains_key(id) {
            out.push(GateLine {
                metric: id.clone(),
                baseline: None,
                current: Some(c.ratio),
                factor: None,
                threshold: None,
                verdict: Verdict::New,
            });
        }
    }
    out
}

/// Whether the lines pass: nothing regressed. (New metrics pass with a notice; a missing
/// metric or a changed reference fails, since the gate could not check it.)
pub fn passes(lines: &[GateLine]) -> bool {
    lines
        .iter()
        .all(|l| matches!(l.verdict, Verdict::Pass | Verdict::New))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Sets each metric's baseline ratio (the median of the runs) and threshold (the largest ratio
/// seen ÷ that median, times [`MARGIN`], clamped to
/// [`MIN_THRESHOLD`]..=[`MAX_THRESHOLD`]) from several runs of an unchanged tree.
pub fn calibrate(runs: &[BTreeMap<String, Current>]) -> BTreeMap<String, BaseMetric> {
    let mut out = BTreeMap::new();
    let ids: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    for id in ids {
        let seen: Vec<&Current> = runs.iter().filter_map(|r| r.get(id)).collect();
        let mut ratios: Vec<f64> = seen
            .iter()
            .map(|c| c.ratio)
            .filter(|r| r.is_finite())
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let ratio = median(&mut ratios);
        let (min, max) = (ratios[0], ratios[ratios.len() - 1]);
        // Only a run slower than the baseline can fail the gate, so only the upward spread
        // counts.
        let spread = max / ratio;
        let wanted = spread * MARGIN;
        out.insert(
            id.clone(),
            BaseMetric {
                reference: seen[0].reference.clone(),
                ratio,
                threshold: wanted.clamp(MIN_THRESHOLD, MAX_THRESHOLD),
                calibration: Some(Calibration {
                    runs: ratios.len(),
                    min,
                    max,
                    noisy: wanted > MAX_THRESHOLD,
                }),
            },
        );
    }
    out
}

/// A baseline from one run: thresholds kept from `previous` where it has the metric, otherwise
/// [`DEFAULT_THRESHOLD`].
pub fn rebase(
    current: &BTreeMap<String, Current>,
    previous: Option<&Baseline>,
) -> BTreeMap<String, BaseMetric> {
    current
        .iter()
        .map(|(id, c)| {
            let prev = previous.and_then(|p| p.metrics.get(id));
            (
                id.clone(),
                BaseMetric {
                    reference: c.reference.clone(),
                    ratio: c.ratio,
                    threshold: prev.map(|p| p.threshold).unwrap_or(DEFAULT_THRESHOLD),
                    calibration: prev.and_then(|p| p.calibration.clone()),
                },
            )
        })
        .collect()
}

/// The gate's table, for the terminal.
pub fn render(lines: &[GateLine]) -> String {
    let mut s = format!(
        "{:<36} {:>10} {:>10} {:>8} {:>9}  verdict\n",
        "metric", "baseline", "current", "factor", "threshold"
    );
    let f = |x: Option<f64>| x.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
    for l in lines {
        s.push_str(&format!(
            "{:<36} {:>10} {:>10} {:>8} {:>9}  {:?}\n",
            l.metric,
            f(l.baseline),
            f(l.current),
            f(l.factor),
            f(l.threshold),
            l.verdict
        ));
    }
    s
}
