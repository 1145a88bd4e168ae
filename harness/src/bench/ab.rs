//! The A/B gate: the baseline revision (the commit recorded in `reports/baseline.json`, or
//! `--against REV`) is built in a git worktree under `target/gate/`, and its bench binary and
//! the current one are measured **interleaved** on each gated workload (baseline, current,
//! current, baseline, ... one batch each per round, through the [`protocol`](super::protocol)),
//! so both see the same machine. Each metric's rounds are judged by [`stats::judge`]: regressed
//! only when significantly slower *and* beyond the workload's effect threshold; inconclusive
//! rounds are measured again (bounded), and a last inconclusive is reported as such.
//!
//! The stored same-run ratios of `reports/baseline.json` (each metric's cost over a raw limit or
//! reference sampled next to it) stay as a second check on the current side's samples: printed
//! and recorded for every metric, and deciding where A/B cannot run (no baseline build: a
//! shallow clone, a revision that does not build, or one that predates the protocol).
//!
//! The in-process hot paths are also compared in instructions under callgrind
//! ([`counts`]), A/B where the baseline build exists, else against the stored
//! counts.

use super::counts::{self, Count, COUNT_THRESHOLD};
use super::gate::Baseline;
use super::placement::Placement;
use super::protocol::{run_sample, SampleRequest, Side, Subject};
use super::stats::{self, Judgement, Round, Stat, Verdict};
use super::workload::Workload;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the baseline build lives, under the workspace's target folder.
pub const WORKTREE: &str = "target/gate/baseline";

fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let o = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The baseline revision: `against` if given, else the commit recorded in the baseline file.
pub fn baseline_rev(baseline_file: &Path, against: Option<&str>) -> Result<String, String> {
    if let Some(r) = against {
        return Ok(r.to_string());
    }
    let b = super::run::load_baseline(baseline_file)?;
    if b.git.rev.is_empty() {
        return Err(format!("{} records no revision", baseline_file.display()));
    }
    Ok(b.git.rev)
}

/// Builds the bench binary of revision `rev` of the repository at `root` in a worktree under
/// `root/target/gate/` (release profile) into its own target folder `<target_dir>/gate/target`
/// (cargo gives the same file names to the same workspace built from two folders, so the two
/// builds must not share one; this one is kept between runs, so only what changed is rebuilt).
/// Returns the binary, or why there is none: the revision is not in this clone (a shallow
/// clone), the worktree cannot be made, or the build failed.
pub fn build_baseline(root: &Path, rev: &str, target_dir: &Path) -> Result<PathBuf, String> {
    let commit = git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| {
        format!("revision {rev} is not in this clone (a shallow clone, or history rewritten)")
    })?;
    let wt = root.join(WORKTREE);
    let at = git(&wt, &["rev-parse", "HEAD"]).ok();
    if wt.join(".git").exists() && at.is_some() {
        if at.as_deref() != Some(commit.as_str()) {
            git(
                &wt,
                &["checkout", "--quiet", "--force", "--detach", &commit],
            )?;
        }
    } else {
        let _ = std::fs::remove_dir_all(&wt);
        let _ = git(root, &["worktree", "prune"]);
        if let Some(d) = wt.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        git(
            root,
            &[
                "worktree",
                "add",
                "--quiet",
                "--force",
                "--detach",
                &wt.display().to_string(),
                &commit,
            ],
        )?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .current_dir(&wt)
        .env("CARGO_TARGET_DIR", target_dir.join("gate").join("target"))
        .args([
            "bench",
            "--no-run",
            "--quiet",
            "--package",
            "mproc-harness",
            "--bench",
            "mproc",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        return Err(format!(
            "the baseline revision {} does not build: {}",
            &commit[..12.min(commit.len())],
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    executable_from_messages(&String::from_utf8_lossy(&o.stdout))
        .ok_or_else(|| "cargo built no bench executable `mproc`".to_string())
}

/// The bench executable `mproc` named in cargo's JSON messages.
pub fn executable_from_messages(json_lines: &str) -> Option<PathBuf> {
    json_lines.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v.get("reason")?.as_str()? == "compiler-artifact"
            && v.pointer("/target/name")?.as_str()? == "mproc"
            && v.pointer("/target/kind")?
                .as_array()?
                .iter()
                .any(|k| k == "bench"))
        .then(|| v.get("executable")?.as_str().map(PathBuf::from))
        .flatten()
    })
}

/// The gate's options.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// The baseline side, or why there is none.
    pub baseline: Result<Side, String>,
    /// The baseline revision, if known.
    pub baseline_rev: Option<String>,
    /// The current side.
    pub current: Side,
    /// The placement measured.
    pub placement: Placement,
    /// Rounds per attempt.
    pub rounds: usize,
    /// Samples per batch.
    pub batch: usize,
    /// Attempts (the first and the re-measures) before a verdict stays inconclusive.
    pub attempts: usize,
    /// Where callgrind writes.
    pub work: PathBuf,
}

