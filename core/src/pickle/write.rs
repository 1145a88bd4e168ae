//! The writer: protocol 4, byte for byte as CPython 3.11–3.13's C pickler writes it.
//!
//! What that takes, opcode by opcode (checked against `pickle.dumps(v, 4)` by the tests):
//! `PROTO 4`, then frames (`FRAME` + 8-byte length; a frame is committed when it reaches 64 KiB
//! at the start of the next object; a frame under 4 bytes gets no header); `str` and `bytes` of
//! 64 KiB or more are written outside any frame; ints as `BININT1`/`BININT2`/`BININT` when they
//! fit in 32 bits, else `LONG1`/`LONG4` (minimal two's complement); `MEMOIZE` after every `str`,
//! `bytes`, non-empty tuple, list, dict, set, frozenset, global and object; lists and dicts of
//! one item use `APPEND`/`SETITEM`, longer ones `MARK` ... `APPENDS`/`SETITEMS` in batches of
//! 1000 (a dict or set whose size is a multiple of 1000 ends with an empty batch, as CPython's
//! loop does); globals as two strings and `STACK_GLOBAL`.
//!
//! A value is a tree, where CPython's memo follows object identity. The writer shares what
//! CPython shares regardless of how a value was built: classes (a global written twice is
//! `BINGET` the second time), the module and name strings of globals, and the objects CPython
//! caches (`str` of one Latin-1 character or empty, `bytes` of length 0 or 1). So a value read
//! from CPython and written back gives CPython's bytes, unless CPython's value shared other
//! objects (two references to one list, say), which a tree writes twice.

use super::error::{PickleError, PickleErrorKind};
use super::read::DEFAULT_MAX_DEPTH;
use super::value::{Construct, Dict, Global, Object, Value};
use num_bigint::BigInt;
use std::collections::HashMap;

const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_SIZE_MIN: usize = 4;
const FRAME_HEADER: usize = 9;
const BATCHSIZE: usize = 1000;

/// Objects CPython shares by identity whatever built them.
#[derive(PartialEq, Eq, Hash)]
enum Shared {
    /// A `str` that is empty or one Latin-1 character.
    Char(String),
    /// A `bytes` of length 0 or 1.
    Byte(Vec<u8>),
    /// A module or qualified name of a global.
    GlobalStr(String),
    Global(Global),
}

struct Writer {
    out: Vec<u8>,
    /// Where the current frame's reserved header starts.
    frame_start: Option<usize>,
    framing: bool,
    memo_len: u32,
    shared: HashMap<Shared, u32>,
}

/// Writes `v` as a protocol 4 pickle, as CPython 3.11–3.13 would. Nesting deeper than
/// [`DEFAULT_MAX_DEPTH`] is refused (CPython raises `RecursionError` a little deeper).
pub fn dumps(v: &Value) -> Result<Vec<u8>, PickleError> {
    let mut w = Writer::new();
    w.save(v, 0)?;
    Ok(w.finish())
}

/// Writes the tuple of `items` (borrowed), byte for byte as [`dumps`] writes
/// `Value::Tuple(items)`: for messages whose parts the caller holds (a manager's request and
/// reply envelopes), without building the tuple.
pub fn dumps_tuple(items: &[&Value]) -> Result<Vec<u8>, PickleError> {
    let mut w = Writer::new();
    w.save_tuple(items.iter().copied(), 0)?;
    Ok(w.finish())
}

impl Writer {
    fn new() -> Writer {
        // Room for a small message without growing (most manager messages are under 128 bytes).
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&[0x80, 4]);
        Writer {
            out,
            frame_start: None,
            framing: true,
            memo_len: 0,
            shared: HashMap::new(),
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.write(b".");
        self.commit_frame();
        self.out
    }

    fn write(&mut self, b: &[u8]) {
        if self.framing && self.frame_start.is_none() {
            self.frame_start = Some(self.out.len());
            self.out.extend_from_slice(&[0; FRAME_HEADER]);
        }
        self.out.extend_from_slice(b);
    }

