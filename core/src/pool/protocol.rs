//! The wire format between a pool and its workers: every byte that crosses a worker's socket is
//! written and read here.
//!
//! Each worker holds one end of a duplex socketpair; the pool holds the other. Frames on it are
//! `[u32 little-endian length of the rest][tag byte][body]`:
//!
//! - pool → worker: [`ToWorker::Task`] `id: u64`, the task's [`Limits`] (`soft_ns: u64`,
//!   `hard_ns: u64`, 0 for none), an [`EntryOffset`] (bincode), then the task's arguments
//!   (bincode `Vec<A>`: one element for `apply`, a chunk for `map`);
//!   [`ToWorker::Stop`], with no body.
//! - worker → pool: [`FromWorker::Ready`] once the initializer ran; [`FromWorker::Result`]
//!   `id: u64`, `nanos: u64` (how long the task ran), then the task's outcome;
//!   [`FromWorker::InitFailed`] and a [`RemoteErr`] when the initializer panicked.
//!
//! A task's outcome is [`OUT_ITEMS`] followed, per argument, by [`ITEM_OK`] and the bincode value
//! or [`ITEM_ERR`] and a [`RemoteErr`]; or [`OUT_TASK_ERR`] and one [`RemoteErr`] for the whole
//! task (its arguments could not be decoded, say).
//!
//! A worker answers tasks in the order they arrived and sends each answer before it starts the
//! next task, so the pool knows at every moment which task a worker is running: the oldest
//! unanswered one, once the worker has read all of it ([`started_oldest`]).

use crate::error::{Error, Result};
use crate::reduction;
use crate::sys::fnptr::EntryOffset;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The bytes before a frame's body: the length (4) and the tag (1).
pub(crate) const HEADER_LEN: usize = 5;

/// The bytes of a result frame's body before the outcome: the task id and the run time.
const RESULT_PREFIX_LEN: usize = 16;

/// The bytes of a task frame's body before the entry point: the id and the two limits.
const TASK_PREFIX_LEN: usize = 24;

/// A task's time limits, as its worker sees them. The soft limit applies to each item (the
/// worker measures it from the item's start: see [`crate::pool::soft_deadline`]); the hard one
/// to the whole task, which the pool kills when it overruns (the worker only reports it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub soft: Option<Duration>,
    pub hard: Option<Duration>,
}

fn limit_to_wire(d: Option<Duration>) -> u64 {
    // 0 means none; a limit is never zero (the pool refuses one), and one of more than 584
    // years is as good as none.
    d.map_or(0, |d| d.as_nanos().clamp(1, u128::from(u64::MAX)) as u64)
}

fn limit_from_wire(n: u64) -> Option<Duration> {
    (n != 0).then(|| Duration::from_nanos(n))
}

/// The tags of the frames a pool sends to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ToWorker {
    Task = 1,
    Stop = 2,
}

/// The tags of the frames a worker sends to its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FromWorker {
    Ready = 1,
    Result = 2,
    InitFailed = 3,
}

/// A task's outcome: one entry per argument follows.
pub(crate) const OUT_ITEMS: u8 = 0;
/// A task's outcome: one [`RemoteErr`] for the whole task follows.
pub(crate) const OUT_TASK_ERR: u8 = 1;
/// An argument's entry: its value follows.
pub(crate) const ITEM_OK: u8 = 0;
/// An argument's entry: a [`RemoteErr`] follows.
pub(crate) const ITEM_ERR: u8 = 1;

/// A failure in a worker, carried back as text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RemoteErr {
    pub kind: String,
    pub message: String,
    pub traceback: String,
}

/// The `kind` of a [`RemoteErr`] for a result that could not be serialised.
pub(crate) const KIND_SERIALIZE: &str = "Serialize";

impl RemoteErr {
    /// A failure without a traceback.
    pub(crate) fn new(kind: &str, message: impl Into<String>) -> RemoteErr {
        RemoteErr {
            kind: kind.into(),
            message: message.into(),
            traceback: String::new(),
        }
    }
}

impl From<RemoteErr> for Error {
    fn from(e: RemoteErr) -> Error {
        if e.kind == KIND_SERIALIZE {
            Error::Serialize(e.message)
        } else {
            Error::Remote {
                kind: e.kind,
                message: e.message,
                traceback: e.traceback,
            }
        }
    }
}

