//! `mproc::pickle` against the real CPython (3.11, and 3.12/3.13 where present): golden bytes of
//! the manager's message shapes, round trips of generated values in both directions, Python's
//! `repr`, the serde bridge, and hostile pickles.

mod cpython;

use cpython::Python;
use mproc::pickle::{
    self, dumps, from_value, loads, loads_with, to_value, Construct, Dict, Global, GlobalPolicy,
    Object, PickleErrorKind as K, ReadOptions, Set, Value,
};
use proptest::prelude::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `code` (which defines `out`, a list of objects) under `py` and returns, per object, its
/// protocol 4 pickle.
fn python_pickles(py: &Python, code: &str) -> Vec<Vec<u8>> {
    let script = format!(
        "import pickle, sys\n\
         from multiprocessing.managers import Token, RebuildProxy, DictProxy, ListProxy, Namespace\n\
         {code}\n\
         for o in out:\n    print(pickle.dumps(o, 4).hex())\n"
    );
    let o = cpython::run(py, &script, &[], T);
    assert!(
        o.status.success(),
        "{}: {}",
        py.label(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(unhex)
        .collect()
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

fn tuple(items: Vec<Value>) -> Value {
    Value::Tuple(items)
}

fn dict(items: Vec<(Value, Value)>) -> Value {
    let mut d = Dict::new();
    for (k, v) in items {
        d.insert(k, v).unwrap();
    }
    Value::Dict(d)
}

fn mm(name: &str) -> Global {
    Global::new("multiprocessing.managers", name)
}

fn token(typeid: &str, address: Value, id: &str) -> Value {
    Object::new_with_state(
        mm("Token"),
        vec![],
        Some(tuple(vec![s(typeid), address, s(id)])),
    )
    .into()
}

/// The manager's message shapes, built in Rust, and the same objects built in Python.
fn message_shapes() -> (Vec<Value>, &'static str) {
    let rebuild = |class: &str, tok: Value, kwds: Value| -> Value {
        Object::call(
            mm("RebuildProxy"),
            vec![Value::Global(mm(class)), tok, s("pickle"), kwds],
        )
        .into()
    };
    let rust = vec![
        tuple(vec![
            Value::None,
            s("create"),
            tuple(vec![s("dict")]),
            dict(vec![]),
        ]),
        tuple(vec![
            s("7f2a1b3c"),
            s("__setitem__"),
            tuple(vec![Value::Float(0.25), Value::None]),
            dict(vec![]),
        ]),
        tuple(vec![s("#RETURN"), Value::None]),
        tuple(vec![
            s("#RETURN"),
            tuple(vec![
                s("7f2a"),
                tuple(vec![s("__contains__"), s("__getitem__"), s("keys")]),
            ]),
        ]),
        tuple(vec![
            s("#ERROR"),
            Object::call(Global::new("builtins", "KeyError"), vec![s("missing")]).into(),
        ]),
        tuple(vec![
            s("#TRACEBACK"),
            s("Traceback (most recent call last):\n  boom\n"),
        ]),
        tuple(vec![
            s("#RETURN"),
            rebuild(
                "DictProxy",
                token("dict", s("/tmp/pymp-abc/listener-xyz"), "7f00deadbeef"),
                dict(vec![]),
            ),
        ]),
        tuple(vec![
            s("#RETURN"),
            rebuild(
                "ListProxy",
                token(
                    "list",
                    tuple(vec![s("127.0.0.1"), Value::Int(50000)]),
                    "7f01",
                ),
                dict(vec![(s("authkey"), Value::Bytes(b"k3y".to_vec()))]),
            ),
        ]),
        Object::new_with_state(
            mm("Namespace"),
            vec![],
            Some(dict(vec![(s("a"), Value::Int(1)), (s("b"), s("x"))])),
        )
        .into(),
        dict(vec![
            (Value::Float(0.25), Value::None),
            (Value::Int(1), s("1")),
            (s("2"), Value::Int(2)),
        ]),
        Value::List((0..10).rev().map(Value::Int).collect()),
    ];
    let python = r#"
class R:
    def __init__(self, r): self.r = r
    def __reduce__(self): return self.r
out = [
    (None, 'create', ('dict',), {}),
    ('7f2a1b3c', '__setitem__', (0.25, None), {}),
    ('#RETURN', None),
    ('#RETURN', ('7f2a', ('__contains__', '__getitem__', 'keys'))),
    ('#ERROR', KeyError('missing')),
    ('#TRACEBACK', 'Traceback (most recent call last):\n  boom\n'),
    ('#RETURN', R((RebuildProxy, (DictProxy, Token('dict', '/tmp/pymp-abc/listener-xyz', '7f00deadbeef'), 'pickle', {})))),
    ('#RETURN', R((RebuildProxy, (ListProxy, Token('list', ('127.0.0.1', 50000), '7f01'), 'pickle', {'authkey': b'k3y'})))),
    Namespace(a=1, b='x'),
    {0.25: None, 1: '1', '2': 2},
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
"#;
    (rust, python)
}

#[test]
fn golden_bytes_of_the_managers_message_shapes() {
    let (values, code) = message_shapes();
    for py in cpython::interpreters() {
        let theirs = python_pickles(&py, code);
        assert_eq!(theirs.len(), values.len());
        for (v, want) in values.iter().zip(&theirs) {
            let ours = dumps(v).unwrap();
            assert_eq!(
                hex(&ours),
                hex(want),
                "{}: the bytes of {v} differ from CPython's",
                py.label()
            );
            // And CPython's bytes read back as the same value.
            assert_eq!(&loads(want).unwrap(), v, "{}", py.label());
        }
        eprintln!(
            "{}: {} message shapes byte for byte",
            py.label(),
            values.len()
        );
    }
}

#[test]
fn the_notes_example_prints_as_python() {
    let (values, _) = message_shapes();
    assert_eq!(values[9].to_string(), "{0.25: None, 1: '1', '2': 2}");
    assert_eq!(values[10].to_string(), "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]");
    assert_eq!(values[4].to_string(), "('#ERROR', KeyError('missing'))");
    assert_eq!(
        values[8].to_string(),
        "multiprocessing.managers.Namespace(a=1, b='x')"
    );
}

#[test]
fn framing_batches_and_big_values_match_cpython() {
    let code = r#"
out = [
    list(range(2500)),
    {i: str(i) for i in range(1000)},
    {i: None for i in range(2001)},
    set(range(1000)),
    frozenset(),
    set(),
    'x' * 70000,
    b'y' * 65536,
    b'z' * 65535,
    ['s%05d' % i for i in range(20000)],
    [2**31, -2**31, -2**31 - 1, 2**63, -2**63, 2**64, -2**64 - 1, 2**2000, -(2**2000), 255, 256, 65535, 65536, -1],
    (1, (2, (3, (4, (5,))))),
    # CPython's cached objects are shared however they were made; other equal strings built
    # apart are not (a literal written twice in one code object would be: a tree cannot say).
    ['', 'a', '', 'a', 'é', chr(233), ''.join(['a', 'b']), ''.join(['a', 'b']), b'', bytes(0),
     b'q', bytes([113]), chr(256), chr(256)],
    [1.5, float('inf'), float('-inf'), -0.0, 1e300, 5e-324],
]
"#;
    let py = cpython::interpreters();
    for py in py {
        for want in python_pickles(&py, code) {
            let v = loads(&want).unwrap();
            // Sets are read in CPython's iteration order, so they write back in it too.
            assert_eq!(
                hex(&dumps(&v).unwrap()),
                hex(&want),
                "{}: {v:.200}",
                py.label()
            );
        }
    }
}

// ----- Round trips of generated values with CPython ------------------------------------------

/// One CPython per interpreter, kept for the whole test: it reads a pickle (hex, one per line)
/// and answers its repr, its protocol 4 pickle, and its pickles at protocols 0 to 5.
struct Oracle {
    py: Python,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _child: std::process::Child,
}

const ORACLE: &str = r#"
import pickle, sys, unicodedata
def unassigned(v):
    # Whether a str inside holds a code point this Python's Unicode database does not know
    # (its repr escapes it; mproc's newer tables may print it).
    if isinstance(v, str):
        return any(unicodedata.category(c) == 'Cn' for c in v)
    if isinstance(v, dict):
        return any(unassigned(k) or unassigned(x) for k, x in v.items())
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(unassigned(x) for x in v)
    return False
for line in sys.stdin:
    v = pickle.loads(bytes.fromhex(line.strip()))
    r = '-' if unassigned(v) else repr(v)
    fields = [r.encode('utf-8', 'surrogatepass').hex(), pickle.dumps(v, 4).hex()]
    fields += [pickle.dumps(v, p).hex() for p in range(6)]
    print(' '.join(fields), flush=True)
"#;

impl Oracle {
    fn start(py: Python) -> Oracle {
        let mut child = cpython::spawn(&py, ORACLE, &[], Stdio::piped());
        Oracle {
            py,
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            _child: child,
        }
    }

    fn ask(&mut self, pickle: &[u8]) -> (String, Vec<u8>, Vec<Vec<u8>>) {
        writeln!(self.stdin, "{}", hex(pickle)).unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            f.len(),
            8,
            "{}: the oracle failed on {}",
            self.py.label(),
            hex(pickle)
        );
        (
            String::from_utf8(unhex(f[0])).unwrap(),
            unhex(f[1]),
            f[2..].iter().map(|h| unhex(h)).collect(),
        )
    }
}

static ORACLES: Mutex<Option<Vec<Oracle>>> = Mutex::new(None);

fn has_big_set(v: &Value) -> bool {
    match v {
        Value::Set(s) | Value::FrozenSet(s) => s.len() > 1 || s.iter().any(has_big_set),
        Value::Tuple(i) | Value::List(i) => i.iter().any(has_big_set),
        Value::Dict(d) => d.iter().any(|(k, v)| has_big_set(k) || has_big_set(v)),
        _ => false,
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-300i64..300).prop_map(Value::Int),
        any::<i128>().prop_map(Value::from),
        (any::<u64>(), 1u32..4).prop_map(|(x, e)| {
            Value::from(pickle::BigInt::from(x).pow(e + 1) * if x % 2 == 0 { -1 } else { 1 })
        }),
        any::<f64>().prop_map(Value::Float),
        prop_oneof![
            Just(0.25),
            Just(1e16),
            Just(-0.0),
            Just(f64::NAN),
            Just(1.0)
        ]
        .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Str),
        "[a'\"\\\\\t\n\r\u{0}\u{7f}\u{a0}é\u{200b}日\u{1f600}]{0,6}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
    ]
}

fn hashable() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 8, 3, |inner| {
        proptest::collection::vec(inner, 0..3).prop_map(Value::Tuple)
    })
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec((hashable(), inner.clone()), 0..5).prop_map(|kv| {
                let mut d = Dict::new();
                for (k, v) in kv {
                    d.insert(k, v).unwrap();
                }
                Value::Dict(d)
            }),
            proptest::collection::vec(hashable(), 0..4).prop_map(|items| {
                let mut s = Set::new();
                for i in items {
                    s.insert(i).unwrap();
                }
                Value::Set(s)
            }),
            proptest::collection::vec(hashable(), 0..3).prop_map(|items| {
                let mut s = Set::new();
                for i in items {
                    s.insert(i).unwrap();
                }
                Value::FrozenSet(s)
            }),
        ]
    })
}

