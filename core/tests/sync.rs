//! Locks, semaphores, conditions, events and barriers under every start method: Python's
//! `threading` semantics, a counter incremented under a lock by several processes, and the
//! recovery of a lock whose owner was killed.

mproc::enable_test_support!();

use mproc::{
    Barrier, Condition, Error, Event, Lock, Queue, RLock, RawValue, Semaphore, StartMethod,
};
use rstest::rstest;
use std::time::{Duration, Instant};

const LONG: Option<Duration> = Some(Duration::from_secs(30));
const SHORT: Duration = Duration::from_millis(150);

fn join_ok(p: &mproc::Process) {
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

#[rstest]
fn lock_semantics(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let lock = mproc::get_context(m).lock().unwrap();
    assert_eq!(lock.start_method(), m);
    assert!(!lock.locked());
    let g = lock.acquire(true, None).unwrap().unwrap();
    assert!(!g.owner_died());
    assert!(lock.locked() && lock.is_mine());
    // Not recursive: a second acquire by the same thread fails (after the timeout if any).
    assert!(lock.acquire(false, None).unwrap().is_none());
    let t = Instant::now();
    assert!(lock.acquire(true, Some(SHORT)).unwrap().is_none());
    assert!(t.elapsed() >= SHORT);
    // Another thread cannot take it, nor release it.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(lock.acquire(false, None).unwrap().is_none());
            assert!(!lock.is_mine());
            assert!(matches!(lock.release(), Err(Error::NotOwner(_))));
        });
    });
    drop(g);
    assert!(!lock.locked());
    assert!(matches!(lock.release(), Err(Error::NotOwner(_))));
    // Python-style acquire/release in separate places.
    lock.lock().unwrap().forget();
    assert!(lock.locked());
    lock.release().unwrap();
    assert!(!lock.locked());
}

#[rstest]
fn rlock_counts_its_owner(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let r = mproc::get_context(m).rlock().unwrap();
    let g1 = r.acquire(true, None).unwrap().unwrap();
    let g2 = r.acquire(false, None).unwrap().unwrap();
    assert_eq!(r.count(), 2);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(r.acquire(true, Some(SHORT)).unwrap().is_none());
            assert!(matches!(r.release(), Err(Error::NotOwner(_))));
        });
    });
    drop(g2);
    assert_eq!(r.count(), 1);
    assert!(r.is_mine());
    drop(g1);
    assert_eq!(r.count(), 0);
    assert!(!r.is_mine());
    assert!(matches!(r.release(), Err(Error::NotOwner(_))));
    std::thread::scope(|s| {
        s.spawn(|| assert!(r.acquire(false, None).unwrap().is_some()));
    });
}

#[rstest]
fn semaphores(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let s = ctx.semaphore(2).unwrap();
    assert_eq!(s.get_value(), 2);
    let a = s.acquire(true, None).unwrap().unwrap();
    let b = s.acquire(false, None).unwrap().unwrap();
    assert_eq!(s.get_value(), 0);
    assert!(s.acquire(false, None).unwrap().is_none());
    let t = Instant::now();
    assert!(s.acquire(true, Some(SHORT)).unwrap().is_none());
    assert!(t.elapsed() >= SHORT);
    drop(a);
    assert_eq!(s.get_value(), 1);
    b.forget();
    s.release(3).unwrap();
    assert_eq!(s.get_value(), 4);
    assert!(matches!(s.release(0), Err(Error::InvalidArgument(_))));

    let bs = ctx.bounded_semaphore(1).unwrap();
    assert!(matches!(bs.release(1), Err(Error::InvalidArgument(_))));
    let g = bs.acquire(true, None).unwrap().unwrap();
    assert_eq!(bs.get_value(), 0);
    drop(g);
    assert_eq!(bs.get_value(), 1);
    assert!(matches!(bs.release(1), Err(Error::InvalidArgument(_))));
    assert_eq!(bs.get_value(), 1);
}

fn release_later(s: Semaphore, go: Event) -> mproc::Result<()> {
    go.wait(None)?;
    s.release(1)
}

#[rstest]
fn a_semaphore_released_by_another_process_wakes_a_waiter(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let s = ctx.semaphore(0).unwrap();
    let go = ctx.event().unwrap();
    let p = ctx.process(release_later, (s.clone(), go.clone()));
    p.start().unwrap();
    go.set();
    let g = s.acquire(true, LONG).unwrap();
    assert!(g.is_some());
    g.unwrap().forget();
    join_ok(&p);
}

