//! The parent's side of results: [`AsyncResult`], the [`IMapIterator`], and the sinks the
//! result-handling thread hands each finished task to.

use crate::error::{Error, Result};
use crate::pool::protocol::{self, RemoteErr};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a task failed without an answer from its worker. Cheap to clone, so that every item of a
/// failed chunk gets its own error.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    WorkerLost { pid: u32, exitcode: i32 },
    Terminated,
    Remote(RemoteErr),
    StartFailed(String),
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
        }
    }
}

/// What became of a task: its worker's answer (the outcome bytes), or a failure.
pub(crate) type Outcome = std::result::Result<Vec<u8>, Failure>;

/// Where a finished task's outcome goes. Called in the result-handling thread, in completion
/// order, outside the pool's lock.
pub(crate) trait Sink: Send {
    fn deliver(self: Box<Self>, outcome: Outcome);
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
}

pub(crate) struct ResultCell<T> {
    state: Mutex<CellState<T>>,
    cond: Condvar,
}

impl<T> ResultCell<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ResultCell {
            state: Mutex::new(CellState {
                value: None,
                ready: false,
                success: false,
            }),
            cond: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CellState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the callbacks, then publishes `r`.
    pub(crate) fn set(&self, r: Result<T>, callbacks: Callbacks<T>) {
        callbacks.run(&r);
        let mut st = self.lock();
        st.success = r.is_ok();
        st.value = Some(r);
        st.ready = true;
        drop(st);
        self.cond.notify_all();
    }

    /// Waits until ready or until `timeout` passes; returns the guard and whether it is ready.
    fn wait(&self, timeout: Option<Duration>) -> (MutexGuard<'_, CellState<T>>, bool) {
        let mut st = self.lock();
        match timeout {
            None => {
                while !st.ready {
                    st = self.cond.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
            Some(t) => {
                let deadline = Instant::now().checked_add(t);
                while !st.ready {
                    let left = match deadline {
                        Some(d) => d.saturating_duration_since(Instant::now()),
                        None => Duration::from_secs(3600),
                    };
                    if left.is_zero() {
                        break;
                    }
                    st = self
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        let ready = st.ready;
        (st, ready)
    }
}

/// The result of a task submitted with [`Pool::apply_async`](crate::Pool::apply_async) (or of a
/// whole map, [`MapResult`]), as Python's `AsyncResult`.
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

    /// Waits for the result (at most `timeout`; `None`: as long as it takes) and takes it.
    ///
    /// Errors: [`Error::Timeout`] if it is not ready in time (the result stays available for a
    /// later call); the task's own failure: [`Error::Remote`] for a panic (kind `"panic"`, the
    /// message, and the worker's backtrace), [`Error::WorkerLost`] if its worker died while
    /// running it, [`Error::Serialize`] if its value could not be serialised,
    /// [`Error::PoolTerminated`] if the pool was terminated first; [`Error::ResultTaken`] if an
    /// earlier `get` already took the value.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        let (mut st, ready) = self.cell.wait(timeout);
        if !ready {
            return Err(Error::Timeout);
        }
        st.value.take().unwrap_or(Err(Error::ResultTaken))
    }

    /// Waits until the result is ready, for at most `timeout` (`None`: as long as it takes).
    /// Returns whether it is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.cell.wait(timeout).1
    }

    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.cell.lock().ready
    }

    /// Whether the task finished without error; [`Error::NotReady`] if it has not finished (as
    /// Python's `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        let st = self.cell.lock();
        if !st.ready {
            return Err(Error::NotReady);
        }
        Ok(st.success)
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
}

struct ImapState<T> {
    /// Ordered: results by input index. Unordered: unused.
    slots: Vec<Option<Result<T>>>,
    /// Unordered: results in completion order.
    arrived: VecDeque<Result<T>>,
    next: usize,
    total: usize,
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
            }),
            cond: Condvar::new(),
            ordered,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ImapState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        drop(st);
        self.shared.cond.notify_all();
    }
}

/// The iterator of [`Pool::imap`](crate::Pool::imap) (results in input order) and
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered) (results in completion order), as
/// Python's `IMapIterator`. Each item is one task's result; an item that failed does not stop
/// the iteration.
pub struct IMapIterator<T> {
    shared: Arc<ImapShared<T>>,
}

impl<T> std::fmt::Debug for IMapIterator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("IMapIterator")
            .field("ordered", &self.shared.ordered)
            .field("next", &st.next)
            .field("total", &st.total)
            .finish()
    }
}

impl<T> IMapIterator<T> {
    pub(crate) fn new(shared: Arc<ImapShared<T>>) -> Self {
        IMapIterator { shared }
    }

    /// The next result, waiting at most `timeout` (`None`: as long as it takes), as Python's
    /// `next(timeout)`. `None` when every result has been returned; `Some(Err(Timeout))` if the
    /// next one is not ready in time (it is still returned by a later call).
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<T>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut st = self.shared.lock();
        loop {
            if st.next >= st.total {
                return None;
            }
            let item = if self.shared.ordered {
                let i = st.next;
                st.slots[i].take()
            } else {
                st.arrived.pop_front()
            };
            if let Some(item) = item {
                st.next += 1;
                return Some(item);
            }
            st = match (timeout, deadline) {
                (None, _) | (Some(_), None) => {
                    self.shared.cond.wait(st).unwrap_or_else(|p| p.into_inner())
                }
                (Some(_), Some(d)) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Some(Err(Error::Timeout));
                    }
                    self.shared
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl<T> Iterator for IMapIterator<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        self.next_timeout(None)
    }
}
