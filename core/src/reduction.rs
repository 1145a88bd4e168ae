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

/// Serialises `value`, collecting the descriptors of the objects inside it. `what` says what
/// the value is for (the error message names it and the type).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Encoded> {
    OUTGOING.with(|o| *o.borrow_mut() = Some(Outgoing::default()));
    let r = bincode::serialize(value);
    let out = OUTGOING.with(|o| o.borrow_mut().take()).unwrap_or_default();
    let bytes = r.map_err(|e| serialize_error::<T>(what, &e))?;
    Ok(Encoded {
        bytes,
        fds: out.fds,
        contexts: out.contexts,
    })
}

/// Deserialises a value encoded by [`encode`], handing it the received descriptors. Descriptors
/// the value did not claim are closed. `what` names the message for the error.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    what: &str,
) -> Result<T> {
    INCOMING.with(|i| *i.borrow_mut() = Some(fds.into_iter().map(Some).collect()));
    let r = from_bytes_as(bytes, what);
    INCOMING.with(|i| i.borrow_mut().take());
    r
}

/// Serialises plain data (no descriptors) for the wire.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    to_bytes_as(value, "a message")
}

/// As [`to_bytes`]; `what` says what the value is for (the error message names it).
pub(crate) fn to_bytes_as<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| serialize_error::<T>(what, &e))
}

/// Serialises `value` at the end of `buf` (a buffer kept for reuse); see [`to_bytes_as`].
pub(crate) fn to_bytes_into<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
    what: &str,
) -> Result<()> {
    bincode::serialize_into(buf, value).map_err(|e| serialize_error::<T>(what, &e))
}

/// The error for a value of type `T` that bincode could not serialise.
fn serialize_error<T: ?Sized>(what: &str, e: &bincode::Error) -> Error {
    let hint = match **e {
        bincode::ErrorKind::SequenceMustHaveLength => {
            ": a sequence or map whose length is not known in advance (#[serde(flatten)], or \
             a Serialize impl that calls serialize_seq(None)) cannot be sent; collect it first"
        }
        _ => "",
    };
    Error::Serialize(format!(
        "a `{}` for {what}: {e}{hint}",
        short_type_name::<T>()
    ))
}

/// Deserialises plain data, within the bounds described at the top of this module.
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    from_bytes_as(bytes, "a message")
}

/// Deserialises a `T` from all of `bytes`, within the bounds described at the top of this
/// module. A failure is an [`Error::Deserialize`] that names `what` the bytes are, the type
/// expected, where decoding stopped and why: bytes left over after a whole `T` count as a
/// failure, since they mean that the sender sent another type.
pub(crate) fn from_bytes_as<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    // The options of `bincode::deserialize` (and so of `bincode::serialize`'s format), with a
    // limit on the bytes read.
    let options = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(bytes.len() as u64);
    let limits = guard::Limits::for_input(bytes.len());
    let mut de =
        bincode::Deserializer::with_bincode_read(guard::Reader::new(bytes, &limits), options);
    match T::deserialize(guard::Guard::new(&mut de, &limits)) {
        Ok(v) if limits.position() == bytes.len() => Ok(v),
        Ok(_) => Err(Error::Deserialize(format!(
            "expected `{}` in {what} ({} bytes), but a whole `{0}` ends at byte {}: {} bytes are \
             left over. Was it sent as another type? (The sender and the receiver must use the \
             same Rust type, or types with the same serde layout.)",
            short_type_name::<T>(),
            bytes.len(),
            limits.position(),
            bytes.len() - limits.position(),
        ))),
        Err(e) => Err(deserialize_error::<T>(what, bytes, &e, limits.failure())),
    }
}

/// The error for `bytes` that do not decode as a `T`.
fn deserialize_error<T: ?Sized>(
    what: &str,
    bytes: &[u8],
    e: &bincode::Error,
    failure: Option<guard::Failure>,
) -> Error {
    use std::fmt::Write;
    let ty = short_type_name::<T>();
    let mut msg = format!("expected `{ty}` in {what} ({} bytes): ", bytes.len());
    let (reading, at, names) = match failure {
        Some(f) => (f.reading, f.at, f.names),
        None => ("a value", 0, Vec::new()),
    };
    let past_end = match **e {
        bincode::ErrorKind::SizeLimit => true,
        bincode::ErrorKind::Io(ref io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    };
    if past_end {
        let _ = write!(
            msg,
            "{reading} at byte {at} runs past the end of the message"
        );
    } else if let bincode::ErrorKind::DeserializeAnyNotSupported = **e {
        let _ = write!(
            msg,
            "the type asks for a self-describing format, which bincode is not \
             (serde_json::Value, #[serde(untagged)] and #[serde(flatten)] do that): send such \
             values as text, or as mproc::pickle::Value"
        );
    } else {
        let _ = write!(msg, "at byte {at}, reading {reading}: {e}");
    }
    if !names.is_empty() {
        let inner: Vec<String> = names.iter().rev().map(|n| format!("`{n}`")).collect();
        let _ = write!(msg, " (in {})", inner.join(" in "));
    }
    if at < bytes.len() {
        let shown = &bytes[at..bytes.len().min(at + 12)];
        let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
        let more = if at + shown.len() < bytes.len() {
            " ..."
        } else {
            ""
        };
        let _ = write!(msg, "; the bytes there: {}{more}", hex.join(" "));
    }
    if !matches!(**e, bincode::ErrorKind::DeserializeAnyNotSupported) {
        msg.push_str(
            ". Was it sent as another type? (The sender and the receiver must use the same \
             Rust type, or types with the same serde layout.)",
        );
    }
    Error::Deserialize(msg)
}

/// `std::any::type_name::<T>()` without module paths: `(i64, Option<i64>, String)` for
/// `(i64, core::option::Option<i64>, alloc::string::String)`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    // Where the path being written began in `out`: a `::` cuts it back to there.
    let mut path_start = 0;
    let mut rest = full;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("::") {
            out.truncate(path_start);
            rest = after;
            continue;
        }
        out.push(c);
        if !(c.is_alphanumeric() || c == '_') {
            path_start = out.len();
        }
        rest = &rest[c.len_utf8()..];
    }
    out
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
