//! `Pool`: a pool of worker processes, as Python's `multiprocessing.Pool`, under every start
//! method.
//!
//! ```no_run
//! use mproc::StartMethod;
//! use std::time::Duration;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> mproc::Result<()> {
//!     mproc::init();
//!     let ctx = mproc::get_context(StartMethod::Spawn);
//!     let pool = ctx.pool().processes(4).build()?;
//!     let r = pool.apply_async(square, (7,))?;
//!     assert_eq!(r.get_timeout(Duration::from_secs(5))?, 49);
//!     assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
//!     pool.close()?;
//!     pool.join()?;
//!     Ok(())
//! }
//! ```
//!
//! Tasks are functions (or closures that capture nothing) with serde arguments and a serde
//! result, as [`Process`] targets are: workers outlive the call that submits a
//! task, so a closure that captures state is refused ([`Error::NotSpawnable`]) under every
//! start method.
//!
//! Beyond CPython: a worker that dies while running a task (killed, aborted, or exiting) fails
//! exactly that task with [`Error::WorkerLost`], is replaced, and the pool keeps serving (tasks
//! it had been handed but had not started go to other workers; a worker killed while idle costs
//! nothing, though one killed in the very instant a task reaches it may count as having started
//! it); a result that cannot be serialised fails that result only; an initializer that
//! panics breaks the pool with a clear error instead of restarting workers forever.
//!
//! ## How it works, and what it costs
//! Each worker is an mproc [`Process`] (named `ForkPoolWorker-N`, `SpawnPoolWorker-N` or
//! `ForkServerPoolWorker-N`, daemonic as in Python) with one duplex socketpair to the pool. A
//! task travels as the offset of a function monomorphised for its callable and argument types
//! plus its bincode arguments, so the same code runs under fork, spawn and forkserver. A
//! submitting thread writes its task straight to an idle worker; one result-handling thread per
//! pool (started by the first submission) reads results, hands out queued tasks, runs the
//! callbacks and replaces dead workers. While tasks are short, a worker is handed several at
//! once; while they are long (200 µs or more, as measured by the workers), one at a time, so
//! that an idle worker never waits behind a busy one.
//!
//! ## Deadlines
//! CPython's `AsyncResult.get(timeout)` only stops waiting: the task runs on and keeps its
//! worker. Here a task may have a hard deadline ([`PoolBuilder::task_timeout`], or
//! [`ApplyBuilder::timeout`] and the like per call, per item for a map): when it is still running
//! that long after a worker took it, the worker is killed and replaced, and the task fails with
//! [`Error::TaskTimeout`] (its error callback sees that error); nothing else is lost or delayed
//! beyond the replacement. A soft deadline before it ([`PoolBuilder::soft_timeout`]) tells the
//! task to wrap up: the task reads [`soft_deadline_passed`] (or [`soft_deadline`],
//! [`time_left`]) and has until the hard deadline (billiard's soft and hard time limits).
//!
//! ## Waiting, and awaiting
//! [`AsyncResult`] and [`MapResult`] have [`get`](AsyncResult::get) (blocks),
//! [`get_timeout`](AsyncResult::get_timeout), [`try_get`](AsyncResult::try_get),
//! [`wait`](AsyncResult::wait) and [`wait_timeout`](AsyncResult::wait_timeout), and are
//! [`Future`](std::future::Future)s, woken by the pool in any async runtime;
//! [`IMapIterator::into_stream`] turns an `imap` into a [`futures_core::Stream`].
//!
//! A thread waiting in `get` for a single task reads the answer off its worker's socket itself,
//! so a round trip costs the same wake-ups as a raw socket's: the result does not hop through the
//! result-handling thread. Callbacks still run in that thread, in completion order.
//!
//! Under fork, replacement workers are forked from the result-handling thread. That thread holds
//! no lock a child needs, so it does not count as "another thread" for the fork warning; threads
//! of your own still do.

mod handler;
mod protocol;
mod results;
mod worker;

pub use results::{AsyncResult, Callbacks, IMapIterator, IMapStream, MapResult};
pub use worker::{hard_deadline, soft_deadline, soft_deadline_passed, time_left};

use crate::children::ChildInfo;
use crate::context::{self, Context};
use crate::error::{Error, Result};

