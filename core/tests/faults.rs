//! Faults on purpose (issue 13), the start path: starts are exact when descriptors run out,
//! arguments outlive the start, a killed forkserver, the parent's death, fatal signals sent from
//! outside, the resource tracker of named shared memory.
//!
//! Scenarios that change process-wide limits, or that kill the process running them, run in a
//! child process of the test (`common::run_inner` or a spawned copy of this binary), bounded in
//! count and time.

mproc::enable_test_support!();

mod common;

use mproc::{Error, StartMethod, Value};
use rstest::rstest;
use std::fs::File;
use std::time::Duration;

fn ctx(m: StartMethod) -> mproc::Context {
    mproc::get_context(m)
}

/// The name libtest gives the rstest case of `test` for method `m` (`#[values]` in the order
/// fork, spawn, forkserver).
fn case_name(test: &str, m: StartMethod) -> String {
    let (i, name) = match m {
        StartMethod::Fork => (1, "Fork"),
        StartMethod::Spawn => (2, "Spawn"),
        StartMethod::Forkserver => (3, "Forkserver"),
    };
    format!("{test}::m_{i}_StartMethod__{name}")
}

/// Runs the rstest case `test` for `m` in a child process (as `common::run_inner`) and requires
/// that it passes; returns its standard output.
fn run_case_inner(test: &str, m: StartMethod) -> String {
    let out = common::run_inner(&case_name(test, m), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().filter_map(|l| l.split_once("RESULT ")) {
        eprintln!("{}", line.1);
    }
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "inner run of {test} under {m} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// Starts the rstest case `test` for `m` in a child process (the inner half of a scenario that
/// ends by being killed), and waits at most 60 s for a line of its standard output that holds
/// `marker`: returns the child and what follows the marker (`None`: no such line).
fn start_inner_until(
    test: &str,
    m: StartMethod,
    marker: &'static str,
) -> (std::process::Child, Option<String>) {
    use std::io::BufRead;
    let mut inner = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &case_name(test, m),
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("MPROC_INNER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = inner.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, rest)) = line.split_once(marker) {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let found = rx.recv_timeout(Duration::from_secs(60)).ok();
    (inner, found)
}

// ---------------------------------------------------------------------------------------------
// 1. Starts are exact.

fn bump(counter: Value<u64>) {
    counter.update(|n| n + 1).expect("the counter's lock");
}

fn record_parent(v: Value<u64>) {
    v.set(u64::from(std::os::unix::process::parent_id()));
}

/// Waits (at most 30 s) until every child of process `parent` has ended.
fn wait_children_of(parent: u32) {
    for pid in common::children_of(parent, None) {
        if let Some(fd) = common::pidfd(pid) {
            assert!(
                common::wait_ended(&fd, Duration::from_secs(30)),
                "child {pid} of {parent} still runs"
            );
        }
    }
}

/// Opens `/dev/null` until the descriptor table is full; returns the files.
fn fill_descriptor_table() -> Vec<File> {
    let mut files = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return files,
            Err(e) => panic!("open /dev/null: {e}"),
        }
    }
}

/// With `k` descriptors free for every `k` from 0 to 15, a start either fails (and the target
/// never runs, and no child is left unreaped) or succeeds (and the target runs to exit code 0).
/// Before: fork and spawn returned `Too many open files` after the fork for children that ran;
/// spawn returned `Ok` for children that `_exit(127)`ed before `execve`; forkserver sent the spec
/// before it held the child's pidfd.
#[rstest]
fn starts_are_exact_when_descriptors_run_out(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    if !common::is_inner() {
        run_case_inner("starts_are_exact_when_descriptors_run_out", m);
        return;
    }
    mproc::set_fork_warning(false);
    let counter = ctx(m).value::<u64>(0).unwrap();
    // A first start outside the limit: the forkserver (if any) is running from now on.
    let warm = ctx(m).process(bump, (counter.clone(),));
    warm.start().unwrap();
    warm.join().unwrap();
    assert_eq!(warm.exitcode().unwrap(), Some(0));
    drop(warm);
    // Under forkserver, the children of a failed start are the server's: wait for them before
    // counting (they must not run the target, but they end on their own time).
    let server = ctx(m).value::<u64>(0).unwrap();
    if m == StartMethod::Forkserver {
        let probe = ctx(m).process(record_parent, (server.clone(),));
        probe.start().unwrap();
        probe.join().unwrap();
    }
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_NOFILE, 96, 96).expect("setrlimit");
    let mut ok = 1u64;
    let mut failed = 0;
    for round in 0..3 {
        for k in 0..16 {
            let mut files = fill_descriptor_table();
            files.truncate(files.len().saturating_sub(k));
            let p = ctx(m).process(bump, (counter.clone(),));
            match p.start() {
                Ok(()) => {
                    drop(files);
                    p.join_timeout(Duration::from_secs(30)).unwrap();
                    let code = p.exitcode().unwrap();
                    assert_eq!(
                        code,
                        Some(0),
                        "{m}: k={k} round {round}: Ok but exit {code:?}"
                    );
                    p.close().unwrap();
                    ok += 1;
                }
                Err(e) => {
                    drop(files);
                    assert!(
                        matches!(&e, Error::Io(_) | Error::Forkserver(_)),
                        "{m}: k={k}: unexpected error {e:?}"
                    );
                    failed += 1;
                    if m == StartMethod::Forkserver {
                        wait_children_of(server.get() as u32);
                    }
                }
            }
            assert_eq!(
                counter.get(),
                ok,
                "{m}: k={k} round {round}: {ok} starts succeeded but the target ran {} times",
                counter.get()
            );
        }
    }
    assert!(
        failed > 0,
        "{m}: no start failed: the scenario tested nothing"
    );
    assert!(ok > 1, "{m}: no start succeeded under the limit");
    assert!(common::zombie_children().is_empty());
    println!("RESULT {m}: {ok} started, {failed} refused");
}

