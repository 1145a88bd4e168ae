//! A malformed case is reported as `path:line:column: message`, and the other cases still run
//! (the run then exits 2). One test per kind of bad input.

use mproc_harness::case::Case;
use mproc_harness::suite::{self, Options, Reference, Tools};
use std::path::PathBuf;
use tempfile::TempDir;

const HEAD: &str = "title = \"t\"\nsource = \"s\"\n";

/// A scratch folder (removed when dropped) with a `group/` folder for cases.
fn tmp(name: &str) -> TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("bad_input-{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch folder");
    std::fs::create_dir_all(d.path().join("group")).expect("tmp dir");
    d
}

/// Writes `text` as a case and returns the error it gives.
fn error_of(test: &str, text: &str) -> (String, String) {
    let scratch = tmp(test);
    let path = scratch.path().join("group").join("case.toml");
    std::fs::write(&path, text).expect("write case");
    let err = Case::load(&path).expect_err("the case must be refused");
    (path.display().to_string(), err.to_string())
}

fn assert_at(test: &str, text: &str, line: usize, column: usize, message: &str) {
    let (path, err) = error_of(test, text);
    let prefix = format!("{path}:{line}:{column}: ");
    assert!(
        err.starts_with(&prefix),
        "expected the prefix {prefix:?}, got {err:?}"
    );
    assert!(err.contains(message), "expected {message:?} in {err:?}");
}

#[test]
fn toml_syntax_error() {
    let text = format!("{HEAD}[[step]]\nstart = \"p\nEOF\n");
    assert_at(
        "syntax",
        &text,
        4,
        11,
        "TOML syntax error: invalid basic string",
    );
}

#[test]
fn unknown_step() {
    let text = format!("{HEAD}[[step]]\nstrat = \"p\"\n[expect]\nresults = []\n");
    assert_at("unknown_step", &text, 4, 1, "unknown step `strat`");
}

#[test]
fn unknown_task() {
    let text = format!("{HEAD}[[step]]\nprocess = {{ id = \"p\", task = \"sqaure\", args = [2] }}\n[expect]\nresults = []\n");
    assert_at("unknown_task", &text, 4, 30, "unknown task `sqaure`");
}

#[test]
fn wrong_type_of_a_field() {
    let text = format!(
        "{HEAD}[[step]]\njoin = {{ id = \"p\", timeout_ms = \"soon\" }}\n[expect]\nresults = []\n"
    );
    assert_at(
        "wrong_type",
        &text,
        4,
        33,
        "wrong type: `join.timeout_ms` must be an integer",
    );
}

#[test]
fn wrong_type_of_a_task_argument() {
    let text = format!("{HEAD}[[step]]\nprocess = {{ id = \"p\", task = \"square\", args = [\"two\"] }}\n[expect]\nresults = []\n");
    assert_at(
        "wrong_arg",
        &text,
        4,
        48,
        "argument 1 of task `square` must be an integer",
    );
}

#[test]
fn missing_expectation() {
    let text = format!("{HEAD}[[step]]\nsleep_ms = 1\n");
    assert_at("missing_expect", &text, 1, 1, "missing expectation");
}

#[test]
fn empty_expectation() {
    let text = format!("{HEAD}[[step]]\nsleep_ms = 1\n[expect]\n");
    assert_at(
        "empty_expect",
        &text,
        5,
        1,
        "missing expectation: [expect] is empty",
    );
}

#[test]
fn unknown_label_in_expectation() {
    let text =
        format!("{HEAD}[[step]]\nlabel = \"a\"\nsleep_ms = 1\n[expect]\nvalues = {{ b = 1 }}\n");
    assert_at("unknown_label", &text, 7, 12, "no step is labelled `b`");
}

#[test]
fn bad_timing_bound() {
    let text = format!("{HEAD}params = {{ xs = [1, 2] }}\n[[step]]\nsleep_ms = 1\n[expect]\nelapsed = {{ at_most = \"sum(ys)\" }}\n");
    assert_at("bad_bound", &text, 7, 23, "unknown parameter `ys`");
}

#[test]
fn bad_cases_are_reported_and_the_others_still_run() {
    let scratch = tmp("suite");
    let dir = scratch.path().to_path_buf();
    std::fs::write(
        dir.join("group").join("bad.toml"),
        format!("{HEAD}[[step]]\nstrat = \"p\"\n[expect]\nresults = []\n"),
    )
    .expect("write");
    std::fs::write(
        dir.join("group").join("good.toml"),
        format!("{HEAD}methods = [\"fork\"]\n[[step]]\nprocess = {{ id = \"p\", task = \"exit\", args = [5] }}\nstart = \"p\"\njoin = \"p\"\n[expect]\nexitcodes = {{ p = 5 }}\n"),
    )
    .expect("write");
    let opts = Options {
        cases: dir.clone(),
        methods: Vec::new(),
        filter: None,
        reference: Reference::None,
        jobs: 1,
    };
    let tools = Tools {
        case_bin: PathBuf::from(env!("CARGO_BIN_EXE_mproc-case")),
        python: None,
        reference: PathBuf::new(),
        work: dir.join("work"),
    };
    let report = suite::run_suite(&opts, &tools, &|_, _, _| {}).expect("suite runs");
    assert_eq!(report.bad.len(), 1);
    assert!(
        report.bad[0]
            .to_string()
            .contains("bad.toml:4:1: unknown step `strat`"),
        "{}",
        report.bad[0]
    );
    assert_eq!(report.cases.len(), 1);
    assert!(report.cases[0].passed, "{:?}", report.cases[0].runs);
    assert_eq!(report.exit_code(), 2);
    assert!(
        report.table().contains("conformance: 1 passed, 1 failed"),
        "{}",
        report.table()
    );
}
