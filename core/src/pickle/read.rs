//! The reader: pickle protocols 0 to 5, run as the pickle machine runs them, without importing
//! or calling anything.
//!
//! The machine builds an arena of nodes (containers refer to their items by index), so that the
//! memo can refer back to a container that is still being filled, exactly as CPython's memo
//! refers to the same object. The result is then copied out of the arena into a [`Value`] tree,
//! within bounds: nesting depth, the number of values and bytes produced (a memo reference
//! copies its target, so a small pickle could otherwise expand exponentially), and no cycles.
//!
//! Hostile input gets a [`PickleError`] naming what was wrong and where: every length is checked
//! against the bytes that remain before anything is taken or allocated, memo references must
//! exist, the stack and marks must hold what an opcode needs, and globals must pass the caller's
//! [`GlobalPolicy`].

use super::error::{PickleError, PickleErrorKind as Kind};
use super::value::{Construct, Dict, Global, Object, Set, Value};
use num_bigint::BigInt;
use std::collections::{HashMap, HashSet};

/// Which globals (classes and functions named by module and name) a reader accepts. Reading
/// never imports or calls anything, so a global is only a name; a server restricts them to the
/// ones its protocol uses. The reader's own interpretations (`_codecs.encode` for protocol 2
/// bytes, `builtins.set`/`frozenset`/`bytes`, `copyreg._reconstructor`) are always accepted.
#[derive(Clone, Debug, Default)]
pub struct GlobalPolicy {
    any: bool,
    modules: HashSet<String>,
    names: HashSet<(String, String)>,
}

impl GlobalPolicy {
    /// Accepts every global.
    pub fn allow_all() -> GlobalPolicy {
        GlobalPolicy {
            any: true,
            ..GlobalPolicy::default()
        }
    }

    /// Accepts none (add some with [`allow`](GlobalPolicy::allow)).
    pub fn deny_all() -> GlobalPolicy {
        GlobalPolicy::default()
    }

    /// Also accepts `module.name`.
    pub fn allow(mut self, module: &str, name: &str) -> GlobalPolicy {
        self.names.insert((module.to_owned(), name.to_owned()));
        self
    }

    /// Also accepts every name in `module`.
    pub fn allow_module(mut self, module: &str) -> GlobalPolicy {
        self.modules.insert(module.to_owned());
        self
    }

    /// Whether `module.name` is accepted.
    pub fn allows(&self, module: &str, name: &str) -> bool {
        self.any
            || self.modules.contains(module)
            || self.names.contains(&(module.to_owned(), name.to_owned()))
    }
}

/// How a pickle is read: the global policy and the bounds.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    globals: GlobalPolicy,
    max_depth: usize,
    max_values: Option<usize>,
    max_bytes: Option<usize>,
}

/// How deeply values may nest, unless told otherwise.
pub const DEFAULT_MAX_DEPTH: usize = 512;

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            globals: GlobalPolicy::allow_all(),
            max_depth: DEFAULT_MAX_DEPTH,
            max_values: None,
            max_bytes: None,
        }
    }
}

impl ReadOptions {
    /// Every global accepted, nesting up to [`DEFAULT_MAX_DEPTH`], output bounded relative to the
    /// input (see [`max_values`](ReadOptions::max_values)).
    pub fn new() -> ReadOptions {
        ReadOptions::default()
    }

    /// The globals accepted.
    pub fn globals(mut self, policy: GlobalPolicy) -> ReadOptions {
        self.globals = policy;
        self
    }

    /// How deeply containers may nest.
    pub fn max_depth(mut self, depth: usize) -> ReadOptions {
        self.max_depth = depth;
        self
    }

    /// How many values the result may hold (default: the larger of one million and 16 per input
    /// byte). A pickle whose memo references would copy more is refused.
    pub fn max_values(mut self, n: usize) -> ReadOptions {
        self.max_values = Some(n);
        self
    }

    /// How many bytes of `str` and `bytes` the result may hold (default: the larger of 64 MiB
    /// and 4 per input byte).
    pub fn max_bytes(mut self, n: usize) -> ReadOptions {
        self.max_bytes = Some(n);
        self
    }
}

type Id = u32;

