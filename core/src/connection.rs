//! `mproc::connection`: message-oriented channels between processes, CPython's
//! `multiprocessing.connection`.
//!
//! - [`pipe`] and [`Connection`]: the two ends of a socketpair or a pipe.
//! - [`Listener`] and [`Client`]: connections between processes that share no parent, over Unix
//!   sockets (paths and abstract names) and TCP (IPv4 and IPv6), authenticated by CPython's HMAC
//!   handshake (both generations: see [`deliver_challenge`]). They speak to CPython's own
//!   `Listener` and `Client`.
//! - [`wait`]: readiness of connections, listeners, process sentinels and sockets at once.
//!
//! Framing is CPython's `multiprocessing.connection`: each message is a 4-byte big-endian signed
//! length followed by the bytes; a message longer than `0x7fffffff` bytes is announced by a length
//! of `-1` (`0xFFFFFFFF`) followed by an 8-byte big-endian length. So `send_bytes`/`recv_bytes`
//! interoperate with Python's `Connection.send_bytes`/`recv_bytes` over the same socket.
//! [`Connection::send`]/[`Connection::recv`] frame a value serialised with bincode (Python uses
//! pickle there, so values do not cross to Python; bytes do).
//!
//! # What a peer can make a receiver do
//!
//! A frame's header is the peer's claim, not a fact. A receiver never allocates from it: a
//! message's buffer grows as its bytes arrive (doubling from 64 KiB, as CPython's `_recv` reads
//! chunk by chunk), through `try_reserve`, so a length of 2^62 followed by nothing costs nothing
//! and ends in [`Error::Eof`] when the peer goes, and a message that really does not fit in
//! memory is an [`Error::Io`] of kind `OutOfMemory` instead of an abort. A header above the
//! connection's [maximum message size](Connection::set_max_message_size)
//! ([`DEFAULT_MAX_MESSAGE_SIZE`] unless changed) is refused at once with
//! [`Error::MessageTooLong`]. Values are decoded within bounds too (see `reduction`): a frame
//! that declares a `Vec<()>` of 2^40 elements is an [`Error::Deserialize`], not a spin.

mod address;
mod auth;
mod listener;
mod wait;