/// Starts a frame with `tag` in `buf`; returns where it starts, for [`end_frame`].
fn begin_frame(buf: &mut Vec<u8>, tag: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, tag]);
    start
}

/// Writes the length of the frame begun at `start`. `None` if it is longer than a frame can be.
fn end_frame(buf: &mut [u8], start: usize) -> Option<()> {
    let len = u32::try_from(buf.len() - start - 4).ok()?;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Some(())
}

/// Appends an empty frame with `tag`.
fn push_empty_frame(buf: &mut Vec<u8>, tag: u8) {
    let start = begin_frame(buf, tag);
    end_frame(buf, start).expect("an empty frame fits");
}

/// A complete frame at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub tag: u8,
    pub body: &'a [u8],
    /// The bytes the frame takes in the buffer, header included.
    pub len: usize,
}

/// The first complete frame in `buf`, if it holds one.
pub(crate) fn parse_frame(buf: &[u8]) -> Option<Frame<'_>> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len == 0 || buf.len() < 4 + len {
        return None;
    }
    Some(Frame {
        tag: buf[4],
        body: &buf[HEADER_LEN..4 + len],
        len: 4 + len,
    })
}

// ---------------------------------------------------------------------------------------------
// Pool → worker.

/// Appends the frame of task `id`: a call of `entry` on each of `items`, within `limits`.
pub(crate) fn push_task<A: Serialize>(
    buf: &mut Vec<u8>,
    id: u64,
    limits: Limits,
    entry: EntryOffset,
    items: &[A],
) -> Result<()> {
    let start = begin_frame(buf, ToWorker::Task as u8);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&limit_to_wire(limits.soft).to_le_bytes());
    buf.extend_from_slice(&limit_to_wire(limits.hard).to_le_bytes());
    bincode::serialize_into(&mut *buf, &entry).map_err(|e| Error::Serialize(e.to_string()))?;
    bincode::serialize_into(&mut *buf, items).map_err(|e| Error::Serialize(e.to_string()))?;
    end_frame(buf, start)
        .ok_or_else(|| Error::Serialize("a task's arguments must be under 4 GiB".into()))
}

/// Appends the frame that tells a worker to leave once it has answered its tasks.
pub(crate) fn push_stop(buf: &mut Vec<u8>) {
    push_empty_frame(buf, ToWorker::Stop as u8);
}

/// The length of a stop frame.
pub(crate) const STOP_FRAME_LEN: usize = HEADER_LEN;

/// A frame a worker received, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PoolMessage<'a> {
    /// Run `entry` on the encoded arguments `args` within `limits`, answering with `id`.
    Task {
        id: u64,
        limits: Limits,
        entry: EntryOffset,
        args: &'a [u8],
    },
    /// Leave.
    Stop,
}

