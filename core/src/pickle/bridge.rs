//! The serde bridge: any `T: Serialize` to a [`Value`] ([`to_value`]) and back
//! ([`from_value`]), and `Serialize`/`Deserialize` for `Value` itself.
//!
//! The mapping is serde's data model onto Python's: integers to `int` (of any size), floats to
//! `float`, strings and chars to `str`, byte buffers to `bytes`, `None`/`()`/unit structs to
//! `None`, `Some(x)` to `x`, sequences to `list`, tuples and tuple structs to `tuple`, maps and
//! structs to `dict`, and enums as serde_json tags them: a unit variant as its name (`'Red'`),
//! any other as a one-item dict (`{'Rgb': (1, 2, 3)}`). Reading back accepts a `tuple` or a
//! `list` (or a set) for any sequence and an `int` for a float.
//!
//! `Value` serialises into human-readable formats structurally (and into [`to_value`] exactly,
//! sets, globals and objects included); into binary formats such as bincode (mproc's own
//! `Connection::send`, process arguments) it travels as its pickle.

use super::value::{Construct, Dict, Global, Object, Set, Value};
use crate::error::{Error, Result};
use num_bigint::BigInt;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};
use std::cell::RefCell;
use std::fmt;

/// Converts any serialisable value to a Python value. Fails (with [`Error::Serialize`] naming
/// the Rust type) for a map key that Python could not hash (a list or a dict).
pub fn to_value<T: Serialize + ?Sized>(v: &T) -> Result<Value> {
    v.serialize(ValueSerializer).map_err(|e| {
        Error::Serialize(format!(
            "{} as a Python value: {}",
            std::any::type_name::<T>(),
            e.0
        ))
    })
}

/// Reads a Rust value out of a Python value. A mismatch is [`Error::Deserialize`] naming the
/// Rust type expected and what was found (`expected u32, found str 'abc'`).
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T> {
    // What to name in an error, decided before the value is consumed: a container's repr (the
    // error names only the part that did not fit), a scalar's type (the error shows the scalar
    // itself). Formatting it only on failure would need a copy of the value on success.
    let shown = match &v {
        Value::Tuple(_)
        | Value::List(_)
        | Value::Dict(_)
        | Value::Set(_)
        | Value::FrozenSet(_)
        | Value::Object(_) => Shown::Repr(short_repr(&v)),
        scalar => Shown::Type(scalar_type(scalar)),
    };
    T::deserialize(ValueDeserializer(v)).map_err(|e| {
        let shown = match shown {
            Shown::Repr(r) => format!("the Python value {r}"),
            Shown::Type(t) => format!("a Python {t}"),
        };
        Error::Deserialize(format!(
            "{} from {shown}: {}",
            std::any::type_name::<T>(),
            e.0
        ))
    })
}

enum Shown {
    Repr(String),
    Type(&'static str),
}

fn scalar_type(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        _ => "class",
    }
}

fn short_repr(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 120 {
        s
    } else {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}...")
    }
}

/// The bridge's error: a message.
#[derive(Debug)]
pub struct BridgeError(String);

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BridgeError {}

impl ser::Error for BridgeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BridgeError(msg.to_string())
    }
}