pub use address::{Address, ToAddress};
pub use auth::{
    answer_challenge, answer_challenge_timeout, deliver_challenge, deliver_challenge_timeout,
};
pub use listener::{Client, Listener, ListenerBuilder, DEFAULT_BACKLOG, DEFAULT_HANDSHAKE_TIMEOUT};
pub use wait::{wait, wait_timeout, Waitable};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::reduction;
use crate::sys::{self, Interest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Reads are done in chunks of this size, so that a small message usually costs one `read`.
const READ_CHUNK: usize = 64 * 1024;

/// The largest message a connection receives unless told otherwise (4 GiB).
///
/// CPython sets no limit; a limit there must be, or a header alone could make a receiver commit to
/// any size. 4 GiB passes every message CPython frames with the 4-byte header (below 2 GiB) and
/// long-form messages up to 4 GiB; a program that moves larger ones through one connection raises
/// it with [`Connection::set_max_message_size`] (or lifts it with `None`). Servers that face
/// untrusted peers lower it.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 32;

/// A message whose header has been read but whose body has not fully arrived (kept across a
/// receive that timed out, so that the next receive continues where it stopped).
struct Partial {
    len: usize,
    body: Vec<u8>,
}

/// One end of a pipe. Not thread-safe (`!Sync`), like Python's: two threads using the same end
/// at once could interleave messages. Send it to another thread, or to a child process as a start
/// argument, whole.
///
/// # Receiving: blocking, non-blocking and timed
/// [`recv`](Connection::recv) and [`recv_bytes`](Connection::recv_bytes) wait for a message;
/// [`recv_timeout`](Connection::recv_timeout) and
/// [`recv_bytes_timeout`](Connection::recv_bytes_timeout) wait at most a given time
/// ([`Error::Timeout`]); [`poll`](Connection::poll) says without waiting whether a message is
/// there, and [`poll_timeout`](Connection::poll_timeout) waits at most a given time for one.
/// To wait on several connections (and processes) at once, see [`wait`].
///
/// | Python | mproc |
/// |---|---|
/// | `conn.send(obj)`, `conn.recv()` | `conn.send(&value)?`, `conn.recv::<T>()?` |
/// | `conn.send_bytes(b)`, `conn.recv_bytes()` | `conn.send_bytes(&b)?`, `conn.recv_bytes()?` |
/// | `conn.send_bytes(b, offset, size)` | `conn.send_bytes_range(&b, offset..offset + size)?` |
/// | `conn.recv_bytes(maxlength)` | `conn.recv_bytes_max(maxlength)?` |
/// | `conn.poll()`, `conn.poll(t)` | `conn.poll()?`, `conn.poll_timeout(t)?` |
/// | `conn.poll(None)` | `wait(&[&conn])?` |
///
/// ```
/// use std::time::Duration;
/// # fn main() -> mproc::Result<()> {
/// let (a, b) = mproc::pipe()?;
/// assert!(!b.poll()?); // nothing yet
/// a.send(&(42, None::<i64>, "hello"))?;
/// assert!(b.poll_timeout(Duration::from_secs(1))?);
/// let got: (i32, Option<i64>, String) = b.recv()?;
/// assert_eq!(got, (42, None, "hello".to_string()));
/// # Ok(()) }
/// ```
///
/// A value is received as the type it was sent as (bincode carries no types); anything else is
/// an [`Error::Deserialize`] that names the type expected and where decoding stopped. Python
/// values ([`pickle::Value`](crate::pickle::Value)) travel too, and print as Python prints them.
pub struct Connection {
    fd: Option<OwnedFd>,
    /// A `Cell`: a duplex end stops being readable after an over-long message, as in Python.
    readable: Cell<bool>,
    writable: bool,
    /// Bytes read from the descriptor but not yet returned as (part of) a message.
    rbuf: RefCell<Vec<u8>>,
    rpos: Cell<usize>,
    /// Set when a receive left a read-only end in the middle of a message: the end is closed.
    broken: Cell<bool>,
    /// The largest message this end receives; `None`: no limit.
    max_message_size: Option<u64>,
    /// A message being received, when a receive with a timeout gave up in its middle.
    partial: RefCell<Option<Partial>>,
    /// Set `TCP_QUICKACK` before each read (the server side of a TCP connection).
    quickack: bool,
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_ref().map(|fd| fd.as_raw_fd()))
            .field("readable", &self.readable.get())
            .field("writable", &self.writable)
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

/// Makes a duplex pipe (Python's `Pipe()`): the two ends of a socketpair, each of which can
/// send and receive. For a one-way pipe, see [`pipe_simplex`].
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let (a, b) = mproc::pipe()?;
/// a.send(&"ping")?;
/// assert_eq!(b.recv::<String>()?, "ping");
/// b.send(&"pong")?;
/// assert_eq!(a.recv::<String>()?, "pong");
/// # Ok(()) }
/// ```
#[doc(alias = "Pipe")]
pub fn pipe() -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair()?;
    Ok((
        Connection::new(a, true, true),
        Connection::new(b, true, true),
    ))
}

/// Makes a one-way pipe (Python's `Pipe(duplex=False)`): `(reader, writer)`; the first only
/// receives, the second only sends.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let (reader, writer) = mproc::pipe_simplex()?;
/// writer.send_bytes(b"one way")?;
/// assert_eq!(reader.recv_bytes()?, b"one way");
/// assert!(matches!(reader.send_bytes(b"back"), Err(mproc::Error::NotWritable)));
/// # Ok(()) }
/// ```
pub fn pipe_simplex() -> Result<(Connection, Connection)> {
    let (r, w) = sys::pipe()?;
    Ok((
        Connection::new(r, true, false),
        Connection::new(w, false, true),
    ))
}

impl Context {
    /// Makes a duplex pipe; see [`pipe`]. (Connections belong to no context: the two are the
    /// same.)
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (parent_conn, child_conn) = mproc::default_context().pipe()?;
    /// # drop((parent_conn, child_conn));
    /// # Ok(()) }
    /// ```
    #[doc(alias = "Pipe")]
    pub fn pipe(&self) -> Result<(Connection, Connection)> {
        pipe()
    }

    /// Makes a one-way pipe, `(reader, writer)`; see [`pipe_simplex`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (reader, writer) = mproc::default_context().pipe_simplex()?;
    /// assert!(reader.readable() && !reader.writable());
    /// assert!(writer.writable() && !writer.readable());
    /// # Ok(()) }
    /// ```
    pub fn pipe_simplex(&self) -> Result<(Connection, Connection)> {
        pipe_simplex()
    }
}

