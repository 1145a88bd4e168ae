//! Pool and AsyncResult under every start method: results, Python's lifecycle rules, worker
//! names, initializer, maxtasksperchild, callbacks and iterator order, timeouts, panics,
//! unserialisable results, lost workers, terminate/drop, leaks, the fork warning, and map/imap
//! properties.
//!
//! Tests that depend on the order in which tasks finish do not use sleeps: each such task blocks
//! on a "gate" (a Unix socket the test holds) until the test releases it.

mproc::enable_test_support!();

mod common;

use common::gates::{gated, Gates};

use mproc::{Callbacks, Connection, Error, Pool, StartMethod};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rstest::rstest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

fn pool(m: StartMethod, n: usize) -> Pool {
    mproc::get_context(m)
        .pool()
        .processes(n)
        .build()
        .expect("pool")
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn whoami() -> (u32, String) {
    (std::process::id(), mproc::current_process().name)
}

fn my_pid(_: u32) -> u32 {
    std::process::id()
}

fn boom(x: u32) -> u32 {
    panic!("boom {x}")
}

fn kill_self(_: u32) -> u32 {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn exit_three(_: u32) -> u32 {
    mproc::exit(3)
}

fn triple(x: i64) -> i64 {
    x.wrapping_mul(3).wrapping_sub(1)
}

/// A value whose serialisation always fails.
#[derive(Debug)]
struct Unserialisable;

impl Serialize for Unserialisable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unserialisable refuses"))
    }
}

impl<'de> Deserialize<'de> for Unserialisable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|_| Unserialisable)
    }
}

fn make_unserialisable(_: u32) -> Unserialisable {
    Unserialisable
}

// ---- gates: tasks that finish when the test says so (common::gates) ----

/// As `gated`, but panics with `id` (for error callbacks and map's no-failfast rule).
fn gated_then_panic(path: String, id: u32) -> u32 {
    gated(path, id);
    panic!("gated failure {id}")
}

fn gated_fails_if_one(path: String, id: u32) -> u32 {
    if id == 1 {
        gated_then_panic(path, id)
    } else {
        gated(path, id)
    }
}

fn panic_now(_path: String, id: u32) -> u32 {
    panic!("failure {id}")
}

// ---- basics ----

#[rstest]
fn apply_and_apply_async(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    assert_eq!(p.apply(square, (7,)).unwrap(), 49);
    let rs: Vec<_> = (0..20u64)
        .map(|i| p.apply_async(square, (i,)).unwrap())
        .collect();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get_timeout(LONG).unwrap(), (i * i) as u64);
        assert!(r.ready());
        assert!(r.successful().unwrap());
    }
    assert_eq!(p.apply(add, (40, 2)).unwrap(), 42);
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn map_starmap_and_chunks(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let want: Vec<u64> = (0..100u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..100u64).unwrap(), want);
    assert_eq!(
        p.map_async_with(square, 0..100u64)
            .chunksize(1)
            .submit()
            .and_then(|r| r.get())
            .unwrap(),
        want
    );
    assert_eq!(
        p.map_async_with(square, 0..100u64)
            .chunksize(33)
            .submit()
            .and_then(|r| r.get())
            .unwrap(),
        want
    );
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), vec![]);
    assert_eq!(
        p.starmap(add, vec![(1, 2), (3, 4), (5, 6)]).unwrap(),
        vec![3, 7, 11]
    );
    match p
        .map_async_with(square, 0..3u64)
        .chunksize(0)
        .submit()
        .and_then(|r| r.get())
    {
        Err(Error::InvalidArgument(msg)) => assert_eq!(msg, "Chunksize must be 1+, not 0"),
        other => panic!("{other:?}"),
    }
    let r = p
        .map_async_with(square, 0..10u64)
        .chunksize(3)
        .submit()
        .unwrap();
    assert_eq!(r.get_timeout(LONG).unwrap(), want[..10].to_vec());
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn workers_are_named_as_python_names_them(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let prefix = match m {
        StartMethod::Fork => "ForkPoolWorker-",
        StartMethod::Spawn => "SpawnPoolWorker-",
        StartMethod::Forkserver => "ForkServerPoolWorker-",
    };
    let p = pool(m, 3);
    let workers = p.workers();
    assert_eq!(workers.len(), 3);
    for w in &workers {
        assert!(w.name.starts_with(prefix), "{}", w.name);
        assert!(w.name[prefix.len()..].parse::<u32>().is_ok(), "{}", w.name);
        assert!(w.daemon);
    }
    let (pid, name) = p.apply(whoami, ()).unwrap();
    let w = workers
        .iter()
        .find(|w| w.pid == pid)
        .expect("a worker ran it");
    assert_eq!(name, w.name);
    p.close().unwrap();
    p.join().unwrap();
}

