//! Process-shared synchronisation primitives with the semantics of Python's `threading`
//! equivalents (as `multiprocessing.synchronize` provides them): [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`] and [`Barrier`].
//!
//! Each lives in a small shared-memory region ([`crate::Context::lock`] and friends make them),
//! is passed to children as a start argument (inherited under `fork`, its descriptor passed under
//! `spawn`/`forkserver`), and can be cloned to share it between threads of one process.
//!
//! ## Speed
//! The uncontended paths make no system call: a lock is a process-shared `pthread` mutex (an
//! atomic compare-and-swap when free), the others are atomic counters with futex waits only when
//! they must sleep. Thread identities are cached per thread.
//!
//! ## A lock whose owner died
//! `Lock` and `RLock` are *robust*: when a process (or thread) dies holding one, the kernel marks
//! it, and the next `acquire` succeeds and reports it: [`LockGuard::owner_died`] (and
//! [`RLockGuard::owner_died`]) is `true`. The data the lock protected may be half-updated; the
//! new owner decides what to do. CPython's lock stays locked forever in this case.
//!
//! ## Differences from Python, by design
//! - Acquiring returns a guard that releases on drop (`with lock:`). For Python's
//!   `acquire()`…`release()` in separate places, call [`LockGuard::forget`] and later
//!   [`Lock::release`].
//! - A `Lock` is owned by the thread that acquired it: only that thread may release it
//!   ([`Error::NotOwner`] otherwise). Python's `multiprocessing.Lock` lets another process
//!   release it; owner-based release is what makes dead-owner recovery possible. Use a
//!   [`Semaphore`] of one for a lock released elsewhere.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::region::{io, Deadline, SharedRegion};
use crate::sys::{self, fnptr::EntryOffset, LockOutcome, Mapping, MUTEX_SIZE};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Mutex core: a robust pthread mutex (which knows its owner: its futex word holds the owner's
// thread id) and, for RLock, the recursion count, written only by the owner.

const COUNT_OFF: usize = MUTEX_SIZE;
const MUTEX_REGION: usize = MUTEX_SIZE + 64;

fn new_mutex_region(what: &str, method: StartMethod) -> Result<SharedRegion> {
    SharedRegion::new(what, MUTEX_REGION, method, |m| m.init_mutex(0))
}

/// Locks the mutex of `map`: `Some(owner_died)` once held, `None` if not acquired.
#[inline]
fn mutex_acquire(map: &Mapping, block: bool, timeout: Option<Duration>) -> Result<Option<bool>> {
    match map.mutex_lock(0, block, timeout).map_err(io)? {
        LockOutcome::NotAcquired => Ok(None),
        LockOutcome::Acquired => Ok(Some(false)),
        LockOutcome::OwnerDied => Ok(Some(true)),
    }
}

/// Unlocks the mutex of `map`; [`Error::NotOwner`] if the calling thread does not hold it (the
/// robust mutex checks its owner).
#[inline]
fn mutex_release(map: &Mapping) -> Result<()> {
    map.mutex_unlock(0).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            not_owner()
        } else {
            io(e)
        }
    })
}

#[cold]
fn not_owner() -> Error {
    Error::NotOwner("cannot release un-acquired lock".into())
}

/// Marker that keeps guards on the thread that acquired (a pthread mutex is owned by a thread).
type NotSend = PhantomData<*const ()>;

// ---------------------------------------------------------------------------------------------
// Lock

/// A non-recursive lock shared between processes (Python's `multiprocessing.Lock`), robust
/// against its owner's death.
///
/// Like every primitive here, a lock lives in a small shared-memory region
/// ([`crate::Context::lock`] and friends make them), is passed to children as a start argument (inherited under `fork`, its descriptor passed under
/// `spawn`/`forkserver`), and can be cloned to share it between threads of one process.
///
/// # Speed
/// The uncontended paths make no system call: a lock is a process-shared `pthread` mutex (an
/// atomic compare-and-swap when free), the others are atomic counters with futex waits only when
/// they must sleep. Thread identities are cached per thread.
///
/// # A lock whose owner died
/// `Lock` and `RLock` are *robust*: when a process (or thread) dies holding one, the kernel marks
/// it, and the next `acquire` succeeds and reports it: [`LockGuard::owner_died`] (and
/// [`RLockGuard::owner_died`]) is `true`. The data the lock protected may be half-updated; the
/// new owner decides what to do. CPython's lock stays locked forever in this case.
///
/// # Differences from Python, by design
/// - Acquiring returns a guard that releases on drop (`with lock:`). For Python's
///   `acquire()`…`release()` in separate places, call [`LockGuard::forget`] and later
///   [`Lock::release`].
/// - A `Lock` is owned by the thread that acquired it: only that thread may release it
///   ([`Error::NotOwner`] otherwise). Python's `multiprocessing.Lock` lets another process
///   release it; owner-based release is what makes dead-owner recovery possible. Use a
///   [`Semaphore`] of one for a lock released elsewhere.
///
/// ```no_run
/// # fn main() -> mproc::Result<()> {
/// let lock = mproc::default_context().lock()?;
/// {
///     let guard = lock.acquire(true, None)?.expect("blocking acquire");
///     if guard.owner_died() { /* repair what the lock protects */ }
/// } // released here
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lock {
    region: SharedRegion,
}

