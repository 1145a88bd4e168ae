//! Shared `Value`s and `Array`s of every typecode (`crate::ctypes`).

use super::{harness, Exec, Obj, Outcome, DONE};
use crate::catalogue::Arg;
use crate::ctypes::{SharedArray, SharedValue};
use crate::vocab::shared::SharedOp;

impl Exec<'_> {
    pub(super) fn shared_op(&mut self, op: &SharedOp) -> Outcome {
        match op {
            SharedOp::Value { id, typecode, init } => {
                let v = SharedValue::new(&self.ctx, self.get(typecode)?, &self.get(init)?)?;
                self.objs.insert(self.get(id)?, Obj::Shared(Arg::Value(v)));
                DONE
            }
            SharedOp::Array { id, typecode, init } => {
                let a = SharedArray::new(&self.ctx, self.get(typecode)?, &self.get(init)?)?;
                self.objs.insert(self.get(id)?, Obj::Shared(Arg::Array(a)));
                DONE
            }
            SharedOp::Read { id } => {
                let id = self.get(id)?;
                match self.shared(&id)? {
                    Arg::Value(v) => Ok(Some(v.read())),
                    Arg::Array(a) => Ok(Some(a.read())),
                    _ => Err(harness(format!("`{id}` is not a Value or Array"))),
                }
            }
            SharedOp::Write { id, value } => {
                let (id, v) = (self.get(id)?, self.get(value)?);
                match (self.shared(&id)?, &v) {
                    (Arg::Value(x), _) => x.write(&v)?,
                    (Arg::Array(a), serde_json::Value::Array(items)) => a.write(items)?,
                    (Arg::Array(_), _) => {
                        return Err(harness(format!("an Array is written with a list, not {v}")))
                    }
                    _ => return Err(harness(format!("`{id}` is not a Value or Array"))),
                }
                DONE
            }
        }
    }
}
