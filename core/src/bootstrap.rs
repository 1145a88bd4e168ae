//! How a child begins: the spec a parent sends to a spawned or forkserver child, the branch in
//! [`crate::init`], and the wrapper that runs a target as Python's `BaseProcess._bootstrap` does
//! (exit codes, the panic header, the exit function, flushing the standard streams).

use crate::error::{Error, Result};
use crate::reduction;
use crate::state::{self, Me};
use crate::sys::{self, fnptr::EntryOffset, Interest};
use crate::StartMethod;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// The environment variable that tells a freshly executed binary what it is: `spawn` (a spawned
/// child, its channel at descriptor 3) or `forkserver` (a forkserver, its connection at 3).
pub(crate) const ROLE_ENV: &str = "MPROC_ROLE";

const MAGIC: u32 = 0x6d70_7263; // "mprc"

/// How long a parent waits for a child to take its spec before giving up on it.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a spawned or forkserver child needs to become the process its parent started.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ChildSpec {
    pub entry: EntryOffset,
    pub args: Vec<u8>,
    pub name: String,
    pub identity: Vec<u32>,
    pub daemon: bool,
    pub parent_pid: u32,
    pub parent_name: String,
    pub method: StartMethod,
}

impl ChildSpec {
    fn me(&self) -> Me {
        Me {
            name: self.name.clone(),
            identity: self.identity.clone(),
            daemon: self.daemon,
            counter: 1,
            parent_pid: Some(self.parent_pid),
            parent_name: Some(self.parent_name.clone()),
            started_by: Some(self.method),
        }
    }
}

/// Sends `spec` with `fds` over a child's bootstrap channel, giving up after
/// [`HANDSHAKE_TIMEOUT`]. A child that died before reading is not an error here: its exit code
/// tells the story.
pub(crate) fn send_spec(chan: &OwnedFd, spec: &ChildSpec, fds: &[RawFd]) -> Result<()> {
    let body = reduction::to_bytes(spec)?;
    let mut msg = Vec::with_capacity(12 + body.len());
    msg.extend_from_slice(&MAGIC.to_le_bytes());
    msg.extend_from_slice(&(body.len() as u64).to_le_bytes());
    msg.extend_from_slice(&body);
    sys::set_nonblocking(chan.as_fd(), true)?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut sent = 0;
    while sent < msg.len() {
        let r = if sent == 0 {
            sys::send_with_fds(chan.as_fd(), &msg, fds)
        } else {
            sys::write(chan.as_fd(), &msg[sent..])
        };
        match r {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if !sys::poll_one(chan.as_fd(), Interest::Write, Some(left))? {
                    return Err(Error::Timeout);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::BrokenPipe
                    || e.raw_os_error() == Some(libc::ECONNRESET) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads the spec a parent sent over `chan`.
fn recv_spec(chan: &OwnedFd) -> Result<(ChildSpec, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fds) = sys::recv_with_fds(chan.as_fd(), &mut buf)?;
    let mut have = n;
    let eof = || {
        Error::Forkserver(
            "the parent closed the bootstrap channel before sending the child's spec".into(),
        )
    };
    while have < 12 {
        match sys::read(chan.as_fd(), &mut buf[have..])? {
            0 => return Err(eof()),
            k => have += k,
        }
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    if magic != MAGIC {
        return Err(Error::Deserialize(format!(
            "bad bootstrap magic {magic:#x}"
        )));
    }
    let len = u64::from_le_bytes(buf[4..12].try_into().expect("8 bytes")) as usize;
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&buf[12..have.min(12 + len)]);
    drop(buf);
    while body.len() < len {
        let want = len - body.len();
        if sys::read_into_spare(chan.as_fd(), &mut body, want)? == 0 {
            return Err(eof());
        }
    }
    Ok((reduction::from_bytes(&body)?, fds))
}

/// The child side of the spawn and forkserver methods: reads the spec from `chan`, becomes the
/// process it describes and runs its target. Returns the exit code.
pub(crate) fn run_from_channel(chan: OwnedFd) -> i32 {
    let (spec, fds) = match recv_spec(&chan) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("mproc: child could not start: {e}");
            return 1;
        }
    };
    drop(chan);
    {
        let mut st = state::lock();
        st.me = spec.me();
        st.start_method = Some(spec.method);
    }
    let name = spec.name.clone();
    run_target(&name, move || {
        reduction::stash_incoming(fds);
        match spec.entry.call(&spec.args) {
            Some(code) => code,
            None => {
                eprintln!("mproc: the spawned child is not the same executable as its parent");
                1
            }
        }
    })
}

/// The payload of the unwind that [`crate::exit`] starts inside a child's target.
pub(crate) struct ExitRequest(pub i32);

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running a child's target (where [`crate::exit`] unwinds to here).
pub(crate) fn in_target() -> bool {
    IN_TARGET.with(Cell::get)
}

/// Runs a child's target as Python's `_bootstrap` does: a panic prints `Process <name>:` and the
/// panic message on stderr and gives exit code 1; [`crate::exit`] gives its code; then the exit
/// function joins this process's own children, and the standard streams are flushed.
pub(crate) fn run_target(name: &str, target: impl FnOnce() -> i32) -> i32 {
    let header = format!("Process {name}:");
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        eprintln!("{header}");
        previous(info);
    }));
    IN_TARGET.with(|t| t.set(true));
    let code = match panic::catch_unwind(AssertUnwindSafe(target)) {
        Ok(code) => code,
        Err(payload) => match payload.downcast::<ExitRequest>() {
            Ok(req) => req.0,
            Err(_) => 1,
        },
    };
    IN_TARGET.with(|t| t.set(false));
    let _ = panic::catch_unwind(crate::process::exit_function);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    code
}

/// The branch at the top of `main` (see [`crate::init`]).
pub(crate) fn init() {
    let role = match std::env::var_os(ROLE_ENV) {
        Some(r) => r,
        None => return,
    };
    // Our own children are told their role afresh; nothing we exec later should see this one.
    std::env::remove_var(ROLE_ENV);
    let chan = match sys::take_inherited_fd(sys::SPAWN_CHANNEL_FD) {
        Some(fd) => fd,
        None => {
            eprintln!(
                "mproc: {ROLE_ENV} is set but descriptor 3 is not open; not a child of mproc"
            );
            sys::exit_now(1);
        }
    };
    if role == "forkserver" {
        crate::forkserver::serve(chan);
    }
    let code = run_from_channel(chan);
    sys::exit_now(code);
}

/// Whether this process was started by the spawn method and has not passed through
/// [`crate::init`] yet.
pub(crate) fn init_pending() -> bool {
    std::env::var_os(ROLE_ENV).is_some()
}