/// Holds a [`Lock`]; releases it when dropped. It stays on the thread that acquired the lock
/// (it is not `Send`): a lock is owned by a thread.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    owner_died: bool,
    _not_send: NotSend,
}

impl Lock {
    pub(crate) fn new(method: StartMethod) -> Result<Lock> {
        Ok(Lock {
            region: new_mutex_region("lock", method)?,
        })
    }

    /// Acquires the lock (Python's `acquire(block, timeout)`): with `block` false, tries once;
    /// otherwise waits up to `timeout` (`None`: forever). `Ok(None)` when it was not acquired.
    /// Acquiring a lock this thread already holds waits (it is not recursive), as in Python.
    #[inline]
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<Option<LockGuard<'_>>> {
        Ok(
            mutex_acquire(self.region.map(), block, timeout)?.map(|died| LockGuard {
                lock: self,
                owner_died: died,
                _not_send: PhantomData,
            }),
        )
    }

    /// Acquires the lock, waiting as long as it takes (`with lock:`).
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.acquire(true, None)
            .map(|g| g.expect("a blocking acquire without timeout returns a guard"))
    }

    /// Releases a lock held by this thread whose guard was [`forget`](LockGuard::forget)ten.
    /// [`Error::NotOwner`] if this thread does not hold it.
    pub fn release(&self) -> Result<()> {
        let map = self.region.map();
        mutex_release(map)?;
        map.unpin();
        Ok(())
    }

    /// Whether the lock is held by anyone (Python's `locked()`). A lock whose owner died
    /// holding it is not: the next `acquire` takes it at once (and reports
    /// [`owner_died`](LockGuard::owner_died)).
    pub fn locked(&self) -> bool {
        self.region.map().mutex_is_locked(0)
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn is_mine(&self) -> bool {
        self.region.map().mutex_is_mine(0)
    }

    /// The start method of the context that made this lock.
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

impl LockGuard<'_> {
    /// Whether the previous owner died while holding the lock (CPython would have stayed locked
    /// forever). The guarded data may be inconsistent.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Keeps the lock held without a guard; release it later with [`Lock::release`] from this
    /// same thread.
    pub fn forget(self) {
        // The lock's shared memory must stay mapped while it is held, even if every handle to
        // the lock is dropped meanwhile.
        self.lock.region.map().pin();
        std::mem::forget(self);
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = mutex_release(self.lock.region.map());
    }
}

// ---------------------------------------------------------------------------------------------
// RLock

/// A recursive lock shared between processes (Python's `multiprocessing.RLock`): the owning
/// thread may acquire it again; it is released when every acquisition has been released. Robust
/// against its owner's death, like [`Lock`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RLock {
    region: SharedRegion,
}

/// Holds one level of an [`RLock`]; releases that level when dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    owner_died: bool,
    _not_send: NotSend,
}

impl RLock {
    pub(crate) fn new(method: StartMethod) -> Result<RLock> {
        Ok(RLock {
            region: new_mutex_region("rlock", method)?,
        })
    }

    /// Acquires one level (Python's `acquire(block, timeout)`): immediate if this thread owns
    /// the lock already; otherwise as [`Lock::acquire`].
    #[inline]
    pub fn acquire(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<RLockGuard<'_>>> {
        let map = self.region.map();
        let count = map.u32_at(COUNT_OFF);
        let died = if map.mutex_is_mine(0) {
            // Only the owner writes the count.
            count.store(count.load(Relaxed) + 1, Relaxed);
            false
        } else {
            match mutex_acquire(map, block, timeout)? {
                None => return Ok(None),
                Some(died) => {
                    count.store(1, Relaxed);
                    died
                }
            }
        };
        Ok(Some(RLockGuard {
            lock: self,
            owner_died: died,
            _not_send: PhantomData,
        }))
    }