enum Node {
    /// A node whose value the builder has taken out.
    Taken,
    Atom(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    FrozenSet(Vec<Id>),
    /// Boxed: objects are rare, and a small node keeps the arena of a small message small.
    Object(Box<ObjectNode>),
}

struct ObjectNode {
    class: Global,
    construct: NodeConstruct,
    state: Option<Id>,
    list_items: Vec<Id>,
    dict_items: Vec<(Id, Id)>,
}

enum NodeConstruct {
    Call(Vec<Id>),
    New(Vec<Id>),
    NewEx(Vec<Id>, Id),
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    /// Where the current opcode began (for error messages).
    op_pos: usize,
    proto: u8,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: Memo,
    /// Whether a node may be reached twice (a memo reference, `DUP`, or an opcode that copies
    /// a container's item references). Otherwise the arena is a tree, and the builder moves
    /// values out of it instead of copying them.
    shared: bool,
    opts: &'a ReadOptions,
    /// How many more item references opcodes may copy (a `REDUCE` copies its arguments, a
    /// `BUILD` merges dict states): bounded like the output, so that a short pickle repeating
    /// one of them on a large memoized container cannot take memory quadratic in its length.
    copies_left: usize,
}

/// The arena's vectors, kept per thread between reads (cleared, and only while small), so that
/// reading a small message allocates little more than its values.
#[derive(Default)]
struct Scratch {
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: Vec<Id>,
}

/// The largest arena kept between reads.
const SCRATCH_KEEP: usize = 4096;

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

/// Reads one pickle from `input` (which must hold exactly the pickle, or the pickle and then
/// anything: reading stops at `STOP`).
pub fn loads_with(input: &[u8], opts: &ReadOptions) -> Result<Value, PickleError> {
    // A read inside a read (none today) would find the scratch taken and start afresh.
    let scratch = SCRATCH
        .try_with(|s| s.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut m = Machine {
        input,
        pos: 0,
        op_pos: 0,
        proto: 0,
        nodes: scratch.nodes,
        stack: scratch.stack,
        marks: scratch.marks,
        memo: Memo {
            dense: scratch.memo,
            sparse: HashMap::new(),
        },
        shared: false,
        opts,
        copies_left: max_values(opts, input),
    };
    let out = m.run().and_then(|root| {
        let tree = !m.shared;
        Builder {
            active: if tree {
                Vec::new()
            } else {
                vec![false; m.nodes.len()]
            },
            nodes: &mut m.nodes,
            tree,
            values_left: max_values(opts, input),
            bytes_left: opts
                .max_bytes
                .unwrap_or_else(|| (input.len().saturating_mul(4)).max(64 << 20)),
            max_depth: opts.max_depth,
        }
        .build(root, 0)
    });
    let mut keep = Scratch {
        nodes: m.nodes,
        stack: m.stack,
        marks: m.marks,
        memo: m.memo.dense,
    };
    if keep.nodes.capacity() <= SCRATCH_KEEP && keep.memo.capacity() <= SCRATCH_KEEP {
        keep.nodes.clear();
        keep.stack.clear();
        keep.marks.clear();
        keep.memo.clear();
        let _ = SCRATCH.try_with(|s| *s.borrow_mut() = Some(keep));
    }
    out
}

/// The memo: entries stored at the next index (as `MEMOIZE` and CPython's pickler always do) in
/// a vector, any other index in a map (so that a `PUT` at index 2^40 costs one entry, not 2^40).
struct Memo {
    dense: Vec<Id>,
    sparse: HashMap<u64, Id>,
}

impl Memo {
    /// The number of entries (where `MEMOIZE` stores the next one).
    fn len(&self) -> usize {
        self.dense.len() + self.sparse.len()
    }

    fn put(&mut self, idx: u64, id: Id) {
        let dense = self.dense.len() as u64;
        if idx < dense {
            self.dense[idx as usize] = id;
        } else if idx == dense {
            self.dense.push(id);
            // An entry stored out of order earlier at this index is replaced.
            if !self.sparse.is_empty() {
                self.sparse.remove(&idx);
            }
        } else {
            self.sparse.insert(idx, id);
        }
    }

    fn get(&self, idx: u64) -> Option<Id> {
        match usize::try_from(idx).ok().and_then(|i| self.dense.get(i)) {
            Some(&id) => Some(id),
            None => self.sparse.get(&idx).copied(),
        }
    }
}

fn max_values(opts: &ReadOptions, input: &[u8]) -> usize {
    opts.max_values
        .unwrap_or_else(|| (input.len().saturating_mul(16)).max(1_000_000))
}

// Opcodes (pickletools' names).
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// CPython's limit on decimal digits in a text integer (`sys.get_int_max_str_digits()`).
const MAX_INT_DIGITS: usize = 4300;

impl<'a> Machine<'a> {
    fn err(&self, kind: Kind, detail: impl Into<String>) -> PickleError {
        PickleError::new(kind, Some(self.op_pos), detail)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let left = self.input.len() - self.pos;
        if n > left {
            return Err(self.err(
                Kind::Truncated,
                format!("needs {n} more bytes, {left} remain"),
            ));
        }
        let s = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// A length read off the input, as a count of bytes that must follow.
    fn length(&mut self, n: u64) -> Result<usize, PickleError> {
        let left = (self.input.len() - self.pos) as u64;
        if n > left {
            return Err(self.err(
                Kind::Truncated,
                format!("declares {n} bytes, {left} remain"),
            ));
        }
        Ok(n as usize)
    }

    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.input[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(self.err(Kind::Truncated, "a text argument without its newline")),
        }
    }

    fn charge_copies(&mut self, n: usize) -> Result<(), PickleError> {
        if n > self.copies_left {
            return Err(self.err(
                Kind::TooLarge,
                "the pickle copies more references than allowed (REDUCE, NEWOBJ or BUILD on \
                 large shared containers)",
            ));
        }
        self.copies_left -= n;
        Ok(())
    }

    fn push_node(&mut self, n: Node) -> Result<(), PickleError> {
        let id = Id::try_from(self.nodes.len())
            .map_err(|_| self.err(Kind::TooLarge, "more than 2^32 objects"))?;
        self.nodes.push(n);
        self.stack.push(id);
        Ok(())
    }

    fn atom(&mut self, v: Value) -> Result<(), PickleError> {
        self.push_node(Node::Atom(v))
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err(
                Kind::Malformed,
                "the stack is empty (or only a mark is left)",
            ));
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err(
                Kind::Malformed,
                "the stack is empty (or only a mark is left)",
            ));
        }
        Ok(*self.stack.last().expect("checked"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err(Kind::Malformed, "no mark on the stack"))?;
        Ok(self.stack.split_off(m))
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.put(idx, top);
        Ok(())
    }

