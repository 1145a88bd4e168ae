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

/// Whether [`encode`] is running on this thread: the value being serialised goes to a child
/// process as a start argument (CPython's `get_spawning_popen() is not None`).
pub(crate) fn encoding_for_child() -> bool {
    OUTGOING.with(|o| o.borrow().is_some())
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
    from_bytes_described(bytes, || Described {
        what: what.to_string(),
        sent_as: None,
    })
}

/// What a decoded message is, for its error message; made only when decoding fails.
pub(crate) struct Described {
    /// What the bytes are ("a message received on a Connection").
    pub what: String,
    /// The type the sender declared (`std::any::type_name`), when it is known.
    pub sent_as: Option<String>,
}

/// As [`from_bytes_as`], with the description made by `describe` only if decoding fails (so
/// that hot paths format nothing).
pub(crate) fn from_bytes_described<T: DeserializeOwned>(
    bytes: &[u8],
    describe: impl FnOnce() -> Described,
) -> Result<T> {
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
        Ok(_) => {
            let d = describe();
            Err(Error::Deserialize(format!(
                "{}, but a whole `{}` ends at byte {}: {} bytes are left over. {}",
                expected::<T>(&d, bytes.len()),
                short_type_name::<T>(),
                limits.position(),
                bytes.len() - limits.position(),
                hint::<T>(&d),
            )))
        }
        Err(e) => Err(deserialize_error::<T>(
            &describe(),
            bytes,
            &e,
            limits.failure(),
        )),
    }
}

/// "expected `T` in {what}, sent as `U` (N bytes)".
fn expected<T: ?Sized>(d: &Described, len: usize) -> String {
    let sent = match &d.sent_as {
        Some(s) => format!(", sent as `{}`", shorten(s)),
        None => String::new(),
    };
    format!(
        "expected `{}` in {}{sent} ({len} bytes)",
        short_type_name::<T>(),
        d.what
    )
}

/// Why a value written as a `T` does not read back as a `T`.
pub(crate) const SERDE_MISMATCH: &str = "The type's Serialize and Deserialize do not agree, \
    which bincode needs (attributes such as #[serde(skip_serializing_if)] break that).";

/// What to check when bytes do not decode as a `T`.
fn hint<T: ?Sized>(d: &Described) -> &'static str {
    match &d.sent_as {
        Some(s) if s == std::any::type_name::<T>() => SERDE_MISMATCH,
        Some(_) => {
            "The sender and the receiver must use the same Rust type, or types with the same \
             serde layout."
        }
        None => {
            "Was it sent as another type? (The sender and the receiver must use the same Rust \
             type, or types with the same serde layout.)"
        }
    }
}

/// Serialises `value` for [`Connection::send`](crate::Connection::send): the sender's type name
/// (`std::any::type_name`, for the receiver's error message if it expects another type), then
/// the value. Layout: the name's length (`u16`, little-endian), the name, the bincode bytes.
pub(crate) fn to_tagged_bytes<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>> {
    let name = std::any::type_name::<T>().as_bytes();
    let name = &name[..name.len().min(u16::MAX as usize)];
    let mut buf = Vec::with_capacity(2 + name.len() + 16);
    buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
    buf.extend_from_slice(name);
    to_bytes_into(&mut buf, value, what)?;
    Ok(buf)
}

/// Deserialises a message made by [`to_tagged_bytes`]; `what` names it for the error message,
/// with the type the sender declared.
pub(crate) fn from_tagged_bytes<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let header = bytes
        .get(..2)
        .map(|h| 2 + u16::from_le_bytes([h[0], h[1]]) as usize);
    let Some(body) = header.filter(|&n| n <= bytes.len()) else {
        return Err(Error::Deserialize(format!(
            "expected `{}` in {what} ({} bytes), but it does not start with the type header \
             that Connection::send writes: was it sent with send_bytes (receive it with \
             recv_bytes), or by another program?",
            short_type_name::<T>(),
            bytes.len()
        )));
    };
    let sent_as = &bytes[2..body];
    from_bytes_described(&bytes[body..], || Described {
        what: what.to_string(),
        sent_as: Some(String::from_utf8_lossy(sent_as).into_owned()),
    })
}

/// The error for `bytes` that do not decode as a `T`.
fn deserialize_error<T: ?Sized>(
    d: &Described,
    bytes: &[u8],
    e: &bincode::Error,
    failure: Option<guard::Failure>,
) -> Error {
    use std::fmt::Write;
    let mut msg = expected::<T>(d, bytes.len());
    msg.push_str(": ");
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
        msg.push_str(". ");
        msg.push_str(hint::<T>(d));
    }
    Error::Deserialize(msg)
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

/// `std::any::type_name::<T>()` without module paths: `(i64, Option<i64>, String)` for
/// `(i64, core::option::Option<i64>, alloc::string::String)`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    shorten(std::any::type_name::<T>())
}

/// A type name without module paths (see [`short_type_name`]).
pub(crate) fn shorten(full: &str) -> String {
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
