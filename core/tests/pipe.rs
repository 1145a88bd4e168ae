//! Pipe and Connection: framing (CPython's), directions, end of file, limits, polling, and
//! payloads crossing every start method intact and in order.

mproc::enable_test_support!();

mod common;

use mproc::{Connection, Error, StartMethod};
use proptest::prelude::*;
use rstest::rstest;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Echoes back the number of messages announced first. (It cannot wait for end of file: under
/// fork the child inherits the parent's end too, exactly as in Python, so end of file never
/// comes while the child lives.)
fn echo(conn: Connection) -> mproc::Result<()> {
    let n: usize = conn.recv()?;
    for _ in 0..n {
        let b = conn.recv_bytes()?;
        conn.send_bytes(&b)?;
    }
    Ok(())
}

/// Sends three values, then closes its end.
fn send_three(mut conn: Connection) -> mproc::Result<()> {
    conn.send(&1u32)?;
    conn.send("two")?;
    conn.send(&vec![3u8; 3])?;
    conn.close();
    Ok(())
}

/// Receives one value and sends it back doubled.
fn recv_one(conn: Connection) -> mproc::Result<()> {
    let v: u64 = conn.recv()?;
    conn.send(&(v * 2))
}

fn ctx(m: StartMethod) -> mproc::Context {
    mproc::get_context(m)
}

const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::Spawn,
    StartMethod::Forkserver,
];

#[test]
fn duplex_both_ways_in_process() {
    let (a, b) = mproc::pipe().unwrap();
    a.send(&(42, None::<i32>, "hello".to_string())).unwrap();
    b.send(&[1.5f64, 2.5]).unwrap();
    assert_eq!(
        b.recv::<(i32, Option<i32>, String)>().unwrap(),
        (42, None, "hello".into())
    );
    assert_eq!(a.recv::<[f64; 2]>().unwrap(), [1.5, 2.5]);
    assert!(a.readable() && a.writable() && b.readable() && b.writable());
}

#[test]
fn simplex_ends_have_one_direction() {
    let (r, w) = mproc::pipe_simplex().unwrap();
    assert!(r.readable() && !r.writable());
    assert!(!w.readable() && w.writable());
    assert!(matches!(r.send(&1), Err(Error::NotWritable)));
    assert!(matches!(r.send_bytes(b"x"), Err(Error::NotWritable)));
    assert!(matches!(w.recv::<i32>(), Err(Error::NotReadable)));
    assert!(matches!(w.recv_bytes(), Err(Error::NotReadable)));
    assert!(matches!(w.poll(), Err(Error::NotReadable)));
    w.send(&7u8).unwrap();
    assert_eq!(r.recv::<u8>().unwrap(), 7);
}

#[rstest]
fn eof_after_the_other_end_closes(#[values(true, false)] duplex: bool) {
    let (r, mut w) = if duplex {
        mproc::pipe().unwrap()
    } else {
        mproc::pipe_simplex().unwrap()
    };
    w.send_bytes(b"last").unwrap();
    w.close();
    assert!(w.closed());
    assert!(matches!(w.send_bytes(b"x"), Err(Error::Closed)));
    assert_eq!(r.recv_bytes().unwrap(), b"last");
    assert!(r.poll().unwrap(), "end of file counts as ready");
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
    let (mut a, b) = mproc::pipe().unwrap();
    drop(b);
    assert!(matches!(a.send_bytes(b"into the void"), Err(Error::Eof)));
    a.close();
    assert!(matches!(a.recv_bytes(), Err(Error::Closed)));
}

#[test]
fn maxlen_stops_reading_as_python_does() {
    // Duplex: the end is no longer readable, but it can still send (Python's
    // `_bad_message_length`).
    let (a, b) = mproc::pipe().unwrap();
    a.send_bytes(&[0u8; 100]).unwrap();
    match b.recv_bytes_max(10) {
        Err(Error::MessageTooLong {
            len: 100,
            maxlen: 10,
        }) => {}
        other => panic!("expected MessageTooLong, got {other:?}"),
    }
    assert!(!b.closed() && !b.readable() && b.writable());
    assert!(matches!(b.recv_bytes(), Err(Error::NotReadable)));
    b.send_bytes(b"still here").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"still here");
    // Read-only: the end is closed.
    let (r, w) = mproc::pipe_simplex().unwrap();
    w.send_bytes(&[0u8; 100]).unwrap();
    assert!(matches!(
        r.recv_bytes_max(10),
        Err(Error::MessageTooLong { .. })
    ));
    assert!(r.closed());
    assert!(matches!(r.recv_bytes(), Err(Error::Closed)));
    // A message within the limit is fine.
    let (a, b) = mproc::pipe().unwrap();
    a.send_bytes(&[9u8; 10]).unwrap();
    assert_eq!(b.recv_bytes_max(10).unwrap(), [9u8; 10]);
}

#[test]
fn send_bytes_range_as_python() {
    let (a, b) = mproc::pipe().unwrap();
    let buf = b"0123456789";
    a.send_bytes_range(buf, 2..5).unwrap();
    a.send_bytes_range(buf, 7..).unwrap();
    a.send_bytes_range(buf, 10..).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"234");
    assert_eq!(b.recv_bytes().unwrap(), b"789");
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert!(matches!(
        a.send_bytes_range(buf, 11..),
        Err(Error::BadRange(_))
    ));
    assert!(matches!(
        a.send_bytes_range(buf, 5..11),
        Err(Error::BadRange(_))
    ));
    assert!(matches!(
        a.send_bytes_range(buf, 1..=usize::MAX),
        Err(Error::BadRange(_))
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = a.send_bytes_range(buf, 6..4);
    assert!(matches!(backwards, Err(Error::BadRange(_))));
}

#[test]
fn poll_waits_for_its_timeout() {
    let (a, b) = mproc::pipe().unwrap();
    assert!(!b.poll().unwrap());
    let t0 = Instant::now();
    assert!(!b.poll_timeout(Duration::from_millis(150)).unwrap());
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "poll returned before its timeout"
    );
    a.send(&1u8).unwrap();
    assert!(b.poll_timeout(Duration::from_secs(5)).unwrap());
    assert_eq!(mproc::connection::wait(&[&b]).unwrap(), [0]);
    assert_eq!(b.recv::<u8>().unwrap(), 1);
}

