//! `Process`: start a target in a child under a context's start method, then join, poll, signal
//! and close it, with Python's rules as typed errors.

use crate::children::{self, ChildRecord};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::launch::{self, spec::ChildSpec};
use crate::method::StartMethod;
use crate::reduction;
use crate::role;
use crate::state::{self, Me};
use crate::sys::fnptr::{self, EntryOffset};
use crate::target::{Target, Termination};
use crate::tracker;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long [`Process::join_or_terminate`] waits after `SIGTERM` before it sends `SIGKILL`.
pub const DEFAULT_TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// How long to wait for a child to end after `SIGKILL`, which it cannot ignore (only a process
/// stuck in the kernel takes longer).
const KILL_WAIT: Duration = Duration::from_secs(60);

/// How a process watched by [`Process::join_or_terminate`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ending {
    /// It ended by itself before the deadline.
    Finished,
    /// It was still running at the deadline and ended within the grace period after `SIGTERM`.
    Terminated,
    /// It ignored `SIGTERM` (blocked, handled or slow) and was killed with `SIGKILL`.
    Killed,
}

/// What [`Process::join_or_terminate`] and [`Process::run_with_deadline`] report: the
/// notes' `join(timeout)` / `is_alive()` / `terminate()` / `join()` pattern, in one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunOutcome {
    /// Whether it finished by itself, or how it was stopped.
    pub ending: Ending,
    /// Its exit code, as [`Process::exitcode`]: `-15` after `SIGTERM`, `-9` after `SIGKILL`
    /// (unless it handled the signal and exited with a code of its own).
    pub exitcode: i32,
    /// How long it ran: from [`Process::start`] until its end was seen.
    pub elapsed: Duration,
}

impl RunOutcome {
    /// Whether it ended by itself before the deadline.
    pub fn finished(&self) -> bool {
        self.ending == Ending::Finished
    }
}

/// What a process runs: encoded for spawn/forkserver, or run in place after `fork()`.
trait Payload: Send {
    /// The entry point and the encoded arguments, for a child that is not a fork.
    fn encode(&self) -> Result<(EntryOffset, reduction::Encoded)>;
    /// Runs the target here (in a fork child).
    fn run_here(self: Box<Self>) -> i32;
}

struct FnPayload<F, A> {
    f: F,
    args: A,
}

/// The entry point of a spawned or forkserver child whose target is `F` with arguments `A`,
/// monomorphised per target and sent to the child as an [`EntryOffset`]: decodes the arguments
/// (handing them the descriptors that came with them) and calls the target.
fn process_entry<F, A>(bytes: &[u8], fds: Vec<OwnedFd>) -> i32
where
    F: Target<A>,
    F::Output: Termination,
    A: DeserializeOwned,
{
    let decoded = reduction::decode(bytes, fds, "the arguments the parent sent");
    // Whatever the arguments attached to is ours now: the parent may drop its copies.
    launch::child::arguments_decoded();
    let args: A = match decoded {
        Ok(a) => a,
        Err(e) => {
            // Where Python prints the unpickling error's traceback on the child's stderr.
            eprintln!(
                "Process {}: cannot start the target `{}`: {e}",
                state::lock().me.name,
                std::any::type_name::<F>()
            );
            return 1;
        }
    };
    let f =
        fnptr::conjure_zst_fn::<F, A>().expect("the parent checked that the target is zero-sized");
    f.call(args).report()
}

impl<F, A> Payload for FnPayload<F, A>
where
    F: Target<A>,
    F::Output: Termination,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    fn encode(&self) -> Result<(EntryOffset, reduction::Encoded)> {
        if std::mem::size_of::<F>() != 0 {
            return Err(not_spawnable(std::any::type_name::<F>()));
        }
        Ok((
            EntryOffset::of(process_entry::<F, A>),
            reduction::encode(&self.args, "the arguments of a child's target")?,
        ))
    }
    fn run_here(self: Box<Self>) -> i32 {
        self.f.call(self.args).report()
    }
}