/// The gate's verdict on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateMetric {
    /// The metric.
    pub metric: String,
    /// `timing` or `count`.
    pub kind: String,
    /// The placement of the timings.
    pub placement: Option<Placement>,
    /// The A/B comparison (current ÷ baseline build), if it ran.
    pub ab: Option<Judgement>,
    /// Why A/B did not run for this metric.
    pub ab_notice: Option<String>,
    /// The stored same-run ratio check: (current ratio ÷ stored ratio) against the stored
    /// threshold.
    pub stored: Option<Judgement>,
    /// The stored check's notice (no entry, another reference).
    pub stored_notice: Option<String>,
    /// Attempts made (1 = no re-measure).
    pub attempts: usize,
    /// The verdict: A/B's where it ran, else the stored check's.
    pub verdict: Verdict,
    /// Instruction counts (count metrics): baseline build (or stored) and current.
    pub counts: Option<(u64, u64)>,
}

/// The gate's report (in `results.json` as `gate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// The baseline revision.
    pub baseline_rev: Option<String>,
    /// "A/B against the baseline build", or the loud reason for the fallback.
    pub mode: String,
    /// The placement of the timings.
    pub placement: Placement,
    /// Each metric.
    pub metrics: Vec<GateMetric>,
    /// Notices (valgrind missing, a side that failed).
    pub notices: Vec<String>,
    /// `pass`, `regressed` or `inconclusive`.
    pub verdict: Verdict,
}

/// A metric's samples of the current side (for the run's figures), by metric id.
#[derive(Clone, Debug, Default)]
pub struct CurrentSamples {
    /// The metric's samples.
    pub samples: Vec<f64>,
    /// Its reference and the reference's samples.
    pub reference: Option<(String, Vec<f64>)>,
}

fn stored_check(
    base: Option<&Baseline>,
    id: &str,
    reference: Option<&str>,
    pairs: &[(Vec<f64>, Vec<f64>)],
) -> (Option<Judgement>, Option<String>) {
    let Some(b) = base.and_then(|b| b.metrics.get(id)) else {
        return (None, Some("not in the baseline file (new)".into()));
    };
    if reference != Some(b.reference.as_str()) {
        return (
            None,
            Some(format!(
                "stored against {}, measured against {}",
                b.reference,
                reference.unwrap_or("nothing")
            )),
        );
    }
    // a = the reference scaled by the stored ratio (what the metric would cost if its ratio
    // were the stored one), b = the metric.
    let rounds: Vec<Round> = pairs
        .iter()
        .map(|(m, r)| Round {
            a: r.iter().map(|x| x * b.ratio).collect(),
            b: m.clone(),
        })
        .collect();
    (
        Some(stats::judge_of(Stat::LowDecile, &rounds, b.threshold)),
        None,
    )
}

