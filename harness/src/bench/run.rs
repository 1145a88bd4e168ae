//! Runs the suite: the raw limits, every workload under each of its methods (each next to its
//! same-run reference), CPython, the procspawn peers; writes `results.json` and `report.html`;
//! and the gate (`--gate`, `--save-baseline`, `--calibrate`).

use super::gate::{self, Baseline, Current, Verdict};
use super::kernel::Kernel;
use super::limits;
use super::measure::{measure, measure_paired, stats, SampleConfig};
use super::probe::FnProbe;
use super::report;
use super::results::{
    check_targets, samples_in_unit, to_unit, unit_of, Git, Machine, Metric, PeerInfo, Results,
    SCHEMA,
};
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
    /// Compare with the baseline; exit 1 on a regression.
    pub gate: bool,
    /// Rewrite the baseline from this run.
    pub save_baseline: bool,
    /// Calibrate the thresholds from this many runs, and save the baseline.
    pub calibrate: Option<usize>,
    /// Metric ids whose timed steps run twice (the synthetic 2× regression). Also read from
    /// `MPROC_BENCH_SLOWDOWN` (comma-separated).
    pub slowdown: Vec<String>,
    /// Skip the raw limits measured on their own (the gate still measures each metric's
    /// reference next to it).
    pub skip_limits: bool,
    /// Write report.html.
    pub html: bool,
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
            gate: false,
            save_baseline: false,
            calibrate: None,
            slowdown: std::env::var("MPROC_BENCH_SLOWDOWN")
                .map(|s| {
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            skip_limits: false,
            html: true,
        }
    }

    fn wanted(&self, id: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|f| id.contains(f.as_str()))
    }

    fn criterion_times(&self) -> (Duration, Duration) {
        if self.quick {
            (Duration::from_millis(200), Duration::from_millis(800))
        } else {
            (Duration::from_millis(1000), Duration::from_millis(3000))
        }
    }
}

/// The help text of `cargo xtask bench`.
pub const HELP: &str = "cargo xtask bench [options]

Runs the benchmark workloads of cases/bench/ under fork, spawn and forkserver, the raw OS
limits, CPython's multiprocessing and procspawn, all in one run; writes
target/xtask/bench/results.json and report.html.

options:
  --quick              fewer samples (the CI gate's mode)
  --filter S           only metrics whose id contains S (repeatable)
  --gate               compare each metric's same-run ratio with reports/baseline.json;
                       a failing metric is measured again once; exit 1 on a regression
  --save-baseline      rewrite reports/baseline.json from this run (keeps thresholds)
  --calibrate [N]      run N times (default 5) on an unchanged tree, set each metric's
                       threshold from the spread seen, and save the baseline
  --slowdown ID        run metric ID's timed steps twice (a synthetic 2x regression; also
                       MPROC_BENCH_SLOWDOWN=ID1,ID2)
  --no-cpython         skip CPython
  --no-peers           skip procspawn
  --no-limits          skip the raw limits measured on their own
  --no-html            skip report.html
  --cases DIR          workload folder (default cases/bench)
  --baseline FILE      baseline file (default reports/baseline.json)
  --out DIR            output folder (default target/xtask/bench)
";

/// Parses the command line (arguments after the program name). `Err` is a message for exit 2.
pub fn parse_args(root: &Path, args: &[String]) -> Result<Options, String> {
    let mut o = Options::new(root);
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--gate" => o.gate = true,
            "--save-baseline" => o.save_baseline = true,
            "--calibrate" => {
                let n = match it.peek() {
                    Some(n) if n.parse::<usize>().is_ok() => {
                        it.next().expect("peeked").parse().expect("checked")
                    }
                    _ => 5,
                };
                if n < 2 {
                    return Err("--calibrate needs at least 2 runs".into());
                }
                o.calibrate = Some(n);
            }
            "--filter" => o.filter.push(value("--filter")?),
            "--slowdown" => o.slowdown.push(value("--slowdown")?),
            "--no-cpython" => o.cpython = false,
            "--no-peers" => o.peers = false,
            "--no-limits" => o.skip_limits = true,
            "--no-html" => o.html = false,
            "--cases" => o.cases = root.join(value("--cases")?),
            "--baseline" => o.baseline = root.join(value("--baseline")?),
            "--out" => o.out_dir = root.join(value("--out")?),
            // `cargo bench` passes --bench to the binary.
            "--bench" => {}
            other => return Err(format!("unknown option {other:?}\n\n{HELP}")),
        }
    }
    Ok(o)
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

