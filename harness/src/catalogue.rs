//! The registered task functions a case can run in a child (or a pool worker, or the parent).
//!
//! Each task is a plain `fn` with typed arguments; [`run`] decodes a [`TaskCall`] (JSON values
//! and real objects such as connections) into those arguments. The process target is the single
//! plain function [`process_main`], so every start method can run every task. Each call is
//! logged to the timeline file named by `MPROC_CASE_TIMELINE` (if set) for the HTML report.
//! `harness/py/reference.py` mirrors every task in Python.

use crate::ctypes::{CtError, SharedArray, SharedValue};
use mproc::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// The kind of a task argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// An integer.
    Int,
    /// A string.
    Str,
    /// Any value.
    Any,
    /// A list of values.
    List,
    /// A connection (the id of a pipe end made by an earlier step).
    Conn,
    /// A queue, lock, event, Value or Array (the id of an object made by an earlier step).
    Obj,
}

/// A task of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct TaskSpec {
    /// Its name in cases.
    pub name: &'static str,
    /// Its arguments.
    pub args: &'static [ArgKind],
    /// What it does.
    pub doc: &'static str,
}

use ArgKind::*;

/// Every task of conformance cases (benchmark workloads name the bench's tasks,
/// `bench::kernel::TASKS`).
pub const TASKS: &[TaskSpec] = &[
    TaskSpec { name: "noop", args: &[], doc: "returns null" },
    TaskSpec { name: "sleep", args: &[Int], doc: "sleeps ms milliseconds, returns null" },
    TaskSpec { name: "square", args: &[Int], doc: "returns x*x" },
    TaskSpec { name: "sleep_square", args: &[Int, Int], doc: "sleeps ms (2nd argument), returns x*x" },
    TaskSpec { name: "echo", args: &[Any], doc: "returns its argument" },
    TaskSpec { name: "fail", args: &[Str], doc: "fails with the message (Python: raises TaskFailure); a process exits 1" },
    TaskSpec { name: "panic", args: &[Str], doc: "panics with the message (Python: raises RuntimeError); a process exits 1" },
    TaskSpec { name: "exit", args: &[Int], doc: "leaves the process with exit code n (mproc::exit / sys.exit)" },
    TaskSpec { name: "hang", args: &[], doc: "sleeps for ever" },
    TaskSpec { name: "kill_self", args: &[Int], doc: "sends itself signal n" },
    TaskSpec { name: "print", args: &[Str], doc: "prints the line (flushed)" },
    TaskSpec { name: "run_proc", args: &[Str], doc: "the child of the first Process example: prints `Run child process NAME (PID)...`" },
    TaskSpec { name: "print_name", args: &[], doc: "prints the current process's name" },
    TaskSpec { name: "send", args: &[Conn, Any], doc: "sends the value, then closes the connection" },
    TaskSpec { name: "send_all", args: &[Conn, List], doc: "sends each value in turn, then closes" },
    TaskSpec { name: "sleep_send", args: &[Conn, Int, Any], doc: "sleeps ms, then sends the value" },
    TaskSpec { name: "send_bytes", args: &[Conn, Str], doc: "sends the string's bytes, then closes" },
    TaskSpec { name: "echo_conn", args: &[Conn], doc: "receives messages (bytes) and sends each back, until an empty message (CPython's `_echo`)" },
    TaskSpec { name: "recv_square", args: &[Conn], doc: "receives one integer and sends back its square" },
    TaskSpec { name: "send_self", args: &[Conn], doc: "sends {name, daemon} of the current process" },
    TaskSpec { name: "send_parent", args: &[Conn], doc: "sends the name of the parent process" },
    TaskSpec { name: "put", args: &[Obj, Any], doc: "puts the value on the queue" },
    TaskSpec { name: "put_all", args: &[Obj, List], doc: "puts each value on the queue in turn" },
    TaskSpec { name: "notes_write", args: &[Obj, List], doc: "the writer of the Queue example (a writer and a reader process share a Queue): prints `Process to write: PID`, then `Put X to queue...` and puts each" },
    TaskSpec { name: "notes_read", args: &[Obj], doc: "the reader of the Queue example: prints `Process to read: PID`, then `Get X from queue.` for ever" },
    TaskSpec { name: "square_queue", args: &[Obj, Obj, Int], doc: "n times: gets x from the first queue, puts x*x on the second" },
    TaskSpec { name: "consume", args: &[Obj, Int], doc: "gets n items from a JoinableQueue, calling task_done for each" },
    TaskSpec { name: "print_under_lock", args: &[Obj, Int], doc: "the f(l, i) of Python's synchronisation example: prints `hello world I` holding the lock" },
    TaskSpec { name: "increment_under_lock", args: &[Obj, Obj, Int], doc: "n times: takes the lock, adds 1 to the Value('i'), releases" },
    TaskSpec { name: "increment_value", args: &[Obj, Int], doc: "n times: adds 1 to the Value('i') under its own lock (get_lock)" },
    TaskSpec { name: "add_one", args: &[Obj], doc: "adds 1 to a Value, or to every item of an Array, of any typecode (under its lock; 'c': the next byte)" },
    TaskSpec { name: "hold_lock", args: &[Obj, Obj, Int], doc: "takes the lock (or one semaphore unit), sets the Event, holds it ms, releases" },
    TaskSpec { name: "notes_negate", args: &[Obj, Obj], doc: "the f(n, a) of Python's shared-memory example: n.value = 3.1415927; a[i] = -a[i]" },
    TaskSpec { name: "set_event", args: &[Obj], doc: "sets the Event" },
    TaskSpec { name: "condition_wait", args: &[Obj, Obj, Conn], doc: "holding the Condition, sets the Event, waits (up to 10 s) to be notified, sends whether it was" },
    TaskSpec { name: "wait_barrier", args: &[Obj, Conn], doc: "waits (up to 10 s) at the Barrier, sends \"passed\" or the error kind" },
    TaskSpec { name: "wait_event", args: &[Obj, Conn], doc: "waits (up to 10 s) for the Event, sends whether it is set" },
    TaskSpec { name: "try_child", args: &[Conn], doc: "tries to start a child (noop) and sends \"ok\" or the error kind" },
];

