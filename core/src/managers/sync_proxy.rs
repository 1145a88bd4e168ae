//! Proxies of the manager's locks, semaphores, conditions, events, barriers and queues, in the
//! shape of mproc's own: `acquire()` returns a guard, `try_acquire()` and `acquire_timeout(d)`
//! an `Option` of one; `put(x)`, `try_put(x)`, `put_timeout(x, d)` hand the item back when it
//! was not put; `get()`, `try_get()`, `get_timeout(d)`; `wait()` and `wait_timeout(d)`.
//!
//! Every blocking call with a timeout passes it to the manager, and waits for the answer at most
//! that long plus [`REPLY_GRACE`](super::REPLY_GRACE): a stopped manager cannot hold a caller
//! that set a timeout.

use super::client::Wait;
use super::proxy::{arg, typed_proxy, Proxy};
use crate::error::{Error, Result};
use crate::pickle::{Dict, Value};
use crate::queues::PutError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// Seconds, as Python takes them.
fn secs(d: Duration) -> Value {
    Value::Float(d.as_secs_f64())
}

/// Holds a manager lock (or a semaphore's unit, or a condition's lock); releases it when
/// dropped (errors then are ignored: call [`release`](AcquireGuard::release) to see them). It
/// stays on the thread that acquired it: a manager lock is owned by a thread.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AcquireGuard<'a> {
    proxy: &'a Proxy,
    owner_died: bool,
    released: bool,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for AcquireGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireGuard")
            .field("proxy", self.proxy)
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

impl AcquireGuard<'_> {
    /// Whether the previous owner died holding the lock, and the manager released it (CPython's
    /// manager keeps such a lock held for ever). What it protected may be half-changed.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Releases now, reporting a failure (a manager that is gone).
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        release(self.proxy)
    }

    /// Keeps the lock held without a guard; release it later with the proxy's `release()`.
    pub fn forget(mut self) {
        self.released = true;
    }
}

impl Drop for AcquireGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = release(self.proxy);
        }
    }
}

fn release(p: &Proxy) -> Result<()> {
    p.call_unit("release", vec![], Wait::Quick)
}

/// `acquire(blocking, timeout)`: `Some(owner_died)` when acquired.
fn acquire(p: &Proxy, blocking: bool, timeout: Option<Duration>) -> Result<Option<bool>> {
    let mut args = vec![Value::Bool(blocking)];
    if let Some(t) = timeout {
        args.push(secs(t));
    }
    let wait = if blocking {
        Wait::Block(timeout)
    } else {
        Wait::Quick
    };
    let v: Value = p.call_as("acquire", args, wait)?;
    Ok(match v {
        // An mproc manager: (acquired, owner_died).
        Value::Tuple(t) => match &t[..] {
            [ok, died] => ok.is_truthy().then(|| died.is_truthy()),
            _ => None,
        },
        // CPython's manager: a bool.
        other => other.is_truthy().then_some(false),
    })
}

/// The acquire/release methods of lock-like proxies.
macro_rules! acquirer {
    ($name:ident, $what:literal) => {
        impl $name {
            #[doc = concat!("Acquires the ", $what, ", waiting as long as it takes (Python's `with ", $what, ":`).")]
            pub fn acquire(&self) -> Result<AcquireGuard<'_>> {
                let died = acquire(&self.p, true, None)?
                    .ok_or_else(|| Error::Deserialize("a blocking acquire answered False".into()))?;
                Ok(self.guard(died))
            }

            #[doc = concat!("Acquires the ", $what, " if it is free now (`acquire(False)`).")]
            pub fn try_acquire(&self) -> Result<Option<AcquireGuard<'_>>> {
                Ok(acquire(&self.p, false, None)?.map(|d| self.guard(d)))
            }

            #[doc = concat!("Acquires the ", $what, ", waiting at most `timeout` (`acquire(timeout=...)`): `None` when it was not acquired in time.")]
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<AcquireGuard<'_>>> {
                Ok(acquire(&self.p, true, Some(timeout))?.map(|d| self.guard(d)))
            }

            #[doc = concat!("Releases the ", $what, " acquired earlier without a guard (see [`AcquireGuard::forget`]).")]
            pub fn release(&self) -> Result<()> {
                release(&self.p)
            }

            fn guard(&self, owner_died: bool) -> AcquireGuard<'_> {
                AcquireGuard {
                    proxy: &self.p,
                    owner_died,
                    released: false,
                    _not_send: PhantomData,
                }
            }
        }
    };
}

