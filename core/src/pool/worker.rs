//! The worker side of a pool, and the wire protocol between a pool and its workers.
//!
//! Each worker is an mproc [`crate::Process`] whose target is [`worker_main`], holding one end of
//! a duplex socketpair (the pool holds the other). Frames on that socket are
//! `[u32 little-endian length of the rest][tag byte][body]`:
//!
//! - pool → worker: [`P_TASK`] `id: u64`, an [`EntryOffset`] (bincode), then the task's
//!   arguments (bincode `Vec<A>`: one element for `apply`, a chunk for `map`); [`P_STOP`].
//! - worker → pool: [`W_READY`] once the initializer ran; [`W_RESULT`] `id: u64`,
//!   `nanos: u64` (how long the task ran), then the task's outcome (below); [`W_INIT_FAILED`]
//!   and a [`RemoteErr`] when the initializer panicked.
//!
//! A task's outcome is [`OUT_ITEMS`] followed, per argument, by [`ITEM_OK`] and the bincode
//! value or [`ITEM_ERR`] and a [`RemoteErr`]; or [`OUT_TASK_ERR`] and one [`RemoteErr`] for the
//! whole task (its arguments could not be decoded, say).
//!
//! The worker answers tasks in the order they arrived, and sends each answer before it starts
//! the next task, so the pool knows at every moment which task a worker is running: the oldest
//! unanswered one, if the worker has read it (the pool keeps a duplicate of the worker's end of
//! the socket and asks how many bytes are still unread there).

use crate::error::Error;
use crate::launch::child::{self, ExitRequest};
use crate::reduction;
use crate::sys::{self, fnptr::EntryOffset};
use crate::target::Target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::io::{StderrLock, StdoutLock};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(crate) const P_TASK: u8 = 1;
pub(crate) const P_STOP: u8 = 2;
pub(crate) const W_READY: u8 = 1;
pub(crate) const W_RESULT: u8 = 2;
pub(crate) const W_INIT_FAILED: u8 = 3;

pub(crate) const OUT_ITEMS: u8 = 0;
pub(crate) const OUT_TASK_ERR: u8 = 1;
pub(crate) const ITEM_OK: u8 = 0;
pub(crate) const ITEM_ERR: u8 = 1;

/// A failure in a worker, carried back as text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RemoteErr {
    pub kind: String,
    pub message: String,
    pub traceback: String,
}

/// The `kind` of a [`RemoteErr`] for a result that could not be serialised.
pub(crate) const KIND_SERIALIZE: &str = "Serialize";

impl From<RemoteErr> for Error {
    fn from(e: RemoteErr) -> Error {
        if e.kind == KIND_SERIALIZE {
            Error::Serialize(e.message)
        } else {
            Error::Remote {
                kind: e.kind,
                message: e.message,
                traceback: e.traceback,
            }
        }
    }
}

/// Starts a frame with `tag` in `buf`; returns where it starts, for [`end_frame`].
pub(crate) fn begin_frame(buf: &mut Vec<u8>, tag: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, tag]);
    start
}

/// Writes the length of the frame begun at `start`. `None` if it is longer than a frame can be.
pub(crate) fn end_frame(buf: &mut [u8], start: usize) -> Option<()> {
    let len = u32::try_from(buf.len() - start - 4).ok()?;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Some(())
}

/// The first complete frame in `buf`: `(tag, body range, total length)`.
pub(crate) fn parse_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len == 0 || buf.len() < 4 + len {
        return None;
    }
    Some((buf[4], 5..4 + len, 4 + len))
}

/// A worker's end of its channel to the pool. It crosses to spawn and forkserver workers as a
/// descriptor (`SCM_RIGHTS`); a fork worker inherits it.
#[derive(Debug)]
pub(crate) struct WorkerChannel(pub(crate) OwnedFd);

impl Serialize for WorkerChannel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        reduction::serialize_fd(self.0.as_fd(), "pool worker channel", s)
    }
}

impl<'de> Deserialize<'de> for WorkerChannel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        reduction::deserialize_fd(d).map(WorkerChannel)
    }
}

/// What a worker needs to know besides its channel and the initializer's arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    /// Whether to run the initializer.
    pub has_init: bool,
    /// Leave after this many tasks (Python's `maxtasksperchild`).
    pub maxtasks: Option<u64>,
}

