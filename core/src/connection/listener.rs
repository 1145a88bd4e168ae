//! `Listener` and `Client`: CPython's `multiprocessing.connection.Listener` and `Client` over Unix
//! sockets (paths and abstract names) and TCP, with CPython's handshake.

use super::address::{Address, ToAddress};
use super::auth;
use super::Connection;
use crate::error::{Error, Result};
use crate::sys::{self, Interest};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a handshake, or a connect, may take unless told otherwise (CPython waits for ever;
/// a silent peer must not hold an accept loop or a caller for ever).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The listen backlog unless told otherwise (that of CPython's manager server).
pub const DEFAULT_BACKLOG: i32 = 128;

/// A bound, listening socket that hands out authenticated [`Connection`]s (CPython's
/// `multiprocessing.connection.Listener`).
///
/// With an authentication key, every accepted connection goes through CPython's HMAC handshake
/// (the listener delivers a challenge, then answers the client's) before `accept` returns it; a
/// client with the wrong key gets `#FAILURE#`, and `accept` returns
/// [`Error::AuthenticationError`] without having read anything else from it. Without a key,
/// connections are returned as they come (as CPython's `Listener(authkey=None)`).
///
/// TCP connections get `TCP_NODELAY`, and the listener's side `TCP_QUICKACK` before each read,
/// so that a peer that writes a short message in two pieces (CPython's client does, around the
/// handshake) does not wait for a delayed ACK.
///
/// A listener on a Unix path removes the socket file when it is closed or dropped (in the
/// process that bound it only, as CPython's finalizer).
///
/// ```no_run
/// use mproc::connection::{Client, Listener};
///
/// # fn main() -> mproc::Result<()> {
/// let listener = Listener::bind("127.0.0.1:6000", Some(b"secret password"))?;
/// std::thread::spawn(|| -> mproc::Result<()> {
///     let conn = Client::connect("127.0.0.1:6000", Some(b"secret password"))?;
///     conn.send_bytes(b"hello")
/// });
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    fd: Option<OwnedFd>,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Option<Duration>,
    max_message_size: Option<u64>,
    /// The socket file to remove on close, and the process that may remove it.
    unlink: Option<(PathBuf, u32)>,
    last_accepted: Mutex<Option<Address>>,
}

/// Settings for a [`Listener`], from [`Listener::builder`].
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    address: Result<Address, String>,
    authkey: Option<Vec<u8>>,
    backlog: i32,
    handshake_timeout: Option<Duration>,
    max_message_size: Option<u64>,
}

impl ListenerBuilder {
    /// The authentication key (`None`, the default: no handshake).
    pub fn authkey(mut self, key: Option<&[u8]>) -> Self {
        self.authkey = key.map(<[u8]>::to_vec);
        self
    }

    /// The listen backlog (default [`DEFAULT_BACKLOG`]).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// How long the handshake of one accepted connection may take (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: for ever, as CPython).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The maximum message size of accepted connections (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](super::DEFAULT_MAX_MESSAGE_SIZE)); see
    /// [`Connection::set_max_message_size`].
    pub fn max_message_size(mut self, limit: Option<u64>) -> Self {
        self.max_message_size = limit;
        self
    }

    /// Binds and listens.
    pub fn bind(self) -> Result<Listener> {
        let address = self.address.map_err(Error::InvalidArgument)?;
        let fd = sys::net::listen(&address.to_sockaddr()?, self.backlog)?;
        // The address as bound: a TCP port 0 becomes the port the kernel chose.
        let address = match &address {
            Address::Tcp(_) => {
                Address::from_peer(sys::net::local_addr(fd.as_fd())?).unwrap_or(address)
            }
            _ => address,
        };
        let unlink = match &address {
            Address::Unix(p) => Some((p.clone(), std::process::id())),
            _ => None,
        };
        Ok(Listener {
            fd: Some(fd),
            address,
            authkey: self.authkey,
            handshake_timeout: self.handshake_timeout,
            max_message_size: self.max_message_size,
            unlink,
            last_accepted: Mutex::new(None),
        })
    }
}

impl Listener {
    /// Binds a listener to `address` (anything [`ToAddress`]: `"127.0.0.1:6000"`, `"/tmp/sock"`,
    /// `"@name"`, an [`Address`], ...), authenticating clients with `authkey` when it is `Some`.
    pub fn bind<A: ToAddress + ?Sized>(address: &A, authkey: Option<&[u8]>) -> Result<Listener> {
        Listener::builder(address).authkey(authkey).bind()
    }

