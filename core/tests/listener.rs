//! `mproc::connection`: Listener, Client and wait, between mproc ends and against CPython's own
//! `multiprocessing.connection` (3.11's MD5 handshake and 3.12+'s `{sha256}` one), over Unix
//! paths, abstract names and TCP on loopback.

mproc::enable_test_support!();

mod cpython;

use cpython::{Python, Running};
use mproc::connection::{wait_timeout, Address, Client, Listener, Waitable};
use mproc::{Error, StartMethod};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

const KEY: &[u8] = b"the secret";
const T: Duration = Duration::from_secs(20);

/// The three kinds of address, fresh for one test.
fn addresses() -> Vec<Address> {
    let Address::Unix(path) = Address::unique_unix().unwrap() else {
        unreachable!()
    };
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    vec![
        Address::Unix(path),
        Address::Abstract(name.into_bytes()),
        Address::localhost(),
    ]
}

#[test]
fn mproc_to_mproc_with_and_without_a_key() {
    for addr in addresses() {
        for key in [Some(KEY), None] {
            let l = Listener::bind(&addr, key).unwrap();
            let bound = l.address().clone();
            let t = std::thread::spawn(move || {
                let c = Client::connect(&bound, key).unwrap();
                c.send(&("ping", 1u32)).unwrap();
                c.recv::<String>().unwrap()
            });
            let c = l.accept().unwrap();
            assert_eq!(c.recv::<(String, u32)>().unwrap(), ("ping".into(), 1));
            c.send("pong").unwrap();
            assert_eq!(t.join().unwrap(), "pong", "{addr} {key:?}");
        }
    }
}

#[test]
fn ipv6_loopback() {
    let l = match Listener::bind("[::1]:0", Some(KEY)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("no IPv6 loopback here ({e}): skipping");
            return;
        }
    };
    let addr = l.address().clone();
    assert_eq!(addr.family(), "AF_INET6");
    let t = std::thread::spawn(move || Client::connect(&addr, Some(KEY)).unwrap());
    let server = l.accept().unwrap();
    let client = t.join().unwrap();
    client.send_bytes(b"six").unwrap();
    assert_eq!(server.recv_bytes().unwrap(), b"six");
    assert!(matches!(l.last_accepted(), Some(Address::Tcp(a)) if a.ip().is_loopback()));
}

#[test]
fn a_wrong_key_is_an_authentication_error_on_both_sides() {
    for addr in addresses() {
        let l = Listener::bind(&addr, Some(KEY)).unwrap();
        let bound = l.address().clone();
        let t = std::thread::spawn(move || Client::connect(&bound, Some(b"wrong")));
        assert!(matches!(l.accept(), Err(Error::AuthenticationError(_))));
        assert!(matches!(
            t.join().unwrap(),
            Err(Error::AuthenticationError(m)) if m == "digest sent was rejected"
        ));
        // A peer that sends a request instead of an answer is refused before any request is
        // read: its frame is taken as a (wrong) answer.
        let bound = l.address().clone();
        let t = std::thread::spawn(move || {
            let c = Client::connect(&bound, None).unwrap();
            let challenge = c.recv_bytes().unwrap();
            c.send_bytes(b"(None, 'shutdown', (), {})").unwrap();
            (challenge, c.recv_bytes().unwrap())
        });
        assert!(matches!(l.accept(), Err(Error::AuthenticationError(_))));
        let (challenge, verdict) = t.join().unwrap();
        assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
        assert_eq!(verdict, b"#FAILURE#");
    }
}

