//! The case model: one TOML file per case, parsed with exact positions for every complaint.
//!
//! See `cases/README.md` for the format. [`Case::load`] reads and checks a file; every error is
//! a [`CaseError`] that prints as `path:line:column: message`.

use crate::catalogue::{self, ArgKind};
use crate::expr::{self, Expr};
use crate::node::{CaseError, Node, NodeKind, Source, Span};
use crate::vocab::{self, Ty};
use mproc::StartMethod;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The error kinds an action may expect with `error = "Kind"`: mproc's `Error::kind_name`s,
/// plus `py:Class` names for what only CPython raises.
pub const ERROR_KINDS: &[&str] = &[
    "Timeout",
    "Remote",
    "WorkerLost",
    "NotStarted",
    "AlreadyStarted",
    "NotChild",
    "JoinSelf",
    "ProcessClosed",
    "StillRunning",
    "DaemonAfterStart",
    "DaemonChildren",
    "StartMethodAlreadySet",
    "UnknownStartMethod",
    "NotSpawnable",
    "ContextMismatch",
    "Eof",
    "Closed",
    "NotReadable",
    "NotWritable",
    "MessageTooLong",
    "BadRange",
    "Serialize",
    "Deserialize",
    "Full",
    "Empty",
    "InvalidArgument",
    "PoolNotRunning",
    "PoolStillRunning",
    "NotReady",
    "PoolTerminated",
    "ResultTaken",
    "NotOwner",
    "BrokenBarrier",
    "IndexOutOfRange",
    "NotInitialized",
    "Forkserver",
    "Io",
];

/// A loop over one variable: `each = { i = "0..5" }`, `{ x = [1, 2] }` or `{ x = "$param" }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Each {
    /// The variable.
    pub var: String,
    /// Its values (a `$param` reference is resolved at load time).
    pub values: Vec<Value>,
}

/// One action of a step, with its fields (a bare value already expanded to its primary field).
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// The vocabulary name.
    pub op: String,
    /// The fields, `$var` references not yet substituted.
    pub fields: serde_json::Map<String, Value>,
    /// The error kind the action must fail with, if any.
    pub error: Option<String>,
    /// The line of the action.
    pub line: usize,
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
    /// A label, for `expect.values`, `expect.order` and timings (`$var` allowed in loops).
    pub label: Option<String>,
    /// The actions.
    pub actions: Vec<Action>,
}

/// What a timing bound measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Span2 {
    /// All the steps.
    Elapsed,
    /// The step labelled so.
    Step(String),
    /// From the start of one labelled step to the end of another.
    Between(String, String),
}

/// A timing expectation: bounds in milliseconds from expressions over the params.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// What is measured.
    pub what: Span2,
    /// Lower bound.
    pub at_least: Option<(String, Expr)>,
    /// Upper bound.
    pub at_most: Option<(String, Expr)>,
}

impl Timing {
    /// The name of the timing in traces.
    pub fn name(&self) -> String {
        match &self.what {
            Span2::Elapsed => "elapsed".into(),
            Span2::Step(s) => s.clone(),
            Span2::Between(a, b) => format!("{a}..{b}"),
        }
    }
}

/// The expectations of a case.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expect {
    /// The values of the result actions, in order.
    pub results: Option<Vec<Value>>,
    /// The value of labelled steps.
    pub values: Vec<(String, Value)>,
    /// The final exit code of processes.
    pub exitcodes: Vec<(String, Value)>,
    /// The lines printed (by the parent and its children).
    pub output: Option<Vec<String>>,
    /// Labels that must complete in this order.
    pub order: Option<Vec<String>>,
    /// Timing bounds.
    pub timing: Vec<Timing>,
}

