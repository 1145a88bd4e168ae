//! The parent's machinery of a pool: the worker table, dispatch, and the result-handling thread.
//!
//! Design (for speed and for exact failure reports):
//! - one duplex socketpair per worker, no lock shared with any child;
//! - a submitting thread writes its task straight to an idle worker's socket (non-blocking), so
//!   an `apply_async` costs no thread hop on the way out;
//! - one handler thread per pool (Python has three: task, result and worker handlers) polls every
//!   worker's socket and sentinel and a wake-up pipe: it reads results (many per `read`), hands
//!   the next queued tasks to the workers that answered, runs the sinks (and so the callbacks) in
//!   completion order outside the lock, and replaces dead workers;
//! - a worker gets one task at a time while tasks are long; when tasks are short (measured by
//!   the workers) it gets up to [`MAX_DEPTH`] at once, so that short tasks are batched both ways;
//! - a worker answers in order, so when it dies the oldest unanswered task is the one it was
//!   running: that task fails with `WorkerLost`, the others go back to the front of the queue;
//! - a task with a hard deadline is handed only to an idle worker, and nothing is queued behind
//!   it: its clock starts when it is written, and when it overruns, the handler kills the worker
//!   (`SIGKILL`) and, once the worker is buried, fails the task with `TaskTimeout`;
//! - a thread waiting in `get` for a task that a worker is running takes that worker's socket for
//!   itself ([`Shared::wait_direct`]): the handler's `epoll` leaves the socket alone meanwhile, and
//!   the waiter reads its result straight off the socket, one wake-up instead of two (the
//!   handler's, then the waiter's). Results it reads whose sinks run user code (callbacks) are
//!   handed to the handler, so that callbacks still run in its thread, in completion order.
//!   So that the answer cannot reach the handler first, an `apply_async` task without callbacks
//!   that goes to an idle worker *reserves* the socket before it is written: the handler does
//!   not read it until the waiter comes ([`RESERVE_TTL`] at most, or until the result is polled
//!   as a future, checked, or dropped). An idle worker's socket is left out of the handler's
//!   reading as it was, so a loop of `apply_async` + `get` changes no registration at all.

use crate::context::cpu_count;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::launch::fork::{keep_from_fork_children, InternalThread};
use crate::method::StartMethod;
use crate::pool::protocol::{self, RemoteErr, WorkerMessage};
use crate::pool::results::{Direct, DirectRead, Failure, Outcome, Sink};
use crate::pool::worker::{self, WorkerChannel, WorkerConfig};
use crate::process::Process;
use crate::sys::{self, Epoll, EpollEvent, Interest, EPOLL_READ, EPOLL_WRITE};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The most tasks a worker is given at once (when tasks are short).
const MAX_DEPTH: usize = 64;
/// Tasks that run at least this long are handed out one at a time per worker.
const BATCH_BELOW_NS: f64 = 200_000.0;
/// The handler's poll timeout: nothing depends on it (every event wakes the handler), it only
/// bounds each wait.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long to wait before retrying a worker that could not be started.
const RETRY_START: Duration = Duration::from_millis(100);
/// How long `terminate` waits for a worker after `SIGTERM` before it sends `SIGKILL`.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long a reserved socket waits for its task's waiter before the handler reads it itself:
/// the most a result nobody waits for yet is delivered late.
const RESERVE_TTL: Duration = Duration::from_millis(1);
/// The `epoll` token of the wake-up pipe. A worker's socket is `2 * uid`, its sentinel
/// `2 * uid + 1` (uids start at 1 and never reach this).
const WAKE_TOKEN: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolState {
    Run,
    Close,
    Terminate,
}

/// A submitted task: its frame (kept until answered, to hand it to another worker if its worker
/// dies before starting it), its sink, and its hard deadline.
pub(crate) struct Job {
    pub id: u64,
    pub msg: Vec<u8>,
    pub sink: Box<dyn Sink>,
    /// How long the task may run once a worker has it; it is then handed only to an idle worker,
    /// and nothing is queued behind it.
    pub hard: Option<Duration>,
    /// A waiter may read its answer itself ([`Shared::wait_direct`]) unless this flag (shared
    /// with the result's [`Route`](crate::pool::results::Route)) says it will not.
    pub released: Option<Arc<AtomicBool>>,
}

