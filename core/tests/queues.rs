//! Queues under every start method: Python's queue cases (timeouts, bounded puts, close,
//! task_done/join), data put by a process that then exits, items larger than the ring, and a
//! property: any interleaving of puts from several producers reaches the consumers as exactly
//! the same multiset, each producer's items in its own order. Then what issue 13 found: an
//! unbounded queue is unbounded (more than its ring, before any reader exists), `put_nowait` on
//! it is never `Full`, and producers and consumers killed at random moments (seeded) lose nothing
//! that was accepted, tear nothing, and leave `qsize` exact.

mproc::enable_test_support!();

use mproc::{Error, Event, JoinableQueue, Queue, RawArray, StartMethod};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rstest::rstest;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

fn put_many(q: Queue<String>, n: u32) -> mproc::Result<()> {
    for i in 0..n {
        q.put(format!("item {i:05} {}", "x".repeat(80)), true, None)?;
    }
    Ok(())
}

#[rstest]
fn data_put_by_an_exited_child_survives_join(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // CPython deadlocks here when the items exceed the pipe buffer: the child's feeder thread
    // cannot flush, so the child never exits and join() never returns.
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<String>(None).unwrap();
    let p = ctx.process(put_many, (q.clone(), 10_000));
    p.start().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert_eq!(q.qsize(), 10_000);
    for i in 0..10_000 {
        let s = q.get(true, LONG).unwrap();
        assert!(s.starts_with(&format!("item {i:05} ")), "{s}");
    }
    assert!(q.empty());
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
}

#[rstest]
fn get_timeout_raises_empty_after_the_timeout(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let q = mproc::get_context(m).queue::<u8>(None).unwrap();
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    assert!(matches!(q.get(false, LONG), Err(Error::Empty)));
    let t = Instant::now();
    assert!(matches!(
        q.get(true, Some(Duration::from_millis(150))),
        Err(Error::Empty)
    ));
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[rstest]
fn bounded_queue_is_full_and_hands_the_item_back(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let q = mproc::get_context(m).queue::<String>(Some(2)).unwrap();
    assert_eq!(q.maxsize(), Some(2));
    q.put("a".into(), true, None).unwrap();
    q.put_nowait("b".into()).unwrap();
    assert!(q.full());
    assert_eq!(q.qsize(), 2);
    let e = q.put_nowait("c".into()).unwrap_err();
    assert!(matches!(e.error, Error::Full));
    assert_eq!(e.into_inner(), "c");
    let t = Instant::now();
    let e = q
        .put("d".into(), true, Some(Duration::from_millis(150)))
        .unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(e.error.kind_name(), "Full");
    let err: Error = e.into();
    assert!(matches!(err, Error::Full));
    assert_eq!(q.get_nowait().unwrap(), "a");
    assert!(!q.full());
    q.put_nowait("e".into()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), "b");
    assert_eq!(q.get_nowait().unwrap(), "e");
    assert!(q.empty());
}

fn put_two_then_signal(q: Queue<u32>, put_done: Event) -> mproc::Result<()> {
    q.put(2, true, None)?;
    put_done.set();
    Ok(())
}

