//! The registered task functions a case can run in a child (or a pool worker, or the parent).
//!
//! Each task is a plain `fn` with typed arguments; [`run`] decodes a [`TaskCall`] (JSON values
//! and real objects such as connections) into those arguments. The process target is the single
//! plain function [`process_main`], so every start method can run every task. Each call is
//! logged to the timeline file named by `MPROC_CASE_TIMELINE` (if set) for the HTML report.
//! `harness/py/reference.py` mirrors every task in Python.

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

/// Every task.
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
    TaskSpec { name: "run_proc", args: &[Str], doc: "the notes' example: prints `Run child process NAME (PID)...`" },
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
    TaskSpec { name: "notes_write", args: &[Obj, List], doc: "the notes' writer: prints `Process to write: PID`, then `Put X to queue...` and puts each" },
    TaskSpec { name: "notes_read", args: &[Obj], doc: "the notes' reader: prints `Process to read: PID`, then `Get X from queue.` for ever" },
    TaskSpec { name: "square_queue", args: &[Obj, Obj, Int], doc: "n times: gets x from the first queue, puts x*x on the second" },
    TaskSpec { name: "consume", args: &[Obj, Int], doc: "gets n items from a JoinableQueue, calling task_done for each" },
    TaskSpec { name: "print_under_lock", args: &[Obj, Int], doc: "the notes' f(l, i): prints `hello world I` holding the lock" },
    TaskSpec { name: "increment_under_lock", args: &[Obj, Obj, Int], doc: "n times: takes the lock, adds 1 to the Value, releases" },
    TaskSpec { name: "increment_value", args: &[Obj, Int], doc: "n times: adds 1 to the Value under its own lock (get_lock)" },
    TaskSpec { name: "hold_lock", args: &[Obj, Obj, Int], doc: "takes the lock (or one semaphore unit), sets the Event, holds it ms, releases" },
    TaskSpec { name: "notes_negate", args: &[Obj, Obj], doc: "the notes' f(n, a): n.value = 3.1415927; a[i] = -a[i]" },
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
    /// A shared double.
    ValueF64(mproc::Value<f64>),
    /// A shared int.
    ValueI32(mproc::Value<i32>),
    /// A shared array of doubles.
    ArrayF64(mproc::Array<f64>),
    /// A shared array of ints.
    ArrayI32(mproc::Array<i32>),
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

