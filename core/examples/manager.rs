//! A server process whose objects other processes use through proxies: the parent makes a dict
//! and a list in a manager, a child (started by any method) changes both through its proxies,
//! and the parent prints them. Python's documentation: multiprocessing, "Sharing state between
//! processes" (Server process), the same program.
//!
//! `cargo run -p mproc --example manager -- --method fork|spawn|forkserver` prints
//!
//! ```text
//! {1: '1', '2': 2, 0.25: None}
//! [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! ```
//!
//! as CPython 3.7 and later print it: a dict keeps its insertion order. (Python's documentation,
//! and the notes after it, still show `{0.25: None, 1: '1', '2': 2}`, the order of Python 2's
//! unordered dicts.)

mod common;

use mproc::pickle::Value;
use mproc::{DictProxy, ListProxy};

fn f(d: DictProxy, l: ListProxy) -> mproc::Result<()> {
    d.set_item(Value::Int(1), Value::from("1"))?;
    d.set_item(Value::from("2"), Value::Int(2))?;
    d.set_item(Value::Float(0.25), Value::None)?;
    l.reverse()
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let manager = ctx.manager()?;
    let d = manager.dict()?;
    let l = manager.list_from((0..10).map(Value::from))?;

    let p = ctx.process(f, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;

    println!("{d}");
    println!("{l}");
    Ok(())
}