#[test]
fn framing_is_cpythons() {
    let (ours, mut raw) = UnixStream::pair().unwrap();
    let conn = Connection::from_fd(OwnedFd::from(ours));
    conn.send_bytes(b"abc").unwrap();
    let mut got = [0u8; 7];
    raw.read_exact(&mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 3, b'a', b'b', b'c']);
    // The long form (-1, then an 8-byte length) is understood for any size.
    raw.write_all(&[
        0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o',
    ])
    .unwrap();
    raw.write_all(&[0, 0, 0, 2, b'o', b'k']).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"hello");
    assert_eq!(conn.recv_bytes().unwrap(), b"ok");
}

#[test]
fn talks_to_cpython_multiprocessing_connection() {
    let Ok(probe) = std::process::Command::new("python3")
        .arg("--version")
        .output()
    else {
        eprintln!("python3 not found: skipping the CPython interoperability check");
        return;
    };
    assert!(probe.status.success());
    let (ours, theirs) = UnixStream::pair().unwrap();
    let inheritable = common::dup_inheritable(&theirs);
    drop(theirs);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&inheritable);
    let script = "import sys\nfrom multiprocessing.connection import Connection\n\
                  c = Connection(int(sys.argv[1]))\n\
                  while True:\n    b = c.recv_bytes()\n    if b == b'stop': break\n    c.send_bytes(b[::-1])\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &fd.to_string()])
        .spawn()
        .unwrap();
    drop(inheritable);
    let conn = Connection::from_fd(OwnedFd::from(ours));
    for msg in [
        b"hello".to_vec(),
        vec![],
        (0..=255u8).cycle().take(300_000).collect(),
    ] {
        conn.send_bytes(&msg).unwrap();
        let mut want = msg.clone();
        want.reverse();
        assert_eq!(conn.recv_bytes().unwrap(), want);
    }
    conn.send_bytes(b"stop").unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn connections_refuse_to_serialise_outside_a_start() {
    let (a, b) = mproc::pipe().unwrap();
    match a.send(&b) {
        Err(Error::Serialize(msg)) => assert!(msg.contains("child process"), "{msg}"),
        other => panic!("expected a serialisation error, got {other:?}"),
    }
}

#[rstest]
fn child_sends_then_eof(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let (ours, theirs) = ctx(m).pipe().unwrap();
    let p = ctx(m).process(send_three, (theirs,));
    p.start().unwrap();
    assert_eq!(ours.recv::<u32>().unwrap(), 1);
    assert_eq!(ours.recv::<String>().unwrap(), "two");
    assert_eq!(ours.recv::<Vec<u8>>().unwrap(), [3, 3, 3]);
    // The child's end was moved into the child: once it closes, nothing holds it open.
    assert!(matches!(ours.recv::<u32>(), Err(Error::Eof)));
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

#[rstest]
fn simplex_end_to_a_child(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let (r, w) = ctx(m).pipe_simplex().unwrap();
    let p = ctx(m).process(send_three, (w,));
    p.start().unwrap();
    assert_eq!(r.recv::<u32>().unwrap(), 1);
    assert_eq!(r.recv::<String>().unwrap(), "two");
    assert_eq!(r.recv::<Vec<u8>>().unwrap(), [3, 3, 3]);
    p.join().unwrap();
}

#[rstest]
fn buffered_bytes_travel_with_the_connection(
    #[values(StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver)] m: StartMethod,
) {
    let (a, b) = ctx(m).pipe().unwrap();
    a.send(&10u64).unwrap();
    a.send(&21u64).unwrap();
    // Both messages arrive in one read; the second stays in b's buffer...
    assert_eq!(b.recv::<u64>().unwrap(), 10);
    // ...and goes with b to the child, which must receive it.
    let p = ctx(m).process(recv_one, (b,));
    p.start().unwrap();
    assert_eq!(a.recv::<u64>().unwrap(), 42);
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        2 => proptest::collection::vec(any::<u8>(), 16_000..70_000),
        1 => (0usize..4 * 1024 * 1024).prop_map(|n| (0..n).map(|i| (i * 31 % 251) as u8).collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn any_messages_round_trip_intact_and_in_order(
        msgs in proptest::collection::vec(payload(), 0..12),
        mi in 0usize..3,
    ) {
        let m = METHODS[mi];
        let (ours, theirs) = ctx(m).pipe().unwrap();
        let p = ctx(m).process(echo, (theirs,));
        p.start().unwrap();
        ours.send(&msgs.len()).unwrap();
        for msg in &msgs {
            ours.send_bytes(msg).unwrap();
            let back = ours.recv_bytes().unwrap();
            prop_assert_eq!(back.len(), msg.len());
            prop_assert!(&back == msg);
        }
        drop(ours);
        p.join_timeout(Duration::from_secs(30)).unwrap();
        prop_assert_eq!(p.exitcode().unwrap(), Some(0));
    }
}
