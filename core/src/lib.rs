//! # mproc: Python's `multiprocessing`, re-made in Rust
//!
//! Real processes with Python's model: start methods ([`StartMethod::Fork`],
//! [`StartMethod::Spawn`], [`StartMethod::Forkserver`]) chosen per [`Context`];
//! [`Process`] with `join(timeout)`, `is_alive`, `terminate`, `kill` and Python's exit codes;
//! [`Pipe`](pipe)s of [`Connection`]s framed as CPython frames them; [`Queue`],
//! [`SimpleQueue`] and [`JoinableQueue`] over a shared-memory ring (no feeder thread: what `put`
//! accepted is delivered exactly once, even if the putter exits at once); the locks and their
//! kin ([`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`],
//! [`Barrier`]), robust against a dead owner; shared [`Value`]s and [`Array`]s by Python
//! typecode, and named [`SharedMemory`]; a [`Manager`], whose server process holds objects that
//! any process uses through proxies, over CPython's own wire ([`managers`]).
//!
//! ```no_run
//! use mproc::StartMethod;
//! use std::time::Duration;
//!
//! fn work(name: String, n: u32) {
//!     println!("{name}: {}", n * n);
//! }
//!
//! fn main() -> mproc::Result<()> {
//!     mproc::init(); // first line of main: spawned and forkserver children branch off here
//!     let ctx = mproc::get_context(StartMethod::Spawn);
//!     let p = ctx.process(work, ("worker".to_string(), 7)).name("worker");
//!     p.start()?;
//!     p.join_timeout(Duration::from_secs(5))?;
//!     if p.is_alive()? {
//!         p.terminate()?;
//!         p.join()?;
//!     }
//!     println!("exitcode: {:?}", p.exitcode()?);
//!     Ok(())
//! }
//! ```
//!
//! ## Coming from Python
//! Every call of the user's notes on `multiprocessing`, and its mproc form. Blocking, non-blocking
//! and timed waits are separate methods (`get()`, `try_get()`, `get_timeout(d)`), never a
//! `(block, timeout)` pair; a lock is held by the guard its `acquire` returns.
//!
//! | Python | mproc |
//! |---|---|
//! | `if __name__ == '__main__':` | [`mproc::init()`](init) as the first line of `main` |
//! | `os.getpid()` | `std::process::id()` |
//! | `Process(target=f, args=(a,), name='n', daemon=True)` | `ctx.process(f, (a,)).name("n").daemon(true)` ([`Context::process`]), or [`Process::new`]`(f, (a,))` in the default context |
//! | `p.start()` | [`p.start()?`](Process::start) |
//! | `p.join()` | [`p.join()?`](Process::join) (returns the exit code) |
//! | `p.join(timeout)` | [`p.join_timeout(d)?`](Process::join_timeout) (`Some(exit code)`, or `None` if still running) |
//! | `p.is_alive()` | [`p.is_alive()?`](Process::is_alive) |
//! | `p.terminate()` / `p.kill()` | [`p.terminate()?`](Process::terminate) / [`p.kill()?`](Process::kill) |
//! | `p.exitcode` / `p.pid` / `p.name` | [`p.exitcode()?`](Process::exitcode) / [`p.pid()`](Process::pid) / [`p.get_name()`](Process::get_name) |
//! | `p.close()` | [`p.close()?`](Process::close) |
//! | `multiprocessing.set_start_method('spawn')` | [`mproc::set_start_method(StartMethod::Spawn)?`](set_start_method) |
//! | `set_start_method('spawn', force=True)` | [`mproc::force_start_method(StartMethod::Spawn)`](force_start_method) |
//! | `multiprocessing.get_start_method()` | [`mproc::get_start_method()`](get_start_method) |
//! | `get_start_method(allow_none=True)` | [`mproc::peek_start_method()`](peek_start_method) |
//! | `mp.get_context('spawn')` | [`mproc::get_context(StartMethod::Spawn)`](get_context) |
//! | `ctx.Process(...)` / `ctx.Queue()` | [`ctx.process(f, args)`](Context::process) / [`ctx.queue::<T>()?`](Context::queue) |
//! | `Queue()` / `Queue(maxsize)` | [`ctx.queue::<T>()?`](Context::queue) / [`ctx.queue_builder().maxsize(n).build::<T>()?`](QueueBuilder) |
//! | `q.put(x)` | [`q.put(x)?`](Queue::put) (a failed put hands `x` back: [`PutError::into_inner`]) |
//! | `q.put(x, timeout=t)` / `q.put_nowait(x)` | [`q.put_timeout(x, d)?`](Queue::put_timeout) / [`q.try_put(x)?`](Queue::try_put) |
//! | `q.get()` | [`q.get()?`](Queue::get) |
//! | `q.get(timeout=t)` / `q.get_nowait()` | [`q.get_timeout(d)?`](Queue::get_timeout) / [`q.try_get()?`](Queue::try_get) |
//! | `Pipe()` / `Pipe(duplex=False)` | [`mproc::pipe()?`](pipe) or [`ctx.pipe()?`](Context::pipe) / [`mproc::pipe_simplex()?`](pipe_simplex) |
//! | `conn.send(obj)` / `conn.recv()` | [`conn.send(&obj)?`](Connection::send) / [`conn.recv::<T>()?`](Connection::recv) |
//! | `conn.poll(t)` | [`conn.poll_timeout(d)?`](Connection::poll_timeout) ([`conn.poll()?`](Connection::poll) does not wait) |
//! | `conn.close()` | [`conn.close()`](Connection::close) |
//! | `Lock()` | [`ctx.lock()?`](Context::lock) |
//! | `l.acquire(); ...; l.release()` | `{ let _guard = l.acquire()?; ... }` ([`Lock::acquire`]; the guard releases) |
//! | `with lock: ...` | `let _guard = lock.lock()?;` ([`Lock::lock`]) |
//! | `l.acquire(False)` / `l.acquire(timeout=t)` | [`l.try_acquire()?`](Lock::try_acquire) / [`l.acquire_timeout(d)?`](Lock::acquire_timeout) (`Option<LockGuard>`) |
//! | `Value('d', 0.0)` / `num.value` | [`ctx.value(0.0f64)?`](Context::value) / [`num.get()`](Value::get), [`num.set(x)`](Value::set) |
//! | `Array('i', range(10))` / `arr[i]` / `arr[:]` | [`ctx.array(0..10i32)?`](Context::array) / [`arr.get(i)`](Array::get), [`arr.set(i, x)`](Array::set) / [`arr.to_vec()`](Array::to_vec) |
//! | `os.cpu_count()` | [`mproc::cpu_count()`](cpu_count) |
//! | `Pool(4)` / `Pool(processes=4)` | [`Pool::new(4)?`](Pool::new) / [`ctx.pool().processes(4).build()?`](Context::pool) |
//! | `Pool(initializer=f, initargs=a, maxtasksperchild=n)` | [`ctx.pool().initializer(f, a).maxtasksperchild(n).build()?`](PoolBuilder) |
//! | `pool.apply(f, (x,))` | [`pool.apply(f, (x,))?`](Pool::apply) |
//! | `pool.apply_async(f, (x,))` | [`pool.apply_async(f, (x,))?`](Pool::apply_async) → [`AsyncResult`] |
//! | `apply_async(f, args, callback=c, error_callback=e)` | [`pool.apply_async_with(f, args).callback(c).error_callback(e).submit()?`](Pool::apply_async_with) |
//! | `pool.map(f, xs)` / `pool.map_async(f, xs)` | [`pool.map(f, xs)?`](Pool::map) / [`pool.map_async(f, xs)?`](Pool::map_async) |
//! | `pool.close()` / `pool.terminate()` / `pool.join()` | [`pool.close()?`](Pool::close) / [`pool.terminate()?`](Pool::terminate) / [`pool.join()?`](Pool::join) |
//! | `res.get()` / `res.get(timeout)` | [`res.get()?`](AsyncResult::get) / [`res.get_timeout(d)?`](AsyncResult::get_timeout) |
//! | `res.wait()` / `res.wait(timeout)` | [`res.wait()`](AsyncResult::wait) / [`res.wait_timeout(d)`](AsyncResult::wait_timeout) |
//! | `res.ready()` / `res.successful()` | [`res.ready()`](AsyncResult::ready) / [`res.successful()?`](AsyncResult::successful) |
//! | `multiprocessing.TimeoutError` | [`Error::Timeout`] |
//! | `time.sleep(s)` | `std::thread::sleep(Duration::from_secs_f64(s))` |
//! | `with Manager() as manager:` | [`let manager = ctx.manager()?;`](Context::manager) (dropping it shuts the server down; [`manager.shutdown()?`](Manager::shutdown) does so early) |
//! | `manager.dict()` / `manager.list(range(10))` | [`manager.dict::<K, V>()?`](Manager::dict) / [`manager.list_from(0..10)?`](Manager::list_from) |
//! | `d[k] = v` / `d[k]` / `l.append(x)` / `str(l)` | [`d.set_item(k, v)?`](DictProxy::set_item) / [`d.get_item(&k)?`](DictProxy::get_item) / [`l.append(x)?`](ListProxy::append) / [`l.as_proxy().repr()?`](Proxy::repr) |
//! | `manager.Lock()` / `manager.Queue()` / `manager.Value('i', 0)` | [`manager.lock()?`](Manager::lock) / [`manager.queue::<T>(None)?`](Manager::queue) / [`manager.value("i", 0)?`](Manager::value) |
//!
//! The same calls, compiled:
//!
//! ```no_run
//! use mproc::{Connection, Lock, Queue, StartMethod};
//! use std::time::Duration;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn child(q: Queue<String>, conn: Connection, lock: Lock) -> mproc::Result<()> {
//!     {
//!         let _guard = lock.acquire()?; // l.acquire() ... l.release()
//!         println!("child {}", std::process::id());
//!     }
//!     q.put("from the queue".to_string())?;
//!     conn.send(&(42, None::<i64>, "hello"))?;
//!     Ok(())
//! }
//!
//! fn main() -> mproc::Result<()> {
//!     mproc::init();
//!     mproc::set_start_method(StartMethod::Spawn)?;
//!     assert_eq!(mproc::get_start_method(), StartMethod::Spawn);
//!     let ctx = mproc::get_context(StartMethod::Forkserver);
//!     let q = ctx.queue::<String>()?;
//!     let (parent_conn, child_conn) = ctx.pipe()?;
//!     let lock = ctx.lock()?;
//!     let p = ctx
//!         .process(child, (q.clone(), child_conn, lock.clone()))
//!         .name("child");
//!     p.start()?;
//!     println!("{}", q.get_timeout(Duration::from_secs(5))?);
//!     if parent_conn.poll_timeout(Duration::from_secs(5))? {
//!         let (n, none, s): (i32, Option<i64>, String) = parent_conn.recv()?;
//!         println!("{n} {none:?} {s}");
//!     }
//!     if p.join_timeout(Duration::from_secs(5))?.is_none() {
//!         p.terminate()?;
//!         p.join()?;
//!     }
//!     println!("exitcode: {:?}", p.exitcode()?);
//!
//!     let num = ctx.value(0.0f64)?;
//!     let arr = ctx.array(0..10i32)?;
//!     num.set(3.1415927);
//!     arr.set(0, -1)?;
//!     println!("{} {:?}", num.get(), arr.to_vec());
//!
//!     let pool = ctx.pool().processes(mproc::cpu_count().min(4)).build()?;
//!     let res = pool.apply_async(square, (10,))?;
//!     println!("{}", res.get_timeout(Duration::from_secs(1))?);
//!     println!("{:?}", pool.map(square, 0..10u64)?);
//!     pool.close()?;
//!     pool.join()?;
//!     Ok(())
//! }
//! ```
//!
//! ## Targets
//! A target is a function (or a closure that captures nothing) taking serde-serialisable
//! arguments, given as a tuple; see [`Target`]. The same code runs under every start method.
//! Closures that capture state run only under `fork` ([`Context::process_closure`]).
//!
//! ## `mproc::init()`
//! Under `spawn`, the child is a fresh execution of the same binary, and the forkserver is one
//! too. [`init`] must be the first call in `main`: in such a process it takes over and never
//! returns; elsewhere it returns at once. Test and bench binaries, whose `main` is not yours, use
//! [`enable_test_support!`] instead.
//!
//! ## Exit codes (as Python)
//! Return: `0`. [`exit`]`(n)`: `n`. Panic: `1`, with `Process <name>:` and the panic message on
//! the child's stderr. Killed by signal `N`: `-N`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod children;
pub mod connection;
mod context;
mod error;
mod launch;
pub mod managers;
mod method;
pub mod pickle;
pub mod pool;
mod popen;
mod process;
mod queues;
mod reduction;
mod region;
mod role;
mod sharedctypes;
mod state;
mod synchronize;
#[allow(unsafe_code)]
mod sys;
mod target;
mod tracker;