/// One workload metric's raw measurement.
#[derive(Clone, Debug)]
struct Raw {
    /// The samples of the value (criterion's for criterion workloads, else the paired ones).
    costs: Vec<f64>,
    /// The samples taken in alternation with the reference.
    paired: Vec<f64>,
    /// The reference and its samples.
    reference: Option<(String, Vec<f64>)>,
}

fn sample_cfg(name: &str, timing: Timing, samples: usize, iters: u64, o: &Options) -> SampleConfig {
    let (warm_up, measurement) = o.criterion_times();
    SampleConfig {
        name: name.to_string(),
        timing,
        samples,
        iters,
        warm_up,
        measurement,
    }
}

fn reference_of(w: &Workload, method: mproc::StartMethod) -> Option<String> {
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

fn measure_limit(id: &str, o: &Options, timing: Timing) -> Result<Vec<f64>, String> {
    let spec = limits::spec(id).ok_or_else(|| format!("unknown limit or reference `{id}`"))?;
    let mut p = limits::probe(id).expect("every spec has a probe");
    measure(
        p.as_mut(),
        &sample_cfg(
            &format!("limit/{id}"),
            timing,
            limit_samples(o),
            spec.iters,
            o,
        ),
    )
}

fn measure_workload(w: &Workload, method: mproc::StartMethod, o: &Options) -> Result<Raw, String> {
    let id = w.metric_id(method);
    let slow = o.slowdown.iter().any(|s| s == &id);
    let mut k = Kernel::compile(w, method, slow)?;
    let samples = if o.quick {
        w.bench.quick_samples
    } else {
        w.bench.samples
    };
    let cfg = sample_cfg(&id, Timing::Process, samples, w.bench.iters, o);
    let (paired, reference) = match reference_of(w, method) {
        Some(r) => {
            let spec =
                limits::spec(&r).ok_or_else(|| format!("unknown limit or reference `{r}`"))?;
            let mut rp = limits::probe(&r).expect("every spec has a probe");
            let rcfg = sample_cfg(&r, Timing::Process, samples, spec.iters, o);
            let (rs, ms) = measure_paired(rp.as_mut(), &rcfg, &mut k, &cfg, samples)?;
            (ms, Some((r, rs)))
        }
        None => (measure(&mut k, &cfg)?, None),
    };
    let costs = match w.bench.timing {
        Timing::Criterion => measure(&mut k, &sample_cfg(&id, Timing::Criterion, samples, 1, o))?,
        Timing::Process => paired.clone(),
    };
    Ok(Raw {
        costs,
        paired,
        reference,
    })
}

fn metric_from(w: &Workload, method: mproc::StartMethod, raw: &Raw) -> Metric {
    let bpo = w.bytes_per_op().ok().flatten();
    let kind = w.bench.kind;
    let cost = stats(&raw.costs).median;
    let limit = w.bench.limit.as_ref().and_then(|l| l.for_method(method));
    let (reference, reference_cost_s) = match &raw.reference {
        Some((r, c)) => (Some(r.clone()), Some(stats(c).median)),
        None => (None, None),
    };
    // The gate's ratio: best of the paired samples over best of the reference's (load only
    // ever adds time, so the minimum is the steadiest estimate of each cost).
    let vs_reference = raw
        .reference
        .as_ref()
        .map(|(_, c)| stats(&raw.paired).min / stats(c).min);
    // The reported ratio to the limit: medians of the paired samples.
    let (limit_cost_s, vs_limit) = match (&limit, &reference) {
        (Some(l), Some(r)) if l == r => (
            reference_cost_s,
            reference_cost_s.map(|rc| stats(&raw.paired).median / rc),
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
    }
}

fn simple_metric(
    title: &str,
    workload: &str,
    kind: Kind,
    bpo: Option<u64>,
    costs: &[f64],
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
    }
}

/// The workloads and their metric ids to run.
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
                match Kernel::compile(&w, m, false) {
                    Ok(_) => out.push((w.clone(), m)),
                    Err(e) => notices.push(format!("skipped {}: {e}", w.metric_id(m))),
                }
            }
        }
    }
    (out, notices)
}

