//! How a child begins, one file per start method, as CPython splits `popen_fork.py`,
//! `popen_spawn_posix.py` and `popen_forkserver.py` from `process.py`.
//!
//! - [`fork`]: `fork()` and run the target in the copy; the locks held across the fork; the
//!   warning for multithreaded parents.
//! - [`spawn`]: fork+exec of this binary, which reads a [`spec::ChildSpec`] from its channel.
//! - [`forkserver`]: the parent's handle on its forkserver, and the server's loop.
//! - [`spec`]: the spec a spawned or forkserver child reads, and the handshake that carries it.
//! - [`child`]: the child's side, whatever the method: become the process the spec describes,
//!   run the target as Python's `BaseProcess._bootstrap` does, run the exit function.
//!
//! [`crate::process`] decides which method starts a child; [`crate::init`] dispatches a fresh
//! execution of the binary to [`child`] or to [`forkserver`]'s loop.

pub(crate) mod child;
pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod spawn;
pub(crate) mod spec;

/// Flushes the standard streams before a child starts, so that nothing buffered is written
/// twice (by the parent and by a fork child) or out of order with the child's output.
fn flush_std_streams() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
