//! `epoll`: an interest list in the kernel that one thread waits on while others change it.
//!
//! A pool's result-handling thread waits on its workers' sockets and sentinels here; a thread
//! that takes a worker's socket for itself (to read its own result without a hop through the
//! handler) removes it from the list, which takes effect even while the handler is inside
//! [`Epoll::wait`]: the whole reason for `epoll` over `poll`.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Readable (or hung up, or in error: those are always reported).
pub const EPOLL_READ: u32 = libc::EPOLLIN as u32;
/// Writable.
pub const EPOLL_WRITE: u32 = libc::EPOLLOUT as u32;

/// An epoll instance (close-on-exec).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// One ready descriptor from [`Epoll::wait`]: the token it was registered with, and its events
/// ([`EPOLL_READ`], [`EPOLL_WRITE`], or hang-up and error bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollEvent {
    pub token: u64,
    pub events: u32,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes a flag word and returns a new descriptor or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are open (owned by `self`, borrowed from the caller); `ev` is
        // a valid epoll_event the kernel only reads.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) })?;
        Ok(())
    }

    /// Adds `fd` with `events`; [`wait`](Epoll::wait) reports it as `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Changes the events (and token) of a descriptor already added.
    pub fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Removes `fd` from the interest list.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits until some descriptor is ready or `timeout` passes (`None`: for ever), retrying on
    /// `EINTR`; fills `out` with the ready ones (at most its capacity, at least 1).
    pub fn wait(&self, out: &mut Vec<EpollEvent>, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let max = out.capacity().max(1);
        let mut raw: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; max];
        out.clear();
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up, so that a wait of half a millisecond does not spin at 0 ms.
                    left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
                }
            };
            // SAFETY: `raw` holds `max` writable epoll_event structures.
            let n = unsafe {
                libc::epoll_wait(
                    self.fd.as_raw_fd(),
                    raw.as_mut_ptr(),
                    max as libc::c_int,
                    ms,
                )
            };
            if n == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 && deadline.is_some_and(|d| Instant::now() < d) {
                continue;
            }
            out.extend(raw[..n as usize].iter().map(|e| EpollEvent {
                token: e.u64,
                events: e.events,
            }));
            return Ok(());
        }
    }
}
