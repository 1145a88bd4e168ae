//! Queues between processes: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`] (Python's
//! `multiprocessing.Queue`, `SimpleQueue`, `JoinableQueue`).
//!
//! ## Design
//! A queue is a ring buffer in shared memory (an anonymous `memfd`, 4 MiB by default, pages
//! allocated as they are first used), guarded by two robust process-shared mutexes, one for
//! producers and one for consumers, with futex waits when it is empty or full. There is no
//! feeder thread: when `put` returns, the item is in shared memory, so
//! - a process that put items and exits leaves them in the queue; its parent's `join` never
//!   waits for a flush (CPython can deadlock there);
//! - whatever `put` accepted is delivered exactly once, to one `get`.
//!
//! Items are serialised with bincode. Items of up to a quarter of the ring travel as one record;
//! larger items stream through the ring in chunks (so an item larger than the ring is fine, but
//! its `put` then waits for a consumer to take the earlier chunks). A process that dies in the
//! middle of a `put` or `get` does not wedge the queue: the next producer or consumer takes over,
//! and a half-written item is dropped (it was never accepted).
//!
//! ## Differences from Python
//! - Besides `maxsize` (in items), the ring bounds the bytes in flight: a `put` that finds no
//!   room waits (or, with `block` false or a timeout, fails with [`Error::Full`] and hands the
//!   item back) even on a queue without `maxsize`. Make the ring larger with
//!   [`Context::queue_with_capacity`].
//! - `close()` is per handle, as in Python: later `put`/`get` through it are [`Error::Closed`].
//!   `join_thread`/`cancel_join_thread` have nothing to do and are no-ops.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::region::{io, Deadline, SharedRegion};
use crate::sys::{self, LockOutcome, Mapping};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{fence, AtomicBool};
use std::sync::Arc;
use std::time::Duration;

/// The default ring size in bytes.
pub const DEFAULT_CAPACITY: usize = 4 << 20;

// Layout of the shared header (each hot field on its own cache line).
const PRODUCER: usize = 0;
const CONSUMER: usize = 64;
const TAIL: usize = 128;
const HEAD: usize = 192;
const COUNT: usize = 256;
const DATA_SEQ: usize = 320;
const DATA_WAITERS: usize = 324;
const SPACE_SEQ: usize = 384;
const SPACE_WAITERS: usize = 388;
const MAXSIZE: usize = 448;
const CAP_WORDS: usize = 456;
const UNFINISHED: usize = 464;
const JOIN_WAITERS: usize = 468;
const JOINABLE: usize = 472;
const DATA: usize = 512;

// Record header: payload length in the low 32 bits, flags above.
const FIRST: u64 = 1 << 32;
const LAST: u64 = 1 << 33;
const LEN_MASK: u64 = 0xffff_ffff;

/// How many times a waiter checks its condition before it sleeps on the futex.
const SPIN: u32 = 256;

/// How often a consumer that waits for the rest of a streamed item checks that its producer is
/// still alive.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// The queue machinery, independent of the item type.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Core {
    region: SharedRegion,
}

fn words(bytes: usize) -> u64 {
    bytes.div_ceil(8) as u64
}

impl Core {
    fn new(
        method: StartMethod,
        maxsize: Option<usize>,
        capacity: usize,
        joinable: bool,
    ) -> Result<Core> {
        if capacity < 4096 {
            return Err(Error::InvalidArgument(
                "a queue's ring needs at least 4096 bytes".into(),
            ));
        }
        let cap_words = (capacity / 8).next_power_of_two() as u64;
        let region = SharedRegion::new("queue", DATA + cap_words as usize * 8, method, |m| {
            m.init_mutex(PRODUCER)?;
            m.init_mutex(CONSUMER)
        })?;
        let map = region.map();
        map.u64_at(MAXSIZE)
            .store(maxsize.unwrap_or(0) as u64, Relaxed);
        map.u64_at(CAP_WORDS).store(cap_words, Relaxed);
        map.u32_at(JOINABLE).store(joinable as u32, Relaxed);
        Ok(Core { region })
    }

    fn map(&self) -> &Mapping {
        self.region.map()
    }

    fn cap(&self) -> u64 {
        self.map().u64_at(CAP_WORDS).load(Relaxed)
    }

    fn max_chunk(&self) -> usize {
        (self.cap() as usize * 8 / 4).min(LEN_MASK as usize)
    }

    fn maxsize(&self) -> u64 {
        self.map().u64_at(MAXSIZE).load(Relaxed)
    }