/// Measures our workloads only (what the gate and calibration need). Returns the metrics and
/// the notices.
fn run_ours(
    o: &Options,
    plan: &[(Workload, mproc::StartMethod)],
    pb: &ProgressBar,
) -> (BTreeMap<String, Metric>, Vec<String>) {
    let mut metrics = BTreeMap::new();
    let mut notices = Vec::new();
    for (w, m) in plan {
        let id = w.metric_id(*m);
        pb.set_message(id.clone());
        match measure_workload(w, *m, o) {
            Ok(raw) => {
                metrics.insert(id, metric_from(w, *m, &raw));
            }
            Err(e) => notices.push(format!("{id} failed: {e}")),
        }
        pb.inc(1);
    }
    (metrics, notices)
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

/// CPython's samples per metric id (cost per operation, seconds), its version, or a notice.
fn run_cpython(o: &Options) -> (BTreeMap<String, Vec<f64>>, PeerInfo) {
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
    let out_file = o.out_dir.join("cpython.json");
    // On a fresh clone nothing has made the output directory yet.
    if let Err(e) = std::fs::create_dir_all(&o.out_dir) {
        eprintln!("bench: cannot create {}: {e}", o.out_dir.display());
    }
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script)
        .arg("--cases")
        .arg(&o.cases)
        .arg("--out")
        .arg(&out_file);
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

/// Runs everything `o` asks for. Returns the process exit code: 0, 1 (a regression), 2 (bad
/// input or a failed run).
pub fn run(o: &Options, peers: &[PeerSpec]) -> i32 {
    let t0 = std::time::Instant::now();
    let code = run_inner(o, peers);
    eprintln!("bench: took {:.0} s", t0.elapsed().as_secs_f64());
    code
}

fn run_inner(o: &Options, peers: &[PeerSpec]) -> i32 {
    let (plan, mut notices) = plan(o);
    for n in &notices {
        eprintln!("bench: {n}");
    }
    if plan.is_empty() {
        eprintln!("bench: no workload to run in {}", o.cases.display());
        return 2;
    }
    if let Some(runs) = o.calibrate {
        return calibrate(o, &plan, runs);
    }
    let limit_ids: Vec<&str> = if o.skip_limits {
        Vec::new()
    } else {
        limits::LIMITS.iter().map(|l| l.id).collect()
    };
    let peer_list: Vec<&PeerSpec> = if o.peers {
        peers
            .iter()
            .filter(|p| o.wanted(&p.id) || o.filter.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let pb =
        progress((limit_ids.len() + plan.len() + peer_list.len() + usize::from(o.cpython)) as u64);

    // 1. The raw limits, while this process has no other threads.
    let mut limit_metrics = BTreeMap::new();
    for id in &limit_ids {
        pb.set_message(format!("limit/{id}"));
        let spec = limits::spec(id).expect("listed");
        let timing = if spec.ops == 1 && spec.iters >= 100 {
            Timing::Criterion
        } else {
            Timing::Process
        };
        match measure_limit(id, o, timing) {
            Ok(costs) => {
                limit_metrics.insert(
                    id.to_string(),
                    simple_metric(spec.title, "limit", spec.kind, spec.bytes_per_op, &costs),
                );
            }
            Err(e) => notices.push(format!("limit {id} failed: {e}")),
        }
        pb.inc(1);
    }

    // 2. Our workloads.
    let (mut metrics, n) = run_ours(o, &plan, &pb);
    notices.extend(n);

    // The gate, which may measure failing metrics again: before the peers, whose threads
    // (procspawn's pool) would otherwise be in this process while it forks.
    let mut code = 0;
    if o.gate {
        pb.suspend(|| code = run_gate(o, &plan, &mut metrics));
    }

    // 3. procspawn.
    let mut peer_metrics = BTreeMap::new();
    let mut procspawn = PeerInfo {
        available: !peer_list.is_empty(),
        version: Some("procspawn 1".into()),
        notice: (!o.peers).then(|| "skipped (--no-peers)".to_string()),
    };
    for p in &peer_list {
        pb.set_message(p.id.clone());
        let mut probe = (p.make)();
        let samples = if o.quick { 10 } else { 20 };
        match measure(
            &mut probe,
            &sample_cfg(&p.id, Timing::Process, samples, p.iters, o),
        ) {
            Ok(costs) => {
                peer_metrics.insert(
                    p.id.clone(),
                    simple_metric(&p.title, &p.workload, p.kind, None, &costs),
                );
            }
            Err(e) => {
                notices.push(format!("{} failed: {e}", p.id));
                procspawn.notice = Some(format!("{} failed: {e}", p.id));
            }
        }
        pb.inc(1);
    }

    // 4. CPython.
    let cpython = if o.cpython {
        pb.set_message("CPython");
        let (cp, info) = run_cpython(o);
        for (id, m) in metrics.iter_mut() {
            if let Some(samples) = cp.get(id).filter(|s| !s.is_empty()) {
                let c = stats(samples).median;
                let bpo = std::path::Path::new(&o.cases).join(format!("{}.toml", m.workload));
                let bpo = Workload::load(&bpo)
                    .ok()
                    .and_then(|w| w.bytes_per_op().ok().flatten());
                m.cpython_cost_s = Some(c);
                m.cpython_samples = Some(samples_in_unit(m.kind, bpo, samples));
                m.vs_cpython = Some(c / m.cost_s);
            }
        }
        pb.inc(1);
        if let Some(n) = &info.notice {
            notices.push(n.clone());
        }
        info
    } else {
        PeerInfo {
            available: false,
            version: None,
            notice: Some("skipped (--no-cpython)".into()),
        }
    };
    pb.finish_and_clear();

    let mut results = Results {
        schema: SCHEMA.into(),
        created_unix: now_unix(),
        quick: o.quick,
        machine: Machine::here(),
        git: Git::of(&o.root),
        cpython,
        procspawn,
        limits: limit_metrics,
        metrics,
        peers: peer_metrics,
        targets: Vec::new(),
        notices,
    };
    results.targets = check_targets(&results.metrics);
    print_summary(&results);
    let json = serde_json::to_string_pretty(&results).expect("serialisable");
    let json_path = o.out_dir.join("results.json");
    if let Err(e) = write(&json_path, &json) {
        eprintln!("bench: {e}");
        return 2;
    }
    println!("bench: wrote {}", json_path.display());
    if o.html {
        let html_path = o.out_dir.join("report.html");
        if let Err(e) = write(&html_path, &report::render(&results)) {
            eprintln!("bench: {e}");
            return 2;
        }
        println!("bench: wrote {}", html_path.display());
    }
    if o.save_baseline {
        let previous = load_baseline(&o.baseline).ok();
        let b = Baseline {
            schema: gate::BASELINE_SCHEMA.into(),
            note: "saved by `cargo xtask bench --save-baseline` (thresholds kept from the previous baseline)".into(),
            created_unix: now_unix(),
            quick: o.quick,
            machine: results.machine.clone(),
            git: results.git.clone(),
            metrics: gate::rebase(&currents(&results.metrics), previous.as_ref()),
        };
        if let Err(e) = save_baseline(&o.baseline, &b) {
            eprintln!("bench: {e}");
            return 2;
        }
        println!("bench: wrote {}", o.baseline.display());
    }
    if !results.notices.is_empty() && code == 0 && results.metrics.len() < plan.len() {
        // A workload failed to run: that is a broken benchmark, not a regression.
        code = 2;
    }
    code
}

/// Reads a baseline.
pub fn load_baseline(path: &Path) -> Result<Baseline, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let b: Baseline = serde_json::from_str(&s).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.schema != gate::BASELINE_SCHEMA {
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

/// Compares with the baseline, measures each failing metric (with its reference) once more,
/// and returns 0 (pass), 1 (regression) or 2 (no baseline).
fn run_gate(
    o: &Options,
    plan: &[(Workload, mproc::StartMethod)],
    metrics: &mut BTreeMap<String, Metric>,
) -> i32 {
    let base = match load_baseline(&o.baseline) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench: gate: {e}");
            return 2;
        }
    };
    // Only the metrics of this run's plan are gated (a --filter run gates its subset).
    let planned: Vec<String> = plan.iter().map(|(w, m)| w.metric_id(*m)).collect();
    let mut base = base;
    base.metrics.retain(|id, _| planned.contains(id));
    let mut lines = gate::compare(&base, &currents(metrics));
    for l in lines.iter_mut().filter(|l| l.verdict == Verdict::Regressed) {
        eprintln!(
            "bench: gate: {} is {:.2}x its baseline ratio (threshold {:.2}); measuring it again",
            l.metric,
            l.factor.unwrap_or(f64::NAN),
            l.threshold.unwrap_or(f64::NAN)
        );
        let Some((w, m)) = plan.iter().find(|(w, m)| w.metric_id(*m) == l.metric) else {
            continue;
        };
        match measure_workload(w, *m, o) {
            Ok(raw) => {
                let again = metric_from(w, *m, &raw);
                let one: BTreeMap<String, Current> =
                    currents(&BTreeMap::from([(l.metric.clone(), again.clone())]));
                let mut b1 = base.clone();
                b1.metrics.retain(|id, _| id == &l.metric);
                if let Some(nl) = gate::compare(&b1, &one).into_iter().next() {
                    *l = nl;
                }
                if let Some(old) = metrics.get_mut(&l.metric) {
                    let (cp, cps) = (old.cpython_cost_s, old.cpython_samples);
                    *old = again;
                    old.cpython_cost_s = cp;
                    old.cpython_samples = cps;
                    old.vs_cpython = cp.map(|c| c / old.cost_s);
                }
            }
            Err(e) => eprintln!("bench: gate: measuring {} again failed: {e}", l.metric),
        }
    }
    print!("{}", gate::render(&lines));
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| !matches!(l.verdict, Verdict::Pass | Verdict::New))
        .map(|l| l.metric.as_str())
        .collect();
    let passed = lines.iter().filter(|l| l.verdict == Verdict::Pass).count();
    println!("gate: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        0
    } else {
        eprintln!("bench: gate: regression in {}", failed.join(", "));
        1
    }
}

fn calibrate(o: &Options, plan: &[(Workload, mproc::StartMethod)], runs: usize) -> i32 {
    let pb = progress((plan.len() * runs) as u64);
    let mut all = Vec::new();
    for r in 0..runs {
        pb.println(format!("bench: calibration run {}/{runs}", r + 1));
        let (metrics, notices) = run_ours(o, plan, &pb);
        if !notices.is_empty() {
            pb.finish_and_clear();
            for n in notices {
                eprintln!("bench: {n}");
            }
            return 2;
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
            "calibrated by `cargo xtask bench{} --calibrate {runs}`: ratio = median of the runs, threshold = widest deviation x {} clamped to {}..{}",
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
        "{:<34} {:>14} {:>9} {:>10}",
        "metric", "value", "vs_limit", "vs_cpython"
    );
    for (id, m) in r
        .limits
        .iter()
        .map(|(k, v)| (format!("limit/{k}"), v))
        .chain(r.metrics.iter().map(|(k, v)| (k.clone(), v)))
        .chain(r.peers.iter().map(|(k, v)| (k.clone(), v)))
    {
        println!(
            "{:<34} {:>14} {:>9} {:>10}",
            id,
            human(m.kind, &m.unit, m.value),
            f(m.vs_limit),
            f(m.vs_cpython)
        );
    }
    let met = r.targets.iter().filter(|t| t.met == Some(true)).count();
    let missed = r.targets.iter().filter(|t| t.met == Some(false)).count();
    let unmeasured = r.targets.iter().filter(|t| t.met.is_none()).count();
    println!("targets: {met} met, {missed} missed, {unmeasured} not measured");
    for n in &r.notices {
        println!("notice: {n}");
    }
}

/// The bench binary's `main`: parses the arguments, runs, and returns the exit code.
pub fn main_with(peers: Vec<PeerSpec>) -> i32 {
    let root = std::env::var_os("MPROC_BENCH_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the harness lives in the workspace")
                .to_path_buf()
        });
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return 0;
    }
    match parse_args(&root, &args) {
        Ok(o) => run(&o, &peers),
        Err(e) => {
            eprintln!("bench: {e}");
            2
        }
    }
}
