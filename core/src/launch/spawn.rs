//! The spawn start method: fork+exec of this binary (`/proc/self/exe`), which branches in
//! [`crate::init`] and reads its spec from the bootstrap channel at descriptor 3 (Python's
//! `popen_spawn_posix.py`). The child inherits only that channel, stdin on `/dev/null`, and
//! stdout and stderr.

use super::flush_std_streams;
use super::spec::{self, ChildSpec};
use crate::error::Result;
use crate::popen::Popen;
use crate::role::{self, Role};
use crate::sys;
use std::os::fd::{AsFd, OwnedFd, RawFd};

/// Starts a child that becomes `spec`, with the descriptors `fds` (which `spec`'s arguments
/// refer to) passed along. `Ok` if and only if the child will run its target. Returns its
/// handle and the parent's end of its bootstrap channel (on which it acknowledges its arguments).
pub(crate) fn start(spec: &ChildSpec, fds: &[RawFd]) -> Result<(Popen, OwnedFd)> {
    let (ours, theirs) = sys::socketpair()?;
    let plan = role::exec_plan(Role::Spawn)?;
    let devnull = sys::open_devnull()?;
    flush_std_streams();
    let (pid, pidfd) = sys::spawn_exec(&plan, theirs.as_fd(), devnull.as_fd())?;
    drop(theirs);
    let popen = Popen::direct(pid, pidfd);
    if let Err(e) = spec::send(&ours, spec, fds) {
        let _ = popen.signal(libc::SIGKILL);
        let _ = popen.wait(None);
        return Err(e);
    }
    Ok((popen, ours))
}