    /// Acquires one level, waiting as long as it takes (`with rlock:`).
    #[inline]
    pub fn lock(&self) -> Result<RLockGuard<'_>> {
        self.acquire(true, None)
            .map(|g| g.expect("a blocking acquire without timeout returns a guard"))
    }

    /// Releases one level held by this thread (after [`RLockGuard::forget`]).
    /// [`Error::NotOwner`] if this thread does not own the lock.
    pub fn release(&self) -> Result<()> {
        self.release_level()?;
        self.region.map().unpin();
        Ok(())
    }

    #[inline]
    fn release_level(&self) -> Result<()> {
        let map = self.region.map();
        if !map.mutex_is_mine(0) {
            return Err(not_owner());
        }
        let count = map.u32_at(COUNT_OFF);
        let n = count.load(Relaxed);
        if n > 1 {
            count.store(n - 1, Relaxed);
            Ok(())
        } else {
            count.store(0, Relaxed);
            mutex_release(map)
        }
    }

    /// How many times the owner holds it (0 if free), as in Python's `repr`.
    pub fn count(&self) -> u32 {
        self.region.map().u32_at(COUNT_OFF).load(Relaxed)
    }

    /// Whether the calling thread owns the lock.
    #[inline]
    pub fn is_mine(&self) -> bool {
        self.region.map().mutex_is_mine(0)
    }

    /// The start method of the context that made this lock.
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }

    /// Releases every level (for `Condition::wait`); returns the count to restore.
    fn release_all(&self) -> Result<u32> {
        let map = self.region.map();
        if !map.mutex_is_mine(0) {
            return Err(not_owner());
        }
        let count = map.u32_at(COUNT_OFF).swap(0, Relaxed);
        mutex_release(map)?;
        Ok(count)
    }

    fn restore(&self, count: u32) -> Result<()> {
        let map = self.region.map();
        mutex_acquire(map, true, None)?;
        map.u32_at(COUNT_OFF).store(count, Relaxed);
        Ok(())
    }
}

impl RLockGuard<'_> {
    /// Whether the previous owner died while holding the lock (see [`LockGuard::owner_died`]).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Keeps this level held without a guard; release it with [`RLock::release`].
    pub fn forget(self) {
        // See LockGuard::forget.
        self.lock.region.map().pin();
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.lock.release_level();
    }
}

// ---------------------------------------------------------------------------------------------
// Semaphore core: value, waiters, bound (u32::MAX: none) at `off`.

const SEM_SIZE: usize = 16;

fn sem_init(map: &Mapping, off: usize, value: u32, bound: Option<u32>) {
    map.u32_at(off).store(value, Relaxed);
    map.u32_at(off + 8)
        .store(bound.unwrap_or(u32::MAX), Relaxed);
}

fn sem_acquire(map: &Mapping, off: usize, block: bool, deadline: Deadline) -> Result<bool> {
    let value = map.u32_at(off);
    let waiters = map.u32_at(off + 4);
    loop {
        let cur = value.load(Acquire);
        if cur > 0 {
            if value
                .compare_exchange_weak(cur, cur - 1, Acquire, Relaxed)
                .is_ok()
            {
                return Ok(true);
            }
            continue;
        }
        if !block || deadline.passed() {
            return Ok(false);
        }
        waiters.fetch_add(1, SeqCst);
        let r = sys::futex_wait(value, 0, deadline.remaining());
        waiters.fetch_sub(1, SeqCst);
        r.map_err(io)?;
    }
}

fn sem_release(map: &Mapping, off: usize, n: u32) -> Result<()> {
    let value = map.u32_at(off);
    let bound = map.u32_at(off + 8).load(Relaxed);
    let mut cur = value.load(Relaxed);
    loop {
        let new = match cur.checked_add(n) {
            Some(v) if v <= bound => v,
            _ if bound != u32::MAX => {
                return Err(Error::InvalidArgument(
                    "Semaphore released too many times".into(),
                ))
            }
            _ => {
                return Err(Error::InvalidArgument(
                    "semaphore value would overflow".into(),
                ))
            }
        };
        match value.compare_exchange_weak(cur, new, SeqCst, Relaxed) {
            Ok(_) => break,
            Err(v) => cur = v,
        }
    }
    if map.u32_at(off + 4).load(SeqCst) > 0 {
        sys::futex_wake(value, n);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Semaphore, BoundedSemaphore

/// A counting semaphore shared between processes (Python's `multiprocessing.Semaphore`).
/// Anyone may release it; it has no owner, so a process that dies holding a unit does not give
/// it back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Semaphore {
    region: SharedRegion,
}

/// Holds one unit of a [`Semaphore`] (or [`BoundedSemaphore`]); releases it when dropped.
#[derive(Debug)]
#[must_use = "the unit is released as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    pub(crate) fn new(method: StartMethod, value: u32, bound: Option<u32>) -> Result<Semaphore> {
        let region = SharedRegion::new("semaphore", SEM_SIZE, method, |_| Ok(()))?;
        sem_init(region.map(), 0, value, bound);
        Ok(Semaphore { region })
    }

    /// Takes one unit (Python's `acquire(block, timeout)`): with `block` false tries once,
    /// otherwise waits up to `timeout` (`None`: forever). `Ok(None)` if no unit was taken.
    pub fn acquire(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<SemaphoreGuard<'_>>> {
        Ok(
            sem_acquire(self.region.map(), 0, block, Deadline::after(timeout))?
                .then(|| SemaphoreGuard { sem: self }),
        )
    }

    /// Gives back `n` units (Python's `release(n)`), waking up to `n` waiters. For a bounded
    /// semaphore, going above the initial value is [`Error::InvalidArgument`] ("Semaphore
    /// released too many times") and changes nothing.
    pub fn release(&self, n: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::InvalidArgument("n must be one or more".into()));
        }
        sem_release(self.region.map(), 0, n)
    }

    /// The current value (Python's `get_value()`).
    pub fn get_value(&self) -> u32 {
        self.region.map().u32_at(0).load(Relaxed)
    }

    /// The start method of the context that made this semaphore.
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the unit taken (Python's bare `acquire()`); give it back with
    /// [`Semaphore::release`].
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.sem.release(1);
    }
}

