//! `Pipe` and `Connection`: message-oriented channels between processes.
//!
//! Framing is CPython's `multiprocessing.connection`: each message is a 4-byte big-endian signed
//! length followed by the bytes; a message longer than `0x7fffffff` bytes is announced by a length
//! of `-1` (`0xFFFFFFFF`) followed by an 8-byte big-endian length. So `send_bytes`/`recv_bytes`
//! interoperate with Python's `Connection.send_bytes`/`recv_bytes` over the same socket.
//! [`Connection::send`]/[`Connection::recv`] frame a value serialised with bincode (Python uses
//! pickle there, so values do not cross to Python; bytes do).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::reduction;
use crate::sys::{self, Interest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

/// Reads are done in chunks of this size, so that a small message usually costs one `read`.
const READ_CHUNK: usize = 64 * 1024;

/// One end of a pipe. Not thread-safe (`!Sync`), like Python's: two threads using the same end
/// at once could interleave messages. Send it to another thread, or to a child process as a start
/// argument, whole.
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
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_ref().map(|fd| fd.as_raw_fd()))
            .field("readable", &self.readable.get())
            .field("writable", &self.writable)
            .finish()
    }
}

/// Makes a pipe (Python's `Pipe(duplex)`). Duplex (`true`): two ends of a socketpair, each can
/// send and receive. Simplex (`false`): `(reader, writer)`, the first only receives and the
/// second only sends.
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    if duplex {
        let (a, b) = sys::socketpair()?;
        Ok((
            Connection::new(a, true, true),
            Connection::new(b, true, true),
        ))
    } else {
        let (r, w) = sys::pipe()?;
        Ok((
            Connection::new(r, true, false),
            Connection::new(w, false, true),
        ))
    }
}

