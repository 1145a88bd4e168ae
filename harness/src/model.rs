//! The data of a conformance run, from one action to the whole report: raw traces (what a
//! runner writes), normalised traces (what is compared), the outcome of a run, and the report.
//! The modules that make them ([`crate::exec`], [`crate::trace`], [`crate::suite`]) and the one
//! that renders them ([`crate::report`]) all use this one; none uses another for its types.

use crate::node::CaseError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Microseconds since the epoch (the time base of raw traces and timelines).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One action as it happened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// The step's 1-based index.
    pub step: usize,
    /// The action.
    pub op: String,
    /// The object acted on (or made), after substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The step's label, after substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What the action returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The error kind, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error kind the case expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_error: Option<String>,
    /// The error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Start, microseconds since the epoch.
    pub t0_us: u64,
    /// End, microseconds since the epoch.
    pub t1_us: u64,
}

/// The raw trace of one run (both runners write this format).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RawTrace {
    /// `mproc` or `cpython`.
    pub runner: String,
    /// The start method.
    pub method: String,
    /// The runner's version (CPython's `sys.version`), if any.
    #[serde(default)]
    pub version: Option<String>,
    /// Every action in order.
    pub events: Vec<RawEvent>,
    /// Final exit code of every process object (null: never started or closed); the processes
    /// of a group `ps` as `ps[0]`, `ps[1]`, ...
    pub exitcodes: BTreeMap<String, Option<i64>>,
    /// Processes still running after the last step (killed by the runner).
    pub unreaped: Vec<String>,
    /// Why the run stopped early (an unexpected error), if it did.
    pub aborted: Option<String>,
    /// The pids seen (this process and its children), to redact.
    pub pids: Vec<u64>,
    /// When the steps began, microseconds since the epoch.
    pub t_start_us: u64,
    /// When they ended.
    pub t_end_us: u64,
}

/// One event of a normalised trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The action.
    pub op: String,
    /// The object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The step's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The value (observations and results only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The error kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a measured time compares with its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimingVerdict {
    /// Within the bounds.
    #[serde(rename = "ok")]
    Ok,
    /// Below `at_least`.
    #[serde(rename = "below at_least")]
    BelowAtLeast,
    /// Above `at_most`.
    #[serde(rename = "above at_most")]
    AboveAtMost,
    /// The steps it measures did not run.
    #[serde(rename = "not measured")]
    NotMeasured,
}

/// A normalised trace: equal traces mean the same observable behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The actions in order.
    pub events: Vec<Event>,
    /// Final exit codes.
    pub exitcodes: BTreeMap<String, Option<i64>>,
    /// Printed lines (pids redacted; sorted when the case's output order is "any").
    pub output: Vec<String>,
    /// Each timing bound's verdict.
    pub timings: BTreeMap<String, TimingVerdict>,
    /// Processes left running after the last step.
    pub unreaped: Vec<String>,
    /// Where the run stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

/// The measured values behind the timing verdicts, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Name → (measured, lower bound, upper bound).
    pub timings: BTreeMap<String, (f64, Option<f64>, Option<f64>)>,
}

/// One task bar of a timeline, in milliseconds since the run's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// The lane (1-based, in order of first start).
    pub lane: usize,
    /// The task.
    pub task: String,
    /// Its arguments, shortened.
    pub label: String,
    /// Start.
    pub start_ms: f64,
    /// End (`None`: it never returned).
    pub end_ms: Option<f64>,
}

/// The outcome of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The normalised trace (absent if the run produced none).
    pub trace: Option<Trace>,
    /// Failed expectations or the run's own failure.
    pub failures: Vec<String>,
    /// Measured timings.
    pub measured: Measured,
    /// Task bars.
    pub timeline: Vec<Bar>,
    /// How long the run took, ms.
    pub wall_ms: u64,
    /// The run's stderr (trimmed).
    pub stderr: String,
    /// The runner's version string.
    pub version: Option<String>,
}

/// One run of a case under one method.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// The start method.
    pub method: String,
    /// What happened.
    pub outcome: RunOutcome,
}

impl RunReport {
    /// Whether the run met every expectation.
    pub fn passed(&self) -> bool {
        self.outcome.failures.is_empty()
    }

    /// `pass` or `FAIL`.
    pub fn verdict(&self) -> &'static str {
        if self.passed() {
            "pass"
        } else {
            "FAIL"
        }
    }
}

/// How our traces compare with CPython's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Equal traces.
    #[serde(rename = "agree")]
    Agree,
    /// Different, and the case says why (`differs_from_cpython`).
    #[serde(rename = "intended difference")]
    IntendedDifference,
    /// Different without a reason: a failure.
    #[serde(rename = "differs")]
    Differs,
    /// CPython did not run.
    #[serde(rename = "skipped")]
    Skipped,
}

impl Verdict {
    /// The verdict as the table and the report show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::IntendedDifference => "intended difference",
            Verdict::Differs => "differs",
            Verdict::Skipped => "skipped",
        }
    }
}

/// The comparison with CPython.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CpythonComparison {
    /// The verdict.
    pub verdict: Verdict,
    /// Per method: the diff of CPython's trace (`-`) against ours (`+`).
    pub diffs: Vec<(String, String)>,
    /// Extra information.
    pub note: Option<String>,
}

/// One case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseReport {
    /// `group/name`.
    pub id: String,
    /// The file.
    pub path: String,
    /// Title.
    pub title: String,
    /// Source.
    pub source: String,
    /// Why CPython differs, as the case says.
    pub differs_from_cpython: Option<String>,
    /// Why the methods differ, as the case says.
    pub differs_between_methods: Option<String>,
    /// Whether the case asks for a timeline.
    pub timeline: bool,
    /// Our runs.
    pub runs: Vec<RunReport>,
    /// CPython's runs.
    pub reference: Vec<RunReport>,
    /// The first difference between methods, if any.
    pub method_diff: Option<String>,
    /// The comparison with CPython.
    pub cpython: CpythonComparison,
    /// Whether the case passed.
    pub passed: bool,
}

/// A whole conformance run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// CPython's version, if the reference ran.
    pub python: Option<String>,
    /// Why the reference did not run.
    pub reference_notice: Option<String>,
    /// The cases.
    pub cases: Vec<CaseReport>,
    /// Case files that could not be loaded.
    pub bad: Vec<CaseError>,
    /// Cases passed.
    pub passed: usize,
    /// Cases failed.
    pub failed: usize,
    /// Wall time, ms.
    pub wall_ms: u64,
}

impl Report {
    /// The closing line: `conformance: N passed, N failed`.
    pub fn summary_line(&self) -> String {
        format!(
            "conformance: {} passed, {} failed",
            self.passed,
            self.failed + self.bad.len()
        )
    }

    /// The process exit code: 2 for bad input, 1 for a failed case, 0 otherwise.
    pub fn exit_code(&self) -> u8 {
        if !self.bad.is_empty() {
            2
        } else if self.failed > 0 {
            1
        } else {
            0
        }
    }
}
