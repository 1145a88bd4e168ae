//! A pipe between two processes: a child sends `[42, None, 'hello']` and closes its end; the
//! parent receives and prints it. The Rust value is a list of a small Python-like enum, printed
//! in Rust's debug form: `[42, None, "hello"]`. Python's documentation: multiprocessing,
//! "Exchanging objects between processes", Pipes (the same program).
//!
//! `cargo run -p mproc --example pipe -- --method spawn`

mod common;

use mproc::Connection;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A few of Python's values, enough for the list `[42, None, 'hello']`.
#[derive(Serialize, Deserialize)]
enum Py {
    Int(i64),
    None,
    Str(String),
}

impl fmt::Debug for Py {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::Int(i) => write!(f, "{i}"),
            Py::None => f.write_str("None"),
            Py::Str(s) => write!(f, "{s:?}"),
        }
    }
}

fn f(mut conn: Connection) -> mproc::Result<()> {
    conn.send(&vec![Py::Int(42), Py::None, Py::Str("hello".into())])?;
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
    let value: Vec<Py> = parent_conn.recv()?;
    println!("{value:?}");
    p.join()?;
    Ok(())
}