impl Connection {
    fn new(fd: OwnedFd, readable: bool, writable: bool) -> Connection {
        Connection {
            fd: Some(fd),
            readable: Cell::new(readable),
            writable,
            rbuf: RefCell::new(Vec::new()),
            rpos: Cell::new(0),
            broken: Cell::new(false),
            max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
            partial: RefCell::new(None),
            quickack: false,
            _not_sync: PhantomData,
        }
    }

    /// Marks this end as the server side of a TCP connection: `TCP_QUICKACK` is set before each
    /// read, so that a peer whose small writes wait for our ACK (Nagle) does not stall for the
    /// delayed-ACK time.
    pub(crate) fn set_quickack(&mut self, on: bool) {
        self.quickack = on;
    }

    /// The largest message this end will receive (`None`: no limit). See
    /// [`set_max_message_size`](Connection::set_max_message_size).
    pub fn max_message_size(&self) -> Option<u64> {
        self.max_message_size
    }

    /// Sets the largest message this end will receive; `None` lifts the limit. A frame whose
    /// header announces more is refused with [`Error::MessageTooLong`] before any of its body is
    /// read, with the consequences a too-long message has (see
    /// [`recv_bytes`](Connection::recv_bytes)). The default is [`DEFAULT_MAX_MESSAGE_SIZE`]. The
    /// setting travels with the connection when it is passed to a child.
    pub fn set_max_message_size(&mut self, limit: Option<u64>) {
        self.max_message_size = limit;
    }

    /// Wraps a connected stream socket that both receives and sends (for example one end of a
    /// socket a Python `multiprocessing.connection` peer uses): Python's `Connection(handle)`.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    ///
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = UnixStream::pair()?;
    /// let (a, b) = (mproc::Connection::from_fd(a.into()), mproc::Connection::from_fd(b.into()));
    /// a.send_bytes(b"ping")?;
    /// assert_eq!(b.recv_bytes()?, b"ping");
    /// # Ok(()) }
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Connection {
        Connection::new(fd, true, true)
    }

    /// Wraps a descriptor that only receives (the read end of a pipe): Python's
    /// `Connection(handle, writable=False)`. Sending on it is [`Error::NotWritable`].
    ///
    /// ```
    /// use mproc::{Connection, Error};
    ///
    /// # fn main() -> mproc::Result<()> {
    /// let (r, w) = std::io::pipe()?;
    /// let (r, w) = (Connection::from_read_fd(r.into()), Connection::from_write_fd(w.into()));
    /// w.send(&7u8)?;
    /// assert_eq!(r.recv::<u8>()?, 7);
    /// assert!(matches!(r.send(&7u8), Err(Error::NotWritable)));
    /// assert!(matches!(w.recv::<u8>(), Err(Error::NotReadable)));
    /// # Ok(()) }
    /// ```
    pub fn from_read_fd(fd: OwnedFd) -> Connection {
        Connection::new(fd, true, false)
    }

    /// Wraps a descriptor that only sends (the write end of a pipe): Python's
    /// `Connection(handle, readable=False)`. Receiving on it is [`Error::NotReadable`].
    pub fn from_write_fd(fd: OwnedFd) -> Connection {
        Connection::new(fd, false, true)
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable.get()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Connection::close) was called.
    pub fn closed(&self) -> bool {
        self.fd.is_none() || self.broken.get()
    }

    /// The underlying descriptor (Python's `fileno()`).
    pub fn fileno(&self) -> Result<RawFd> {
        Ok(self.fd()?.as_raw_fd())
    }