/// The task named `name`.
pub fn task(name: &str) -> Option<&'static TaskSpec> {
    TASKS.iter().find(|t| t.name == name)
}

/// One argument of a call: a value (as JSON text, so that it crosses any start method) or an
/// object with descriptors.
#[derive(Debug, Serialize, Deserialize)]
pub enum Arg {
    /// A JSON value.
    Json(String),
    /// A pipe end.
    Conn(Connection),
    /// A queue (items are JSON text).
    Queue(mproc::Queue<String>),
    /// A joinable queue.
    JoinableQueue(mproc::JoinableQueue<String>),
    /// A queue of byte strings (`queue = { bytes = true }`; cases read the bytes as UTF-8).
    BytesQueue(mproc::Queue<Vec<u8>>),
    /// A lock.
    Lock(mproc::Lock),
    /// A recursive lock.
    RLock(mproc::RLock),
    /// A semaphore.
    Semaphore(mproc::Semaphore),
    /// A bounded semaphore.
    BoundedSemaphore(mproc::BoundedSemaphore),
    /// An event.
    Event(mproc::Event),
    /// A barrier.
    Barrier(mproc::Barrier),
    /// A condition variable.
    Condition(mproc::Condition),
    /// A shared value of any typecode.
    Value(SharedValue),
    /// A shared array of any typecode.
    Array(SharedArray),
}

