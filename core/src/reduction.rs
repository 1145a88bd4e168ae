//! Serialisation across process boundaries, with descriptors carried beside the bytes.
//!
//! Objects that own a descriptor (a [`crate::Connection`], a pool worker's channel, the shared
//! region of a queue, lock or shared value) serialise the descriptor as an index into a side list that travels by `SCM_RIGHTS`; this module keeps
//! that side list in a thread-local while [`encode`] or [`decode`] runs (Python's
//! `multiprocessing.reduction` plays the same part). Outside those calls such objects refuse to
//! serialise, with a message saying so.
//!
//! Decoding is bounded ([`guard`]): bincode's own `with_limit` caps the bytes read, and the guard
//! caps the elements of declared-length sequences that take no bytes and the nesting depth, so a
//! hostile or corrupt message is a [`Error::Deserialize`], never an abort, a stack overflow or a
//! spin.

mod guard;

use crate::error::{Error, Result};
use crate::method::StartMethod;
use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

#[derive(Default)]
struct Outgoing {
    fds: Vec<RawFd>,
    /// Contexts of the objects encoded so far (for the context-mismatch check).
    contexts: Vec<StartMethod>,
}

thread_local! {
    static OUTGOING: RefCell<Option<Outgoing>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// The bytes of an encoded value and the descriptors it refers to (borrowed from the value,
/// which must outlive their sending).
#[derive(Debug)]
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    pub fds: Vec<RawFd>,
    pub contexts: Vec<StartMethod>,
}

/// Serialises `value`, collecting the descriptors of the objects inside it.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded> {
    OUTGOING.with(|o| *o.borrow_mut() = Some(Outgoing::default()));
    let r = bincode::serialize(value);
    let out = OUTGOING.with(|o| o.borrow_mut().take()).unwrap_or_default();
    let bytes = r.map_err(|e| Error::Serialize(e.to_string()))?;
    Ok(Encoded {
        bytes,
        fds: out.fds,
        contexts: out.contexts,
    })
}

/// Deserialises a value encoded by [`encode`], handing it the received descriptors. Descriptors
/// the value did not claim are closed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    INCOMING.with(|i| *i.borrow_mut() = Some(fds.into_iter().map(Some).collect()));
    let r = from_bytes(bytes);
    INCOMING.with(|i| i.borrow_mut().take());
    r
}

/// Serialises plain data (no descriptors) for the wire.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| Error::Serialize(e.to_string()))
}

/// The options of `bincode::deserialize` (and so of `bincode::serialize`'s format), with a limit
/// on the bytes read.
type WireOptions = bincode::config::WithOtherLimit<
    bincode::config::WithOtherTrailing<
        bincode::config::WithOtherIntEncoding<
            bincode::DefaultOptions,
            bincode::config::FixintEncoding,
        >,
        bincode::config::AllowTrailing,
    >,
    bincode::config::Bounded,
>;

fn wire_options(limit: usize) -> WireOptions {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(limit as u64)
}

/// Deserialises plain data, within the bounds described at the top of this module.
#[inline]
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Decoder::new(bytes).next()
}

/// Deserialises one value from the front of `bytes`, within the same bounds, and advances
/// `bytes` past it.
pub(crate) fn from_front<T: DeserializeOwned>(bytes: &mut &[u8]) -> Result<T> {
    let len = bytes.len();
    let limits = guard::Limits::for_input(len);
    let mut de = bincode::Deserializer::with_reader(bytes, wire_options(len));
    T::deserialize(guard::Guard::new(&mut de, &limits))
        .map_err(|e| Error::Deserialize(e.to_string()))
}

/// Successive values read from one buffer (a pool task's outcomes, say), within the bounds
/// described at the top of this module, charged against the whole buffer.
pub(crate) struct Decoder<'a> {
    de: bincode::Deserializer<bincode::de::read::SliceReader<'a>, WireOptions>,
    limits: guard::Limits,
}

impl<'a> Decoder<'a> {
    /// A decoder of the values in `bytes`, from the front.
    #[inline]
    pub(crate) fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder {
            de: bincode::Deserializer::from_slice(bytes, wire_options(bytes.len())),
            limits: guard::Limits::for_input(bytes.len()),
        }
    }

    /// The next value.
    #[inline]
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<T> {
        T::deserialize(guard::Guard::new(&mut self.de, &self.limits))
            .map_err(|e| Error::Deserialize(e.to_string()))
    }
}

impl std::fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

/// Serialises a descriptor as its index in the side list. `what` names the object for the error
/// raised outside [`encode`].
pub(crate) fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    what: &str,
    s: S,
) -> Result<S::Ok, S::Error> {
    let idx = OUTGOING.with(|o| {
        o.borrow_mut().as_mut().map(|out| {
            out.fds.push(fd.as_raw_fd());
            out.fds.len() - 1
        })
    });
    match idx {
        Some(i) => (i as u32).serialize(s),
        None => Err(serde::ser::Error::custom(format!(
            "a {what} can only be serialised to pass it to a child process (as a start argument)"
        ))),
    }
}

/// Records, while [`encode`] runs, that an object of the context with start method `method` is
/// part of the value (for the context-mismatch check at `start()`). Outside [`encode`] it does
/// nothing.
pub(crate) fn note_context(method: StartMethod) {
    OUTGOING.with(|o| {
        if let Some(out) = o.borrow_mut().as_mut() {
            out.contexts.push(method);
        }
    });
}

/// Deserialises a descriptor serialised by [`serialize_fd`], taking ownership of it.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
    let idx = u32::deserialize(d)? as usize;
    let fd = INCOMING.with(|i| {
        i.borrow_mut()
            .as_mut()
            .and_then(|v| v.get_mut(idx).and_then(Option::take))
    });
    fd.ok_or_else(|| {
        serde::de::Error::custom(format!("descriptor #{idx} missing from the message"))
    })
}