/// The initializer's arguments, shared by every worker the pool starts. A spawn or forkserver
/// worker receives its own copy by serialisation (descriptors inside travel by `SCM_RIGHTS`); a
/// fork worker finds its copy in its memory.
pub(crate) struct InitArgs<A>(pub(crate) Arc<Mutex<Option<A>>>);

impl<A> Clone for InitArgs<A> {
    fn clone(&self) -> Self {
        InitArgs(Arc::clone(&self.0))
    }
}

impl<A> InitArgs<A> {
    fn take(&self) -> Option<A> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<A: Serialize> Serialize for InitArgs<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .serialize(s)
    }
}

impl<'de, A: Deserialize<'de>> Deserialize<'de> for InitArgs<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let a = Option::<A>::deserialize(d)?;
        Ok(InitArgs(Arc::new(Mutex::new(a))))
    }
}

thread_local! {
    /// The standard streams' locks, held by a thread that forks a worker.
    static HELD_STREAMS: RefCell<Option<(StdoutLock<'static>, StderrLock<'static>)>> =
        const { RefCell::new(None) };
}

/// Takes the standard streams' locks before forking a worker, so that no other thread holds
/// them at the instant of the fork (a fork child would wait forever for a lock held by a thread
/// that does not exist in it). The child inherits them held by its only thread, and
/// [`worker_main`] releases them first thing; the parent releases them with
/// [`release_std_streams`] once the worker is started.
pub(crate) fn hold_std_streams() {
    let locks = (std::io::stdout().lock(), std::io::stderr().lock());
    HELD_STREAMS.with(|h| *h.borrow_mut() = Some(locks));
}

/// Releases the locks taken by [`hold_std_streams`] on this thread, if any.
pub(crate) fn release_std_streams() {
    HELD_STREAMS.with(|h| h.borrow_mut().take());
}

thread_local! {
    /// Set while this thread runs a task or the initializer: its panics are captured, not
    /// printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Where the panic hook leaves the location and backtrace of a captured panic.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that, while a task runs, records the panic's location and a backtrace
/// instead of printing them; other panics go to the previous hook.
fn install_panic_capture() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if CAPTURING.with(Cell::get) {
            let location = info
                .location()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "an unknown location".into());
            let backtrace = Backtrace::force_capture();
            let text = format!("panicked at {location}:\n{backtrace}");
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        } else {
            previous(info);
        }
    }));
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Runs `f`, turning a panic into a [`RemoteErr`] of kind `"panic"` with the panic's message and
/// backtrace. [`crate::exit`] inside `f` still leaves the worker.
fn run_captured<R>(f: impl FnOnce() -> R) -> Result<R, RemoteErr> {
    CAPTURING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    match r {
        Ok(v) => Ok(v),
        Err(payload) => {
            if payload.is::<ExitRequest>() {
                panic::resume_unwind(payload);
            }
            let message = payload_message(payload.as_ref());
            let traceback = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            Err(RemoteErr {
                kind: "panic".into(),
                message,
                traceback,
            })
        }
    }
}

fn push_err(out: &mut Vec<u8>, e: &RemoteErr) {
    // A RemoteErr is three strings: serialising it into a Vec cannot fail.
    let _ = bincode::serialize_into(&mut *out, e);
}

fn task_error(out: &mut Vec<u8>, kind: &str, message: String) {
    out.push(OUT_TASK_ERR);
    push_err(
        out,
        &RemoteErr {
            kind: kind.into(),
            message,
            traceback: String::new(),
        },
    );
}

/// The entry point of a task of callable `F` with argument tuple `A`, monomorphised per task type
/// and sent to workers as an [`EntryOffset`]. Decodes a `Vec<A>`, calls `F` on each element and
/// appends each outcome to `out` (see the module documentation).
pub(crate) fn task_trampoline<F, A>(input: &[u8], out: &mut Vec<u8>)
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let Some(f) = sys::fnptr::conjure_zst_fn::<F, A>() else {
        task_error(
            out,
            "NotSpawnable",
            format!("{} is not zero-sized", std::any::type_name::<F>()),
        );
        return;
    };
    let items: Vec<A> = match bincode::deserialize(input) {
        Ok(v) => v,
        Err(e) => {
            task_error(out, "Deserialize", e.to_string());
            return;
        }
    };
    out.push(OUT_ITEMS);
    for a in items {
        match run_captured(|| f.call(a)) {
            Ok(r) => {
                let mark = out.len();
                out.push(ITEM_OK);
                if let Err(e) = bincode::serialize_into(&mut *out, &r) {
                    out.truncate(mark);
                    out.push(ITEM_ERR);
                    push_err(
                        out,
                        &RemoteErr {
                            kind: KIND_SERIALIZE.into(),
                            message: format!("the task's result could not be serialised: {e}"),
                            traceback: String::new(),
                        },
                    );
                }
            }
            Err(e) => {
                out.push(ITEM_ERR);
                push_err(out, &e);
            }
        }
    }
}

