//! Quick pool timings against their raw counterparts, measured in one run (medians).
//!
//! `cargo run --release -p mproc --example pool_speed -- [--method fork|spawn|forkserver]`
//! (`python3 core/examples/pool_speed.py fork spawn forkserver` measures CPython alike)
//!
//! Prints, per start method: the round trip of 8 bytes over a socketpair to a child (raw), an
//! `apply_async(..).get()` round trip, `Pool.map` of 10 000 trivial items (default chunks and
//! chunksize 1), `Pool(2)` create+close+join, and start+join of one process.

use mproc::StartMethod;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn identity(x: u64) -> u64 {
    x
}

fn noop() {}

fn echo(fd: Fd, other_end: RawFd) {
    // A fork child inherits the parent's end too: close it, or no end of file ever comes.
    let _ = nix::unistd::close(other_end);
    let mut sock = fd.0;
    let mut buf = [0u8; 8];
    while sock.read_exact(&mut buf).is_ok() {
        if sock.write_all(&buf).is_err() {
            return;
        }
    }
}

/// A socket that a fork child inherits (fork only: it does not serialise).
struct Fd(UnixStream);
impl serde::Serialize for Fd {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("fork only"))
    }
}
impl<'de> serde::Deserialize<'de> for Fd {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("fork only"))
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_op(n: u32, f: impl FnMut()) -> Duration {
    let mut f = f;
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

fn main() -> mproc::Result<()> {
    mproc::init();
    mproc::set_fork_warning(false);
    let args: Vec<String> = std::env::args().collect();
    let methods: Vec<StartMethod> = match args.iter().position(|a| a == "--method") {
        Some(i) => vec![args[i + 1].parse()?],
        None => vec![
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::Forkserver,
        ],
    };

    // Raw: 8-byte ping-pong over a socketpair with a fork child.
    let (mut a, b) = UnixStream::pair()?;
    let child = mproc::get_context(StartMethod::Fork).process(echo, (Fd(b), a.as_raw_fd()));
    child.start()?;
    let mut buf = [0u8; 8];
    let raw = per_op(2000, || {
        a.write_all(&buf).unwrap();
        a.read_exact(&mut buf).unwrap();
    });
    drop(a);
    child.join(None)?;
    println!(
        "raw socketpair round trip: {:.1} us",
        raw.as_secs_f64() * 1e6
    );

    if args.iter().any(|a| a == "--phases") {
        for m in &methods {
            let ctx = mproc::get_context(*m);
            for _ in 0..5 {
                let t = Instant::now();
                let p = ctx.pool().processes(2).build().unwrap();
                let built = t.elapsed();
                p.close().unwrap();
                p.join().unwrap();
                let done = t.elapsed();
                let t = Instant::now();
                let q = ctx.process(noop, ());
                q.start().unwrap();
                let started = t.elapsed();
                q.join(None).unwrap();
                println!("{m}: pool build {built:?} total {done:?}; process start {started:?} total {:?}", t.elapsed());
            }
        }
        return Ok(());
    }
    for m in methods {
        let ctx = mproc::get_context(m);
        let pool = ctx.pool().processes(2).build()?;
        pool.apply(identity, (1,))?;
        let rt = per_op(2000, || {
            pool.apply_async(identity, (1,)).unwrap().get().unwrap();
        });
        let items: Vec<u64> = (0..10_000).collect();
        let map_default = per_op(5, || {
            pool.map(identity, items.clone()).unwrap();
        });
        let map_one = per_op(3, || {
            pool.map_async_with(identity, items.clone())
                .chunksize(1)
                .submit()
                .and_then(|r| r.get())
                .unwrap();
        });
        pool.close()?;
        pool.join()?;
        let n = if m == StartMethod::Spawn { 10 } else { 30 };
        let create = per_op(n, || {
            let p = ctx.pool().processes(2).build().unwrap();
            p.close().unwrap();
            p.join().unwrap();
        });
        let one = per_op(n, || {
            let p = ctx.process(noop, ());
            p.start().unwrap();
            p.join(None).unwrap();
        });
        println!(
            "{m}: apply_async+get {:.1} us ({:.2}x raw); map 10k default {:.2} ms; map 10k chunksize=1 {:.2} ms; Pool(2) create+close+join {:.2} ms; process start+join {:.2} ms ({:.2}x)",
            rt.as_secs_f64() * 1e6,
            rt.as_secs_f64() / raw.as_secs_f64(),
            map_default.as_secs_f64() * 1e3,
            map_one.as_secs_f64() * 1e3,
            create.as_secs_f64() * 1e3,
            one.as_secs_f64() * 1e3,
            create.as_secs_f64() / one.as_secs_f64(),
        );
    }
    Ok(())
}
