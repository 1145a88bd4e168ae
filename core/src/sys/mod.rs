//! The OS layer: the only module of the crate that contains `unsafe` code (the crate root denies
//! `unsafe_code` everywhere else).
//!
//! Everything above this module talks to the kernel through the fixed set of safe names exported
//! here (in the manner of servo's `ipc-channel` `platform` module). The module is private to the
//! crate; the bench harness reaches the few raw limits it measures through
//! [`crate::bench_limits`]. Each `unsafe` block carries a `// SAFETY:` comment; each `unsafe fn`
//! a `# Safety` section.
//!
//! Every function here is sound whatever its (safe) caller passes, with one exception the type
//! system cannot express: calling an [`fnptr::EntryOffset`] is sound only for an offset that
//! travelled unchanged from the process that made it (see its documentation). No function closes
//! or takes ownership of a descriptor number its caller names: descriptors are owned
//! (`OwnedFd`) or borrowed (`BorrowedFd`), and the two places where this layer must own a bare
//! number (the spawned child's channel at 3, the forkserver child's clean-up after its fork) are
//! inside it.
//!
//! Invariants kept by this layer:
//! - every descriptor it creates is close-on-exec from birth (`pipe2(O_CLOEXEC)`,
//!   `SOCK_CLOEXEC`, `MSG_CMSG_CLOEXEC`, `F_DUPFD_CLOEXEC`, `pidfd_open` descriptors are
//!   close-on-exec by definition);
//! - between `fork()` and `execve()` on the spawn path the child only makes async-signal-safe
//!   calls, on buffers prepared before the fork (`std`'s `process_unix` discipline);
//! - waits on processes go through pidfds polled with a timeout; nothing busy-loops.

pub mod epoll;
pub mod fd;
pub mod fnptr;
pub mod futex;
pub(crate) mod net;
pub mod peer;
pub mod proc;
pub mod scm;
pub mod shm;
pub mod signal;

pub use epoll::*;
pub use fd::*;
pub use futex::*;
pub use peer::*;
pub use proc::*;
pub use scm::*;
pub use shm::*;
pub use signal::*;

use std::io;

/// Turns a `-1` return of a libc call into the thread's `errno` as an [`io::Error`].
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries a libc call while it fails with `EINTR`.
pub(crate) fn cvt_r<T: IsMinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) trait IsMinusOne {
    fn is_minus_one(&self) -> bool;
}
macro_rules! impl_is_minus_one {
    ($($t:ty)*) => {$(impl IsMinusOne for $t { fn is_minus_one(&self) -> bool { *self == -1 } })*};
}
impl_is_minus_one! { i32 i64 isize }
