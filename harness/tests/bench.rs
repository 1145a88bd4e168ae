//! The benchmark harness: the results schema (on a real run and on synthetic data), the stored
//! ratios' verdicts (synthetic ratios), the A/B gate end to end (the `mproc-bench` binary as
//! both builds: an unchanged tree is never "regressed", an injected slowdown is caught, in
//! instruction counts exactly), its fallbacks (a revision missing from the clone, a build that
//! predates the sampling protocol), workload-file errors, and the HTML report in headless
//! Chromium (skipped with a notice where `/usr/bin/chromium` is absent). The statistics have
//! unit tests in `bench::stats`.

mod common;

use common::{chromium, CHROMIUM};
use mproc_harness::bench::ab;
use mproc_harness::bench::gate::{self, BaseMetric, Baseline, Current, Verdict};
use mproc_harness::bench::report;
use mproc_harness::bench::results::{self, CurvePoint, CurveResult, Metric, Results, Samples};
use mproc_harness::bench::run::{self, Options};
use mproc_harness::bench::stats::Verdict as AbVerdict;
use mproc_harness::bench::workload::{Kind, Workload};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mproc::enable_test_support!();
mproc_harness::enable_bench_support!();

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// A scratch folder, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("bench-{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch folder")
}

fn cur(reference: &str, ratio: f64) -> Current {
    Current {
        reference: reference.into(),
        ratio,
    }
}

fn baseline(metrics: &[(&str, &str, f64, f64)]) -> Baseline {
    Baseline {
        schema: gate::BASELINE_SCHEMA.into(),
        note: "test".into(),
        created_unix: 0,
        quick: true,
        machine: Default::default(),
        git: Default::default(),
        metrics: metrics
            .iter()
            .map(|(id, r, ratio, threshold)| {
                (
                    id.to_string(),
                    BaseMetric {
                        reference: r.to_string(),
                        ratio: *ratio,
                        threshold: *threshold,
                        calibration: None,
                    },
                )
            })
            .collect(),
        placement: None,
        counts: BTreeMap::new(),
    }
}

#[test]
fn gate_passes_noise_within_threshold_and_fails_a_2x_slowdown() {
    let b = baseline(&[
        ("start_join/fork", "fork_exit_wait", 1.2, 1.4),
        ("pipe_rtt", "socketpair_rtt", 1.1, 1.3),
    ]);
    // Noise: 25% and 15% worse, or 10% better: within 1.4 and 1.3.
    for (a, p) in [(1.5, 1.265), (1.08, 0.99)] {
        let now = BTreeMap::from([
            ("start_join/fork".to_string(), cur("fork_exit_wait", a)),
            ("pipe_rtt".to_string(), cur("socketpair_rtt", p)),
        ]);
        let lines = gate::compare(&b, &now);
        assert!(gate::passes(&lines), "{}", gate::render(&lines));
    }
    // A 2x slowdown of one workload.
    let now = BTreeMap::from([
        ("start_join/fork".to_string(), cur("fork_exit_wait", 2.4)),
        ("pipe_rtt".to_string(), cur("socketpair_rtt", 1.1)),
    ]);
    let lines = gate::compare(&b, &now);
    assert!(!gate::passes(&lines));
    let l = lines
        .iter()
        .find(|l| l.metric == "start_join/fork")
        .unwrap();
    assert_eq!(l.verdict, Verdict::Regressed);
    assert!((l.factor.unwrap() - 2.0).abs() < 1e-9);
    let p = lines.iter().find(|l| l.metric == "pipe_rtt").unwrap();
    assert_eq!(p.verdict, Verdict::Pass);
}

#[test]
fn gate_flags_missing_new_and_changed_reference() {
    let b = baseline(&[("a", "r", 1.0, 1.5), ("b", "r", 1.0, 1.5)]);
    let now = BTreeMap::from([
        ("b".to_string(), cur("other", 1.0)),
        ("c".to_string(), cur("r", 9.0)),
    ]);
    let lines = gate::compare(&b, &now);
    let v = |id: &str| lines.iter().find(|l| l.metric == id).unwrap().verdict;
    assert_eq!(v("a"), Verdict::Missing);
    assert_eq!(v("b"), Verdict::ReferenceChanged);
    assert_eq!(v("c"), Verdict::New);
    assert!(!gate::passes(&lines));
    // New metrics alone do not fail the gate.
    let only_new = gate::compare(
        &baseline(&[]),
        &BTreeMap::from([("c".to_string(), cur("r", 9.0))]),
    );
    assert!(gate::passes(&only_new));
}

