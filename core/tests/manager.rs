//! Managers: the objects' Python semantics, proxies that travel (to children of every start
//! method, inside managed containers, through mproc's own queues), reference counting that
//! follows the proxies and survives a proxy in flight, what a dead client leaves (nothing), and
//! no hang when the manager is shut down, killed or stopped.

mproc::enable_test_support!();

mod common;

use mproc::pickle::Value;
use mproc::{DictProxy, Error, EventProxy, ListProxy, LockProxy, Manager, QueueProxy, StartMethod};
use nix::sys::signal::Signal;
use rstest::rstest;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(200);

fn manager(m: StartMethod) -> Manager {
    mproc::get_context(m).manager().expect("start a manager")
}

fn join_ok(p: &mproc::Process) {
    p.join_timeout(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0), "{}", p.get_name());
}

/// Polls `cond` until it holds, for at most 20 s: for effects the server applies on its own
/// (releasing what a killed client held), which no call can wait for.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn v(x: impl Into<Value>) -> Value {
    x.into()
}

#[test]
fn managers_and_proxies_go_to_other_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Manager>();
    send_sync::<mproc::Proxy>();
    send_sync::<DictProxy<String, Vec<u8>>>();
    send_sync::<LockProxy>();
    send_sync::<QueueProxy<String>>();
}

