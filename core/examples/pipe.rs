//! A pipe between two processes: a child sends `[42, None, 'hello']` and closes its end; the
//! parent receives and prints it as Python prints it: `[42, None, 'hello']`. The Rust value is a
//! [`mproc::pickle::Value`], Python's values as one enum (its `Display` is Python's `repr`).
//! Python's documentation: multiprocessing, "Exchanging objects between processes", Pipes (the
//! same program).
//!
//! `cargo run -p mproc --example pipe -- --method spawn`

mod common;

use mproc::pickle::Value;
use mproc::Connection;

fn f(mut conn: Connection) -> mproc::Result<()> {
    conn.send(&Value::List(vec![42.into(), Value::None, "hello".into()]))?;
    conn.close();
    Ok(())
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let method = common::method()?;
    let ctx = mproc::get_context(method);
    let (parent_conn, child_conn) = ctx.pipe()?;
    let p = ctx.process(f, (child_conn,));
    p.start()?;
    let value: Value = parent_conn.recv()?;
    println!("{value}"); // [42, None, 'hello']
    p.join()?;
    Ok(())
}
