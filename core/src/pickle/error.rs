//! The pickle codec's error: what was wrong with a pickle, and where. A leaf, so that the crate's
//! error type can carry it.

use std::fmt;

/// What was wrong with a pickle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickleErrorKind {
    /// The input ends before the pickle does, or a length declares more bytes than remain.
    Truncated,
    /// An opcode found the stack, the marks or its argument in a state it cannot use.
    Malformed,
    /// A byte that is no pickle opcode.
    UnknownOpcode,
    /// A memo reference to an entry never stored.
    MemoMissing,
    /// A global the caller's [`GlobalPolicy`](super::GlobalPolicy) does not accept.
    GlobalRefused,
    /// A feature this reader does not provide: persistent IDs, the extension registry,
    /// out-of-band buffers, protocols above 5, classes that are not module-level names.
    Unsupported,
    /// A string that cannot be represented (lone surrogates, non-ASCII Python 2 `str`).
    InvalidString,
    /// A text integer or float that does not parse (or an integer of more than 4300 digits,
    /// CPython's limit).
    InvalidNumber,
    /// A dict key or set element Python could not hash.
    Unhashable,
    /// A structure that contains itself (a value is a tree).
    Recursive,
    /// Nesting deeper than allowed.
    TooDeep,
    /// More values or bytes than allowed.
    TooLarge,
}

/// A pickle that could not be read (or a value that could not be written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickleError {
    kind: PickleErrorKind,
    offset: Option<usize>,
    detail: String,
}

impl PickleError {
    pub(crate) fn new(
        kind: PickleErrorKind,
        offset: Option<usize>,
        detail: impl Into<String>,
    ) -> Self {
        PickleError {
            kind,
            offset,
            detail: detail.into(),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> PickleErrorKind {
        self.kind
    }

    /// The byte offset of the opcode at fault, when there is one.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }

    /// The details.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)?;
        if let Some(o) = self.offset {
            write!(f, " (at byte {o})")?;
        }
        Ok(())
    }
}

impl std::error::Error for PickleError {}
