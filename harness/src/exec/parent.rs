//! The parent's own steps: sleep, print, call a task here.

use super::{Exec, Fail, Outcome, DONE};
use crate::catalogue;
use crate::vocab::parent::ParentOp;

impl Exec<'_> {
    pub(super) fn parent(&mut self, op: &ParentOp) -> Outcome {
        match op {
            ParentOp::SleepMs { ms } => {
                catalogue::sleep(self.get(ms)?);
                DONE
            }
            ParentOp::Print { text } => {
                catalogue::print_line(&self.get(text)?);
                DONE
            }
            ParentOp::Call { task, args } => {
                let call = self.call_of(task, args)?;
                match catalogue::run(call) {
                    Ok(v) => Ok(Some(v)),
                    Err(e) => Err(Fail {
                        kind: "Remote".into(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
}