#[test]
fn calibration_takes_the_median_and_bounds_the_threshold() {
    let runs: Vec<BTreeMap<String, Current>> = [1.0, 1.1, 0.95, 1.02, 1.05]
        .iter()
        .map(|&r: &f64| {
            BTreeMap::from([
                ("quiet".to_string(), cur("x", r)),
                ("noisy".to_string(), cur("y", r.powi(8))),
            ])
        })
        .collect();
    let m = gate::calibrate(&runs);
    let quiet = &m["quiet"];
    assert!((quiet.ratio - 1.02).abs() < 1e-9);
    // Spread 1.1/1.02 (about 1.08) times the margin is below the floor.
    assert_eq!(quiet.threshold, gate::MIN_THRESHOLD);
    assert!(!quiet.calibration.as_ref().unwrap().noisy);
    let noisy = &m["noisy"];
    assert_eq!(noisy.threshold, gate::MAX_THRESHOLD);
    assert!(noisy.calibration.as_ref().unwrap().noisy);
    // Every calibrated threshold still fails a 2x slowdown of the median.
    for b in m.values() {
        assert!(2.0 > b.threshold);
    }
}

fn synthetic_metric(workload: &str, method: Option<&str>, cost: f64) -> Metric {
    Metric {
        title: format!("{workload} title"),
        workload: workload.into(),
        method: method.map(String::from),
        kind: Kind::Latency,
        unit: "s".into(),
        value: cost,
        samples: Samples {
            n: 3,
            min: cost * 0.9,
            median: cost,
            max: cost * 1.2,
        },
        cost_s: cost,
        limit: Some("fork_exit_wait".into()),
        limit_cost_s: Some(cost / 1.2),
        vs_limit: Some(1.2),
        reference: Some("fork_exit_wait".into()),
        reference_cost_s: Some(cost / 1.2),
        vs_reference: Some(1.2),
        cpython_cost_s: Some(cost * 10.0),
        cpython_samples: Some(Samples {
            n: 3,
            min: cost * 9.0,
            median: cost * 10.0,
            max: cost * 11.0,
        }),
        vs_cpython: Some(10.0),
        placement: Some("same-cpu".into()),
    }
}

fn synthetic_results() -> Results {
    let mut metrics = BTreeMap::new();
    for (m, c) in [("fork", 2e-4), ("spawn", 1e-3), ("forkserver", 4e-4)] {
        metrics.insert(
            format!("start_join/{m}"),
            synthetic_metric("start_join", Some(m), c),
        );
    }
    metrics.insert("pipe_rtt".into(), synthetic_metric("pipe_rtt", None, 8e-6));
    let mut r = Results {
        schema: results::SCHEMA.into(),
        created_unix: 1,
        quick: true,
        machine: results::Machine::here(),
        git: Default::default(),
        cpython: Default::default(),
        procspawn: Default::default(),
        limits: BTreeMap::from([(
            "fork_exit_wait".to_string(),
            synthetic_metric("limit", None, 1.6e-4),
        )]),
        metrics,
        peers: BTreeMap::from([(
            "procspawn/spawn_join".to_string(),
            synthetic_metric("start_join", None, 1.1e-3),
        )]),
        targets: Vec::new(),
        notices: vec!["a <notice> & more".into()],
        placement: Some(mproc_harness::bench::placement::offer()),
        limits_split: BTreeMap::new(),
        split: BTreeMap::from([(
            "pipe_rtt".to_string(),
            synthetic_metric("pipe_rtt", None, 3e-5),
        )]),
        curves: BTreeMap::from([(
            "start_many/fork".to_string(),
            CurveResult {
                title: "start n".into(),
                workload: "start_many".into(),
                method: Some("fork".into()),
                x: "n".into(),
                kind: Kind::Latency,
                limit: Some("fork_many".into()),
                placement: "same-cpu".into(),
                points: [1i64, 4, 16, 64, 256]
                    .iter()
                    .map(|&n| CurvePoint {
                        x: n,
                        cost_s: 2e-4,
                        samples: Samples {
                            n: 3,
                            min: 1.9e-4,
                            median: 2e-4,
                            max: 2.1e-4,
                        },
                        limit_cost_s: Some(1.5e-4),
                        cpython_cost_s: Some(2e-3),
                    })
                    .collect(),
            },
        )]),
        counts: BTreeMap::new(),
        gate: None,
        memory: BTreeMap::from([(
            "rss/child/fork".to_string(),
            results::MemoryFigure {
                rss_bytes: 3e6,
                private_bytes: 4e5,
                n: 3,
                cpython_rss_bytes: Some(1.2e7),
                cpython_private_bytes: Some(2e6),
            },
        )]),
    };
    r.targets = results::check_targets(&r.metrics);
    r.targets
        .extend(results::check_curve_targets(&r.curves, &r.limits));
    r
}

