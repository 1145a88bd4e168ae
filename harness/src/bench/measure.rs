//! Sampling: whole-process timing (each sample: setup, timed passes, teardown) and criterion
//! (criterion chooses the iteration counts; we keep its measured samples).

use super::probe::Probe;
use super::workload::Timing;
use criterion::Criterion;
use std::cell::RefCell;
use std::time::Duration;

/// How to sample one probe.
#[derive(Clone, Debug)]
pub struct SampleConfig {
    /// The name criterion shows.
    pub name: String,
    /// Whole-process or criterion.
    pub timing: Timing,
    /// Samples wanted.
    pub samples: usize,
    /// Passes per sample (process timing).
    pub iters: u64,
    /// criterion's warm-up time.
    pub warm_up: Duration,
    /// criterion's measurement time.
    pub measurement: Duration,
}

/// Samples `probe`; returns the cost per operation of each sample, in seconds.
pub fn measure(probe: &mut dyn Probe, cfg: &SampleConfig) -> Result<Vec<f64>, String> {
    let ops = probe.ops_per_pass().max(1) as f64;
    match cfg.timing {
        Timing::Process => {
            // One unmeasured pass first, so that first-use costs (the forkserver's start, page
            // faults) are not in the samples.
            probe.setup()?;
            let warm = probe.run(1);
            probe.teardown()?;
            warm?;
            let mut out = Vec::with_capacity(cfg.samples);
            for _ in 0..cfg.samples {
                probe.setup()?;
                let r = settle(probe, cfg.iters).and_then(|()| probe.run(cfg.iters));
                let t = probe.teardown();
                let d = r?;
                t?;
                out.push(d.as_secs_f64() / (cfg.iters as f64 * ops));
            }
            Ok(out)
        }
        Timing::Criterion => {
            probe.setup()?;
            let rec: RefCell<Vec<(u64, Duration)>> = RefCell::new(Vec::new());
            let err: RefCell<Option<String>> = RefCell::new(None);
            let n = cfg.samples.max(10);
            let mut c = Criterion::default()
                .without_plots()
                .sample_size(n)
                .warm_up_time(cfg.warm_up)
                .measurement_time(cfg.measurement);
            c.bench_function(&cfg.name, |b| {
                b.iter_custom(|iters| {
                    if err.borrow().is_some() {
                        return Duration::from_nanos(1);
                    }
                    match probe.run(iters) {
                        Ok(d) => {
                            rec.borrow_mut().push((iters, d));
                            d
                        }
                        Err(e) => {
                            *err.borrow_mut() = Some(e);
                            Duration::from_nanos(1)
                        }
                    }
                })
            });
            let t = probe.teardown();
            if let Some(e) = err.into_inner() {
                return Err(e);
            }
            t?;
            // criterion warms up first, then takes its samples: the last `n` calls are those.
            let rec = rec.into_inner();
            let start = rec.len().saturating_sub(n);
            Ok(rec[start..]
                .iter()
                .map(|(i, d)| d.as_secs_f64() / (*i as f64 * ops))
                .collect())
        }
    }
}

/// Before a sample of several passes, one unmeasured pass right after setup: the peer a setup
/// just started wakes up for the first time (and faults its pages in) here, not in the first
/// timed pass, so a sample of a few passes costs what a long one costs per pass.
fn settle(p: &mut dyn Probe, iters: u64) -> Result<(), String> {
    if iters > 1 {
        p.run(1)?;
    }
    Ok(())
}

/// Summary statistics of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

/// min, median and max of `xs` (which must not be empty).
pub fn stats(xs: &[f64]) -> Stats {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    if v.is_empty() {
        return Stats {
            min: f64::NAN,
            median: f64::NAN,
            max: f64::NAN,
        };
    }
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        min: v[0],
        median,
        max: v[n - 1],
    }
}

/// Samples two probes in alternation, one sample of each per round (their order swapping from
/// round to round), so that both see the same machine load: a load spike hits one pair, not one
/// side. Process timing. Returns the costs per operation of `a` and of `b`.
pub fn measure_paired(
    a: &mut dyn Probe,
    a_cfg: &SampleConfig,
    b: &mut dyn Probe,
    b_cfg: &SampleConfig,
    rounds: usize,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    fn one(p: &mut dyn Probe, iters: u64) -> Result<f64, String> {
        let ops = p.ops_per_pass().max(1) as f64;
        p.setup()?;
        let r = settle(p, iters).and_then(|()| p.run(iters));
        let t = p.teardown();
        let d = r?;
        t?;
        Ok(d.as_secs_f64() / (iters as f64 * ops))
    }
    // One unmeasured pass each first (first-use costs: the forkserver's start, page faults).
    one(a, 1)?;
    one(b, 1)?;
    let (mut xs, mut ys) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds {
        if i % 2 == 0 {
            xs.push(one(a, a_cfg.iters)?);
            ys.push(one(b, b_cfg.iters)?);
        } else {
            ys.push(one(b, b_cfg.iters)?);
            xs.push(one(a, a_cfg.iters)?);
        }
    }
    Ok((xs, ys))
}
