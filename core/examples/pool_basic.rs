//! A pool of workers: a pool of four workers runs five `long_time_task`s, each sleeping a
//! random time; task 4 starts only once one of the first four has ended. Python's documentation:
//! multiprocessing, "Using a pool of workers".
//!
//! `cargo run -p mproc --example pool_basic -- --method fork|spawn|forkserver [--max-sleep-ms N]`
//! (`N` defaults to 3000: up to three seconds, as Python's `random.random() * 3`).

mod common;

use common::{random_below, time_seed};
use std::time::{Duration, Instant};

fn long_time_task(name: u32, max_sleep_ms: u64, seed: u64) {
    println!("Run task {name} ({})...", std::process::id());
    let start = Instant::now();
    let ms = random_below(
        seed ^ u64::from(name).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        max_sleep_ms,
    );
    std::thread::sleep(Duration::from_millis(ms));
    println!(
        "Task {name} runs {:.2} seconds.",
        start.elapsed().as_secs_f64()
    );
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let max_sleep_ms: u64 = common::number("--max-sleep-ms", 3000)?;
    let seed = time_seed();
    println!("Parent process {}.", std::process::id());
    let p = ctx.pool().processes(4).build()?;
    let mut results = Vec::new();
    for i in 0..5 {
        results.push(p.apply_async(long_time_task, (i, max_sleep_ms, seed))?);
    }
    println!("Waiting for all subprocesses done...");
    p.close()?;
    p.join()?;
    for r in results {
        r.get()?;
    }
    println!("All subprocesses done.");
    Ok(())
}