impl Context {
    /// Makes a pipe; see [`pipe`].
    pub fn pipe(&self, duplex: bool) -> Result<(Connection, Connection)> {
        pipe(duplex)
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
            _not_sync: PhantomData,
        }
    }

    /// Wraps a connected stream socket or pipe end (for example one end of a socket a Python
    /// `multiprocessing.connection` peer uses).
    pub fn from_fd(fd: OwnedFd, readable: bool, writable: bool) -> Connection {
        Connection::new(fd, readable, writable)
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

    fn fd(&self) -> Result<BorrowedFd<'_>> {
        if self.broken.get() {
            return Err(Error::Closed);
        }
        self.fd.as_ref().map(|f| f.as_fd()).ok_or(Error::Closed)
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
    }

    /// Sends a value (serialised) as one message.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let fd = self.check_writable()?;
        let bytes = reduction::to_bytes(value)?;
        send_frame(fd, &bytes)
    }

    /// Receives one message sent by [`send`](Connection::send) and deserialises it. Blocks until
    /// a message arrives; [`Error::Eof`] when the other end is closed and nothing is left.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        let bytes = self.recv_bytes(None)?;
        reduction::from_bytes(&bytes)
    }

    /// Sends `buf` as one message.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        let fd = self.check_writable()?;
        send_frame(fd, buf)
    }

    /// Sends `buf[offset..offset + size]` (`size` `None`: to the end) as one message, as
    /// Python's `send_bytes(buf, offset, size)`; a range outside `buf` is [`Error::BadRange`].
    pub fn send_bytes_range(&self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        if offset > buf.len() {
            return Err(Error::BadRange(format!(
                "buffer length < offset ({} < {offset})",
                buf.len()
            )));
        }
        let size = size.unwrap_or(buf.len() - offset);
        if offset.checked_add(size).is_none_or(|end| end > buf.len()) {
            return Err(Error::BadRange(format!(
                "buffer length < offset + size ({} < {offset} + {size})",
                buf.len()
            )));
        }
        self.send_bytes(&buf[offset..offset + size])
    }

    /// Receives one message as bytes. With `maxlen`, a longer message is
    /// [`Error::MessageTooLong`], after which (as in Python) a duplex end is no longer readable
    /// ([`Error::NotReadable`]) but can still send, and a read-only end is closed.
    pub fn recv_bytes(&self, maxlen: Option<usize>) -> Result<Vec<u8>> {
        let fd = self.check_readable()?;
        let len = self.read_header(fd)?;
        if let Some(max) = maxlen {
            if len > max as u64 {
                // The stream is no longer at a message boundary. As Python's
                // `_bad_message_length`: a duplex end stops being readable but can still send; a
                // read-only end is closed (its descriptor is released on drop).
                self.rbuf.borrow_mut().clear();
                self.rpos.set(0);
                if self.writable {
                    self.readable.set(false);
                } else {
                    self.broken.set(true);
                }
                return Err(Error::MessageTooLong { len, maxlen: max });
            }
        }
        let len =
            usize::try_from(len).map_err(|_| Error::BadRange(format!("message of {len} bytes")))?;
        self.read_body(fd, len)
    }

    /// Whether a message (or part of one) is ready to be received, waiting up to `timeout`
    /// (`Some(Duration::ZERO)`: just look; `None`: wait until something arrives). End of file
    /// counts as ready: the next receive reports it.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let fd = self.check_readable()?;
        if self.rbuf.borrow().len() > self.rpos.get() {
            return Ok(true);
        }
        Ok(sys::poll_one(fd, Interest::Read, timeout)?)
    }

    /// Buffered bytes not yet consumed.
    fn buffered(&self) -> usize {
        self.rbuf.borrow().len() - self.rpos.get()
    }

    /// Reads until at least `n` bytes are buffered; `Eof` if the stream ends first.
    fn fill(&self, fd: BorrowedFd<'_>, n: usize) -> Result<()> {
        while self.buffered() < n {
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

    /// Consumes `N` buffered bytes (the caller has made sure they are there).
    fn take_array<const N: usize>(&self) -> [u8; N] {
        let buf = self.rbuf.borrow();
        let pos = self.rpos.get();
        let out: [u8; N] = buf[pos..pos + N].try_into().expect("N bytes are buffered");
        self.rpos.set(pos + N);
        out
    }

    fn read_header(&self, fd: BorrowedFd<'_>) -> Result<u64> {
        self.fill(fd, 4)?;
        let n = i32::from_be_bytes(self.take_array::<4>());
        if n == -1 {
            self.fill(fd, 8)?;
            return Ok(u64::from_be_bytes(self.take_array::<8>()));
        }
        if n < 0 {
            return Err(Error::Deserialize(format!("bad message length {n}")));
        }
        Ok(n as u64)
    }

    fn read_body(&self, fd: BorrowedFd<'_>, len: usize) -> Result<Vec<u8>> {
        let have = self.buffered().min(len);
        let mut out = Vec::with_capacity(len);
        {
            let buf = self.rbuf.borrow();
            let pos = self.rpos.get();
            out.extend_from_slice(&buf[pos..pos + have]);
            self.rpos.set(pos + have);
        }
        // The rest goes straight into the message, without passing through the buffer.
        while out.len() < len {
            let want = len - out.len();
            if sys::read_into_spare(fd, &mut out, want)? == 0 {
                return Err(Error::Eof);
            }
        }
        Ok(out)
    }
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
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            sys::write(fd, b)?
        } else {
            sys::writev2(fd, a, b)?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// How a connection crosses to a child: flags, bytes already buffered, and the descriptor's index.
#[derive(Serialize, Deserialize)]
struct ConnectionWire {
    readable: bool,
    writable: bool,
    buffered: Vec<u8>,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| serde::ser::Error::custom("cannot send a closed connection"))?;
        let buffered = {
            let buf = self.rbuf.borrow();
            buf[self.rpos.get()..].to_vec()
        };
        let wire = ConnectionWire {
            readable: self.readable.get(),
            writable: self.writable,
            buffered,
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
        let c = Connection::new(fd.0, wire.readable, wire.writable);
        *c.rbuf.borrow_mut() = wire.buffered;
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
        let b = Connection::from_fd(OwnedFd::from(ours), true, true);
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
            assert_eq!(b.recv_bytes(None).unwrap(), &i.to_le_bytes()[..3]);
            largest = largest.max(b.rbuf.borrow().capacity());
        }
        writer.join().unwrap();
        assert!(
            largest <= 3 * READ_CHUNK,
            "the read buffer grew to {largest} bytes"
        );
        assert!(matches!(b.recv_bytes(None), Err(Error::Eof)));
    }
}
