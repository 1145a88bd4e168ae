//! Shared memory: a child sets a shared `Value('d')` to 3.1415927 and negates every element of a
//! shared `Array('i', range(10))`; the parent prints `3.1415927` and
//! `[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]`. Python's documentation: multiprocessing, "Sharing
//! state between processes", Shared memory (the same program).
//!
//! `cargo run -p mproc --example value_array -- --method fork|spawn|forkserver`

// The documentation's literal 3.1415927, not π.
#![allow(clippy::approx_constant)]

mod common;

use mproc::{Array, Value};

fn f(n: Value<f64>, a: Array<i32>) -> mproc::Result<()> {
    n.set(3.1415927);
    for i in 0..a.len() {
        a.set(i, -a.get(i)?)?;
    }
    Ok(())
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let ctx = mproc::get_context(common::method()?);
    let num = ctx.value::<f64>(0.0)?;
    let arr = ctx.array::<i32>(0..10)?;
    let p = ctx.process(f, (num.clone(), arr.clone()));
    p.start()?;
    p.join()?;
    println!("{}", num.get());
    println!("{:?}", arr.to_vec());
    Ok(())
}
