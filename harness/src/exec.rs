//! The interpreter: runs one case under one start method, in this process, and writes the raw
//! trace. It is what `mproc-case exec` does; the supervisor ([`crate::suite::run_job`]) runs it
//! in a process of its own, so nothing forks from a multithreaded runner.

use crate::case::{Action, Case};
use crate::catalogue::{self, Arg, ArgKind, TaskCall};
use mproc::{Connection, Context, Process, StartMethod};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// One action as it happened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// The step's 1-based index.
    pub step: usize,
    /// The action.
    pub op: String,
    /// The object acted on (or made), after substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The step's label, after substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What the action returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The error kind, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error kind the case expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_error: Option<String>,
    /// The error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Start, microseconds since the epoch.
    pub t0_us: u64,
    /// End, microseconds since the epoch.
    pub t1_us: u64,
}

/// The raw trace of one run (both runners write this format).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RawTrace {
    /// `mproc` or `cpython`.
    pub runner: String,
    /// The start method.
    pub method: String,
    /// The runner's version (CPython's `sys.version`), if any.
    #[serde(default)]
    pub version: Option<String>,
    /// Every action in order.
    pub events: Vec<RawEvent>,
    /// Final exit code of every process object (null: never started or closed).
    pub exitcodes: BTreeMap<String, Option<i64>>,
    /// Processes still running after the last step (killed by the runner).
    pub unreaped: Vec<String>,
    /// Why the run stopped early (an unexpected error), if it did.
    pub aborted: Option<String>,
    /// The pids seen (this process and its children), to redact.
    pub pids: Vec<u64>,
    /// When the steps began, microseconds since the epoch.
    pub t_start_us: u64,
    /// When they ended.
    pub t_end_us: u64,
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

