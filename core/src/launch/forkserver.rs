//! The forkserver start method (Python's `popen_forkserver.py` and `forkserver.py`): a clean,
//! single-threaded server process, executed from our own binary on first use (one per parent),
//! forks each child on request.
//!
//! Protocol. The parent holds one end of a socketpair to the server. To start a child it sends
//! one byte with two descriptors attached: the child's bootstrap channel and the server's end of a
//! status socket. The server forks; the child closes every other descriptor and reads its spec
//! from the channel, exactly as a spawned child does; the server answers on the status socket
//! with the child's pid (4 bytes, little-endian) and a pidfd for it attached, and, once the child
//! has ended and been reaped, with its exit code (4 bytes, Python's convention), then closes the
//! socket. The server leaves when the parent's end closes.

use super::flush_std_streams;
use super::spec::{self, ChildSpec};
use crate::error::{Error, Result};
use crate::popen::Popen;
use crate::role::{self, Role, HANDSHAKE_TIMEOUT};
use crate::sys::{self, Interest};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The parent's handle on its forkserver.
#[derive(Debug)]
pub(crate) struct ForkserverClient {
    conn: Mutex<Option<OwnedFd>>,
    server: Popen,
}

impl ForkserverClient {
    /// Executes a new server from our own binary.
    fn start() -> Result<ForkserverClient> {
        let (ours, theirs) = sys::socketpair()?;
        let plan = role::exec_plan(Role::Forkserver)?;
        let devnull = sys::open_devnull()?;
        let (pid, pidfd) = sys::spawn_exec(&plan, theirs.as_fd(), devnull.as_fd())?;
        Ok(ForkserverClient {
            conn: Mutex::new(Some(ours)),
            server: Popen::direct(pid, pidfd),
        })
    }

    /// Whether the server process is still running.
    fn is_alive(&self) -> bool {
        matches!(self.server.poll(), Ok(None))
    }

    /// Asks the server to fork a child that will read its spec from `chan`. Returns the socket on
    /// which the server will report the child's pid (see [`ForkserverClient::await_child`]); the
    /// caller may write the spec meanwhile, overlapping it with the fork.
    fn request_child(&self, chan: OwnedFd) -> Result<OwnedFd> {
        let (status_ours, status_theirs) = sys::socketpair()?;
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard
            .as_ref()
            .ok_or_else(|| Error::Forkserver("the forkserver was stopped".into()))?;
        sys::send_with_fds(
            conn.as_fd(),
            b"F",
            &[chan.as_raw_fd(), status_theirs.as_raw_fd()],
        )
        .map_err(|e| Error::Forkserver(format!("cannot reach the forkserver: {e}")))?;
        Ok(status_ours)
    }

    /// Waits for the server's report of the pid (and a pidfd) of the child asked for by
    /// [`ForkserverClient::request_child`], and returns its handle.
    fn await_child(status: OwnedFd) -> Result<Popen> {
        if !sys::poll_one(status.as_fd(), Interest::Read, Some(HANDSHAKE_TIMEOUT))? {
            return Err(Error::Forkserver("no answer from the forkserver".into()));
        }
        let mut buf = [0u8; 4];
        let (n, mut fds) = sys::recv_with_fds(status.as_fd(), &mut buf)?;
        if n != 4 || fds.len() != 1 {
            return Err(Error::Forkserver(
                "the forkserver could not start the child".into(),
            ));
        }
        let pid = u32::from_le_bytes(buf);
        Ok(Popen::served(pid, fds.remove(0), status))
    }

    /// Closes the connection, which tells the server to leave, and reaps it.
    fn stop(&self) {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Ok(None) = self.server.wait(Some(Duration::from_secs(5))) {
            let _ = self.server.signal(libc::SIGKILL);
            let _ = self.server.wait(None);
        }
    }
}

/// This process's forkserver, once started.
#[derive(Debug, Default)]
pub(crate) struct Server(Option<Arc<ForkserverClient>>);

