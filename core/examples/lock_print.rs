//! A lock shared by processes: ten processes print `hello world <i>` while holding one shared
//! `Lock`, so every line comes out whole. Python's documentation: multiprocessing,
//! "Synchronization between processes" (the same program).
//!
//! `cargo run -p mproc --example lock_print -- --method fork|spawn|forkserver`

mod common;

use mproc::Lock;

fn f(l: Lock, i: u32) -> mproc::Result<()> {
    let _guard = l.acquire()?;
    println!("hello world {i}");
    Ok(())
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let lock = ctx.lock()?;
    let mut procs = Vec::new();
    for num in 0..10 {
        let p = ctx.process(f, (lock.clone(), num));
        p.start()?;
        procs.push(p);
    }
    for p in &procs {
        p.join()?;
    }
    Ok(())
}
