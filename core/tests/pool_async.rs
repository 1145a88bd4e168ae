//! Pool results awaited in an async runtime (tokio, current-thread): `AsyncResult` and
//! `MapResult` as futures, `IMapStream` as a `futures_core::Stream`, wake-ups that come from the
//! pool (one per result, no polling), and cancellation: a dropped future or stream loses and
//! leaks nothing, and the result that arrives for it is discarded cleanly.

mproc::enable_test_support!();

mod common;

use common::gates::{gated, Gates};
use futures_core::Stream;
use mproc::{Error, StartMethod};
use rstest::rstest;
use serde::{Deserialize, Deserializer, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

fn pool(m: StartMethod, n: usize) -> mproc::Pool {
    mproc::get_context(m)
        .pool()
        .processes(n)
        .build()
        .expect("pool")
}

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(n));
    n
}

/// The next item of a stream, without the `futures` crate.
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[rstest]
fn results_can_be_awaited(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    rt().block_on(async {
        assert_eq!(p.apply_async(square, (7,)).unwrap().await.unwrap(), 49);
        // Many at once, awaited last first.
        let rs: Vec<_> = (0..10u64)
            .map(|i| p.apply_async(square, (i,)).unwrap())
            .collect();
        for (i, r) in rs.into_iter().enumerate().rev() {
            assert_eq!(r.await.unwrap(), (i * i) as u64);
        }
        // A map, and a task awaited from a task of the runtime.
        let all = p.map_async(square, 0..100u64).unwrap().await.unwrap();
        assert_eq!(all[99], 99 * 99);
        let r = p.apply_async(square, (3,)).unwrap();
        assert_eq!(tokio::spawn(r).await.unwrap().unwrap(), 9);
        // A deadline, seen through the future.
        let slow = p
            .apply_async_with(sleep_ms, (10_000,))
            .timeout(Duration::from_millis(300))
            .submit()
            .unwrap();
        assert!(matches!(slow.await, Err(Error::TaskTimeout { .. })));
    });
    p.close().unwrap();
    p.join().unwrap();
}

/// A waker that counts its wake-ups and reports each on a channel.
struct CountingWaker {
    wakes: AtomicUsize,
    tx: std::sync::Mutex<mpsc::Sender<()>>,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.lock().unwrap().send(());
    }
}

fn counting_waker() -> (Arc<CountingWaker>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let w = Arc::new(CountingWaker {
        wakes: AtomicUsize::new(0),
        tx: std::sync::Mutex::new(tx),
    });
    (w, rx)
}

#[rstest]
fn the_pool_wakes_a_pending_future_once(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 1);
    let mut gates = Gates::new();
    let mut r = p.apply_async(gated, (gates.path(), 1)).unwrap();
    let (w, woken) = counting_waker();
    let waker = Waker::from(Arc::clone(&w));
    let mut cx = Context::from_waker(&waker);
    // Polled twice while pending: the waker is kept once, not piled up.
    assert!(Pin::new(&mut r).poll(&mut cx).is_pending());
    assert!(Pin::new(&mut r).poll(&mut cx).is_pending());
    gates.wait_for(&[1]);
    assert_eq!(w.wakes.load(Ordering::SeqCst), 0);
    gates.release(1);
    // Woken by the pool when the result is in, not before.
    woken.recv_timeout(LONG).expect("woken by the pool");
    assert!(matches!(Pin::new(&mut r).poll(&mut cx), Poll::Ready(Ok(1))));
    assert_eq!(w.wakes.load(Ordering::SeqCst), 1);
    drop(waker);
    // Once the handler thread is done (it may still be returning from `wake`), nothing of the
    // waker is left.
    p.close().unwrap();
    p.join().unwrap();
    assert_eq!(Arc::strong_count(&w), 1, "the pool kept no waker");
}

// ---- cancellation ----

static CREATED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A result that counts how many of it the parent made and dropped.
#[derive(Debug, Serialize)]
struct Tracked(u32);

