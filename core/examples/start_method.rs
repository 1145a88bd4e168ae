//! Contexts and start methods: print the default start method, then have a child of the chosen
//! method send `hello` through a pipe. Python's documentation: multiprocessing, "Contexts and
//! start methods" (`get_context`, `get_start_method`).
//!
//! `cargo run -p mproc --example start_method -- --method forkserver`

mod common;

use mproc::Connection;

fn foo(conn: Connection) -> mproc::Result<()> {
    conn.send("hello")
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let default = mproc::get_start_method();
    println!("default start method: {default}");

    let method = if std::env::args().any(|a| a == "--method") {
        common::method()?
    } else {
        default
    };
    let ctx = mproc::get_context(method);
    let (parent_conn, child_conn) = ctx.pipe()?;
    let p = ctx.process(foo, (child_conn,));
    p.start()?;
    let msg: String = parent_conn.recv()?;
    println!("{msg}");
    p.join()?;
    Ok(())
}