#[test]
fn dict_has_pythons_semantics() {
    let mgr = manager(StartMethod::Fork);
    let d: DictProxy = mgr.dict().unwrap();
    d.set_item(v(1), v("1")).unwrap();
    d.set_item(v("2"), v(2)).unwrap();
    d.set_item(v(0.25), Value::None).unwrap();
    assert_eq!(d.to_string(), "{1: '1', '2': 2, 0.25: None}");
    // 1 == 1.0 == True: one key, the first inserted stays.
    d.set_item(v(1.0), v("one")).unwrap();
    d.set_item(v(true), v("uno")).unwrap();
    assert_eq!(d.len().unwrap(), 3);
    assert_eq!(d.get_item(&v(1)).unwrap(), v("uno"));
    assert_eq!(d.to_string(), "{1: 'uno', '2': 2, 0.25: None}");
    assert!(d.contains_key(&v(0.25)).unwrap());
    assert_eq!(d.get(&v("nope")).unwrap(), None);
    assert_eq!(d.get(&v(0.25)).unwrap(), Some(Value::None));
    assert_eq!(d.get_or(&v("nope"), v(7)).unwrap(), v(7));
    match d.get_item(&v("missing")) {
        Err(Error::KeyError(k)) => assert_eq!(k, "'missing'"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(d.del_item(&v(99)), Err(Error::KeyError(k)) if k == "99"));
    assert_eq!(d.setdefault(v("s"), v(5)).unwrap(), v(5));
    assert_eq!(d.setdefault(v("s"), v(6)).unwrap(), v(5));
    assert_eq!(d.pop(&v("s")).unwrap(), v(5));
    assert_eq!(d.pop_or(&v("s"), v(0)).unwrap(), v(0));
    d.update([(v("a"), v(10)), (v("b"), v(20))]).unwrap();
    assert_eq!(
        d.keys().unwrap(),
        vec![v(1), v("2"), v(0.25), v("a"), v("b")]
    );
    assert_eq!(d.popitem().unwrap(), (v("b"), v(20)));
    assert_eq!(d.items().unwrap().len(), 4);
    assert_eq!(Value::Dict(d.copy().unwrap()).to_string(), d.to_string());
    // An unhashable key is Python's TypeError.
    match d.set_item(Value::List(vec![]), v(1)) {
        Err(Error::Remote { kind, message, .. }) => {
            assert_eq!(kind, "TypeError");
            assert_eq!(message, "unhashable type: 'list'");
        }
        other => panic!("{other:?}"),
    }
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    assert!(matches!(d.popitem(), Err(Error::KeyError(_))));

    // Typed, through serde.
    let t = mgr.dict::<String, Vec<u32>>().unwrap();
    t.set_item("x".into(), vec![1, 2]).unwrap();
    assert_eq!(t.get_item("x").unwrap(), vec![1, 2]);
    assert_eq!(t.to_string(), "{'x': [1, 2]}");
    // A value of the wrong type names both types.
    let wrong = mgr.dict_from([("k", "not a number")]).unwrap();
    let as_nums = DictProxy::<String, u32>::try_from(mproc::Proxy::from(wrong)).unwrap();
    match as_nums.get_item("k") {
        Err(Error::Deserialize(m)) => assert!(m.contains("u32") && m.contains("str"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn list_has_pythons_semantics() {
    let mgr = manager(StartMethod::Fork);
    let l: ListProxy<i64> = mgr.list_from([3, 1, 2]).unwrap();
    l.append(5).unwrap();
    l.extend([4, 0]).unwrap();
    l.insert(-1, 9).unwrap();
    assert_eq!(l.to_vec().unwrap(), [3, 1, 2, 5, 4, 9, 0]);
    assert_eq!(l.get_item(-1).unwrap(), 0);
    assert!(matches!(l.get_item(7), Err(Error::IndexError(m)) if m == "list index out of range"));
    l.set_item(0, 30).unwrap();
    l.del_item(1).unwrap();
    assert_eq!(l.slice(Some(1), Some(-1)).unwrap(), [2, 5, 4, 9]);
    l.sort().unwrap();
    assert_eq!(l.to_string(), "[0, 2, 4, 5, 9, 30]");
    l.sort_descending().unwrap();
    assert_eq!(l.to_vec().unwrap(), [30, 9, 5, 4, 2, 0]);
    assert_eq!(l.index(&5).unwrap(), 2);
    assert_eq!(l.count(&5).unwrap(), 1);
    assert!(l.contains(&9).unwrap());
    assert!(matches!(l.index(&77), Err(Error::InvalidArgument(m)) if m == "77 is not in list"));
    assert!(matches!(l.remove(&77), Err(Error::InvalidArgument(_))));
    l.remove(&30).unwrap();
    assert_eq!(l.pop().unwrap(), 0);
    assert_eq!(l.pop_at(0).unwrap(), 9);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), [2, 4, 5]);
    l.repeat(2).unwrap();
    assert_eq!(l.len().unwrap(), 6);

    // Mixed values: Python's ordering, and its TypeError for what does not order.
    let m: ListProxy = mgr.list_from([v(2), v(1.5), v(true), v(0)]).unwrap();
    m.sort().unwrap();
    assert_eq!(m.to_string(), "[0, True, 1.5, 2]");
    m.append(v("x")).unwrap();
    match m.sort() {
        Err(Error::Remote { kind, message, .. }) => {
            assert_eq!(kind, "TypeError");
            assert!(message.contains("'<' not supported"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let empty: ListProxy = mgr.list().unwrap();
    assert!(matches!(empty.pop(), Err(Error::IndexError(m)) if m == "pop from empty list"));
}

#[test]
fn namespace_value_and_array() {
    let mgr = manager(StartMethod::Fork);
    let ns = mgr.namespace().unwrap();
    ns.set("b", &"x").unwrap();
    ns.set("a", &1).unwrap();
    assert_eq!(ns.get::<i32>("a").unwrap(), 1);
    assert_eq!(ns.to_string(), "Namespace(a=1, b='x')");
    match ns.get::<i32>("c") {
        Err(Error::AttributeError(m)) => {
            assert_eq!(m, "'Namespace' object has no attribute 'c'")
        }
        other => panic!("{other:?}"),
    }
    ns.delete("a").unwrap();
    assert!(matches!(ns.delete("a"), Err(Error::AttributeError(_))));

    let val = mgr.value("d", 1.5f64).unwrap();
    assert_eq!(val.get().unwrap(), 1.5);
    val.set(3.25).unwrap();
    assert_eq!(val.to_string(), "Value('d', 3.25)");

    let arr = mgr.array("i", 0..5i32).unwrap();
    assert_eq!(arr.len().unwrap(), 5);
    arr.set(1, -7).unwrap();
    assert_eq!(arr.get(-1).unwrap(), 4);
    assert_eq!(arr.to_vec().unwrap(), [0, -7, 2, 3, 4]);
    assert_eq!(arr.to_string(), "array('i', [0, -7, 2, 3, 4])");
    match arr.set(0, i32::MAX) {
        Ok(()) => {}
        other => panic!("{other:?}"),
    }
    let big = mproc::ArrayProxy::<i64>::try_from(mproc::Proxy::from(arr)).unwrap();
    assert!(
        matches!(big.set(0, 1 << 40), Err(Error::Remote { kind, .. }) if kind == "OverflowError")
    );
    let floats = mgr.array("d", [0.5f64, 1.0]).unwrap();
    assert_eq!(floats.to_vec().unwrap(), [0.5, 1.0]);
}

#[test]
fn locks_semaphores_events_conditions_and_barriers_in_one_process() {
    let mgr = manager(StartMethod::Fork);
    let lock = mgr.lock().unwrap();
    let g = lock.acquire().unwrap();
    assert!(!g.owner_died());
    assert!(lock.try_acquire().unwrap().is_none());
    let t = Instant::now();
    assert!(lock.acquire_timeout(SHORT).unwrap().is_none());
    assert!(t.elapsed() >= SHORT);
    drop(g);
    assert!(matches!(lock.release(), Err(Error::NotOwner(m)) if m == "release unlocked lock"));
    // As in Python, another thread may release a Lock.
    lock.acquire().unwrap().forget();
    std::thread::scope(|s| {
        s.spawn(|| lock.release().unwrap());
    });
    assert!(lock.try_acquire().unwrap().is_some());

    let r = mgr.rlock().unwrap();
    let g1 = r.acquire().unwrap();
    let g2 = r.try_acquire().unwrap().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(r.try_acquire().unwrap().is_none());
            assert!(matches!(r.release(), Err(Error::NotOwner(m)) if m == "cannot release un-acquired lock"));
        });
    });
    drop(g2);
    drop(g1);
    assert!(matches!(r.release(), Err(Error::NotOwner(_))));

    let sem = mgr.semaphore(2).unwrap();
    let a = sem.acquire().unwrap();
    let b = sem.acquire().unwrap();
    assert!(sem.acquire_timeout(SHORT).unwrap().is_none());
    drop((a, b));
    sem.release_n(3).unwrap();
    let bounded = mgr.bounded_semaphore(1).unwrap();
    assert!(
        matches!(bounded.release(), Err(Error::InvalidArgument(m)) if m == "Semaphore released too many times")
    );

    let ev = mgr.event().unwrap();
    assert!(!ev.is_set().unwrap());
    assert!(!ev.wait_timeout(SHORT).unwrap());
    std::thread::scope(|s| {
        s.spawn(|| ev.wait().unwrap());
        ev.set().unwrap();
    });
    assert!(ev.wait_timeout(SHORT).unwrap());
    ev.clear().unwrap();

    let cond = mgr.condition_with(&mgr.rlock().unwrap()).unwrap();
    assert!(matches!(
        cond.notify(),
        Err(Error::Remote { .. }) | Err(Error::NotOwner(_))
    ));
    let flag = mgr.value("b", false).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _g = cond.acquire().unwrap();
            flag.set(true).unwrap();
            cond.notify_all().unwrap();
        });
        let _g = cond.acquire().unwrap();
        let seen = cond
            .wait_for(|| flag.get().unwrap(), Some(Duration::from_secs(30)))
            .unwrap();
        assert!(seen);
    });
    let _g = cond.acquire().unwrap();
    assert!(!cond.wait_timeout(SHORT).unwrap());

    let barrier = mgr.barrier(3).unwrap();
    assert_eq!(barrier.parties().unwrap(), 3);
    let mut idx: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| barrier.wait().unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    idx.sort_unstable();
    assert_eq!(idx, [0, 1, 2]);
    assert!(matches!(
        barrier.wait_timeout(SHORT),
        Err(Error::BrokenBarrier)
    ));
    assert!(barrier.broken().unwrap());
    barrier.reset().unwrap();
    assert!(!barrier.broken().unwrap());
    assert_eq!(barrier.n_waiting().unwrap(), 0);
}

