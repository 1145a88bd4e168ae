//! Contexts and the default start method: `get_context`, `set_start_method`,
//! `get_start_method`, `cpu_count` (Python's `multiprocessing.context`).

use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::state;
use std::str::FromStr;

/// Parses Python's names: `"fork"`, `"spawn"`, `"forkserver"`; anything else is
/// [`Error::UnknownStartMethod`] (Python's `get_context("...")` raises `ValueError`).
impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::Forkserver),
            other => Err(Error::UnknownStartMethod(other.to_string())),
        }
    }
}

/// A context: the start method that processes and objects made from it use. Contexts are cheap
/// values; objects made by one context must not be passed to processes of another (see
/// [`Error::ContextMismatch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// `None` for the default context, which resolves the start method when it is used.
    method: Option<StartMethod>,
}

impl Context {
    pub(crate) const DEFAULT: Context = Context { method: None };

    /// The start method of this context (for the default context: the one in force now, which
    /// fixes it, as Python's `get_start_method()` does).
    pub fn start_method(&self) -> StartMethod {
        match self.method {
            Some(m) => m,
            None => resolve_default(),
        }
    }

    /// Whether this is the default context (processes are then named `Process-N`).
    pub(crate) fn is_default(&self) -> bool {
        self.method.is_none()
    }
}

fn resolve_default() -> StartMethod {
    let mut st = state::lock();
    *st.start_method
        .get_or_insert_with(StartMethod::platform_default)
}

/// The context for `method` (Python's `get_context(method)`). Unlike the default context, its
/// start method never changes.
pub fn get_context(method: StartMethod) -> Context {
    Context {
        method: Some(method),
    }
}

/// The default context: its start method is the one set by [`set_start_method`], or the
/// platform default.
pub fn default_context() -> Context {
    Context::DEFAULT
}

/// Sets the start method of the default context (Python's `set_start_method(method)`), once:
/// if one is set already, or the default context has been used (which fixes the platform
/// default), this is [`Error::StartMethodAlreadySet`] and changes nothing. Call it first in
/// `main`, after [`init`](crate::init).
///
/// ```
/// use mproc::StartMethod;
///
/// mproc::set_start_method(StartMethod::Spawn)?;
/// assert_eq!(mproc::get_start_method(), StartMethod::Spawn);
/// // A second call is an error, as in Python; force_start_method overrides.
/// assert!(mproc::set_start_method(StartMethod::Fork).is_err());
/// # Ok::<(), mproc::Error>(())
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut st = state::lock();
    if let Some(current) = st.start_method {
        return Err(Error::StartMethodAlreadySet {
            current,
            requested: method,
        });
    }
    st.start_method = Some(method);
    Ok(())
}

/// Sets the start method of the default context whether or not one is set (Python's
/// `set_start_method(method, force=True)`). Processes started before keep theirs.
///
/// ```
/// use mproc::StartMethod;
///
/// mproc::force_start_method(StartMethod::Fork);
/// mproc::force_start_method(StartMethod::Forkserver);
/// assert_eq!(mproc::get_start_method(), StartMethod::Forkserver);
/// ```
pub fn force_start_method(method: StartMethod) {
    state::lock().start_method = Some(method);
}

/// Forgets the start method of the default context (Python's `set_start_method(None,
/// force=True)`): the next use fixes the platform default again, and [`set_start_method`] may
/// be called again.
///
/// ```
/// use mproc::StartMethod;
///
/// mproc::force_start_method(StartMethod::Spawn);
/// mproc::clear_start_method();
/// assert_eq!(mproc::peek_start_method(), None);
/// ```
pub fn clear_start_method() {
    state::lock().start_method = None;
}

/// The start method of the default context (Python's `get_start_method()`). If none is set yet,
/// this fixes the platform default ([`StartMethod::platform_default`]) and returns it, as Python
/// does: a later [`set_start_method`] is then an error. To look without fixing it, use
/// [`peek_start_method`].
///
/// ```
/// // On Linux the default is forkserver, as in Python 3.14.
/// println!("default start method: {}", mproc::get_start_method());
/// ```
pub fn get_start_method() -> StartMethod {
    resolve_default()
}

/// The start method of the default context if one is fixed, without fixing it (Python's
/// `get_start_method(allow_none=True)`).
///
/// ```
/// assert_eq!(mproc::peek_start_method(), None); // nothing has fixed it yet
/// let m = mproc::get_start_method();            // fixes the platform default
/// assert_eq!(mproc::peek_start_method(), Some(m));
/// ```
pub fn peek_start_method() -> Option<StartMethod> {
    state::lock().start_method
}

/// The start methods this platform supports (all three on Linux).
pub fn get_all_start_methods() -> Vec<StartMethod> {
    StartMethod::ALL.to_vec()
}

/// The number of CPUs this process may run on (Python 3.13's `os.process_cpu_count()`).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
