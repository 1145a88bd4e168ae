//! Contexts and the default start method.

use super::{value, Exec, Outcome, DONE};
use crate::vocab::contexts::ContextsOp;

impl Exec<'_> {
    pub(super) fn contexts(&mut self, op: &ContextsOp) -> Outcome {
        match op {
            ContextsOp::SetStartMethod { method, force } => {
                let m: mproc::StartMethod = self.get(method)?.parse()?;
                mproc::set_start_method(Some(m), self.opt(force)?.unwrap_or(false))?;
                DONE
            }
            ContextsOp::GetStartMethod { allow_none } => {
                let allow = self.opt(allow_none)?.unwrap_or(false);
                value(mproc::get_start_method(allow).map(|m| m.as_str()))
            }
        }
    }
}
