//! Handles on started children: wait with a timeout, poll, signal. One type for the three start
//! methods: fork and spawn children are our own children (a pidfd we can `waitid` on); a
//! forkserver child is the server's child, whose exit code the server reports on a status socket,
//! while the pidfd it passed us serves for signals and tells when the child ends.
//!
//! A forkserver child outlives its server if the server is killed (or crashes). Its status
//! socket then closes unanswered, and the child is an orphan, reaped by the system's init (or
//! the nearest subreaper), not by us. Its exit status is then read from its pidfd once init has
//! reaped it (`PIDFD_INFO_EXIT`, Linux 6.15 and later), or from `/proc/<pid>/stat` while it is a
//! zombie that init has not reaped yet. On an older kernel whose init reaps at once, the status
//! of such a child is lost: waiting on it ends when it ends, but its exit code is an error.

use crate::sys::{self, Interest};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long to wait for the forkserver's exit report once the child is known to be dead.
const SERVER_REPORT_GRACE: Duration = Duration::from_secs(10);

/// How long to wait, at most, for init to reap an orphaned forkserver child that has ended,
/// when the caller's own timeout is longer (or unlimited).
const ORPHAN_REAP_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Popen {
    pub pid: u32,
    pidfd: OwnedFd,
    /// Forkserver children only: where the server writes the 4-byte exit code.
    status: Option<OwnedFd>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The cached exit code once the child has been reaped.
    returncode: Option<i32>,
    /// A forkserver child whose server closed the status socket without a report.
    orphaned: bool,
}

impl Popen {
    /// A child of this process (fork or spawn).
    pub fn direct(pid: u32, pidfd: OwnedFd) -> Popen {
        Popen {
            pid,
            pidfd,
            status: None,
            state: Mutex::new(State::default()),
        }
    }

    /// A child of the forkserver.
    pub fn served(pid: u32, pidfd: OwnedFd, status: OwnedFd) -> Popen {
        Popen {
            pid,
            pidfd,
            status: Some(status),
            state: Mutex::new(State::default()),
        }
    }

    /// The descriptor that becomes readable when the child ends (Python's `sentinel`): its
    /// pidfd, whoever its parent is.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit code if the child has ended (reaping it), without blocking.
    pub fn poll(&self) -> io::Result<Option<i32>> {
        self.wait(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (`None`: forever) for the child to end; returns its exit code, or
    /// `None` if it is still running.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let (known, orphaned) = {
            let st = self.lock();
            (st.returncode, st.orphaned)
        };
        if known.is_some() {
            return Ok(known);
        }
        // Wait without holding the lock, so that other threads can signal the child meanwhile.
        let code = match &self.status {
            None => {
                if !sys::poll_one(self.pidfd.as_fd(), Interest::Read, timeout)? {
                    return Ok(None);
                }
                let mut st = self.lock();
                if st.returncode.is_some() {
                    return Ok(st.returncode);
                }
                let Some(s) = sys::pidfd_wait(self.pidfd.as_fd(), true)? else {
                    return Ok(None);
                };
                st.returncode = Some(s.exitcode());
                return Ok(st.returncode);
            }
            Some(status) if !orphaned => match self.wait_report(status.as_fd(), timeout)? {
                Report::Code(code) => Some(code),
                Report::Running => return Ok(None),
                Report::Closed => {
                    self.lock().orphaned = true;
                    None
                }
            },
            Some(_) => None,
        };
        let code = match code {
            Some(code) => code,
            None => match self.wait_orphan(deadline)? {
                Some(code) => code,
                None => return Ok(None),
            },
        };
        let mut st = self.lock();
        Ok(Some(*st.returncode.get_or_insert(code)))
    }

    /// Waits for the forkserver's report on `status`.
    fn wait_report(&self, status: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<Report> {
        // The pidfd turns readable the moment the child dies; the server's report follows a
        // moment later. Watch both, so that a dead child is never reported as alive.
        let watch = [
            (status, Interest::Read),
            (self.pidfd.as_fd(), Interest::Read),
        ];
        let ready = sys::poll(&watch, timeout)?;
        let readable = if ready[1] && !ready[0] {
            sys::poll_one(status, Interest::Read, Some(SERVER_REPORT_GRACE))?
        } else {
            ready[0]
        };
        if !readable {
            return Ok(if ready[1] {
                // Dead, and no report in time: the server is stuck; treat it as gone.
                Report::Closed
            } else {
                Report::Running
            });
        }
        // One reader at a time, and a report read by another thread is not read again.
        let mut st = self.lock();
        if let Some(code) = st.returncode {
            return Ok(Report::Code(code));
        }
        if st.orphaned {
            return Ok(Report::Closed);
        }
        let report = read_status(status)?;
        match report {
            Report::Code(code) => st.returncode = Some(code),
            Report::Closed => st.orphaned = true,
            Report::Running => {}
        }
        Ok(report)
    }

    /// The exit code of a forkserver child whose server is gone, waiting until `deadline` for
    /// it to end and be reaped by its new parent. `None`: still running at the deadline.
    fn wait_orphan(&self, deadline: Option<Instant>) -> io::Result<Option<i32>> {
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if !sys::poll_one(self.pidfd.as_fd(), Interest::Read, left())? {
            return Ok(None);
        }
        let pidfd = self.pidfd.as_fd();
        if let Some(s) =
            sys::pidfd_exit_info(pidfd).or_else(|| sys::zombie_exit_status(self.pid, pidfd))
        {
            return Ok(Some(s.exitcode()));
        }
        if sys::kernel_keeps_exit_status() {
            let wait = left().map_or(ORPHAN_REAP_WAIT, |l| l.min(ORPHAN_REAP_WAIT));
            if !sys::pidfd_wait_reaped(pidfd, Some(wait))? {
                // Ended, but not reaped yet by its new parent: not ended for us either.
                return Ok(None);
            }
            if let Some(s) = sys::pidfd_exit_info(pidfd) {
                return Ok(Some(s.exitcode()));
            }
        }
        Err(io::Error::other(format!(
            "the forkserver died, and the exit status of its child {} was lost (its new parent \
             reaped it, and this kernel keeps no exit status for a pidfd: Linux 6.15 does)",
            self.pid
        )))
    }

    /// Sends `signal` unless the child is known to have ended.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        if self.lock().returncode.is_some() {
            return Ok(());
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a forkserver child's status socket said.
enum Report {
    Code(i32),
    /// Nothing yet, and the child runs.
    Running,
    /// Closed without a report: the server is gone.
    Closed,
}

/// Reads the 4-byte exit code the server writes on `fd` (end of file: [`Report::Closed`]).
fn read_status(fd: BorrowedFd<'_>) -> io::Result<Report> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match sys::read(fd, &mut buf[got..])? {
            0 => return Ok(Report::Closed),
            n => got += n,
        }
    }
    Ok(Report::Code(i32::from_le_bytes(buf)))
}
