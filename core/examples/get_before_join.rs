//! `AsyncResult.get()` called too early serialises a pool: five tasks that sleep a random time
//! are submitted in a loop that calls `get()` on each before submitting the next, so the pool
//! runs them one after another (elapsed ≈ the sum of the sleeps). Python's documentation:
//! multiprocessing, "Process Pools" (`AsyncResult.get`). Compare `join_before_get`.
//!
//! `cargo run -p mproc --example get_before_join -- --method fork|spawn|forkserver [--max-sleep-ms N]`
//! (`N` defaults to 3000).

mod common;

use common::{random_below, time_seed};
use std::time::{Duration, Instant};

fn f(x: u64, max_sleep_ms: u64, seed: u64) -> u64 {
    let ms = random_below(seed ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15), max_sleep_ms);
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let max_sleep_ms: u64 = common::number("--max-sleep-ms", 3000)?;
    let seed = time_seed();
    let pool = ctx.pool().processes(4).build()?;
    let t_start = Instant::now();
    for i in 0..5 {
        let result = pool.apply_async(f, (i, max_sleep_ms, seed))?;
        println!("{}", result.get()?);
    }
    pool.close()?;
    pool.join()?;
    println!("elapsed_ms: {}", t_start.elapsed().as_millis());
    Ok(())
}