fn wait_event(e: Event) {
    if !e.wait(Some(Duration::from_secs(30))).unwrap() {
        mproc::exit(3);
    }
}

#[rstest]
fn events(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let e = ctx.event().unwrap();
    assert!(!e.is_set());
    let t = Instant::now();
    assert!(!e.wait(Some(SHORT)).unwrap());
    assert!(t.elapsed() >= SHORT);
    let ps: Vec<_> = (0..3)
        .map(|_| {
            let p = ctx.process(wait_event, (e.clone(),));
            p.start().unwrap();
            p
        })
        .collect();
    e.set();
    assert!(e.is_set());
    assert!(e.wait(None).unwrap());
    for p in &ps {
        join_ok(p);
    }
    e.clear();
    assert!(!e.is_set());
    assert!(!e.wait(Some(Duration::ZERO)).unwrap());
}

fn cond_waiter(c: Condition, ready: Semaphore, woken: Semaphore) -> mproc::Result<()> {
    let _g = c.lock()?;
    ready.release(1)?;
    if !c.wait(Some(Duration::from_secs(30)))? {
        mproc::exit(3);
    }
    woken.release(1)
}

#[rstest]
fn condition_notify_and_notify_all(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let c = ctx.condition(None).unwrap();
    let ready = ctx.semaphore(0).unwrap();
    let woken = ctx.semaphore(0).unwrap();
    assert!(matches!(c.wait(Some(SHORT)), Err(Error::NotOwner(_))));
    assert!(matches!(c.notify(1), Err(Error::NotOwner(_))));
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let p = ctx.process(cond_waiter, (c.clone(), ready.clone(), woken.clone()));
            p.start().unwrap();
            p
        })
        .collect();
    for _ in 0..4 {
        ready.acquire(true, LONG).unwrap().unwrap().forget();
    }
    // Each waiter released `ready` while holding the lock; once we hold it, all four wait.
    {
        let _g = c.lock().unwrap();
        c.notify(1).unwrap();
    }
    woken.acquire(true, LONG).unwrap().unwrap().forget();
    // notify(1) woke exactly one.
    assert!(woken.acquire(true, Some(SHORT)).unwrap().is_none());
    {
        let _g = c.lock().unwrap();
        c.notify(2).unwrap();
    }
    for _ in 0..2 {
        woken.acquire(true, LONG).unwrap().unwrap().forget();
    }
    assert!(woken.acquire(true, Some(SHORT)).unwrap().is_none());
    {
        let _g = c.lock().unwrap();
        c.notify_all().unwrap();
    }
    woken.acquire(true, LONG).unwrap().unwrap().forget();
    for p in &ps {
        join_ok(p);
    }
}

fn set_state(c: Condition, v: RawValue<i32>) -> mproc::Result<()> {
    for i in 1..=5 {
        let _g = c.lock()?;
        v.set(i);
        c.notify_all()?;
    }
    Ok(())
}

#[rstest]
fn condition_wait_timeout_and_wait_for(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let c = ctx.condition(Some(ctx.lock().unwrap().into())).unwrap();
    let v = ctx.raw_value::<i32>(0).unwrap();
    {
        let _g = c.lock().unwrap();
        let t = Instant::now();
        assert!(!c.wait(Some(SHORT)).unwrap());
        assert!(t.elapsed() >= SHORT);
        let t = Instant::now();
        assert!(!c.wait_for(|| v.get() == 5, Some(SHORT)).unwrap());
        assert!(t.elapsed() >= SHORT);
    }
    let p = ctx.process(set_state, (c.clone(), v.clone()));
    p.start().unwrap();
    {
        let _g = c.lock().unwrap();
        assert!(c.wait_for(|| v.get() == 5, LONG).unwrap());
    }
    join_ok(&p);
    // An RLock held twice is released fully by wait and restored after.
    let rc = ctx.condition(None).unwrap();
    let _g1 = rc.lock().unwrap();
    let _g2 = rc.lock().unwrap();
    assert!(!rc.wait(Some(Duration::from_millis(10))).unwrap());
    match rc.get_lock() {
        mproc::ConditionLock::RLock(r) => assert_eq!(r.count(), 2),
        other => panic!("default lock is an RLock, got {other:?}"),
    }
}

