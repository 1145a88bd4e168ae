//! `AsyncResult.get()` called after the work is submitted keeps a pool parallel: all five tasks
//! are submitted first, then the pool is closed and joined, and only then are the results read.
//! The tasks run in parallel (elapsed ≈ the longest sleeps, never their sum); the results still
//! come in submission order. Python's documentation: multiprocessing, "Process Pools"
//! (`apply_async`, `close`, `join`, `AsyncResult.get`). Compare `get_before_join`.
//!
//! `cargo run -p mproc --example join_before_get -- --method fork|spawn|forkserver [--max-sleep-ms N]`
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
    let mut res_list = Vec::new();
    for i in 0..5 {
        res_list.push(pool.apply_async(f, (i, max_sleep_ms, seed))?);
    }
    pool.close()?;
    pool.join()?;
    for res in res_list {
        println!("{}", res.get()?);
    }
    println!("elapsed_ms: {}", t_start.elapsed().as_millis());
    Ok(())
}