#[test]
fn default_context_pool() {
    let p = Pool::new(2).unwrap();
    assert_eq!(p.processes(), 2);
    assert_eq!(p.apply(square, (3,)).unwrap(), 9);
    let name = p.workers()[0].name.clone();
    assert!(name.contains("PoolWorker-"), "{name}");
    drop(p);
    let p = Pool::new(None).unwrap();
    assert_eq!(p.processes(), mproc::cpu_count());
}

fn reverse_bytes(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

#[rstest]
fn large_arguments_and_results(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut want = big.clone();
    want.reverse();
    let rs: Vec<_> = (0..2)
        .map(|_| p.apply_async(reverse_bytes, (big.clone(),)).unwrap())
        .collect();
    for r in rs {
        assert!(r.get_timeout(LONG).unwrap() == want);
    }
    p.close().unwrap();
    p.join().unwrap();
}

#[test]
fn pools_and_results_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool>();
    assert_send_sync::<mproc::AsyncResult<u64>>();
    fn assert_send<T: Send>() {}
    assert_send::<mproc::IMapIterator<u64>>();
    let p = std::sync::Arc::new(pool(StartMethod::Fork, 2));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let p = std::sync::Arc::clone(&p);
            std::thread::spawn(move || {
                (0..25u64)
                    .map(|i| p.apply(square, (t * 100 + i,)).unwrap())
                    .sum::<u64>()
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let want: u64 = (0..4u64)
        .flat_map(|t| (0..25u64).map(move |i| (t * 100 + i) * (t * 100 + i)))
        .sum();
    assert_eq!(total, want);
}

#[rstest]
fn terminate_from_a_callback_does_not_deadlock(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = std::sync::Arc::new(pool(m, 1));
    let (tx, rx) = mpsc::channel();
    let inner = std::sync::Arc::clone(&p);
    let r = p
        .apply_async_with(square, (2,))
        .callback(move |_: &u64| {
            inner.terminate().unwrap();
            tx.send(()).unwrap();
        })
        .submit()
        .unwrap();
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(r.get_timeout(LONG).unwrap(), 4);
    p.join().unwrap();
    assert!(matches!(p.apply(square, (1,)), Err(Error::PoolNotRunning)));
}

// ---- Python's lifecycle rules ----

#[rstest]
fn lifecycle_errors(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    assert!(matches!(p.join(), Err(Error::PoolStillRunning)));
    p.close().unwrap();
    assert!(matches!(p.apply(square, (1,)), Err(Error::PoolNotRunning)));
    assert!(matches!(
        p.apply_async(square, (1,)),
        Err(Error::PoolNotRunning)
    ));
    assert!(matches!(p.map(square, 0..3u64), Err(Error::PoolNotRunning)));
    assert!(matches!(
        p.imap(square, 0..3u64),
        Err(Error::PoolNotRunning)
    ));
    p.join().unwrap();
    p.join().unwrap();
    assert_eq!(
        Error::PoolNotRunning.to_string(),
        "Pool not running",
        "Python's wording"
    );
}

#[test]
fn invalid_arguments_have_pythons_wording() {
    let ctx = mproc::get_context(StartMethod::Fork);
    match ctx.pool().processes(0).build() {
        Err(Error::InvalidArgument(msg)) => {
            assert_eq!(msg, "Number of processes must be at least 1")
        }
        other => panic!("{other:?}"),
    }
    match ctx.pool().processes(1).maxtasksperchild(0).build() {
        Err(Error::InvalidArgument(msg)) => {
            assert_eq!(msg, "maxtasksperchild must be a positive int or None")
        }
        other => panic!("{other:?}"),
    }
}

#[rstest]
fn capturing_tasks_are_refused(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    let k = 5u64;
    let captures = move |x: u64| x + k;
    assert!(matches!(
        p.apply_async(captures, (1,)),
        Err(Error::NotSpawnable(_))
    ));
    assert!(matches!(
        p.map(captures, 0..2u64),
        Err(Error::NotSpawnable(_))
    ));
    let plain = |x: u64| x + 1;
    assert_eq!(p.apply(plain, (1,)).unwrap(), 2);
    match mproc::get_context(m)
        .pool()
        .processes(1)
        .initializer(move || assert!(k > 0), ())
        .build()
    {
        Err(Error::NotSpawnable(_)) => {}
        other => panic!("{other:?}"),
    }
}

// ---- maxtasksperchild and initializer ----

#[rstest]
fn maxtasksperchild_gives_distinct_worker_pids(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = mproc::get_context(m)
        .pool()
        .processes(2)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let rs: Vec<_> = (0..6)
        .map(|i| p.apply_async(my_pid, (i,)).unwrap())
        .collect();
    let pids: HashSet<u32> = rs.iter().map(|r| r.get_timeout(LONG).unwrap()).collect();
    assert_eq!(pids.len(), 6, "one task per worker: {pids:?}");
    // With two tasks per worker, a map of 8 single-item chunks sees 4 distinct workers.
    let p2 = mproc::get_context(m)
        .pool()
        .processes(1)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = p2
        .map_async_with(my_pid, 0..8u32)
        .chunksize(1)
        .submit()
        .and_then(|r| r.get())
        .unwrap();
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{pids:?}");
    for pair in pids.chunks(2) {
        assert_eq!(pair[0], pair[1], "two tasks each: {pids:?}");
    }
    p.close().unwrap();
    p.join().unwrap();
    p2.close().unwrap();
    p2.join().unwrap();
}

static INIT_CALLS: AtomicU32 = AtomicU32::new(0);

fn init_worker(conn: Connection, tag: String) {
    INIT_CALLS.fetch_add(1, Ordering::SeqCst);
    conn.send(&(std::process::id(), tag)).unwrap();
}

fn init_calls(_: u32) -> (u32, u32) {
    (std::process::id(), INIT_CALLS.load(Ordering::SeqCst))
}

#[rstest]
fn initializer_runs_once_in_every_worker(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let (rx, tx) = mproc::pipe(true).unwrap();
    let p = mproc::get_context(m)
        .pool()
        .processes(3)
        .initializer(init_worker, (tx, "hello".to_string()))
        .build()
        .unwrap();
    let mut inited = HashSet::new();
    for _ in 0..3 {
        assert!(
            rx.poll(Some(LONG)).unwrap(),
            "every worker reports its initializer"
        );
        let (pid, tag): (u32, String) = rx.recv().unwrap();
        assert_eq!(tag, "hello");
        inited.insert(pid);
    }
    let workers: HashSet<u32> = p.workers().iter().map(|w| w.pid).collect();
    assert_eq!(inited, workers);
    for (pid, calls) in p
        .map_async_with(init_calls, 0..30u32)
        .chunksize(1)
        .submit()
        .and_then(|r| r.get())
        .unwrap()
    {
        assert!(workers.contains(&pid));
        assert_eq!(calls, 1, "initializer ran once in {pid}");
    }
    assert_eq!(INIT_CALLS.load(Ordering::SeqCst), 0, "not in the parent");
    p.close().unwrap();
    p.join().unwrap();
}

fn init_with_queue(q: mproc::Queue<u32>) {
    q.put(std::process::id(), true, None).unwrap();
}

#[rstest]
fn a_queue_in_initargs_reaches_every_worker(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<u32>(None).unwrap();
    let p = ctx
        .pool()
        .processes(2)
        .initializer(init_with_queue, (q.clone(),))
        .build()
        .unwrap();
    let mut pids = HashSet::new();
    for _ in 0..2 {
        pids.insert(q.get(true, Some(LONG)).unwrap());
    }
    let workers: HashSet<u32> = p.workers().iter().map(|w| w.pid).collect();
    assert_eq!(pids, workers);
    p.close().unwrap();
    p.join().unwrap();
}

fn failing_init() {
    panic!("init refuses")
}

#[rstest]
fn a_failing_initializer_breaks_the_pool(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = mproc::get_context(m)
        .pool()
        .processes(2)
        .initializer(failing_init, ())
        .build()
        .unwrap();
    match p
        .apply_async(square, (2,))
        .and_then(|r| r.get_timeout(LONG))
    {
        Err(Error::Remote { kind, message, .. }) => {
            assert_eq!(kind, "panic");
            assert!(message.contains("init refuses"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    p.close().unwrap();
    p.join().unwrap();
}

// ---- callbacks, iterator order, timeouts ----

#[rstest]
fn callbacks_run_in_completion_order(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 3);
    let mut gates = Gates::new();
    let (tx, rx) = mpsc::channel::<(String, String)>();
    let mut results = Vec::new();
    for id in 0..3u32 {
        let ok = tx.clone();
        let err = tx.clone();
        let cbs = Callbacks::new()
            .callback(move |v: &u32| {
                let thread = std::thread::current().name().unwrap_or("").to_string();
                ok.send((format!("ok {v}"), thread)).unwrap();
            })
            .error_callback(move |e: &Error| {
                err.send((format!("err {}", e.kind_name()), String::new()))
                    .unwrap();
            });
        results.push(
            p.apply_async_with(gated_fails_if_one, (gates.path(), id))
                .callbacks(cbs)
                .submit()
                .unwrap(),
        );
    }
    gates.wait_for(&[0, 1, 2]);
    let mut seen = Vec::new();
    for id in [2u32, 0, 1] {
        gates.release(id);
        let (event, thread) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        if event.starts_with("ok") {
            assert_eq!(thread, "mproc-pool", "callbacks run in the result thread");
        }
        seen.push(event);
        assert!(results[id as usize].wait_timeout(LONG));
    }
    assert_eq!(seen, vec!["ok 2", "ok 0", "err Remote"]);
    assert_eq!(results[2].get_timeout(LONG).unwrap(), 2);
    assert!(!results[1].successful().unwrap());
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn imap_is_in_input_order_and_imap_unordered_in_completion_order(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 3);
    let mut gates = Gates::new();
    let path = gates.path();
    let mut unordered = p
        .imap_unordered(
            |(path, id): (String, u32)| gated(path, id),
            (0..3u32).map(|i| (path.clone(), i)),
        )
        .unwrap();
    gates.wait_for(&[0, 1, 2]);
    for id in [2u32, 0, 1] {
        gates.release(id);
        assert_eq!(unordered.next_timeout(LONG).unwrap().unwrap(), id);
    }
    assert!(unordered.next().is_none());

    let mut ordered = p
        .imap(
            |(path, id): (String, u32)| gated(path, id + 10),
            (0..3u32).map(|i| (path.clone(), i)),
        )
        .unwrap();
    gates.wait_for(&[10, 11, 12]);
    gates.release(12);
    // Item 0 is still held at its gate: the iterator cannot move on.
    assert!(matches!(
        ordered.next_timeout(Duration::from_millis(50)),
        Some(Err(Error::Timeout))
    ));
    gates.release(11);
    gates.release(10);
    let got: Vec<u32> = ordered.map(|r| r.unwrap()).collect();
    assert_eq!(got, vec![10, 11, 12]);
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn get_wait_ready_successful_and_timeouts(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    let mut gates = Gates::new();
    let r = p.apply_async(gated, (gates.path(), 7)).unwrap();
    gates.wait_for(&[7]);
    assert!(matches!(
        r.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(!r.wait_timeout(Duration::from_millis(20)));
    assert!(!r.ready());
    assert!(matches!(r.successful(), Err(Error::NotReady)));
    gates.release(7);
    assert!(r.wait_timeout(LONG));
    assert!(r.ready());
    assert!(r.successful().unwrap());
    assert_eq!(r.try_get().unwrap(), 7);
    assert!(matches!(r.get(), Err(Error::ResultTaken)));
    assert!(matches!(r.try_get(), Err(Error::ResultTaken)));
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn map_raises_the_first_error_only_after_every_task_finished(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let mut gates = Gates::new();
    let path = gates.path();
    fn item(path: String, id: u32) -> u32 {
        if id == 0 {
            panic_now(path, id)
        } else if id == 3 {
            gated_then_panic(path, id)
        } else if id == 1 {
            gated(path, id)
        } else {
            id
        }
    }
    let r = p
        .starmap_async_with(item, (0..4u32).map(|i| (path.clone(), i)))
        .chunksize(1)
        .submit()
        .unwrap();
    gates.wait_for(&[1, 3]);
    // Item 0 failed already, but items 1 and 3 are still running: no result yet.
    assert!(matches!(
        r.get_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    gates.release(3);
    gates.release(1);
    match r.get_timeout(LONG) {
        Err(Error::Remote { message, .. }) => assert_eq!(message, "failure 0"),
        other => panic!("{other:?}"),
    }
    p.close().unwrap();
    p.join().unwrap();
}

// ---- failures inside tasks ----

#[rstest]
fn a_panic_comes_back_as_remote_with_a_backtrace(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    let r = p.apply_async(boom, (7,)).unwrap();
    match r.get_timeout(LONG) {
        Err(Error::Remote {
            kind,
            message,
            traceback,
        }) => {
            assert_eq!(kind, "panic");
            assert_eq!(message, "boom 7");
            assert!(traceback.contains("panicked at"), "{traceback}");
            assert!(traceback.contains("pool.rs"), "{traceback}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!r.successful().unwrap());
    // The worker survived its task's panic.
    let before: Vec<u32> = p.workers().iter().map(|w| w.pid).collect();
    assert_eq!(p.apply(square, (3,)).unwrap(), 9);
    let after: Vec<u32> = p.workers().iter().map(|w| w.pid).collect();
    assert_eq!(before, after);
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn an_unserialisable_result_fails_only_that_result(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    match p.apply(make_unserialisable, (1,)) {
        Err(Error::Serialize(msg)) => assert!(msg.contains("Unserialisable refuses"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.apply(square, (5,)).unwrap(), 25);
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn a_killed_worker_fails_exactly_its_task(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let before: HashSet<u32> = p.workers().iter().map(|w| w.pid).collect();
    let ok1 = p.apply_async(square, (2,)).unwrap();
    let lost = p.apply_async(kill_self, (0,)).unwrap();
    let ok2: Vec<_> = (3..10u64)
        .map(|i| p.apply_async(square, (i,)).unwrap())
        .collect();
    match lost.get_timeout(LONG) {
        Err(Error::WorkerLost { pid, exitcode }) => {
            assert!(before.contains(&pid), "{pid} was a worker");
            assert_eq!(exitcode, -9);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ok1.get_timeout(LONG).unwrap(), 4);
    for (i, r) in ok2.iter().enumerate() {
        assert_eq!(r.get_timeout(LONG).unwrap(), ((i + 3) * (i + 3)) as u64);
    }
    // Replaced: the pool keeps serving with two workers.
    assert_eq!(
        p.map_async_with(square, 0..20u64)
            .chunksize(1)
            .submit()
            .and_then(|r| r.get())
            .unwrap()
            .len(),
        20
    );
    assert_eq!(p.workers().len(), 2);
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn a_worker_that_exits_fails_its_task_with_its_exit_code(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    match p.apply(exit_three, (0,)) {
        Err(Error::WorkerLost { exitcode, .. }) => assert_eq!(exitcode, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.apply(square, (4,)).unwrap(), 16);
    p.close().unwrap();
    p.join().unwrap();
}

/// Kills `pid` and waits (at most 30 s) until the kernel has ended it (a zombie, or gone), so
/// that it is idle for good: a task written to its socket afterwards is never read.
fn kill_and_wait(pid: u32) {
    // A pidfd (it works for processes that are not our children) names exactly this process,
    // and turns readable when it has ended: wait for exactly that event.
    let Some(pidfd) = common::pidfd(pid) else {
        return; // already gone
    };
    rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL).unwrap();
    assert!(
        common::wait_ended(&pidfd, Duration::from_secs(30)),
        "{pid} survived SIGKILL"
    );
}

#[rstest]
fn a_worker_killed_while_idle_never_wedges_the_pool(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    assert_eq!(p.apply(square, (2,)).unwrap(), 4);
    let victim = p.workers()[0].pid;
    kill_and_wait(victim);
    let r = p.apply_async(square, (6,)).unwrap();
    assert_eq!(r.get_timeout(LONG).unwrap(), 36);
    // And again, right after the replacement started (it may not be ready yet).
    let next = p.workers().iter().map(|w| w.pid).find(|&pid| pid != victim);
    if let Some(pid) = next {
        kill_and_wait(pid);
    }
    assert_eq!(
        p.apply_async(square, (7,))
            .unwrap()
            .get_timeout(LONG)
            .unwrap(),
        49
    );
    p.close().unwrap();
    p.join().unwrap();
    assert!(common::zombie_children().is_empty());
}

#[rstest]
fn killing_a_worker_mid_map_loses_only_its_chunk(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    fn maybe_die(x: u32) -> u32 {
        if x == 13 {
            kill_self(x);
        }
        x
    }
    let p = pool(m, 2);
    let results: Vec<_> = p.imap(maybe_die, 0..40u32).unwrap().collect::<Vec<_>>();
    assert_eq!(results.len(), 40);
    for (i, r) in results.into_iter().enumerate() {
        if i == 13 {
            assert!(matches!(r, Err(Error::WorkerLost { .. })), "{r:?}");
        } else {
            assert_eq!(r.unwrap(), i as u32);
        }
    }
    p.close().unwrap();
    p.join().unwrap();
}

fn sleep_then_echo(ms: u64, x: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    x
}

#[rstest]
fn killing_workers_at_any_moment_never_hangs_get_or_join(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = std::sync::Arc::new(pool(m, 2));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (p, stop) = (std::sync::Arc::clone(&p), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut kills = 0u32;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                // Load generation, not synchronisation: kill some worker every few ms.
                std::thread::sleep(Duration::from_millis(3 + n % 7));
                n += 1;
                let workers = p.workers();
                if let Some(w) = workers.get(n as usize % workers.len().max(1)) {
                    if common::kill(w.pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                        kills += 1;
                    }
                }
            }
            kills
        })
    };
    let total = 150u32;
    // A map fails as a whole if one of its tasks was lost, but it always ends.
    let whole = p
        .starmap_async_with(sleep_then_echo, (0..total).map(|i| (u64::from(i % 3), i)))
        .chunksize(1)
        .submit()
        .unwrap();
    match whole.get_timeout(Duration::from_secs(60)) {
        Ok(v) => assert_eq!(v, (0..total).collect::<Vec<_>>()),
        Err(e) => assert!(matches!(e, Error::WorkerLost { .. }), "{e:?}"),
    }
    // Item by item: every result is right or lost with its worker.
    let mut items = p
        .imap(
            |(ms, x): (u64, u32)| sleep_then_echo(ms, x),
            (0..total).map(|i| (u64::from(i % 3), i)),
        )
        .unwrap();
    let mut lost = 0;
    for i in 0..total {
        match items.next_timeout(Duration::from_secs(60)) {
            Some(Ok(x)) => assert_eq!(x, i),
            Some(Err(Error::WorkerLost { .. })) => lost += 1,
            other => panic!("item {i}: {other:?}"),
        }
    }
    assert!(items.next().is_none());
    stop.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert!(kills > 0, "the killer never struck");
    assert!(lost <= kills, "{lost} lost, {kills} kills");
    // Still serving, and close + join end.
    assert_eq!(p.apply(square, (9,)).unwrap(), 81);
    p.close().unwrap();
    p.join().unwrap();
    assert!(common::zombie_children().is_empty());
}

// ---- terminate, drop, leaks ----

#[rstest]
fn terminate_fails_running_and_queued_tasks(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    let mut gates = Gates::new();
    let running = p.apply_async(gated, (gates.path(), 1)).unwrap();
    let queued: Vec<_> = (0..3u64)
        .map(|i| p.apply_async(square, (i,)).unwrap())
        .collect();
    gates.wait_for(&[1]);
    let workers = p.workers();
    p.terminate().unwrap();
    assert!(matches!(
        running.get_timeout(LONG),
        Err(Error::PoolTerminated)
    ));
    for r in &queued {
        assert!(matches!(r.get_timeout(LONG), Err(Error::PoolTerminated)));
    }
    p.join().unwrap();
    assert!(matches!(p.apply(square, (1,)), Err(Error::PoolNotRunning)));
    for w in workers {
        assert!(!std::path::Path::new(&format!("/proc/{}", w.pid)).exists());
    }
    assert!(common::zombie_children().is_empty());
}

#[rstest]
fn dropping_a_running_pool_terminates_it(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let mut gates = Gates::new();
    let r = p.apply_async(gated, (gates.path(), 1)).unwrap();
    gates.wait_for(&[1]);
    let workers = p.workers();
    drop(p);
    assert!(matches!(r.get_timeout(LONG), Err(Error::PoolTerminated)));
    for w in workers {
        assert!(!std::path::Path::new(&format!("/proc/{}", w.pid)).exists());
    }
    assert!(common::zombie_children().is_empty());
}

#[rstest]
fn a_pool_lifecycle_leaks_nothing(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // Warm up: the forkserver (for that method) stays up once started.
    let p = pool(m, 2);
    p.close().unwrap();
    p.join().unwrap();
    let fds = common::open_fds();
    for _ in 0..3 {
        let p = pool(m, 2);
        assert_eq!(p.map(square, 0..50u64).unwrap().len(), 50);
        p.close().unwrap();
        p.join().unwrap();
        let p = pool(m, 2);
        p.apply(square, (1,)).unwrap();
        p.terminate().unwrap();
    }
    assert_eq!(common::open_fds(), fds);
    assert!(common::zombie_children().is_empty());
    assert!(mproc::active_children().is_empty());
}

// ---- the fork warning ignores the pool's own threads ----

fn noop() {}

/// Runs in a fork child, which starts single-threaded: a fork pool's handler thread must not
/// trigger the fork warning; a user thread must.
fn fork_warning_scenario() {
    mproc::set_fork_warning(true);
    let p = pool(StartMethod::Fork, 2);
    assert_eq!(p.apply(square, (3,)).unwrap(), 9);
    // The handler thread forks a replacement worker too.
    kill_and_wait(p.workers()[0].pid);
    assert_eq!(p.apply(square, (4,)).unwrap(), 16);
    let c = mproc::get_context(StartMethod::Fork).process(noop, ());
    c.start().unwrap();
    c.join(None).unwrap();
    eprintln!("STAGE: user thread");
    let (tx, rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    let c = mproc::get_context(StartMethod::Fork).process(noop, ());
    c.start().unwrap();
    c.join(None).unwrap();
    tx.send(()).unwrap();
    t.join().unwrap().unwrap();
    p.close().unwrap();
    p.join().unwrap();
}

#[test]
fn pool_threads_do_not_trigger_the_fork_warning() {
    if common::is_inner() {
        // The test harness runs this on a thread of its own: start from a fresh fork child.
        mproc::set_fork_warning(false);
        let c = mproc::get_context(StartMethod::Fork).process(fork_warning_scenario, ());
        c.start().unwrap();
        c.join(None).unwrap();
        assert_eq!(c.exitcode().unwrap(), Some(0));
        return;
    }
    let out = common::run_inner("pool_threads_do_not_trigger_the_fork_warning", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (before, after) = stderr.split_once("STAGE: user thread").expect("stages");
    assert!(!before.contains("multi-threaded"), "{stderr}");
    assert_eq!(after.matches("is multi-threaded").count(), 1, "{stderr}");
}

fn print_from_a_thread(x: u32) -> u32 {
    let t = std::thread::spawn(move || {
        println!("worker thread prints {x}");
        eprintln!("worker thread prints {x}");
    });
    t.join().unwrap();
    println!("task prints {x}");
    x
}

#[test]
fn fork_workers_print_while_user_threads_print() {
    // A user thread prints all the time while the pool forks workers (maxtasksperchild = 1: a
    // new worker per task, forked by the pool's own thread); the workers and threads they start
    // print too. Nothing may hang on a standard stream's lock.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let printer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                println!("user thread line {n}");
                eprintln!("user thread line {n}");
                n += 1;
            }
        })
    };
    let p = mproc::get_context(StartMethod::Fork)
        .pool()
        .processes(2)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let rs: Vec<_> = (0..20u32)
        .map(|i| p.apply_async(print_from_a_thread, (i,)).unwrap())
        .collect();
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.get_timeout(LONG).unwrap(), i as u32);
    }
    stop.store(true, Ordering::SeqCst);
    printer.join().unwrap();
    p.close().unwrap();
    p.join().unwrap();
}

// ---- properties ----

#[rstest]
fn map_equals_the_sequential_map(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let mut runner = TestRunner::new(Config::with_cases(16));
    let strategy = (
        proptest::collection::vec(any::<i64>(), 0..300),
        proptest::option::of(1usize..40),
    );
    runner
        .run(&strategy, |(v, chunksize)| {
            let want: Vec<i64> = v.iter().map(|&x| triple(x)).collect();
            let mapped = match chunksize {
                Some(c) => p.map_async_with(triple, v.clone()).chunksize(c).submit(),
                None => p.map_async(triple, v.clone()),
            };
            prop_assert_eq!(mapped.unwrap().get().unwrap(), want.clone());
            let c = chunksize.unwrap_or(1);
            let got: Vec<i64> = p
                .imap_with(triple, v.clone())
                .chunksize(c)
                .submit()
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            prop_assert_eq!(got, want);
            Ok(())
        })
        .unwrap();
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn imap_unordered_yields_the_same_multiset(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let mut runner = TestRunner::new(Config::with_cases(16));
    let strategy = (
        proptest::collection::vec(-1000i64..1000, 0..300),
        1usize..40,
    );
    runner
        .run(&strategy, |(v, chunksize)| {
            let mut want: Vec<i64> = v.iter().map(|&x| triple(x)).collect();
            let mut got: Vec<i64> = p
                .imap_unordered_with(triple, v.clone())
                .chunksize(chunksize)
                .submit()
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            want.sort_unstable();
            got.sort_unstable();
            prop_assert_eq!(got, want);
            Ok(())
        })
        .unwrap();
    p.close().unwrap();
    p.join().unwrap();
}

// ---- the examples ----

fn example(name: &str, args: &[&str]) -> String {
    common::run_example(name, args)
}

#[rstest]
fn example_pool_basic(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = example("pool_basic", &["--method", m, "--max-sleep-ms", "200"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 13, "{out}");
    assert!(lines[0].starts_with("Parent process "), "{out}");
    assert!(
        lines.contains(&"Waiting for all subprocesses done..."),
        "{out}"
    );
    assert_eq!(lines[12], "All subprocesses done.");
    for i in 0..5 {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("Run task {i} (")))
                .count(),
            1,
            "{out}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("Task {i} runs ")))
                .count(),
            1,
            "{out}"
        );
    }
    // Task 4 starts only once one of the first four has ended.
    let start4 = lines
        .iter()
        .position(|l| l.starts_with("Run task 4 ("))
        .unwrap();
    let first_end = lines.iter().position(|l| l.starts_with("Task ")).unwrap();
    assert!(first_end < start4, "{out}");
}

#[rstest]
fn example_get_before_join_and_join_before_get(#[values("fork", "spawn", "forkserver")] m: &str) {
    for name in ["get_before_join", "join_before_get"] {
        let out = example(name, &["--method", m, "--max-sleep-ms", "50"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..5], &["0", "1", "4", "9", "16"], "{name}: {out}");
        assert!(lines[5].starts_with("elapsed_ms: "), "{name}: {out}");
        assert_eq!(lines.len(), 6, "{name}: {out}");
    }
}

#[rstest]
fn example_pool_worker_killed(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = example("pool_worker_killed", &["--method", m]);
    assert_eq!(out, "1\nlost: WorkerLost\n4\n9\n");
}
