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
//! ## Blocking, non-blocking and timed
//! Every wait comes in three forms: `acquire()`/`lock()` (or `wait()`) wait as long as it takes,
//! `try_acquire()` never waits, `acquire_timeout(d)` (or `wait_timeout(d)`) waits at most `d`.
//! Acquiring returns a guard that releases on drop (Python's `with lock:`); the guard types are
//! `#[must_use]`, so a guard dropped at once (`lock.acquire()?;`) is a warning.
//!
//! ## Differences from Python, by design
//! - A `Lock` is owned by the thread that acquired it: only that thread may release it
//!   ([`Error::NotOwner`] otherwise). Python's `multiprocessing.Lock` lets another process
//!   release it; owner-based release is what makes dead-owner recovery possible. Use a
//!   [`Semaphore`] of one for a lock released elsewhere.
//! - The guard is the release. For Python's `acquire()` … `release()` in places that a guard's
//!   scope cannot span, [`LockGuard::forget`] gives the guard up and [`Lock::release`] later
//!   releases that hold (and only a hold given up that way).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::region::{io, Deadline, SharedRegion, Wait};
use crate::sys::{self, fnptr::EntryOffset, LockOutcome, Mapping, MUTEX_SIZE};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Mutex core: a robust pthread mutex (which knows its owner: its futex word holds the owner's
// thread id) and, for RLock, the recursion count, written only by the owner.

const COUNT_OFF: usize = MUTEX_SIZE;
/// How many holds of the lock were given up with `forget` (0 or 1 for a `Lock`), written only by
/// the owner: `release` releases only those, never a level a live guard stands for.
const FORGOTTEN_OFF: usize = MUTEX_SIZE + 4;
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
    Error::NotOwner(
        "cannot release un-acquired lock: this thread does not hold it (only the thread that \
         acquired a lock may release it)"
            .into(),
    )
}

#[cold]
fn held_by_guard(what: &str) -> Error {
    Error::NotOwner(format!(
        "cannot release un-acquired lock: this thread holds the {what} through a guard, which \
         releases it when dropped; release() only releases a hold whose guard was given up \
         with forget()"
    ))
}

/// Marker that keeps guards on the thread that acquired (a pthread mutex is owned by a thread).
type NotSend = PhantomData<*const ()>;

// ---------------------------------------------------------------------------------------------
// Lock

/// A non-recursive lock shared between processes (Python's `multiprocessing.Lock`), robust
/// against its owner's death.
///
/// Like every primitive here, a lock lives in a small shared-memory region
/// ([`crate::Context::lock`] and friends make them), is passed to children as a start argument
/// (inherited under `fork`, its descriptor passed under `spawn`/`forkserver`), and can be cloned
/// to share it between threads of one process.
///
/// # Acquiring
/// [`lock`](Lock::lock) (or its Python name [`acquire`](Lock::acquire)) waits and returns a
/// [`LockGuard`]; the lock is released when the guard is dropped, as Python's `with lock:`
/// releases it at the end of the block. [`try_acquire`](Lock::try_acquire) does not wait and
/// [`acquire_timeout`](Lock::acquire_timeout) waits at most a given time; both return `None`
/// when the lock was not taken.
///
/// | Python | mproc |
/// |---|---|
/// | `with lock:` | `let _guard = lock.lock()?;` (released at the end of the scope) |
/// | `lock.acquire(); ...; lock.release()` | `{ let _guard = lock.acquire()?; ... }` |
/// | `lock.acquire(block=False)` | `lock.try_acquire()?` → `Option<LockGuard>` |
/// | `lock.acquire(timeout=t)` | `lock.acquire_timeout(t)?` → `Option<LockGuard>` |
///
/// A guard dropped at once releases at once, so the literal port of `acquire()` … `release()`
/// does not compile under `#![deny(warnings)]` (the guard is `#[must_use]`):
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn f(lock: &mproc::Lock) -> mproc::Result<()> {
///     lock.acquire()?; // error: unused `LockGuard` that must be used
///     println!("not protected: the guard is gone");
///     Ok(())
/// }
/// ```
///
/// Keep the guard for as long as the lock must be held:
///
/// ```
/// #![deny(unused_must_use)]
/// fn f(lock: &mproc::Lock) -> mproc::Result<()> {
///     let _guard = lock.acquire()?;
///     println!("protected until the end of the scope");
///     Ok(())
/// }
/// # f(&mproc::default_context().lock().unwrap()).unwrap();
/// ```
///
/// # Speed
/// The uncontended paths make no system call: a lock is a process-shared `pthread` mutex (an
/// atomic compare-and-swap when free). Thread identities are cached per thread.
///
/// # A lock whose owner died
/// `Lock` and `RLock` are *robust*: when a process (or thread) dies holding one, the kernel marks
/// it, and the next acquire succeeds and reports it: [`LockGuard::owner_died`] (and
/// [`RLockGuard::owner_died`]) is `true`. The data the lock protected may be half-updated; the
/// new owner decides what to do. CPython's lock stays locked forever in this case.
///
/// # Differences from Python, by design
/// - A `Lock` is owned by the thread that acquired it: only that thread may release it
///   ([`Error::NotOwner`] otherwise). Python's `multiprocessing.Lock` lets another process
///   release it; owner-based release is what makes dead-owner recovery possible. Use a
///   [`Semaphore`] of one for a lock released elsewhere.
/// - The guard is the release. For an acquire and a release that no scope can span (Python
///   code that acquires in one function and releases in another), [`LockGuard::forget`] gives
///   the guard up and [`Lock::release`] releases that hold later, from the same thread.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let lock = mproc::default_context().lock()?;
/// {
///     let guard = lock.lock()?;
///     if guard.owner_died() { /* repair what the lock protects */ }
/// } // released here
/// assert!(!lock.locked());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lock {
    region: SharedRegion,
}

