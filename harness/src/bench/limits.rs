//! The raw OS limits, measured in the same run as the workloads: what the operation costs with
//! nothing of ours in the way. Safe code only: `fork` through mproc's own safe wrapper
//! (`mproc::bench_limits::fork_run`), fork+exec through `mproc::bench_limits::spawn_exec` (no
//! allocation between the fork and the exec), sockets and pipes through `std` and `nix`.

use super::placement::{for_child, reset_alternation, Child};
use super::probe::Probe;
use super::workload::Kind;
use mproc::bench_limits::{fork_run, spawn_exec, ExecPlan};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The environment variable that makes the bench binary exit at once: the child of the
/// fork+exec limit. [`exit_if_limit_child`] is called first in the bench binary's `main`.
pub const EXIT_AT_ONCE: &str = "MPROC_BENCH_EXIT_AT_ONCE";

/// In the child of the fork+exec limit, exits at once (call first in the bench's `main`).
pub fn exit_if_limit_child() {
    if std::env::var_os(EXIT_AT_ONCE).is_some() {
        mproc::bench_limits::exit_now(0);
    }
}

/// A raw limit: its id, what it is, and how to measure it.
#[derive(Clone, Copy, Debug)]
pub struct LimitSpec {
    /// The id (metrics name it in `limit`/`reference`).
    pub id: &'static str,
    /// What it measures.
    pub title: &'static str,
    /// Latency or throughput.
    pub kind: Kind,
    /// Operations per pass.
    pub ops: u64,
    /// Bytes per operation (throughput in bytes).
    pub bytes_per_op: Option<u64>,
    /// Passes per sample (process timing).
    pub iters: u64,
    /// Whether this is a raw OS limit (`vs_limit`) or a same-run Rust reference (gate only).
    pub is_limit: bool,
}

/// Every limit and reference.
pub const LIMITS: &[LimitSpec] = &[
    LimitSpec {
        id: "fork_exit_wait",
        title: "fork + _exit + waitpid",
        kind: Kind::Latency,
        ops: 1,
        bytes_per_op: None,
        iters: 10,
        is_limit: true,
    },
    LimitSpec {
        id: "fork_exec_self",
        title: "fork + exec of the bench binary + waitpid",
        kind: Kind::Latency,
        ops: 1,
        bytes_per_op: None,
        iters: 3,
        is_limit: true,
    },
    LimitSpec {
        id: "socketpair_rtt",
        title: "socketpair ping-pong of 8 bytes",
        kind: Kind::Latency,
        ops: 1,
        bytes_per_op: None,
        iters: 500,
        is_limit: true,
    },
    LimitSpec {
        id: "pipe_raw_throughput",
        title: "raw pipe, 64 KiB writes",
        kind: Kind::Throughput,
        ops: 64,
        bytes_per_op: Some(65536),
        iters: 2,
        is_limit: true,
    },
    LimitSpec {
        id: "socket_framed_msgs",
        title: "framed 8-byte messages batched over a socket",
        kind: Kind::Throughput,
        ops: 10_000,
        bytes_per_op: None,
        iters: 5,
        is_limit: true,
    },
    LimitSpec {
        id: "fork_many",
        title: "fork n children that _exit at once, then waitpid each (curve: n)",
        kind: Kind::Latency,
        ops: 1,
        bytes_per_op: None,
        iters: 1,
        is_limit: true,
    },
    LimitSpec {
        id: "fork_exec_many",
        title: "fork + exec n bench binaries that exit at once, then waitpid each (curve: n)",
        kind: Kind::Latency,
        ops: 1,
        bytes_per_op: None,
        iters: 1,
        is_limit: true,
    },
    LimitSpec {
        id: "framed_pipe_bytes",
        title: "length-prefixed messages of `size` bytes through a pipe, `batch` per ack (curve: size)",
        kind: Kind::Throughput,
        ops: 1,
        bytes_per_op: None,
        iters: 1,
        is_limit: true,
    },
    LimitSpec {
        id: "framed_socket_bytes",
        title: "length-prefixed messages of `size` bytes over a socketpair, `batch` per ack (curve: size)",
        kind: Kind::Throughput,
        ops: 1,
        bytes_per_op: None,
        iters: 1,
        is_limit: true,
    },
    LimitSpec {
        id: "mutex_threads",
        title: "std Mutex<u64> += 1 by `procs` threads of one process (Rust reference; curve: procs)",
        kind: Kind::Throughput,
        ops: 1,
        bytes_per_op: None,
        iters: 1,
        is_limit: false,
    },
    LimitSpec {
        id: "mutex_inc",
        title: "std Mutex<u64> += 1 in one process (Rust reference)",
        kind: Kind::Throughput,
        ops: 100_000,
        bytes_per_op: None,
        iters: 2,
        is_limit: false,
    },
];