    /// A builder for a listener on `address`, for the backlog, timeouts and limits.
    pub fn builder<A: ToAddress + ?Sized>(address: &A) -> ListenerBuilder {
        ListenerBuilder {
            address: address.to_address().map_err(|e| e.to_string()),
            authkey: None,
            backlog: DEFAULT_BACKLOG,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            max_message_size: Some(super::DEFAULT_MAX_MESSAGE_SIZE),
        }
    }

    /// The address the listener is bound to (with the port the kernel chose for a TCP port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The authentication key, if any.
    pub fn authkey(&self) -> Option<&[u8]> {
        self.authkey.as_deref()
    }

    /// The address of the last accepted connection's peer (`None` before any, and for Unix
    /// clients, which are usually unnamed): CPython's `last_accepted`.
    pub fn last_accepted(&self) -> Option<Address> {
        self.last_accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd()).ok_or(Error::Closed)
    }

    /// Waits for a connection and authenticates it (if the listener has a key). Blocks until a
    /// client connects; the handshake itself is bounded by the handshake timeout.
    pub fn accept(&self) -> Result<Connection> {
        let conn = self.accept_unauthenticated()?;
        self.authenticate(&conn)?;
        Ok(conn)
    }

    /// As [`accept`](Listener::accept), but [`Error::Timeout`] when no client connects within
    /// `timeout`.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        if !sys::poll_one(self.fd()?, Interest::Read, Some(timeout))? {
            return Err(Error::Timeout);
        }
        self.accept()
    }

    /// Accepts a connection without the handshake, for servers that authenticate on a thread
    /// of their own with [`authenticate`](Listener::authenticate), so that a slow client never
    /// holds up the accept loop (CPython's manager server accepts and authenticates on one
    /// thread).
    pub fn accept_unauthenticated(&self) -> Result<Connection> {
        let (fd, peer) = sys::net::accept(self.fd()?)?;
        *self.last_accepted.lock().unwrap_or_else(|e| e.into_inner()) = Address::from_peer(peer);
        let tcp = matches!(self.address, Address::Tcp(_));
        if tcp {
            sys::net::set_tcp_nodelay(fd.as_fd())?;
        }
        let mut conn = Connection::from_fd(fd);
        conn.set_quickack(tcp);
        conn.set_max_message_size(self.max_message_size);
        Ok(conn)
    }

    /// The server's side of the handshake on `conn` with this listener's key and handshake
    /// timeout: delivers a challenge, then answers the client's. Does nothing for a listener
    /// without a key.
    pub fn authenticate(&self, conn: &Connection) -> Result<()> {
        let Some(key) = &self.authkey else {
            return Ok(());
        };
        let deadline = self
            .handshake_timeout
            .and_then(|t| Instant::now().checked_add(t));
        auth::deliver_challenge_timeout(conn, key, left(deadline))?;
        auth::answer_challenge_timeout(conn, key, left(deadline))
    }

    /// Takes the listening socket out, leaving its file (if any) in place: for a process that
    /// binds a listener and hands it to another (a manager's server), which then owns the file.
    pub(crate) fn into_fd(mut self) -> Option<OwnedFd> {
        self.unlink = None;
        self.fd.take()
    }

    /// A listener over a socket bound and listening at `address` (handed over by
    /// [`into_fd`](Listener::into_fd)), with the default handshake timeout and message size. It
    /// removes the socket file when closed, as if this process had bound it.
    pub(crate) fn from_fd(fd: OwnedFd, address: Address, authkey: Option<Vec<u8>>) -> Listener {
        let unlink = match &address {
            Address::Unix(p) => Some((p.clone(), std::process::id())),
            _ => None,
        };
        Listener {
            fd: Some(fd),
            address,
            authkey,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            max_message_size: Some(super::DEFAULT_MAX_MESSAGE_SIZE),
            unlink,
            last_accepted: Mutex::new(None),
        }
    }

    /// Closes the listener (and removes its socket file). Further accepts are
    /// [`Error::Closed`].
    pub fn close(&mut self) {
        self.fd = None;
        if let Some((path, pid)) = self.unlink.take() {
            if pid == std::process::id() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsFd for Listener {
    /// The listening socket (readable when a client is waiting to be accepted).
    ///
    /// # Panics
    /// If the listener was closed.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd().expect("the listener is closed")
    }
}

fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Connects to a [`Listener`] or to a CPython `multiprocessing.connection.Listener` (CPython's
/// `multiprocessing.connection.Client`).
///
/// [`Client::connect`] is CPython's `Client(address, authkey=None)`; [`Client::builder`] sets a
/// timeout (default [`DEFAULT_HANDSHAKE_TIMEOUT`], for the connect and for the handshake) and
/// the connection's maximum message size. With a key, the client answers the listener's
/// challenge, then delivers its own; a wrong key is [`Error::AuthenticationError`].
#[derive(Debug, Clone)]
pub struct Client {
    address: Result<Address, String>,
    authkey: Option<Vec<u8>>,
    timeout: Option<Duration>,
    max_message_size: Option<u64>,
}

impl Client {
    /// Connects to `address`, authenticating with `authkey` when it is `Some`.
    pub fn connect<A: ToAddress + ?Sized>(
        address: &A,
        authkey: Option<&[u8]>,
    ) -> Result<Connection> {
        Client::builder(address).authkey(authkey).open()
    }

    /// A client of `address`, to be configured and then [`open`](Client::open)ed.
    pub fn builder<A: ToAddress + ?Sized>(address: &A) -> Client {
        Client {
            address: address.to_address().map_err(|e| e.to_string()),
            authkey: None,
            timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            max_message_size: Some(super::DEFAULT_MAX_MESSAGE_SIZE),
        }
    }

    /// The authentication key (`None`, the default: no handshake).
    pub fn authkey(mut self, key: Option<&[u8]>) -> Self {
        self.authkey = key.map(<[u8]>::to_vec);
        self
    }

    /// How long the connect, and then the handshake, may each take (`None`: as long as the
    /// kernel and the peer take, as CPython).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection's maximum message size; see [`Connection::set_max_message_size`].
    pub fn max_message_size(mut self, limit: Option<u64>) -> Self {
        self.max_message_size = limit;
        self
    }

    /// Connects and authenticates.
    pub fn open(self) -> Result<Connection> {
        let address = self.address.map_err(Error::InvalidArgument)?;
        let fd = sys::net::connect(&address.to_sockaddr()?, self.timeout).map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Error::Timeout
            } else {
                Error::Io(e)
            }
        })?;
        if matches!(address, Address::Tcp(_)) {
            sys::net::set_tcp_nodelay(fd.as_fd())?;
        }
        let mut conn = Connection::from_fd(fd);
        conn.set_max_message_size(self.max_message_size);
        if let Some(key) = &self.authkey {
            let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
            auth::answer_challenge_timeout(&conn, key, left(deadline))?;
            auth::deliver_challenge_timeout(&conn, key, left(deadline))?;
        }
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_connections_set_nodelay_on_both_sides() {
        let l = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || Client::connect(&addr, Some(b"k")).unwrap());
        let server = l.accept().unwrap();
        let client = t.join().unwrap();
        for c in [&server, &client] {
            let fd = c.fd().unwrap();
            assert!(sys::net::tcp_nodelay(fd).unwrap());
        }
        assert!(server.quickack && !client.quickack);
    }

    #[test]
    fn every_socket_is_close_on_exec_from_birth() {
        use std::os::fd::AsRawFd;
        for addr in [Address::localhost(), Address::unique_unix().unwrap()] {
            let l = Listener::bind(&addr, None).unwrap();
            let bound = l.address().clone();
            let t = std::thread::spawn(move || Client::connect(&bound, None).unwrap());
            let server = l.accept().unwrap();
            let client = t.join().unwrap();
            assert!(cloexec(l.as_fd().as_raw_fd()));
            assert!(cloexec(server.fileno().unwrap()));
            assert!(cloexec(client.fileno().unwrap()));
        }
    }

    /// Whether descriptor `fd` of this process is close-on-exec, from `/proc/self/fdinfo`
    /// (`flags` in octal; `O_CLOEXEC` is `02000000`).
    fn cloexec(fd: i32) -> bool {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        flags & libc::O_CLOEXEC as u32 != 0
    }

    #[test]
    fn a_unix_listener_removes_its_file_when_closed() {
        let addr = Address::unique_unix().unwrap();
        let Address::Unix(path) = addr.clone() else {
            unreachable!()
        };
        let mut l = Listener::bind(&addr, None).unwrap();
        assert!(path.exists());
        l.close();
        assert!(!path.exists());
        assert!(matches!(l.accept(), Err(Error::Closed)));
    }
}
