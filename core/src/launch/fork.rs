//! The fork start method: `fork()`, and the child runs its target in the copy of the parent
//! (Python's `popen_fork.py`).
//!
//! The child is a copy of the whole parent, in which only the forking thread goes on. So that no
//! thread of ours is half-way through changing process-wide state at the instant of the fork,
//! the forking thread holds every process-wide lock of mproc across it, always in this order:
//! [`state`], [`children`], the forkserver handle ([`forkserver`]), the arguments held for
//! spawned and forkserver children ([`keeper`]), the link to the resource tracker
//! ([`tracker`]), and the registry of descriptors kept from fork children
//! ([`keep_from_fork_children`]). The child resets each (it
//! has no children and no forkserver of its own yet) and unlocks it; the parent unlocks after the
//! fork. Code that takes two of these locks at once takes them in the same order.
//!
//! As Python's, this method runs user code in the child, so it warns (once) when the parent has
//! other threads, which may hold locks the child will wait on for ever. mproc's own threads are
//! counted apart ([`InternalThread`]): they never hold a lock a fork child needs.

use super::{child, flush_std_streams, forkserver, keeper};
use crate::children;
use crate::error::Result;
use crate::popen::Popen;
use crate::state::{self, Me};
use crate::sys;
use crate::tracker;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Starts a child by `fork()`: the child becomes `me` and runs `target` under
/// [`child::run_target`], then leaves with its exit code.
pub(crate) fn start(me: Me, target: impl FnOnce() -> i32) -> Result<Popen> {
    warn_if_threaded();
    flush_std_streams();
    // The child's fatal-signal handler needs this thread's stack: look it up here, once.
    sys::learn_stack_of_this_thread();
    let name = me.name.clone();
    let state = state::lock();
    let children = children::lock();
    let server = forkserver::lock();
    let held = keeper::lock();
    let tracked = tracker::lock();
    let kept = lock_kept();
    let (pid, pidfd) = sys::fork_child(move || {
        state::reset_after_fork(state, me);
        children::clear_after_fork(children);
        forkserver::forget_after_fork(server);
        keeper::forget_after_fork(held);
        tracker::after_fork(tracked);
        close_kept(kept);
        child::watch_parent(None);
        child::run_target(&name, target)
    })?;
    Ok(Popen::direct(pid, pidfd))
}

/// Descriptors of this process that no fork child may keep (see [`keep_from_fork_children`]).
static KEPT: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

fn lock_kept() -> MutexGuard<'static, Vec<OwnedFd>> {
    KEPT.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a fork child: closes the descriptors kept from fork children (this copy of the registry is
/// their only owner here) and unlocks the registry.
fn close_kept(mut guard: MutexGuard<'static, Vec<OwnedFd>>) {
    guard.clear();
    drop(guard);
}

/// Runs `f` with `fds` out of reach of every fork child started meanwhile, by this thread or
/// another: they are moved into a registry that each fork child empties (closing its copies),
/// and handed back afterwards in their original order. For descriptors the parent keeps while it
/// forks a child that must not hold them, as a pool keeps its end of a new fork worker's socket
/// (the worker would otherwise never see end of file when the pool goes away). Python's fork
/// workers close such inherited ends themselves (`inqueue._writer.close()`).
pub(crate) fn keep_from_fork_children<R>(
    fds: Vec<OwnedFd>,
    f: impl FnOnce() -> R,
) -> (R, Vec<OwnedFd>) {
    let mut kept = Kept(fds.iter().map(AsRawFd::as_raw_fd).collect());
    lock_kept().extend(fds);
    let r = f();
    (r, kept.take_back())
}

/// The numbers of descriptors moved into the registry by [`keep_from_fork_children`]; if `f`
/// panics, dropping this takes them out again (and closes them).
struct Kept(Vec<RawFd>);

impl Kept {
    fn take_back(&mut self) -> Vec<OwnedFd> {
        let mut kept = lock_kept();
        let mut back = Vec::with_capacity(self.0.len());
        for n in self.0.drain(..) {
            // The registry owns these descriptors meanwhile, so each number still names the one
            // we put in.
            if let Some(i) = kept.iter().position(|fd| fd.as_raw_fd() == n) {
                back.push(kept.swap_remove(i));
            }
        }
        back
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        drop(self.take_back());
    }
}

static FORK_WARNING: AtomicBool = AtomicBool::new(true);

pub(crate) use super::InternalThread;

/// Turns off (or back on) the warning printed before a fork in a multithreaded process. It is
/// also off when the environment variable `MPROC_NO_FORK_WARNING` is set.
pub fn set_fork_warning(enabled: bool) {
    FORK_WARNING.store(enabled, Ordering::Relaxed);
}

/// How many times the thread count is taken again before the fork warning is printed.
const THREAD_RECOUNTS: usize = 8;

fn warn_if_threaded() {
    if !FORK_WARNING.load(Ordering::Relaxed) || std::env::var_os("MPROC_NO_FORK_WARNING").is_some()
    {
        return;
    }
    let ours = super::internal_threads();
    let mut threads = sys::thread_count();
    // A thread that was just joined (a pool's handler after `Pool::join`) is still counted by the
    // kernel for a moment after `pthread_join` returns: look again a few times before warning.
    // This costs something only until the warning has been printed once.
    for _ in 0..THREAD_RECOUNTS {
        if threads.saturating_sub(ours) <= 1 {
            break;
        }
        std::thread::yield_now();
        threads = sys::thread_count();
    }
    if threads.saturating_sub(ours) > 1 && FORK_WARNING.swap(false, Ordering::Relaxed) {
        // Python 3.12 warns here with a DeprecationWarning; we print once per process.
        eprintln!(
            "mproc: warning: this process (pid={}) is multi-threaded ({threads} threads), use of fork() may lead to deadlocks in the child.",
            std::process::id()
        );
    }
}
