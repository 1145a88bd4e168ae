//! The parent's side of results: [`AsyncResult`], the [`IMapIterator`] and its [`IMapStream`],
//! and the sinks the result-handling thread hands each finished task to.
//!
//! A result is a cell that the sink fills once. Whoever waits for it waits in one of three ways:
//! on the cell's condition variable (blocking calls), through a stored [`Waker`] (the
//! [`Future`] and [`Stream`] impls: the sink wakes it, no polling loop), or, for a single task
//! that a worker is running, on that worker's socket itself ([`DirectRead`]: the waiter reads
//! its answer without a hop through the handler thread).

use crate::error::{Error, Result};
use crate::pool::protocol::{self, RemoteErr};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Why a task failed without an answer from its worker. Cheap to clone, so that every item of a
/// failed chunk gets its own error.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    WorkerLost { pid: u32, exitcode: i32 },
    Terminated,
    Remote(RemoteErr),
    StartFailed(String),
    TaskTimeout { pid: u32, timeout: Duration },
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        match f {
            Failure::WorkerLost { pid, exitcode } => Error::WorkerLost { pid, exitcode },
            Failure::Terminated => Error::PoolTerminated,
            Failure::Remote(e) => e.into(),
            Failure::StartFailed(why) => Error::Io(std::io::Error::other(format!(
                "the pool could not start a worker: {why}"
            ))),
            Failure::TaskTimeout { pid, timeout } => Error::TaskTimeout { pid, timeout },
        }
    }
}

/// What became of a task: its worker's answer (the outcome bytes), or a failure.
pub(crate) type Outcome = std::result::Result<Vec<u8>, Failure>;

/// Where a finished task's outcome goes. Called outside the pool's lock: in the result-handling
/// thread, in completion order, if it runs user code (callbacks); otherwise possibly in a
/// thread that read the outcome itself.
pub(crate) trait Sink: Send {
    fn deliver(self: Box<Self>, outcome: Outcome);
    /// Whether delivering runs user code (a callback), which must run in the handler thread.
    fn runs_user_code(&self) -> bool {
        false
    }
}

/// What [`DirectRead::wait_direct`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direct {
    /// It read from the worker's socket (and delivered what it read): look at the cell again.
    Read,
    /// The task is not running on a worker whose socket the caller could take (queued, being
    /// delivered, its worker dead or taken by another waiter): wait on the cell.
    NotInFlight,
    /// The caller's deadline passed.
    TimedOut,
}

/// A pool that lets a waiting thread read a task's answer from its worker's socket itself.
pub(crate) trait DirectRead: Send + Sync {
    /// Waits, at most until `deadline`, for the worker running task `job` to answer or die, and
    /// reads and delivers what it answered.
    fn wait_direct(&self, job: u64, deadline: Option<Instant>) -> Direct;
    /// The task's socket need not be kept for a waiter: the handler reads it.
    fn release(&self, job: u64);
}

/// Where a single task's cell can wait for its answer directly.
pub(crate) struct Route {
    pub pool: Weak<dyn DirectRead>,
    pub job: u64,
    /// No waiter reads this task's answer itself (the pool was told, [`DirectRead::release`]);
    /// shared with the task, which is then not reserved for one when it is sent.
    pub released: Arc<AtomicBool>,
}

/// Decodes the `n` item outcomes of a task (each item fails alike if the task did).
pub(crate) fn decode_items<T: DeserializeOwned>(outcome: Outcome, n: usize) -> Vec<Result<T>> {
    match outcome {
        Ok(bytes) => protocol::decode_outcome(&bytes, n),
        Err(f) => (0..n).map(|_| Err(f.clone().into())).collect(),
    }
}

/// What to run in the parent's result-handling thread when a result is ready: `callback` with
/// the value, or `error_callback` with the error (Python's `apply_async(..., callback,
/// error_callback)`). They run before the result becomes ready to `get`, in completion order;
/// they should be quick, as they hold up every other result meanwhile. A callback must not wait
/// for another result of its pool (`get`, `apply`, `map`): that result would be delivered by the
/// very thread the callback is blocking. A panic in a callback is caught and ignored.
pub struct Callbacks<T> {
    callback: Option<OnValue<T>>,
    error_callback: Option<OnError>,
}

