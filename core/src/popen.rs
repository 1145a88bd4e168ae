//! Handles on started children: wait with a timeout, poll, signal. One type for the three start
//! methods: fork and spawn children are our own children (a pidfd we can `waitid` on); a
//! forkserver child is the server's child, whose exit code the server reports on a status socket,
//! while the pidfd it passed us serves for signals.

use crate::sys::{self, Interest};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

/// How long to wait for the forkserver's exit report once the child is known to be dead.
const SERVER_REPORT_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Popen {
    pub pid: u32,
    pidfd: OwnedFd,
    /// Forkserver children only: where the server writes the 4-byte exit code.
    status: Option<OwnedFd>,
    /// The cached exit code once the child has been reaped.
    returncode: Mutex<Option<i32>>,
}

impl Popen {
    /// A child of this process (fork or spawn).
    pub fn direct(pid: u32, pidfd: OwnedFd) -> Popen {
        Popen {
            pid,
            pidfd,
            status: None,
            returncode: Mutex::new(None),
        }
    }

    /// A child of the forkserver.
    pub fn served(pid: u32, pidfd: OwnedFd, status: OwnedFd) -> Popen {
        Popen {
            pid,
            pidfd,
            status: Some(status),
            returncode: Mutex::new(None),
        }
    }

    /// The descriptor that becomes readable when the child ends (Python's `sentinel`).
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.status {
            Some(s) => s.as_fd(),
            None => self.pidfd.as_fd(),
        }
    }

    /// The exit code if the child has ended (reaping it), without blocking.
    pub fn poll(&self) -> io::Result<Option<i32>> {
        self.wait(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (`None`: forever) for the child to end; returns its exit code, or
    /// `None` if it is still running.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        if let Some(code) = *self.lock() {
            return Ok(Some(code));
        }
        // Wait without holding the lock, so that other threads can signal the child meanwhile.
        let ready = match &self.status {
            None => sys::poll_one(self.pidfd.as_fd(), Interest::Read, timeout)?,
            Some(status) => {
                // The pidfd turns readable the moment the child dies; the server's report follows
                // a moment later. Watch both, so that a dead child is never reported as alive.
                let watch = [
                    (status.as_fd(), Interest::Read),
                    (self.pidfd.as_fd(), Interest::Read),
                ];
                let ready = sys::poll(&watch, timeout)?;
                if ready[1] && !ready[0] {
                    sys::poll_one(status.as_fd(), Interest::Read, Some(SERVER_REPORT_GRACE))?
                } else {
                    ready[0]
                }
            }
        };
        if !ready {
            return Ok(None);
        }
        let mut rc = self.lock();
        if rc.is_some() {
            return Ok(*rc);
        }
        let code = match &self.status {
            None => match sys::pidfd_wait(self.pidfd.as_fd(), true)? {
                Some(s) => s.exitcode(),
                None => return Ok(None),
            },
            Some(status) => read_status(status.as_fd())?,
        };
        *rc = Some(code);
        Ok(Some(code))
    }

    /// Sends `signal` unless the child is known to have ended.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        if self.lock().is_some() {
            return Ok(());
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<i32>> {
        self.returncode.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_status(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match sys::read(fd, &mut buf[got..])? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the forkserver closed the status channel without reporting an exit code",
                ))
            }
            n => got += n,
        }
    }
    Ok(i32::from_le_bytes(buf))
}
