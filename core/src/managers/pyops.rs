//! Python's semantics for the values a manager holds, where `Value` alone does not give them:
//! ordering (`<`, for `list.sort`), indices and slices, and the arguments of a call (positional
//! or keyword, with Python's `TypeError`s).

use super::wire::PyErr;
use crate::pickle::{BigInt, Dict, Value};
use num_traits::FromPrimitive;
use std::cmp::Ordering;
use std::time::Duration;

/// A number, for ordering across `bool`, `int` and `float`.
enum Num {
    Int(BigInt),
    Float(f64),
}

fn number(v: &Value) -> Option<Num> {
    Some(match v {
        Value::Bool(b) => Num::Int(BigInt::from(u8::from(*b))),
        Value::Int(i) => Num::Int(BigInt::from(*i)),
        Value::BigInt(b) => Num::Int(b.clone()),
        Value::Float(f) => Num::Float(*f),
        _ => return None,
    })
}

/// Orders an integer against a float exactly (`None` for NaN), as Python does.
fn cmp_int_float(i: &BigInt, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f.is_infinite() {
        return Some(if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    let floor = f.floor();
    let fl = BigInt::from_f64(floor)?;
    Some(match i.cmp(&fl) {
        Ordering::Equal if floor == f => Ordering::Equal,
        // i == floor(f) < f
        Ordering::Equal => Ordering::Less,
        o => o,
    })
}

fn num_cmp(a: &Num, b: &Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(y),
        (Num::Int(i), Num::Float(f)) => cmp_int_float(i, *f),
        (Num::Float(f), Num::Int(i)) => cmp_int_float(i, *f).map(Ordering::reverse),
    }
}

/// Python's `a < b`, or its `TypeError` for values that do not order.
pub(crate) fn py_lt(a: &Value, b: &Value) -> Result<bool, PyErr> {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return Ok(num_cmp(&x, &y) == Some(Ordering::Less));
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x < y),
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            // Lexicographic: the first items that differ decide; else the shorter is less.
            for (p, q) in x.iter().zip(y) {
                if p != q {
                    return py_lt(p, q);
                }
            }
            Ok(x.len() < y.len())
        }
        (Value::Set(x) | Value::FrozenSet(x), Value::Set(y) | Value::FrozenSet(y)) => {
            Ok(x.len() < y.len() && x.iter().all(|e| y.contains(e)))
        }
        _ => Err(PyErr::Type(format!(
            "'<' not supported between instances of '{}' and '{}'",
            a.type_name(),
            b.type_name()
        ))),
    }
}

/// Sorts `items` as Python's `list.sort(reverse=...)` does: stable, by `<` only. A pair that does
/// not order is the `TypeError` Python raises (the list is then left in some order).
pub(crate) fn sort(items: &mut [Value], reverse: bool) -> Result<(), PyErr> {
    let mut err = None;
    // A stable sort by `<`: b before a exactly when b < a (ties keep their order). With
    // `reverse`, Python reverses, sorts and reverses again, which keeps ties in order too.
    if reverse {
        items.reverse();
    }
    items.sort_by(|a, b| {
        if err.is_some() {
            return Ordering::Equal;
        }
        match py_lt(b, a) {
            Ok(true) => Ordering::Greater,
            Ok(false) => match py_lt(a, b) {
                Ok(true) => Ordering::Less,
                Ok(false) => Ordering::Equal,
                Err(e) => {
                    err = Some(e);
                    Ordering::Equal
                }
            },
            Err(e) => {
                err = Some(e);
                Ordering::Equal
            }
        }
    });
    if reverse {
        items.reverse();
    }
    err.map_or(Ok(()), Err)
}

/// An index into a sequence of `len` items (negative counts from the end), or `None` when it is
/// outside.
pub(crate) fn index(i: &Value, len: usize) -> Result<Option<usize>, PyErr> {
    let i = as_int(i, "indices")?;
    let len = len as i64;
    let j = if i < 0 { i + len } else { i };
    Ok((0..len).contains(&j).then_some(j as usize))
}

/// An integer argument (bool counts, as in Python), or Python's `TypeError`.
pub(crate) fn as_int(v: &Value, what: &str) -> Result<i64, PyErr> {
    match v {
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Int(i) => Ok(*i),
        Value::BigInt(_) => Err(PyErr::Index(
            "cannot fit 'int' into an index-sized integer".into(),
        )),
        other => Err(PyErr::Type(format!(
            "{what} must be integers or slices, not {}",
            other.type_name()
        ))),
    }
}