/// The limits measured only at the points of a cost curve (not on their own).
pub const CURVE_ONLY: &[&str] = &[
    "fork_many",
    "fork_exec_many",
    "framed_pipe_bytes",
    "framed_socket_bytes",
    "mutex_threads",
];

/// The limit called `id`.
pub fn spec(id: &str) -> Option<&'static LimitSpec> {
    LIMITS.iter().find(|l| l.id == id)
}

/// A probe for the limit `id` with its default parameters.
pub fn probe(id: &str) -> Option<Box<dyn Probe>> {
    probe_with(id, &BTreeMap::new())
}

/// A probe for the limit `id`; the curve limits read their parameters (`n`, `size`, `batch`,
/// `procs`) from `params`, others ignore them.
pub fn probe_with(id: &str, params: &BTreeMap<String, i64>) -> Option<Box<dyn Probe>> {
    let get = |k: &str, d: i64| params.get(k).copied().unwrap_or(d).max(1) as u64;
    Some(match id {
        "fork_many" => Box::new(ForkMany {
            n: get("n", 1),
            exec: None,
        }),
        "fork_exec_many" => Box::new(ForkMany {
            n: get("n", 1),
            exec: Some(None),
        }),
        "framed_pipe_bytes" | "framed_socket_bytes" => Box::new(FramedBytes {
            socket: id == "framed_socket_bytes",
            size: get("size", 8),
            batch: get("batch", 1),
            peer: None,
        }),
        "socket_framed_msgs" if params.contains_key("n") => Box::new(FramedMsgs {
            peer: None,
            buf: Vec::new(),
            msgs: get("n", MSGS as i64),
        }),
        "mutex_threads" => Box::new(MutexThreads {
            threads: get("procs", 1),
            n: get("n", 10_000),
        }),
        "fork_exit_wait" => Box::new(ForkExitWait),
        "fork_exec_self" => Box::new(ForkExecSelf { plan: None }),
        "socketpair_rtt" => Box::new(SocketRtt { peer: None }),
        "pipe_raw_throughput" => Box::new(PipeThroughput { peer: None }),
        "socket_framed_msgs" => Box::new(FramedMsgs {
            peer: None,
            buf: Vec::new(),
            msgs: MSGS,
        }),
        "mutex_inc" => Box::new(MutexInc(std::sync::Mutex::new(0))),
        _ => return None,
    })
}

fn reap(pid: u32) -> Result<(), String> {
    waitpid(Pid::from_raw(pid as i32), None)
        .map(drop)
        .map_err(|e| format!("waitpid: {e}"))
}

struct ForkExitWait;