fn dispatch(task: &str, mut a: Args) -> Result<Value, TaskFailure> {
    Ok(match task {
        "noop" => Value::Null,
        "sleep" => {
            sleep(a.int());
            Value::Null
        }
        "square" => json!(square(a.int())),
        "sleep_square" => {
            let x = a.int();
            json!(sleep_square(x, a.int()))
        }
        "echo" => a.json(),
        "fail" => return Err(TaskFailure(a.str())),
        "panic" => panic!("{}", a.str()),
        "exit" => mproc::exit(a.int() as i32),
        "hang" => hang(),
        "kill_self" => {
            kill_self(a.int() as i32);
            Value::Null
        }
        "print" => {
            print_line(&a.str());
            Value::Null
        }
        "run_proc" => {
            run_proc(&a.str());
            Value::Null
        }
        "print_name" => {
            print_line(&mproc::current_process().name);
            Value::Null
        }
        "send" => {
            let mut c = a.conn()?;
            send(&c, &a.json())?;
            c.close();
            Value::Null
        }
        "send_all" => {
            let mut c = a.conn()?;
            if let Value::Array(items) = a.json() {
                for v in &items {
                    send(&c, v)?;
                }
            }
            c.close();
            Value::Null
        }
        "sleep_send" => {
            let c = a.conn()?;
            sleep(a.int());
            send(&c, &a.json())?;
            Value::Null
        }
        "send_bytes" => {
            let mut c = a.conn()?;
            c.send_bytes(a.str().as_bytes()).map_err(fail)?;
            c.close();
            Value::Null
        }
        "echo_conn" => {
            let c = a.conn()?;
            loop {
                let msg = c.recv_bytes().map_err(fail)?;
                if msg.is_empty() {
                    break;
                }
                c.send_bytes(&msg).map_err(fail)?;
            }
            Value::Null
        }
        "recv_square" => {
            let c = a.conn()?;
            let v: String = c.recv().map_err(fail)?;
            let x = serde_json::from_str::<Value>(&v)
                .ok()
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            send(&c, &json!(square(x)))?;
            Value::Null
        }
        "send_self" => {
            let c = a.conn()?;
            let me = mproc::current_process();
            send(&c, &json!({"name": me.name, "daemon": me.daemon}))?;
            Value::Null
        }
        "send_parent" => {
            let c = a.conn()?;
            let name = mproc::parent_process().map(|(_, n)| n);
            send(&c, &json!(name))?;
            Value::Null
        }
        "put" => {
            let q = a.obj()?;
            put(&q, &a.json())?;
            Value::Null
        }
        "put_all" | "notes_write" => {
            let q = a.obj()?;
            if task == "notes_write" {
                print_line(&format!("Process to write: {}", std::process::id()));
            }
            if let Value::Array(items) = a.json() {
                for v in &items {
                    if task == "notes_write" {
                        print_line(&format!("Put {} to queue...", text(v)));
                    }
                    put(&q, v)?;
                }
            }
            Value::Null
        }
        "notes_read" => {
            let q = a.obj()?;
            print_line(&format!("Process to read: {}", std::process::id()));
            loop {
                let v = get(&q)?;
                print_line(&format!("Get {} from queue.", text(&v)));
            }
        }
        "square_queue" => {
            let (qin, qout, n) = (a.obj()?, a.obj()?, a.int());
            for _ in 0..n {
                let x = get(&qin)?.as_i64().unwrap_or(0);
                put(&qout, &json!(square(x)))?;
            }
            Value::Null
        }
        "consume" => {
            let q = a.obj()?;
            let n = a.int();
            let Arg::JoinableQueue(q) = q else {
                return Err(TaskFailure("expected a joinable queue".into()));
            };
            for _ in 0..n {
                q.get().map_err(fail)?;
                q.task_done().map_err(fail)?;
            }
            Value::Null
        }
        "print_under_lock" => {
            let l = a.obj()?;
            let i = a.int();
            with_lock(&l, || print_line(&format!("hello world {i}")))?;
            Value::Null
        }
        "increment_under_lock" => {
            let (l, v, n) = (a.obj()?, a.obj()?, a.int());
            let Arg::ValueI32(v) = v else {
                return Err(TaskFailure("expected a Value('i')".into()));
            };
            for _ in 0..n {
                // get + set under the lock: without it, increments would be lost.
                with_lock(&l, || v.get_obj().set(v.get_obj().get() + 1))?;
            }
            Value::Null
        }
        "increment_value" => {
            let v = a.obj()?;
            let n = a.int();
            let Arg::ValueI32(v) = v else {
                return Err(TaskFailure("expected a Value('i')".into()));
            };
            for _ in 0..n {
                v.update(|x| x + 1).map_err(fail)?;
            }
            Value::Null
        }
        "hold_lock" => {
            let (l, e, ms) = (a.obj()?, a.obj()?, a.int());
            let Arg::Event(e) = e else {
                return Err(TaskFailure("expected an Event".into()));
            };
            with_lock(&l, || {
                e.set();
                sleep(ms)
            })?;
            Value::Null
        }
        "notes_negate" => {
            let (n, arr) = (a.obj()?, a.obj()?);
            let (Arg::ValueF64(n), Arg::ArrayI32(arr)) = (n, arr) else {
                return Err(TaskFailure("expected Value('d') and Array('i')".into()));
            };
            // The notes' literal, not PI: the trace must show exactly this value.
            #[allow(clippy::approx_constant)]
            n.set(3.1415927);
            for i in 0..arr.len() {
                let x = arr.get(i).map_err(fail)?;
                arr.set(i, -x).map_err(fail)?;
            }
            Value::Null
        }
        "wait_barrier" => {
            let Arg::Barrier(b) = a.obj()? else {
                return Err(TaskFailure("expected a Barrier".into()));
            };
            let c = a.conn()?;
            let r = match b.wait_timeout(Duration::from_secs(10)) {
                Ok(_) => "passed".to_string(),
                Err(e) => e.kind_name().to_string(),
            };
            send(&c, &json!(r))?;
            Value::Null
        }
        "condition_wait" => {
            let (c, e) = (a.obj()?, a.obj()?);
            let (Arg::Condition(c), Arg::Event(e)) = (c, e) else {
                return Err(TaskFailure("expected a Condition and an Event".into()));
            };
            let conn = a.conn()?;
            let notified = {
                let _g = c.lock().map_err(fail)?;
                e.set();
                c.wait_timeout(Duration::from_secs(10)).map_err(fail)?
            };
            send(&conn, &json!(notified))?;
            Value::Null
        }
        "set_event" => {
            let Arg::Event(e) = a.obj()? else {
                return Err(TaskFailure("expected an Event".into()));
            };
            e.set();
            Value::Null
        }
        "wait_event" => {
            let Arg::Event(e) = a.obj()? else {
                return Err(TaskFailure("expected an Event".into()));
            };
            let c = a.conn()?;
            let set = e.wait_timeout(Duration::from_secs(10)).map_err(fail)?;
            send(&c, &json!(set))?;
            Value::Null
        }
        "try_child" => {
            let c = a.conn()?;
            let call = TaskCall {
                task: "noop".into(),
                args: vec![],
            };
            let p = mproc::Process::new(process_main, (call,));
            let r = match p.start() {
                Ok(()) => {
                    let _ = p.join();
                    "ok".to_string()
                }
                Err(e) => e.kind_name().to_string(),
            };
            send(&c, &json!(r))?;
            Value::Null
        }
        other => return Err(TaskFailure(format!("unknown task {other}"))),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn put(q: &Arg, v: &Value) -> Result<(), TaskFailure> {
    let r = match q {
        Arg::Queue(q) => q.put(v.to_string()),
        Arg::JoinableQueue(q) => q.put(v.to_string()),
        _ => return Err(TaskFailure("expected a queue".into())),
    };
    r.map_err(|e| fail(e.error))
}

fn get(q: &Arg) -> Result<Value, TaskFailure> {
    let s = match q {
        Arg::Queue(q) => q.get(),
        Arg::JoinableQueue(q) => q.get(),
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

/// Sends this process signal `sig`.
pub fn kill_self(sig: i32) {
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

/// The notes' first example.
pub fn run_proc(name: &str) {
    print_line(&format!(
        "Run child process {name} ({})...",
        std::process::id()
    ));
}
