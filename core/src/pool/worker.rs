//! The worker side of a pool: the loop a pool worker runs, and the trampoline through which it
//! calls each task.
//!
//! Each worker is an mproc [`crate::Process`] whose target is [`worker_main`], holding one end of
//! a duplex socketpair (the pool holds the other); what travels on it is
//! [`super::protocol`]'s business. A task names its function as an
//! [`EntryOffset`](crate::sys::fnptr::EntryOffset) of
//! [`task_trampoline`], monomorphised for the task's callable and argument types, so the same
//! code runs under fork, spawn and forkserver.

use crate::launch::child::{self, ExitRequest};
use crate::pool::protocol::{self, Limits, PoolMessage, RemoteErr, ResultFrame};
use crate::reduction;
use crate::sys;
use crate::target::Target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::io::{StderrLock, StdoutLock};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A worker's end of its channel to the pool. It crosses to spawn and forkserver workers as a
/// descriptor (`SCM_RIGHTS`); a fork worker inherits it.
#[derive(Debug)]
pub(crate) struct WorkerChannel(pub(crate) OwnedFd);

impl Serialize for WorkerChannel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        reduction::serialize_fd(self.0.as_fd(), "pool worker channel", s)
    }
}

impl<'de> Deserialize<'de> for WorkerChannel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        reduction::deserialize_fd(d).map(WorkerChannel)
    }
}

/// What a worker needs to know besides its channel and the initializer's arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    /// Whether to run the initializer.
    pub has_init: bool,
    /// Leave after this many tasks (Python's `maxtasksperchild`).
    pub maxtasks: Option<u64>,
}

/// The initializer's arguments, shared by every worker the pool starts. A spawn or forkserver
/// worker receives its own copy by serialisation (descriptors inside travel by `SCM_RIGHTS`); a
/// fork worker finds its copy in its memory.
pub(crate) struct InitArgs<A>(pub(crate) Arc<Mutex<Option<A>>>);

impl<A> Clone for InitArgs<A> {
    fn clone(&self) -> Self {
        InitArgs(Arc::clone(&self.0))
    }
}

impl<A> InitArgs<A> {
    fn take(&self) -> Option<A> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<A: Serialize> Serialize for InitArgs<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .serialize(s)
    }
}

impl<'de, A: Deserialize<'de>> Deserialize<'de> for InitArgs<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let a = Option::<A>::deserialize(d)?;
        Ok(InitArgs(Arc::new(Mutex::new(a))))
    }
}

thread_local! {
    /// The standard streams' locks, held by a thread that forks a worker.
    static HELD_STREAMS: RefCell<Option<(StdoutLock<'static>, StderrLock<'static>)>> =
        const { RefCell::new(None) };
}

/// Takes the standard streams' locks before forking a worker, so that no other thread holds
/// them at the instant of the fork (a fork child would wait forever for a lock held by a thread
/// that does not exist in it). The child inherits them held by its only thread, and
/// [`worker_main`] releases them first thing; the parent releases them with
/// [`release_std_streams`] once the worker is started.
pub(crate) fn hold_std_streams() {
    let locks = (std::io::stdout().lock(), std::io::stderr().lock());
    HELD_STREAMS.with(|h| *h.borrow_mut() = Some(locks));
}

/// Releases the locks taken by [`hold_std_streams`] on this thread, if any.
pub(crate) fn release_std_streams() {
    HELD_STREAMS.with(|h| h.borrow_mut().take());
}

thread_local! {
    /// Set while this thread runs a task or the initializer: its panics are captured, not
    /// printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Where the panic hook leaves the location and backtrace of a captured panic.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that, while a task runs, records the panic's location and a backtrace
/// instead of printing them; other panics go to the previous hook.
fn install_panic_capture() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if CAPTURING.with(Cell::get) {
            let location = info
                .location()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "an unknown location".into());
            let backtrace = Backtrace::force_capture();
            let text = format!("panicked at {location}:\n{backtrace}");
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        } else {
            previous(info);
        }
    }));
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Runs `f`, turning a panic into a [`RemoteErr`] of kind `"panic"` with the panic's message and
/// backtrace. [`crate::exit`] inside `f` still leaves the worker.
fn run_captured<R>(f: impl FnOnce() -> R) -> Result<R, RemoteErr> {
    CAPTURING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    match r {
        Ok(v) => Ok(v),
        Err(payload) => {
            if payload.is::<ExitRequest>() {
                panic::resume_unwind(payload);
            }
            let message = payload_message(payload.as_ref());
            let traceback = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            Err(RemoteErr {
                kind: "panic".into(),
                message,
                traceback,
            })
        }
    }
}