impl<'de> Deserialize<'de> for Tracked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        CREATED.fetch_add(1, Ordering::SeqCst);
        Ok(Tracked(v))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs in a worker: its counters are the worker's own, the test reads the parent's.
fn gated_tracked(path: String, id: u32) -> Tracked {
    Tracked(gated(path, id))
}

#[rstest]
fn a_dropped_future_loses_and_leaks_nothing(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let mut gates = Gates::new();
    let (tx, delivered) = mpsc::channel();
    let r = p
        .apply_async_with(gated_tracked, (gates.path(), 1))
        .callback(move |t: &Tracked| tx.send(t.0).unwrap())
        .submit()
        .unwrap();
    // Polled with a waker, then dropped: the pool must not keep the waker or the value.
    let (w, _woken) = counting_waker();
    let runtime = rt();
    runtime.block_on(async {
        let gave_up = tokio::time::timeout(Duration::from_millis(50), r).await;
        assert!(gave_up.is_err(), "the task is held at its gate");
    });
    let mut other = p.apply_async(gated_tracked, (gates.path(), 2)).unwrap();
    let waker = Waker::from(Arc::clone(&w));
    assert!(Pin::new(&mut other)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    drop(waker);
    drop(other);
    gates.wait_for(&[1, 2]);
    gates.release(1);
    gates.release(2);
    // The dropped future's task still ran, and its callback saw the value.
    assert_eq!(delivered.recv_timeout(LONG).unwrap(), 1);
    // The pool keeps serving, awaited or not.
    runtime.block_on(async {
        assert_eq!(p.apply_async(square, (4,)).unwrap().await.unwrap(), 16);
    });
    p.close().unwrap();
    p.join().unwrap();
    // Every result delivered: each value made in the parent was dropped, and the waker too.
    assert_eq!(CREATED.load(Ordering::SeqCst), 2);
    assert_eq!(DROPPED.load(Ordering::SeqCst), 2);
    assert_eq!(Arc::strong_count(&w), 1, "the pool kept no waker");
    assert!(common::zombie_children().is_empty());
}

#[rstest]
fn imap_as_a_stream(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    rt().block_on(async {
        let mut s = p.imap(square, 0..50u64).unwrap().into_stream();
        assert_eq!(s.size_hint(), (50, Some(50)));
        let mut got = Vec::new();
        while let Some(r) = next(&mut s).await {
            got.push(r.unwrap());
        }
        assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
        assert!(next(&mut s).await.is_none());
        let mut s = p
            .imap_unordered_with(square, 0..50u64)
            .chunksize(7)
            .submit()
            .unwrap()
            .into_stream();
        let mut got = Vec::new();
        while let Some(r) = next(&mut s).await {
            got.push(r.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
    });
    p.close().unwrap();
    p.join().unwrap();
}

#[rstest]
fn a_dropped_stream_leaves_the_pool_serving(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let p = pool(m, 2);
    let mut gates = Gates::new();
    let path = gates.path();
    rt().block_on(async {
        let mut s = p
            .imap(
                |(path, id): (String, u32)| gated(path, id),
                (0..4u32).map(|i| (path.clone(), i)),
            )
            .unwrap()
            .into_stream();
        gates.wait_for(&[0, 1]);
        gates.release(0);
        assert_eq!(next(&mut s).await.unwrap().unwrap(), 0);
        // Given up while item 1 is still running.
        let gave_up = tokio::time::timeout(Duration::from_millis(50), next(&mut s)).await;
        assert!(gave_up.is_err());
    });
    gates.release(1);
    // The stream's remaining tasks still run, one after the other: when item 0 was quick (it
    // may reach its gate last and be released at once), the pool takes the tasks for short
    // ones and may queue item 3 behind item 2 on one worker, so 3 need not start before 2 ends.
    gates.wait_for(&[2]);
    gates.release(2);
    gates.wait_for(&[3]);
    gates.release(3);
    assert_eq!(p.map(square, 0..10u64).unwrap().len(), 10);
    p.close().unwrap();
    p.join().unwrap();
}