/// The pid of this process's forkserver (the parent of a forkserver child), starting it if need be.
fn forkserver_pid() -> u32 {
    let v = ctx(StartMethod::Forkserver).value::<u64>(0).unwrap();
    let probe = ctx(StartMethod::Forkserver).process(record_parent, (v.clone(),));
    probe.start().unwrap();
    probe.join().unwrap();
    assert_eq!(probe.exitcode().unwrap(), Some(0));
    v.get() as u32
}

/// CPython's `test_forkserver_sigkill`: the forkserver killed, the next starts (right away, with
/// no wait for the server's death to show) launch a fresh one. Before: up to 24 starts in a row
/// failed with "cannot reach the forkserver" for a few milliseconds.
#[test]
fn a_killed_forkserver_is_replaced_at_once() {
    let counter = ctx(StartMethod::Forkserver).value::<u64>(0).unwrap();
    for round in 0..5 {
        let server = forkserver_pid();
        common::kill(server, nix::sys::signal::Signal::SIGKILL).unwrap();
        for i in 0..4 {
            let p = ctx(StartMethod::Forkserver).process(bump, (counter.clone(),));
            p.start()
                .unwrap_or_else(|e| panic!("round {round}, start {i} after the kill: {e:?}"));
            p.join_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(p.exitcode().unwrap(), Some(0));
        }
        assert_ne!(forkserver_pid(), server, "a fresh forkserver serves");
    }
    assert_eq!(counter.get(), 20);
}

// ---------------------------------------------------------------------------------------------
// 3. The forkserver killed: children already started keep their real status.

fn hang() {
    loop {
        std::thread::park();
    }
}

fn exit_with(code: i32) {
    mproc::exit(code);
}

/// Waits for a message on `conn`, then leaves with exit code 7.
fn exit_7_when_told(conn: mproc::Connection) {
    let _: Option<u8> = conn.recv().ok();
    mproc::exit(7);
}