/// The time limits of the task this worker is running, as [`soft_deadline`] and
/// [`hard_deadline`] report them. Process-wide (not per thread): a worker runs one task at a
/// time, and threads the task starts ask about the same task.
struct Running {
    limits: Limits,
    /// When the task began (the hard limit is the task's).
    task_start: Option<Instant>,
    /// When the item being called began (the soft limit is each item's).
    item_start: Option<Instant>,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    limits: Limits {
        soft: None,
        hard: None,
    },
    task_start: None,
    item_start: None,
});

fn running() -> std::sync::MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records that a task with `limits` begins now (`None`: the worker is between tasks).
fn begin_task(limits: Option<Limits>) {
    let mut r = running();
    r.limits = limits.unwrap_or_default();
    r.task_start = limits.map(|_| Instant::now());
    r.item_start = r.task_start;
}

/// Records that the next item of the running task begins now.
fn begin_item() {
    let mut r = running();
    if r.task_start.is_some() {
        r.item_start = Some(Instant::now());
    }
}

/// In a pool task with a soft time limit (`soft_timeout` on the pool or the call): the instant
/// that limit passes for the item being called. `None` outside a pool task, or for a task
/// without a soft limit.
///
/// The soft limit is how a pool tells a task that it should wrap up: when it passes, nothing
/// happens to the task by itself (Rust has no asynchronous exceptions, and `std` retries the
/// sleeps and reads a signal would interrupt); the task looks, with this function or
/// [`soft_deadline_passed`], and uses what is left as the timeout of its own blocking calls. The
/// hard limit ([`hard_deadline`]) follows: there the pool kills the worker.
///
/// ```no_run
/// use std::time::Duration;
///
/// fn crunch(steps: u64) -> Result<u64, String> {
///     let mut done = 0;
///     while done < steps {
///         if mproc::pool::soft_deadline_passed() {
///             return Err(format!("stopped after {done} of {steps} steps"));
///         }
///         std::thread::sleep(Duration::from_millis(10)); // a step of work
///         done += 1;
///     }
///     Ok(done)
/// }
///
/// fn main() -> mproc::Result<()> {
///     mproc::init();
///     let pool = mproc::Pool::builder()
///         .processes(2)
///         .soft_timeout(Duration::from_millis(200))
///         .task_timeout(Duration::from_secs(1))
///         .build()?;
///     // Wraps up at 200 ms, well before the pool would kill it at 1 s.
///     let r = pool.apply(crunch, (1_000,))?;
///     assert!(r.is_err());
///     Ok(())
/// }
/// ```
pub fn soft_deadline() -> Option<Instant> {
    let r = running();
    Some(r.item_start? + r.limits.soft?)
}

/// Whether the soft time limit of the running pool task has passed (see [`soft_deadline`]):
/// false outside a pool task and for a task without a soft limit.
pub fn soft_deadline_passed() -> bool {
    soft_deadline().is_some_and(|d| Instant::now() >= d)
}

/// In a pool task with a hard time limit (`task_timeout` on the pool, `timeout` on the call):
/// about when the pool kills this worker if the task is still running. The pool measures from
/// the moment it handed the task over, a little before the worker began it, so the kill comes
/// no earlier than this. `None` outside a pool task, or without a hard limit.
pub fn hard_deadline() -> Option<Instant> {
    let r = running();
    Some(r.task_start? + r.limits.hard?)
}

/// How long until the running pool task's soft limit passes, or its hard limit if it has no soft
/// one: a timeout for the task's own blocking calls. `Some(Duration::ZERO)` once it has passed;
/// `None` outside a pool task or without limits.
pub fn time_left() -> Option<Duration> {
    let limit = soft_deadline().or_else(hard_deadline)?;
    Some(limit.saturating_duration_since(Instant::now()))
}

