//! The notes' timeout control (section 超时控制): join with a timeout, and terminate a task that
//! overran it.
//!
//! `cargo run -p mproc --example timeout_control -- --method spawn --timeout-ms 500 --task-ms 2000`
//! prints `task exceeded 500 ms` and `exitcode: -15`; with `--task-ms 100` it prints `exitcode: 0`.

use mproc::StartMethod;
use std::time::Duration;

fn test_func(task_name: String, task_ms: u64) {
    println!("task {task_name} runs for {task_ms} ms");
    std::thread::sleep(Duration::from_millis(task_ms));
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let method: StartMethod = arg("--method")
        .map(|m| m.parse())
        .transpose()?
        .unwrap_or(StartMethod::Spawn);
    let timeout_ms: u64 = number(arg("--timeout-ms"), 5000)?;
    let task_ms: u64 = number(arg("--task-ms"), 1000)?;

    let ctx = mproc::get_context(method);
    let process = ctx
        .process(test_func, ("demo".to_string(), task_ms))
        .name("test_process");
    process.start()?;
    process.join(Some(Duration::from_millis(timeout_ms)))?;
    if process.is_alive()? {
        process.terminate()?;
        process.join(None)?;
        println!("task exceeded {timeout_ms} ms");
    }
    match process.exitcode()? {
        Some(code) => println!("exitcode: {code}"),
        None => println!("exitcode: None"),
    }
    Ok(())
}

fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(value: Option<String>, default: u64) -> mproc::Result<u64> {
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            mproc::Error::InvalidArgument(format!("not a number of milliseconds: {v:?}"))
        }),
    }
}
