//! The process-wide state of mproc: who this process is, its unreaped children, the chosen start
//! method and the forkserver connection.
//!
//! Invariant: all of it sits behind the one mutex [`STATE`], and the fork start method holds that
//! mutex across `fork()` and hands the guard to the child (see `process::start_fork`). So no
//! other thread of ours can be half-way through changing it at the moment of a fork, and the
//! child, which inherits the locked copy, unlocks it by dropping the guard it was handed.

use crate::forkserver::ForkserverClient;
use crate::popen::Popen;
use crate::StartMethod;
use std::sync::{Arc, Mutex, MutexGuard, Once};

/// Who the current process is, in Python's terms (`current_process()`).
#[derive(Clone, Debug)]
pub(crate) struct Me {
    pub name: String,
    /// Python's `_identity`: empty for the main process, `(1,)` for its first child, `(1, 2)`
    /// for that child's second child...
    pub identity: Vec<u32>,
    pub daemon: bool,
    /// The next child number (Python's `_process_counter`).
    pub counter: u32,
    /// The pid of the parent that started us (None in the main process).
    pub parent_pid: Option<u32>,
    pub parent_name: Option<String>,
    /// The start method that made this process (None in the main process).
    pub started_by: Option<StartMethod>,
}

impl Me {
    fn main() -> Me {
        Me {
            name: "MainProcess".into(),
            ..placeholder_me()
        }
    }
}

/// A started child that has not been reaped yet: kept here even when its `Process` handle is
/// dropped, so that it is reaped on the next `start()`/`active_children()` or at exit.
#[derive(Debug)]
pub(crate) struct ChildRecord {
    pub popen: Popen,
    pub daemon: bool,
    pub name: String,
}

#[derive(Debug)]
pub(crate) struct State {
    pub me: Me,
    pub children: Vec<Arc<ChildRecord>>,
    pub start_method: Option<StartMethod>,
    pub forkserver: Option<Arc<ForkserverClient>>,
}

pub(crate) static STATE: Mutex<State> = Mutex::new(State {
    me: placeholder_me(),
    children: Vec::new(),
    start_method: None,
    forkserver: None,
});

const fn placeholder_me() -> Me {
    Me {
        name: String::new(),
        identity: Vec::new(),
        daemon: false,
        counter: 1,
        parent_pid: None,
        parent_name: None,
        started_by: None,
    }
}

/// Locks the state, recovering from poisoning (a panic while holding the lock cannot leave the
/// state half-written: every update is a single assignment or push).
pub(crate) fn lock() -> MutexGuard<'static, State> {
    let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if st.me.name.is_empty() {
        st.me = Me::main();
    }
    st
}

static ATEXIT: Once = Once::new();

/// Registers the exit function once, the first time a child is started.
pub(crate) fn ensure_atexit() {
    ATEXIT.call_once(|| crate::sys::register_atexit(atexit_handler));
}

extern "C" fn atexit_handler() {
    // A panic must not unwind into libc's exit(); swallow it.
    let _ = std::panic::catch_unwind(crate::process::exit_function);
}

/// Resets the state in a child right after `fork()` in the fork start method: the parent's
/// children and forkserver are not ours.
pub(crate) fn reset_after_fork(mut guard: MutexGuard<'static, State>, me: Me) {
    guard.me = me;
    guard.children.clear();
    guard.forkserver = None;
    drop(guard);
}
