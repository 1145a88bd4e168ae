//! Queues between processes: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`] (Python's
//! `multiprocessing.Queue`, `SimpleQueue`, `JoinableQueue`).
//!
//! How they work, what they promise when processes die, and how they use memory: see
//! [`Queue`].

use crate::context::Context;
use crate::error::{Error, Result};
use crate::method::StartMethod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

mod shared;

use shared::Shared;

/// The default ring size in bytes.
pub const DEFAULT_CAPACITY: usize = 4 << 20;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A failed `put`: why, and the item, handed back (as crossbeam's `SendError`). Converts into
/// [`Error`] with `?`, dropping the item.
pub struct PutError<T> {
    /// Why the item was not put: [`Error::Full`], [`Error::Closed`] or
    /// [`Error::Serialize`], or an OS error.
    pub error: Error,
    /// The item.
    pub item: T,
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T> std::error::Error for PutError<T> {}

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Error {
        e.error
    }
}

/// A multi-producer, multi-consumer FIFO queue between processes (Python's
/// `multiprocessing.Queue`).
///
/// # Design
/// A queue lives in shared memory (an anonymous `memfd`), guarded by two robust process-shared
/// mutexes, one for producers and one for consumers, with futex waits when it is empty or (with
/// a `maxsize`) full. There is no feeder thread: when `put` returns, the item is in shared
/// memory, so
/// - a process that put items and exits leaves them in the queue; its parent's `join` never
///   waits for a flush (CPython can deadlock there);
/// - whatever `put` accepted is delivered exactly once, to one `get`, whole and in order.
///
/// Items are serialised with bincode and written into a ring (4 MiB by default,
/// [`Context::queue_with_capacity`]); an item larger than a quarter of the ring is written in
/// several records. When the ring is full, the data goes on in *overflow segments*, extents of
/// the same `memfd` made on demand, each at least twice as large as the last; every process that
/// holds the queue maps them from its descriptor, so segments made after a child started reach
/// it too. A `put` therefore never waits for room, only for `maxsize` (counted in items, as
/// Python counts it).
///
/// # Memory
/// The ring's pages are allocated as they are first touched and kept while the queue exists. An
/// overflow segment's memory is reserved when it is made (so running out of memory is an
/// [`Error::Io`] from `put`, with the item handed back, not a crash later), and given back as
/// soon as consumers have read past it; once the queue has caught up, producers and consumers
/// are back in the ring. So a queue holds about what is in flight (at most twice that, by the
/// doubling), plus its ring. Nothing is named in `/dev/shm`: when the last process that holds
/// the queue exits or is killed, the kernel frees it all.
///
/// # Processes that die
/// A process killed in the middle of a `put` or a `get` does not wedge the queue, and `qsize`
/// stays exact (at rest): the next producer or consumer takes over and settles what the dead one
/// left. A `put` cut short before its item was published is not in the queue (it was never
/// accepted); a `get` cut short either took its item with it (it had committed to it) or left
/// it for the next `get`, whole. Python's `qsize` is approximate even without deaths; here it
/// is approximate only while others put and get at the same time (it is then a value the queue
/// had during the call).
///
/// # Differences from Python
/// - `close()` is per handle, as in Python: later `put`/`get` through it are [`Error::Closed`].
///   `join_thread`/`cancel_join_thread` have nothing to do and are no-ops.
/// - `put(block=False)` waits for another producer that is in the middle of its `put` (that is
///   bounded work), so that it is [`Error::Full`] only when the queue holds `maxsize` items.
///   `get(block=False)` is [`Error::Empty`] when another consumer holds the consumers' lock, as
///   in CPython.
///
/// ```no_run
/// # fn main() -> mproc::Result<()> {
/// let q = mproc::default_context().queue::<String>(None)?;
/// q.put("hello".to_string(), true, None)?;
/// assert_eq!(q.get(true, None)?, "hello");
/// # Ok(()) }
/// ```
pub struct Queue<T> {
    core: Shared,
    closed: Arc<AtomicBool>,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            core: self.core.clone(),
            closed: Arc::clone(&self.closed),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.core.count())
            .field("maxsize", &self.core.maxsize())
            .field("closed", &self.closed.load(Relaxed))
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.closed.load(Relaxed) {
            return Err(serde::ser::Error::custom("cannot pass a closed queue"));
        }
        self.core.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Queue {
            core: Shared::deserialize(d)?,
            closed: Arc::new(AtomicBool::new(false)),
            _item: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Relaxed) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Puts `item` (Python's `put(obj, block, timeout)`). Only a queue with a `maxsize` is ever
    /// full: then, with `block` false or when `timeout` passes, the put is [`Error::Full`]. On
    /// any error the item comes back in the [`PutError`].
    pub fn put(&self, item: T, block: bool, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        if let Err(error) = self.check_open() {
            return Err(PutError { error, item });
        }
        let r = SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            buf.clear();
            bincode::serialize_into(&mut *buf, &item)
                .map_err(|e| Error::Serialize(e.to_string()))?;
            self.core.put(&buf, block, timeout)
        });
        r.map_err(|error| PutError { error, item })
    }

    /// `put(item, false, None)`.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put(item, false, None)
    }

    /// Takes the oldest item (Python's `get(block, timeout)`). With `block` false, or when
    /// `timeout` passes, an empty queue is [`Error::Empty`].
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        self.check_open()?;
        SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            self.core.get(&mut buf, block, timeout)?;
            crate::reduction::from_bytes(&buf)
        })
    }

    /// `get(false, None)`.
    pub fn get_nowait(&self) -> Result<T> {
        self.get(false, None)
    }

    /// The number of items in the queue: exact when nobody is putting or getting, even after
    /// processes died in the middle of a `put` or `get` (see the type's docs); while others use
    /// the queue, a value it had during the call.
    pub fn qsize(&self) -> usize {
        self.core.count() as usize
    }

    /// Whether the queue is empty (as exact as [`qsize`](Queue::qsize)).
    pub fn empty(&self) -> bool {
        self.core.count() == 0
    }

    /// Whether the queue holds `maxsize` items (never for an unbounded queue).
    pub fn full(&self) -> bool {
        let max = self.core.maxsize();
        max > 0 && self.core.count() >= max
    }

    /// The queue's `maxsize` (`None`: unbounded).
    pub fn maxsize(&self) -> Option<usize> {
        match self.core.maxsize() {
            0 => None,
            n => Some(n as usize),
        }
    }

    /// Closes this handle (Python's `close()`): later `put`/`get` through it (or its clones in
    /// this process) are [`Error::Closed`]. Items already put stay for other handles.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
    }

    /// Whether [`close`](Queue::close) was called on this handle.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Python's `join_thread()`: there is no feeder thread, so nothing to wait for.
    pub fn join_thread(&self) {}

    /// Python's `cancel_join_thread()`: a no-op (nothing is ever left unflushed).
    pub fn cancel_join_thread(&self) {}

    /// The start method of the context that made this queue.
    pub fn start_method(&self) -> StartMethod {
        self.core.method()
    }
}