#[test]
fn schema_check_accepts_results_and_names_what_is_wrong() {
    let r = synthetic_results();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(results::schema_problems(&v), Vec::<String>::new());
    let t = r
        .targets
        .iter()
        .find(|t| t.metric == "start_join/fork" && t.what == "vs_limit")
        .unwrap();
    assert_eq!(t.met, Some(true));
    let t = r
        .targets
        .iter()
        .find(|t| t.what == "÷ start_join/fork")
        .unwrap();
    assert_eq!(t.met, None, "pool_lifecycle was not measured");
    // The flat curve does not bend; 256 starts at 2e-4 each against one raw fork at 1.6e-4.
    let bend = r
        .targets
        .iter()
        .find(|t| t.metric == "start_many/fork" && t.what.starts_with("worst step"))
        .unwrap();
    assert_eq!(bend.met, Some(true));
    let t256 = r
        .targets
        .iter()
        .find(|t| t.metric == "start_many/fork n=256")
        .unwrap();
    assert!((t256.value.unwrap() - 1.25).abs() < 1e-9);
    assert_eq!(t256.met, Some(true));
    let mut bad = v.clone();
    bad["metrics"]["pipe_rtt"]["samples"]["min"] = serde_json::json!(1.0);
    bad["metrics"]["pipe_rtt"]
        .as_object_mut()
        .unwrap()
        .remove("vs_cpython");
    let p = results::schema_problems(&bad);
    assert!(
        p.iter()
            .any(|p| p.contains("pipe_rtt") && p.contains("samples")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("pipe_rtt") && p.contains("vs_cpython")),
        "{p:?}"
    );
}

