//! Runs the suite: the raw limits, every workload under each of its methods and each CPU
//! placement (each next to its same-run reference), the cost curves, CPython, the procspawn
//! peers; writes `results.json` and `report.html`; and the gate (`--gate`: A/B against the
//! baseline build, the stored ratios, the instruction counts), `--save-baseline`,
//! `--calibrate`, `--gate-selftest`.
//!
//! Every measurement runs in a fresh process of a bench binary through the sampling
//! [`protocol`], under a placement applied before anything starts; this
//! process only drives them (it forks nothing itself but those processes).

use super::ab::{self, CurrentSamples, GateConfig, GateReport};
use super::counts;
use super::gate::{self, Baseline, Current};
use super::limits;
use super::measure::stats;
use super::placement::{self, Placement};
use super::probe::FnProbe;
use super::protocol::{self, run_sample, SampleRequest, Side, Subject};
use super::report;
use super::results::{
    check_curve_targets, check_targets, samples_in_unit, to_unit, unit_of, CurvePoint, CurveResult,
    Git, Machine, Metric, PeerInfo, Results, SCHEMA,
};
use super::stats::{median, Verdict};
use super::workload::{load_dir, Kind, Timing, Workload};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A comparison peer measured in the bench binary (procspawn is a dev-dependency, so its code
/// lives there).
pub struct PeerSpec {
    /// The metric id (`procspawn/spawn_join`).
    pub id: String,
    /// What it measures.
    pub title: String,
    /// The workload file stem whose chart shows it.
    pub workload: String,
    /// Latency or throughput.
    pub kind: Kind,
    /// Passes per sample.
    pub iters: u64,
    /// Makes the probe.
    pub make: Box<dyn Fn() -> FnProbe>,
}

impl std::fmt::Debug for PeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSpec").field("id", &self.id).finish()
    }
}

/// What to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The workspace root.
    pub root: PathBuf,
    /// The workload folder.
    pub cases: PathBuf,
    /// Where results go.
    pub out_dir: PathBuf,
    /// The baseline file.
    pub baseline: PathBuf,
    /// Fewer samples.
    pub quick: bool,
    /// Only metrics whose id contains one of these (all when empty).
    pub filter: Vec<String>,
    /// Run CPython (when python3 is present).
    pub cpython: bool,
    /// Run the procspawn peers.
    pub peers: bool,
    /// Run the cost curves.
    pub curves: bool,
    /// The gate: A/B against the baseline build, the stored ratios, the counts; exit 1 on a
    /// regression.
    pub gate: bool,
    /// The baseline build's bench binary (given by `cargo xtask bench --gate`).
    pub baseline_bin: Option<PathBuf>,
    /// Why there is no baseline build (given by `cargo xtask bench --gate`).
    pub baseline_unavailable: Option<String>,
    /// The baseline revision built.
    pub baseline_rev: Option<String>,
    /// Rewrite the baseline from this run.
    pub save_baseline: bool,
    /// Calibrate the stored ratios' thresholds from this many runs, and save the baseline.
    pub calibrate: Option<usize>,
    /// The gate self-test: this many gate runs with a CPU hog, and as many with the injected
    /// slowdown.
    pub selftest: Option<usize>,
    /// Metric ids with the injected 1.5× slowdown (the current side only). Also read from
    /// `MPROC_BENCH_SLOWDOWN` (comma-separated).
    pub slowdown: Vec<String>,
    /// Skip the raw limits measured on their own (the workloads still measure each metric's
    /// reference next to it).
    pub skip_limits: bool,
    /// The placements to measure (default: every one this machine offers).
    pub placements: Option<Vec<Placement>>,
    /// Write report.html.
    pub html: bool,
    /// The bench binary that measures (default: this one). Tests point it at `mproc-bench`.
    pub bench_bin: Option<PathBuf>,
}

impl Options {
    /// Defaults for the workspace at `root`.
    pub fn new(root: &Path) -> Options {
        Options {
            root: root.to_path_buf(),
            cases: root.join("cases/bench"),
            out_dir: root.join("target/xtask/bench"),
            baseline: root.join("reports/baseline.json"),
            quick: false,
            filter: Vec::new(),
            cpython: true,
            peers: true,
            curves: true,
            gate: false,
            baseline_bin: None,
            baseline_unavailable: None,
            baseline_rev: None,
            save_baseline: false,
            calibrate: None,
            selftest: None,
            slowdown: std::env::var(protocol::SLOWDOWN_ENV)
                .map(|s| {
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            skip_limits: false,
            placements: None,
            html: true,
            bench_bin: None,
        }
    }

    fn wanted(&self, id: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|f| id.contains(f.as_str()))
    }

    fn criterion_ms(&self) -> (u64, u64) {
        if self.quick {
            (200, 800)
        } else {
            (1000, 3000)
        }
    }

    /// The current side: this binary, with the injected slowdown if any.
    fn current(&self) -> Result<Side, String> {
        Ok(Side {
            label: "current".into(),
            bin: match &self.bench_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
            },
            slowdown: (!self.slowdown.is_empty()).then(|| self.slowdown.join(",")),
        })
    }

    fn placements(&self) -> Vec<Placement> {
        let offered = placement::offer().available;
        match &self.placements {
            Some(p) => p.iter().copied().filter(|p| offered.contains(p)).collect(),
            None => offered,
        }
    }
}

