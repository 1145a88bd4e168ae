//! The spec of a spawned or forkserver child, and the handshake that carries it: the parent
//! writes `[magic u32 LE][length u64 LE][bincode ChildSpec]` on the child's bootstrap channel,
//! with the descriptors the arguments refer to attached to the first byte (`SCM_RIGHTS`). Once
//! the child has decoded its target's arguments it answers [`ARGUMENTS_DECODED`] on the same
//! channel (see [`super::keeper`]).

use crate::connection::{grow, DEFAULT_MAX_MESSAGE_SIZE};
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
    /// The child's `current_process().authkey` (its parent's).
    pub authkey: Vec<u8>,
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

/// The largest spec a child accepts: the default maximum message size of a [`Connection`]
/// (4 GiB), as its arguments could have been sent over one.
///
/// [`Connection`]: crate::Connection
const MAX_SPEC_LEN: u64 = DEFAULT_MAX_MESSAGE_SIZE;

/// Reads the spec a parent sent over `chan`, and the descriptors that came with it.
///
/// The length in the header is a claim: the body grows as its bytes arrive (never ahead of them
/// by more than its own size), and a claim above [`MAX_SPEC_LEN`] is
/// [`Error::MessageTooLong`] at once. The channel closing early is [`Error::Eof`].
pub(crate) fn recv(chan: &OwnedFd) -> Result<(ChildSpec, Vec<OwnedFd>)> {
    let mut first = vec![0u8; 64 * 1024];
    let (n, fds) = sys::recv_with_fds(chan.as_fd(), &mut first)?;
    first.truncate(n);
    while first.len() < HEADER_LEN {
        let mut more = [0u8; HEADER_LEN];
        match sys::read(chan.as_fd(), &mut more[..HEADER_LEN - first.len()])? {
            0 => return Err(Error::Eof),
            k => first.extend_from_slice(&more[..k]),
        }
    }
    let magic = u32::from_le_bytes(first[0..4].try_into().expect("4 bytes"));
    if magic != MAGIC {
        return Err(Error::Deserialize(format!(
            "bad bootstrap magic {magic:#x}"
        )));
    }
    let claimed = u64::from_le_bytes(first[4..HEADER_LEN].try_into().expect("8 bytes"));
    if claimed > MAX_SPEC_LEN {
        return Err(Error::MessageTooLong {
            len: claimed,
            maxlen: MAX_SPEC_LEN as usize,
        });
    }
    let len = claimed as usize;
    let have = (first.len() - HEADER_LEN).min(len);
    let mut body = Vec::new();
    grow(&mut body, len, have)?;
    body.extend_from_slice(&first[HEADER_LEN..HEADER_LEN + have]);
    drop(first);
    while body.len() < len {
        if body.len() == body.capacity() {
            grow(&mut body, len, 1)?;
        }
        let want = len - body.len();
        if sys::read_into_spare(chan.as_fd(), &mut body, want)? == 0 {
            return Err(Error::Eof);
        }
    }
    Ok((reduction::from_bytes(&body)?, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bootstrap channel on which `bytes` were written and the writing end closed.
    fn channel_with(bytes: &[u8]) -> OwnedFd {
        let (ours, theirs) = sys::socketpair().unwrap();
        sys::write(theirs.as_fd(), bytes).unwrap();
        drop(theirs);
        ours
    }

    fn header(len: u64) -> Vec<u8> {
        let mut h = MAGIC.to_le_bytes().to_vec();
        h.extend_from_slice(&len.to_le_bytes());
        h
    }

    #[test]
    fn a_claim_above_the_limit_is_refused_before_anything_is_allocated() {
        for len in [1u64 << 62, u64::MAX, MAX_SPEC_LEN + 1] {
            match recv(&channel_with(&header(len))) {
                Err(Error::MessageTooLong { len: l, .. }) => assert_eq!(l, len),
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_claim_the_bytes_never_back_is_end_of_file() {
        // 4 GiB claimed, ten bytes sent: the body never grows past what arrived (an allocation
        // of the claim would abort a process limited to 1 GiB; see tests/hostile_frames.rs for
        // the connection's version under such a limit).
        let mut msg = header(MAX_SPEC_LEN);
        msg.extend_from_slice(&[7; 10]);
        assert!(matches!(recv(&channel_with(&msg)), Err(Error::Eof)));
        assert!(matches!(
            recv(&channel_with(&MAGIC.to_le_bytes())),
            Err(Error::Eof)
        ));
    }

    #[test]
    fn a_spec_that_declares_more_elements_than_it_holds_is_a_typed_error() {
        // A spec whose `args` vector claims 2^40 bytes in a body of 20.
        let mut body = vec![0u8; 20];
        body[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let mut msg = header(body.len() as u64);
        msg.extend_from_slice(&body);
        assert!(matches!(
            recv(&channel_with(&msg)),
            Err(Error::Deserialize(_))
        ));
    }

    #[test]
    fn a_spec_round_trips() {
        let spec = ChildSpec {
            entry: EntryOffset::of(|_, _| 0),
            args: vec![1, 2, 3],
            name: "SpawnProcess-1".into(),
            identity: vec![1],
            daemon: true,
            parent_pid: 42,
            parent_name: "MainProcess".into(),
            method: StartMethod::Spawn,
            authkey: vec![7; 32],
            tracker: None,
        };
        let (ours, theirs) = sys::socketpair().unwrap();
        send(&ours, &spec, &[]).unwrap();
        let (got, fds) = recv(&theirs).unwrap();
        assert!(fds.is_empty());
        assert_eq!(got.args, spec.args);
        assert_eq!(got.name, spec.name);
        assert!(got.daemon);
    }
}