/// Makes the `Process` of a new worker (knows the initializer's type).
pub(crate) trait WorkerFactory: Send + Sync {
    fn make(&self, ctx: Context, chan: WorkerChannel, cfg: WorkerConfig) -> Process;
}

struct Worker {
    /// Names the worker in `epoll` tokens and to a thread that borrowed its socket (its index in
    /// the table changes as workers come and go).
    uid: u64,
    process: Process,
    pid: u32,
    name: String,
    sock: Arc<OwnedFd>,
    sentinel: Arc<OwnedFd>,
    /// A duplicate of the worker's own end of the socket: it keeps what the worker has not read
    /// yet in the socket after the worker dies, so that [`Inner::bury_worker`] can tell whether
    /// the worker had started its oldest task.
    peer: OwnedFd,
    /// A stop frame was queued after the worker's tasks.
    stop_queued: bool,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    inflight: VecDeque<Job>,
    /// Tasks it may still be given (`maxtasksperchild`).
    quota: Option<u64>,
    /// Its initializer ran: it may be given tasks.
    ready: bool,
    /// It will take no more tasks (told to stop, or its quota is spent).
    stopping: bool,
    /// Its socket reached end of file or failed: no longer polled.
    eof: bool,
    /// A thread waiting for one of its results reads its socket ([`Shared::wait_direct`]): the
    /// handler does not read it meanwhile (the socket is out of its `epoll` for reading).
    borrowed: bool,
    /// The events its socket is registered for in the handler's `epoll` (`None`: not in it).
    /// A borrowed socket stays registered, with no events: changing the events of a
    /// registration costs half of removing and adding it again.
    registered: Option<u32>,
    /// The socket is kept for the waiter of this task (an `apply_async` task without callbacks,
    /// sent to this worker while idle), since that instant: the handler does not read it.
    reserved: Option<(u64, Instant)>,
    /// When the task it runs must be done, if that task has a hard deadline.
    deadline: Option<Instant>,
    /// It was killed for a task over its deadline: that task's id, and the deadline.
    killed_for: Option<(u64, Duration)>,
}

impl Worker {
    /// Whether the handler must read the socket (`Some(true)`), must not (`Some(false)`: a
    /// waiter has it or will), or need not (`None`: an idle worker sends nothing).
    fn wants_read(&self) -> Option<bool> {
        if self.borrowed || self.reserved.is_some() {
            Some(false)
        } else if !self.ready || !self.inflight.is_empty() {
            Some(true)
        } else {
            None
        }
    }

    /// The events its socket should be registered for now (`None`: none, for good). With
    /// `keep_write`, the write interest stays as registered (see [`Inner::dispatch`]).
    fn interest(&self, keep_write: bool) -> Option<u32> {
        if self.eof {
            return None;
        }
        let registered = self.registered.unwrap_or(0);
        let read = match self.wants_read() {
            Some(true) => EPOLL_READ,
            Some(false) => 0,
            None => registered & EPOLL_READ,
        };
        let write = if keep_write {
            registered & EPOLL_WRITE
        } else if self.out.is_empty() {
            0
        } else {
            EPOLL_WRITE
        };
        Some(read | write)
    }

    fn sock_token(&self) -> u64 {
        2 * self.uid
    }

    fn sentinel_token(&self) -> u64 {
        2 * self.uid + 1
    }
}

pub(crate) struct Inner {
    pub state: PoolState,
    pending: VecDeque<Job>,
    workers: Vec<Worker>,
    /// Moving average of how long a task runs, in nanoseconds (`None` before the first).
    avg_ns: Option<f64>,
    /// The initializer failed: the pool takes no more work.
    broken: Option<RemoteErr>,
    /// Results read by a thread other than the handler whose sinks run user code: the handler
    /// delivers them, first thing in its next turn (so in the order they were read).
    handoff: Vec<(Box<dyn Sink>, Outcome)>,
    /// The handler's interest list (shared with [`Shared`], which waits on it).
    epoll: Arc<Epoll>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    epoll: Arc<Epoll>,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    factory: Box<dyn WorkerFactory>,
    ctx: Context,
    pub processes: usize,
    maxtasks: Option<u64>,
    has_init: bool,
    next_id: AtomicU64,
    next_uid: AtomicU64,
}

/// What the handler does outside the lock after an iteration.
#[derive(Default)]
struct Work {
    done: Vec<(Box<dyn Sink>, Outcome)>,
    dead: Vec<Process>,
}