enum Obj {
    Process(Process),
    /// `None` once given to a process (it moved into the child's arguments).
    Conn(Option<Connection>),
    Pool(mproc::Pool),
    One(mproc::AsyncResult<String>),
    Many(mproc::AsyncResult<Vec<String>>),
    /// Queues, locks, events, Values and Arrays: cloned into task arguments (the parent keeps
    /// its handle, as in CPython).
    Shared(Arg),
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

fn clone_arg(a: &Arg) -> Option<Arg> {
    Some(match a {
        Arg::Queue(q) => Arg::Queue(q.clone()),
        Arg::JoinableQueue(q) => Arg::JoinableQueue(q.clone()),
        Arg::Lock(l) => Arg::Lock(l.clone()),
        Arg::RLock(l) => Arg::RLock(l.clone()),
        Arg::Semaphore(l) => Arg::Semaphore(l.clone()),
        Arg::BoundedSemaphore(l) => Arg::BoundedSemaphore(l.clone()),
        Arg::Event(e) => Arg::Event(e.clone()),
        Arg::Barrier(b) => Arg::Barrier(b.clone()),
        Arg::Condition(c) => Arg::Condition(c.clone()),
        Arg::ValueF64(v) => Arg::ValueF64(v.clone()),
        Arg::ValueI32(v) => Arg::ValueI32(v.clone()),
        Arg::ArrayF64(v) => Arg::ArrayF64(v.clone()),
        Arg::ArrayI32(v) => Arg::ArrayI32(v.clone()),
        Arg::Json(_) | Arg::Conn(_) => return None,
    })
}

/// An action's failure: the error kind and message.
struct Fail {
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

fn harness(msg: impl Into<String>) -> Fail {
    Fail {
        kind: "Harness".into(),
        message: msg.into(),
    }
}

struct Exec<'a> {
    case: &'a Case,
    callbacks: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ctx: Context,
    vars: BTreeMap<String, Value>,
    objs: BTreeMap<String, Obj>,
    /// Process ids in creation order.
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
            let iters: Vec<Option<(String, Value)>> = match &step.each {
                None => vec![None],
                Some(e) => e
                    .values
                    .iter()
                    .map(|v| Some((e.var.clone(), v.clone())))
                    .collect(),
            };
            for it in iters {
                if let Some((k, v)) = it {
                    self.vars.insert(k, v);
                }
                let label = match &step.label {
                    None => None,
                    Some(l) => match subst(&json!(l), &self.vars) {
                        Ok(Value::String(s)) => Some(s),
                        Ok(other) => Some(other.to_string()),
                        Err(e) => {
                            self.trace.aborted = Some(format!("step {}: {e}", step.index));
                            return;
                        }
                    },
                };
                for action in &step.actions {
                    let t0 = now_us();
                    let (id, result) =
                        match subst(&Value::Object(action.fields.clone()), &self.vars) {
                            Ok(Value::Object(fields)) => {
                                let id =
                                    fields.get("id").and_then(Value::as_str).map(str::to_string);
                                (id, self.act(action, &fields))
                            }
                            Ok(_) => (None, Err(harness("fields are not a table"))),
                            Err(e) => (None, Err(harness(e))),
                        };
                    let mut ev = RawEvent {
                        step: step.index,
                        op: action.op.clone(),
                        id,
                        label: label.clone(),
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
                        self.trace.aborted = Some(format!("step {} ({})", step.index, action.op));
                        return;
                    }
                }
            }
        }
    }

    fn finish(&mut self) {
        // Pools left running are terminated (as CPython's Pool.__del__ does).
        for obj in self.objs.values() {
            if let Obj::Pool(p) = obj {
                let _ = p.terminate();
            }
        }
        for id in self.order.clone() {
            if let Some(Obj::Process(p)) = self.objs.get(&id) {
                if let Ok(true) = p.is_alive() {
                    self.trace.unreaped.push(id.clone());
                    let _ = p.kill();
                    let _ = p.join(Some(Duration::from_secs(10)));
                }
                let code = p.exitcode().ok().flatten().map(i64::from);
                self.trace.exitcodes.insert(id.clone(), code);
            }
        }
    }

    fn process(&self, id: &str) -> Result<&Process, Fail> {
        match self.objs.get(id) {
            Some(Obj::Process(p)) => Ok(p),
            _ => Err(harness(format!("no process `{id}`"))),
        }
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
            if *kind == ArgKind::Obj {
                let id = a.as_str().unwrap_or_default();
                match self.objs.get(id) {
                    Some(Obj::Shared(x)) => out.push(clone_arg(x).expect("shared objects clone")),
                    _ => {
                        return Err(harness(format!(
                            "no queue, lock, event, value or array `{id}`"
                        )))
                    }
                }
            } else if *kind == ArgKind::Conn {
                let id = a.as_str().unwrap_or_default();
                match self.objs.get_mut(id) {
                    Some(Obj::Conn(c)) => {
                        let c = c.take().ok_or_else(|| {
                            harness(format!("connection `{id}` was already given away"))
                        })?;
                        out.push(Arg::Conn(c));
                    }
                    _ => return Err(harness(format!("no connection `{id}`"))),
                }
            } else {
                out.push(Arg::Json(a.to_string()));
            }
        }
        Ok(TaskCall {
            task: task.to_string(),
            args: out,
        })
    }

    fn act(
        &mut self,
        action: &Action,
        f: &serde_json::Map<String, Value>,
    ) -> Result<Option<Value>, Fail> {
        let s = |k: &str| {
            f.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ms = |k: &str| {
            f.get(k)
                .and_then(Value::as_i64)
                .map(|m| Duration::from_millis(m.max(0) as u64))
        };
        let id = s("id");
        let none = Ok(None);
        match action.op.as_str() {
            "process" => {
                let args = f
                    .get("args")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let call = self.call(&s("task"), &args)?;
                let ctx = match f.get("context").and_then(Value::as_str) {
                    Some("default") => mproc::default_context(),
                    Some("case") | None => self.ctx,
                    Some(m) => mproc::get_context(m.parse::<StartMethod>()?),
                };
                let mut p = ctx.process(catalogue::process_main, (call,));
                if let Some(n) = f.get("name").and_then(Value::as_str) {
                    p = p.name(n);
                }
                if let Some(d) = f.get("daemon").and_then(Value::as_bool) {
                    p = p.daemon(d);
                }
                self.objs.insert(id.clone(), Obj::Process(p));
                self.order.push(id);
                none
            }
            "start" => {
                let p = self.process(&id)?;
                p.start()?;
                if let Some(pid) = p.pid() {
                    self.trace.pids.push(pid as u64);
                }
                none
            }
            "join" => {
                match self.objs.get(&id) {
                    Some(Obj::Pool(p)) => p.join()?,
                    Some(Obj::Shared(Arg::JoinableQueue(q))) => q.join(ms("timeout_ms"))?,
                    _ => self.process(&id)?.join(ms("timeout_ms"))?,
                }
                none
            }
            "is_alive" => Ok(Some(json!(self.process(&id)?.is_alive()?))),
            "exitcode" => Ok(Some(json!(self.process(&id)?.exitcode()?))),
            "name" => Ok(Some(json!(self.process(&id)?.get_name()))),
            "set_name" => {
                self.process(&id)?.set_name(s("name"));
                none
            }
            "is_daemon" => Ok(Some(json!(self.process(&id)?.is_daemon()))),
            "set_daemon" => {
                let d = f.get("daemon").and_then(Value::as_bool).unwrap_or(false);
                self.process(&id)?.set_daemon(d)?;
                none
            }
            "has_pid" => Ok(Some(json!(self.process(&id)?.pid().is_some()))),
            "terminate" => {
                match self.objs.get(&id) {
                    Some(Obj::Pool(p)) => p.terminate()?,
                    _ => self.process(&id)?.terminate()?,
                }
                none
            }
            "kill" => {
                self.process(&id)?.kill()?;
                none
            }
            "close" => {
                match self.objs.get_mut(&id) {
                    Some(Obj::Process(p)) => p.close()?,
                    Some(Obj::Conn(c)) => {
                        if let Some(c) = c.as_mut() {
                            c.close();
                        }
                    }
                    Some(Obj::Pool(p)) => p.close()?,
                    Some(Obj::Shared(Arg::Queue(q))) => q.close(),
                    Some(Obj::Shared(Arg::JoinableQueue(q))) => q.close(),
                    Some(_) => return Err(harness(format!("`{id}` cannot be closed"))),
                    None => return Err(harness(format!("no object `{id}`"))),
                }
                none
            }
            "active_children" => Ok(Some(json!(mproc::active_children().len()))),
            "join_current" => {
                mproc::current_process().join(None)?;
                none
            }
            "current_process" => {
                let me = mproc::current_process();
                Ok(Some(json!({"name": me.name, "daemon": me.daemon})))
            }
            "pipe" => {
                let ids: Vec<String> = f
                    .get("ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.len() != 2 {
                    return Err(harness("`pipe.ids` must name two ends"));
                }
                let duplex = f.get("duplex").and_then(Value::as_bool).unwrap_or(true);
                let (a, b) = self.ctx.pipe(duplex)?;
                self.objs.insert(ids[0].clone(), Obj::Conn(Some(a)));
                self.objs.insert(ids[1].clone(), Obj::Conn(Some(b)));
                none
            }
            "send" => {
                let v = f.get("value").cloned().unwrap_or(Value::Null);
                self.conn(&id)?.send(&v.to_string())?;
                none
            }
            "recv" => {
                let text: String = self.conn(&id)?.recv()?;
                Ok(Some(
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                ))
            }
            "send_bytes" => {
                let data = s("data");
                let c = self.conn(&id)?;
                match f.get("offset").and_then(Value::as_i64) {
                    None => c.send_bytes(data.as_bytes())?,
                    Some(off) => {
                        let size = f
                            .get("size")
                            .and_then(Value::as_i64)
                            .map(|x| x.max(0) as usize);
                        c.send_bytes_range(data.as_bytes(), off.max(0) as usize, size)?
                    }
                }
                none
            }
            "recv_bytes" => {
                let max = f
                    .get("maxlen")
                    .and_then(Value::as_i64)
                    .map(|x| x.max(0) as usize);
                let b = self.conn(&id)?.recv_bytes(max)?;
                Ok(Some(json!(String::from_utf8_lossy(&b))))
            }
            "poll" => {
                let t = ms("timeout_ms").unwrap_or(Duration::ZERO);
                Ok(Some(json!(self.conn(&id)?.poll(Some(t))?)))
            }
            "set_start_method" => {
                let m: StartMethod = s("method").parse()?;
                let force = f.get("force").and_then(Value::as_bool).unwrap_or(false);
                mproc::set_start_method(Some(m), force)?;
                none
            }
            "get_start_method" => {
                let allow = f
                    .get("allow_none")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                Ok(Some(json!(
                    mproc::get_start_method(allow).map(|m| m.as_str())
                )))
            }
            "sleep_ms" => {
                catalogue::sleep(f.get("ms").and_then(Value::as_i64).unwrap_or(0));
                none
            }
            "print" => {
                catalogue::print_line(&s("text"));
                none
            }
            "call" => {
                let args = f
                    .get("args")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let call = self.call(&s("task"), &args)?;
                match catalogue::run(call) {
                    Ok(v) => Ok(Some(v)),
                    Err(e) => Err(Fail {
                        kind: "Remote".into(),
                        message: e.to_string(),
                    }),
                }
            }
            other => self.act_more(other, f),
        }
    }
}