/// The entry point of a task of callable `F` with argument tuple `A`, monomorphised per task type
/// and sent to workers as an [`EntryOffset`](crate::sys::fnptr::EntryOffset). Decodes a `Vec<A>`, calls `F` on each element and
/// appends each outcome to `out` (see the module documentation).
pub(crate) fn task_trampoline<F, A>(input: &[u8], out: &mut Vec<u8>)
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let Some(f) = sys::fnptr::conjure_zst_fn::<F, A>() else {
        let what = format!("{} is not zero-sized", std::any::type_name::<F>());
        protocol::push_task_error(out, &RemoteErr::new("NotSpawnable", what));
        return;
    };
    let items: Vec<A> = match reduction::from_bytes(input) {
        Ok(v) => v,
        Err(e) => {
            protocol::push_task_error(out, &RemoteErr::new("Deserialize", e.to_string()));
            return;
        }
    };
    protocol::push_items(out);
    for a in items {
        begin_item();
        let r = run_captured(|| f.call(a));
        protocol::push_item(out, r.as_ref().map_err(Clone::clone));
    }
}

/// A function that does nothing: the "initializer" of a pool without one.
pub(crate) fn no_init() {}

/// Writes all of `buf` to the (blocking) socket. `false` if the pool is gone.
fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        match sys::write(fd, &buf[done..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => done += n,
        }
    }
    true
}

/// The target of every pool worker: runs the initializer `F(A)` (if the pool has one), then
/// answers tasks until told to stop, until the pool's end closes, or after `maxtasks` tasks.
pub(crate) fn worker_main<F, A>(chan: WorkerChannel, cfg: WorkerConfig, init: InitArgs<A>)
where
    F: Target<A>,
    A: Send + 'static,
{
    release_std_streams();
    install_panic_capture();
    let fd = chan.0;
    let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    if cfg.has_init {
        let outcome = match (sys::fnptr::conjure_zst_fn::<F, A>(), init.take()) {
            (Some(f), Some(args)) => run_captured(|| drop(f.call(args))),
            _ => Err(RemoteErr::new(
                "InitializerMissing",
                "the worker did not receive its initializer",
            )),
        };
        if let Err(e) = outcome {
            protocol::push_init_failed(&mut wbuf, &e);
            write_all(fd.as_fd(), &wbuf);
            child::exit(1);
        }
    }
    drop(init);
    protocol::push_ready(&mut wbuf);
    if !write_all(fd.as_fd(), &wbuf) {
        return;
    }
    wbuf.clear();

    let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut rpos = 0usize;
    let mut done: u64 = 0;
    loop {
        let Some(frame) = protocol::parse_frame(&rbuf[rpos..]) else {
            // Nothing complete buffered: wait for more.
            if rpos > 0 {
                rbuf.drain(..rpos);
                rpos = 0;
            }
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(64 * 1024);
            }
            let room = rbuf.capacity() - rbuf.len();
            match sys::read_into_spare(fd.as_fd(), &mut rbuf, room) {
                Ok(0) | Err(_) => return, // the pool is gone
                Ok(_) => continue,
            }
        };
        match protocol::decode_pool_message(&frame) {
            Some(PoolMessage::Task {
                id,
                limits,
                entry,
                args,
            }) => {
                let answer = ResultFrame::begin(&mut wbuf, id);
                let t0 = Instant::now();
                let limited = limits.soft.is_some() || limits.hard.is_some();
                begin_task(limited.then_some(limits));
                let called = entry.call_task(args, &mut wbuf);
                if limited {
                    begin_task(None);
                }
                if !called {
                    let why = "the worker is not running the same executable as the pool";
                    protocol::push_task_error(&mut wbuf, &RemoteErr::new("NotSpawnable", why));
                }
                let nanos = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                answer.finish(&mut wbuf, nanos);
                rpos += frame.len;
                done += 1;
                // Every result goes out before the next task starts: if this worker dies in the
                // next task, the pool knows that this one finished.
                if !write_all(fd.as_fd(), &wbuf) {
                    return;
                }
                wbuf.clear();
                if cfg.maxtasks.is_some_and(|m| done >= m) {
                    return;
                }
            }
            Some(PoolMessage::Stop) => {
                write_all(fd.as_fd(), &wbuf);
                return;
            }
            None => return,
        }
    }
}
