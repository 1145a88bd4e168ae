//! `Value`: a Python value as pickle carries it, with Python's equality and hashing for dict
//! keys and set elements.

use indexmap::{Equivalent, IndexMap};
use num_bigint::BigInt;
use num_traits::{FromPrimitive, ToPrimitive, Zero};
use std::hash::{DefaultHasher, Hash, Hasher};

/// A Python value: what a pickle holds, and what mproc's manager stores.
///
/// Equality is Python's `==`: numbers compare by value across `bool`, `int` and `float`
/// (`1 == 1.0 == True`), NaN equals nothing, a `set` equals the `frozenset` of the same
/// elements, dicts compare without regard to order. Dict keys and set elements use the same
/// equality and a hash consistent with it, so `{1: 'a'}` looked up with `1.0` or `True` finds
/// `'a'`. `Display` (and `Debug`) print Python's `repr`.
///
/// A value is a tree: a pickle that refers twice to one object (through its memo) reads as two
/// equal copies, and a pickle of a structure that contains itself is refused.
#[derive(Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// An `int` of any size (values that fit in `i64` compare and hash as [`Value::Int`]).
    BigInt(BigInt),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A `tuple`.
    Tuple(Vec<Value>),
    /// A `list`.
    List(Vec<Value>),
    /// A `dict`, in insertion order.
    Dict(Dict),
    /// A `set`, in insertion order (CPython iterates sets in hash order, which is not kept).
    Set(Set),
    /// A `frozenset`, in insertion order.
    FrozenSet(Set),
    /// A reference to a class or function by module-qualified name (pickle's `GLOBAL`), such as
    /// `multiprocessing.managers.DictProxy`.
    Global(Global),
    /// An instance built by calling a global (pickle's `REDUCE`, `NEWOBJ`, `BUILD`), such as
    /// `builtins.KeyError('missing')` or a `multiprocessing.managers.Token`.
    Object(Box<Object>),
}

/// A class or function named by module and qualified name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Global {
    /// The module, e.g. `builtins`.
    pub module: String,
    /// The (qualified) name in the module, e.g. `KeyError`.
    pub name: String,
}

impl Global {
    /// `module.name`.
    pub fn new(module: impl Into<String>, name: impl Into<String>) -> Global {
        Global {
            module: module.into(),
            name: name.into(),
        }
    }

    /// Whether this is `module.name`.
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.module == module && self.name == name
    }
}

/// How an [`Object`] is constructed from its class.
#[derive(Clone, Debug, PartialEq)]
pub enum Construct {
    /// `class(*args)` (pickle's `REDUCE`, and protocol 0's `INST`/`OBJ`).
    Call(Vec<Value>),
    /// `class.__new__(class, *args)` (pickle's `NEWOBJ`).
    New(Vec<Value>),
    /// `class.__new__(class, *args, **kwargs)` (pickle's `NEWOBJ_EX`).
    NewEx(Vec<Value>, Dict),
}

/// An object pickled by reduction: its class, how it is constructed, and what is then set on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The class (or factory function).
    pub class: Global,
    /// The construction.
    pub construct: Construct,
    /// The state given to `__setstate__` or merged into `__dict__` (pickle's `BUILD`).
    pub state: Option<Value>,
    /// Items appended after construction (a list subclass's items).
    pub list_items: Vec<Value>,
    /// Items set after construction (a dict subclass's items).
    pub dict_items: Vec<(Value, Value)>,
}

impl Object {
    /// `class(*args)`, as pickle's `REDUCE` makes it: for example an exception,
    /// `Object::call(Global::new("builtins", "KeyError"), vec!["missing".into()])`.
    pub fn call(class: Global, args: Vec<Value>) -> Object {
        Object {
            class,
            construct: Construct::Call(args),
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }
    }

    /// `class.__new__(class, *args)` then `BUILD` with `state`, as pickle's `NEWOBJ` makes it.
    pub fn new_with_state(class: Global, args: Vec<Value>, state: Option<Value>) -> Object {
        Object {
            class,
            construct: Construct::New(args),
            state,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }
    }

    /// The positional arguments of the construction.
    pub fn args(&self) -> &[Value] {
        match &self.construct {
            Construct::Call(a) | Construct::New(a) | Construct::NewEx(a, _) => a,
        }
    }
}