/// A semaphore that may not be released above its initial value (Python's
/// `BoundedSemaphore`); it dereferences to [`Semaphore`] for everything else.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundedSemaphore(Semaphore);

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;
    fn deref(&self) -> &Semaphore {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Event

/// A flag shared between processes (Python's `multiprocessing.Event`): [`set`](Event::set)
/// wakes every waiter; [`wait`](Event::wait) returns at once while it is set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    region: SharedRegion,
}

impl Event {
    pub(crate) fn new(method: StartMethod) -> Result<Event> {
        Ok(Event {
            region: SharedRegion::new("event", 8, method, |_| Ok(()))?,
        })
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.region.map().u32_at(0).load(Acquire) == 1
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let map = self.region.map();
        map.u32_at(0).store(1, SeqCst);
        if map.u32_at(4).load(SeqCst) > 0 {
            sys::futex_wake(map.u32_at(0), u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.region.map().u32_at(0).store(0, SeqCst);
    }

    /// Waits until the flag is set, for at most `timeout` (`None`: forever). Returns whether it
    /// is set (false only on timeout), as Python's `wait`.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let map = self.region.map();
        let flag = map.u32_at(0);
        let deadline = Deadline::after(timeout);
        while flag.load(Acquire) == 0 {
            if deadline.passed() {
                return Ok(false);
            }
            map.u32_at(4).fetch_add(1, SeqCst);
            let r = sys::futex_wait(flag, 0, deadline.remaining());
            map.u32_at(4).fetch_sub(1, SeqCst);
            r.map_err(io)?;
        }
        Ok(true)
    }

    /// The start method of the context that made this event.
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

// ---------------------------------------------------------------------------------------------
// Condition

/// The lock a [`Condition`] uses: a [`Lock`] or an [`RLock`] (Python's default).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConditionLock {
    /// A non-recursive lock.
    Lock(Lock),
    /// A recursive lock.
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(l: Lock) -> Self {
        ConditionLock::Lock(l)
    }
}

impl From<RLock> for ConditionLock {
    fn from(l: RLock) -> Self {
        ConditionLock::RLock(l)
    }
}

impl ConditionLock {
    fn is_mine(&self) -> bool {
        match self {
            ConditionLock::Lock(l) => l.is_mine(),
            ConditionLock::RLock(l) => l.is_mine(),
        }
    }
}

/// Holds a [`Condition`]'s lock; releases it when dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub enum ConditionGuard<'a> {
    /// The condition's lock is a [`Lock`].
    Lock(LockGuard<'a>),
    /// The condition's lock is an [`RLock`].
    RLock(RLockGuard<'a>),
}

impl ConditionGuard<'_> {
    /// Whether the lock's previous owner died holding it.
    pub fn owner_died(&self) -> bool {
        match self {
            ConditionGuard::Lock(g) => g.owner_died(),
            ConditionGuard::RLock(g) => g.owner_died(),
        }
    }
}

/// A condition variable shared between processes (Python's `multiprocessing.Condition`):
/// [`wait`](Condition::wait) releases the lock and sleeps until notified; `notify(n)` wakes at
/// most `n` of the threads waiting at that moment, the longest-waiting first.
///
/// # Waiters that stop or die
/// Each waiting thread takes a slot in a table in shared memory and holds that slot's robust
/// mutex while it waits. `notify` marks the slots it picks as notified and returns at once: it
/// never waits for the woken threads, so
/// - a waiter that is alive but not running (stopped by `SIGSTOP`, or starved on a loaded
///   machine) never loses a notification: it finds it when it runs again;
/// - a waiter that died while waiting costs `notify` nothing: the kernel marks the dead
///   thread's slot mutex (a robust futex), `notify` sees that with one non-blocking try, frees
///   the slot and picks a live waiter instead (CPython's `notify` waits for ever for a dead
///   waiter).
///
/// The table grows as needed (extents of the condition's shared file, reaching every process
/// that holds the condition).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Condition {
    lock: ConditionLock,
    /// The waiters' table: a header, then slots (more in extents of the file).
    region: SharedRegion,
}