fn barrier_party(b: Barrier, out: Queue<u32>) -> mproc::Result<()> {
    let i = b.wait(Some(Duration::from_secs(30)))?;
    out.put(i, true, None)?;
    Ok(())
}

#[rstest]
fn barrier_passes_parties_together(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let b = ctx.barrier(4).unwrap();
    let out = ctx.queue::<u32>(None).unwrap();
    assert_eq!(b.parties(), 4);
    assert_eq!(b.n_waiting(), 0);
    assert!(!b.broken());
    for _round in 0..2 {
        let ps: Vec<_> = (0..3)
            .map(|_| {
                let p = ctx.process(barrier_party, (b.clone(), out.clone()));
                p.start().unwrap();
                p
            })
            .collect();
        let mine = b.wait(LONG).unwrap();
        let mut idx: Vec<u32> = (0..3).map(|_| out.get(true, LONG).unwrap()).collect();
        idx.push(mine);
        idx.sort_unstable();
        assert_eq!(idx, vec![0, 1, 2, 3]);
        for p in &ps {
            join_ok(p);
        }
    }
}

fn barrier_expect_broken(b: Barrier) {
    match b.wait(Some(Duration::from_secs(30))) {
        Err(Error::BrokenBarrier) => {}
        _ => mproc::exit(3),
    }
}

#[rstest]
fn barrier_abort_timeout_reset(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let b = ctx.barrier(3).unwrap();
    // A timeout breaks it.
    let t = Instant::now();
    assert!(matches!(b.wait(Some(SHORT)), Err(Error::BrokenBarrier)));
    assert!(t.elapsed() >= SHORT);
    assert!(b.broken());
    assert!(matches!(b.wait(Some(SHORT)), Err(Error::BrokenBarrier)));
    b.reset().unwrap();
    assert!(!b.broken());
    // abort() wakes a waiting process with BrokenBarrier.
    let p = ctx.process(barrier_expect_broken, (b.clone(),));
    p.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.n_waiting() == 0 {
        assert!(
            Instant::now() < deadline,
            "the child never reached the barrier"
        );
        std::thread::yield_now();
    }
    b.abort().unwrap();
    join_ok(&p);
    assert!(b.broken());
    b.reset().unwrap();
    assert!(!b.broken());
    assert!(matches!(ctx.barrier(0), Err(Error::InvalidArgument(_))));
}

fn increment(lock: Lock, counter: RawValue<i64>, n: u32) -> mproc::Result<()> {
    for _ in 0..n {
        let _g = lock.lock()?;
        counter.set(counter.get() + 1);
    }
    Ok(())
}

#[rstest]
fn a_counter_incremented_under_the_lock_is_exact(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let lock = ctx.lock().unwrap();
    let counter = ctx.raw_value::<i64>(0).unwrap();
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let p = ctx.process(increment, (lock.clone(), counter.clone(), 20_000));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &ps {
        join_ok(p);
    }
    assert_eq!(counter.get(), 80_000);
}

fn hold_forever(lock: Lock, rlock: RLock, held: Event) -> mproc::Result<()> {
    let _g = lock.lock()?;
    let _r1 = rlock.lock()?;
    let _r2 = rlock.lock()?;
    held.set();
    // Blocks until killed (the event is never cleared, so wait on another never-set one).
    let never = mproc::default_context().event()?;
    never.wait(None)?;
    Ok(())
}

#[rstest]
fn a_killed_owner_does_not_leave_the_lock_locked(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let lock = ctx.lock().unwrap();
    let rlock = ctx.rlock().unwrap();
    let held = ctx.event().unwrap();
    let p = ctx.process(hold_forever, (lock.clone(), rlock.clone(), held.clone()));
    p.start().unwrap();
    assert!(held.wait(LONG).unwrap());
    assert!(lock.acquire(false, None).unwrap().is_none());
    p.kill().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-9));
    // Its owner died: free to take (the kernel marked it), and not ours.
    assert!(!lock.locked());
    assert!(!lock.is_mine() && !rlock.is_mine());
    let g = lock
        .acquire(true, LONG)
        .unwrap()
        .expect("the lock is recovered");
    assert!(g.owner_died());
    drop(g);
    let g = lock.acquire(false, None).unwrap().unwrap();
    assert!(!g.owner_died());
    drop(g);
    let r = rlock
        .acquire(true, LONG)
        .unwrap()
        .expect("the rlock is recovered");
    assert!(r.owner_died());
    assert_eq!(rlock.count(), 1);
    drop(r);
    assert_eq!(rlock.count(), 0);
}

