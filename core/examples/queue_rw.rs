//! A queue between two processes: a writer process puts `A`, `B`, `C` into a queue, a reader
//! process prints each item it gets, in order; the parent joins the writer and then terminates
//! the reader, whose loop never ends. Python's documentation: multiprocessing, "Exchanging
//! objects between processes", Queues (and "Pipes and Queues" in the reference).
//!
//! `cargo run -p mproc --example queue_rw -- --method fork|spawn|forkserver`

mod common;

use mproc::Queue;
use std::time::Duration;

fn write(q: Queue<String>) -> mproc::Result<()> {
    println!("Process to write: {}", std::process::id());
    for (i, value) in ["A", "B", "C"].into_iter().enumerate() {
        println!("Put {value} to queue...");
        q.put(value.to_string())?;
        // As Python's `time.sleep(random.random())`, with a pseudo-random pause.
        let pause = 200 + (std::process::id() as u64 * 7919 + i as u64 * 104_729) % 300;
        std::thread::sleep(Duration::from_millis(pause));
    }
    Ok(())
}

fn read(q: Queue<String>) -> mproc::Result<()> {
    println!("Process to read: {}", std::process::id());
    loop {
        let value = q.get()?;
        println!("Get {value} from queue.");
    }
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    // The parent makes the queue and passes it to both children.
    let q = ctx.queue::<String>()?;
    let pw = ctx.process(write, (q.clone(),));
    let pr = ctx.process(read, (q.clone(),));
    pw.start()?;
    pr.start()?;
    pw.join()?;
    // The reader loops forever: it can only be terminated.
    pr.terminate()?;
    pr.join()?;
    Ok(())
}
