//! The CPython interpreters on this machine, for interoperability tests: python3 (3.11 here)
//! and, where present, pyenv's 3.12 and 3.13. An absent version is skipped with a one-line
//! notice on stderr.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One interpreter.
#[derive(Clone, Debug)]
pub struct Python {
    pub exe: PathBuf,
    /// `(3, 11)`, ...
    pub version: (u32, u32),
}

impl Python {
    pub fn label(&self) -> String {
        format!("CPython {}.{}", self.version.0, self.version.1)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("PYTHONDONTWRITEBYTECODE", "1");
        c
    }
}

fn version_of(exe: &PathBuf) -> Option<(u32, u32)> {
    let out = Command::new(exe)
        .args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// Every CPython >= 3.11 found, one per minor version (3.11, 3.12, 3.13 are looked for; the
/// missing ones are reported on stderr and skipped).
pub fn interpreters() -> Vec<Python> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut candidates = vec![PathBuf::from("python3")];
    if let Ok(dir) = std::fs::read_dir(home.join(".pyenv/versions")) {
        let mut found: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path().join("bin/python3"))
            .filter(|p| p.exists())
            .collect();
        found.sort();
        candidates.extend(found);
    }
    let mut out: Vec<Python> = Vec::new();
    for exe in candidates {
        if let Some(v) = version_of(&exe) {
            if v >= (3, 11) && !out.iter().any(|p| p.version == v) {
                out.push(Python { exe, version: v });
            }
        }
    }
    for minor in [11, 12, 13] {
        if !out.iter().any(|p| p.version == (3, minor)) {
            eprintln!("CPython 3.{minor} not found: skipping its interoperability checks");
        }
    }
    out.sort_by_key(|p| p.version);
    out
}

/// Waits for `child` at most `timeout`, killing it if it overruns; returns its output (read
/// while it runs, so that a full pipe never stalls it).
pub fn finish(mut child: Child, timeout: Duration) -> Output {
    fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "the Python process overran {timeout:?}\nstderr:\n{}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            // Bounded polling of a child's exit: this is a timeout path, not synchronisation.
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs `python -c script args...` to completion within `timeout`.
pub fn run(py: &Python, script: &str, args: &[&str], timeout: Duration) -> Output {
    finish(spawn(py, script, args, Stdio::null()), timeout)
}

/// Starts `python -c script args...` with its output piped.
pub fn spawn(py: &Python, script: &str, args: &[&str], stdin: Stdio) -> Child {
    py.command()
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A Python process whose stdout is read line by line with a timeout.
pub struct Running {
    pub child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Running {
    pub fn start(py: &Python, script: &str, args: &[&str]) -> Running {
        Running::start_with_stdin(py, script, args, Stdio::null())
    }

    /// As [`Running::start`], with the given stdin (`Stdio::piped()`: closing
    /// `child.stdin` tells the script to go on).
    pub fn start_with_stdin(py: &Python, script: &str, args: &[&str], stdin: Stdio) -> Running {
        let mut child = spawn(py, script, args, stdin);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child: Some(child),
            lines: rx,
        }
    }

    /// The next line of output, waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(_) => {
                let child = self.child.take().unwrap();
                let out = finish(child, Duration::from_secs(5));
                panic!(
                    "no line from Python within {timeout:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// Waits for the process to end (at most `timeout`) and returns its output.
    pub fn finish(mut self, timeout: Duration) -> Output {
        finish(self.child.take().unwrap(), timeout)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