pub use children::{active_children, ChildInfo};
pub use connection::{pipe, pipe_simplex, Connection, DEFAULT_MAX_MESSAGE_SIZE};
pub use context::{
    clear_start_method, cpu_count, default_context, force_start_method, get_all_start_methods,
    get_context, get_start_method, peek_start_method, set_start_method, Context,
};
pub use error::{Error, Result};
pub use launch::child::exit;
pub use launch::fork::set_fork_warning;
pub use managers::{
    AcquireGuard, ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy, ListProxy,
    LockProxy, Manager, ManagerBuilder, ManagerStats, NamespaceProxy, Proxy, QueueProxy,
    RLockProxy, SemaphoreProxy, ValueProxy,
};
pub use method::StartMethod;
pub use pool::{
    ApplyBuilder, AsyncResult, Callbacks, IMapBuilder, IMapIterator, IMapStream, MapBuilder,
    MapResult, Pool, PoolBuilder,
};
pub use process::{
    current_process, parent_process, CurrentProcess, Ending, Process, RunOutcome,
    DEFAULT_TERMINATE_GRACE,
};
pub use queues::{JoinableQueue, PutError, Queue, QueueBuilder, SimpleQueue, DEFAULT_CAPACITY};
pub use sharedctypes::{
    Array, CChar, DynArray, Number, RawArray, RawValue, Scalar, SharedMemory, TypeCode, Value,
};
pub use synchronize::{
    Barrier, BarrierBuilder, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event,
    Lock, LockGuard, RLock, RLockGuard, Semaphore, SemaphoreGuard,
};
pub use target::{Target, Termination};