/// A simplified queue (Python's `multiprocessing.SimpleQueue`): unbounded, blocking `put` and
/// `get`, `empty`, `close`.
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.0).finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Queue::deserialize(d).map(SimpleQueue)
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Puts `item` (it never waits for room: the queue is unbounded).
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.0.put(item, true, None)
    }

    /// Takes the oldest item, waiting until there is one.
    pub fn get(&self) -> Result<T> {
        self.0.get(true, None)
    }

    /// Whether the queue is empty.
    pub fn empty(&self) -> bool {
        self.0.empty()
    }

    /// Closes this handle; later `put`/`get` through it are [`Error::Closed`].
    pub fn close(&self) {
        self.0.close()
    }
}

/// A [`Queue`] that counts unfinished tasks (Python's `multiprocessing.JoinableQueue`): every
/// `put` adds one, [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left. Dereferences to [`Queue`].
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.0).finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Queue::deserialize(d).map(JoinableQueue)
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken with `get` as processed. More calls than items put is
    /// [`Error::InvalidArgument`] ("task_done() called too many times").
    pub fn task_done(&self) -> Result<()> {
        self.0.core.task_done()
    }

    /// Waits until every item put has been marked done, for at most `timeout` (`None`: no
    /// limit; [`Error::Timeout`] when it passes).
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.0.core.join(timeout)
    }
}

impl Context {
    /// A new [`Queue`] holding at most `maxsize` items (`None`: unbounded), with a ring of
    /// [`DEFAULT_CAPACITY`] bytes.
    pub fn queue<T>(&self, maxsize: Option<usize>) -> Result<Queue<T>> {
        self.queue_with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new [`Queue`] whose ring holds `capacity` bytes (rounded up to a power of two, at
    /// least 4096). The ring is where a queue that keeps up runs; what does not fit in it goes
    /// to overflow segments (see [`Queue`]), so the capacity bounds nothing.
    pub fn queue_with_capacity<T>(
        &self,
        maxsize: Option<usize>,
        capacity: usize,
    ) -> Result<Queue<T>> {
        if maxsize == Some(0) {
            return self.queue_with_capacity(None, capacity);
        }
        Ok(Queue {
            core: Shared::new(self.start_method(), maxsize, capacity)?,
            closed: Arc::new(AtomicBool::new(false)),
            _item: PhantomData,
        })
    }

    /// A new [`SimpleQueue`].
    pub fn simple_queue<T>(&self) -> Result<SimpleQueue<T>> {
        self.queue(None).map(SimpleQueue)
    }

    /// A new [`JoinableQueue`] holding at most `maxsize` items (`None`: unbounded), with a ring
    /// of [`DEFAULT_CAPACITY`] bytes.
    pub fn joinable_queue<T>(&self, maxsize: Option<usize>) -> Result<JoinableQueue<T>> {
        self.joinable_queue_with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new [`JoinableQueue`] whose ring holds `capacity` bytes (see
    /// [`Context::queue_with_capacity`]).
    pub fn joinable_queue_with_capacity<T>(
        &self,
        maxsize: Option<usize>,
        capacity: usize,
    ) -> Result<JoinableQueue<T>> {
        self.queue_with_capacity(maxsize, capacity)
            .map(JoinableQueue)
    }
}