use crate::launch::fork::InternalThread;
use crate::process::Process;
use crate::sys::fnptr::{EntryOffset, TaskFn};
use crate::target::Target;
use handler::{Job, PoolState, Shared, WorkerFactory};
use protocol::Limits;
use results::{
    ApplySink, DirectRead, ImapShared, ImapSink, MapChunkSink, MapCollector, ResultCell, Route,
    Sink,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use worker::{InitArgs, WorkerChannel, WorkerConfig};

/// Makes workers whose initializer is `F(A)`.
struct Factory<F, A> {
    init: InitArgs<A>,
    _f: PhantomData<fn() -> F>,
}

impl<F, A> WorkerFactory for Factory<F, A>
where
    F: Target<A>,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    fn make(&self, ctx: Context, chan: WorkerChannel, cfg: WorkerConfig) -> Process {
        ctx.process(worker::worker_main::<F, A>, (chan, cfg, self.init.clone()))
    }
}

fn factory_of<F, A>(args: Option<A>) -> Box<dyn WorkerFactory>
where
    F: Target<A>,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    Box::new(Factory::<F, A> {
        init: InitArgs(Arc::new(Mutex::new(args))),
        _f: PhantomData,
    })
}

fn no_init_factory() -> Box<dyn WorkerFactory> {
    fn make<F: Target<()>>(_: F) -> Box<dyn WorkerFactory> {
        factory_of::<F, ()>(None)
    }
    make(worker::no_init)
}

fn captures_state(what: &str) -> Error {
    Error::NotSpawnable(format!(
        "{what} captures state: pool workers outlive the call that submits work, so tasks and \
         initializers must be functions (or closures that capture nothing) with their arguments"
    ))
}

/// Configures a [`Pool`]: made by [`Context::pool`] or [`Pool::builder`].
pub struct PoolBuilder {
    ctx: Context,
    processes: Option<usize>,
    maxtasks: Option<usize>,
    defaults: Limits,
    factory: Option<Box<dyn WorkerFactory>>,
    error: Option<Error>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("ctx", &self.ctx)
            .field("processes", &self.processes)
            .field("maxtasksperchild", &self.maxtasks)
            .field("task_timeout", &self.defaults.hard)
            .field("soft_timeout", &self.defaults.soft)
            .field("initializer", &self.factory.is_some())
            .finish()
    }
}

impl PoolBuilder {
    fn new(ctx: Context) -> PoolBuilder {
        PoolBuilder {
            ctx,
            processes: None,
            maxtasks: None,
            defaults: Limits::default(),
            factory: None,
            error: None,
        }
    }

    /// The number of workers (default: [`crate::cpu_count`]); 0 is an error at
    /// [`build`](PoolBuilder::build).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function every worker calls once with `args` when it starts (Python's `initializer`
    /// and `initargs`). The arguments may hold descriptors (a [`Connection`](crate::Connection)):
    /// they travel to each worker as a start argument does. If the initializer panics, the pool
    /// is broken: its queued tasks fail with that panic as an [`Error::Remote`], and so does
    /// every later submission.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        if std::mem::size_of::<F>() != 0 {
            self.error = Some(captures_state(&format!(
                "the initializer {}",
                std::any::type_name::<F>()
            )));
        } else {
            let _ = f;
            self.factory = Some(factory_of::<F, A>(Some(args)));
        }
        self
    }

    /// A worker leaves after this many tasks and is replaced by a fresh one (Python's
    /// `maxtasksperchild`; default: never). 0 is an error at [`build`](PoolBuilder::build).
    pub fn maxtasksperchild(mut self, n: usize) -> Self {
        self.maxtasks = Some(n);
        self
    }

    /// A hard deadline for every task (default: none; a call may set its own, or none, with
    /// [`ApplyBuilder::timeout`] and the like): a task still running this long after a worker
    /// took it has its worker killed and replaced, and fails with [`Error::TaskTimeout`]; its
    /// callbacks see that error, and no other task is disturbed. For a map it is each item's
    /// deadline (a map with a deadline runs one item per task unless given a chunk size; a
    /// chunk of `n` items then has `n` times the deadline). Beyond CPython, whose tasks have no
    /// deadline; billiard's `timeout`, pebble's `schedule(timeout=...)`.
    ///
    /// A task with a deadline is handed only to an idle worker, and no task is queued behind it
    /// on that worker, so its deadline is measured from its start and nothing waits on it.
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.defaults.hard = Some(d);
        self
    }

    /// A soft deadline for every task (default: none), shorter than its hard one: when it
    /// passes, the task is told (it reads [`soft_deadline_passed`] or [`soft_deadline`] inside
    /// the worker) and has until the hard deadline to wrap up (billiard's `soft_timeout`).
    /// Measured per item, by the worker.
    pub fn soft_timeout(mut self, d: Duration) -> Self {
        self.defaults.soft = Some(d);
        self
    }

    /// Starts the workers. Errors: [`Error::InvalidArgument`] for 0 processes or 0
    /// `maxtasksperchild` (Python's `ValueError`), for a zero deadline or a soft deadline no
    /// shorter than the hard one; [`Error::NotSpawnable`] for an initializer that captures
    /// state, and whatever starting a process can fail with.
    pub fn build(self) -> Result<Pool> {
        if let Some(e) = self.error {
            return Err(e);
        }
        check_limits(self.defaults)?;
        let processes = self.processes.unwrap_or_else(context::cpu_count);
        if processes < 1 {
            return Err(Error::InvalidArgument(
                "Number of processes must be at least 1".into(),
            ));
        }
        if self.maxtasks == Some(0) {
            return Err(Error::InvalidArgument(
                "maxtasksperchild must be a positive int or None".into(),
            ));
        }
        // As Python, a pool of the default context uses the concrete context in force, so its
        // workers are named `ForkPoolWorker-N` and so on.
        let ctx = context::get_context(self.ctx.start_method());
        let has_init = self.factory.is_some();
        let factory = self.factory.unwrap_or_else(no_init_factory);
        let shared = Shared::new(
            ctx,
            processes,
            self.maxtasks.map(|m| m as u64),
            has_init,
            factory,
        )?;
        Ok(Pool {
            shared,
            handler: Mutex::new(HandlerSlot::Idle),
            ctx,
            defaults: self.defaults,
        })
    }
}