/// The length the gate aims at for one sample: well under a scheduler time slice, so that
/// most samples run uninterrupted even when another process shares the CPU (a sample that
/// spans a slice is either clean or carries a whole slice of someone else's time, and their
/// mixture makes medians swing).
pub const SAMPLE_TARGET_S: f64 = 0.0005;
/// The most samples in one batch.
pub const MAX_BATCH: usize = 15;

/// How a workload is sampled in the gate: timed passes per sample and samples per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Timed passes per sample.
    pub iters: u64,
    /// Samples per batch.
    pub samples: usize,
}

/// Splits a workload's `iters` passes per sample into shorter samples of about
/// [`SAMPLE_TARGET_S`] given one pass's time, keeping the timed work of a batch about the same
/// (`batch` × `iters` passes), at most [`MAX_BATCH`] samples. With two passes or more, an even
/// number.
pub fn shape(pass_s: f64, iters: u64, batch: usize) -> Shape {
    if !(pass_s.is_finite() && pass_s > 0.0) || iters <= 1 {
        return Shape {
            iters: iters.max(1),
            samples: batch,
        };
    }
    let mut k = ((SAMPLE_TARGET_S / pass_s).round() as u64).clamp(1, iters);
    if k >= 2 && k % 2 == 1 {
        k += 1;
    }
    let k = k.min(iters);
    let samples = ((batch as u64 * iters).div_ceil(k) as usize).clamp(batch, MAX_BATCH.max(batch));
    Shape { iters: k, samples }
}

/// One batch: the metric's samples, and its reference with the reference's samples.
type Batch = (Vec<f64>, Option<(String, Vec<f64>)>);

fn batch(
    side: &Side,
    w: &Workload,
    method: mproc::StartMethod,
    cfg: &GateConfig,
    shape: Shape,
) -> Result<Batch, String> {
    let r = run_sample(
        side,
        &SampleRequest {
            subject: Subject::Workload {
                file: w.path.clone(),
                method: method.as_str().into(),
                params: BTreeMap::new(),
            },
            placement: cfg.placement,
            samples: shape.samples,
            reference: true,
            criterion: None,
            iters: Some(shape.iters),
        },
    )?;
    let reference = r.reference.map(|id| (id, r.reference_samples_s));
    Ok((r.samples_s, reference))
}

