//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod gates;

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
    children_of(std::process::id(), Some('Z'))
}

/// Pids of the children of process `parent` (those in `state` only, if given), from `/proc`.
pub fn children_of(parent: u32, state: Option<char>) -> Vec<u32> {
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
        let state_ok = state.is_none_or(|s| fields.first() == Some(&s.to_string().as_str()));
        if fields.len() > 2 && state_ok && fields[1].parse::<u32>().ok() == Some(parent) {
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

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: nix::sys::signal::Signal) -> nix::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
}

/// A pidfd for process `pid` (a child of ours or not), or `None` if it is gone.
pub fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Waits at most `timeout` for the process behind `pidfd` to end, without reaping it (a pidfd
/// turns readable when its process ends). True if it ended.
pub fn wait_ended(pidfd: &std::os::fd::OwnedFd, timeout: std::time::Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let limit = Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&limit)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll on a pidfd: {e}"),
        }
    }
}

/// A duplicate of `fd` that is *not* close-on-exec (for tests of descriptor inheritance; mproc
/// itself never makes one).
pub fn dup_inheritable(fd: impl std::os::fd::AsFd) -> std::os::fd::OwnedFd {
    nix::unistd::dup(fd).expect("dup")
}

/// Whether descriptor number `fd` is open in this process.
pub fn fd_is_open(fd: i32) -> bool {
    std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok()
}

/// Blocks `signal` in the calling thread.
pub fn block_signal_in_this_thread(signal: nix::sys::signal::Signal) {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(signal);
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), None)
        .expect("pthread_sigmask");
}

/// Waits at most `timeout` for the process behind `pidfd` (not our child) to be reaped by its
/// parent: a pidfd reports `POLLHUP` then (Linux 6.15 and later). True if it was.
pub fn wait_reaped(pidfd: &std::os::fd::OwnedFd, timeout: std::time::Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let limit = Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    let mut fds = [PollFd::new(pidfd, PollFlags::empty())];
    loop {
        match poll(&mut fds, Some(&limit)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll on a pidfd: {e}"),
        }
    }
}

/// Whether the running kernel keeps the exit status of a reaped process for its pidfds
/// (`PIDFD_INFO_EXIT`, Linux 6.15 and later).
pub fn kernel_keeps_exit_status() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().ok());
    matches!(
        (parts.next().flatten(), parts.next().flatten()),
        (Some(major), Some(minor)) if (major, minor) >= (6, 15)
    )
}

/// Waits at most `timeout` until `/dev/shm/<name>` is gone (watching the directory with inotify,
/// so that no poll loop is needed). True if it is gone.
pub fn wait_shm_gone(name: &str, timeout: std::time::Duration) -> bool {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;
    let path = std::path::Path::new("/dev/shm").join(name);
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).expect("inotify");
    inotify
        .add_watch("/dev/shm", AddWatchFlags::IN_DELETE)
        .expect("watch /dev/shm");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if !path.exists() {
            return true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let limit = rustix::event::Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let fd = inotify.as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&limit)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll on inotify: {e}"),
        }
        while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
    }
}
