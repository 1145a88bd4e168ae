//! Beyond CPython: awaiting a pool from async code. `AsyncResult` is a `Future` and
//! `IMapIterator::into_stream` a `futures_core::Stream`, woken by the pool's own result handling
//! (mproc depends on no runtime; this example uses tokio). Python's documentation:
//! multiprocessing, "Process Pools" (`apply_async`, `imap`), and asyncio's
//! `run_in_executor`, which is how Python code awaits a pool.
//!
//! `cargo run -p mproc --example pool_async -- --method fork|spawn|forkserver`
//!
//! Prints `square(7) = 49`, `sum of squares below 100 = 328350`, then `imap: 0 1 4 9 16` and
//! `slow task: TaskTimeout` (a task with a 200 ms deadline that sleeps 10 s, awaited too).

mod common;

use futures_core::Stream;
use std::pin::Pin;
use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let pool = ctx.pool().processes(2).build()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        println!("square(7) = {}", pool.apply_async(square, (7,))?.await?);
        let squares = pool.map_async(square, 0..100)?.await?;
        println!("sum of squares below 100 = {}", squares.iter().sum::<u64>());
        let mut stream = pool.imap(square, 0..5)?.into_stream();
        let mut line = String::from("imap:");
        while let Some(r) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
            line += &format!(" {}", r?);
        }
        println!("{line}");
        let slow = pool
            .apply_async_with(sleep_ms, (10_000,))
            .timeout(Duration::from_millis(200))
            .submit()?;
        match slow.await {
            Ok(v) => println!("slow task: {v}"),
            Err(e) => println!("slow task: {}", e.kind_name()),
        }
        Ok::<(), mproc::Error>(())
    })?;
    pool.close()?;
    pool.join()?;
    Ok(())
}
