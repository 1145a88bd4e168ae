//! Process under every start method: exit codes, Python's misuse rules, names, daemons,
//! timeouts, descriptor hygiene and reaping.

mproc::enable_test_support!();

mod common;

use mproc::{Connection, Error, Process, StartMethod};
use proptest::prelude::*;
use rstest::rstest;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn noop() {}

fn exit_with(code: i32) {
    mproc::exit(code);
}

fn panic_with(message: String) {
    panic!("{message}");
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn hang() {
    loop {
        std::thread::park();
    }
}

fn abort_self() {
    std::process::abort();
}

fn err_result() -> Result<(), String> {
    Err("it went wrong".into())
}

/// Reports the child's name, identity and parent to the parent.
fn report_self(conn: Connection) -> mproc::Result<()> {
    let me = mproc::current_process();
    conn.send(&(
        me.name,
        me.identity,
        me.daemon,
        mproc::parent_process().map(|p| p.0),
    ))
}

/// Starts a grandchild (default context) and reports its name and exit code.
fn start_grandchild(conn: Connection) -> mproc::Result<()> {
    let first = Process::new(noop, ());
    let second = Process::new(noop, ());
    second.start()?;
    second.join()?;
    conn.send(&(first.get_name(), second.get_name(), second.exitcode()?))
}

/// In a daemonic child: tries to start a child and reports the error kind.
fn daemon_tries_child(conn: Connection) -> mproc::Result<()> {
    let p = Process::new(noop, ());
    let kind = match p.start() {
        Ok(()) => "started".to_string(),
        Err(e) => e.kind_name().to_string(),
    };
    conn.send(&kind)
}

/// What each of the given descriptor numbers refers to in this process (`None`: not open).
fn fd_targets(fds: &[i32]) -> Vec<Option<String>> {
    fds.iter()
        .map(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .ok()
                .map(|p| p.display().to_string())
        })
        .collect()
}

/// Reports what the given descriptor numbers refer to in the child.
fn report_fds(conn: Connection, fds: Vec<i32>) -> mproc::Result<()> {
    conn.send(&(fd_targets(&fds), common::fd_is_open(0)))
}

fn ctx(m: StartMethod) -> mproc::Context {
    mproc::get_context(m)
}

fn started<F, A>(m: StartMethod, f: F, args: A) -> Process
where
    F: mproc::Target<A>,
    F::Output: mproc::Termination,
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let p = ctx(m).process(f, args);
    p.start().expect("start");
    p
}

const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::Spawn,
    StartMethod::Forkserver,
];

#[rstest]
fn return_is_exit_code_zero(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, noop, ());
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert!(!p.is_alive().unwrap());
}

#[rstest]
fn exit_n_is_exit_code_n(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, exit_with, (42,));
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(42));
}

#[rstest]
fn panic_is_exit_code_one(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, panic_with, ("deliberate".to_string(),));
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(1));
}

#[rstest]
fn err_result_is_exit_code_one(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, err_result, ());
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(1));
}

#[rstest]
fn abort_is_minus_sigabrt(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, abort_self, ());
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-libc::SIGABRT));
}

#[rstest]
fn join_timeout_then_terminate(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, hang, ());
    let t0 = Instant::now();
    p.join_timeout(Duration::from_millis(200)).unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "join returned before its timeout"
    );
    assert!(p.is_alive().unwrap());
    assert_eq!(p.exitcode().unwrap(), None);
    p.terminate().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-libc::SIGTERM));
    assert!(!p.is_alive().unwrap());
    // Signalling an ended process is not an error, and changes nothing.
    p.terminate().unwrap();
    p.kill().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-libc::SIGTERM));
}

#[rstest]
fn kill_is_minus_sigkill(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, hang, ());
    p.kill().unwrap();
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-libc::SIGKILL));
}

#[rstest]
fn join_returns_when_child_ends_within_timeout(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, sleep_ms, (50,));
    p.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    // A process may be joined many times.
    p.join().unwrap();
    p.join_timeout(Duration::ZERO).unwrap();
}

#[rstest]
fn misuse_before_start(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = ctx(m).process(noop, ());
    assert!(matches!(p.join(), Err(Error::NotStarted)));
    assert!(matches!(p.terminate(), Err(Error::NotStarted)));
    assert!(matches!(p.kill(), Err(Error::NotStarted)));
    assert!(!p.is_alive().unwrap());
    assert_eq!(p.exitcode().unwrap(), None);
    assert_eq!(p.pid(), None);
}