/// Runs the timing part of the gate on `plan`; returns the lines and the current side's samples
/// per metric. `progress` is told each metric.
pub fn gate_timings(
    plan: &[(Workload, mproc::StartMethod)],
    base: Option<&Baseline>,
    cfg: &GateConfig,
    progress: &dyn Fn(&str),
) -> (
    Vec<GateMetric>,
    BTreeMap<String, CurrentSamples>,
    Vec<String>,
) {
    let mut lines = Vec::new();
    let mut current = BTreeMap::new();
    let mut notices = Vec::new();
    for (w, m) in plan.iter().filter(|(w, _)| w.gated()) {
        let id = w.metric_id(*m);
        progress(&id);
        let threshold = w.effect_threshold();
        let mut rounds: Vec<Round> = Vec::new();
        let mut pairs: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        let mut reference: Option<String> = None;
        let mut ab_notice = cfg.baseline.as_ref().err().cloned();
        let mut failed = None;
        let mut attempts = 0;
        let mut ab = None;
        let mut stored: (Option<Judgement>, Option<String>);
        // One pass's time, from a short batch of the current side, shapes the samples.
        let probe = run_sample(
            &cfg.current,
            &SampleRequest {
                subject: Subject::Workload {
                    file: w.path.clone(),
                    method: m.as_str().into(),
                    params: BTreeMap::new(),
                },
                placement: cfg.placement,
                samples: 1,
                reference: false,
                criterion: None,
                iters: Some(1),
            },
        );
        let shape = match probe {
            Ok(r) => shape(
                r.samples_s.first().copied().unwrap_or(f64::NAN) * r.ops.max(1) as f64,
                w.bench.iters,
                cfg.batch,
            ),
            Err(e) => {
                failed = Some(e);
                Shape {
                    iters: w.bench.iters,
                    samples: cfg.batch,
                }
            }
        };
        // Rounds are measured in attempts (the first, then re-measures while inconclusive, all
        // pooled). A regression must then show again in fresh rounds of its own (the
        // confirmation): a load pattern that happened to fall on one side cannot repeat itself
        // on demand, a slower build can.
        let mut confirming: Option<Judgement> = None;
        let mut confirm_rounds: Vec<Round> = Vec::new();
        while attempts < cfg.attempts + 1 && failed.is_none() {
            attempts += 1;
            let target = if confirming.is_some() {
                &mut confirm_rounds
            } else {
                &mut rounds
            };
            for i in 0..cfg.rounds {
                let mut a = None;
                let mut b = None;
                let order = if (target.len() + i) % 2 == 0 {
                    [false, true]
                } else {
                    [true, false]
                };
                for current_side in order {
                    if current_side {
                        match batch(&cfg.current, w, *m, cfg, shape) {
                            Ok(x) => b = Some(x),
                            Err(e) => failed = Some(e),
                        }
                    } else if let (Ok(side), None) = (&cfg.baseline, &ab_notice) {
                        match batch(side, w, *m, cfg, shape) {
                            Ok(x) => a = Some(x),
                            Err(e) => {
                                ab_notice = Some(format!(
                                    "the baseline build cannot run this workload: {e}"
                                ))
                            }
                        }
                    }
                }
                let Some((bs, bref)) = b else { break };
                if let Some((r, rs)) = &bref {
                    reference = Some(r.clone());
                    pairs.push((bs.clone(), rs.clone()));
                }
                let cur = current
                    .entry(id.clone())
                    .or_insert_with(CurrentSamples::default);
                cur.samples.extend_from_slice(&bs);
                if let Some((r, rs)) = bref {
                    match &mut cur.reference {
                        Some((_, v)) => v.extend(rs),
                        None => cur.reference = Some((r, rs)),
                    }
                }
                if let Some((as_, _)) = a {
                    target.push(Round { a: as_, b: bs });
                }
            }
            if failed.is_some() {
                break;
            }
            if let Some(first) = &confirming {
                // The confirmation's own verdict decides: regressed twice is regressed; a pass
                // or an inconclusive second look leaves it inconclusive.
                let second = stats::judge(&confirm_rounds, threshold);
                let mut j = stats::judge(
                    &rounds
                        .iter()
                        .chain(confirm_rounds.iter())
                        .cloned()
                        .collect::<Vec<_>>(),
                    threshold,
                );
                j.verdict = if second.verdict == Verdict::Regressed {
                    Verdict::Regressed
                } else {
                    Verdict::Inconclusive
                };
                if j.verdict != Verdict::Regressed {
                    ab_notice = Some(format!(
                        "regressed at first ({:.3} in {:.3}..{:.3}), not confirmed by fresh rounds ({:.3} in {:.3}..{:.3})",
                        first.ratio, first.lo, first.hi, second.ratio, second.lo, second.hi
                    ));
                }
                ab = Some(j);
                break;
            }
            ab = (ab_notice.is_none() && !rounds.is_empty())
                .then(|| stats::judge(&rounds, threshold));
            stored = stored_check(base, &id, reference.as_deref(), &pairs);
            match ab.as_ref().map(|j| j.verdict) {
                Some(Verdict::Regressed) => confirming = ab.clone(),
                Some(Verdict::Pass) => break,
                Some(Verdict::Inconclusive) if attempts >= cfg.attempts => break,
                Some(Verdict::Inconclusive) => {}
                // No A/B: the stored check decides, re-measured while inconclusive.
                None => {
                    if stored.0.as_ref().map(|j| j.verdict) != Some(Verdict::Inconclusive)
                        || attempts >= cfg.attempts
                    {
                        break;
                    }
                }
            }
        }
        stored = stored_check(base, &id, reference.as_deref(), &pairs);
        if let Some(e) = failed {
            notices.push(format!("{id}: the current build failed: {e}"));
            lines.push(GateMetric {
                metric: id,
                kind: "timing".into(),
                placement: Some(cfg.placement),
                ab: None,
                ab_notice: Some(e),
                stored: None,
                stored_notice: None,
                attempts,
                verdict: Verdict::Inconclusive,
                counts: None,
            });
            continue;
        }
        if ab.is_none() {
            ab_notice.get_or_insert_with(|| "no A/B rounds".into());
        }
        let verdict = match (&ab, &stored.0) {
            (Some(j), _) => j.verdict,
            (None, Some(s)) => s.verdict,
            // Nothing to compare with: new metric without a baseline build.
            (None, None) => Verdict::Pass,
        };
        lines.push(GateMetric {
            metric: id,
            kind: "timing".into(),
            placement: Some(cfg.placement),
            ab,
            ab_notice,
            stored: stored.0,
            stored_notice: stored.1,
            attempts,
            verdict,
            counts: None,
        });
    }
    (lines, current, notices)
}