    fn memo_get(&mut self, idx: u64) -> Result<(), PickleError> {
        self.shared = true;
        let id = self.memo.get(idx).ok_or_else(|| {
            self.err(
                Kind::MemoMissing,
                format!("memo entry {idx} is not defined"),
            )
        })?;
        self.stack.push(id);
        Ok(())
    }

    fn str_atom(&self, id: Id) -> Option<&str> {
        match &self.nodes[id as usize] {
            Node::Atom(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn global(&self, module: &str, name: &str) -> Result<Global, PickleError> {
        let (module, name) = if self.proto < 3 {
            fix_import(module, name)
        } else {
            (module.to_owned(), name.to_owned())
        };
        if !interpreted(&module, &name) && !self.opts.globals.allows(&module, &name) {
            return Err(self.err(
                Kind::GlobalRefused,
                format!("global {module}.{name} is not allowed here"),
            ));
        }
        Ok(Global::new(module, name))
    }

    fn utf8(&self, b: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(b.to_vec()).map_err(|_| {
            self.err(
                Kind::InvalidString,
                "a str that is not valid UTF-8 (lone surrogates cannot be represented)",
            )
        })
    }

    /// A protocol 0-2 (Python 2) `str`, decoded as Python 3's default unpickler does (ASCII).
    fn py2_str(&self, b: &[u8]) -> Result<Value, PickleError> {
        if !b.is_ascii() {
            return Err(self.err(
                Kind::InvalidString,
                "a Python 2 str that is not ASCII (Python 3 reads these with encoding='ASCII')",
            ));
        }
        Ok(Value::Str(String::from_utf8(b.to_vec()).expect("ASCII")))
    }

    fn text_int(&self, line: &[u8]) -> Result<Value, PickleError> {
        let s = std::str::from_utf8(line)
            .map_err(|_| self.err(Kind::InvalidNumber, "an integer that is not ASCII"))?
            .trim();
        let s = s.strip_suffix('L').unwrap_or(s);
        if s.len() > MAX_INT_DIGITS + 1 {
            return Err(self.err(
                Kind::InvalidNumber,
                format!("an integer of more than {MAX_INT_DIGITS} digits"),
            ));
        }
        s.parse::<BigInt>()
            .map(Value::from_bigint)
            .map_err(|_| self.err(Kind::InvalidNumber, format!("{s:?} is not an integer")))
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            self.op_pos = self.pos;
            let code = self
                .byte()
                .map_err(|_| self.err(Kind::Truncated, "the pickle ends before STOP"))?;
            match code {
                op::PROTO => {
                    let v = self.byte()?;
                    if v > 5 {
                        return Err(self.err(
                            Kind::Unsupported,
                            format!("pickle protocol {v} (this reader knows 0 to 5)"),
                        ));
                    }
                    self.proto = v;
                }
                op::FRAME => {
                    let n = u64::from_le_bytes(self.arr()?);
                    self.length(n)?;
                }
                op::STOP => return self.pop(),
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    if self.stack.len() > self.marks.last().copied().unwrap_or(0) {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    self.shared = true;
                    let t = self.top()?;
                    self.stack.push(t);
                }
                op::NONE => self.atom(Value::None)?,
                op::NEWTRUE => self.atom(Value::Bool(true))?,
                op::NEWFALSE => self.atom(Value::Bool(false))?,
                op::INT => {
                    let line = self.line()?;
                    let v = match line {
                        b"01" => Value::Bool(true),
                        b"00" => Value::Bool(false),
                        _ => self.text_int(line)?,
                    };
                    self.atom(v)?;
                }
                op::LONG => {
                    let line = self.line()?;
                    let v = self.text_int(line)?;
                    self.atom(v)?;
                }
                op::BININT => {
                    let v = i32::from_le_bytes(self.arr()?);
                    self.atom(Value::Int(v.into()))?;
                }
                op::BININT1 => {
                    let v = self.byte()?;
                    self.atom(Value::Int(v.into()))?;
                }
                op::BININT2 => {
                    let v = u16::from_le_bytes(self.arr()?);
                    self.atom(Value::Int(v.into()))?;
                }
                op::LONG1 => {
                    let n = self.byte()? as u64;
                    let n = self.length(n)?;
                    let b = self.take(n)?;
                    self.atom(Value::from_bigint(BigInt::from_signed_bytes_le(b)))?;
                }
                op::LONG4 => {
                    let n = i32::from_le_bytes(self.arr()?);
                    if n < 0 {
                        return Err(self.err(Kind::Malformed, "LONG4 with a negative length"));
                    }
                    let n = self.length(n as u64)?;
                    let b = self.take(n)?;
                    self.atom(Value::from_bigint(BigInt::from_signed_bytes_le(b)))?;
                }
                op::FLOAT => {
                    let line = self.line()?;
                    let s = std::str::from_utf8(line).unwrap_or("").trim();
                    let f: f64 = s.parse().map_err(|_| {
                        self.err(Kind::InvalidNumber, format!("{s:?} is not a float"))
                    })?;
                    self.atom(Value::Float(f))?;
                }
                op::BINFLOAT => {
                    let f = f64::from_be_bytes(self.arr()?);
                    self.atom(Value::Float(f))?;
                }
                op::STRING => {
                    let line = self.line()?;
                    let b = unquote(line).ok_or_else(|| {
                        self.err(Kind::Malformed, "the STRING argument must be quoted")
                    })?;
                    let b = escape_decode(b).ok_or_else(|| {
                        self.err(Kind::Malformed, "a bad escape in a STRING argument")
                    })?;
                    let v = self.py2_str(&b)?;
                    self.atom(v)?;
                }
                op::BINSTRING => {
                    let n = i32::from_le_bytes(self.arr()?);
                    if n < 0 {
                        return Err(self.err(Kind::Malformed, "BINSTRING with a negative length"));
                    }
                    let n = self.length(n as u64)?;
                    let b = self.take(n)?;
                    let v = self.py2_str(b)?;
                    self.atom(v)?;
                }
                op::SHORT_BINSTRING => {
                    let n = self.byte()? as u64;
                    let n = self.length(n)?;
                    let b = self.take(n)?;
                    let v = self.py2_str(b)?;
                    self.atom(v)?;
                }
                op::UNICODE => {
                    let line = self.line()?;
                    let s = raw_unicode_escape(line).ok_or_else(|| {
                        self.err(Kind::InvalidString, "a bad escape in a UNICODE argument")
                    })?;
                    self.atom(Value::Str(s))?;
                }
                op::BINUNICODE => {
                    let n = u32::from_le_bytes(self.arr()?) as u64;
                    self.unicode(n)?;
                }
                op::SHORT_BINUNICODE => {
                    let n = self.byte()? as u64;
                    self.unicode(n)?;
                }
                op::BINUNICODE8 => {
                    let n = u64::from_le_bytes(self.arr()?);
                    self.unicode(n)?;
                }
                op::BINBYTES => {
                    let n = u32::from_le_bytes(self.arr()?) as u64;
                    self.bytes(n)?;
                }
                op::SHORT_BINBYTES => {
                    let n = self.byte()? as u64;
                    self.bytes(n)?;
                }
                op::BINBYTES8 => {
                    let n = u64::from_le_bytes(self.arr()?);
                    self.bytes(n)?;
                }
                op::BYTEARRAY8 => {
                    let n = u64::from_le_bytes(self.arr()?);
                    let n = self.length(n)?;
                    let b = self.take(n)?.to_vec();
                    let class = Global::new("builtins", "bytearray");
                    let arg = self.nodes.len() as Id;
                    self.nodes.push(Node::Atom(Value::Bytes(b)));
                    self.push_node(object(class, NodeConstruct::Call(vec![arg])))?;
                }
                op::EMPTY_TUPLE => self.push_node(Node::Tuple(Vec::new()))?,
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = (code - op::TUPLE1 + 1) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_node(Node::Tuple(items))?;
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items))?;
                }
                op::EMPTY_LIST => self.push_node(Node::List(Vec::new()))?,
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items))?;
                }
                op::EMPTY_DICT => self.push_node(Node::Dict(Vec::new()))?,
                op::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push_node(Node::Dict(pairs))?;
                }
                op::EMPTY_SET => self.push_node(Node::Set(Vec::new()))?,
                op::FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::FrozenSet(items))?;
                }
                op::APPEND => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_dict(vec![(k, v)])?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.extend_dict(pairs)?;
                }
                op::ADDITEMS => {
                    let items = self.pop_mark()?;
                    let t = self.top()?;
                    match &mut self.nodes[t as usize] {
                        Node::Set(v) => v.extend(items),
                        _ => {
                            return Err(self.err(Kind::Malformed, "ADDITEMS on something not a set"))
                        }
                    }
                }
                op::PUT => {
                    let line = self.line()?;
                    let idx = self.decimal(line)?;
                    self.memo_put(idx)?;
                }
                op::BINPUT => {
                    let idx = self.byte()? as u64;
                    self.memo_put(idx)?;
                }
                op::LONG_BINPUT => {
                    let idx = u32::from_le_bytes(self.arr()?) as u64;
                    self.memo_put(idx)?;
                }
                op::MEMOIZE => {
                    let idx = self.memo.len() as u64;
                    self.memo_put(idx)?;
                }
                op::GET => {
                    let line = self.line()?;
                    let idx = self.decimal(line)?;
                    self.memo_get(idx)?;
                }
                op::BINGET => {
                    let idx = self.byte()? as u64;
                    self.memo_get(idx)?;
                }
                op::LONG_BINGET => {
                    let idx = u32::from_le_bytes(self.arr()?) as u64;
                    self.memo_get(idx)?;
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let module = self.utf8(module)?;
                    let name = self.utf8(name)?;
                    let g = self.global(&module, &name)?;
                    self.atom(Value::Global(g))?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.str_atom(module), self.str_atom(name))
                    else {
                        return Err(self.err(Kind::Malformed, "STACK_GLOBAL needs two str"));
                    };
                    let g = self.global(module, name)?;
                    self.atom(Value::Global(g))?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.reduce(callable, args)?;
                    self.push_node(node)?;
                }
                op::NEWOBJ => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let class = self.class_of(cls)?;
                    let args = self.tuple_items(args)?;
                    self.push_node(object(class, NodeConstruct::New(args)))?;
                }
                op::NEWOBJ_EX => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let class = self.class_of(cls)?;
                    let args = self.tuple_items(args)?;
                    if !matches!(self.nodes[kwargs as usize], Node::Dict(_)) {
                        return Err(
                            self.err(Kind::Malformed, "NEWOBJ_EX keyword arguments not a dict")
                        );
                    }
                    self.push_node(object(class, NodeConstruct::NewEx(args, kwargs)))?;
                }
                op::INST => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let module = self.utf8(module)?;
                    let name = self.utf8(name)?;
                    let class = self.global(&module, &name)?;
                    let args = self.pop_mark()?;
                    self.push_node(object(class, NodeConstruct::Call(args)))?;
                }
                op::OBJ => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.err(Kind::Malformed, "OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let class = self.class_of(cls)?;
                    self.push_node(object(class, NodeConstruct::Call(items)))?;
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let t = self.top()?;
                    self.build(t, state)?;
                }
                op::PERSID | op::BINPERSID => {
                    return Err(self.err(
                        Kind::Unsupported,
                        "persistent IDs (this reader has no persistent_load)",
                    ))
                }
                op::EXT1 | op::EXT2 | op::EXT4 => {
                    return Err(self.err(
                        Kind::Unsupported,
                        "an extension code (copyreg's extension registry is empty here)",
                    ))
                }
                op::NEXT_BUFFER | op::READONLY_BUFFER => {
                    return Err(self.err(Kind::Unsupported, "out-of-band buffers"))
                }
                other => return Err(self.err(Kind::UnknownOpcode, format!("opcode 0x{other:02x}"))),
            }
        }
    }

    fn decimal(&self, line: &[u8]) -> Result<u64, PickleError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| self.err(Kind::Malformed, "a memo index that is not a number"))
    }

    fn unicode(&mut self, n: u64) -> Result<(), PickleError> {
        let n = self.length(n)?;
        let b = self.take(n)?;
        let s = self.utf8(b)?;
        self.atom(Value::Str(s))
    }

    fn bytes(&mut self, n: u64) -> Result<(), PickleError> {
        let n = self.length(n)?;
        let b = self.take(n)?.to_vec();
        self.atom(Value::Bytes(b))
    }

    fn pairs(&self, items: Vec<Id>) -> Result<Vec<(Id, Id)>, PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.err(Kind::Malformed, "an odd number of items for a dict"));
        }
        Ok(items.chunks(2).map(|c| (c[0], c[1])).collect())
    }

    fn extend_list(&mut self, items: Vec<Id>) -> Result<(), PickleError> {
        let t = self.top()?;
        match &mut self.nodes[t as usize] {
            Node::List(v) => v.extend(items),
            Node::Object(o) => o.list_items.extend(items),
            _ => return Err(self.err(Kind::Malformed, "APPEND to something not a list")),
        }
        Ok(())
    }

    fn extend_dict(&mut self, pairs: Vec<(Id, Id)>) -> Result<(), PickleError> {
        let t = self.top()?;
        match &mut self.nodes[t as usize] {
            Node::Dict(v) => v.extend(pairs),
            Node::Object(o) => o.dict_items.extend(pairs),
            _ => return Err(self.err(Kind::Malformed, "SETITEM on something not a dict")),
        }
        Ok(())
    }

    fn class_of(&self, id: Id) -> Result<Global, PickleError> {
        match &self.nodes[id as usize] {
            Node::Atom(Value::Global(g)) => Ok(g.clone()),
            _ => Err(self.err(
                Kind::Unsupported,
                "a class that is not a global (only module-level classes are represented)",
            )),
        }
    }

    fn tuple_items(&mut self, id: Id) -> Result<Vec<Id>, PickleError> {
        let n = match &self.nodes[id as usize] {
            Node::Tuple(items) => items.len(),
            _ => return Err(self.err(Kind::Malformed, "arguments that are not a tuple")),
        };
        self.charge_copies(n)?;
        self.shared = true;
        match &self.nodes[id as usize] {
            Node::Tuple(items) => Ok(items.clone()),
            _ => unreachable!("checked above"),
        }
    }

    /// `callable(*args)`: the reader's own interpretations, or an [`Object`].
    fn reduce(&mut self, callable: Id, args: Id) -> Result<Node, PickleError> {
        let g = self.class_of(callable)?;
        let items = self.tuple_items(args)?;
        if let Some(&first) = items.first() {
            if let Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) =
                &self.nodes[first as usize]
            {
                // `set(x)` and `frozenset(x)` copy x's items.
                let n = v.len();
                self.charge_copies(n)?;
                self.shared = true;
            }
        }
        let atom = |i: usize| match items.get(i).map(|&id| &self.nodes[id as usize]) {
            Some(Node::Atom(v)) => Some(v),
            _ => None,
        };
        let seq = |i: usize| match items.get(i).map(|&id| &self.nodes[id as usize]) {
            Some(Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v)) => {
                Some(v.clone())
            }
            _ => None,
        };
        match (g.module.as_str(), g.name.as_str(), items.len()) {
            // Protocols 0-2 write bytes as `_codecs.encode(str, 'latin1')`.
            ("_codecs", "encode", 2) => {
                if let (Some(Value::Str(s)), Some(Value::Str(enc))) = (atom(0), atom(1)) {
                    if enc == "latin1" || enc == "latin-1" {
                        let b: Option<Vec<u8>> =
                            s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                        return b.map(|b| Node::Atom(Value::Bytes(b))).ok_or_else(|| {
                            self.err(Kind::InvalidString, "latin-1 text above U+00FF")
                        });
                    }
                }
            }
            ("builtins", "bytes", 0) => return Ok(Node::Atom(Value::Bytes(Vec::new()))),
            ("builtins", "set", 0) => return Ok(Node::Set(Vec::new())),
            ("builtins", "frozenset", 0) => return Ok(Node::FrozenSet(Vec::new())),
            ("builtins", "set", 1) => {
                if let Some(v) = seq(0) {
                    return Ok(Node::Set(v));
                }
            }
            ("builtins", "frozenset", 1) => {
                if let Some(v) = seq(0) {
                    return Ok(Node::FrozenSet(v));
                }
            }
            // Protocols 0 and 1 write `cls.__new__(cls)` as `_reconstructor(cls, object, None)`.
            ("copyreg", "_reconstructor", 3) => {
                if let (Ok(cls), Some(Value::Global(base)), Some(Value::None)) =
                    (self.class_of(items[0]), atom(1), atom(2))
                {
                    if base.is("builtins", "object") {
                        if !self.opts.globals.allows(&cls.module, &cls.name) {
                            return Err(self.err(
                                Kind::GlobalRefused,
                                format!("global {}.{} is not allowed here", cls.module, cls.name),
                            ));
                        }
                        return Ok(object(cls, NodeConstruct::New(Vec::new())));
                    }
                }
            }
            _ => {}
        }
        if interpreted(&g.module, &g.name) && !self.opts.globals.allows(&g.module, &g.name) {
            return Err(self.err(
                Kind::GlobalRefused,
                format!("global {}.{} is not allowed here", g.module, g.name),
            ));
        }
        Ok(object(g, NodeConstruct::Call(items)))
    }

    fn build(&mut self, target: Id, state: Id) -> Result<(), PickleError> {
        let merge = match (&self.nodes[target as usize], &self.nodes[state as usize]) {
            (Node::Object(o), Node::Dict(new)) => {
                match o.state.map(|old| &self.nodes[old as usize]) {
                    Some(Node::Dict(old_items)) => {
                        Some(old_items.iter().chain(new).copied().collect::<Vec<_>>())
                    }
                    _ => None,
                }
            }
            (Node::Object(_), _) => None,
            _ => return Err(self.err(Kind::Malformed, "BUILD on something not an object")),
        };
        let new_state = match merge {
            Some(items) => {
                self.charge_copies(items.len())?;
                self.shared = true;
                let id = self.nodes.len() as Id;
                self.nodes.push(Node::Dict(items));
                id
            }
            None => state,
        };
        if let Node::Object(o) = &mut self.nodes[target as usize] {
            o.state = Some(new_state);
        }
        Ok(())
    }
}