#[rstest]
fn bounded_put_blocks_until_a_get(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<u32>(Some(1)).unwrap();
    let done = ctx.event().unwrap();
    q.put(1, true, None).unwrap();
    let p = ctx.process(put_two_then_signal, (q.clone(), done.clone()));
    p.start().unwrap();
    // The child's put cannot complete while the queue is full.
    assert!(!done.wait(Some(Duration::from_millis(300))).unwrap());
    assert_eq!(q.get(true, LONG).unwrap(), 1);
    assert!(done.wait(LONG).unwrap());
    assert_eq!(q.get(true, LONG).unwrap(), 2);
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

#[rstest]
fn a_closed_queue_refuses_use(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<u32>(None).unwrap();
    let other = ctx.queue::<u32>(None).unwrap();
    q.put(1, true, None).unwrap();
    q.close();
    assert!(q.is_closed());
    let e = q.put(7, true, None).unwrap_err();
    assert!(matches!(e.error, Error::Closed));
    assert_eq!(e.item, 7);
    assert!(matches!(q.get(true, None), Err(Error::Closed)));
    q.join_thread();
    if m != StartMethod::Fork {
        // A closed handle cannot be serialised for a child (a fork child inherits it closed).
        let p = ctx.process(count_items, (q.clone(), other));
        assert!(matches!(p.start(), Err(Error::Serialize(_))));
    }
    let s = ctx.simple_queue::<u8>().unwrap();
    s.put(3).unwrap();
    assert!(!s.empty());
    assert_eq!(s.get().unwrap(), 3);
    s.close();
    assert!(matches!(s.get(), Err(Error::Closed)));
}

fn count_items(_q: Queue<u32>, _o: Queue<u32>) {}

fn work_and_mark_done(q: JoinableQueue<u64>, results: Queue<u64>) -> mproc::Result<()> {
    loop {
        let v = q.get(true, None)?;
        if v == u64::MAX {
            q.task_done()?;
            return Ok(());
        }
        results.put(v * v, true, None)?;
        q.task_done()?;
    }
}

#[rstest]
fn task_done_and_join(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.joinable_queue::<u64>(None).unwrap();
    let results = ctx.queue::<u64>(None).unwrap();
    assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
    q.join(Some(Duration::ZERO)).unwrap();
    for i in 0..50 {
        q.put(i, true, None).unwrap();
    }
    assert!(matches!(
        q.join(Some(Duration::from_millis(50))),
        Err(Error::Timeout)
    ));
    let p = ctx.process(work_and_mark_done, (q.clone(), results.clone()));
    p.start().unwrap();
    q.join(LONG).unwrap();
    // Every task done: every result is there.
    let mut got: Vec<u64> = (0..50).map(|_| results.get_nowait().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..50u64).map(|i| i * i).collect::<Vec<_>>());
    q.put(u64::MAX, true, None).unwrap();
    q.join(LONG).unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
}

fn put_big(q: Queue<Vec<u8>>, sizes: Vec<usize>) -> mproc::Result<()> {
    for (k, n) in sizes.into_iter().enumerate() {
        q.put((0..n).map(|i| (i * 31 + k) as u8).collect(), true, None)?;
    }
    Ok(())
}

#[rstest]
fn items_larger_than_the_ring_arrive_whole(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue_with_capacity::<Vec<u8>>(None, 8192).unwrap();
    let sizes = vec![100_000, 3, 5000, 2047, 2048, 2049, 65_536, 0];
    let p = ctx.process(put_big, (q.clone(), sizes.clone()));
    p.start().unwrap();
    for (k, n) in sizes.iter().copied().enumerate() {
        let v = q.get(true, LONG).unwrap();
        assert_eq!(v.len(), n);
        assert!(v.iter().enumerate().all(|(i, &b)| b == (i * 31 + k) as u8));
    }
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert!(q.empty());
}