#[test]
fn a_silent_client_cannot_hold_the_listener() {
    let l = Listener::builder(&Address::localhost())
        .authkey(Some(KEY))
        .handshake_timeout(Some(Duration::from_millis(100)))
        .bind()
        .unwrap();
    let silent = std::net::TcpStream::connect(match l.address() {
        Address::Tcp(a) => *a,
        _ => unreachable!(),
    })
    .unwrap();
    assert!(matches!(l.accept(), Err(Error::Timeout)));
    drop(silent);
    // No client at all: accept_timeout gives up.
    assert!(matches!(
        l.accept_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    // Nobody listening: the client's connect fails at once.
    let addr = Address::unique_unix().unwrap();
    assert!(matches!(Client::connect(&addr, None), Err(Error::Io(_))));
}

#[test]
fn authenticate_apart_from_accept() {
    let l = Listener::bind(&Address::unique_unix().unwrap(), Some(KEY)).unwrap();
    let addr = l.address().clone();
    let t = std::thread::spawn(move || Client::connect(&addr, Some(KEY)).unwrap());
    let raw = l.accept_unauthenticated().unwrap();
    let server = std::thread::spawn(move || {
        // A server authenticates on a thread of its own; the accept loop goes on.
        mproc::connection::deliver_challenge(&raw, KEY)?;
        mproc::connection::answer_challenge(&raw, KEY)?;
        raw.recv_bytes()
    });
    let c = t.join().unwrap();
    c.send_bytes(b"after the handshake").unwrap();
    assert_eq!(server.join().unwrap().unwrap(), b"after the handshake");
}

/// A `Connection`, the raw socket beside it, a listener and a running child, waited on at once.
fn exit_soon() {
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn wait_over_connections_listeners_sockets_and_sentinels() {
    let (a, b) = mproc::pipe().unwrap();
    let (c, d) = mproc::pipe().unwrap();
    let (mut s1, s2) = UnixStream::pair().unwrap();
    let l = Listener::bind(&Address::unique_unix().unwrap(), None).unwrap();
    let ctx = mproc::get_context(StartMethod::Fork);
    let p = ctx.process(exit_soon, ());
    p.start().unwrap();
    let objects: [&dyn Waitable; 4] = [&b, &d, &s2, &l];
    assert!(wait_timeout(&objects, Duration::from_millis(20))
        .unwrap()
        .is_empty());
    a.send_bytes(b"1").unwrap();
    s1.write_all(b"x").unwrap();
    assert_eq!(wait_timeout(&objects, T).unwrap(), [0, 2]);
    // A received message's rest, buffered in the connection, keeps it ready.
    c.send_bytes(b"2").unwrap();
    c.send_bytes(b"3").unwrap();
    assert_eq!(d.recv_bytes().unwrap(), b"2");
    assert!(wait_timeout(&[&d as &dyn Waitable], Duration::ZERO)
        .unwrap()
        .contains(&0));
    // A client waiting to be accepted makes the listener ready.
    let _client = Client::connect(l.address(), None).unwrap();
    assert!(wait_timeout(&objects, T).unwrap().contains(&3));
    // A process is ready when it has ended.
    let procs: [&dyn Waitable; 1] = [&p];
    assert_eq!(wait_timeout(&procs, T).unwrap(), [0]);
    p.join_timeout(T).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

// ----- CPython on the other end -------------------------------------------------------------

/// Python's spelling of an address, given on the command line as `kind value`.
fn py_args(addr: &Address) -> (String, String) {
    match addr {
        Address::Tcp(a) => ("tcp".into(), a.port().to_string()),
        Address::Unix(p) => ("unix".into(), p.display().to_string()),
        Address::Abstract(n) => ("abstract".into(), String::from_utf8(n.clone()).unwrap()),
    }
}

const PY_ADDRESS: &str = r#"
import sys
def address(kind, value):
    if kind == 'tcp':
        return ('127.0.0.1', int(value))
    if kind == 'unix':
        return value
    return '\0' + value
key = None if sys.argv[3] == '-' else sys.argv[3].encode()
"#;

const PY_CLIENT: &str = r#"
from multiprocessing.connection import Client
from multiprocessing import AuthenticationError
try:
    c = Client(address(sys.argv[1], sys.argv[2]), authkey=key)
except AuthenticationError as e:
    print('AuthenticationError', e, flush=True)
    sys.exit(3)
c.send_bytes(b'hello from python')
print(c.recv_bytes().decode(), flush=True)
c.send(('a', 1, [2.5, None]))
print(repr(c.recv()), flush=True)
"#;

const PY_SERVER: &str = r#"
from multiprocessing.connection import Listener
from multiprocessing import AuthenticationError
kind, value = sys.argv[1], sys.argv[2]
with Listener(address(kind, '0' if kind == 'tcp' else value), authkey=key) as l:
    print(l.address[1] if kind == 'tcp' else 'ready', flush=True)
    try:
        c = l.accept()
    except AuthenticationError as e:
        print('AuthenticationError', e, flush=True)
        sys.exit(3)
    m = c.recv_bytes()
    c.send_bytes(m[::-1])
    print('served', flush=True)
"#;

fn script(body: &str) -> String {
    format!("{PY_ADDRESS}{body}")
}

/// A CPython client against an mproc listener, for one interpreter, address and key pair.
fn python_client_to_mproc(py: &Python, addr: &Address, key: Option<&[u8]>, py_key: &str) {
    let l = Listener::bind(addr, key).unwrap();
    let (kind, value) = py_args(l.address());
    let mut child = Running::start(py, &script(PY_CLIENT), &[&kind, &value, py_key]);
    let wrong = key.is_some() && Some(py_key.as_bytes()) != key;
    if wrong {
        assert!(matches!(
            l.accept_timeout(T),
            Err(Error::AuthenticationError(_))
        ));
        let line = child.line(T);
        assert!(
            line.starts_with("AuthenticationError"),
            "{}: {line}",
            py.label()
        );
        return;
    }
    let c = l.accept_timeout(T).unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"hello from python");
    c.send_bytes(b"hello from mproc").unwrap();
    assert_eq!(child.line(T), "hello from mproc");
    // A pickled value arrives as bytes; our answer is a pickle too (protocol 2, written by
    // hand here: the pickle codec has its own tests).
    let pickled = c.recv_bytes().unwrap();
    assert_eq!(pickled[0], 0x80, "a pickle");
    c.send_bytes(b"\x80\x02K\x07.").unwrap();
    assert_eq!(child.line(T), "7");
    assert!(child.finish(T).status.success());
}

#[test]
fn cpython_clients_connect_to_an_mproc_listener() {
    for py in cpython::interpreters() {
        for addr in addresses() {
            python_client_to_mproc(&py, &addr, Some(KEY), "the secret");
            python_client_to_mproc(&py, &addr, None, "-");
            python_client_to_mproc(&py, &addr, Some(KEY), "wrong key");
        }
        eprintln!("{}: clients on unix, abstract and tcp: ok", py.label());
    }
}

/// An mproc client against a CPython listener.
fn mproc_client_to_python(py: &Python, addr: &Address, key: Option<&[u8]>, py_key: &str) {
    let (kind, value) = py_args(addr);
    let mut server = Running::start(py, &script(PY_SERVER), &[&kind, &value, py_key]);
    let first = server.line(T);
    let target = match addr {
        Address::Tcp(_) => Address::parse(&format!("127.0.0.1:{first}")).unwrap(),
        other => other.clone(),
    };
    let wrong = py_key != "-" && Some(py_key.as_bytes()) != key;
    let r = Client::builder(&target)
        .authkey(key)
        .timeout(Some(T))
        .open();
    if wrong {
        assert!(
            matches!(r, Err(Error::AuthenticationError(_))),
            "{}: {r:?}",
            py.label()
        );
        assert!(server.line(T).starts_with("AuthenticationError"));
        return;
    }
    let c = r.unwrap();
    c.send_bytes(b"abc").unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"cba");
    assert_eq!(server.line(T), "served");
    assert!(server.finish(T).status.success());
}

#[test]
fn an_mproc_client_connects_to_cpython_listeners() {
    for py in cpython::interpreters() {
        for addr in addresses() {
            mproc_client_to_python(&py, &addr, Some(KEY), "the secret");
            mproc_client_to_python(&py, &addr, None, "-");
            mproc_client_to_python(&py, &addr, Some(b"wrong"), "the secret");
        }
        eprintln!("{}: listeners on unix, abstract and tcp: ok", py.label());
    }
}

/// CPython's client writes `#WELCOME#` and its first request back to back without
/// `TCP_NODELAY`; unless the server acknowledges at once (`TCP_QUICKACK`), the request waits for
/// the server's delayed ACK, at least 40 ms on Linux, on every new connection (measured here:
/// 45 ms per connection without QUICKACK, under 1 ms with it). The median of 15 connections
/// tells a stall from noise.
#[test]
fn a_cpython_tcp_client_does_not_wait_for_delayed_acks() {
    let Some(py) = cpython::interpreters().into_iter().next() else {
        return;
    };
    let l = Listener::bind(&Address::localhost(), Some(KEY)).unwrap();
    let (_, port) = py_args(l.address());
    let script = "import sys, time\n\
        from multiprocessing.connection import Client\n\
        for i in range(15):\n    \
            t = time.perf_counter()\n    \
            c = Client(('127.0.0.1', int(sys.argv[1])), authkey=b'the secret')\n    \
            c.send_bytes(b'request')\n    \
            c.recv_bytes()\n    \
            c.close()\n    \
            print((time.perf_counter() - t) * 1000, flush=True)\n";
    let mut child = Running::start(&py, script, &[&port]);
    for _ in 0..15 {
        let c = l.accept_timeout(T).unwrap();
        let m = c.recv_bytes().unwrap();
        c.send_bytes(&m).unwrap();
    }
    let mut ms: Vec<f64> = (0..15).map(|_| child.line(T).parse().unwrap()).collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[7];
    assert!(
        median < 20.0,
        "median connection took {median:.1} ms (a delayed-ACK stall is >= 40 ms): {ms:?}"
    );
    assert!(child.finish(T).status.success());
}
