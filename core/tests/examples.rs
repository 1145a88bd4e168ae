//! The examples print what the programs of Python's documentation they mirror print (and what
//! mproc promises beyond CPython), under every start method.
//! `cargo test` builds the examples next to the test binaries; this runs them.

mod common;

use rstest::rstest;

use common::example;

fn run(name: &str, args: &[&str]) -> String {
    common::run_example(name, args)
}

#[rstest]
fn process_basic(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = run("process_basic", &["--method", m]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines[0],
        format!("Parent process {}.", parent_pid(lines[0]))
    );
    assert_eq!(lines[1], "Child process will start.");
    assert!(
        lines[2].starts_with("Run child process test (") && lines[2].ends_with(")..."),
        "{out}"
    );
    let child: u32 = lines[2]["Run child process test (".len()..lines[2].len() - 4]
        .parse()
        .expect("child pid");
    assert_ne!(child, parent_pid(lines[0]));
    assert_eq!(lines[3], "Child process end.");
}

fn parent_pid(line: &str) -> u32 {
    line.trim_start_matches("Parent process ")
        .trim_end_matches('.')
        .parse()
        .expect("parent pid")
}

#[rstest]
fn timeout_control_terminates_an_overrun(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = run(
        "timeout_control",
        &["--method", m, "--timeout-ms", "200", "--task-ms", "20000"],
    );
    assert!(out.contains("task exceeded 200 ms\n"), "{out}");
    assert!(out.ends_with("exitcode: -15\n"), "{out}");
}

#[rstest]
fn timeout_control_lets_a_short_task_finish(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = run(
        "timeout_control",
        &["--method", m, "--timeout-ms", "20000", "--task-ms", "10"],
    );
    assert!(!out.contains("exceeded"), "{out}");
    assert!(out.ends_with("exitcode: 0\n"), "{out}");
}

#[rstest]
fn start_method_sends_hello(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = run("start_method", &["--method", m]);
    assert_eq!(out, "default start method: forkserver\nhello\n");
}

#[rstest]
fn pipe_prints_the_documented_list(#[values("fork", "spawn", "forkserver")] m: &str) {
    assert_eq!(run("pipe", &["--method", m]), "[42, None, 'hello']\n");
}

#[test]
fn a_bad_method_is_a_clear_error() {
    let out = example("process_basic")
        .args(["--method", "thread"])
        .output()
        .expect("run example");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot find context for \"thread\""),
        "{stderr}"
    );
}
