//! Counts that do not move with load: in-process hot paths run a fixed number of times under
//! valgrind's callgrind, which counts the instructions executed (not seconds), the same for the
//! same binary, input and environment whatever else the machine does.
//!
//! Each counted program ([`KERNELS`]) sets up in one process (no child, no thread), runs its
//! body a few times unmeasured (first-use costs: page faults, lazy initialisation), then runs
//! it `iters` times inside [`counted_loop`], the only function callgrind collects in
//! (`--collect-atstart=no --toggle-collect=*counted_loop*`). The body has no timing-dependent
//! branch: a put is always followed by a get that finds the item, a lock is never contended,
//! a message is always already there to read. The environment is cleared but for `PATH`.
//!
//! The gate compares the current build's count with the baseline build's (A/B), or, where the
//! baseline could not be built, with the count stored in `reports/baseline.json`; a count more
//! than [`COUNT_THRESHOLD`] times the baseline's regresses.
//!
//! `MPROC_BENCH_SLOWDOWN=count/<name>` injects the synthetic slowdown here, in the counted
//! program, not in the library: every second iteration runs the body twice (1.5× the work).

use super::protocol::{slowdown_requested, SLOWDOWN_ENV};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};

/// A counted count regresses above this ratio to the baseline's (2%).
pub const COUNT_THRESHOLD: f64 = 1.02;

/// One counted program.
#[derive(Clone, Copy, Debug)]
pub struct CountSpec {
    /// The metric id (`count/frame`).
    pub id: &'static str,
    /// What one iteration does.
    pub title: &'static str,
    /// Iterations counted.
    pub iters: u64,
}

/// The counted programs.
pub const KERNELS: &[CountSpec] = &[
    CountSpec {
        id: "count/frame",
        title: "Connection: send_bytes of 8 bytes + recv_bytes on the other end (one process)",
        iters: 20_000,
    },
    CountSpec {
        id: "count/queue",
        title: "Queue<i64>: put + get within one process",
        iters: 20_000,
    },
    CountSpec {
        id: "count/lock",
        title: "Lock: acquire + release, uncontended",
        iters: 50_000,
    },
    CountSpec {
        id: "count/value",
        title: "Value<i64>: += 1 under its lock",
        iters: 50_000,
    },
];

/// The counted program `id`.
pub fn spec(id: &str) -> Option<&'static CountSpec> {
    KERNELS.iter().find(|k| k.id == id)
}

/// Runs `body` `iters` times (every second iteration twice when `slow`). The only function
/// callgrind collects in.
#[inline(never)]
pub fn counted_loop(
    iters: u64,
    slow: bool,
    body: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(), String> {
    for i in 0..iters {
        body()?;
        if slow && i % 2 == 1 {
            body()?;
        }
    }
    Ok(())
}

const WARM: u64 = 200;

/// Runs the counted program `id` (`count ID --iters N` of the bench binary).
pub fn run_counted(id: &str, iters: u64) -> Result<(), String> {
    let ctx = mproc::get_context(mproc::StartMethod::Fork);
    let e = |e: mproc::Error| e.to_string();
    let slow = slowdown_requested(id);
    let mut body: Box<dyn FnMut() -> Result<(), String>> = match id {
        "count/frame" => {
            let (a, b) = ctx.pipe(true).map_err(e)?;
            let msg = [7u8; 8];
            Box::new(move || {
                a.send_bytes(&msg).map_err(e)?;
                std::hint::black_box(b.recv_bytes(None).map_err(e)?);
                Ok(())
            })
        }
        "count/queue" => {
            let q = ctx.queue::<i64>(None).map_err(e)?;
            let mut i = 0i64;
            Box::new(move || {
                q.put(i, true, None).map_err(|x| e(x.into()))?;
                i += 1;
                std::hint::black_box(q.get(true, None).map_err(e)?);
                Ok(())
            })
        }
        "count/lock" => {
            let l = ctx.lock().map_err(e)?;
            Box::new(move || {
                let g = l.lock().map_err(e)?;
                drop(std::hint::black_box(g));
                Ok(())
            })
        }
        "count/value" => {
            let v = ctx.value::<i64>(0).map_err(e)?;
            Box::new(move || {
                let _g = v.get_lock().lock().map_err(e)?;
                let raw = v.get_obj();
                raw.set(raw.get() + 1);
                Ok(())
            })
        }
        other => return Err(format!("unknown counted program `{other}`")),
    };
    counted_warm(&mut *body)?;
    counted_loop(iters, slow, &mut *body)
}

#[inline(never)]
fn counted_warm(body: &mut dyn FnMut() -> Result<(), String>) -> Result<(), String> {
    for _ in 0..WARM {
        body()?;
    }
    Ok(())
}

/// Whether valgrind is installed (its version, or why not).
pub fn valgrind_version() -> Result<String, String> {
    match Command::new("valgrind").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(format!("valgrind --version failed ({})", o.status)),
        Err(e) => Err(format!("valgrind not found ({e})")),
    }
}

/// One count: instructions of `iters` iterations of `id` in `bin`, under callgrind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// Instructions in the counted loop.
    pub instructions: u64,
    /// Iterations.
    pub iters: u64,
}

impl Count {
    /// Instructions per iteration.
    pub fn per_iter(&self) -> f64 {
        self.instructions as f64 / self.iters.max(1) as f64
    }
}

/// Counts `id` in `bin` under callgrind; `slowdown` is the value of `MPROC_BENCH_SLOWDOWN` for
/// it (none: not set). `work` is a folder for callgrind's output.
pub fn callgrind(
    bin: &Path,
    id: &str,
    slowdown: Option<&str>,
    work: &Path,
) -> Result<Count, String> {
    let spec = spec(id).ok_or_else(|| format!("unknown counted program `{id}`"))?;
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let out = work.join(format!(
        "callgrind.{}.{}.out",
        id.replace('/', "_"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new("valgrind");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args([
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=*counted_loop*",
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .args(["count", id, "--iters", &spec.iters.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(s) = slowdown {
        cmd.env(SLOWDOWN_ENV, s);
    }
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(4).collect();
        return Err(format!(
            "callgrind of {id} failed ({}): {}",
            o.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    let total = parse_total(&text).ok_or_else(|| format!("no totals in {}", out.display()))?;
    if total == 0 {
        return Err(format!(
            "callgrind counted nothing in counted_loop for {id} (symbol not found?)"
        ));
    }
    Ok(Count {
        instructions: total,
        iters: spec.iters,
    })
}

/// The total of the first event (instructions) in a callgrind output file.
pub fn parse_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_callgrind_output() {
        let t = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=(1) x\n5 10\nsummary: 123456\ntotals: 123456\n";
        assert_eq!(parse_total(t), Some(123456));
        assert_eq!(parse_total("events: Ir\n"), None);
    }

    #[test]
    fn every_kernel_runs_in_process() {
        for k in KERNELS {
            run_counted(k.id, 10).unwrap_or_else(|e| panic!("{}: {e}", k.id));
        }
        assert!(run_counted("count/nothing", 1).is_err());
    }
}