/// A function that does nothing: the "initializer" of a pool without one.
pub(crate) fn no_init() {}

/// Writes all of `buf` to the (blocking) socket. `false` if the pool is gone.
fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        match sys::write(fd, &buf[done..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => done += n,
        }
    }
    true
}

/// The target of every pool worker: runs the initializer `F(A)` (if the pool has one), then
/// answers tasks until told to stop, until the pool's end closes, or after `maxtasks` tasks.
pub(crate) fn worker_main<F, A>(chan: WorkerChannel, cfg: WorkerConfig, init: InitArgs<A>)
where
    F: Target<A>,
    A: Send + 'static,
{
    release_std_streams();
    install_panic_capture();
    let fd = chan.0;
    let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    if cfg.has_init {
        let outcome = match (sys::fnptr::conjure_zst_fn::<F, A>(), init.take()) {
            (Some(f), Some(args)) => run_captured(|| drop(f.call(args))),
            _ => Err(RemoteErr {
                kind: "InitializerMissing".into(),
                message: "the worker did not receive its initializer".into(),
                traceback: String::new(),
            }),
        };
        if let Err(e) = outcome {
            let start = begin_frame(&mut wbuf, W_INIT_FAILED);
            push_err(&mut wbuf, &e);
            let _ = end_frame(&mut wbuf, start);
            write_all(fd.as_fd(), &wbuf);
            child::exit(1);
        }
    }
    drop(init);
    let start = begin_frame(&mut wbuf, W_READY);
    let _ = end_frame(&mut wbuf, start);
    if !write_all(fd.as_fd(), &wbuf) {
        return;
    }
    wbuf.clear();

    let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut rpos = 0usize;
    let mut done: u64 = 0;
    loop {
        let Some((tag, body, total)) = parse_frame(&rbuf[rpos..]) else {
            // Nothing complete buffered: wait for more.
            if rpos > 0 {
                rbuf.drain(..rpos);
                rpos = 0;
            }
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(64 * 1024);
            }
            let room = rbuf.capacity() - rbuf.len();
            match sys::read_into_spare(fd.as_fd(), &mut rbuf, room) {
                Ok(0) | Err(_) => return, // the pool is gone
                Ok(_) => continue,
            }
        };
        let frame = &rbuf[rpos..rpos + total];
        match tag {
            P_TASK => {
                let mut body = &frame[body];
                let id = match body.get(..8) {
                    Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
                    None => return,
                };
                body = &body[8..];
                let entry: EntryOffset = match bincode::deserialize_from(&mut body) {
                    Ok(e) => e,
                    Err(_) => return,
                };
                let start = begin_frame(&mut wbuf, W_RESULT);
                wbuf.extend_from_slice(&id.to_le_bytes());
                let nanos_at = wbuf.len();
                wbuf.extend_from_slice(&0u64.to_le_bytes());
                let t0 = Instant::now();
                if !entry.call_task(body, &mut wbuf) {
                    task_error(
                        &mut wbuf,
                        "NotSpawnable",
                        "the worker is not running the same executable as the pool".into(),
                    );
                }
                let now = Instant::now();
                let nanos = now.duration_since(t0).as_nanos().min(u64::MAX as u128) as u64;
                wbuf[nanos_at..nanos_at + 8].copy_from_slice(&nanos.to_le_bytes());
                if end_frame(&mut wbuf, start).is_none() {
                    wbuf.truncate(start + 5 + 16);
                    task_error(
                        &mut wbuf,
                        KIND_SERIALIZE,
                        "the task's results are larger than 4 GiB".into(),
                    );
                    let _ = end_frame(&mut wbuf, start);
                }
                rpos += total;
                done += 1;
                // Every result goes out before the next task starts: if this worker dies in the
                // next task, the pool knows that this one finished.
                if !write_all(fd.as_fd(), &wbuf) {
                    return;
                }
                wbuf.clear();
                if cfg.maxtasks.is_some_and(|m| done >= m) {
                    return;
                }
            }
            P_STOP => {
                write_all(fd.as_fd(), &wbuf);
                return;
            }
            _ => return,
        }
    }
}
