//! The bench tasks: what children (and the parent's `call` steps) run in a workload. Plain typed
//! functions, so every start method can run them and the timed path does no decoding.
//! `harness/py/bench_reference.py` mirrors them.

use super::{Arg, Env, Obj, WAIT};
use crate::catalogue::{ArgKind, TaskSpec};
use mproc::{Connection, Process, Queue, Value};

/// The tasks a workload may name (`process`, `call`, a pool's `apply_async` and `map`).
pub const TASKS: &[TaskSpec] = &[
    TaskSpec {
        name: "noop",
        args: &[],
        doc: "nothing",
    },
    TaskSpec {
        name: "identity",
        args: &[ArgKind::Int],
        doc: "returns x",
    },
    TaskSpec {
        name: "echo_bytes",
        args: &[ArgKind::Conn],
        doc: "echoes each message until an empty one",
    },
    TaskSpec {
        name: "sink_bytes",
        args: &[ArgKind::Conn, ArgKind::Conn],
        doc: "reads messages; acknowledges each empty one on `ack`; stops at `stop`",
    },
    TaskSpec {
        name: "put_n",
        args: &[ArgKind::Obj, ArgKind::Int],
        doc: "puts 0..n",
    },
    TaskSpec {
        name: "get_n",
        args: &[ArgKind::Obj, ArgKind::Int],
        doc: "gets n items",
    },
    TaskSpec {
        name: "increment_n",
        args: &[ArgKind::Obj, ArgKind::Int],
        doc: "n times: with v.get_lock(): v.value += 1",
    },
    TaskSpec {
        name: "lock_n",
        args: &[ArgKind::Obj, ArgKind::Int],
        doc: "n times: with lock: pass",
    },
    TaskSpec {
        name: "put_bytes_n",
        args: &[ArgKind::Obj, ArgKind::Int, ArgKind::Int],
        doc: "puts n messages of `size` bytes",
    },
    TaskSpec {
        name: "get_bytes_n",
        args: &[ArgKind::Obj, ArgKind::Int],
        doc: "gets n messages",
    },
];

/// Does nothing (the trivial process).
pub fn noop() {}

/// Returns its argument (the trivial pool item).
pub fn identity(x: i64) -> i64 {
    x
}

/// Echoes every message back until an empty message or end of file (ping-pong peer). Under
/// fork the child also holds a copy of its parent's end, so end of file alone would never come:
/// workloads stop it with an empty message.
pub fn echo_bytes(conn: Connection) {
    while let Ok(m) = conn.recv_bytes() {
        if m.is_empty() || conn.send_bytes(&m).is_err() {
            break;
        }
    }
}

/// Receives messages until the message `stop` or end of file; after each empty message,
/// acknowledges on `ack` (throughput sink).
pub fn sink_bytes(data: Connection, ack: Connection) {
    while let Ok(m) = data.recv_bytes() {
        if m == b"stop" || (m.is_empty() && ack.send_bytes(b"k").is_err()) {
            break;
        }
    }
}

/// Puts `0..n` on the queue (producer).
pub fn put_n(q: Queue<i64>, n: i64) -> mproc::Result<()> {
    for i in 0..n {
        q.put(i).map_err(mproc::Error::from)?;
    }
    Ok(())
}

/// Takes `n` items from the queue (consumer).
pub fn get_n(q: Queue<i64>, n: i64) -> mproc::Result<()> {
    for _ in 0..n {
        std::hint::black_box(q.get_timeout(WAIT)?);
    }
    Ok(())
}

/// Adds 1 to the value `n` times, each under the value's lock (Python's
/// `with v.get_lock(): v.value += 1`).
pub fn increment_n(v: Value<i64>, n: i64) -> mproc::Result<()> {
    for _ in 0..n {
        let _g = v.get_lock().lock()?;
        let raw = v.get_obj();
        raw.set(raw.get() + 1);
    }
    Ok(())
}

/// Acquires and releases the lock `n` times (a contender of the lock curve).
pub fn lock_n(l: mproc::Lock, n: i64) -> mproc::Result<()> {
    for _ in 0..n {
        drop(std::hint::black_box(l.lock()?));
    }
    Ok(())
}

/// Puts `n` messages of `size` bytes on the queue.
pub fn put_bytes_n(q: Queue<Vec<u8>>, n: i64, size: i64) -> mproc::Result<()> {
    let msg = vec![b'x'; size.max(0) as usize];
    for _ in 0..n {
        q.put(msg.clone()).map_err(mproc::Error::from)?;
    }
    Ok(())
}

/// Takes `n` messages from the queue.
pub fn get_bytes_n(q: Queue<Vec<u8>>, n: i64) -> mproc::Result<()> {
    for _ in 0..n {
        std::hint::black_box(q.get_timeout(WAIT)?);
    }
    Ok(())
}

