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
//! typecode, and named [`SharedMemory`].
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
//!     p.join(Some(Duration::from_secs(5)))?;
//!     if p.is_alive()? {
//!         p.terminate()?;
//!         p.join(None)?;
//!     }
//!     println!("exitcode: {:?}", p.exitcode()?);
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
pub use connection::{pipe, Connection, DEFAULT_MAX_MESSAGE_SIZE};
pub use context::{
    cpu_count, default_context, get_all_start_methods, get_context, get_start_method,
    set_start_method, Context,
};
pub use error::{Error, Result};
pub use launch::child::exit;
pub use launch::fork::set_fork_warning;
pub use method::StartMethod;
pub use pool::{
    ApplyBuilder, AsyncResult, Callbacks, IMapBuilder, IMapIterator, IMapStream, MapBuilder,
    MapResult, Pool, PoolBuilder,
};
pub use process::{
    current_process, parent_process, CurrentProcess, Ending, Process, RunOutcome,
    DEFAULT_TERMINATE_GRACE,
};
pub use queues::{JoinableQueue, PutError, Queue, SimpleQueue, DEFAULT_CAPACITY};
pub use sharedctypes::{
    Array, CChar, DynArray, Number, RawArray, RawValue, Scalar, SharedMemory, TypeCode, Value,
};
pub use synchronize::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event, Lock, LockGuard,
    RLock, RLockGuard, Semaphore, SemaphoreGuard,
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
