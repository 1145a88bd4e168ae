//! The sampling protocol the bench binary speaks, so that a driver can measure two builds (the
//! baseline revision's and the current tree's) side by side, and so that every measurement runs
//! in a fresh process under a placement set before anything starts (a forkserver inherits the
//! affinity of the moment it is started).
//!
//! ```text
//! mproc-bench --protocol
//!     prints `mproc-bench-sample/1` (a build that does not know the flag predates the protocol)
//! mproc-bench sample (--workload FILE --method M | --limit ID | --peer ID)
//!                    [--param NAME=INT]... --placement same-cpu|split|free --samples N
//!                    [--iters K] [--no-reference] [--criterion WARM_MS,MEASURE_MS]
//!     one batch: a warm-up pass, then N samples (each `iters` timed passes, or K, alternating with a
//!     sample of the workload's same-run reference unless --no-reference); prints one line
//!     `MPROC-BENCH-SAMPLE {json}` (a [`SampleReply`]) on stdout; exit 0, or 2 with the reason on
//!     stderr.
//! mproc-bench count KERNEL --iters N
//!     runs a counted in-process hot path (see `counts`) for callgrind
//! ```
//!
//! `MPROC_BENCH_SLOWDOWN=ID[,ID]` in a sample's environment injects the synthetic 1.5× slowdown
//! into metric `ID` (see `kernel`); the driver gives it to the current side only.

use super::placement::{self, Cpus, Placement};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The protocol's name and version.
pub const PROTOCOL: &str = "mproc-bench-sample/1";
/// The prefix of the reply line.
pub const REPLY_PREFIX: &str = "MPROC-BENCH-SAMPLE ";
/// The environment variable naming the metrics with the injected slowdown.
pub const SLOWDOWN_ENV: &str = "MPROC_BENCH_SLOWDOWN";
/// How long one batch may take.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(600);

/// What to sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Subject {
    /// A workload file under a start method, with parameter overrides (curve points).
    Workload {
        /// The file.
        file: PathBuf,
        /// The start method.
        method: String,
        /// Parameter overrides.
        params: BTreeMap<String, i64>,
    },
    /// A raw limit or reference, with parameter overrides.
    Limit {
        /// Its id.
        id: String,
        /// Parameter overrides.
        params: BTreeMap<String, i64>,
    },
    /// A comparison peer of the bench binary (procspawn).
    Peer(String),
    /// Resident memory of a child (`child`, `pool_worker`, `raw_fork`) under a start method.
    Memory {
        /// What.
        subject: String,
        /// The start method.
        method: String,
    },
}

/// One batch request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRequest {
    /// What.
    pub subject: Subject,
    /// Where.
    pub placement: Placement,
    /// Samples in the batch.
    pub samples: usize,
    /// Pair each sample with one of the workload's same-run reference.
    pub reference: bool,
    /// Also run criterion (warm-up and measurement time, ms) and return its samples.
    pub criterion: Option<(u64, u64)>,
    /// Timed passes per sample instead of the workload's `iters`.
    pub iters: Option<u64>,
}