impl Shared {
    /// Starts `processes` workers; the pool is then ready for [`run_handler`].
    pub(crate) fn new(
        ctx: Context,
        processes: usize,
        maxtasks: Option<u64>,
        has_init: bool,
        factory: Box<dyn WorkerFactory>,
    ) -> Result<Arc<Shared>> {
        let (wake_r, wake_w) = sys::pipe()?;
        sys::set_nonblocking(wake_r.as_fd(), true)?;
        sys::set_nonblocking(wake_w.as_fd(), true)?;
        let epoll = Arc::new(Epoll::new()?);
        epoll.add(wake_r.as_fd(), EPOLL_READ, WAKE_TOKEN)?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                state: PoolState::Run,
                pending: VecDeque::new(),
                workers: Vec::with_capacity(processes),
                avg_ns: None,
                broken: None,
                handoff: Vec::new(),
                epoll: Arc::clone(&epoll),
            }),
            epoll,
            wake_r,
            wake_w,
            factory,
            ctx,
            processes,
            maxtasks,
            has_init,
            next_id: AtomicU64::new(1),
            next_uid: AtomicU64::new(1),
        });
        // A fork start is quick, and forking from several threads would be unwise; the other
        // methods wait for an exec (or the forkserver) per worker, so they start workers from
        // up to `cpu_count` threads at once.
        let threads = if ctx.start_method() == StartMethod::Fork {
            1
        } else {
            processes.min(cpu_count()).max(1)
        };
        let start_share = |share: usize| -> Vec<Result<Worker>> {
            (0..share).map(|_| shared.start_worker()).collect()
        };
        let shares: Vec<usize> = (0..threads)
            .map(|t| processes / threads + usize::from(t < processes % threads))
            .collect();
        let results: Vec<Result<Worker>> = if threads == 1 {
            start_share(processes)
        } else {
            let counted: Vec<InternalThread> =
                (1..threads).map(|_| InternalThread::enter()).collect();
            let all = std::thread::scope(|scope| {
                let helpers: Vec<_> = shares[1..]
                    .iter()
                    .map(|&n| scope.spawn(move || start_share(n)))
                    .collect();
                let mut all = start_share(shares[0]);
                for h in helpers {
                    match h.join() {
                        Ok(r) => all.extend(r),
                        Err(_) => all.push(Err(Error::Io(std::io::Error::other(
                            "a thread starting pool workers panicked",
                        )))),
                    }
                }
                all
            });
            drop(counted);
            all
        };
        let mut error = None;
        for r in results {
            match r {
                Ok(w) => shared.lock().adopt(w),
                Err(e) => error = error.or(Some(e)),
            }
        }
        if let Some(e) = error {
            let workers = std::mem::take(&mut shared.lock().workers);
            stop_workers(workers);
            return Err(e);
        }
        Ok(shared)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn wake(&self) {
        // A full pipe already holds a wake-up: nothing to do then.
        let _ = sys::write(self.wake_w.as_fd(), b"w");
    }

    fn start_worker(&self) -> Result<Worker> {
        let fork = self.ctx.start_method() == StartMethod::Fork;
        if fork {
            // No other thread may hold the standard streams' locks at the instant of the fork;
            // the child releases its copies first thing (see `worker::hold_std_streams`).
            worker::hold_std_streams();
        }
        let r = self.start_worker_inner();
        worker::release_std_streams();
        r
    }

    fn start_worker_inner(&self) -> Result<Worker> {
        let (ours, theirs) = sys::socketpair()?;
        let peer = theirs.try_clone()?;
        let cfg = WorkerConfig {
            has_init: self.has_init,
            maxtasks: self.maxtasks,
        };
        let process = self.factory.make(self.ctx, WorkerChannel(theirs), cfg);
        let name = process.get_name().replacen("Process", "PoolWorker", 1);
        process.set_name(name.clone());
        process.set_daemon(true)?;
        // A fork worker must not hold our end of its socket (it would never see end of file
        // when the pool goes away), nor our duplicate of its own end.
        let (started, ends) = keep_from_fork_children(vec![ours, peer], || process.start());
        started?;
        let [ours, peer]: [OwnedFd; 2] = ends
            .try_into()
            .map_err(|_| Error::Io(std::io::Error::other("lost a pool worker's socket")))?;
        let pid = process.pid().expect("started");
        let sentinel = match process.sentinel_owned() {
            Ok(s) => s,
            Err(e) => {
                let _ = process.kill();
                let _ = process.join(Some(TERM_GRACE));
                return Err(e);
            }
        };
        sys::set_nonblocking(ours.as_fd(), true)?;
        Ok(Worker {
            uid: self.next_uid.fetch_add(1, Ordering::Relaxed),
            process,
            pid,
            name,
            sock: Arc::new(ours),
            sentinel: Arc::new(sentinel),
            peer,
            stop_queued: false,
            rbuf: Vec::with_capacity(64 * 1024),
            out: Vec::new(),
            inflight: VecDeque::new(),
            quota: self.maxtasks,
            ready: false,
            stopping: false,
            eof: false,
            borrowed: false,
            registered: None,
            reserved: None,
            deadline: None,
            killed_for: None,
        })
    }

    /// Queues `jobs` and hands out what can be handed out now.
    pub(crate) fn submit(&self, jobs: Vec<Job>) -> Result<()> {
        let mut inner = self.lock();
        if inner.state != PoolState::Run {
            return Err(Error::PoolNotRunning);
        }
        if let Some(e) = &inner.broken {
            return Err(init_failed(e.clone()).into());
        }
        inner.pending.extend(jobs);
        if inner.dispatch() {
            drop(inner);
            self.wake();
        }
        Ok(())
    }

    /// The names and pids of the current workers.
    pub(crate) fn workers(&self) -> Vec<(String, u32)> {
        self.lock()
            .workers
            .iter()
            .map(|w| (w.name.clone(), w.pid))
            .collect()
    }
}