    /// Items published and not yet taken. Producers count an item after publishing it, so a
    /// consumer may uncount it first: the word is read as signed and clamped at zero.
    fn count(&self) -> u64 {
        (self.map().u64_at(COUNT).load(Acquire) as i64).max(0) as u64
    }

    /// Waits on the futex word at `seq` (with its waiter counter at `waiters`) until `ready`
    /// holds; false if `deadline` passed first.
    fn wait_until(
        &self,
        seq: usize,
        waiters: usize,
        deadline: Deadline,
        mut ready: impl FnMut() -> bool,
    ) -> Result<bool> {
        let map = self.map();
        // Spin briefly first: the other side is usually about to act, and a futex sleep and
        // wake-up cost two system calls and a context switch.
        let spins = if deadline.passed() { 0 } else { SPIN };
        for i in 0..spins {
            if ready() {
                return Ok(true);
            }
            if i % 64 == 63 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        loop {
            if ready() {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            map.u32_at(waiters).fetch_add(1, SeqCst);
            let s = map.u32_at(seq).load(SeqCst);
            fence(SeqCst);
            if ready() {
                map.u32_at(waiters).fetch_sub(1, SeqCst);
                return Ok(true);
            }
            let r = sys::futex_wait(map.u32_at(seq), s, deadline.remaining());
            map.u32_at(waiters).fetch_sub(1, SeqCst);
            r.map_err(io)?;
        }
    }

    fn wake(&self, seq: usize, waiters: usize) {
        let map = self.map();
        fence(SeqCst);
        if map.u32_at(waiters).load(Relaxed) > 0 {
            map.u32_at(seq).fetch_add(1, SeqCst);
            sys::futex_wake(map.u32_at(seq), u32::MAX);
        }
    }

    fn free_words(&self) -> u64 {
        let map = self.map();
        self.cap() - (map.u64_at(TAIL).load(Relaxed) - map.u64_at(HEAD).load(Acquire))
    }

    /// Writes one record (header + payload) at the tail and publishes it. The caller holds the
    /// producer mutex and has checked there is room.
    fn write_record(&self, flags: u64, payload: &[u8]) {
        let map = self.map();
        let cap = self.cap();
        let mask = cap - 1;
        let ring = map.u64_slice(DATA, cap as usize);
        let tail = map.u64_at(TAIL).load(Relaxed);
        ring[(tail & mask) as usize].store(flags | payload.len() as u64, Relaxed);
        let mut pos = tail + 1;
        let mut chunks = payload.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            ring[(pos & mask) as usize].store(w, Relaxed);
            pos += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            ring[(pos & mask) as usize].store(u64::from_le_bytes(b), Relaxed);
            pos += 1;
        }
        map.u64_at(TAIL).store(pos, Release);
    }

    fn lock(&self, off: usize, block: bool, deadline: Deadline) -> Result<Option<LockOutcome>> {
        match self
            .map()
            .mutex_lock(off, block, deadline.remaining())
            .map_err(io)?
        {
            LockOutcome::NotAcquired => Ok(None),
            o => Ok(Some(o)),
        }
    }

    fn unlock(&self, off: usize) {
        let _ = self.map().mutex_unlock(off);
    }

    /// Puts one serialised item; `Err(Full)` if it could not within the deadline.
    fn put(&self, bytes: &[u8], block: bool, timeout: Option<Duration>) -> Result<()> {
        let deadline = Deadline::after(if block { timeout } else { Some(Duration::ZERO) });
        // If the previous producer died half-way through a streamed item, consumers drop the
        // fragment when the next item begins (or when they find it dead), so a recovered lock
        // needs no repair here.
        if self.lock(PRODUCER, block, deadline)?.is_none() {
            return Err(Error::Full);
        }
        let r = self.put_locked(bytes, deadline);
        self.unlock(PRODUCER);
        r
    }

    fn put_locked(&self, bytes: &[u8], deadline: Deadline) -> Result<()> {
        let map = self.map();
        let maxsize = self.maxsize();
        if maxsize > 0
            && !self.wait_until(SPACE_SEQ, SPACE_WAITERS, deadline, || {
                self.count() < maxsize
            })?
        {
            return Err(Error::Full);
        }
        let max_chunk = self.max_chunk();
        let first_len = bytes.len().min(max_chunk);
        let need = 1 + words(first_len);
        if !self.wait_until(SPACE_SEQ, SPACE_WAITERS, deadline, || {
            self.free_words() >= need
        })? {
            return Err(Error::Full);
        }
        // From here on the item is accepted: it is written whole, whatever the deadline.
        let joinable = map.u32_at(JOINABLE).load(Relaxed) != 0;
        if bytes.len() <= max_chunk {
            // (Unfinished tasks are counted before publishing, so that a fast consumer's
            // task_done never finds zero.)
            if joinable {
                map.u32_at(UNFINISHED).fetch_add(1, SeqCst);
            }
            self.write_record(FIRST | LAST, bytes);
            map.u64_at(COUNT).fetch_add(1, SeqCst);
            self.wake(DATA_SEQ, DATA_WAITERS);
            return Ok(());
        }
        let mut chunks = bytes.chunks(max_chunk).peekable();
        let mut flags = FIRST;
        while let Some(chunk) = chunks.next() {
            let need = 1 + words(chunk.len());
            self.wait_until(SPACE_SEQ, SPACE_WAITERS, Deadline::after(None), || {
                self.free_words() >= need
            })?;
            let last = chunks.peek().is_none();
            if last {
                flags |= LAST;
                if joinable {
                    map.u32_at(UNFINISHED).fetch_add(1, SeqCst);
                }
            }
            self.write_record(flags, chunk);
            if last {
                map.u64_at(COUNT).fetch_add(1, SeqCst);
            }
            self.wake(DATA_SEQ, DATA_WAITERS);
            flags = 0;
        }
        Ok(())
    }

    /// Gets one serialised item into `out`; `Err(Empty)` if none came within the deadline.
    fn get(&self, out: &mut Vec<u8>, block: bool, timeout: Option<Duration>) -> Result<()> {
        let deadline = Deadline::after(if block { timeout } else { Some(Duration::ZERO) });
        if self.lock(CONSUMER, block, deadline)?.is_none() {
            return Err(Error::Empty);
        }
        let r = self.get_locked(out, deadline);
        self.unlock(CONSUMER);
        r
    }

    fn get_locked(&self, out: &mut Vec<u8>, deadline: Deadline) -> Result<()> {
        let map = self.map();
        let cap = self.cap();
        let mask = cap - 1;
        let ring = map.u64_slice(DATA, cap as usize);
        let head_w = map.u64_at(HEAD);
        let tail_w = map.u64_at(TAIL);
        let mut assembling = false;
        out.clear();
        loop {
            let head = head_w.load(Relaxed);
            let available = || tail_w.load(Acquire) > head;
            if !assembling {
                if !self.wait_until(DATA_SEQ, DATA_WAITERS, deadline, available)? {
                    return Err(Error::Empty);
                }
            } else if !self.wait_until(
                DATA_SEQ,
                DATA_WAITERS,
                Deadline::after(Some(LIVENESS_SLICE)),
                available,
            )? {
                // The rest of a streamed item is late: is its producer still alive?
                match map.mutex_lock(PRODUCER, false, None).map_err(io)? {
                    LockOutcome::NotAcquired => {}
                    _ => {
                        // No producer is writing (the one that was died): unless its last chunks
                        // are in the ring, nothing more will come and the fragment was never
                        // accepted.
                        let _ = map.mutex_unlock(PRODUCER);
                        if tail_w.load(Acquire) == head_w.load(Relaxed) {
                            assembling = false;
                            out.clear();
                        }
                    }
                }
                continue;
            }
            let header = ring[(head & mask) as usize].load(Relaxed);
            let len = (header & LEN_MASK) as usize;
            let n = words(len);
            let first = header & FIRST != 0;
            let last = header & LAST != 0;
            if first {
                out.clear();
                assembling = true;
            }
            if assembling {
                out.reserve(len);
                let mut left = len;
                for i in 0..n {
                    let w = ring[((head + 1 + i) & mask) as usize].load(Relaxed);
                    let b = w.to_le_bytes();
                    let take = left.min(8);
                    out.extend_from_slice(&b[..take]);
                    left -= take;
                }
            }
            head_w.store(head + 1 + n, Release);
            if last {
                // The end of an item (counted when it was published).
                map.u64_at(COUNT).fetch_sub(1, SeqCst);
            }
            self.wake(SPACE_SEQ, SPACE_WAITERS);
            if assembling && last {
                return Ok(());
            }
            // Otherwise: a chunk of a longer item, or the rest of an item whose first chunks a
            // consumer that died had taken (that item went to the dead consumer).
        }
    }

    fn task_done(&self) -> Result<()> {
        let map = self.map();
        let w = map.u32_at(UNFINISHED);
        let mut cur = w.load(Relaxed);
        loop {
            if cur == 0 {
                return Err(Error::InvalidArgument(
                    "task_done() called too many times".into(),
                ));
            }
            match w.compare_exchange_weak(cur, cur - 1, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        if cur == 1 && map.u32_at(JOIN_WAITERS).load(SeqCst) > 0 {
            sys::futex_wake(w, u32::MAX);
        }
        Ok(())
    }

    fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let map = self.map();
        let w = map.u32_at(UNFINISHED);
        let deadline = Deadline::after(timeout);
        loop {
            let cur = w.load(SeqCst);
            if cur == 0 {
                return Ok(());
            }
            if deadline.passed() {
                return Err(Error::Timeout);
            }
            map.u32_at(JOIN_WAITERS).fetch_add(1, SeqCst);
            let r = sys::futex_wait(w, cur, deadline.remaining());
            map.u32_at(JOIN_WAITERS).fetch_sub(1, SeqCst);
            r.map_err(io)?;
        }
    }
}

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
/// A queue is a ring buffer in shared memory (an anonymous `memfd`, 4 MiB by default, pages
/// allocated as they are first used), guarded by two robust process-shared mutexes, one for
/// producers and one for consumers, with futex waits when it is empty or full. There is no
/// feeder thread: when `put` returns, the item is in shared memory, so
/// - a process that put items and exits leaves them in the queue; its parent's `join` never
///   waits for a flush (CPython can deadlock there);
/// - whatever `put` accepted is delivered exactly once, to one `get`.
///
/// Items are serialised with bincode. Items of up to a quarter of the ring travel as one record;
/// larger items stream through the ring in chunks (so an item larger than the ring is fine, but
/// its `put` then waits for a consumer to take the earlier chunks). A process that dies in the
/// middle of a `put` or `get` does not wedge the queue: the next producer or consumer takes over,
/// and a half-written item is dropped (it was never accepted).
///
/// # Differences from Python
/// - Besides `maxsize` (in items), the ring bounds the bytes in flight: a `put` that finds no
///   room waits (or, with `block` false or a timeout, fails with [`Error::Full`] and hands the
///   item back) even on a queue without `maxsize`. Make the ring larger with
///   [`Context::queue_with_capacity`].
/// - `close()` is per handle, as in Python: later `put`/`get` through it are [`Error::Closed`].
///   `join_thread`/`cancel_join_thread` have nothing to do and are no-ops.
///
/// ```no_run
/// # fn main() -> mproc::Result<()> {
/// let q = mproc::default_context().queue::<String>(None)?;
/// q.put("hello".to_string(), true, None)?;
/// assert_eq!(q.get(true, None)?, "hello");
/// # Ok(()) }
/// ```
pub struct Queue<T> {
    core: Core,
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
            core: Core::deserialize(d)?,
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

    /// Puts `item` (Python's `put(obj, block, timeout)`). With `block` false, or when `timeout`
    /// passes, a full queue is [`Error::Full`]; the item comes back in the [`PutError`].
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

    /// The number of items in the queue (approximate while others use it, as in Python).
    pub fn qsize(&self) -> usize {
        self.core.count() as usize
    }

    /// Whether the queue is empty (approximate while others use it).
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
        self.core.region.method()
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
    /// Puts `item`, waiting for room in the ring if needed.
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
    /// least 4096).
    pub fn queue_with_capacity<T>(
        &self,
        maxsize: Option<usize>,
        capacity: usize,
    ) -> Result<Queue<T>> {
        if maxsize == Some(0) {
            return self.queue_with_capacity(None, capacity);
        }
        Ok(Queue {
            core: Core::new(self.start_method(), maxsize, capacity, false)?,
            closed: Arc::new(AtomicBool::new(false)),
            _item: PhantomData,
        })
    }

    /// A new [`SimpleQueue`].
    pub fn simple_queue<T>(&self) -> Result<SimpleQueue<T>> {
        self.queue(None).map(SimpleQueue)
    }

    /// A new [`JoinableQueue`] holding at most `maxsize` items (`None`: unbounded).
    pub fn joinable_queue<T>(&self, maxsize: Option<usize>) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue(Queue {
            core: Core::new(
                self.start_method(),
                maxsize.filter(|&m| m > 0),
                DEFAULT_CAPACITY,
                true,
            )?,
            closed: Arc::new(AtomicBool::new(false)),
            _item: PhantomData,
        }))
    }
}