impl Context {
    /// A pool builder of this context (Python's `ctx.Pool(...)`).
    pub fn pool(&self) -> PoolBuilder {
        PoolBuilder::new(*self)
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Submit work with [`apply`](Pool::apply), [`apply_async`](Pool::apply_async),
/// [`map`](Pool::map), [`starmap`](Pool::starmap), [`imap`](Pool::imap) and
/// [`imap_unordered`](Pool::imap_unordered); then [`close`](Pool::close) (or
/// [`terminate`](Pool::terminate)) and [`join`](Pool::join). Dropping a pool that was not joined
/// terminates it, as leaving Python's `with Pool() as p:` block does.
///
/// All methods take `&self`; a pool may be shared between threads.
pub struct Pool {
    shared: Arc<Shared>,
    handler: Mutex<HandlerSlot>,
    ctx: Context,
    /// The time limits of a call that sets none.
    defaults: Limits,
}

/// The pool's result-handling thread: started by the first submission. A pool that never got
/// work runs the handler's loop on the thread that joins or terminates it instead, which saves
/// a thread (and its wake-ups) for a pool that is made and closed.
enum HandlerSlot {
    Idle,
    /// The thread, counted as one of mproc's own (for the fork warning) while it is here.
    Running(JoinHandle<()>, InternalThread),
    Done,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("context", &self.ctx)
            .field("processes", &self.shared.processes)
            .field("state", &self.shared.lock().state)
            .finish()
    }
}

/// Python's default chunk size for `map`: `ceil(len / (4 * workers))`.
fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
}

/// A call's choice of time limits: `None` takes the pool's default, `Some(None)` none.
#[derive(Clone, Copy, Debug, Default)]
struct LimitChoice {
    hard: Option<Option<Duration>>,
    soft: Option<Option<Duration>>,
}

/// Refuses limits that cannot be met: zero, or a soft limit no shorter than the hard one.
fn check_limits(limits: Limits) -> Result<()> {
    for (name, d) in [("timeout", limits.hard), ("soft_timeout", limits.soft)] {
        if d == Some(Duration::ZERO) {
            return Err(Error::InvalidArgument(format!(
                "a task's {name} must be longer than zero"
            )));
        }
    }
    if let (Some(soft), Some(hard)) = (limits.soft, limits.hard) {
        if soft >= hard {
            return Err(Error::InvalidArgument(format!(
                "a task's soft_timeout ({soft:?}) must be shorter than its timeout ({hard:?}): \
                 the soft limit warns the task before the hard one kills it"
            )));
        }
    }
    Ok(())
}

