//! The vocabulary is whole: every action is documented, parses into its op, and has an arm in
//! both Python runners (and in the bench's when it is marked `bench`); every task is
//! documented and mirrored. The Rust interpreter's arms are checked by the compiler (its
//! matches have no wildcard).

use super::*;
use crate::case::{Case, CASE};
use crate::catalogue::TASKS;
use std::collections::BTreeMap;

const README: &str = include_str!("../../../cases/README.md");
const BENCH_README: &str = include_str!("../../../cases/bench/README.md");
const REFERENCE: &str = include_str!("../../py/reference.py");
const BENCH_REFERENCE: &str = include_str!("../../py/bench_reference.py");

/// A value of type `ty` that the loader accepts.
fn sample(ty: Ty) -> &'static str {
    match ty {
        Ty::Id | Ty::Str => "\"x\"",
        Ty::Ids => "[\"a\", \"b\"]",
        Ty::Int => "1",
        Ty::Bool => "true",
        Ty::Any => "1",
        Ty::List => "[]",
        Ty::Items => "\"0..2\"",
        Ty::Task => "\"noop\"",
        Ty::Method => "\"fork\"",
        Ty::Context => "\"case\"",
        Ty::TypeCode => "\"q\"",
        Ty::LockKind => "\"Lock\"",
    }
}

/// A one-step case whose step is `spec` with its required fields (and `data` for
/// `send_bytes`, which needs `data` or `bytes`).
pub(crate) fn sample_case(spec: &OpSpec) -> String {
    let fields: Vec<String> = spec
        .fields
        .iter()
        .filter(|f| f.required || (spec.name == "send_bytes" && f.name == "data"))
        .map(|f| format!("{} = {}", f.name, sample(f.ty)))
        .collect();
    format!(
        "title = \"t\"\nsource = \"s\"\n[[step]]\n{} = {{ {} }}\n[expect]\nresults = []\n",
        spec.name,
        fields.join(", ")
    )
}

/// Every action of the vocabulary, typed from a sample of its fields.
pub(crate) fn sample_ops() -> Vec<(&'static OpSpec, Op)> {
    let mut out = Vec::new();
    for (_, ops) in MODULES {
        for spec in *ops {
            let text = sample_case(spec);
            let case =
                Case::parse_with("sample.toml", "g", "sample", &text, &CASE, &BTreeMap::new())
                    .unwrap_or_else(|e| panic!("`{}` does not load from {text:?}: {e}", spec.name));
            out.push((spec, case.steps[0].actions[0].op.clone()));
        }
    }
    out
}

#[test]
fn every_action_parses_into_its_op() {
    let ops = sample_ops();
    assert_eq!(ops.len(), op_names().len());
    for (spec, op) in ops {
        assert_eq!(op.name(), spec.name);
        assert_eq!(op.spec().name, spec.name);
    }
}

#[test]
fn every_action_and_task_is_documented_and_mirrored_in_python() {
    for (_, ops) in MODULES {
        for op in *ops {
            assert!(
                README.contains(&format!("`{}`", op.name)),
                "cases/README.md does not document `{}`",
                op.name
            );
            let arm = format!("def op_{}(self", op.name);
            assert!(REFERENCE.contains(&arm), "reference.py has no `{arm}`");
            if op.bench {
                assert!(
                    BENCH_REFERENCE.contains(&arm),
                    "bench_reference.py has no `{arm}` (`{}` is marked bench)",
                    op.name
                );
            }
            if let Some(p) = op.primary {
                assert!(
                    REFERENCE.contains(&format!("\"{}\": \"{p}\"", op.name)),
                    "reference.py's PRIMARY lacks `{}`",
                    op.name
                );
            }
        }
    }
    for t in TASKS {
        assert!(
            README.contains(&format!("`{}`", t.name)),
            "cases/README.md does not document task `{}`",
            t.name
        );
        assert!(
            REFERENCE.contains(&format!("\"{}\":", t.name)),
            "reference.py does not mirror task `{}`",
            t.name
        );
    }
    for t in crate::bench::kernel::TASKS {
        assert!(
            BENCH_README.contains(&format!("`{}`", t.name)),
            "cases/bench/README.md does not document bench task `{}`",
            t.name
        );
        assert!(
            BENCH_REFERENCE.contains(&format!("def {}(", t.name)),
            "bench_reference.py does not mirror bench task `{}`",
            t.name
        );
    }
}

/// Every action is run by at least one conformance case. `cargo xtask conformance` runs each
/// case through the Rust interpreter (under every start method) and through `reference.py`,
/// so together with the checks above every arm of both is exercised, not only present.
#[test]
fn every_action_is_exercised_by_a_case() {
    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
    let (loaded, bad) = crate::case::discover(&cases);
    assert!(bad.is_empty(), "cases that do not load: {bad:?}");
    let used: std::collections::BTreeSet<&str> = loaded
        .iter()
        .flat_map(|c| c.steps.iter())
        .flat_map(|s| s.actions.iter())
        .map(|a| a.op.name())
        .collect();
    let unused: Vec<&str> = op_names()
        .into_iter()
        .filter(|n| !used.contains(n))
        .collect();
    assert!(
        unused.is_empty(),
        "actions that no case under cases/ runs: {unused:?}"
    );
}