struct ClosurePayload<C>(C);

impl<C, R> Payload for ClosurePayload<C>
where
    C: FnOnce() -> R + Send + 'static,
    R: Termination,
{
    fn encode(&self) -> Result<(EntryOffset, reduction::Encoded)> {
        Err(not_spawnable(std::any::type_name::<C>()))
    }
    fn run_here(self: Box<Self>) -> i32 {
        (self.0)().report()
    }
}

fn not_spawnable(what: &str) -> Error {
    Error::NotSpawnable(format!(
        "the target {what} captures state: only the fork start method can carry a closure into a child; \
         use a function (or a closure that captures nothing) with its arguments for spawn and forkserver"
    ))
}

struct Inner {
    name: String,
    daemon: Option<bool>,
    payload: Option<Box<dyn Payload>>,
    child: Option<Arc<ChildRecord>>,
    closed: bool,
    /// When `start` handed the child over (for [`RunOutcome::elapsed`]).
    started_at: Option<Instant>,
}

/// A process object, as Python's `multiprocessing.Process`.
///
/// Made by [`Context::process`] (or [`Process::new`] for the default context), configured with
/// [`name`](Process::name) and [`daemon`](Process::daemon), then [`start`](Process::start)ed.
/// Every method takes `&self`, so a process can be shared between threads (say, one joins while
/// another terminates).
///
/// ```no_run
/// fn run_proc(name: String) {
///     println!("Run child process {name} ({})...", std::process::id());
/// }
///
/// fn main() -> mproc::Result<()> {
///     mproc::init();
///     let p = mproc::Process::new(run_proc, ("test".to_string(),));
///     p.start()?;
///     p.join()?;
///     assert_eq!(p.exitcode()?, Some(0));
///     Ok(())
/// }
/// ```
pub struct Process {
    ctx: Context,
    identity: Vec<u32>,
    /// The process that made this object: only it may start, join or signal the child.
    creator: u32,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Process")
            .field("name", &inner.name)
            .field("pid", &inner.child.as_ref().map(|c| c.popen.pid))
            .field("daemon", &inner.daemon)
            .field("closed", &inner.closed)
            .finish()
    }
}