#[test]
fn queues_block_time_out_and_join() {
    let mgr = manager(StartMethod::Fork);
    let q: QueueProxy<String> = mgr.queue(Some(2)).unwrap();
    assert!(q.empty().unwrap());
    q.put("a".into()).unwrap();
    q.try_put("b".into()).unwrap();
    assert!(q.full().unwrap());
    let e = q.try_put("c".into()).unwrap_err();
    assert!(matches!(e.error, Error::Full));
    assert_eq!(e.into_inner(), "c");
    let t = Instant::now();
    let e = q.put_timeout("d".into(), SHORT).unwrap_err();
    assert!(matches!(e.error, Error::Full) && t.elapsed() >= SHORT);
    assert_eq!(q.qsize().unwrap(), 2);
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.try_get().unwrap(), "b");
    assert!(matches!(q.try_get(), Err(Error::Empty)));
    let t = Instant::now();
    assert!(matches!(q.get_timeout(SHORT), Err(Error::Empty)));
    assert!(t.elapsed() >= SHORT);

    let jq: QueueProxy<u32> = mgr.joinable_queue(None).unwrap();
    jq.put(1).unwrap();
    assert!(!jq.join_timeout(SHORT).unwrap());
    assert_eq!(jq.get().unwrap(), 1);
    jq.task_done().unwrap();
    assert!(jq.join_timeout(SHORT).unwrap());
    jq.join().unwrap();
    assert!(
        matches!(jq.task_done(), Err(Error::InvalidArgument(m)) if m == "task_done() called too many times")
    );
}

fn child_uses_proxies(
    d: DictProxy<String, i64>,
    l: ListProxy<i64>,
    lock: LockProxy,
    q: QueueProxy<String>,
    ev: EventProxy,
) -> mproc::Result<()> {
    {
        let _g = lock.acquire()?;
        d.set_item("child".into(), std::process::id() as i64)?;
    }
    l.append(42)?;
    q.put("from the child".into())?;
    ev.wait()?;
    Ok(())
}

#[rstest]
fn proxies_reach_children_of_every_method(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = manager(m);
    let d = mgr.dict().unwrap();
    let l = mgr.list().unwrap();
    let lock = mgr.lock().unwrap();
    let q = mgr.queue(None).unwrap();
    let ev = mgr.event().unwrap();
    let p = mproc::get_context(m).process(
        child_uses_proxies,
        (d.clone(), l.clone(), lock.clone(), q.clone(), ev.clone()),
    );
    p.start().unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_secs(60)).unwrap(),
        "from the child"
    );
    ev.set().unwrap();
    join_ok(&p);
    assert_eq!(d.get_item("child").unwrap(), p.pid().unwrap() as i64);
    assert_eq!(l.to_vec().unwrap(), [42]);
}

/// Makes a list in the manager, stores it in `d` under `key`, and drops its own proxy.
fn store_new_list(d: DictProxy<String, ListProxy<i64>>, key: String) -> mproc::Result<()> {
    // The list's only proxy is this process's, dropped when this returns: the dict keeps it.
    let l = {
        let mgr_list: ListProxy<i64> = d.get_item("template")?;
        mgr_list
    };
    l.append(1)?;
    d.set_item(key, l)?;
    Ok(())
}