/// Holds a [`Lock`]; releases it when dropped. It stays on the thread that acquired the lock
/// (it is not `Send`): a lock is owned by a thread.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let lock = mproc::default_context().lock()?;
/// let guard = lock.lock()?;
/// assert!(lock.is_mine());
/// drop(guard);
/// assert!(!lock.locked());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped: bind it (`let _guard = ...`) for as long as the lock must be held"]
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

    #[inline]
    fn acquire_inner(&self, wait: Wait) -> Result<Option<LockGuard<'_>>> {
        let (block, timeout) = wait.python();
        let map = self.region.map();
        Ok(mutex_acquire(map, block, timeout)?.map(|died| {
            if died {
                // The dead owner may have given its hold up with `forget`: that hold died
                // with it.
                map.u32_at(FORGOTTEN_OFF).store(0, Relaxed);
            }
            LockGuard {
                lock: self,
                owner_died: died,
                _not_send: PhantomData,
            }
        }))
    }

    /// Acquires the lock, waiting as long as it takes (`with lock:`; std's `Mutex::lock`).
    /// Acquiring a lock this thread already holds waits for ever (it is not recursive: see
    /// [`RLock`]), as in Python.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// let _guard = lock.lock()?;
    /// assert!(lock.locked());
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.acquire()
    }

    /// Acquires the lock, waiting as long as it takes: [`lock`](Lock::lock) by Python's name
    /// (`acquire()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// let guard = lock.acquire()?;
    /// drop(guard); // Python's release()
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        loop {
            if let Some(g) = self.acquire_inner(Wait::Forever)? {
                return Ok(g);
            }
        }
    }

    /// Acquires the lock if it is free now (Python's `acquire(block=False)`; std's
    /// `try_lock`): `None` if another thread holds it.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// let held = lock.try_acquire()?.expect("free");
    /// let other = std::thread::scope(|s| {
    ///     s.spawn(|| lock.try_acquire().map(|g| g.is_some())).join().unwrap()
    /// })?;
    /// assert!(!other);
    /// drop(held);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "try_lock")]
    #[must_use = "the lock is released as soon as the guard is dropped"]
    #[inline]
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        self.acquire_inner(Wait::Never)
    }

    /// Acquires the lock, waiting at most `timeout` (Python's `acquire(timeout=t)`;
    /// parking_lot's `try_lock_for`): `None` if it was not free in time.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// match lock.acquire_timeout(Duration::from_secs(1))? {
    ///     Some(_guard) => println!("got it"),
    ///     None => println!("busy for a second: giving up"),
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "try_lock_for")]
    #[must_use = "the lock is released as soon as the guard is dropped"]
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
        self.acquire_inner(Wait::For(timeout))
    }

    /// Releases a hold of this thread whose guard was given up with
    /// [`forget`](LockGuard::forget) (Python's `release()`, for an acquire and a release that
    /// no scope can span). [`Error::NotOwner`] if this thread does not hold the lock, or holds
    /// it through a live guard (the guard is the release then).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// lock.acquire()?.forget(); // held without a guard, as after Python's acquire()
    /// lock.release()?;          // Python's release()
    /// assert!(lock.release().is_err()); // not held any more
    /// # Ok(()) }
    /// ```
    pub fn release(&self) -> Result<()> {
        let map = self.region.map();
        if !map.mutex_is_mine(0) {
            return Err(not_owner());
        }
        let forgotten = map.u32_at(FORGOTTEN_OFF);
        if forgotten.load(Relaxed) == 0 {
            return Err(held_by_guard("lock"));
        }
        forgotten.store(0, Relaxed);
        mutex_release(map)?;
        map.unpin();
        Ok(())
    }

    /// Whether the lock is held by anyone (Python's `locked()`). A lock whose owner died
    /// holding it is not: the next acquire takes it at once (and reports
    /// [`owner_died`](LockGuard::owner_died)).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// assert!(!lock.locked());
    /// # Ok(()) }
    /// ```
    pub fn locked(&self) -> bool {
        self.region.map().mutex_is_locked(0)
    }

    /// Whether the calling thread holds the lock.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// let _g = lock.lock()?;
    /// assert!(lock.is_mine());
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn is_mine(&self) -> bool {
        self.region.map().mutex_is_mine(0)
    }

    /// The start method of the context that made this lock.
    ///
    /// ```
    /// use mproc::StartMethod;
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::get_context(StartMethod::Fork).lock()?;
    /// assert_eq!(lock.start_method(), StartMethod::Fork);
    /// # Ok(()) }
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }

    /// Releases the lock for a condition wait; returns the forgotten-hold count to restore.
    fn release_for_wait(&self) -> Result<u32> {
        let map = self.region.map();
        let forgotten = map.u32_at(FORGOTTEN_OFF).swap(0, Relaxed);
        if let Err(e) = mutex_release(map) {
            map.u32_at(FORGOTTEN_OFF).store(forgotten, Relaxed);
            return Err(e);
        }
        Ok(forgotten)
    }

    /// Takes the lock back after a condition wait.
    fn restore_after_wait(&self, forgotten: u32) -> Result<()> {
        let map = self.region.map();
        mutex_acquire(map, true, None)?;
        map.u32_at(FORGOTTEN_OFF).store(forgotten, Relaxed);
        Ok(())
    }
}

