//! CPython's connection handshake (`multiprocessing.connection.deliver_challenge` and
//! `answer_challenge`), both generations.
//!
//! The side that delivers sends `#CHALLENGE#` and a message; the other answers with an HMAC of
//! the message under the shared key; the deliverer replies `#WELCOME#` or `#FAILURE#`. A server
//! delivers and then answers, a client answers and then delivers: six frames per connection.
//!
//! - Python 3.11 and older deliver 20 random bytes and expect the raw 16-byte HMAC-MD5.
//! - Python 3.12 and newer deliver `{sha256}` and 40 random bytes, and expect `{sha256}` followed
//!   by HMAC-SHA256 of the whole message (prefix included, so a peer cannot downgrade it). As a
//!   verifier they also accept a bare 16-byte HMAC-MD5 answer (what a 3.11 peer sends to any
//!   challenge) or an answer in any allowed `{digest}`; as an answerer they reply with raw MD5 to
//!   a 20-byte challenge and in kind to a prefixed one.
//!
//! mproc behaves as 3.12+, so it interoperates with 3.11 and 3.12+ in both roles. Handshake
//! frames are received with a 256-byte cap (as CPython's `recv_bytes(256)`); MACs are compared
//! in constant time (`hmac`'s `verify_slice`).

use super::Connection;
use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use std::time::{Duration, Instant};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a modern challenge (CPython's `MESSAGE_LENGTH`).
const MESSAGE_LENGTH: usize = 40;
/// A challenge of this length comes from a legacy (MD5-only) deliverer.
const MD5ONLY_MESSAGE_LENGTH: usize = 20;
const MD5_DIGEST_LEN: usize = 16;
/// The cap on every handshake frame.
const HANDSHAKE_MAXLEN: usize = 256;

/// The digests CPython allows in a `{digest}` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
    Sha3_256,
    Sha3_384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        Some(match name {
            b"md5" => Digest::Md5,
            b"sha256" => Digest::Sha256,
            b"sha384" => Digest::Sha384,
            b"sha3_256" => Digest::Sha3_256,
            b"sha3_384" => Digest::Sha3_384,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha3_256 => "sha3_256",
            Digest::Sha3_384 => "sha3_384",
        }
    }

    fn mac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, msg),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, msg),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, msg),
            Digest::Sha3_256 => run::<Hmac<sha3::Sha3_256>>(key, msg),
            Digest::Sha3_384 => run::<Hmac<sha3::Sha3_384>>(key, msg),
        }
    }

    /// Whether `tag` is the HMAC of `msg` under `key`, compared in constant time.
    fn verify(self, key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            m.update(msg);
            m.verify_slice(tag).is_ok()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, msg, tag),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, msg, tag),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, msg, tag),
            Digest::Sha3_256 => run::<Hmac<sha3::Sha3_256>>(key, msg, tag),
            Digest::Sha3_384 => run::<Hmac<sha3::Sha3_384>>(key, msg, tag),
        }
    }

    fn output_len(self) -> usize {
        match self {
            Digest::Md5 => 16,
            Digest::Sha256 | Digest::Sha3_256 => 32,
            Digest::Sha384 | Digest::Sha3_384 => 48,
        }
    }
}

/// CPython's `_get_digest_name_and_payload`: a 16- or 20-byte message is legacy (MD5, no
/// prefix); anything else must start with an allowed `{digest}`.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8])> {
    if message.len() == MD5ONLY_MESSAGE_LENGTH || message.len() == MD5_DIGEST_LEN {
        return Ok((None, message));
    }
    if message.first() == Some(&b'{') {
        // The longest allowed name is 8 bytes; the closing brace is searched for that far only.
        let end = message.len().min(10);
        if let Some(close) = message[1..end].iter().position(|&b| b == b'}') {
            let close = close + 1;
            if let Some(d) = Digest::from_name(&message[1..close]) {
                return Ok((Some(d), &message[close + 1..]));
            }
        }
    }
    Err(Error::AuthenticationError(format!(
        "unsupported message length, missing digest prefix, or unsupported digest: message={}",
        py_bytes_repr(message)
    )))
}

/// Python's `repr` of a bytes object (for messages that quote what a peer sent).
fn py_bytes_repr(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    s
}