fn object(class: Global, construct: NodeConstruct) -> Node {
    Node::Object(Box::new(ObjectNode {
        class,
        construct,
        state: None,
        list_items: Vec::new(),
        dict_items: Vec::new(),
    }))
}

/// The globals the reader interprets itself (always accepted).
fn interpreted(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("_codecs", "encode")
            | ("builtins", "bytes" | "set" | "frozenset" | "object")
            | ("copyreg", "_reconstructor")
    )
}

/// Python 2 names in protocols 0-2, as CPython's `fix_imports` maps them (the common ones).
fn fix_import(module: &str, name: &str) -> (String, String) {
    let (m, n) = match (module, name) {
        ("__builtin__", "xrange") => ("builtins", "range"),
        ("__builtin__", "unicode") => ("builtins", "str"),
        ("__builtin__", "basestring") => ("builtins", "str"),
        ("__builtin__", "long") => ("builtins", "int"),
        ("__builtin__", "unichr") => ("builtins", "chr"),
        ("__builtin__", "reduce") => ("functools", "reduce"),
        ("__builtin__", "intern") => ("sys", "intern"),
        ("__builtin__", n) | ("exceptions", n) => ("builtins", n),
        ("copy_reg", n) => ("copyreg", n),
        ("UserDict", "UserDict") => ("collections", "UserDict"),
        ("Queue", n) => ("queue", n),
        (m, n) => (m, n),
    };
    (m.to_owned(), n.to_owned())
}

