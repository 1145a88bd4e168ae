//! Stream sockets: Unix paths, Linux abstract names and TCP over IPv4 and IPv6; every socket
//! close-on-exec from birth (`SOCK_CLOEXEC`, `accept4(SOCK_CLOEXEC)`). Also `getrandom`, and
//! `poll` over descriptor numbers that are not borrowed (process sentinels handed out as numbers).

use super::{cvt, cvt_r, Interest};
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A socket address as the kernel takes it.
#[derive(Clone, Copy)]
pub(crate) enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
    /// A Unix address and its length (`sun_family` plus the bytes of the path or name used).
    Unix(libc::sockaddr_un, libc::socklen_t),
}

/// What the kernel reported as an address (of a peer or of our own end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerAddr {
    Inet(SocketAddr),
    /// A Unix socket bound to a path (the bytes of the path).
    UnixPath(Vec<u8>),
    /// A Unix socket bound to an abstract name (without the leading NUL).
    UnixAbstract(Vec<u8>),
    /// A Unix socket bound to nothing (the usual client end).
    UnixUnnamed,
}

/// The offset of `sun_path` in `sockaddr_un` (the family field before it).
const SUN_PATH_OFFSET: usize = mem::size_of::<libc::sa_family_t>();

impl SockAddr {
    pub(crate) fn inet(addr: SocketAddr) -> SockAddr {
        match addr {
            SocketAddr::V4(a) => SockAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => SockAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    /// A Unix address: `name` is a path, or with `abstract_ns` a name in Linux's abstract
    /// namespace (stored after a leading NUL). Errors if it does not fit in `sun_path`.
    pub(crate) fn unix(name: &[u8], abstract_ns: bool) -> io::Result<SockAddr> {
        let mut sun = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        let start = usize::from(abstract_ns);
        // A path needs room for its terminating NUL; an abstract name does not have one.
        let room = sun.sun_path.len() - start - usize::from(!abstract_ns);
        if name.len() > room {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a Unix socket {} is at most {room} bytes long ({} given)",
                    if abstract_ns { "name" } else { "path" },
                    name.len()
                ),
            ));
        }
        if !abstract_ns && name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Unix socket path cannot contain a NUL byte",
            ));
        }
        for (dst, &b) in sun.sun_path[start..].iter_mut().zip(name) {
            *dst = b as libc::c_char;
        }
        let len = SUN_PATH_OFFSET + start + name.len() + usize::from(!abstract_ns);
        Ok(SockAddr::Unix(sun, len as libc::socklen_t))
    }

    fn family(&self) -> libc::c_int {
        match self {
            SockAddr::V4(_) => libc::AF_INET,
            SockAddr::V6(_) => libc::AF_INET6,
            SockAddr::Unix(..) => libc::AF_UNIX,
        }
    }

    fn as_raw(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            SockAddr::V4(a) => (
                (a as *const libc::sockaddr_in).cast(),
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SockAddr::V6(a) => (
                (a as *const libc::sockaddr_in6).cast(),
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
            SockAddr::Unix(a, len) => ((a as *const libc::sockaddr_un).cast(), *len),
        }
    }
}

fn socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `socket` takes integers only and returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `socket` succeeded, so `fd` is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value points at a live `c_int` and its size is given exactly.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A listening stream socket bound to `addr`. TCP sockets get `SO_REUSEADDR` first (as CPython's
/// `SocketListener` on POSIX), so that a restarted server can bind at once.
pub(crate) fn listen(addr: &SockAddr, backlog: i32) -> io::Result<OwnedFd> {
    let fd = socket(addr.family())?;
    if !matches!(addr, SockAddr::Unix(..)) {
        set_int_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    let (ptr, len) = addr.as_raw();
    // SAFETY: `ptr` points at a socket address of `len` bytes that outlives the call.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), ptr, len) })?;
    // SAFETY: `listen` takes integers only.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(fd)
}

/// Accepts one connection (close-on-exec), retrying on `EINTR`. Returns the peer's address.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, PeerAddr)> {
    // SAFETY: an all-zero `sockaddr_storage` is a valid value of this plain C structure.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes and `len` is a live, writable socklen_t.
    let fd = cvt_r(|| unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: `accept4` succeeded, so `fd` is open and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, peer_addr_of(&storage, len)))
}