    /// The descriptor, borrowed (for the socket options a server reads off it).
    pub(crate) fn borrow_fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd()
    }

    fn fd(&self) -> Result<BorrowedFd<'_>> {
        if self.broken.get() {
            return Err(Error::Closed);
        }
        // A `match`, not `ok_or(Error::Closed)`: an eagerly built `Error` was made and dropped on
        // every call of the hot path.
        match &self.fd {
            Some(f) => Ok(f.as_fd()),
            None => Err(Error::Closed),
        }
    }

    fn check_writable(&self) -> Result<BorrowedFd<'_>> {
        let fd = self.fd()?;
        if !self.writable {
            return Err(Error::NotWritable);
        }
        Ok(fd)
    }

    fn check_readable(&self) -> Result<BorrowedFd<'_>> {
        let fd = self.fd()?;
        if !self.readable.get() {
            return Err(Error::NotReadable);
        }
        Ok(fd)
    }

    /// Closes this end. Further use is [`Error::Closed`]; the other end sees end of file once
    /// every copy of this end (in any process) is closed.
    pub fn close(&mut self) {
        self.fd = None;
        self.rbuf.borrow_mut().clear();
        self.rpos.set(0);
        *self.partial.borrow_mut() = None;
    }

    /// Sends a value (serialised with bincode) as one message (Python's `send(obj)`). The
    /// message starts with the sender's type name (`std::any::type_name`, behind a 2-byte
    /// length), so that a receiver expecting another type says which type was sent.
    /// [`Error::Serialize`] if it cannot be serialised (naming its type), [`Error::Eof`] if the
    /// other end is closed.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// a.send(&vec![1u8, 2, 3])?;
    /// assert_eq!(b.recv::<Vec<u8>>()?, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let fd = self.check_writable()?;
        let bytes = reduction::to_tagged_bytes(value, "a message to send on a Connection")?;
        send_frame(fd, &bytes)
    }

    /// Receives one message sent by [`send`](Connection::send) and deserialises it (Python's
    /// `recv()`). Waits until a message arrives; [`Error::Eof`] when the other end is closed
    /// and nothing is left; [`Error::Deserialize`] if the message is not a `T` (naming `T`, the
    /// position and the cause).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// a.send(&3.5f64)?;
    /// let x: f64 = b.recv()?;
    /// assert_eq!(x, 3.5);
    /// # Ok(()) }
    /// ```
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        let bytes = self.recv_message(None, None)?;
        reduction::from_tagged_bytes(&bytes, "a message received on a Connection")
    }

    /// As [`recv`](Connection::recv), giving up with [`Error::Timeout`] when no whole message has
    /// arrived within `timeout`. Part of a message that arrived in time is kept for the next
    /// receive.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let (_a, b) = mproc::pipe()?;
    /// let r = b.recv_timeout::<u32>(Duration::from_millis(10));
    /// assert!(matches!(r, Err(mproc::Error::Timeout)));
    /// # Ok(()) }
    /// ```
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let bytes = self.recv_message(None, Instant::now().checked_add(timeout))?;
        reduction::from_tagged_bytes(&bytes, "a message received on a Connection")
    }

    /// Sends `buf` as one message (Python's `send_bytes(buf)`), framed as CPython frames it.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok(()) }
    /// ```
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        let fd = self.check_writable()?;
        send_frame(fd, buf)
    }

    /// Sends the part `range` of `buf` as one message, as Python's `send_bytes(buf, offset,
    /// size)` (`offset..offset + size`); a range outside `buf` is [`Error::BadRange`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// a.send_bytes_range(b"0123456789", 2..5)?;
    /// a.send_bytes_range(b"0123456789", 7..)?;
    /// assert_eq!(b.recv_bytes()?, b"234");
    /// assert_eq!(b.recv_bytes()?, b"789");
    /// assert!(a.send_bytes_range(b"abc", 2..9).is_err());
    /// # Ok(()) }
    /// ```
    pub fn send_bytes_range(&self, buf: &[u8], range: impl RangeBounds<usize>) -> Result<()> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => buf.len(),
        };
        if start > buf.len() {
            return Err(Error::BadRange(format!(
                "send_bytes_range: buffer length < offset ({} < {start})",
                buf.len()
            )));
        }
        if end > buf.len() || end < start {
            return Err(Error::BadRange(format!(
                "send_bytes_range: the range {start}..{end} is not within the buffer of {} bytes",
                buf.len()
            )));
        }
        self.send_bytes(&buf[start..end])
    }

    /// Receives one message as bytes (Python's `recv_bytes()`), waiting until one arrives.
    /// A message above the connection's [maximum
    /// size](Connection::set_max_message_size) is [`Error::MessageTooLong`], after which (as in
    /// Python) a duplex end is no longer readable ([`Error::NotReadable`]) but can still send,
    /// and a read-only end is closed; so is a message whose buffer cannot be allocated
    /// ([`Error::Io`] of kind `OutOfMemory`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// a.send_bytes(b"")?;
    /// assert_eq!(b.recv_bytes()?, b""); // an empty message is a message
    /// # Ok(()) }
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_message(None, None)
    }

    /// As [`recv_bytes`](Connection::recv_bytes), refusing a message longer than `maxlen`
    /// bytes with [`Error::MessageTooLong`] (Python's `recv_bytes(maxlength)`), with the same
    /// consequences for the connection.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// a.send_bytes(b"too long")?;
    /// assert!(matches!(b.recv_bytes_max(3), Err(mproc::Error::MessageTooLong { .. })));
    /// # Ok(()) }
    /// ```
    #[doc(alias = "maxlength")]
    pub fn recv_bytes_max(&self, maxlen: usize) -> Result<Vec<u8>> {
        self.recv_message(Some(maxlen), None)
    }

    /// As [`recv_bytes`](Connection::recv_bytes), giving up with [`Error::Timeout`] when no
    /// whole message has arrived within `timeout`. Part of a message that arrived in time is
    /// kept: the next receive continues it.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// a.send_bytes(b"x")?;
    /// assert_eq!(b.recv_bytes_timeout(Duration::from_secs(1))?, b"x");
    /// # Ok(()) }
    /// ```
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_message(None, Instant::now().checked_add(timeout))
    }

    /// Receives one message of at most `maxlen` bytes (`None`: the connection's maximum),
    /// before `deadline` (`None`: however long it takes). The usual case stays in this small
    /// function: no message left half received by a timeout, a short header within the limits,
    /// and the whole message in the buffer after the header's read. Everything else is
    /// [`recv_any`](Connection::recv_any)'s.
    #[inline(always)]
    pub(crate) fn recv_message(
        &self,
        maxlen: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>> {
        let fd = self.check_readable()?;
        if self.partial.borrow().is_none() {
            self.fill(fd, 4, deadline)?;
            if let Some(body) = self.take_whole_message(maxlen) {
                return Ok(body);
            }
        }
        self.recv_any(fd, maxlen, deadline)
    }

    /// The next message, if the buffer holds all of it behind a short header that is within
    /// `maxlen` and the connection's maximum size; otherwise `None`, having consumed nothing.
    /// The bytes have arrived, so the allocation is bounded by what was received, not by what a
    /// header claims.
    #[inline(always)]
    fn take_whole_message(&self, maxlen: Option<usize>) -> Option<Vec<u8>> {
        let buf = self.rbuf.borrow();
        let pos = self.rpos.get();
        let header: [u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
        // Negative: the long form, or a bad header; both are `recv_any`'s.
        let len = usize::try_from(i32::from_be_bytes(header)).ok()?;
        if maxlen.is_some_and(|max| len > max)
            || self.max_message_size.is_some_and(|max| len as u64 > max)
        {
            return None;
        }
        let start = pos + 4;
        let body = buf.get(start..start + len)?;
        let body = sys::copy_to_vec(body);
        self.rpos.set(start + len);
        Some(body)
    }

    /// Receives a message in any case: resumes one a timeout left half received, reads a long
    /// header, refuses a length above the limits, reads a body that is not all buffered.
    #[inline(never)]
    fn recv_any(
        &self,
        fd: BorrowedFd<'_>,
        maxlen: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>> {
        if let Some(msg) = self.partial.borrow_mut().take() {
            if resumed_too_long(&msg, maxlen) {
                return Err(self.bad_message_length(msg.len as u64, maxlen.unwrap_or(usize::MAX)));
            }
            return self.recv_body(fd, msg, deadline);
        }
        let len = self.check_length(self.read_header(fd, deadline)?, maxlen)?;
        if let Some(body) = self.take_buffered(len) {
            return Ok(body);
        }
        let msg = Partial {
            len,
            body: Vec::new(),
        };
        self.recv_body(fd, msg, deadline)
    }

    /// Receives the rest of `msg`, keeping it for the next receive if the deadline passes.
    #[inline(never)]
    fn recv_body(
        &self,
        fd: BorrowedFd<'_>,
        mut msg: Partial,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>> {
        match self.read_body(fd, &mut msg, deadline) {
            Ok(()) => Ok(msg.body),
            Err(Error::Timeout) => {
                *self.partial.borrow_mut() = Some(msg);
                Err(Error::Timeout)
            }
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                self.desync();
                Err(Error::Io(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Checks a header's length against `maxlen` and the connection's maximum size.
    fn check_length(&self, len: u64, maxlen: Option<usize>) -> Result<usize> {
        if let Some(max) = maxlen {
            if len > max as u64 {
                return Err(self.bad_message_length(len, max));
            }
        }
        if let Some(max) = self.max_message_size {
            if len > max {
                return Err(
                    self.bad_message_length(len, usize::try_from(max).unwrap_or(usize::MAX))
                );
            }
        }
        usize::try_from(len).map_err(|_| self.bad_message_length(len, usize::MAX))
    }

    /// The stream is no longer at a message boundary. As Python's `_bad_message_length`: a duplex
    /// end stops being readable but can still send; a read-only end is closed (its descriptor is
    /// released on drop).
    fn bad_message_length(&self, len: u64, maxlen: usize) -> Error {
        self.desync();
        Error::MessageTooLong { len, maxlen }
    }

    fn desync(&self) {
        self.rbuf.borrow_mut().clear();
        self.rpos.set(0);
        *self.partial.borrow_mut() = None;
        if self.writable {
            self.readable.set(false);
        } else {
            self.broken.set(true);
        }
    }

    /// Whether a message (or part of one, or end of file) is ready to be received, without
    /// waiting (Python's `poll()`). End of file counts as ready: the next receive reports it.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// assert!(!b.poll()?);
    /// a.send_bytes(b"x")?;
    /// assert!(b.poll()?);
    /// # Ok(()) }
    /// ```
    pub fn poll(&self) -> Result<bool> {
        self.poll_inner(Some(Duration::ZERO))
    }

    /// Whether a message (or part of one, or end of file) is ready to be received, waiting at
    /// most `timeout` for one (Python's `poll(timeout)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let (a, b) = mproc::pipe()?;
    /// drop(a); // end of file counts as ready
    /// assert!(b.poll_timeout(Duration::from_secs(1))?);
    /// # Ok(()) }
    /// ```
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool> {
        self.poll_inner(Some(timeout))
    }

    fn poll_inner(&self, timeout: Option<Duration>) -> Result<bool> {
        let fd = self.check_readable()?;
        if self.buffered() > 0 {
            return Ok(true);
        }
        Ok(sys::poll_one(fd, Interest::Read, timeout)?)
    }

    /// Whether received bytes wait in this end's buffer (the rest of a message kept by a receive
    /// that timed out does not count: more of it must arrive first).
    pub(crate) fn has_buffered(&self) -> bool {
        self.buffered() > 0
    }

    /// Buffered bytes not yet consumed.
    fn buffered(&self) -> usize {
        self.rbuf.borrow().len() - self.rpos.get()
    }

    /// Waits, if there is a deadline, until `fd` is readable; [`Error::Timeout`] when the deadline
    /// passes first. Then, on the server side of a TCP connection, asks for quick ACKs.
    fn before_read(&self, fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<()> {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if !sys::poll_one(fd, Interest::Read, Some(left))? {
                return Err(Error::Timeout);
            }
        }
        if self.quickack {
            // Advisory: a failure only costs latency.
            let _ = sys::net::set_tcp_quickack(fd);
        }
        Ok(())
    }

    /// Reads until at least `n` bytes are buffered; `Eof` if the stream ends first. Bytes read
    /// stay buffered if the deadline passes.
    fn fill(&self, fd: BorrowedFd<'_>, n: usize, deadline: Option<Instant>) -> Result<()> {
        while self.buffered() < n {
            self.before_read(fd, deadline)?;
            let mut buf = self.rbuf.borrow_mut();
            // Move what is left of a partly consumed buffer to the front, so that a steady stream
            // whose reads split messages never grows the buffer past one chunk and a message.
            let pos = self.rpos.get();
            if pos > 0 {
                buf.drain(..pos);
                self.rpos.set(0);
            }
            if buf.capacity() - buf.len() < READ_CHUNK {
                buf.reserve(READ_CHUNK);
            }
            if sys::read_into_spare(fd, &mut buf, READ_CHUNK)? == 0 {
                return Err(Error::Eof);
            }
        }
        Ok(())
    }

    /// The next `N` buffered bytes (the caller has made sure they are there).
    fn peek_array<const N: usize>(&self, skip: usize) -> [u8; N] {
        let buf = self.rbuf.borrow();
        let pos = self.rpos.get() + skip;
        buf[pos..pos + N].try_into().expect("N bytes are buffered")
    }

    /// Reads a header. Nothing is consumed until the whole header is there, so that a deadline
    /// passing in its middle leaves the stream as it was.
    fn read_header(&self, fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<u64> {
        self.fill(fd, 4, deadline)?;
        let n = i32::from_be_bytes(self.peek_array::<4>(0));
        if n == -1 {
            self.fill(fd, 12, deadline)?;
            let len = u64::from_be_bytes(self.peek_array::<8>(4));
            self.rpos.set(self.rpos.get() + 12);
            return Ok(len);
        }
        self.rpos.set(self.rpos.get() + 4);
        if n < 0 {
            self.desync();
            return Err(Error::Deserialize(format!("bad message length {n}")));
        }
        Ok(n as u64)
    }

    /// The next `len` bytes as a message, if they are all buffered (the usual case for a small
    /// message: its header and body came in one read). They have arrived, so the allocation is
    /// bounded by what was received, not by what a header claims.
    fn take_buffered(&self, len: usize) -> Option<Vec<u8>> {
        let buf = self.rbuf.borrow();
        let pos = self.rpos.get();
        if buf.len() - pos < len {
            return None;
        }
        let body = sys::copy_to_vec(&buf[pos..pos + len]);
        self.rpos.set(pos + len);
        Some(body)
    }

    /// Reads the rest of `msg`'s body: first what is buffered, then straight from the
    /// descriptor. The body grows as bytes arrive, never ahead of them by more than its own size
    /// (or one chunk).
    fn read_body(
        &self,
        fd: BorrowedFd<'_>,
        msg: &mut Partial,
        deadline: Option<Instant>,
    ) -> Result<()> {
        {
            let buf = self.rbuf.borrow();
            let pos = self.rpos.get();
            let have = (buf.len() - pos).min(msg.len - msg.body.len());
            if have > 0 {
                grow(&mut msg.body, msg.len, have)?;
                msg.body.extend_from_slice(&buf[pos..pos + have]);
                self.rpos.set(pos + have);
            }
        }
        while msg.body.len() < msg.len {
            self.before_read(fd, deadline)?;
            if msg.body.len() == msg.body.capacity() {
                grow(&mut msg.body, msg.len, 1)?;
            }
            let want = msg.len - msg.body.len();
            if sys::read_into_spare(fd, &mut msg.body, want)? == 0 {
                return Err(Error::Eof);
            }
        }
        Ok(())
    }
}

/// Whether a message resumed after a timeout is longer than the `maxlen` of this receive.
fn resumed_too_long(msg: &Partial, maxlen: Option<usize>) -> bool {
    maxlen.is_some_and(|max| msg.len > max)
}

/// Makes room in `body` (bound for `len` bytes) for at least `need` more bytes: double its
/// capacity (at least one chunk), never past `len`. Allocation failure is an error, not an abort.
pub(crate) fn grow(body: &mut Vec<u8>, len: usize, need: usize) -> Result<()> {
    if body.capacity() - body.len() >= need {
        return Ok(());
    }
    let target = body
        .capacity()
        .saturating_mul(2)
        .max(READ_CHUNK)
        .max(body.len() + need)
        .min(len);
    body.try_reserve_exact(target - body.len()).map_err(|e| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("cannot allocate a buffer of {target} bytes for a message of {len} bytes: {e}"),
        ))
    })
}

fn send_frame(fd: BorrowedFd<'_>, body: &[u8]) -> Result<()> {
    let mut header = [0u8; 12];
    let header: &[u8] = if body.len() > 0x7fff_ffff {
        header[..4].copy_from_slice(&(-1i32).to_be_bytes());
        header[4..].copy_from_slice(&(body.len() as u64).to_be_bytes());
        &header
    } else {
        header[..4].copy_from_slice(&(body.len() as i32).to_be_bytes());
        &header[..4]
    };
    // Header and body leave in one gathered write.
    write_all(fd, header, body).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => Error::Eof,
        _ => Error::Io(e),
    })
}

fn write_all(fd: BorrowedFd<'_>, mut a: &[u8], mut b: &[u8]) -> std::io::Result<()> {
    loop {
        let n = if a.is_empty() {
            sys::write(fd, b)?
        } else {
            sys::writev2(fd, a, b)?
        };
        // The usual case: one write takes all of it.
        if n == a.len() + b.len() {
            return Ok(());
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
}

/// How a connection crosses to a child: flags, bytes already buffered, and the descriptor's index.
#[derive(Serialize, Deserialize)]
struct ConnectionWire {
    readable: bool,
    writable: bool,
    buffered: Vec<u8>,
    max_message_size: Option<u64>,
    quickack: bool,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| serde::ser::Error::custom("cannot send a closed connection"))?;
        if self.partial.borrow().is_some() {
            return Err(serde::ser::Error::custom(
                "cannot send a connection in the middle of receiving a message",
            ));
        }
        let buffered = {
            let buf = self.rbuf.borrow();
            buf[self.rpos.get()..].to_vec()
        };
        let wire = ConnectionWire {
            readable: self.readable.get(),
            writable: self.writable,
            buffered,
            max_message_size: self.max_message_size,
            quickack: self.quickack,
        };
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&wire)?;
        t.serialize_element(&FdRef(fd.as_fd()))?;
        t.end()
    }
}

struct FdRef<'a>(BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        reduction::serialize_fd(self.0, "Connection", s)
    }
}

