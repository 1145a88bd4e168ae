//! The case model: one TOML file per case or benchmark workload, parsed once, with exact
//! positions for every complaint.
//!
//! See `cases/README.md` for the format. A file holds a case's metadata, its `[[step]]`s (each
//! action typed into a [`crate::vocab::Op`] as it loads), and its `[expect]` table (a conformance
//! case) or its `[bench]` table (a benchmark workload of `cases/bench/`). [`Case::load`] reads
//! a conformance case, [`Case::load_with`] a file under other [`Rules`]; every error is a
//! [`CaseError`] that prints as `path:line:column: message`.

mod bench;
mod expect;
mod steps;

pub use bench::{BenchSpec, Curve, Kind, PerMethod, Timing, DEFAULT_EFFECT};
pub use expect::{Expect, Interval, TimingBound};
pub use steps::{Action, Each, EachValues, Step};

use crate::catalogue::{self, TaskSpec};
use crate::node::{CaseError, Node, NodeKind, Source, Span};
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

/// Which table a file must have besides its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// `[expect]`: a conformance case (a `[bench]` table is refused).
    Expect,
    /// `[bench]`: a benchmark workload (`[expect]` is optional).
    Bench,
}

/// What a file is checked against: the tasks its steps may name, and the table it needs.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The tasks `task`, `initializer` and `call` may name.
    pub tasks: &'static [TaskSpec],
    /// The table the file needs.
    pub needs: Needs,
}

/// The rules of conformance cases: the catalogue's tasks, an `[expect]` table.
pub const CASE: Rules = Rules {
    tasks: catalogue::TASKS,
    needs: Needs::Expect,
};

/// A loaded, checked case (or workload).
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
    /// Where it comes from: `notes: <section>` (a section of the user's specification, see
    /// `cases/README.md`), a CPython test, ...
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
    /// The expectations (empty for a workload without `[expect]`).
    pub expect: Expect,
    /// The `[bench]` table of a workload.
    pub bench: Option<BenchSpec>,
}

impl Case {
    /// `group/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    /// Reads and checks the conformance case at `path`.
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        Case::load_with(path, &CASE, &BTreeMap::new())
    }

    /// Reads and checks the file at `path` under `rules`, with some integer parameters
    /// overridden (a cost curve's point).
    pub fn load_with(
        path: &Path,
        rules: &Rules,
        overrides: &BTreeMap<String, i64>,
    ) -> Result<Case, CaseError> {
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
        Case::parse_with(&shown, &group, &name, &text, rules, overrides)
    }

    /// Checks the conformance case text `text` (for `path`).
    pub fn parse(path: &str, group: &str, name: &str, text: &str) -> Result<Case, CaseError> {
        Case::parse_with(path, group, name, text, &CASE, &BTreeMap::new())
    }

    /// Checks the text `text` (for `path`) under `rules`, with `overrides`.
    pub fn parse_with(
        path: &str,
        group: &str,
        name: &str,
        text: &str,
        rules: &Rules,
        overrides: &BTreeMap<String, i64>,
    ) -> Result<Case, CaseError> {
        let src = Source {
            path: path.to_string(),
            text: text.to_string(),
        };
        let root = src.parse()?;
        let loader = Loader { src: &src, rules };
        loader.case(&root, group, name, overrides)
    }
}

/// Checks one file; the parts live in `steps.rs`, `expect.rs` and `bench.rs`.
struct Loader<'a> {
    src: &'a Source,
    rules: &'a Rules,
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
    "bench",
];

/// The parts of a case besides its steps and tables.
struct Head {
    title: String,
    source: String,
    methods: Vec<StartMethod>,
    differs_from_cpython: Option<String>,
    differs_between_methods: Option<String>,
    timeline: bool,
    output_any_order: bool,
    timeout_s: u64,
}

