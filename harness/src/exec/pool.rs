//! Pools and their results. Tasks return JSON text; a task that fails or panics is `Remote`.

use super::{harness, parse_json, value, Exec, Fail, Obj, Outcome, DONE};
use crate::catalogue::{self, Arg, TaskCall};
use crate::template::Template;
use crate::vocab::kinds::ItemList;
use crate::vocab::pool::PoolOp;
use serde_json::Value;
use std::sync::Arc;

impl Exec<'_> {
    pub(super) fn pool(&mut self, op: &PoolOp) -> Outcome {
        match op {
            PoolOp::Pool {
                id,
                processes,
                initializer,
                initargs,
                maxtasksperchild,
            } => {
                let mut builder = self.ctx.pool();
                if let Some(n) = self.opt(processes)? {
                    builder = builder.processes(n.max(0) as usize);
                }
                if let Some(n) = self.opt(maxtasksperchild)? {
                    builder = builder.maxtasksperchild(n.max(0) as usize);
                }
                if let Some(t) = initializer {
                    let call = self.call_of(t, initargs)?;
                    builder = builder.initializer(catalogue::init_main, (call,));
                }
                let pool = builder.build()?;
                self.objs.insert(self.get(id)?, Obj::Pool(pool));
                DONE
            }
            PoolOp::Apply { pool, task, args } => {
                let call = self.call_of(task, args)?;
                let r = self.the_pool(pool)?.apply(catalogue::pool_main, (call,))?;
                Ok(Some(parse_json(&r)))
            }
            PoolOp::ApplyAsync {
                id,
                pool,
                task,
                args,
                callback,
                error_callback,
            } => {
                let id = self.get(id)?;
                let call = self.call_of(task, args)?;
                let cbs = self.callbacks_for(&id, self.opt(callback)?, self.opt(error_callback)?);
                let r = self
                    .the_pool(pool)?
                    .apply_async_with(catalogue::pool_main, (call,))
                    .callbacks(cbs)
                    .submit()?;
                self.objs.insert(id, Obj::One(r));
                DONE
            }
            PoolOp::Map {
                pool,
                task,
                items,
                chunksize,
            } => {
                let items = self.items(items)?;
                self.map(pool, task, &items, false, chunksize)
            }
            PoolOp::Starmap {
                pool,
                task,
                items,
                chunksize,
            } => {
                let items = self.get(items)?;
                self.map(pool, task, &items, true, chunksize)
            }
            PoolOp::MapAsync {
                id,
                pool,
                task,
                items,
                chunksize,
            } => {
                let items = self.items(items)?;
                let r = self.map_async(pool, task, &items, false, chunksize)?;
                self.objs.insert(self.get(id)?, Obj::Many(r));
                DONE
            }
            PoolOp::Imap {
                pool,
                task,
                items,
                chunksize,
            } => self.imap(pool, task, items, chunksize, false),
            PoolOp::ImapUnordered {
                pool,
                task,
                items,
                chunksize,
            } => self.imap(pool, task, items, chunksize, true),
            PoolOp::Get {
                id,
                timeout_ms,
                block,
            } => {
                let (id, t) = (self.get(id)?, self.ms(timeout_ms)?);
                match self.obj(&id)? {
                    Obj::One(r) => Ok(Some(parse_json(&match t {
                        Some(d) => r.get_timeout(d)?,
                        None => r.get()?,
                    }))),
                    Obj::Many(r) => Ok(Some(Value::Array(
                        match t {
                            Some(d) => r.get_timeout(d)?,
                            None => r.get()?,
                        }
                        .iter()
                        .map(|x| parse_json(x))
                        .collect(),
                    ))),
                    Obj::Shared(_) => self.queue_get(&id, self.opt(block)?.unwrap_or(true), t),
                    _ => Err(harness(format!("no result or queue `{id}`"))),
                }
            }
            PoolOp::Wait { id, timeout_ms } => {
                let (name, t) = (self.get(id)?, self.ms(timeout_ms)?);
                match (self.obj(&name)?, t) {
                    (Obj::One(r), Some(d)) => drop(r.wait_timeout(d)),
                    (Obj::One(r), None) => r.wait(),
                    (Obj::Many(r), Some(d)) => drop(r.wait_timeout(d)),
                    (Obj::Many(r), None) => r.wait(),
                    _ => return Err(harness(format!("no result `{name}`"))),
                }
                self.ready_or_successful(id, false)
            }
            PoolOp::Ready { id } => self.ready_or_successful(id, false),
            PoolOp::Successful { id } => self.ready_or_successful(id, true),
            PoolOp::Callbacks {} => {
                let mut v = self
                    .callbacks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                v.sort();
                value(v)
            }
        }
    }

    fn the_pool(&self, id: &Template<String>) -> Result<&mproc::Pool, Fail> {
        let id = self.get(id)?;
        match self.objs.get(&id) {
            Some(Obj::Pool(p)) => Ok(p),
            _ => Err(harness(format!("no pool `{id}`"))),
        }
    }

    fn items(&self, items: &ItemList) -> Result<Vec<Value>, Fail> {
        items.get(&self.vars).map_err(harness)
    }

    fn chunk(&self, chunksize: &Option<Template<i64>>) -> Result<Option<usize>, Fail> {
        Ok(self.opt(chunksize)?.map(|c| c.max(0) as usize))
    }

    /// `map` (or, `star`, `starmap`) of `task` over `items`: the results in order.
    fn map(
        &mut self,
        pool: &Template<String>,
        task: &Template<String>,
        items: &[Value],
        star: bool,
        chunksize: &Option<Template<i64>>,
    ) -> Result<Option<Value>, Fail> {
        let r = self.map_async(pool, task, items, star, chunksize)?.get()?;
        Ok(Some(Value::Array(
            r.iter().map(|x| parse_json(x)).collect(),
        )))
    }

    /// Submits `map` (or, `star`, `starmap`) of `task` over `items`.
    fn map_async(
        &mut self,
        pool: &Template<String>,
        task: &Template<String>,
        items: &[Value],
        star: bool,
        chunksize: &Option<Template<i64>>,
    ) -> Result<mproc::MapResult<String>, Fail> {
        let calls = self.calls(task, items, star)?;
        let chunk = self.chunk(chunksize)?;
        let mut m = self
            .the_pool(pool)?
            .map_async_with(catalogue::pool_main, calls);
        if let Some(c) = chunk {
            m = m.chunksize(c);
        }
        Ok(m.submit()?)
    }

    /// The calls of a map over `items`: each item is the one argument, or (starmap) the list
    /// of arguments.
    fn calls(
        &mut self,
        task: &Template<String>,
        items: &[Value],
        star: bool,
    ) -> Result<Vec<TaskCall>, Fail> {
        let task = self.get(task)?;
        items
            .iter()
            .map(|it| {
                let args = if star {
                    it.as_array().cloned().unwrap_or_default()
                } else {
                    vec![it.clone()]
                };
                self.call(&task, &args)
            })
            .collect()
    }

    /// The callbacks of `apply_async` `id`: each records what it was called with.
    fn callbacks_for(
        &self,
        id: &str,
        callback: Option<bool>,
        error_callback: Option<bool>,
    ) -> mproc::Callbacks<String> {
        let mut cbs = mproc::Callbacks::new();
        if callback == Some(true) {
            let (log, rid) = (Arc::clone(&self.callbacks), id.to_string());
            cbs = cbs.callback(move |v: &String| {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("callback {rid}: {v}"))
            });
        }
        if error_callback == Some(true) {
            let (log, rid) = (Arc::clone(&self.callbacks), id.to_string());
            cbs = cbs.error_callback(move |e: &mproc::Error| {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("error_callback {rid}: {}", e.kind_name()))
            });
        }
        cbs
    }

    fn imap(
        &mut self,
        pool: &Template<String>,
        task: &Template<String>,
        items: &ItemList,
        chunksize: &Option<Template<i64>>,
        unordered: bool,
    ) -> Outcome {
        let calls = self.calls(task, &self.items(items)?, false)?;
        let chunk = self.chunk(chunksize)?.unwrap_or(1);
        let pool = self.the_pool(pool)?;
        let it = if unordered {
            pool.imap_unordered_with(catalogue::pool_main, calls)
        } else {
            pool.imap_with(catalogue::pool_main, calls)
        }
        .chunksize(chunk)
        .submit()?;
        let mut out = Vec::new();
        for r in it {
            out.push(parse_json(&r?));
        }
        if unordered {
            out.sort_by_key(|v| v.to_string());
        }
        Ok(Some(Value::Array(out)))
    }

    /// Whether the result `id` is ready, or (`successful`) whether it succeeded.
    fn ready_or_successful(&self, id: &Template<String>, successful: bool) -> Outcome {
        let id = self.get(id)?;
        let answer = match (self.obj(&id)?, successful) {
            (Obj::One(r), false) => r.ready(),
            (Obj::Many(r), false) => r.ready(),
            (Obj::One(r), true) => r.successful()?,
            (Obj::Many(r), true) => r.successful()?,
            _ => return Err(harness(format!("no result `{id}`"))),
        };
        value(answer)
    }
}

/// Queues answer `get` too (the pool module's `get` is also the queue's).
impl Exec<'_> {
    fn queue_get(&self, id: &str, block: bool, t: Option<std::time::Duration>) -> Outcome {
        let v = match self.shared(id)? {
            Arg::Queue(q) => parse_json(&super::queue::get(q, block, t)?),
            Arg::JoinableQueue(q) => parse_json(&super::queue::get(q, block, t)?),
            Arg::BytesQueue(q) => {
                Value::String(String::from_utf8_lossy(&super::queue::get(q, block, t)?).into())
            }
            _ => return Err(harness(format!("no result or queue `{id}`"))),
        };
        Ok(Some(v))
    }
}