impl Limits {
    /// The limits of a task of `n` items: the soft limit stays each item's (the worker measures
    /// it per item), the hard one covers them all.
    fn for_chunk(self, n: usize) -> Limits {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        Limits {
            soft: self.soft,
            hard: self
                .hard
                .map(|d| d.checked_mul(n).unwrap_or(Duration::from_nanos(u64::MAX))),
        }
    }
}

fn check_chunksize(c: usize) -> Result<usize> {
    if c < 1 {
        return Err(Error::InvalidArgument(format!(
            "Chunksize must be 1+, not {c}"
        )));
    }
    Ok(c)
}

impl Pool {
    /// A pool of the default context with `processes` workers (`None`: [`crate::cpu_count`]),
    /// as Python's `Pool(processes)`.
    pub fn new(processes: impl Into<Option<usize>>) -> Result<Pool> {
        let mut b = Pool::builder();
        if let Some(n) = processes.into() {
            b = b.processes(n);
        }
        b.build()
    }

    /// A builder for a pool of the default context.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new(context::default_context())
    }

    /// The context the workers are started by.
    pub fn context(&self) -> Context {
        self.ctx
    }

    /// The number of workers the pool keeps.
    pub fn processes(&self) -> usize {
        self.shared.processes
    }

    /// The workers running now: names (`ForkPoolWorker-N`, `SpawnPoolWorker-N`,
    /// `ForkServerPoolWorker-N`) and pids.
    pub fn workers(&self) -> Vec<ChildInfo> {
        self.shared
            .workers()
            .into_iter()
            .map(|(name, pid)| ChildInfo {
                name,
                pid,
                daemon: true,
            })
            .collect()
    }

    fn check_running(&self) -> Result<()> {
        if self.shared.lock().state != PoolState::Run {
            return Err(Error::PoolNotRunning);
        }
        Ok(())
    }

    /// The frame of task `id`, calling `F` on each of `items` within `limits`.
    fn job<F, A>(&self, id: u64, items: &[A], limits: Limits, sink: Box<dyn Sink>) -> Result<Job>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let mut msg = Vec::with_capacity(64);
        let entry = EntryOffset::of_task(worker::task_trampoline::<F, A> as TaskFn);
        protocol::push_task(&mut msg, id, limits, entry, items)?;
        Ok(Job {
            id,
            msg,
            sink,
            hard: limits.hard,
            released: None,
        })
    }

    fn check_task<F>() -> Result<()> {
        if std::mem::size_of::<F>() != 0 {
            return Err(captures_state(&format!(
                "the task {}",
                std::any::type_name::<F>()
            )));
        }
        Ok(())
    }

    /// The limits of a call: its own choices over the pool's defaults, checked.
    fn limits(&self, choice: LimitChoice) -> Result<Limits> {
        let limits = Limits {
            soft: choice.soft.unwrap_or(self.defaults.soft),
            hard: choice.hard.unwrap_or(self.defaults.hard),
        };
        check_limits(limits)?;
        Ok(limits)
    }

    /// Calls `f(args...)` in a worker and waits for the result (Python's `apply`).
    pub fn apply<F, A>(&self, f: F, args: A) -> Result<F::Output>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Submits `f(args...)` and returns at once (Python's `apply_async`). The task's return value
    /// comes back whole: a task returning `Result<T, E>` gives `Ok(Err(e))` for its own error,
    /// while a panic gives [`Error::Remote`] (kind `"panic"`). Errors now:
    /// [`Error::PoolNotRunning`] after `close`/`terminate`, [`Error::NotSpawnable`] for a closure
    /// that captures state, [`Error::Serialize`] for arguments that cannot be serialised.
    pub fn apply_async<F, A>(&self, f: F, args: A) -> Result<AsyncResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args).submit()
    }

    /// [`apply_async`](Pool::apply_async) with options: a deadline
    /// ([`timeout`](ApplyBuilder::timeout), [`soft_timeout`](ApplyBuilder::soft_timeout)) and
    /// callbacks ([`callback`](ApplyBuilder::callback),
    /// [`error_callback`](ApplyBuilder::error_callback)); [`submit`](ApplyBuilder::submit)
    /// sends the task.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// fn slow(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// fn main() -> mproc::Result<()> {
    ///     mproc::init();
    ///     let pool = mproc::Pool::new(2)?;
    ///     let r = pool
    ///         .apply_async_with(slow, (10_000,))
    ///         .timeout(Duration::from_millis(300))
    ///         .error_callback(|e| eprintln!("failed: {e}"))
    ///         .submit()?;
    ///     assert!(matches!(r.get(), Err(mproc::Error::TaskTimeout { .. })));
    ///     Ok(())
    /// }
    /// ```
    pub fn apply_async_with<F, A>(&self, f: F, args: A) -> ApplyBuilder<'_, F, A>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        ApplyBuilder {
            pool: self,
            f,
            args,
            limits: LimitChoice::default(),
            callbacks: Callbacks::new(),
        }
    }

    fn submit_apply<F, A>(
        &self,
        args: A,
        limits: LimitChoice,
        callbacks: Callbacks<F::Output>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        Self::check_task::<F>()?;
        let limits = self.limits(limits)?;
        self.check_running()?;
        let id = self.shared.next_id();
        // A waiter may read this task's answer straight off its worker's socket.
        let pool: Weak<dyn DirectRead> = Arc::downgrade(&self.shared) as Weak<dyn DirectRead>;
        let released = Arc::new(AtomicBool::new(false));
        let cell = ResultCell::with_route(Some(Route {
            pool,
            job: id,
            released: Arc::clone(&released),
        }));
        let sink = Box::new(ApplySink {
            cell: Arc::clone(&cell),
            callbacks,
        });
        let mut job = self.job::<F, A>(id, std::slice::from_ref(&args), limits, sink)?;
        job.released = Some(released);
        self.submit(vec![job])?;
        Ok(AsyncResult::new(cell))
    }

    /// Calls `f(item)` for every item and waits for all results, in input order (Python's
    /// `map`), in chunks of Python's default size, `ceil(len / (4 * processes))`. If some calls
    /// failed, the error of the first one (in input order) is returned once all tasks finished.
    /// For another chunk size, a deadline or callbacks: [`map_async_with`](Pool::map_async_with).
    pub fn map<F, T, I>(&self, f: F, items: I) -> Result<Vec<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        self.map_async(f, items)?.get()
    }

    /// The asynchronous [`map`](Pool::map) (Python's `map_async`).
    pub fn map_async<F, T, I>(&self, f: F, items: I) -> Result<MapResult<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        self.map_async_with(f, items).submit()
    }

    /// [`map_async`](Pool::map_async) with options: [`chunksize`](MapBuilder::chunksize), a
    /// deadline per item ([`timeout`](MapBuilder::timeout),
    /// [`soft_timeout`](MapBuilder::soft_timeout)) and callbacks, called once with all the
    /// results (or the first error). The items are taken from `items` now.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> mproc::Result<()> {
    ///     mproc::init();
    ///     let pool = mproc::Pool::new(2)?;
    ///     let squares = pool.map_async_with(square, 0..1000).chunksize(100).submit()?.get()?;
    ///     assert_eq!(squares[999], 998_001);
    ///     let r = pool
    ///         .map_async_with(square, 0..10)
    ///         .timeout(Duration::from_secs(1))
    ///         .callback(|v| println!("{} squares", v.len()))
    ///         .submit()?;
    ///     assert_eq!(r.get()?.len(), 10);
    ///     Ok(())
    /// }
    /// ```
    pub fn map_async_with<F, T, I>(&self, f: F, items: I) -> MapBuilder<'_, F, (T,)>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        self.starmap_async_with(f, items.into_iter().map(|t| (t,)))
    }

    /// Calls `f(args...)` for every argument tuple and waits for all results, in input order
    /// (Python's `starmap`); see [`map`](Pool::map).
    pub fn starmap<F, A, I>(&self, f: F, items: I) -> Result<Vec<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.starmap_async(f, items)?.get()
    }

    /// The asynchronous [`starmap`](Pool::starmap) (Python's `starmap_async`).
    pub fn starmap_async<F, A, I>(&self, f: F, items: I) -> Result<MapResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.starmap_async_with(f, items).submit()
    }

    /// [`starmap_async`](Pool::starmap_async) with options; see
    /// [`map_async_with`](Pool::map_async_with).
    pub fn starmap_async_with<F, A, I>(&self, f: F, items: I) -> MapBuilder<'_, F, A>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        MapBuilder {
            pool: self,
            f,
            items: items.into_iter().collect(),
            chunksize: None,
            limits: LimitChoice::default(),
            callbacks: Callbacks::new(),
        }
    }

    /// The chunk size of a map: the caller's, or 1 for a map with a deadline (so that the
    /// deadline is each item's), or Python's default.
    fn chunksize_for(&self, chunksize: Option<usize>, len: usize, limits: Limits) -> Result<usize> {
        match chunksize {
            Some(c) => check_chunksize(c),
            None if limits.hard.is_some() => Ok(1),
            None => Ok(default_chunksize(len, self.shared.processes)),
        }
    }

    fn submit_map<F, A>(
        &self,
        items: Vec<A>,
        chunksize: Option<usize>,
        limits: LimitChoice,
        callbacks: Callbacks<Vec<F::Output>>,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        Self::check_task::<F>()?;
        let limits = self.limits(limits)?;
        if let Some(c) = chunksize {
            check_chunksize(c)?;
        }
        self.check_running()?;
        let cell = ResultCell::new();
        if items.is_empty() {
            cell.set(Ok(Vec::new()), callbacks);
            return Ok(AsyncResult::new(cell));
        }
        let c = self.chunksize_for(chunksize, items.len(), limits)?;
        let chunks = items.len().div_ceil(c);
        let collector = MapCollector::new(items.len(), chunks, Arc::clone(&cell), callbacks);
        let mut jobs = Vec::with_capacity(chunks);
        for (k, chunk) in items.chunks(c).enumerate() {
            let sink = Box::new(MapChunkSink {
                collector: Arc::clone(&collector),
                start: k * c,
                len: chunk.len(),
            });
            let id = self.shared.next_id();
            jobs.push(self.job::<F, A>(id, chunk, limits.for_chunk(chunk.len()), sink)?);
        }
        self.submit(jobs)?;
        Ok(AsyncResult::new(cell))
    }

    /// Calls `f(item)` for every item, one item per task, and returns an iterator over the
    /// results in input order, each available as soon as it (and those before it) finished
    /// (Python's `imap`). The items are taken from `items` now. For chunks or a deadline:
    /// [`imap_with`](Pool::imap_with).
    pub fn imap<F, T, I>(&self, f: F, items: I) -> Result<IMapIterator<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, items).submit()
    }

    /// As [`imap`](Pool::imap), but the results come in completion order (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<F, T, I>(&self, f: F, items: I) -> Result<IMapIterator<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        self.imap_unordered_with(f, items).submit()
    }

    /// [`imap`](Pool::imap) with options: [`chunksize`](IMapBuilder::chunksize) (Python's
    /// default is 1) and a deadline per item ([`timeout`](IMapBuilder::timeout),
    /// [`soft_timeout`](IMapBuilder::soft_timeout)).
    pub fn imap_with<F, T, I>(&self, f: F, items: I) -> IMapBuilder<'_, F, T>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        IMapBuilder {
            pool: self,
            f,
            items: items.into_iter().map(|t| (t,)).collect(),
            chunksize: 1,
            ordered: true,
            limits: LimitChoice::default(),
        }
    }

    /// [`imap_unordered`](Pool::imap_unordered) with options; see [`imap_with`](Pool::imap_with).
    pub fn imap_unordered_with<F, T, I>(&self, f: F, items: I) -> IMapBuilder<'_, F, T>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        IMapBuilder {
            ordered: false,
            ..self.imap_with(f, items)
        }
    }

    fn submit_imap<F, T>(
        &self,
        items: Vec<(T,)>,
        chunksize: usize,
        ordered: bool,
        limits: LimitChoice,
    ) -> Result<IMapIterator<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        Self::check_task::<F>()?;
        let c = check_chunksize(chunksize)?;
        let limits = self.limits(limits)?;
        self.check_running()?;
        let shared = ImapShared::new(items.len(), ordered);
        let mut jobs = Vec::with_capacity(items.len().div_ceil(c));
        for (k, chunk) in items.chunks(c).enumerate() {
            let sink = Box::new(ImapSink {
                shared: Arc::clone(&shared),
                start: k * c,
                len: chunk.len(),
            });
            let id = self.shared.next_id();
            jobs.push(self.job::<F, (T,)>(id, chunk, limits.for_chunk(chunk.len()), sink)?);
        }
        if !jobs.is_empty() {
            self.submit(jobs)?;
        }
        Ok(IMapIterator::new(shared))
    }

    /// No more work may be submitted; the workers leave once every queued task is done
    /// (Python's `close`).
    pub fn close(&self) -> Result<()> {
        {
            let mut inner = self.shared.lock();
            if inner.state == PoolState::Run {
                inner.state = PoolState::Close;
                inner.dispatch();
            }
        }
        self.shared.wake();
        Ok(())
    }

    /// Stops the workers now (Python's `terminate`): queued and running tasks are dropped and
    /// their results fail with [`Error::PoolTerminated`]. Returns once every worker is reaped.
    pub fn terminate(&self) -> Result<()> {
        self.shared.lock().state = PoolState::Terminate;
        self.shared.wake();
        self.join_handler();
        Ok(())
    }

    /// Waits until every worker has left (Python's `join`): an error
    /// ([`Error::PoolStillRunning`]) unless [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) was called first.
    pub fn join(&self) -> Result<()> {
        if self.shared.lock().state == PoolState::Run {
            return Err(Error::PoolStillRunning);
        }
        self.join_handler();
        Ok(())
    }

    /// Starts the result-handling thread if it is not running yet (after a submission).
    fn ensure_handler(&self) -> Result<()> {
        let mut slot = self.handler.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*slot, HandlerSlot::Idle) {
            return Ok(());
        }
        let counted = InternalThread::enter();
        let shared = Arc::clone(&self.shared);
        match std::thread::Builder::new()
            .name("mproc-pool".into())
            // Under fork, replacement workers are forked from this thread and run their tasks
            // on a copy of its stack: give it the size of a main thread's.
            .stack_size(8 << 20)
            .spawn(move || handler::run_handler(shared))
        {
            Ok(h) => {
                *slot = HandlerSlot::Running(h, counted);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the handler's loop to end (running it here if no thread was started).
    fn join_handler(&self) {
        let mut slot = self.handler.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *slot, HandlerSlot::Done) {
            HandlerSlot::Running(h, counted) => {
                if h.thread().id() == std::thread::current().id() {
                    // Called from a callback, in the handler thread itself: it ends by itself
                    // once the callback returns.
                    *slot = HandlerSlot::Running(h, counted);
                    return;
                }
                let _ = h.join();
                drop(counted);
            }
            HandlerSlot::Idle => handler::run_handler(Arc::clone(&self.shared)),
            HandlerSlot::Done => {}
        }
    }

    fn submit(&self, jobs: Vec<Job>) -> Result<()> {
        self.shared.submit(jobs)?;
        self.ensure_handler()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let running = !matches!(
            *self.handler.lock().unwrap_or_else(|p| p.into_inner()),
            HandlerSlot::Done
        );
        if running {
            let _ = self.terminate();
        }
        // Dropped by a callback, in the handler thread itself, which ends right after: the
        // thread is detached, and its count dropped with the slot.
        *self.handler.lock().unwrap_or_else(|p| p.into_inner()) = HandlerSlot::Done;
    }
}

