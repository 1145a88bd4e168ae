//! Queues between processes: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`] (Python's
//! `multiprocessing.Queue`, `SimpleQueue`, `JoinableQueue`).
//!
//! How they work, what they promise when processes die, and how they use memory: see
//! [`Queue`].

use crate::context::Context;
use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::reduction;
use crate::region::Wait;
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
/// [`Error`] with `?`, dropping the item; [`into_inner`](PutError::into_inner) takes the item
/// back instead.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let q = mproc::default_context().queue_builder().maxsize(1).build()?;
/// q.put("first".to_string())?;
/// let err = q.try_put("second".to_string()).unwrap_err();
/// assert!(err.is_full());
/// assert_eq!(err.to_string(), "queue is full: it holds its maxsize of items");
/// assert_eq!(err.into_inner(), "second"); // nothing is lost
/// # Ok(()) }
/// ```
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

    /// Whether the put failed because the queue was full ([`Error::Full`]): it may succeed
    /// later.
    pub fn is_full(&self) -> bool {
        matches!(self.error, Error::Full)
    }

    /// Whether the put failed because this handle was closed ([`Error::Closed`]).
    pub fn is_closed(&self) -> bool {
        matches!(self.error, Error::Closed)
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

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

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
/// [`QueueBuilder::capacity`]); an item larger than a quarter of the ring is written in
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
/// # Blocking, non-blocking and timed
/// Each operation comes in three forms, as crossbeam's channels: [`put`](Queue::put) and
/// [`get`](Queue::get) wait as long as it takes, [`try_put`](Queue::try_put) and
/// [`try_get`](Queue::try_get) never wait, [`put_timeout`](Queue::put_timeout) and
/// [`get_timeout`](Queue::get_timeout) wait at most a given time. As in Python, a `put` that
/// cannot is [`Error::Full`] (in a [`PutError`] that hands the item back) and a `get` that
/// cannot is [`Error::Empty`], whether it did not wait or waited in vain. Python's
/// `put(obj, block, timeout)` is one of the three:
///
/// | Python | mproc |
/// |---|---|
/// | `q.put(x)`, `q.get()` | `q.put(x)?`, `q.get()?` |
/// | `q.try_put(x)`, `q.try_get()`, `block=False` | `q.try_put(x)?`, `q.try_get()?` |
/// | `q.put(x, timeout=t)`, `q.get(timeout=t)` | `q.put_timeout(x, t)?`, `q.get_timeout(t)?` |
///
/// # Differences from Python
/// - `close()` is per handle, as in Python: later `put`/`get` through it are [`Error::Closed`].
///   `join_thread`/`cancel_join_thread` have nothing to do and are no-ops.
/// - [`try_put`](Queue::try_put) waits for another producer that is in the middle of its `put`
///   (that is bounded work), so that it is [`Error::Full`] only when the queue holds `maxsize`
///   items. [`try_get`](Queue::try_get) is [`Error::Empty`] when another consumer holds the
///   consumers' lock, as in CPython.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let q = mproc::default_context().queue()?; // the item type comes from the first use
/// q.put("hello".to_string())?;
/// assert_eq!(q.get()?, "hello");
/// assert!(matches!(q.try_get(), Err(mproc::Error::Empty)));
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

    fn put_inner(&self, item: T, deadline: Wait) -> Result<(), PutError<T>> {
        if let Err(error) = self.check_open() {
            return Err(PutError { error, item });
        }
        let r = SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            buf.clear();
            reduction::to_bytes_into(&mut buf, &item, "an item to put on a queue")?;
            let (block, timeout) = deadline.python();
            self.core.put(&buf, block, timeout)
        });
        r.map_err(|error| PutError { error, item })
    }

    fn get_inner(&self, deadline: Wait) -> Result<T> {
        self.check_open()?;
        SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            let (block, timeout) = deadline.python();
            self.core.get(&mut buf, block, timeout)?;
            // Every handle of a queue has the item type it was made with (`Queue<T>` passes
            // to a child only as a `Queue<T>`), so an item that does not decode was put as
            // this `T`.
            reduction::from_bytes_described(&buf, || reduction::Described {
                what: "an item taken from a queue".into(),
                sent_as: Some(std::any::type_name::<T>().into()),
            })
        })
    }

    /// Puts `item` at the back (Python's `put(obj)`). Only a queue with a
    /// [`maxsize`](QueueBuilder::maxsize) is ever full: then this waits until there is room.
    /// On any error the item comes back in the [`PutError`]: [`Error::Closed`] if this handle
    /// was closed, [`Error::Serialize`] if the item cannot be serialised.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue()?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert_eq!((q.get()?, q.get()?), (1, 2));
    /// # Ok(()) }
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_inner(item, Wait::Forever)
    }

    /// Puts `item` if there is room now (Python's `put_nowait(obj)`, `put(obj, block=False)`);
    /// [`Error::Full`] otherwise, with the item handed back.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().maxsize(1).build()?;
    /// q.try_put('a')?;
    /// assert_eq!(q.try_put('b').unwrap_err().into_inner(), 'b');
    /// # Ok(()) }
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_inner(item, Wait::Never)
    }

    /// Puts `item`, waiting at most `timeout` for room (Python's `put(obj, timeout=t)`);
    /// [`Error::Full`] when it passes, with the item handed back.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().maxsize(1).build()?;
    /// q.put_timeout(1u8, Duration::from_millis(10))?;
    /// let full = q.put_timeout(2u8, Duration::from_millis(10)).unwrap_err();
    /// assert!(full.is_full());
    /// # Ok(()) }
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_inner(item, Wait::For(timeout))
    }

    /// Takes the oldest item, waiting until there is one (Python's `get()`). Errors:
    /// [`Error::Closed`] if this handle was closed, [`Error::Deserialize`] if the item is not a
    /// `T` (the message names the type and where decoding stopped).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue()?;
    /// q.put(vec![1, 2, 3])?;
    /// assert_eq!(q.get()?, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn get(&self) -> Result<T> {
        self.get_inner(Wait::Forever)
    }

    /// Takes the oldest item if there is one now (Python's `get_nowait()`, `get(block=False)`);
    /// [`Error::Empty`] otherwise.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue::<u32>()?;
    /// assert!(matches!(q.try_get(), Err(mproc::Error::Empty)));
    /// q.put(7)?;
    /// assert_eq!(q.try_get()?, 7);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        self.get_inner(Wait::Never)
    }

    /// Takes the oldest item, waiting at most `timeout` for one (Python's `get(timeout=t)`);
    /// [`Error::Empty`] when it passes.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue::<String>()?;
    /// let r = q.get_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(mproc::Error::Empty)));
    /// # Ok(()) }
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_inner(Wait::For(timeout))
    }

    /// The number of items in the queue: exact when nobody is putting or getting, even after
    /// processes died in the middle of a `put` or `get` (see the type's docs); while others use
    /// the queue, a value it had during the call.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue()?;
    /// q.put(())?;
    /// assert_eq!(q.qsize(), 1);
    /// # Ok(()) }
    /// ```
    pub fn qsize(&self) -> usize {
        self.core.count() as usize
    }

    /// Whether the queue is empty (as exact as [`qsize`](Queue::qsize)).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue::<u8>()?;
    /// assert!(q.empty());
    /// # Ok(()) }
    /// ```
    pub fn empty(&self) -> bool {
        self.core.count() == 0
    }

    /// Whether the queue holds `maxsize` items (never for an unbounded queue).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().maxsize(1).build()?;
    /// q.put(1)?;
    /// assert!(q.full());
    /// # Ok(()) }
    /// ```
    pub fn full(&self) -> bool {
        let max = self.core.maxsize();
        max > 0 && self.core.count() >= max
    }

    /// The queue's `maxsize` (`None`: unbounded).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let ctx = mproc::default_context();
    /// assert_eq!(ctx.queue::<u8>()?.maxsize(), None);
    /// assert_eq!(ctx.queue_builder().maxsize(5).build::<u8>()?.maxsize(), Some(5));
    /// # Ok(()) }
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        match self.core.maxsize() {
            0 => None,
            n => Some(n as usize),
        }
    }

    /// Closes this handle (Python's `close()`): later `put`/`get` through it (or its clones in
    /// this process) are [`Error::Closed`]. Items already put stay for other handles.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue::<u8>()?;
    /// q.close();
    /// assert!(q.put(1).unwrap_err().is_closed());
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
    }

    /// Whether [`close`](Queue::close) was called on this handle.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue::<u8>()?;
    /// assert!(!q.is_closed());
    /// # Ok(()) }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Python's `join_thread()`: there is no feeder thread, so nothing to wait for.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue::<u8>()?;
    /// q.close();
    /// q.join_thread(); // returns at once
    /// # Ok(()) }
    /// ```
    pub fn join_thread(&self) {}

    /// Python's `cancel_join_thread()`: a no-op (nothing is ever left unflushed).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// mproc::default_context().queue::<u8>()?.cancel_join_thread();
    /// # Ok(()) }
    /// ```
    pub fn cancel_join_thread(&self) {}

    /// The start method of the context that made this queue.
    ///
    /// ```
    /// use mproc::StartMethod;
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::get_context(StartMethod::Spawn).queue::<u8>()?;
    /// assert_eq!(q.start_method(), StartMethod::Spawn);
    /// # Ok(()) }
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.core.method()
    }
}

