//! Manager timings against the raw OS limit, measured in one run (medians of 7 batches), with
//! every process on the CPUs given (`--cpus 0` by default: both ends of every round trip on one
//! CPU, as the raw limit's; `--cpus 0,1` lets them spread).
//!
//! `cargo run --release -p mproc --example manager_speed -- [--method fork|spawn|forkserver] [--cpus 0]`
//! (`taskset -c 0 python3 core/examples/manager_speed.py fork` measures CPython's manager alike)
//!
//! Prints the round trip of 8 bytes over a socketpair between two processes (the raw limit),
//! then per start method, from a child of that method: a dict set and a dict get, a list append,
//! a Value get, a Lock acquire+release (each per call, and as a multiple of the raw round trip);
//! then Manager start+shutdown against a process start+join of the same method.

mod common;

use mproc::{DictProxy, ListProxy, LockProxy, StartMethod, ValueProxy};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_op(n: u32, mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        samples.push(t.elapsed() / n);
    }
    median(samples)
}

fn noop() {}

/// Echoes 8-byte messages until the other end closes (a fork child).
fn echo(mut sock: UnixStream) {
    let mut buf = [0u8; 8];
    while sock.read_exact(&mut buf).is_ok() {
        if sock.write_all(&buf).is_err() {
            break;
        }
    }
}

/// The raw limit: an 8-byte ping-pong over a socketpair with another process.
fn raw_round_trip() -> mproc::Result<Duration> {
    let (mut a, b) = UnixStream::pair()?;
    let a_fd = std::os::fd::AsRawFd::as_raw_fd(&a);
    let echo_proc = mproc::get_context(StartMethod::Fork).process_closure(move || {
        // The child's copy of our end would keep the pair open after we close ours.
        let _ = nix::unistd::close(a_fd);
        echo(b)
    });
    echo_proc.start()?;
    let mut buf = [0u8; 8];
    let rt = per_op(5000, || {
        a.write_all(&buf).unwrap();
        a.read_exact(&mut buf).unwrap();
    });
    drop(a);
    echo_proc.join()?;
    Ok(rt)
}

/// Measures, from this process (a child of the method under test), the raw round trip and the
/// manager's basic operations in alternating batches (so that the machine's noise falls on both
/// alike), and sends the medians back in nanoseconds: raw, dict set, dict get, list append,
/// Value get, Lock acquire+release.
fn measure(
    d: DictProxy<u32, u32>,
    l: ListProxy<u32>,
    v: ValueProxy<u32>,
    lock: LockProxy,
    out: mproc::Connection,
) -> mproc::Result<()> {
    // The raw limit's peer: a fork child of this process, echoing over a socketpair.
    let (mut sock, b) = UnixStream::pair()?;
    let a_fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let echo_proc = mproc::get_context(StartMethod::Fork).process_closure(move || {
        let _ = nix::unistd::close(a_fd);
        echo(b)
    });
    echo_proc.start()?;
    d.set_item(1, 1)?;
    const N: u32 = 500;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); 6];
    for _ in 0..15 {
        let mut buf = [0u8; 8];
        let mut batch = |i: usize, f: &mut dyn FnMut()| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            samples[i].push(t.elapsed() / N);
        };
        batch(0, &mut || {
            sock.write_all(&buf).unwrap();
            sock.read_exact(&mut buf).unwrap();
        });
        batch(1, &mut || d.set_item(1, 2).unwrap());
        batch(2, &mut || {
            d.get_item(&1).unwrap();
        });
        batch(3, &mut || l.append(7).unwrap());
        batch(4, &mut || {
            v.get().unwrap();
        });
        batch(5, &mut || drop(lock.acquire().unwrap()));
        l.clear_all()?;
    }
    drop(sock);
    echo_proc.join()?;
    let ns: Vec<u64> = samples
        .into_iter()
        .map(|s| median(s).as_nanos() as u64)
        .collect();
    out.send(&ns)
}

trait ClearAll {
    fn clear_all(&self) -> mproc::Result<()>;
}

impl ClearAll for ListProxy<u32> {
    fn clear_all(&self) -> mproc::Result<()> {
        while !self.is_empty()? {
            self.del_item(0)?;
        }
        Ok(())
    }
}

fn pin(cpus: &[usize]) -> mproc::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| mproc::Error::Io(e.into()))
}

fn main() -> mproc::Result<()> {
    mproc::init();
    mproc::set_fork_warning(false);
    let cpus: Vec<usize> = common::arg("--cpus")
        .unwrap_or_else(|| "0".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|_| mproc::Error::InvalidArgument(format!("--cpus {c:?}")))
        })
        .collect::<mproc::Result<_>>()?;
    pin(&cpus)?;
    let methods = match common::arg("--method") {
        Some(m) => vec![m.parse()?],
        None => StartMethod::ALL.to_vec(),
    };
    let raw = raw_round_trip()?;
    println!(
        "cpus {cpus:?}: raw socketpair round trip {:.1} us (alone, fork child)",
        us(raw)
    );
    for m in methods {
        let ctx = mproc::get_context(m);
        let manager = ctx.manager()?;
        let (ours, theirs) = ctx.pipe()?;
        let p = ctx.process(
            measure,
            (
                manager.dict()?,
                manager.list()?,
                manager.value("i", 5u32)?,
                manager.lock()?,
                theirs,
            ),
        );
        p.start()?;
        let ns: Vec<u64> = ours.recv()?;
        p.join()?;
        drop(manager);
        let raw = Duration::from_nanos(ns[0]);
        let names = [
            "dict set",
            "dict get",
            "list append",
            "Value get",
            "Lock acquire+release",
        ];
        let line: Vec<String> = names
            .iter()
            .zip(&ns[1..])
            .map(|(name, &n)| {
                let d = Duration::from_nanos(n);
                format!(
                    "{name} {:.1} us ({:.2}x)",
                    us(d),
                    d.as_secs_f64() / raw.as_secs_f64()
                )
            })
            .collect();
        println!("{m}: raw {:.1} us; {}", us(raw), line.join("; "));
        let n = if m == StartMethod::Spawn { 10 } else { 30 };
        let lifecycle = per_op(n, || {
            let mgr = ctx.manager().unwrap();
            mgr.shutdown().unwrap();
        });
        let start_join = per_op(n, || {
            let p = ctx.process(noop, ());
            p.start().unwrap();
            p.join().unwrap();
        });
        println!(
            "{m}: Manager start+shutdown {:.2} ms; process start+join {:.2} ms ({:.2}x)",
            lifecycle.as_secs_f64() * 1e3,
            start_join.as_secs_f64() * 1e3,
            lifecycle.as_secs_f64() / start_join.as_secs_f64()
        );
    }
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
