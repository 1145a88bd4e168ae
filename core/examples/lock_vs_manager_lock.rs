//! `Lock()` against `Manager().Lock()`: four workers add to a shared counter under a
//! `multiprocessing.Lock()` (shared only by children of the process that made it), then four
//! under a manager's `Lock()`; then what only the manager's lock can do: another program,
//! started on its own (this binary again, in `--attach` mode, given the manager's address, key
//! and the lock's id, not an mproc child), waits for the same lock and takes it; and a program
//! that dies holding it does not leave it held (CPython's manager would): the manager releases
//! it and the next owner is told.
//!
//! `cargo run -p mproc --example lock_vs_manager_lock -- --method fork|spawn|forkserver` prints
//!
//! ```text
//! Lock(): 4 workers added 4000
//! Manager().Lock(): 4 workers added 400
//! another program waits for the manager's lock: it is held
//! another program took the manager's lock
//! a program died holding the manager's lock: the manager released it (owner_died: true)
//! ```

mod common;

use mproc::{Error, Lock, LockProxy, Proxy, Value, ValueProxy};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const WORKERS: usize = 4;

/// Adds `n` to a shared counter, one at a time, under a `multiprocessing.Lock()`.
fn local_worker(lock: Lock, counter: Value<i64>, n: u32) -> mproc::Result<()> {
    for _ in 0..n {
        let _guard = lock.lock()?;
        counter.set(counter.get() + 1);
    }
    Ok(())
}

/// The same, under a manager's `Lock()`, on a manager's `Value`: a read and a write per step,
/// which only the lock keeps from interleaving.
fn manager_worker(lock: LockProxy, counter: ValueProxy<i64>, n: u32) -> mproc::Result<()> {
    for _ in 0..n {
        let _guard = lock.acquire()?;
        counter.set(counter.get()? + 1)?;
    }
    Ok(())
}

fn run_workers(procs: Vec<mproc::Process>) -> mproc::Result<()> {
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?;
        if p.exitcode()? != Some(0) {
            return Err(Error::InvalidArgument(format!(
                "{} failed: {:?}",
                p.get_name(),
                p.exitcode()?
            )));
        }
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> mproc::Result<Vec<u8>> {
    if s.len() % 2 != 0 {
        return Err(Error::InvalidArgument(format!(
            "--authkey {s:?}: odd length"
        )));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| Error::InvalidArgument(format!("--authkey {s:?} is not hex")))
        })
        .collect()
}

/// `--attach ADDRESS --authkey HEX --lock ID [--die-holding]`: a program of its own, given
/// where the lock lives.
fn attach(address: &str) -> mproc::Result<()> {
    let key = unhex(&common::arg("--authkey").unwrap_or_default())?;
    let id = common::arg("--lock").unwrap_or_default();
    let lock = LockProxy::try_from(Proxy::connect(address, &key, "Lock", &id)?)?;
    if std::env::args().any(|a| a == "--die-holding") {
        lock.acquire()?.forget();
        println!("holding");
        // Gone without releasing: `exit` runs no destructor, says no goodbye to the manager.
        std::process::exit(0);
    }
    if lock.try_acquire()?.is_none() {
        println!("busy");
    }
    let guard = lock.acquire()?;
    println!("took it");
    guard.release()
}

/// Starts this binary in `--attach` mode and returns it with a reader of its output.
fn another_program(
    manager: &mproc::Manager,
    lock: &LockProxy,
    extra: &[&str],
) -> mproc::Result<(std::process::Child, BufReader<std::process::ChildStdout>)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--attach", &manager.address().to_string()])
        .args(["--authkey", &hex(manager.authkey())])
        .args(["--lock", lock.as_proxy().id()])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()?;
    let out = BufReader::new(child.stdout.take().expect("piped"));
    Ok((child, out))
}

fn line(out: &mut BufReader<std::process::ChildStdout>) -> mproc::Result<String> {
    let mut s = String::new();
    out.read_line(&mut s)?;
    Ok(s.trim_end().to_string())
}

fn main() -> mproc::Result<()> {
    mproc::init();
    if let Some(address) = common::arg("--attach") {
        return attach(&address);
    }
    let ctx = mproc::get_context(common::method()?);

    // multiprocessing.Lock(): shared by the children of this process.
    let lock = ctx.lock()?;
    let counter = ctx.value(0i64)?;
    let n: u32 = 1000;
    let procs = (0..WORKERS)
        .map(|_| ctx.process(local_worker, (lock.clone(), counter.clone(), n)))
        .collect();
    run_workers(procs)?;
    println!("Lock(): {WORKERS} workers added {}", counter.get());

    // Manager().Lock(): held by the manager, shared by whoever connects to it.
    let manager = ctx.manager()?;
    let mlock = manager.lock()?;
    let mcounter = manager.value("i", 0i64)?;
    let n: u32 = 100;
    let procs = (0..WORKERS)
        .map(|_| ctx.process(manager_worker, (mlock.clone(), mcounter.clone(), n)))
        .collect();
    run_workers(procs)?;
    println!(
        "Manager().Lock(): {WORKERS} workers added {}",
        mcounter.get()?
    );

    // Another program, not a child of mproc, given only the address, the key and the lock's id.
    let held = mlock.acquire()?;
    let (mut other, mut out) = another_program(&manager, &mlock, &[])?;
    if line(&mut out)? == "busy" {
        println!("another program waits for the manager's lock: it is held");
    }
    held.release()?;
    if line(&mut out)? == "took it" {
        println!("another program took the manager's lock");
    }
    other.wait()?;

    // A program that dies holding the lock: the manager releases it, the next owner is told.
    let (mut dying, mut out) = another_program(&manager, &mlock, &["--die-holding"])?;
    let said = line(&mut out)?;
    dying.wait()?;
    if said == "holding" {
        match mlock.acquire_timeout(Duration::from_secs(30))? {
            Some(g) => println!(
                "a program died holding the manager's lock: the manager released it (owner_died: {})",
                g.owner_died()
            ),
            None => println!("a program died holding the manager's lock: it stayed held"),
        }
    }
    Ok(())
}