impl Probe for ForkExitWait {
    fn setup(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let t0 = Instant::now();
        for _ in 0..iters {
            reset_alternation();
            let (pid, _pidfd) =
                for_child(Child::Process, || fork_run(|| 0)).map_err(|e| format!("fork: {e}"))?;
            reap(pid)?;
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn ops_per_pass(&self) -> u64 {
        1
    }
}

struct ForkExecSelf {
    plan: Option<(ExecPlan, std::os::fd::OwnedFd, File)>,
}

impl Probe for ForkExecSelf {
    fn setup(&mut self) -> Result<(), String> {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| k != "MPROC_ROLE")
            .collect();
        env.push((EXIT_AT_ONCE.into(), "1".into()));
        let plan = ExecPlan::new("/proc/self/exe", vec!["mproc-bench-limit".into()], env)
            .map_err(|e| e.to_string())?;
        let (a, _b) = UnixStream::pair().map_err(|e| e.to_string())?;
        let devnull = File::open("/dev/null").map_err(|e| e.to_string())?;
        self.plan = Some((plan, a.into(), devnull));
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        use std::os::fd::AsFd;
        let (plan, chan, devnull) = self.plan.as_ref().ok_or("not set up")?;
        let t0 = Instant::now();
        for _ in 0..iters {
            reset_alternation();
            let (pid, _pidfd) = for_child(Child::Process, || {
                spawn_exec(plan, chan.as_fd(), devnull.as_fd())
            })
            .map_err(|e| format!("fork+exec: {e}"))?;
            reap(pid)?;
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        self.plan = None;
        Ok(())
    }
    fn ops_per_pass(&self) -> u64 {
        1
    }
}

/// A child process that serves one side of a raw channel until end of file.
struct Peer<T> {
    pid: u32,
    end: T,
}

fn finish<T>(peer: Option<Peer<T>>) -> Result<(), String> {
    match peer {
        Some(p) => {
            drop(p.end);
            reap(p.pid)
        }
        None => Ok(()),
    }
}

struct SocketRtt {
    peer: Option<Peer<UnixStream>>,
}

impl Probe for SocketRtt {
    fn setup(&mut self) -> Result<(), String> {
        let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
        let a_fd = a.as_raw_fd();
        reset_alternation();
        let (pid, _fd) = for_child(Child::Process, || {
            fork_run(move || {
                // The child's copy of the parent's end must go, or it never sees end of file.
                let _ = nix::unistd::close(a_fd);
                let mut b = b;
                let mut buf = [0u8; 8];
                while b.read_exact(&mut buf).is_ok() {
                    if b.write_all(&buf).is_err() {
                        break;
                    }
                }
                0
            })
        })
        .map_err(|e| format!("fork: {e}"))?;
        // In the parent `b` was moved into the closure, which fork_run dropped.
        self.peer = Some(Peer { pid, end: a });
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let s = &mut self.peer.as_mut().ok_or("not set up")?.end;
        let mut buf = [7u8; 8];
        let t0 = Instant::now();
        for _ in 0..iters {
            s.write_all(&buf).map_err(|e| e.to_string())?;
            s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        finish(self.peer.take())
    }
    fn ops_per_pass(&self) -> u64 {
        1
    }
}

const CHUNK: usize = 65536;

struct PipeThroughput {
    peer: Option<Peer<(File, File)>>,
}

impl Probe for PipeThroughput {
    fn setup(&mut self) -> Result<(), String> {
        use nix::fcntl::OFlag;
        let (dr, dw) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let (ar, aw) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let (dr, dw, ar, aw) = (
            File::from(dr),
            File::from(dw),
            File::from(ar),
            File::from(aw),
        );
        let (dw_fd, ar_fd) = (dw.as_raw_fd(), ar.as_raw_fd());
        reset_alternation();
        let (pid, _fd) = for_child(Child::Process, || {
            fork_run(move || {
                let _ = nix::unistd::close(dw_fd);
                let _ = nix::unistd::close(ar_fd);
                let (mut dr, mut aw) = (dr, aw);
                let mut buf = vec![0u8; CHUNK];
                let mut head = [0u8; 8];
                while dr.read_exact(&mut head).is_ok() {
                    let mut left = u64::from_le_bytes(head);
                    while left > 0 {
                        let want = (left as usize).min(CHUNK);
                        match dr.read(&mut buf[..want]) {
                            Ok(0) | Err(_) => return 1,
                            Ok(n) => left -= n as u64,
                        }
                    }
                    if aw.write_all(b"k").is_err() {
                        return 1;
                    }
                }
                0
            })
        })
        .map_err(|e| format!("fork: {e}"))?;
        self.peer = Some(Peer { pid, end: (dw, ar) });
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let (dw, ar) = &mut self.peer.as_mut().ok_or("not set up")?.end;
        let chunk = vec![b'x'; CHUNK];
        let n = iters * 64;
        let mut ack = [0u8; 1];
        let t0 = Instant::now();
        dw.write_all(&(n * CHUNK as u64).to_le_bytes())
            .map_err(|e| e.to_string())?;
        for _ in 0..n {
            dw.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        ar.read_exact(&mut ack).map_err(|e| e.to_string())?;
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        finish(self.peer.take())
    }
    fn ops_per_pass(&self) -> u64 {
        64
    }
}

struct FramedMsgs {
    peer: Option<Peer<UnixStream>>,
    buf: Vec<u8>,
    msgs: u64,
}

const MSGS: u64 = 10_000;

impl Probe for FramedMsgs {
    fn setup(&mut self) -> Result<(), String> {
        let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
        let a_fd = a.as_raw_fd();
        reset_alternation();
        let (pid, _fd) = for_child(Child::Process, || {
            fork_run(move || {
                // The child's copy of the parent's end must go, or it never sees end of file.
                let _ = nix::unistd::close(a_fd);
                let mut b = b;
                let mut head = [0u8; 8];
                let mut buf = vec![0u8; CHUNK];
                let mut pending: Vec<u8> = Vec::with_capacity(2 * CHUNK);
                while b.read_exact(&mut head).is_ok() {
                    let mut want = u64::from_le_bytes(head);
                    let mut sum = 0u64;
                    while want > 0 {
                        let n = match b.read(&mut buf) {
                            Ok(0) | Err(_) => return 1,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        let mut at = 0;
                        while want > 0 && pending.len() - at >= 4 {
                            let len = u32::from_be_bytes(pending[at..at + 4].try_into().unwrap())
                                as usize;
                            if pending.len() - at < 4 + len {
                                break;
                            }
                            let v = &pending[at + 4..at + 4 + len];
                            sum = sum
                                .wrapping_add(u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
                            at += 4 + len;
                            want -= 1;
                        }
                        pending.drain(..at);
                    }
                    if b.write_all(&sum.to_le_bytes()).is_err() {
                        return 1;
                    }
                }
                0
            })
        })
        .map_err(|e| format!("fork: {e}"))?;
        self.peer = Some(Peer { pid, end: a });
        self.buf = Vec::with_capacity(CHUNK + 64);
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let s = &mut self.peer.as_mut().ok_or("not set up")?.end;
        let buf = &mut self.buf;
        let n = iters * self.msgs;
        let mut ack = [0u8; 8];
        let t0 = Instant::now();
        s.write_all(&n.to_le_bytes()).map_err(|e| e.to_string())?;
        for i in 0..n {
            buf.extend_from_slice(&8u32.to_be_bytes());
            buf.extend_from_slice(&i.to_le_bytes());
            if buf.len() >= CHUNK {
                s.write_all(buf).map_err(|e| e.to_string())?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            s.write_all(buf).map_err(|e| e.to_string())?;
            buf.clear();
        }
        s.read_exact(&mut ack).map_err(|e| e.to_string())?;
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        finish(self.peer.take())
    }
    fn ops_per_pass(&self) -> u64 {
        self.msgs
    }
}

struct MutexInc(std::sync::Mutex<u64>);

impl Probe for MutexInc {
    fn setup(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let t0 = Instant::now();
        for _ in 0..iters * 100_000 {
            let mut g = self.0.lock().map_err(|e| e.to_string())?;
            *g = std::hint::black_box(*g + 1);
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn ops_per_pass(&self) -> u64 {
        100_000
    }
}

/// `n` raw children at once: fork (or fork+exec of the bench binary) each, then reap each.
struct ForkMany {
    n: u64,
    /// `Some` for fork+exec (the plan, made in setup).
    exec: Option<Option<(ExecPlan, std::os::fd::OwnedFd, File)>>,
}

impl Probe for ForkMany {
    fn setup(&mut self) -> Result<(), String> {
        if let Some(slot) = &mut self.exec {
            let mut f = ForkExecSelf { plan: None };
            f.setup()?;
            *slot = f.plan.take();
        }
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        use std::os::fd::AsFd;
        let mut pids = Vec::with_capacity(self.n as usize);
        let t0 = Instant::now();
        for _ in 0..iters {
            reset_alternation();
            for _ in 0..self.n {
                let r = match &self.exec {
                    None => for_child(Child::Process, || fork_run(|| 0)),
                    Some(plan) => {
                        let (plan, chan, devnull) = plan.as_ref().ok_or("not set up")?;
                        for_child(Child::Process, || {
                            spawn_exec(plan, chan.as_fd(), devnull.as_fd())
                        })
                    }
                };
                match r {
                    Ok((pid, _fd)) => pids.push(pid),
                    Err(e) => {
                        for p in pids.drain(..) {
                            let _ = reap(p);
                        }
                        return Err(format!("fork: {e}"));
                    }
                }
            }
            for p in pids.drain(..) {
                reap(p)?;
            }
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        if let Some(slot) = &mut self.exec {
            *slot = None;
        }
        Ok(())
    }
    fn ops_per_pass(&self) -> u64 {
        self.n
    }
}

/// `batch` messages of `size` bytes, each with a 4-byte big-endian length (Connection's
/// framing, without its 8-byte form for huge messages: the peer reads the length as a u32 and
/// `size` stays below 4 GiB), to a forked reader that acknowledges each batch with one byte.
struct FramedBytes {
    socket: bool,
    size: u64,
    batch: u64,
    peer: Option<Peer<(File, File)>>,
}

impl Probe for FramedBytes {
    fn setup(&mut self) -> Result<(), String> {
        use nix::fcntl::OFlag;
        let ((dr, dw), (ar, aw)) = if self.socket {
            let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
            let (c, d) = (
                a.try_clone().map_err(|e| e.to_string())?,
                b.try_clone().map_err(|e| e.to_string())?,
            );
            (
                (
                    File::from(std::os::fd::OwnedFd::from(b)),
                    File::from(std::os::fd::OwnedFd::from(a)),
                ),
                (
                    File::from(std::os::fd::OwnedFd::from(c)),
                    File::from(std::os::fd::OwnedFd::from(d)),
                ),
            )
        } else {
            let (dr, dw) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
            let (ar, aw) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
            (
                (File::from(dr), File::from(dw)),
                (File::from(ar), File::from(aw)),
            )
        };
        let (dw_fd, ar_fd) = (dw.as_raw_fd(), ar.as_raw_fd());
        let (batch, size) = (self.batch, self.size as usize);
        reset_alternation();
        let (pid, _fd) = for_child(Child::Process, || {
            fork_run(move || {
                let _ = nix::unistd::close(dw_fd);
                let _ = nix::unistd::close(ar_fd);
                let (mut dr, mut aw) = (dr, aw);
                let mut buf = vec![0u8; size.max(1)];
                let mut head = [0u8; 4];
                loop {
                    for _ in 0..batch {
                        if dr.read_exact(&mut head).is_err() {
                            return 0;
                        }
                        let len = u32::from_be_bytes(head) as usize;
                        if len > buf.len() || dr.read_exact(&mut buf[..len]).is_err() {
                            return 1;
                        }
                    }
                    if aw.write_all(b"k").is_err() {
                        return 1;
                    }
                }
            })
        })
        .map_err(|e| format!("fork: {e}"))?;
        self.peer = Some(Peer { pid, end: (dw, ar) });
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let (dw, ar) = &mut self.peer.as_mut().ok_or("not set up")?.end;
        let msg = vec![b'x'; self.size as usize];
        let head = (self.size as u32).to_be_bytes();
        let mut ack = [0u8; 1];
        let t0 = Instant::now();
        for _ in 0..iters {
            for _ in 0..self.batch {
                dw.write_all(&head).map_err(|e| e.to_string())?;
                dw.write_all(&msg).map_err(|e| e.to_string())?;
            }
            ar.read_exact(&mut ack).map_err(|e| e.to_string())?;
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        finish(self.peer.take())
    }
    fn ops_per_pass(&self) -> u64 {
        self.batch
    }
}

/// `threads` threads of this process add 1 to a `std::sync::Mutex<u64>`, `n` times in all.
struct MutexThreads {
    threads: u64,
    n: u64,
}

impl Probe for MutexThreads {
    fn setup(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let m = std::sync::Mutex::new(0u64);
        let per = self.n / self.threads;
        let t0 = Instant::now();
        for _ in 0..iters {
            std::thread::scope(|s| {
                for _ in 0..self.threads {
                    s.spawn(|| {
                        for _ in 0..per {
                            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                            *g = std::hint::black_box(*g + 1);
                        }
                    });
                }
            });
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn ops_per_pass(&self) -> u64 {
        (self.n / self.threads) * self.threads
    }
}

/// The memory of a raw fork child (it tells the parent it is up, then waits for end of file),
/// read by the parent.
pub fn raw_fork_rss() -> Result<super::memory::Rss, String> {
    let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
    let a_fd = a.as_raw_fd();
    reset_alternation();
    let (pid, _fd) = for_child(Child::Process, || {
        fork_run(move || {
            let _ = nix::unistd::close(a_fd);
            let mut b = b;
            let mut buf = [0u8; 1];
            if b.write_all(b"u").is_err() {
                return 1;
            }
            while matches!(b.read(&mut buf), Ok(n) if n > 0) {}
            0
        })
    })
    .map_err(|e| format!("fork: {e}"))?;
    let mut a = a;
    let mut up = [0u8; 1];
    let r = a
        .read_exact(&mut up)
        .map_err(|e| e.to_string())
        .and_then(|()| super::memory::read(pid));
    drop(a);
    reap(pid)?;
    r
}
