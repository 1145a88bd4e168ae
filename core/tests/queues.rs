//! Queues under every start method: Python's queue cases (timeouts, bounded puts, close,
//! task_done/join), data put by a process that then exits, items larger than the ring, and a
//! property: any interleaving of puts from several producers reaches the consumers as exactly
//! the same multiset, each producer's items in its own order.

mproc::enable_test_support!();

use mproc::{Error, Event, JoinableQueue, Queue, StartMethod};
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

fn signal_then_put_big(q: Queue<Vec<u8>>, started: Event, done: Event) -> mproc::Result<()> {
    started.set();
    q.put(vec![7u8; 200_000], true, None)?;
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

#[rstest]
fn a_half_streamed_item_of_a_killed_producer_is_dropped(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let q = ctx.queue_with_capacity::<Vec<u8>>(None, 8192).unwrap();
    let (started, done) = (ctx.event().unwrap(), ctx.event().unwrap());
    let p = ctx.process(
        signal_then_put_big,
        (q.clone(), started.clone(), done.clone()),
    );
    p.start().unwrap();
    kill_when_blocked(&p, &started, &done);
    // The fragment in the ring is not an item: a get finds nothing...
    assert!(matches!(
        q.get(true, Some(Duration::from_millis(300))),
        Err(Error::Empty)
    ));
    assert_eq!(q.qsize(), 0);
    // ...and the queue works on, for small and streamed items alike.
    q.put(vec![1, 2, 3], true, LONG).unwrap();
    assert_eq!(q.get(true, LONG).unwrap(), vec![1, 2, 3]);
    let p = ctx.process(put_big, (q.clone(), vec![50_000]));
    p.start().unwrap();
    let v = q.get(true, LONG).unwrap();
    assert_eq!(v.len(), 50_000);
    assert!(v.iter().enumerate().all(|(i, &b)| b == (i * 31) as u8));
    p.join(LONG).unwrap();
}
