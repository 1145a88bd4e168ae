//! Every kind of `mproc::Error` a user meets first says what went wrong: each test makes the
//! error happen through the public API and checks that its message names the object and the
//! cause (and, where there is one, that `source()` gives the underlying error).

mproc::enable_test_support!();

use mproc::{Error, StartMethod};
use std::time::Duration;

#[test]
fn a_value_received_as_another_type_names_both_types_and_where_it_failed() {
    // The case: sent as `(i32, Option<i64>, &str)`, received as
    // `(i64, Option<i64>, String)`.
    let (a, b) = mproc::pipe().unwrap();
    a.send(&(42, None::<i64>, "hello")).unwrap();
    let e = b.recv::<(i64, Option<i64>, String)>().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Deserialize(_)), "{e:?}");
    assert!(
        msg.contains("expected `(i64, Option<i64>, String)`"),
        "{msg}"
    );
    assert!(msg.contains("sent as `(i32, Option<i64>, &str)`"), "{msg}");
    assert!(msg.contains("a message received on a Connection"), "{msg}");
    assert!(msg.contains("at byte "), "{msg}");
}

#[test]
fn bytes_left_over_after_a_whole_value_are_a_named_error() {
    // A `u64` read as a `u32` decodes, but leaves four bytes: that is another type, not a `u32`.
    let (a, b) = mproc::pipe().unwrap();
    a.send(&7u64).unwrap();
    let msg = b.recv::<u32>().unwrap_err().to_string();
    assert!(msg.contains("expected `u32`"), "{msg}");
    assert!(msg.contains("sent as `u64`"), "{msg}");
    assert!(msg.contains("4 bytes are left over"), "{msg}");
}

#[test]
fn raw_bytes_received_with_recv_say_to_use_recv_bytes() {
    let (a, b) = mproc::pipe().unwrap();
    a.send_bytes(b"x").unwrap();
    let msg = b.recv::<String>().unwrap_err().to_string();
    assert!(msg.contains("expected `String`"), "{msg}");
    assert!(msg.contains("recv_bytes"), "{msg}");
}

/// A type whose `Serialize` writes fewer fields than its `Deserialize` reads, which bincode
/// cannot decode.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Lopsided {
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    n: u8,
}

#[test]
fn a_queue_item_that_does_not_decode_names_its_type_and_the_serde_mismatch() {
    let q = mproc::get_context(StartMethod::Fork)
        .queue::<Lopsided>()
        .unwrap();
    q.put(Lopsided { note: None, n: 1 }).unwrap();
    let e = q.get_timeout(Duration::from_secs(10)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Deserialize(_)), "{e:?}");
    assert!(
        msg.contains("expected `Lopsided` in an item taken from a queue"),
        "{msg}"
    );
    assert!(msg.contains("sent as `Lopsided`"), "{msg}");
    assert!(msg.contains("skip_serializing_if"), "{msg}");
}

#[test]
fn a_full_queue_hands_the_item_back() {
    let q = mproc::get_context(StartMethod::Fork)
        .queue_builder()
        .maxsize(1)
        .build::<String>()
        .unwrap();
    q.put("first".to_string()).unwrap();
    let e = q.try_put("second".to_string()).unwrap_err();
    assert!(e.is_full());
    assert!(e.to_string().contains("queue is full"), "{e}");
    assert_eq!(e.into_inner(), "second");
    let e = q
        .put_timeout("third".to_string(), Duration::from_millis(1))
        .unwrap_err();
    assert!(e.is_full());
    assert_eq!(e.into_inner(), "third");
}

#[test]
fn setting_the_start_method_twice_names_both_methods() {
    mproc::set_start_method(StartMethod::Spawn).unwrap();
    let e = mproc::set_start_method(StartMethod::Fork).unwrap_err();
    assert!(matches!(
        e,
        Error::StartMethodAlreadySet {
            current: StartMethod::Spawn,
            requested: StartMethod::Fork
        }
    ));
    let msg = e.to_string();
    assert!(msg.contains("spawn") && msg.contains("fork"), "{msg}");
    assert!(msg.contains("force_start_method"), "{msg}");
}

fn lopsided(n: u8) -> Lopsided {
    Lopsided { note: None, n }
}

#[test]
fn a_pool_result_that_does_not_decode_names_its_type() {
    let pool = mproc::get_context(StartMethod::Fork)
        .pool()
        .processes(1)
        .build()
        .unwrap();
    let e = pool
        .apply_async(lopsided, (3,))
        .unwrap()
        .get_timeout(Duration::from_secs(30))
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Deserialize(_)), "{e:?}");
    assert!(
        msg.contains("expected `Lopsided` as the result of a pool task"),
        "{msg}"
    );
    assert!(msg.contains("skip_serializing_if"), "{msg}");
    pool.terminate().unwrap();
    pool.join().unwrap();
}

#[test]
fn misuse_of_a_connection_says_what_to_do_instead() {
    let (mut a, b) = mproc::pipe_simplex().unwrap();
    // `a` is the receiving end, `b` the sending end.
    let msg = b.recv_bytes().unwrap_err().to_string();
    assert!(msg.starts_with("connection is write-only"), "{msg}");
    assert!(msg.contains("receive on the other end"), "{msg}");
    let msg = a.send_bytes(b"x").unwrap_err().to_string();
    assert!(msg.starts_with("connection is read-only"), "{msg}");
    assert!(msg.contains("send on the other end"), "{msg}");
    a.close();
    let e = a.recv_bytes().unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
    assert!(e.to_string().contains("close() was called"), "{e}");
    let e = a.poll_timeout(Duration::from_millis(1)).unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
}

#[test]
fn waits_that_run_out_say_so() {
    let ctx = mproc::get_context(StartMethod::Fork);
    let q = ctx.queue::<u8>().unwrap();
    let e = q.try_get().unwrap_err();
    assert!(matches!(e, Error::Empty), "{e:?}");
    assert!(e.to_string().contains("no item to take"), "{e}");
    // As Python's `queue.Empty` after `get(timeout=t)`.
    let e = q.get_timeout(Duration::from_millis(1)).unwrap_err();
    assert!(matches!(e, Error::Empty), "{e:?}");
    let (_a, b) = mproc::pipe().unwrap();
    let e = b.recv_bytes_timeout(Duration::from_millis(1)).unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(
        e.to_string()
            .contains("wait again, or with a longer timeout"),
        "{e}"
    );
}

fn nothing() {}

#[test]
fn a_process_used_out_of_order_says_what_to_call() {
    let p = mproc::get_context(StartMethod::Fork).process(nothing, ());
    let e = p.join().unwrap_err();
    assert!(matches!(e, Error::NotStarted), "{e:?}");
    assert!(e.to_string().contains("call start()"), "{e}");
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    p.close().unwrap();
    let e = p.is_alive().unwrap_err();
    assert!(matches!(e, Error::ProcessClosed), "{e:?}");
    assert!(e.to_string().contains("close() released it"), "{e}");
}

#[test]
fn a_broken_barrier_says_how_to_mend_it() {
    let b = mproc::get_context(StartMethod::Fork).barrier(2).unwrap();
    b.abort().unwrap();
    let e = b.wait().unwrap_err();
    assert!(matches!(e, Error::BrokenBarrier), "{e:?}");
    assert!(e.to_string().contains("reset()"), "{e}");
}

#[test]
fn an_os_error_is_the_source_of_the_error() {
    use std::error::Error as _;
    let e = mproc::SharedMemory::attach("mproc-errors-test-no-such-block").unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    let source = e
        .source()
        .expect("an Io error has the OS error as its source");
    let io = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}