impl LockGuard<'_> {
    /// Whether the previous owner died while holding the lock (CPython would have stayed locked
    /// forever). The guarded data may be inconsistent.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// assert!(!lock.lock()?.owner_died());
    /// # Ok(()) }
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Gives the guard up and keeps the lock held (Python's bare `acquire()`); release the
    /// hold later with [`Lock::release`], from this same thread. If the thread ends without
    /// releasing it, the lock's next owner is told the owner died.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// lock.acquire()?.forget();
    /// assert!(lock.locked());
    /// lock.release()?;
    /// # Ok(()) }
    /// ```
    pub fn forget(self) {
        let map = self.lock.region.map();
        map.u32_at(FORGOTTEN_OFF).store(1, Relaxed);
        // The lock's shared memory must stay mapped while it is held, even if every handle to
        // the lock is dropped meanwhile.
        map.pin();
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
/// against its owner's death, like [`Lock`], and acquired the same ways: [`lock`](RLock::lock)
/// or [`acquire`](RLock::acquire), [`try_acquire`](RLock::try_acquire),
/// [`acquire_timeout`](RLock::acquire_timeout), each level a guard.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let rlock = mproc::default_context().rlock()?;
/// let outer = rlock.lock()?;
/// let inner = rlock.lock()?; // the owner may take it again
/// assert_eq!(rlock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert_eq!(rlock.count(), 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RLock {
    region: SharedRegion,
}

/// Holds one level of an [`RLock`]; releases that level when dropped.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let rlock = mproc::default_context().rlock()?;
/// let guard = rlock.acquire()?;
/// assert!(!guard.owner_died());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the level is released as soon as the guard is dropped: bind it (`let _guard = ...`) for as long as the lock must be held"]
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

    #[inline]
    fn acquire_inner(&self, wait: Wait) -> Result<Option<RLockGuard<'_>>> {
        let map = self.region.map();
        let count = map.u32_at(COUNT_OFF);
        let died = if map.mutex_is_mine(0) {
            // Only the owner writes the count.
            count.store(count.load(Relaxed) + 1, Relaxed);
            false
        } else {
            let (block, timeout) = wait.python();
            match mutex_acquire(map, block, timeout)? {
                None => return Ok(None),
                Some(died) => {
                    count.store(1, Relaxed);
                    if died {
                        // The dead owner's forgotten levels died with it.
                        map.u32_at(FORGOTTEN_OFF).store(0, Relaxed);
                    }
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

    /// Acquires one level, waiting as long as it takes (`with rlock:`); at once if this thread
    /// owns the lock already.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// let _a = rlock.lock()?;
    /// let _b = rlock.lock()?;
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn lock(&self) -> Result<RLockGuard<'_>> {
        self.acquire()
    }

    /// Acquires one level, waiting as long as it takes: [`lock`](RLock::lock) by Python's name.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// let _g = rlock.acquire()?;
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn acquire(&self) -> Result<RLockGuard<'_>> {
        loop {
            if let Some(g) = self.acquire_inner(Wait::Forever)? {
                return Ok(g);
            }
        }
    }

    /// Acquires one level if this thread owns the lock or it is free now (Python's
    /// `acquire(block=False)`): `None` if another thread holds it.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// let _a = rlock.lock()?;
    /// assert!(rlock.try_acquire()?.is_some()); // ours: taken again at once
    /// # Ok(()) }
    /// ```
    #[doc(alias = "try_lock")]
    #[must_use = "the level is released as soon as the guard is dropped"]
    #[inline]
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>> {
        self.acquire_inner(Wait::Never)
    }

    /// Acquires one level, waiting at most `timeout` (Python's `acquire(timeout=t)`): `None`
    /// if the lock was not free in time.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// assert!(rlock.acquire_timeout(Duration::from_millis(10))?.is_some());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "try_lock_for")]
    #[must_use = "the level is released as soon as the guard is dropped"]
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<RLockGuard<'_>>> {
        self.acquire_inner(Wait::For(timeout))
    }

    /// Releases one level of this thread whose guard was given up with
    /// [`forget`](RLockGuard::forget) (Python's `release()`). [`Error::NotOwner`] if this
    /// thread does not own the lock, or holds every level through a live guard.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// rlock.acquire()?.forget();
    /// rlock.acquire()?.forget();
    /// rlock.release()?;
    /// rlock.release()?;
    /// assert_eq!(rlock.count(), 0);
    /// # Ok(()) }
    /// ```
    pub fn release(&self) -> Result<()> {
        let map = self.region.map();
        if !map.mutex_is_mine(0) {
            return Err(not_owner());
        }
        let forgotten = map.u32_at(FORGOTTEN_OFF);
        let n = forgotten.load(Relaxed);
        if n == 0 {
            return Err(held_by_guard("rlock"));
        }
        forgotten.store(n - 1, Relaxed);
        self.release_level()?;
        map.unpin();
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
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// let _g = rlock.lock()?;
    /// assert_eq!(rlock.count(), 1);
    /// # Ok(()) }
    /// ```
    pub fn count(&self) -> u32 {
        self.region.map().u32_at(COUNT_OFF).load(Relaxed)
    }

    /// Whether the calling thread owns the lock.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// assert!(!rlock.is_mine());
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn is_mine(&self) -> bool {
        self.region.map().mutex_is_mine(0)
    }

    /// The start method of the context that made this lock.
    ///
    /// ```
    /// use mproc::StartMethod;
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::get_context(StartMethod::Spawn).rlock()?;
    /// assert_eq!(rlock.start_method(), StartMethod::Spawn);
    /// # Ok(()) }
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }

    /// Releases every level (for `Condition::wait`); returns the count and the forgotten count
    /// to restore.
    fn release_all(&self) -> Result<(u32, u32)> {
        let map = self.region.map();
        if !map.mutex_is_mine(0) {
            return Err(not_owner());
        }
        let count = map.u32_at(COUNT_OFF).swap(0, Relaxed);
        let forgotten = map.u32_at(FORGOTTEN_OFF).swap(0, Relaxed);
        if let Err(e) = mutex_release(map) {
            map.u32_at(COUNT_OFF).store(count, Relaxed);
            map.u32_at(FORGOTTEN_OFF).store(forgotten, Relaxed);
            return Err(e);
        }
        Ok((count, forgotten))
    }

    fn restore(&self, (count, forgotten): (u32, u32)) -> Result<()> {
        let map = self.region.map();
        mutex_acquire(map, true, None)?;
        map.u32_at(COUNT_OFF).store(count, Relaxed);
        map.u32_at(FORGOTTEN_OFF).store(forgotten, Relaxed);
        Ok(())
    }
}

