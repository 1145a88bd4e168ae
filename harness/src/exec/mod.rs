//! The interpreter: runs one case under one start method, in this process, and writes the raw
//! trace. It is what `mproc-case exec` does; the supervisor ([`crate::suite::run_job`]) runs it
//! in a process of its own, so nothing forks from a multithreaded runner.
//!
//! This file runs the steps and records the events; each module of the vocabulary has its file
//! (`process.rs`, `ipc.rs`, ...), whose `impl Exec` block runs that module's [`Op`]s.

mod contexts;
mod ipc;
mod parent;
mod pool;
mod process;
mod queue;
mod shared;
mod sync;

use crate::case::{Action, Case, Step};
use crate::catalogue::{self, Arg, ArgKind, TaskCall};
use crate::ctypes::CtError;
use crate::model::{now_us, RawEvent, RawTrace};
use crate::template::{get_opt, FromJson, Template, Vars};
use crate::vocab::kinds::ContextSel;
use crate::vocab::Op;
use mproc::{Connection, Context, Process, StartMethod};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A live object of a run, by id.
enum Obj {
    Process(Process),
    /// A group of processes (`process = { count = N }`).
    Group(Vec<Process>),
    /// `None` once given to a process (it moved into the child's arguments).
    Conn(Option<Connection>),
    Pool(mproc::Pool),
    One(mproc::AsyncResult<String>),
    Many(mproc::AsyncResult<Vec<String>>),
    /// Queues, locks, events, Values and Arrays: shared with the tasks they are given to (the
    /// parent keeps its handle, as in CPython).
    Shared(Arg),
}

/// An action's failure: the error kind and message.
pub(crate) struct Fail {
    kind: String,
    message: String,
}

impl From<mproc::Error> for Fail {
    fn from(e: mproc::Error) -> Fail {
        Fail {
            kind: e.kind_name().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<CtError> for Fail {
    fn from(e: CtError) -> Fail {
        match e {
            CtError::Value(m) => harness(m),
            CtError::Lib(e) => e.into(),
        }
    }
}

/// A mistake in the case (an unknown object, a value of the wrong type), not a behaviour under
/// test: the error kind `Harness`.
fn harness(msg: impl Into<String>) -> Fail {
    Fail {
        kind: "Harness".into(),
        message: msg.into(),
    }
}

/// What an action returns: the event's value, or its failure.
type Outcome = Result<Option<Value>, Fail>;

/// An action without a value.
const DONE: Outcome = Ok(None);

/// The value of an observation or a result.
fn value(v: impl serde::Serialize) -> Outcome {
    Ok(Some(json!(v)))
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

struct Exec<'a> {
    case: &'a Case,
    callbacks: Arc<Mutex<Vec<String>>>,
    ctx: Context,
    vars: Vars,
    objs: BTreeMap<String, Obj>,
    /// Process (and group) ids in creation order.
    order: Vec<String>,
    trace: RawTrace,
}

/// Runs `case` under `method` here. Call it in a process of its own, after `mproc::init()`.
pub fn run(case: &Case, method: StartMethod) -> RawTrace {
    let mut vars = case.params.clone();
    vars.insert("method".into(), json!(method.as_str()));
    vars.insert("null".into(), Value::Null);
    vars.insert("pid".into(), json!(std::process::id()));
    let mut ex = Exec {
        case,
        callbacks: Default::default(),
        ctx: mproc::get_context(method),
        vars,
        objs: BTreeMap::new(),
        order: Vec::new(),
        trace: RawTrace {
            runner: "mproc".into(),
            method: method.as_str().into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            pids: vec![std::process::id() as u64],
            t_start_us: now_us(),
            ..RawTrace::default()
        },
    };
    ex.steps();
    ex.trace.t_end_us = now_us();
    ex.finish();
    ex.trace
}

impl Exec<'_> {
    fn steps(&mut self) {
        for step in &self.case.steps {
            let iters: Vec<Option<Value>> = match &step.each {
                None => vec![None],
                Some(e) => e.values().map(Some).collect(),
            };
            for v in iters {
                if let (Some(v), Some(e)) = (v, &step.each) {
                    self.vars.insert(e.var.clone(), v);
                }
                if !self.pass(step) {
                    return;
                }
            }
        }
    }

    /// One pass over a step's actions; false when the run stops there.
    fn pass(&mut self, step: &Step) -> bool {
        let label = match &step.label {
            None => None,
            Some(l) => match Template::<String>::new(json!(l)).and_then(|t| t.get(&self.vars)) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.trace.aborted = Some(format!("step {}: {e}", step.index));
                    return false;
                }
            },
        };
        for action in &step.actions {
            if !self.action(step, label.clone(), action) {
                return false;
            }
        }
        true
    }

    /// Runs one action and records its event; false when it failed unexpectedly.
    fn action(&mut self, step: &Step, label: Option<String>, action: &Action) -> bool {
        let t0 = now_us();
        let id = action.id.as_ref().and_then(|t| t.get(&self.vars).ok());
        let result = self.act(&action.op).map_err(|mut f| {
            if f.kind == "Harness" {
                let at = format!("{}:{}:{}", self.case.path, action.line, action.column);
                f.message = format!("{at}: {}", f.message);
            }
            f
        });
        let mut ev = RawEvent {
            step: step.index,
            op: action.op.name().to_string(),
            id,
            label,
            expected_error: action.error.clone(),
            t0_us: t0,
            t1_us: now_us(),
            ..RawEvent::default()
        };
        let unexpected = match result {
            Ok(v) => {
                ev.value = v;
                false
            }
            Err(f) => {
                let unexpected = action.error.as_deref() != Some(f.kind.as_str());
                ev.error = Some(f.kind);
                ev.message = Some(f.message);
                unexpected
            }
        };
        self.trace.events.push(ev);
        if unexpected && action.error.is_none() {
            let op = action.op.name();
            self.trace.aborted = Some(format!("step {} ({op})", step.index));
            return false;
        }
        true
    }