fn init_failed(e: RemoteErr) -> Failure {
    Failure::Remote(RemoteErr {
        kind: e.kind,
        message: format!("the pool's initializer failed: {}", e.message),
        traceback: e.traceback,
    })
}

impl DirectRead for Shared {
    fn release(&self, job: u64) {
        self.lock().release(job);
    }

    fn wait_direct(&self, job: u64, deadline: Option<Instant>) -> Direct {
        let (uid, sock, sentinel) = {
            let mut inner = self.lock();
            if inner.state == PoolState::Terminate {
                return Direct::NotInFlight;
            }
            let Some(i) = inner
                .workers
                .iter()
                .position(|w| w.inflight.iter().any(|j| j.id == job))
            else {
                return Direct::NotInFlight;
            };
            let w = &mut inner.workers[i];
            // Borrowed by another waiter (who delivers our result too), or output still to
            // write (the handler must watch the socket for room): wait for the handler.
            if w.borrowed || w.eof || !w.out.is_empty() {
                return Direct::NotInFlight;
            }
            // Reserved for this task (or another: this waiter serves it too), the socket is out
            // of the handler's reading already.
            w.reserved = None;
            w.borrowed = true;
            let taken = (w.uid, Arc::clone(&w.sock), Arc::clone(&w.sentinel));
            inner.sync(i);
            taken
        };
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // The worker's answer, or its death (killed for a deadline, by `terminate`, or
        // otherwise: the handler buries it and delivers what that means).
        let ready = sys::poll(
            &[
                (sock.as_fd(), Interest::Read),
                (sentinel.as_fd(), Interest::Read),
            ],
            timeout,
        );
        let (answered, died) = match &ready {
            Ok(r) => (r[0], r[1]),
            Err(_) => (false, true),
        };
        let mut work = Work::default();
        let (wake, handed) = {
            let mut inner = self.lock();
            let Some(i) = inner.workers.iter().position(|w| w.uid == uid) else {
                // Buried meanwhile: the handler read what it had sent.
                return Direct::NotInFlight;
            };
            inner.workers[i].borrowed = false;
            if answered && !inner.workers[i].eof {
                inner.read_worker(i, &mut work);
            }
            // Results whose sinks run user code go to the handler: callbacks run in its thread,
            // in completion order.
            let before = inner.handoff.len();
            let (to_handler, here): (Vec<_>, Vec<_>) = std::mem::take(&mut work.done)
                .into_iter()
                .partition(|(sink, _)| sink.runs_user_code());
            inner.handoff.extend(to_handler);
            work.done = here;
            // Also brings the socket back into the handler's `epoll`.
            let wake = inner.dispatch();
            (wake, inner.handoff.len() > before)
        };
        if wake || handed {
            self.wake();
        }
        if !answered {
            // Dead (the handler delivers the outcome), or out of time.
            return if died {
                Direct::NotInFlight
            } else {
                Direct::TimedOut
            };
        }
        for (sink, outcome) in work.done {
            sink.deliver(outcome);
        }
        Direct::Read
    }
}