/// The raw OS limits that `cargo xtask bench` measures mproc against, for the bench harness
/// only: not part of mproc's API (hidden from the documentation, no stability promise).
///
/// Each is safe on its own terms: [`fork_run`](bench_limits::fork_run) never returns into the
/// caller's frames in the child (it runs the closure and `_exit`s; a panic there is exit code 1;
/// unlike mproc's own exact fork, it reports a pidfd it could not open although the child runs),
/// [`spawn_exec`](bench_limits::spawn_exec) only makes async-signal-safe calls between `fork` and
/// `execve` on an [`ExecPlan`](bench_limits::ExecPlan) built before the fork, and
/// [`exit_now`](bench_limits::exit_now) is `_exit`.
#[doc(hidden)]
pub mod bench_limits {
    pub use crate::sys::{exit_now, fork_run, spawn_exec, ExecPlan};
}

/// The branch for processes that mproc executes: call it first in `main`.
///
/// In a child started by the spawn method, or in a forkserver, this runs what the parent asked
/// for and then leaves the process; it never returns. In any other process it returns at once.
pub fn init() {
    let role = match role::Role::take() {
        None => return,
        Some(Ok(role)) => role,
        Some(Err(value)) => {
            eprintln!("mproc: {} has the unknown value {value:?}", role::ROLE_ENV);
            sys::exit_now(1);
        }
    };
    let Some(chan) = sys::take_spawn_channel() else {
        eprintln!(
            "mproc: {} is set but descriptor {} is not open; not a child of mproc",
            role::ROLE_ENV,
            sys::SPAWN_CHANNEL_FD
        );
        sys::exit_now(1);
    };
    // A forkserver's children run the same bootstrap as a spawned child, on the channel the
    // server received for each.
    let code = match role {
        role::Role::Spawn => launch::child::run_from_channel(chan, None),
        role::Role::Forkserver => launch::forkserver::serve(chan, launch::child::run_from_channel),
        role::Role::Tracker => tracker::serve(chan),
    };
    sys::exit_now(code);
}

/// The README's example, compiled as a doc test so that it stays true to the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