impl SampleRequest {
    /// The command-line arguments after the binary.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec!["sample".to_string()];
        let params = |a: &mut Vec<String>, p: &BTreeMap<String, i64>| {
            for (k, v) in p {
                a.push("--param".into());
                a.push(format!("{k}={v}"));
            }
        };
        match &self.subject {
            Subject::Workload {
                file,
                method,
                params: p,
            } => {
                a.extend([
                    "--workload".into(),
                    file.display().to_string(),
                    "--method".into(),
                    method.clone(),
                ]);
                params(&mut a, p);
            }
            Subject::Limit { id, params: p } => {
                a.extend(["--limit".into(), id.clone()]);
                params(&mut a, p);
            }
            Subject::Peer(id) => a.extend(["--peer".into(), id.clone()]),
            Subject::Memory { subject, method } => a.extend([
                "--memory".into(),
                subject.clone(),
                "--method".into(),
                method.clone(),
            ]),
        }
        a.extend([
            "--placement".into(),
            self.placement.as_str().into(),
            "--samples".into(),
            self.samples.to_string(),
        ]);
        if !self.reference {
            a.push("--no-reference".into());
        }
        if let Some((w, m)) = self.criterion {
            a.push("--criterion".into());
            a.push(format!("{w},{m}"));
        }
        if let Some(k) = self.iters {
            a.push("--iters".into());
            a.push(k.to_string());
        }
        a
    }

    /// Parses the arguments after `sample`.
    pub fn parse(args: &[String]) -> Result<SampleRequest, String> {
        let (mut file, mut method, mut limit, mut peer) = (None, None, None, None);
        let mut memory = None;
        let mut params = BTreeMap::new();
        let mut placement = Placement::Free;
        let mut samples = 10;
        let mut reference = true;
        let mut criterion = None;
        let mut iters = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--workload" => file = Some(PathBuf::from(value()?)),
                "--method" => method = Some(value()?),
                "--limit" => limit = Some(value()?),
                "--peer" => peer = Some(value()?),
                "--memory" => memory = Some(value()?),
                "--param" => {
                    let v = value()?;
                    let (k, n) = v
                        .split_once('=')
                        .ok_or_else(|| format!("--param {v:?}: expected NAME=INT"))?;
                    let n: i64 = n
                        .parse()
                        .map_err(|_| format!("--param {v:?}: not an integer"))?;
                    params.insert(k.to_string(), n);
                }
                "--placement" => placement = Placement::parse(&value()?)?,
                "--samples" => {
                    samples = value()?
                        .parse()
                        .map_err(|_| "--samples takes a number".to_string())?
                }
                "--no-reference" => reference = false,
                "--iters" => {
                    iters = Some(
                        value()?
                            .parse::<u64>()
                            .ok()
                            .filter(|k| *k > 0)
                            .ok_or_else(|| "--iters takes a positive number".to_string())?,
                    )
                }
                "--criterion" => {
                    let v = value()?;
                    let (w, m) = v
                        .split_once(',')
                        .and_then(|(w, m)| Some((w.parse().ok()?, m.parse().ok()?)))
                        .ok_or_else(|| format!("--criterion {v:?}: expected WARM_MS,MEASURE_MS"))?;
                    criterion = Some((w, m));
                }
                "--bench" => {}
                other => return Err(format!("sample: unknown option {other:?}")),
            }
        }
        let subject = match (file, method, limit, peer) {
            (None, Some(method), None, None) if memory.is_some() => Subject::Memory {
                subject: memory.expect("checked"),
                method,
            },
            (Some(file), Some(method), None, None) => Subject::Workload {
                file,
                method,
                params,
            },
            (None, None, Some(id), None) => Subject::Limit { id, params },
            (None, None, None, Some(id)) => Subject::Peer(id),
            _ => {
                return Err(
                    "sample needs one of --workload FILE --method M, --limit ID, --peer ID".into(),
                )
            }
        };
        if samples == 0 {
            return Err("--samples must be at least 1".into());
        }
        Ok(SampleRequest {
            subject,
            placement,
            samples,
            reference,
            criterion,
            iters,
        })
    }
}

/// One batch's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleReply {
    /// [`PROTOCOL`].
    pub protocol: String,
    /// The metric id.
    pub id: String,
    /// The placement applied.
    pub placement: Option<Placement>,
    /// Its CPUs.
    pub cpus: Option<Cpus>,
    /// Cost per operation of each sample, seconds.
    pub samples_s: Vec<f64>,
    /// Timed passes per sample.
    #[serde(default)]
    pub iters: u64,
    /// Operations per pass.
    #[serde(default)]
    pub ops: u64,
    /// The same-run reference, if sampled.
    pub reference: Option<String>,
    /// Its samples, taken in alternation with ours.
    pub reference_samples_s: Vec<f64>,
    /// criterion's samples, if asked.
    pub criterion_samples_s: Vec<f64>,
    /// Whether the injected slowdown was active.
    pub slowdown: bool,
    /// Memory readings (`--memory`).
    #[serde(default)]
    pub memory: Vec<super::memory::Rss>,
}

