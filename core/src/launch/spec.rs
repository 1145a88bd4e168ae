//! The spec of a spawned or forkserver child, and the handshake that carries it: the parent
//! writes `[magic u32 LE][length u64 LE][bincode ChildSpec]` on the child's bootstrap channel,
//! with the descriptors the arguments refer to attached to the first byte (`SCM_RIGHTS`). Once
//! the child has decoded its target's arguments it answers [`ARGUMENTS_DECODED`] on the same
//! channel (see [`super::keeper`]).

use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::reduction;
use crate::role::HANDSHAKE_TIMEOUT;
use crate::sys::{self, fnptr::EntryOffset, Interest};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::Instant;

const MAGIC: u32 = 0x6d70_7263; // "mprc"

/// The byte a child sends back on its bootstrap channel once it has decoded its arguments.
pub(crate) const ARGUMENTS_DECODED: u8 = b'A';

/// The bytes before the spec: magic and length.
const HEADER_LEN: usize = 12;

/// Everything a spawned or forkserver child needs to become the process its parent started.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ChildSpec {
    pub entry: EntryOffset,
    pub args: Vec<u8>,
    pub name: String,
    pub identity: Vec<u32>,
    pub daemon: bool,
    pub parent_pid: u32,
    pub parent_name: String,
    pub method: StartMethod,
    /// The index, among the descriptors sent with the spec, of the resource tracker's connection
    /// (after the arguments' own), if the parent has one.
    pub tracker: Option<u32>,
}

/// Sends `spec` with `fds` over a child's bootstrap channel, giving up after
/// [`HANDSHAKE_TIMEOUT`]. A child that died before reading is not an error here: its exit code
/// tells the story.
pub(crate) fn send(chan: &OwnedFd, spec: &ChildSpec, fds: &[RawFd]) -> Result<()> {
    let body = reduction::to_bytes(spec)?;
    let mut msg = Vec::with_capacity(HEADER_LEN + body.len());
    msg.extend_from_slice(&MAGIC.to_le_bytes());
    msg.extend_from_slice(&(body.len() as u64).to_le_bytes());
    msg.extend_from_slice(&body);
    sys::set_nonblocking(chan.as_fd(), true)?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut sent = 0;
    while sent < msg.len() {
        let r = if sent == 0 {
            sys::send_with_fds(chan.as_fd(), &msg, fds)
        } else {
            sys::write(chan.as_fd(), &msg[sent..])
        };
        match r {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if !sys::poll_one(chan.as_fd(), Interest::Write, Some(left))? {
                    return Err(Error::Timeout);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::BrokenPipe
                    || e.raw_os_error() == Some(libc::ECONNRESET) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads the spec a parent sent over `chan`, and the descriptors that came with it.
pub(crate) fn recv(chan: &OwnedFd) -> Result<(ChildSpec, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fds) = sys::recv_with_fds(chan.as_fd(), &mut buf)?;
    let mut have = n;
    let eof = || {
        Error::Forkserver(
            "the parent closed the bootstrap channel before sending the child's spec".into(),
        )
    };
    while have < HEADER_LEN {
        match sys::read(chan.as_fd(), &mut buf[have..])? {
            0 => return Err(eof()),
            k => have += k,
        }
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    if magic != MAGIC {
        return Err(Error::Deserialize(format!(
            "bad bootstrap magic {magic:#x}"
        )));
    }
    let len = u64::from_le_bytes(buf[4..HEADER_LEN].try_into().expect("8 bytes")) as usize;
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&buf[HEADER_LEN..have.min(HEADER_LEN + len)]);
    drop(buf);
    while body.len() < len {
        let want = len - body.len();
        if sys::read_into_spare(chan.as_fd(), &mut body, want)? == 0 {
            return Err(eof());
        }
    }
    Ok((reduction::from_bytes(&body)?, fds))
}