impl Inner {
    /// Takes a started worker into the table and into the handler's `epoll`.
    fn adopt(&mut self, w: Worker) {
        // A sentinel that cannot be watched would hide the worker's death: stop it instead
        // (the handler starts another).
        if self
            .epoll
            .add(w.sentinel.as_fd(), EPOLL_READ, w.sentinel_token())
            .is_err()
        {
            stop_workers(vec![w]);
            return;
        }
        self.workers.push(w);
        let i = self.workers.len() - 1;
        self.sync(i);
    }

    /// Brings worker `i`'s socket registration in line with what it should be watched for. A
    /// failed `epoll_ctl` leaves the registration as it was, to be tried again on the next turn.
    fn sync(&mut self, i: usize) {
        self.sync_with(i, false);
    }

    fn sync_with(&mut self, i: usize, keep_write: bool) {
        let w = &mut self.workers[i];
        let want = w.interest(keep_write);
        if want == w.registered {
            return;
        }
        let fd = w.sock.as_fd();
        let r = match (w.registered, want) {
            (None, Some(ev)) => self.epoll.add(fd, ev, w.sock_token()),
            (Some(_), None) => self.epoll.delete(fd),
            (Some(_), Some(ev)) => self.epoll.modify(fd, ev, w.sock_token()),
            (None, None) => Ok(()),
        };
        if r.is_ok() {
            w.registered = want;
        }
    }

    fn sync_all(&mut self) {
        for i in 0..self.workers.len() {
            self.sync(i);
        }
    }

    /// The earliest hard deadline of a running task, or end of a reservation.
    fn next_deadline(&self) -> Option<Instant> {
        let reserved = self.workers.iter().filter_map(|w| w.reserved);
        let reserved_until = reserved.map(|(_, since)| since + RESERVE_TTL);
        self.workers
            .iter()
            .filter_map(|w| w.deadline)
            .chain(reserved_until)
            .min()
    }

    /// Gives up the reservation of the socket running `job` (its waiter will not come, or
    /// waits another way): the handler reads it from now on.
    pub(crate) fn release(&mut self, job: u64) {
        if let Some(i) = self
            .workers
            .iter()
            .position(|w| w.reserved.is_some_and(|(id, _)| id == job))
        {
            self.workers[i].reserved = None;
            self.sync(i);
        }
    }

    /// Kills the workers whose task ran past its hard deadline; each is buried (and its task
    /// failed with `TaskTimeout`) when its sentinel fires. Ends reservations that no waiter came
    /// for.
    fn expire_deadlines(&mut self, now: Instant) {
        for i in 0..self.workers.len() {
            if self.workers[i]
                .reserved
                .is_some_and(|(_, since)| now >= since + RESERVE_TTL)
            {
                self.workers[i].reserved = None;
                self.sync(i);
            }
        }
        for w in &mut self.workers {
            let Some(at) = w.deadline else { continue };
            if at > now {
                continue;
            }
            w.deadline = None;
            if let Some(job) = w.inflight.front() {
                w.killed_for = Some((job.id, job.hard.unwrap_or_default()));
                w.stopping = true;
                // A worker that already ended cannot be signalled: its sentinel tells.
                let _ = w.process.kill();
            }
        }
    }

    fn depth(&self) -> usize {
        match self.avg_ns {
            None => 1,
            Some(a) if a >= BATCH_BELOW_NS => 1,
            Some(a) => ((BATCH_BELOW_NS / a.max(1.0)) as usize).clamp(1, MAX_DEPTH),
        }
    }