/// The time-limit options shared by the call builders.
macro_rules! limit_options {
    () => {
        /// A hard deadline for this call's task (for a map: each item's), over the pool's
        /// [`task_timeout`](PoolBuilder::task_timeout): a task still running this long after a
        /// worker took it has its worker killed and replaced, and fails with
        /// [`Error::TaskTimeout`].
        pub fn timeout(mut self, d: Duration) -> Self {
            self.limits.hard = Some(Some(d));
            self
        }

        /// A soft deadline for this call's task (for a map: each item's), over the pool's
        /// [`soft_timeout`](PoolBuilder::soft_timeout); see there.
        pub fn soft_timeout(mut self, d: Duration) -> Self {
            self.limits.soft = Some(Some(d));
            self
        }

        /// No deadline for this call's task, whatever the pool's defaults.
        pub fn no_timeout(mut self) -> Self {
            self.limits = LimitChoice {
                hard: Some(None),
                soft: Some(None),
            };
            self
        }
    };
}

/// The callback options shared by the call builders: `$value` is what the callback sees.
macro_rules! callback_options {
    ($value:ty, $on_value:literal, $on_error:literal) => {
        #[doc = $on_value]
        pub fn callback(mut self, f: impl FnOnce(&$value) + Send + 'static) -> Self {
            self.callbacks = self.callbacks.callback(f);
            self
        }

        #[doc = $on_error]
        pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
            self.callbacks = self.callbacks.error_callback(f);
            self
        }

        /// Both callbacks at once, replacing any set before.
        pub fn callbacks(mut self, callbacks: Callbacks<$value>) -> Self {
            self.callbacks = callbacks;
            self
        }
    };
}