/// Connects a new stream socket to `addr`, giving up with `TimedOut` after `timeout` (`None`:
/// as long as the kernel tries). The socket is returned in blocking mode.
pub(crate) fn connect(addr: &SockAddr, timeout: Option<Duration>) -> io::Result<OwnedFd> {
    let fd = socket(addr.family())?;
    let (ptr, len) = addr.as_raw();
    let Some(timeout) = timeout else {
        // SAFETY: `ptr` points at a socket address of `len` bytes that outlives the call.
        let r = unsafe { libc::connect(fd.as_raw_fd(), ptr, len) };
        if r == -1 {
            let e = io::Error::last_os_error();
            // An interrupted connect goes on in the background; wait for it as below.
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            wait_connected(fd.as_fd(), None)?;
        }
        return Ok(fd);
    };
    super::set_nonblocking(fd.as_fd(), true)?;
    // SAFETY: as above.
    let r = unsafe { libc::connect(fd.as_raw_fd(), ptr, len) };
    if r == -1 {
        let e = io::Error::last_os_error();
        let pending = matches!(
            e.raw_os_error(),
            Some(libc::EINPROGRESS) | Some(libc::EINTR)
        );
        // A Unix socket whose listener's backlog is full answers EAGAIN: try again until the
        // deadline, as a blocking connect would wait.
        let full = e.raw_os_error() == Some(libc::EAGAIN);
        if full {
            let deadline = Instant::now().checked_add(timeout);
            loop {
                let left = deadline.map_or(Duration::MAX, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the listener's backlog stayed full",
                    ));
                }
                std::thread::sleep(left.min(Duration::from_millis(5)));
                // SAFETY: as above.
                if unsafe { libc::connect(fd.as_raw_fd(), ptr, len) } == 0 {
                    break;
                }
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINPROGRESS) {
                    wait_connected(fd.as_fd(), Some(left))?;
                    break;
                }
                if e.raw_os_error() != Some(libc::EAGAIN) {
                    return Err(e);
                }
            }
        } else if pending {
            wait_connected(fd.as_fd(), Some(timeout))?;
        } else {
            return Err(e);
        }
    }
    super::set_nonblocking(fd.as_fd(), false)?;
    Ok(fd)
}

/// Waits for a connect in progress to finish and reports its outcome (`SO_ERROR`).
fn wait_connected(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    if !super::poll_one(fd, Interest::Write, timeout)? {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
    }
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are live and writable; `len` gives the size of `err`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// The address `fd` is bound to.
pub(crate) fn local_addr(fd: BorrowedFd<'_>) -> io::Result<PeerAddr> {
    // SAFETY: an all-zero `sockaddr_storage` is a valid value of this plain C structure.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes and `len` is a live, writable socklen_t.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    Ok(peer_addr_of(&storage, len))
}

fn peer_addr_of(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> PeerAddr {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            let p = (storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            // SAFETY: the kernel wrote a `sockaddr_in` (family AF_INET) into the storage, which
            // is large and aligned enough for any socket address.
            let a = unsafe { &*p };
            PeerAddr::Inet(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for a `sockaddr_in6` (family AF_INET6).
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            PeerAddr::Inet(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => {
            let p = (storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>();
            // SAFETY: as above, for a `sockaddr_un` (family AF_UNIX, the only other family our
            // sockets have).
            let a = unsafe { &*p };
            let n = len.saturating_sub(SUN_PATH_OFFSET).min(a.sun_path.len());
            let bytes: Vec<u8> = a.sun_path[..n].iter().map(|&c| c as u8).collect();
            match bytes.first() {
                None => PeerAddr::UnixUnnamed,
                Some(0) => PeerAddr::UnixAbstract(bytes[1..].to_vec()),
                Some(_) => {
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    PeerAddr::UnixPath(bytes[..end].to_vec())
                }
            }
        }
    }
}

/// Sets `TCP_NODELAY`: small writes leave at once instead of waiting for the peer's ACK.
pub(crate) fn set_tcp_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Whether `TCP_NODELAY` is set on `fd`.
#[cfg(test)]
pub(crate) fn tcp_nodelay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and writable; `len` gives the size of `v`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v != 0)
}

/// Sets `TCP_QUICKACK` (the kernel clears it again on its own, so it is set before each read).
pub(crate) fn set_tcp_quickack(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1)
}

/// Fills `buf` with random bytes from the kernel (`getrandom`, blocking until the pool is ready).
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes for the duration of the call.
        let n = cvt_r(|| unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) })?;
        done += n as usize;
    }
    Ok(())
}

/// `poll` over descriptor numbers: which of `fds` are ready (readable, writable, hung up, in
/// error, or not open at all), waiting up to `timeout` (`None`: for ever).
///
/// The numbers need not be borrowed: `poll` reads nothing but the numbers, and a number that no
/// longer names an open descriptor is reported ready (`POLLNVAL`), so that the caller's next
/// use of it reports the error.
pub(crate) fn poll_numbers(
    fds: &[(RawFd, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, i)| libc::pollfd {
            fd,
            events: match i {
                Interest::Read => libc::POLLIN,
                Interest::Write => libc::POLLOUT,
            },
            revents: 0,
        })
        .collect();
    super::fd::poll_pollfds(&mut pfds, timeout)?;
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}
