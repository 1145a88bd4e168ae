//! The start methods: how a child process begins.
//!
//! A leaf: [`StartMethod`] is named by the error type and by every object that records the
//! context it was made in, so it depends on nothing else in the crate. Its names are parsed by
//! [`crate::context`] (`"fork".parse()`), as Python's `get_context` resolves them.

use serde::{Deserialize, Serialize};
use std::fmt;

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