/// A task being submitted with options, made by [`Pool::apply_async_with`]; nothing is sent
/// until [`submit`](ApplyBuilder::submit).
#[must_use = "the task is submitted only by `submit()`"]
pub struct ApplyBuilder<'p, F: Target<A>, A> {
    pool: &'p Pool,
    f: F,
    args: A,
    limits: LimitChoice,
    callbacks: Callbacks<F::Output>,
}

impl<F: Target<A>, A> std::fmt::Debug for ApplyBuilder<'_, F, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyBuilder")
            .field("task", &std::any::type_name::<F>())
            .field("limits", &self.limits)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}

impl<F, A> ApplyBuilder<'_, F, A>
where
    F: Target<A>,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    limit_options!();

    callback_options!(
        F::Output,
        "Called with the value in the pool's result-handling thread when the task succeeds (see \
         [`Callbacks`]).",
        "Called with the error in the pool's result-handling thread when the task fails \
         ([`Error::TaskTimeout`] included)."
    );

    /// Submits the task (errors as [`Pool::apply_async`], and [`Error::InvalidArgument`] for a
    /// zero deadline or a soft deadline no shorter than the hard one).
    pub fn submit(self) -> Result<AsyncResult<F::Output>> {
        let _ = self.f;
        self.pool
            .submit_apply::<F, A>(self.args, self.limits, self.callbacks)
    }
}