/// A loaded, checked case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The file.
    pub path: String,
    /// The folder (`process`, `ipc`, ...).
    pub group: String,
    /// The file stem.
    pub name: String,
    /// What the case shows.
    pub title: String,
    /// Where it comes from: a section of the notes or a CPython test.
    pub source: String,
    /// The start methods it runs under.
    pub methods: Vec<StartMethod>,
    /// Its parameters.
    pub params: BTreeMap<String, Value>,
    /// Why CPython's trace differs on purpose.
    pub differs_from_cpython: Option<String>,
    /// Why the traces of the start methods differ on purpose.
    pub differs_between_methods: Option<String>,
    /// Whether the report draws a timeline.
    pub timeline: bool,
    /// Output lines compared as a multiset (sorted in the trace).
    pub output_any_order: bool,
    /// The hard limit for one run, in seconds.
    pub timeout_s: u64,
    /// The steps.
    pub steps: Vec<Step>,
    /// The expectations.
    pub expect: Expect,
}

impl Case {
    /// `group/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    /// Reads and checks the case at `path`.
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CaseError {
            path: shown.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        })?;
        let group = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Case::parse(&shown, &group, &name, &text)
    }

    /// Checks the case text `text` (for `path`).
    pub fn parse(path: &str, group: &str, name: &str, text: &str) -> Result<Case, CaseError> {
        let src = Source {
            path: path.to_string(),
            text: text.to_string(),
        };
        let root = src.parse()?;
        Loader { src: &src }.case(&root, group, name)
    }
}

struct Loader<'a> {
    src: &'a Source,
}

const TOP_KEYS: &[&str] = &[
    "title",
    "source",
    "methods",
    "params",
    "differs_from_cpython",
    "differs_between_methods",
    "timeline",
    "output_order",
    "timeout_s",
    "step",
    "expect",
];

const EXPECT_KEYS: &[&str] = &[
    "results",
    "values",
    "exitcodes",
    "output",
    "order",
    "elapsed",
    "timing",
];

