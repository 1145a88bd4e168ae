//! A peer cannot kill the receiver (issue 13, first finding): lengths read off the wire are
//! claims, decoding is bounded, and every outcome of a hostile or corrupt stream is a value or a
//! typed error — never an abort, a panic, a spin or a hang.

mod common;

use mproc::{Connection, Error};
use proptest::prelude::*;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A connection and the raw peer socket that feeds it.
fn pair() -> (Connection, UnixStream) {
    let (ours, raw) = UnixStream::pair().unwrap();
    (Connection::from_fd(OwnedFd::from(ours)), raw)
}

/// A long-form header: `-1`, then the 8-byte length.
fn long_header(len: u64) -> Vec<u8> {
    let mut h = (-1i32).to_be_bytes().to_vec();
    h.extend_from_slice(&len.to_be_bytes());
    h
}

fn short_header(len: i32) -> Vec<u8> {
    len.to_be_bytes().to_vec()
}

#[test]
fn declared_lengths_above_the_maximum_are_refused_at_the_header() {
    for len in [
        1u64 << 62,
        1 << 40,
        u64::MAX,
        mproc::DEFAULT_MAX_MESSAGE_SIZE + 1,
    ] {
        let (conn, mut raw) = pair();
        raw.write_all(&long_header(len)).unwrap();
        match conn.recv_bytes() {
            Err(Error::MessageTooLong { len: got, maxlen }) => {
                assert_eq!(got, len);
                assert_eq!(maxlen as u64, mproc::DEFAULT_MAX_MESSAGE_SIZE);
            }
            other => panic!("length {len}: expected MessageTooLong, got {other:?}"),
        }
        // The stream is no longer at a message boundary: as after Python's bad message length,
        // the duplex end stops reading but still sends.
        assert!(matches!(conn.recv_bytes(), Err(Error::NotReadable)));
        conn.send_bytes(b"still sends").unwrap();
    }
}

#[test]
fn without_a_maximum_a_claimed_length_costs_nothing_until_bytes_arrive() {
    // No limit at all: 2^62, 2^40 and u64::MAX are only claims. The peer sends a little and
    // goes; the receiver sees end of file (as CPython's EOFError), having allocated no more than
    // what arrived. An allocation from the header would abort this process (2^62, 2^40) or panic
    // with "capacity overflow" (u64::MAX).
    for len in [1u64 << 62, 1 << 40, u64::MAX, 0x7FFF_FFFF] {
        let (mut conn, mut raw) = pair();
        conn.set_max_message_size(None);
        assert_eq!(conn.max_message_size(), None);
        raw.write_all(&long_header(len)).unwrap();
        raw.write_all(&[7u8; 100_000]).unwrap();
        drop(raw);
        assert!(matches!(conn.recv_bytes(), Err(Error::Eof)), "length {len}");
    }
}

#[test]
fn short_form_lengths_are_claims_too() {
    let (conn, mut raw) = pair();
    raw.write_all(&short_header(0x7FFF_FFFF)).unwrap();
    raw.write_all(b"abc").unwrap();
    drop(raw);
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
    // A negative length other than -1 is a broken stream.
    let (conn, mut raw) = pair();
    raw.write_all(&short_header(-5)).unwrap();
    match conn.recv_bytes() {
        Err(Error::Deserialize(m)) => assert!(m.contains("-5"), "{m}"),
        other => panic!("expected a bad length, got {other:?}"),
    }
    assert!(matches!(conn.recv_bytes(), Err(Error::NotReadable)));
}

#[test]
fn the_maximum_message_size_is_configurable() {
    let (mut conn, mut raw) = pair();
    conn.set_max_message_size(Some(10));
    raw.write_all(&short_header(10)).unwrap();
    raw.write_all(&[1u8; 10]).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), [1u8; 10]);
    raw.write_all(&short_header(11)).unwrap();
    assert!(matches!(
        conn.recv_bytes(),
        Err(Error::MessageTooLong {
            len: 11,
            maxlen: 10
        })
    ));
    // A read-only end is closed by an over-long message.
    let (r, w) = mproc::pipe_simplex().unwrap();
    let mut r = r;
    r.set_max_message_size(Some(4));
    w.send_bytes(b"12345").unwrap();
    assert!(matches!(r.recv_bytes(), Err(Error::MessageTooLong { .. })));
    assert!(r.closed());
}

