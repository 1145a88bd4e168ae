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
//!   running: that task fails with `WorkerLost`, the others go back to the front of the queue.

use crate::context::cpu_count;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::launch::fork::{keep_from_fork_children, InternalThread};
use crate::method::StartMethod;
use crate::pool::protocol::{self, RemoteErr, WorkerMessage};
use crate::pool::results::{Failure, Outcome, Sink};
use crate::pool::worker::{self, WorkerChannel, WorkerConfig};
use crate::process::Process;
use crate::sys::{self, Interest};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolState {
    Run,
    Close,
    Terminate,
}

/// A submitted task: its frame (kept until answered, to hand it to another worker if its worker
/// dies before starting it) and its sink.
pub(crate) struct Job {
    pub msg: Vec<u8>,
    pub sink: Box<dyn Sink>,
}

/// Makes the `Process` of a new worker (knows the initializer's type).
pub(crate) trait WorkerFactory: Send + Sync {
    fn make(&self, ctx: Context, chan: WorkerChannel, cfg: WorkerConfig) -> Process;
}

struct Worker {
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
}

pub(crate) struct Inner {
    pub state: PoolState,
    pending: VecDeque<Job>,
    workers: Vec<Worker>,
    /// Moving average of how long a task runs, in nanoseconds (`None` before the first).
    avg_ns: Option<f64>,
    /// The initializer failed: the pool takes no more work.
    broken: Option<RemoteErr>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    factory: Box<dyn WorkerFactory>,
    ctx: Context,
    pub processes: usize,
    maxtasks: Option<u64>,
    has_init: bool,
    next_id: AtomicU64,
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
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                state: PoolState::Run,
                pending: VecDeque::new(),
                workers: Vec::with_capacity(processes),
                avg_ns: None,
                broken: None,
            }),
            wake_r,
            wake_w,
            factory,
            ctx,
            processes,
            maxtasks,
            has_init,
            next_id: AtomicU64::new(1),
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
                Ok(w) => shared.lock().workers.push(w),
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
                let _ = process.join_timeout(TERM_GRACE);
                return Err(e);
            }
        };
        sys::set_nonblocking(ours.as_fd(), true)?;
        Ok(Worker {
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

impl Inner {
    fn depth(&self) -> usize {
        match self.avg_ns {
            None => 1,
            Some(a) if a >= BATCH_BELOW_NS => 1,
            Some(a) => ((BATCH_BELOW_NS / a.max(1.0)) as usize).clamp(1, MAX_DEPTH),
        }
    }

    /// Hands queued tasks to workers with room, tells idle workers to stop once the pool is
    /// closed and drained, and writes what it can. Returns whether some output is left for the
    /// handler to write when the sockets have room.
    pub(crate) fn dispatch(&mut self) -> bool {
        if self.state == PoolState::Terminate {
            return false;
        }
        if self.broken.is_none() {
            let depth = self.depth();
            while !self.pending.is_empty() {
                let mut best: Option<usize> = None;
                for (i, w) in self.workers.iter().enumerate() {
                    if !w.ready || w.stopping || w.eof || w.inflight.len() >= depth {
                        continue;
                    }
                    if best.is_none_or(|b| w.inflight.len() < self.workers[b].inflight.len()) {
                        best = Some(i);
                    }
                }
                let Some(i) = best else { break };
                let job = self.pending.pop_front().expect("not empty");
                let w = &mut self.workers[i];
                w.out.extend_from_slice(&job.msg);
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
        let mut left = false;
        for w in &mut self.workers {
            if !w.out.is_empty() && !flush(w) {
                left = true;
            }
        }
        left
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
                    if let Some(job) = self.workers[i].inflight.pop_front() {
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
        let _ = w.process.join_timeout(Duration::from_millis(200));
        let exitcode = w.process.exitcode().ok().flatten().unwrap_or(1);
        if started_oldest(&w) {
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
        if w.process.join_timeout(TERM_GRACE).is_ok() && matches!(w.process.is_alive(), Ok(true)) {
            let _ = w.process.kill();
            let _ = w.process.join_timeout(TERM_GRACE);
        }
        let _ = w.process.close();
    }
}

fn reap(dead: Vec<Process>) {
    for p in dead {
        let _ = p.join_timeout(TERM_GRACE);
        let _ = p.close();
    }
}

/// The result-handling thread of a pool. Returns once the pool was terminated, or closed and
/// every worker has left.
pub(crate) fn run_handler(shared: Arc<Shared>) {
    let mut retry = false;
    loop {
        // Snapshot what to watch.
        let (socks, sentinels, terminate) = {
            let inner = shared.lock();
            let socks: Vec<(Arc<OwnedFd>, bool)> = inner
                .workers
                .iter()
                .filter(|w| !w.eof)
                .map(|w| (Arc::clone(&w.sock), !w.out.is_empty()))
                .collect();
            let sentinels: Vec<Arc<OwnedFd>> = inner
                .workers
                .iter()
                .map(|w| Arc::clone(&w.sentinel))
                .collect();
            (socks, sentinels, inner.state == PoolState::Terminate)
        };
        if terminate {
            return terminate_now(&shared);
        }
        let mut watch = vec![(shared.wake_r.as_fd(), Interest::Read)];
        for (s, wants_write) in &socks {
            watch.push((s.as_fd(), Interest::Read));
            if *wants_write {
                watch.push((s.as_fd(), Interest::Write));
            }
        }
        for s in &sentinels {
            watch.push((s.as_fd(), Interest::Read));
        }
        let timeout = if retry { RETRY_START } else { IDLE_POLL };
        let ready = match sys::poll(&watch, Some(timeout)) {
            Ok(r) => r,
            Err(_) => {
                std::thread::sleep(RETRY_START);
                continue;
            }
        };
        let ready_fds: Vec<i32> = {
            watch
                .iter()
                .zip(&ready)
                .filter(|(_, r)| **r)
                .map(|((fd, _), _)| fd.as_raw_fd())
                .collect()
        };
        drop(watch);
        if ready[0] {
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
            // Results and room to write.
            for i in 0..inner.workers.len() {
                let sock = inner.workers[i].sock.as_raw_fd();
                if !inner.workers[i].eof && ready_fds.contains(&sock) {
                    inner.read_worker(i, &mut work);
                    if !inner.workers[i].out.is_empty() {
                        flush(&mut inner.workers[i]);
                    }
                }
            }
            // Deaths.
            let mut i = 0;
            while i < inner.workers.len() {
                let sentinel = inner.workers[i].sentinel.as_raw_fd();
                if ready_fds.contains(&sentinel) {
                    inner.bury_worker(i, &mut work);
                } else {
                    i += 1;
                }
            }
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
                    inner.workers.push(w);
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
    let (jobs, workers) = {
        let mut inner = shared.lock();
        let mut workers = std::mem::take(&mut inner.workers);
        let mut jobs: Vec<Job> = Vec::new();
        for w in &mut workers {
            jobs.extend(w.inflight.drain(..));
        }
        jobs.extend(inner.pending.drain(..));
        (jobs, workers)
    };
    stop_workers(workers);
    for job in jobs {
        job.sink.deliver(Err(Failure::Terminated));
    }
}