/// A simplified queue (Python's `multiprocessing.SimpleQueue`): unbounded, so a
/// [`put`](SimpleQueue::put) never waits; [`get`](SimpleQueue::get) waits for an item, and
/// [`try_get`](SimpleQueue::try_get) and [`get_timeout`](SimpleQueue::get_timeout) (which
/// Python's lacks) bound that wait. Made by [`Context::simple_queue`].
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let q = mproc::default_context().simple_queue()?;
/// q.put(("job".to_string(), 1))?; // the item type is inferred: (String, i32)
/// assert_eq!(q.get()?, ("job".to_string(), 1));
/// assert!(q.empty());
/// # Ok(()) }
/// ```
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
    /// Puts `item` (it never waits for room: the queue is unbounded). On error the item comes
    /// back in the [`PutError`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().simple_queue()?;
    /// q.put(1.5)?;
    /// # Ok(()) }
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.0.put(item)
    }

    /// Takes the oldest item, waiting until there is one.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().simple_queue()?;
    /// q.put("x".to_string())?;
    /// assert_eq!(q.get()?, "x");
    /// # Ok(()) }
    /// ```
    pub fn get(&self) -> Result<T> {
        self.0.get()
    }

    /// Takes the oldest item if there is one now; [`Error::Empty`] otherwise.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().simple_queue::<u8>()?;
    /// assert!(matches!(q.try_get(), Err(mproc::Error::Empty)));
    /// # Ok(()) }
    /// ```
    pub fn try_get(&self) -> Result<T> {
        self.0.try_get()
    }

    /// Takes the oldest item, waiting at most `timeout`; [`Error::Empty`] when it passes.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().simple_queue::<u8>()?;
    /// assert!(q.get_timeout(Duration::from_millis(5)).is_err());
    /// # Ok(()) }
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.0.get_timeout(timeout)
    }

    /// Whether the queue is empty.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// assert!(mproc::default_context().simple_queue::<u8>()?.empty());
    /// # Ok(()) }
    /// ```
    pub fn empty(&self) -> bool {
        self.0.empty()
    }

    /// Closes this handle; later `put`/`get` through it are [`Error::Closed`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().simple_queue::<u8>()?;
    /// q.close();
    /// assert!(matches!(q.get(), Err(mproc::Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.0.close()
    }
}