struct FdOwned(OwnedFd);

impl<'de> Deserialize<'de> for FdOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        reduction::deserialize_fd(d).map(FdOwned)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (wire, fd): (ConnectionWire, FdOwned) = Deserialize::deserialize(d)?;
        let mut c = Connection::new(fd.0, wire.readable, wire.writable);
        *c.rbuf.borrow_mut() = wire.buffered;
        c.max_message_size = wire.max_message_size;
        c.quickack = wire.quickack;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_stream_of_split_messages_keeps_the_buffer_bounded() {
        // 7-byte frames (4 + 3) do not line up with the 64 KiB reads, so reads end mid-message.
        // The writer sends every frame in one raw write, so the reader's chunked reads end in the
        // middle of frames.
        let (mut raw, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let b = Connection::from_fd(OwnedFd::from(ours));
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut all = Vec::with_capacity(200_000 * 7);
            for i in 0..200_000u32 {
                all.extend_from_slice(&3i32.to_be_bytes());
                all.extend_from_slice(&i.to_le_bytes()[..3]);
            }
            raw.write_all(&all).unwrap();
        });
        let mut largest = 0;
        for i in 0..200_000u32 {
            assert_eq!(b.recv_bytes().unwrap(), &i.to_le_bytes()[..3]);
            largest = largest.max(b.rbuf.borrow().capacity());
        }
        writer.join().unwrap();
        assert!(
            largest <= 3 * READ_CHUNK,
            "the read buffer grew to {largest} bytes"
        );
        assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
    }

    #[test]
    fn a_message_wholly_buffered_is_held_to_the_same_limits() {
        // All four frames arrive in one read, so each is whole in the buffer after its header.
        let (mut raw, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut b = Connection::from_fd(OwnedFd::from(ours));
        b.set_max_message_size(Some(4));
        let mut all = Vec::new();
        for body in [&b""[..], b"abc", b"defg", b"hijkl"] {
            all.extend_from_slice(&(body.len() as i32).to_be_bytes());
            all.extend_from_slice(body);
        }
        std::io::Write::write_all(&mut raw, &all).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"");
        assert_eq!(b.recv_bytes_max(3).unwrap(), b"abc");
        assert!(matches!(
            b.recv_bytes_max(3),
            Err(Error::MessageTooLong { len: 4, maxlen: 3 })
        ));
        assert!(matches!(b.recv_bytes(), Err(Error::NotReadable)));
        // The connection's maximum size: 4 bytes pass, 5 do not.
        let (mut raw, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut c = Connection::from_fd(OwnedFd::from(ours));
        c.set_max_message_size(Some(4));
        std::io::Write::write_all(&mut raw, &all).unwrap();
        for want in [&b""[..], b"abc", b"defg"] {
            assert_eq!(c.recv_bytes().unwrap(), want);
        }
        assert!(matches!(
            c.recv_bytes(),
            Err(Error::MessageTooLong { len: 5, maxlen: 4 })
        ));
    }
}