fn use_lock(_l: Lock) {}

#[test]
fn fork_context_locks_cannot_go_to_other_start_methods() {
    let l = mproc::get_context(StartMethod::Fork).lock().unwrap();
    for m in [StartMethod::Spawn, StartMethod::Forkserver] {
        let p = mproc::get_context(m).process(use_lock, (l.clone(),));
        assert!(matches!(
            p.start(),
            Err(Error::ContextMismatch {
                object: StartMethod::Fork,
                ..
            })
        ));
    }
    let l = mproc::get_context(StartMethod::Forkserver).lock().unwrap();
    for m in StartMethod::ALL {
        let p = mproc::get_context(m).process(use_lock, (l.clone(),));
        p.start().unwrap();
        join_ok(&p);
    }
}

fn wait_forever(c: Condition, ready: Semaphore) -> mproc::Result<()> {
    let _g = c.lock()?;
    ready.release(1)?;
    c.wait(None)?;
    Ok(())
}

#[rstest]
fn a_waiter_killed_in_wait_does_not_hang_notify_all(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let c = ctx.condition(None).unwrap();
    let ready = ctx.semaphore(0).unwrap();
    let woken = ctx.semaphore(0).unwrap();
    let dead = ctx.process(wait_forever, (c.clone(), ready.clone()));
    dead.start().unwrap();
    let alive = ctx.process(cond_waiter, (c.clone(), ready.clone(), woken.clone()));
    alive.start().unwrap();
    for _ in 0..2 {
        ready.acquire(true, LONG).unwrap().unwrap().forget();
    }
    {
        // Both wait once we hold the lock; then one of them dies.
        let _g = c.lock().unwrap();
        dead.kill().unwrap();
        dead.join(LONG).unwrap();
        assert_eq!(dead.exitcode().unwrap(), Some(-9));
        c.notify_all().unwrap();
    }
    woken.acquire(true, LONG).unwrap().unwrap().forget();
    join_ok(&alive);
    // The condition still works.
    let again = ctx.process(cond_waiter, (c.clone(), ready.clone(), woken.clone()));
    again.start().unwrap();
    ready.acquire(true, LONG).unwrap().unwrap().forget();
    {
        let _g = c.lock().unwrap();
        c.notify(1).unwrap();
    }
    woken.acquire(true, LONG).unwrap().unwrap().forget();
    join_ok(&again);
}

fn action_counter_name() -> String {
    let root = mproc::parent_process().map_or(std::process::id(), |(pid, _)| pid);
    format!("mproc_test_barrier_{root}")
}

fn count_action() {
    let shm = mproc::SharedMemory::attach(&action_counter_name()).unwrap();
    shm.buf()[0].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

fn barrier_party_plain(b: Barrier) -> mproc::Result<()> {
    b.wait(Some(Duration::from_secs(30)))?;
    Ok(())
}

#[rstest]
fn barrier_action_runs_once_per_round(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let ctx = mproc::get_context(m);
    let shm = mproc::SharedMemory::create(Some(&action_counter_name()), 8).unwrap();
    let b = ctx.barrier_with_action(3, count_action, None).unwrap();
    for round in 1..=2u8 {
        let ps: Vec<_> = (0..2)
            .map(|_| {
                let p = ctx.process(barrier_party_plain, (b.clone(),));
                p.start().unwrap();
                p
            })
            .collect();
        b.wait(LONG).unwrap();
        // The action ran before anyone was released.
        assert_eq!(
            shm.buf()[0].load(std::sync::atomic::Ordering::SeqCst),
            round
        );
        for p in &ps {
            join_ok(p);
        }
    }
    let captured = 5u8;
    assert!(matches!(
        ctx.barrier_with_action(2, move || assert_eq!(captured, 5), None),
        Err(Error::NotSpawnable(_))
    ));
}

fn panicking_action() {
    panic!("action failed");
}

#[test]
fn a_panicking_barrier_action_breaks_the_barrier() {
    let ctx = mproc::get_context(StartMethod::Spawn);
    let b = ctx.barrier_with_action(2, panicking_action, None).unwrap();
    std::thread::scope(|s| {
        let other = s.spawn(|| b.wait(LONG));
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.wait(LONG)));
        let theirs = other.join();
        // Exactly one of the two ran the action and panicked; the other saw the barrier break.
        let (panicked, broken) = match (mine, theirs) {
            (Err(_), Ok(r)) | (Ok(r), Err(_)) => (true, r),
            _ => (false, Ok(0)),
        };
        assert!(panicked);
        assert!(matches!(broken, Err(Error::BrokenBarrier)));
    });
    assert!(b.broken());
}