/// Python's `==` with NaN equal to itself, for comparing round trips.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) if x.is_nan() && y.is_nan() => true,
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Set(x), Value::Set(y)) | (Value::FrozenSet(x), Value::FrozenSet(y)) => {
            x.len() == y.len() && x.iter().all(|p| y.iter().any(|q| same(p, q)))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| same(k, k2) && same(v, v2)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn generated_values_round_trip_through_cpython_both_ways(v in value()) {
        let mut guard = ORACLES.lock().unwrap_or_else(|e| e.into_inner());
        let oracles = guard.get_or_insert_with(|| {
            cpython::interpreters().into_iter().map(Oracle::start).collect()
        });
        let ours = dumps(&v).unwrap();
        for o in oracles.iter_mut() {
            let (repr, p4, all) = o.ask(&ours);
            let label = o.py.label();
            let exact = !has_big_set(&v);
            // Our writer to CPython's reader: the same value, printed alike.
            // A repr of "-": the value holds code points this CPython's Unicode tables call
            // unassigned (its repr escapes them; ours, from newer tables, may not).
            let repr_known = repr != "-";
            if exact && repr_known {
                prop_assert_eq!(&repr, &v.to_string(), "{}: repr", label);
            }
            if exact {
                // CPython writes it back byte for byte as we wrote it.
                prop_assert_eq!(hex(&p4), hex(&ours), "{}: protocol 4 bytes of {}", label, v);
            }
            // CPython's writer (every protocol) to our reader.
            for (proto, bytes) in all.iter().enumerate() {
                let back = loads(bytes).unwrap();
                prop_assert!(same(&back, &v), "{}: protocol {} read back {} for {}", label, proto, back, v);
                if exact && repr_known {
                    prop_assert_eq!(back.to_string(), repr.clone());
                }
            }
        }
    }
}

