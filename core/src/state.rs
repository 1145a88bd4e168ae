//! Who this process is, in Python's terms, and the default context's start method.
//!
//! Both sit behind the one mutex [`STATE`]. The fork start method holds it across `fork()` (with
//! the other process-wide locks; see [`crate::launch::fork`]) and hands the guard to the child,
//! which sets its own identity with [`reset_after_fork`] and unlocks by dropping the guard. So no
//! other thread of ours can be half-way through changing it at the moment of a fork.

use crate::method::StartMethod;
use std::sync::{Mutex, MutexGuard};

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
    /// Python's `current_process().authkey`: 32 random bytes in the main process, inherited by
    /// every child (a manager's key unless it is given another).
    pub authkey: Vec<u8>,
}

impl Me {
    fn main() -> Me {
        let mut authkey = vec![0u8; 32];
        // As CPython's `os.urandom(32)`. Without the kernel's random source there is no secret
        // to be had; an all-zero key still works between processes that inherit it.
        let _ = crate::sys::net::random_bytes(&mut authkey);
        Me {
            name: "MainProcess".into(),
            authkey,
            ..placeholder_me()
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub me: Me,
    /// The default context's start method, once fixed.
    pub start_method: Option<StartMethod>,
}

pub(crate) static STATE: Mutex<State> = Mutex::new(State {
    me: placeholder_me(),
    start_method: None,
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
        authkey: Vec::new(),
    }
}

/// Locks the state, recovering from poisoning (a panic while holding the lock cannot leave the
/// state half-written: every update is a single assignment).
pub(crate) fn lock() -> MutexGuard<'static, State> {
    let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if st.me.name.is_empty() {
        st.me = Me::main();
    }
    st
}

/// Sets who the child is, right after `fork()` in the fork start method, and unlocks.
pub(crate) fn reset_after_fork(mut guard: MutexGuard<'static, State>, me: Me) {
    guard.me = me;
    drop(guard);
}
