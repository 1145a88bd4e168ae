//! `cargo xtask bench --gate-selftest [N]` (not part of CI): proof that the gate neither cries
//! wolf nor sleeps. It runs the gate N times on the unchanged tree while a CPU hog (a busy loop
//! in a process of its own) shares the gate's CPU, then N times with the synthetic 1.5×
//! slowdown injected into one timed hot path ([`TIMED`], in the bench kernel's timed path) and
//! one counted hot path ([`COUNTED`], in the counted program), the hog still running; and
//! prints the false regressions and the detections. The target: 0 false regressions, N of N
//! detections.

use super::ab::GateReport;
use super::placement;
use super::run::{gate_once, Options};
use super::stats::Verdict;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The timed metric the injected slowdown goes into.
pub const TIMED: &str = "pipe_rtt";
/// The counted program the injected slowdown goes into.
pub const COUNTED: &str = "count/frame";

/// Spins for `d`, or until its parent (the self-test) is gone (the hog's body; bounded in
/// time).
pub fn hog(d: Duration) {
    let t0 = Instant::now();
    let parent = nix::unistd::getppid();
    let mut x = 1u64;
    while t0.elapsed() < d && nix::unistd::getppid() == parent {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

struct Hog(Child);

impl Hog {
    /// Starts the hog on the gate's CPU (the first usable one) for at most `limit`.
    fn start(exe: &std::path::Path, limit: Duration) -> Result<(Hog, String), String> {
        let child = Command::new(exe)
            .args(["hog", &limit.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the hog: {e}"))?;
        let cpus = placement::allowed_cpus().unwrap_or_default();
        let where_ = match cpus.first() {
            Some(&c) => {
                let mut set = CpuSet::new();
                let pinned = set
                    .set(c)
                    .ok()
                    .and_then(|()| sched_setaffinity(Pid::from_raw(child.id() as i32), &set).ok());
                match pinned {
                    Some(()) => format!("pinned to CPU {c}, the gate's CPU"),
                    None => "not pinned (affinity unavailable)".to_string(),
                }
            }
            None => "not pinned".to_string(),
        };
        Ok((Hog(child), where_))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn regressed(r: &GateReport) -> Vec<String> {
    r.metrics
        .iter()
        .filter(|l| l.verdict == Verdict::Regressed)
        .map(|l| l.metric.clone())
        .collect()
}

/// The figures of the regressed metrics, for the record.
fn details(r: &GateReport) -> String {
    r.metrics
        .iter()
        .filter(|l| l.verdict == Verdict::Regressed)
        .map(|l| match &l.ab {
            Some(j) => format!(
                "{}: {:.3} in {:.3}..{:.3}, p {:.4}, {} rounds",
                l.metric, j.ratio, j.lo, j.hi, j.p, j.rounds
            ),
            None => format!("{}: {:?}", l.metric, l.stored),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn inconclusive(r: &GateReport) -> Vec<String> {
    r.metrics
        .iter()
        .filter(|l| l.verdict == Verdict::Inconclusive)
        .map(|l| l.metric.clone())
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs the self-test; returns 0 when the target is met, 1 otherwise, 2 when the gate could
/// not run.
pub fn selftest(o: &Options, n: usize) -> i32 {
    let mut plain = o.clone();
    plain.slowdown.clear();
    plain.gate = true;
    let mut slowed = plain.clone();
    slowed.slowdown = vec![TIMED.into(), COUNTED.into()];
    let exe = match &o.bench_bin {
        Some(b) => b.clone(),
        None => match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("bench: selftest: {e}");
                return 2;
            }
        },
    };
    let (_hog, where_) = match Hog::start(&exe, Duration::from_secs(4 * 3600)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("bench: selftest: {e}");
            return 2;
        }
    };
    println!(
        "selftest: a CPU hog runs throughout ({where_}); load average at the start {}",
        loadavg()
    );
    let mut false_regressions = 0;
    let mut false_runs = 0;
    let mut inconclusive_runs = 0;
    let mut mode = String::new();
    for i in 0..n {
        let t0 = Instant::now();
        let r = match gate_once(&plain) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench: selftest: {e}");
                return 2;
            }
        };
        mode = r.mode.clone();
        let reg = regressed(&r);
        let inc = inconclusive(&r);
        false_regressions += reg.len();
        false_runs += usize::from(!reg.is_empty());
        inconclusive_runs += usize::from(!inc.is_empty());
        println!(
            "selftest: unchanged {}/{n}: {} regressed {:?}, inconclusive {:?} ({:.0} s, load {})",
            i + 1,
            reg.len(),
            reg,
            inc,
            t0.elapsed().as_secs_f64(),
            loadavg()
        );
        if !reg.is_empty() {
            println!("selftest:   FALSE REGRESSION: {}", details(&r));
        }
    }
    let (mut timed_hits, mut counted_hits, mut other_false) = (0, 0, 0);
    for i in 0..n {
        let t0 = Instant::now();
        let r = match gate_once(&slowed) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench: selftest: {e}");
                return 2;
            }
        };
        let reg = regressed(&r);
        let t = reg.iter().any(|m| m == TIMED);
        let c = reg.iter().any(|m| m == COUNTED);
        timed_hits += usize::from(t);
        counted_hits += usize::from(c);
        let others: Vec<&String> = reg
            .iter()
            .filter(|m| *m != TIMED && *m != COUNTED)
            .collect();
        other_false += others.len();
        if !others.is_empty() {
            println!("selftest:   FALSE REGRESSION: {}", details(&r));
        }
        let line = r.metrics.iter().find(|l| l.metric == TIMED);
        println!(
            "selftest: slowed {}/{n}: {TIMED} {} (A/B {}), {COUNTED} {}, other regressions {:?} ({:.0} s, load {})",
            i + 1,
            if t { "DETECTED" } else { "missed" },
            line.and_then(|l| l.ab.as_ref())
                .map(|j| format!("{:.3} in {:.3}..{:.3}, p {:.4}", j.ratio, j.lo, j.hi, j.p))
                .unwrap_or_else(|| "-".into()),
            if c { "DETECTED" } else { "missed" },
            others,
            t0.elapsed().as_secs_f64(),
            loadavg()
        );
    }
    println!("selftest: gate mode: {mode}");
    println!(
        "selftest: unchanged tree, CPU hog: {false_runs} of {n} runs with a false regression ({false_regressions} metrics in all); {inconclusive_runs} runs with an inconclusive metric"
    );
    println!(
        "selftest: injected 1.5x slowdown: {TIMED} detected {timed_hits}/{n}, {COUNTED} detected {counted_hits}/{n}; false regressions of other metrics: {other_false}"
    );
    let ok = false_regressions == 0 && other_false == 0 && timed_hits == n && counted_hits == n;
    println!(
        "selftest: {} (target: 0 false regressions, {n}/{n} detections)",
        if ok { "MET" } else { "NOT MET" }
    );
    i32::from(!ok)
}
