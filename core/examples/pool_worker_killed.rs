//! Beyond CPython: a pool worker killed while running a task. Pool(2) runs four tasks; the
//! second kills its own worker with `SIGKILL`. CPython would wait forever for that result; mproc
//! fails exactly that task with `WorkerLost`, replaces the worker and finishes the others.
//! Python's documentation: multiprocessing, "Process Pools" (where a lost worker is not
//! covered).
//!
//! `cargo run -p mproc --example pool_worker_killed -- --method fork|spawn|forkserver`
//!
//! Prints `1`, `lost: WorkerLost`, `4`, `9` (one per line, in submission order).

mod common;

use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}

fn kill_my_worker(_x: u64) -> u64 {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // Not reached: SIGKILL cannot be caught.
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let pool = ctx.pool().processes(2).build()?;
    let results = vec![
        pool.apply_async(square, (1,))?,
        pool.apply_async(kill_my_worker, (2,))?,
        pool.apply_async(square, (2,))?,
        pool.apply_async(square, (3,))?,
    ];
    for r in &results {
        match r.get_timeout(Duration::from_secs(10)) {
            Ok(v) => println!("{v}"),
            Err(e) => println!("lost: {}", e.kind_name()),
        }
    }
    pool.close()?;
    pool.join()?;
    Ok(())
}
