//! Descriptors: creation (always close-on-exec), reads and writes, `poll` with a timeout.

use super::{cvt, cvt_r};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A unidirectional pipe: `(read end, write end)`, both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as `pipe2` requires.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: `pipe2` succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of `AF_UNIX` stream sockets, both close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_STREAM)
}

/// A connected pair of `AF_UNIX` sequenced-packet sockets (message boundaries kept, end of file
/// once every copy of the peer end is closed), both close-on-exec.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_SEQPACKET)
}

fn unix_pair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as `socketpair` requires.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: `socketpair` succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The inode number of the file behind `fd`.
pub fn inode_of(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: a zeroed `stat` is valid storage for `fstat` to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid, writable; `fd` is live for the borrow.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_ino as u64)
}

/// Opens `/dev/null` read-write, close-on-exec.
pub fn open_devnull() -> io::Result<OwnedFd> {
    let path = c"/dev/null";
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = cvt_r(|| unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: `open` succeeded, so `fd` is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the borrow; F_GETFL takes no pointer.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above; F_SETFL takes an int argument.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// Reads into `buf`, retrying on `EINTR`. Returns 0 at end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
    let n = cvt_r(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Reads into the spare capacity of `buf` (at most `max` bytes), extending its length.
pub fn read_into_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: the spare capacity is valid for writes of `want` bytes; `read` only writes.
    let n = cvt_r(|| unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), want) })?;
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// A copy of `src` in a vector whose capacity is exactly `src.len()`.
///
/// `<[u8]>::to_vec` does the same through `RawVec`'s general allocation path, which the compiler
/// leaves out of line; a connection's receive makes one of these per message, so this one is
/// small enough to inline. An allocation failure aborts, as `to_vec`'s does: `src` is bytes at
/// hand, not a length a peer claims.
#[inline(always)]
pub fn copy_to_vec(src: &[u8]) -> Vec<u8> {
    let len = src.len();
    if len == 0 {
        return Vec::new();
    }
    let layout = std::alloc::Layout::array::<u8>(len).expect("a slice's length fits a layout");
    // SAFETY: `layout`'s size is not zero.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: `ptr` is valid for writes of `len` bytes and `src` for reads of `len` bytes; a fresh
    // allocation does not overlap `src`.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), ptr, len) };
    // SAFETY: `ptr` comes from the global allocator with the layout of `len` bytes (`u8`'s
    // alignment), all `len` of which are initialised.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

/// Writes from `buf`, retrying on `EINTR`; on a socket, never raises `SIGPIPE`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let raw = fd.as_raw_fd();
    let (ptr, len) = (buf.as_ptr().cast(), buf.len());
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
    let n = cvt_r(|| unsafe { libc::send(raw, ptr, len, libc::MSG_NOSIGNAL) });
    match n {
        Ok(n) => Ok(n as usize),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            // SAFETY: as above; a pipe end takes a plain write.
            let n = cvt_r(|| unsafe { libc::write(raw, buf.as_ptr().cast(), buf.len()) })?;
            Ok(n as usize)
        }
        Err(e) => Err(e),
    }
}

/// Writes two buffers with one `writev` where possible. Returns the bytes written.
pub fn writev2(fd: BorrowedFd<'_>, a: &[u8], b: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut _,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut _,
            iov_len: b.len(),
        },
    ];
    let raw = fd.as_raw_fd();
    // SAFETY: a zeroed msghdr is a valid empty header; we then point it at `iov`, which lives
    // until the end of this function.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut _;
    msg.msg_iovlen = 2;
    // SAFETY: `msg` refers to two iovecs over buffers valid for reads for the whole call.
    let n = cvt_r(|| unsafe { libc::sendmsg(raw, &msg, libc::MSG_NOSIGNAL) });
    match n {
        Ok(n) => Ok(n as usize),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            // SAFETY: `iov` holds two valid iovecs over live buffers.
            let n = cvt_r(|| unsafe { libc::writev(raw, iov.as_ptr(), 2) })?;
            Ok(n as usize)
        }
        Err(e) => Err(e),
    }
}

/// What to wait for in [`poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Waits until one of `fds` is ready (readable, writable, hung up or in error), or until
/// `timeout` passes (`None` waits forever). Returns, per descriptor, whether it is ready.
pub fn poll(
    fds: &[(BorrowedFd<'_>, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, i)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: match i {
                Interest::Read => libc::POLLIN,
                Interest::Write => libc::POLLOUT,
            },
            revents: 0,
        })
        .collect();
    poll_pollfds(&mut pfds, timeout)?;
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// `poll` over prepared `pollfd`s, retrying on `EINTR` and until `timeout` has fully passed
/// (`None`: for ever). The ready ones have non-zero `revents`.
pub(crate) fn poll_pollfds(pfds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    // A timeout too long to add to the clock waits for ever.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a wait of 0.5 ms does not become a busy 0 ms poll loop.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            if let Some(d) = deadline {
                if Instant::now() < d {
                    continue;
                }
            }
        }
        return Ok(());
    }
}

/// Waits for one descriptor; see [`poll`].
pub fn poll_one(
    fd: BorrowedFd<'_>,
    interest: Interest,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    Ok(poll(&[(fd, interest)], timeout)?[0])
}

/// Closes every descriptor numbered `first` or above that is not in `keep`.
///
/// Used only by [`super::fork_server_child`], in a single-threaded child right after `fork()`,
/// where `close_range` is async-signal-safe and no object of the child uses the descriptors.
pub(super) fn close_all_from_except(first: RawFd, keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&k| k >= first).collect();
    keep.sort_unstable();
    let mut lo = first;
    for k in keep {
        if k > lo {
            close_range(lo, k - 1);
        }
        lo = k + 1;
    }
    close_range(lo, RawFd::MAX);
}

fn close_range(lo: RawFd, hi: RawFd) {
    // SAFETY: `close_range` only closes descriptors; callers run right after fork, where nothing
    // in this process uses the descriptors in the range any more.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            lo as libc::c_uint,
            hi as libc::c_uint,
            0 as libc::c_uint,
        )
    };
}

/// How many bytes are waiting, unread, in the receive queue of the socket or pipe `fd`
/// (`FIONREAD`).
pub fn unread_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `n`, live and writable
    // for the duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) })?;
    Ok(n.max(0) as usize)
}