/// Decodes a frame from the pool; `None` if it is malformed (the worker then leaves).
pub(crate) fn decode_pool_message<'a>(frame: &Frame<'a>) -> Option<PoolMessage<'a>> {
    match frame.tag {
        t if t == ToWorker::Task as u8 => {
            let prefix = frame.body.get(..TASK_PREFIX_LEN)?;
            let word = |k: usize| u64::from_le_bytes(prefix[k..k + 8].try_into().expect("8 bytes"));
            let limits = Limits {
                soft: limit_from_wire(word(8)),
                hard: limit_from_wire(word(16)),
            };
            let mut rest = &frame.body[TASK_PREFIX_LEN..];
            let entry: EntryOffset = reduction::from_front(&mut rest).ok()?;
            Some(PoolMessage::Task {
                id: word(0),
                limits,
                entry,
                args: rest,
            })
        }
        t if t == ToWorker::Stop as u8 => Some(PoolMessage::Stop),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Worker → pool.

/// Appends the frame that says the worker's initializer ran.
pub(crate) fn push_ready(buf: &mut Vec<u8>) {
    push_empty_frame(buf, FromWorker::Ready as u8);
}

/// Appends the frame that says the initializer failed with `e`.
pub(crate) fn push_init_failed(buf: &mut Vec<u8>, e: &RemoteErr) {
    let start = begin_frame(buf, FromWorker::InitFailed as u8);
    push_err(buf, e);
    // Three strings of a failure message: far below 4 GiB.
    end_frame(buf, start).expect("an error frame fits");
}

/// A result frame being written: begun by [`ResultFrame::begin`], the task's outcome appended
/// after it, then closed by [`ResultFrame::finish`].
#[derive(Debug)]
pub(crate) struct ResultFrame {
    start: usize,
}

impl ResultFrame {
    /// Begins the answer to task `id` in `buf`.
    pub(crate) fn begin(buf: &mut Vec<u8>, id: u64) -> ResultFrame {
        let start = begin_frame(buf, FromWorker::Result as u8);
        buf.extend_from_slice(&id.to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes());
        ResultFrame { start }
    }

    /// Records how long the task ran and closes the frame. An outcome too long for a frame is
    /// replaced by a task error saying so.
    pub(crate) fn finish(self, buf: &mut Vec<u8>, nanos: u64) {
        let nanos_at = self.start + HEADER_LEN + 8;
        buf[nanos_at..nanos_at + 8].copy_from_slice(&nanos.to_le_bytes());
        if end_frame(buf, self.start).is_none() {
            buf.truncate(self.start + HEADER_LEN + RESULT_PREFIX_LEN);
            push_task_error(
                buf,
                &RemoteErr::new(KIND_SERIALIZE, "the task's results are larger than 4 GiB"),
            );
            end_frame(buf, self.start).expect("an error frame fits");
        }
    }
}

/// A frame the pool received from a worker, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WorkerMessage<'a> {
    /// The initializer ran: the worker takes tasks.
    Ready,
    /// The answer to the oldest unanswered task: how long it ran, and its outcome (for
    /// [`decode_outcome`]).
    Result { nanos: u64, outcome: &'a [u8] },
    /// The initializer failed.
    InitFailed(RemoteErr),
}

/// Decodes a frame from a worker; `None` for a frame of an unknown kind or too short.
pub(crate) fn decode_worker_message<'a>(frame: &Frame<'a>) -> Option<WorkerMessage<'a>> {
    match frame.tag {
        t if t == FromWorker::Ready as u8 => Some(WorkerMessage::Ready),
        t if t == FromWorker::Result as u8 => {
            let prefix = frame.body.get(..RESULT_PREFIX_LEN)?;
            let nanos = u64::from_le_bytes(prefix[8..16].try_into().expect("8 bytes"));
            Some(WorkerMessage::Result {
                nanos,
                outcome: &frame.body[RESULT_PREFIX_LEN..],
            })
        }
        t if t == FromWorker::InitFailed as u8 => Some(WorkerMessage::InitFailed(
            reduction::from_bytes(frame.body)
                .unwrap_or_else(|_| RemoteErr::new("InitializerFailed", "the initializer failed")),
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// A task's outcome.

fn push_err(out: &mut Vec<u8>, e: &RemoteErr) {
    // A RemoteErr is three strings: serialising it into a Vec cannot fail.
    let _ = bincode::serialize_into(&mut *out, e);
}

/// Appends the outcome of a task that failed as a whole (before any argument was called).
pub(crate) fn push_task_error(out: &mut Vec<u8>, e: &RemoteErr) {
    out.push(OUT_TASK_ERR);
    push_err(out, e);
}

/// Appends the start of a task's per-argument outcome; one [`push_item`] per argument follows.
pub(crate) fn push_items(out: &mut Vec<u8>) {
    out.push(OUT_ITEMS);
}

/// Appends the outcome of one argument's call: its value, or its failure. A value that cannot be
/// serialised is recorded as a failure of kind [`KIND_SERIALIZE`].
pub(crate) fn push_item<T: Serialize>(out: &mut Vec<u8>, item: std::result::Result<&T, RemoteErr>) {
    match item {
        Ok(value) => {
            let mark = out.len();
            out.push(ITEM_OK);
            if let Err(e) = bincode::serialize_into(&mut *out, value) {
                out.truncate(mark);
                out.push(ITEM_ERR);
                push_err(
                    out,
                    &RemoteErr::new(
                        KIND_SERIALIZE,
                        format!("the task's result could not be serialised: {e}"),
                    ),
                );
            }
        }
        Err(e) => {
            out.push(ITEM_ERR);
            push_err(out, &e);
        }
    }
}

/// Decodes the outcomes of a task's `n` arguments. A malformed outcome fails every item it
/// leaves unread with [`Error::Deserialize`].
pub(crate) fn decode_outcome<T: DeserializeOwned>(bytes: &[u8], n: usize) -> Vec<Result<T>> {
    let bad = |why: String| -> Vec<Result<T>> {
        (0..n)
            .map(|_| Err(Error::Deserialize(why.clone())))
            .collect()
    };
    let (status, rest) = match bytes.split_first() {
        Some((&s, rest)) => (s, rest),
        None => return bad("empty task outcome".into()),
    };
    // Bounded by the outcome's own length (see `reduction`): a worker's declared lengths are
    // never trusted beyond the bytes that carry them.
    let mut de = reduction::Decoder::new(rest);
    match status {
        OUT_ITEMS => {}
        OUT_TASK_ERR => {
            return match de.next::<RemoteErr>() {
                Ok(e) => (0..n).map(|_| Err(e.clone().into())).collect(),
                Err(Error::Deserialize(why)) => bad(why),
                Err(e) => bad(e.to_string()),
            };
        }
        _ => return bad("malformed task outcome".into()),
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let item = match de.next::<u8>() {
            Ok(ITEM_OK) => de.next::<T>().map_err(|e| {
                // The worker serialised a `T` of the same program: a value that does not read
                // back means that the type's serde implementations disagree.
                Error::Deserialize(format!(
                    "expected `{}` as the result of a pool task (result {} of {n}): {e}. {}",
                    crate::reduction::short_type_name::<T>(),
                    out.len() + 1,
                    crate::reduction::SERDE_MISMATCH,
                ))
            }),
            Ok(ITEM_ERR) => de.next::<RemoteErr>().and_then(|e| Err(e.into())),
            Ok(_) => Err(Error::Deserialize("malformed task outcome".into())),
            Err(e) => Err(e),
        };
        let broken = matches!(item, Err(Error::Deserialize(_)));
        out.push(item);
        if broken {
            // The stream is no longer at an item boundary: the rest cannot be read.
            while out.len() < n {
                out.push(Err(Error::Deserialize(
                    "an earlier result of the same chunk could not be read".into(),
                )));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Which task a dead worker was running.

/// Whether a dead worker had read the whole of its oldest unanswered task, and so started it.
///
/// - `in_flight`: the lengths of the frames of its unanswered tasks, oldest first;
/// - `stop_queued`: a stop frame was queued after them;
/// - `unsent`: the bytes of those frames still in the pool's output buffer (never written);
/// - `unread`: the bytes still waiting in the worker's end of the socket (the pool keeps a
///   duplicate of that end, so they outlive the worker).
///
/// The bytes written since the oldest unanswered task began are all its unanswered frames (and
/// the stop frame) less what was never sent; what the worker consumed is that less what it never
/// read. It started the task only if it consumed the whole frame: a worker killed while idle had
/// not, and its task goes back to the queue untouched.
pub(crate) fn started_oldest(
    in_flight: &[usize],
    stop_queued: bool,
    unsent: usize,
    unread: usize,
) -> bool {
    let Some(&oldest) = in_flight.first() else {
        return false;
    };
    let stop = if stop_queued { STOP_FRAME_LEN } else { 0 };
    let queued: usize = in_flight.iter().sum::<usize>() + stop;
    let written = queued.saturating_sub(unsent);
    let consumed = written.saturating_sub(unread);
    consumed >= oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(_: &[u8], _: &mut Vec<u8>) {}

    fn frames(mut buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(f) = parse_frame(buf) {
            out.push((f.tag, f.body.to_vec()));
            buf = &buf[f.len..];
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        out
    }

    #[test]
    fn a_frame_is_length_tag_body() {
        let mut buf = Vec::new();
        push_stop(&mut buf);
        assert_eq!(buf, [1, 0, 0, 0, ToWorker::Stop as u8]);
        assert_eq!(buf.len(), STOP_FRAME_LEN);
        push_ready(&mut buf);
        assert_eq!(
            frames(&buf),
            [
                (ToWorker::Stop as u8, vec![]),
                (FromWorker::Ready as u8, vec![])
            ]
        );
    }

    #[test]
    fn an_incomplete_frame_is_not_parsed() {
        let mut buf = Vec::new();
        push_task(
            &mut buf,
            7,
            Limits::default(),
            EntryOffset::of_task(entry),
            &[1u32, 2, 3],
        )
        .unwrap();
        for cut in 0..buf.len() {
            assert_eq!(parse_frame(&buf[..cut]), None, "cut at {cut}");
        }
        assert!(parse_frame(&buf).is_some());
        // A zero length is never a frame (every frame has a tag).
        assert_eq!(parse_frame(&[0, 0, 0, 0, 1]), None);
    }

    #[test]
    fn a_task_round_trips() {
        let mut buf = Vec::new();
        let e = EntryOffset::of_task(entry);
        let limits = Limits {
            soft: Some(Duration::from_millis(250)),
            hard: None,
        };
        push_task(&mut buf, 42, limits, e, &[(1u8, "a".to_string())]).unwrap();
        let frame = parse_frame(&buf).unwrap();
        assert_eq!(frame.len, buf.len());
        let Some(PoolMessage::Task {
            id,
            limits: got,
            entry,
            args,
        }) = decode_pool_message(&frame)
        else {
            panic!("not a task");
        };
        assert_eq!((id, got, entry), (42, limits, e));
        let items: Vec<(u8, String)> = bincode::deserialize(args).unwrap();
        assert_eq!(items, [(1, "a".to_string())]);
    }

    #[test]
    fn limits_round_trip_and_zero_means_none() {
        for d in [
            None,
            Some(Duration::from_nanos(1)),
            Some(Duration::from_secs(3)),
        ] {
            assert_eq!(limit_from_wire(limit_to_wire(d)), d);
        }
        // Too long to count in nanoseconds: as long as can be said.
        let huge = limit_from_wire(limit_to_wire(Some(Duration::MAX)));
        assert_eq!(huge, Some(Duration::from_nanos(u64::MAX)));
    }

    #[test]
    fn malformed_frames_from_the_pool_are_refused() {
        let short = Frame {
            tag: ToWorker::Task as u8,
            body: &[1, 2, 3],
            len: 8,
        };
        assert_eq!(decode_pool_message(&short), None);
        let no_entry = Frame {
            tag: ToWorker::Task as u8,
            body: &[0; TASK_PREFIX_LEN],
            len: 4 + 1 + TASK_PREFIX_LEN,
        };
        assert_eq!(decode_pool_message(&no_entry), None);
        assert_eq!(decode_pool_message(&short), None);
        let unknown = Frame {
            tag: 99,
            body: &[],
            len: 5,
        };
        assert_eq!(decode_pool_message(&unknown), None);
    }

    #[test]
    fn a_result_round_trips_with_its_run_time() {
        let mut buf = Vec::new();
        let frame = ResultFrame::begin(&mut buf, 9);
        push_items(&mut buf);
        push_item(&mut buf, Ok(&5u64));
        push_item::<u64>(&mut buf, Err(RemoteErr::new("panic", "boom")));
        frame.finish(&mut buf, 1234);
        let f = parse_frame(&buf).unwrap();
        let Some(WorkerMessage::Result { nanos, outcome }) = decode_worker_message(&f) else {
            panic!("not a result");
        };
        assert_eq!(nanos, 1234);
        let items = decode_outcome::<u64>(outcome, 2);
        assert_eq!(items[0].as_ref().unwrap(), &5);
        assert!(
            matches!(&items[1], Err(Error::Remote { kind, message, .. }) if kind == "panic" && message == "boom")
        );
    }

    #[test]
    fn a_task_error_fails_every_item() {
        let mut out = Vec::new();
        push_task_error(&mut out, &RemoteErr::new("Deserialize", "bad args"));
        let items = decode_outcome::<u8>(&out, 3);
        assert_eq!(items.len(), 3);
        assert!(items
            .iter()
            .all(|i| matches!(i, Err(Error::Remote { kind, .. }) if kind == "Deserialize")));
    }

    #[test]
    fn an_unserialisable_value_becomes_a_serialize_error() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let mut out = Vec::new();
        push_items(&mut out);
        push_item(&mut out, Ok(&Refuses));
        push_item(&mut out, Ok(&3u8));
        let items = decode_outcome::<u8>(&out, 2);
        assert!(matches!(&items[0], Err(Error::Serialize(m)) if m.contains("no")));
        assert_eq!(items[1].as_ref().unwrap(), &3);
    }

    #[test]
    fn a_truncated_outcome_fails_the_rest_of_the_chunk() {
        let mut out = Vec::new();
        push_items(&mut out);
        push_item(&mut out, Ok(&1u64));
        push_item(&mut out, Ok(&2u64));
        out.truncate(out.len() - 3);
        let items = decode_outcome::<u64>(&out, 3);
        assert_eq!(items[0].as_ref().unwrap(), &1);
        assert!(matches!(items[1], Err(Error::Deserialize(_))));
        assert!(matches!(items[2], Err(Error::Deserialize(_))));
        assert!(matches!(
            decode_outcome::<u64>(&[], 1)[0],
            Err(Error::Deserialize(_))
        ));
    }

    #[test]
    fn an_outcome_that_declares_more_than_it_holds_is_a_typed_error() {
        // One item whose value, a `Vec<()>`, claims 2^40 elements in eight bytes: without the
        // bound, decoding would run for hours; a `String` claiming 2^62 bytes would abort.
        let mut out = vec![OUT_ITEMS, ITEM_OK];
        out.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let got = decode_outcome::<Vec<()>>(&out, 1);
        assert!(matches!(&got[0], Err(Error::Deserialize(_))), "{got:?}");
        let mut out = vec![OUT_ITEMS, ITEM_OK];
        out.extend_from_slice(&(1u64 << 62).to_le_bytes());
        let got = decode_outcome::<String>(&out, 1);
        assert!(matches!(&got[0], Err(Error::Deserialize(_))), "{got:?}");
        let mut out = vec![OUT_TASK_ERR];
        out.extend_from_slice(&u64::MAX.to_le_bytes());
        let got = decode_outcome::<u8>(&out, 2);
        assert!(
            got.iter().all(|r| matches!(r, Err(Error::Deserialize(_)))),
            "{got:?}"
        );
    }

    #[test]
    fn a_failed_initializer_is_reported_even_when_its_error_is_unreadable() {
        let mut buf = Vec::new();
        push_init_failed(&mut buf, &RemoteErr::new("panic", "init"));
        let f = parse_frame(&buf).unwrap();
        assert_eq!(
            decode_worker_message(&f),
            Some(WorkerMessage::InitFailed(RemoteErr::new("panic", "init")))
        );
        let garbled = Frame {
            tag: FromWorker::InitFailed as u8,
            body: &[0xff],
            len: 6,
        };
        assert!(matches!(
            decode_worker_message(&garbled),
            Some(WorkerMessage::InitFailed(e)) if e.kind == "InitializerFailed"
        ));
        let short_result = Frame {
            tag: FromWorker::Result as u8,
            body: &[0; 15],
            len: 20,
        };
        assert_eq!(decode_worker_message(&short_result), None);
    }

    #[test]
    fn a_worker_killed_while_idle_had_not_started_its_task() {
        // The task was written whole and nothing of it was read.
        assert!(!started_oldest(&[40], false, 0, 40));
        // Nothing in flight: nothing was started.
        assert!(!started_oldest(&[], true, 0, 0));
    }

    #[test]
    fn a_worker_that_read_its_whole_oldest_task_had_started_it() {
        assert!(started_oldest(&[40], false, 0, 0));
        // Two tasks written, the second still unread: the first was started.
        assert!(started_oldest(&[40, 30], false, 0, 30));
        // ... and a stop frame after them, unread too.
        assert!(started_oldest(&[40, 30], true, 0, 30 + STOP_FRAME_LEN));
    }

    #[test]
    fn a_task_read_in_part_was_not_started() {
        // The worker reads a frame whole before it starts the task.
        assert!(!started_oldest(&[40], false, 0, 1));
        // Part of the oldest frame never left the pool's buffer.
        assert!(!started_oldest(&[40], false, 5, 0));
        // The second frame is partly unsent, the first was read whole.
        assert!(started_oldest(&[40, 30], false, 10, 20));
        // The second frame partly unsent and the first partly unread.
        assert!(!started_oldest(&[40, 30], false, 10, 21));
    }
}