impl Arg {
    /// Another handle on the same object, for objects that stay shared when given to a task
    /// (queues, locks, events, values, arrays: the parent keeps its handle, as in CPython);
    /// `None` for values and connections.
    pub fn share(&self) -> Option<Arg> {
        Some(match self {
            Arg::Queue(q) => Arg::Queue(q.clone()),
            Arg::JoinableQueue(q) => Arg::JoinableQueue(q.clone()),
            Arg::BytesQueue(q) => Arg::BytesQueue(q.clone()),
            Arg::Lock(l) => Arg::Lock(l.clone()),
            Arg::RLock(l) => Arg::RLock(l.clone()),
            Arg::Semaphore(l) => Arg::Semaphore(l.clone()),
            Arg::BoundedSemaphore(l) => Arg::BoundedSemaphore(l.clone()),
            Arg::Event(e) => Arg::Event(e.clone()),
            Arg::Barrier(b) => Arg::Barrier(b.clone()),
            Arg::Condition(c) => Arg::Condition(c.clone()),
            Arg::Value(v) => Arg::Value(v.clone()),
            Arg::Array(a) => Arg::Array(a.clone()),
            Arg::Json(_) | Arg::Conn(_) => return None,
        })
    }
}

/// A call of a task: what a child (or a pool worker) is asked to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskCall {
    /// The task's name.
    pub task: String,
    /// Its arguments.
    pub args: Vec<Arg>,
}

/// A task's failure (not a panic): its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure(pub String);

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskFailure: {}", self.0)
    }
}

impl From<CtError> for TaskFailure {
    fn from(e: CtError) -> TaskFailure {
        match e {
            CtError::Value(m) => TaskFailure(m),
            CtError::Lib(e) => fail(e),
        }
    }
}

/// The process target: runs the call; a failure is the process's error (exit code 1).
pub fn process_main(call: TaskCall) -> Result<(), String> {
    run(call).map(drop).map_err(|e| e.to_string())
}

/// The pool task: runs the call and returns its result as JSON text; a failure panics, which
/// the pool reports as `Error::Remote` (as CPython re-raises the task's exception).
pub fn pool_main(call: TaskCall) -> String {
    match run(call) {
        Ok(v) => v.to_string(),
        Err(e) => panic!("{e}"),
    }
}

/// A pool initializer: runs the call (its result is dropped).
pub fn init_main(call: TaskCall) {
    if let Err(e) = run(call) {
        panic!("{e}");
    }
}

struct Args(std::vec::IntoIter<Arg>);