#[test]
fn a_broken_workload_file_names_its_line_and_column() {
    let e = Workload::parse(
        Path::new("cases/bench/x.toml"),
        "title = \"t\"\nsource = \"s\"\n[[step]]\nlabel = 5\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("cases/bench/x.toml:"), "{e}");
    let e = Workload::parse(
        Path::new("x.toml"),
        "title = \"t\"\nsource = \"s\"\n[[step]]\nlabel = \"timed\"\nstart = \"p\"\n[bench]\nmetric = \"m\"\nkind = \"sideways\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("x.toml:8:"), "{e}");
    assert!(e.contains("sideways"), "{e}");
    let e = Workload::parse(
        Path::new("x.toml"),
        "title = \"t\"\nsource = \"s\"\n[[step]]\nstart = \"p\"\n[bench]\nmetric = \"m\"\nkind = \"latency\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no step is labelled `timed`"), "{e}");
}

#[test]
fn every_shipped_workload_file_loads() {
    let (ws, bad) = mproc_harness::bench::workload::load_dir(&root().join("cases/bench"));
    assert!(bad.is_empty(), "{bad:?}");
    let ids: Vec<String> = ws
        .iter()
        .flat_map(|w| w.methods.iter().map(move |m| w.metric_id(*m)))
        .collect();
    for want in [
        "start_join/fork",
        "start_join/spawn",
        "start_join/forkserver",
        "pool_lifecycle/fork",
        "pool_map/spawn/chunk_default",
        "pool_map/forkserver/chunk_1",
        "apply_rtt/fork",
        "pipe_rtt",
        "pipe_throughput",
        "queue_throughput/1x1",
        "queue_throughput/2x2",
        "value_lock/1",
        "value_lock/2",
        "start_many/spawn",
        "pool_map_sizes",
        "pipe_sizes",
        "queue_sizes",
        "lock_contended",
    ] {
        assert!(
            ids.iter().any(|i| i == want),
            "no workload for {want}: {ids:?}"
        );
    }
}

/// The workloads load through the case loader (the one vocabulary: an unknown action or field
/// is a load error) and compile into a kernel under each of their start methods.
#[test]
fn every_workload_compiles_under_each_of_its_methods() {
    use mproc_harness::bench::kernel::Kernel;
    let (ws, bad) = mproc_harness::bench::workload::load_dir(&root().join("cases/bench"));
    assert!(bad.is_empty(), "{bad:?}");
    for w in &ws {
        for &m in &w.methods {
            if let Err(e) = Kernel::compile(w, m, false) {
                panic!("{} under {m}: {e}", w.path.display());
            }
        }
    }
}

/// An action the bench does not run is refused with its position.
#[test]
fn an_action_the_bench_does_not_run_is_refused_with_its_position() {
    use mproc_harness::bench::kernel::Kernel;
    let w = Workload::parse(
        Path::new("x.toml"),
        "title = \"t\"\nsource = \"s\"\nmethods = [\"fork\"]\n[[step]]\nlabel = \"timed\"\nevent = \"e\"\n[bench]\nmetric = \"m\"\nkind = \"latency\"\n",
    )
    .expect("the file is a valid workload");
    let e = Kernel::compile(&w, mproc::StartMethod::Fork, false).unwrap_err();
    assert!(
        e.starts_with("x.toml:6:1: step 1 `event`: the bench does not run `event`"),
        "{e}"
    );
}

/// The bench engine's binary (the protocol server and driver, without the procspawn peers).
fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mproc-bench"))
}

fn small_run(out: &Path, baseline: &Path) -> Options {
    let mut o = Options::new(&root());
    o.quick = true;
    o.filter = vec!["pipe_rtt".into()];
    o.cpython = false;
    o.peers = false;
    o.curves = false;
    o.skip_limits = true;
    o.html = false;
    o.out_dir = out.to_path_buf();
    o.baseline = baseline.to_path_buf();
    o.slowdown = Vec::new();
    o.bench_bin = Some(bench_bin());
    o
}

fn has_valgrind() -> bool {
    let ok = mproc_harness::bench::counts::valgrind_version().is_ok();
    if !ok {
        eprintln!(
            "notice: valgrind not found; the count checks are skipped (install Debian's valgrind)"
        );
    }
    ok
}

fn line<'a>(r: &'a ab::GateReport, id: &str) -> &'a ab::GateMetric {
    r.metrics
        .iter()
        .find(|l| l.metric == id)
        .unwrap_or_else(|| panic!("no gate line for {id}: {r:?}"))
}

/// End to end, A/B: the `mproc-bench` binary plays both builds. An unchanged tree is never
/// "regressed" (pass, or inconclusive on a busy machine); the injected 1.5× slowdown is never a
/// pass in timings, and is caught exactly in instruction counts.
#[test]
fn ab_gate_end_to_end_never_regresses_unchanged_and_catches_an_injected_slowdown() {
    let scratch = tmp("ab");
    let dir = scratch.path();
    let mut o = small_run(dir, &dir.join("none.json"));
    o.filter = vec!["pipe_rtt".into(), "count/frame".into()];
    o.gate = true;
    o.baseline_bin = Some(bench_bin());
    let plan_of = |o: &Options| run::gate_once(o).expect("the gate runs");
    let r = plan_of(&o);
    assert!(r.mode.starts_with("A/B"), "{}", r.mode);
    let p = line(&r, "pipe_rtt");
    assert!(p.ab.is_some(), "{p:?}");
    assert_ne!(p.verdict, AbVerdict::Regressed, "{p:?}");
    let valgrind = has_valgrind();
    if valgrind {
        let c = line(&r, "count/frame");
        let (a, b) = c.counts.expect("counted");
        assert_eq!(a, b, "the same binary counts the same instructions");
        assert_eq!(c.verdict, AbVerdict::Pass);
    }
    let mut slowed = o.clone();
    slowed.slowdown = vec!["pipe_rtt".into(), "count/frame".into()];
    let r = plan_of(&slowed);
    let p = line(&r, "pipe_rtt");
    assert_ne!(p.verdict, AbVerdict::Pass, "a 1.5x slowdown passed: {p:?}");
    if valgrind {
        let c = line(&r, "count/frame");
        assert_eq!(c.verdict, AbVerdict::Regressed, "{c:?}");
        let j = c.ab.as_ref().unwrap();
        assert!((j.ratio - 1.5).abs() < 0.01, "{j:?}");
    }
}