impl Loader<'_> {
    fn err(&self, span: &Span, msg: impl Into<String>) -> CaseError {
        self.src.error(span, msg)
    }

    fn str<'n>(&self, n: &'n Node, what: &str) -> Result<&'n str, CaseError> {
        n.as_str().ok_or_else(|| {
            self.err(
                &n.span,
                format!(
                    "wrong type: {what} must be a string, found {}",
                    n.kind.type_name()
                ),
            )
        })
    }

    fn table<'n>(&self, n: &'n Node, what: &str) -> Result<&'n [(String, Span, Node)], CaseError> {
        n.as_table().ok_or_else(|| {
            self.err(
                &n.span,
                format!(
                    "wrong type: {what} must be a table, found {}",
                    n.kind.type_name()
                ),
            )
        })
    }

    fn array<'n>(&self, n: &'n Node, what: &str) -> Result<&'n [Node], CaseError> {
        match &n.kind {
            NodeKind::Array(a) => Ok(a),
            k => Err(self.err(
                &n.span,
                format!(
                    "wrong type: {what} must be an array, found {}",
                    k.type_name()
                ),
            )),
        }
    }

    fn line(&self, span: &Span) -> usize {
        self.src.line_col(span.start).0
    }

    fn case(&self, root: &Node, group: &str, name: &str) -> Result<Case, CaseError> {
        let top = self.table(root, "a case")?;
        for (k, ks, _) in top {
            if !TOP_KEYS.contains(&k.as_str()) {
                return Err(self.err(
                    ks,
                    format!(
                        "unknown key `{k}` (expected one of: {})",
                        TOP_KEYS.join(", ")
                    ),
                ));
            }
        }
        let need = |key: &str| {
            root.get(key)
                .ok_or_else(|| self.err(&(0..0), format!("missing `{key}`")))
        };
        let title = self.str(need("title")?, "`title`")?.to_string();
        let source = self.str(need("source")?, "`source`")?.to_string();
        let methods = match root.get("methods") {
            None => vec![
                StartMethod::Fork,
                StartMethod::Spawn,
                StartMethod::Forkserver,
            ],
            Some(n) => {
                let mut out = Vec::new();
                for m in self.array(n, "`methods`")? {
                    let s = self.str(m, "a method")?;
                    out.push(s.parse::<StartMethod>().map_err(|_| {
                        self.err(
                            &m.span,
                            format!("unknown start method `{s}` (fork, spawn, forkserver)"),
                        )
                    })?);
                }
                out
            }
        };
        let mut params = BTreeMap::new();
        if let Some(p) = root.get("params") {
            for (k, _, v) in self.table(p, "`params`")? {
                params.insert(k.clone(), v.to_json());
            }
        }
        let opt_str = |key: &str| -> Result<Option<String>, CaseError> {
            root.get(key)
                .map(|n| self.str(n, &format!("`{key}`")).map(str::to_string))
                .transpose()
        };
        let differs_from_cpython = opt_str("differs_from_cpython")?;
        let differs_between_methods = opt_str("differs_between_methods")?;
        let timeline = match root.get("timeline") {
            None => false,
            Some(Node {
                kind: NodeKind::Bool(b),
                ..
            }) => *b,
            Some(n) => {
                return Err(self.err(
                    &n.span,
                    format!(
                        "wrong type: `timeline` must be a boolean, found {}",
                        n.kind.type_name()
                    ),
                ))
            }
        };
        let output_any_order = match root.get("output_order") {
            None => false,
            Some(n) => match self.str(n, "`output_order`")? {
                "any" => true,
                "exact" => false,
                other => {
                    return Err(self.err(
                        &n.span,
                        format!("`output_order` must be \"exact\" or \"any\", not {other:?}"),
                    ))
                }
            },
        };
        let timeout_s = match root.get("timeout_s") {
            None => 30,
            Some(Node {
                kind: NodeKind::Int(i),
                ..
            }) if *i > 0 => *i as u64,
            Some(n) => {
                return Err(self.err(
                    &n.span,
                    "wrong type: `timeout_s` must be a positive integer",
                ))
            }
        };

        let steps_node = need("step")?;
        let mut steps = Vec::new();
        let mut labels = Vec::new();
        for (i, s) in self
            .array(steps_node, "`step` (use [[step]])")?
            .iter()
            .enumerate()
        {
            let step = self.step(s, i + 1, &params)?;
            if let Some(l) = &step.label {
                labels.push(l.clone());
            }
            steps.push(step);
        }
        if steps.is_empty() {
            return Err(self.err(&steps_node.span, "a case needs at least one [[step]]"));
        }
        let expect = match root.get("expect") {
            None => {
                return Err(self.err(
                    &(0..0),
                    "missing expectation: the case has no [expect] table",
                ))
            }
            Some(e) => self.expect(e, &labels, &params)?,
        };
        Ok(Case {
            path: self.src.path.clone(),
            group: group.to_string(),
            name: name.to_string(),
            title,
            source,
            methods,
            params,
            differs_from_cpython,
            differs_between_methods,
            timeline,
            output_any_order,
            timeout_s,
            steps,
            expect,
        })
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
            NodeKind::Array(a) => a.iter().map(Node::to_json).collect(),
            NodeKind::Str(s) if s.starts_with('$') => match params.get(&s[1..]) {
                Some(Value::Array(a)) => a.clone(),
                Some(_) => return Err(self.err(&v.span, format!("`{s}` is not a list parameter"))),
                None => return Err(self.err(&v.span, format!("unknown parameter `{}`", &s[1..]))),
            },
            NodeKind::Str(s) => {
                let bad = || self.err(&v.span, format!("bad range {s:?}: expected \"A..B\""));
                let (a, b) = s.split_once("..").ok_or_else(bad)?;
                let a: i64 = a.trim().parse().map_err(|_| bad())?;
                let b: i64 = b.trim().parse().map_err(|_| bad())?;
                (a..b).map(Value::from).collect()
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

    fn action(&self, spec: &vocab::OpSpec, v: &Node, key_span: &Span) -> Result<Action, CaseError> {
        let mut fields = serde_json::Map::new();
        let mut error = None;
        match &v.kind {
            NodeKind::Table(t) => {
                for (k, ks, fv) in t {
                    if k == "error" {
                        let kind = self.str(fv, "`error`")?;
                        if !ERROR_KINDS.contains(&kind) && !kind.starts_with("py:") {
                            return Err(self.err(
                                &fv.span,
                                format!(
                                    "unknown error kind `{kind}` (known: {})",
                                    ERROR_KINDS.join(", ")
                                ),
                            ));
                        }
                        error = Some(kind.to_string());
                        continue;
                    }
                    let f = spec.fields.iter().find(|f| f.name == k).ok_or_else(|| {
                        let known: Vec<_> = spec
                            .fields
                            .iter()
                            .map(|f| f.name)
                            .chain(["error"])
                            .collect();
                        self.err(
                            ks,
                            format!(
                                "unknown field `{k}` for `{}` (known: {})",
                                spec.name,
                                known.join(", ")
                            ),
                        )
                    })?;
                    self.check_ty(f.ty, fv, &format!("`{}.{k}`", spec.name))?;
                    fields.insert(k.clone(), fv.to_json());
                }
            }
            _ => match spec.primary {
                Some(p) => {
                    let f = spec
                        .fields
                        .iter()
                        .find(|f| f.name == p)
                        .expect("primary is a field");
                    self.check_ty(f.ty, v, &format!("`{}`", spec.name))?;
                    fields.insert(p.to_string(), v.to_json());
                }
                None if spec.fields.iter().all(|f| !f.required)
                    && matches!(v.kind, NodeKind::Bool(true)) => {}
                None => {
                    return Err(self.err(
                        &v.span,
                        format!("wrong type: `{}` must be a table of its fields", spec.name),
                    ))
                }
            },
        }
        for f in spec.fields.iter().filter(|f| f.required) {
            if !fields.contains_key(f.name) {
                return Err(self.err(
                    key_span,
                    format!("`{}` needs the field `{}`", spec.name, f.name),
                ));
            }
        }
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
        Ok(Action {
            op: spec.name.to_string(),
            fields,
            error,
            line: self.line(key_span),
        })
    }

    fn check_task(&self, task: &Node, args: Option<&Node>) -> Result<(), CaseError> {
        let name = self.str(task, "`task`")?;
        if name.starts_with('$') {
            return Ok(());
        }
        let spec = catalogue::task(name).ok_or_else(|| {
            let known: Vec<_> = catalogue::TASKS.iter().map(|t| t.name).collect();
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
            if matches!(&item.kind, NodeKind::Str(s) if s.starts_with('$')) {
                continue;
            }
            let ok = match kind {
                ArgKind::Int => matches!(item.kind, NodeKind::Int(_)),
                ArgKind::Str | ArgKind::Conn | ArgKind::Obj => {
                    matches!(item.kind, NodeKind::Str(_))
                }
                ArgKind::List => matches!(item.kind, NodeKind::Array(_)),
                ArgKind::Any => true,
            };
            if !ok {
                let want = match kind {
                    ArgKind::Int => "an integer",
                    ArgKind::Str => "a string",
                    ArgKind::Conn => "a connection id (a string)",
                    ArgKind::Obj => "an object id (a string)",
                    ArgKind::List => "an array",
                    ArgKind::Any => "a value",
                };
                return Err(self.err(
                    &item.span,
                    format!(
                        "wrong type: argument {} of task `{name}` must be {want}, found {}",
                        i + 1,
                        item.kind.type_name()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_ty(&self, ty: Ty, v: &Node, what: &str) -> Result<(), CaseError> {
        let var = matches!(&v.kind, NodeKind::Str(s) if s.starts_with('$'));
        let ok = match ty {
            Ty::Id | Ty::Str | Ty::Task => matches!(v.kind, NodeKind::Str(_)),
            Ty::Ids => {
                matches!(&v.kind, NodeKind::Array(a) if a.iter().all(|x| matches!(x.kind, NodeKind::Str(_))))
            }
            Ty::Int => var || matches!(v.kind, NodeKind::Int(_)),
            Ty::Bool => var || matches!(v.kind, NodeKind::Bool(_)),
            Ty::Any => true,
            Ty::List => var || matches!(v.kind, NodeKind::Array(_)),
            Ty::Method => match &v.kind {
                NodeKind::Str(s) => var || s.parse::<StartMethod>().is_ok(),
                _ => false,
            },
        };
        if ok {
            return Ok(());
        }
        let want = match ty {
            Ty::Id => "an object id (a string)",
            Ty::Ids => "an array of object ids",
            Ty::Str => "a string",
            Ty::Task => "a task name",
            Ty::Int => "an integer",
            Ty::Bool => "a boolean",
            Ty::Any => "a value",
            Ty::List => "an array",
            Ty::Method => "a start method (fork, spawn, forkserver)",
        };
        Err(self.err(
            &v.span,
            format!(
                "wrong type: {what} must be {want}, found {}",
                match &v.kind {
                    NodeKind::Str(s) => format!("the string {s:?}"),
                    k => k.type_name().to_string(),
                }
            ),
        ))
    }

    fn bound(
        &self,
        n: Option<&Node>,
        params: &BTreeMap<String, Value>,
    ) -> Result<Option<(String, Expr)>, CaseError> {
        let Some(n) = n else { return Ok(None) };
        let text = match &n.kind {
            NodeKind::Str(s) => s.clone(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Float(f) => f.to_string(),
            k => {
                return Err(self.err(
                    &n.span,
                    format!(
                        "wrong type: a bound must be a number or an expression string, found {}",
                        k.type_name()
                    ),
                ))
            }
        };
        let e = expr::parse(&text)
            .map_err(|m| self.err(&n.span, format!("bad bound {text:?}: {m}")))?;
        expr::eval(&e, params)
            .map_err(|m| self.err(&n.span, format!("bad bound {text:?}: {m}")))?;
        Ok(Some((text, e)))
    }

    fn timing(
        &self,
        n: &Node,
        what: Span2,
        params: &BTreeMap<String, Value>,
        labels: &[String],
    ) -> Result<Timing, CaseError> {
        let t = self.table(n, "a timing")?;
        for (k, ks, v) in t {
            if !["step", "from", "to", "at_least", "at_most"].contains(&k.as_str()) {
                return Err(self.err(
                    ks,
                    format!("unknown field `{k}` in a timing (step, from, to, at_least, at_most)"),
                ));
            }
            if matches!(k.as_str(), "step" | "from" | "to") {
                let l = self.str(v, &format!("`{k}`"))?;
                if !labels.iter().any(|x| x == l)
                    && !l.contains('$')
                    && !labels.iter().any(|x| x.contains('$'))
                {
                    return Err(self.err(&v.span, format!("no step is labelled `{l}`")));
                }
            }
        }
        let what = match (n.get("step"), n.get("from"), n.get("to")) {
            (Some(s), None, None) => Span2::Step(s.as_str().unwrap_or_default().to_string()),
            (None, Some(a), Some(b)) => Span2::Between(a.as_str().unwrap_or_default().into(), b.as_str().unwrap_or_default().into()),
            (None, None, None) => what,
            _ => return Err(self.err(&n.span, "a timing measures `step = L`, or `from = A, to = B`, or (under `elapsed`) the whole run")),
        };
        let at_least = self.bound(n.get("at_least"), params)?;
        let at_most = self.bound(n.get("at_most"), params)?;
        if at_least.is_none() && at_most.is_none() {
            return Err(self.err(
                &n.span,
                "missing expectation: a timing needs `at_least` or `at_most`",
            ));
        }
        Ok(Timing {
            what,
            at_least,
            at_most,
        })
    }

    fn expect(
        &self,
        n: &Node,
        labels: &[String],
        params: &BTreeMap<String, Value>,
    ) -> Result<Expect, CaseError> {
        let t = self.table(n, "`expect`")?;
        if t.is_empty() {
            return Err(self.err(
                &n.span,
                format!(
                    "missing expectation: [expect] is empty (give one of: {})",
                    EXPECT_KEYS.join(", ")
                ),
            ));
        }
        let mut e = Expect::default();
        let known_label =
            |l: &str| labels.iter().any(|x| x == l) || labels.iter().any(|x| x.contains('$'));
        for (k, ks, v) in t {
            match k.as_str() {
                "results" => {
                    e.results = Some(
                        self.array(v, "`expect.results`")?
                            .iter()
                            .map(Node::to_json)
                            .collect(),
                    )
                }
                "values" => {
                    for (l, ls, val) in self.table(v, "`expect.values`")? {
                        if !known_label(l) {
                            return Err(self.err(ls, format!("no step is labelled `{l}`")));
                        }
                        e.values.push((l.clone(), val.to_json()));
                    }
                }
                "exitcodes" => {
                    for (id, _, val) in self.table(v, "`expect.exitcodes`")? {
                        if !matches!(val.kind, NodeKind::Int(_)) && val.as_str() != Some("$null") {
                            return Err(self.err(
                                &val.span,
                                format!(
                                    "wrong type: an exit code must be an integer, found {}",
                                    val.kind.type_name()
                                ),
                            ));
                        }
                        e.exitcodes.push((
                            id.clone(),
                            if val.as_str().is_some() {
                                Value::Null
                            } else {
                                val.to_json()
                            },
                        ));
                    }
                }
                "output" => {
                    let mut lines = Vec::new();
                    for l in self.array(v, "`expect.output`")? {
                        lines.push(self.str(l, "an output line")?.to_string());
                    }
                    e.output = Some(lines);
                }
                "order" => {
                    let mut out = Vec::new();
                    for l in self.array(v, "`expect.order`")? {
                        let s = self.str(l, "a label")?;
                        if !known_label(s) {
                            return Err(self.err(&l.span, format!("no step is labelled `{s}`")));
                        }
                        out.push(s.to_string());
                    }
                    e.order = Some(out);
                }
                "elapsed" => e
                    .timing
                    .push(self.timing(v, Span2::Elapsed, params, labels)?),
                "timing" => {
                    for item in self.array(v, "`expect.timing`")? {
                        if item.get("step").is_none() && item.get("from").is_none() {
                            return Err(self.err(
                                &item.span,
                                "a timing in `expect.timing` needs `step` or `from`/`to`",
                            ));
                        }
                        e.timing
                            .push(self.timing(item, Span2::Elapsed, params, labels)?);
                    }
                }
                other => {
                    return Err(self.err(
                        ks,
                        format!(
                            "unknown expectation `{other}` (known: {})",
                            EXPECT_KEYS.join(", ")
                        ),
                    ))
                }
            }
        }
        Ok(e)
    }
}

/// Loads every `*.toml` under `dir` (sorted; `README.md` and other files are ignored). Bad cases
/// come back as errors; the others still load.
pub fn discover(dir: &Path) -> (Vec<Case>, Vec<CaseError>) {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match Case::load(&f) {
            Ok(c) => cases.push(c),
            Err(e) => errors.push(e),
        }
    }
    (cases, errors)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        // `cases/bench/` holds the benchmark workloads of `cargo xtask bench`, not cases.
        if p.is_dir() && p.file_name().is_some_and(|n| n == "bench") {
            continue;
        }
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}