type OnValue<T> = Box<dyn FnOnce(&T) + Send>;
type OnError = Box<dyn FnOnce(&Error) + Send>;

impl<T> std::fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("callback", &self.callback.is_some())
            .field("error_callback", &self.error_callback.is_some())
            .finish()
    }
}

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            callback: None,
            error_callback: None,
        }
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called with the value when the task succeeds.
    pub fn callback(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Called with the error when the task fails.
    pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.error_callback = Some(Box::new(f));
        self
    }

    fn has_any(&self) -> bool {
        self.callback.is_some() || self.error_callback.is_some()
    }

    fn run(self, r: &Result<T>) {
        let _ = panic::catch_unwind(AssertUnwindSafe(move || match r {
            Ok(v) => {
                if let Some(cb) = self.callback {
                    cb(v)
                }
            }
            Err(e) => {
                if let Some(cb) = self.error_callback {
                    cb(e)
                }
            }
        }));
    }
}

struct CellState<T> {
    value: Option<Result<T>>,
    ready: bool,
    success: bool,
    /// The task of the last `poll` that found the value missing.
    waker: Option<Waker>,
    /// Threads waiting on the condition variable (notifying none would still cost a system
    /// call).
    waiters: usize,
}

pub(crate) struct ResultCell<T> {
    state: Mutex<CellState<T>>,
    cond: Condvar,
    route: Option<Route>,
}

impl<T> ResultCell<T> {
    /// A cell filled by its sink (or by the caller, for an empty map).
    pub(crate) fn new() -> Arc<Self> {
        Self::with_route(None)
    }

    /// A cell whose waiters may read the answer of `route`'s task themselves.
    pub(crate) fn with_route(route: Option<Route>) -> Arc<Self> {
        Arc::new(ResultCell {
            state: Mutex::new(CellState {
                value: None,
                ready: false,
                success: false,
                waker: None,
                waiters: 0,
            }),
            cond: Condvar::new(),
            route,
        })
    }

    fn lock(&self) -> MutexGuard<'_, CellState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the pool, once, that the answer is not read by a waiter of this cell: it is polled
    /// as a future, looked at without waiting, or dropped.
    fn release(&self) {
        if let Some(route) = &self.route {
            if !route.released.swap(true, Ordering::Relaxed) {
                if let Some(pool) = route.pool.upgrade() {
                    pool.release(route.job);
                }
            }
        }
    }

