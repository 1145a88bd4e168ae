//! Deadlines under every start method: pool tasks over their deadline (per call, per pool, per
//! item of a map), soft then hard limits, limits that cannot be met, and the `Process` helper
//! that joins with a deadline and escalates from `SIGTERM` to `SIGKILL`.
//!
//! The tasks here sleep because sleeping is what they are about (a task that overruns); no test
//! sleeps to wait for something to happen.

mproc::enable_test_support!();

mod common;

use mproc::{Ending, Error, StartMethod};
use rstest::rstest;
use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pool(m: StartMethod, n: usize) -> mproc::Pool {
    mproc::get_context(m)
        .pool()
        .processes(n)
        .build()
        .expect("pool")
}

fn sleep_ms(n: u64) -> u64 {
    std::thread::sleep(ms(n));
    n
}

fn square(x: u64) -> u64 {
    x * x
}

fn my_pid(_: u32) -> u32 {
    std::process::id()
}

/// Works in steps of 5 ms until its soft deadline passes (or `max_ms`); returns whether it had a
/// soft and a hard deadline, and how long it ran.
fn wrap_up_at_soft_deadline(max_ms: u64) -> (bool, bool, u64) {
    let t0 = Instant::now();
    while !mproc::pool::soft_deadline_passed() && t0.elapsed() < ms(max_ms) {
        std::thread::sleep(ms(5));
    }
    (
        mproc::pool::soft_deadline().is_some(),
        mproc::pool::hard_deadline().is_some(),
        t0.elapsed().as_millis() as u64,
    )
}

/// What a task sees of its limits: the time left before its soft and hard deadlines, in ms.
fn limits_seen(_: u32) -> (Option<u64>, Option<u64>, Option<u64>) {
    let now = Instant::now();
    let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(now).as_millis() as u64);
    (
        left(mproc::pool::soft_deadline()),
        left(mproc::pool::hard_deadline()),
        mproc::pool::time_left().map(|d| d.as_millis() as u64),
    )
}

fn sleep_with_sigterm_blocked(n: u64) -> u64 {
    common::block_signal_in_this_thread(nix::sys::signal::Signal::SIGTERM);
    sleep_ms(n)
}

fn expect_task_timeout<T: std::fmt::Debug>(r: mproc::Result<T>, timeout: Duration) -> u32 {
    match r {
        Err(Error::TaskTimeout { pid, timeout: t }) => {
            assert_eq!(t, timeout);
            pid
        }
        other => panic!("expected TaskTimeout, got {other:?}"),
    }
}

// ---- pool deadlines ----

#[rstest]
fn a_task_over_its_deadline_fails_alone_and_the_pool_keeps_serving(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let before: HashSet<u32> = p.workers().iter().map(|w| w.pid).collect();
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    let slow = p
        .apply_async_with(sleep_ms, (10_000,))
        .timeout(ms(300))
        .callback(|_| panic!("the slow task cannot succeed"))
        .error_callback(move |e| tx.send(e.to_string()).unwrap())
        .submit()
        .unwrap();
    let quick: Vec<_> = (0..8u64)
        .map(|i| p.apply_async(square, (i,)).unwrap())
        .collect();
    let pid = expect_task_timeout(slow.get_timeout(LONG), ms(300));
    // Far from the 10 s the task would have taken.
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert!(before.contains(&pid), "{pid} was a worker");
    let message = rx.recv_timeout(LONG).unwrap();
    assert!(message.contains("deadline of 300ms"), "{message}");
    assert!(!slow.successful().unwrap());
    for (i, r) in quick.iter().enumerate() {
        assert_eq!(r.get_timeout(LONG).unwrap(), (i * i) as u64);
    }
    // The killed worker is gone and replaced.
    assert!(p.workers().iter().all(|w| w.pid != pid));
    assert_eq!(p.map(square, 0..20u64).unwrap().len(), 20);
    assert_eq!(p.workers().len(), 2);
    p.close().unwrap();
    p.join().unwrap();
    assert!(common::zombie_children().is_empty());
}

