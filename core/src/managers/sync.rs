//! The manager's synchronisation objects and queue, as Python's `threading` and `queue` behave:
//! `Lock` and `RLock` ([`LockCore`]), `Semaphore`/`BoundedSemaphore`, `Condition`, `Event`,
//! `Barrier`, and `queue.Queue`.
//!
//! Each is a mutex and condition variables in the server. A server thread that blocks on behalf
//! of a client (in `acquire`, `wait`, `get`, `put`, `join`) watches that client while it waits
//! ([`Host::watch`](super::objects::Host::watch)): when the client hangs up or its process dies,
//! the wait ends at once and takes nothing. Beyond CPython, a lock keeps its owner (an mproc
//! client's thread, or a CPython client's connection), so that the server can release the lock
//! when that owner dies, and tell the next owner.

use super::call::{no_attribute, Call, Out, Owner, Undo, R};
use super::pyops::{self, Args};
use super::wire::PyErr;
use crate::pickle::{Dict, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// How a wait ended.
enum Waited<T> {
    Ready(T),
    TimedOut,
    Cancelled,
}

/// Waits on `cv` until `ready` gives a value, the deadline passes, or the caller is cancelled.
/// The caller's connection is watched from the first time the wait blocks.
fn wait_for<'a, S, T>(
    cv: &Condvar,
    mut g: MutexGuard<'a, S>,
    call: &Call<'_>,
    deadline: Option<Instant>,
    mut ready: impl FnMut(&mut S) -> Option<T>,
) -> (MutexGuard<'a, S>, Waited<T>) {
    let mut watch = None;
    loop {
        if let Some(t) = ready(&mut g) {
            return (g, Waited::Ready(t));
        }
        if call.cancel.is_set() {
            return (g, Waited::Cancelled);
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return (g, Waited::TimedOut),
            },
            None => None,
        };
        if watch.is_none() {
            watch = Some(call.host.watch());
            // The watch may have cancelled the call before it was registered.
            continue;
        }
        g = match left {
            Some(left) => {
                cv.wait_timeout(g, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => cv.wait(g).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// `acquire(blocking=True, timeout=...)` arguments: `None` for a non-blocking try, `Some(None)`
/// to wait for ever, `Some(Some(d))` to wait at most `d`.
fn acquire_args(
    method: &'static str,
    args: Vec<Value>,
    kwds: Dict,
    lock_style: bool,
) -> Result<Option<Option<Duration>>, PyErr> {
    let mut a = Args::new(method, args, kwds);
    let blocking = a.opt("blocking")?.is_none_or(|v| v.is_truthy());
    let timeout = a.opt("timeout")?;
    a.done()?;
    // Lock.acquire's "no timeout" is -1; Semaphore.acquire's is None.
    let timeout = match timeout {
        None | Some(Value::None) => None,
        Some(v) => {
            let secs = pyops::seconds(&v)?;
            if lock_style && secs == -1.0 {
                None
            } else if secs < 0.0 {
                return Err(PyErr::Value(
                    "timeout value must be a non-negative number".into(),
                ));
            } else {
                Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
            }
        }
    };
    if !blocking {
        if timeout.is_some() {
            return Err(PyErr::Value(
                "can't specify a timeout for a non-blocking call".into(),
            ));
        }
        return Ok(None);
    }
    Ok(Some(timeout))
}

/// The reply to a successful or failed `acquire`: a bool for CPython's clients, `(acquired,
/// owner_died)` for mproc's; undone by `undo` if it cannot be delivered.
fn acquired(
    call: &Call<'_>,
    ok: bool,
    owner_died: bool,
    undo: impl FnOnce(Owner) + Send + 'static,
) -> Out {
    let value = if call.mproc {
        Value::Tuple(vec![Value::Bool(ok), Value::Bool(owner_died)])
    } else {
        Value::Bool(ok)
    };
    Out {
        value,
        moved: false,
        undo: ok.then(|| Undo::release(undo)),
    }
}

#[derive(Debug)]
struct LockState {
    owner: Option<Owner>,
    count: u32,
    /// The last owner died holding the lock, which the server then released: the next owner is
    /// told.
    owner_died: bool,
}

/// `threading.Lock` (any owner may release it, as in Python) or `threading.RLock` (reentrant;
/// only its owner releases it).
#[derive(Debug)]
pub(crate) struct LockCore {
    reentrant: bool,
    m: Mutex<LockState>,
    cv: Condvar,
}

impl LockCore {
    pub(crate) fn new(reentrant: bool) -> LockCore {
        LockCore {
            reentrant,
            m: Mutex::new(LockState {
                owner: None,
                count: 0,
                owner_died: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// Acquires for `call.owner`, waiting as `wait` says; `Some(owner_died)` when acquired.
    fn acquire(&self, call: &Call<'_>, wait: Option<Option<Duration>>) -> Option<bool> {
        let g = lock(&self.m);
        let owner = call.owner;
        let take = |s: &mut LockState| -> Option<bool> {
            if s.owner.is_none() {
                s.owner = Some(owner);
                s.count = 1;
                return Some(std::mem::take(&mut s.owner_died));
            }
            if self.reentrant && s.owner == Some(owner) {
                s.count += 1;
                return Some(false);
            }
            None
        };
        match wait {
            None => {
                let mut g = g;
                take(&mut g)
            }
            Some(timeout) => match wait_for(&self.cv, g, call, deadline(timeout), take).1 {
                Waited::Ready(died) => Some(died),
                Waited::TimedOut | Waited::Cancelled => None,
            },
        }
    }

    /// Releases one level for `owner`.
    fn release(&self, owner: Owner) -> Result<(), PyErr> {
        let mut s = lock(&self.m);
        if self.reentrant {
            if s.owner != Some(owner) {
                return Err(PyErr::Runtime("cannot release un-acquired lock".into()));
            }
            s.count -= 1;
            if s.count > 0 {
                return Ok(());
            }
        } else if s.owner.is_none() {
            return Err(PyErr::Runtime("release unlocked lock".into()));
        }
        s.owner = None;
        s.count = 0;
        drop(s);
        self.cv.notify_all();
        Ok(())
    }

    /// Whether `owner` may wait on a condition over this lock (Python's `_is_owned`: an RLock's
    /// owner; for a Lock, whoever, as long as it is locked).
    fn is_owned_by(&self, owner: Owner) -> bool {
        let s = lock(&self.m);
        if self.reentrant {
            s.owner == Some(owner)
        } else {
            s.owner.is_some()
        }
    }

    /// Releases the lock entirely for a condition's wait, returning the recursion count.
    fn release_save(&self) -> u32 {
        let mut s = lock(&self.m);
        let count = s.count;
        s.owner = None;
        s.count = 0;
        drop(s);
        self.cv.notify_all();
        count
    }

    /// Takes the lock back after a condition's wait (no timeout, as Python), unless the caller is
    /// cancelled meanwhile.
    fn acquire_restore(&self, call: &Call<'_>, count: u32) -> bool {
        let owner = call.owner;
        let g = lock(&self.m);
        let take = |s: &mut LockState| -> Option<()> {
            if s.owner.is_none() {
                s.owner = Some(owner);
                s.count = count.max(1);
                s.owner_died = false;
                return Some(());
            }
            None
        };
        matches!(wait_for(&self.cv, g, call, None, take).1, Waited::Ready(()))
    }

    /// Releases the lock if its owner is one of those `gone` names; whether it did.
    pub(crate) fn owner_gone(&self, gone: &dyn Fn(&Owner) -> bool) -> bool {
        let mut s = lock(&self.m);
        match s.owner {
            Some(o) if gone(&o) => {
                s.owner = None;
                s.count = 0;
                s.owner_died = true;
                drop(s);
                self.cv.notify_all();
                true
            }
            _ => false,
        }
    }

    /// Releases what an undeliverable `acquire` took.
    pub(crate) fn undo_acquire(&self, owner: Owner) {
        let _ = self.release(owner);
    }

    pub(crate) fn wake_all(&self) {
        let _g = lock(&self.m);
        self.cv.notify_all();
    }

    pub(crate) fn repr(&self) -> String {
        let s = lock(&self.m);
        let state = if s.owner.is_some() {
            "locked"
        } else {
            "unlocked"
        };
        if self.reentrant {
            format!("<{state} _thread.RLock object count={}>", s.count)
        } else {
            format!("<{state} _thread.lock object>")
        }
    }

    pub(crate) fn call(
        this: &Arc<Self>,
        call: &Call<'_>,
        method: &str,
        args: Vec<Value>,
        kwds: Dict,
    ) -> R {
        match method {
            "acquire" | "__enter__" => {
                let wait = acquire_args("acquire", args, kwds, true)?;
                let lock = Arc::clone(this);
                let undo = move |owner| lock.undo_acquire(owner);
                Ok(match this.acquire(call, wait) {
                    Some(died) => acquired(call, true, died, undo),
                    None => acquired(call, false, false, undo),
                })
            }
            "release" | "__exit__" => {
                if method == "release" {
                    Args::new("release", args, kwds).done()?;
                }
                this.release(call.owner)?;
                Ok(Value::None.into())
            }
            other => Err(no_attribute(
                if this.reentrant { "RLock" } else { "lock" },
                other,
            )),
        }
    }
}

#[derive(Debug)]
struct SemState {
    value: u64,
    /// The initial value, the bound of a `BoundedSemaphore`.
    initial: u64,
}

/// `threading.Semaphore` and `threading.BoundedSemaphore`.
#[derive(Debug)]
pub(crate) struct Semaphore {
    bounded: bool,
    m: Mutex<SemState>,
    cv: Condvar,
}

impl Semaphore {
    pub(crate) fn new(value: u64, bounded: bool) -> Semaphore {
        Semaphore {
            bounded,
            m: Mutex::new(SemState {
                value,
                initial: value,
            }),
            cv: Condvar::new(),
        }
    }

    fn release(&self, n: u64) -> Result<(), PyErr> {
        let mut s = lock(&self.m);
        if self.bounded && s.value + n > s.initial {
            return Err(PyErr::Value("Semaphore released too many times".into()));
        }
        s.value += n;
        drop(s);
        self.cv.notify_all();
        Ok(())
    }

    pub(crate) fn undo_acquire(&self) {
        let _ = self.release(1);
    }

    pub(crate) fn wake_all(&self) {
        let _g = lock(&self.m);
        self.cv.notify_all();
    }

    pub(crate) fn repr(&self, typeid: &str) -> String {
        let s = lock(&self.m);
        format!("<threading.{typeid} object: value={}>", s.value)
    }

    pub(crate) fn call(
        this: &Arc<Self>,
        call: &Call<'_>,
        method: &str,
        args: Vec<Value>,
        kwds: Dict,
    ) -> R {
        match method {
            "acquire" | "__enter__" => {
                let wait = acquire_args("acquire", args, kwds, false)?;
                let take = |s: &mut SemState| -> Option<()> { (s.value > 0).then(|| s.value -= 1) };
                let mut g = lock(&this.m);
                let ok = match wait {
                    None => take(&mut g).is_some(),
                    Some(t) => matches!(
                        wait_for(&this.cv, g, call, deadline(t), take).1,
                        Waited::Ready(())
                    ),
                };
                let sem = Arc::clone(this);
                Ok(acquired(call, ok, false, move |_| sem.undo_acquire()))
            }
            "release" | "__exit__" => {
                let n = if method == "release" {
                    let mut a = Args::new("release", args, kwds);
                    let n = match a.opt("n")? {
                        None => 1,
                        Some(v) => pyops::as_int(&v, "n")?,
                    };
                    a.done()?;
                    n
                } else {
                    1
                };
                if n < 1 {
                    return Err(PyErr::Value("n must be one or more".into()));
                }
                this.release(n as u64)?;
                Ok(Value::None.into())
            }
            other => Err(no_attribute("Semaphore", other)),
        }
    }
}

/// `threading.Event`.
#[derive(Debug, Default)]
pub(crate) struct Event {
    m: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    pub(crate) fn wake_all(&self) {
        let _g = lock(&self.m);
        self.cv.notify_all();
    }

    pub(crate) fn repr(&self) -> String {
        let set = *lock(&self.m);
        format!(
            "<threading.Event at 0x0: {}>",
            if set { "set" } else { "unset" }
        )
    }

    pub(crate) fn call(&self, call: &Call<'_>, method: &str, args: Vec<Value>, kwds: Dict) -> R {
        match method {
            "is_set" => {
                Args::new("is_set", args, kwds).done()?;
                Ok(Value::Bool(*lock(&self.m)).into())
            }
            "set" => {
                Args::new("set", args, kwds).done()?;
                *lock(&self.m) = true;
                self.cv.notify_all();
                Ok(Value::None.into())
            }
            "clear" => {
                Args::new("clear", args, kwds).done()?;
                *lock(&self.m) = false;
                Ok(Value::None.into())
            }
            "wait" => {
                let mut a = Args::new("wait", args, kwds);
                let timeout = pyops::timeout(a.opt("timeout")?.map(|v| match v {
                    // Python's Event.wait treats a negative timeout as zero.
                    Value::Int(i) if i < 0 => Value::Int(0),
                    Value::Float(f) if f < 0.0 => Value::Int(0),
                    v => v,
                }))?;
                a.done()?;
                let g = lock(&self.m);
                let (g, w) = wait_for(&self.cv, g, call, deadline(timeout), |s| s.then_some(()));
                let set = matches!(w, Waited::Ready(())) || *g;
                Ok(Value::Bool(set).into())
            }
            other => Err(no_attribute("Event", other)),
        }
    }
}

#[derive(Debug, Default)]
struct CondState {
    /// Waiters in arrival order (Python notifies the longest waiting first).
    queue: VecDeque<u64>,
    signalled: HashSet<u64>,
    next: u64,
}

/// `threading.Condition` over a manager `Lock` or `RLock`.
#[derive(Debug)]
pub(crate) struct Condition {
    lock: Arc<LockCore>,
    m: Mutex<CondState>,
    cv: Condvar,
}

impl Condition {
    pub(crate) fn new(lock: Arc<LockCore>) -> Condition {
        Condition {
            lock,
            m: Mutex::new(CondState::default()),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn lock_core(&self) -> &LockCore {
        &self.lock
    }

    fn core(&self) -> &LockCore {
        &self.lock
    }

    pub(crate) fn wake_all(&self) {
        {
            let _g = lock(&self.m);
            self.cv.notify_all();
        }
        self.core().wake_all();
    }

    pub(crate) fn repr(&self) -> String {
        format!(
            "<Condition({}, {})>",
            self.core().repr(),
            lock(&self.m).queue.len()
        )
    }

    fn notify(&self, owner: Owner, n: Option<usize>) -> Result<(), PyErr> {
        if !self.core().is_owned_by(owner) {
            return Err(PyErr::Runtime("cannot notify on un-acquired lock".into()));
        }
        let mut s = lock(&self.m);
        let n = n.unwrap_or(s.queue.len()).min(s.queue.len());
        for _ in 0..n {
            let w = s.queue.pop_front().expect("n <= len");
            s.signalled.insert(w);
        }
        drop(s);
        self.cv.notify_all();
        Ok(())
    }

    fn wait(&self, call: &Call<'_>, timeout: Option<Duration>) -> Result<bool, PyErr> {
        let core = self.core();
        if !core.is_owned_by(call.owner) {
            return Err(PyErr::Runtime("cannot wait on un-acquired lock".into()));
        }
        let me = {
            let mut s = lock(&self.m);
            s.next += 1;
            let me = s.next;
            s.queue.push_back(me);
            me
        };
        let saved = core.release_save();
        let g = lock(&self.m);
        let (mut g, w) = wait_for(&self.cv, g, call, deadline(timeout), |s| {
            s.signalled.remove(&me).then_some(())
        });
        let notified = matches!(w, Waited::Ready(()));
        if !notified {
            g.queue.retain(|&x| x != me);
        }
        drop(g);
        core.acquire_restore(call, saved);
        Ok(notified)
    }

    pub(crate) fn call(&self, call: &Call<'_>, method: &str, args: Vec<Value>, kwds: Dict) -> R {
        match method {
            "acquire" | "release" | "__enter__" | "__exit__" => {
                LockCore::call(&self.lock, call, method, args, kwds)
            }
            "wait" => {
                let mut a = Args::new("wait", args, kwds);
                let timeout = pyops::timeout(a.opt("timeout")?)?;
                a.done()?;
                Ok(Value::Bool(self.wait(call, timeout)?).into())
            }
            "notify" => {
                let mut a = Args::new("notify", args, kwds);
                let n = match a.opt("n")? {
                    None => 1,
                    Some(v) => pyops::as_int(&v, "n")?.max(0) as usize,
                };
                a.done()?;
                self.notify(call.owner, Some(n))?;
                Ok(Value::None.into())
            }
            "notify_all" | "notifyAll" => {
                Args::new("notify_all", args, kwds).done()?;
                self.notify(call.owner, None)?;
                Ok(Value::None.into())
            }
            other => Err(no_attribute("Condition", other)),
        }
    }
}

const FILLING: i8 = 0;
const DRAINING: i8 = 1;
const RESETTING: i8 = -1;
const BROKEN: i8 = -2;

#[derive(Debug)]
struct BarrierState {
    state: i8,
    count: u64,
}

/// `threading.Barrier` (without an action: a callable does not cross processes). A party whose
/// client dies while it waits breaks the barrier, as a party that times out does.
#[derive(Debug)]
pub(crate) struct Barrier {
    parties: u64,
    timeout: Option<Duration>,
    m: Mutex<BarrierState>,
    cv: Condvar,
}

impl Barrier {
    pub(crate) fn new(parties: u64, timeout: Option<Duration>) -> Barrier {
        Barrier {
            parties,
            timeout,
            m: Mutex::new(BarrierState {
                state: FILLING,
                count: 0,
            }),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn wake_all(&self) {
        let _g = lock(&self.m);
        self.cv.notify_all();
    }

    pub(crate) fn repr(&self) -> String {
        let s = lock(&self.m);
        if s.state == BROKEN {
            return "<threading.Barrier at 0x0: broken>".into();
        }
        let waiting = if s.state == FILLING { s.count } else { 0 };
        format!(
            "<threading.Barrier at 0x0: waiters={waiting}/{}>",
            self.parties
        )
    }

    fn wait(&self, call: &Call<'_>, timeout: Option<Duration>) -> Result<u64, PyErr> {
        let timeout = timeout.or(self.timeout);
        let g = lock(&self.m);
        // Wait until the barrier is no longer draining or resetting.
        let (mut g, _) = wait_for(&self.cv, g, call, None, |s| {
            (s.state != DRAINING && s.state != RESETTING).then_some(())
        });
        if call.cancel.is_set() || g.state < 0 {
            return Err(PyErr::BrokenBarrier);
        }
        let index = g.count;
        g.count += 1;
        let result = if index + 1 == self.parties {
            g.state = DRAINING;
            self.cv.notify_all();
            Ok(index)
        } else {
            let (g2, w) = wait_for(&self.cv, g, call, deadline(timeout), |s| {
                (s.state != FILLING).then_some(())
            });
            g = g2;
            match w {
                Waited::Ready(()) if g.state >= 0 => Ok(index),
                Waited::Ready(()) => Err(PyErr::BrokenBarrier),
                Waited::TimedOut | Waited::Cancelled => {
                    g.state = BROKEN;
                    self.cv.notify_all();
                    Err(PyErr::BrokenBarrier)
                }
            }
        };
        // Python's _exit: the last one out of a draining or resetting barrier refills it.
        g.count -= 1;
        if g.count == 0 && (g.state == DRAINING || g.state == RESETTING) {
            g.state = FILLING;
            self.cv.notify_all();
        }
        result
    }

    pub(crate) fn call(&self, call: &Call<'_>, method: &str, args: Vec<Value>, kwds: Dict) -> R {
        match method {
            "wait" => {
                let mut a = Args::new("wait", args, kwds);
                let timeout = pyops::timeout(a.opt("timeout")?)?;
                a.done()?;
                Ok(Value::from(self.wait(call, timeout)?).into())
            }
            "reset" => {
                Args::new("reset", args, kwds).done()?;
                let mut s = lock(&self.m);
                if s.count > 0 {
                    if s.state == FILLING || s.state == BROKEN {
                        s.state = RESETTING;
                    }
                } else {
                    s.state = FILLING;
                }
                self.cv.notify_all();
                Ok(Value::None.into())
            }
            "abort" => {
                Args::new("abort", args, kwds).done()?;
                lock(&self.m).state = BROKEN;
                self.cv.notify_all();
                Ok(Value::None.into())
            }
            "__getattribute__" => {
                let mut a = Args::new("__getattribute__", args, kwds);
                let name = a.req("name")?;
                a.done()?;
                let s = lock(&self.m);
                match name.as_str() {
                    Some("parties") => Ok(Value::from(self.parties).into()),
                    Some("n_waiting") => {
                        Ok(Value::from(if s.state == FILLING { s.count } else { 0 }).into())
                    }
                    Some("broken") => Ok(Value::Bool(s.state == BROKEN).into()),
                    _ => Err(PyErr::Attribute(format!(
                        "'Barrier' object has no attribute {name}"
                    ))),
                }
            }
            other => Err(no_attribute("Barrier", other)),
        }
    }
}

#[derive(Debug)]
struct QState {
    items: VecDeque<Value>,
    unfinished: u64,
    shutdown: bool,
    released: bool,
}

/// `queue.Queue` (which is also CPython's manager `JoinableQueue`): `maxsize <= 0` is unbounded;
/// `task_done`/`join`; Python 3.13's `shutdown`.
#[derive(Debug)]
pub(crate) struct Queue {
    maxsize: i64,
    m: Mutex<QState>,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
}

impl Queue {
    pub(crate) fn new(maxsize: i64) -> Queue {
        Queue {
            maxsize,
            m: Mutex::new(QState {
                items: VecDeque::new(),
                unfinished: 0,
                shutdown: false,
                released: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        }
    }

    fn full(&self, s: &QState) -> bool {
        self.maxsize > 0 && s.items.len() as i64 >= self.maxsize
    }

    pub(crate) fn wake_all(&self) {
        let _g = lock(&self.m);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        self.all_done.notify_all();
    }

    pub(crate) fn repr(&self) -> String {
        let s = lock(&self.m);
        format!("<queue.Queue object: qsize={}>", s.items.len())
    }

    /// Marks the queue released and hands its items over.
    pub(crate) fn drain(&self) -> Vec<Value> {
        let mut s = lock(&self.m);
        s.released = true;
        s.items.drain(..).collect()
    }

    /// Puts back at the front an item whose `get` reply could not be delivered.
    pub(crate) fn unget(&self, item: Value) {
        let mut s = lock(&self.m);
        s.items.push_front(item);
        drop(s);
        self.not_empty.notify_all();
    }

    fn state(&self) -> Result<MutexGuard<'_, QState>, PyErr> {
        let s = lock(&self.m);
        if s.released {
            return Err(PyErr::Runtime("the object was released".into()));
        }
        Ok(s)
    }

    /// `block`/`timeout` arguments: `None` for no waiting, else the wait's deadline.
    fn block_args(a: &mut Args) -> Result<Option<Option<Instant>>, PyErr> {
        let block = a.opt("block")?.is_none_or(|v| v.is_truthy());
        let timeout = pyops::timeout(a.opt("timeout")?)?;
        Ok(block.then(|| deadline(timeout)))
    }

    pub(crate) fn call(
        this: &Arc<Self>,
        call: &Call<'_>,
        method: &str,
        args: Vec<Value>,
        kwds: Dict,
    ) -> R {
        let q = this;
        match method {
            "put" | "put_nowait" => {
                let mut a = Args::new("put", args, kwds);
                let item = a.req("item")?;
                let wait = if method == "put" {
                    Queue::block_args(&mut a)?
                } else {
                    None
                };
                a.done()?;
                let g = q.state()?;
                if g.shutdown {
                    return Err(PyErr::ShutDown);
                }
                let mut g = match wait {
                    None if q.full(&g) => return Err(PyErr::Full),
                    None => g,
                    Some(d) => {
                        let (g, w) = wait_for(&q.not_full, g, call, d, |s| {
                            (s.shutdown || !q.full(s)).then_some(())
                        });
                        match w {
                            Waited::Ready(()) if g.shutdown => return Err(PyErr::ShutDown),
                            Waited::Ready(()) => g,
                            Waited::TimedOut | Waited::Cancelled => return Err(PyErr::Full),
                        }
                    }
                };
                call.host.hold(&item);
                g.items.push_back(item);
                g.unfinished += 1;
                drop(g);
                q.not_empty.notify_all();
                Ok(Value::None.into())
            }
            "get" | "get_nowait" => {
                let mut a = Args::new("get", args, kwds);
                let wait = if method == "get" {
                    Queue::block_args(&mut a)?
                } else {
                    None
                };
                a.done()?;
                let g = q.state()?;
                let take = |s: &mut QState| -> Option<Result<Value, PyErr>> {
                    match s.items.pop_front() {
                        Some(v) => Some(Ok(v)),
                        None if s.shutdown => Some(Err(PyErr::ShutDown)),
                        None => None,
                    }
                };
                let item = match wait {
                    None => {
                        let mut g = g;
                        take(&mut g).unwrap_or(Err(PyErr::Empty))?
                    }
                    Some(d) => match wait_for(&q.not_empty, g, call, d, take).1 {
                        Waited::Ready(r) => r?,
                        Waited::TimedOut | Waited::Cancelled => return Err(PyErr::Empty),
                    },
                };
                q.not_full.notify_all();
                let back = Arc::clone(q);
                Ok(Out {
                    value: item,
                    moved: true,
                    undo: Some(Undo::put_back(move |item| back.unget(item))),
                })
            }
            "qsize" | "empty" | "full" => {
                Args::new("qsize", args, kwds).done()?;
                let s = q.state()?;
                Ok(match method {
                    "qsize" => Value::from(s.items.len() as u64),
                    "empty" => Value::Bool(s.items.is_empty()),
                    _ => Value::Bool(q.full(&s)),
                }
                .into())
            }
            "task_done" => {
                Args::new("task_done", args, kwds).done()?;
                let mut s = q.state()?;
                if s.unfinished == 0 {
                    return Err(PyErr::Value("task_done() called too many times".into()));
                }
                s.unfinished -= 1;
                if s.unfinished == 0 {
                    q.all_done.notify_all();
                }
                Ok(Value::None.into())
            }
            "join" => {
                // CPython's join takes no argument; mproc's clients may pass a timeout, and get
                // whether every task was done in time.
                let mut a = Args::new("join", args, kwds);
                let timeout = pyops::timeout(a.opt("timeout")?)?;
                a.done()?;
                let g = q.state()?;
                let done = matches!(
                    wait_for(&q.all_done, g, call, deadline(timeout), |s| {
                        (s.unfinished == 0).then_some(())
                    })
                    .1,
                    Waited::Ready(())
                );
                Ok(if timeout.is_some() {
                    Value::Bool(done)
                } else {
                    Value::None
                }
                .into())
            }
            "shutdown" => {
                let mut a = Args::new("shutdown", args, kwds);
                let immediate = a.opt("immediate")?.is_some_and(|v| v.is_truthy());
                a.done()?;
                let mut s = q.state()?;
                s.shutdown = true;
                if immediate {
                    let dropped: Vec<Value> = s.items.drain(..).collect();
                    s.unfinished = s.unfinished.saturating_sub(dropped.len() as u64);
                    drop(s);
                    dropped.iter().for_each(|v| call.host.release(v));
                } else {
                    drop(s);
                }
                q.wake_all();
                Ok(Value::None.into())
            }
            other => Err(no_attribute("Queue", other)),
        }
    }
}
