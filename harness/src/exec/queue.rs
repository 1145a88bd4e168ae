//! Queues (values cross as JSON; a queue of bytes carries strings as UTF-8). `get` is the pool
//! module's action (`exec/pool.rs`), `join` and `close` the process module's.

use super::{harness, value, Exec, Obj, Outcome, DONE};
use crate::catalogue::Arg;
use crate::vocab::queue::QueueOp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

impl Exec<'_> {
    pub(super) fn queue(&mut self, op: &QueueOp) -> Outcome {
        match op {
            QueueOp::Queue {
                id,
                maxsize,
                joinable,
                bytes,
            } => {
                let max = self.opt(maxsize)?.map(|m| m.max(0) as usize);
                let q = match (self.opt(joinable)?, self.opt(bytes)?) {
                    (Some(true), Some(true)) => {
                        return Err(harness("a queue of bytes cannot be joinable"))
                    }
                    (Some(true), _) => Arg::JoinableQueue(
                        self.ctx
                            .queue_builder()
                            .maxsize(max.unwrap_or(0))
                            .build_joinable()?,
                    ),
                    (_, Some(true)) => {
                        Arg::BytesQueue(self.ctx.queue_builder().maxsize(max.unwrap_or(0)).build()?)
                    }
                    _ => Arg::Queue(self.ctx.queue_builder().maxsize(max.unwrap_or(0)).build()?),
                };
                self.objs.insert(self.get(id)?, Obj::Shared(q));
                DONE
            }
            QueueOp::Put {
                id,
                value: item,
                block,
                timeout_ms,
            } => {
                let (id, v) = (self.get(id)?, self.get(item)?);
                let (block, t) = (self.opt(block)?.unwrap_or(true), self.ms(timeout_ms)?);
                let r: mproc::Result<()> = match self.shared(&id)? {
                    Arg::Queue(q) => put(q, v.to_string(), block, t),
                    Arg::JoinableQueue(q) => put(q, v.to_string(), block, t),
                    Arg::BytesQueue(q) => {
                        let Value::String(s) = v else {
                            return Err(harness(format!(
                                "a queue of bytes takes strings, not {v}"
                            )));
                        };
                        put(q, s.into_bytes(), block, t)
                    }
                    _ => return Err(harness(format!("`{id}` is not a queue"))),
                };
                r?;
                DONE
            }
            QueueOp::Qsize { id } => self.sizes(&self.get(id)?, |q| value(q.0)),
            QueueOp::Empty { id } => self.sizes(&self.get(id)?, |q| value(q.1)),
            QueueOp::Full { id } => self.sizes(&self.get(id)?, |q| value(q.2)),
            QueueOp::TaskDone { id } => match self.shared(&self.get(id)?)? {
                Arg::JoinableQueue(q) => {
                    q.task_done()?;
                    DONE
                }
                _ => Err(harness("not a joinable queue")),
            },
        }
    }

    /// `f` of the queue's `(qsize, empty, full)`.
    fn sizes(&self, id: &str, f: impl Fn((usize, bool, bool)) -> Outcome) -> Outcome {
        match self.shared(id)? {
            Arg::Queue(q) => f((q.qsize(), q.empty(), q.full())),
            Arg::JoinableQueue(q) => f((q.qsize(), q.empty(), q.full())),
            Arg::BytesQueue(q) => f((q.qsize(), q.empty(), q.full())),
            _ => Err(harness(format!("`{id}` is not a queue"))),
        }
    }
}

/// Python's `put(item, block, timeout)` onto the three forms mproc has.
fn put<T: Serialize + DeserializeOwned>(
    q: &mproc::Queue<T>,
    item: T,
    block: bool,
    t: Option<Duration>,
) -> mproc::Result<()> {
    match (block, t) {
        (false, _) => q.try_put(item),
        (true, None) => q.put(item),
        (true, Some(t)) => q.put_timeout(item, t),
    }
    .map_err(|e| e.error)
}

/// Python's `get(block, timeout)` onto the three forms mproc has.
pub(super) fn get<T: Serialize + DeserializeOwned>(
    q: &mproc::Queue<T>,
    block: bool,
    t: Option<Duration>,
) -> mproc::Result<T> {
    match (block, t) {
        (false, _) => q.try_get(),
        (true, None) => q.get(),
        (true, Some(t)) => q.get_timeout(t),
    }
}