// ---------------------------------------------------------------------------------------------
// Condition waiters that stop or die (issue 13): liveness decides, not patience.

/// Sends `signal` (`STOP`, `CONT`, ...) to the processes `ps` (the shell's `kill` builtin: no
/// package beyond `/bin/sh` needed).
fn signal(ps: &[mproc::Process], signal: &str) {
    let pids: Vec<String> = ps.iter().map(|p| p.pid().unwrap().to_string()).collect();
    let status = std::process::Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$@\"", signal])
        .args(&pids)
        .status()
        .expect("run sh");
    assert!(status.success(), "kill -s {signal} {pids:?}");
}

/// The state letter of process `pid` (`S` sleeping, `T` stopped, ...).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The state follows the command name, which is in parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.chars().next().unwrap()
}

fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proc_state(pid) != 'T' {
        assert!(Instant::now() < deadline, "process {pid} never stopped");
        std::thread::yield_now();
    }
}

/// How many times the calling thread has slept (given up the CPU of its own accord).
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn cond_waiter_long(c: Condition, ready: Semaphore, woken: Semaphore) -> mproc::Result<()> {
    let _g = c.lock()?;
    ready.release(1)?;
    if !c.wait(Some(Duration::from_secs(20)))? {
        mproc::exit(3);
    }
    woken.release(1)
}

#[rstest]
fn a_stopped_waiter_never_loses_its_notification(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // Before: notify waited a second for each woken waiter and then took the wake-up back, so
    // a waiter stopped for 2 s missed it (15 of 15 times).
    const N: usize = 15;
    let ctx = mproc::get_context(m);
    let c = ctx.condition(None).unwrap();
    let ready = ctx.semaphore(0).unwrap();
    let woken = ctx.semaphore(0).unwrap();
    let ps: Vec<_> = (0..N)
        .map(|_| {
            let p = ctx.process(cond_waiter_long, (c.clone(), ready.clone(), woken.clone()));
            p.start().unwrap();
            p
        })
        .collect();
    for _ in 0..N {
        ready.acquire(true, LONG).unwrap().unwrap().forget();
    }
    let g = c.lock().unwrap(); // every waiter is inside wait() now
    signal(&ps, "STOP");
    for p in &ps {
        wait_stopped(p.pid().unwrap());
    }
    for _ in 0..N {
        c.notify(1).unwrap();
    }
    drop(g);
    // The fault: the waiters stay stopped for 2 s (longer than any patience a notify could
    // afford while it holds the lock).
    std::thread::sleep(Duration::from_secs(2));
    assert!(woken.acquire(false, None).unwrap().is_none());
    signal(&ps, "CONT");
    for i in 0..N {
        assert!(
            woken.acquire(true, LONG).unwrap().is_some(),
            "only {i} of {N} stopped waiters got their notification"
        );
    }
    for p in &ps {
        join_ok(p);
    }
}