// The table's header (written under the condition's lock).
const NEXT_TICKET: usize = 0; // u64: the arrival number of the next waiter
const USED: usize = 8; // u32: slots 0..USED have been handed out at some time
const EXTENTS: usize = 64; // u64 each: the file offset of extent k (k >= 1)
const INLINE_SLOTS: usize = 256; // where extent 0's slots begin, in the region itself
/// Slots in extent 0; extent k holds `FIRST_SLOTS << k`.
const FIRST_SLOTS: usize = 16;
const MAX_EXTENTS: usize = 20;
// A slot: the waiter's robust mutex, its state word (the futex it sleeps on), its ticket.
const SLOT: usize = 128;
const SLOT_STATE: usize = MUTEX_SIZE;
const SLOT_TICKET: usize = MUTEX_SIZE + 8;
// Slot states, in the low two bits; the bits above count the slot's uses, so that a
// compare-and-swap from an earlier use fails.
const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;
const LEAVING: u32 = 3;
const STATE_MASK: u32 = 3;

/// The mapping a slot lives in: the condition's region, or an extent.
enum Table<'a> {
    Inline(&'a Mapping),
    Extent(std::sync::Arc<Mapping>),
}

impl std::ops::Deref for Table<'_> {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        match self {
            Table::Inline(m) => m,
            Table::Extent(m) => m,
        }
    }
}

/// Extent `k` and the index within it of slot `i`.
fn slot_extent(i: usize) -> (usize, usize) {
    let k = (usize::BITS - 1 - (i / FIRST_SLOTS + 1).leading_zeros()) as usize;
    (k, i - FIRST_SLOTS * ((1 << k) - 1))
}

fn init_slots(m: &mut Mapping, first: usize, n: usize) -> std::io::Result<()> {
    (0..n).try_for_each(|j| m.init_mutex(first + j * SLOT))
}

impl Condition {
    pub(crate) fn new(method: StartMethod, lock: Option<ConditionLock>) -> Result<Condition> {
        let lock = match lock {
            Some(l) => l,
            None => ConditionLock::RLock(RLock::new(method)?),
        };
        let region = SharedRegion::new(
            "condition",
            INLINE_SLOTS + FIRST_SLOTS * SLOT,
            method,
            |m| init_slots(m, INLINE_SLOTS, FIRST_SLOTS),
        )?;
        Ok(Condition { lock, region })
    }

    /// The underlying lock.
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Acquires the underlying lock (`with cond:`); see [`Lock::acquire`].
    pub fn acquire(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<ConditionGuard<'_>>> {
        Ok(match &self.lock {
            ConditionLock::Lock(l) => l.acquire(block, timeout)?.map(ConditionGuard::Lock),
            ConditionLock::RLock(l) => l.acquire(block, timeout)?.map(ConditionGuard::RLock),
        })
    }