    /// Runs one action: the arm of its module.
    fn act(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Process(o) => self.process(o),
            Op::Ipc(o) => self.ipc(o),
            Op::Contexts(o) => self.contexts(o),
            Op::Pool(o) => self.pool(o),
            Op::Queue(o) => self.queue(o),
            Op::Sync(o) => self.sync(o),
            Op::Shared(o) => self.shared_op(o),
            Op::Parent(o) => self.parent(o),
        }
    }

    /// Ends the run: pools left running are terminated (as CPython's `Pool.__del__` does),
    /// processes left running are killed and reported, every exit code is recorded.
    fn finish(&mut self) {
        for obj in self.objs.values() {
            if let Obj::Pool(p) = obj {
                let _ = p.terminate();
            }
        }
        for id in self.order.clone() {
            let procs: Vec<(String, &Process)> = match self.objs.get(&id) {
                Some(Obj::Process(p)) => vec![(id.clone(), p)],
                Some(Obj::Group(ps)) => ps
                    .iter()
                    .enumerate()
                    .map(|(k, p)| (format!("{id}[{k}]"), p))
                    .collect(),
                _ => continue,
            };
            for (name, p) in procs {
                if let Ok(true) = p.is_alive() {
                    self.trace.unreaped.push(name.clone());
                    let _ = p.kill();
                    let _ = p.join_timeout(Duration::from_secs(10));
                }
                let code = p.exitcode().ok().flatten().map(i64::from);
                self.trace.exitcodes.insert(name, code);
            }
        }
    }

    /// A field's value now.
    fn get<T: FromJson + Clone>(&self, t: &Template<T>) -> Result<T, Fail> {
        t.get(&self.vars).map_err(harness)
    }

    /// An optional field's value now.
    fn opt<T: FromJson + Clone>(&self, t: &Option<Template<T>>) -> Result<Option<T>, Fail> {
        get_opt(t, &self.vars).map_err(harness)
    }

    /// A duration in milliseconds (negative: zero).
    fn ms(&self, t: &Option<Template<i64>>) -> Result<Option<Duration>, Fail> {
        Ok(self.opt(t)?.map(|m| Duration::from_millis(m.max(0) as u64)))
    }

    /// The context `sel` names (the case's when absent).
    fn context(&self, sel: &Option<Template<String>>) -> Result<Context, Fail> {
        let sel = match self.opt(sel)? {
            None => ContextSel::Case,
            Some(s) => ContextSel::parse(&s)?,
        };
        Ok(match sel {
            ContextSel::Case => self.ctx,
            ContextSel::Default => mproc::default_context(),
            ContextSel::Method(m) => mproc::get_context(m),
        })
    }

    fn obj(&self, id: &str) -> Result<&Obj, Fail> {
        self.objs
            .get(id)
            .ok_or_else(|| harness(format!("no object `{id}`")))
    }

    fn conn(&self, id: &str) -> Result<&Connection, Fail> {
        match self.objs.get(id) {
            Some(Obj::Conn(Some(c))) => Ok(c),
            Some(Obj::Conn(None)) => {
                Err(harness(format!("connection `{id}` was given to a process")))
            }
            _ => Err(harness(format!("no connection `{id}`"))),
        }
    }

    fn shared(&self, id: &str) -> Result<&Arg, Fail> {
        match self.objs.get(id) {
            Some(Obj::Shared(a)) => Ok(a),
            _ => Err(harness(format!(
                "no queue, lock, event, value or array `{id}`"
            ))),
        }
    }

    /// A call of `task` with `args`: values as JSON, objects by id (a connection moves into
    /// the call; shared objects are shared).
    fn call(&mut self, task: &str, args: &[Value]) -> Result<TaskCall, Fail> {
        let spec = catalogue::task(task).ok_or_else(|| harness(format!("unknown task {task}")))?;
        if spec.args.len() != args.len() {
            return Err(harness(format!(
                "task {task} takes {} arguments",
                spec.args.len()
            )));
        }
        let mut out = Vec::new();
        for (a, kind) in args.iter().zip(spec.args) {
            let id = a.as_str().unwrap_or_default();
            out.push(match kind {
                ArgKind::Obj => self
                    .shared(id)?
                    .share()
                    .ok_or_else(|| harness(format!("`{id}` cannot be shared")))?,
                ArgKind::Conn => match self.objs.get_mut(id) {
                    Some(Obj::Conn(c)) => Arg::Conn(c.take().ok_or_else(|| {
                        harness(format!("connection `{id}` was already given away"))
                    })?),
                    _ => return Err(harness(format!("no connection `{id}`"))),
                },
                _ => Arg::Json(a.to_string()),
            });
        }
        Ok(TaskCall {
            task: task.to_string(),
            args: out,
        })
    }

    /// The call of a task given as `task` and `args` fields.
    fn call_of(
        &mut self,
        task: &Template<String>,
        args: &Option<Template<Vec<Value>>>,
    ) -> Result<TaskCall, Fail> {
        let task = self.get(task)?;
        let args = self.opt(args)?.unwrap_or_default();
        self.call(&task, &args)
    }
}
