//! A workload's steps compiled into a [`Kernel`]: closures with every id resolved to a slot and
//! every argument resolved to a value, so that the timed passes do no lookups or parsing.
//!
//! The steps are the case loader's typed [`crate::vocab::Op`]s; `compile.rs` turns the actions
//! the bench runs (those marked `bench` in the vocabulary, see `cases/README.md`) into
//! closures and refuses the others by name. `tasks.rs` holds the bench tasks.
//! `harness/py/bench_reference.py` mirrors both.

mod compile;
mod tasks;

pub use tasks::{
    echo_bytes, get_bytes_n, get_n, identity, increment_n, lock_n, noop, put_bytes_n, put_n,
    sink_bytes, TASKS,
};

use super::placement::{self, Child};
use super::probe::Probe;
use super::workload::Workload;
use mproc::{AsyncResult, Connection, Context, Pool, Process, Queue, StartMethod, Value};
use std::time::{Duration, Instant};

/// How long any wait for a child may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(60);

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
    fn pool(&self, slot: usize) -> Result<&Pool, String> {
        match &self.slots[slot] {
            Obj::Pool(p) => Ok(p),
            other => Err(format!("slot {slot} is not a pool: {other:?}")),
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
    /// Whether the synthetic 1.5× slowdown is injected: after each timed pass, this thread
    /// spins for half the pass's time.
    slow: bool,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("ops", &self.ops)
            .field("slow", &self.slow)
            .finish()
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
    p.join_timeout(WAIT).map_err(|e| e.to_string())?;
    match p.exitcode().map_err(|e| e.to_string())? {
        Some(0) => Ok(()),
        Some(c) => Err(format!("child exited with {c}")),
        None => Err(format!("child still running after {WAIT:?}")),
    }
}

/// Joins a process (or a group: each must exit 0), or a pool.
fn join(env: &mut Env, id: usize) -> Result<(), String> {
    match &env.slots[id] {
        Obj::Proc(p) => join_one(p),
        Obj::Procs(ps) => ps.iter().try_for_each(join_one),
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
    /// the bench's timed path and nowhere in the library: each timed pass is followed by a spin
    /// of half its own time, so every sample costs 1.5× whatever number of passes it holds.
    /// (Running every second pass twice made samples of one pass alternate 1× and 2×, and the
    /// ratio of medians of such a mix lands anywhere between.)
    pub fn compile(w: &Workload, method: StartMethod, slowdown: bool) -> Result<Kernel, String> {
        let (setup, timed, teardown, slots) = compile::steps(w, method)?;
        Ok(Kernel {
            env: Env {
                ctx: mproc::get_context(method),
                slots: (0..slots).map(|_| Obj::Empty).collect(),
            },
            setup,
            timed,
            teardown,
            ops: w.ops(),
            slow: slowdown,
        })
    }

    /// Ends whatever is left: running processes are killed and joined, objects dropped.
    fn cleanup(&mut self) {
        let end = |p: &Process| {
            if p.is_alive().unwrap_or(false) {
                let _ = p.kill();
            }
            let _ = p.join_timeout(WAIT);
        };
        for s in &mut self.env.slots {
            match s {
                Obj::Proc(p) => end(p),
                Obj::Procs(ps) => ps.iter().for_each(end),
                Obj::Pool(p) => {
                    let _ = p.terminate();
                    let _ = p.join();
                }
                _ => {}
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
            let pass = Instant::now();
            placement::reset_alternation();
            if let Err(e) = run_steps(&mut self.env, &mut self.timed) {
                self.cleanup();
                return Err(e);
            }
            if self.slow {
                // Half the pass's own time again, spent on this CPU: every pass (so every
                // sample, however many passes it holds) costs 1.5x.
                let extra = pass.elapsed() / 2;
                let spin = Instant::now();
                while spin.elapsed() < extra {
                    std::hint::spin_loop();
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
