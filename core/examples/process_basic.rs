//! The notes' first example (section "Process"): a parent starts one child that prints its name
//! and pid, and waits for it.
//!
//! `cargo run -p mproc --example process_basic -- --method fork|spawn|forkserver`

use mproc::StartMethod;

fn run_proc(name: String) {
    println!("Run child process {name} ({})...", std::process::id());
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(method_from_args()?);
    println!("Parent process {}.", std::process::id());
    let p = ctx.process(run_proc, ("test".to_string(),));
    println!("Child process will start.");
    p.start()?;
    p.join(None)?;
    println!("Child process end.");
    Ok(())
}

/// `--method M` from the command line, or the platform default.
fn method_from_args() -> mproc::Result<StartMethod> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--method") {
        Some(i) => args.get(i + 1).map(String::as_str).unwrap_or("").parse(),
        None => Ok(StartMethod::platform_default()),
    }
}