    /// Runs the callbacks, then publishes `r` and wakes every waiter.
    pub(crate) fn set(&self, r: Result<T>, callbacks: Callbacks<T>) {
        callbacks.run(&r);
        let mut st = self.lock();
        st.success = r.is_ok();
        st.value = Some(r);
        st.ready = true;
        let waker = st.waker.take();
        let waiters = st.waiters;
        drop(st);
        if waiters > 0 {
            self.cond.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits until ready or until `deadline` passes; returns the guard and whether it is ready.
    fn wait(&self, deadline: Option<Instant>) -> (MutexGuard<'_, CellState<T>>, bool) {
        if let Some(route) = &self.route {
            // Read the answer off the worker's socket while the task runs there.
            while !self.lock().ready {
                let Some(pool) = route.pool.upgrade() else {
                    break;
                };
                match pool.wait_direct(route.job, deadline) {
                    Direct::Read => continue,
                    Direct::NotInFlight => {
                        // Queued (or being delivered): this waiter waits on the cell, so the
                        // socket is not to be kept for it once the task is sent.
                        drop(pool);
                        self.release();
                        break;
                    }
                    Direct::TimedOut => {
                        let st = self.lock();
                        let ready = st.ready;
                        return (st, ready);
                    }
                }
            }
        }
        let mut st = self.lock();
        while !st.ready {
            let left = match deadline {
                None => None,
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => break,
                    left => Some(left),
                },
            };
            st.waiters += 1;
            st = match left {
                None => self.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.waiters -= 1;
        }
        let ready = st.ready;
        (st, ready)
    }
}

/// The deadline `timeout` from now; `None` (for ever) if it is too far to add to the clock.
fn deadline_in(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The result of a task submitted with [`Pool::apply_async`](crate::Pool::apply_async) (or of a
/// whole map, [`MapResult`]), as Python's `AsyncResult`.
///
/// Wait for it with [`get`](AsyncResult::get) (blocks), [`get_timeout`](AsyncResult::get_timeout)
/// or [`try_get`](AsyncResult::try_get), or `.await` it: it is a [`Future`] woken by the pool's
/// result handling, in any async runtime (mproc depends on none). Dropping it, or a future
/// awaiting it, does not cancel the task: the task runs on, its callbacks run, and its value is
/// dropped when it arrives.
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
///     let r = pool.apply_async(square, (7,))?;
///     if !r.wait_timeout(Duration::from_secs(5)) {
///         println!("still running");
///     }
///     assert_eq!(r.get()?, 49);
///     assert!(r.successful()?);
///     Ok(())
/// }
/// ```
pub struct AsyncResult<T> {
    cell: Arc<ResultCell<T>>,
}

/// The result of [`Pool::map_async`](crate::Pool::map_async) and
/// [`Pool::starmap_async`](crate::Pool::starmap_async): all values in input order.
pub type MapResult<T> = AsyncResult<Vec<T>>;

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(cell: Arc<ResultCell<T>>) -> Self {
        AsyncResult { cell }
    }

    /// The cell, for a look that does not wait: the pool reads the answer from now on.
    fn look(&self) -> MutexGuard<'_, CellState<T>> {
        let st = self.cell.lock();
        if !st.ready {
            drop(st);
            self.cell.release();
            return self.cell.lock();
        }
        st
    }

    fn take(st: &mut CellState<T>) -> Result<T> {
        st.value.take().unwrap_or(Err(Error::ResultTaken))
    }

    /// Waits for the result, as long as it takes, and takes it (Python's `get()`).
    ///
    /// Errors: the task's own failure: [`Error::Remote`] for a panic (kind `"panic"`, the
    /// message, and the worker's backtrace), [`Error::TaskTimeout`] if it ran past its deadline,
    /// [`Error::WorkerLost`] if its worker died while running it, [`Error::Serialize`] if its
    /// value could not be serialised, [`Error::PoolTerminated`] if the pool was terminated
    /// first; [`Error::ResultTaken`] if an earlier call already took the value.
    pub fn get(&self) -> Result<T> {
        let (mut st, _) = self.cell.wait(None);
        Self::take(&mut st)
    }

    /// As [`get`](AsyncResult::get), waiting at most `timeout` (Python's `get(timeout)`):
    /// [`Error::Timeout`] if the result is not ready by then. The task runs on, and the result
    /// stays available to a later call.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        let (mut st, ready) = self.cell.wait(deadline_in(timeout));
        if !ready {
            return Err(Error::Timeout);
        }
        Self::take(&mut st)
    }

    /// Takes the result if it is ready, without waiting: [`Error::NotReady`] if it is not (the
    /// task's own failure otherwise, as [`get`](AsyncResult::get)).
    pub fn try_get(&self) -> Result<T> {
        let mut st = self.look();
        if !st.ready {
            return Err(Error::NotReady);
        }
        Self::take(&mut st)
    }

    /// Waits until the result is ready, as long as it takes (Python's `wait()`).
    pub fn wait(&self) {
        drop(self.cell.wait(None));
    }

    /// Waits until the result is ready, at most `timeout`; returns whether it is (Python's
    /// `wait(timeout)`, then `ready()`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.cell.wait(deadline_in(timeout)).1
    }

    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.look().ready
    }

    /// Whether the task finished without error; [`Error::NotReady`] if it has not finished (as
    /// Python's `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        let st = self.look();
        if !st.ready {
            return Err(Error::NotReady);
        }
        Ok(st.success)
    }
}

/// Awaiting a result takes it, as [`get`](AsyncResult::get) does: the task is polled by no one;
/// the pool's result handling wakes the awaiting task once the result is in.
impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut st = self.cell.lock();
        if st.ready {
            return Poll::Ready(Self::take(&mut st));
        }
        match &mut st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        drop(st);
        // Woken by the pool's handler, which must read the answer.
        self.cell.release();
        Poll::Pending
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        // Nobody will wait for the answer: the pool must still read it (callbacks, map sinks and
        // the worker's next task depend on it).
        if !self.cell.lock().ready {
            self.cell.release();
        }
    }
}

/// The sink of an `apply_async` task.
pub(crate) struct ApplySink<T> {
    pub cell: Arc<ResultCell<T>>,
    pub callbacks: Callbacks<T>,
}