/// Whether `id` is named in `MPROC_BENCH_SLOWDOWN` (comma-separated).
pub fn slowdown_requested(id: &str) -> bool {
    std::env::var(SLOWDOWN_ENV)
        .map(|s| s.split(',').any(|x| x.trim() == id))
        .unwrap_or(false)
}

/// Applies a placement in a fresh sample process (before anything starts).
pub fn apply_placement(p: Placement) -> Result<Option<Cpus>, String> {
    match p {
        Placement::Free => Ok(None),
        p => placement::apply(p).map(Some),
    }
}

/// A bench binary and the environment it runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    /// A label (`baseline`, `current`).
    pub label: String,
    /// The binary.
    pub bin: PathBuf,
    /// The value of `MPROC_BENCH_SLOWDOWN` for it (none: removed from its environment).
    pub slowdown: Option<String>,
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<(i32, String, String), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    // stdout closes when the child (and any child it left behind) is gone.
    let stdout = match rx.recv_timeout(timeout) {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = out_reader.join();
            let _ = reader.join();
            return Err(format!("{cmd:?} did not finish in {timeout:?}"));
        }
    };
    let _ = out_reader.join();
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let stderr = reader.join().unwrap_or_default();
    Ok((status.code().unwrap_or(-1), stdout, stderr))
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Whether `bin` speaks [`PROTOCOL`]: `Ok` if it does, otherwise why not.
pub fn speaks_protocol(bin: &Path) -> Result<(), String> {
    let mut cmd = Command::new(bin);
    cmd.arg("--protocol");
    let (code, out, err) = run_with_timeout(cmd, Duration::from_secs(60))?;
    if code == 0 && out.lines().any(|l| l.trim() == PROTOCOL) {
        Ok(())
    } else {
        Err(format!(
            "{} does not speak {PROTOCOL} (exit {code}: {})",
            bin.display(),
            tail(if err.trim().is_empty() { &out } else { &err }, 2).trim()
        ))
    }
}

/// Runs one batch on `side`.
pub fn run_sample(side: &Side, req: &SampleRequest) -> Result<SampleReply, String> {
    let mut cmd = Command::new(&side.bin);
    cmd.args(req.to_args());
    cmd.env_remove(SLOWDOWN_ENV);
    if let Some(s) = &side.slowdown {
        cmd.env(SLOWDOWN_ENV, s);
    }
    let (code, out, err) = run_with_timeout(cmd, BATCH_TIMEOUT)?;
    let line = out.lines().find_map(|l| l.strip_prefix(REPLY_PREFIX));
    match (code, line) {
        (0, Some(json)) => {
            let r: SampleReply = serde_json::from_str(json)
                .map_err(|e| format!("{}: a reply that does not parse: {e}", side.label))?;
            if r.protocol != PROTOCOL {
                return Err(format!(
                    "{}: replies in {:?}, not {PROTOCOL}",
                    side.label, r.protocol
                ));
            }
            Ok(r)
        }
        _ => Err(format!(
            "{} failed (exit {code}): {}",
            side.label,
            tail(&err, 4).trim()
        )),
    }
}