/// A revision that is not in the clone (a shallow clone) cannot be built: the gate says so and
/// falls back to the stored ratios, which it still judges.
#[test]
fn a_missing_revision_falls_back_loudly_to_the_stored_ratios() {
    let scratch = tmp("missing");
    let dir = scratch.path();
    let err =
        ab::build_baseline(&root(), "0123456789abcdef0123456789abcdef01234567", dir).unwrap_err();
    assert!(err.contains("not in this clone"), "{err}");
    let base = dir.join("baseline.json");
    // The stored check of a timing compares two runs made at different times, so on a busy
    // machine it can judge either way (which is why the gate measures A/B): its verdict is
    // checked to be the one the gate reports. An instruction count is the same in both runs, so
    // the stored check of a count must pass.
    let valgrind = has_valgrind();
    let filter: Vec<String> = if valgrind {
        vec!["pipe_rtt".into(), "count/frame".into()]
    } else {
        vec!["pipe_rtt".into()]
    };
    let mut o = small_run(dir, &base);
    o.filter = filter.clone();
    o.save_baseline = true;
    assert_eq!(run::run(&o, &[]), 0);
    let mut o = small_run(dir, &base);
    o.gate = true;
    o.filter = filter;
    o.baseline_unavailable = Some(err);
    let r = run::gate_once(&o).expect("the gate runs");
    assert!(r.mode.starts_with("NO A/B"), "{}", r.mode);
    assert!(r.mode.contains("not in this clone"), "{}", r.mode);
    let p = line(&r, "pipe_rtt");
    assert!(p.ab.is_none());
    let s = p.stored.as_ref().expect("the stored check ran");
    assert_eq!(p.verdict, s.verdict);
    if valgrind {
        let c = line(&r, "count/frame");
        assert!(c.ab.is_none(), "{c:?}");
        let s = c.stored.as_ref().expect("the stored count check ran");
        assert!((s.ratio - 1.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.verdict, AbVerdict::Pass, "{c:?}");
    }
}

/// A baseline build from before the sampling protocol (it rejects `--protocol`) is not used for
/// A/B: the gate says so and falls back.
#[test]
fn a_baseline_without_the_protocol_falls_back_loudly() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = tmp("old");
    let dir = scratch.path();
    let fake = dir.join("old-bench");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"bench: unknown option \\\"$1\\\"\" >&2\nexit 2\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(mproc_harness::bench::protocol::speaks_protocol(&bench_bin()).is_ok());
    let mut o = small_run(dir, &dir.join("none.json"));
    o.gate = true;
    o.baseline_bin = Some(fake);
    let cfg = run::gate_config(&o).unwrap();
    let why = cfg.baseline.unwrap_err();
    assert!(why.contains("predates the sampling protocol"), "{why}");
    let r = run::gate_once(&o).expect("the gate runs");
    assert!(r.mode.starts_with("NO A/B"), "{}", r.mode);
    // Nothing stored to compare with either: the metric is reported, not failed.
    let p = line(&r, "pipe_rtt");
    assert!(p.ab.is_none() && p.stored.is_none());
    assert_eq!(p.verdict, AbVerdict::Pass);
}

/// Calibration writes thresholds from the spread of several runs (same-cpu placement).
#[test]
fn calibration_writes_a_baseline_with_thresholds() {
    let scratch = tmp("calibrate");
    let dir = scratch.path();
    let base = dir.join("baseline.json");
    let mut o = small_run(dir, &base);
    o.calibrate = Some(2);
    assert_eq!(run::run(&o, &[]), 0);
    let b = run::load_baseline(&base).expect("calibration wrote a baseline");
    let m = &b.metrics["pipe_rtt"];
    assert_eq!(m.reference, "socketpair_rtt");
    assert!(m.threshold >= gate::MIN_THRESHOLD && m.threshold <= gate::MAX_THRESHOLD);
    assert_eq!(b.schema, gate::BASELINE_SCHEMA);
}