/// Scenario run in a process of its own under a 1 GiB address-space limit (`ulimit -v`).
fn inner_limited_memory() {
    // 1. A frame that claims 0x7FFFFFFF bytes, then 1 MiB of them, then end of file.
    let (mut conn, raw) = pair();
    conn.set_max_message_size(None);
    let writer = std::thread::spawn(move || {
        let mut raw = raw;
        raw.write_all(&short_header(0x7FFF_FFFF)).unwrap();
        raw.write_all(&vec![1u8; 1 << 20]).unwrap();
    });
    let r = conn.recv_bytes();
    writer.join().unwrap();
    assert!(matches!(r, Err(Error::Eof)), "{r:?}");
    println!("INNER: claim of 0x7FFFFFFF then end of file: Eof");

    // 2. A peer that really sends 0x7FFFFFFF bytes, more than the process may map: the buffer
    //    cannot grow, which is a typed error, not an abort.
    let (mut conn, raw) = pair();
    conn.set_max_message_size(None);
    let writer = std::thread::spawn(move || {
        let mut raw = raw;
        let chunk = vec![2u8; 1 << 20];
        let _ = raw.write_all(&short_header(0x7FFF_FFFF));
        for _ in 0..2048 {
            if raw.write_all(&chunk).is_err() {
                return; // the receiver gave up and closed
            }
        }
    });
    let r = conn.recv_bytes();
    match &r {
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::OutOfMemory => {}
        other => panic!("expected an out-of-memory error, got {other:?}"),
    }
    assert!(
        !conn.readable(),
        "the end stops reading after a lost message"
    );
    drop(conn);
    writer.join().unwrap();
    println!("INNER: 0x7FFFFFFF bytes under 1 GiB: OutOfMemory");
}

