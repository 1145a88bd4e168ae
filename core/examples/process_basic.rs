//! Starting a process: a parent starts one child that prints its name and pid, and waits for it
//! with `join`. Python's documentation: multiprocessing, "The Process class".
//!
//! `cargo run -p mproc --example process_basic -- --method fork|spawn|forkserver`

mod common;

fn run_proc(name: String) {
    println!("Run child process {name} ({})...", std::process::id());
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    println!("Parent process {}.", std::process::id());
    let p = ctx.process(run_proc, ("test".to_string(),));
    println!("Child process will start.");
    p.start()?;
    p.join()?;
    println!("Child process end.");
    Ok(())
}
