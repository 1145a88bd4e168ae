//! Contexts and the default start method.

use super::{value, Exec, Outcome, DONE};
use crate::vocab::contexts::ContextsOp;

impl Exec<'_> {
    pub(super) fn contexts(&mut self, op: &ContextsOp) -> Outcome {
        match op {
            ContextsOp::SetStartMethod { method, force } => {
                let m: mproc::StartMethod = self.get(method)?.parse()?;
                if self.opt(force)?.unwrap_or(false) {
                    mproc::force_start_method(m);
                } else {
                    mproc::set_start_method(m)?;
                }
                DONE
            }
            ContextsOp::GetStartMethod { allow_none } => {
                let allow = self.opt(allow_none)?.unwrap_or(false);
                let m = if allow {
                    mproc::peek_start_method()
                } else {
                    Some(mproc::get_start_method())
                };
                value(m.map(|m| m.as_str()))
            }
        }
    }
}