/// Why a value cannot be a dict key or a set element (Python's `TypeError: unhashable type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhashable {
    /// Python's name of the offending type: `list`, `dict` or `set`.
    pub type_name: &'static str,
}

impl std::fmt::Display for Unhashable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unhashable type: '{}'", self.type_name)
    }
}

impl Value {
    /// Python's name of the value's type (`'int'`, `'str'`, `'dict'`, ...; for an object, its
    /// class's name).
    pub fn type_name(&self) -> &str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global(_) => "type",
            Value::Object(o) => o.class.name.rsplit('.').next().unwrap_or(&o.class.name),
        }
    }

    /// Whether the value can be a dict key or a set element; if not, which type is in the way.
    pub fn check_hashable(&self) -> Result<(), Unhashable> {
        match self {
            Value::List(_) => Err(Unhashable { type_name: "list" }),
            Value::Dict(_) => Err(Unhashable { type_name: "dict" }),
            Value::Set(_) => Err(Unhashable { type_name: "set" }),
            Value::Tuple(items) => items.iter().try_for_each(Value::check_hashable),
            _ => Ok(()),
        }
    }

    /// An `int` from a big integer, as [`Value::Int`] when it fits.
    pub fn from_bigint(b: BigInt) -> Value {
        match b.to_i64() {
            Some(i) => Value::Int(i),
            None => Value::BigInt(b),
        }
    }

    /// The value as a Python number, if it is one (`bool`, `int` or `float`).
    fn number(&self) -> Option<Num<'_>> {
        Some(match self {
            Value::Bool(b) => Num::Int(i64::from(*b)),
            Value::Int(i) => Num::Int(*i),
            Value::BigInt(b) => match b.to_i64() {
                Some(i) => Num::Int(i),
                None => Num::Big(b),
            },
            Value::Float(f) => Num::Float(*f),
            _ => return None,
        })
    }
}

/// A number, for comparisons across `bool`, `int` and `float`.
enum Num<'a> {
    Int(i64),
    Big(&'a BigInt),
    Float(f64),
}

/// 2^63: floats in [-2^63, 2^63) convert to `i64` exactly when integral.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// Exact comparison of an integer with a float, as Python does (no rounding of the integer).
fn int_eq_float(i: &BigInt, f: f64) -> bool {
    if !f.is_finite() || f.fract() != 0.0 {
        return false;
    }
    BigInt::from_f64(f).is_some_and(|g| &g == i)
}

fn num_eq(a: &Num<'_>, b: &Num<'_>) -> bool {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x == y,
        (Num::Big(x), Num::Big(y)) => x == y,
        (Num::Int(_), Num::Big(_)) | (Num::Big(_), Num::Int(_)) => false,
        (Num::Float(x), Num::Float(y)) => x == y,
        (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => {
            // Integral floats below 2^63 in magnitude convert to i64 exactly.
            f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(f) && *f as i64 == *i
        }
        (Num::Big(b), Num::Float(f)) | (Num::Float(f), Num::Big(b)) => int_eq_float(b, *f),
    }
}