/// Reads the list stored under `key` and appends to it.
fn append_to_stored(d: DictProxy<String, ListProxy<i64>>, key: String) -> mproc::Result<()> {
    let l = d.get_item(&key)?;
    l.append(2)
}

#[rstest]
fn a_dict_of_lists_is_used_by_whoever_reads_it(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = manager(m);
    let ctx = mproc::get_context(m);
    let d: DictProxy<String, ListProxy<i64>> = mgr.dict().unwrap();
    {
        let l = mgr.list::<i64>().unwrap();
        d.set_item("template".into(), l).unwrap();
    }
    let baseline = mgr.stats().unwrap().objects;
    assert_eq!(baseline, 2);
    let p = ctx.process(store_new_list, (d.clone(), "stored".to_string()));
    p.start().unwrap();
    join_ok(&p);
    let p = ctx.process(append_to_stored, (d.clone(), "stored".to_string()));
    p.start().unwrap();
    join_ok(&p);
    let l = d.get_item("stored").unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 2]);
    l.append(3).unwrap();
    assert_eq!(d.get_item("template").unwrap().to_vec().unwrap(), [1, 2, 3]);
    // The dict holds the list; our proxy too. Dropping both releases it.
    drop(l);
    d.del_item("stored").unwrap();
    assert_eq!(
        mgr.stats().unwrap().objects,
        2,
        "the dict still holds the template"
    );
    d.del_item("template").unwrap();
    assert_eq!(mgr.stats().unwrap().objects, 1);
    drop(d);
    // Under load the server may not yet have ended the session of the fork child joined last,
    // which it counts as holding the dict for a moment (seen: 5 of 25 runs with two busy loops;
    // why the child's own `decref` does not settle it first is not yet understood): the dict
    // goes when the server sees that child's pidfd.
    eventually("the dict released", || mgr.stats().unwrap().objects == 0);
}

fn append_and_store(l: ListProxy<i64>, d: DictProxy<String, ListProxy<i64>>) -> mproc::Result<()> {
    l.append(7)?;
    d.set_item("got".into(), l)?;
    Ok(())
}

#[rstest]
fn a_proxy_whose_sender_dropped_it_reaches_the_child(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = manager(m);
    let ctx = mproc::get_context(m);
    let d = mgr.dict().unwrap();
    // The list's only proxy goes into the start arguments, which the parent drops at start.
    let p = ctx.process(
        append_and_store,
        (mgr.list_from([1i64]).unwrap(), d.clone()),
    );
    p.start().unwrap();
    join_ok(&p);
    assert_eq!(d.get_item("got").unwrap().to_vec().unwrap(), [1, 7]);
}

fn take_from_queue(
    q: mproc::Queue<ListProxy<i64>>,
    d: DictProxy<String, ListProxy<i64>>,
) -> mproc::Result<()> {
    let l = q.get_timeout(Duration::from_secs(60))?;
    l.append(9)?;
    d.set_item("via queue".into(), l)
}

#[rstest]
fn a_proxy_crosses_an_mproc_queue_after_its_sender_dropped_it(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = manager(m);
    let ctx = mproc::get_context(m);
    let d = mgr.dict().unwrap();
    let q = ctx.queue::<ListProxy<i64>>().unwrap();
    let p = ctx.process(take_from_queue, (q.clone(), d.clone()));
    p.start().unwrap();
    q.put(mgr.list_from([3i64]).unwrap())
        .map_err(Error::from)
        .unwrap();
    // Our proxy is gone: the transfer reference keeps the list until the child adopts it.
    join_ok(&p);
    assert_eq!(d.get_item("via queue").unwrap().to_vec().unwrap(), [3, 9]);
}

#[test]
fn objects_die_with_their_last_proxy() {
    let mgr = manager(StartMethod::Fork);
    assert_eq!(mgr.number_of_objects().unwrap(), 0);
    let d: DictProxy = mgr.dict().unwrap();
    let d2 = d.clone();
    let l: ListProxy = mgr.list().unwrap();
    assert_eq!(mgr.number_of_objects().unwrap(), 2);
    drop(d);
    assert_eq!(
        mgr.number_of_objects().unwrap(),
        2,
        "a clone still holds the dict"
    );
    drop(d2);
    drop(l);
    assert_eq!(mgr.number_of_objects().unwrap(), 0);
    assert!(mgr.debug_info().unwrap().is_empty());
}

/// Holds proxies of `n` lists read from `d` (this process's own references), then waits to be
/// killed.
fn hold_and_wait(
    d: DictProxy<String, ListProxy>,
    ready: EventProxy,
    n: usize,
) -> mproc::Result<()> {
    let mut held = Vec::new();
    for i in 0..n {
        held.push(d.pop(&format!("l{i}"))?);
    }
    ready.set()?;
    ready.wait_timeout(Duration::from_secs(600))?;
    // Never reached in the test: the parent kills this process first.
    std::thread::sleep(Duration::from_secs(600));
    drop(held);
    Ok(())
}