/// The command line of `cargo xtask bench` (and of the bench binary, which xtask runs with the
/// same arguments).
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(
    name = "cargo xtask bench",
    about = "Runs the benchmark workloads of cases/bench/ under fork, spawn and forkserver and \
             under two CPU placements (same-cpu: everything on one CPU; split: children on \
             another), the raw OS limits, the cost curves, CPython's multiprocessing and \
             procspawn, all in one run; writes target/xtask/bench/results.json and report.html.",
    after_help = "The bench binary also speaks a sampling protocol (`--protocol`, `sample ...`, \
                  `count ...`): see harness/src/bench/protocol.rs."
)]
pub struct Args {
    /// Fewer samples (the CI gate's mode).
    #[arg(long)]
    pub quick: bool,
    /// Only metrics whose id contains S (repeatable).
    #[arg(long, value_name = "S")]
    pub filter: Vec<String>,
    /// The regression gate: builds the baseline revision (the commit in reports/baseline.json)
    /// in target/gate/baseline, measures it and this tree interleaved on every gated workload
    /// (same-cpu), and compares instruction counts under callgrind; exit 1 on a significant
    /// regression, 0 with INCONCLUSIVE when the machine is too noisy to tell.
    #[arg(long)]
    pub gate: bool,
    /// The gate's baseline revision instead of the recorded one.
    #[arg(long, value_name = "REV")]
    pub against: Option<String>,
    /// Rewrite reports/baseline.json from this run: this commit becomes the A/B baseline, with
    /// its ratios and counts (thresholds kept).
    #[arg(long)]
    pub save_baseline: bool,
    /// Run N times (default 5) on an unchanged tree, set each stored ratio's threshold from the
    /// spread seen, and save the baseline.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "5",
          value_parser = clap::value_parser!(u64).range(2..))]
    pub calibrate: Option<u64>,
    /// Run the gate N times (default 10) with a CPU hog on the gate's CPU and N times with a
    /// 1.5x slowdown injected (not part of CI).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub gate_selftest: Option<u64>,
    /// Inject the synthetic 1.5x slowdown into metric ID (a workload metric or count/...); also
    /// MPROC_BENCH_SLOWDOWN=ID1,ID2. Only the current side gets it.
    #[arg(long, value_name = "ID")]
    pub slowdown: Vec<String>,
    /// Measure only placement P (same-cpu, split); repeatable.
    #[arg(long, value_name = "P", value_parser = Placement::parse)]
    pub placement: Vec<Placement>,
    /// Skip CPython.
    #[arg(long)]
    pub no_cpython: bool,
    /// Skip procspawn.
    #[arg(long)]
    pub no_peers: bool,
    /// Skip the cost curves.
    #[arg(long)]
    pub no_curves: bool,
    /// Skip the raw limits measured on their own.
    #[arg(long)]
    pub no_limits: bool,
    /// Skip report.html.
    #[arg(long)]
    pub no_html: bool,
    /// Workload folder (default cases/bench).
    #[arg(long, value_name = "DIR")]
    pub cases: Option<PathBuf>,
    /// Baseline file (default reports/baseline.json).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Output folder (default target/xtask/bench).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The baseline build's bench binary (given by `cargo xtask bench --gate`).
    #[arg(long, hide = true)]
    pub baseline_bin: Option<PathBuf>,
    /// Why there is no baseline build (given by `cargo xtask bench --gate`).
    #[arg(long, hide = true)]
    pub baseline_unavailable: Option<String>,
    /// The baseline revision built (given by `cargo xtask bench --gate`).
    #[arg(long, hide = true)]
    pub baseline_rev: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Args {
    /// The options these arguments ask for, in the workspace at `root`.
    pub fn options(&self, root: &Path) -> Options {
        let mut o = Options::new(root);
        o.quick = self.quick;
        o.gate = self.gate;
        o.save_baseline = self.save_baseline;
        o.calibrate = self.calibrate.map(|n| n as usize);
        o.selftest = self.gate_selftest.map(|n| n as usize);
        o.cpython = !self.no_cpython;
        o.peers = !self.no_peers;
        o.curves = !self.no_curves;
        o.skip_limits = self.no_limits;
        o.html = !self.no_html;
        o.filter.extend(self.filter.iter().cloned());
        o.slowdown.extend(self.slowdown.iter().cloned());
        if !self.placement.is_empty() {
            o.placements = Some(self.placement.clone());
        }
        if let Some(c) = &self.cases {
            o.cases = root.join(c);
        }
        if let Some(b) = &self.baseline {
            o.baseline = root.join(b);
        }
        if let Some(d) = &self.out {
            o.out_dir = root.join(d);
        }
        o.baseline_bin = self.baseline_bin.clone();
        o.baseline_unavailable = self.baseline_unavailable.clone();
        // `--against` is read by xtask (which builds the baseline); the bench gets
        // `--baseline-bin` and `--baseline-rev`.
        o.baseline_rev = self.baseline_rev.clone().or_else(|| self.against.clone());
        o
    }
}

