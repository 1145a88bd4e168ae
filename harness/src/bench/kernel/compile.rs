//! The bench's arm of every action of the vocabulary: a closure for the actions the bench runs
//! (marked `bench` in `vocab/`), a refusal naming the action or field for the others. Each
//! module's ops are matched without a wildcard, so a new action must be given an arm here.

use super::tasks::{identity, noop};
use super::{close, join, start, ActionFn, Arg, CStep, Env, Obj, WAIT};
use crate::bench::placement::{self, Child};
use crate::bench::workload::Workload;
use crate::template::{get_opt, FromJson, Template, Vars};
use crate::vocab::ipc::IpcOp;
use crate::vocab::kinds::{ItemList, Lock};
use crate::vocab::parent::ParentOp;
use crate::vocab::pool::PoolOp;
use crate::vocab::process::ProcessOp;
use crate::vocab::queue::QueueOp;
use crate::vocab::shared::SharedOp;
use crate::vocab::sync::SyncOp;
use crate::vocab::Op;
use mproc::{StartMethod, TypeCode};
use serde_json::Value;
use std::collections::BTreeMap;

/// Setup, timed and teardown steps, and the number of object slots.
pub(super) type Compiled = (Vec<CStep>, Vec<CStep>, Vec<CStep>, usize);

