//! Pipes and connections. Values cross as JSON text; bytes are UTF-8 strings.

use super::{harness, value, Exec, Obj, Outcome, DONE};
use crate::vocab::ipc::IpcOp;
use serde_json::Value;
use std::time::Duration;

impl Exec<'_> {
    pub(super) fn ipc(&mut self, op: &IpcOp) -> Outcome {
        match op {
            IpcOp::Pipe { ids, duplex } => {
                let ids = self.get(ids)?;
                let [a, b] = ids.as_slice() else {
                    return Err(harness("`pipe.ids` must name two ends"));
                };
                let (x, y) = if self.opt(duplex)?.unwrap_or(true) {
                    self.ctx.pipe()?
                } else {
                    self.ctx.pipe_simplex()?
                };
                self.objs.insert(a.clone(), Obj::Conn(Some(x)));
                self.objs.insert(b.clone(), Obj::Conn(Some(y)));
                DONE
            }
            IpcOp::Send { id, value } => {
                let v = self.get(value)?;
                self.conn(&self.get(id)?)?.send(&v.to_string())?;
                DONE
            }
            IpcOp::Recv { id } => {
                let text: String = self.conn(&self.get(id)?)?.recv()?;
                Ok(Some(
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                ))
            }
            IpcOp::SendBytes {
                id,
                data,
                bytes,
                offset,
                size,
            } => {
                let buf = match (self.opt(data)?, self.opt(bytes)?) {
                    (Some(d), _) => d.into_bytes(),
                    (None, Some(n)) => vec![b'x'; n.max(0) as usize],
                    (None, None) => return Err(harness("`send_bytes` needs `data` or `bytes`")),
                };
                let c = self.conn(&self.get(id)?)?;
                match self.opt(offset)? {
                    None => c.send_bytes(&buf)?,
                    Some(off) => {
                        let off = off.max(0) as usize;
                        match self.opt(size)? {
                            Some(n) => c.send_bytes_range(
                                &buf,
                                off..off.saturating_add(n.max(0) as usize),
                            )?,
                            None => c.send_bytes_range(&buf, off..)?,
                        }
                    }
                }
                DONE
            }
            IpcOp::RecvBytes { id, maxlen } => {
                let max = self.opt(maxlen)?.map(|x| x.max(0) as usize);
                let c = self.conn(&self.get(id)?)?;
                let b = match max {
                    Some(n) => c.recv_bytes_max(n)?,
                    None => c.recv_bytes()?,
                };
                value(String::from_utf8_lossy(&b))
            }
            IpcOp::Poll { id, timeout_ms } => {
                let t = self.ms(timeout_ms)?.unwrap_or(Duration::ZERO);
                value(self.conn(&self.get(id)?)?.poll_timeout(t)?)
            }
        }
    }
}
