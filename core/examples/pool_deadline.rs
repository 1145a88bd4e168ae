//! Beyond CPython: pool tasks with a deadline. A pool of two workers, every task with a 300 ms
//! deadline (`task_timeout`); four tasks, of which task 2 sleeps 10 s. CPython's `get(timeout)`
//! would stop waiting but leave the task running, holding its worker for the full 10 s; mproc
//! kills that worker at the deadline, fails exactly that task with `TaskTimeout`, starts a
//! replacement, and the others finish as usual. Python's documentation: multiprocessing,
//! "Process Pools" (`AsyncResult.get(timeout)`, which only stops waiting).
//!
//! `cargo run -p mproc --example pool_deadline -- --method fork|spawn|forkserver`
//!
//! Prints `task 0: 0`, `task 1: 1`, `task 2: TaskTimeout`, `task 3: 9` and `elapsed_ms: n`, with
//! n well under the 10 s that task 2 asked for.

mod common;

use std::time::{Duration, Instant};

/// Sleeps `ms`, then returns the square of `i`.
fn sleep_square(i: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    i * i
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let t0 = Instant::now();
    let pool = ctx
        .pool()
        .processes(2)
        .task_timeout(Duration::from_millis(300))
        .build()?;
    let sleeps_ms = [50, 50, 10_000, 50];
    let results = sleeps_ms
        .iter()
        .enumerate()
        .map(|(i, &ms)| pool.apply_async(sleep_square, (i as u64, ms)))
        .collect::<mproc::Result<Vec<_>>>()?;
    for (i, r) in results.iter().enumerate() {
        match r.get() {
            Ok(v) => println!("task {i}: {v}"),
            Err(e) => println!("task {i}: {}", e.kind_name()),
        }
    }
    pool.close()?;
    pool.join()?;
    println!("elapsed_ms: {}", t0.elapsed().as_millis());
    Ok(())
}
