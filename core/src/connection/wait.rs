//! `wait`: CPython's `multiprocessing.connection.wait` over connections, listeners, process
//! sentinels and sockets.

use super::Connection;
use crate::error::Result;
use crate::sys::{self, Interest};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

/// Something [`wait`] can wait on (a [`Connection`], a [`Process`](crate::Process), any
/// descriptor): it names a descriptor that becomes readable when the object
/// is ready, and may know that it is ready already.
pub trait Waitable {
    /// The descriptor to poll for reading.
    fn wait_fd(&self) -> Result<RawFd>;

    /// Whether the object is ready without looking at the descriptor (a connection with
    /// buffered bytes).
    fn ready_now(&self) -> bool {
        false
    }
}

/// A connection is ready when a message (or part of one, or end of file) can be received.
impl Waitable for Connection {
    fn wait_fd(&self) -> Result<RawFd> {
        self.fileno()
    }

    fn ready_now(&self) -> bool {
        self.has_buffered()
    }
}

/// A socket, a pipe end, a [`Listener`](super::Listener) (ready when a client waits to be
/// accepted): any descriptor, ready when readable.
impl<T: AsFd> Waitable for T {
    fn wait_fd(&self) -> Result<RawFd> {
        Ok(self.as_fd().as_raw_fd())
    }
}

/// Waits until at least one of `objects` is ready and returns the indices of the ready ones in
/// order: CPython's `multiprocessing.connection.wait(objects)`, which returns the ready objects
/// themselves. With a timeout: [`wait_timeout`].
///
/// ```
/// use mproc::connection::{wait, Waitable};
///
/// # fn main() -> mproc::Result<()> {
/// let (a, b) = mproc::pipe()?;
/// let (_c, d) = mproc::pipe()?;
/// a.send_bytes(b"x")?;
/// let ready = wait(&[&b as &dyn Waitable, &d])?;
/// assert_eq!(ready, [0]); // `b` has a message; `d` has none
/// # Ok(())
/// # }
/// ```
pub fn wait(objects: &[&dyn Waitable]) -> Result<Vec<usize>> {
    wait_inner(objects, None)
}

/// As [`wait`], for at most `timeout` (CPython's `wait(objects, timeout)`): the indices of the
/// ready objects, empty if none was ready in time.
///
/// ```
/// use mproc::connection::{wait_timeout, Waitable};
/// use std::time::Duration;
///
/// # fn main() -> mproc::Result<()> {
/// let (_a, b) = mproc::pipe()?;
/// let ready = wait_timeout(&[&b as &dyn Waitable], Duration::from_millis(10))?;
/// assert!(ready.is_empty());
/// # Ok(())
/// # }
/// ```
pub fn wait_timeout(objects: &[&dyn Waitable], timeout: Duration) -> Result<Vec<usize>> {
    wait_inner(objects, Some(timeout))
}

fn wait_inner(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let fds = objects
        .iter()
        .map(|o| Ok((o.wait_fd()?, Interest::Read)))
        .collect::<Result<Vec<_>>>()?;
    // Objects ready already make the poll a mere look at the others.
    let now = objects.iter().any(|o| o.ready_now());
    let timeout = if now { Some(Duration::ZERO) } else { timeout };
    let ready = sys::net::poll_numbers(&fds, timeout)?;
    Ok(objects
        .iter()
        .zip(ready)
        .enumerate()
        .filter(|(_, (o, r))| *r || o.ready_now())
        .map(|(i, _)| i)
        .collect())
}