impl<T: DeserializeOwned + Send + 'static> Sink for ApplySink<T> {
    fn deliver(self: Box<Self>, outcome: Outcome) {
        let r = decode_items::<T>(outcome, 1)
            .pop()
            .unwrap_or(Err(Error::Deserialize("no result".into())));
        self.cell.set(r, self.callbacks);
    }

    fn runs_user_code(&self) -> bool {
        self.callbacks.has_any()
    }
}

/// Collects the chunks of a `map_async`.
pub(crate) struct MapCollector<T> {
    state: Mutex<MapState<T>>,
    cell: Arc<ResultCell<Vec<T>>>,
}

struct MapState<T> {
    values: Vec<Option<T>>,
    first_error: Option<(usize, Error)>,
    chunks_left: usize,
    callbacks: Option<Callbacks<Vec<T>>>,
}

impl<T> MapCollector<T> {
    pub(crate) fn new(
        len: usize,
        chunks: usize,
        cell: Arc<ResultCell<Vec<T>>>,
        callbacks: Callbacks<Vec<T>>,
    ) -> Arc<Self> {
        let mut values = Vec::with_capacity(len);
        values.resize_with(len, || None);
        Arc::new(MapCollector {
            state: Mutex::new(MapState {
                values,
                first_error: None,
                chunks_left: chunks,
                callbacks: Some(callbacks),
            }),
            cell,
        })
    }
}

/// The sink of one chunk of a `map_async`.
pub(crate) struct MapChunkSink<T> {
    pub collector: Arc<MapCollector<T>>,
    pub start: usize,
    pub len: usize,
}

impl<T: DeserializeOwned + Send + 'static> Sink for MapChunkSink<T> {
    fn deliver(self: Box<Self>, outcome: Outcome) {
        let items = decode_items::<T>(outcome, self.len);
        let mut st = self
            .collector
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (k, item) in items.into_iter().enumerate() {
            let i = self.start + k;
            match item {
                Ok(v) => st.values[i] = Some(v),
                Err(e) => {
                    if st.first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                        st.first_error = Some((i, e));
                    }
                }
            }
        }
        st.chunks_left -= 1;
        if st.chunks_left > 0 {
            return;
        }
        // Every chunk is in: the first error (in input order) wins, as Python raises it only
        // once all chunks finished.
        let r = match st.first_error.take() {
            Some((_, e)) => Err(e),
            None => Ok(std::mem::take(&mut st.values)
                .into_iter()
                .map(|v| v.expect("every chunk delivered"))
                .collect()),
        };
        let callbacks = st.callbacks.take().unwrap_or_default();
        drop(st);
        self.collector.cell.set(r, callbacks);
    }

    fn runs_user_code(&self) -> bool {
        let st = self
            .collector
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.callbacks.as_ref().is_some_and(Callbacks::has_any)
    }
}

struct ImapState<T> {
    /// Ordered: results by input index. Unordered: unused.
    slots: Vec<Option<Result<T>>>,
    /// Unordered: results in completion order.
    arrived: VecDeque<Result<T>>,
    next: usize,
    total: usize,
    /// The task of the last [`IMapStream`] poll that found nothing.
    waker: Option<Waker>,
    /// Threads waiting on the condition variable.
    waiters: usize,
}

pub(crate) struct ImapShared<T> {
    state: Mutex<ImapState<T>>,
    cond: Condvar,
    ordered: bool,
}

