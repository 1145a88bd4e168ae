//! The crate's error type: one enum, each variant a distinct, documented failure with a message
//! that says what went wrong and, where Python raises for the same misuse, says it as Python does.

use std::fmt;
use std::io;

/// A specialised `Result` for mproc operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in mproc.
///
/// Match on the variant, or use [`Error::kind_name`] for a stable one-word name (the harness
/// records it in traces). `Debug` prints `Kind: message` (and a remote traceback), so that a
/// `main` returning this error says clearly what went wrong.
///
/// [`source()`](std::error::Error::source) gives the underlying error where there is one: the OS
/// error of [`Error::Io`], the [`PickleError`](crate::pickle::PickleError) of [`Error::Pickle`].
/// The other variants carry their cause in their message (a decode error names the expected and
/// the sent type, the byte offset and serde's message; a remote failure its text and traceback).
#[non_exhaustive]
pub enum Error {
    /// A wait with a timeout ran out (Python's `multiprocessing.TimeoutError`).
    Timeout,
    /// A task failed in another process: its panic or error, carried back as text.
    Remote {
        /// The kind of failure: `"panic"` for a panic, or the error's type name.
        kind: String,
        /// The panic message or the error's `Display` text.
        message: String,
        /// The backtrace captured where the failure happened (may be empty).
        traceback: String,
    },
    /// The process that was running a task died before it could answer.
    WorkerLost {
        /// The pid of the lost worker.
        pid: u32,
        /// Its exit code as Python reports it: `n` for an exit, `-N` for signal `N`.
        exitcode: i32,
    },
    /// The operation needs a started process (`join`, `terminate`, ... before `start`).
    NotStarted,
    /// `start` was called on a process that was already started.
    AlreadyStarted,
    /// The process handle was made by another process: only the parent may wait on its child.
    NotChild,
    /// A process tried to join itself, which would wait forever.
    JoinSelf,
    /// The process object was closed with `close()`.
    ProcessClosed,
    /// `close()` on a process that is still running.
    StillRunning,
    /// `set_daemon` after the process started.
    DaemonAfterStart,
    /// A daemonic process tried to start a child.
    DaemonChildren,
    /// [`set_start_method`](crate::set_start_method) when the default context's start method
    /// is fixed already (set before, or fixed by a use of the default context). Python raises
    /// `RuntimeError('context has already been set')`.
    StartMethodAlreadySet {
        /// The start method in force.
        current: crate::method::StartMethod,
        /// The start method that was asked for.
        requested: crate::method::StartMethod,
    },
    /// A start method name that is not `fork`, `spawn` or `forkserver`.
    UnknownStartMethod(String),
    /// The target cannot run under this start method (a closure that captures state, which only
    /// `fork` can carry into the child).
    NotSpawnable(String),
    /// An object made by one context was passed to a process of another.
    ContextMismatch {
        /// The start method of the object's context.
        object: crate::method::StartMethod,
        /// The start method of the process it was passed to.
        process: crate::method::StartMethod,
    },
    /// The other end of a connection or queue was closed: nothing more will arrive.
    Eof,
    /// The object was closed and cannot be used any more.
    Closed,
    /// This end of a simplex pipe is write-only and cannot receive.
    NotReadable,
    /// This end of a simplex pipe is read-only and cannot send.
    NotWritable,
    /// A received message was longer than the `maxlen` the caller allowed. As in Python, a
    /// duplex end no longer receives after it (but still sends), and a read-only end is closed.
    MessageTooLong {
        /// The message's length.
        len: u64,
        /// The caller's limit.
        maxlen: usize,
    },
    /// `offset`/`size` outside the buffer given to `send_bytes`.
    BadRange(String),
    /// A value could not be serialised to cross a process boundary.
    Serialize(String),
    /// Bytes received from another process could not be read back as the expected type.
    Deserialize(String),
    /// A `put` found the queue full and could not wait (`block` false) or waited out its timeout
    /// (Python's `queue.Full`). The error itself carries no value: `Queue::put` hands the item
    /// back in its [`PutError`](crate::PutError).
    Full,
    /// A value was requested from an empty queue without blocking.
    Empty,
    /// An invalid argument, with the reason (Python's `ValueError`).
    InvalidArgument(String),
    /// An operation on a pool that is not running (after `close` or `terminate`).
    PoolNotRunning,
    /// `join` on a pool that was neither closed nor terminated.
    PoolStillRunning,
    /// `successful()` on a result that is not ready yet.
    NotReady,
    /// The pool was terminated (or dropped while running) before this task finished.
    PoolTerminated,
    /// `get()` on a result whose value an earlier `get()` already took.
    ResultTaken,
    /// A process started by the spawn method ran the program's `main` without calling
    /// [`crate::init`] first.
    NotInitialized,
    /// The forkserver died or broke the protocol.
    Forkserver(String),
    /// A lock (or the lock of a condition) was released, waited on or notified by a thread
    /// that does not hold it (Python's `RuntimeError: cannot release un-acquired lock`).
    NotOwner(String),
    /// A barrier was broken (aborted, reset while threads waited, or a wait timed out), as
    /// Python's `BrokenBarrierError`.
    BrokenBarrier,
    /// An index outside a shared array (Python's `IndexError`).
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// An operating-system error.
    Io(io::Error),
    /// The HMAC handshake of a [`Listener`](crate::connection::Listener) or
    /// [`Client`](crate::connection::Client) failed: a wrong authentication key, or a peer that
    /// does not speak the protocol (Python's `multiprocessing.AuthenticationError`).
    AuthenticationError(String),
    /// A pickle could not be read, or a value could not be pickled
    /// ([`mproc::pickle`](crate::pickle)).
    Pickle(crate::pickle::error::PickleError),
    /// A [`Manager`](crate::Manager)'s server cannot be reached: it was shut down, killed, or
    /// died, or the object a proxy names no longer exists there. The message says which.
    ManagerGone(String),
    /// A key that a manager's dict does not hold (Python's `KeyError`): the key's `repr`.
    KeyError(String),
    /// An index outside a manager's list or array, or a `pop` from an empty one (Python's
    /// `IndexError`), with Python's message.
    IndexError(String),
    /// An attribute that a manager's `Namespace` (or other object) does not have (Python's
    /// `AttributeError`), with Python's message.
    AttributeError(String),
    /// A pool task ran past its deadline (`task_timeout`, or `timeout` on the call): its worker
    /// was killed and replaced, and the task failed. Distinct from [`Error::Timeout`], which is a
    /// caller giving up waiting while the task runs on.
    TaskTimeout {
        /// The pid of the worker that was killed.
        pid: u32,
        /// The deadline the task ran past (for a chunk of a map: the items' deadline times the
        /// number of items in the chunk).
        timeout: std::time::Duration,
    },
}