/// A [`Queue`] that counts unfinished tasks (Python's `multiprocessing.JoinableQueue`): every
/// `put` adds one, [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left. Dereferences to [`Queue`] for
/// `put`, `get` and the rest. Made by [`Context::joinable_queue`] or
/// [`QueueBuilder::build_joinable`].
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let q = mproc::default_context().joinable_queue()?;
/// q.put("task".to_string())?;
/// let task = q.get()?;
/// assert_eq!(task, "task");
/// q.task_done()?;
/// q.join()?; // every task put has been marked done
/// # Ok(()) }
/// ```
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
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().joinable_queue::<u8>()?;
    /// assert!(q.task_done().is_err()); // nothing was put
    /// # Ok(()) }
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.0.core.task_done()
    }

    /// Waits until every item put has been marked done (Python's `join()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().joinable_queue::<u8>()?;
    /// q.join()?; // nothing put: returns at once
    /// # Ok(()) }
    /// ```
    pub fn join(&self) -> Result<()> {
        self.0.core.join(None)
    }

    /// Waits at most `timeout` until every item put has been marked done; [`Error::Timeout`]
    /// when it passes first.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().joinable_queue()?;
    /// q.put(1)?;
    /// assert!(matches!(q.join_timeout(Duration::from_millis(5)), Err(mproc::Error::Timeout)));
    /// # Ok(()) }
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.0.core.join(Some(timeout))
    }
}