/// A `slice(start, stop, step)` resolved against a length, as Python's `slice.indices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slice {
    pub start: i64,
    pub stop: i64,
    pub step: i64,
}

impl Slice {
    /// The positions the slice selects, in order.
    pub(crate) fn positions(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = self.start;
        if self.step > 0 {
            while i < self.stop {
                out.push(i as usize);
                i += self.step;
            }
        } else {
            while i > self.stop {
                out.push(i as usize);
                i += self.step;
            }
        }
        out
    }
}

/// The slice a value is (`builtins.slice(start, stop, step)`), resolved against `len`; `None`
/// when the value is not a slice.
pub(crate) fn slice_of(v: &Value, len: usize) -> Result<Option<Slice>, PyErr> {
    let Value::Object(o) = v else { return Ok(None) };
    if !o.class.is("builtins", "slice") {
        return Ok(None);
    }
    let part = |i: usize| -> Result<Option<i64>, PyErr> {
        match o.args().get(i) {
            None | Some(Value::None) => Ok(None),
            Some(v) => as_int(v, "slice indices").map(Some),
        }
    };
    let (start, stop, step) = match o.args().len() {
        1 => (None, part(0)?, None),
        2 | 3 => (part(0)?, part(1)?, part(2)?),
        _ => return Err(PyErr::Type("slice expected at most 3 arguments".into())),
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(PyErr::Value("slice step cannot be zero".into()));
    }
    let len = len as i64;
    let clamp = |x: Option<i64>, default: i64| -> i64 {
        match x {
            None => default,
            Some(x) => {
                let x = if x < 0 { x + len } else { x };
                if step > 0 {
                    x.clamp(0, len)
                } else {
                    x.clamp(-1, len - 1)
                }
            }
        }
    };
    let (start, stop) = if step > 0 {
        (clamp(start, 0), clamp(stop, len))
    } else {
        (clamp(start, len - 1), clamp(stop, -1))
    };
    Ok(Some(Slice { start, stop, step }))
}

/// The arguments of one call: positional, then keyword, taken by position and name as a Python
/// function with that signature would, with Python's `TypeError`s for too many or unknown ones.
pub(crate) struct Args {
    method: &'static str,
    args: std::vec::IntoIter<Value>,
    given: usize,
    kwds: Dict,
}

impl Args {
    pub(crate) fn new(method: &'static str, args: Vec<Value>, kwds: Dict) -> Args {
        let given = args.len();
        Args {
            method,
            args: args.into_iter(),
            given,
            kwds,
        }
    }

    /// The next parameter, `name`: positional if one is left, else by keyword.
    pub(crate) fn opt(&mut self, name: &str) -> Result<Option<Value>, PyErr> {
        if let Some(v) = self.args.next() {
            if !self.kwds.is_empty() && self.kwds.contains_key(&Value::from(name)) {
                return Err(PyErr::Type(format!(
                    "{}() got multiple values for argument '{name}'",
                    self.method
                )));
            }
            return Ok(Some(v));
        }
        if self.kwds.is_empty() {
            return Ok(None);
        }
        Ok(self.kwds.remove(&Value::from(name)))
    }

    /// The next parameter, required.
    pub(crate) fn req(&mut self, name: &str) -> Result<Value, PyErr> {
        self.opt(name)?.ok_or_else(|| {
            PyErr::Type(format!(
                "{}() missing required argument: '{name}'",
                self.method
            ))
        })
    }

    /// The rest of the positional arguments (`*args`).
    pub(crate) fn rest(&mut self) -> Vec<Value> {
        self.args.by_ref().collect()
    }

    /// The keyword arguments not taken (`**kwds`).
    pub(crate) fn rest_kwds(&mut self) -> Dict {
        std::mem::take(&mut self.kwds)
    }

    /// Checks that nothing is left over.
    pub(crate) fn done(mut self) -> Result<(), PyErr> {
        if self.args.next().is_some() {
            return Err(PyErr::Type(format!(
                "{}() takes fewer arguments ({} given)",
                self.method, self.given
            )));
        }
        if let Some(k) = self.kwds.keys().next() {
            return Err(PyErr::Type(format!(
                "{}() got an unexpected keyword argument {k}",
                self.method
            )));
        }
        Ok(())
    }
}

