//! How a child begins, one file per start method, as CPython splits `popen_fork.py`,
//! `popen_spawn_posix.py` and `popen_forkserver.py` from `process.py`.
//!
//! - [`fork`]: `fork()` and run the target in the copy; the locks held across the fork; the
//!   warning for multithreaded parents.
//! - [`spawn`]: fork+exec of this binary, which reads a [`spec::ChildSpec`] from its channel.
//! - [`forkserver`]: the parent's handle on its forkserver, and the server's loop.
//! - [`spec`]: the spec a spawned or forkserver child reads, and the handshake that carries it.
//! - [`keeper`]: keeps a spawned or forkserver child's arguments alive in the parent until the
//!   child says it has decoded them (or dies).
//! - [`child`]: the child's side, whatever the method: become the process the spec describes,
//!   run the target as Python's `BaseProcess._bootstrap` does, run the exit function.
//!
//! [`crate::process`] decides which method starts a child; [`crate::init`] dispatches a fresh
//! execution of the binary to [`child`] or to [`forkserver`]'s loop.

pub(crate) mod child;
pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod keeper;
pub(crate) mod spawn;
pub(crate) mod spec;

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many threads of mproc's own machinery (pool handler threads, the argument keeper) are
/// running: they do not count as "other threads" for the fork warning, because they never hold
/// a lock that a fork child needs (a pool thread only holds its pool's own mutex, which no child
/// touches; the keeper's registry is one of the locks held across the fork).
static INTERNAL_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The number of mproc's own threads running now.
fn internal_threads() -> usize {
    INTERNAL_THREADS.load(Ordering::SeqCst)
}

/// Counts one of mproc's internal threads for as long as it lives: make it before spawning the
/// thread, drop it after joining it (or once it is detached).
#[derive(Debug)]
pub(crate) struct InternalThread(());

impl InternalThread {
    /// Counts a thread about to start.
    pub(crate) fn enter() -> InternalThread {
        INTERNAL_THREADS.fetch_add(1, Ordering::SeqCst);
        InternalThread(())
    }
}

impl Drop for InternalThread {
    fn drop(&mut self) {
        INTERNAL_THREADS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Flushes the standard streams before a child starts, so that nothing buffered is written
/// twice (by the parent and by a fork child) or out of order with the child's output.
fn flush_std_streams() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