static SERVER: Mutex<Server> = Mutex::new(Server(None));

/// Locks the handle on this process's forkserver, recovering from poisoning.
pub(crate) fn lock() -> MutexGuard<'static, Server> {
    SERVER.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a fork child: drops the handle on the parent's forkserver (it is not the child's; this
/// closes the child's copies of its descriptors) and unlocks.
pub(crate) fn forget_after_fork(mut guard: MutexGuard<'static, Server>) {
    guard.0 = None;
    drop(guard);
}

/// The running forkserver, started (again) if there is none or it has died.
fn client() -> Result<Arc<ForkserverClient>> {
    let mut server = lock();
    if let Some(c) = &server.0 {
        if c.is_alive() {
            return Ok(Arc::clone(c));
        }
        c.stop();
    }
    let client = Arc::new(ForkserverClient::start()?);
    server.0 = Some(Arc::clone(&client));
    Ok(client)
}

/// Stops this process's forkserver, if it has one, and reaps it (part of the exit function).
pub(crate) fn stop() {
    let server = lock().0.take();
    if let Some(server) = server {
        server.stop();
    }
}

/// Starts a child that becomes `spec`, with the descriptors `fds` (which `spec`'s arguments
/// refer to) passed along.
pub(crate) fn start(spec: &ChildSpec, fds: &[RawFd]) -> Result<Popen> {
    let client = client()?;
    let (ours, theirs) = sys::socketpair()?;
    flush_std_streams();
    let status = client.request_child(theirs)?;
    // Write the spec while the server forks; the child reads it from its channel when it is ready.
    let sent = spec::send(&ours, spec, fds);
    let popen = ForkserverClient::await_child(status)?;
    if let Err(e) = sent {
        let _ = popen.signal(libc::SIGKILL);
        let _ = popen.wait(None);
        return Err(e);
    }
    Ok(popen)
}

struct Kid {
    pidfd: OwnedFd,
    status: OwnedFd,
}

/// The server's main loop, on the connection `conn` to its parent. Each child it forks closes
/// every other descriptor and runs `child_main` on its bootstrap channel ([`crate::init`] passes
/// the child bootstrap that a spawned child runs too). Never returns: the server leaves when the
/// parent's end closes.
pub(crate) fn serve(conn: OwnedFd, child_main: fn(OwnedFd) -> i32) -> ! {
    sys::set_sigint_ignored(true);
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let mut watch = vec![(conn.as_fd(), Interest::Read)];
        watch.extend(kids.iter().map(|k| (k.pidfd.as_fd(), Interest::Read)));
        let ready = match sys::poll(&watch, None) {
            Ok(r) => r,
            Err(_) => sys::exit_now(1),
        };
        drop(watch);
        // Report ended children, walking from the back so that removal keeps indices valid.
        for i in (0..kids.len()).rev() {
            if ready[i + 1] {
                if let Ok(Some(status)) = sys::pidfd_wait(kids[i].pidfd.as_fd(), true) {
                    let kid = kids.swap_remove(i);
                    let _ = sys::write(kid.status.as_fd(), &status.exitcode().to_le_bytes());
                }
            }
        }
        if ready[0] {
            let mut byte = [0u8; 1];
            let (n, mut fds) = match sys::recv_with_fds(conn.as_fd(), &mut byte) {
                Ok(x) => x,
                Err(_) => sys::exit_now(1),
            };
            if n == 0 {
                sys::exit_now(0);
            }
            if fds.len() != 2 {
                continue;
            }
            let status = fds.pop().expect("two descriptors");
            let chan = fds.pop().expect("two descriptors");
            let forked = sys::fork_server_child(chan, child_main);
            if let Ok((pid, pidfd)) = forked {
                // If the parent is gone the send fails; the child is still reaped when it ends.
                let _ =
                    sys::send_with_fds(status.as_fd(), &pid.to_le_bytes(), &[pidfd.as_raw_fd()]);
                kids.push(Kid { pidfd, status });
            }
        }
    }
}