impl Exec<'_> {
    fn pool(&self, f: &serde_json::Map<String, Value>) -> Result<&mproc::Pool, Fail> {
        let id = f.get("pool").and_then(Value::as_str).unwrap_or_default();
        match self.objs.get(id) {
            Some(Obj::Pool(p)) => Ok(p),
            _ => Err(harness(format!("no pool `{id}`"))),
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

    /// The calls of a map over `items`: each item is the one argument, or (starmap) the list
    /// of arguments.
    fn calls(&mut self, task: &str, items: &[Value], star: bool) -> Result<Vec<TaskCall>, Fail> {
        items
            .iter()
            .map(|it| {
                let args = if star {
                    it.as_array().cloned().unwrap_or_default()
                } else {
                    vec![it.clone()]
                };
                self.call(task, &args)
            })
            .collect()
    }

    fn act_more(
        &mut self,
        op: &str,
        f: &serde_json::Map<String, Value>,
    ) -> Result<Option<Value>, Fail> {
        let s = |k: &str| {
            f.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ms = |k: &str| {
            f.get(k)
                .and_then(Value::as_i64)
                .map(|m| Duration::from_millis(m.max(0) as u64))
        };
        let b = |k: &str, d: bool| f.get(k).and_then(Value::as_bool).unwrap_or(d);
        let id = s("id");
        let items = f
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let chunk = f
            .get("chunksize")
            .and_then(Value::as_i64)
            .map(|c| c.max(0) as usize);
        match op {
            "pool" => {
                let mut builder = self.ctx.pool();
                if let Some(n) = f.get("processes").and_then(Value::as_i64) {
                    builder = builder.processes(n.max(0) as usize);
                }
                if let Some(n) = f.get("maxtasksperchild").and_then(Value::as_i64) {
                    builder = builder.maxtasksperchild(n.max(0) as usize);
                }
                if let Some(t) = f.get("initializer").and_then(Value::as_str) {
                    let args = f
                        .get("initargs")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let call = self.call(t, &args)?;
                    builder = builder.initializer(catalogue::init_main, (call,));
                }
                let pool = builder.build()?;
                self.objs.insert(id, Obj::Pool(pool));
                Ok(None)
            }
            "apply" => {
                let call = self.call(
                    &s("task"),
                    &f.get("args")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                )?;
                let r = self.pool(f)?.apply(catalogue::pool_main, (call,))?;
                Ok(Some(parse_json(&r)))
            }
            "apply_async" => {
                let call = self.call(
                    &s("task"),
                    &f.get("args")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                )?;
                let mut cbs = mproc::Callbacks::new();
                if b("callback", false) {
                    let (log, rid) = (std::sync::Arc::clone(&self.callbacks), id.clone());
                    cbs = cbs.callback(move |v: &String| {
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("callback {rid}: {v}"))
                    });
                }
                if b("error_callback", false) {
                    let (log, rid) = (std::sync::Arc::clone(&self.callbacks), id.clone());
                    cbs = cbs.error_callback(move |e: &mproc::Error| {
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("error_callback {rid}: {}", e.kind_name()))
                    });
                }
                let r = self
                    .pool(f)?
                    .apply_async_with(catalogue::pool_main, (call,))
                    .callbacks(cbs)
                    .submit()?;
                self.objs.insert(id, Obj::One(r));
                Ok(None)
            }
            "map" | "starmap" => {
                let calls = self.calls(&s("task"), &items, op == "starmap")?;
                let mut m = self.pool(f)?.map_async_with(catalogue::pool_main, calls);
                if let Some(c) = chunk {
                    m = m.chunksize(c);
                }
                let r = m.submit()?.get()?;
                Ok(Some(Value::Array(
                    r.iter().map(|x| parse_json(x)).collect(),
                )))
            }
            "map_async" => {
                let calls = self.calls(&s("task"), &items, false)?;
                let mut m = self.pool(f)?.map_async_with(catalogue::pool_main, calls);
                if let Some(c) = chunk {
                    m = m.chunksize(c);
                }
                let r = m.submit()?;
                self.objs.insert(id, Obj::Many(r));
                Ok(None)
            }
            "imap" | "imap_unordered" => {
                let calls = self.calls(&s("task"), &items, false)?;
                let pool = self.pool(f)?;
                let it = if op == "imap" {
                    pool.imap_with(catalogue::pool_main, calls)
                        .chunksize(chunk.unwrap_or(1))
                        .submit()?
                } else {
                    pool.imap_unordered_with(catalogue::pool_main, calls)
                        .chunksize(chunk.unwrap_or(1))
                        .submit()?
                };
                let mut out = Vec::new();
                for r in it {
                    out.push(parse_json(&r?));
                }
                if op == "imap_unordered" {
                    out.sort_by_key(|v| v.to_string());
                }
                Ok(Some(Value::Array(out)))
            }
            "get" => match self.objs.get(&id) {
                Some(Obj::One(r)) => Ok(Some(parse_json(&match ms("timeout_ms") {
                    Some(d) => r.get_timeout(d)?,
                    None => r.get()?,
                }))),
                Some(Obj::Many(r)) => Ok(Some(Value::Array(
                    match ms("timeout_ms") {
                        Some(d) => r.get_timeout(d)?,
                        None => r.get()?,
                    }
                    .iter()
                    .map(|x| parse_json(x))
                    .collect(),
                ))),
                Some(Obj::Shared(Arg::Queue(q))) => Ok(Some(parse_json(
                    &q.get(b("block", true), ms("timeout_ms"))?,
                ))),
                Some(Obj::Shared(Arg::JoinableQueue(q))) => Ok(Some(parse_json(
                    &q.get(b("block", true), ms("timeout_ms"))?,
                ))),
                _ => Err(harness(format!("no result or queue `{id}`"))),
            },
            "wait" | "ready" | "successful" => {
                let (ready, ok) = match self.objs.get(&id) {
                    Some(Obj::One(r)) => {
                        if op == "wait" {
                            match ms("timeout_ms") {
                                Some(d) => drop(r.wait_timeout(d)),
                                None => r.wait(),
                            }
                        }
                        (
                            r.ready(),
                            if op == "successful" {
                                Some(r.successful()?)
                            } else {
                                None
                            },
                        )
                    }
                    Some(Obj::Many(r)) => {
                        if op == "wait" {
                            match ms("timeout_ms") {
                                Some(d) => drop(r.wait_timeout(d)),
                                None => r.wait(),
                            }
                        }
                        (
                            r.ready(),
                            if op == "successful" {
                                Some(r.successful()?)
                            } else {
                                None
                            },
                        )
                    }
                    _ => return Err(harness(format!("no result `{id}`"))),
                };
                Ok(Some(json!(ok.unwrap_or(ready))))
            }
            "callbacks" => {
                let mut v = self
                    .callbacks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                v.sort();
                Ok(Some(json!(v)))
            }
            "queue" => {
                let max = f
                    .get("maxsize")
                    .and_then(Value::as_i64)
                    .map(|m| m.max(0) as usize);
                let q = if b("joinable", false) {
                    Arg::JoinableQueue(self.ctx.joinable_queue(max)?)
                } else {
                    Arg::Queue(self.ctx.queue(max)?)
                };
                self.objs.insert(id, Obj::Shared(q));
                Ok(None)
            }
            "put" => {
                let v = f.get("value").cloned().unwrap_or(Value::Null).to_string();
                let r = match self.shared(&id)? {
                    Arg::Queue(q) => q.put(v, b("block", true), ms("timeout_ms")),
                    Arg::JoinableQueue(q) => q.put(v, b("block", true), ms("timeout_ms")),
                    _ => return Err(harness(format!("`{id}` is not a queue"))),
                };
                r.map_err(|e| Fail::from(e.error))?;
                Ok(None)
            }
            "qsize" | "empty" | "full" => {
                let q: &mproc::Queue<String> = match self.shared(&id)? {
                    Arg::Queue(q) => q,
                    Arg::JoinableQueue(q) => q,
                    _ => return Err(harness(format!("`{id}` is not a queue"))),
                };
                Ok(Some(match op {
                    "qsize" => json!(q.qsize()),
                    "empty" => json!(q.empty()),
                    _ => json!(q.full()),
                }))
            }
            "task_done" => match self.shared(&id)? {
                Arg::JoinableQueue(q) => {
                    q.task_done()?;
                    Ok(None)
                }
                _ => Err(harness(format!("`{id}` is not a joinable queue"))),
            },
            "lock" => {
                let value = f.get("value").and_then(Value::as_i64).unwrap_or(1).max(0) as u32;
                let ctx = match f.get("context").and_then(Value::as_str) {
                    None | Some("case") => self.ctx,
                    Some("default") => mproc::default_context(),
                    Some(m) => mproc::get_context(m.parse::<StartMethod>()?),
                };
                let l = match f.get("kind").and_then(Value::as_str).unwrap_or("Lock") {
                    "Lock" => Arg::Lock(ctx.lock()?),
                    "RLock" => Arg::RLock(ctx.rlock()?),
                    "Semaphore" => Arg::Semaphore(ctx.semaphore(value)?),
                    "BoundedSemaphore" => Arg::BoundedSemaphore(ctx.bounded_semaphore(value)?),
                    other => return Err(harness(format!("unknown lock kind {other:?}"))),
                };
                self.objs.insert(id, Obj::Shared(l));
                Ok(None)
            }
            "acquire" => {
                let (block, t) = (b("block", true), ms("timeout_ms"));
                let got = match self.shared(&id)? {
                    Arg::Lock(l) => l.acquire(block, t)?.map(|g| g.forget()).is_some(),
                    Arg::RLock(l) => l.acquire(block, t)?.map(|g| g.forget()).is_some(),
                    Arg::Semaphore(l) => l.acquire(block, t)?.map(|g| g.forget()).is_some(),
                    Arg::BoundedSemaphore(l) => l.acquire(block, t)?.map(|g| g.forget()).is_some(),
                    Arg::Condition(c) => c
                        .acquire(block, t)?
                        .map(|g| match g {
                            mproc::ConditionGuard::Lock(g) => g.forget(),
                            mproc::ConditionGuard::RLock(g) => g.forget(),
                        })
                        .is_some(),
                    _ => return Err(harness(format!("`{id}` is not a lock"))),
                };
                Ok(Some(json!(got)))
            }
            "release" => {
                match self.shared(&id)? {
                    Arg::Lock(l) => l.release()?,
                    Arg::RLock(l) => l.release()?,
                    Arg::Semaphore(l) => l.release(1)?,
                    Arg::BoundedSemaphore(l) => l.release(1)?,
                    Arg::Condition(c) => match c.get_lock() {
                        mproc::ConditionLock::Lock(l) => l.release()?,
                        mproc::ConditionLock::RLock(l) => l.release()?,
                    },
                    _ => return Err(harness(format!("`{id}` is not a lock"))),
                }
                Ok(None)
            }
            "event" => {
                let e = self.ctx.event()?;
                self.objs.insert(id, Obj::Shared(Arg::Event(e)));
                Ok(None)
            }
            "event_set" | "event_clear" | "event_is_set" | "event_wait" => {
                let Arg::Event(e) = self.shared(&id)? else {
                    return Err(harness(format!("`{id}` is not an event")));
                };
                Ok(match op {
                    "event_set" => {
                        e.set();
                        None
                    }
                    "event_clear" => {
                        e.clear();
                        None
                    }
                    "event_is_set" => Some(json!(e.is_set())),
                    _ => Some(json!(
                        e.wait(Some(ms("timeout_ms").unwrap_or(Duration::ZERO)))?
                    )),
                })
            }
            "condition" => {
                let c = self.ctx.condition(None)?;
                self.objs.insert(id, Obj::Shared(Arg::Condition(c)));
                Ok(None)
            }
            "condition_wait" | "notify" | "notify_all" => {
                let Arg::Condition(c) = self.shared(&id)? else {
                    return Err(harness(format!("`{id}` is not a condition")));
                };
                Ok(match op {
                    "condition_wait" => Some(json!(c.wait(ms("timeout_ms"))?)),
                    "notify" => {
                        c.notify(f.get("n").and_then(Value::as_i64).unwrap_or(1).max(0) as usize)?;
                        None
                    }
                    _ => {
                        c.notify_all()?;
                        None
                    }
                })
            }
            "barrier" => {
                let parties = f.get("parties").and_then(Value::as_i64).unwrap_or(1).max(0) as u32;
                let b = self.ctx.barrier(parties)?;
                self.objs.insert(id, Obj::Shared(Arg::Barrier(b)));
                Ok(None)
            }
            "barrier_wait" | "broken" | "barrier_reset" => {
                let Arg::Barrier(b) = self.shared(&id)? else {
                    return Err(harness(format!("`{id}` is not a barrier")));
                };
                Ok(match op {
                    "barrier_wait" => {
                        b.wait(ms("timeout_ms"))?;
                        None
                    }
                    "broken" => Some(json!(b.broken())),
                    _ => {
                        b.reset()?;
                        None
                    }
                })
            }
            "value" | "array" => {
                let init = f.get("init").cloned().unwrap_or(Value::Null);
                let arg = match (op, s("typecode").as_str()) {
                    ("value", "d") => Arg::ValueF64(self.ctx.value(init.as_f64().unwrap_or(0.0))?),
                    ("value", "i") => {
                        Arg::ValueI32(self.ctx.value(init.as_i64().unwrap_or(0) as i32)?)
                    }
                    ("array", "d") => Arg::ArrayF64(
                        self.ctx.array(
                            init.as_array()
                                .into_iter()
                                .flatten()
                                .map(|v| v.as_f64().unwrap_or(0.0)),
                        )?,
                    ),
                    ("array", "i") => Arg::ArrayI32(
                        self.ctx.array(
                            init.as_array()
                                .into_iter()
                                .flatten()
                                .map(|v| v.as_i64().unwrap_or(0) as i32),
                        )?,
                    ),
                    (_, tc) => {
                        return Err(harness(format!(
                            "typecode {tc:?}: the harness knows 'd' and 'i'"
                        )))
                    }
                };
                self.objs.insert(id, Obj::Shared(arg));
                Ok(None)
            }
            "read" => Ok(Some(match self.shared(&id)? {
                Arg::ValueF64(v) => json!(v.get()),
                Arg::ValueI32(v) => json!(v.get()),
                Arg::ArrayF64(a) => json!(a.to_vec()),
                Arg::ArrayI32(a) => json!(a.to_vec()),
                _ => return Err(harness(format!("`{id}` is not a Value or Array"))),
            })),
            "write" => {
                let v = f.get("value").cloned().unwrap_or(Value::Null);
                match self.shared(&id)? {
                    Arg::ValueF64(x) => x.set(v.as_f64().unwrap_or(0.0)),
                    Arg::ValueI32(x) => x.set(v.as_i64().unwrap_or(0) as i32),
                    Arg::ArrayI32(a) => {
                        let items: Vec<i32> = v
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|x| x.as_i64().unwrap_or(0) as i32)
                            .collect();
                        a.set_slice(0, &items)?
                    }
                    Arg::ArrayF64(a) => {
                        let items: Vec<f64> = v
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|x| x.as_f64().unwrap_or(0.0))
                            .collect();
                        a.set_slice(0, &items)?
                    }
                    _ => return Err(harness(format!("`{id}` is not a Value or Array"))),
                }
                Ok(None)
            }
            other => Err(harness(format!("the mproc runner has no `{other}` yet"))),
        }
    }
}