fn progress(total: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("bench [{bar:30}] {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

/// The same-run reference of `w` under `method`: its limit, else its Rust reference.
pub fn reference_of(w: &Workload, method: mproc::StartMethod) -> Option<String> {
    w.bench
        .limit
        .as_ref()
        .and_then(|l| l.for_method(method))
        .or_else(|| {
            w.bench
                .reference
                .as_ref()
                .and_then(|r| r.for_method(method))
        })
}

fn limit_samples(o: &Options) -> usize {
    if o.quick {
        10
    } else {
        20
    }
}

/// Measured samples of one workload metric under one placement.
#[derive(Clone, Debug, Default)]
struct Raw {
    /// The samples of the value (criterion's for criterion workloads, else the paired ones).
    costs: Vec<f64>,
    /// The samples taken in alternation with the reference.
    paired: Vec<f64>,
    /// The reference and its samples.
    reference: Option<(String, Vec<f64>)>,
}

fn workload_samples(w: &Workload, o: &Options) -> usize {
    if o.quick {
        w.bench.quick_samples
    } else {
        w.bench.samples
    }
}

fn sample_workload(
    side: &Side,
    w: &Workload,
    method: mproc::StartMethod,
    placement: Placement,
    o: &Options,
) -> Result<Raw, String> {
    let criterion = (w.bench.timing == Timing::Criterion).then(|| o.criterion_ms());
    let r = run_sample(
        side,
        &SampleRequest {
            subject: Subject::Workload {
                file: w.path.clone(),
                method: method.as_str().into(),
                params: BTreeMap::new(),
            },
            placement,
            samples: workload_samples(w, o),
            reference: true,
            criterion,
            iters: None,
        },
    )?;
    let costs = if r.criterion_samples_s.is_empty() {
        r.samples_s.clone()
    } else {
        r.criterion_samples_s
    };
    Ok(Raw {
        costs,
        paired: r.samples_s,
        reference: r.reference.map(|id| (id, r.reference_samples_s)),
    })
}

fn metric_from(
    w: &Workload,
    method: mproc::StartMethod,
    raw: &Raw,
    placement: Placement,
) -> Metric {
    let bpo = w.bytes_per_op();
    let kind = w.bench.kind;
    let cost = stats(&raw.costs).median;
    let limit = w.bench.limit.as_ref().and_then(|l| l.for_method(method));
    let (reference, reference_cost_s) = match &raw.reference {
        Some((r, c)) => (Some(r.clone()), Some(median(c))),
        None => (None, None),
    };
    // Both ratios are of samples taken in alternation (so both saw the same load): vs_limit of
    // the medians; vs_reference, the ratio the gate stores, of the lower deciles (the two costs
    // react differently to load; the fastest tenth of each is the least disturbed).
    let vs_reference = raw.reference.as_ref().map(|(_, c)| {
        super::stats::Stat::LowDecile.of(&raw.paired) / super::stats::Stat::LowDecile.of(c)
    });
    let (limit_cost_s, vs_limit) = match (&limit, &reference) {
        (Some(l), Some(r)) if l == r => (
            reference_cost_s,
            reference_cost_s.map(|rc| median(&raw.paired) / rc),
        ),
        _ => (None, None),
    };
    Metric {
        title: w.title.clone(),
        workload: w.name.clone(),
        method: w
            .bench
            .metric
            .contains("{method}")
            .then(|| method.as_str().to_string()),
        kind,
        unit: unit_of(kind, bpo).to_string(),
        value: to_unit(kind, bpo, cost),
        samples: samples_in_unit(kind, bpo, &raw.costs),
        cost_s: cost,
        limit,
        limit_cost_s,
        vs_limit,
        reference,
        reference_cost_s,
        vs_reference,
        cpython_cost_s: None,
        cpython_samples: None,
        vs_cpython: None,
        placement: Some(placement.as_str().into()),
    }
}

fn simple_metric(
    title: &str,
    workload: &str,
    kind: Kind,
    bpo: Option<u64>,
    costs: &[f64],
    placement: Placement,
) -> Metric {
    let cost = stats(costs).median;
    Metric {
        title: title.to_string(),
        workload: workload.to_string(),
        method: None,
        kind,
        unit: unit_of(kind, bpo).to_string(),
        value: to_unit(kind, bpo, cost),
        samples: samples_in_unit(kind, bpo, costs),
        cost_s: cost,
        limit: None,
        limit_cost_s: None,
        vs_limit: None,
        reference: None,
        reference_cost_s: None,
        vs_reference: None,
        cpython_cost_s: None,
        cpython_samples: None,
        vs_cpython: None,
        placement: Some(placement.as_str().into()),
    }
}

/// The workloads and their metric ids to run (curves apart).
fn plan(o: &Options) -> (Vec<(Workload, mproc::StartMethod)>, Vec<String>) {
    let (ws, bad) = load_dir(&o.cases);
    let mut notices: Vec<String> = bad
        .iter()
        .map(|e| format!("skipped workload: {e}"))
        .collect();
    let mut out = Vec::new();
    for w in ws {
        for &m in &w.methods {
            if o.wanted(&w.metric_id(m)) {
                // Compile once now so that a broken file is reported before any measuring.
                match super::kernel::Kernel::compile(&w, m, false) {
                    Ok(_) => out.push((w.clone(), m)),
                    Err(e) => notices.push(format!("skipped {}: {e}", w.metric_id(m))),
                }
            }
        }
    }
    (out, notices)
}

fn currents(metrics: &BTreeMap<String, Metric>) -> BTreeMap<String, Current> {
    metrics
        .iter()
        .filter_map(|(id, m)| {
            Some((
                id.clone(),
                Current {
                    reference: m.reference.clone()?,
                    ratio: m.vs_reference?,
                },
            ))
        })
        .collect()
}

/// CPython's samples per metric id under `placement` (cost per operation, seconds), its version, or a notice.
fn run_cpython(o: &Options, placement: Placement) -> (BTreeMap<String, Vec<f64>>, PeerInfo) {
    let script = o.root.join("harness/py/bench_reference.py");
    let python = std::env::var("MPROC_PYTHON").unwrap_or_else(|_| "python3".into());
    let version = std::process::Command::new(&python)
        .arg("--version")
        .output();
    let Ok(version) = version.map(|v| String::from_utf8_lossy(&v.stdout).trim().to_string()) else {
        let notice = format!("{python} not found: the CPython column is skipped");
        eprintln!("bench: {notice}");
        return (
            BTreeMap::new(),
            PeerInfo {
                available: false,
                version: None,
                notice: Some(notice),
            },
        );
    };
    let out_file = o.out_dir.join(format!("cpython-{placement}.json"));
    // On a fresh clone nothing has made the output directory yet.
    if let Err(e) = std::fs::create_dir_all(&o.out_dir) {
        eprintln!("bench: cannot create {}: {e}", o.out_dir.display());
    }
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script)
        .arg("--cases")
        .arg(&o.cases)
        .arg("--out")
        .arg(&out_file)
        .arg("--placement")
        .arg(placement.as_str());
    if placement != placement::gate_placement() {
        // The curves and the memory readings are taken under the gate's placement only.
        cmd.arg("--no-curves").arg("--no-memory");
    }
    if !o.curves {
        cmd.arg("--no-curves");
    }
    if o.quick {
        cmd.arg("--quick");
    }
    for f in &o.filter {
        cmd.arg("--filter").arg(f);
    }
    cmd.stdin(std::process::Stdio::null());
    let fail = |notice: String| {
        eprintln!("bench: {notice}");
        (
            BTreeMap::new(),
            PeerInfo {
                available: false,
                version: Some(version.clone()),
                notice: Some(notice),
            },
        )
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {python}: {e}")),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return fail("the CPython reference did not finish in 15 minutes".into());
            }
        }
    };
    if !status.success() {
        return fail(format!("the CPython reference failed ({status})"));
    }
    let parsed: Result<serde_json::Value, String> = std::fs::read_to_string(&out_file)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()));
    let v = match parsed {
        Ok(v) => v,
        Err(e) => return fail(format!("cannot read {}: {e}", out_file.display())),
    };
    let mut out = BTreeMap::new();
    if let Some(ms) = v.get("metrics").and_then(|m| m.as_object()) {
        for (id, m) in ms {
            if let Some(s) = m.get("samples_s").and_then(|s| s.as_array()) {
                out.insert(id.clone(), s.iter().filter_map(|x| x.as_f64()).collect());
            }
        }
    }
    let mut notice = None;
    if let Some(errs) = v.get("errors").and_then(|m| m.as_object()) {
        if !errs.is_empty() {
            notice = Some(format!(
                "CPython failed on: {}",
                errs.iter()
                    .map(|(k, e)| format!("{k} ({e})"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    let version = v
        .get("version")
        .and_then(|s| s.as_str())
        .map(String::from)
        .or(Some(version));
    (
        out,
        PeerInfo {
            available: true,
            version,
            notice,
        },
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs everything `o` asks for. Returns the process exit code: 0 (also for an inconclusive
/// gate), 1 (a regression), 2 (bad input or a failed run).
pub fn run(o: &Options, peers: &[PeerSpec]) -> i32 {
    let t0 = std::time::Instant::now();
    let code = if let Some(n) = o.selftest {
        super::selftest::selftest(o, n)
    } else {
        run_inner(o, peers).0
    };
    eprintln!("bench: took {:.0} s", t0.elapsed().as_secs_f64());
    code
}

/// The gate's configuration for `o`.
pub fn gate_config(o: &Options) -> Result<GateConfig, String> {
    let baseline = match (&o.baseline_bin, &o.baseline_unavailable) {
        (Some(bin), _) => protocol::speaks_protocol(bin)
            .map(|()| Side {
                label: "baseline".into(),
                bin: bin.clone(),
                slowdown: None,
            })
            .map_err(|e| format!("the baseline build predates the sampling protocol: {e}")),
        (None, Some(why)) => Err(why.clone()),
        (None, None) => Err(
            "no baseline build was given (run the gate through `cargo xtask bench --gate`)".into(),
        ),
    };
    Ok(GateConfig {
        baseline,
        baseline_rev: o.baseline_rev.clone(),
        current: o.current()?,
        placement: placement::gate_placement(),
        rounds: if o.quick { 5 } else { 8 },
        batch: if o.quick { 3 } else { 5 },
        attempts: 3,
        work: o.out_dir.join("callgrind"),
    })
}

/// What a gate run yields: its report, the current side's samples per metric, the counts.
pub type GateRun = (
    GateReport,
    BTreeMap<String, CurrentSamples>,
    BTreeMap<String, counts::Count>,
);

/// Runs the gate alone (timings and counts) on `plan`; prints its table and returns the report
/// and the current side's samples.
pub fn run_gate(
    o: &Options,
    plan: &[(Workload, mproc::StartMethod)],
    pb: Option<&ProgressBar>,
) -> Result<GateRun, String> {
    let cfg = gate_config(o)?;
    let base = load_baseline(&o.baseline).ok();
    let mode = match &cfg.baseline {
        Ok(_) => "A/B against the baseline build".to_string(),
        Err(why) => format!("NO A/B: {why}; falling back to the stored same-run ratios and counts"),
    };
    if cfg.baseline.is_err() {
        eprintln!("bench: gate: {}", "=".repeat(70));
        eprintln!("bench: gate: {mode}");
        eprintln!("bench: gate: {}", "=".repeat(70));
    }
    let say = |id: &str| {
        if let Some(pb) = pb {
            pb.set_message(format!("gate {id}"));
        }
    };
    let (mut lines, current, mut notices) = ab::gate_timings(plan, base.as_ref(), &cfg, &say);
    let (clines, measured, cnotices) = ab::gate_counts(base.as_ref(), &cfg, &|id| o.wanted(id));
    lines.extend(clines);
    notices.extend(cnotices);
    let report = GateReport {
        baseline_rev: cfg.baseline_rev.clone(),
        mode,
        placement: cfg.placement,
        verdict: ab::overall(&lines),
        metrics: lines,
        notices,
    };
    Ok((report, current, measured))
}

fn print_gate(report: &GateReport) {
    let show = || {
        print!("{}", ab::render(report));
        for n in &report.notices {
            println!("gate: notice: {n}");
        }
        let count = |v: Verdict| report.metrics.iter().filter(|l| l.verdict == v).count();
        match report.verdict {
            Verdict::Pass => println!("gate: {} passed, 0 failed", count(Verdict::Pass)),
            Verdict::Regressed => {
                let ids: Vec<&str> = report
                    .metrics
                    .iter()
                    .filter(|l| l.verdict == Verdict::Regressed)
                    .map(|l| l.metric.as_str())
                    .collect();
                println!(
                    "gate: {} passed, {} failed",
                    count(Verdict::Pass),
                    ids.len()
                );
                eprintln!("bench: gate: REGRESSION in {}", ids.join(", "));
            }
            Verdict::Inconclusive => {
                let ids: Vec<&str> = report
                    .metrics
                    .iter()
                    .filter(|l| l.verdict == Verdict::Inconclusive)
                    .map(|l| l.metric.as_str())
                    .collect();
                println!("gate: {}", "!".repeat(70));
                println!(
                    "gate: INCONCLUSIVE: the machine was too noisy to tell for {} (measured {} times each); not a failure, but not a pass either: re-run the gate on a quieter machine",
                    ids.join(", "),
                    3
                );
                println!("gate: {}", "!".repeat(70));
                println!(
                    "gate: {} passed, 0 failed, {} inconclusive",
                    count(Verdict::Pass),
                    ids.len()
                );
            }
        }
    };
    show();
}

fn run_inner(o: &Options, peers: &[PeerSpec]) -> (i32, Option<GateReport>) {
    let (plan, mut notices) = plan(o);
    for n in &notices {
        eprintln!("bench: {n}");
    }
    let (plan, curve_plan): (Vec<_>, Vec<_>) =
        plan.into_iter().partition(|(w, _)| w.bench.curve.is_none());
    if plan.is_empty() && curve_plan.is_empty() {
        eprintln!("bench: no workload to run in {}", o.cases.display());
        return (2, None);
    }
    if let Some(runs) = o.calibrate {
        return (calibrate(o, &plan, runs), None);
    }
    let current = match o.current() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: {e}");
            return (2, None);
        }
    };
    let offer = placement::offer();
    if let Some(n) = &offer.notice {
        eprintln!("bench: placement: {n}");
        notices.push(format!("placement: {n}"));
    }
    let placements = o.placements();
    let primary = placement::gate_placement();
    let limit_ids: Vec<&str> = if o.skip_limits {
        Vec::new()
    } else {
        limits::LIMITS
            .iter()
            .filter(|l| !limits::CURVE_ONLY.contains(&l.id))
            .map(|l| l.id)
            .collect()
    };
    let peer_list: Vec<&PeerSpec> = if o.peers {
        peers
            .iter()
            .filter(|p| o.wanted(&p.id) || o.filter.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let curve_points: usize = if o.curves {
        curve_plan
            .iter()
            .map(|(w, _)| w.bench.curve.as_ref().map_or(0, |c| c.points.len()))
            .sum()
    } else {
        0
    };
    let pb = progress(
        ((limit_ids.len() + plan.len()) * placements.len()
            + curve_points
            + peer_list.len()
            + usize::from(o.gate)
            + usize::from(o.cpython) * placements.len()) as u64,
    );

    // 1. The gate first (A/B, stored ratios, counts): its current-side samples are this run's
    //    figures for the gate's placement.
    let mut code = 0;
    let mut gate_report = None;
    let mut gate_current = BTreeMap::new();
    let mut counts_measured = BTreeMap::new();
    if o.gate {
        match run_gate(o, &plan, Some(&pb)) {
            Ok((r, cur, cm)) => {
                pb.suspend(|| print_gate(&r));
                if r.verdict == Verdict::Regressed {
                    code = 1;
                }
                gate_current = cur;
                counts_measured = cm;
                gate_report = Some(r);
            }
            Err(e) => {
                eprintln!("bench: gate: {e}");
                return (2, None);
            }
        }
        pb.inc(1);
    }

    // 2. The raw limits on their own, under each placement.
    let mut limit_metrics: BTreeMap<Placement, BTreeMap<String, Metric>> = BTreeMap::new();
    for &pl in &placements {
        for id in &limit_ids {
            pb.set_message(format!("limit/{id} ({pl})"));
            let spec = limits::spec(id).expect("listed");
            let r = run_sample(
                &current,
                &SampleRequest {
                    subject: Subject::Limit {
                        id: id.to_string(),
                        params: BTreeMap::new(),
                    },
                    placement: pl,
                    samples: limit_samples(o),
                    reference: false,
                    criterion: None,
                    iters: None,
                },
            );
            match r {
                Ok(r) => {
                    limit_metrics.entry(pl).or_default().insert(
                        id.to_string(),
                        simple_metric(
                            spec.title,
                            "limit",
                            spec.kind,
                            spec.bytes_per_op,
                            &r.samples_s,
                            pl,
                        ),
                    );
                }
                Err(e) => notices.push(format!("limit {id} ({pl}) failed: {e}")),
            }
            pb.inc(1);
        }
    }

    // 3. Our workloads under each placement (the gate's placement reuses the gate's samples).
    let mut metrics: BTreeMap<Placement, BTreeMap<String, Metric>> = BTreeMap::new();
    for &pl in &placements {
        for (w, m) in &plan {
            let id = w.metric_id(*m);
            pb.set_message(format!("{id} ({pl})"));
            let reused = (pl == primary && w.bench.timing == Timing::Process)
                .then(|| gate_current.get(&id))
                .flatten()
                .filter(|c| !c.samples.is_empty());
            let raw = match reused {
                Some(c) => Ok(Raw {
                    costs: c.samples.clone(),
                    paired: c.samples.clone(),
                    reference: c.reference.clone(),
                }),
                None => sample_workload(&current, w, *m, pl, o),
            };
            match raw {
                Ok(raw) => {
                    metrics
                        .entry(pl)
                        .or_default()
                        .insert(id, metric_from(w, *m, &raw, pl));
                }
                Err(e) => notices.push(format!("{id} ({pl}) failed: {e}")),
            }
            pb.inc(1);
        }
    }

    // 4. The cost curves (the gate's placement), each point next to its limit at that point.
    let mut curves = BTreeMap::new();
    if o.curves {
        for (w, m) in &curve_plan {
            match run_curve(&current, w, *m, primary, o, &pb) {
                Ok(c) => {
                    curves.insert(w.metric_id(*m), c);
                }
                Err(e) => notices.push(format!("curve {} failed: {e}", w.metric_id(*m))),
            }
        }
    }

    // 5. procspawn (the gate's placement).
    let mut peer_metrics = BTreeMap::new();
    let mut procspawn = PeerInfo {
        available: !peer_list.is_empty(),
        version: Some("procspawn 1".into()),
        notice: (!o.peers).then(|| "skipped (--no-peers)".to_string()),
    };
    for p in &peer_list {
        pb.set_message(p.id.clone());
        let r = run_sample(
            &current,
            &SampleRequest {
                subject: Subject::Peer(p.id.clone()),
                placement: primary,
                samples: if o.quick { 10 } else { 20 },
                reference: false,
                criterion: None,
                iters: None,
            },
        );
        match r {
            Ok(r) => {
                peer_metrics.insert(
                    p.id.clone(),
                    simple_metric(&p.title, &p.workload, p.kind, None, &r.samples_s, primary),
                );
            }
            Err(e) => {
                notices.push(format!("{} failed: {e}", p.id));
                procspawn.notice = Some(format!("{} failed: {e}", p.id));
            }
        }
        pb.inc(1);
    }

    // 6. Resident memory per child and per pool worker (the gate's placement).
    let mut memory = BTreeMap::new();
    if o.wanted("rss/") || o.filter.is_empty() {
        let mut jobs: Vec<(String, String)> = vec![("raw_fork".into(), "fork".into())];
        for m in ["fork", "spawn", "forkserver"] {
            for s in super::memory::SUBJECTS {
                jobs.push((s.to_string(), m.to_string()));
            }
        }
        for (subject, method) in jobs {
            pb.set_message(format!("memory {subject} {method}"));
            let r = run_sample(
                &current,
                &SampleRequest {
                    subject: Subject::Memory {
                        subject: subject.clone(),
                        method: method.clone(),
                    },
                    placement: primary,
                    samples: 3,
                    reference: false,
                    criterion: None,
                    iters: None,
                },
            );
            match r {
                Ok(r) if !r.memory.is_empty() => {
                    let rss: Vec<f64> = r.memory.iter().map(|x| x.rss as f64).collect();
                    let private: Vec<f64> = r.memory.iter().map(|x| x.private as f64).collect();
                    let id = if subject == "raw_fork" {
                        "rss/raw_fork".to_string()
                    } else {
                        r.id.clone()
                    };
                    memory.insert(
                        id,
                        super::results::MemoryFigure {
                            rss_bytes: median(&rss),
                            private_bytes: median(&private),
                            n: rss.len(),
                            cpython_rss_bytes: None,
                            cpython_private_bytes: None,
                        },
                    );
                }
                Ok(_) => notices.push(format!("memory {subject} {method}: no reading")),
                Err(e) => notices.push(format!("memory {subject} {method} failed: {e}")),
            }
        }
    }

    // 7. CPython, under each placement.
    let mut cpython = PeerInfo {
        available: false,
        version: None,
        notice: Some("skipped (--no-cpython)".into()),
    };
    if o.cpython {
        for &pl in &placements {
            pb.set_message(format!("CPython ({pl})"));
            let (cp, info) = run_cpython(o, pl);
            let ms = metrics.entry(pl).or_default();
            for (id, m) in ms.iter_mut() {
                if let Some(samples) = cp.get(id).filter(|s| !s.is_empty()) {
                    add_cpython(m, samples, &o.cases);
                }
            }
            if pl == primary {
                for (id, f) in memory.iter_mut() {
                    if let Some(s) = cp.get(id).filter(|s| s.len() >= 2) {
                        // CPython's memory readings come as [rss, private, rss, private, ...].
                        let rss: Vec<f64> = s.iter().step_by(2).copied().collect();
                        let private: Vec<f64> = s.iter().skip(1).step_by(2).copied().collect();
                        f.cpython_rss_bytes = Some(median(&rss));
                        f.cpython_private_bytes = Some(median(&private));
                    }
                }
                for (id, c) in curves.iter_mut() {
                    for p in c.points.iter_mut() {
                        if let Some(s) = cp.get(&format!("{id}@{}", p.x)).filter(|s| !s.is_empty())
                        {
                            p.cpython_cost_s = Some(median(s));
                        }
                    }
                }
            }
            pb.inc(1);
            if let Some(n) = &info.notice {
                notices.push(format!("{n} ({pl})"));
            }
            if info.available || !cpython.available {
                cpython = info;
            }
        }
    }
    pb.finish_and_clear();

    let mut results = Results {
        schema: SCHEMA.into(),
        created_unix: now_unix(),
        quick: o.quick,
        machine: Machine::here(),
        git: Git::of(&o.root),
        cpython,
        procspawn,
        limits: limit_metrics.remove(&primary).unwrap_or_default(),
        metrics: metrics.remove(&primary).unwrap_or_default(),
        peers: peer_metrics,
        targets: Vec::new(),
        notices,
        placement: Some(offer),
        limits_split: limit_metrics.remove(&Placement::Split).unwrap_or_default(),
        split: metrics.remove(&Placement::Split).unwrap_or_default(),
        curves,
        counts: counts_measured,
        gate: gate_report.clone(),
        memory,
    };
    results.targets = check_targets(&results.metrics);
    results
        .targets
        .extend(check_curve_targets(&results.curves, &results.limits));
    print_summary(&results);
    if let Some(g) = &gate_report {
        // The verdict last, where it is seen.
        print_gate(g);
    }
    let json = serde_json::to_string_pretty(&results).expect("serialisable");
    let json_path = o.out_dir.join("results.json");
    if let Err(e) = write(&json_path, &json) {
        eprintln!("bench: {e}");
        return (2, gate_report);
    }
    println!("bench: wrote {}", json_path.display());
    if o.html {
        let html_path = o.out_dir.join("report.html");
        if let Err(e) = write(&html_path, &report::render(&results)) {
            eprintln!("bench: {e}");
            return (2, gate_report);
        }
        println!("bench: wrote {}", html_path.display());
    }
    if o.save_baseline {
        if let Err(e) = save_from(o, &results) {
            eprintln!("bench: {e}");
            return (2, gate_report);
        }
    }
    if code == 0 && results.metrics.len() < plan.len() && !plan.is_empty() {
        // A workload failed to run: that is a broken benchmark, not a regression.
        code = 2;
    }
    (code, gate_report)
}

fn add_cpython(m: &mut Metric, samples: &[f64], cases: &Path) {
    let c = median(samples);
    let bpo = Workload::load(&cases.join(format!("{}.toml", m.workload)))
        .ok()
        .and_then(|w| w.bytes_per_op());
    m.cpython_cost_s = Some(c);
    m.cpython_samples = Some(samples_in_unit(m.kind, bpo, samples));
    m.vs_cpython = Some(c / m.cost_s);
}

fn run_curve(
    side: &Side,
    w: &Workload,
    method: mproc::StartMethod,
    pl: Placement,
    o: &Options,
    pb: &ProgressBar,
) -> Result<CurveResult, String> {
    let curve = w.bench.curve.as_ref().expect("a curve workload");
    let limit = reference_of(w, method);
    let samples = if o.quick {
        curve.quick_samples.unwrap_or(3)
    } else {
        w.bench.samples.min(10)
    };
    let mut points = Vec::new();
    for p in &curve.points {
        let x = p[&curve.x];
        pb.set_message(format!("{} {}={x}", w.metric_id(method), curve.x));
        let r = run_sample(
            side,
            &SampleRequest {
                subject: Subject::Workload {
                    file: w.path.clone(),
                    method: method.as_str().into(),
                    params: p.clone(),
                },
                placement: pl,
                samples,
                reference: false,
                criterion: None,
                iters: None,
            },
        )?;
        let limit_cost_s = match &limit {
            Some(l) => Some(median(
                &run_sample(
                    side,
                    &SampleRequest {
                        subject: Subject::Limit {
                            id: l.clone(),
                            params: p.clone(),
                        },
                        placement: pl,
                        samples,
                        reference: false,
                        criterion: None,
                        iters: None,
                    },
                )?
                .samples_s,
            )),
            None => None,
        };
        let cost = median(&r.samples_s);
        points.push(CurvePoint {
            x,
            cost_s: cost,
            samples: samples_in_unit(Kind::Latency, None, &r.samples_s),
            limit_cost_s,
            cpython_cost_s: None,
        });
        pb.inc(1);
    }
    Ok(CurveResult {
        title: w.title.clone(),
        workload: w.name.clone(),
        method: w
            .bench
            .metric
            .contains("{method}")
            .then(|| method.as_str().to_string()),
        x: curve.x.clone(),
        kind: w.bench.kind,
        limit,
        placement: pl.as_str().into(),
        points,
    })
}

fn save_from(o: &Options, results: &Results) -> Result<(), String> {
    let previous = load_baseline(&o.baseline).ok();
    let counts_now = if results.counts.is_empty() {
        count_current(o)
    } else {
        results.counts.clone()
    };
    let b = Baseline {
        schema: gate::BASELINE_SCHEMA.into(),
        note: "saved by `cargo xtask bench --save-baseline`: this commit is the A/B baseline; ratios (same-cpu, medians of paired samples) and counts from this run, thresholds kept from the previous baseline".into(),
        created_unix: now_unix(),
        quick: o.quick,
        machine: results.machine.clone(),
        git: results.git.clone(),
        metrics: gate::rebase(&currents(&results.metrics), previous.as_ref()),
        placement: Some(placement::gate_placement().as_str().into()),
        counts: counts_now,
    };
    if b.git.dirty {
        eprintln!(
            "bench: warning: the work tree has uncommitted changes; the baseline records {} all the same",
            b.git.rev
        );
    }
    save_baseline(&o.baseline, &b)?;
    println!("bench: wrote {}", o.baseline.display());
    Ok(())
}

fn count_current(o: &Options) -> BTreeMap<String, counts::Count> {
    let mut out = BTreeMap::new();
    let Ok(side) = o.current() else {
        return out;
    };
    if let Err(e) = counts::valgrind_version() {
        eprintln!("bench: {e}: no counts recorded");
        return out;
    }
    for k in counts::KERNELS {
        match counts::callgrind(&side.bin, k.id, None, &o.out_dir.join("callgrind")) {
            Ok(c) => {
                out.insert(k.id.to_string(), c);
            }
            Err(e) => eprintln!("bench: {e}"),
        }
    }
    out
}

/// Reads a baseline (either schema).
pub fn load_baseline(path: &Path) -> Result<Baseline, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let b: Baseline = serde_json::from_str(&s).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.schema != gate::BASELINE_SCHEMA && b.schema != gate::BASELINE_SCHEMA_V1 {
        return Err(format!(
            "{}: schema is not {}",
            path.display(),
            gate::BASELINE_SCHEMA
        ));
    }
    Ok(b)
}

/// Writes a baseline.
pub fn save_baseline(path: &Path, b: &Baseline) -> Result<(), String> {
    write(
        path,
        &(serde_json::to_string_pretty(b).expect("serialisable") + "\n"),
    )
}

fn calibrate(o: &Options, plan: &[(Workload, mproc::StartMethod)], runs: usize) -> i32 {
    let Ok(current) = o.current() else {
        return 2;
    };
    let pl = placement::gate_placement();
    let pb = progress((plan.len() * runs) as u64);
    let mut all = Vec::new();
    for r in 0..runs {
        pb.println(format!("bench: calibration run {}/{runs}", r + 1));
        let mut metrics = BTreeMap::new();
        for (w, m) in plan.iter().filter(|(w, _)| w.gated()) {
            let id = w.metric_id(*m);
            pb.set_message(id.clone());
            match sample_workload(&current, w, *m, pl, o) {
                Ok(raw) => {
                    metrics.insert(id, metric_from(w, *m, &raw, pl));
                }
                Err(e) => {
                    pb.finish_and_clear();
                    eprintln!("bench: {id} failed: {e}");
                    return 2;
                }
            }
            pb.inc(1);
        }
        all.push(currents(&metrics));
    }
    pb.finish_and_clear();
    let metrics = gate::calibrate(&all);
    for (id, m) in &metrics {
        let c = m.calibration.as_ref().expect("calibrated");
        println!(
            "{id:<36} ratio {:>10.3}  seen {:.3}..{:.3}  threshold {:.2}{}",
            m.ratio,
            c.min,
            c.max,
            m.threshold,
            if c.noisy {
                "  (noisy: capped, a 2x slowdown may pass)"
            } else {
                ""
            }
        );
    }
    let b = Baseline {
        schema: gate::BASELINE_SCHEMA.into(),
        note: format!(
            "calibrated by `cargo xtask bench{} --calibrate {runs}` ({pl}): ratio = median of the runs, threshold = widest deviation x {} clamped to {}..{}; this commit is the A/B baseline",
            if o.quick { " --quick" } else { "" },
            gate::MARGIN,
            gate::MIN_THRESHOLD,
            gate::MAX_THRESHOLD
        ),
        created_unix: now_unix(),
        quick: o.quick,
        machine: Machine::here(),
        git: Git::of(&o.root),
        metrics,
        placement: Some(pl.as_str().into()),
        counts: count_current(o),
    };
    if let Err(e) = save_baseline(&o.baseline, &b) {
        eprintln!("bench: {e}");
        return 2;
    }
    println!("bench: wrote {}", o.baseline.display());
    0
}

fn human(kind: Kind, unit: &str, v: f64) -> String {
    match (kind, unit) {
        (Kind::Latency, _) => {
            if v >= 1e-3 {
                format!("{:.2} ms", v * 1e3)
            } else {
                format!("{:.2} µs", v * 1e6)
            }
        }
        (_, "B/s") => format!("{:.2} GB/s", v / 1e9),
        _ => format!("{:.3} M/s", v / 1e6),
    }
}

fn print_summary(r: &Results) {
    let f = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    println!(
        "{:<34} {:>9} {:>14} {:>9} {:>10}",
        "metric", "placement", "value", "vs_limit", "vs_cpython"
    );
    let rows = r
        .limits
        .iter()
        .chain(r.limits_split.iter())
        .map(|(k, v)| (format!("limit/{k}"), v))
        .chain(r.metrics.iter().map(|(k, v)| (k.clone(), v)))
        .chain(r.split.iter().map(|(k, v)| (k.clone(), v)))
        .chain(r.peers.iter().map(|(k, v)| (k.clone(), v)));
    for (id, m) in rows {
        println!(
            "{:<34} {:>9} {:>14} {:>9} {:>10}",
            id,
            m.placement.as_deref().unwrap_or("-"),
            human(m.kind, &m.unit, m.value),
            f(m.vs_limit),
            f(m.vs_cpython)
        );
    }
    for (id, c) in &r.curves {
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|p| {
                format!(
                    "{}={}: {}{}",
                    c.x,
                    p.x,
                    report::human_cost(p.cost_s),
                    p.limit_cost_s
                        .map(|l| format!(" ({:.2}x limit)", p.cost_s / l))
                        .unwrap_or_default()
                )
            })
            .collect();
        println!("curve {id}: {}", pts.join(", "));
    }
    let met = r.targets.iter().filter(|t| t.met == Some(true)).count();
    let missed = r.targets.iter().filter(|t| t.met == Some(false)).count();
    let unmeasured = r.targets.iter().filter(|t| t.met.is_none()).count();
    println!("targets: {met} met, {missed} missed, {unmeasured} not measured");
    for n in &r.notices {
        println!("notice: {n}");
    }
}

/// The bench binary's `main`: the protocol's subcommands, or parses the arguments, runs, and
/// returns the exit code.
pub fn main_with(peers: Vec<PeerSpec>) -> i32 {
    let root = std::env::var_os("MPROC_BENCH_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the harness lives in the workspace")
                .to_path_buf()
        });
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--protocol") => {
            println!("{}", protocol::PROTOCOL);
            return 0;
        }
        Some("sample") => {
            let r = SampleRequest::parse(&args[1..]).and_then(|req| protocol::serve(&req, &peers));
            return match r {
                Ok(reply) => {
                    println!(
                        "{}{}",
                        protocol::REPLY_PREFIX,
                        serde_json::to_string(&reply).expect("serialisable")
                    );
                    0
                }
                Err(e) => {
                    eprintln!("bench sample: {e}");
                    2
                }
            };
        }
        Some("count") => {
            let id = args.get(1).cloned().unwrap_or_default();
            let iters = match (args.get(2).map(String::as_str), args.get(3)) {
                (Some("--iters"), Some(n)) => n.parse().ok(),
                _ => counts::spec(&id).map(|k| k.iters),
            };
            let Some(iters) = iters else {
                eprintln!("bench count: usage: count ID [--iters N]");
                return 2;
            };
            return match counts::run_counted(&id, iters) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("bench count: {e}");
                    2
                }
            };
        }
        Some("hog") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60u64);
            super::selftest::hog(Duration::from_secs(secs));
            return 0;
        }
        _ => {}
    }
    use clap::Parser;
    match Args::try_parse_from(std::iter::once("bench".to_string()).chain(args)) {
        Ok(a) => run(&a.options(&root), &peers),
        Err(e) => {
            // Help is exit 0; bad input exit 2 (clap's codes).
            let _ = e.print();
            e.exit_code()
        }
    }
}

/// Runs the gate the way `--gate` does, for the self-test: returns the report.
pub fn gate_once(o: &Options) -> Result<GateReport, String> {
    let (plan, notices) = plan(o);
    for n in notices {
        eprintln!("bench: {n}");
    }
    let plan: Vec<_> = plan
        .into_iter()
        .filter(|(w, _)| w.bench.curve.is_none())
        .collect();
    let (r, _, _) = run_gate(o, &plan, None)?;
    Ok(r)
}
