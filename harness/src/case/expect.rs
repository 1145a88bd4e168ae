//! `[expect]`: what a conformance run must show.

use super::Loader;
use crate::expr::{self, Expr};
use crate::node::{CaseError, Node, NodeKind};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a timing bound measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Interval {
    /// All the steps.
    Elapsed,
    /// The step labelled so (first start to last end).
    Step(String),
    /// From the start of one labelled step to the end of another.
    Between(String, String),
}

/// A timing expectation: bounds in milliseconds from expressions over the params.
#[derive(Clone, Debug, PartialEq)]
pub struct TimingBound {
    /// What is measured.
    pub what: Interval,
    /// Lower bound: the text as written and its expression.
    pub at_least: Option<(String, Expr)>,
    /// Upper bound.
    pub at_most: Option<(String, Expr)>,
}

impl TimingBound {
    /// The name of the timing in traces.
    pub fn name(&self) -> String {
        match &self.what {
            Interval::Elapsed => "elapsed".into(),
            Interval::Step(s) => s.clone(),
            Interval::Between(a, b) => format!("{a}..{b}"),
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
    pub timing: Vec<TimingBound>,
}

const EXPECT_KEYS: &[&str] = &[
    "results",
    "values",
    "exitcodes",
    "output",
    "order",
    "elapsed",
    "timing",
];

const TIMING_KEYS: &[&str] = &["step", "from", "to", "at_least", "at_most"];

impl Loader<'_> {
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
        params: &BTreeMap<String, Value>,
        labels: &[String],
    ) -> Result<TimingBound, CaseError> {
        for (k, ks, v) in self.table(n, "a timing")? {
            if !TIMING_KEYS.contains(&k.as_str()) {
                return Err(self.err(
                    ks,
                    format!("unknown field `{k}` in a timing (step, from, to, at_least, at_most)"),
                ));
            }
            if matches!(k.as_str(), "step" | "from" | "to") {
                let l = self.str(v, &format!("`{k}`"))?;
                if !known_label(labels, l) && !l.contains('$') {
                    return Err(self.err(&v.span, format!("no step is labelled `{l}`")));
                }
            }
        }
        let text = |n: &Node| n.as_str().unwrap_or_default().to_string();
        let what = match (n.get("step"), n.get("from"), n.get("to")) {
            (Some(s), None, None) => Interval::Step(text(s)),
            (None, Some(a), Some(b)) => Interval::Between(text(a), text(b)),
            (None, None, None) => Interval::Elapsed,
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
        Ok(TimingBound {
            what,
            at_least,
            at_most,
        })
    }

    pub(super) fn expect(
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
        for (k, ks, v) in t {
            match k.as_str() {
                "results" => {
                    let items = self.array(v, "`expect.results`")?;
                    e.results = Some(items.iter().map(Node::to_json).collect())
                }
                "values" => {
                    for (l, ls, val) in self.table(v, "`expect.values`")? {
                        if !known_label(labels, l) {
                            return Err(self.err(ls, format!("no step is labelled `{l}`")));
                        }
                        e.values.push((l.clone(), val.to_json()));
                    }
                }
                "exitcodes" => e.exitcodes = self.exitcodes(v)?,
                "output" => e.output = Some(self.output(v)?),
                "order" => e.order = Some(self.order(v, labels)?),
                "elapsed" => e.timing.push(self.timing(v, params, labels)?),
                "timing" => {
                    for item in self.array(v, "`expect.timing`")? {
                        if item.get("step").is_none() && item.get("from").is_none() {
                            return Err(self.err(
                                &item.span,
                                "a timing in `expect.timing` needs `step` or `from`/`to`",
                            ));
                        }
                        e.timing.push(self.timing(item, params, labels)?);
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

    fn exitcodes(&self, v: &Node) -> Result<Vec<(String, Value)>, CaseError> {
        let mut out = Vec::new();
        for (id, _, val) in self.table(v, "`expect.exitcodes`")? {
            let code = match &val.kind {
                NodeKind::Int(_) => val.to_json(),
                NodeKind::Str(s) if s == "$null" => Value::Null,
                _ => return Err(self.src.wrong_type(val, "an exit code", "an integer")),
            };
            out.push((id.clone(), code));
        }
        Ok(out)
    }

    fn output(&self, v: &Node) -> Result<Vec<String>, CaseError> {
        let mut lines = Vec::new();
        for l in self.array(v, "`expect.output`")? {
            lines.push(self.str(l, "an output line")?.to_string());
        }
        Ok(lines)
    }

    fn order(&self, v: &Node, labels: &[String]) -> Result<Vec<String>, CaseError> {
        let mut out = Vec::new();
        for l in self.array(v, "`expect.order`")? {
            let s = self.str(l, "a label")?;
            if !known_label(labels, s) {
                return Err(self.err(&l.span, format!("no step is labelled `{s}`")));
            }
            out.push(s.to_string());
        }
        Ok(out)
    }
}

/// Whether `l` may name a step: one of `labels`, or any name when a label has `$` in it (its
/// names are only known when the steps run).
fn known_label(labels: &[String], l: &str) -> bool {
    labels.iter().any(|x| x == l) || labels.iter().any(|x| x.contains('$'))
}