impl PartialEq for Value {
    /// Python's `==` (see [`Value`]).
    fn eq(&self, other: &Value) -> bool {
        if let (Some(a), Some(b)) = (self.number(), other.number()) {
            return num_eq(&a, &b);
        }
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Tuple(a), Value::Tuple(b)) | (Value::List(a), Value::List(b)) => a == b,
            (Value::Dict(a), Value::Dict(b)) => a == b,
            (Value::Set(a) | Value::FrozenSet(a), Value::Set(b) | Value::FrozenSet(b)) => a == b,
            (Value::Global(a), Value::Global(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

/// Feeds the Python-consistent hash of `v` to `h`: equal values (by [`Value`]'s `==`) hash
/// alike. The caller has checked that `v` is hashable.
fn hash_value<H: Hasher>(v: &Value, h: &mut H) {
    if let Some(n) = v.number() {
        match n {
            Num::Int(i) => {
                0u8.hash(h);
                i.hash(h);
            }
            Num::Big(b) => {
                1u8.hash(h);
                b.hash(h);
            }
            Num::Float(f) => {
                if f.is_finite() && f.fract() == 0.0 {
                    // An integral float hashes as the integer it equals.
                    match BigInt::from_f64(f) {
                        Some(b) => match b.to_i64() {
                            Some(i) => {
                                0u8.hash(h);
                                i.hash(h);
                            }
                            None => {
                                1u8.hash(h);
                                b.hash(h);
                            }
                        },
                        None => 2u8.hash(h),
                    }
                } else if f.is_nan() {
                    3u8.hash(h);
                } else {
                    2u8.hash(h);
                    f.to_bits().hash(h);
                }
            }
        }
        return;
    }
    match v {
        Value::None => 4u8.hash(h),
        Value::Str(s) => {
            5u8.hash(h);
            s.hash(h);
        }
        Value::Bytes(b) => {
            6u8.hash(h);
            b.hash(h);
        }
        Value::Tuple(items) => {
            7u8.hash(h);
            items.len().hash(h);
            for i in items {
                hash_value(i, h);
            }
        }
        Value::FrozenSet(s) | Value::Set(s) => {
            // Order does not matter: combine the elements' own hashes commutatively.
            8u8.hash(h);
            let mut sum = 0u64;
            for e in s.iter() {
                let mut eh = DefaultHasher::new();
                hash_value(e, &mut eh);
                sum = sum.wrapping_add(eh.finish());
            }
            sum.hash(h);
        }
        Value::Global(g) => {
            9u8.hash(h);
            g.hash(h);
        }
        Value::Object(o) => {
            10u8.hash(h);
            o.class.hash(h);
        }
        // Unhashable values never become keys; numbers were handled above.
        _ => 11u8.hash(h),
    }
}

/// A hashable value, as stored in a [`Dict`] or a [`Set`].
#[derive(Clone)]
pub(crate) struct Key(pub(crate) Value);

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.0 == other.0
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_value(&self.0, h);
    }
}

/// A borrowed value used to look a key up.
struct Probe<'a>(&'a Value);

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_value(self.0, h);
    }
}

impl Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self.0 == key.0
    }
}

/// A Python `dict`: insertion-ordered, with Python's key equality (`1`, `1.0` and `True` are one
/// key; the first one inserted stays, as in Python).
#[derive(Clone, Default)]
pub struct Dict {
    map: IndexMap<Key, Value>,
}

impl Dict {
    /// An empty dict.
    pub fn new() -> Dict {
        Dict::default()
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `d[key] = value`: returns the value replaced, if any (the key first inserted stays).
    /// An unhashable key is an error, as Python's `TypeError`.
    pub fn insert(&mut self, key: Value, value: Value) -> Result<Option<Value>, Unhashable> {
        key.check_hashable()?;
        if let Some(slot) = self.map.get_mut(&Probe(&key)) {
            return Ok(Some(std::mem::replace(slot, value)));
        }
        self.map.insert(Key(key), value);
        Ok(None)
    }

    /// `d.get(key)`. An unhashable key finds nothing.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        self.map.get(&Probe(key))
    }

    /// A mutable reference to `d[key]`.
    pub fn get_mut(&mut self, key: &Value) -> Option<&mut Value> {
        self.map.get_mut(&Probe(key))
    }

    /// The stored key equal to `key` (which may differ in type: `1` for `1.0`).
    pub fn get_key(&self, key: &Value) -> Option<&Value> {
        self.map.get_full(&Probe(key)).map(|(_, k, _)| &k.0)
    }

    /// `key in d`.
    pub fn contains_key(&self, key: &Value) -> bool {
        self.map.contains_key(&Probe(key))
    }

    /// `d.pop(key)`: removes the item, keeping the order of the others.
    pub fn remove(&mut self, key: &Value) -> Option<Value> {
        self.map.shift_remove(&Probe(key))
    }

    /// `d.popitem()`: removes and returns the last item.
    pub fn pop_last(&mut self) -> Option<(Value, Value)> {
        self.map.pop().map(|(k, v)| (k.0, v))
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// The items in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Value, &Value)> + '_ {
        self.map.iter().map(|(k, v)| (&k.0, v))
    }