impl Args {
    fn json(&mut self) -> Value {
        match self.0.next() {
            Some(Arg::Json(s)) => serde_json::from_str(&s).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
    fn int(&mut self) -> i64 {
        self.json().as_i64().unwrap_or(0)
    }
    fn str(&mut self) -> String {
        match self.json() {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }
    fn obj(&mut self) -> Result<Arg, TaskFailure> {
        self.0
            .next()
            .ok_or_else(|| TaskFailure("missing argument".into()))
    }
    fn conn(&mut self) -> Result<Connection, TaskFailure> {
        match self.0.next() {
            Some(Arg::Conn(c)) => Ok(c),
            _ => Err(TaskFailure("expected a connection argument".into())),
        }
    }
    fn event(&mut self) -> Result<mproc::Event, TaskFailure> {
        match self.obj()? {
            Arg::Event(e) => Ok(e),
            _ => Err(TaskFailure("expected an Event".into())),
        }
    }
    fn value_i32(&mut self) -> Result<mproc::Value<i32>, TaskFailure> {
        match self.obj()? {
            Arg::Value(SharedValue::I32(v)) => Ok(v),
            _ => Err(TaskFailure("expected a Value('i')".into())),
        }
    }
}

fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn timeline(ev: &str, task: &str, label: &str) {
    if let Some(path) = std::env::var_os("MPROC_CASE_TIMELINE") {
        let line = json!({"ev": ev, "pid": std::process::id(), "task": task, "label": label, "t_us": now_us() as u64});
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Runs a call here and returns its result.
pub fn run(call: TaskCall) -> Result<Value, TaskFailure> {
    let label = call
        .args
        .iter()
        .filter_map(|a| match a {
            Arg::Json(s) => Some(s.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",");
    let task = call.task.clone();
    timeline("start", &task, &label);
    let out = dispatch(&call.task, Args(call.args.into_iter()));
    timeline("end", &task, &label);
    out
}

const NULL: Result<Value, TaskFailure> = Ok(Value::Null);

fn dispatch(task: &str, mut a: Args) -> Result<Value, TaskFailure> {
    match task {
        "noop" => NULL,
        "sleep" => {
            sleep(a.int());
            NULL
        }
        "square" => Ok(json!(square(a.int()))),
        "sleep_square" => {
            let x = a.int();
            Ok(json!(sleep_square(x, a.int())))
        }
        "echo" => Ok(a.json()),
        "fail" => Err(TaskFailure(a.str())),
        "panic" => panic!("{}", a.str()),
        "exit" => mproc::exit(a.int() as i32),
        "hang" => hang(),
        "kill_self" => kill_self(a.int() as i32),
        "print" => {
            print_line(&a.str());
            NULL
        }
        "run_proc" => {
            run_proc(&a.str());
            NULL
        }
        "print_name" => {
            print_line(&mproc::current_process().name);
            NULL
        }
        "put" | "put_all" | "notes_write" | "notes_read" | "square_queue" | "consume" => {
            queue_task(task, a)
        }
        "print_under_lock"
        | "increment_under_lock"
        | "increment_value"
        | "add_one"
        | "hold_lock"
        | "notes_negate"
        | "set_event" => sync_task(task, a),
        "wait_barrier" | "condition_wait" | "wait_event" => object_conn_task(task, a),
        "send" | "send_all" | "sleep_send" | "send_bytes" | "echo_conn" | "recv_square"
        | "send_self" | "send_parent" | "try_child" => conn_task(task, a),
        other => Err(TaskFailure(format!("unknown task {other}"))),
    }
}

/// The tasks that talk over a connection.
fn conn_task(task: &str, mut a: Args) -> Result<Value, TaskFailure> {
    let mut c = a.conn()?;
    match task {
        "send" => send(&c, &a.json())?,
        "send_all" => {
            if let Value::Array(items) = a.json() {
                for v in &items {
                    send(&c, v)?;
                }
            }
        }
        "sleep_send" => {
            sleep(a.int());
            send(&c, &a.json())?;
            return NULL;
        }
        "send_bytes" => c.send_bytes(a.str().as_bytes()).map_err(fail)?,
        "echo_conn" => echo_conn(&c)?,
        "recv_square" => {
            let v: String = c.recv().map_err(fail)?;
            let x = serde_json::from_str::<Value>(&v)
                .ok()
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            send(&c, &json!(square(x)))?;
        }
        "send_self" => {
            let me = mproc::current_process();
            send(&c, &json!({"name": me.name, "daemon": me.daemon}))?;
        }
        "send_parent" => send(&c, &json!(mproc::parent_process().map(|(_, n)| n)))?,
        "try_child" => send(&c, &json!(try_child()))?,
        other => return Err(TaskFailure(format!("unknown task {other}"))),
    }
    if matches!(task, "send" | "send_all" | "send_bytes") {
        c.close();
    }
    NULL
}

fn echo_conn(c: &Connection) -> Result<(), TaskFailure> {
    loop {
        let msg = c.recv_bytes().map_err(fail)?;
        if msg.is_empty() {
            return Ok(());
        }
        c.send_bytes(&msg).map_err(fail)?;
    }
}

/// Starts a child (`noop`) from here: `"ok"` or the error's kind.
fn try_child() -> String {
    let call = TaskCall {
        task: "noop".into(),
        args: vec![],
    };
    let p = mproc::Process::new(process_main, (call,));
    match p.start() {
        Ok(()) => {
            let _ = p.join();
            "ok".to_string()
        }
        Err(e) => e.kind_name().to_string(),
    }
}

/// The tasks on queues.
fn queue_task(task: &str, mut a: Args) -> Result<Value, TaskFailure> {
    let q = a.obj()?;
    match task {
        "put" => put(&q, &a.json())?,
        "put_all" | "notes_write" => {
            let write = task == "notes_write";
            if write {
                print_line(&format!("Process to write: {}", std::process::id()));
            }
            if let Value::Array(items) = a.json() {
                for v in &items {
                    if write {
                        print_line(&format!("Put {} to queue...", text(v)));
                    }
                    put(&q, v)?;
                }
            }
        }
        "notes_read" => {
            print_line(&format!("Process to read: {}", std::process::id()));
            loop {
                let v = get(&q)?;
                print_line(&format!("Get {} from queue.", text(&v)));
            }
        }
        "square_queue" => {
            let (qout, n) = (a.obj()?, a.int());
            for _ in 0..n {
                let x = get(&q)?.as_i64().unwrap_or(0);
                put(&qout, &json!(square(x)))?;
            }
        }
        _ => {
            let Arg::JoinableQueue(q) = q else {
                return Err(TaskFailure("expected a joinable queue".into()));
            };
            for _ in 0..a.int() {
                q.get().map_err(fail)?;
                q.task_done().map_err(fail)?;
            }
        }
    }
    NULL
}

/// The tasks on locks, events and shared values.
fn sync_task(task: &str, mut a: Args) -> Result<Value, TaskFailure> {
    match task {
        "print_under_lock" => {
            let (l, i) = (a.obj()?, a.int());
            with_lock(&l, || print_line(&format!("hello world {i}")))?;
        }
        "increment_under_lock" => {
            let (l, v, n) = (a.obj()?, a.value_i32()?, a.int());
            for _ in 0..n {
                // get + set under the lock: without it, increments would be lost.
                with_lock(&l, || v.get_obj().set(v.get_obj().get() + 1))?;
            }
        }
        "increment_value" => {
            let (v, n) = (a.value_i32()?, a.int());
            for _ in 0..n {
                v.update(|x| x + 1).map_err(fail)?;
            }
        }
        "add_one" => match a.obj()? {
            Arg::Value(v) => v.add_one().map_err(fail)?,
            Arg::Array(arr) => arr.add_one().map_err(fail)?,
            _ => return Err(TaskFailure("expected a Value or an Array".into())),
        },
        "hold_lock" => {
            let (l, e, ms) = (a.obj()?, a.event()?, a.int());
            with_lock(&l, || {
                e.set();
                sleep(ms)
            })?;
        }
        "notes_negate" => negate(a.obj()?, a.obj()?)?,
        "set_event" => a.event()?.set(),
        other => return Err(TaskFailure(format!("unknown task {other}"))),
    }
    NULL
}

/// The f(n, a) of Python's shared-memory example: `n.value = 3.1415927`, `a[i] = -a[i]`.
fn negate(n: Arg, arr: Arg) -> Result<(), TaskFailure> {
    let (Arg::Value(SharedValue::F64(n)), Arg::Array(SharedArray::I32(arr))) = (n, arr) else {
        return Err(TaskFailure("expected Value('d') and Array('i')".into()));
    };
    // The example's literal, not PI: the trace must show exactly this value.
    #[allow(clippy::approx_constant)]
    n.set(3.1415927);
    for i in 0..arr.len() {
        let x = arr.get(i).map_err(fail)?;
        arr.set(i, -x).map_err(fail)?;
    }
    Ok(())
}

/// The tasks that wait on an object and report over a connection.
fn object_conn_task(task: &str, mut a: Args) -> Result<Value, TaskFailure> {
    let answer = match task {
        "wait_barrier" => {
            let Arg::Barrier(b) = a.obj()? else {
                return Err(TaskFailure("expected a Barrier".into()));
            };
            let c = a.conn()?;
            let r = match b.wait_timeout(Duration::from_secs(10)) {
                Ok(_) => "passed".to_string(),
                Err(e) => e.kind_name().to_string(),
            };
            (c, json!(r))
        }
        "condition_wait" => {
            let Arg::Condition(cond) = a.obj()? else {
                return Err(TaskFailure("expected a Condition".into()));
            };
            let (e, c) = (a.event()?, a.conn()?);
            let notified = {
                let _g = cond.lock().map_err(fail)?;
                e.set();
                cond.wait_timeout(Duration::from_secs(10)).map_err(fail)?
            };
            (c, json!(notified))
        }
        "wait_event" => {
            let (e, c) = (a.event()?, a.conn()?);
            let set = e.wait_timeout(Duration::from_secs(10)).map_err(fail)?;
            (c, json!(set))
        }
        other => return Err(TaskFailure(format!("unknown task {other}"))),
    };
    send(&answer.0, &answer.1)?;
    NULL
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn put(q: &Arg, v: &Value) -> Result<(), TaskFailure> {
    let r = match q {
        Arg::Queue(q) => q.put(v.to_string()).map_err(|e| e.error),
        Arg::JoinableQueue(q) => q.put(v.to_string()).map_err(|e| e.error),
        Arg::BytesQueue(q) => {
            let Value::String(s) = v else {
                return Err(TaskFailure(format!(
                    "a queue of bytes takes strings, not {v}"
                )));
            };
            q.put(s.as_bytes().to_vec()).map_err(|e| e.error)
        }
        _ => return Err(TaskFailure("expected a queue".into())),
    };
    r.map_err(fail)
}

fn get(q: &Arg) -> Result<Value, TaskFailure> {
    let s = match q {
        Arg::Queue(q) => q.get(),
        Arg::JoinableQueue(q) => q.get(),
        Arg::BytesQueue(q) => {
            let b = q.get().map_err(fail)?;
            return Ok(Value::String(String::from_utf8_lossy(&b).into_owned()));
        }
        _ => return Err(TaskFailure("expected a queue".into())),
    }
    .map_err(fail)?;
    Ok(serde_json::from_str(&s).unwrap_or(Value::String(s)))
}

/// Runs `f` holding the lock (or one unit of the semaphore).
fn with_lock<R>(l: &Arg, f: impl FnOnce() -> R) -> Result<R, TaskFailure> {
    Ok(match l {
        Arg::Lock(l) => {
            let _g = l.lock().map_err(fail)?;
            f()
        }
        Arg::RLock(l) => {
            let _g = l.lock().map_err(fail)?;
            f()
        }
        Arg::Semaphore(s) => {
            let _g = s.acquire().map_err(fail)?;
            f()
        }
        Arg::BoundedSemaphore(s) => {
            let _g = s.acquire().map_err(fail)?;
            f()
        }
        _ => return Err(TaskFailure("expected a lock".into())),
    })
}

fn fail(e: mproc::Error) -> TaskFailure {
    TaskFailure(format!("{}: {e}", e.kind_name()))
}

/// Values travel over connections as JSON text (the Python mirror sends the same text).
fn send(c: &Connection, v: &Value) -> Result<(), TaskFailure> {
    c.send(&v.to_string()).map_err(fail)
}

/// Sleeps `ms` milliseconds.
pub fn sleep(ms: i64) {
    std::thread::sleep(Duration::from_millis(ms.max(0) as u64));
}

/// `x * x`.
pub fn square(x: i64) -> i64 {
    x.wrapping_mul(x)
}

/// Sleeps `ms`, then returns `x * x`.
pub fn sleep_square(x: i64, ms: i64) -> i64 {
    sleep(ms);
    square(x)
}

/// Sleeps for ever.
pub fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Sends this process signal `sig`, then waits for it.
pub fn kill_self(sig: i32) -> ! {
    if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), sig);
    }
    hang()
}

/// Prints a line and flushes.
pub fn print_line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// The child of the first example of Python's `Process` documentation (and of the classic
/// tutorial the project's specification follows): `Run child process NAME (PID)...`.
pub fn run_proc(name: &str) {
    print_line(&format!(
        "Run child process {name} ({})...",
        std::process::id()
    ));
}
