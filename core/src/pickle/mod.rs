//! `mproc::pickle`: Python's pickle format and Python's values, so that Rust and CPython share
//! data (the manager's wire speaks it).
//!
//! - [`Value`]: a Python value — `None`, `bool`, `int` of any size, `float`, `str`, `bytes`,
//!   `tuple`, `list`, `dict` (insertion-ordered, with Python's key equality: `1 == 1.0 ==
//!   True`), `set`, `frozenset`, and classes and objects by module-qualified name (an exception
//!   such as `builtins.KeyError('missing')`, a `multiprocessing.managers.Token`) — printed as
//!   Python's `repr`.
//! - [`loads`] / [`loads_with`]: read protocols 0 to 5 (memo included) without importing or
//!   calling anything, within bounds ([`ReadOptions`]: nesting, output size, a
//!   [`GlobalPolicy`] of accepted globals). Hostile input is a [`PickleError`], never a panic,
//!   an abort or unbounded memory: no length is trusted before its bytes are there.
//! - [`dumps`]: write protocol 4 byte for byte as CPython 3.11–3.13 does.
//! - [`to_value`] / [`from_value`]: any serde type to a `Value` and back; [`to_vec`] /
//!   [`from_slice`] straight to and from pickle bytes.
//!
//! ```
//! use mproc::pickle::{self, Dict, Value};
//!
//! let mut d = Dict::new();
//! d.insert(Value::Int(1), "1".into()).unwrap();
//! d.insert("2".into(), Value::Int(2)).unwrap();
//! d.insert(Value::Float(0.25), Value::None).unwrap();
//! d.insert(Value::Bool(true), "one".into()).unwrap(); // True == 1: the key 1 stays
//! assert_eq!(Value::Dict(d.clone()).to_string(), "{1: 'one', '2': 2, 0.25: None}");
//! let bytes = pickle::dumps(&Value::Dict(d)).unwrap();
//! let back = pickle::loads(&bytes).unwrap();
//! assert_eq!(back.to_string(), "{1: 'one', '2': 2, 0.25: None}");
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Task { id: u32, args: Vec<f64> }
//! let task = Task { id: 7, args: vec![0.5, 1e16] };
//! assert_eq!(pickle::to_value(&task).unwrap().to_string(), "{'id': 7, 'args': [0.5, 1e+16]}");
//! let bytes = pickle::to_vec(&task).unwrap(); // what `pickle.dumps({...}, 4)` writes
//! assert_eq!(pickle::from_slice::<Task>(&bytes, &Default::default()).unwrap(), task);
//! ```
//!
//! Why not `serde-pickle`: it keeps dicts in a `BTreeMap` (sorted, not in insertion order), has
//! no value for a global or an object (it can neither write `GLOBAL`/`REDUCE` nor give back what
//! it read of them), and writes protocols 2 and 3 only. See ARCHITECTURE.md.

mod bridge;
pub(crate) mod error;
mod read;
mod repr;
mod value;
mod write;

pub use bridge::{from_value, to_value};
pub use error::{PickleError, PickleErrorKind};
pub use read::{GlobalPolicy, ReadOptions, DEFAULT_MAX_DEPTH};
pub use repr::float_repr;
pub use value::{
    Construct, Dict, DictIntoIter, Global, Object, Set, SetIntoIter, Unhashable, Value,
};
pub use write::{dumps, dumps_tuple};

pub use num_bigint::BigInt;

use serde::de::DeserializeOwned;
use serde::Serialize;

impl From<PickleError> for crate::error::Error {
    fn from(e: PickleError) -> crate::error::Error {
        crate::error::Error::Pickle(e)
    }
}

/// Reads a pickle with the default [`ReadOptions`] (every global accepted, as data: nothing is
/// imported or called).
pub fn loads(input: &[u8]) -> Result<Value, PickleError> {
    read::loads_with(input, &ReadOptions::default())
}

/// Reads a pickle with the given options.
pub fn loads_with(input: &[u8], opts: &ReadOptions) -> Result<Value, PickleError> {
    read::loads_with(input, opts)
}

/// Pickles any serialisable value (protocol 4; see [`to_value`] for the mapping).
pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> crate::error::Result<Vec<u8>> {
    Ok(dumps(&to_value(v)?)?)
}

/// Reads a pickle into any deserialisable type (see [`from_value`]).
pub fn from_slice<T: DeserializeOwned>(
    input: &[u8],
    opts: &ReadOptions,
) -> crate::error::Result<T> {
    from_value(loads_with(input, opts)?)
}