#[rstest]
fn tasks_queued_behind_a_timed_out_task_are_not_lost(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // One worker: everything waits for the slow task's worker to be killed and replaced.
    let p = pool(m, 1);
    let slow = p
        .apply_async_with(sleep_ms, (10_000,))
        .timeout(ms(300))
        .submit()
        .unwrap();
    let queued: Vec<_> = (0..5u64)
        .map(|i| p.apply_async(square, (i,)).unwrap())
        .collect();
    let again = p
        .apply_async_with(sleep_ms, (10_000,))
        .timeout(ms(200))
        .submit()
        .unwrap();
    let after: Vec<_> = (5..8u64)
        .map(|i| p.apply_async(square, (i,)).unwrap())
        .collect();
    expect_task_timeout(slow.get_timeout(LONG), ms(300));
    expect_task_timeout(again.get_timeout(LONG), ms(200));
    for (i, r) in queued.iter().chain(&after).enumerate() {
        assert_eq!(r.get_timeout(LONG).unwrap(), (i * i) as u64);
    }
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn a_pool_wide_deadline_and_calls_that_override_it(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = mproc::get_context(m)
        .pool()
        .processes(2)
        .task_timeout(ms(300))
        .build()
        .unwrap();
    expect_task_timeout(p.apply(sleep_ms, (10_000,)), ms(300));
    // Longer than the pool's deadline, but the call lifts it, or sets its own.
    let lifted = p
        .apply_async_with(sleep_ms, (600,))
        .no_timeout()
        .submit()
        .unwrap();
    let own = p
        .apply_async_with(sleep_ms, (600,))
        .timeout(Duration::from_secs(30))
        .submit()
        .unwrap();
    assert_eq!(lifted.get_timeout(LONG).unwrap(), 600);
    assert_eq!(own.get_timeout(LONG).unwrap(), 600);
    // A task within its deadline keeps its worker.
    let pid = p.apply(my_pid, (0,)).unwrap();
    let pids: HashSet<u32> = p.workers().iter().map(|w| w.pid).collect();
    assert!(pids.contains(&pid));
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn a_map_with_a_deadline_fails_only_the_slow_item(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let items = vec![10u64, 20, 10_000, 30, 40];
    // map: the first error wins, once every item is done.
    let whole = p
        .map_async_with(sleep_ms, items.clone())
        .timeout(ms(400))
        .submit()
        .unwrap();
    expect_task_timeout(whole.get_timeout(LONG), ms(400));
    // imap: item by item.
    let got: Vec<_> = p
        .imap_with(sleep_ms, items.clone())
        .timeout(ms(400))
        .submit()
        .unwrap()
        .collect();
    assert_eq!(got.len(), 5);
    for (i, r) in got.into_iter().enumerate() {
        if i == 2 {
            expect_task_timeout(r, ms(400));
        } else {
            assert_eq!(r.unwrap(), items[i]);
        }
    }
    // In chunks of two, the deadline is the chunk's (two items' worth) and the whole chunk fails.
    let got: Vec<_> = p
        .imap_unordered_with(sleep_ms, vec![10u64, 10_000, 20, 30])
        .chunksize(2)
        .timeout(ms(400))
        .submit()
        .unwrap()
        .collect();
    let timed_out = got
        .iter()
        .filter(|r| matches!(r, Err(Error::TaskTimeout { timeout, .. }) if *timeout == ms(800)))
        .count();
    let mut ok: Vec<u64> = got.into_iter().filter_map(Result::ok).collect();
    ok.sort_unstable();
    assert_eq!((timed_out, ok), (2, vec![20, 30]));
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn soft_then_hard(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = mproc::get_context(m)
        .pool()
        .processes(1)
        .soft_timeout(ms(200))
        .task_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // Told at 200 ms, it wraps up long before the hard deadline.
    let (soft, hard, ran) = p.apply(wrap_up_at_soft_deadline, (15_000,)).unwrap();
    assert!(soft && hard);
    assert!((200..15_000).contains(&ran), "ran {ran} ms");
    // What a task sees: both deadlines ahead, the soft one first.
    let (soft_left, hard_left, left) = p.apply(limits_seen, (0,)).unwrap();
    let (soft_left, hard_left) = (soft_left.unwrap(), hard_left.unwrap());
    assert!(
        soft_left <= 200 && soft_left < hard_left,
        "{soft_left} {hard_left}"
    );
    assert!(left.unwrap() <= soft_left);
    // Without limits, nothing.
    let none = p
        .apply_async_with(limits_seen, (0,))
        .no_timeout()
        .submit()
        .unwrap()
        .get_timeout(LONG)
        .unwrap();
    assert_eq!(none, (None, None, None));
    // One that ignores the soft deadline is killed at the hard one.
    let ignored = p
        .apply_async_with(sleep_ms, (10_000,))
        .soft_timeout(ms(100))
        .timeout(ms(500))
        .submit()
        .unwrap();
    expect_task_timeout(ignored.get_timeout(LONG), ms(500));
    // Outside a task, nothing either.
    assert!(mproc::pool::soft_deadline().is_none());
    assert!(!mproc::pool::soft_deadline_passed());
    assert!(mproc::pool::time_left().is_none());
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn a_task_that_blocks_sigterm_is_still_stopped_at_its_deadline(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    let r = p
        .apply_async_with(sleep_with_sigterm_blocked, (10_000,))
        .timeout(ms(300))
        .submit()
        .unwrap();
    expect_task_timeout(r.get_timeout(LONG), ms(300));
    assert_eq!(p.apply(square, (5,)).unwrap(), 25);
    p.close().unwrap();
    p.join().unwrap();
}

#[test]
fn limits_that_cannot_be_met_are_refused() {
    let ctx = mproc::get_context(StartMethod::Fork);
    for b in [
        ctx.pool().processes(1).task_timeout(Duration::ZERO),
        ctx.pool().processes(1).soft_timeout(Duration::ZERO),
        ctx.pool()
            .processes(1)
            .task_timeout(ms(100))
            .soft_timeout(ms(100)),
    ] {
        match b.build() {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("timeout"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let p = pool(StartMethod::Fork, 1);
    let bad = p
        .apply_async_with(square, (1,))
        .timeout(ms(100))
        .soft_timeout(ms(300))
        .submit();
    match bad {
        Err(Error::InvalidArgument(m)) => {
            assert!(
                m.contains("soft_timeout (300ms)") && m.contains("timeout (100ms)"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.map_async_with(square, 0..3u64)
            .timeout(Duration::ZERO)
            .submit(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        p.imap_with(square, 0..3u64).chunksize(0).submit(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn task_timeout_is_its_own_kind() {
    let e = Error::TaskTimeout {
        pid: 42,
        timeout: ms(300),
    };
    assert_eq!(e.kind_name(), "TaskTimeout");
    assert_ne!(e.kind_name(), Error::Timeout.kind_name());
    assert_eq!(
        e.to_string(),
        "the task ran past its deadline of 300ms: its worker 42 was killed and replaced"
    );
}

// ---- Process::join_or_terminate ----

fn sleep_proc(n: u64) {
    std::thread::sleep(ms(n));
}

fn exit_with(code: i32) {
    mproc::exit(code)
}

fn ignore_sigterm(n: u64) {
    common::block_signal_in_this_thread(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(ms(n));
}

#[rstest]
fn join_or_terminate_reports_how_a_process_ended(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    // Finishes in time.
    let out = ctx
        .process(sleep_proc, (20,))
        .run_with_deadline(Duration::from_secs(30))
        .unwrap();
    assert_eq!((out.ending, out.exitcode), (Ending::Finished, 0));
    assert!(out.finished());
    assert!(out.elapsed >= ms(20) && out.elapsed < Duration::from_secs(30));
    let out = ctx
        .process(exit_with, (3,))
        .run_with_deadline(Duration::from_secs(30))
        .unwrap();
    assert_eq!((out.ending, out.exitcode), (Ending::Finished, 3));
    // Overruns: terminated.
    let p = ctx.process(sleep_proc, (20_000,));
    p.start().unwrap();
    let out = p.join_or_terminate(ms(200)).unwrap();
    assert_eq!((out.ending, out.exitcode), (Ending::Terminated, -15));
    assert!(!out.finished());
    assert!(out.elapsed >= ms(200) && out.elapsed < Duration::from_secs(15));
    assert_eq!(p.exitcode().unwrap(), Some(-15));
    assert!(!p.is_alive().unwrap());
    // Ignores SIGTERM: killed after the grace period, and the caller does not hang.
    let p = ctx.process(ignore_sigterm, (20_000,));
    p.start().unwrap();
    let out = p.join_or_terminate_grace(ms(200), ms(200)).unwrap();
    assert_eq!((out.ending, out.exitcode), (Ending::Killed, -9));
    assert!(out.elapsed >= ms(400) && out.elapsed < Duration::from_secs(15));
    // Not started: the error join gives.
    let p = ctx.process(sleep_proc, (1,));
    assert!(matches!(p.join_or_terminate(ms(1)), Err(Error::NotStarted)));
    assert!(common::zombie_children().is_empty());
}

// ---- the examples ----

#[rstest]
fn example_pool_deadline(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = common::run_example("pool_deadline", &["--method", m]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..4],
        &["task 0: 0", "task 1: 1", "task 2: TaskTimeout", "task 3: 9"],
        "{out}"
    );
    let elapsed: u64 = lines[4]
        .strip_prefix("elapsed_ms: ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    // The slow task asked for 10 s; its deadline is 300 ms.
    assert!(elapsed < 8_000, "{out}");
    assert_eq!(lines.len(), 5, "{out}");
}

#[rstest]
fn example_pool_async(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = common::run_example("pool_async", &["--method", m]);
    assert_eq!(
        out,
        "square(7) = 49\nsum of squares below 100 = 328350\nimap: 0 1 4 9 16\nslow task: TaskTimeout\n"
    );
}