#[rstest]
fn objects_held_only_by_a_killed_client_are_released(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = manager(m);
    let ctx = mproc::get_context(m);
    let d: DictProxy<String, ListProxy> = mgr.dict().unwrap();
    for i in 0..5 {
        d.set_item(format!("l{i}"), mgr.list().unwrap()).unwrap();
    }
    let ready = mgr.event().unwrap();
    assert_eq!(mgr.stats().unwrap().objects, 7);
    let p = ctx.process(hold_and_wait, (d.clone(), ready.clone(), 5usize));
    p.start().unwrap();
    // The child popped the lists out of the dict: it alone holds them now.
    assert!(ready.wait_timeout(Duration::from_secs(60)).unwrap());
    assert_eq!(d.len().unwrap(), 0);
    assert_eq!(mgr.stats().unwrap().objects, 7);
    p.kill().unwrap();
    p.join_timeout(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-9));
    eventually("the killed child's lists released", || {
        mgr.stats().unwrap().objects == 2
    });
}

fn hold_lock_and_wait(lock: LockProxy, ready: EventProxy) -> mproc::Result<()> {
    lock.acquire()?.forget();
    ready.set()?;
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}

#[rstest]
fn a_lock_whose_owner_is_killed_is_released_and_the_next_owner_told(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = manager(m);
    let lock = mgr.lock().unwrap();
    let ready = mgr.event().unwrap();
    let p = mproc::get_context(m).process(hold_lock_and_wait, (lock.clone(), ready.clone()));
    p.start().unwrap();
    assert!(ready.wait_timeout(Duration::from_secs(60)).unwrap());
    assert!(lock.try_acquire().unwrap().is_none());
    p.kill().unwrap();
    p.join_timeout(LONG).unwrap();
    let g = lock
        .acquire_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the manager released the dead owner's lock");
    assert!(g.owner_died());
    drop(g);
    let g = lock.acquire().unwrap();
    assert!(!g.owner_died(), "told once");
}

fn block_on(lock: LockProxy, q: QueueProxy<u32>, which: String) -> mproc::Result<()> {
    if which == "lock" {
        lock.acquire()?.forget();
    } else {
        q.get()?;
    }
    Ok(())
}

#[rstest]
fn a_client_killed_while_blocked_takes_nothing(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
    #[values("lock", "queue")] which: &str,
) {
    let mgr = manager(m);
    let lock = mgr.lock().unwrap();
    let q: QueueProxy<u32> = mgr.queue(None).unwrap();
    let held = lock.acquire().unwrap();
    let p = mproc::get_context(m).process(block_on, (lock.clone(), q.clone(), which.to_string()));
    p.start().unwrap();
    eventually("the child's call blocked in the manager", || {
        mgr.stats().unwrap().blocked == 1
    });
    p.kill().unwrap();
    p.join_timeout(LONG).unwrap();
    eventually("the blocked call cancelled", || {
        mgr.stats().unwrap().blocked == 0
    });
    // What the dead client waited for is still there for the living.
    drop(held);
    q.put(5).unwrap();
    let g = lock.try_acquire().unwrap().expect("the lock is free");
    assert!(!g.owner_died());
    assert_eq!(q.try_get().unwrap(), 5);
}

#[test]
fn calls_on_a_shut_down_manager_are_manager_gone() {
    let mgr = manager(StartMethod::Forkserver);
    let d: DictProxy = mgr.dict().unwrap();
    let q: QueueProxy = mgr.queue(None).unwrap();
    let Some(mproc::connection::Address::Unix(path)) = Some(mgr.address().clone()) else {
        unreachable!()
    };
    assert!(path.exists());
    mgr.shutdown().unwrap();
    mgr.shutdown().unwrap();
    assert_eq!(mgr.exitcode().unwrap(), Some(0));
    assert!(!path.exists() && !path.parent().unwrap().exists());
    let t = Instant::now();
    assert!(
        matches!(d.len(), Err(Error::ManagerGone(_))),
        "{:?}",
        d.len()
    );
    assert!(matches!(q.get(), Err(Error::ManagerGone(_))));
    assert!(matches!(mgr.list::<i64>(), Err(Error::ManagerGone(_))));
    assert!(t.elapsed() < Duration::from_secs(5));
    // A new thread (a new connection) learns it too.
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(d.len(), Err(Error::ManagerGone(_)))));
    });
    drop(mgr);
    assert!(common::zombie_children().is_empty());
}

fn append_one(l: ListProxy<i64>, x: i64) -> mproc::Result<()> {
    l.append(x)
}

