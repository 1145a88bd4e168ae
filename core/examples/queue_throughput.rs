//! Measures queue throughput: one producer process puts `N` small items (a `u64`), the parent
//! gets them all; prints items per second (Python's documentation: multiprocessing, "Pipes and
//! Queues"). Run it in release mode:
//!
//! `cargo run --release -p mproc --example queue_throughput -- --method fork --n 2000000`

mod common;

use mproc::Queue;
use std::time::Instant;

fn produce(q: Queue<u64>, n: u64) -> mproc::Result<()> {
    for i in 0..n {
        q.put(i)?;
    }
    Ok(())
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let method = common::method()?;
    let n: u64 = common::number("--n", 2_000_000)?;
    let ctx = mproc::get_context(method);
    let q = ctx.queue::<u64>()?;
    let p = ctx.process(produce, (q.clone(), n));
    p.start()?;
    // Time from the first item received to the last, so that process start-up is not counted.
    let first = q.get()?;
    assert_eq!(first, 0);
    let t0 = Instant::now();
    for i in 1..n {
        let v = q.get()?;
        assert_eq!(v, i, "items arrive in order");
    }
    let secs = t0.elapsed().as_secs_f64();
    p.join()?;
    println!(
        "{method}: {} items in {secs:.3} s: {:.2} M items/s",
        n - 1,
        (n - 1) as f64 / secs / 1e6
    );
    Ok(())
}
