//! Shared `Value`s and `Array`s of every typecode mproc supports (`mproc::TypeCode`), typed
//! (`Value<i8>`, `Array<f32>`, ...), with the JSON form cases write and traces record: numbers,
//! and for `'c'` one-character strings (the byte as a Latin-1 character).
//!
//! Python's typecodes map to Rust types as ctypes maps them on 64-bit Linux (`'l'` is `i64`,
//! `'L'` is `u64`); a value out of a type's range wraps as ctypes wraps it.

use mproc::{CChar, Context, TypeCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a shared value could not be made or changed: a value of the wrong type for the
/// typecode, or the library's error.
#[derive(Debug)]
pub enum CtError {
    /// The JSON value does not fit the typecode.
    Value(String),
    /// mproc failed.
    Lib(mproc::Error),
}

impl From<mproc::Error> for CtError {
    fn from(e: mproc::Error) -> CtError {
        CtError::Lib(e)
    }
}

/// An element type of shared values and arrays, with its JSON form.
pub trait Elem: mproc::Scalar {
    /// The element from its JSON form.
    fn from_json(v: &Value) -> Result<Self, String>;
    /// The JSON form.
    fn to_json(self) -> Value;
    /// The element plus one (integers wrap, as ctypes' do).
    fn plus_one(self) -> Self;
}

fn not_a(what: &str, v: &Value) -> String {
    format!("expected {what}, found {v}")
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn from_json(v: &Value) -> Result<$t, String> {
                match (v.as_i64(), v.as_u64()) {
                    (Some(i), _) => Ok(i as $t),
                    (None, Some(u)) => Ok(u as $t),
                    _ => Err(not_a("an integer", v)),
                }
            }
            fn to_json(self) -> Value {
                Value::from(self)
            }
            fn plus_one(self) -> $t {
                self.wrapping_add(1)
            }
        }
    )*};
}

int_elem!(i8, u8, i16, u16, i32, u32, i64, u64);

macro_rules! float_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn from_json(v: &Value) -> Result<$t, String> {
                v.as_f64().map(|x| x as $t).ok_or_else(|| not_a("a number", v))
            }
            fn to_json(self) -> Value {
                Value::from(self as f64)
            }
            fn plus_one(self) -> $t {
                self + 1.0
            }
        }
    )*};
}

float_elem!(f32, f64);

impl Elem for CChar {
    fn from_json(v: &Value) -> Result<CChar, String> {
        let byte = match v {
            Value::String(s) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => u8::try_from(u32::from(c)).ok(),
                    _ => None,
                }
            }
            other => other.as_u64().and_then(|n| u8::try_from(n).ok()),
        };
        byte.map(CChar)
            .ok_or_else(|| not_a("one Latin-1 character (or a byte value)", v))
    }
    fn to_json(self) -> Value {
        Value::String(char::from(self.0).to_string())
    }
    fn plus_one(self) -> CChar {
        CChar(self.0.wrapping_add(1))
    }
}

fn elems<T: Elem>(values: &[Value]) -> Result<Vec<T>, CtError> {
    values
        .iter()
        .map(|v| T::from_json(v).map_err(CtError::Value))
        .collect()
}

macro_rules! typecodes {
    ($($Code:ident: $t:ty),* $(,)?) => {
        /// A shared `Value` (with its lock) of some typecode.
        #[derive(Clone, Debug, Serialize, Deserialize)]
        #[allow(missing_docs)]
        pub enum SharedValue {
            $($Code(mproc::Value<$t>),)*
        }

        /// A shared `Array` (with its lock) of some typecode.
        #[derive(Clone, Debug, Serialize, Deserialize)]
        #[allow(missing_docs)]
        pub enum SharedArray {
            $($Code(mproc::Array<$t>),)*
        }

        impl SharedValue {
            /// `ctx.Value(code, init)`.
            pub fn new(ctx: &Context, code: TypeCode, init: &Value) -> Result<SharedValue, CtError> {
                Ok(match code {
                    $(TypeCode::$Code => SharedValue::$Code(
                        ctx.value(<$t>::from_json(init).map_err(CtError::Value)?)?,
                    ),)*
                })
            }

            /// The value.
            pub fn read(&self) -> Value {
                match self {
                    $(SharedValue::$Code(v) => v.get().to_json(),)*
                }
            }

            /// Sets the value.
            pub fn write(&self, value: &Value) -> Result<(), CtError> {
                match self {
                    $(SharedValue::$Code(v) => {
                        v.set(<$t>::from_json(value).map_err(CtError::Value)?)
                    })*
                }
                Ok(())
            }

            /// Adds one under the value's lock.
            pub fn add_one(&self) -> mproc::Result<()> {
                match self {
                    $(SharedValue::$Code(v) => v.update(Elem::plus_one).map(drop),)*
                }
            }
        }

        impl SharedArray {
            /// `ctx.Array(code, init)`.
            pub fn new(ctx: &Context, code: TypeCode, init: &[Value]) -> Result<SharedArray, CtError> {
                Ok(match code {
                    $(TypeCode::$Code => SharedArray::$Code(ctx.array(elems::<$t>(init)?)?),)*
                })
            }

            /// The items.
            pub fn read(&self) -> Value {
                match self {
                    $(SharedArray::$Code(a) => {
                        Value::Array(a.to_vec().into_iter().map(Elem::to_json).collect())
                    })*
                }
            }

            /// Sets the first items to `values`.
            pub fn write(&self, values: &[Value]) -> Result<(), CtError> {
                match self {
                    $(SharedArray::$Code(a) => a.set_slice(0, &elems::<$t>(values)?)?,)*
                }
                Ok(())
            }

            /// Adds one to every item, holding the array's lock.
            pub fn add_one(&self) -> mproc::Result<()> {
                match self {
                    $(SharedArray::$Code(a) => {
                        let _g = a.get_lock().lock()?;
                        for i in 0..a.len() {
                            a.set(i, a.get(i)?.plus_one())?;
                        }
                        Ok(())
                    })*
                }
            }
        }
    };
}

typecodes! {
    I8: i8, U8: u8, I16: i16, U16: u16, I32: i32, U32: u32, Long: i64, ULong: u64,
    I64: i64, U64: u64, F32: f32, F64: f64, Char: CChar,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_forms_of_elements() {
        assert_eq!(i8::from_json(&json!(200)).unwrap(), -56);
        assert_eq!(u64::from_json(&json!(u64::MAX)).unwrap(), u64::MAX);
        assert_eq!(f32::from_json(&json!(0.25)).unwrap().to_json(), json!(0.25));
        assert_eq!(CChar::from_json(&json!("a")).unwrap(), CChar(b'a'));
        assert_eq!(CChar(b'a').plus_one().to_json(), json!("b"));
        assert!(CChar::from_json(&json!("ab")).is_err());
        assert!(i32::from_json(&json!(1.5)).is_err());
        assert_eq!(127i8.plus_one(), -128);
    }
}