/// Substitutes `$var` references in `v`: a string that is exactly one reference takes the
/// variable's value (any type); references inside a longer string are interpolated as text.
/// A reference is `$name`, `$name[N]` or `$name[$other]`.
pub fn subst(v: &Value, vars: &BTreeMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains('$') => {
            let parts = refs(s, vars)?;
            if parts.len() == 1 {
                if let Part::Ref(v) = &parts[0] {
                    return Ok(v.clone());
                }
            }
            let mut out = String::new();
            for p in parts {
                match p {
                    Part::Text(t) => out.push_str(&t),
                    Part::Ref(Value::String(s)) => out.push_str(&s),
                    Part::Ref(v) => out.push_str(&v.to_string()),
                }
            }
            Value::String(out)
        }
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| subst(x, vars)).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), subst(x, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

enum Part {
    Text(String),
    Ref(Value),
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

fn refs(s: &str, vars: &BTreeMap<String, Value>) -> Result<Vec<Part>, String> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let ch = s[i..].chars().next().expect("in bounds");
            text.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let end = ident_end(b, i + 1);
        let name = &s[i + 1..end];
        if name.is_empty() {
            return Err(format!("`$` without a name in {s:?}"));
        }
        let mut val = vars
            .get(name)
            .cloned()
            .ok_or_else(|| format!("unknown variable `${name}`"))?;
        i = end;
        if i < b.len() && b[i] == b'[' {
            let close = s[i..]
                .find(']')
                .map(|j| i + j)
                .ok_or_else(|| format!("missing `]` in {s:?}"))?;
            let inner = &s[i + 1..close];
            let idx = if let Some(var) = inner.strip_prefix('$') {
                vars.get(var)
                    .and_then(Value::as_i64)
                    .ok_or_else(|| format!("`${var}` is not an integer variable"))?
            } else {
                inner
                    .parse::<i64>()
                    .map_err(|_| format!("bad index {inner:?}"))?
            };
            val = val
                .as_array()
                .and_then(|a| a.get(idx as usize))
                .cloned()
                .ok_or_else(|| format!("`${name}[{idx}]` is out of range or not a list"))?;
            i = close + 1;
        }
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Ref(val));
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_whole_values_indexes_and_text() {
        let mut vars = BTreeMap::new();
        vars.insert("i".to_string(), json!(2));
        vars.insert("s".to_string(), json!([10, 20, 30]));
        vars.insert("null".to_string(), Value::Null);
        assert_eq!(subst(&json!("$i"), &vars).unwrap(), json!(2));
        assert_eq!(subst(&json!("$s[$i]"), &vars).unwrap(), json!(30));
        assert_eq!(subst(&json!("$s[0]"), &vars).unwrap(), json!(10));
        assert_eq!(subst(&json!("r$i"), &vars).unwrap(), json!("r2"));
        assert_eq!(
            subst(&json!([42, "$null", "hello"]), &vars).unwrap(),
            json!([42, null, "hello"])
        );
        assert!(subst(&json!("$nope"), &vars).is_err());
        assert!(subst(&json!("$s[7]"), &vars).is_err());
    }
}