#[test]
fn a_process_limited_to_one_gib_survives_a_two_gib_claim() {
    if common::is_inner() {
        inner_limited_memory();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -v 1048576 && exec \"$0\" \"$@\"",
            exe.to_str().unwrap(),
            "--exact",
            "a_process_limited_to_one_gib_survives_a_two_gib_claim",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("MPROC_INNER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "inner run failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("INNER: claim of 0x7FFFFFFF then end of file: Eof"),
        "{stdout}"
    );
    assert!(
        stdout.contains("INNER: 0x7FFFFFFF bytes under 1 GiB: OutOfMemory"),
        "{stdout}"
    );
}

/// The type header `Connection::send` writes before a value (the length of the sender's type
/// name, a little-endian `u16`, then the name), for a name left empty.
const NO_TYPE_NAME: [u8; 2] = [0, 0];

#[test]
fn a_vec_of_units_declaring_two_to_the_forty_elements_is_an_error_not_a_spin() {
    // bincode: an 8-byte little-endian length and no element bytes. bincode's own `with_limit`
    // does not bound this (each `()` reads nothing); the decoder's element budget does.
    // (`recv` reads the sender's type name first: an empty one here.)
    let (conn, mut raw) = pair();
    raw.write_all(&short_header(10)).unwrap();
    raw.write_all(&NO_TYPE_NAME).unwrap();
    raw.write_all(&(1u64 << 40).to_le_bytes()).unwrap();
    let t0 = Instant::now();
    match conn.recv::<Vec<()>>() {
        Err(Error::Deserialize(m)) => assert!(m.contains("elements"), "{m}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    // A spin would run for hours; this bound only tells a spin from an answer.
    assert!(t0.elapsed() < Duration::from_secs(30));
    // The same for a map whose keys and values take no bytes.
    raw.write_all(&short_header(10)).unwrap();
    raw.write_all(&NO_TYPE_NAME).unwrap();
    raw.write_all(&(1u64 << 40).to_le_bytes()).unwrap();
    assert!(matches!(
        conn.recv::<std::collections::BTreeMap<(), ()>>(),
        Err(Error::Deserialize(_))
    ));
    // Honest values of the same types pass.
    let (a, b) = mproc::pipe().unwrap();
    a.send(&vec![(); 1000]).unwrap();
    assert_eq!(b.recv::<Vec<()>>().unwrap().len(), 1000);
    a.send(&vec![vec![(); 3]; 500]).unwrap();
    assert_eq!(b.recv::<Vec<Vec<()>>>().unwrap().len(), 500);
    a.send(&vec![(1u8,); 100_000]).unwrap();
    assert_eq!(b.recv::<Vec<(u8,)>>().unwrap().len(), 100_000);
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // bincode: variant index 1 (Node) repeated, ending in 0 (Leaf). A million levels would
    // overflow any stack if decoding recursed without a bound.
    let levels = 1_000_000usize;
    let mut body = Vec::with_capacity(levels * 4 + 6);
    body.extend_from_slice(&NO_TYPE_NAME);
    for _ in 0..levels {
        body.extend_from_slice(&1u32.to_le_bytes());
    }
    body.extend_from_slice(&0u32.to_le_bytes());
    let (conn, raw) = pair();
    let writer = std::thread::spawn(move || {
        let mut raw = raw;
        raw.write_all(&short_header(body.len() as i32)).unwrap();
        raw.write_all(&body).unwrap();
    });
    match conn.recv::<Tree>() {
        Err(Error::Deserialize(m)) => assert!(m.contains("deeper"), "{m}"),
        other => panic!("expected a depth error, got {other:?}"),
    }
    writer.join().unwrap();
    // Moderate nesting passes, on an ordinary 2 MiB thread stack.
    std::thread::spawn(|| {
        let (a, b) = mproc::pipe().unwrap();
        let mut t = Tree::Leaf;
        for _ in 0..200 {
            t = Tree::Node(Box::new(t));
        }
        a.send(&t).unwrap();
        assert_eq!(b.recv::<Tree>().unwrap(), t);
    })
    .join()
    .unwrap();
}

#[test]
fn a_receive_with_a_timeout_keeps_what_arrived() {
    let (conn, mut raw) = pair();
    let t0 = Instant::now();
    assert!(matches!(
        conn.recv_bytes_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    // Half a long-form header, then the rest and half the body, then the rest.
    let mut frame = long_header(6);
    frame.extend_from_slice(b"abcdef");
    raw.write_all(&frame[..7]).unwrap();
    assert!(matches!(
        conn.recv_bytes_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    raw.write_all(&frame[7..15]).unwrap();
    assert!(matches!(
        conn.recv_bytes_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    raw.write_all(&frame[15..]).unwrap();
    assert_eq!(
        conn.recv_bytes_timeout(Duration::from_secs(5)).unwrap(),
        b"abcdef"
    );
    // A value, with the typed receive.
    let (a, b) = mproc::pipe().unwrap();
    assert!(matches!(
        b.recv_timeout::<u32>(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    a.send(&5u32).unwrap();
    assert_eq!(b.recv_timeout::<u32>(Duration::from_secs(5)).unwrap(), 5);
}

/// What a receive may legitimately answer to a hostile stream.
fn is_typed(e: &Error) -> bool {
    matches!(
        e,
        Error::Eof
            | Error::NotReadable
            | Error::Closed
            | Error::MessageTooLong { .. }
            | Error::Deserialize(_)
    ) || matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::OutOfMemory)
}

/// Feeds `stream` to a connection (then end of file) and receives until an error; every
/// outcome must be a value or a typed error, and the loop ends.
fn drain<T: serde::de::DeserializeOwned>(stream: Vec<u8>, max: Option<u64>, typed: bool) {
    let (mut conn, raw) = pair();
    conn.set_max_message_size(max);
    let writer = std::thread::spawn(move || {
        let mut raw = raw;
        let _ = raw.write_all(&stream);
    });
    // Each message takes at least 4 bytes of the stream, so this many receives are enough to
    // reach its end.
    for _ in 0..10_000 {
        let r = if typed {
            conn.recv::<T>().map(|_| ())
        } else {
            conn.recv_bytes().map(|_| ())
        };
        match r {
            Ok(()) => continue,
            Err(Error::Deserialize(_)) if typed => continue, // a whole frame, a bad value
            Err(e) => {
                assert!(is_typed(&e), "untyped outcome {e:?}");
                break;
            }
        }
    }
    writer.join().unwrap();
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    let body = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        // An honest frame.
        body.clone().prop_map(|b| {
            let mut f = short_header(b.len() as i32);
            f.extend(b);
            f
        }),
        // A short header with any length, and some bytes.
        (any::<i32>(), body.clone()).prop_map(|(n, b)| {
            let mut f = short_header(n);
            f.extend(b);
            f
        }),
        // A long header with any length, and some bytes.
        (any::<u64>(), body).prop_map(|(n, b)| {
            let mut f = long_header(n);
            f.extend(b);
            f
        }),
    ]
}

/// Honest frames of values as `Connection::send` writes them, then mutated: bytes flipped, cut,
/// inserted.
fn mutated_stream() -> impl Strategy<Value = Vec<u8>> {
    let values = proptest::collection::vec(
        (
            any::<u32>(),
            ".{0,8}",
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<Option<u16>>(),
        ),
        1..6,
    );
    let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8);
    (values, edits).prop_map(|(values, edits)| {
        let mut s = Vec::new();
        for v in values {
            let b = bincode::serialize(&v).unwrap();
            s.extend_from_slice(&((b.len() + NO_TYPE_NAME.len()) as i32).to_be_bytes());
            s.extend(NO_TYPE_NAME);
            s.extend(b);
        }
        for (at, byte, kind) in edits {
            if s.is_empty() {
                break;
            }
            let i = at % s.len();
            match kind {
                0 => s[i] ^= byte | 1,
                1 => s.truncate(i),
                _ => s.insert(i, byte),
            }
        }
        s
    })
}

type Message = (u32, String, Vec<u8>, Option<u16>);

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn generated_frames_give_values_or_typed_errors(
        frames in proptest::collection::vec(frame(), 0..8),
        limited in any::<bool>(),
    ) {
        let stream: Vec<u8> = frames.concat();
        let max = if limited { Some(1 << 20) } else { None };
        drain::<Message>(stream, max, false);
    }

    #[test]
    fn mutated_streams_of_values_give_values_or_typed_errors(stream in mutated_stream()) {
        drain::<Message>(stream.clone(), Some(mproc::DEFAULT_MAX_MESSAGE_SIZE), true);
        drain::<Vec<()>>(stream, None, true);
    }
}

#[test]
fn a_timeout_too_long_for_the_clock_waits_like_no_timeout() {
    let (a, b) = mproc::pipe().unwrap();
    a.send_bytes(b"x").unwrap();
    assert_eq!(b.recv_bytes_timeout(Duration::MAX).unwrap(), b"x");
    a.send(&1u8).unwrap();
    assert_eq!(b.recv_timeout::<u8>(Duration::MAX).unwrap(), 1);
    a.send_bytes(b"y").unwrap();
    assert!(b.poll_timeout(Duration::MAX).unwrap());
}