/// One manager's whole life in this process: proxies of several kinds, calls from the main
/// thread and from other threads (each its own connection), a child that uses a proxy.
fn one_manager_life(m: StartMethod, shutdown: bool) {
    let mgr = manager(m);
    let d: DictProxy<String, i64> = mgr.dict().unwrap();
    let l: ListProxy<i64> = mgr.list().unwrap();
    let lock = mgr.lock().unwrap();
    d.set_item("a".into(), 1).unwrap();
    // Joined threads, not scoped ones: `join` returns once a thread's thread-locals (its
    // connection) are destroyed.
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let (d, l) = (d.clone(), l.clone());
            std::thread::spawn(move || {
                l.append(i).unwrap();
                assert_eq!(d.get_item("a").unwrap(), 1);
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let p = mproc::get_context(m).process(append_one, (l.clone(), 9));
    p.start().unwrap();
    join_ok(&p);
    drop(lock.acquire().unwrap());
    assert_eq!(l.len().unwrap(), 4);
    let pid = mgr.pid().unwrap();
    if shutdown {
        mgr.shutdown().unwrap();
        assert_eq!(mgr.exitcode().unwrap(), Some(0));
    }
    drop((d, l, lock, p));
    drop(mgr);
    assert!(common::pidfd(pid).is_none(), "the server {pid} is reaped");
}

#[rstest]
fn shutdown_and_drop_reap_the_server_and_close_every_descriptor(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // The first life starts what lives on for the process (a forkserver, a helper thread).
    one_manager_life(m, true);
    let before = common::open_fds();
    for shutdown in [true, false, true] {
        one_manager_life(m, shutdown);
    }
    assert_eq!(
        common::open_fds(),
        before,
        "descriptors left open by three managers"
    );
    assert!(common::zombie_children().is_empty());
}

#[test]
fn shutdown_of_a_stopped_manager_is_bounded_and_reaps_it() {
    let mgr = manager(StartMethod::Fork);
    let d: DictProxy = mgr.dict().unwrap();
    let pid = mgr.pid().unwrap();
    common::kill(pid, Signal::SIGSTOP).unwrap();
    let t = Instant::now();
    mgr.shutdown().unwrap();
    // The request goes unanswered, the wait runs out, then a signal ends it.
    assert!(
        t.elapsed() < mproc::managers::SHUTDOWN_STEP * 8,
        "{:?}",
        t.elapsed()
    );
    let code = mgr.exitcode().unwrap();
    assert!(matches!(code, Some(-15) | Some(-9)), "{code:?}");
    assert!(matches!(d.len(), Err(Error::ManagerGone(_))));
    drop((d, mgr));
    assert!(common::zombie_children().is_empty());
}

#[rstest]
fn a_killed_manager_fails_blocked_and_later_calls(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = manager(m);
    let q: QueueProxy<u32> = mgr.queue(None).unwrap();
    let lock = mgr.lock().unwrap();
    let _held = lock.acquire().unwrap();
    std::thread::scope(|s| {
        let getter = s.spawn(|| q.get());
        let acquirer = s.spawn(|| lock.acquire().map(|g| g.forget()));
        eventually("both calls blocked", || mgr.stats().unwrap().blocked == 2);
        common::kill(mgr.pid().unwrap(), Signal::SIGKILL).unwrap();
        let t = Instant::now();
        assert!(matches!(getter.join().unwrap(), Err(Error::ManagerGone(_))));
        assert!(matches!(
            acquirer.join().unwrap(),
            Err(Error::ManagerGone(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
    });
    assert!(matches!(q.try_get(), Err(Error::ManagerGone(_))));
    mgr.join_timeout(LONG).unwrap();
    assert_eq!(mgr.exitcode().unwrap(), Some(-9));
}

#[test]
fn a_stopped_manager_does_not_hold_a_caller_that_set_a_timeout() {
    let mgr = mproc::get_context(StartMethod::Fork)
        .manager_builder()
        .call_timeout(Some(Duration::from_millis(500)))
        .start()
        .unwrap();
    let q: QueueProxy<u32> = mgr.queue(None).unwrap();
    let lock = mgr.lock().unwrap();
    let _held = lock.acquire().unwrap();
    let pid = mgr.pid().unwrap();
    common::kill(pid, Signal::SIGSTOP).unwrap();
    let bound = SHORT + mproc::managers::REPLY_GRACE + Duration::from_secs(2);
    let t = Instant::now();
    assert!(matches!(q.get_timeout(SHORT), Err(Error::Timeout)));
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());
    let t = Instant::now();
    assert!(matches!(lock.acquire_timeout(SHORT), Err(Error::Timeout)));
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());
    // An ordinary call is bounded by the call timeout; a new thread's connect too.
    let t = Instant::now();
    assert!(matches!(q.qsize(), Err(Error::Timeout)));
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(q.qsize(), Err(Error::Timeout))));
    });
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    common::kill(pid, Signal::SIGCONT).unwrap();
    // The manager serves again (the abandoned connections are closed and replaced).
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), 1);
}

/// Exits 0 if a call on `d` runs out as the call timeout the parent's manager set, within
/// a bound.
fn call_times_out(d: DictProxy<String, i64>, go: mproc::Event) -> mproc::Result<()> {
    if !go.wait_timeout(Duration::from_secs(60))? {
        return Err(Error::Timeout);
    }
    let t = Instant::now();
    match d.len() {
        Err(Error::Timeout) if t.elapsed() < Duration::from_secs(5) => Ok(()),
        other => Err(Error::InvalidArgument(format!(
            "expected a timeout within 5 s, got {other:?} after {:?}",
            t.elapsed()
        ))),
    }
}

