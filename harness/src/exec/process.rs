//! Processes: create, start, join, observe, signal, close. A group (`count = N`) answers each
//! action for all its processes (observations as a list).

use super::{harness, value, Exec, Fail, Obj, Outcome, DONE};
use crate::catalogue::{self, Arg};
use crate::template::Template;
use crate::vocab::process::ProcessOp;
use mproc::Process;
use serde_json::Value;

impl Exec<'_> {
    pub(super) fn process(&mut self, op: &ProcessOp) -> Outcome {
        match op {
            ProcessOp::Process {
                id,
                task,
                args,
                name,
                daemon,
                context,
                count,
            } => self.make_process(id, task, args, (name, daemon, context), count),
            ProcessOp::Start { id } => {
                let id = self.get(id)?;
                let mut pids = Vec::new();
                for p in self.procs(&id)? {
                    p.start()?;
                    pids.extend(p.pid().map(u64::from));
                }
                self.trace.pids.extend(pids);
                DONE
            }
            ProcessOp::Join { id, timeout_ms } => self.join(&self.get(id)?, self.ms(timeout_ms)?),
            ProcessOp::IsAlive { id } => self.observe(id, |p| Ok(p.is_alive()?.into())),
            ProcessOp::Exitcode { id } => self.observe(id, |p| Ok(p.exitcode()?.into())),
            ProcessOp::Name { id } => self.observe(id, |p| Ok(p.get_name().into())),
            ProcessOp::SetName { id, name } => {
                let name = self.get(name)?;
                for p in self.procs(&self.get(id)?)? {
                    p.set_name(name.clone());
                }
                DONE
            }
            ProcessOp::IsDaemon { id } => self.observe(id, |p| Ok(p.is_daemon().into())),
            ProcessOp::SetDaemon { id, daemon } => {
                let daemon = self.get(daemon)?;
                self.each(id, |p| Ok(p.set_daemon(daemon)?))
            }
            ProcessOp::HasPid { id } => self.observe(id, |p| Ok(p.pid().is_some().into())),
            ProcessOp::Terminate { id } => {
                if let Obj::Pool(p) = self.obj(&self.get(id)?)? {
                    p.terminate()?;
                    return DONE;
                }
                self.each(id, |p| Ok(p.terminate()?))
            }
            ProcessOp::Kill { id } => self.each(id, |p| Ok(p.kill()?)),
            ProcessOp::Close { id } => self.close(&self.get(id)?),
            ProcessOp::ActiveChildren {} => value(mproc::active_children().len()),
            ProcessOp::CurrentProcess {} => {
                let me = mproc::current_process();
                value(serde_json::json!({"name": me.name, "daemon": me.daemon}))
            }
            ProcessOp::JoinCurrent {} => {
                mproc::current_process().join()?;
                DONE
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn make_process(
        &mut self,
        id: &Template<String>,
        task: &Template<String>,
        args: &Option<Template<Vec<Value>>>,
        (name, daemon, context): (
            &Option<Template<String>>,
            &Option<Template<bool>>,
            &Option<Template<String>>,
        ),
        count: &Option<Template<i64>>,
    ) -> Outcome {
        let id = self.get(id)?;
        let ctx = self.context(context)?;
        let (name, daemon) = (self.opt(name)?, self.opt(daemon)?);
        let make = |ex: &mut Self| -> Result<Process, Fail> {
            let call = ex.call_of(task, args)?;
            let mut p = ctx.process(catalogue::process_main, (call,));
            if let Some(n) = &name {
                p = p.name(n.clone());
            }
            if let Some(d) = daemon {
                p = p.daemon(d);
            }
            Ok(p)
        };
        let obj = match self.opt(count)? {
            None => Obj::Process(make(self)?),
            Some(n) => Obj::Group(
                (0..n.max(0))
                    .map(|_| make(self))
                    .collect::<Result<_, _>>()?,
            ),
        };
        self.objs.insert(id.clone(), obj);
        self.order.push(id);
        DONE
    }

    /// The process `id`, or the processes of group `id`.
    fn procs(&self, id: &str) -> Result<Vec<&Process>, Fail> {
        match self.objs.get(id) {
            Some(Obj::Process(p)) => Ok(vec![p]),
            Some(Obj::Group(ps)) => Ok(ps.iter().collect()),
            _ => Err(harness(format!("no process `{id}`"))),
        }
    }

    /// Does `f` to the process `id` (or to each of a group).
    fn each(&self, id: &Template<String>, f: impl Fn(&Process) -> Result<(), Fail>) -> Outcome {
        for p in self.procs(&self.get(id)?)? {
            f(p)?;
        }
        DONE
    }

    /// What `f` observes of the process `id` (a list, for a group).
    fn observe(
        &self,
        id: &Template<String>,
        f: impl Fn(&Process) -> Result<Value, Fail>,
    ) -> Outcome {
        let id = self.get(id)?;
        match self.obj(&id)? {
            Obj::Group(ps) => Ok(Some(Value::Array(
                ps.iter().map(&f).collect::<Result<_, _>>()?,
            ))),
            _ => Ok(Some(f(self.procs(&id)?[0])?)),
        }
    }

    /// Joins a process (or a group), a pool or a joinable queue.
    fn join(&self, id: &str, timeout: Option<std::time::Duration>) -> Outcome {
        match self.obj(id)? {
            Obj::Pool(p) => p.join()?,
            Obj::Shared(Arg::JoinableQueue(q)) => match timeout {
                Some(t) => q.join_timeout(t)?,
                None => q.join()?,
            },
            _ => {
                for p in self.procs(id)? {
                    match timeout {
                        Some(t) => drop(p.join_timeout(t)?),
                        None => drop(p.join()?),
                    }
                }
            }
        }
        DONE
    }

    /// Closes a process (or a group), a connection, a pool or a queue.
    fn close(&mut self, id: &str) -> Outcome {
        match self.objs.get_mut(id) {
            Some(Obj::Process(p)) => p.close()?,
            Some(Obj::Group(ps)) => {
                for p in ps.iter() {
                    p.close()?;
                }
            }
            Some(Obj::Conn(c)) => {
                if let Some(c) = c.as_mut() {
                    c.close();
                }
            }
            Some(Obj::Pool(p)) => p.close()?,
            Some(Obj::Shared(Arg::Queue(q))) => q.close(),
            Some(Obj::Shared(Arg::JoinableQueue(q))) => q.close(),
            Some(Obj::Shared(Arg::BytesQueue(q))) => q.close(),
            Some(_) => return Err(harness(format!("`{id}` cannot be closed"))),
            None => return Err(harness(format!("no object `{id}`"))),
        }
        DONE
    }
}