typed_proxy! {
    /// A manager's `Lock` (CPython's `AcquirerProxy` of `threading.Lock`): usable by any process
    /// that connects to the manager, its children or not. Unlike CPython's, a lock whose owner
    /// dies is released by the manager, and the next owner's guard says so
    /// ([`AcquireGuard::owner_died`]). As in Python, any thread may [`release`](LockProxy::release)
    /// a `Lock`.
    LockProxy ["Lock"]
}
acquirer!(LockProxy, "lock");

typed_proxy! {
    /// A manager's `RLock`: reentrant, owned by the thread that acquired it (releasing it from
    /// another is [`Error::NotOwner`]).
    RLockProxy ["RLock"]
}
acquirer!(RLockProxy, "lock");

typed_proxy! {
    /// A manager's `Semaphore` or `BoundedSemaphore` (releasing a bounded one past its initial
    /// value is [`Error::InvalidArgument`], Python's `ValueError`).
    SemaphoreProxy ["Semaphore", "BoundedSemaphore"]
}
acquirer!(SemaphoreProxy, "semaphore");

impl SemaphoreProxy {
    /// `release(n)`: adds `n` units.
    pub fn release_n(&self, n: u32) -> Result<()> {
        self.p
            .call_unit("release", vec![Value::from(n)], Wait::Quick)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::LockProxy {}
    impl Sealed for super::RLockProxy {}
}

/// A manager lock a [`ConditionProxy`] can be built over ([`LockProxy`] or [`RLockProxy`]).
pub trait ManagedLock: sealed::Sealed {
    /// The proxy.
    fn lock_proxy(&self) -> &Proxy;
}

impl ManagedLock for LockProxy {
    fn lock_proxy(&self) -> &Proxy {
        &self.p
    }
}

impl ManagedLock for RLockProxy {
    fn lock_proxy(&self) -> &Proxy {
        &self.p
    }
}

typed_proxy! {
    /// A manager's `Condition` (CPython's `ConditionProxy`), over a new `RLock` or a manager
    /// lock given at creation. `wait` and `notify` need the lock held (acquire it first).
    ConditionProxy ["Condition"]
}
acquirer!(ConditionProxy, "condition's lock");

impl ConditionProxy {
    /// Waits until notified (the lock is released meanwhile and held again on return).
    pub fn wait(&self) -> Result<()> {
        self.p.call_unit("wait", vec![], Wait::Block(None))
    }

    /// Waits until notified or `timeout` passes: whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.p
            .call_as("wait", vec![secs(timeout)], Wait::Block(Some(timeout)))
    }

    /// Waits until `predicate` holds (checked first, then after each notification), or
    /// `timeout` passes: the predicate's last answer (Python's `wait_for`).
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let end = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if predicate() {
                return Ok(true);
            }
            match end {
                None => self.wait()?,
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    /// Wakes one waiter.
    pub fn notify(&self) -> Result<()> {
        self.notify_n(1)
    }

    /// Wakes up to `n` waiters, longest waiting first.
    pub fn notify_n(&self, n: usize) -> Result<()> {
        self.p
            .call_unit("notify", vec![Value::from(n as u64)], Wait::Quick)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.p.call_unit("notify_all", vec![], Wait::Quick)
    }
}

typed_proxy! {
    /// A manager's `Event` (CPython's `EventProxy`).
    EventProxy ["Event"]
}

impl EventProxy {
    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.p.call_as("is_set", vec![], Wait::Quick)
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.p.call_unit("set", vec![], Wait::Quick)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.p.call_unit("clear", vec![], Wait::Quick)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.p.call_unit("wait", vec![], Wait::Block(None))
    }

    /// Waits until the flag is set or `timeout` passes: whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.p
            .call_as("wait", vec![secs(timeout)], Wait::Block(Some(timeout)))
    }
}

typed_proxy! {
    /// A manager's `Barrier` (CPython's `BarrierProxy`): `parties` processes (or threads) wait
    /// until all have arrived. A party whose wait times out, or whose process dies while it
    /// waits, breaks the barrier: the others get [`Error::BrokenBarrier`].
    BarrierProxy ["Barrier"]
}