/// Compiles the steps of `w` for `method`.
pub(super) fn steps(w: &Workload, method: StartMethod) -> Result<Compiled, String> {
    let mut vars: Vars = w.case.params.clone();
    vars.insert("method".into(), Value::from(method.as_str()));
    vars.insert("null".into(), Value::Null);
    let mut c = Compiler {
        vars,
        ids: BTreeMap::new(),
    };
    let timed = &w.bench.timed;
    let is_timed = |s: &&crate::case::Step| s.label.as_deref() == Some(timed.as_str());
    let first = w
        .case
        .steps
        .iter()
        .position(|s| is_timed(&s))
        .ok_or_else(|| format!("no step labelled `{timed}`"))?;
    let last = w
        .case
        .steps
        .iter()
        .rposition(|s| is_timed(&s))
        .unwrap_or(first);
    let (mut setup, mut tm, mut teardown) = (Vec::new(), Vec::new(), Vec::new());
    for (i, s) in w.case.steps.iter().enumerate() {
        let mut actions = Vec::new();
        for a in &s.actions {
            actions.push(c.action(&a.op).map_err(|m| {
                let (path, op) = (w.path.display(), a.op.name());
                format!(
                    "{path}:{}:{}: step {} `{op}`: {m}",
                    a.line, a.column, s.index
                )
            })?);
        }
        let cs = CStep {
            repeat: s.repeat(),
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
    Ok((setup, tm, teardown, c.ids.len()))
}

/// The refusal of an action the bench does not run.
pub fn not_run(op: &str) -> String {
    format!("the bench does not run `{op}` (see `bench` in cases/README.md)")
}

fn no_field(op: &str, field: &str) -> String {
    format!("the bench does not take `{op}.{field}`")
}

pub(super) struct Compiler {
    /// The workload's parameters, `method` and `null`.
    vars: Vars,
    /// Object ids and their slots.
    ids: BTreeMap<String, usize>,
}

impl Compiler {
    fn get<T: FromJson + Clone>(&self, t: &Template<T>) -> Result<T, String> {
        t.get(&self.vars)
    }

    fn opt<T: FromJson + Clone>(&self, t: &Option<Template<T>>) -> Result<Option<T>, String> {
        get_opt(t, &self.vars)
    }

    /// The slot of a new object `id`.
    fn slot(&mut self, id: &Template<String>) -> Result<usize, String> {
        let id = self.get(id)?;
        let n = self.ids.len();
        Ok(*self.ids.entry(id).or_insert(n))
    }

    /// The slot of object `id`, made by an earlier step.
    fn existing(&self, id: &Template<String>) -> Result<usize, String> {
        let id = self.get(id)?;
        self.ids
            .get(&id)
            .copied()
            .ok_or_else(|| format!("unknown object `{id}`"))
    }

    /// A task's arguments: integers, objects (by slot) and strings.
    fn args(&self, args: &Option<Template<Vec<Value>>>) -> Result<Vec<Arg>, String> {
        let args = self.opt(args)?.unwrap_or_default();
        args.iter()
            .map(|v| match v {
                Value::Number(n) => n
                    .as_i64()
                    .map(Arg::Int)
                    .ok_or_else(|| format!("unsupported argument {v}")),
                Value::String(s) => Ok(match self.ids.get(s) {
                    Some(&slot) => Arg::Slot(slot),
                    None => Arg::Str(s.clone()),
                }),
                other => Err(format!("unsupported argument {other}")),
            })
            .collect()
    }

    pub(super) fn action(&mut self, op: &Op) -> Result<ActionFn, String> {
        match op {
            Op::Process(o) => self.process(o),
            Op::Ipc(o) => self.ipc(o),
            Op::Pool(o) => self.pool(o),
            Op::Queue(o) => self.queue(o),
            Op::Sync(o) => self.sync(o),
            Op::Shared(o) => self.shared(o),
            Op::Parent(o) => self.parent(o),
            Op::Contexts(_) => Err(not_run(op.name())),
        }
    }

    fn process(&mut self, op: &ProcessOp) -> Result<ActionFn, String> {
        Ok(match op {
            ProcessOp::Process {
                id,
                task,
                args,
                count,
                name: None,
                daemon: None,
                context: None,
            } => {
                let (task, args) = (self.get(task)?, self.args(args)?);
                // `count = N` makes a group of N processes that `start`, `join` and `close`
                // act on together.
                let count = self.opt(count)?;
                let id = self.slot(id)?;
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
            ProcessOp::Process { .. } => {
                return Err("the bench's processes take `id`, `task`, `args`, `count`".into())
            }
            ProcessOp::Start { id } => {
                let id = self.existing(id)?;
                Box::new(move |env: &mut Env| start(env, id))
            }
            ProcessOp::Join {
                id,
                timeout_ms: None,
            } => {
                let id = self.existing(id)?;
                Box::new(move |env: &mut Env| join(env, id))
            }
            ProcessOp::Join { .. } => return Err(no_field("join", "timeout_ms")),
            ProcessOp::Close { id } => {
                let id = self.existing(id)?;
                Box::new(move |env: &mut Env| close(env, id))
            }
            ProcessOp::IsAlive { .. }
            | ProcessOp::Exitcode { .. }
            | ProcessOp::Name { .. }
            | ProcessOp::SetName { .. }
            | ProcessOp::IsDaemon { .. }
            | ProcessOp::SetDaemon { .. }
            | ProcessOp::HasPid { .. }
            | ProcessOp::Terminate { .. }
            | ProcessOp::Kill { .. }
            | ProcessOp::ActiveChildren {}
            | ProcessOp::CurrentProcess {}
            | ProcessOp::JoinCurrent {} => return Err(not_run(op.name())),
        })
    }

    fn ipc(&mut self, op: &IpcOp) -> Result<ActionFn, String> {
        Ok(match op {
            IpcOp::Pipe { ids, duplex } => {
                let ids = self.get(ids)?;
                let [a, b] = ids.as_slice() else {
                    return Err("`pipe` needs `ids = [a, b]`".into());
                };
                let n = self.ids.len();
                let a = *self.ids.entry(a.clone()).or_insert(n);
                let n = self.ids.len();
                let b = *self.ids.entry(b.clone()).or_insert(n);
                let duplex = self.opt(duplex)?.unwrap_or(true);
                Box::new(move |env: &mut Env| {
                    let (x, y) = if duplex {
                        env.ctx.pipe()
                    } else {
                        env.ctx.pipe_simplex()
                    }
                    .map_err(|e| e.to_string())?;
                    env.slots[a] = Obj::Conn(x);
                    env.slots[b] = Obj::Conn(y);
                    Ok(())
                })
            }
            IpcOp::SendBytes {
                id,
                data,
                bytes,
                offset: None,
                size: None,
            } => {
                let id = self.existing(id)?;
                // `bytes = N` sends N bytes; `data` sends the string's bytes.
                let buf: Vec<u8> = match (self.opt(bytes)?, self.opt(data)?) {
                    (Some(n), None) => vec![b'x'; n.max(0) as usize],
                    (None, Some(s)) => s.into_bytes(),
                    _ => return Err("`send_bytes` needs `data` or `bytes`".into()),
                };
                Box::new(move |env: &mut Env| {
                    env.conn(id)?.send_bytes(&buf).map_err(|e| e.to_string())
                })
            }
            IpcOp::SendBytes { .. } => return Err(no_field("send_bytes", "offset` or `size")),
            IpcOp::RecvBytes { id, maxlen } => {
                let id = self.existing(id)?;
                let max = self.opt(maxlen)?.map(|m| m.max(0) as usize);
                Box::new(move |env: &mut Env| {
                    let c = env.conn(id)?;
                    match max {
                        Some(n) => c.recv_bytes_max(n),
                        None => c.recv_bytes(),
                    }
                    .map(drop)
                    .map_err(|e| e.to_string())
                })
            }
            IpcOp::Send { .. } | IpcOp::Recv { .. } | IpcOp::Poll { .. } => {
                return Err(not_run(op.name()))
            }
        })
    }

    fn pool(&mut self, op: &PoolOp) -> Result<ActionFn, String> {
        Ok(match op {
            PoolOp::Pool {
                id,
                processes,
                initializer: None,
                initargs: None,
                maxtasksperchild: None,
            } => {
                let n = self.opt(processes)?.map(|x| x.max(1) as usize);
                let id = self.slot(id)?;
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
            PoolOp::Pool { .. } => return Err("the bench's pools take `id`, `processes`".into()),
            PoolOp::Map {
                pool,
                task,
                items,
                chunksize,
            } => self.map(pool, task, items, chunksize)?,
            PoolOp::ApplyAsync {
                id,
                pool,
                task,
                args,
                callback: None,
                error_callback: None,
            } => self.apply_async(id, pool, task, args)?,
            PoolOp::ApplyAsync { .. } => return Err(no_field("apply_async", "callback")),
            PoolOp::Get {
                id,
                timeout_ms: None,
                block: None,
            } => {
                let id = self.existing(id)?;
                Box::new(move |env: &mut Env| match &env.slots[id] {
                    Obj::Unit(r) => r.get_timeout(WAIT).map_err(|e| e.to_string()),
                    Obj::Int(r) => r.get_timeout(WAIT).map(drop).map_err(|e| e.to_string()),
                    other => Err(format!("slot {id} is not a result: {other:?}")),
                })
            }
            PoolOp::Get { .. } => return Err(no_field("get", "timeout_ms` or `block")),
            PoolOp::Apply { .. }
            | PoolOp::MapAsync { .. }
            | PoolOp::Starmap { .. }
            | PoolOp::Imap { .. }
            | PoolOp::ImapUnordered { .. }
            | PoolOp::Wait { .. }
            | PoolOp::Ready { .. }
            | PoolOp::Successful { .. }
            | PoolOp::Callbacks {} => return Err(not_run(op.name())),
        })
    }

    /// `map` of the task `identity` over a range: the items are never materialised.
    fn map(
        &mut self,
        pool: &Template<String>,
        task: &Template<String>,
        items: &ItemList,
        chunksize: &Option<Template<i64>>,
    ) -> Result<ActionFn, String> {
        let pool = self.existing(pool)?;
        let task = self.get(task)?;
        if task != "identity" {
            return Err(format!("the bench maps the task `identity`, not `{task}`"));
        }
        let (a, b) = items
            .range(&self.vars)?
            .ok_or("the bench maps a range of integers (`items = \"A..B\"`)")?;
        let chunksize = self.opt(chunksize)?.map(|x| x.max(1) as usize);
        Ok(Box::new(move |env: &mut Env| {
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
        }))
    }

    fn apply_async(
        &mut self,
        id: &Template<String>,
        pool: &Template<String>,
        task: &Template<String>,
        args: &Option<Template<Vec<Value>>>,
    ) -> Result<ActionFn, String> {
        let pool = self.existing(pool)?;
        let (task, args) = (self.get(task)?, self.args(args)?);
        let id = self.slot(id)?;
        Ok(Box::new(move |env: &mut Env| {
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
        }))
    }

    fn queue(&mut self, op: &QueueOp) -> Result<ActionFn, String> {
        Ok(match op {
            QueueOp::Queue {
                id,
                maxsize: None,
                joinable: None,
                bytes,
            } => {
                // `bytes = true`: a queue of byte strings.
                let bytes = self.opt(bytes)?.unwrap_or(false);
                let id = self.slot(id)?;
                Box::new(move |env: &mut Env| {
                    let e = |e: mproc::Error| e.to_string();
                    env.slots[id] = if bytes {
                        Obj::BytesQueue(env.ctx.queue().map_err(e)?)
                    } else {
                        Obj::Queue(env.ctx.queue().map_err(e)?)
                    };
                    Ok(())
                })
            }
            QueueOp::Queue { .. } => return Err("the bench's queues take `id`, `bytes`".into()),
            QueueOp::Put { .. }
            | QueueOp::Qsize { .. }
            | QueueOp::Empty { .. }
            | QueueOp::Full { .. }
            | QueueOp::TaskDone { .. } => return Err(not_run(op.name())),
        })
    }

    fn sync(&mut self, op: &SyncOp) -> Result<ActionFn, String> {
        Ok(match op {
            SyncOp::Lock {
                id,
                kind,
                value: None,
                context: None,
            } => {
                if let Some(k) = self.opt(kind)? {
                    if k != Lock::Lock {
                        return Err(format!("the bench's locks are `Lock`s, not {k:?}"));
                    }
                }
                let id = self.slot(id)?;
                Box::new(move |env: &mut Env| {
                    env.slots[id] = Obj::Lock(env.ctx.lock().map_err(|e| e.to_string())?);
                    Ok(())
                })
            }
            SyncOp::Lock { .. } => return Err("the bench's locks take `id`, `kind`".into()),
            SyncOp::Acquire { .. }
            | SyncOp::Release { .. }
            | SyncOp::Event { .. }
            | SyncOp::EventSet { .. }
            | SyncOp::EventClear { .. }
            | SyncOp::EventIsSet { .. }
            | SyncOp::EventWait { .. }
            | SyncOp::Barrier { .. }
            | SyncOp::BarrierWait { .. }
            | SyncOp::Broken { .. }
            | SyncOp::BarrierReset { .. }
            | SyncOp::Condition { .. }
            | SyncOp::ConditionWait { .. }
            | SyncOp::Notify { .. }
            | SyncOp::NotifyAll { .. } => return Err(not_run(op.name())),
        })
    }

    fn shared(&mut self, op: &SharedOp) -> Result<ActionFn, String> {
        Ok(match op {
            SharedOp::Value { id, typecode, init } => {
                let code = self.get(typecode)?;
                if code != TypeCode::I64 {
                    return Err(format!(
                        "the bench's values are typecode \"q\", not {code:?}"
                    ));
                }
                let init = i64::from_json(&self.get(init)?)?;
                let id = self.slot(id)?;
                Box::new(move |env: &mut Env| {
                    env.slots[id] = Obj::Value(env.ctx.value(init).map_err(|e| e.to_string())?);
                    Ok(())
                })
            }
            SharedOp::Array { .. } | SharedOp::Read { .. } | SharedOp::Write { .. } => {
                return Err(not_run(op.name()))
            }
        })
    }

    fn parent(&mut self, op: &ParentOp) -> Result<ActionFn, String> {
        Ok(match op {
            ParentOp::Call { task, args } => {
                let (task, args) = (self.get(task)?, self.args(args)?);
                Box::new(move |env: &mut Env| env.call_task(&task, &args))
            }
            ParentOp::SleepMs { .. } | ParentOp::Print { .. } => return Err(not_run(op.name())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_runs_exactly_the_actions_marked_bench() {
        for (spec, op) in crate::vocab::tests::sample_ops() {
            let mut c = Compiler {
                vars: Vars::new(),
                ids: BTreeMap::new(),
            };
            let refused =
                matches!(c.action(&op), Err(e) if e.starts_with("the bench does not run"));
            assert_eq!(refused, !spec.bench, "`{}`", spec.name);
        }
    }
}
