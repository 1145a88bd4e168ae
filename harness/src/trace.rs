//! Normalised traces: what a run did, with pids, times and paths redacted and timings reduced to
//! the verdict of their bounds; the expectations checked against them; and their comparison.

use crate::case::{Case, Interval};
use crate::expr;
use crate::model::{Event, Measured, RawTrace, TimingVerdict, Trace};
use crate::vocab::{self, Returns};
use serde_json::Value;
use std::collections::BTreeMap;

fn redact(line: &str, pids: &[u64]) -> String {
    let mut out = String::with_capacity(line.len());
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let at_end = j == b.len() || !b[j].is_ascii_alphanumeric();
            if at_end && line[i..j].parse::<u64>().is_ok_and(|n| pids.contains(&n)) {
                out.push_str("<pid>");
                i = j;
                continue;
            }
            out.push_str(&line[i..j]);
            i = j;
            continue;
        }
        let ch = line[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn span_ms(raw: &RawTrace, what: &Interval) -> Option<f64> {
    let first = |l: &str| {
        raw.events
            .iter()
            .find(|e| e.label.as_deref() == Some(l))
            .map(|e| e.t0_us)
    };
    let last = |l: &str| {
        raw.events
            .iter()
            .rev()
            .find(|e| e.label.as_deref() == Some(l))
            .map(|e| e.t1_us)
    };
    let (a, b) = match what {
        Interval::Elapsed => (raw.t_start_us, raw.t_end_us),
        Interval::Step(l) => (first(l)?, last(l)?),
        Interval::Between(x, y) => (first(x)?, last(y)?),
    };
    Some(b.saturating_sub(a) as f64 / 1000.0)
}

/// Normalises `raw` (with the run's `stdout`) and checks the case's expectations. Returns the
/// trace, the measured timings, and one message per failed expectation.
pub fn normalise(case: &Case, raw: &RawTrace, stdout: &str) -> (Trace, Measured, Vec<String>) {
    let mut failures = Vec::new();
    let mut events = Vec::new();
    for e in &raw.events {
        let returns = vocab::op(&e.op)
            .map(|o| o.returns)
            .unwrap_or(Returns::Nothing);
        events.push(Event {
            op: e.op.clone(),
            id: e.id.clone(),
            label: e.label.clone(),
            value: if returns == Returns::Nothing || e.error.is_some() {
                None
            } else {
                Some(e.value.clone().unwrap_or(Value::Null))
            },
            error: e.error.clone(),
        });
        let what = format!(
            "step {} `{}`{}",
            e.step,
            e.op,
            e.id.as_ref().map(|i| format!(" {i}")).unwrap_or_default()
        );
        match (&e.expected_error, &e.error) {
            (Some(want), Some(got)) if want != got => failures.push(format!(
                "{what}: expected error {want}, got {got} ({})",
                e.message.clone().unwrap_or_default()
            )),
            (Some(want), None) => {
                failures.push(format!("{what}: expected error {want}, but it succeeded"))
            }
            (None, Some(got)) => failures.push(format!(
                "{what}: unexpected error {got}: {}",
                e.message.clone().unwrap_or_default()
            )),
            _ => {}
        }
    }
    let mut output: Vec<String> = stdout.lines().map(|l| redact(l, &raw.pids)).collect();
    if case.output_any_order {
        output.sort();
    }
    let mut measured = Measured::default();
    let mut timings = BTreeMap::new();
    for t in &case.expect.timing {
        let name = t.name();
        let Some(ms) = span_ms(raw, &t.what) else {
            timings.insert(name.clone(), TimingVerdict::NotMeasured);
            failures.push(format!("timing {name}: its steps did not run"));
            continue;
        };
        let lo = t
            .at_least
            .as_ref()
            .and_then(|(_, e)| expr::eval(e, &case.params).ok());
        let hi = t
            .at_most
            .as_ref()
            .and_then(|(_, e)| expr::eval(e, &case.params).ok());
        let verdict = if lo.is_some_and(|lo| ms < lo) {
            failures.push(format!(
                "timing {name}: {ms:.1} ms is below at_least {} = {:.1} ms",
                t.at_least.as_ref().map(|x| x.0.as_str()).unwrap_or(""),
                lo.unwrap_or(0.0)
            ));
            TimingVerdict::BelowAtLeast
        } else if hi.is_some_and(|hi| ms > hi) {
            failures.push(format!(
                "timing {name}: {ms:.1} ms is above at_most {} = {:.1} ms",
                t.at_most.as_ref().map(|x| x.0.as_str()).unwrap_or(""),
                hi.unwrap_or(0.0)
            ));
            TimingVerdict::AboveAtMost
        } else {
            TimingVerdict::Ok
        };
        timings.insert(name.clone(), verdict);
        measured.timings.insert(name, (ms, lo, hi));
    }
    let trace = Trace {
        events,
        exitcodes: raw.exitcodes.clone(),
        output,
        timings,
        unreaped: raw.unreaped.clone(),
        aborted: raw.aborted.clone(),
    };
    check(case, &trace, &raw.method, &mut failures);
    (trace, measured, failures)
}

fn check(case: &Case, t: &Trace, method: &str, failures: &mut Vec<String>) {
    let mut vars = case.params.clone();
    vars.insert("method".into(), Value::from(method));
    vars.insert("null".into(), Value::Null);
    let sub = |v: &Value| crate::template::subst(v, &vars).unwrap_or_else(|_| v.clone());
    let mut e = case.expect.clone();
    e.results = e.results.map(|r| r.iter().map(sub).collect());
    for (_, v) in e.values.iter_mut().chain(e.exitcodes.iter_mut()) {
        *v = sub(v);
    }
    if let Some(want) = &e.results {
        let got: Vec<Value> = t
            .events
            .iter()
            .filter(|ev| {
                vocab::op(&ev.op).map(|o| o.returns) == Some(Returns::Result) && ev.error.is_none()
            })
            .map(|ev| ev.value.clone().unwrap_or(Value::Null))
            .collect();
        if &got != want {
            failures.push(format!(
                "results: expected {}, got {}",
                Value::from(want.clone()),
                Value::from(got)
            ));
        }
    }
    for (label, want) in &e.values {
        match t
            .events
            .iter()
            .rev()
            .find(|ev| ev.label.as_deref() == Some(label))
        {
            None => failures.push(format!("value of `{label}`: the step did not run")),
            Some(ev) => {
                let got = ev.value.clone().unwrap_or(Value::Null);
                if &got != want {
                    failures.push(format!("value of `{label}`: expected {want}, got {got}"));
                }
            }
        }
    }
    for (id, want) in &e.exitcodes {
        let got = t
            .exitcodes
            .get(id)
            .cloned()
            .flatten()
            .map(Value::from)
            .unwrap_or(Value::Null);
        if &got != want {
            failures.push(format!("exit code of `{id}`: expected {want}, got {got}"));
        }
    }
    if let Some(want) = &e.output {
        let mut want = want.clone();
        if case.output_any_order {
            want.sort();
        }
        if want != t.output {
            failures.push(format!("output: expected {want:?}, got {:?}", t.output));
        }
    }
    if let Some(order) = &e.order {
        let pos: Vec<Option<usize>> = order
            .iter()
            .map(|l| {
                t.events
                    .iter()
                    .position(|ev| ev.label.as_deref() == Some(l))
            })
            .collect();
        let ok = pos.iter().all(Option::is_some) && pos.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            failures.push(format!("order: expected the steps {order:?} in this order"));
        }
    }
    if !t.unreaped.is_empty() {
        failures.push(format!(
            "processes still running after the last step (killed): {:?}",
            t.unreaped
        ));
    }
}

/// A line diff of two traces as pretty JSON (`-` only in `a`, `+` only in `b`); empty when
/// they are equal.
pub fn diff(a: &Trace, b: &Trace) -> String {
    if a == b {
        return String::new();
    }
    let pa = serde_json::to_string_pretty(a).unwrap_or_default();
    let pb = serde_json::to_string_pretty(b).unwrap_or_default();
    line_diff(&pa, &pb)
}

/// A minimal line diff (longest common subsequence).
pub fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if a[i] == b[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || l[i][j + 1] >= l[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_known_pids() {
        assert_eq!(
            redact("Run child process test (929)...", &[929]),
            "Run child process test (<pid>)..."
        );
        assert_eq!(redact("hello world 9299", &[929]), "hello world 9299");
        assert_eq!(redact("x929 929", &[929]), "x929 <pid>");
    }

    #[test]
    fn diff_marks_changed_lines() {
        let d = line_diff("a\nb\nc", "a\nx\nc");
        assert_eq!(d, "  a\n+ x\n- b\n  c\n");
    }
}
