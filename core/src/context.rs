//! Start methods and contexts: `get_context`, `set_start_method`, `get_start_method`.

use crate::error::{Error, Result};
use crate::state;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a child process begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum StartMethod {
    /// `fork()`: the child starts as a copy of the parent, inheriting all memory and descriptors.
    /// Fast; hazardous to combine with threads in the parent (mproc warns, as Python 3.12 does).
    Fork,
    /// A fresh exec of the same binary, which branches in [`crate::init`] and runs only the
    /// target. It inherits only the descriptors it needs; its stdin is `/dev/null`.
    Spawn,
    /// A single-threaded server process, started on first use (one per parent), forks each child
    /// on request. Arguments travel serialised and descriptors by `SCM_RIGHTS`.
    Forkserver,
}

impl StartMethod {
    /// Every start method, in Python's order of `get_all_start_methods()` on Linux.
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Forkserver,
        StartMethod::Spawn,
        StartMethod::Fork,
    ];

    /// The name Python uses: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }

    /// The platform default: `spawn` on macOS, `forkserver` elsewhere (as Python 3.14; before
    /// 3.14 Python defaulted to `fork` on Linux).
    pub fn platform_default() -> StartMethod {
        if cfg!(target_os = "macos") {
            StartMethod::Spawn
        } else {
            StartMethod::Forkserver
        }
    }

    /// The prefix of process names under this context (`ForkProcess-1`, ...), as Python's
    /// context classes name their `Process` type.
    pub(crate) fn process_type_name(self) -> &'static str {
        match self {
            StartMethod::Fork => "ForkProcess",
            StartMethod::Spawn => "SpawnProcess",
            StartMethod::Forkserver => "ForkServerProcess",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