/// Serves one `sample` request in this (fresh) process: applies the placement, measures, and
/// returns the reply. `peers` are the bench binary's comparison peers.
pub fn serve(req: &SampleRequest, peers: &[super::run::PeerSpec]) -> Result<SampleReply, String> {
    use super::kernel::Kernel;
    use super::limits;
    use super::measure::{measure, measure_paired, SampleConfig};
    use super::workload::{Timing, Workload};
    let cpus = apply_placement(req.placement)?;
    let cfg = |name: &str, timing: Timing, samples: usize, iters: u64| {
        let (w, m) = req.criterion.unwrap_or((200, 800));
        SampleConfig {
            name: name.to_string(),
            timing,
            samples,
            iters,
            warm_up: Duration::from_millis(w),
            measurement: Duration::from_millis(m),
        }
    };
    let mut reply = SampleReply {
        protocol: PROTOCOL.into(),
        placement: Some(req.placement),
        cpus,
        ..SampleReply::default()
    };
    match &req.subject {
        Subject::Workload {
            file,
            method,
            params,
        } => {
            let w = Workload::load_with(file, params).map_err(|e| e.to_string())?;
            let m: mproc::StartMethod = method
                .parse()
                .map_err(|_| format!("unknown start method {method:?}"))?;
            let id = w.metric_id(m);
            let slow = slowdown_requested(&id);
            let mut k = Kernel::compile(&w, m, slow)?;
            let c = cfg(
                &id,
                Timing::Process,
                req.samples,
                req.iters.unwrap_or(w.bench.iters),
            );
            let reference = req
                .reference
                .then(|| super::run::reference_of(&w, m))
                .flatten();
            match &reference {
                Some(r) => {
                    let spec = limits::spec(r)
                        .ok_or_else(|| format!("unknown limit or reference `{r}`"))?;
                    let mut rp = limits::probe_with(r, params)
                        .ok_or_else(|| format!("unknown limit or reference `{r}`"))?;
                    let rc = cfg(r, Timing::Process, req.samples, spec.iters);
                    let (rs, ms) = measure_paired(rp.as_mut(), &rc, &mut k, &c, req.samples)?;
                    reply.samples_s = ms;
                    reply.reference_samples_s = rs;
                }
                None => reply.samples_s = measure(&mut k, &c)?,
            }
            if req.criterion.is_some() && w.bench.timing == Timing::Criterion {
                reply.criterion_samples_s =
                    measure(&mut k, &cfg(&id, Timing::Criterion, req.samples, 1))?;
            }
            reply.iters = c.iters;
            reply.ops = w.ops();
            reply.id = id;
            reply.reference = reference;
            reply.slowdown = slow;
        }
        Subject::Limit { id, params } => {
            let spec = limits::spec(id).ok_or_else(|| format!("unknown limit `{id}`"))?;
            let mut p =
                limits::probe_with(id, params).ok_or_else(|| format!("unknown limit `{id}`"))?;
            reply.samples_s = measure(
                p.as_mut(),
                &cfg(id, Timing::Process, req.samples, spec.iters),
            )?;
            reply.id = id.clone();
        }
        Subject::Memory { subject, method } => {
            let m: mproc::StartMethod = method
                .parse()
                .map_err(|_| format!("unknown start method {method:?}"))?;
            // One reading first, unrecorded (first-use costs: the forkserver's start).
            super::memory::measure_once(subject, m)?;
            for _ in 0..req.samples {
                reply.memory.push(super::memory::measure_once(subject, m)?);
            }
            reply.id = format!("rss/{subject}/{method}");
        }
        Subject::Peer(id) => {
            let spec = peers
                .iter()
                .find(|p| &p.id == id)
                .ok_or_else(|| format!("unknown peer `{id}`"))?;
            let mut probe = (spec.make)();
            reply.samples_s = measure(
                &mut probe,
                &cfg(id, Timing::Process, req.samples, spec.iters),
            )?;
            reply.id = id.clone();
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_their_arguments() {
        let r = SampleRequest {
            subject: Subject::Workload {
                file: "/x/pipe_rtt.toml".into(),
                method: "fork".into(),
                params: BTreeMap::from([("size".to_string(), 64)]),
            },
            placement: Placement::Split,
            samples: 3,
            reference: false,
            criterion: Some((200, 800)),
            iters: Some(40),
        };
        let args = r.to_args();
        assert_eq!(args[0], "sample");
        assert_eq!(SampleRequest::parse(&args[1..]).unwrap(), r);
        let l = SampleRequest {
            subject: Subject::Limit {
                id: "socketpair_rtt".into(),
                params: BTreeMap::new(),
            },
            placement: Placement::SameCpu,
            samples: 5,
            reference: true,
            criterion: None,
            iters: None,
        };
        assert_eq!(SampleRequest::parse(&l.to_args()[1..]).unwrap(), l);
        let m = SampleRequest {
            subject: Subject::Memory {
                subject: "pool_worker".into(),
                method: "spawn".into(),
            },
            placement: Placement::SameCpu,
            samples: 3,
            reference: false,
            criterion: None,
            iters: None,
        };
        assert_eq!(SampleRequest::parse(&m.to_args()[1..]).unwrap(), m);
        assert!(SampleRequest::parse(&["--limit".into()]).is_err());
        assert!(SampleRequest::parse(&[]).is_err());
    }
}