impl RLockGuard<'_> {
    /// Whether the previous owner died while holding the lock (see [`LockGuard::owner_died`]).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// assert!(!rlock.lock()?.owner_died());
    /// # Ok(()) }
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Gives the guard up and keeps this level held; release it later with
    /// [`RLock::release`], from this same thread.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// rlock.lock()?.forget();
    /// assert_eq!(rlock.count(), 1);
    /// rlock.release()?;
    /// # Ok(()) }
    /// ```
    pub fn forget(self) {
        let map = self.lock.region.map();
        // Only the owner writes it.
        let forgotten = map.u32_at(FORGOTTEN_OFF);
        forgotten.store(forgotten.load(Relaxed) + 1, Relaxed);
        // See LockGuard::forget.
        map.pin();
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
///
/// [`acquire`](Semaphore::acquire) waits for a unit and returns a [`SemaphoreGuard`] that gives
/// it back when dropped; [`try_acquire`](Semaphore::try_acquire) does not wait,
/// [`acquire_timeout`](Semaphore::acquire_timeout) waits at most a given time. A unit may also
/// be taken for good ([`SemaphoreGuard::forget`]) and given back by anyone, any number at a
/// time ([`release`](Semaphore::release)), as Python's `acquire()` and `release()`.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let sem = mproc::default_context().semaphore(2)?;
/// let a = sem.acquire()?;
/// let b = sem.acquire()?;
/// assert!(sem.try_acquire()?.is_none()); // both units are taken
/// drop((a, b));
/// assert_eq!(sem.get_value(), 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Semaphore {
    region: SharedRegion,
}

