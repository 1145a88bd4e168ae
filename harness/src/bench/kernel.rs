//! Compiles a workload's steps into a [`Kernel`]: closures with every id resolved to a slot and
//! every argument resolved to a value, so that the timed passes do no lookups or parsing.
//!
//! The bench understands the subset of the harness's step vocabulary that workloads need (see
//! `cases/bench/README.md`), plus the bench tasks below. `harness/py/bench_reference.py`
//! mirrors both.

use super::placement::{self, Child};
use super::probe::Probe;
use super::workload::{resolve_int, Workload};
use mproc::{AsyncResult, Connection, Context, Pool, Process, Queue, StartMethod, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long any wait for a child may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Bench tasks: what children run. Plain functions, so every start method can run them.

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
    while let Ok(m) = conn.recv_bytes(None) {
        if m.is_empty() || conn.send_bytes(&m).is_err() {
            break;
        }
    }
}

/// Receives messages until the message `stop` or end of file; after each empty message,
/// acknowledges on `ack` (throughput sink).
pub fn sink_bytes(data: Connection, ack: Connection) {
    while let Ok(m) = data.recv_bytes(None) {
        if m == b"stop" || (m.is_empty() && ack.send_bytes(b"k").is_err()) {
            break;
        }
    }
}

/// Puts `0..n` on the queue (producer).
pub fn put_n(q: Queue<i64>, n: i64) -> mproc::Result<()> {
    for i in 0..n {
        q.put(i, true, None).map_err(mproc::Error::from)?;
    }
    Ok(())
}

/// Takes `n` items from the queue (consumer).
pub fn get_n(q: Queue<i64>, n: i64) -> mproc::Result<()> {
    for _ in 0..n {
        std::hint::black_box(q.get(true, Some(WAIT))?);
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
        q.put(msg.clone(), true, None).map_err(mproc::Error::from)?;
    }
    Ok(())
}