#[rstest]
fn start_twice(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, noop, ());
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    p.join().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
}

#[rstest]
fn close_rules(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, hang, ());
    assert!(matches!(p.close(), Err(Error::StillRunning)));
    p.kill().unwrap();
    p.join().unwrap();
    p.close().unwrap();
    assert!(matches!(p.join(), Err(Error::ProcessClosed)));
    assert!(matches!(p.is_alive(), Err(Error::ProcessClosed)));
    assert!(matches!(p.exitcode(), Err(Error::ProcessClosed)));
    assert!(matches!(p.terminate(), Err(Error::ProcessClosed)));
    assert!(matches!(p.start(), Err(Error::ProcessClosed)));
    // Closing twice is fine, as in Python; so is closing a process never started.
    p.close().unwrap();
    ctx(m).process(noop, ()).close().unwrap();
}

#[rstest]
fn daemon_flag_rules(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = ctx(m).process(hang, ()).daemon(true);
    assert!(p.is_daemon());
    p.start().unwrap();
    assert!(matches!(p.set_daemon(false), Err(Error::DaemonAfterStart)));
    p.kill().unwrap();
    p.join().unwrap();
}

#[rstest]
fn daemonic_processes_may_not_have_children(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = ctx(m).process(daemon_tries_child, (theirs,)).daemon(true);
    p.start().unwrap();
    let kind: String = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(kind, "DaemonChildren");
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

#[test]
fn a_process_cannot_join_itself() {
    assert!(matches!(
        mproc::current_process().join(),
        Err(Error::JoinSelf)
    ));
}

#[test]
fn only_the_parent_may_join() {
    // A fork child that holds its sibling's handle may not wait on it (fork only: the handle is
    // captured by a closure).
    let ctx = ctx(StartMethod::Fork);
    let sibling = Arc::new(ctx.process(hang, ()));
    sibling.start().unwrap();
    let (ours, theirs) = mproc::pipe().unwrap();
    let held = Arc::clone(&sibling);
    let p = ctx.process_closure(move || {
        let kinds: Vec<String> = [
            held.join_timeout(Duration::ZERO).map(drop),
            held.terminate(),
        ]
        .into_iter()
        .map(|r| {
            r.err()
                .map(|e| e.kind_name().to_string())
                .unwrap_or_default()
        })
        .collect();
        theirs.send(&kinds)
    });
    p.start().unwrap();
    let kinds: Vec<String> = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(kinds, ["NotChild", "NotChild"]);
    assert!(
        sibling.is_alive().unwrap(),
        "the sibling must not have been signalled"
    );
    sibling.kill().unwrap();
    sibling.join().unwrap();
}

#[rstest]
fn names_follow_python(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let expected_prefix = match m {
        StartMethod::Fork => "ForkProcess",
        StartMethod::Spawn => "SpawnProcess",
        StartMethod::Forkserver => "ForkServerProcess",
    };
    // Counters count objects made, started or not, as Python's do.
    let first = ctx(m).process(noop, ());
    assert_eq!(first.get_name(), format!("{expected_prefix}-1"));
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = ctx(m).process(report_self, (theirs,));
    assert_eq!(p.get_name(), format!("{expected_prefix}-2"));
    p.start().unwrap();
    let (name, identity, daemon, parent): (String, Vec<u32>, bool, Option<u32>) =
        ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(name, format!("{expected_prefix}-2"));
    assert_eq!(identity, [2]);
    assert!(!daemon);
    assert_eq!(parent, Some(std::process::id()));
    assert_eq!(mproc::current_process().name, "MainProcess");
    // An explicit name is carried to the child.
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = ctx(m).process(report_self, (theirs,)).name("worker");
    p.start().unwrap();
    let (name, ..): (String, Vec<u32>, bool, Option<u32>) = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(name, "worker");
}

#[rstest]
fn nested_names_in_the_default_context(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    mproc::set_start_method(m).unwrap();
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = Process::new(start_grandchild, (theirs,));
    assert_eq!(p.get_name(), "Process-1");
    p.start().unwrap();
    let (first, second, code): (String, String, Option<i32>) = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(
        (first.as_str(), second.as_str(), code),
        ("Process-1:1", "Process-1:2", Some(0))
    );
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

#[test]
fn start_method_is_set_once() {
    assert_eq!(mproc::peek_start_method(), None);
    mproc::set_start_method(StartMethod::Spawn).unwrap();
    match mproc::set_start_method(StartMethod::Fork) {
        Err(e @ Error::StartMethodAlreadySet { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("cannot set the start method to fork, it is spawn already")
                    && msg.contains("force_start_method"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mproc::get_start_method(), StartMethod::Spawn);
    mproc::force_start_method(StartMethod::Fork);
    assert_eq!(mproc::peek_start_method(), Some(StartMethod::Fork));
    assert_eq!(mproc::default_context().start_method(), StartMethod::Fork);
    // Python's set_start_method(None, force=True): cleared, it may be set again.
    mproc::clear_start_method();
    assert_eq!(mproc::peek_start_method(), None);
    mproc::set_start_method(StartMethod::Forkserver).unwrap();
    assert_eq!(mproc::get_start_method(), StartMethod::Forkserver);
}

#[test]
fn using_the_default_fixes_it() {
    // get_start_method() fixes the platform default (forkserver on Linux, as Python 3.14).
    assert_eq!(mproc::get_start_method(), StartMethod::Forkserver);
    assert!(matches!(
        mproc::set_start_method(StartMethod::Spawn),
        Err(Error::StartMethodAlreadySet {
            current: StartMethod::Forkserver,
            requested: StartMethod::Spawn
        })
    ));
    assert_eq!(mproc::get_all_start_methods().len(), 3);
    assert!(matches!(
        "thread".parse::<StartMethod>(),
        Err(Error::UnknownStartMethod(_))
    ));
    assert_eq!(
        "forkserver".parse::<StartMethod>().unwrap(),
        StartMethod::Forkserver
    );
}

#[rstest]
fn capturing_closures_only_under_fork(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let code = 17;
    let p = ctx(m).process(move || exit_with(code), ());
    let q = ctx(m).process_closure(move || exit_with(code));
    if m == StartMethod::Fork {
        p.start().unwrap();
        q.start().unwrap();
        p.join().unwrap();
        q.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(17));
        assert_eq!(q.exitcode().unwrap(), Some(17));
    } else {
        assert!(matches!(p.start(), Err(Error::NotSpawnable(_))));
        assert!(matches!(q.start(), Err(Error::NotSpawnable(_))));
        // A closure that captures nothing crosses any start method.
        let r = ctx(m).process(|n: i32| exit_with(n), (23,));
        r.start().unwrap();
        r.join().unwrap();
        assert_eq!(r.exitcode().unwrap(), Some(23));
    }
}

#[rstest]
fn descriptor_hygiene(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    use std::os::fd::{AsFd, AsRawFd};
    // One close-on-exec descriptor and one deliberately inheritable one.
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let inheritable = common::dup_inheritable(file.as_fd());
    let fds = vec![file.as_raw_fd(), inheritable.as_raw_fd()];
    let (ours, theirs) = mproc::pipe().unwrap();
    let ours_targets = fd_targets(&fds);
    let p = started(m, report_fds, (theirs, fds));
    let (theirs_targets, stdin_open): (Vec<Option<String>>, bool) = ours.recv().unwrap();
    p.join().unwrap();
    // Inherited: the same number refers to the same file (`/proc/<our pid>/stat`) there. A
    // number that is open there for something else of the child's own is no inheritance.
    let open: Vec<bool> = ours_targets
        .iter()
        .zip(&theirs_targets)
        .map(|(o, t)| o.is_some() && o == t)
        .collect();
    assert!(stdin_open);
    match m {
        StartMethod::Fork => {
            assert_eq!(open, [true, true], "a fork child inherits every descriptor")
        }
        _ => assert_eq!(
            open,
            [false, false],
            "a {m} child sees only the descriptors it needs"
        ),
    }
}

fn stdin_is_devnull(conn: Connection) -> mproc::Result<()> {
    let target = std::fs::read_link("/proc/self/fd/0")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    conn.send(&target)
}

#[rstest]
fn spawned_stdin_is_devnull(#[values(StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod) {
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = started(m, stdin_is_devnull, (theirs,));
    let target: String = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(target, "/dev/null");
}

#[rstest]
fn many_starts_leak_nothing(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // Warm up (the forkserver opens its connection on first use).
    let p = started(m, noop, ());
    p.join().unwrap();
    drop(p);
    let fds_before = common::open_fds();
    for i in 0..500 {
        let p = started(m, exit_with, (i % 7,));
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(i % 7));
    }
    assert_eq!(common::open_fds(), fds_before, "descriptors leaked");
    assert!(
        common::zombie_children().is_empty(),
        "zombies left: {:?}",
        common::zombie_children()
    );
    assert!(mproc::active_children().is_empty());
}

#[rstest]
fn dropped_handles_are_reaped(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = started(m, sleep_ms, (20,));
    let pid = p.pid().unwrap();
    drop(p);
    assert_eq!(
        mproc::active_children()
            .iter()
            .map(|c| c.pid)
            .collect::<Vec<_>>(),
        [pid]
    );
    // Wait for the end without reaping, through a pidfd of our own.
    let pidfd = common::pidfd(pid).expect("the child is not reaped yet");
    assert!(common::wait_ended(&pidfd, Duration::from_secs(30)));
    assert!(mproc::active_children().is_empty());
    assert!(common::zombie_children().is_empty());
}

#[test]
fn exit_joins_children_and_reaps_daemons() {
    if common::is_inner() {
        // Leave main with one non-daemonic child still running (it must be joined) and one
        // daemonic child that would run forever (it must be terminated).
        let method: StartMethod = std::env::var("M").unwrap().parse().unwrap();
        let worker = ctx(method).process(sleep_ms, (100,));
        worker.start().unwrap();
        let daemon = ctx(method).process(hang, ()).daemon(true);
        daemon.start().unwrap();
        println!("pids {} {}", worker.pid().unwrap(), daemon.pid().unwrap());
        std::process::exit(0);
    }
    for m in METHODS {
        let out = common::run_inner(
            "exit_joins_children_and_reaps_daemons",
            &[("M", m.as_str())],
        );
        assert!(out.status.success(), "{m}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let at = stdout.find("pids ").expect("pids line");
        let line = stdout[at + 5..].lines().next().unwrap_or_default();
        for pid in line.split(' ') {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "{m}: child {pid} outlived its parent"
            );
        }
    }
}

#[test]
fn panic_message_goes_to_the_childs_stderr() {
    if common::is_inner() {
        let method: StartMethod = std::env::var("M").unwrap().parse().unwrap();
        let p = started(method, panic_with, ("the sky fell".to_string(),));
        p.join().unwrap();
        println!("exitcode {:?}", p.exitcode().unwrap());
        return;
    }
    for m in METHODS {
        let out = common::run_inner(
            "panic_message_goes_to_the_childs_stderr",
            &[("M", m.as_str())],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let prefix = match m {
            StartMethod::Fork => "ForkProcess",
            StartMethod::Spawn => "SpawnProcess",
            StartMethod::Forkserver => "ForkServerProcess",
        };
        assert!(
            stderr.contains(&format!("Process {prefix}-1:")),
            "{m}: {stderr}"
        );
        assert!(stderr.contains("the sky fell"), "{m}: {stderr}");
        assert!(stdout.contains("exitcode Some(1)"), "{m}: {stdout}");
    }
}

#[test]
fn fork_warns_in_a_multithreaded_parent() {
    if common::is_inner() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let p = started(StartMethod::Fork, noop, ());
        p.join().unwrap();
        let p = started(StartMethod::Fork, noop, ());
        p.join().unwrap();
        tx.send(()).unwrap();
        t.join().unwrap().unwrap();
        return;
    }
    let out = common::run_inner("fork_warns_in_a_multithreaded_parent", &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("is multi-threaded").count(),
        1,
        "warned once: {stderr}"
    );
    let quiet = common::run_inner(
        "fork_warns_in_a_multithreaded_parent",
        &[("MPROC_NO_FORK_WARNING", "1")],
    );
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("multi-threaded"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_exit_code_is_reported_exactly(code in 0i32..=255, mi in 0usize..3) {
        let m = METHODS[mi];
        let p = started(m, exit_with, (code,));
        p.join().unwrap();
        prop_assert_eq!(p.exitcode().unwrap(), Some(code));
    }
}

fn report_sigmask(conn: Connection) -> mproc::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let blocked = status
        .lines()
        .find(|l| l.starts_with("SigBlk:"))
        .unwrap_or_default()
        .to_string();
    conn.send(&blocked)
}

#[test]
fn spawned_children_start_with_an_empty_signal_mask() {
    // The forking thread blocks SIGUSR1; the spawned child must not inherit that mask.
    common::block_signal_in_this_thread(nix::sys::signal::Signal::SIGUSR1);
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = started(StartMethod::Spawn, report_sigmask, (theirs,));
    let blocked: String = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(
        blocked.split_whitespace().nth(1),
        Some("0000000000000000"),
        "{blocked}"
    );
}