/// Makes queues of any kind with a `maxsize` and a ring capacity (Python's `Queue(maxsize)`):
/// [`Context::queue_builder`].
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let ctx = mproc::default_context();
/// let jobs: mproc::Queue<String> = ctx.queue_builder().maxsize(100).build()?;
/// let done = ctx.queue_builder().capacity(64 << 10).build_joinable::<u64>()?;
/// # drop((jobs, done));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueueBuilder {
    method: StartMethod,
    maxsize: Option<usize>,
    capacity: usize,
}

impl QueueBuilder {
    /// At most `n` items in the queue; a `put` waits (or fails) while it is full. `0` means
    /// unbounded, as in Python. Unbounded unless set.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().maxsize(2).build::<u8>()?;
    /// assert_eq!(q.maxsize(), Some(2));
    /// # Ok(()) }
    /// ```
    pub fn maxsize(mut self, n: usize) -> Self {
        self.maxsize = (n > 0).then_some(n);
        self
    }

    /// The ring's size in bytes (rounded up to a power of two, at least 4096;
    /// [`DEFAULT_CAPACITY`] unless set). The ring is where a queue that keeps up runs; what
    /// does not fit in it goes to overflow segments (see [`Queue`]), so the capacity bounds
    /// nothing.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().capacity(4096).build()?;
    /// q.put(vec![0u8; 100_000])?; // larger than the ring: it goes on in an overflow segment
    /// assert_eq!(q.get()?.len(), 100_000);
    /// # Ok(()) }
    /// ```
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// A new [`Queue`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().maxsize(1).build()?;
    /// q.put(1)?;
    /// # Ok(()) }
    /// ```
    pub fn build<T>(self) -> Result<Queue<T>> {
        Ok(Queue {
            core: Shared::new(self.method, self.maxsize, self.capacity)?,
            closed: Arc::new(AtomicBool::new(false)),
            _item: PhantomData,
        })
    }

    /// A new [`JoinableQueue`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().maxsize(8).build_joinable()?;
    /// q.put(1)?;
    /// # Ok(()) }
    /// ```
    pub fn build_joinable<T>(self) -> Result<JoinableQueue<T>> {
        self.build().map(JoinableQueue)
    }

    /// A new [`SimpleQueue`]. A simple queue is unbounded: a [`maxsize`](QueueBuilder::maxsize)
    /// is [`Error::InvalidArgument`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let ctx = mproc::default_context();
    /// let q = ctx.queue_builder().capacity(1 << 20).build_simple()?;
    /// q.put('x')?;
    /// assert!(ctx.queue_builder().maxsize(1).build_simple::<u8>().is_err());
    /// # Ok(()) }
    /// ```
    pub fn build_simple<T>(self) -> Result<SimpleQueue<T>> {
        if let Some(n) = self.maxsize {
            return Err(Error::InvalidArgument(format!(
                "a SimpleQueue is unbounded: it cannot have a maxsize ({n}); use build() for a \
                 bounded Queue"
            )));
        }
        self.build().map(SimpleQueue)
    }
}

impl Context {
    /// A new unbounded [`Queue`] (Python's `ctx.Queue()`), its ring [`DEFAULT_CAPACITY`]
    /// bytes. The item type comes from the annotation or the first use; for a `maxsize` or
    /// another ring size, see [`queue_builder`](Context::queue_builder).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue()?;
    /// q.put(42u64)?; // fixes the item type: Queue<u64>
    /// # Ok(()) }
    /// ```
    #[doc(alias = "Queue")]
    pub fn queue<T>(&self) -> Result<Queue<T>> {
        self.queue_builder().build()
    }

    /// A builder for queues with a `maxsize` (Python's `ctx.Queue(maxsize)`) or a ring
    /// capacity; it makes each kind of queue.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().queue_builder().maxsize(10).build::<u8>()?;
    /// # Ok(()) }
    /// ```
    pub fn queue_builder(&self) -> QueueBuilder {
        QueueBuilder {
            method: self.start_method(),
            maxsize: None,
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// A new [`SimpleQueue`] (Python's `ctx.SimpleQueue()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().simple_queue()?;
    /// q.put(1)?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "SimpleQueue")]
    pub fn simple_queue<T>(&self) -> Result<SimpleQueue<T>> {
        self.queue_builder().build_simple()
    }

    /// A new unbounded [`JoinableQueue`] (Python's `ctx.JoinableQueue()`; with a `maxsize`:
    /// [`queue_builder`](Context::queue_builder)`.maxsize(n).build_joinable()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let q = mproc::default_context().joinable_queue()?;
    /// q.put(1)?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "JoinableQueue")]
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueue<T>> {
        self.queue_builder().build_joinable()
    }
}