/// A map being submitted with options, made by [`Pool::map_async_with`] and
/// [`Pool::starmap_async_with`]; nothing is sent until [`submit`](MapBuilder::submit).
#[must_use = "the map is submitted only by `submit()`"]
pub struct MapBuilder<'p, F: Target<A>, A> {
    pool: &'p Pool,
    f: F,
    items: Vec<A>,
    chunksize: Option<usize>,
    limits: LimitChoice,
    callbacks: Callbacks<Vec<F::Output>>,
}

impl<F: Target<A>, A> std::fmt::Debug for MapBuilder<'_, F, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapBuilder")
            .field("task", &std::any::type_name::<F>())
            .field("items", &self.items.len())
            .field("chunksize", &self.chunksize)
            .field("limits", &self.limits)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}

impl<F, A> MapBuilder<'_, F, A>
where
    F: Target<A>,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    limit_options!();

    /// Items per task (Python's `chunksize`; 0 is an error at [`submit`](MapBuilder::submit)).
    /// Default: Python's, `ceil(len / (4 * processes))`, or 1 when the map has a deadline.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    callback_options!(
        Vec<F::Output>,
        "Called once with all the values, in the pool's result-handling thread, when every item \
         succeeded.",
        "Called once with the first error (in input order), once every item finished."
    );

    /// Submits the map's tasks (errors as [`Pool::apply_async`], and
    /// [`Error::InvalidArgument`] for a chunk size of 0 or limits that cannot be met).
    pub fn submit(self) -> Result<MapResult<F::Output>> {
        let _ = self.f;
        self.pool
            .submit_map::<F, A>(self.items, self.chunksize, self.limits, self.callbacks)
    }
}

/// An `imap` being submitted with options, made by [`Pool::imap_with`] and
/// [`Pool::imap_unordered_with`]; nothing is sent until [`submit`](IMapBuilder::submit).
#[must_use = "the tasks are submitted only by `submit()`"]
pub struct IMapBuilder<'p, F, T> {
    pool: &'p Pool,
    f: F,
    items: Vec<(T,)>,
    chunksize: usize,
    ordered: bool,
    limits: LimitChoice,
}

impl<F, T> std::fmt::Debug for IMapBuilder<'_, F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapBuilder")
            .field("task", &std::any::type_name::<F>())
            .field("items", &self.items.len())
            .field("chunksize", &self.chunksize)
            .field("ordered", &self.ordered)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<F, T> IMapBuilder<'_, F, T>
where
    F: Target<(T,)>,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    limit_options!();

    /// Items per task (Python's `chunksize`, default 1; 0 is an error at
    /// [`submit`](IMapBuilder::submit)).
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = n;
        self
    }

    /// Submits the tasks and returns the iterator over their results.
    pub fn submit(self) -> Result<IMapIterator<F::Output>> {
        let _ = self.f;
        self.pool
            .submit_imap::<F, T>(self.items, self.chunksize, self.ordered, self.limits)
    }
}