// ----- The serde bridge -----------------------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
enum Color {
    Red,
    Rgb(u8, u8, u8),
    Named { name: String },
    Gray(f32),
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: u64,
    big: u128,
    neg: i128,
    name: String,
    tags: Vec<String>,
    pair: (i32, Option<bool>),
    colors: Vec<Color>,
    scores: std::collections::BTreeMap<String, f64>,
    #[serde(with = "serde_bytes_like")]
    blob: Vec<u8>,
    unit: (),
}

mod serde_bytes_like {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Vec<u8>, E> {
                Ok(b.to_vec())
            }
        }
        d.deserialize_bytes(V)
    }
}

fn record() -> Record {
    Record {
        id: u64::MAX,
        big: u128::MAX,
        neg: i128::MIN,
        name: "name 'quoted'".into(),
        tags: vec!["a".into(), "b".into()],
        pair: (-7, Some(true)),
        colors: vec![
            Color::Red,
            Color::Rgb(1, 2, 3),
            Color::Named {
                name: "teal".into(),
            },
            Color::Gray(0.5),
        ],
        scores: [("x".to_string(), 0.25), ("y".to_string(), 1e16)]
            .into_iter()
            .collect(),
        blob: vec![0, 1, 255],
        unit: (),
    }
}

#[test]
fn serde_types_map_to_python_values_and_back() {
    let r = record();
    let v = to_value(&r).unwrap();
    assert_eq!(
        v.to_string(),
        "{'id': 18446744073709551615, 'big': 340282366920938463463374607431768211455, \
         'neg': -170141183460469231731687303715884105728, 'name': \"name 'quoted'\", \
         'tags': ['a', 'b'], 'pair': (-7, True), \
         'colors': ['Red', {'Rgb': (1, 2, 3)}, {'Named': {'name': 'teal'}}, {'Gray': 0.5}], \
         'scores': {'x': 0.25, 'y': 1e+16}, 'blob': b'\\x00\\x01\\xff', 'unit': None}"
    );
    assert_eq!(from_value::<Record>(v.clone()).unwrap(), r);
    // Through pickle bytes, and through CPython.
    let bytes = pickle::to_vec(&r).unwrap();
    assert_eq!(
        pickle::from_slice::<Record>(&bytes, &ReadOptions::new()).unwrap(),
        r
    );
    for py in cpython::interpreters() {
        let o = cpython::run(
            &py,
            "import pickle, sys; v = pickle.loads(bytes.fromhex(sys.argv[1])); \
             v['tags'].append('c'); print(pickle.dumps(v, 4).hex())",
            &[&hex(&bytes)],
            T,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let back: Record = pickle::from_slice(
            &unhex(String::from_utf8(o.stdout).unwrap().trim()),
            &ReadOptions::new(),
        )
        .unwrap();
        let mut want = r.clone();
        want.tags.push("c".into());
        assert_eq!(back, want, "{}", py.label());
    }
}

#[test]
fn mismatches_name_the_rust_type_and_what_was_found() {
    let e = from_value::<u32>(s("abc")).unwrap_err().to_string();
    assert!(e.contains("u32") && e.contains("str 'abc'"), "{e}");
    let e = from_value::<Record>(dict(vec![(s("id"), s("x"))]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Record") && e.contains("u64") && e.contains("str 'x'"),
        "{e}"
    );
    let e = from_value::<u8>(Value::Int(300)).unwrap_err().to_string();
    assert!(e.contains("u8") && e.contains("300"), "{e}");
    let e = from_value::<Vec<i32>>(Value::Object(Box::new(Object::call(
        Global::new("builtins", "KeyError"),
        vec![s("k")],
    ))))
    .unwrap_err()
    .to_string();
    assert!(e.contains("KeyError('k')") && e.contains("Vec<i32>"), "{e}");
    // A key Python could not hash.
    let mut m = std::collections::HashMap::new();
    m.insert(vec![1u8], 2u8);
    let e = to_value(&m).unwrap_err().to_string();
    assert!(
        e.contains("unhashable type: 'list'") && e.contains("HashMap"),
        "{e}"
    );
}

#[test]
fn a_value_crosses_bincode_and_the_bridge_whole() {
    let v: Value = tuple(vec![
        Value::Set({
            let mut s = Set::new();
            s.insert(Value::Int(1)).unwrap();
            s.insert(s_("two")).unwrap();
            s
        }),
        Object::call(Global::new("builtins", "KeyError"), vec![s("k")]).into(),
        Value::Global(mm("DictProxy")),
        Value::from(pickle::BigInt::from(7).pow(40)),
    ]);
    // mproc's own channels use bincode: the value travels as its pickle.
    let (a, b) = mproc::pipe().unwrap();
    a.send(&v).unwrap();
    assert_eq!(b.recv::<Value>().unwrap().to_string(), v.to_string());
    // The bridge keeps sets, globals and objects.
    assert_eq!(to_value(&v).unwrap().to_string(), v.to_string());
    assert_eq!(
        from_value::<Value>(v.clone()).unwrap().to_string(),
        v.to_string()
    );
    let nested: Vec<Value> = from_value(Value::List(vec![v.clone()])).unwrap();
    assert_eq!(nested[0].to_string(), v.to_string());
}

fn s_(x: &str) -> Value {
    s(x)
}

#[test]
fn python_key_equality_and_order() {
    let mut d = Dict::new();
    d.insert(Value::Int(1), s("int")).unwrap();
    assert_eq!(
        d.insert(Value::Float(1.0), s("float")).unwrap(),
        Some(s("int"))
    );
    d.insert(Value::Bool(true), s("bool")).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(Value::Dict(d.clone()).to_string(), "{1: 'bool'}");
    d.insert(Value::Float(0.25), Value::None).unwrap();
    d.insert(Value::from(pickle::BigInt::from(2).pow(70)), s("big"))
        .unwrap();
    assert_eq!(
        d.get(&Value::Float(2f64.powi(70))),
        Some(&s("big")),
        "an integral float finds the big int"
    );
    assert!(d
        .get(&Value::Float(2f64.powi(70) + 2f64.powi(20)))
        .is_none());
    assert_eq!(d.get(&Value::Bool(true)), Some(&s("bool")));
    // NaN is never equal, so each NaN key is new and none is found.
    d.insert(Value::Float(f64::NAN), Value::Int(1)).unwrap();
    d.insert(Value::Float(f64::NAN), Value::Int(2)).unwrap();
    assert_eq!(d.len(), 5);
    assert!(d.get(&Value::Float(f64::NAN)).is_none());
    // Tuple keys compare element by element with the same rules.
    d.insert(tuple(vec![Value::Int(1), s("a")]), s("t"))
        .unwrap();
    assert_eq!(
        d.get(&tuple(vec![Value::Float(1.0), s("a")])),
        Some(&s("t"))
    );
    // Deleting keeps the order of the rest.
    d.remove(&Value::Float(0.25));
    assert_eq!(
        Value::Dict(d.clone()).to_string(),
        "{1: 'bool', 1180591620717411303424: 'big', nan: 1, nan: 2, (1, 'a'): 't'}"
    );
    assert_eq!(
        d.insert(Value::List(vec![]), Value::None)
            .unwrap_err()
            .to_string(),
        "unhashable type: 'list'"
    );
    // Large ints compare exactly with floats.
    assert_ne!(
        Value::from(pickle::BigInt::from(2).pow(53) + 1u32),
        Value::Float(2f64.powi(53))
    );
    assert_eq!(
        Value::Int(i64::MAX),
        Value::from(pickle::BigInt::from(i64::MAX))
    );
}

// ----- Hostile pickles ------------------------------------------------------------------------

fn kind_of(input: &[u8]) -> K {
    loads(input).unwrap_err().kind()
}

#[test]
fn hostile_pickles_get_typed_errors() {
    // Nesting: a million lists, each appended to the previous.
    let mut deep = b"\x80\x04".to_vec();
    deep.extend(std::iter::repeat_n(b']', 1_000_000));
    deep.extend(std::iter::repeat_n(b'a', 999_999));
    deep.push(b'.');
    assert_eq!(kind_of(&deep), K::TooDeep);
    // A memo reference out of range.
    assert_eq!(kind_of(b"\x80\x04h\x05."), K::MemoMissing);
    assert_eq!(kind_of(b"\x80\x04j\xff\xff\xff\xff."), K::MemoMissing);
    // Declared lengths of 2^60 (str, bytes, frame), and of 2^31-1 for LONG4 and BINSTRING.
    let huge = (1u64 << 60).to_le_bytes();
    for op in [0x8du8, 0x8e, 0x95, 0x96] {
        let mut p = vec![0x80, 4, op];
        p.extend_from_slice(&huge);
        p.extend_from_slice(b"abc.");
        assert_eq!(kind_of(&p), K::Truncated, "opcode {op:#x}");
    }
    assert_eq!(kind_of(b"\x8b\xff\xff\xff\x7fabc."), K::Truncated);
    assert_eq!(kind_of(b"T\xff\xff\xff\x7fabc."), K::Truncated);
    assert_eq!(kind_of(b"\x8b\xff\xff\xff\xffabc."), K::Malformed);
    // A global the caller does not expect.
    let os_system = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94.";
    let strict = ReadOptions::new().globals(
        GlobalPolicy::deny_all()
            .allow("builtins", "KeyError")
            .allow_module("multiprocessing.managers"),
    );
    let e = loads_with(os_system, &strict).unwrap_err();
    assert_eq!(e.kind(), K::GlobalRefused);
    assert!(e.to_string().contains("os.system"), "{e}");
    assert_eq!(
        loads(os_system).unwrap().to_string(),
        "<class 'os.system'>",
        "the default reads globals as names, never calling them"
    );
    let key_error =
        dumps(&Object::call(Global::new("builtins", "KeyError"), vec![s("m")]).into()).unwrap();
    assert!(loads_with(&key_error, &strict).is_ok());
    assert_eq!(
        loads_with(b"cos\nsystem\n.", &strict).unwrap_err().kind(),
        K::GlobalRefused
    );
    // Expansion through the memo ("billion laughs"): each list holds the previous one twice.
    let mut laughs = b"\x80\x04K\x01\x94".to_vec();
    for i in 0..60u8 {
        laughs.extend_from_slice(&[b'(', b'h', i, b'h', i, b'l', 0x94]);
    }
    laughs.push(b'.');
    let t0 = std::time::Instant::now();
    assert_eq!(kind_of(&laughs), K::TooLarge);
    assert!(t0.elapsed() < Duration::from_secs(30));
    // Work quadratic in the input: one large memoized tuple given as arguments 100,000 times
    // (each REDUCE copies its arguments), and one large dict state merged again and again.
    let mut p = b"\x80\x04\x8c\x08builtins\x94\x8c\x03set\x94\x93\x94(".to_vec();
    p.extend(b"K\x01".repeat(100_000));
    p.extend(b"t\x94");
    p.extend(b"h\x02h\x03R0".repeat(100_000));
    p.extend(b"N.");
    assert_eq!(kind_of(&p), K::TooLarge);
    let mut p = b"\x80\x04\x8c\x01m\x94\x8c\x01C\x94\x93\x94)\x81\x94}\x94(".to_vec();
    for i in 0..50_000u32 {
        p.push(b'J');
        p.extend(i.to_le_bytes());
        p.push(b'N');
    }
    p.extend(b"u0"); // the dict, memoized, leaves the stack; the object is on top
    p.extend(b"h\x04b".repeat(100_000));
    p.extend(b".");
    assert_eq!(kind_of(&p), K::TooLarge);
    // A list that contains itself.
    assert_eq!(kind_of(b"\x80\x04]\x94h\x00a."), K::Recursive);
    // An unhashable key.
    assert_eq!(kind_of(b"\x80\x04}](K\x01N\x86u."), K::Malformed);
    assert_eq!(kind_of(b"\x80\x04}]K\x01s."), K::Unhashable);
    // Features this reader does not have.
    assert_eq!(kind_of(b"\x80\x06N."), K::Unsupported);
    assert_eq!(kind_of(b"Pid\n."), K::Unsupported);
    assert_eq!(kind_of(b"\x82\x01."), K::Unsupported);
    assert_eq!(kind_of(b"\x97."), K::Unsupported);
    assert_eq!(kind_of(b"\xff"), K::UnknownOpcode);
    // The stack and marks.
    assert_eq!(kind_of(b"."), K::Malformed);
    assert_eq!(kind_of(b"a."), K::Malformed);
    assert_eq!(kind_of(b"(K\x01u."), K::Malformed);
    assert_eq!(kind_of(b"K\x01K\x02\x93."), K::Malformed);
    assert_eq!(kind_of(b"K\x01N\x62."), K::Malformed);
    // Strings.
    assert_eq!(kind_of(b"X\x03\x00\x00\x00\xed\xa0\x80."), K::InvalidString);
    assert_eq!(kind_of(b"U\x01\xff."), K::InvalidString);
    let long_int = format!("L{}\n.", "9".repeat(5000));
    assert_eq!(kind_of(long_int.as_bytes()), K::InvalidNumber);
    // Truncation, anywhere.
    let good = dumps(&message_shapes().0[6]).unwrap();
    for cut in 0..good.len() {
        assert!(loads(&good[..cut]).is_err(), "a pickle cut at {cut} read");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_pickles_give_values_or_typed_errors(
        which in 0usize..11,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut p = dumps(&message_shapes().0[which]).unwrap();
        for (at, byte, kind) in edits {
            if p.is_empty() {
                break;
            }
            let i = at % p.len();
            match kind {
                0 => p[i] = byte,
                1 => p.truncate(i),
                _ => p.insert(i, byte),
            }
        }
        // Any outcome but a panic (which fails the test) is acceptable; values print.
        if let Ok(v) = loads(&p) {
            let _ = v.to_string();
            let _ = dumps(&v);
        }
    }

    #[test]
    fn random_bytes_give_values_or_typed_errors(p in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(v) = loads(&p) {
            let _ = v.to_string();
        }
    }
}

#[test]
fn protocol_zero_objects_read_as_their_protocol_four_selves() {
    for py in cpython::interpreters() {
        let o = cpython::run(
            &py,
            "import pickle\n\
             from multiprocessing.managers import Namespace, Token\n\
             for p in range(6):\n    \
                 print(pickle.dumps([Namespace(a=1), Token('dict', ('h', 1), 'x'), KeyError('k'), b'\\x00\\xff', {1, 2}, frozenset({3})], p).hex())\n",
            &[],
            T,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let all: Vec<Value> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| loads(&unhex(l)).unwrap())
            .collect();
        for (p, v) in all.iter().enumerate() {
            assert_eq!(
                v.to_string(),
                all[4].to_string(),
                "{}: protocol {p} reads differently",
                py.label()
            );
        }
        let Value::List(items) = &all[0] else {
            panic!()
        };
        let Value::Object(ns) = &items[0] else {
            panic!()
        };
        assert!(ns.class.is("multiprocessing.managers", "Namespace"));
        assert!(matches!(ns.construct, Construct::New(ref a) if a.is_empty()));
        assert_eq!(items[3], Value::Bytes(vec![0, 255]));
    }
}