impl Error {
    /// A stable one-word name for the variant, as used in harness traces.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::Timeout => "Timeout",
            Error::Remote { .. } => "Remote",
            Error::WorkerLost { .. } => "WorkerLost",
            Error::NotStarted => "NotStarted",
            Error::AlreadyStarted => "AlreadyStarted",
            Error::NotChild => "NotChild",
            Error::JoinSelf => "JoinSelf",
            Error::ProcessClosed => "ProcessClosed",
            Error::StillRunning => "StillRunning",
            Error::DaemonAfterStart => "DaemonAfterStart",
            Error::DaemonChildren => "DaemonChildren",
            Error::StartMethodAlreadySet { .. } => "StartMethodAlreadySet",
            Error::UnknownStartMethod(_) => "UnknownStartMethod",
            Error::NotSpawnable(_) => "NotSpawnable",
            Error::ContextMismatch { .. } => "ContextMismatch",
            Error::Eof => "Eof",
            Error::Closed => "Closed",
            Error::NotReadable => "NotReadable",
            Error::NotWritable => "NotWritable",
            Error::MessageTooLong { .. } => "MessageTooLong",
            Error::BadRange(_) => "BadRange",
            Error::Serialize(_) => "Serialize",
            Error::Deserialize(_) => "Deserialize",
            Error::Full => "Full",
            Error::Empty => "Empty",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::PoolNotRunning => "PoolNotRunning",
            Error::PoolStillRunning => "PoolStillRunning",
            Error::NotReady => "NotReady",
            Error::PoolTerminated => "PoolTerminated",
            Error::ResultTaken => "ResultTaken",
            Error::NotInitialized => "NotInitialized",
            Error::Forkserver(_) => "Forkserver",
            Error::NotOwner(_) => "NotOwner",
            Error::BrokenBarrier => "BrokenBarrier",
            Error::IndexOutOfRange { .. } => "IndexOutOfRange",
            Error::Io(_) => "Io",
            Error::AuthenticationError(_) => "AuthenticationError",
            Error::Pickle(_) => "Pickle",
            Error::ManagerGone(_) => "ManagerGone",
            Error::KeyError(_) => "KeyError",
            Error::IndexError(_) => "IndexError",
            Error::AttributeError(_) => "AttributeError",
            Error::TaskTimeout { .. } => "TaskTimeout",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str(
                "timed out: the timeout ran out before the wait was over (wait again, or with a longer timeout)",
            ),
            Error::Remote { kind, message, .. } => write!(f, "remote {kind}: {message}"),
            Error::WorkerLost { pid, exitcode } => {
                if *exitcode < 0 {
                    write!(f, "worker {pid} was lost: killed by signal {}", -exitcode)
                } else {
                    write!(f, "worker {pid} was lost: exited with code {exitcode}")
                }
            }
            Error::NotStarted => {
                f.write_str("can only join a started process: call start() on it first")
            }
            Error::AlreadyStarted => f.write_str("cannot start a process twice"),
            Error::NotChild => f.write_str(
                "can only join a child process: this Process was started by another process, which alone can wait on it",
            ),
            Error::JoinSelf => f.write_str("a process cannot join itself"),
            Error::ProcessClosed => f.write_str(
                "process object is closed: close() released it, so it can no longer be used",
            ),
            Error::StillRunning => f.write_str(
                "Cannot close a process while it is still running. You should first call join() or terminate().",
            ),
            Error::DaemonAfterStart => f.write_str("process has already started: daemon cannot be changed"),
            Error::DaemonChildren => f.write_str("daemonic processes are not allowed to have children"),
            Error::StartMethodAlreadySet { current, requested } => write!(
                f,
                "context has already been set: cannot set the start method to {requested}, it is \
                 {current} already (set_start_method works once, before the default context is \
                 used; force_start_method changes it)"
            ),
            Error::UnknownStartMethod(m) => {
                write!(f, "cannot find context for {m:?} (expected fork, spawn or forkserver)")
            }
            Error::NotSpawnable(why) => f.write_str(why),
            Error::ContextMismatch { object, process } => write!(
                f,
                "an object created by the {object} context cannot be passed to a process started by the {process} context"
            ),
            Error::Eof => f.write_str("end of file: the other end was closed"),
            Error::Closed => f.write_str(
                "handle is closed: close() was called on this connection, listener or queue handle, which cannot be used again",
            ),
            Error::NotReadable => f.write_str(
                "connection is write-only: this is the sending end of a simplex pipe; receive on the other end",
            ),
            Error::NotWritable => f.write_str(
                "connection is read-only: this is the receiving end of a simplex pipe; send on the other end",
            ),
            Error::MessageTooLong { len, maxlen } => {
                write!(f, "bad message length: {len} bytes exceeds maxlen {maxlen}")
            }
            Error::BadRange(why) => f.write_str(why),
            Error::Serialize(why) => write!(f, "cannot serialise value: {why}"),
            Error::Deserialize(why) => write!(f, "cannot deserialise value: {why}"),
            Error::Full => f.write_str("queue is full: it holds its maxsize of items"),
            Error::Empty => f.write_str("queue is empty: there was no item to take (in the time given)"),
            Error::InvalidArgument(why) => f.write_str(why),
            Error::PoolNotRunning => f.write_str("Pool not running"),
            Error::PoolStillRunning => f.write_str("pool is still running: call close() or terminate() before join()"),
            Error::NotReady => {
                f.write_str("result is not ready: wait() for it, or check ready() first")
            }
            Error::PoolTerminated => {
                f.write_str("the pool was terminated before the task finished")
            }
            Error::ResultTaken => f.write_str("the result was already taken by an earlier get()"),
            Error::NotInitialized => f.write_str(
                "this process was started by mproc's spawn method but main() did not call mproc::init() first",
            ),
            Error::Forkserver(why) => f.write_str(why),
            Error::NotOwner(why) => f.write_str(why),
            Error::BrokenBarrier => f.write_str(
                "the barrier is broken: it was aborted, reset while parties waited, or a wait timed out; reset() makes it usable again",
            ),
            Error::IndexOutOfRange { index, len } => {
                write!(f, "index {index} out of range for an array of length {len}")
            }
            Error::Io(e) => write!(f, "{e}"),
            Error::AuthenticationError(why) => f.write_str(why),
            Error::Pickle(e) => write!(f, "pickle: {e}"),
            Error::ManagerGone(why) => write!(f, "the manager is gone: {why}"),
            Error::KeyError(key) => write!(f, "no such key: {key}"),
            Error::IndexError(why) => f.write_str(why),
            Error::AttributeError(why) => f.write_str(why),
            Error::TaskTimeout { pid, timeout } => write!(
                f,
                "the task ran past its deadline of {timeout:?}: its worker {pid} was killed and replaced"
            ),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {self}", self.kind_name())?;
        if let Error::Remote { traceback, .. } = self {
            if !traceback.is_empty() {
                write!(f, "\n{traceback}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Pickle(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_forkserver_error_names_its_kind_once() {
        let e = Error::Forkserver("the forkserver could not fork the child: EAGAIN".into());
        assert_eq!(
            format!("{e:?}"),
            "Forkserver: the forkserver could not fork the child: EAGAIN"
        );
        assert_eq!(
            e.to_string(),
            "the forkserver could not fork the child: EAGAIN"
        );
    }
}
