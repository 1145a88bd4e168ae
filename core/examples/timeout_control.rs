//! Waiting with a timeout: join a child with a timeout, and terminate it if it overran (its exit
//! code is then `-15`, killed by `SIGTERM`). Python's documentation: multiprocessing, "Process
//! and exceptions" (`join(timeout)`, `is_alive`, `terminate`, `exitcode`).
//!
//! `cargo run -p mproc --example timeout_control -- --method spawn --timeout-ms 500 --task-ms 2000`
//! prints `task exceeded 500 ms` and `exitcode: -15`; with `--task-ms 100` it prints `exitcode: 0`.

mod common;

use mproc::StartMethod;
use std::time::Duration;

fn test_func(task_name: String, task_ms: u64) {
    println!("task {task_name} runs for {task_ms} ms");
    std::thread::sleep(Duration::from_millis(task_ms));
}

fn main() -> mproc::Result<()> {
    mproc::init();
    // As Python's `get_context("spawn")`; --method picks another.
    let method: StartMethod = match common::arg("--method") {
        Some(_) => common::method()?,
        None => StartMethod::Spawn,
    };
    let timeout_ms: u64 = common::number("--timeout-ms", 5000)?;
    let task_ms: u64 = common::number("--task-ms", 1000)?;

    let ctx = mproc::get_context(method);
    let process = ctx
        .process(test_func, ("demo".to_string(), task_ms))
        .name("test_process");
    process.start()?;
    process.join_timeout(Duration::from_millis(timeout_ms))?;
    if process.is_alive()? {
        process.terminate()?;
        process.join()?;
        println!("task exceeded {timeout_ms} ms");
    }
    match process.exitcode()? {
        Some(code) => println!("exitcode: {code}"),
        None => println!("exitcode: None"),
    }
    Ok(())
}