    /// Acquires the underlying lock, waiting as long as it takes.
    pub fn lock(&self) -> Result<ConditionGuard<'_>> {
        self.acquire(true, None)
            .map(|g| g.expect("a blocking acquire without timeout returns a guard"))
    }

    /// Slot `i` (below `USED`): its table and offset there.
    fn slot(&self, i: usize) -> Result<(Table<'_>, usize)> {
        let (k, j) = slot_extent(i);
        if k == 0 {
            return Ok((Table::Inline(self.region.map()), INLINE_SLOTS + j * SLOT));
        }
        let off = self.region.map().u64_at(EXTENTS + 8 * k).load(Acquire);
        let map = self.region.extent(off, (FIRST_SLOTS << k) * SLOT)?;
        Ok((Table::Extent(map), j * SLOT))
    }

    /// Takes a slot for the calling thread (which holds the condition's lock) and locks its
    /// mutex; returns the slot and its state word as `WAITING`.
    fn claim(&self) -> Result<(Table<'_>, usize, u32)> {
        let map = self.region.map();
        let used = map.u32_at(USED).load(Relaxed) as usize;
        // A free slot; else one whose waiter died or has gone (its mutex is free); else a new
        // one.
        let mut found = None;
        'search: for free_only in [true, false] {
            for i in 0..used {
                let (t, o) = self.slot(i)?;
                let st = t.u32_at(o + SLOT_STATE).load(Acquire);
                if (st & STATE_MASK == FREE) != free_only {
                    continue;
                }
                if t.mutex_lock(o, false, None).map_err(io)? != LockOutcome::NotAcquired {
                    found = Some((t, o, st));
                    break 'search;
                }
            }
        }
        let (t, o, st) = match found {
            Some(f) => f,
            None => {
                let (k, j) = slot_extent(used);
                if k >= MAX_EXTENTS {
                    return Err(Error::InvalidArgument(
                        "too many threads waiting on one condition".into(),
                    ));
                }
                if k > 0 && j == 0 {
                    // The first slot of a new extent.
                    let n = FIRST_SLOTS << k;
                    let (off, _) = self.region.grow(n * SLOT, |m| init_slots(m, 0, n))?;
                    map.u64_at(EXTENTS + 8 * k).store(off, Release);
                }
                map.u32_at(USED).store(used as u32 + 1, Relaxed);
                let (t, o) = self.slot(used)?;
                if t.mutex_lock(o, false, None).map_err(io)? == LockOutcome::NotAcquired {
                    return Err(Error::Io(std::io::Error::other(
                        "a fresh condition slot is locked",
                    )));
                }
                let st = t.u32_at(o + SLOT_STATE).load(Acquire);
                (t, o, st)
            }
        };
        let ticket = map.u64_at(NEXT_TICKET).fetch_add(1, Relaxed);
        t.u64_at(o + SLOT_TICKET).store(ticket, Relaxed);
        let waiting = (st & !STATE_MASK).wrapping_add(STATE_MASK + 1) | WAITING;
        t.u32_at(o + SLOT_STATE).store(waiting, Release);
        Ok((t, o, waiting))
    }

    /// Releases the lock (all levels of an RLock), waits until notified or until `timeout`
    /// passes, then re-acquires it. Returns false on timeout. The calling thread must hold the
    /// lock ([`Error::NotOwner`] otherwise).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        if !self.lock.is_mine() {
            return Err(Error::NotOwner("cannot wait on un-acquired lock".into()));
        }
        let (t, o, waiting) = self.claim()?;
        let state = t.u32_at(o + SLOT_STATE);
        let leaving = (waiting & !STATE_MASK) | LEAVING;
        let released = match &self.lock {
            ConditionLock::Lock(l) => mutex_release(l.region.map()).map(|_| 0),
            ConditionLock::RLock(l) => l.release_all(),
        };
        let saved = match released {
            Ok(saved) => saved,
            Err(e) => {
                // Still held (we checked it was ours): give the slot back and report.
                t.u32_at(o + SLOT_STATE)
                    .store((waiting & !STATE_MASK) | FREE, Release);
                let _ = t.mutex_unlock(o);
                return Err(e);
            }
        };
        let deadline = Deadline::after(timeout);
        // Sleep until the state changes (only a notifier changes the state of a slot whose
        // mutex we hold) or the deadline passes; then `last` is the state we leave.
        let (last, outcome) = loop {
            let now = state.load(Acquire);
            if now != waiting {
                break (now, Ok(true));
            }
            let slept = if deadline.passed() {
                Ok(false)
            } else {
                sys::futex_wait(state, waiting, deadline.remaining())
            };
            if let Ok(true) = slept {
                continue;
            }
            // Timed out (or the wait failed): withdraw, unless a notification came first.
            break match state.compare_exchange(waiting, leaving, AcqRel, Acquire) {
                Ok(_) => (leaving, slept.map_err(io)),
                Err(now) => (now, Ok(true)),
            };
        };
        // Leave the slot: first its mutex, then its state, unless a claimer took it meanwhile.
        let _ = t.mutex_unlock(o);
        let _ = state.compare_exchange(last, (waiting & !STATE_MASK) | FREE, Release, Relaxed);
        let relocked = match &self.lock {
            ConditionLock::Lock(l) => mutex_acquire(l.region.map(), true, None).map(|_| ()),
            ConditionLock::RLock(l) => l.restore(saved),
        };
        let woke = outcome?;
        relocked?;
        Ok(woke)
    }

    /// Waits until `predicate` is true, for at most `timeout` overall; returns the predicate's
    /// last value (Python's `wait_for`).
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = Deadline::after(timeout);
        let mut result = predicate();
        while !result {
            if deadline.passed() {
                break;
            }
            self.wait(deadline.remaining())?;
            result = predicate();
        }
        Ok(result)
    }

    /// Wakes up to `n` of the waiting threads, the longest-waiting first, without waiting for
    /// them (see the type's docs). The calling thread must hold the lock.
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.is_mine() {
            return Err(Error::NotOwner("cannot notify on un-acquired lock".into()));
        }
        if n == 0 {
            return Ok(());
        }
        let used = self.region.map().u32_at(USED).load(Relaxed) as usize;
        // The live waiters, by arrival; the slots of dead ones are freed on the way.
        let mut waiting: Vec<(u64, usize, u32)> = Vec::new();
        for i in 0..used {
            let (t, o) = self.slot(i)?;
            let state = t.u32_at(o + SLOT_STATE);
            let st = state.load(Acquire);
            if st & STATE_MASK != WAITING {
                continue;
            }
            match t.mutex_lock(o, false, None).map_err(io)? {
                // Held: its waiter is alive (running or not).
                LockOutcome::NotAcquired => {
                    waiting.push((t.u64_at(o + SLOT_TICKET).load(Relaxed), i, st));
                }
                // Its waiter died (or left without freeing it): free the slot.
                LockOutcome::OwnerDied | LockOutcome::Acquired => {
                    let _ = state.compare_exchange(st, (st & !STATE_MASK) | FREE, Release, Relaxed);
                    let _ = t.mutex_unlock(o);
                }
            }
        }
        waiting.sort_unstable();
        let mut woken = 0;
        for (_, i, st) in waiting {
            if woken == n {
                break;
            }
            let (t, o) = self.slot(i)?;
            let state = t.u32_at(o + SLOT_STATE);
            // Fails if the waiter timed out meanwhile: then wake another.
            if state
                .compare_exchange(st, (st & !STATE_MASK) | NOTIFIED, AcqRel, Relaxed)
                .is_ok()
            {
                sys::futex_wake(state, 1);
                woken += 1;
            }
        }
        Ok(())
    }

    /// Wakes every waiting thread. The calling thread must hold the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    /// The start method of the context that made this condition.
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

