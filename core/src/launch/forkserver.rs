//! The forkserver start method (Python's `popen_forkserver.py` and `forkserver.py`): a clean,
//! single-threaded server process, executed from our own binary on first use (one per parent),
//! forks each child on request.
//!
//! Protocol. The parent holds one end of a socketpair to the server. To start a child it sends
//! one byte with two descriptors attached: the child's bootstrap channel and the server's end of a
//! status socket. The server forks (exactly: [`sys::fork_server_child`]) and answers on the status
//! socket with `P` and the child's pid (4 bytes, little-endian) and a pidfd for it attached, or
//! with `E` and the `errno` of the failed fork; once the child has ended and been reaped, it
//! writes the child's exit code (4 bytes, Python's convention) and closes the socket. The child
//! closes every other descriptor and reads its spec from the channel, exactly as a spawned child
//! does. The server leaves when the parent's end closes.
//!
//! Starts are exact. The parent sends the spec only once it holds the child's pidfd, so a child
//! whose start failed (the answer lost, the pidfd not received) finds its channel closed and
//! leaves without running anything. A server that cannot be reached (it was killed: the request
//! cannot be sent, or the status socket closes unanswered while the server's end of the
//! connection is gone too) is replaced by a fresh one, and the start is tried once more on it.

use super::flush_std_streams;
use super::spec::{self, ChildSpec};
use crate::error::{Error, Result};
use crate::popen::Popen;
use crate::role::{self, Role, HANDSHAKE_TIMEOUT};
use crate::sys::{self, Interest};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
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

    /// Whether the server is still there: its process runs and its end of the connection is
    /// open (a killed server closes its descriptors a moment before its process ends).
    fn is_alive(&self) -> bool {
        !self.is_gone(Duration::ZERO)
    }

    /// Whether the server is gone, waiting up to `grace` for a dying one to show it.
    fn is_gone(&self, grace: Duration) -> bool {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = conn.as_ref() else {
            return true;
        };
        // The server never writes on the connection: readable means its end closed.
        let watch = [
            (conn.as_fd(), Interest::Read),
            (self.server.sentinel(), Interest::Read),
        ];
        match sys::poll(&watch, Some(grace)) {
            Ok(ready) => ready.iter().any(|&r| r),
            Err(_) => true,
        }
    }

    /// Asks the server to fork a child that will read its spec from `chan`, and waits for its
    /// answer: the child's handle. [`Attempt::Unreachable`] if the server is gone.
    fn fork_child(&self, chan: OwnedFd) -> std::result::Result<Popen, Attempt> {
        let (status_ours, status_theirs) =
            sys::socketpair().map_err(|e| Attempt::Failed(e.into()))?;
        {
            let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            let conn = guard.as_ref().ok_or(Attempt::Unreachable)?;
            sys::send_with_fds(
                conn.as_fd(),
                b"F",
                &[chan.as_raw_fd(), status_theirs.as_raw_fd()],
            )
            .map_err(|_| Attempt::Unreachable)?;
        }
        drop(status_theirs);
        drop(chan);
        let answer = read_answer(status_ours.as_fd());
        match answer {
            Ok(Answer::Forked(pid, pidfd)) => Ok(Popen::served(pid, pidfd, status_ours)),
            Ok(Answer::ForkFailed(errno)) => {
                let e = std::io::Error::from_raw_os_error(errno);
                Err(Attempt::Failed(Error::Forkserver(format!(
                    "the forkserver could not fork the child: {e}"
                ))))
            }
            Ok(Answer::Closed) if self.is_gone(SERVER_DEATH_GRACE) => Err(Attempt::Unreachable),
            Ok(Answer::Closed) => Err(Attempt::Failed(Error::Forkserver(
                "the forkserver dropped the request (its descriptor table may be full)".into(),
            ))),
            Err(e) => Err(Attempt::Failed(e)),
        }
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

/// The running forkserver, started (again) if there is none or it is gone.
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

/// Replaces `old`, found unreachable, by a fresh server (unless another thread already did).
fn replace(old: &Arc<ForkserverClient>) -> Result<Arc<ForkserverClient>> {
    let mut server = lock();
    if let Some(c) = &server.0 {
        if !Arc::ptr_eq(c, old) {
            return Ok(Arc::clone(c));
        }
    }
    old.stop();
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

/// How long a server whose status socket closed unanswered may take to show that it died.
const SERVER_DEATH_GRACE: Duration = Duration::from_secs(1);

/// Why one attempt to start a child on a server failed.
enum Attempt {
    /// The server is gone: replace it and try again.
    Unreachable,
    /// Anything else: the start fails.
    Failed(Error),
}

/// The server's first answer to a request.
enum Answer {
    Forked(u32, OwnedFd),
    ForkFailed(i32),
    Closed,
}

/// Reads the server's answer to a fork request (`P` + pid with a pidfd, or `E` + errno), waiting
/// at most [`HANDSHAKE_TIMEOUT`].
fn read_answer(status: BorrowedFd<'_>) -> Result<Answer> {
    let mut buf = [0u8; ANSWER_LEN];
    let mut got = 0;
    let mut pidfd = None;
    while got < ANSWER_LEN {
        if !sys::poll_one(status, Interest::Read, Some(HANDSHAKE_TIMEOUT))? {
            return Err(Error::Forkserver(format!(
                "no answer from the forkserver within {HANDSHAKE_TIMEOUT:?}"
            )));
        }
        let (n, mut fds) = sys::recv_with_fds(status, &mut buf[got..])?;
        if n == 0 {
            return Ok(Answer::Closed);
        }
        if pidfd.is_none() && !fds.is_empty() {
            pidfd = Some(fds.swap_remove(0));
        }
        got += n;
    }
    let value = u32::from_le_bytes(buf[1..].try_into().expect("4 bytes"));
    match (buf[0], pidfd) {
        (b'P', Some(pidfd)) => Ok(Answer::Forked(value, pidfd)),
        (b'E', _) => Ok(Answer::ForkFailed(value as i32)),
        _ => Err(Error::Forkserver(
            "the forkserver broke the protocol (a malformed answer)".into(),
        )),
    }
}

/// The length of the server's first answer: a tag and a 4-byte value.
const ANSWER_LEN: usize = 5;

/// Starts a child that becomes `spec`, with the descriptors `fds` (which `spec`'s arguments
/// refer to) passed along. `Ok` if and only if the child will run its target: the spec is sent
/// only once the parent holds the child's pidfd. A server found unreachable is replaced, and the
/// start tried again once on the fresh one. Returns the child's handle and the parent's end of
/// its bootstrap channel (on which it acknowledges its arguments).
pub(crate) fn start(spec: &ChildSpec, fds: &[RawFd]) -> Result<(Popen, OwnedFd)> {
    let mut client = client()?;
    flush_std_streams();
    let mut retried = false;
    loop {
        let (ours, theirs) = sys::socketpair()?;
        match client.fork_child(theirs) {
            Ok(popen) => {
                if let Err(e) = spec::send(&ours, spec, fds) {
                    let _ = popen.signal(libc::SIGKILL);
                    let _ = popen.wait(Some(HANDSHAKE_TIMEOUT));
                    return Err(e);
                }
                return Ok((popen, ours));
            }
            Err(Attempt::Unreachable) if !retried => {
                retried = true;
                client = replace(&client)?;
            }
            Err(Attempt::Unreachable) => {
                return Err(Error::Forkserver(
                    "a freshly started forkserver could not be reached".into(),
                ))
            }
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
}

struct Kid {
    pidfd: OwnedFd,
    status: OwnedFd,
}

/// The server's main loop, on the connection `conn` to its parent. Each child it forks closes
/// every other descriptor and runs `child_main` on its bootstrap channel ([`crate::init`] passes
/// the child bootstrap that a spawned child runs too), with a pidfd of the server's parent (the
/// children's parent in mproc's terms, which a daemonic child watches). Never returns: the server
/// leaves when the parent's end of the connection closes, or when the parent dies (watched through
/// a pidfd, so that a copy of the connection inherited by some other process cannot keep the
/// server alive).
pub(crate) fn serve(conn: OwnedFd, child_main: fn(OwnedFd, Option<OwnedFd>) -> i32) -> ! {
    sys::set_sigint_ignored(true);
    // The parent is the process that made the connection (and executed us).
    // (For a socketpair, `SO_PEERCRED` names the process that called `socketpair`.)
    let parent = match sys::peer_pid(conn.as_fd()) {
        Ok(Some(pid)) => match sys::pidfd_of_parent(pid) {
            Ok(Some(fd)) => Some(fd),
            Ok(None) => sys::exit_now(0),
            Err(_) => None,
        },
        Ok(None) | Err(_) => None,
    };
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let mut watch = vec![(conn.as_fd(), Interest::Read)];
        watch.extend(kids.iter().map(|k| (k.pidfd.as_fd(), Interest::Read)));
        if let Some(p) = &parent {
            watch.push((p.as_fd(), Interest::Read));
        }
        let ready = match sys::poll(&watch, None) {
            Ok(r) => r,
            Err(_) => sys::exit_now(1),
        };
        drop(watch);
        if parent.is_some() && ready[kids.len() + 1] {
            sys::exit_now(0);
        }
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
                // Descriptors lost in transit (our table is full): the parent sees the status
                // socket close unanswered and fails that start; we serve the next one.
                Err(e) if e.kind() == std::io::ErrorKind::Other => continue,
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
            let mut answer = [0u8; ANSWER_LEN];
            // Once: the children's fatal-signal handler finds this thread's stack known.
            sys::learn_stack_of_this_thread();
            match sys::fork_server_child(chan, parent.as_ref().map(AsFd::as_fd), child_main) {
                Ok((pid, pidfd)) => {
                    answer[0] = b'P';
                    answer[1..].copy_from_slice(&pid.to_le_bytes());
                    // If the parent is gone the send fails; the child is still reaped when it
                    // ends (and finds its channel closed: it runs nothing).
                    let _ = sys::send_with_fds(status.as_fd(), &answer, &[pidfd.as_raw_fd()]);
                    kids.push(Kid { pidfd, status });
                }
                Err(e) => {
                    answer[0] = b'E';
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    answer[1..].copy_from_slice(&errno.to_le_bytes());
                    let _ = sys::write(status.as_fd(), &answer);
                }
            }
        }
    }
}