    fn commit_frame(&mut self) {
        if let Some(s) = self.frame_start.take() {
            let len = self.out.len() - s - FRAME_HEADER;
            if len >= FRAME_SIZE_MIN {
                self.out[s] = 0x95;
                self.out[s + 1..s + FRAME_HEADER].copy_from_slice(&(len as u64).to_le_bytes());
            } else {
                self.out.drain(s..s + FRAME_HEADER);
            }
        }
    }

    /// At the start of each object: a frame that reached the target size is committed.
    fn boundary(&mut self) {
        if let Some(s) = self.frame_start {
            if self.out.len() - s - FRAME_HEADER >= FRAME_SIZE_TARGET {
                self.commit_frame();
            }
        }
    }

    /// A `str`/`bytes` header and payload: large payloads go outside any frame.
    fn write_bytes(&mut self, header: &[u8], payload: &[u8]) {
        if payload.len() >= FRAME_SIZE_TARGET {
            self.commit_frame();
            self.out.extend_from_slice(header);
            self.out.extend_from_slice(payload);
        } else {
            self.write(header);
            self.write(payload);
        }
    }

    fn memoize(&mut self) -> u32 {
        self.write(&[0x94]);
        self.memo_len += 1;
        self.memo_len - 1
    }

    fn get(&mut self, idx: u32) {
        match u8::try_from(idx) {
            Ok(i) => self.write(&[b'h', i]),
            Err(_) => {
                let mut b = vec![b'j'];
                b.extend_from_slice(&idx.to_le_bytes());
                self.write(&b);
            }
        }
    }

    /// Writes a shared object by reference if it was written before; returns whether it did.
    fn shared_get(&mut self, key: &Shared) -> bool {
        match self.shared.get(key) {
            Some(&idx) => {
                self.get(idx);
                true
            }
            None => false,
        }
    }

    fn save(&mut self, v: &Value, depth: usize) -> Result<(), PickleError> {
        self.boundary();
        if depth > DEFAULT_MAX_DEPTH {
            return Err(PickleError::new(
                PickleErrorKind::TooDeep,
                None,
                format!("values nest deeper than {DEFAULT_MAX_DEPTH} levels"),
            ));
        }
        match v {
            Value::None => self.write(b"N"),
            Value::Bool(true) => self.write(&[0x88]),
            Value::Bool(false) => self.write(&[0x89]),
            Value::Int(i) => self.save_int(*i),
            Value::BigInt(b) => match i64::try_from(b) {
                Ok(i) => self.save_int(i),
                Err(_) => self.save_long(&b.to_signed_bytes_le()),
            },
            Value::Float(f) => {
                let mut b = vec![b'G'];
                b.extend_from_slice(&f.to_be_bytes());
                self.write(&b);
            }
            Value::Str(s) => {
                // CPython shares the empty str and those of one Latin-1 character (looked at
                // without counting a long string's characters).
                let mut chars = s.chars();
                let short = match (chars.next(), chars.next()) {
                    (None, _) => true,
                    (Some(c), None) => (c as u32) < 256,
                    _ => false,
                };
                let key = short.then(|| Shared::Char(s.clone()));
                self.save_shared_str(s, key);
            }
            Value::Bytes(b) => {
                let key = (b.len() <= 1).then(|| Shared::Byte(b.clone()));
                if let Some(k) = &key {
                    if self.shared_get(k) {
                        return Ok(());
                    }
                }
                self.save_bytes_payload(b);
                let idx = self.memoize();
                if let Some(k) = key {
                    self.shared.insert(k, idx);
                }
            }
            Value::Tuple(items) => self.save_tuple(items.iter(), depth)?,
            Value::List(items) => {
                self.write(b"]");
                self.memoize();
                match items.len() {
                    0 => {}
                    1 => {
                        self.save(&items[0], depth + 1)?;
                        self.write(b"a");
                    }
                    _ => {
                        for batch in items.chunks(BATCHSIZE) {
                            self.write(b"(");
                            for item in batch {
                                self.save(item, depth + 1)?;
                            }
                            self.write(b"e");
                        }
                    }
                }
            }
            Value::Dict(d) => self.save_dict(d, depth)?,
            Value::Set(s) => {
                self.write(&[0x8f]);
                self.memoize();
                if !s.is_empty() {
                    let items: Vec<&Value> = s.iter().collect();
                    self.batches_with_trailing_empty(&items, b'(', 0x90, depth)?;
                }
            }
            Value::FrozenSet(s) => {
                self.write(b"(");
                for item in s.iter() {
                    self.save(item, depth + 1)?;
                }
                self.write(&[0x91]);
                self.memoize();
            }
            Value::Global(g) => self.save_global(g),
            Value::Object(o) => self.save_object(o, depth)?,
        }
        Ok(())
    }