// ---------------------------------------------------------------------------------------------
// Barrier

/// A barrier for a fixed number of parties (Python's `multiprocessing.Barrier`, that is,
/// `threading.Barrier` over shared state): each [`wait`](Barrier::wait) blocks until `parties`
/// threads wait, then all go on. [`abort`](Barrier::abort), a timeout or a
/// [`reset`](Barrier::reset) while threads wait break it ([`Error::BrokenBarrier`]). An
/// `action` may be given ([`Context::barrier_with_action`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Barrier {
    cond: Condition,
    /// state (i32: 0 filling, 1 draining, -1 resetting, -2 broken), count, parties.
    region: SharedRegion,
    timeout: Option<Duration>,
    /// The action run by the last thread to arrive, named as an entry point (so that it can
    /// cross to a spawned child).
    action: Option<EntryOffset>,
}

/// Runs the zero-sized action type `F` (the entry point stored for a barrier's action).
fn barrier_action_entry<F: Fn() + Copy + 'static>(_: &[u8], _: Vec<std::os::fd::OwnedFd>) -> i32 {
    let f = sys::fnptr::conjure_zst_fn::<F, ()>()
        .expect("the barrier checked that the action is zero-sized");
    f();
    0
}

const FILLING: i32 = 0;
const DRAINING: i32 = 1;
const RESETTING: i32 = -1;
const BROKEN: i32 = -2;

impl Barrier {
    pub(crate) fn new(
        method: StartMethod,
        parties: u32,
        timeout: Option<Duration>,
        action: Option<EntryOffset>,
    ) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument("parties must be >= 1".into()));
        }
        let cond = Condition::new(method, Some(ConditionLock::Lock(Lock::new(method)?)))?;
        let region = SharedRegion::new("barrier", 16, method, |_| Ok(()))?;
        region.map().u32_at(8).store(parties, Relaxed);
        Ok(Barrier {
            cond,
            region,
            timeout,
            action,
        })
    }

    fn state(&self) -> i32 {
        self.region.map().u32_at(0).load(Relaxed) as i32
    }
    fn set_state(&self, s: i32) {
        self.region.map().u32_at(0).store(s as u32, Relaxed);
    }
    fn count(&self) -> u32 {
        self.region.map().u32_at(4).load(Relaxed)
    }
    fn set_count(&self, c: u32) {
        self.region.map().u32_at(4).store(c, Relaxed);
    }

    /// The number of threads required to pass the barrier.
    pub fn parties(&self) -> u32 {
        self.region.map().u32_at(8).load(Relaxed)
    }

    /// The number of threads waiting now.
    pub fn n_waiting(&self) -> u32 {
        let _g = self.cond.lock();
        if self.state() == FILLING {
            self.count()
        } else {
            0
        }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        let _g = self.cond.lock();
        self.state() == BROKEN
    }

    /// Waits for the other parties, for at most `timeout` (`None`: the barrier's default
    /// timeout, itself `None` unless set). Returns this thread's arrival index, `0` to
    /// `parties - 1` (distinct for each thread). A timeout breaks the barrier; every waiter then
    /// gets [`Error::BrokenBarrier`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        let timeout = timeout.or(self.timeout);
        let _g = self.cond.lock()?;
        // Block while the barrier drains or resets.
        while matches!(self.state(), RESETTING | DRAINING) {
            self.cond.wait(None)?;
        }
        if self.state() < 0 {
            return Err(Error::BrokenBarrier);
        }
        let index = self.count();
        self.set_count(index + 1);
        let result = if index + 1 == self.parties() {
            // The last to arrive runs the action; if it panics, the barrier breaks and the
            // panic goes on in this thread (Python re-raises the action's exception).
            if let Some(action) = self.action {
                let run = std::panic::catch_unwind(|| action.call(&[], Vec::new()));
                match run {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        self.set_state(BROKEN);
                        let _ = self.cond.notify_all();
                        self.set_count(self.count() - 1);
                        return Err(Error::NotSpawnable(
                            "the barrier's action comes from another executable".into(),
                        ));
                    }
                    Err(panic) => {
                        self.set_state(BROKEN);
                        let _ = self.cond.notify_all();
                        self.set_count(self.count() - 1);
                        drop(_g);
                        std::panic::resume_unwind(panic);
                    }
                }
            }
            self.set_state(DRAINING);
            self.cond.notify_all().map(|_| index)
        } else {
            match self.cond.wait_for(|| self.state() != FILLING, timeout) {
                Ok(true) if self.state() < 0 => Err(Error::BrokenBarrier),
                Ok(true) => Ok(index),
                Ok(false) => {
                    self.set_state(BROKEN);
                    let _ = self.cond.notify_all();
                    Err(Error::BrokenBarrier)
                }
                Err(e) => Err(e),
            }
        };
        self.set_count(self.count() - 1);
        if self.count() == 0 && matches!(self.state(), RESETTING | DRAINING) {
            self.set_state(FILLING);
            self.cond.notify_all()?;
        }
        result
    }

    /// Returns the barrier to its initial state; threads waiting now get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) -> Result<()> {
        let _g = self.cond.lock()?;
        if self.count() > 0 {
            if matches!(self.state(), FILLING | BROKEN) {
                self.set_state(RESETTING);
            }
        } else {
            self.set_state(FILLING);
        }
        self.cond.notify_all()
    }

    /// Breaks the barrier: current and future waiters get [`Error::BrokenBarrier`] until
    /// [`reset`](Barrier::reset).
    pub fn abort(&self) -> Result<()> {
        let _g = self.cond.lock()?;
        self.set_state(BROKEN);
        self.cond.notify_all()
    }

    /// The start method of the context that made this barrier.
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