    /// Hands queued tasks to workers with room, tells idle workers to stop once the pool is
    /// closed and drained, and writes what it can. Returns whether the handler must look again:
    /// some output is left to write when the sockets have room, or a deadline was armed.
    pub(crate) fn dispatch(&mut self) -> bool {
        if self.state == PoolState::Terminate {
            return false;
        }
        let mut armed = false;
        if self.broken.is_none() {
            let depth = self.depth();
            while let Some(next) = self.pending.front() {
                // A task with a deadline goes only to an idle worker; none goes behind one.
                let room = if next.hard.is_some() { 1 } else { depth };
                let mut best: Option<usize> = None;
                for (i, w) in self.workers.iter().enumerate() {
                    if !w.ready
                        || w.stopping
                        || w.eof
                        || w.inflight.len() >= room
                        || w.inflight.back().is_some_and(|j| j.hard.is_some())
                    {
                        continue;
                    }
                    if best.is_none_or(|b| w.inflight.len() < self.workers[b].inflight.len()) {
                        best = Some(i);
                    }
                }
                let Some(i) = best else { break };
                let job = self.pending.pop_front().expect("not empty");
                let w = &mut self.workers[i];
                // The first task of an idle worker, which a waiter may read itself: keep the
                // socket for it. Any other task ends a reservation (its answer needs a reader).
                let waited = job
                    .released
                    .as_ref()
                    .is_some_and(|r| !r.load(Ordering::Relaxed));
                w.reserved =
                    if w.inflight.is_empty() && !w.borrowed && waited && !job.sink.runs_user_code()
                    {
                        Some((job.id, Instant::now()))
                    } else {
                        None
                    };
                w.out.extend_from_slice(&job.msg);
                if let Some(hard) = job.hard {
                    w.deadline = Some(Instant::now().checked_add(hard).unwrap_or_else(far_future));
                    armed = true;
                }
                w.inflight.push_back(job);
                if let Some(q) = &mut w.quota {
                    *q -= 1;
                    if *q == 0 {
                        // It leaves by itself after this task.
                        w.stopping = true;
                    }
                }
            }
        }
        if (self.state == PoolState::Close || self.broken.is_some()) && self.pending.is_empty() {
            for w in self.workers.iter_mut().filter(|w| !w.stopping && !w.eof) {
                protocol::push_stop(&mut w.out);
                w.stopping = true;
                w.stop_queued = true;
            }
        }
        // Reservations take their sockets out of the handler's reading before the tasks are
        // written, so that an answer cannot reach the handler first.
        for i in 0..self.workers.len() {
            self.sync_with(i, true);
        }
        let mut left = false;
        for w in &mut self.workers {
            if !w.out.is_empty() && !flush(w) {
                left = true;
            }
        }
        self.sync_all();
        left || armed
    }

    /// How many workers to start now: never more than `processes` alive at once (a worker that
    /// is leaving, after `maxtasksperchild` tasks or a stop, is replaced once it has left).
    fn wanted(&self, processes: usize) -> usize {
        if self.broken.is_some() || self.state == PoolState::Terminate {
            return 0;
        }
        let target = if self.state == PoolState::Run || !self.pending.is_empty() {
            processes
        } else {
            0
        };
        target.saturating_sub(self.workers.len())
    }