impl Loader<'_> {
    fn err(&self, span: &Span, msg: impl Into<String>) -> CaseError {
        self.src.error(span, msg)
    }

    fn str<'n>(&self, n: &'n Node, what: &str) -> Result<&'n str, CaseError> {
        n.as_str()
            .ok_or_else(|| self.src.wrong_type(n, what, "a string"))
    }

    fn table<'n>(&self, n: &'n Node, what: &str) -> Result<&'n [(String, Span, Node)], CaseError> {
        n.as_table()
            .ok_or_else(|| self.src.wrong_type(n, what, "a table"))
    }

    fn array<'n>(&self, n: &'n Node, what: &str) -> Result<&'n [Node], CaseError> {
        match &n.kind {
            NodeKind::Array(a) => Ok(a),
            _ => Err(self.src.wrong_type(n, what, "an array")),
        }
    }

    fn line(&self, span: &Span) -> usize {
        self.src.line_col(span.start).0
    }

    fn case(
        &self,
        root: &Node,
        group: &str,
        name: &str,
        overrides: &BTreeMap<String, i64>,
    ) -> Result<Case, CaseError> {
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
        let head = self.head(root)?;
        let params = self.params(root, overrides)?;
        let steps_node = root
            .get("step")
            .ok_or_else(|| self.err(&(0..0), "missing `step`"))?;
        let steps = self.steps(steps_node, &params)?;
        let labels: Vec<String> = steps.iter().filter_map(|s| s.label.clone()).collect();
        let (expect, bench) = self.tables(root, top, &labels, &params)?;
        Ok(Case {
            path: self.src.path.clone(),
            group: group.to_string(),
            name: name.to_string(),
            title: head.title,
            source: head.source,
            methods: head.methods,
            params,
            differs_from_cpython: head.differs_from_cpython,
            differs_between_methods: head.differs_between_methods,
            timeline: head.timeline,
            output_any_order: head.output_any_order,
            timeout_s: head.timeout_s,
            steps,
            expect,
            bench,
        })
    }

    fn head(&self, root: &Node) -> Result<Head, CaseError> {
        let need = |key: &str| {
            root.get(key)
                .ok_or_else(|| self.err(&(0..0), format!("missing `{key}`")))
        };
        let title = self.str(need("title")?, "`title`")?.to_string();
        let source = self.str(need("source")?, "`source`")?.to_string();
        let methods = self.methods(root)?;
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
            Some(n) => return Err(self.src.wrong_type(n, "`timeline`", "a boolean")),
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
        Ok(Head {
            title,
            source,
            methods,
            differs_from_cpython,
            differs_between_methods,
            timeline,
            output_any_order,
            timeout_s,
        })
    }

    fn methods(&self, root: &Node) -> Result<Vec<StartMethod>, CaseError> {
        let Some(n) = root.get("methods") else {
            return Ok(vec![
                StartMethod::Fork,
                StartMethod::Spawn,
                StartMethod::Forkserver,
            ]);
        };
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
        Ok(out)
    }

    fn params(
        &self,
        root: &Node,
        overrides: &BTreeMap<String, i64>,
    ) -> Result<BTreeMap<String, Value>, CaseError> {
        let mut params = BTreeMap::new();
        if let Some(p) = root.get("params") {
            for (k, _, v) in self.table(p, "`params`")? {
                params.insert(k.clone(), v.to_json());
            }
        }
        for (k, v) in overrides {
            params.insert(k.clone(), Value::from(*v));
        }
        Ok(params)
    }

    /// `[expect]` and `[bench]`, as the rules want them.
    fn tables(
        &self,
        root: &Node,
        top: &[(String, Span, Node)],
        labels: &[String],
        params: &BTreeMap<String, Value>,
    ) -> Result<(Expect, Option<BenchSpec>), CaseError> {
        let bench = match (root.get("bench"), self.rules.needs) {
            (Some(_), Needs::Expect) => {
                let ks = top.iter().find(|(k, _, _)| k == "bench").map(|e| &e.1);
                return Err(self.err(
                    ks.unwrap_or(&(0..0)),
                    "a [bench] table makes a benchmark workload: put it in cases/bench/ and \
                     run it with `cargo xtask bench`",
                ));
            }
            (Some(b), Needs::Bench) => Some(self.bench(b, labels, params)?),
            (None, Needs::Bench) => {
                return Err(self.err(&(0..0), "missing `[bench]`: a workload needs one"))
            }
            (None, Needs::Expect) => None,
        };
        let expect = match root.get("expect") {
            Some(e) => self.expect(e, labels, params)?,
            None if bench.is_some() => Expect::default(),
            None => {
                return Err(self.err(
                    &(0..0),
                    "missing expectation: the case has no [expect] table",
                ))
            }
        };
        Ok((expect, bench))
    }
}

/// Loads every conformance case under `dir` (sorted; `README.md` and other files are ignored;
/// `cases/bench/`, the workloads, is skipped). Bad cases come back as errors; the others still
/// load.
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