#[rstest]
fn dead_waiters_cost_notify_nothing(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // Before: each dead waiter cost `notify` one second, with the lock held, and notify(1) gave
    // its one wake-up to a dead waiter (then took it back): the live waiter missed it.
    let ctx = mproc::get_context(m);
    let c = ctx.condition(None).unwrap();
    let ready = ctx.semaphore(0).unwrap();
    let woken = ctx.semaphore(0).unwrap();
    let mut order = Vec::new();
    // Three waiters that will die, in front of two live ones (notify picks the oldest).
    for k in 0..5 {
        let p = if k < 3 {
            ctx.process(wait_forever, (c.clone(), ready.clone()))
        } else {
            ctx.process(cond_waiter_long, (c.clone(), ready.clone(), woken.clone()))
        };
        p.start().unwrap();
        // One at a time, so that they wait in this order.
        ready.acquire(true, LONG).unwrap().unwrap().forget();
        drop(c.lock().unwrap());
        order.push(p);
    }
    let g = c.lock().unwrap();
    for p in &order[..3] {
        p.kill().unwrap();
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(-9));
    }
    // notify(1) goes to the oldest live waiter without sleeping once: it waits for nobody.
    let slept = voluntary_switches();
    c.notify(1).unwrap();
    assert_eq!(voluntary_switches(), slept, "notify slept");
    drop(g);
    woken.acquire(true, LONG).unwrap().unwrap().forget();
    join_ok(&order[3]);
    assert!(order[4].is_alive().unwrap());
    let g = c.lock().unwrap();
    let slept = voluntary_switches();
    c.notify_all().unwrap();
    assert_eq!(voluntary_switches(), slept, "notify_all slept");
    drop(g);
    woken.acquire(true, LONG).unwrap().unwrap().forget();
    join_ok(&order[4]);
}

fn waiter_threads(c: Condition, ready: Semaphore, woken: Semaphore, n: u32) -> mproc::Result<()> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| s.spawn(|| cond_waiter_long(c.clone(), ready.clone(), woken.clone())))
            .collect();
        hs.into_iter()
            .try_for_each(|h| h.join().expect("waiter thread"))
    })
}

#[rstest]
fn a_condition_takes_more_waiters_than_its_first_table(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    // 4 processes × 15 threads: the waiters' table grows (in the children, for the spawned
    // ones) beyond its first 16 slots, and the notifier finds them all.
    let ctx = mproc::get_context(m);
    let c = ctx.condition(Some(ctx.lock().unwrap().into())).unwrap();
    let ready = ctx.semaphore(0).unwrap();
    let woken = ctx.semaphore(0).unwrap();
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let p = ctx.process(
                waiter_threads,
                (c.clone(), ready.clone(), woken.clone(), 15),
            );
            p.start().unwrap();
            p
        })
        .collect();
    for _ in 0..60 {
        ready.acquire(true, LONG).unwrap().unwrap().forget();
    }
    {
        let _g = c.lock().unwrap();
        c.notify(7).unwrap();
    }
    for _ in 0..7 {
        woken.acquire(true, LONG).unwrap().unwrap().forget();
    }
    assert!(woken.acquire(true, Some(SHORT)).unwrap().is_none());
    {
        let _g = c.lock().unwrap();
        c.notify_all().unwrap();
    }
    for _ in 7..60 {
        woken.acquire(true, LONG).unwrap().unwrap().forget();
    }
    for p in &ps {
        join_ok(p);
    }
}

#[test]
fn notify_wakes_the_longest_waiting_first() {
    let ctx = mproc::get_context(StartMethod::Spawn);
    let c = ctx.condition(None).unwrap();
    let ready = ctx.semaphore(0).unwrap();
    let order = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..6 {
            let (c, ready, order) = (&c, &ready, &order);
            s.spawn(move || {
                let _g = c.lock().unwrap();
                ready.release(1).unwrap();
                assert!(c.wait(LONG).unwrap());
                order.lock().unwrap().push(i);
            });
            // Waiter i is waiting before waiter i + 1 starts.
            ready.acquire(true, LONG).unwrap().unwrap().forget();
            drop(c.lock().unwrap());
        }
        for n in 1..=6 {
            {
                let _g = c.lock().unwrap();
                c.notify(1).unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while order.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline);
                std::thread::yield_now();
            }
        }
    });
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_forgotten_guard_keeps_its_lock_mapped_after_the_last_handle_goes() {
    // glibc links the robust mutexes a thread holds through their own memory: unmapping a held
    // one would make the next lock operation write into unmapped memory.
    let ctx = mproc::get_context(StartMethod::Spawn);
    let a = ctx.lock().unwrap();
    let r = ctx.rlock().unwrap();
    a.lock().unwrap().forget();
    r.lock().unwrap().forget();
    drop(a);
    drop(r);
    let b = ctx.lock().unwrap();
    for _ in 0..3 {
        let g = b.lock().unwrap();
        assert!(b.is_mine());
        drop(g);
    }
    let c = ctx.condition(None).unwrap();
    let _g = c.lock().unwrap();
    assert!(!c.wait(Some(Duration::from_millis(1))).unwrap());
}
