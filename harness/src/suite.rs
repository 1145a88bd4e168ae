//! Runs cases: each case × start method in a process of its own (our `mproc-case exec`, or
//! `python3 reference.py exec` for CPython), several at a time, then checks, compares and
//! gathers everything into a [`Report`].

use crate::case::{self, Case};
use crate::model::{
    Bar, CaseReport, CpythonComparison, RawTrace, Report, RunOutcome, RunReport, Verdict,
};
use crate::node::CaseError;
use crate::trace;
use mproc::StartMethod;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who runs a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Runner {
    /// mproc, through the `mproc-case` binary.
    Mproc,
    /// CPython's `multiprocessing`, through `harness/py/reference.py`.
    Cpython,
}

/// Where the programs are.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The `mproc-case` binary.
    pub case_bin: PathBuf,
    /// `python3` (3.11+), if the reference runs.
    pub python: Option<PathBuf>,
    /// `harness/py/reference.py`.
    pub reference: PathBuf,
    /// A folder for the runs' files.
    pub work: PathBuf,
}

fn python_ok(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args(["-c", "import sys; print(sys.version.split()[0]); sys.exit(0 if sys.version_info >= (3, 11) else 1)"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Finds `python3` (3.11 or newer) on the PATH: its path and version.
pub fn find_python() -> Option<(PathBuf, String)> {
    let p = PathBuf::from("python3");
    python_ok(&p).map(|v| (p, v))
}

fn read_timeline(path: &Path, t0: u64) -> Vec<Bar> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lanes: Vec<u64> = Vec::new();
    let mut open: Vec<(u64, Bar)> = Vec::new();
    let mut bars = Vec::new();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    lines.sort_by_key(|v| v["t_us"].as_u64().unwrap_or(0));
    for v in lines {
        let pid = v["pid"].as_u64().unwrap_or(0);
        let t = (v["t_us"].as_u64().unwrap_or(0).saturating_sub(t0)) as f64 / 1000.0;
        match v["ev"].as_str() {
            Some("start") => {
                let lane = match lanes.iter().position(|p| *p == pid) {
                    Some(i) => i + 1,
                    None => {
                        lanes.push(pid);
                        lanes.len()
                    }
                };
                let mut label = v["label"].as_str().unwrap_or("").to_string();
                label.truncate(24);
                open.push((
                    pid,
                    Bar {
                        lane,
                        task: v["task"].as_str().unwrap_or("").into(),
                        label,
                        start_ms: t,
                        end_ms: None,
                    },
                ));
            }
            Some("end") => {
                if let Some(i) = open.iter().rposition(|(p, _)| *p == pid) {
                    let (_, mut b) = open.remove(i);
                    b.end_ms = Some(t);
                    bars.push(b);
                }
            }
            _ => {}
        }
    }
    bars.extend(open.into_iter().map(|(_, b)| b));
    bars.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    bars
}

fn slug(case: &Case) -> String {
    format!("{}__{}", case.group, case.name)
}

/// The files of one run.
struct RunFiles {
    trace: PathBuf,
    timeline: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Runs `case` under `method` with `runner`, in a process of its own, and checks it.
pub fn run_job(case: &Case, runner: Runner, method: StartMethod, tools: &Tools) -> RunOutcome {
    let dir = tools.work.join(slug(case));
    let _ = std::fs::create_dir_all(&dir);
    let tag = match runner {
        Runner::Mproc => format!("mproc-{method}"),
        Runner::Cpython => format!("cpython-{method}"),
    };
    let files = RunFiles {
        trace: dir.join(format!("{tag}.trace.json")),
        timeline: dir.join(format!("{tag}.timeline.jsonl")),
        stdout: dir.join(format!("{tag}.stdout")),
        stderr: dir.join(format!("{tag}.stderr")),
    };
    for p in [&files.trace, &files.timeline] {
        let _ = std::fs::remove_file(p);
    }
    let mut cmd = match runner {
        Runner::Mproc => Command::new(&tools.case_bin),
        Runner::Cpython => {
            let mut c = Command::new(tools.python.as_deref().unwrap_or(Path::new("python3")));
            c.arg(&tools.reference);
            c
        }
    };
    cmd.arg("exec")
        .arg(&case.path)
        .arg("--method")
        .arg(method.as_str())
        .arg("--trace-out")
        .arg(&files.trace);
    cmd.env("MPROC_CASE_TIMELINE", &files.timeline);
    cmd.env("MPROC_NO_FORK_WARNING", "1");
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    let failures = supervise(cmd, &files, &tag, case.timeout_s);
    outcome(
        case,
        &files,
        &tag,
        failures,
        started.elapsed().as_millis() as u64,
    )
}

/// Runs `cmd` with its output in `files` until it exits or `timeout_s` pass (then kills it);
/// the run's own failures.
fn supervise(mut cmd: Command, files: &RunFiles, tag: &str, timeout_s: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut failures = Vec::new();
    let out = std::fs::File::create(&files.stdout)
        .and_then(|o| Ok((o, std::fs::File::create(&files.stderr)?)));
    let child = out.and_then(|(o, e)| {
        cmd.stdout(o).stderr(e);
        cmd.spawn()
    });
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot run {tag}: {e}")],
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    failures.push(format!("the {tag} runner exited with {status}"));
                }
                return failures;
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                failures.push(format!("{tag}: no answer within {timeout_s} s (killed)"));
                return failures;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                failures.push(format!("{tag}: wait failed: {e}"));
                return failures;
            }
        }
    }
}