/// The inside of a quoted Python 2 `repr` of a str.
fn unquote(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() >= 2 {
        let (first, last) = (line[0], line[line.len() - 1]);
        if first == last && (first == b'\'' || first == b'"') {
            return Some(&line[1..line.len() - 1]);
        }
    }
    None
}

/// Python's `codecs.escape_decode`.
fn escape_decode(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = *b.get(i)?;
        i += 1;
        match c {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let h = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match b.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Python's `raw-unicode-escape` decoding: `\uXXXX` and `\UXXXXXXXX` escapes, every other byte
/// a Latin-1 character.
fn raw_unicode_escape(b: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let width = match (c, b.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let h = std::str::from_utf8(b.get(i + 2..i + 2 + width)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
        i += 2 + width;
    }
    Some(out)
}

/// Copies the arena out into a value tree, within the bounds (moving values out when the arena
/// is a tree: every node is then reached once).
struct Builder<'n> {
    nodes: &'n mut [Node],
    tree: bool,
    /// The nodes being built (a cycle check, kept only when nodes may be shared).
    active: Vec<bool>,
    values_left: usize,
    bytes_left: usize,
    max_depth: usize,
}

impl Builder<'_> {
    fn err(&self, kind: Kind, detail: impl Into<String>) -> PickleError {
        PickleError::new(kind, None, detail)
    }

    fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        if self.values_left == 0 {
            return Err(self.err(
                Kind::TooLarge,
                "the pickle expands to more values than allowed (memo references are copied)",
            ));
        }
        self.values_left -= 1;
        if bytes > self.bytes_left {
            return Err(self.err(
                Kind::TooLarge,
                "the pickle expands to more str and bytes data than allowed",
            ));
        }
        self.bytes_left -= bytes;
        Ok(())
    }

    fn list(&mut self, ids: &[Id], depth: usize) -> Result<Vec<Value>, PickleError> {
        ids.iter().map(|&i| self.build(i, depth + 1)).collect()
    }

    fn dict(&mut self, pairs: &[(Id, Id)], depth: usize) -> Result<Dict, PickleError> {
        let mut d = Dict::new();
        for &(k, v) in pairs {
            let k = self.build(k, depth + 1)?;
            let v = self.build(v, depth + 1)?;
            d.insert(k, v)
                .map_err(|e| self.err(Kind::Unhashable, format!("a dict key: {e}")))?;
        }
        Ok(d)
    }

    fn set(&mut self, ids: &[Id], depth: usize) -> Result<Set, PickleError> {
        let mut s = Set::new();
        for &i in ids {
            let v = self.build(i, depth + 1)?;
            s.insert(v)
                .map_err(|e| self.err(Kind::Unhashable, format!("a set element: {e}")))?;
        }
        Ok(s)
    }

    fn build(&mut self, id: Id, depth: usize) -> Result<Value, PickleError> {
        if depth > self.max_depth {
            return Err(self.err(
                Kind::TooDeep,
                format!("values nest deeper than {} levels", self.max_depth),
            ));
        }
        if !self.tree && self.active[id as usize] {
            return Err(self.err(
                Kind::Recursive,
                "the pickle holds a structure that contains itself",
            ));
        }
        let size = match &self.nodes[id as usize] {
            Node::Atom(Value::Str(s)) => s.len(),
            Node::Atom(Value::Bytes(b)) => b.len(),
            _ => 0,
        };
        self.charge(size)?;
        if self.tree {
            // Reached once: the node's value moves out (a node reached again would be a bug in
            // the `shared` bookkeeping, reported rather than built wrong).
            let node = std::mem::replace(&mut self.nodes[id as usize], Node::Taken);
            return match node {
                Node::Atom(v) => Ok(v),
                Node::Taken => Err(self.err(Kind::Recursive, "a node reached twice")),
                other => self.build_node(&other, depth),
            };
        }
        self.active[id as usize] = true;
        // Taken out while its items are built (which borrow the builder), then put back: a
        // shared node may be reached again.
        let node = std::mem::replace(&mut self.nodes[id as usize], Node::Taken);
        let v = match &node {
            Node::Atom(v) => Ok(v.clone()),
            other => self.build_node(other, depth),
        };
        self.nodes[id as usize] = node;
        self.active[id as usize] = false;
        v
    }

    fn build_node(&mut self, node: &Node, depth: usize) -> Result<Value, PickleError> {
        match node {
            Node::Atom(v) => Ok(v.clone()),
            Node::Taken => Err(self.err(
                Kind::Recursive,
                "the pickle holds a structure that contains itself",
            )),
            Node::List(ids) => self.list(ids, depth).map(Value::List),
            Node::Tuple(ids) => self.list(ids, depth).map(Value::Tuple),
            Node::Dict(pairs) => self.dict(pairs, depth).map(Value::Dict),
            Node::Set(ids) => self.set(ids, depth).map(Value::Set),
            Node::FrozenSet(ids) => self.set(ids, depth).map(Value::FrozenSet),
            Node::Object(o) => (|| {
                let ObjectNode {
                    class,
                    construct,
                    state,
                    list_items,
                    dict_items,
                } = &**o;
                let construct = match construct {
                    NodeConstruct::Call(a) => Construct::Call(self.list(a, depth)?),
                    NodeConstruct::New(a) => Construct::New(self.list(a, depth)?),
                    NodeConstruct::NewEx(a, k) => {
                        let args = self.list(a, depth)?;
                        match self.build(*k, depth + 1)? {
                            Value::Dict(d) => Construct::NewEx(args, d),
                            _ => {
                                return Err(
                                    self.err(Kind::Malformed, "keyword arguments not a dict")
                                )
                            }
                        }
                    }
                };
                let state = state.map(|s| self.build(s, depth + 1)).transpose()?;
                let list_items = self.list(list_items, depth)?;
                let dict_items = dict_items
                    .iter()
                    .map(|&(k, v)| Ok((self.build(k, depth + 1)?, self.build(v, depth + 1)?)))
                    .collect::<Result<Vec<_>, PickleError>>()?;
                Ok(Value::Object(Box::new(Object {
                    class: class.clone(),
                    construct,
                    state,
                    list_items,
                    dict_items,
                })))
            })(),
        }
    }
}