    /// The items in insertion order, values mutable.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&Value, &mut Value)> + '_ {
        self.map.iter_mut().map(|(k, v)| (&k.0, v))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.map.keys().map(|k| &k.0)
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.map.values()
    }
}

impl PartialEq for Dict {
    /// Python's dict equality: the same keys with equal values, in any order.
    fn eq(&self, other: &Dict) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(k, v)| other.get(k).is_some_and(|w| w == v))
    }
}

impl IntoIterator for Dict {
    type Item = (Value, Value);
    type IntoIter = DictIntoIter;

    fn into_iter(self) -> DictIntoIter {
        DictIntoIter(self.map.into_iter())
    }
}

/// The items of a [`Dict`], by value, in insertion order.
pub struct DictIntoIter(indexmap::map::IntoIter<Key, Value>);

impl Iterator for DictIntoIter {
    type Item = (Value, Value);

    fn next(&mut self) -> Option<(Value, Value)> {
        self.0.next().map(|(k, v)| (k.0, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for DictIntoIter {}

impl std::fmt::Debug for DictIntoIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DictIntoIter({} left)", self.0.len())
    }
}

/// A Python `set` or `frozenset`: insertion-ordered, with Python's element equality.
#[derive(Clone, Default)]
pub struct Set {
    map: IndexMap<Key, ()>,
}

impl Set {
    /// An empty set.
    pub fn new() -> Set {
        Set::default()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `s.add(v)`: whether `v` was new. An unhashable element is an error.
    pub fn insert(&mut self, v: Value) -> Result<bool, Unhashable> {
        v.check_hashable()?;
        if self.map.contains_key(&Probe(&v)) {
            return Ok(false);
        }
        self.map.insert(Key(v), ());
        Ok(true)
    }

    /// `v in s`.
    pub fn contains(&self, v: &Value) -> bool {
        self.map.contains_key(&Probe(v))
    }

    /// `s.discard(v)`: whether it was there.
    pub fn remove(&mut self, v: &Value) -> bool {
        self.map.shift_remove(&Probe(v)).is_some()
    }

    /// The elements in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.map.keys().map(|k| &k.0)
    }
}

impl PartialEq for Set {
    fn eq(&self, other: &Set) -> bool {
        self.len() == other.len() && self.iter().all(|v| other.contains(v))
    }
}

impl IntoIterator for Set {
    type Item = Value;
    type IntoIter = SetIntoIter;

    fn into_iter(self) -> SetIntoIter {
        SetIntoIter(self.map.into_iter())
    }
}

/// The elements of a [`Set`], by value, in insertion order.
pub struct SetIntoIter(indexmap::map::IntoIter<Key, ()>);

impl Iterator for SetIntoIter {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        self.0.next().map(|(k, ())| k.0)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for SetIntoIter {}

impl std::fmt::Debug for SetIntoIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SetIntoIter({} left)", self.0.len())
    }
}

macro_rules! from_int {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
from_int! { i8 i16 i32 i64 u8 u16 u32 }

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(BigInt::from(v)),
        }
    }
}

impl From<i128> for Value {
    fn from(v: i128) -> Value {
        Value::from_bigint(BigInt::from(v))
    }
}

impl From<u128> for Value {
    fn from(v: u128) -> Value {
        Value::from_bigint(BigInt::from(v))
    }
}

impl From<BigInt> for Value {
    fn from(v: BigInt) -> Value {
        Value::from_bigint(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<Vec<Value>> for Value {
    /// A `list`.
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}

impl From<Dict> for Value {
    fn from(v: Dict) -> Value {
        Value::Dict(v)
    }
}

impl From<Global> for Value {
    fn from(v: Global) -> Value {
        Value::Global(v)
    }
}

impl From<Object> for Value {
    fn from(v: Object) -> Value {
        Value::Object(Box::new(v))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None`, or the value.
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::None, Into::into)
    }
}

impl Value {
    /// The value as an `i64`, if it is an `int` (or `bool`) that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self.number()? {
            Num::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as a `&str`, if it is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the value is truthy, as Python's `bool(v)` (objects are true).
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::BigInt(b) => !b.is_zero(),
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::Tuple(v) | Value::List(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Set(s) | Value::FrozenSet(s) => !s.is_empty(),
            Value::Global(_) | Value::Object(_) => true,
        }
    }
}
