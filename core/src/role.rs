//! What a fresh execution of this binary is for, and how to start one.
//!
//! mproc executes the running binary again (`/proc/self/exe`) for three purposes: a child of the
//! spawn start method, a forkserver, and the resource tracker. The environment variable
//! [`ROLE_ENV`] tells the new process which one it is, and its channel to the parent waits at descriptor
//! [`crate::sys::SPAWN_CHANNEL_FD`]; [`crate::init`] reads both and dispatches. A leaf: it knows nothing
//! of what either role then does.

use crate::sys::ExecPlan;
use std::ffi::{OsStr, OsString};
use std::io;
use std::time::Duration;

/// The environment variable that tells a fresh execution of this binary its [`Role`].
pub(crate) const ROLE_ENV: &str = "MPROC_ROLE";

/// How long a parent waits for a child (or the forkserver) to take part in a handshake before
/// giving up on it.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What an execution of this binary was started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A child of the spawn start method: reads its spec from the channel and runs its target.
    Spawn,
    /// A forkserver: serves fork requests on the channel until it closes.
    Forkserver,
    /// The resource tracker: unlinks the named shared memory of processes that died.
    Tracker,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Spawn => "spawn",
            Role::Forkserver => "forkserver",
            Role::Tracker => "tracker",
        }
    }

    fn parse(value: &OsStr) -> Option<Role> {
        [Role::Spawn, Role::Forkserver, Role::Tracker]
            .into_iter()
            .find(|r| value == r.as_str())
    }

    /// Reads this process's role from the environment and removes the variable, so that no
    /// process this one executes later sees it (our own children are told their role afresh).
    /// `None`: an ordinary process. `Some(Err(value))`: the variable holds no known role.
    pub(crate) fn take() -> Option<Result<Role, OsString>> {
        let value = std::env::var_os(ROLE_ENV)?;
        std::env::remove_var(ROLE_ENV);
        Some(Role::parse(&value).ok_or(value))
    }
}

/// Whether this process was executed in a role and has not passed through [`crate::init`] yet
/// (a `main` that forgot to call it).
pub(crate) fn init_pending() -> bool {
    std::env::var_os(ROLE_ENV).is_some()
}

/// A plan to execute this binary again in `role`, with the current environment; built before
/// the fork, so that the child only calls `execve`.
pub(crate) fn exec_plan(role: Role) -> io::Result<ExecPlan> {
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("mproc-child"));
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| k != ROLE_ENV).collect();
    env.push((ROLE_ENV.into(), role.as_str().into()));
    ExecPlan::new("/proc/self/exe", vec![argv0], env)
}