/// Runs the count part of the gate: each counted program under callgrind in the current build
/// and the baseline build (or against the stored counts).
pub fn gate_counts(
    base: Option<&Baseline>,
    cfg: &GateConfig,
    filter: &dyn Fn(&str) -> bool,
) -> (Vec<GateMetric>, BTreeMap<String, Count>, Vec<String>) {
    let mut lines = Vec::new();
    let mut measured = BTreeMap::new();
    let mut notices = Vec::new();
    if let Err(e) = counts::valgrind_version() {
        notices.push(format!(
            "{e}: the instruction counts are not checked (install Debian's valgrind)"
        ));
        return (lines, measured, notices);
    }
    for k in counts::KERNELS.iter().filter(|k| filter(k.id)) {
        let cur = match counts::callgrind(
            &cfg.current.bin,
            k.id,
            cfg.current.slowdown.as_deref(),
            &cfg.work,
        ) {
            Ok(c) => c,
            Err(e) => {
                notices.push(format!("{}: {e}", k.id));
                continue;
            }
        };
        let (against, ab_notice) = match &cfg.baseline {
            Ok(side) => match counts::callgrind(&side.bin, k.id, None, &cfg.work) {
                Ok(c) if c.iters == cur.iters => (Some(("A/B", c.instructions)), None),
                Ok(_) => (
                    None,
                    Some("the baseline build counts other iterations".into()),
                ),
                Err(e) => (None, Some(format!("the baseline build: {e}"))),
            },
            Err(e) => (None, Some(e.clone())),
        };
        let stored = base
            .and_then(|b| b.counts.get(k.id))
            .filter(|c| c.iters == cur.iters);
        let (ab, stored_j, verdict, counts) = match (against, stored) {
            (Some((_, a)), s) => {
                let j = stats::judge_counts(a, cur.instructions, COUNT_THRESHOLD);
                let sj = s.map(|s| {
                    stats::judge_counts(s.instructions, cur.instructions, COUNT_THRESHOLD)
                });
                let v = j.verdict;
                (Some(j), sj, v, Some((a, cur.instructions)))
            }
            (None, Some(s)) => {
                let j = stats::judge_counts(s.instructions, cur.instructions, COUNT_THRESHOLD);
                let v = j.verdict;
                (None, Some(j), v, Some((s.instructions, cur.instructions)))
            }
            (None, None) => (None, None, Verdict::Pass, None),
        };
        lines.push(GateMetric {
            metric: k.id.to_string(),
            kind: "count".into(),
            placement: None,
            ab,
            ab_notice,
            stored: stored_j,
            stored_notice: stored.is_none().then(|| "no stored count".to_string()),
            attempts: 1,
            verdict,
            counts,
        });
        measured.insert(k.id.to_string(), cur);
    }
    (lines, measured, notices)
}