impl Env {
    pub(super) fn conn(&self, slot: usize) -> Result<&Connection, String> {
        match &self.slots[slot] {
            Obj::Conn(c) => Ok(c),
            other => Err(format!("slot {slot} is not a connection: {other:?}")),
        }
    }
    fn take_conn(&mut self, slot: usize) -> Result<Connection, String> {
        match std::mem::take(&mut self.slots[slot]) {
            Obj::Conn(c) => Ok(c),
            other => Err(format!("slot {slot} is not a connection: {other:?}")),
        }
    }
    pub(super) fn int(args: &[Arg], i: usize) -> Result<i64, String> {
        match args.get(i) {
            Some(Arg::Int(n)) => Ok(*n),
            other => Err(format!("argument {i} must be an integer, found {other:?}")),
        }
    }
    fn slot(args: &[Arg], i: usize) -> Result<usize, String> {
        match args.get(i) {
            Some(Arg::Slot(s)) => Ok(*s),
            other => Err(format!(
                "argument {i} must be an object id, found {other:?}"
            )),
        }
    }
    fn queue(&self, slot: usize) -> Result<&Queue<i64>, String> {
        match &self.slots[slot] {
            Obj::Queue(q) => Ok(q),
            other => Err(format!("slot {slot} is not a queue: {other:?}")),
        }
    }
    fn bytes_queue(&self, slot: usize) -> Result<&Queue<Vec<u8>>, String> {
        match &self.slots[slot] {
            Obj::BytesQueue(q) => Ok(q),
            other => Err(format!("slot {slot} is not a queue of bytes: {other:?}")),
        }
    }
    fn lock(&self, slot: usize) -> Result<&mproc::Lock, String> {
        match &self.slots[slot] {
            Obj::Lock(l) => Ok(l),
            other => Err(format!("slot {slot} is not a lock: {other:?}")),
        }
    }
    fn value(&self, slot: usize) -> Result<&Value<i64>, String> {
        match &self.slots[slot] {
            Obj::Value(v) => Ok(v),
            other => Err(format!("slot {slot} is not a value: {other:?}")),
        }
    }

    /// Makes a process running bench task `task` with `args`.
    pub(super) fn make_process(&mut self, task: &str, args: &[Arg]) -> Result<Process, String> {
        let ctx = self.ctx;
        let int = |i| Self::int(args, i);
        let slot = |i| Self::slot(args, i);
        Ok(match task {
            "noop" => ctx.process(noop, ()),
            "echo_bytes" => {
                let c = self.take_conn(slot(0)?)?;
                ctx.process(echo_bytes, (c,))
            }
            "sink_bytes" => {
                let d = self.take_conn(slot(0)?)?;
                let a = self.take_conn(slot(1)?)?;
                ctx.process(sink_bytes, (d, a))
            }
            "put_n" => ctx.process(put_n, (self.queue(slot(0)?)?.clone(), int(1)?)),
            "get_n" => ctx.process(get_n, (self.queue(slot(0)?)?.clone(), int(1)?)),
            "increment_n" => ctx.process(increment_n, (self.value(slot(0)?)?.clone(), int(1)?)),
            "lock_n" => ctx.process(lock_n, (self.lock(slot(0)?)?.clone(), int(1)?)),
            "put_bytes_n" => {
                let q = self.bytes_queue(slot(0)?)?.clone();
                ctx.process(put_bytes_n, (q, int(1)?, int(2)?))
            }
            other => return Err(format!("unknown bench task `{other}` for a process")),
        })
    }

    /// Runs bench task `task` with `args` here (a `call` step).
    pub(super) fn call_task(&mut self, task: &str, args: &[Arg]) -> Result<(), String> {
        let e = |e: mproc::Error| e.to_string();
        let int = |i| Self::int(args, i);
        let slot = |i| Self::slot(args, i);
        match task {
            "noop" => {
                noop();
                Ok(())
            }
            "identity" => {
                identity(int(0)?);
                Ok(())
            }
            "put_n" => put_n(self.queue(slot(0)?)?.clone(), int(1)?).map_err(e),
            "get_n" => get_n(self.queue(slot(0)?)?.clone(), int(1)?).map_err(e),
            "increment_n" => increment_n(self.value(slot(0)?)?.clone(), int(1)?).map_err(e),
            "lock_n" => lock_n(self.lock(slot(0)?)?.clone(), int(1)?).map_err(e),
            "get_bytes_n" => get_bytes_n(self.bytes_queue(slot(0)?)?.clone(), int(1)?).map_err(e),
            other => Err(format!("unknown bench task `{other}` for `call`")),
        }
    }
}