impl<T> ImapShared<T> {
    pub(crate) fn new(total: usize, ordered: bool) -> Arc<Self> {
        let mut slots = Vec::new();
        if ordered {
            slots.resize_with(total, || None);
        }
        Arc::new(ImapShared {
            state: Mutex::new(ImapState {
                slots,
                arrived: VecDeque::new(),
                next: 0,
                total,
                waker: None,
                waiters: 0,
            }),
            cond: Condvar::new(),
            ordered,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ImapState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn debug_as(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct(name)
            .field("ordered", &self.ordered)
            .field("next", &st.next)
            .field("total", &st.total)
            .finish()
    }

    /// The next result if it is there: `Ok(None)` at the end, `Err(())` if it has not come yet.
    fn take_next(&self, st: &mut ImapState<T>) -> std::result::Result<Option<Result<T>>, ()> {
        if st.next >= st.total {
            return Ok(None);
        }
        let item = if self.ordered {
            let i = st.next;
            st.slots[i].take()
        } else {
            st.arrived.pop_front()
        };
        match item {
            Some(item) => {
                st.next += 1;
                Ok(Some(item))
            }
            None => Err(()),
        }
    }
}

/// The sink of one chunk of an `imap` or `imap_unordered`.
pub(crate) struct ImapSink<T> {
    pub shared: Arc<ImapShared<T>>,
    pub start: usize,
    pub len: usize,
}

impl<T: DeserializeOwned + Send + 'static> Sink for ImapSink<T> {
    fn deliver(self: Box<Self>, outcome: Outcome) {
        let items = decode_items::<T>(outcome, self.len);
        let mut st = self.shared.lock();
        for (k, item) in items.into_iter().enumerate() {
            if self.shared.ordered {
                st.slots[self.start + k] = Some(item);
            } else {
                st.arrived.push_back(item);
            }
        }
        let waker = st.waker.take();
        let waiters = st.waiters;
        drop(st);
        if waiters > 0 {
            self.shared.cond.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The iterator of [`Pool::imap`](crate::Pool::imap) (results in input order) and
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered) (results in completion order), as
/// Python's `IMapIterator`. Each item is one call's result; an item that failed does not stop
/// the iteration. [`next`](Iterator::next) blocks; [`next_timeout`](IMapIterator::next_timeout)
/// waits at most a while; [`into_stream`](IMapIterator::into_stream) gives the same results as
/// an async [`Stream`].
pub struct IMapIterator<T> {
    shared: Arc<ImapShared<T>>,
}

impl<T> std::fmt::Debug for IMapIterator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.debug_as("IMapIterator", f)
    }
}

impl<T> IMapIterator<T> {
    pub(crate) fn new(shared: Arc<ImapShared<T>>) -> Self {
        IMapIterator { shared }
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<T>> {
        let mut st = self.shared.lock();
        loop {
            if let Ok(item) = self.shared.take_next(&mut st) {
                return item;
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return Some(Err(Error::Timeout)),
                    left => Some(left),
                },
            };
            st.waiters += 1;
            st = match left {
                None => self.shared.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.shared
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.waiters -= 1;
        }
    }

    /// The next result, waiting at most `timeout` (Python's `next(timeout)`). `None` when every
    /// result has been returned; `Some(Err(Error::Timeout))` if the next one is not ready in
    /// time (a later call returns it).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<T>> {
        self.next_until(deadline_in(timeout))
    }

    /// The same results as an async [`Stream`] ([`futures_core::Stream`], the trait of the
    /// `futures` ecosystem), woken by the pool's result handling.
    pub fn into_stream(self) -> IMapStream<T> {
        IMapStream {
            shared: self.shared,
        }
    }
}

impl<T> Iterator for IMapIterator<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        self.next_until(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let st = self.shared.lock();
        let left = st.total - st.next;
        (left, Some(left))
    }
}

/// The results of an [`IMapIterator`] as an async [`Stream`] (made by
/// [`IMapIterator::into_stream`]): `Some(result)` per item, in the iterator's order, then
/// `None`. Dropping the stream leaves the tasks running; their results are dropped as they
/// arrive.
///
/// ```no_run
/// use futures_core::Stream;
/// use std::pin::Pin;
/// use std::task::{Context, Poll};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// // Any executor drives it; with the `futures` crate: `while let Some(r) = s.next().await`.
/// fn poll_once(s: &mut mproc::IMapStream<u64>, cx: &mut Context<'_>) -> Poll<Option<mproc::Result<u64>>> {
///     Pin::new(s).poll_next(cx)
/// }
/// # fn main() {}
/// ```
pub struct IMapStream<T> {
    shared: Arc<ImapShared<T>>,
}

impl<T> std::fmt::Debug for IMapStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.debug_as("IMapStream", f)
    }
}

impl<T> Stream for IMapStream<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let mut st = self.shared.lock();
        match self.shared.take_next(&mut st) {
            Ok(item) => Poll::Ready(item),
            Err(()) => {
                match &mut st.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let st = self.shared.lock();
        let left = st.total - st.next;
        (left, Some(left))
    }
}