    /// Reads what worker `i` sent and handles every complete frame.
    fn read_worker(&mut self, i: usize, work: &mut Work) {
        let w = &mut self.workers[i];
        loop {
            if w.rbuf.capacity() - w.rbuf.len() < 16 * 1024 {
                w.rbuf.reserve(64 * 1024);
            }
            let room = w.rbuf.capacity() - w.rbuf.len();
            match sys::read_into_spare(w.sock.as_fd(), &mut w.rbuf, room) {
                Ok(0) => {
                    w.eof = true;
                    break;
                }
                Ok(n) if n < room => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    w.eof = true;
                    break;
                }
            }
        }
        let mut pos = 0;
        let rbuf = std::mem::take(&mut self.workers[i].rbuf);
        while let Some(frame) = protocol::parse_frame(&rbuf[pos..]) {
            pos += frame.len;
            match protocol::decode_worker_message(&frame) {
                Some(WorkerMessage::Ready) => self.workers[i].ready = true,
                Some(WorkerMessage::Result { nanos, outcome }) => {
                    let sample = nanos as f64;
                    self.avg_ns = Some(match self.avg_ns {
                        None => sample,
                        Some(a) => 0.8 * a + 0.2 * sample,
                    });
                    let w = &mut self.workers[i];
                    if let Some(job) = w.inflight.pop_front() {
                        if job.hard.is_some() {
                            w.deadline = None;
                        }
                        work.done.push((job.sink, Ok(outcome.to_vec())));
                    }
                }
                Some(WorkerMessage::InitFailed(e)) if self.broken.is_none() => {
                    let failure = init_failed(e.clone());
                    for job in self.pending.drain(..) {
                        work.done.push((job.sink, Err(failure.clone())));
                    }
                    self.broken = Some(e);
                }
                Some(WorkerMessage::InitFailed(_)) | None => {}
            }
        }
        let mut rbuf = rbuf;
        rbuf.drain(..pos);
        self.workers[i].rbuf = rbuf;
    }

    /// Worker `i` has ended: collects what it sent before dying, fails the task it was running,
    /// puts the tasks it had not started back at the front of the queue, and forgets it.
    fn bury_worker(&mut self, i: usize, work: &mut Work) {
        if !self.workers[i].eof {
            self.read_worker(i, work);
        }
        let mut w = self.workers.swap_remove(i);
        if w.registered.is_some() {
            let _ = self.epoll.delete(w.sock.as_fd());
        }
        let _ = self.epoll.delete(w.sentinel.as_fd());
        let _ = w.process.join(Some(Duration::from_millis(200)));
        let exitcode = w.process.exitcode().ok().flatten().unwrap_or(1);
        let timed_out = w
            .killed_for
            .filter(|(id, _)| w.inflight.front().is_some_and(|j| j.id == *id));
        if let Some((_, timeout)) = timed_out {
            // Killed by us for its deadline (if it answered first, its result was read above
            // and the task is no longer the oldest).
            let job = w.inflight.pop_front().expect("checked above");
            let failure = Failure::TaskTimeout {
                pid: w.pid,
                timeout,
            };
            work.done.push((job.sink, Err(failure)));
        } else if started_oldest(&w) {
            let job = w.inflight.pop_front().expect("started_oldest checks it");
            let failure = match &self.broken {
                Some(e) => init_failed(e.clone()),
                None => Failure::WorkerLost {
                    pid: w.pid,
                    exitcode,
                },
            };
            work.done.push((job.sink, Err(failure)));
        }
        while let Some(job) = w.inflight.pop_back() {
            self.pending.push_front(job);
        }
        if let Some(e) = &self.broken {
            let failure = init_failed(e.clone());
            for job in self.pending.drain(..) {
                work.done.push((job.sink, Err(failure.clone())));
            }
        }
        work.dead.push(w.process);
    }
}

/// Whether the (dead) worker had read the whole of its oldest unanswered task, and so started
/// it (see [`protocol::started_oldest`]). A worker killed while idle had not: that task goes back
/// to the queue, untouched.
fn started_oldest(w: &Worker) -> bool {
    if w.inflight.is_empty() {
        return false;
    }
    let Ok(unread) = sys::unread_bytes(w.peer.as_fd()) else {
        // Cannot tell: count it as started (the safe report: it may have run).
        return true;
    };
    let in_flight: Vec<usize> = w.inflight.iter().map(|j| j.msg.len()).collect();
    protocol::started_oldest(&in_flight, w.stop_queued, w.out.len(), unread)
}

/// A deadline too far to add to the clock: as good as none, but still a deadline.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Writes as much of the worker's output as its socket takes now. `false` if some is left.
fn flush(w: &mut Worker) -> bool {
    let mut done = 0;
    let all = loop {
        if done == w.out.len() {
            break true;
        }
        match sys::write(w.sock.as_fd(), &w.out[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                // The worker is gone; its sentinel will tell.
                done = w.out.len();
                w.eof = true;
                break true;
            }
        }
    };
    w.out.drain(..done);
    all
}

/// Stops workers at once (`terminate`): SIGTERM, then SIGKILL for those that linger; reaps all.
fn stop_workers(workers: Vec<Worker>) {
    for w in &workers {
        let _ = w.process.terminate();
    }
    for w in workers {
        if w.process.join(Some(TERM_GRACE)).is_ok() && matches!(w.process.is_alive(), Ok(true)) {
            let _ = w.process.kill();
            let _ = w.process.join(Some(TERM_GRACE));
        }
        let _ = w.process.close();
    }
}

fn reap(dead: Vec<Process>) {
    for p in dead {
        let _ = p.join(Some(TERM_GRACE));
        let _ = p.close();
    }
}

