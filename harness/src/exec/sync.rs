//! Locks, semaphores, events, conditions, barriers. A lock acquired by a step stays held (its
//! guard is forgotten) until a `release` step.

use super::{harness, value, Exec, Fail, Obj, Outcome, DONE};
use crate::catalogue::Arg;
use crate::template::Template;
use crate::vocab::kinds::Lock;
use crate::vocab::sync::SyncOp;
use mproc::ConditionLock;
use std::time::Duration;

impl Exec<'_> {
    pub(super) fn sync(&mut self, op: &SyncOp) -> Outcome {
        match op {
            SyncOp::Lock {
                id,
                kind,
                value: initial,
                context,
            } => {
                let ctx = self.context(context)?;
                let n = self.opt(initial)?.unwrap_or(1).max(0) as u32;
                let l = match self.opt(kind)?.unwrap_or(Lock::Lock) {
                    Lock::Lock => Arg::Lock(ctx.lock()?),
                    Lock::RLock => Arg::RLock(ctx.rlock()?),
                    Lock::Semaphore => Arg::Semaphore(ctx.semaphore(n)?),
                    Lock::BoundedSemaphore => Arg::BoundedSemaphore(ctx.bounded_semaphore(n)?),
                };
                self.objs.insert(self.get(id)?, Obj::Shared(l));
                DONE
            }
            SyncOp::Acquire {
                id,
                block,
                timeout_ms,
            } => {
                let (block, t) = (self.opt(block)?.unwrap_or(true), self.ms(timeout_ms)?);
                value(self.acquire(&self.get(id)?, block, t)?)
            }
            SyncOp::Release { id } => self.release(&self.get(id)?),
            SyncOp::Event { id } => {
                let e = self.ctx.event()?;
                self.objs.insert(self.get(id)?, Obj::Shared(Arg::Event(e)));
                DONE
            }
            SyncOp::EventSet { id } => {
                self.event(id)?.set();
                DONE
            }
            SyncOp::EventClear { id } => {
                self.event(id)?.clear();
                DONE
            }
            SyncOp::EventIsSet { id } => value(self.event(id)?.is_set()),
            SyncOp::EventWait { id, timeout_ms } => {
                let t = self.ms(timeout_ms)?.unwrap_or(Duration::ZERO);
                value(self.event(id)?.wait_timeout(t)?)
            }
            SyncOp::Condition { id } => {
                let c = self.ctx.condition()?;
                self.objs
                    .insert(self.get(id)?, Obj::Shared(Arg::Condition(c)));
                DONE
            }
            SyncOp::ConditionWait { id, timeout_ms } => {
                let c = self.condition(id)?;
                value(match self.ms(timeout_ms)? {
                    Some(t) => c.wait_timeout(t)?,
                    None => {
                        c.wait()?;
                        true
                    }
                })
            }
            SyncOp::Notify { id, n } => {
                let n = self.opt(n)?.unwrap_or(1).max(0) as usize;
                self.condition(id)?.notify(n)?;
                DONE
            }
            SyncOp::NotifyAll { id } => {
                self.condition(id)?.notify_all()?;
                DONE
            }
            SyncOp::Barrier { id, parties } => {
                let b = self.ctx.barrier(self.get(parties)?.max(0) as u32)?;
                self.objs
                    .insert(self.get(id)?, Obj::Shared(Arg::Barrier(b)));
                DONE
            }
            SyncOp::BarrierWait { id, timeout_ms } => {
                let b = self.barrier(id)?;
                match self.ms(timeout_ms)? {
                    Some(t) => b.wait_timeout(t)?,
                    None => b.wait()?,
                };
                DONE
            }
            SyncOp::Broken { id } => value(self.barrier(id)?.broken()),
            SyncOp::BarrierReset { id } => {
                self.barrier(id)?.reset()?;
                DONE
            }
        }
    }

    /// Acquires lock `id` and keeps it; whether it was acquired.
    fn acquire(&self, id: &str, block: bool, t: Option<Duration>) -> Result<bool, Fail> {
        // Python's acquire(block, timeout) onto the three forms mproc has; a hold is kept
        // without its guard until the `release` step.
        macro_rules! take {
            ($l:expr) => {
                match (block, t) {
                    (false, _) => $l.try_acquire()?.map(|g| g.forget()).is_some(),
                    (true, None) => {
                        $l.acquire()?.forget();
                        true
                    }
                    (true, Some(t)) => $l.acquire_timeout(t)?.map(|g| g.forget()).is_some(),
                }
            };
        }
        Ok(match self.shared(id)? {
            Arg::Lock(l) => take!(l),
            Arg::RLock(l) => take!(l),
            Arg::Semaphore(l) => take!(l),
            Arg::BoundedSemaphore(l) => take!(l),
            Arg::Condition(c) => take!(c),
            _ => return Err(harness(format!("`{id}` is not a lock"))),
        })
    }

    fn release(&self, id: &str) -> Outcome {
        match self.shared(id)? {
            Arg::Lock(l) => l.release()?,
            Arg::RLock(l) => l.release()?,
            Arg::Semaphore(l) => l.release(1)?,
            Arg::BoundedSemaphore(l) => l.release(1)?,
            Arg::Condition(c) => match c.get_lock() {
                ConditionLock::Lock(l) => l.release()?,
                ConditionLock::RLock(l) => l.release()?,
            },
            _ => return Err(harness(format!("`{id}` is not a lock"))),
        }
        DONE
    }

    fn event(&self, id: &Template<String>) -> Result<&mproc::Event, Fail> {
        let id = self.get(id)?;
        match self.shared(&id)? {
            Arg::Event(e) => Ok(e),
            _ => Err(harness(format!("`{id}` is not an event"))),
        }
    }

    fn condition(&self, id: &Template<String>) -> Result<&mproc::Condition, Fail> {
        let id = self.get(id)?;
        match self.shared(&id)? {
            Arg::Condition(c) => Ok(c),
            _ => Err(harness(format!("`{id}` is not a condition"))),
        }
    }

    fn barrier(&self, id: &Template<String>) -> Result<&mproc::Barrier, Fail> {
        let id = self.get(id)?;
        match self.shared(&id)? {
            Arg::Barrier(b) => Ok(b),
            _ => Err(harness(format!("`{id}` is not a barrier"))),
        }
    }
}