/// The overall verdict: regressed if any metric regressed, else inconclusive if any was,
/// else pass.
pub fn overall(lines: &[GateMetric]) -> Verdict {
    if lines.iter().any(|l| l.verdict == Verdict::Regressed) {
        Verdict::Regressed
    } else if lines.iter().any(|l| l.verdict == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

/// The gate's table, for the terminal.
pub fn render(r: &GateReport) -> String {
    let mut s = format!(
        "gate: {} (baseline {}; timings placed {})\n{:<34} {:>8} {:>17} {:>7} {:>9} {:>9}  {:<12} {}\n",
        r.mode,
        r.baseline_rev
            .as_deref()
            .map(|x| &x[..12.min(x.len())])
            .unwrap_or("-"),
        r.placement,
        "metric",
        "A/B",
        "95% interval",
        "p",
        "stored",
        "threshold",
        "verdict",
        "notes"
    );
    let f = |x: f64| {
        if x.is_finite() {
            format!("{x:.3}")
        } else {
            "-".into()
        }
    };
    for l in &r.metrics {
        let (ab, ci, p, thr) = match &l.ab {
            Some(j) => (
                f(j.ratio),
                format!("{}..{}", f(j.lo), f(j.hi)),
                if l.kind == "count" {
                    "-".into()
                } else {
                    format!("{:.3}", j.p)
                },
                f(j.threshold),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let stored = l
            .stored
            .as_ref()
            .map(|j| {
                format!(
                    "{}{}",
                    f(j.ratio),
                    if j.verdict == Verdict::Regressed {
                        "!"
                    } else {
                        ""
                    }
                )
            })
            .unwrap_or_else(|| "-".into());
        let thr = if thr == "-" {
            l.stored.as_ref().map(|j| f(j.threshold)).unwrap_or(thr)
        } else {
            thr
        };
        let mut notes = Vec::new();
        if l.attempts > 1 {
            notes.push(format!("{} attempts", l.attempts));
        }
        if let Some((a, b)) = l.counts {
            notes.push(format!("{a} -> {b} instructions"));
        }
        if let Some(n) = &l.ab_notice {
            if r.mode.starts_with("A/B") {
                notes.push(n.clone());
            }
        }
        if let Some(j) = &l.stored {
            if l.ab.is_some() && j.verdict == Verdict::Regressed {
                notes.push("stored ratio drifted (A/B decides)".into());
            }
        }
        let v = match l.verdict {
            Verdict::Pass => "pass",
            Verdict::Regressed => "REGRESSED",
            Verdict::Inconclusive => "INCONCLUSIVE",
        };
        s.push_str(&format!(
            "{:<34} {:>8} {:>17} {:>7} {:>9} {:>9}  {:<12} {}\n",
            l.metric,
            ab,
            ci,
            p,
            stored,
            thr,
            v,
            notes.join("; ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_shaped_short_keeping_the_work() {
        // pipe_rtt: 9 us a pass, 300 passes a sample, 3 samples a batch.
        let s = shape(9e-6, 300, 3);
        assert_eq!(s.iters % 2, 0);
        assert!((50..=60).contains(&s.iters), "{s:?}");
        assert_eq!(s.samples, MAX_BATCH);
        // A pass longer than the target: one pass a sample, as many samples as passes.
        assert_eq!(
            shape(0.003, 2, 3),
            Shape {
                iters: 1,
                samples: 6
            }
        );
        // One pass a sample already: unchanged.
        assert_eq!(
            shape(1e-6, 1, 3),
            Shape {
                iters: 1,
                samples: 3
            }
        );
        // Unknown pass time: unchanged.
        assert_eq!(
            shape(f64::NAN, 100, 3),
            Shape {
                iters: 100,
                samples: 3
            }
        );
    }

    #[test]
    fn the_bench_executable_is_found_in_cargo_messages() {
        let msgs = r#"{"reason":"compiler-artifact","target":{"name":"mproc","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"mproc","kind":["bench"]},"executable":"/t/release/deps/mproc-abc"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(msgs),
            Some(PathBuf::from("/t/release/deps/mproc-abc"))
        );
        assert_eq!(executable_from_messages("{}\nnot json"), None);
    }
}