impl Process {
    /// A process of the default context that will call `target` with the argument tuple `args`.
    pub fn new<F, A>(target: F, args: A) -> Process
    where
        F: Target<A>,
        F::Output: Termination,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        Process::with_payload(Context::DEFAULT, Box::new(FnPayload { f: target, args }))
    }

    fn with_payload(ctx: Context, payload: Box<dyn Payload>) -> Process {
        let (identity, name) = {
            let mut st = state::lock();
            let n = st.me.counter;
            st.me.counter += 1;
            let mut identity = st.me.identity.clone();
            identity.push(n);
            let prefix = if ctx.is_default() {
                "Process"
            } else {
                ctx.start_method().process_type_name()
            };
            let digits: Vec<String> = identity.iter().map(u32::to_string).collect();
            (identity, format!("{prefix}-{}", digits.join(":")))
        };
        Process {
            ctx,
            identity,
            creator: std::process::id(),
            inner: Mutex::new(Inner {
                name,
                daemon: None,
                payload: Some(payload),
                child: None,
                closed: false,
                started_at: None,
            }),
        }
    }

    /// Sets the name (builder style). Names have no meaning; several processes may share one.
    pub fn name(self, name: impl Into<String>) -> Process {
        self.set_name(name);
        self
    }

    /// Sets the daemon flag (builder style). A daemonic process is terminated when its parent
    /// exits, and may not have children. Defaults to the current process's flag.
    ///
    /// Beyond Python: a daemonic process also ends (by `SIGKILL`) when its parent dies without
    /// exiting (killed by a signal), so that none is left running as an orphan; pool workers are
    /// daemonic. A non-daemonic process outlives its parent, as in Python.
    pub fn daemon(self, daemon: bool) -> Process {
        self.lock().daemon = Some(daemon);
        self
    }

    /// Sets the name.
    pub fn set_name(&self, name: impl Into<String>) {
        self.lock().name = name.into();
    }

    /// Sets the daemon flag; an error once the process has started.
    pub fn set_daemon(&self, daemon: bool) -> Result<()> {
        let mut inner = self.lock();
        if inner.child.is_some() {
            return Err(Error::DaemonAfterStart);
        }
        inner.daemon = Some(daemon);
        Ok(())
    }

    /// The process's name: given, or `Process-N` (`N1:N2` for a grandchild) in the default
    /// context, `ForkProcess-N`/`SpawnProcess-N`/`ForkServerProcess-N` in an explicit one.
    pub fn get_name(&self) -> String {
        self.lock().name.clone()
    }

    /// Whether the process is (or will be) daemonic.
    pub fn is_daemon(&self) -> bool {
        let inner = self.lock();
        inner.daemon.unwrap_or_else(|| state::lock().me.daemon)
    }

    /// The child's pid once started.
    pub fn pid(&self) -> Option<u32> {
        self.lock().child.as_ref().map(|c| c.popen.pid)
    }

    /// The context this process was made in.
    pub fn context(&self) -> Context {
        self.ctx
    }

    /// Python's `_identity`: this process's position in the tree of children.
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }

    /// Starts the child. Errors: [`Error::AlreadyStarted`], [`Error::ProcessClosed`],
    /// [`Error::NotChild`] (the object was made by another process), [`Error::DaemonChildren`],
    /// [`Error::NotSpawnable`], [`Error::ContextMismatch`], [`Error::NotInitialized`].
    pub fn start(&self) -> Result<()> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Error::ProcessClosed);
        }
        if inner.child.is_some() || inner.payload.is_none() {
            return Err(Error::AlreadyStarted);
        }
        if self.creator != std::process::id() {
            return Err(Error::NotChild);
        }
        if role::init_pending() {
            return Err(Error::NotInitialized);
        }
        let method = self.ctx.start_method();
        let (daemon, me) = {
            let st = state::lock();
            if st.me.daemon {
                return Err(Error::DaemonChildren);
            }
            (inner.daemon.unwrap_or(st.me.daemon), st.me.clone())
        };
        children::reap_finished();
        children::ensure_atexit();
        let child_me = Me {
            name: inner.name.clone(),
            identity: self.identity.clone(),
            daemon,
            counter: 1,
            parent_pid: Some(std::process::id()),
            parent_name: Some(me.name.clone()),
            started_by: Some(method),
            authkey: me.authkey.clone(),
        };
        let mut held = None;
        let popen = match method {
            StartMethod::Fork => {
                let payload = inner.payload.take().expect("checked above");
                launch::fork::start(child_me, move || payload.run_here())?
            }
            StartMethod::Spawn | StartMethod::Forkserver => {
                let payload = inner.payload.as_ref().expect("checked above");
                let (entry, mut encoded) = payload.encode()?;
                check_contexts(&encoded.contexts, method)?;
                // The resource tracker's connection travels after the arguments' descriptors.
                let tracker = tracker::connection();
                let tracker_index = tracker.as_ref().map(|fd| {
                    encoded.fds.push(fd.as_raw_fd());
                    (encoded.fds.len() - 1) as u32
                });
                let spec = ChildSpec {
                    entry,
                    args: encoded.bytes,
                    name: child_me.name.clone(),
                    identity: child_me.identity.clone(),
                    daemon,
                    parent_pid: std::process::id(),
                    parent_name: me.name.clone(),
                    method,
                    authkey: child_me.authkey.clone(),
                    tracker: tracker_index,
                };
                let (popen, chan) = if method == StartMethod::Spawn {
                    launch::spawn::start(&spec, &encoded.fds)?
                } else {
                    launch::forkserver::start(&spec, &encoded.fds)?
                };
                // The arguments stay alive until the child has decoded them (it may look up by
                // name what they own: a creator's shared memory, say), or ends.
                let owners = inner.payload.take();
                let pidfd = popen.sentinel().try_clone_to_owned().ok();
                held = Some(launch::keeper::hold(chan, pidfd, Box::new(owners)));
                popen
            }
        };
        let record = Arc::new(ChildRecord {
            popen,
            daemon,
            name: inner.name.clone(),
            held,
        });
        children::register(Arc::clone(&record));
        inner.child = Some(record);
        inner.daemon = Some(daemon);
        inner.started_at = Some(Instant::now());
        Ok(())
    }

    /// Waits for the child at most `timeout`; if it is still running then, terminates it
    /// (`SIGTERM`), waits [`DEFAULT_TERMINATE_GRACE`], and kills it (`SIGKILL`) if it is still
    /// there: the `join(timeout)` / `is_alive()` / `terminate()` / `join()` pattern of Python's
    /// documentation, in one call that cannot hang on a child that ignores `SIGTERM`. Returns
    /// how it ended, its exit code and how long it ran.
    ///
    /// ```no_run
    /// use mproc::Ending;
    /// use std::time::Duration;
    ///
    /// fn work(ms: u64) {
    ///     std::thread::sleep(Duration::from_millis(ms));
    /// }
    ///
    /// fn main() -> mproc::Result<()> {
    ///     mproc::init();
    ///     let p = mproc::Process::new(work, (5_000,));
    ///     p.start()?;
    ///     let out = p.join_or_terminate(Duration::from_millis(500))?;
    ///     assert_eq!((out.ending, out.exitcode), (Ending::Terminated, -15));
    ///     assert!(out.elapsed < Duration::from_secs(5));
    ///     Ok(())
    /// }
    /// ```
    ///
    /// Errors: [`Error::NotStarted`], [`Error::ProcessClosed`], [`Error::NotChild`] as
    /// [`join`](Process::join); [`Error::Timeout`] only if the child outlives `SIGKILL` by a
    /// minute (stuck in the kernel).
    pub fn join_or_terminate(&self, timeout: Duration) -> Result<RunOutcome> {
        self.join_or_terminate_grace(timeout, DEFAULT_TERMINATE_GRACE)
    }

    /// As [`join_or_terminate`](Process::join_or_terminate), with `grace` between `SIGTERM` and
    /// `SIGKILL` (zero: `SIGKILL` right after `SIGTERM`).
    pub fn join_or_terminate_grace(
        &self,
        timeout: Duration,
        grace: Duration,
    ) -> Result<RunOutcome> {
        let child = self.started_child()?;
        let started = self.lock().started_at.unwrap_or_else(Instant::now);
        let outcome = |ending: Ending, code: i32| {
            children::forget(&child);
            Ok(RunOutcome {
                ending,
                exitcode: code,
                elapsed: started.elapsed(),
            })
        };
        if let Some(code) = child.popen.wait(Some(timeout))? {
            return outcome(Ending::Finished, code);
        }
        // A child that ends between the wait and the signal cannot be signalled (it may be a
        // zombie already): its exit code tells.
        let signal = |sig: i32| -> Result<Option<i32>> {
            match child.popen.signal(sig) {
                Ok(()) => Ok(None),
                Err(e) => child.popen.poll()?.map(Some).ok_or(Error::Io(e)),
            }
        };
        if let Some(code) = signal(libc::SIGTERM)? {
            return outcome(Ending::Terminated, code);
        }
        if let Some(code) = child.popen.wait(Some(grace))? {
            return outcome(Ending::Terminated, code);
        }
        if let Some(code) = signal(libc::SIGKILL)? {
            return outcome(Ending::Killed, code);
        }
        match child.popen.wait(Some(KILL_WAIT))? {
            Some(code) => outcome(Ending::Killed, code),
            None => Err(Error::Timeout),
        }
    }

    /// Starts the process and supervises it with [`join_or_terminate`](Process::join_or_terminate):
    /// runs the target with a deadline.
    pub fn run_with_deadline(&self, timeout: Duration) -> Result<RunOutcome> {
        self.start()?;
        self.join_or_terminate(timeout)
    }

    /// Waits until the child ends and returns its exit code (Python's `join()`, then
    /// `exitcode`): `0` after a normal return, `n` after [`crate::exit`]`(n)`, `1` after a
    /// panic, `-N` after signal `N`. A process may be joined many times; each returns the same
    /// code.
    ///
    /// ```no_run
    /// fn work() {}
    ///
    /// fn main() -> mproc::Result<()> {
    ///     mproc::init();
    ///     let p = mproc::Process::new(work, ());
    ///     p.start()?;
    ///     assert_eq!(p.join()?, 0);
    ///     Ok(())
    /// }
    /// ```
    ///
    /// Errors: [`Error::NotStarted`] before [`start`](Process::start),
    /// [`Error::ProcessClosed`] after [`close`](Process::close), [`Error::NotChild`] in a
    /// process other than the one that made this object, [`Error::JoinSelf`] in the child
    /// itself.
    pub fn join(&self) -> Result<i32> {
        let child = self.started_child()?;
        // A wait without a timeout returns only once the child has ended.
        let code = loop {
            if let Some(code) = child.popen.wait(None)? {
                break code;
            }
        };
        children::forget(&child);
        Ok(code)
    }

    /// Waits at most `timeout` for the child to end (Python's `join(timeout)`): its exit code
    /// if it ended, `None` if it is still running. Python's `join(timeout)` returns nothing
    /// either way and leaves the question to `is_alive()`; here the answer comes back.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// fn work() {
    ///     std::thread::sleep(Duration::from_secs(60));
    /// }
    ///
    /// fn main() -> mproc::Result<()> {
    ///     mproc::init();
    ///     let p = mproc::Process::new(work, ());
    ///     p.start()?;
    ///     if p.join_timeout(Duration::from_secs(5))?.is_none() {
    ///         p.terminate()?;
    ///         assert_eq!(p.join()?, -15);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    ///
    /// Errors: as [`join`](Process::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        let child = self.started_child()?;
        let code = child.popen.wait(Some(timeout))?;
        if code.is_some() {
            children::forget(&child);
        }
        Ok(code)
    }

    /// Whether the child is running: false before `start` and after it ended.
    pub fn is_alive(&self) -> Result<bool> {
        let inner = self.lock();
        if inner.closed {
            return Err(Error::ProcessClosed);
        }
        let child = match &inner.child {
            None => return Ok(false),
            Some(c) => Arc::clone(c),
        };
        drop(inner);
        self.check_owner(&child)?;
        match child.popen.poll()? {
            None => Ok(true),
            Some(_) => {
                children::forget(&child);
                Ok(false)
            }
        }
    }

    /// The exit code: `None` while running or before start; `0` after a normal return, `n` after
    /// [`crate::exit`]`(n)`, `1` after a panic, `-N` after signal `N`.
    pub fn exitcode(&self) -> Result<Option<i32>> {
        let inner = self.lock();
        if inner.closed {
            return Err(Error::ProcessClosed);
        }
        match &inner.child {
            None => Ok(None),
            Some(c) => Ok(c.popen.poll()?),
        }
    }

    /// Sends `SIGTERM` (exit code `-15`). Does nothing if the child has already ended.
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` (exit code `-9`). Does nothing if the child has already ended.
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, sig: i32) -> Result<()> {
        let child = self.started_child()?;
        child.popen.signal(sig)?;
        Ok(())
    }

    /// A descriptor that becomes readable when the child ends (Python's `sentinel`), valid until
    /// [`close`](Process::close).
    pub fn sentinel(&self) -> Result<RawFd> {
        use std::os::fd::AsRawFd;
        let child = self.started_child()?;
        Ok(child.popen.sentinel().as_raw_fd())
    }

    /// A duplicate of the [`sentinel`](Process::sentinel), owned by the caller (so that it can
    /// be polled without holding this process object).
    pub(crate) fn sentinel_owned(&self) -> Result<std::os::fd::OwnedFd> {
        let child = self.started_child()?;
        Ok(child.popen.sentinel().try_clone_to_owned()?)
    }

    /// Releases the process's resources. An error while the child is still running; afterwards
    /// every method except the name accessors returns [`Error::ProcessClosed`].
    pub fn close(&self) -> Result<()> {
        let mut inner = self.lock();
        if let Some(child) = &inner.child {
            if child.popen.poll()?.is_none() {
                return Err(Error::StillRunning);
            }
            children::forget(child);
        }
        inner.child = None;
        inner.payload = None;
        inner.closed = true;
        Ok(())
    }

    fn started_child(&self) -> Result<Arc<ChildRecord>> {
        let inner = self.lock();
        if inner.closed {
            return Err(Error::ProcessClosed);
        }
        let child = inner
            .child
            .as_ref()
            .map(Arc::clone)
            .ok_or(Error::NotStarted)?;
        drop(inner);
        self.check_owner(&child)?;
        Ok(child)
    }

    fn check_owner(&self, child: &ChildRecord) -> Result<()> {
        if child.popen.pid == std::process::id() {
            return Err(Error::JoinSelf);
        }
        if self.creator != std::process::id() {
            return Err(Error::NotChild);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Context {
    /// A process of this context that will call `target` with the argument tuple `args`.
    ///
    /// `target` is a function (or a closure that captures nothing) for every start method. A
    /// closure that captures state is accepted only by the fork start method; the others refuse
    /// it at [`Process::start`] with [`Error::NotSpawnable`].
    pub fn process<F, A>(&self, target: F, args: A) -> Process
    where
        F: Target<A>,
        F::Output: Termination,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        Process::with_payload(*self, Box::new(FnPayload { f: target, args }))
    }

    /// A process that runs a closure, which may capture anything: fork only (see
    /// [`Context::process`]).
    pub fn process_closure<C, R>(&self, closure: C) -> Process
    where
        C: FnOnce() -> R + Send + 'static,
        R: Termination,
    {
        Process::with_payload(*self, Box::new(ClosurePayload(closure)))
    }
}

fn check_contexts(contexts: &[StartMethod], process: StartMethod) -> Result<()> {
    // As CPython: objects of the fork context rely on inheritance and cannot go to children of
    // the other methods; objects of spawn and forkserver contexts go anywhere.
    match contexts
        .iter()
        .find(|&&c| c == StartMethod::Fork && process != StartMethod::Fork)
    {
        Some(&object) => Err(Error::ContextMismatch { object, process }),
        None => Ok(()),
    }
}

/// Information about the current process (Python's `current_process()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentProcess {
    /// `MainProcess` in the main process, otherwise the name the parent gave.
    pub name: String,
    /// This process's pid.
    pub pid: u32,
    /// Whether this process is daemonic.
    pub daemon: bool,
    /// Python's `_identity` (empty in the main process).
    pub identity: Vec<u32>,
    /// The start method that made this process (`None` in the main process).
    pub start_method: Option<StartMethod>,
}

impl CurrentProcess {
    /// Always [`Error::JoinSelf`]: a process cannot wait for its own end.
    pub fn join(&self) -> Result<i32> {
        Err(Error::JoinSelf)
    }
}

/// The current process.
pub fn current_process() -> CurrentProcess {
    let st = state::lock();
    CurrentProcess {
        name: st.me.name.clone(),
        pid: std::process::id(),
        daemon: st.me.daemon,
        identity: st.me.identity.clone(),
        start_method: st.me.started_by,
    }
}

/// The parent of the current process (Python's `parent_process()`): its pid and name, or `None`
/// in the main process.
pub fn parent_process() -> Option<(u32, String)> {
    let st = state::lock();
    st.me
        .parent_pid
        .map(|pid| (pid, st.me.parent_name.clone().unwrap_or_default()))
}

/// A process is ready for [`wait`](crate::connection::wait) when it has ended (its
/// [`sentinel`](Process::sentinel)).
impl crate::connection::Waitable for Process {
    fn wait_fd(&self) -> Result<std::os::fd::RawFd> {
        self.sentinel()
    }
}