/// Holds one unit of a [`Semaphore`] (or [`BoundedSemaphore`]); gives it back when dropped.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let sem = mproc::default_context().semaphore(1)?;
/// {
///     let _unit = sem.acquire()?;
///     assert_eq!(sem.get_value(), 0);
/// }
/// assert_eq!(sem.get_value(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the unit is given back as soon as the guard is dropped: bind it (`let _unit = ...`), or keep it with `forget()`"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    pub(crate) fn new(method: StartMethod, value: u32, bound: Option<u32>) -> Result<Semaphore> {
        let region = SharedRegion::new("semaphore", SEM_SIZE, method, |_| Ok(()))?;
        sem_init(region.map(), 0, value, bound);
        Ok(Semaphore { region })
    }

    fn acquire_inner(&self, wait: Wait) -> Result<Option<SemaphoreGuard<'_>>> {
        let (block, timeout) = wait.python();
        // The guard is made only for a unit taken: dropping one gives a unit back.
        if sem_acquire(self.region.map(), 0, block, Deadline::after(timeout))? {
            Ok(Some(SemaphoreGuard { sem: self }))
        } else {
            Ok(None)
        }
    }

    /// Takes one unit, waiting as long as it takes (Python's `acquire()`, `with sem:`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::default_context().semaphore(1)?;
    /// let _unit = sem.acquire()?;
    /// # Ok(()) }
    /// ```
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        loop {
            if let Some(g) = self.acquire_inner(Wait::Forever)? {
                return Ok(g);
            }
        }
    }

    /// Takes one unit if there is one now (Python's `acquire(block=False)`): `None` if not.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::default_context().semaphore(0)?;
    /// assert!(sem.try_acquire()?.is_none());
    /// # Ok(()) }
    /// ```
    #[must_use = "the unit is given back as soon as the guard is dropped"]
    pub fn try_acquire(&self) -> Result<Option<SemaphoreGuard<'_>>> {
        self.acquire_inner(Wait::Never)
    }

    /// Takes one unit, waiting at most `timeout` (Python's `acquire(timeout=t)`): `None` if
    /// none came in time.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::default_context().semaphore(0)?;
    /// assert!(sem.acquire_timeout(Duration::from_millis(10))?.is_none());
    /// # Ok(()) }
    /// ```
    #[must_use = "the unit is given back as soon as the guard is dropped"]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<SemaphoreGuard<'_>>> {
        self.acquire_inner(Wait::For(timeout))
    }

    /// Gives back `n` units (Python's `release(n)`), waking up to `n` waiters; any process may.
    /// For a bounded semaphore, going above the initial value is [`Error::InvalidArgument`]
    /// ("Semaphore released too many times") and changes nothing.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::default_context().semaphore(0)?;
    /// sem.release(2)?;
    /// assert_eq!(sem.get_value(), 2);
    /// # Ok(()) }
    /// ```
    pub fn release(&self, n: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::InvalidArgument(
                "Semaphore.release(n): n must be one or more".into(),
            ));
        }
        sem_release(self.region.map(), 0, n)
    }

    /// The current value (Python's `get_value()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// assert_eq!(mproc::default_context().semaphore(3)?.get_value(), 3);
    /// # Ok(()) }
    /// ```
    pub fn get_value(&self) -> u32 {
        self.region.map().u32_at(0).load(Relaxed)
    }

    /// The start method of the context that made this semaphore.
    ///
    /// ```
    /// use mproc::StartMethod;
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::get_context(StartMethod::Fork).semaphore(1)?;
    /// assert_eq!(sem.start_method(), StartMethod::Fork);
    /// # Ok(()) }
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the unit taken (Python's bare `acquire()`); anyone may give it back with
    /// [`Semaphore::release`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::default_context().semaphore(1)?;
    /// sem.acquire()?.forget();
    /// assert_eq!(sem.get_value(), 0);
    /// sem.release(1)?;
    /// # Ok(()) }
    /// ```
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
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let sem = mproc::default_context().bounded_semaphore(1)?;
/// assert!(sem.release(1).is_err()); // already at its initial value
/// let _unit = sem.acquire()?;
/// # Ok(()) }
/// ```
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
/// wakes every waiter; [`wait`](Event::wait) returns at once while it is set, and
/// [`wait_timeout`](Event::wait_timeout) waits at most a given time.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let ready = mproc::default_context().event()?;
/// std::thread::scope(|s| {
///     s.spawn(|| ready.set());
///     ready.wait()
/// })?;
/// assert!(ready.is_set());
/// # Ok(()) }
/// ```
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
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// assert!(!mproc::default_context().event()?.is_set());
    /// # Ok(()) }
    /// ```
    pub fn is_set(&self) -> bool {
        self.region.map().u32_at(0).load(Acquire) == 1
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let e = mproc::default_context().event()?;
    /// e.set();
    /// assert!(e.is_set());
    /// # Ok(()) }
    /// ```
    pub fn set(&self) {
        let map = self.region.map();
        map.u32_at(0).store(1, SeqCst);
        if map.u32_at(4).load(SeqCst) > 0 {
            sys::futex_wake(map.u32_at(0), u32::MAX);
        }
    }

    /// Clears the flag.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let e = mproc::default_context().event()?;
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// # Ok(()) }
    /// ```
    pub fn clear(&self) {
        self.region.map().u32_at(0).store(0, SeqCst);
    }

    /// Waits until the flag is set (Python's `wait()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let e = mproc::default_context().event()?;
    /// e.set();
    /// e.wait()?; // set: returns at once
    /// # Ok(()) }
    /// ```
    pub fn wait(&self) -> Result<()> {
        self.wait_inner(None).map(drop)
    }

    /// Waits at most `timeout` for the flag; returns whether it is set (false: the time
    /// passed), as Python's `wait(timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let e = mproc::default_context().event()?;
    /// assert!(!e.wait_timeout(Duration::from_millis(10))?);
    /// # Ok(()) }
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<bool> {
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
    ///
    /// ```
    /// use mproc::StartMethod;
    /// # fn main() -> mproc::Result<()> {
    /// let e = mproc::get_context(StartMethod::Forkserver).event()?;
    /// assert_eq!(e.start_method(), StartMethod::Forkserver);
    /// # Ok(()) }
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

// ---------------------------------------------------------------------------------------------
// Condition

/// The lock a [`Condition`] uses: a [`Lock`] or an [`RLock`] (Python's default). Both convert
/// into it with `into()`.
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let ctx = mproc::default_context();
/// let cond = ctx.condition_with(ctx.lock()?)?;
/// assert!(matches!(cond.get_lock(), mproc::ConditionLock::Lock(_)));
/// # Ok(()) }
/// ```
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
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let cond = mproc::default_context().condition()?;
/// let guard = cond.lock()?;
/// assert!(!guard.owner_died());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped: bind it (`let _guard = ...`) for as long as the lock must be held"]
pub enum ConditionGuard<'a> {
    /// The condition's lock is a [`Lock`].
    Lock(LockGuard<'a>),
    /// The condition's lock is an [`RLock`].
    RLock(RLockGuard<'a>),
}

impl ConditionGuard<'_> {
    /// Whether the lock's previous owner died holding it.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// assert!(!cond.lock()?.owner_died());
    /// # Ok(()) }
    /// ```
    pub fn owner_died(&self) -> bool {
        match self {
            ConditionGuard::Lock(g) => g.owner_died(),
            ConditionGuard::RLock(g) => g.owner_died(),
        }
    }

    /// Gives the guard up and keeps the lock held (see [`LockGuard::forget`]); release it later
    /// with the lock's `release()` ([`Condition::get_lock`]).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// cond.acquire()?.forget();
    /// match cond.get_lock() {
    ///     mproc::ConditionLock::Lock(l) => l.release()?,
    ///     mproc::ConditionLock::RLock(l) => l.release()?,
    /// }
    /// # Ok(()) }
    /// ```
    pub fn forget(self) {
        match self {
            ConditionGuard::Lock(g) => g.forget(),
            ConditionGuard::RLock(g) => g.forget(),
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
///
/// # Waiting
/// [`wait`](Condition::wait) and [`wait_for`](Condition::wait_for) wait as long as it takes;
/// [`wait_timeout`](Condition::wait_timeout) and
/// [`wait_for_timeout`](Condition::wait_for_timeout) at most a given time, and return whether
/// they were woken (or the predicate became true). The calling thread must hold the lock
/// ([`lock`](Condition::lock)), or it is [`Error::NotOwner`].
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let ctx = mproc::default_context();
/// let cond = ctx.condition()?;
/// let items = ctx.value(0u32)?;
/// std::thread::scope(|s| {
///     s.spawn(|| -> mproc::Result<()> {
///         let _g = cond.lock()?;
///         items.set(1);
///         cond.notify_one()
///     });
///     let _g = cond.lock()?;
///     cond.wait_for(|| items.get() > 0)
/// })?;
/// # Ok(()) }
/// ```
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
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// assert!(matches!(cond.get_lock(), mproc::ConditionLock::RLock(_))); // Python's default
    /// # Ok(()) }
    /// ```
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    fn acquire_inner(&self, wait: Wait) -> Result<Option<ConditionGuard<'_>>> {
        Ok(match &self.lock {
            ConditionLock::Lock(l) => l.acquire_inner(wait)?.map(ConditionGuard::Lock),
            ConditionLock::RLock(l) => l.acquire_inner(wait)?.map(ConditionGuard::RLock),
        })
    }

    /// Acquires the underlying lock, waiting as long as it takes (`with cond:`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// cond.notify_all()?;
    /// # Ok(()) }
    /// ```
    pub fn lock(&self) -> Result<ConditionGuard<'_>> {
        self.acquire()
    }

    /// Acquires the underlying lock, waiting as long as it takes: [`lock`](Condition::lock) by
    /// Python's name.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.acquire()?;
    /// # Ok(()) }
    /// ```
    pub fn acquire(&self) -> Result<ConditionGuard<'_>> {
        loop {
            if let Some(g) = self.acquire_inner(Wait::Forever)? {
                return Ok(g);
            }
        }
    }

    /// Acquires the underlying lock if it is free now (or, for an [`RLock`], this thread's);
    /// `None` otherwise.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// assert!(cond.try_acquire()?.is_some());
    /// # Ok(()) }
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn try_acquire(&self) -> Result<Option<ConditionGuard<'_>>> {
        self.acquire_inner(Wait::Never)
    }

    /// Acquires the underlying lock, waiting at most `timeout`; `None` if it was not free in
    /// time.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// assert!(cond.acquire_timeout(Duration::from_millis(10))?.is_some());
    /// # Ok(()) }
    /// ```
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<ConditionGuard<'_>>> {
        self.acquire_inner(Wait::For(timeout))
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

    /// Releases the lock (all levels of an RLock), waits until notified, then re-acquires it
    /// (Python's `wait()`). The calling thread must hold the lock ([`Error::NotOwner`]
    /// otherwise). As with every condition variable, a wait may end without the condition
    /// being true: check it again, or use [`wait_for`](Condition::wait_for).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let ctx = mproc::default_context();
    /// let (cond, done) = (ctx.condition()?, ctx.event()?);
    /// std::thread::scope(|s| {
    ///     s.spawn(|| -> mproc::Result<()> {
    ///         let _g = cond.lock()?;
    ///         done.set();
    ///         cond.notify_all()
    ///     });
    ///     let _g = cond.lock()?;
    ///     while !done.is_set() {
    ///         cond.wait()?;
    ///     }
    ///     Ok::<(), mproc::Error>(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn wait(&self) -> Result<()> {
        self.wait_inner(None).map(drop)
    }

    /// As [`wait`](Condition::wait), for at most `timeout` (Python's `wait(timeout)`): returns
    /// false if the time passed before a notification came.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// assert!(!cond.wait_timeout(Duration::from_millis(10))?); // nobody notifies
    /// # Ok(()) }
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<bool> {
        if !self.lock.is_mine() {
            return Err(Error::NotOwner(
                "cannot wait on un-acquired lock: take the condition's lock first \
                 (`let _guard = cond.lock()?;`)"
                    .into(),
            ));
        }
        let (t, o, waiting) = self.claim()?;
        let state = t.u32_at(o + SLOT_STATE);
        let leaving = (waiting & !STATE_MASK) | LEAVING;
        let released = match &self.lock {
            ConditionLock::Lock(l) => l.release_for_wait().map(|f| (0, f)),
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
            ConditionLock::Lock(l) => l.restore_after_wait(saved.1),
            ConditionLock::RLock(l) => l.restore(saved),
        };
        let woke = outcome?;
        relocked?;
        Ok(woke)
    }

    /// Waits until `predicate` is true (Python's `wait_for(predicate)`): checks it, and waits
    /// for a notification each time it is false. The calling thread must hold the lock.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// cond.wait_for(|| true)?; // true already: no wait
    /// # Ok(()) }
    /// ```
    pub fn wait_for(&self, predicate: impl FnMut() -> bool) -> Result<()> {
        self.wait_for_inner(predicate, None).map(drop)
    }

    /// As [`wait_for`](Condition::wait_for), for at most `timeout` overall (Python's
    /// `wait_for(predicate, timeout)`); returns the predicate's last value.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// assert!(!cond.wait_for_timeout(|| false, Duration::from_millis(10))?);
    /// # Ok(()) }
    /// ```
    pub fn wait_for_timeout(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool> {
        self.wait_for_inner(predicate, Some(timeout))
    }

    fn wait_for_inner(
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
            self.wait_inner(deadline.remaining())?;
            result = predicate();
        }
        Ok(result)
    }

    /// Wakes the longest-waiting thread, if any (Python's `notify()`). The calling thread must
    /// hold the lock.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// cond.notify_one()?; // nobody waits: nothing happens
    /// # Ok(()) }
    /// ```
    pub fn notify_one(&self) -> Result<()> {
        self.notify(1)
    }

    /// Wakes up to `n` of the waiting threads, the longest-waiting first, without waiting for
    /// them (see the type's docs; Python's `notify(n)`). The calling thread must hold the lock.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// cond.notify(2)?;
    /// # Ok(()) }
    /// ```
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.is_mine() {
            return Err(Error::NotOwner(
                "cannot notify on un-acquired lock: take the condition's lock first \
                 (`let _guard = cond.lock()?;`)"
                    .into(),
            ));
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

    /// Wakes every waiting thread (Python's `notify_all()`). The calling thread must hold the
    /// lock.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// cond.notify_all()?;
    /// # Ok(()) }
    /// ```
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    /// The start method of the context that made this condition.
    ///
    /// ```
    /// use mproc::StartMethod;
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::get_context(StartMethod::Spawn).condition()?;
    /// assert_eq!(cond.start_method(), StartMethod::Spawn);
    /// # Ok(()) }
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

// ---------------------------------------------------------------------------------------------
// Barrier

/// A barrier for a fixed number of parties (Python's `multiprocessing.Barrier`, that is,
/// `threading.Barrier` over shared state): each [`wait`](Barrier::wait) blocks until `parties`
/// threads wait, then all go on. [`abort`](Barrier::abort), a timeout
/// ([`wait_timeout`](Barrier::wait_timeout), or the barrier's default timeout) or a
/// [`reset`](Barrier::reset) while threads wait break it ([`Error::BrokenBarrier`]). A default
/// timeout and an action are set with [`Context::barrier_builder`].
///
/// ```
/// # fn main() -> mproc::Result<()> {
/// let barrier = mproc::default_context().barrier(2)?;
/// let indices = std::thread::scope(|s| {
///     let other = s.spawn(|| barrier.wait());
///     let mine = barrier.wait();
///     [mine, other.join().unwrap()]
/// });
/// let mut got: Vec<u32> = indices.into_iter().collect::<mproc::Result<_>>()?;
/// got.sort();
/// assert_eq!(got, [0, 1]); // each party gets its own arrival index
/// # Ok(()) }
/// ```
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
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// assert_eq!(mproc::default_context().barrier(3)?.parties(), 3);
    /// # Ok(()) }
    /// ```
    pub fn parties(&self) -> u32 {
        self.region.map().u32_at(8).load(Relaxed)
    }

    /// The number of threads waiting now.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// assert_eq!(mproc::default_context().barrier(3)?.n_waiting(), 0);
    /// # Ok(()) }
    /// ```
    pub fn n_waiting(&self) -> u32 {
        let _g = self.cond.lock();
        if self.state() == FILLING {
            self.count()
        } else {
            0
        }
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context().barrier(2)?;
    /// b.abort()?;
    /// assert!(b.broken());
    /// # Ok(()) }
    /// ```
    pub fn broken(&self) -> bool {
        let _g = self.cond.lock();
        self.state() == BROKEN
    }

    /// Waits for the other parties (Python's `wait()`), for at most the barrier's default
    /// timeout if it has one ([`BarrierBuilder::timeout`]). Returns this thread's arrival
    /// index, `0` to `parties - 1` (distinct for each thread). A timeout breaks the barrier;
    /// every waiter then gets [`Error::BrokenBarrier`].
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let alone = mproc::default_context().barrier(1)?;
    /// assert_eq!(alone.wait()?, 0); // one party: passes at once
    /// # Ok(()) }
    /// ```
    pub fn wait(&self) -> Result<u32> {
        self.wait_inner(self.timeout)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout` (Python's `wait(timeout)`): when it
    /// passes, the barrier breaks and this is [`Error::BrokenBarrier`].
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context().barrier(2)?;
    /// let r = b.wait_timeout(Duration::from_millis(10)); // the other party never comes
    /// assert!(matches!(r, Err(mproc::Error::BrokenBarrier)));
    /// # Ok(()) }
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<u32> {
        let _g = self.cond.lock()?;
        // Block while the barrier drains or resets.
        while matches!(self.state(), RESETTING | DRAINING) {
            self.cond.wait()?;
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
            match self
                .cond
                .wait_for_inner(|| self.state() != FILLING, timeout)
            {
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
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context().barrier(2)?;
    /// b.abort()?;
    /// b.reset()?;
    /// assert!(!b.broken());
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context().barrier(2)?;
    /// b.abort()?;
    /// assert!(b.wait().is_err());
    /// # Ok(()) }
    /// ```
    pub fn abort(&self) -> Result<()> {
        let _g = self.cond.lock()?;
        self.set_state(BROKEN);
        self.cond.notify_all()
    }

    /// The start method of the context that made this barrier.
    ///
    /// ```
    /// use mproc::StartMethod;
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::get_context(StartMethod::Fork).barrier(1)?;
    /// assert_eq!(b.start_method(), StartMethod::Fork);
    /// # Ok(()) }
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.region.method()
    }
}

// ---------------------------------------------------------------------------------------------
// Context methods

/// Makes a [`Barrier`] with a default timeout or an action (Python's `Barrier(parties,
/// action, timeout)`): [`Context::barrier_builder`].
///
/// ```
/// use std::time::Duration;
///
/// fn all_arrived() {
///     println!("everyone is here");
/// }
///
/// # fn main() -> mproc::Result<()> {
/// let barrier = mproc::default_context()
///     .barrier_builder(1)
///     .action(all_arrived)
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// barrier.wait()?; // the last to arrive runs the action
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BarrierBuilder {
    method: StartMethod,
    parties: u32,
    timeout: Option<Duration>,
    action: Result<Option<EntryOffset>>,
}

impl BarrierBuilder {
    /// The default timeout of [`Barrier::wait`] (none unless set).
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context()
    ///     .barrier_builder(2)
    ///     .timeout(Duration::from_millis(10))
    ///     .build()?;
    /// assert!(b.wait().is_err()); // the other party never comes: broken after 10 ms
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The action the last thread to arrive runs before the others are released. `action` is
    /// a function, or a closure that captures nothing, so that it can run in any process: a
    /// capturing closure makes [`build`](BarrierBuilder::build) fail with
    /// [`Error::NotSpawnable`]. If `action` panics, the barrier breaks (the others get
    /// [`Error::BrokenBarrier`]) and the panic continues in the thread that ran it.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context().barrier_builder(1).action(|| println!("go")).build()?;
    /// b.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn action<F>(mut self, action: F) -> Self
    where
        F: Fn() + Copy + Send + 'static,
    {
        let _ = action; // named by its type: it is zero-sized
        self.action = if std::mem::size_of::<F>() != 0 {
            Err(Error::NotSpawnable(format!(
                "the barrier action {} captures state, so it cannot run in another process: \
                 use a function or a closure that captures nothing",
                std::any::type_name::<F>()
            )))
        } else {
            Ok(Some(EntryOffset::of(barrier_action_entry::<F>)))
        };
        self
    }

    /// Makes the barrier. Errors: [`Error::InvalidArgument`] for zero parties,
    /// [`Error::NotSpawnable`] for an action that captures state.
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// assert!(mproc::default_context().barrier_builder(0).build().is_err());
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<Barrier> {
        Barrier::new(self.method, self.parties, self.timeout, self.action?)
    }
}

impl Context {
    /// A new [`Lock`] (Python's `ctx.Lock()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let lock = mproc::default_context().lock()?;
    /// let _guard = lock.lock()?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "Lock")]
    pub fn lock(&self) -> Result<Lock> {
        Lock::new(self.start_method())
    }

    /// A new [`RLock`] (Python's `ctx.RLock()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let rlock = mproc::default_context().rlock()?;
    /// let _guard = rlock.lock()?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "RLock")]
    pub fn rlock(&self) -> Result<RLock> {
        RLock::new(self.start_method())
    }

    /// A new [`Semaphore`] with `value` units (Python's `ctx.Semaphore(value)`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::default_context().semaphore(4)?;
    /// let _unit = sem.acquire()?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "Semaphore")]
    pub fn semaphore(&self, value: u32) -> Result<Semaphore> {
        Semaphore::new(self.start_method(), value, None)
    }

    /// A new [`BoundedSemaphore`] with `value` units (Python's `ctx.BoundedSemaphore(value)`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let sem = mproc::default_context().bounded_semaphore(2)?;
    /// assert_eq!(sem.get_value(), 2);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "BoundedSemaphore")]
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore(Semaphore::new(
            self.start_method(),
            value,
            Some(value),
        )?))
    }

    /// A new [`Condition`] over a new [`RLock`] (Python's `ctx.Condition()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let cond = mproc::default_context().condition()?;
    /// let _g = cond.lock()?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "Condition")]
    pub fn condition(&self) -> Result<Condition> {
        Condition::new(self.start_method(), None)
    }

    /// A new [`Condition`] over `lock`, a [`Lock`] or an [`RLock`] (Python's
    /// `ctx.Condition(lock)`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let ctx = mproc::default_context();
    /// let lock = ctx.lock()?;
    /// let cond = ctx.condition_with(lock.clone())?;
    /// let _g = cond.lock()?;
    /// assert!(lock.is_mine()); // the same lock
    /// # Ok(()) }
    /// ```
    pub fn condition_with(&self, lock: impl Into<ConditionLock>) -> Result<Condition> {
        Condition::new(self.start_method(), Some(lock.into()))
    }

    /// A new [`Event`], initially clear (Python's `ctx.Event()`).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let e = mproc::default_context().event()?;
    /// assert!(!e.is_set());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "Event")]
    pub fn event(&self) -> Result<Event> {
        Event::new(self.start_method())
    }

    /// A new [`Barrier`] for `parties` threads (at least 1), without a default timeout or an
    /// action (Python's `ctx.Barrier(parties)`; with them: [`barrier_builder`](Context::barrier_builder)).
    ///
    /// ```
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context().barrier(1)?;
    /// b.wait()?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "Barrier")]
    pub fn barrier(&self, parties: u32) -> Result<Barrier> {
        self.barrier_builder(parties).build()
    }

    /// A builder for a [`Barrier`] with a default timeout or an action (Python's
    /// `ctx.Barrier(parties, action, timeout)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> mproc::Result<()> {
    /// let b = mproc::default_context()
    ///     .barrier_builder(4)
    ///     .timeout(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn barrier_builder(&self, parties: u32) -> BarrierBuilder {
        BarrierBuilder {
            method: self.start_method(),
            parties,
            timeout: None,
            action: Ok(None),
        }
    }
}