/// Takes `n` messages from the queue.
pub fn get_bytes_n(q: Queue<Vec<u8>>, n: i64) -> mproc::Result<()> {
    for _ in 0..n {
        std::hint::black_box(q.get(true, Some(WAIT))?);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// A live object of a kernel.
#[derive(Debug, Default)]
pub enum Obj {
    /// Nothing (not made yet, or moved into a child).
    #[default]
    Empty,
    /// A connection.
    Conn(Connection),
    /// A process.
    Proc(Process),
    /// A group of processes (`process = { count = N, .. }`).
    Procs(Vec<Process>),
    /// A queue of integers.
    Queue(Queue<i64>),
    /// A queue of byte strings (`queue = { bytes = true, .. }`).
    BytesQueue(Queue<Vec<u8>>),
    /// A lock.
    Lock(mproc::Lock),
    /// A shared integer with its lock.
    Value(Value<i64>),
    /// A pool.
    Pool(Pool),
    /// The result of `apply_async` of a task returning nothing.
    Unit(AsyncResult<()>),
    /// The result of `apply_async` of a task returning an integer.
    Int(AsyncResult<i64>),
}

/// An argument, resolved at compile time.
#[derive(Clone, Debug)]
pub enum Arg {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An object, by slot.
    Slot(usize),
}

/// The objects and the context a kernel acts on.
#[derive(Debug)]
pub struct Env {
    /// The start method's context.
    pub ctx: Context,
    /// The objects, by slot.
    pub slots: Vec<Obj>,
}

impl Env {
    fn conn(&self, slot: usize) -> Result<&Connection, String> {
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
    fn int(args: &[Arg], i: usize) -> Result<i64, String> {
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

    /// Makes a process running bench task `task` with `args`.
    fn make_process(&mut self, task: &str, args: &[Arg]) -> Result<Process, String> {
        let ctx = self.ctx;
        Ok(match task {
            "noop" => ctx.process(noop, ()),
            "echo_bytes" => {
                let c = self.take_conn(Self::slot(args, 0)?)?;
                ctx.process(echo_bytes, (c,))
            }
            "sink_bytes" => {
                let d = self.take_conn(Self::slot(args, 0)?)?;
                let a = self.take_conn(Self::slot(args, 1)?)?;
                ctx.process(sink_bytes, (d, a))
            }
            other => return self.make_process_ext(other, args),
        })
    }

    fn call_task(&mut self, task: &str, args: &[Arg]) -> Result<(), String> {
        match task {
            "noop" => noop(),
            "identity" => {
                identity(Self::int(args, 0)?);
            }
            other => return self.call_task_ext(other, args),
        }
        Ok(())
    }
}

/// Tasks and actions for the library's later modules (pools, queues, shared memory) slot in
/// here.
impl Env {
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
    fn pool(&self, slot: usize) -> Result<&Pool, String> {
        match &self.slots[slot] {
            Obj::Pool(p) => Ok(p),
            other => Err(format!("slot {slot} is not a pool: {other:?}")),
        }
    }
    fn value(&self, slot: usize) -> Result<&Value<i64>, String> {
        match &self.slots[slot] {
            Obj::Value(v) => Ok(v),
            other => Err(format!("slot {slot} is not a value: {other:?}")),
        }
    }
    fn make_process_ext(&mut self, task: &str, args: &[Arg]) -> Result<Process, String> {
        let ctx = self.ctx;
        Ok(match task {
            "put_n" => {
                let q = self.queue(Self::slot(args, 0)?)?.clone();
                ctx.process(put_n, (q, Self::int(args, 1)?))
            }
            "get_n" => {
                let q = self.queue(Self::slot(args, 0)?)?.clone();
                ctx.process(get_n, (q, Self::int(args, 1)?))
            }
            "increment_n" => {
                let v = self.value(Self::slot(args, 0)?)?.clone();
                ctx.process(increment_n, (v, Self::int(args, 1)?))
            }
            "lock_n" => {
                let l = self.lock(Self::slot(args, 0)?)?.clone();
                ctx.process(lock_n, (l, Self::int(args, 1)?))
            }
            "put_bytes_n" => {
                let q = self.bytes_queue(Self::slot(args, 0)?)?.clone();
                ctx.process(put_bytes_n, (q, Self::int(args, 1)?, Self::int(args, 2)?))
            }
            other => return Err(format!("unknown bench task `{other}` for a process")),
        })
    }
    fn call_task_ext(&mut self, task: &str, args: &[Arg]) -> Result<(), String> {
        let e = |e: mproc::Error| e.to_string();
        match task {
            "put_n" => put_n(
                self.queue(Self::slot(args, 0)?)?.clone(),
                Self::int(args, 1)?,
            )
            .map_err(e),
            "get_n" => get_n(
                self.queue(Self::slot(args, 0)?)?.clone(),
                Self::int(args, 1)?,
            )
            .map_err(e),
            "increment_n" => increment_n(
                self.value(Self::slot(args, 0)?)?.clone(),
                Self::int(args, 1)?,
            )
            .map_err(e),
            "lock_n" => lock_n(
                self.lock(Self::slot(args, 0)?)?.clone(),
                Self::int(args, 1)?,
            )
            .map_err(e),
            "get_bytes_n" => get_bytes_n(
                self.bytes_queue(Self::slot(args, 0)?)?.clone(),
                Self::int(args, 1)?,
            )
            .map_err(e),
            other => Err(format!("unknown bench task `{other}` for `call`")),
        }
    }
}

type ActionFn = Box<dyn FnMut(&mut Env) -> Result<(), String>>;

struct CStep {
    repeat: u64,
    actions: Vec<ActionFn>,
}

/// A compiled workload under one start method.
pub struct Kernel {
    env: Env,
    setup: Vec<CStep>,
    timed: Vec<CStep>,
    teardown: Vec<CStep>,
    ops: u64,
    /// Whether the synthetic 1.5× slowdown is injected: every second timed pass runs twice.
    slow: bool,
    /// Timed passes run so far (the injection's counter, kept across samples).
    passes: u64,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("ops", &self.ops)
            .field("slow", &self.slow)
            .finish()
    }
}

struct Compiler<'a> {
    w: &'a Workload,
    ids: BTreeMap<String, usize>,
}

impl Compiler<'_> {
    fn slot(&mut self, id: &str) -> usize {
        let n = self.ids.len();
        *self.ids.entry(id.to_string()).or_insert(n)
    }
    fn existing(&self, id: &str) -> Result<usize, String> {
        self.ids
            .get(id)
            .copied()
            .ok_or_else(|| format!("unknown object `{id}`"))
    }
    fn int(&self, v: &toml::Value) -> Result<i64, String> {
        resolve_int(v, &self.w.params)
    }
    fn arg(&self, v: &toml::Value) -> Result<Arg, String> {
        Ok(match v {
            toml::Value::Integer(i) => Arg::Int(*i),
            toml::Value::String(s) if s.starts_with('$') => Arg::Int(self.int(v)?),
            toml::Value::String(s) => match self.ids.get(s) {
                Some(&slot) => Arg::Slot(slot),
                None => Arg::Str(s.clone()),
            },
            other => return Err(format!("unsupported argument {other:?}")),
        })
    }
    fn args(&self, t: &toml::Value) -> Result<Vec<Arg>, String> {
        match t.get("args") {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(a)) => a.iter().map(|v| self.arg(v)).collect(),
            Some(other) => Err(format!("`args` must be a list, found {other:?}")),
        }
    }
    /// The primary field: `join = "p"` or `join = { id = "p" }`.
    fn primary<'v>(&self, v: &'v toml::Value, key: &str) -> Result<&'v str, String> {
        match v {
            toml::Value::String(s) => Ok(s),
            toml::Value::Table(t) => t
                .get(key)
                .and_then(|x| x.as_str())
                .ok_or_else(|| format!("needs the field `{key}`")),
            other => Err(format!("expected an id or a table, found {other:?}")),
        }
    }
    fn str_field<'v>(&self, v: &'v toml::Value, key: &str) -> Result<&'v str, String> {
        v.get(key)
            .and_then(|x| x.as_str())
            .ok_or_else(|| format!("needs the string field `{key}`"))
    }

    fn action(&mut self, op: &str, v: &toml::Value) -> Result<ActionFn, String> {
        Ok(match op {
            "pipe" => {
                let ids = v
                    .get("ids")
                    .and_then(|x| x.as_array())
                    .filter(|a| a.len() == 2)
                    .ok_or("`pipe` needs `ids = [a, b]`")?;
                let a = self.slot(ids[0].as_str().ok_or("ids are strings")?);
                let b = self.slot(ids[1].as_str().ok_or("ids are strings")?);
                let duplex = v.get("duplex").and_then(|x| x.as_bool()).unwrap_or(true);
                Box::new(move |env: &mut Env| {
                    let (x, y) = env.ctx.pipe(duplex).map_err(|e| e.to_string())?;
                    env.slots[a] = Obj::Conn(x);
                    env.slots[b] = Obj::Conn(y);
                    Ok(())
                })
            }
            "process" => {
                let task = self.str_field(v, "task")?.to_string();
                let args = self.args(v)?;
                let id = self.slot(self.str_field(v, "id")?);
                // `count = N` (a bench extension) makes a group of N processes that `start` and
                // `join` act on together.
                let count = v.get("count").map(|n| self.int(n)).transpose()?;
                Box::new(move |env: &mut Env| {
                    env.slots[id] = match count {
                        None => Obj::Proc(env.make_process(&task, &args)?),
                        Some(n) => Obj::Procs(
                            (0..n.max(0))
                                .map(|_| env.make_process(&task, &args))
                                .collect::<Result<_, _>>()?,
                        ),
                    };
                    Ok(())
                })
            }
            "call" => {
                let task = self.str_field(v, "task")?.to_string();
                let args = self.args(v)?;
                Box::new(move |env: &mut Env| env.call_task(&task, &args))
            }
            "start" => {
                let id = self.existing(self.primary(v, "id")?)?;
                Box::new(move |env: &mut Env| start(env, id))
            }
            "join" => {
                let id = self.existing(self.primary(v, "id")?)?;
                Box::new(move |env: &mut Env| join(env, id))
            }
            "close" => {
                let id = self.existing(self.primary(v, "id")?)?;
                Box::new(move |env: &mut Env| close(env, id))
            }
            "send_bytes" => {
                let id = self.existing(self.primary(v, "id")?)?;
                // `bytes = N` (a bench extension) sends N bytes; `data` sends the string's bytes.
                let buf: Vec<u8> = match (v.get("bytes"), v.get("data")) {
                    (Some(n), None) => vec![b'x'; self.int(n)?.max(0) as usize],
                    (None, Some(toml::Value::String(s))) => s.as_bytes().to_vec(),
                    _ => return Err("`send_bytes` needs `data` or (in the bench) `bytes`".into()),
                };
                Box::new(move |env: &mut Env| {
                    env.conn(id)?.send_bytes(&buf).map_err(|e| e.to_string())
                })
            }
            "recv_bytes" => {
                let id = self.existing(self.primary(v, "id")?)?;
                Box::new(move |env: &mut Env| {
                    env.conn(id)?
                        .recv_bytes(None)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            }
            other => return self.action_ext(other, v),
        })
    }

    /// Actions of the library's later modules slot in here.
    fn action_ext(&mut self, op: &str, v: &toml::Value) -> Result<ActionFn, String> {
        Ok(match op {
            "queue" => {
                let id = self.slot(self.primary(v, "id")?);
                // `bytes = true` (a bench extension): a queue of byte strings.
                let bytes = v.get("bytes").and_then(|b| b.as_bool()).unwrap_or(false);
                Box::new(move |env: &mut Env| {
                    let e = |e: mproc::Error| e.to_string();
                    env.slots[id] = if bytes {
                        Obj::BytesQueue(env.ctx.queue(None).map_err(e)?)
                    } else {
                        Obj::Queue(env.ctx.queue(None).map_err(e)?)
                    };
                    Ok(())
                })
            }
            "lock" => {
                let id = self.slot(self.str_field(v, "id")?);
                match v.get("kind").and_then(|k| k.as_str()) {
                    None | Some("lock") => {}
                    Some(k) => {
                        return Err(format!("the bench's locks are kind \"lock\", not {k:?}"))
                    }
                }
                Box::new(move |env: &mut Env| {
                    env.slots[id] = Obj::Lock(env.ctx.lock().map_err(|e| e.to_string())?);
                    Ok(())
                })
            }
            "value" => {
                let id = self.slot(self.primary(v, "id")?);
                match v.get("typecode").and_then(|t| t.as_str()) {
                    None | Some("q") => {}
                    Some(t) => {
                        return Err(format!("the bench's values are typecode \"q\", not {t:?}"))
                    }
                }
                let init = v.get("init").map(|x| self.int(x)).transpose()?.unwrap_or(0);
                Box::new(move |env: &mut Env| {
                    env.slots[id] = Obj::Value(env.ctx.value(init).map_err(|e| e.to_string())?);
                    Ok(())
                })
            }
            "pool" => {
                let id = self.slot(self.str_field(v, "id")?);
                let n = match v.get("processes") {
                    Some(x) => Some(self.int(x)?.max(1) as usize),
                    None => None,
                };
                Box::new(move |env: &mut Env| {
                    let mut b = env.ctx.pool();
                    if let Some(n) = n {
                        b = b.processes(n);
                    }
                    let pool = placement::for_child(Child::Pool, || b.build());
                    env.slots[id] = Obj::Pool(pool.map_err(|e| e.to_string())?);
                    Ok(())
                })
            }
            "map" => {
                let pool = self.existing(self.str_field(v, "pool")?)?;
                let task = self.str_field(v, "task")?.to_string();
                if task != "identity" {
                    return Err(format!("the bench maps the task `identity`, not `{task}`"));
                }
                let items = self.str_field(v, "items")?;
                let (a, b) = items
                    .split_once("..")
                    .ok_or_else(|| format!("bad range {items:?}: expected \"A..B\""))?;
                let num = |s: &str| -> Result<i64, String> {
                    let s = s.trim();
                    match s.parse::<i64>() {
                        Ok(i) => Ok(i),
                        Err(_) => self.int(&toml::Value::String(s.to_string())),
                    }
                };
                let (a, b) = (num(a)?, num(b)?);
                let chunksize = match v.get("chunksize") {
                    Some(x) => Some(self.int(x)?.max(1) as usize),
                    None => None,
                };
                Box::new(move |env: &mut Env| {
                    let p = env.pool(pool)?;
                    let out = match chunksize {
                        Some(c) => p.map_async_with(identity, a..b).chunksize(c).submit(),
                        None => p.map_async(identity, a..b),
                    }
                    .and_then(|r| r.get())
                    .map_err(|e| e.to_string())?;
                    if out.len() as i64 != b - a {
                        return Err(format!(
                            "map returned {} results for {} items",
                            out.len(),
                            b - a
                        ));
                    }
                    std::hint::black_box(out);
                    Ok(())
                })
            }
            "apply_async" => {
                let pool = self.existing(self.str_field(v, "pool")?)?;
                let task = self.str_field(v, "task")?.to_string();
                let args = self.args(v)?;
                let id = self.slot(self.str_field(v, "id")?);
                Box::new(move |env: &mut Env| {
                    let p = env.pool(pool)?;
                    let r = match task.as_str() {
                        "noop" => Obj::Unit(p.apply_async(noop, ()).map_err(|e| e.to_string())?),
                        "identity" => Obj::Int(
                            p.apply_async(identity, (Env::int(&args, 0)?,))
                                .map_err(|e| e.to_string())?,
                        ),
                        other => return Err(format!("unknown bench task `{other}` for a pool")),
                    };
                    env.slots[id] = r;
                    Ok(())
                })
            }
            "get" => {
                let id = self.existing(self.primary(v, "id")?)?;
                Box::new(move |env: &mut Env| match &env.slots[id] {
                    Obj::Unit(r) => r.get_timeout(WAIT).map_err(|e| e.to_string()),
                    Obj::Int(r) => r.get_timeout(WAIT).map(drop).map_err(|e| e.to_string()),
                    other => Err(format!("slot {id} is not a result: {other:?}")),
                })
            }
            other => return Err(format!("unknown step `{other}` for the bench")),
        })
    }
}

/// Starts a process (or a group), each placed by [`placement::for_child`].
fn start(env: &mut Env, id: usize) -> Result<(), String> {
    let one =
        |p: &Process| placement::for_child(Child::Process, || p.start()).map_err(|e| e.to_string());
    match &env.slots[id] {
        Obj::Proc(p) => one(p),
        Obj::Procs(ps) => ps.iter().try_for_each(one),
        other => Err(format!("slot {id} is not a process: {other:?}")),
    }
}

fn join_one(p: &Process) -> Result<(), String> {
    p.join(Some(WAIT)).map_err(|e| e.to_string())?;
    match p.exitcode().map_err(|e| e.to_string())? {
        Some(0) => Ok(()),
        Some(c) => Err(format!("child exited with {c}")),
        None => Err(format!("child still running after {WAIT:?}")),
    }
}

fn join(env: &mut Env, id: usize) -> Result<(), String> {
    match &env.slots[id] {
        Obj::Proc(p) => join_one(p),
        Obj::Procs(ps) => ps.iter().try_for_each(join_one),
        other => join_ext(env, id, other),
    }
}

fn join_ext(_env: &Env, id: usize, other: &Obj) -> Result<(), String> {
    match other {
        Obj::Pool(p) => p.join().map_err(|e| e.to_string()),
        other => Err(format!("cannot join slot {id}: {other:?}")),
    }
}

fn close(env: &mut Env, id: usize) -> Result<(), String> {
    match std::mem::take(&mut env.slots[id]) {
        Obj::Conn(mut c) => {
            c.close();
            Ok(())
        }
        Obj::Proc(p) => p.close().map_err(|e| e.to_string()),
        Obj::Procs(ps) => ps
            .iter()
            .try_for_each(|p| p.close())
            .map_err(|e| e.to_string()),
        Obj::Queue(q) => {
            q.close();
            Ok(())
        }
        Obj::BytesQueue(q) => {
            q.close();
            Ok(())
        }
        Obj::Pool(p) => {
            // Closed, not dropped: `join` comes next and needs it.
            let r = p.close().map_err(|e| e.to_string());
            env.slots[id] = Obj::Pool(p);
            r
        }
        Obj::Value(_) | Obj::Lock(_) | Obj::Unit(_) | Obj::Int(_) | Obj::Empty => Ok(()),
    }
}

fn run_steps(env: &mut Env, steps: &mut [CStep]) -> Result<(), String> {
    for s in steps {
        for _ in 0..s.repeat {
            for a in &mut s.actions {
                a(env)?;
            }
        }
    }
    Ok(())
}

impl Kernel {
    /// Compiles `w` for `method`. `slowdown` injects the gate's synthetic regression, here in
    /// the bench's timed path and nowhere in the library: every second counted pass over the
    /// timed steps runs them twice, so a sample of an even number of passes costs 1.5× (with
    /// one pass per sample, samples alternate 1× and 2×).
    pub fn compile(w: &Workload, method: StartMethod, slowdown: bool) -> Result<Kernel, String> {
        let mut c = Compiler {
            w,
            ids: BTreeMap::new(),
        };
        let timed = &w.bench.timed;
        let first = w
            .steps
            .iter()
            .position(|s| s.label.as_deref() == Some(timed.as_str()))
            .ok_or_else(|| format!("no step labelled `{timed}`"))?;
        let last = w
            .steps
            .iter()
            .rposition(|s| s.label.as_deref() == Some(timed.as_str()))
            .expect("found above");
        let (mut setup, mut tm, mut teardown) = (Vec::new(), Vec::new(), Vec::new());
        for (i, s) in w.steps.iter().enumerate() {
            let mut actions = Vec::new();
            for a in &s.actions {
                actions.push(c.action(&a.op, &a.value).map_err(|m| {
                    format!(
                        "{}:{}:1: step {} `{}`: {m}",
                        w.path.display(),
                        s.line,
                        s.index,
                        a.op
                    )
                })?);
            }
            let cs = CStep {
                repeat: s.repeat,
                actions,
            };
            if i < first {
                setup.push(cs)
            } else if i <= last {
                tm.push(cs)
            } else {
                teardown.push(cs)
            }
        }
        let n = c.ids.len();
        Ok(Kernel {
            env: Env {
                ctx: mproc::get_context(method),
                slots: (0..n).map(|_| Obj::Empty).collect(),
            },
            setup,
            timed: tm,
            teardown,
            ops: w.ops()?,
            slow: slowdown,
            passes: 0,
        })
    }

    /// Ends whatever is left: running processes are killed and joined, objects dropped.
    fn cleanup(&mut self) {
        for s in &mut self.env.slots {
            if let Obj::Proc(p) = s {
                if p.is_alive().unwrap_or(false) {
                    let _ = p.kill();
                }
                let _ = p.join(Some(WAIT));
            }
            if let Obj::Procs(ps) = s {
                for p in ps.iter() {
                    if p.is_alive().unwrap_or(false) {
                        let _ = p.kill();
                    }
                    let _ = p.join(Some(WAIT));
                }
            }
            if let Obj::Pool(p) = s {
                let _ = p.terminate();
                let _ = p.join();
            }
            *s = Obj::Empty;
        }
    }
}

impl Probe for Kernel {
    fn setup(&mut self) -> Result<(), String> {
        placement::reset_alternation();
        let r = run_steps(&mut self.env, &mut self.setup);
        if r.is_err() {
            self.cleanup();
        }
        r
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        let t0 = Instant::now();
        for _ in 0..iters {
            let twice = self.slow && self.passes % 2 == 1;
            self.passes += 1;
            for _ in 0..1 + u64::from(twice) {
                placement::reset_alternation();
                if let Err(e) = run_steps(&mut self.env, &mut self.timed) {
                    self.cleanup();
                    return Err(e);
                }
            }
        }
        Ok(t0.elapsed())
    }
    fn teardown(&mut self) -> Result<(), String> {
        let r = run_steps(&mut self.env, &mut self.teardown);
        self.cleanup();
        r
    }
    fn ops_per_pass(&self) -> u64 {
        self.ops
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.cleanup();
    }
}
