//! Every case × start method as one libtest-mimic trial (so nextest and CI count them): the
//! case runs in its own `mproc-case exec` process, its expectations are checked, and its
//! normalised trace must equal the insta snapshot `reports/snapshots/<group>__<case>.snap`.
//! One snapshot serves all start methods (their traces must agree) unless the case says
//! `differs_between_methods`; then each method has its own (`...@fork.snap`).
//!
//! New or changed snapshots fail; under `CI=true` nothing is written. Review them with
//! `cargo insta review` (or accept all with `INSTA_UPDATE=always`).
//!
//! The CPython comparison is `cargo xtask conformance`'s job; this target checks mproc alone.

use libtest_mimic::{Arguments, Failed, Trial};
use mproc_harness::case::{self, Case};
use mproc_harness::suite::{self, Runner, Tools};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn run(case: &Case, method: mproc::StartMethod, tools: &Tools) -> Result<(), Failed> {
    let out = suite::run_job(case, Runner::Mproc, method, tools);
    let Some(trace) = out.trace else {
        return Err(format!("no trace: {}\n{}", out.failures.join("\n"), out.stderr).into());
    };
    if !out.failures.is_empty() {
        return Err(format!("{}\n{}", out.failures.join("\n"), out.stderr).into());
    }
    let name = match case.differs_between_methods {
        None => format!("{}__{}", case.group, case.name),
        Some(_) => format!("{}__{}@{}", case.group, case.name, method),
    };
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("reports").join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_input_file(&case.path);
    settings.set_description(format!("{}: {}", case.id(), case.title));
    // A mismatch panics; libtest-mimic reports the panic as this trial's failure.
    settings.bind(|| insta::assert_json_snapshot!(name, trace));
    Ok(())
}

fn main() {
    mproc::init();
    let args = Arguments::from_args();
    let (cases, bad) = case::discover(&root().join("cases"));
    let scratch = tempfile::Builder::new()
        .prefix("conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch folder");
    let work = scratch.path().to_path_buf();
    let tools = Arc::new(Tools {
        case_bin: PathBuf::from(env!("CARGO_BIN_EXE_mproc-case")),
        python: None,
        reference: PathBuf::new(),
        work,
    });
    let mut trials = Vec::new();
    for e in bad {
        let name = e.path.clone();
        trials.push(Trial::test(format!("bad_case::{name}"), move || {
            Err(e.to_string().into())
        }));
    }
    for c in cases {
        let c = Arc::new(c);
        for &m in &c.methods {
            let (c, tools) = (Arc::clone(&c), Arc::clone(&tools));
            let name = format!("{}::{}::{}", c.group, c.name, m);
            trials.push(Trial::test(name, move || run(&c, m, &tools)));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(scratch);
    conclusion.exit();
}
