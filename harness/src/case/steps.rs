//! `[[step]]`s: loops, labels, and actions typed into [`Op`]s.

use super::{Loader, ERROR_KINDS};
use crate::catalogue::ArgKind;
use crate::node::{CaseError, Node, NodeKind, Span};
use crate::template::Template;
use crate::vocab::{self, kinds, Fields, Op, OpSpec};
use serde_json::Value;
use std::collections::BTreeMap;

/// The values of an `each` loop.
#[derive(Clone, Debug, PartialEq)]
pub enum EachValues {
    /// The integers `A..B` (B excluded), from `"A..B"` (A and B integers or `$param`s).
    Range(i64, i64),
    /// The values of an array or a list parameter (`"$sleeps_ms"`).
    List(Vec<Value>),
}

/// A loop over one variable: `each = { i = "0..5" }`, `{ x = [1, 2] }` or `{ x = "$param" }`
/// (parameters resolved when the file loads).
#[derive(Clone, Debug, PartialEq)]
pub struct Each {
    /// The variable.
    pub var: String,
    /// Its values.
    pub values: EachValues,
}

impl Each {
    /// How many times the step runs.
    pub fn len(&self) -> u64 {
        match &self.values {
            EachValues::Range(a, b) => b.saturating_sub(*a).max(0) as u64,
            EachValues::List(v) => v.len() as u64,
        }
    }

    /// Whether the loop runs no time at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The variable's values, in order.
    pub fn values(&self) -> Box<dyn Iterator<Item = Value> + '_> {
        match &self.values {
            EachValues::Range(a, b) => Box::new((*a..*b).map(Value::from)),
            EachValues::List(v) => Box::new(v.iter().cloned()),
        }
    }
}

/// One action of a step: the typed op, where it was written, and the error it must fail with.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// The action.
    pub op: Op,
    /// Its `id` field, if it has one (the object acted on or made; events record it).
    pub id: Option<Template<String>>,
    /// The error kind the action must fail with, if any.
    pub error: Option<String>,
    /// The line of the action's key.
    pub line: usize,
    /// The column of the action's key.
    pub column: usize,
}

/// One `[[step]]`: optional loop and label, then its actions in document order.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// 1-based position among the steps.
    pub index: usize,
    /// The line of the step's first key.
    pub line: usize,
    /// The loop, if any.
    pub each: Option<Each>,
    /// A label, for `expect.values`, `expect.order`, timings and the bench's timed steps
    /// (`$var` allowed in loops), as written.
    pub label: Option<String>,
    /// The actions.
    pub actions: Vec<Action>,
}

impl Step {
    /// How many times the step runs.
    pub fn repeat(&self) -> u64 {
        self.each.as_ref().map_or(1, Each::len)
    }
}