impl de::Error for BridgeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BridgeError(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        BridgeError(format!("expected {exp}, found {}", describe(unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        BridgeError(format!("expected {exp}, found {}", describe(unexp)))
    }
}

/// What was found, in Python's terms.
fn describe(u: de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match u {
        U::Bool(b) => format!("bool {}", if b { "True" } else { "False" }),
        U::Signed(i) => format!("int {i}"),
        U::Unsigned(i) => format!("int {i}"),
        U::Float(f) => format!("float {}", super::repr::float_repr(f)),
        U::Char(c) => format!("str {}", Value::Str(c.to_string())),
        U::Str(s) => format!("str {}", Value::Str(s.to_owned())),
        U::Bytes(b) => format!("bytes {}", Value::Bytes(b.to_vec())),
        U::Unit => "None".into(),
        U::Option => "None".into(),
        U::Seq => "a sequence".into(),
        U::Map => "a dict".into(),
        U::Other(o) => o.to_owned(),
        other => other.to_string(),
    }
}

// Markers: newtype struct names by which `Value`'s own `Serialize` tells `ValueSerializer` what
// serde's data model has no word for.
const SET: &str = "$mproc::pickle::Set";
const FROZENSET: &str = "$mproc::pickle::FrozenSet";
const GLOBAL: &str = "$mproc::pickle::Global";
const OBJECT: &str = "$mproc::pickle::Object";
const BIGINT: &str = "$mproc::pickle::BigInt";
const VALUE: &str = "$mproc::pickle::Value";

thread_local! {
    /// A value handed from `ValueDeserializer` to `Value`'s own `Deserialize` as a whole.
    static HANDOFF: RefCell<Option<Value>> = const { RefCell::new(None) };
}

// ----- Serialize to Value -------------------------------------------------------------------

/// A serde serializer whose output is a [`Value`].
struct ValueSerializer;

type SResult = std::result::Result<Value, BridgeError>;

fn key(v: Value) -> std::result::Result<Value, BridgeError> {
    v.check_hashable()
        .map_err(|e| BridgeError(format!("a map key Python cannot hash: {e}")))?;
    Ok(v)
}

fn dict_of(pairs: Vec<(Value, Value)>) -> SResult {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(key(k)?, v)
            .map_err(|e| BridgeError(format!("a map key Python cannot hash: {e}")))?;
    }
    Ok(Value::Dict(d))
}

fn tagged(variant: &str, v: Value) -> SResult {
    dict_of(vec![(Value::Str(variant.to_owned()), v)])
}

/// Serializer methods whose argument converts into a `Value` as it is.
macro_rules! into_value {
    ($($method:ident($t:ty))*) => {$(
        fn $method(self, v: $t) -> SResult {
            Ok(v.into())
        }
    )*};
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = BridgeError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = SeqSer;
    type SerializeMap = MapSer;
    type SerializeStruct = MapSer;
    type SerializeStructVariant = MapSer;

    into_value! {
        serialize_bool(bool) serialize_i8(i8) serialize_i16(i16) serialize_i32(i32)
        serialize_i64(i64) serialize_i128(i128) serialize_u8(u8) serialize_u16(u16)
        serialize_u32(u32) serialize_u64(u64) serialize_u128(u128) serialize_f64(f64)
    }
    fn serialize_f32(self, v: f32) -> SResult {
        Ok(Value::Float(v.into()))
    }
    fn serialize_char(self, v: char) -> SResult {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> SResult {
        Ok(Value::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> SResult {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> SResult {
        Ok(Value::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> SResult {
        v.serialize(self)
    }
    fn serialize_unit(self) -> SResult {
        Ok(Value::None)
    }
    fn serialize_unit_struct(self, _: &'static str) -> SResult {
        Ok(Value::None)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> SResult {
        Ok(Value::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, v: &T) -> SResult {
        let inner = v.serialize(ValueSerializer)?;
        Ok(match name {
            SET | FROZENSET => {
                let Value::List(items) = inner else {
                    return Err(BridgeError("a malformed set".into()));
                };
                let mut s = Set::new();
                for i in items {
                    s.insert(i).map_err(|e| BridgeError(e.to_string()))?;
                }
                if name == SET {
                    Value::Set(s)
                } else {
                    Value::FrozenSet(s)
                }
            }
            GLOBAL => match inner {
                Value::Tuple(mut t) if t.len() == 2 => {
                    let name = t.pop().and_then(|v| v.as_str().map(str::to_owned));
                    let module = t.pop().and_then(|v| v.as_str().map(str::to_owned));
                    match (module, name) {
                        (Some(m), Some(n)) => Value::Global(Global::new(m, n)),
                        _ => return Err(BridgeError("a malformed global".into())),
                    }
                }
                _ => return Err(BridgeError("a malformed global".into())),
            },
            OBJECT => object_from_parts(inner)?,
            BIGINT => match inner {
                Value::Str(s) => s
                    .parse::<BigInt>()
                    .map(Value::from_bigint)
                    .map_err(|_| BridgeError("a malformed int".into()))?,
                _ => return Err(BridgeError("a malformed int".into())),
            },
            _ => inner,
        })
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> SResult {
        tagged(variant, v.serialize(ValueSerializer)?)
    }
    fn serialize_seq(self, len: Option<usize>) -> std::result::Result<SeqSer, BridgeError> {
        Ok(SeqSer::new(len, SeqKind::List))
    }
    fn serialize_tuple(self, len: usize) -> std::result::Result<SeqSer, BridgeError> {
        Ok(SeqSer::new(Some(len), SeqKind::Tuple))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> std::result::Result<SeqSer, BridgeError> {
        Ok(SeqSer::new(Some(len), SeqKind::Tuple))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> std::result::Result<SeqSer, BridgeError> {
        Ok(SeqSer::new(Some(len), SeqKind::Variant(variant)))
    }
    fn serialize_map(self, _: Option<usize>) -> std::result::Result<MapSer, BridgeError> {
        Ok(MapSer::new(None))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<MapSer, BridgeError> {
        Ok(MapSer::new(None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> std::result::Result<MapSer, BridgeError> {
        Ok(MapSer::new(Some(variant)))
    }
}

enum SeqKind {
    List,
    Tuple,
    Variant(&'static str),
}

struct SeqSer {
    items: Vec<Value>,
    kind: SeqKind,
}

impl SeqSer {
    fn new(len: Option<usize>, kind: SeqKind) -> SeqSer {
        // The hint is the caller's own count of its items, capped all the same.
        SeqSer {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            kind,
        }
    }

    fn finish(self) -> SResult {
        match self.kind {
            SeqKind::List => Ok(Value::List(self.items)),
            SeqKind::Tuple => Ok(Value::Tuple(self.items)),
            SeqKind::Variant(v) => tagged(v, Value::Tuple(self.items)),
        }
    }
}

macro_rules! seq_impls {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for SeqSer {
            type Ok = Value;
            type Error = BridgeError;
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                v: &T,
            ) -> std::result::Result<(), BridgeError> {
                self.items.push(v.serialize(ValueSerializer)?);
                Ok(())
            }
            fn end(self) -> SResult {
                self.finish()
            }
        }
    )*};
}

seq_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

struct MapSer {
    pairs: Vec<(Value, Value)>,
    pending: Option<Value>,
    variant: Option<&'static str>,
}

impl MapSer {
    fn new(variant: Option<&'static str>) -> MapSer {
        MapSer {
            pairs: Vec::new(),
            pending: None,
            variant,
        }
    }

    fn finish(self) -> SResult {
        let d = dict_of(self.pairs)?;
        match self.variant {
            Some(v) => tagged(v, d),
            None => Ok(d),
        }
    }
}

impl ser::SerializeMap for MapSer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_key<T: Serialize + ?Sized>(
        &mut self,
        k: &T,
    ) -> std::result::Result<(), BridgeError> {
        self.pending = Some(key(k.serialize(ValueSerializer)?)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(
        &mut self,
        v: &T,
    ) -> std::result::Result<(), BridgeError> {
        let k = self
            .pending
            .take()
            .ok_or_else(|| BridgeError("a map value without its key".into()))?;
        self.pairs.push((k, v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> SResult {
        self.finish()
    }
}

impl ser::SerializeStruct for MapSer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> std::result::Result<(), BridgeError> {
        self.pairs
            .push((Value::Str(name.to_owned()), v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> SResult {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapSer {
    type Ok = Value;
    type Error = BridgeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> std::result::Result<(), BridgeError> {
        ser::SerializeStruct::serialize_field(self, name, v)
    }
    fn end(self) -> SResult {
        self.finish()
    }
}

// ----- Value's own Serialize / Deserialize ---------------------------------------------------

/// An object as a plain tuple, for the `OBJECT` marker:
/// `((module, name), kind, args, kwargs, state, list_items, dict_items)`.
fn object_parts(o: &Object) -> Value {
    let (kind, args, kwargs) = match &o.construct {
        Construct::Call(a) => ("call", a.clone(), Dict::new()),
        Construct::New(a) => ("new", a.clone(), Dict::new()),
        Construct::NewEx(a, k) => ("new_ex", a.clone(), k.clone()),
    };
    Value::Tuple(vec![
        Value::Global(o.class.clone()),
        Value::Str(kind.into()),
        Value::Tuple(args),
        Value::Dict(kwargs),
        o.state
            .clone()
            .map_or(Value::Tuple(vec![]), |s| Value::Tuple(vec![s])),
        Value::List(o.list_items.clone()),
        Value::List(
            o.dict_items
                .iter()
                .map(|(k, v)| Value::Tuple(vec![k.clone(), v.clone()]))
                .collect(),
        ),
    ])
}

fn object_from_parts(v: Value) -> SResult {
    let bad = || BridgeError("a malformed object".into());
    let Value::Tuple(parts) = v else {
        return Err(bad());
    };
    let [class, kind, args, kwargs, state, list_items, dict_items]: [Value; 7] =
        parts.try_into().map_err(|_| bad())?;
    let (Value::Global(class), Value::Str(kind), Value::Tuple(args), Value::Dict(kwargs)) =
        (class, kind, args, kwargs)
    else {
        return Err(bad());
    };
    let construct = match kind.as_str() {
        "call" => Construct::Call(args),
        "new" => Construct::New(args),
        "new_ex" => Construct::NewEx(args, kwargs),
        _ => return Err(bad()),
    };
    let state = match state {
        Value::Tuple(mut s) if s.len() <= 1 => s.pop(),
        _ => return Err(bad()),
    };
    let (Value::List(list_items), Value::List(dict_items)) = (list_items, dict_items) else {
        return Err(bad());
    };
    let dict_items = dict_items
        .into_iter()
        .map(|p| match p {
            Value::Tuple(mut kv) if kv.len() == 2 => {
                let v = kv.pop().expect("two");
                Ok((kv.pop().expect("two"), v))
            }
            _ => Err(bad()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Value::Object(Box::new(Object {
        class,
        construct,
        state,
        list_items,
        dict_items,
    })))
}

struct SetItems<'a>(&'a Set);

impl Serialize for SetItems<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl Serialize for Value {
    fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            // Binary formats carry the value as its pickle.
            let bytes = super::write::dumps(self).map_err(ser::Error::custom)?;
            return s.serialize_newtype_struct(VALUE, &BytesRef(&bytes));
        }
        match self {
            Value::None => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::BigInt(b) => s.serialize_newtype_struct(BIGINT, &b.to_string()),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::Tuple(items) => {
                use ser::SerializeTuple;
                let mut t = s.serialize_tuple(items.len())?;
                for i in items {
                    t.serialize_element(i)?;
                }
                t.end()
            }
            Value::List(items) => s.collect_seq(items),
            Value::Dict(d) => s.collect_map(d.iter()),
            Value::Set(v) => s.serialize_newtype_struct(SET, &SetItems(v)),
            Value::FrozenSet(v) => s.serialize_newtype_struct(FROZENSET, &SetItems(v)),
            Value::Global(g) => s.serialize_newtype_struct(GLOBAL, &(&g.module, &g.name)),
            Value::Object(o) => s.serialize_newtype_struct(OBJECT, &object_parts(o)),
        }
    }
}

/// A byte slice that serialises with `serialize_bytes`.
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Value, D::Error> {
        if !d.is_human_readable() {
            return d.deserialize_newtype_struct(VALUE, PickledVisitor);
        }
        d.deserialize_newtype_struct(VALUE, ValueVisitor)
    }
}

/// Reads a value carried as its pickle (binary formats).
struct PickledVisitor;

impl<'de> Visitor<'de> for PickledVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pickled Python value")
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        d.deserialize_bytes(self)
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> std::result::Result<Value, E> {
        super::read::loads_with(b, &super::read::ReadOptions::default()).map_err(E::custom)
    }

    fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> std::result::Result<Value, E> {
        self.visit_bytes(&b)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut b = Vec::new();
        while let Some(x) = seq.next_element::<u8>()? {
            b.push(x);
        }
        self.visit_bytes(&b)
    }
}

/// Builds a value from any self-describing format.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value, E> {
        // `ValueDeserializer` hands a whole value over this way (see `HANDOFF`).
        Ok(HANDOFF
            .with(|h| h.borrow_mut().take())
            .unwrap_or(Value::None))
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        de::Deserialize::deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut d = Dict::new();
        while let Some((k, v)) = map.next_entry::<Value, Value>()? {
            d.insert(k, v).map_err(de::Error::custom)?;
        }
        Ok(Value::Dict(d))
    }
}

// ----- Deserialize from Value ----------------------------------------------------------------

/// A serde deserializer over a [`Value`].
struct ValueDeserializer(Value);

type DResult<T> = std::result::Result<T, BridgeError>;

fn unexpected(v: &Value) -> BridgeError {
    BridgeError(format!("found {} {}", v.type_name(), short_repr(v)))
}

impl<'de> de::Deserializer<'de> for ValueDeserializer {
    type Error = BridgeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> DResult<V::Value> {
        match self.0 {
            Value::None => visitor.visit_none(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::BigInt(b) => {
                if let Ok(u) = u64::try_from(&b) {
                    visitor.visit_u64(u)
                } else if let Ok(i) = i64::try_from(&b) {
                    visitor.visit_i64(i)
                } else if let Ok(i) = i128::try_from(&b) {
                    visitor.visit_i128(i)
                } else if let Ok(u) = u128::try_from(&b) {
                    visitor.visit_u128(u)
                } else {
                    Err(BridgeError(format!(
                        "expected {}, found int {b} (too large for 128 bits)",
                        Expecting(&visitor)
                    )))
                }
            }
            Value::Float(f) => visitor.visit_f64(f),
            Value::Str(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Tuple(items) | Value::List(items) => visit_seq(items, visitor),
            Value::Set(s) | Value::FrozenSet(s) => visit_seq(s.into_iter().collect(), visitor),
            Value::Dict(d) => visitor.visit_map(MapDe {
                iter: d.into_iter(),
                value: None,
            }),
            v @ (Value::Global(_) | Value::Object(_)) => Err(BridgeError(format!(
                "expected {}, {}",
                Expecting(&visitor),
                unexpected(&v).0
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> DResult<V::Value> {
        match self.0 {
            Value::None => visitor.visit_none(),
            v => visitor.visit_some(ValueDeserializer(v)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> DResult<V::Value> {
        match self.0 {
            Value::None => visitor.visit_unit(),
            v => Err(BridgeError(format!("expected None, {}", unexpected(&v).0))),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> DResult<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> DResult<V::Value> {
        if name == VALUE {
            // `Value`'s own Deserialize: hand the value over whole (sets, globals and objects
            // included), through the thread-local that its visitor's `visit_unit` reads.
            HANDOFF.with(|h| *h.borrow_mut() = Some(self.0));
            let r = visitor.visit_unit();
            HANDOFF.with(|h| h.borrow_mut().take());
            return r;
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> DResult<V::Value> {
        match self.0 {
            Value::Str(s) => visitor.visit_enum(s.into_deserializer()),
            Value::Dict(d) if d.len() == 1 => {
                let (k, v) = d.into_iter().next().expect("one item");
                let Value::Str(variant) = k else {
                    return Err(BridgeError(format!(
                        "expected an enum variant name, {}",
                        unexpected(&k).0
                    )));
                };
                visitor.visit_enum(EnumDe { variant, value: v })
            }
            v => Err(BridgeError(format!(
                "expected {} (a variant name or a one-item dict), {}",
                Expecting(&visitor),
                unexpected(&v).0
            ))),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> DResult<V::Value> {
        match self.0 {
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            other => ValueDeserializer(other).deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> DResult<V::Value> {
        self.deserialize_bytes(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Shows what a visitor expects.
struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

fn visit_seq<'de, V: Visitor<'de>>(items: Vec<Value>, visitor: V) -> DResult<V::Value> {
    let len = items.len();
    let mut de = SeqDe {
        iter: items.into_iter(),
    };
    let v = visitor.visit_seq(&mut de)?;
    if de.iter.len() != 0 {
        return Err(BridgeError(format!(
            "a sequence of {len} items is longer than expected"
        )));
    }
    Ok(v)
}

struct SeqDe {
    iter: std::vec::IntoIter<Value>,
}

impl<'de> de::SeqAccess<'de> for SeqDe {
    type Error = BridgeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> DResult<Option<T::Value>> {
        self.iter
            .next()
            .map(|v| seed.deserialize(ValueDeserializer(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapDe<I> {
    iter: I,
    value: Option<Value>,
}

impl<'de, I: Iterator<Item = (Value, Value)>> de::MapAccess<'de> for MapDe<I> {
    type Error = BridgeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> DResult<Option<K::Value>> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(ValueDeserializer(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> DResult<T::Value> {
        let v = self
            .value
            .take()
            .ok_or_else(|| BridgeError("a map value without its key".into()))?;
        seed.deserialize(ValueDeserializer(v))
    }
}

struct EnumDe {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for EnumDe {
    type Error = BridgeError;
    type Variant = ValueDeserializer;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> DResult<(V::Value, ValueDeserializer)> {
        let v = seed.deserialize(self.variant.into_deserializer())?;
        Ok((v, ValueDeserializer(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for ValueDeserializer {
    type Error = BridgeError;

    fn unit_variant(self) -> DResult<()> {
        match self.0 {
            Value::None => Ok(()),
            v => Err(BridgeError(format!(
                "expected a unit variant, {}",
                unexpected(&v).0
            ))),
        }
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(self, seed: T) -> DResult<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> DResult<V::Value> {
        de::Deserializer::deserialize_any(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> DResult<V::Value> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}