/// A real run of the raw limits and a workload, under both placements where the machine has
/// two CPUs, writes results that pass the schema check.
#[test]
fn a_real_run_writes_results_in_the_schema() {
    let scratch = tmp("schema");
    let dir = scratch.path();
    let mut o = small_run(dir, &dir.join("none.json"));
    o.filter = vec!["start_join/fork".into()];
    o.skip_limits = false;
    o.html = true;
    assert_eq!(run::run(&o, &[]), 0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results::schema_problems(&json), Vec::<String>::new());
    for l in [
        "fork_exit_wait",
        "fork_exec_self",
        "socketpair_rtt",
        "pipe_raw_throughput",
        "socket_framed_msgs",
        "mutex_inc",
    ] {
        assert!(
            json["limits"][l]["value"].as_f64().is_some(),
            "limit {l} missing"
        );
    }
    let m = &json["metrics"]["start_join/fork"];
    assert_eq!(m["limit"], "fork_exit_wait");
    assert!(m["vs_limit"].as_f64().unwrap() > 0.0);
    let offer = mproc_harness::bench::placement::offer();
    assert_eq!(m["placement"], offer.available[0].as_str());
    if offer.available.len() > 1 {
        let s = &json["split"]["start_join/fork"];
        assert_eq!(s["placement"], "split");
        assert!(s["vs_limit"].as_f64().unwrap() > 0.0);
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("start_join/fork"));
}

/// A curve workload is measured at each point next to its limit at that point.
#[test]
fn a_curve_is_measured_at_each_point_with_its_limit() {
    let scratch = tmp("curve");
    let dir = scratch.path();
    let mut o = small_run(dir, &dir.join("none.json"));
    o.filter = vec!["start_many/fork".into()];
    o.curves = true;
    assert_eq!(run::run(&o, &[]), 0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let c = &json["curves"]["start_many/fork"];
    let xs: Vec<i64> = c["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["x"].as_i64().unwrap())
        .collect();
    assert_eq!(xs, [1, 4, 16, 64, 256]);
    for p in c["points"].as_array().unwrap() {
        assert!(p["cost_s"].as_f64().unwrap() > 0.0);
        assert!(p["limit_cost_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn report_renders_in_chromium_with_a_chart_per_workload() {
    let r = synthetic_results();
    let html = report::render(&r);
    assert!(html.contains("a &lt;notice&gt; &amp; more"));
    let scratch = tmp("report");
    let dir = scratch.path();
    let file = dir.join("report.html");
    std::fs::write(&file, &html).unwrap();
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "notice: {CHROMIUM} not found; the browser check is skipped (install Debian's chromium)"
        );
        return;
    }
    let url = format!("file://{}", file.display());
    let dom = chromium(&["--dump-dom".to_string(), url.clone()]);
    assert!(dom.contains("id=\"targets\""), "targets table missing");
    assert!(dom.contains("id=\"ratios\""), "ratio table missing");
    assert!(dom.contains("id=\"machine\""), "machine line missing");
    let charts = dom.matches("<figure class=\"chart\"").count();
    assert_eq!(
        charts, 3,
        "one chart per workload (start_join, pipe_rtt) plus the limits"
    );
    assert_eq!(
        dom.matches("<figure class=\"chart curve\"").count(),
        1,
        "one log-log chart per curve"
    );
    assert!(dom.contains("id=\"placement\""), "placement line missing");
    assert!(
        dom.contains("mproc pipe_rtt (split)"),
        "split figure missing"
    );
    for label in [
        "mproc start_join/spawn",
        "CPython start_join/fork",
        "procspawn/spawn_join",
        "limit fork_exit_wait",
    ] {
        assert!(dom.contains(label), "{label} not in the chart");
    }
    let shot = root().join("target/bench-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1100,1400".into(),
        url,
    ]);
    assert!(shot.exists(), "screenshot saved");
}