/// The result-handling thread of a pool. Returns once the pool was terminated, or closed and
/// every worker has left.
pub(crate) fn run_handler(shared: Arc<Shared>) {
    let mut retry = false;
    let mut events: Vec<EpollEvent> = Vec::with_capacity(64);
    loop {
        let (terminate, next_deadline) = {
            let inner = shared.lock();
            (inner.state == PoolState::Terminate, inner.next_deadline())
        };
        if terminate {
            return terminate_now(&shared);
        }
        let mut timeout = if retry { RETRY_START } else { IDLE_POLL };
        if let Some(d) = next_deadline {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        if shared.epoll.wait(&mut events, Some(timeout)).is_err() {
            std::thread::sleep(RETRY_START);
            continue;
        }
        if events.iter().any(|e| e.token == WAKE_TOKEN) {
            let mut buf = [0u8; 64];
            while matches!(sys::read(shared.wake_r.as_fd(), &mut buf), Ok(n) if n > 0) {}
        }

        let mut work = Work::default();
        let (wanted, finished) = {
            let mut inner = shared.lock();
            if inner.state == PoolState::Terminate {
                drop(inner);
                return terminate_now(&shared);
            }
            // Results other threads read for us to deliver come first: they were read before
            // anything this turn reads.
            work.done.append(&mut inner.handoff);
            // Results and room to write.
            for ev in events
                .iter()
                .filter(|e| e.token != WAKE_TOKEN && e.token % 2 == 0)
            {
                let Some(i) = inner
                    .workers
                    .iter()
                    .position(|w| w.sock_token() == ev.token)
                else {
                    continue;
                };
                let w = &inner.workers[i];
                // Events that were pending when a waiter took the socket are the waiter's.
                if !w.eof && w.wants_read() != Some(false) && ev.events & !EPOLL_WRITE != 0 {
                    inner.read_worker(i, &mut work);
                }
                if !inner.workers[i].out.is_empty() {
                    flush(&mut inner.workers[i]);
                }
            }
            // Deaths.
            for ev in events
                .iter()
                .filter(|e| e.token != WAKE_TOKEN && e.token % 2 == 1)
            {
                if let Some(i) = inner
                    .workers
                    .iter()
                    .position(|w| w.sentinel_token() == ev.token)
                {
                    inner.bury_worker(i, &mut work);
                }
            }
            // Deadlines.
            inner.expire_deadlines(Instant::now());
            inner.dispatch();
            let finished = inner.state == PoolState::Close
                && inner.workers.is_empty()
                && (inner.pending.is_empty() || inner.broken.is_some());
            (inner.wanted(shared.processes), finished)
        };
        reap(std::mem::take(&mut work.dead));
        for (sink, outcome) in work.done.drain(..) {
            sink.deliver(outcome);
        }
        if finished {
            return;
        }
        retry = false;
        for _ in 0..wanted {
            match shared.start_worker() {
                Ok(w) => {
                    let mut inner = shared.lock();
                    inner.adopt(w);
                }
                Err(e) => {
                    retry = true;
                    let mut inner = shared.lock();
                    if inner.workers.is_empty() {
                        // Nobody can run the queued tasks: fail them rather than wait forever.
                        let failure = Failure::StartFailed(e.to_string());
                        let jobs: Vec<Job> = inner.pending.drain(..).collect();
                        drop(inner);
                        for job in jobs {
                            job.sink.deliver(Err(failure.clone()));
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// Terminates: fails every queued and running task with `PoolTerminated`, stops every worker.
fn terminate_now(shared: &Shared) {
    let (arrived, jobs, workers) = {
        let mut inner = shared.lock();
        let arrived = std::mem::take(&mut inner.handoff);
        let mut workers = std::mem::take(&mut inner.workers);
        for w in &workers {
            if w.registered.is_some() {
                let _ = inner.epoll.delete(w.sock.as_fd());
            }
            let _ = inner.epoll.delete(w.sentinel.as_fd());
        }
        let mut jobs: Vec<Job> = Vec::new();
        for w in &mut workers {
            jobs.extend(w.inflight.drain(..));
        }
        jobs.extend(inner.pending.drain(..));
        (arrived, jobs, workers)
    };
    // Results that arrived before the pool was terminated are still delivered.
    for (sink, outcome) in arrived {
        sink.deliver(outcome);
    }
    stop_workers(workers);
    for job in jobs {
        job.sink.deliver(Err(Failure::Terminated));
    }
}
