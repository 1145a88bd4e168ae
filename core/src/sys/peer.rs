//! What a server needs to know about its peers: the pid of the process at the other end of a Unix
//! socket (`SO_PEERCRED`), a wait that tells a peer's hang-up apart from its data (`POLLRDHUP`),
//! and a count of the forks this process has made (a `pthread_atfork` prepare handler), by which
//! a manager client knows whether a fork child may hold copies of its proxies.

use super::cvt;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

/// The pid of the process that connected the Unix socket `fd` (or made its socketpair), as the
/// kernel recorded it: `None` for a socket of another family, or when the peer's pid is not
/// visible from this pid namespace (the kernel reports 0).
pub fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live and writable; `len` gives the size of `cred`.
    let r = cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    });
    match r {
        Ok(_) if cred.pid > 0 => Ok(Some(cred.pid as u32)),
        Ok(_) => Ok(None),
        // Not a Unix socket (TCP): no credentials to read.
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What [`poll_watch`] waits for on one descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Readable (data, end of file, or an ended process behind a pidfd).
    Readable,
    /// The peer of a stream socket hung up or shut down its writing side; data that arrives
    /// meanwhile does not count (`POLLRDHUP`).
    Hangup,
}

/// Waits until one of `fds` is ready as asked, or `timeout` passes (`None`: for ever); returns
/// per descriptor whether it is ready. Numbers that are not open are reported ready
/// (`POLLNVAL`), as errors and hang-ups always are.
pub fn poll_watch(fds: &[(RawFd, Watch)], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, w)| libc::pollfd {
            fd,
            events: match w {
                Watch::Readable => libc::POLLIN,
                Watch::Hangup => libc::POLLRDHUP,
            },
            revents: 0,
        })
        .collect();
    super::fd::poll_pollfds(&mut pfds, timeout)?;
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

static FORKS: AtomicU64 = AtomicU64::new(0);
static FORK_COUNTER: Once = Once::new();

extern "C" fn before_fork() {
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// How many times this process has forked (by any means that runs `pthread_atfork` handlers:
/// libc's `fork`, mproc's start methods) since the first call of this function, which installs
/// the counter. A fork child inherits the count of its parent at the moment of the fork.
pub fn forks_made() -> u64 {
    FORK_COUNTER.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn()` that only increments an atomic, which is
        // async-signal-safe as a fork handler must be.
        unsafe { libc::pthread_atfork(Some(before_fork), None, None) };
    });
    FORKS.load(Ordering::SeqCst)
}
