//! What a method of a managed object is called with, and what it answers: the caller
//! ([`Owner`], [`Cancel`]), the server's services ([`Host`]), and the outcome ([`Out`], with the
//! [`Undo`] of a call whose reply cannot be delivered).

use super::wire::PyErr;
use crate::pickle::Value;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whom a call is made for: one thread of an mproc client (its session and the thread's token,
/// stable across that thread's connections), or one connection of a CPython client (which uses
/// one connection per thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    Thread { session: u128, thread: u64 },
    Conn(u64),
}

impl Owner {
    /// The mproc session the owner belongs to.
    pub(crate) fn session(&self) -> Option<u128> {
        match self {
            Owner::Thread { session, .. } => Some(*session),
            Owner::Conn(_) => None,
        }
    }
}

/// Set when the client a server thread waits for has gone (its connection hung up, or its
/// process died): the wait ends at once and takes nothing.
#[derive(Debug, Default)]
pub(crate) struct Cancel(AtomicBool);

impl Cancel {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What an object asks of the server while it runs a method.
pub(crate) trait Host {
    /// Takes references for the server's own proxies inside a value being stored.
    fn hold(&self, v: &Value);
    /// Drops the references of a value that leaves a container for good.
    fn release(&self, v: &Value);
    /// A new iterator object over `items`, as a proxy value whose reference the reply carries.
    fn iterator(&self, items: Vec<Value>) -> Value;
    /// While the returned guard lives, the caller's connection is watched: if it hangs up, the
    /// call's [`Cancel`] is set and the object's waiters are woken.
    fn watch(&self) -> Box<dyn std::any::Any>;
}

/// One call: for whom, how the caller reads replies, and the server's services.
pub(crate) struct Call<'a> {
    pub owner: Owner,
    /// An mproc client (which said `mproc_hello`): `acquire` answers `(acquired, owner_died)`.
    pub mproc: bool,
    pub cancel: &'a Cancel,
    pub host: &'a dyn Host,
}

/// How to undo a call whose reply could not be delivered: run with the caller and the value
/// the reply carried.
pub(crate) struct Undo {
    run: Box<dyn FnOnce(Owner, Value) + Send>,
    /// The value goes back into its container, with the references it holds.
    pub takes_back: bool,
}

impl Undo {
    /// Undoes by releasing what was taken (a lock, a semaphore's unit).
    pub(crate) fn release(f: impl FnOnce(Owner) + Send + 'static) -> Undo {
        Undo {
            run: Box::new(move |owner, _| f(owner)),
            takes_back: false,
        }
    }

    /// Undoes by putting the returned value back where it came from.
    pub(crate) fn put_back(f: impl FnOnce(Value) + Send + 'static) -> Undo {
        Undo {
            run: Box::new(move |_, v| f(v)),
            takes_back: true,
        }
    }

    pub(crate) fn run(self, owner: Owner, value: Value) {
        (self.run)(owner, value)
    }
}

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Undo")
            .field("takes_back", &self.takes_back)
            .finish_non_exhaustive()
    }
}

/// The outcome of a method.
#[derive(Debug)]
pub(crate) struct Out {
    pub value: Value,
    /// The proxies inside `value` hold references already (moved out of a container).
    pub moved: bool,
    pub undo: Option<Undo>,
}

impl From<Value> for Out {
    fn from(value: Value) -> Out {
        Out {
            value,
            moved: false,
            undo: None,
        }
    }
}

impl Out {
    pub(crate) fn moved(value: Value) -> Out {
        Out {
            value,
            moved: true,
            undo: None,
        }
    }
}

/// A method's result.
pub(crate) type R = Result<Out, PyErr>;

/// Python's `AttributeError` for a method an object does not have.
pub(crate) fn no_attribute(type_name: &str, name: &str) -> PyErr {
    PyErr::Attribute(format!("'{type_name}' object has no attribute '{name}'"))
}