/// A timeout argument: `None` waits for ever; a number of seconds must not be negative (Python's
/// `ValueError`).
pub(crate) fn timeout(v: Option<Value>) -> Result<Option<Duration>, PyErr> {
    match v {
        None | Some(Value::None) => Ok(None),
        Some(v) => {
            let secs = seconds(&v)?;
            if secs < 0.0 {
                return Err(PyErr::Value(
                    "'timeout' must be a non-negative number".into(),
                ));
            }
            Ok(Duration::try_from_secs_f64(secs).ok())
        }
    }
}

/// A number of seconds, or Python's `TypeError`.
pub(crate) fn seconds(v: &Value) -> Result<f64, PyErr> {
    match v {
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) if f.is_nan() => {
            Err(PyErr::Value("Invalid value NaN (not a number)".into()))
        }
        Value::Float(f) => Ok(*f),
        other => Err(PyErr::Type(format!(
            "'{}' object cannot be interpreted as a number of seconds",
            other.type_name()
        ))),
    }
}

/// A dict key must be hashable: Python's `TypeError` otherwise.
pub(crate) fn hashable(k: &Value) -> Result<(), PyErr> {
    k.check_hashable().map_err(|e| PyErr::Type(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(a: Value, b: Value) -> bool {
        py_lt(&a, &b).unwrap()
    }

    #[test]
    fn ordering_is_pythons() {
        assert!(lt(Value::Int(1), Value::Float(1.5)));
        assert!(!lt(Value::Float(1.0), Value::Int(1)));
        assert!(lt(Value::Bool(false), Value::Int(1)));
        assert!(lt(Value::from("a"), Value::from("b")));
        assert!(lt(
            Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
            Value::Tuple(vec![Value::Int(1), Value::Int(3)])
        ));
        assert!(lt(Value::List(vec![]), Value::List(vec![Value::None])));
        let big = Value::from_bigint(BigInt::from(1u128 << 80));
        assert!(lt(Value::Float(1e20), big.clone()));
        assert!(lt(big, Value::Float(f64::INFINITY)));
        assert!(!lt(Value::Float(f64::NAN), Value::Int(1)));
        assert!(py_lt(&Value::from("a"), &Value::Int(1)).is_err());
    }

    #[test]
    fn sort_is_stable_and_reverses_as_python() {
        let mut v: Vec<Value> = [3, 1, 2].iter().map(|&i| Value::Int(i)).collect();
        sort(&mut v, false).unwrap();
        assert_eq!(Value::List(v.clone()).to_string(), "[1, 2, 3]");
        // 1 == 1.0 == True: ties keep their order, both ways.
        let mut v = vec![
            Value::Int(1),
            Value::Float(1.0),
            Value::Bool(true),
            Value::Int(0),
        ];
        sort(&mut v, false).unwrap();
        assert_eq!(Value::List(v.clone()).to_string(), "[0, 1, 1.0, True]");
        sort(&mut v, true).unwrap();
        assert_eq!(Value::List(v).to_string(), "[1, 1.0, True, 0]");
        let mut bad = vec![Value::Int(1), Value::from("x")];
        assert!(sort(&mut bad, false).is_err());
    }

    #[test]
    fn slices_resolve_as_python() {
        let s = |a: Option<i64>, b: Option<i64>, c: Option<i64>| {
            let v = |x: Option<i64>| x.map_or(Value::None, Value::Int);
            Value::Object(Box::new(crate::pickle::Object::call(
                crate::pickle::Global::new("builtins", "slice"),
                vec![v(a), v(b), v(c)],
            )))
        };
        let pos = |v: Value| slice_of(&v, 5).unwrap().unwrap().positions();
        assert_eq!(pos(s(None, None, None)), [0, 1, 2, 3, 4]);
        assert_eq!(pos(s(Some(1), Some(-1), None)), [1, 2, 3]);
        assert_eq!(pos(s(None, None, Some(-1))), [4, 3, 2, 1, 0]);
        assert_eq!(pos(s(Some(-2), None, Some(-2))), [3, 1]);
        assert_eq!(pos(s(Some(10), Some(20), None)), Vec::<usize>::new());
        assert!(slice_of(&s(None, None, Some(0)), 5).is_err());
    }
}