#[rstest]
fn a_childs_proxies_keep_the_managers_call_timeout(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let mgr = mproc::get_context(m)
        .manager_builder()
        .call_timeout(Some(Duration::from_millis(300)))
        .start()
        .unwrap();
    let d: DictProxy<String, i64> = mgr.dict().unwrap();
    let pid = mgr.pid().unwrap();
    let go = mproc::get_context(m).event().unwrap();
    // Starting the child takes the reference it adopts (spawn, forkserver): before the stop.
    let p = mproc::get_context(m).process(call_times_out, (d.clone(), go.clone()));
    p.start().unwrap();
    common::kill(pid, Signal::SIGSTOP).unwrap();
    // The child's first call (its connection, its reference) meets a stopped manager.
    go.set();
    let joined = p.join_timeout(LONG);
    common::kill(pid, Signal::SIGCONT).unwrap();
    joined.unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    // The manager serves again.
    d.set_item("k".into(), 1).unwrap();
    assert_eq!(d.len().unwrap(), 1);
}

#[test]
fn dropping_proxies_of_a_stopped_manager_is_bounded() {
    // No call timeout: clean-up calls are bounded all the same.
    let mgr = manager(StartMethod::Fork);
    let d: DictProxy = mgr.dict().unwrap();
    let l: ListProxy<i64> = mgr.list().unwrap();
    let pid = mgr.pid().unwrap();
    common::kill(pid, Signal::SIGSTOP).unwrap();
    let t = Instant::now();
    drop(d);
    let took = t.elapsed();
    common::kill(pid, Signal::SIGCONT).unwrap();
    assert!(
        took < mproc::managers::CLEANUP_BOUND + Duration::from_secs(2),
        "{took:?}"
    );
    // The dropped proxy's reference is lost with its connection; the list's is still held.
    assert_eq!(l.len().unwrap(), 0);
    drop(l);
    drop(mgr);
    assert!(common::zombie_children().is_empty());
}

#[test]
fn the_server_speaks_to_cpython_clients() {
    let mgr = manager(StartMethod::Fork);
    let d: DictProxy<String, i64> = mgr.dict().unwrap();
    d.set_item("from rust".into(), 1).unwrap();
    let lock = mgr.lock().unwrap();
    let hex: String = mgr.authkey().iter().map(|b| format!("{b:02x}")).collect();
    let script = r#"
import sys, multiprocessing
from multiprocessing.managers import SyncManager, DictProxy, Token, dispatch
address, key, dict_id, lock_id = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]
# Proxies rebuilt from values (not made through `m`) authenticate with the process's key.
multiprocessing.current_process().authkey = key
m = SyncManager(address=address, authkey=key)
m.connect()
d = DictProxy(Token('dict', address, dict_id), 'pickle', manager=m, authkey=key)
print(d['from rust'])
d['from python'] = [1, 2.5, 'x', None]
try:
    d['missing']
except KeyError as e:
    print('KeyError', e)
l = m.list(range(3))
l.append(3)
l.reverse()
print(l, len(l))
n = m.Namespace(a=1)
n.b = 'two'
print(n)
lk = m.Lock()
print(lk.acquire(), lk.acquire(False), lk.release())
from multiprocessing.managers import AcquirerProxy
shared = AcquirerProxy(Token('Lock', address, lock_id), 'pickle', manager=m, authkey=key)
print('shared lock free:', shared.acquire(timeout=0.1))
q = m.Queue()
q.put({'k': (1, 2)})
print(q.get(), q.qsize())
d['nested'] = l
print(d['nested'][0])
print(sorted(map(str, d)), len(d))
v = m.Value('d', 1.5)
v.value = 2.5
a = m.Array('i', range(4))
a[1] = -1
print(v.value, a[:].tolist(), len(a), str(a))
e = m.Event()
print(e.wait(0.01), e.set(), e.wait(), e.is_set())
b = m.Barrier(1)
print(b.wait(), b.parties, b.broken)
c = m.Condition()
with c:
    print(c.wait_for(lambda: True), c.wait(0.01))
    c.notify_all()
jq = m.JoinableQueue()
jq.put(1); jq.get(); jq.task_done(); jq.join()
s = m.BoundedSemaphore(1)
try:
    s.release()
except ValueError as err:
    print('ValueError', err)
print(str(d).replace('0x' + l._token.id + '>', '0xID>'))
"#;
    let runs: Vec<String> = common_cpython::interpreters()
        .iter()
        .map(|py| {
            let out = common_cpython::run(
                py,
                script,
                &[
                    &mgr.address().to_string(),
                    &hex,
                    d.as_proxy().id(),
                    lock.as_proxy().id(),
                ],
                Duration::from_secs(120),
            );
            assert!(
                out.status.success(),
                "{}: {}",
                py.label(),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                stdout,
                "1\nKeyError 'missing'\n[3, 2, 1, 0] 4\nNamespace(a=1, b='two')\nTrue False None\nshared lock free: True\n{'k': (1, 2)} 0\n3\n['from python', 'from rust', 'nested'] 3\n2.5 [0, -1, 2, 3] 4 array('i', [0, -1, 2, 3])\nFalse None True True\n0 1 False\nTrue False\nValueError Semaphore released too many times\n{'from rust': 1, 'from python': [1, 2.5, 'x', None], 'nested': <ListProxy object, typeid 'list' at 0xID>}\n",
                "{}",
                py.label()
            );
            py.label()
        })
        .collect();
    eprintln!("CPython clients used the mproc manager: {runs:?}");
    if runs.is_empty() {
        return;
    }
    let raw: DictProxy = DictProxy::try_from(mproc::Proxy::from(d)).unwrap();
    assert_eq!(
        raw.get_item(&v("from python")).unwrap().to_string(),
        "[1, 2.5, 'x', None]"
    );
    // The list proxy Python stored is usable from Rust.
    let nested: ListProxy<i64> =
        mproc::pickle::from_value(raw.get_item(&v("nested")).unwrap()).unwrap();
    assert_eq!(nested.to_vec().unwrap(), [3, 2, 1, 0]);
    // Python's last hold of the shared lock went with its connection: released, and told.
    let mut told = false;
    eventually("the lock Python held released", || {
        match lock.try_acquire().unwrap() {
            Some(g) => {
                told = g.owner_died();
                true
            }
            None => false,
        }
    });
    assert!(told);
}