#[test]
fn a_fork_queue_cannot_go_to_a_spawn_child() {
    let fork_q = mproc::get_context(StartMethod::Fork)
        .queue::<u32>(None)
        .unwrap();
    let other = mproc::get_context(StartMethod::Spawn)
        .queue::<u32>(None)
        .unwrap();
    for m in [StartMethod::Spawn, StartMethod::Forkserver] {
        let p = mproc::get_context(m).process(count_items, (fork_q.clone(), other.clone()));
        match p.start() {
            Err(Error::ContextMismatch { object, process }) => {
                assert_eq!(object, StartMethod::Fork);
                assert_eq!(process, m);
            }
            other => panic!("expected ContextMismatch, got {other:?}"),
        }
    }
    // Spawn-context objects go to any process, fork children included.
    let spawn_q = mproc::get_context(StartMethod::Spawn)
        .queue::<u32>(None)
        .unwrap();
    let p = mproc::get_context(StartMethod::Fork).process(count_items, (spawn_q, other));
    p.start().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Many producers and consumers.

type Item = (u32, u32, u32); // (producer, sequence number, payload)

fn producer(q: Queue<Option<Item>>, id: u32, items: Vec<u32>) -> mproc::Result<()> {
    for (seq, v) in items.into_iter().enumerate() {
        q.put(Some((id, seq as u32, v)), true, None)?;
    }
    Ok(())
}

fn consumer(q: Queue<Option<Item>>, out: Queue<(u32, Item)>, id: u32) -> mproc::Result<()> {
    while let Some(item) = q.get(true, None)? {
        out.put((id, item), true, None)?;
    }
    Ok(())
}

fn check_interleaving(m: StartMethod, producers: &[Vec<u32>], consumers: u32) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue_with_capacity::<Option<Item>>(None, 4096).unwrap();
    let out = ctx.queue::<(u32, Item)>(None).unwrap();
    let cons: Vec<_> = (0..consumers)
        .map(|c| {
            let p = ctx.process(consumer, (q.clone(), out.clone(), c));
            p.start().unwrap();
            p
        })
        .collect();
    let prods: Vec<_> = producers
        .iter()
        .enumerate()
        .map(|(i, items)| {
            let p = ctx.process(producer, (q.clone(), i as u32, items.clone()));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &prods {
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    for _ in 0..consumers {
        q.put(None, true, None).unwrap();
    }
    for p in &cons {
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    let total: usize = producers.iter().map(Vec::len).sum();
    let mut received = Vec::with_capacity(total);
    while let Ok(x) = out.get_nowait() {
        received.push(x);
    }
    // Exactly the same multiset...
    let mut got: Vec<Item> = received.iter().map(|&(_, it)| it).collect();
    got.sort_unstable();
    let mut want: Vec<Item> = producers
        .iter()
        .enumerate()
        .flat_map(|(p, items)| {
            items
                .iter()
                .enumerate()
                .map(move |(s, &v)| (p as u32, s as u32, v))
        })
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    // ...and each consumer saw each producer's items in the producer's order.
    let mut last: HashMap<(u32, u32), u32> = HashMap::new();
    for (c, (p, s, _)) in received {
        if let Some(prev) = last.insert((c, p), s) {
            assert!(
                prev < s,
                "consumer {c} got item {s} of producer {p} after {prev}"
            );
        }
    }
    assert!(q.empty());
}

#[rstest]
fn any_interleaving_of_puts_is_received_exactly_once(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(prop::collection::vec(any::<u32>(), 0..300), 1..5),
        1u32..4,
    );
    runner
        .run(&strategy, |(producers, consumers)| {
            check_interleaving(m, &producers, consumers);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Processes killed in the middle of a put or a get do not wedge the queue.

fn signal_then_get(q: Queue<u32>, started: Event, done: Event) -> mproc::Result<()> {
    started.set();
    q.get(true, None)?;
    done.set();
    Ok(())
}

fn signal_then_put(q: Queue<u32>, started: Event, done: Event) -> mproc::Result<()> {
    started.set();
    q.put(2, true, None)?;
    done.set();
    Ok(())
}

fn kill_when_blocked(p: &mproc::Process, started: &Event, done: &Event) {
    assert!(started.wait(LONG).unwrap());
    // The child is blocked inside the queue (this wait is a check, not a synchronisation: if the
    // child had not blocked it would have set `done`).
    assert!(!done.wait(Some(Duration::from_millis(300))).unwrap());
    p.kill().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-9));
}

#[rstest]
fn a_consumer_killed_in_get_does_not_wedge_the_queue(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<u32>(None).unwrap();
    let (started, done) = (ctx.event().unwrap(), ctx.event().unwrap());
    let p = ctx.process(signal_then_get, (q.clone(), started.clone(), done.clone()));
    p.start().unwrap();
    kill_when_blocked(&p, &started, &done);
    q.put(5, true, None).unwrap();
    assert_eq!(q.get(true, LONG).unwrap(), 5);
}

#[rstest]
fn a_producer_killed_in_a_blocked_put_does_not_wedge_the_queue(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<u32>(Some(1)).unwrap();
    let (started, done) = (ctx.event().unwrap(), ctx.event().unwrap());
    q.put(1, true, None).unwrap();
    let p = ctx.process(signal_then_put, (q.clone(), started.clone(), done.clone()));
    p.start().unwrap();
    kill_when_blocked(&p, &started, &done);
    assert_eq!(q.get(true, LONG).unwrap(), 1);
    // The killed put was never accepted.
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    q.put(3, true, LONG).unwrap();
    assert_eq!(q.get(true, LONG).unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// An unbounded queue is unbounded.

fn item_20k(i: u32) -> Vec<u8> {
    let mut v: Vec<u8> = (0..20_000u32).map(|k| (k * 7 + i) as u8).collect();
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn put_250_then_exit(q: Queue<Vec<u8>>, first: u32) -> mproc::Result<()> {
    for i in first..first + 250 {
        // Never blocks: a Full here fails the child.
        q.put(item_20k(i), false, None)?;
    }
    Ok(())
}

fn drain_20k(q: Queue<Vec<u8>>, out: Queue<(u32, u32, bool)>, id: u32) -> mproc::Result<()> {
    loop {
        let v = q.get(true, Some(Duration::from_secs(30)))?;
        if v.is_empty() {
            return Ok(());
        }
        let i = u32::from_le_bytes(v[..4].try_into().unwrap());
        out.put((id, i, v == item_20k(i)), true, None)?;
    }
}

#[rstest]
fn an_unbounded_queue_holds_more_than_its_ring_before_any_reader(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // Before: with no reader yet, the 211th put of 20 kB was Full (a blocking put waited for
    // ever): the 4 MiB ring was the bound.
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<Vec<u8>>(None).unwrap();
    for i in 0..250 {
        if let Err(e) = q.put_nowait(item_20k(i)) {
            panic!("put {i} of 250: {}", e.error);
        }
    }
    assert_eq!(q.qsize(), 250);
    // A child puts 250 more and exits at once: what it put lives on in segments it made, which
    // reach consumers started only afterwards.
    let p = ctx.process(put_250_then_exit, (q.clone(), 1000));
    p.start().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert_eq!(q.qsize(), 500);
    let out = ctx.queue::<(u32, u32, bool)>(None).unwrap();
    let cons: Vec<_> = (0..2)
        .map(|c| {
            let p = ctx.process(drain_20k, (q.clone(), out.clone(), c));
            p.start().unwrap();
            p
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..500 {
        got.push(out.get(true, LONG).unwrap());
    }
    for _ in &cons {
        q.put(Vec::new(), true, None).unwrap();
    }
    for p in &cons {
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    assert!(got.iter().all(|&(_, _, whole)| whole), "a torn item");
    // Each consumer got its items in the order they were put.
    for c in 0..2 {
        let mine: Vec<u32> = got.iter().filter(|g| g.0 == c).map(|g| g.1).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "consumer {c}: {mine:?}"
        );
    }
    let mut ids: Vec<u32> = got.iter().map(|g| g.1).collect();
    ids.sort_unstable();
    let want: Vec<u32> = (0..250).chain(1000..1250).collect();
    assert_eq!(ids, want);
    assert!(q.empty());
}

fn count_whole_20k(q: Queue<Vec<u8>>, n: u32, out: Queue<u32>) -> mproc::Result<()> {
    let mut whole = 0;
    for i in 0..n {
        if q.get(true, Some(Duration::from_secs(30)))? == item_20k(i) {
            whole += 1;
        }
    }
    out.put(whole, true, None)?;
    Ok(())
}

#[rstest]
fn segments_made_after_a_child_started_reach_it(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // The child got the queue (its descriptor) at start; the overflow segments are made later,
    // here, while it waits.
    let ctx = mproc::get_context(m);
    let q = ctx.queue_with_capacity::<Vec<u8>>(None, 64 << 10).unwrap();
    let out = ctx.queue::<u32>(None).unwrap();
    let p = ctx.process(count_whole_20k, (q.clone(), 300, out.clone()));
    p.start().unwrap();
    for i in 0..300 {
        q.put_nowait(item_20k(i)).unwrap();
    }
    assert_eq!(out.get(true, LONG).unwrap(), 300);
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert!(q.empty());
}

/// The bytes of memory the queues of this process hold (their `memfd`s' allocated blocks).
fn queue_memory() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:mproc-queue"))
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|md| md.blocks() * 512)
        .sum()
}

#[test]
fn overflow_memory_is_given_back_once_read() {
    let ctx = mproc::get_context(StartMethod::Spawn);
    let q = ctx.queue_with_capacity::<Vec<u8>>(None, 64 << 10).unwrap();
    let item = |i: u32| vec![i as u8; 100_000];
    for i in 0..40 {
        q.put_nowait(item(i)).unwrap();
    }
    let held = queue_memory();
    assert!(held >= 4_000_000, "4 MB in flight, {held} bytes held");
    for i in 0..40 {
        assert_eq!(q.get_nowait().unwrap(), item(i));
    }
    assert!(q.get_nowait().is_err());
    // Back in the ring: only its pages (64 KiB) and the header are left.
    let left = queue_memory();
    assert!(
        left <= 256 << 10,
        "{left} bytes still held after reading everything"
    );
    for i in 0..1000 {
        q.put_nowait(vec![i as u8; 100]).unwrap();
        assert_eq!(q.get_nowait().unwrap(), vec![i as u8; 100]);
    }
    assert!(queue_memory() <= 256 << 10);
}

fn put_nowait_many(
    q: Queue<u64>,
    go: Event,
    id: u64,
    n: u64,
    full: RawArray<u64>,
) -> mproc::Result<()> {
    go.wait(None)?;
    for i in 0..n {
        if let Err(e) = q.put_nowait(id << 32 | i) {
            if !matches!(e.error, Error::Full) {
                return Err(e.into());
            }
            full.set(id as usize, full.get(id as usize)? + 1)?;
            q.put(e.item, true, None)?;
        }
    }
    Ok(())
}

#[rstest]
fn put_nowait_on_an_unbounded_queue_is_never_full(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // Before: a put_nowait that found another process in the middle of a put failed with Full.
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<u64>(None).unwrap();
    let go = ctx.event().unwrap();
    let full = ctx.raw_array::<u64>([0u64; 3]).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|id| {
            let p = ctx.process(
                put_nowait_many,
                (q.clone(), go.clone(), id, 20_000, full.clone()),
            );
            p.start().unwrap();
            p
        })
        .collect();
    go.set();
    let mut got = Vec::with_capacity(60_000);
    for _ in 0..60_000 {
        got.push(q.get(true, LONG).unwrap());
    }
    for p in &ps {
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    assert_eq!(
        full.to_vec(),
        vec![0, 0, 0],
        "put_nowait was Full on an unbounded queue"
    );
    got.sort_unstable();
    let want: Vec<u64> = (0..3u64)
        .flat_map(|id| (0..20_000).map(move |i| id << 32 | i))
        .collect();
    assert_eq!(got, want);
}

#[rstest]
fn a_bounded_queue_is_bounded_in_items_not_bytes(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // maxsize counts items, as Python's: three items much larger than the ring fit in a queue
    // of maxsize 3, the fourth is Full.
    let ctx = mproc::get_context(m);
    let q = ctx.queue_with_capacity::<Vec<u8>>(Some(3), 4096).unwrap();
    for i in 0..3u8 {
        q.put_nowait(vec![i; 50_000]).unwrap();
    }
    assert!(q.full());
    let e = q.put_nowait(vec![9; 10]).unwrap_err();
    assert!(matches!(e.error, Error::Full));
    assert_eq!(q.get_nowait().unwrap(), vec![0; 50_000]);
    q.put_nowait(vec![3; 10]).unwrap();
    assert_eq!(q.get_nowait().unwrap(), vec![1; 50_000]);
    assert_eq!(q.get_nowait().unwrap(), vec![2; 50_000]);
    assert_eq!(q.get_nowait().unwrap(), vec![3; 10]);
    assert!(q.empty());
}

// ---------------------------------------------------------------------------------------------
// Producers and consumers killed at random moments (seeded, bounded in count and time).

/// A small deterministic generator (splitmix64), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Item `seq` of producer `p`: its length varies (with a ring of 4 KiB, most items span several
/// records, and segments), and every byte depends on `(p, seq)`, so a torn item shows.
fn chaos_item(p: u32, seq: u64) -> Vec<u8> {
    let len = [12, 300, 1500, 5000, 20_000][(seq % 5) as usize] + (seq % 7) as usize;
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i as u64 * 131 + seq * 7 + p as u64 * 3) as u8)
        .collect();
    v[..4].copy_from_slice(&p.to_le_bytes());
    v[4..12].copy_from_slice(&seq.to_le_bytes());
    v
}

fn check_item(v: &[u8]) -> (u32, u64) {
    let p = u32::from_le_bytes(v[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(v[4..12].try_into().unwrap());
    assert!(
        v == chaos_item(p, seq).as_slice(),
        "item {seq} of producer {p} is torn"
    );
    (p, seq)
}

fn chaos_producer(q: JoinableQueue<Vec<u8>>, accepted: RawArray<u64>, p: u32) -> mproc::Result<()> {
    for seq in 0.. {
        q.put(chaos_item(p, seq), true, None)?;
        accepted.set(p as usize, seq + 1)?;
    }
    Ok(())
}

/// Waits until `done()` (another process's progress), for at most 30 s.
fn wait_progress(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "no progress: {what}");
        std::thread::yield_now();
    }
}

/// Kills `p` after a random number of spins, wherever it is.
fn kill_at_random(p: &mproc::Process, rng: &mut Rng) {
    for _ in 0..rng.below(50_000) {
        std::hint::spin_loop();
    }
    p.kill().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-9));
}

#[rstest]
fn producers_killed_mid_put_lose_nothing_accepted_and_qsize_stays_exact(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    const KILLS: usize = 12;
    let mut rng = Rng(0x5eed_0013 ^ m as u64);
    let ctx = mproc::get_context(m);
    let q = ctx
        .joinable_queue_with_capacity::<Vec<u8>>(None, 4096)
        .unwrap();
    let accepted = ctx.raw_array::<u64>([0u64; KILLS]).unwrap();
    for p in 0..KILLS {
        let proc_ = ctx.process(chaos_producer, (q.clone(), accepted.clone(), p as u32));
        proc_.start().unwrap();
        let target = 1 + rng.below(40);
        wait_progress("a producer's puts", || accepted.get(p).unwrap() >= target);
        kill_at_random(&proc_, &mut rng);
    }
    // At rest: qsize is the number of items a reader finds.
    let n = q.qsize();
    let mut next = [0u64; KILLS];
    let mut got = 0;
    while let Ok(v) = q.get_nowait() {
        let (p, seq) = check_item(&v);
        assert_eq!(
            seq, next[p as usize],
            "producer {p}: out of order or duplicated"
        );
        next[p as usize] += 1;
        got += 1;
        q.task_done().unwrap();
    }
    assert_eq!(got, n, "qsize said {n}, {got} were there");
    for (p, &received) in next.iter().enumerate() {
        // Everything accepted arrived; at most the put it was killed in came too.
        let a = accepted.get(p).unwrap();
        assert!(
            received == a || received == a + 1,
            "producer {p}: {a} accepted, {received} received"
        );
    }
    // Every task is done: join returns (an item counted by a producer killed before it
    // published it is no unfinished task).
    q.join(LONG).unwrap();
    // The queue works on, for small and large items.
    q.put(chaos_item(99, 1), true, LONG).unwrap();
    q.put(chaos_item(99, 4), true, LONG).unwrap();
    assert_eq!(check_item(&q.get(true, LONG).unwrap()), (99, 1));
    assert_eq!(check_item(&q.get(true, LONG).unwrap()), (99, 4));
    assert_eq!(q.qsize(), 0);
}

fn chaos_consumer(q: Queue<Vec<u8>>, taken: RawArray<u64>, c: u32) -> mproc::Result<()> {
    loop {
        let v = q.get(true, None)?;
        let (_, seq) = check_item(&v);
        // The items come in order: what this consumer has taken is a count.
        assert_eq!(seq, taken.get(c as usize)? + first_of(&taken, c)?);
        taken.set(c as usize, taken.get(c as usize)? + 1)?;
    }
}

/// The first item consumer `c` can see: everything its predecessors took (each may have taken
/// one more than it recorded, when killed in between: the last slot says how many were skipped).
fn first_of(taken: &RawArray<u64>, c: u32) -> mproc::Result<u64> {
    let skip = taken.get(taken.len() - 1 - c as usize)?;
    let before: u64 = (0..c as usize)
        .map(|k| taken.get(k))
        .sum::<mproc::Result<u64>>()?;
    Ok(before + skip)
}

#[rstest]
fn consumers_killed_mid_get_tear_nothing_and_qsize_stays_exact(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    const KILLS: usize = 12;
    const N: u64 = 600;
    let mut rng = Rng(0xc0de_0013 ^ m as u64);
    let ctx = mproc::get_context(m);
    let q = ctx.queue_with_capacity::<Vec<u8>>(None, 4096).unwrap();
    for seq in 0..N {
        q.put_nowait(chaos_item(0, seq)).unwrap();
    }
    // taken[c]: items consumer c took (recorded after each get); taken[2 * KILLS - 1 - c]: items
    // lost between the consumers before c (taken by a killed one that had not recorded them).
    let taken = ctx.raw_array::<u64>([0u64; 2 * KILLS]).unwrap();
    let mut lost_so_far = 0;
    for c in 0..KILLS {
        let skip_slot = 2 * KILLS - 1 - c;
        // Which item comes next is what the queue says: it was taken by nobody alive.
        let recorded: u64 = (0..c).map(|k| taken.get(k).unwrap()).sum();
        let n = q.qsize() as u64;
        assert!(recorded + n + lost_so_far <= N);
        lost_so_far = N - n - recorded;
        taken.set(skip_slot, lost_so_far).unwrap();
        let p = ctx.process(chaos_consumer, (q.clone(), taken.clone(), c as u32));
        p.start().unwrap();
        let target = 1 + rng.below(40);
        wait_progress("a consumer's gets", || taken.get(c).unwrap() >= target);
        kill_at_random(&p, &mut rng);
    }
    let recorded: u64 = (0..KILLS).map(|k| taken.get(k).unwrap()).sum();
    let n = q.qsize() as u64;
    // Each killed consumer took at most one item it had not recorded.
    assert!(
        N - n - recorded <= KILLS as u64,
        "{} items vanished",
        N - n - recorded
    );
    let mut expect = N - n;
    let mut got = 0;
    while let Ok(v) = q.get_nowait() {
        assert_eq!(
            check_item(&v),
            (0, expect),
            "out of order, duplicated or lost"
        );
        expect += 1;
        got += 1;
    }
    assert_eq!(got, n, "qsize said {n}, {got} were there");
    assert_eq!(expect, N);
}

fn count_puts(q: Queue<u64>, done: RawArray<u64>, slot: u32) -> mproc::Result<()> {
    for seq in 0.. {
        q.put(seq, true, None)?;
        done.set(slot as usize, seq + 1)?;
    }
    Ok(())
}

fn count_gets(q: Queue<u64>, done: RawArray<u64>, slot: u32) -> mproc::Result<()> {
    loop {
        q.get(true, None)?;
        done.set(slot as usize, done.get(slot as usize)? + 1)?;
    }
}

#[rstest]
fn qsize_stays_exact_when_small_puts_and_gets_are_killed(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // Before: a producer killed between publishing an item and counting it (or a consumer
    // between taking one and uncounting it) left qsize off by one for ever: here in one round
    // in ten or so.
    const ROUNDS: usize = 40;
    let mut rng = Rng(0x0051_2e00 ^ m as u64);
    let ctx = mproc::get_context(m);
    let q = ctx.queue::<u64>(None).unwrap();
    let done = ctx.raw_array::<u64>([0u64; 2 * ROUNDS]).unwrap();
    for round in 0..ROUNDS {
        let (puts, gets) = (2 * round, 2 * round + 1);
        let p = ctx.process(count_puts, (q.clone(), done.clone(), puts as u32));
        p.start().unwrap();
        let target = 1 + rng.below(400);
        wait_progress("a producer's puts", || done.get(puts).unwrap() >= target);
        kill_at_random(&p, &mut rng);
        let before = q.qsize() as u64;
        let c = ctx.process(count_gets, (q.clone(), done.clone(), gets as u32));
        c.start().unwrap();
        let target = (1 + rng.below(100)).min(before - 1);
        wait_progress("a consumer's gets", || done.get(gets).unwrap() >= target);
        kill_at_random(&c, &mut rng);
        let n = q.qsize();
        let mut found = 0;
        while q.get_nowait().is_ok() {
            found += 1;
        }
        assert_eq!(
            n, found,
            "round {round}: qsize said {n}, {found} were there"
        );
    }
}