    fn save_int(&mut self, i: i64) {
        if (0..=0xff).contains(&i) {
            self.write(&[b'K', i as u8]);
        } else if (0..=0xffff).contains(&i) {
            let mut b = vec![b'M'];
            b.extend_from_slice(&(i as u16).to_le_bytes());
            self.write(&b);
        } else if let Ok(v) = i32::try_from(i) {
            let mut b = vec![b'J'];
            b.extend_from_slice(&v.to_le_bytes());
            self.write(&b);
        } else {
            self.save_long(&BigInt::from(i).to_signed_bytes_le());
        }
    }

    fn save_long(&mut self, le: &[u8]) {
        let mut b = Vec::with_capacity(le.len() + 5);
        match u8::try_from(le.len()) {
            Ok(n) => b.extend_from_slice(&[0x8a, n]),
            Err(_) => {
                b.push(0x8b);
                b.extend_from_slice(&(le.len() as u32).to_le_bytes());
            }
        }
        b.extend_from_slice(le);
        self.write(&b);
    }

    /// A `str`, by reference when `key` names one written before.
    fn save_shared_str(&mut self, s: &str, key: Option<Shared>) {
        if let Some(k) = &key {
            if self.shared_get(k) {
                return;
            }
        }
        let b = s.as_bytes();
        let n = b.len();
        if let Ok(short) = u8::try_from(n) {
            self.write_bytes(&[0x8c, short], b);
        } else if let Ok(n32) = u32::try_from(n) {
            let mut h = vec![b'X'];
            h.extend_from_slice(&n32.to_le_bytes());
            self.write_bytes(&h, b);
        } else {
            let mut h = vec![0x8d];
            h.extend_from_slice(&(n as u64).to_le_bytes());
            self.write_bytes(&h, b);
        }
        let idx = self.memoize();
        if let Some(k) = key {
            self.shared.insert(k, idx);
        }
    }

    fn save_bytes_payload(&mut self, b: &[u8]) {
        let n = b.len();
        if let Ok(short) = u8::try_from(n) {
            self.write_bytes(&[b'C', short], b);
        } else if let Ok(n32) = u32::try_from(n) {
            let mut h = vec![b'B'];
            h.extend_from_slice(&n32.to_le_bytes());
            self.write_bytes(&h, b);
        } else {
            let mut h = vec![0x8e];
            h.extend_from_slice(&(n as u64).to_le_bytes());
            self.write_bytes(&h, b);
        }
    }