/// Receives one handshake frame (at most 256 bytes) before `deadline`.
fn recv_frame(conn: &Connection, deadline: Option<Instant>) -> Result<Vec<u8>> {
    conn.recv_message(Some(HANDSHAKE_MAXLEN), deadline)
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// The server's half of the handshake: sends a `{sha256}` challenge and checks the answer,
/// replying `#WELCOME#` or `#FAILURE#` (CPython's `deliver_challenge`). A wrong answer is
/// [`Error::AuthenticationError`].
pub fn deliver_challenge(conn: &Connection, authkey: &[u8]) -> Result<()> {
    deliver_challenge_timeout(conn, authkey, None)
}

/// The client's half of the handshake: answers the peer's challenge (with raw HMAC-MD5 to a
/// legacy 20-byte challenge, in kind to a `{digest}` one) and waits for `#WELCOME#` (CPython's
/// `answer_challenge`). A rejected answer is [`Error::AuthenticationError`].
pub fn answer_challenge(conn: &Connection, authkey: &[u8]) -> Result<()> {
    answer_challenge_timeout(conn, authkey, None)
}

/// [`deliver_challenge`], giving up with [`Error::Timeout`] if the peer is silent for
/// `timeout` overall (`None`: wait for ever, as CPython).
pub fn deliver_challenge_timeout(
    conn: &Connection,
    authkey: &[u8],
    timeout: Option<Duration>,
) -> Result<()> {
    let mut nonce = [0u8; MESSAGE_LENGTH];
    crate::sys::net::random_bytes(&mut nonce)?;
    deliver_with(conn, authkey, &nonce, deadline(timeout))
}

/// [`answer_challenge`], giving up with [`Error::Timeout`] if the peer is silent for `timeout`
/// overall (`None`: wait for ever, as CPython).
pub fn answer_challenge_timeout(
    conn: &Connection,
    authkey: &[u8],
    timeout: Option<Duration>,
) -> Result<()> {
    answer_with(conn, authkey, deadline(timeout))
}

/// [`deliver_challenge`] with a given random part (golden tests inject it).
fn deliver_with(
    conn: &Connection,
    authkey: &[u8],
    nonce: &[u8],
    deadline: Option<Instant>,
) -> Result<()> {
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(nonce);
    let mut frame = CHALLENGE.to_vec();
    frame.extend_from_slice(&message);
    conn.send_bytes(&frame)?;
    let response = recv_frame(conn, deadline)?;
    match verify(authkey, &message, &response) {
        Ok(()) => conn.send_bytes(WELCOME),
        Err(e) => {
            // The peer may already be gone; the verdict is ours either way.
            let _ = conn.send_bytes(FAILURE);
            Err(e)
        }
    }
}

/// CPython's `_verify_challenge`.
fn verify(authkey: &[u8], message: &[u8], response: &[u8]) -> Result<()> {
    let (digest, mac) = digest_and_payload(response)?;
    let digest = digest.unwrap_or(Digest::Md5);
    if digest.output_len() != mac.len() {
        return Err(Error::AuthenticationError(format!(
            "expected '{}' of length {} got {}",
            digest.name(),
            digest.output_len(),
            mac.len()
        )));
    }
    if !digest.verify(authkey, message, mac) {
        return Err(Error::AuthenticationError(
            "digest received was wrong".into(),
        ));
    }
    Ok(())
}

fn answer_with(conn: &Connection, authkey: &[u8], deadline: Option<Instant>) -> Result<()> {
    let frame = recv_frame(conn, deadline)?;
    let Some(message) = frame.strip_prefix(CHALLENGE) else {
        return Err(Error::AuthenticationError(format!(
            "Protocol error, expected challenge: message={}",
            py_bytes_repr(&frame)
        )));
    };
    if message.len() < MD5ONLY_MESSAGE_LENGTH {
        return Err(Error::AuthenticationError(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    conn.send_bytes(&response(authkey, message)?)?;
    let verdict = recv_frame(conn, deadline)?;
    if verdict != WELCOME {
        return Err(Error::AuthenticationError(
            "digest sent was rejected".into(),
        ));
    }
    Ok(())
}

/// CPython's `_create_response`: raw HMAC-MD5 to a legacy challenge, else `{digest}` + HMAC of
/// the whole message.
fn response(authkey: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    match digest_and_payload(message)? {
        (None, _) => Ok(Digest::Md5.mac(authkey, message)),
        (Some(d), _) => {
            let mut r = format!("{{{}}}", d.name()).into_bytes();
            r.extend_from_slice(&d.mac(authkey, message));
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    fn read_frame(raw: &mut UnixStream) -> Vec<u8> {
        let mut h = [0u8; 4];
        raw.read_exact(&mut h).unwrap();
        let mut b = vec![0u8; i32::from_be_bytes(h) as usize];
        raw.read_exact(&mut b).unwrap();
        b
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn conn_and_raw() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Connection::from_fd(OwnedFd::from(a)), b)
    }

    // Expected MACs computed with CPython's hmac module:
    //   key = b'secret'; nonce = bytes(range(40)); msg = b'{sha256}' + nonce
    //   hmac.new(key, msg, 'sha256'), hmac.new(key, msg, 'md5'),
    //   hmac.new(key, bytes(range(20)), 'md5')
    const SHA256_OF_MSG: &str = "fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6989";
    const MD5_OF_MSG: &str = "8e48d2bb349b4b72b9382999ed5b62eb";
    const MD5_OF_LEGACY: &str = "7defa9cc46abc3583325d17ccda75190";

    fn nonce() -> Vec<u8> {
        (0..40u8).collect()
    }

    #[test]
    fn golden_server_frames_with_a_modern_answer() {
        let (conn, mut raw) = conn_and_raw();
        let t = std::thread::spawn(move || deliver_with(&conn, b"secret", &nonce(), None));
        let mut want = b"#CHALLENGE#{sha256}".to_vec();
        want.extend(nonce());
        assert_eq!(read_frame(&mut raw), want);
        let mut answer = b"{sha256}".to_vec();
        answer.extend(hex(SHA256_OF_MSG));
        raw.write_all(&frame(&answer)).unwrap();
        assert_eq!(read_frame(&mut raw), b"#WELCOME#");
        t.join().unwrap().unwrap();
    }

    #[test]
    fn golden_server_frames_with_a_legacy_md5_answer() {
        let (conn, mut raw) = conn_and_raw();
        let t = std::thread::spawn(move || deliver_with(&conn, b"secret", &nonce(), None));
        read_frame(&mut raw);
        raw.write_all(&frame(&hex(MD5_OF_MSG))).unwrap();
        assert_eq!(read_frame(&mut raw), b"#WELCOME#");
        t.join().unwrap().unwrap();
    }

    #[test]
    fn a_wrong_answer_gets_failure_and_an_authentication_error() {
        for answer in [
            hex(MD5_OF_LEGACY),                        // right length, wrong MAC
            b"{sha256}short".to_vec(),                 // wrong length
            b"{whirlpool}0123456789abcdef01".to_vec(), // unknown digest
            vec![0u8; 100],                            // no prefix
        ] {
            let (conn, mut raw) = conn_and_raw();
            let t = std::thread::spawn(move || deliver_with(&conn, b"secret", &nonce(), None));
            read_frame(&mut raw);
            raw.write_all(&frame(&answer)).unwrap();
            assert_eq!(read_frame(&mut raw), b"#FAILURE#");
            match t.join().unwrap() {
                Err(Error::AuthenticationError(_)) => {}
                other => panic!("expected AuthenticationError, got {other:?}"),
            }
        }
    }

    #[test]
    fn golden_client_frames_for_both_generations() {
        // A 3.12+ server's challenge: answered in kind.
        let (conn, mut raw) = conn_and_raw();
        let t = std::thread::spawn(move || answer_with(&conn, b"secret", None));
        let mut challenge = b"#CHALLENGE#{sha256}".to_vec();
        challenge.extend(nonce());
        raw.write_all(&frame(&challenge)).unwrap();
        let mut want = b"{sha256}".to_vec();
        want.extend(hex(SHA256_OF_MSG));
        assert_eq!(read_frame(&mut raw), want);
        raw.write_all(&frame(b"#WELCOME#")).unwrap();
        t.join().unwrap().unwrap();
        // A 3.11 server's 20-byte challenge: raw HMAC-MD5.
        let (conn, mut raw) = conn_and_raw();
        let t = std::thread::spawn(move || answer_with(&conn, b"secret", None));
        let mut challenge = b"#CHALLENGE#".to_vec();
        challenge.extend(0..20u8);
        raw.write_all(&frame(&challenge)).unwrap();
        assert_eq!(read_frame(&mut raw), hex(MD5_OF_LEGACY));
        raw.write_all(&frame(b"#FAILURE#")).unwrap();
        assert!(matches!(
            t.join().unwrap(),
            Err(Error::AuthenticationError(m)) if m == "digest sent was rejected"
        ));
    }

    #[test]
    fn hostile_challenges_are_refused() {
        for (challenge, why) in [
            (b"hello".to_vec(), "expected challenge"),
            (b"#CHALLENGE#short".to_vec(), "too short"),
            (
                b"#CHALLENGE#{nope}0123456789abcdef0123".to_vec(),
                "unsupported",
            ),
        ] {
            let (conn, mut raw) = conn_and_raw();
            let t = std::thread::spawn(move || answer_with(&conn, b"k", None));
            raw.write_all(&frame(&challenge)).unwrap();
            match t.join().unwrap() {
                Err(Error::AuthenticationError(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("expected AuthenticationError, got {other:?}"),
            }
        }
        // A frame above 256 bytes is refused at its header.
        let (conn, mut raw) = conn_and_raw();
        raw.write_all(&(1i32 << 30).to_be_bytes()).unwrap();
        assert!(matches!(
            answer_with(&conn, b"k", None),
            Err(Error::MessageTooLong { maxlen: 256, .. })
        ));
        // A silent peer is a timeout when the caller gave one.
        let (conn, _raw) = conn_and_raw();
        assert!(matches!(
            answer_challenge_timeout(&conn, b"k", Some(Duration::from_millis(30))),
            Err(Error::Timeout)
        ));
    }

    #[test]
    fn the_two_halves_agree() {
        let (a, b) = crate::connection::pipe().unwrap();
        let t = std::thread::spawn(move || {
            deliver_challenge(&a, b"key")?;
            answer_challenge(&a, b"key")
        });
        answer_challenge(&b, b"key").unwrap();
        deliver_challenge(&b, b"key").unwrap();
        t.join().unwrap().unwrap();
    }
}