// ---------------------------------------------------------------------------------------------
// Context methods

impl Context {
    /// A new [`Lock`] (Python's `ctx.Lock()`).
    pub fn lock(&self) -> Result<Lock> {
        Lock::new(self.start_method())
    }

    /// A new [`RLock`] (Python's `ctx.RLock()`).
    pub fn rlock(&self) -> Result<RLock> {
        RLock::new(self.start_method())
    }

    /// A new [`Semaphore`] with `value` units (Python's `ctx.Semaphore(value)`).
    pub fn semaphore(&self, value: u32) -> Result<Semaphore> {
        Semaphore::new(self.start_method(), value, None)
    }

    /// A new [`BoundedSemaphore`] with `value` units (Python's `ctx.BoundedSemaphore(value)`).
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore(Semaphore::new(
            self.start_method(),
            value,
            Some(value),
        )?))
    }

    /// A new [`Condition`] over `lock` (`None`: a new [`RLock`], as Python).
    pub fn condition(&self, lock: Option<ConditionLock>) -> Result<Condition> {
        Condition::new(self.start_method(), lock)
    }

    /// A new [`Event`], initially clear.
    pub fn event(&self) -> Result<Event> {
        Event::new(self.start_method())
    }

    /// A new [`Barrier`] for `parties` threads (at least 1), without a default timeout.
    pub fn barrier(&self, parties: u32) -> Result<Barrier> {
        Barrier::new(self.start_method(), parties, None, None)
    }

    /// A new [`Barrier`] whose waits time out after `timeout` unless given another.
    pub fn barrier_with_timeout(&self, parties: u32, timeout: Duration) -> Result<Barrier> {
        Barrier::new(self.start_method(), parties, Some(timeout), None)
    }

    /// A new [`Barrier`] whose last arriving thread runs `action` before the others are
    /// released (Python's `Barrier(parties, action, timeout)`). `action` is a function, or a
    /// closure that captures nothing, so that it can run in any process: a capturing closure is
    /// [`Error::NotSpawnable`]. If `action` panics, the barrier breaks (the others get
    /// [`Error::BrokenBarrier`]) and the panic continues in the thread that ran it.
    pub fn barrier_with_action<F>(
        &self,
        parties: u32,
        action: F,
        timeout: Option<Duration>,
    ) -> Result<Barrier>
    where
        F: Fn() + Copy + Send + 'static,
    {
        let _ = action; // named by its type: it is zero-sized
        if std::mem::size_of::<F>() != 0 {
            return Err(Error::NotSpawnable(format!(
                "the barrier action {} captures state: use a function or a closure that captures nothing",
                std::any::type_name::<F>()
            )));
        }
        let entry = EntryOffset::of(barrier_action_entry::<F>);
        Barrier::new(self.start_method(), parties, timeout, Some(entry))
    }
}