/// Reads what a run left in `files`, normalises its trace and checks the case's expectations.
fn outcome(
    case: &Case,
    files: &RunFiles,
    tag: &str,
    mut failures: Vec<String>,
    wall_ms: u64,
) -> RunOutcome {
    let stdout = std::fs::read_to_string(&files.stdout).unwrap_or_default();
    let mut stderr = std::fs::read_to_string(&files.stderr).unwrap_or_default();
    if stderr.len() > 4000 {
        let mut cut = stderr.len() - 4000;
        while !stderr.is_char_boundary(cut) {
            cut += 1;
        }
        stderr = format!("...{}", &stderr[cut..]);
    }
    let raw: Option<RawTrace> = std::fs::read_to_string(&files.trace)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let Some(raw) = raw else {
        if failures.is_empty() {
            failures.push(format!("{tag}: no trace written"));
        }
        return RunOutcome {
            trace: None,
            failures,
            measured: Default::default(),
            timeline: Vec::new(),
            wall_ms,
            stderr,
            version: None,
        };
    };
    let (trace, measured, more) = trace::normalise(case, &raw, &stdout);
    failures.extend(more);
    let timeline = read_timeline(&files.timeline, raw.t_start_us);
    RunOutcome {
        trace: Some(trace),
        failures,
        measured,
        timeline,
        wall_ms,
        stderr,
        version: raw.version,
    }
}

/// Which reference to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// CPython if `python3` ≥ 3.11 is there, else skipped with a notice.
    Auto,
    /// CPython, required.
    Python,
    /// None.
    None,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cases' folder.
    pub cases: PathBuf,
    /// Only these start methods (empty: each case's own).
    pub methods: Vec<StartMethod>,
    /// Only cases whose id (`group/name`) contains this (or one of several, comma-separated).
    pub filter: Option<String>,
    /// The reference.
    pub reference: Reference,
    /// Runs at a time.
    pub jobs: usize,
}

/// A failure to start the suite at all (bad flags, missing python with `--reference python`).
#[derive(Debug)]
pub struct SetupError(pub String);

/// Loads the cases of `opts` (bad ones are returned as errors).
pub fn load(opts: &Options) -> (Vec<Case>, Vec<CaseError>) {
    let (mut cases, bad) = case::discover(&opts.cases);
    if let Some(f) = &opts.filter {
        cases.retain(|c| f.split(',').any(|part| c.id().contains(part.trim())));
    }
    (cases, bad)
}

/// One run to make: the case (its index), the runner, the method.
type Job = (usize, Runner, StartMethod);

/// Runs every loaded case: ours under each method, and the reference. `progress(done, total,
/// what)` is called after each run.
pub fn run_suite(
    opts: &Options,
    tools: &Tools,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<Report, SetupError> {
    let started = Instant::now();
    let (cases, bad) = load(opts);
    let (python, notice) = reference(opts, tools)?;
    let jobs = plan(opts, &cases, python.is_some());
    let mut results = run_jobs(opts, tools, &cases, &jobs, progress);
    results.sort_by_key(|(i, r, m, _)| (*i, *r == Runner::Cpython, *m));
    let mut reports = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut runs = Vec::new();
        let mut refs = Vec::new();
        for (_, r, m, out) in results.iter().filter(|(j, ..)| *j == i) {
            let rr = RunReport {
                method: m.as_str().to_string(),
                outcome: out.clone(),
            };
            if *r == Runner::Mproc {
                runs.push(rr);
            } else {
                refs.push(rr);
            }
        }
        reports.push(judge(c, runs, refs, python.is_some()));
    }
    let passed = reports.iter().filter(|r| r.passed).count();
    let failed = reports.len() - passed;
    Ok(Report {
        python,
        reference_notice: notice,
        cases: reports,
        bad,
        passed,
        failed,
        wall_ms: started.elapsed().as_millis() as u64,
    })
}