/// Children of a forkserver that was then killed: the running ones are alive, and each reports
/// its real exit status (a code, a signal) when it ends, although its parent (the server) is
/// gone. Before: `Io: the forkserver closed the status channel ...` at once.
#[test]
fn children_keep_their_status_when_the_forkserver_is_killed() {
    let fs = ctx(StartMethod::Forkserver);
    let server = forkserver_pid();
    let hung = fs.process(hang, ());
    hung.start().unwrap();
    let killed = fs.process(hang, ());
    killed.start().unwrap();
    let (ours, theirs) = mproc::pipe().unwrap();
    let told = fs.process(exit_7_when_told, (theirs,));
    told.start().unwrap();
    let quick = fs.process(exit_with, (3,));
    quick.start().unwrap();
    let early = fs.process(exit_with, (4,));
    early.start().unwrap();
    early.join().unwrap();

    let server_fd = common::pidfd(server).expect("the forkserver runs");
    common::kill(server, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(common::wait_ended(&server_fd, Duration::from_secs(30)));

    assert_eq!(early.exitcode().unwrap(), Some(4));
    assert!(hung.is_alive().unwrap());
    assert_eq!(hung.exitcode().unwrap(), None);
    hung.join_timeout(Duration::from_millis(50)).unwrap();
    assert!(hung.is_alive().unwrap());

    quick.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(quick.exitcode().unwrap(), Some(3));

    // This one ends and is reaped by its new parent (init) before we look: its status comes
    // from its pidfd, which the kernel keeps since Linux 6.15 (before, it is lost: an error).
    let told_fd = common::pidfd(told.pid().unwrap()).expect("the child runs");
    ours.send(&1u8).unwrap();
    assert!(common::wait_ended(&told_fd, Duration::from_secs(30)));
    if common::kernel_keeps_exit_status() {
        assert!(common::wait_reaped(&told_fd, Duration::from_secs(30)));
        told.join_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(told.exitcode().unwrap(), Some(7));
    }

    killed.kill().unwrap();
    killed.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(killed.exitcode().unwrap(), Some(-9));

    assert!(hung.is_alive().unwrap());
    hung.terminate().unwrap();
    hung.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(hung.exitcode().unwrap(), Some(-15));
    assert!(!hung.is_alive().unwrap());

    // And the next start launches a fresh server.
    let next = fs.process(exit_with, (5,));
    next.start().unwrap();
    next.join().unwrap();
    assert_eq!(next.exitcode().unwrap(), Some(5));
}

// ---------------------------------------------------------------------------------------------
// 2. Arguments outlive the start.

/// Checks that the shared memory holds `expect` at byte 0; counts a success in `ok`.
fn check_shared_memory(shm: mproc::SharedMemory, expect: u8, ok: Value<u64>) {
    let mut byte = [0u8];
    shm.read(0, &mut byte).unwrap();
    if byte[0] == expect {
        ok.update(|n| n + 1).unwrap();
    }
}

/// A creator's named `SharedMemory` passed to a child (`start()` drops the parent's copy of the
/// arguments): the child attaches every time, and the name is removed once the child
/// has attached (the creator's handle, held by the parent until then, is dropped). Before: under
/// spawn and forkserver the child failed with "No such file or directory" 26 to 100 times in 100.
#[rstest]
fn a_creators_shared_memory_outlives_the_start(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    const ROUNDS: u64 = 20;
    let ok = ctx(m).value::<u64>(0).unwrap();
    for i in 0..ROUNDS {
        let shm = mproc::SharedMemory::create(None, 64).unwrap();
        shm.write(0, &[i as u8 + 1]).unwrap();
        let name = shm.name().to_string();
        let p = ctx(m).process(check_shared_memory, (shm, i as u8 + 1, ok.clone()));
        p.start().unwrap();
        p.join_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
        drop(p);
        assert!(
            common::wait_shm_gone(&name, Duration::from_secs(30)),
            "{m}: /dev/shm/{name} is left behind"
        );
    }
    assert_eq!(ok.get(), ROUNDS, "{m}: some children could not attach");
}

/// A child killed before it could decode its arguments: the parent stops holding them (the
/// creator's name is removed) once it sees the child gone, without waiting for the handshake's
/// timeout.
#[rstest]
fn arguments_of_a_child_killed_at_once_are_released(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ok = ctx(m).value::<u64>(0).unwrap();
    let shm = mproc::SharedMemory::create(None, 64).unwrap();
    let name = shm.name().to_string();
    let p = ctx(m).process(check_shared_memory, (shm, 0, ok));
    p.start().unwrap();
    p.kill().unwrap();
    p.join_timeout(Duration::from_secs(30)).unwrap();
    assert!(p.exitcode().unwrap().is_some());
    assert!(
        common::wait_shm_gone(&name, Duration::from_secs(10)),
        "{m}: /dev/shm/{name} is still held"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The parent's death.

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The inner half of `the_parents_death_...`: a pool of two (one worker busy for two minutes), a
/// daemonic child, a non-daemonic child and (under forkserver) the server; prints their pids and
/// waits to be killed.
fn parent_death_scenario(m: StartMethod) {
    mproc::set_fork_warning(false);
    let pool = ctx(m).pool().processes(2).build().unwrap();
    let _busy = pool.apply_async(sleep_ms, (120_000,)).unwrap();
    let workers: Vec<String> = pool.workers().iter().map(|w| w.pid.to_string()).collect();
    let daemon = ctx(m).process(hang, ()).daemon(true);
    daemon.start().unwrap();
    let other = ctx(m).process(hang, ()).daemon(false);
    other.start().unwrap();
    let server = if m == StartMethod::Forkserver {
        forkserver_pid()
    } else {
        0
    };
    println!(
        "PIDS {} {} {} {server}",
        workers.join(","),
        daemon.pid().unwrap(),
        other.pid().unwrap()
    );
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    hang();
}

/// The parent SIGKILLed: its pool workers (the busy one too), its daemonic child and its
/// forkserver end by themselves; its non-daemonic child runs on, as in Python. Before: the busy
/// worker and the daemonic child ran on.
#[rstest]
fn the_parents_death_ends_its_daemons_workers_and_forkserver(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    if common::is_inner() {
        parent_death_scenario(m);
        return;
    }
    let (mut inner, line) = start_inner_until(
        "the_parents_death_ends_its_daemons_workers_and_forkserver",
        m,
        "PIDS ",
    );
    let Some(line) = line else {
        let _ = inner.kill();
        let _ = inner.wait();
        panic!("{m}: the inner scenario printed no pids");
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let pids = |s: &str| -> Vec<u32> { s.split(',').filter_map(|p| p.parse().ok()).collect() };
    let workers = pids(fields[0]);
    let (daemon, other, server): (u32, u32, u32) = (
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
        fields[3].parse().unwrap(),
    );
    assert_eq!(workers.len(), 2, "{m}: {line}");
    let open = |pid: u32| common::pidfd(pid).unwrap_or_else(|| panic!("{m}: {pid} runs"));
    let mut must_end: Vec<(String, u32, std::os::fd::OwnedFd)> = workers
        .iter()
        .map(|&w| ("pool worker".to_string(), w, open(w)))
        .collect();
    must_end.push(("daemonic child".into(), daemon, open(daemon)));
    if server != 0 {
        must_end.push(("forkserver".into(), server, open(server)));
    }
    let other_fd = open(other);

    inner.kill().unwrap();
    inner.wait().unwrap();
    let mut survivors = Vec::new();
    for (what, pid, fd) in &must_end {
        if !common::wait_ended(fd, Duration::from_secs(20)) {
            survivors.push(format!("{what} {pid}"));
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
    }
    let other_alive = !common::wait_ended(&other_fd, Duration::ZERO);
    let _ = rustix::process::pidfd_send_signal(&other_fd, rustix::process::Signal::KILL);
    assert!(
        survivors.is_empty(),
        "{m}: survived their parent: {survivors:?}"
    );
    assert!(
        other_alive,
        "{m}: the non-daemonic child died with its parent"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Fatal signals.

/// Says it runs (on `conn`), then waits for ever.
fn hang_when_ready(conn: mproc::Connection) {
    conn.send(&1u8).unwrap();
    hang();
}

/// A child sent SIGSEGV, SIGBUS, SIGILL or SIGFPE by `kill` dies of it, with exit code `-N` as
/// in CPython. Before: SIGSEGV and SIGBUS were swallowed by std's stack-overflow handler (which
/// resets the action and returns), and the child ran on.
#[rstest]
fn a_fatal_signal_sent_from_outside_ends_the_child(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
    #[values(libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE)] sig: i32,
) {
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = ctx(m).process(hang_when_ready, (theirs,));
    p.start().unwrap();
    let _: u8 = ours.recv().unwrap();
    let signal = nix::sys::signal::Signal::try_from(sig).unwrap();
    common::kill(p.pid().unwrap(), signal).unwrap();
    p.join_timeout(Duration::from_secs(10)).unwrap();
    let code = p.exitcode().unwrap();
    if code.is_none() {
        p.kill().unwrap();
        p.join().unwrap();
    }
    assert_eq!(code, Some(-sig), "{m}: {signal} from outside");
}

#[inline(never)]
fn recurse(depth: u64, buf: &mut [u8; 256]) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let mut local = [0u8; 256];
    local[(depth % 256) as usize] = buf[(depth % 251) as usize].wrapping_add(1);
    std::hint::black_box(&mut local);
    1 + recurse(depth + 1, &mut local)
}

fn overflow_the_stack() {
    let mut buf = [0u8; 256];
    std::hint::black_box(recurse(0, &mut buf));
}

/// A real stack overflow in a child is still reported as one: std's message on the child's
/// stderr and `SIGABRT` (-6), under every method (in a child started from a test binary too,
/// where std's own handler is not installed).
#[rstest]
fn a_stack_overflow_in_a_child_is_reported_as_one(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    if common::is_inner() {
        let p = ctx(m).process(overflow_the_stack, ());
        p.start().unwrap();
        p.join_timeout(Duration::from_secs(30)).unwrap();
        println!("RESULT exitcode {:?}", p.exitcode().unwrap());
        return;
    }
    let out = common::run_inner(
        &case_name("a_stack_overflow_in_a_child_is_reported_as_one", m),
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{m}: {stdout}\n{stderr}");
    assert!(
        stdout.contains("RESULT exitcode Some(-6)"),
        "{m}: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("has overflowed its stack"),
        "{m}: {stdout}\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The resource tracker.

/// Creates a named segment, sends its name on `conn`, and waits for ever.
fn create_segment_and_hang(conn: mproc::Connection) {
    let shm = mproc::SharedMemory::create(None, 4096).unwrap();
    conn.send(&shm.name().to_string()).unwrap();
    hang();
}

/// A child that created a named segment is SIGKILLed: the tracker unlinks the segment, while
/// the parent lives on. Before: `/dev/shm/<name>` stayed for ever.
#[rstest]
fn a_killed_creators_segment_is_unlinked(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let (ours, theirs) = mproc::pipe().unwrap();
    let p = ctx(m).process(create_segment_and_hang, (theirs,));
    p.start().unwrap();
    let name: String = ours.recv().unwrap();
    assert!(std::path::Path::new("/dev/shm").join(&name).exists());
    p.kill().unwrap();
    p.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-9));
    assert!(
        common::wait_shm_gone(&name, Duration::from_secs(30)),
        "{m}: /dev/shm/{name} was left behind"
    );
}

/// The inner half of `the_main_process_killed_leaves_dev_shm_clean`: a segment of the main
/// process, one of a daemonic child and one of a child that unlinked... prints the names and
/// waits to be killed.
fn main_killed_scenario(m: StartMethod) {
    mproc::set_fork_warning(false);
    let mine = mproc::SharedMemory::create(None, 4096).unwrap();
    let (ours, theirs) = mproc::pipe().unwrap();
    let daemon = ctx(m)
        .process(create_segment_and_hang, (theirs,))
        .daemon(true);
    daemon.start().unwrap();
    let theirs: String = ours.recv().unwrap();
    println!("NAMES {} {theirs}", mine.name());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    hang();
}

/// The main process SIGKILLed with a segment of its own and one of its daemonic child: both are
/// unlinked (the tracker outlives them), and an entry of `/dev/shm` that is not ours is left
/// alone.
#[rstest]
fn the_main_process_killed_leaves_dev_shm_clean(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    if common::is_inner() {
        main_killed_scenario(m);
        return;
    }
    let foreign = std::path::Path::new("/dev/shm").join(format!(
        "mproc-test-foreign-{}-{}",
        std::process::id(),
        m
    ));
    std::fs::write(&foreign, b"not ours").unwrap();
    let (mut inner, line) =
        start_inner_until("the_main_process_killed_leaves_dev_shm_clean", m, "NAMES ");
    inner.kill().unwrap();
    inner.wait().unwrap();
    let line = line.unwrap_or_else(|| panic!("{m}: the inner scenario printed no names"));
    let names: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(names.len(), 2, "{m}: {line}");
    let left: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !common::wait_shm_gone(n, Duration::from_secs(30)))
        .collect();
    let foreign_kept = foreign.exists();
    let _ = std::fs::remove_file(&foreign);
    assert!(left.is_empty(), "{m}: left in /dev/shm: {left:?}");
    assert!(
        foreign_kept,
        "{m}: the tracker removed an entry that was not ours"
    );
}