    fn save_tuple<'v>(
        &mut self,
        items: impl ExactSizeIterator<Item = &'v Value>,
        depth: usize,
    ) -> Result<(), PickleError> {
        match items.len() {
            0 => {
                self.write(b")");
                return Ok(());
            }
            n @ 1..=3 => {
                for item in items {
                    self.save(item, depth + 1)?;
                }
                self.write(&[0x85 + (n as u8 - 1)]);
            }
            _ => {
                self.write(b"(");
                for item in items {
                    self.save(item, depth + 1)?;
                }
                self.write(b"t");
            }
        }
        self.memoize();
        Ok(())
    }

    fn save_dict(&mut self, d: &Dict, depth: usize) -> Result<(), PickleError> {
        self.write(b"}");
        self.memoize();
        if d.len() == 1 {
            let (k, v) = d.iter().next().expect("one item");
            self.save(k, depth + 1)?;
            self.save(v, depth + 1)?;
            self.write(b"s");
        } else if !d.is_empty() {
            let items: Vec<(&Value, &Value)> = d.iter().collect();
            // CPython's loop: batches of 1000 while the last one was full (so a dict of 1000
            // items ends with an empty MARK ... SETITEMS).
            let mut chunks = items.chunks(BATCHSIZE);
            loop {
                let batch = chunks.next().unwrap_or(&[]);
                self.write(b"(");
                for (k, v) in batch {
                    self.save(k, depth + 1)?;
                    self.save(v, depth + 1)?;
                }
                self.write(b"u");
                if batch.len() < BATCHSIZE {
                    break;
                }
            }
        }
        Ok(())
    }

    /// CPython's set loop: `MARK` items `op` in batches of 1000 while the last one was full.
    fn batches_with_trailing_empty(
        &mut self,
        items: &[&Value],
        mark: u8,
        op: u8,
        depth: usize,
    ) -> Result<(), PickleError> {
        let mut chunks = items.chunks(BATCHSIZE);
        loop {
            let batch = chunks.next().unwrap_or(&[]);
            self.write(&[mark]);
            for item in batch {
                self.save(item, depth + 1)?;
            }
            self.write(&[op]);
            if batch.len() < BATCHSIZE {
                return Ok(());
            }
        }
    }

    fn save_global(&mut self, g: &Global) {
        let key = Shared::Global(g.clone());
        if self.shared_get(&key) {
            return;
        }
        for s in [&g.module, &g.name] {
            self.boundary();
            let one_char = s.chars().count() <= 1 && s.chars().all(|c| (c as u32) < 256);
            let k = if one_char {
                Shared::Char(s.clone())
            } else {
                Shared::GlobalStr(s.clone())
            };
            self.save_shared_str(s, Some(k));
        }
        self.write(&[0x93]);
        let idx = self.memoize();
        self.shared.insert(key, idx);
    }

    fn save_object(&mut self, o: &Object, depth: usize) -> Result<(), PickleError> {
        self.boundary();
        self.save_global(&o.class);
        match &o.construct {
            Construct::Call(args) => {
                self.boundary();
                self.save_tuple(args.iter(), depth + 1)?;
                self.write(b"R");
            }
            Construct::New(args) => {
                self.boundary();
                self.save_tuple(args.iter(), depth + 1)?;
                self.write(&[0x81]);
            }
            Construct::NewEx(args, kwargs) => {
                self.boundary();
                self.save_tuple(args.iter(), depth + 1)?;
                self.boundary();
                self.save_dict(kwargs, depth + 1)?;
                self.write(&[0x92]);
            }
        }
        self.memoize();
        // CPython's generic batching for an object's items: a lone last item uses APPEND or
        // SETITEM.
        for batch in o.list_items.chunks(BATCHSIZE) {
            if batch.len() == 1 {
                self.save(&batch[0], depth + 1)?;
                self.write(b"a");
            } else {
                self.write(b"(");
                for item in batch {
                    self.save(item, depth + 1)?;
                }
                self.write(b"e");
            }
        }
        for batch in o.dict_items.chunks(BATCHSIZE) {
            if batch.len() == 1 {
                self.save(&batch[0].0, depth + 1)?;
                self.save(&batch[0].1, depth + 1)?;
                self.write(b"s");
            } else {
                self.write(b"(");
                for (k, v) in batch {
                    self.save(k, depth + 1)?;
                    self.save(v, depth + 1)?;
                }
                self.write(b"u");
            }
        }
        if let Some(state) = &o.state {
            self.save(state, depth + 1)?;
            self.write(b"b");
        }
        Ok(())
    }
}