/// CPython's version if the reference runs, or why it does not.
fn reference(
    opts: &Options,
    tools: &Tools,
) -> Result<(Option<String>, Option<String>), SetupError> {
    Ok(match opts.reference {
        Reference::None => (
            None,
            Some("CPython reference: not run (--reference none)".to_string()),
        ),
        Reference::Auto | Reference::Python => match tools.python.as_deref().and_then(python_ok) {
            Some(v) => (Some(v), None),
            None if opts.reference == Reference::Python => {
                return Err(SetupError(
                    "--reference python: python3 (3.11 or newer) was not found".into(),
                ))
            }
            None => (
                None,
                Some("CPython reference: skipped (python3 3.11+ not found)".to_string()),
            ),
        },
    })
}

/// The runs to make, longest first (which keeps the lanes busy to the end).
fn plan(opts: &Options, cases: &[Case], python: bool) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        for &m in &c.methods {
            if !opts.methods.is_empty() && !opts.methods.contains(&m) {
                continue;
            }
            jobs.push((i, Runner::Mproc, m));
            if python {
                jobs.push((i, Runner::Cpython, m));
            }
        }
    }
    jobs.sort_by_key(|(i, r, _)| {
        (
            std::cmp::Reverse(
                cases[*i].timeout_s.min(5) as usize + (*r == Runner::Cpython) as usize,
            ),
            *i,
        )
    });
    jobs
}

/// Runs `jobs`, `opts.jobs` at a time.
fn run_jobs(
    opts: &Options,
    tools: &Tools,
    cases: &[Case],
    jobs: &[Job],
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Vec<(usize, Runner, StartMethod, RunOutcome)> {
    let total = jobs.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Runner, StartMethod, RunOutcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, r, m)) = jobs.get(k) else { break };
                let out = run_job(&cases[i], r, m, tools);
                let who = if r == Runner::Mproc {
                    "mproc"
                } else {
                    "cpython"
                };
                let what = format!("{} {who} {m}", cases[i].id());
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, r, m, out));
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, total, &what);
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Compares the runs of one case across methods and with CPython, and decides the verdicts.
pub fn judge(
    c: &Case,
    mut runs: Vec<RunReport>,
    refs: Vec<RunReport>,
    with_reference: bool,
) -> CaseReport {
    // Agreement across start methods.
    let mut method_diff = None;
    if let Some(first) = runs.first().and_then(|r| r.outcome.trace.clone()) {
        let first_method = runs[0].method.clone();
        for r in runs.iter_mut().skip(1) {
            let Some(t) = &r.outcome.trace else { continue };
            let d = trace::diff(&first, t);
            if !d.is_empty() {
                if c.differs_between_methods.is_none() {
                    r.outcome.failures.push(format!("trace differs from {first_method}'s and the case does not say why (differs_between_methods)"));
                }
                method_diff.get_or_insert(format!("{first_method} → {}\n{d}", r.method));
            }
        }
    }
    let cpython = if with_reference {
        compare_with_cpython(c, &runs, &refs)
    } else {
        CpythonComparison {
            verdict: Verdict::Skipped,
            diffs: Vec::new(),
            note: None,
        }
    };
    let passed = runs.iter().all(RunReport::passed) && cpython.verdict != Verdict::Differs;
    CaseReport {
        id: c.id(),
        path: c.path.clone(),
        title: c.title.clone(),
        source: c.source.clone(),
        differs_from_cpython: c.differs_from_cpython.clone(),
        differs_between_methods: c.differs_between_methods.clone(),
        timeline: c.timeline,
        runs,
        reference: refs,
        method_diff,
        cpython,
        passed,
    }
}

/// Our traces against CPython's, method by method.
fn compare_with_cpython(c: &Case, runs: &[RunReport], refs: &[RunReport]) -> CpythonComparison {
    let mut diffs = Vec::new();
    let mut errors = Vec::new();
    for py in refs {
        let ours = runs
            .iter()
            .find(|r| r.method == py.method)
            .and_then(|r| r.outcome.trace.as_ref());
        match (&py.outcome.trace, ours) {
            (Some(pt), Some(ot)) => {
                let d = trace::diff(pt, ot);
                if !d.is_empty() {
                    diffs.push((py.method.clone(), d));
                }
            }
            (None, _) => errors.push(format!("{}: {}", py.method, py.outcome.failures.join("; "))),
            _ => {}
        }
    }
    let differs = !diffs.is_empty() || !errors.is_empty();
    let (verdict, note) = match (differs, &c.differs_from_cpython) {
        (false, None) => (Verdict::Agree, None),
        (false, Some(_)) => (
            Verdict::Agree,
            Some("declared difference not observed".to_string()),
        ),
        (true, Some(_)) => (Verdict::IntendedDifference, None),
        (true, None) => (
            Verdict::Differs,
            (!errors.is_empty()).then(|| errors.join("\n")),
        ),
    };
    CpythonComparison {
        verdict,
        diffs,
        note,
    }
}
