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

/// Sets the start method of the default context. A second call, or a call after the default has
/// been used, is [`Error::StartMethodAlreadySet`] unless `force` is true (Python's
/// `set_start_method(method, force=False)`). `None` with `force` clears it.
pub fn set_start_method(method: Option<StartMethod>, force: bool) -> Result<()> {
    let mut st = state::lock();
    if st.start_method.is_some() && !force {
        return Err(Error::StartMethodAlreadySet);
    }
    st.start_method = method;
    Ok(())
}

/// The start method of the default context. With `allow_none`, returns `None` if none has been
/// fixed yet; otherwise fixes the platform default and returns it (as Python does).
pub fn get_start_method(allow_none: bool) -> Option<StartMethod> {
    let mut st = state::lock();
    if st.start_method.is_none() && allow_none {
        return None;
    }
    Some(
        *st.start_method
            .get_or_insert_with(StartMethod::platform_default),
    )
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
