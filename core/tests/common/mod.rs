//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs this test binary again with only `test` (an exact name), with `MPROC_INNER` set, and
/// returns its output: for scenarios that must own a whole process (exit paths, stderr).
pub fn run_inner(test: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env("MPROC_INNER", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run inner test")
}

/// Whether this run is the inner half of a [`run_inner`] scenario.
pub fn is_inner() -> bool {
    std::env::var_os("MPROC_INNER").is_some()
}

/// The number of open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Pids of zombie children of this process.
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 2 && fields[0] == "Z" && fields[1].parse::<u32>().ok() == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// A command for the example `name`, which `cargo test` builds next to the test binaries
/// (`target/<profile>/deps/<test>` -> `target/<profile>/examples/<name>`).
pub fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("profile dir")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    Command::new(path)
}

/// Runs the example `name` with `args`, requires success, and returns its standard output.
pub fn run_example(name: &str, args: &[&str]) -> String {
    let out = example(name).args(args).output().expect("run example");
    assert!(out.status.success(), "{name} {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}