#[path = "cpython/mod.rs"]
mod common_cpython;

#[test]
fn mproc_proxies_use_a_cpython_manager() {
    let script = r#"
import sys
from multiprocessing.managers import SyncManager
key = bytes.fromhex(sys.argv[1])
m = SyncManager(address=sys.argv[2], authkey=key)
m.start()
d = m.dict({'a': 1})
l = m.list([1, 2])
lk = m.Lock()
q = m.Queue()
print(d._token.id, l._token.id, lk._token.id, q._token.id, flush=True)
# The Rust client says it is done through the queue it was given.
done = q.get(timeout=60)
print(dict(d), list(l), lk.acquire(False), done, flush=True)
# Shut down only when the Rust side has its answers (closes stdin): the manager must not go
# while the reply to the Rust side's last call is on its way.
sys.stdin.read()
m.shutdown()
"#;
    let key = [7u8; 32];
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut runs = Vec::new();
    for py in common_cpython::interpreters() {
        let path = std::env::temp_dir().join(format!(
            "mproc-cpython-manager-{}-{}{}",
            std::process::id(),
            py.version.0,
            py.version.1
        ));
        let _ = std::fs::remove_file(&path);
        let path_s = path.to_str().unwrap().to_owned();
        let mut python = common_cpython::Running::start_with_stdin(
            &py,
            script,
            &[&hex, &path_s],
            std::process::Stdio::piped(),
        );
        let line = python.line(Duration::from_secs(120));
        let ids: Vec<&str> = line.split(' ').collect();
        let [d_id, l_id, lock_id, q_id] = ids[..] else {
            panic!("{}: {line:?}", py.label())
        };
        let rust_side = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let d: DictProxy<String, i64> =
                DictProxy::try_from(mproc::Proxy::connect(&*path_s, &key, "dict", d_id).unwrap())
                    .unwrap();
            assert_eq!(d.get_item("a").unwrap(), 1);
            d.set_item("b".into(), 2).unwrap();
            assert_eq!(d.len().unwrap(), 2);
            assert!(
                matches!(d.get_item("zz"), Err(Error::KeyError(ref k)) if k == "'zz'"),
                "{:?}",
                d.get_item("zz")
            );
            let l: ListProxy<i64> =
                ListProxy::try_from(mproc::Proxy::connect(&*path_s, &key, "list", l_id).unwrap())
                    .unwrap();
            l.append(3).unwrap();
            assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);
            assert!(matches!(l.get_item(10), Err(Error::IndexError(_))));
            let lock = LockProxy::try_from(
                mproc::Proxy::connect(&*path_s, &key, "Lock", lock_id).unwrap(),
            )
            .unwrap();
            let g = lock.acquire().unwrap();
            assert!(lock.try_acquire().unwrap().is_none());
            g.release().unwrap();
            // Taken again and kept: Python sees it held.
            lock.acquire().unwrap().forget();
            let q: QueueProxy<String> =
                QueueProxy::try_from(mproc::Proxy::connect(&*path_s, &key, "Queue", q_id).unwrap())
                    .unwrap();
            assert!(matches!(
                q.get_timeout(Duration::from_millis(50)),
                Err(Error::Empty)
            ));
            q.put("done".into()).unwrap();
            (d, l, lock, q)
        }));
        let (d, l, lock, q) = match rust_side {
            Ok(proxies) => proxies,
            Err(e) => {
                let out = python.finish(Duration::from_secs(10));
                eprintln!(
                    "{} stderr:\n{}",
                    py.label(),
                    String::from_utf8_lossy(&out.stderr)
                );
                std::panic::resume_unwind(e)
            }
        };
        assert_eq!(
            python.line(Duration::from_secs(60)),
            "{'a': 1, 'b': 2} [1, 2, 3] False done",
            "{}",
            py.label()
        );
        drop(python.child.as_mut().unwrap().stdin.take());
        let out = python.finish(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}: {}",
            py.label(),
            String::from_utf8_lossy(&out.stderr)
        );
        // The CPython manager is gone: a typed error, not a hang.
        assert!(
            matches!(d.len(), Err(Error::ManagerGone(_))),
            "{:?}",
            d.len()
        );
        drop((d, l, lock, q));
        let _ = std::fs::remove_file(&path);
        runs.push(py.label());
    }
    eprintln!("mproc clients used CPython managers: {runs:?}");
}