impl Loader<'_> {
    pub(super) fn steps(
        &self,
        steps_node: &Node,
        params: &BTreeMap<String, Value>,
    ) -> Result<Vec<Step>, CaseError> {
        let mut steps = Vec::new();
        for (i, s) in self
            .array(steps_node, "`step` (use [[step]])")?
            .iter()
            .enumerate()
        {
            steps.push(self.step(s, i + 1, params)?);
        }
        if steps.is_empty() {
            return Err(self.err(&steps_node.span, "a case needs at least one [[step]]"));
        }
        Ok(steps)
    }

    fn step(
        &self,
        n: &Node,
        index: usize,
        params: &BTreeMap<String, Value>,
    ) -> Result<Step, CaseError> {
        let t = self.table(n, "a step")?;
        let line = t
            .first()
            .map(|(_, ks, _)| self.line(ks))
            .unwrap_or_else(|| self.line(&n.span));
        let mut step = Step {
            index,
            line,
            each: None,
            label: None,
            actions: Vec::new(),
        };
        for (k, ks, v) in t {
            match k.as_str() {
                "each" => step.each = Some(self.each(v, params)?),
                "label" => step.label = Some(self.str(v, "`label`")?.to_string()),
                op => {
                    let spec = vocab::op(op).ok_or_else(|| {
                        self.err(
                            ks,
                            format!(
                                "unknown step `{op}` (known: {})",
                                vocab::op_names().join(", ")
                            ),
                        )
                    })?;
                    step.actions.push(self.action(spec, v, ks)?);
                }
            }
        }
        if step.actions.is_empty() {
            return Err(self.err(&n.span, "a step needs at least one action"));
        }
        Ok(step)
    }

    fn each(&self, n: &Node, params: &BTreeMap<String, Value>) -> Result<Each, CaseError> {
        let t = self.table(n, "`each`")?;
        if t.len() != 1 {
            return Err(self.err(
                &n.span,
                "`each` takes exactly one variable, as `each = { i = \"0..5\" }`",
            ));
        }
        let (var, _, v) = &t[0];
        let values = match &v.kind {
            NodeKind::Array(a) => EachValues::List(a.iter().map(Node::to_json).collect()),
            NodeKind::Str(s) if s.contains("..") => {
                let bad = |why: String| self.err(&v.span, format!("bad range {s:?}: {why}"));
                let (a, b) =
                    kinds::parse_range(s).ok_or_else(|| bad("expected \"A..B\"".into()))?;
                EachValues::Range(a.get(params).map_err(bad)?, b.get(params).map_err(bad)?)
            }
            NodeKind::Str(s) if s.starts_with('$') => match params.get(&s[1..]) {
                Some(Value::Array(a)) => EachValues::List(a.clone()),
                Some(_) => return Err(self.err(&v.span, format!("`{s}` is not a list parameter"))),
                None => return Err(self.err(&v.span, format!("unknown parameter `{}`", &s[1..]))),
            },
            NodeKind::Str(s) => {
                return Err(self.err(&v.span, format!("bad range {s:?}: expected \"A..B\"")))
            }
            k => {
                return Err(self.err(
                    &v.span,
                    format!(
                        "wrong type: a loop takes a range string, an array or \"$param\", found {}",
                        k.type_name()
                    ),
                ))
            }
        };
        Ok(Each {
            var: var.clone(),
            values,
        })
    }

    /// One action: its fields (a bare value expanded to its primary field), checked against the
    /// vocabulary and the task table, typed into an [`Op`].
    fn action(
        &self,
        spec: &'static OpSpec,
        v: &Node,
        key_span: &Span,
    ) -> Result<Action, CaseError> {
        let (entries, error, bare) = self.entries(spec, v)?;
        for f in spec.fields.iter().filter(|f| f.required) {
            if !entries.iter().any(|(k, _)| *k == f.name) {
                return Err(self.err(
                    key_span,
                    format!("`{}` needs the field `{}`", spec.name, f.name),
                ));
            }
        }
        self.check_tasks(spec, v)?;
        let fields = Fields::new(self.src, spec.name, key_span, bare, entries);
        let op = Op::parse(spec.name, &fields)?
            .ok_or_else(|| self.err(key_span, format!("`{}` has no parser", spec.name)))?;
        op.check().map_err(|m| self.err(key_span, m))?;
        let id = fields.opt::<kinds::Id>("id")?;
        let (line, column) = self.src.line_col(key_span.start);
        Ok(Action {
            op,
            id,
            error,
            line,
            column,
        })
    }

    /// The action's fields by name, its `error`, and whether it was written as a bare value.
    #[allow(clippy::type_complexity)]
    fn entries<'n>(
        &self,
        spec: &'static OpSpec,
        v: &'n Node,
    ) -> Result<(Vec<(&'n str, &'n Node)>, Option<String>, bool), CaseError> {
        let mut entries = Vec::new();
        let mut error = None;
        match (&v.kind, spec.primary) {
            (NodeKind::Table(t), _) => {
                for (k, ks, fv) in t {
                    if k == "error" {
                        error = Some(self.error_kind(fv)?);
                    } else if spec.fields.iter().any(|f| f.name == k) {
                        entries.push((k.as_str(), fv));
                    } else {
                        let known: Vec<_> = spec
                            .fields
                            .iter()
                            .map(|f| f.name)
                            .chain(["error"])
                            .collect();
                        return Err(self.err(
                            ks,
                            format!(
                                "unknown field `{k}` for `{}` (known: {})",
                                spec.name,
                                known.join(", ")
                            ),
                        ));
                    }
                }
                Ok((entries, error, false))
            }
            (_, Some(p)) => {
                entries.push((p, v));
                Ok((entries, None, true))
            }
            (NodeKind::Bool(true), None) if spec.fields.iter().all(|f| !f.required) => {
                Ok((entries, None, true))
            }
            (_, None) => Err(self.err(
                &v.span,
                format!("wrong type: `{}` must be a table of its fields", spec.name),
            )),
        }
    }

    fn error_kind(&self, n: &Node) -> Result<String, CaseError> {
        let kind = self.str(n, "`error`")?;
        if !ERROR_KINDS.contains(&kind) && !kind.starts_with("py:") {
            return Err(self.err(
                &n.span,
                format!(
                    "unknown error kind `{kind}` (known: {})",
                    ERROR_KINDS.join(", ")
                ),
            ));
        }
        Ok(kind.to_string())
    }

    /// The tasks an action names (`task` with its `args`; a pool's `initializer` with its
    /// `initargs`) exist in the file's task table and get the arguments they take. A map's
    /// items are its tasks' arguments, so only the task's name is checked there.
    fn check_tasks(&self, spec: &OpSpec, v: &Node) -> Result<(), CaseError> {
        if let Some(task) = v.get("task") {
            if matches!(
                spec.name,
                "map" | "map_async" | "imap" | "imap_unordered" | "starmap"
            ) {
                self.check_task(task, None).or_else(|e| {
                    if e.message.contains("argument") {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            } else {
                self.check_task(task, v.get("args"))?;
            }
        }
        if let Some(task) = v.get("initializer") {
            self.check_task(task, v.get("initargs"))?;
        }
        Ok(())
    }

    fn check_task(&self, task: &Node, args: Option<&Node>) -> Result<(), CaseError> {
        let name = self.str(task, "`task`")?;
        if name.starts_with('$') {
            return Ok(());
        }
        let tasks = self.rules.tasks;
        let spec = tasks.iter().find(|t| t.name == name).ok_or_else(|| {
            let known: Vec<_> = tasks.iter().map(|t| t.name).collect();
            self.err(
                &task.span,
                format!("unknown task `{name}` (known: {})", known.join(", ")),
            )
        })?;
        let Some(args) = args else {
            if spec.args.is_empty() {
                return Ok(());
            }
            return Err(self.err(
                &task.span,
                format!(
                    "task `{name}` takes {} argument(s); give `args`",
                    spec.args.len()
                ),
            ));
        };
        let NodeKind::Array(items) = &args.kind else {
            return Ok(());
        };
        if items.len() != spec.args.len() {
            return Err(self.err(
                &args.span,
                format!(
                    "task `{name}` takes {} argument(s), found {}",
                    spec.args.len(),
                    items.len()
                ),
            ));
        }
        for (i, (item, kind)) in items.iter().zip(spec.args).enumerate() {
            self.check_arg(name, i, item, *kind)?;
        }
        Ok(())
    }

    fn check_arg(&self, task: &str, i: usize, item: &Node, kind: ArgKind) -> Result<(), CaseError> {
        if matches!(&item.kind, NodeKind::Str(s) if s.starts_with('$')) {
            return Ok(());
        }
        let ok = match kind {
            ArgKind::Int => matches!(item.kind, NodeKind::Int(_)),
            ArgKind::Str | ArgKind::Conn | ArgKind::Obj => matches!(item.kind, NodeKind::Str(_)),
            ArgKind::List => matches!(item.kind, NodeKind::Array(_)),
            ArgKind::Any => true,
        };
        if ok {
            return Ok(());
        }
        let want = match kind {
            ArgKind::Int => "an integer",
            ArgKind::Str => "a string",
            ArgKind::Conn => "a connection id (a string)",
            ArgKind::Obj => "an object id (a string)",
            ArgKind::List => "an array",
            ArgKind::Any => "a value",
        };
        Err(self.err(
            &item.span,
            format!(
                "wrong type: argument {} of task `{task}` must be {want}, found {}",
                i + 1,
                item.kind.type_name()
            ),
        ))
    }
}