impl BarrierProxy {
    /// Waits for the other parties: this party's arrival index (`0..parties`).
    pub fn wait(&self) -> Result<usize> {
        self.p.call_as("wait", vec![], Wait::Block(None))
    }

    /// As [`wait`](BarrierProxy::wait), at most `timeout`; a timeout breaks the barrier
    /// ([`Error::BrokenBarrier`], as Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.p
            .call_as("wait", vec![secs(timeout)], Wait::Block(Some(timeout)))
    }

    /// Breaks the barrier: waiters get [`Error::BrokenBarrier`].
    pub fn abort(&self) -> Result<()> {
        self.p.call_unit("abort", vec![], Wait::Quick)
    }

    /// Returns the barrier to its initial state (waiters get [`Error::BrokenBarrier`]).
    pub fn reset(&self) -> Result<()> {
        self.p.call_unit("reset", vec![], Wait::Quick)
    }

    fn attribute<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.p
            .call_as("__getattribute__", vec![Value::from(name)], Wait::Quick)
    }

    /// The number of parties.
    pub fn parties(&self) -> Result<usize> {
        self.attribute("parties")
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> Result<usize> {
        self.attribute("n_waiting")
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        self.attribute("broken")
    }
}

typed_proxy! {
    /// A manager's `Queue` or `JoinableQueue` (CPython's `AutoProxy` of `queue.Queue`, which
    /// has `task_done` and `join` in both cases) of items `T`, through serde.
    QueueProxy ["Queue", "JoinableQueue"] <T = Value>
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_with(&self, item: T, args: Vec<Value>, wait: Wait) -> Result<(), PutError<T>> {
        let v = match arg(&item) {
            Ok(v) => v,
            Err(error) => return Err(PutError { error, item }),
        };
        let mut all = vec![v];
        all.extend(args);
        let method = if matches!(wait, Wait::Quick) {
            "put_nowait"
        } else {
            "put"
        };
        match self.p.call_as::<Value>(method, all, wait) {
            Ok(_) => Ok(()),
            Err(error) => Err(PutError { error, item }),
        }
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_with(item, vec![], Wait::Block(None))
    }

    /// Puts `item` if there is room now; [`Error::Full`] (with the item) otherwise.
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_with(item, vec![], Wait::Quick)
    }

    /// Puts `item`, waiting at most `timeout` for room; [`Error::Full`] (with the item) then.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_with(
            item,
            vec![Value::Bool(true), secs(timeout)],
            Wait::Block(Some(timeout)),
        )
    }

    /// Takes the next item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.p.call_as("get", vec![], Wait::Block(None))
    }

    /// Takes the next item if there is one; [`Error::Empty`] otherwise.
    pub fn try_get(&self) -> Result<T> {
        self.p.call_as("get_nowait", vec![], Wait::Quick)
    }

    /// Takes the next item, waiting at most `timeout`; [`Error::Empty`] then.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.p.call_as(
            "get",
            vec![Value::Bool(true), secs(timeout)],
            Wait::Block(Some(timeout)),
        )
    }

    /// The number of items (`qsize()`).
    pub fn qsize(&self) -> Result<usize> {
        self.p.call_as("qsize", vec![], Wait::Quick)
    }

    /// Whether the queue is empty.
    pub fn empty(&self) -> Result<bool> {
        self.p.call_as("empty", vec![], Wait::Quick)
    }

    /// Whether the queue is full.
    pub fn full(&self) -> Result<bool> {
        self.p.call_as("full", vec![], Wait::Quick)
    }

    /// Marks one item taken earlier as processed (`task_done()`); more calls than items is
    /// [`Error::InvalidArgument`].
    pub fn task_done(&self) -> Result<()> {
        self.p.call_unit("task_done", vec![], Wait::Quick)
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.p.call_unit("join", vec![], Wait::Block(None))
    }

    /// As [`join`](QueueProxy::join), at most `timeout`: whether every item was done in time.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        let mut kwds = Dict::new();
        kwds.insert("timeout".into(), secs(timeout))
            .expect("a str key is hashable");
        let v = self
            .p
            .call_method_blocking("join", vec![], kwds, Some(timeout))?;
        Ok(v.is_truthy())
    }

    /// Shuts the queue down (Python 3.13's `shutdown()`): puts fail, gets drain what is left
    /// and then fail.
    pub fn shutdown(&self) -> Result<()> {
        self.p.call_unit("shutdown", vec![], Wait::Quick)
    }
}
