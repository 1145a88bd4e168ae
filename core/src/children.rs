//! This process's children: the registry of those not reaped yet, reaping, `active_children`,
//! and the exit function (Python's `process._children`, `_cleanup` and `util._exit_function`).
//!
//! A started child stays in the registry until it is reaped (by `join`, `is_alive`, `close`, the
//! next `start`, [`active_children`] or the exit function), even after its `Process` handle is
//! dropped: no child is left a zombie. The registry has its own mutex, which the fork start
//! method holds across `fork()` and clears in the child (the parent's children are not its own).

use crate::launch::{forkserver, keeper};
use crate::popen::Popen;
use crate::sys;
use std::sync::{Arc, Mutex, MutexGuard, Once};

/// A started child that has not been reaped yet.
#[derive(Debug)]
pub(crate) struct ChildRecord {
    pub popen: Popen,
    pub daemon: bool,
    pub name: String,
    /// The arguments held for the child until it decodes them ([`keeper::hold`]).
    pub held: Option<keeper::Holding>,
}

impl ChildRecord {
    /// The child has been reaped: nothing needs its arguments any more.
    fn reaped(&self) {
        if let Some(held) = &self.held {
            held.release();
        }
    }
}

/// The registry of unreaped children.
#[derive(Debug, Default)]
pub(crate) struct Children(Vec<Arc<ChildRecord>>);

static CHILDREN: Mutex<Children> = Mutex::new(Children(Vec::new()));

/// Locks the registry, recovering from poisoning (every update is a single push or retain).
pub(crate) fn lock() -> MutexGuard<'static, Children> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

fn snapshot() -> Vec<Arc<ChildRecord>> {
    lock().0.clone()
}

/// Adds a started child to the registry.
pub(crate) fn register(child: Arc<ChildRecord>) {
    lock().0.push(child);
}

/// Drops a reaped child from the registry (Python's `_children.discard`).
pub(crate) fn forget(child: &Arc<ChildRecord>) {
    lock().0.retain(|c| !Arc::ptr_eq(c, child));
    child.reaped();
}

/// Reaps every child that has ended (Python's `_cleanup`).
pub(crate) fn reap_finished() {
    let done: Vec<_> = snapshot()
        .into_iter()
        .filter(|c| matches!(c.popen.poll(), Ok(Some(_))))
        .collect();
    if !done.is_empty() {
        lock().0.retain(|c| !done.iter().any(|d| Arc::ptr_eq(c, d)));
        done.iter().for_each(|c| c.reaped());
    }
}

/// Empties the registry in a fork child (the parent's children are not its own) and unlocks it.
pub(crate) fn clear_after_fork(mut guard: MutexGuard<'static, Children>) {
    guard.0.clear();
    drop(guard);
}

/// A summary of a running child, from [`active_children`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's name.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Whether it is daemonic.
    pub daemon: bool,
}

/// The children of this process that are still running; reaps those that have ended.
pub fn active_children() -> Vec<ChildInfo> {
    reap_finished();
    snapshot()
        .iter()
        .map(|c| ChildInfo {
            name: c.name.clone(),
            pid: c.popen.pid,
            daemon: c.daemon,
        })
        .collect()
}

/// Python's `util._exit_function`, run at exit (through `atexit`) and at the end of every child:
/// terminates daemonic children, then joins all children, then stops the forkserver.
pub(crate) fn exit_function() {
    let children = snapshot();
    for c in children.iter().filter(|c| c.daemon) {
        let _ = c.popen.signal(libc::SIGTERM);
    }
    for c in &children {
        let _ = c.popen.wait(None);
    }
    lock().0.clear();
    // Every child has ended: nothing needs the arguments held for them any more.
    keeper::release_all();
    forkserver::stop();
}

static ATEXIT: Once = Once::new();

/// Registers the exit function to run when the process leaves through `exit` (a return from
/// `main` included); once, the first time a child is started.
pub(crate) fn ensure_atexit() {
    ATEXIT.call_once(|| sys::register_atexit(atexit_handler));
}

extern "C" fn atexit_handler() {
    // A panic must not unwind into libc's exit(); swallow it.
    let _ = std::panic::catch_unwind(exit_function);
}
