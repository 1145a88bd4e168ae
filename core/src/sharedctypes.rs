//! Shared values and arrays of plain numbers (Python's `multiprocessing.Value`/`Array` and
//! `RawValue`/`RawArray`), and named shared-memory blocks ([`SharedMemory`], Python's
//! `multiprocessing.shared_memory.SharedMemory`).
//!
//! Element types are the [`Scalar`]s, one per Python typecode ([`TypeCode`]). Every element is
//! read and written atomically (relaxed), so even a raw value used by several processes at once
//! never tears; the lock of [`Value`]/[`Array`] is for read-modify-write sequences
//! (`with v.get_lock(): v.value += 1`).
//!
//! ```no_run
//! # fn main() -> mproc::Result<()> {
//! let ctx = mproc::default_context();
//! let num = ctx.value::<f64>(0.0)?;
//! let arr = ctx.array::<i32>(0..10)?;
//! num.set(3.1415927);
//! {
//!     let _g = arr.get_lock().lock()?;
//!     for i in 0..arr.len() {
//!         arr.set(i, -arr.get(i)?)?;
//!     }
//! }
//! println!("{}", num.get());
//! println!("{:?}", arr.to_vec());
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::region::SharedRegion;
use crate::synchronize::RLock;
use crate::sys::{self, Mapping};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::str::FromStr;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;

/// A Python `array`/`ctypes` typecode, with the Rust type it maps to (Linux, 64-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TypeCode {
    /// `'b'`: `i8`.
    I8,
    /// `'B'`: `u8`.
    U8,
    /// `'h'`: `i16`.
    I16,
    /// `'H'`: `u16`.
    U16,
    /// `'i'`: `i32`.
    I32,
    /// `'I'`: `u32`.
    U32,
    /// `'l'`: C `long`, `i64`.
    Long,
    /// `'L'`: C `unsigned long`, `u64`.
    ULong,
    /// `'q'`: `i64`.
    I64,
    /// `'Q'`: `u64`.
    U64,
    /// `'f'`: `f32`.
    F32,
    /// `'d'`: `f64`.
    F64,
    /// `'c'`: one byte, [`CChar`].
    Char,
}

impl TypeCode {
    /// Every typecode.
    pub const ALL: [TypeCode; 13] = [
        TypeCode::I8,
        TypeCode::U8,
        TypeCode::I16,
        TypeCode::U16,
        TypeCode::I32,
        TypeCode::U32,
        TypeCode::Long,
        TypeCode::ULong,
        TypeCode::I64,
        TypeCode::U64,
        TypeCode::F32,
        TypeCode::F64,
        TypeCode::Char,
    ];

    /// The typecode character.
    pub fn as_char(self) -> char {
        match self {
            TypeCode::I8 => 'b',
            TypeCode::U8 => 'B',
            TypeCode::I16 => 'h',
            TypeCode::U16 => 'H',
            TypeCode::I32 => 'i',
            TypeCode::U32 => 'I',
            TypeCode::Long => 'l',
            TypeCode::ULong => 'L',
            TypeCode::I64 => 'q',
            TypeCode::U64 => 'Q',
            TypeCode::F32 => 'f',
            TypeCode::F64 => 'd',
            TypeCode::Char => 'c',
        }
    }

    /// The size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            TypeCode::I8 | TypeCode::U8 | TypeCode::Char => 1,
            TypeCode::I16 | TypeCode::U16 => 2,
            TypeCode::I32 | TypeCode::U32 | TypeCode::F32 => 4,
            _ => 8,
        }
    }

    /// Whether elements are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, TypeCode::F32 | TypeCode::F64)
    }

    /// Whether elements are signed integers.
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            TypeCode::I8 | TypeCode::I16 | TypeCode::I32 | TypeCode::Long | TypeCode::I64
        )
    }

    /// The bits of `n` stored as this type (converted as Rust's `as` does).
    pub fn to_bits(self, n: Number) -> u64 {
        let (i, u, f) = match n {
            Number::Int(i) => (i, i as u64, i as f64),
            Number::UInt(u) => (u as i64, u, u as f64),
            Number::Float(f) => (f as i64, f as u64, f),
        };
        match self {
            TypeCode::I8 => i as i8 as u8 as u64,
            TypeCode::U8 | TypeCode::Char => u as u8 as u64,
            TypeCode::I16 => i as i16 as u16 as u64,
            TypeCode::U16 => u as u16 as u64,
            TypeCode::I32 => i as i32 as u32 as u64,
            TypeCode::U32 => u as u32 as u64,
            TypeCode::Long | TypeCode::I64 => i as u64,
            TypeCode::ULong | TypeCode::U64 => u,
            TypeCode::F32 => (f as f32).to_bits() as u64,
            TypeCode::F64 => f.to_bits(),
        }
    }

    /// The number whose bits, stored as this type, are `bits`.
    pub fn from_bits(self, bits: u64) -> Number {
        match self {
            TypeCode::I8 => Number::Int(bits as u8 as i8 as i64),
            TypeCode::I16 => Number::Int(bits as u16 as i16 as i64),
            TypeCode::I32 => Number::Int(bits as u32 as i32 as i64),
            TypeCode::Long | TypeCode::I64 => Number::Int(bits as i64),
            TypeCode::U8 | TypeCode::Char => Number::UInt(bits as u8 as u64),
            TypeCode::U16 => Number::UInt(bits as u16 as u64),
            TypeCode::U32 => Number::UInt(bits as u32 as u64),
            TypeCode::ULong | TypeCode::U64 => Number::UInt(bits),
            TypeCode::F32 => Number::Float(f32::from_bits(bits as u32) as f64),
            TypeCode::F64 => Number::Float(f64::from_bits(bits)),
        }
    }
}

impl fmt::Display for TypeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl FromStr for TypeCode {
    type Err = Error;
    fn from_str(s: &str) -> Result<TypeCode> {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => TypeCode::ALL
                .into_iter()
                .find(|t| t.as_char() == c)
                .ok_or_else(|| bad_typecode(s)),
            _ => Err(bad_typecode(s)),
        }
    }
}

fn bad_typecode(s: &str) -> Error {
    Error::InvalidArgument(format!(
        "bad typecode {s:?} (must be b, B, h, H, i, I, l, L, q, Q, f, d or c)"
    ))
}

/// A number of any typecode, for code that picks the typecode at run time (the harness).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Number {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::UInt(u) => write!(f, "{u}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Python's `'c'` element: one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CChar(pub u8);

mod sealed {
    pub trait Sealed {}
}

/// A plain-old-data element type of shared values and arrays: one per [`TypeCode`].
pub trait Scalar: Copy + Send + Sync + fmt::Debug + PartialEq + 'static + sealed::Sealed {
    /// Its typecode (`i64` is `'q'`, `u64` is `'Q'`).
    const TYPECODE: TypeCode;
    /// Its bits, zero-extended.
    fn to_bits(self) -> u64;
    /// The value of the low bits of `bits`.
    fn from_bits(bits: u64) -> Self;
}

macro_rules! scalar {
    ($($t:ty => $code:ident, $u:ty;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Scalar for $t {
            const TYPECODE: TypeCode = TypeCode::$code;
            fn to_bits(self) -> u64 { self as $u as u64 }
            fn from_bits(bits: u64) -> Self { bits as $u as $t }
        }
    )*};
}
scalar! {
    i8 => I8, u8; u8 => U8, u8; i16 => I16, u16; u16 => U16, u16;
    i32 => I32, u32; u32 => U32, u32; i64 => I64, u64; u64 => U64, u64;
}
impl sealed::Sealed for f32 {}
impl Scalar for f32 {
    const TYPECODE: TypeCode = TypeCode::F32;
    fn to_bits(self) -> u64 {
        f32::to_bits(self) as u64
    }
    fn from_bits(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
}
impl sealed::Sealed for f64 {}
impl Scalar for f64 {
    const TYPECODE: TypeCode = TypeCode::F64;
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
    fn from_bits(bits: u64) -> Self {
        f64::from_bits(bits)
    }
}
impl sealed::Sealed for CChar {}
impl Scalar for CChar {
    const TYPECODE: TypeCode = TypeCode::Char;
    fn to_bits(self) -> u64 {
        self.0 as u64
    }
    fn from_bits(bits: u64) -> Self {
        CChar(bits as u8)
    }
}

// ---------------------------------------------------------------------------------------------
// Untyped storage: `len` elements of one typecode in a shared region.

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Storage {
    region: SharedRegion,
    code: TypeCode,
    len: usize,
}

impl Storage {
    fn new(method: StartMethod, code: TypeCode, bits: &[u64]) -> Result<Storage> {
        let region = SharedRegion::new("array", bits.len() * code.size(), method, |_| Ok(()))?;
        let s = Storage {
            region,
            code,
            len: bits.len(),
        };
        for (i, &b) in bits.iter().enumerate() {
            s.store(i, b);
        }
        Ok(s)
    }

    #[inline]
    fn map(&self) -> &Mapping {
        self.region.map()
    }

    fn check(&self, index: usize) -> Result<()> {
        if index < self.len {
            Ok(())
        } else {
            Err(Error::IndexOutOfRange {
                index,
                len: self.len,
            })
        }
    }

    /// The bits of element `i` (in bounds).
    #[inline]
    fn load(&self, i: usize) -> u64 {
        let size = self.code.size();
        let off = i * size;
        match size {
            1 => self.map().u8_at(off).load(Relaxed) as u64,
            2 => self.map().u16_at(off).load(Relaxed) as u64,
            4 => self.map().u32_at(off).load(Relaxed) as u64,
            _ => self.map().u64_at(off).load(Relaxed),
        }
    }

    #[inline]
    fn store(&self, i: usize, bits: u64) {
        let size = self.code.size();
        let off = i * size;
        match size {
            1 => self.map().u8_at(off).store(bits as u8, Relaxed),
            2 => self.map().u16_at(off).store(bits as u16, Relaxed),
            4 => self.map().u32_at(off).store(bits as u32, Relaxed),
            _ => self.map().u64_at(off).store(bits, Relaxed),
        }
    }

    fn check_range(&self, start: usize, n: usize) -> Result<()> {
        match start.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::IndexOutOfRange {
                index: start.saturating_add(n).saturating_sub(1).max(start),
                len: self.len,
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw values and arrays

/// A shared array of `T` without a lock (Python's `RawArray`).
pub struct RawArray<T> {
    storage: Storage,
    _t: PhantomData<T>,
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            storage: self.storage.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("typecode", &self.storage.code)
            .field("len", &self.storage.len)
            .finish()
    }
}

impl<T> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.storage.serialize(s)
    }
}

impl<'de, T: Scalar> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let storage = Storage::deserialize(d)?;
        if storage.code.size() != T::TYPECODE.size() {
            return Err(serde::de::Error::custom(format!(
                "shared array of typecode {} received as {}",
                storage.code,
                T::TYPECODE
            )));
        }
        Ok(RawArray {
            storage,
            _t: PhantomData,
        })
    }
}

impl<T: Scalar> RawArray<T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.storage.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.storage.len == 0
    }

    /// The typecode.
    pub fn typecode(&self) -> TypeCode {
        T::TYPECODE
    }

    /// Element `index` ([`Error::IndexOutOfRange`] past the end).
    pub fn get(&self, index: usize) -> Result<T> {
        self.storage.check(index)?;
        Ok(T::from_bits(self.storage.load(index)))
    }

    /// Sets element `index` ([`Error::IndexOutOfRange`] past the end).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.storage.check(index)?;
        self.storage.store(index, value.to_bits());
        Ok(())
    }

    /// Every element (Python's `arr[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len())
            .map(|i| T::from_bits(self.storage.load(i)))
            .collect()
    }

    /// Elements `range` (Python's `arr[a:b]`); out of bounds is [`Error::IndexOutOfRange`].
    pub fn slice(&self, range: std::ops::Range<usize>) -> Result<Vec<T>> {
        let n = range.end.saturating_sub(range.start);
        self.storage.check_range(range.start, n)?;
        Ok(range.map(|i| T::from_bits(self.storage.load(i))).collect())
    }

    /// Writes `values` from `start` (Python's `arr[a:b] = values`); out of bounds is
    /// [`Error::IndexOutOfRange`] and writes nothing.
    pub fn set_slice(&self, start: usize, values: &[T]) -> Result<()> {
        self.storage.check_range(start, values.len())?;
        for (i, v) in values.iter().enumerate() {
            self.storage.store(start + i, v.to_bits());
        }
        Ok(())
    }

    /// The start method of the context that made it.
    pub fn start_method(&self) -> StartMethod {
        self.storage.region.method()
    }
}

/// A shared `T` without a lock (Python's `RawValue`).
pub struct RawValue<T>(RawArray<T>);

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue(self.0.clone())
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("typecode", &self.0.storage.code)
            .finish()
    }
}

impl<T> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Scalar> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawArray::deserialize(d).map(RawValue)
    }
}

impl<T: Scalar> RawValue<T> {
    /// The value (Python's `.value`).
    pub fn get(&self) -> T {
        T::from_bits(self.0.storage.load(0))
    }

    /// Sets the value.
    pub fn set(&self, value: T) {
        self.0.storage.store(0, value.to_bits())
    }

    /// The typecode.
    pub fn typecode(&self) -> TypeCode {
        T::TYPECODE
    }

    /// The start method of the context that made it.
    pub fn start_method(&self) -> StartMethod {
        self.0.start_method()
    }
}

// ---------------------------------------------------------------------------------------------
// Synchronised values and arrays

/// A shared `T` with a lock (Python's `Value(typecode, v)`). Every element access is atomic
/// (relaxed), so even a [`RawValue`] used by several processes at once never tears; the lock is
/// for read-modify-write sequences (`with v.get_lock(): v.value += 1`).
///
/// [`get`](Value::get) and [`set`](Value::set) each take the lock; for a read-modify-write use
/// [`with_lock`](Value::with_lock) (`v.with_lock(|x| *x += 1)`) or [`update`](Value::update), or
/// hold [`get_lock`](Value::get_lock) around it.
///
/// The lock is an [`RLock`], as Python's `get_lock()`: the same thread may take it again. Taking
/// it uncontended costs an atomic compare-and-swap and a few plain stores (about as much as a
/// plain lock); a process that dies holding it does not leave it locked.
#[derive(Serialize)]
#[serde(bound = "")]
pub struct Value<T> {
    raw: RawValue<T>,
    lock: RLock,
}

impl<'de, T: Scalar> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (raw, lock) = <(RawValue<T>, RLock)>::deserialize(d)?;
        Ok(Value { raw, lock })
    }
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("raw", &self.raw).finish()
    }
}

impl<T: Scalar> Value<T> {
    /// The value, read under the lock.
    pub fn get(&self) -> T {
        let _g = self.lock.lock();
        self.raw.get()
    }

    /// Sets the value under the lock.
    pub fn set(&self, value: T) {
        let _g = self.lock.lock();
        self.raw.set(value)
    }

    /// Runs `f` on the value under the lock and stores what `f` leaves there; returns what `f`
    /// returns. `v.with_lock(|x| *x += 1)` is Python's `with v.get_lock(): v.value += 1`. The
    /// lock is the value's [`RLock`], so this works inside a `get_lock()` the thread holds.
    #[inline]
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let _g = self.lock.lock()?;
        let mut v = self.raw.get();
        let r = f(&mut v);
        self.raw.set(v);
        Ok(r)
    }

    /// Replaces the value by `f(value)` under the lock; returns the new value.
    pub fn update(&self, f: impl FnOnce(T) -> T) -> Result<T> {
        let _g = self.lock.lock()?;
        let v = f(self.raw.get());
        self.raw.set(v);
        Ok(v)
    }

    /// The lock (an [`RLock`], as Python's).
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }

    /// The value without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }

    /// The typecode.
    pub fn typecode(&self) -> TypeCode {
        T::TYPECODE
    }
}

/// A shared array of `T` with a lock (Python's `Array(typecode, values)`); element accesses
/// take the lock each, hold [`get_lock`](Array::get_lock) around longer sequences.
#[derive(Serialize)]
#[serde(bound = "")]
pub struct Array<T> {
    raw: RawArray<T>,
    lock: RLock,
}

impl<'de, T: Scalar> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (raw, lock) = <(RawArray<T>, RLock)>::deserialize(d)?;
        Ok(Array { raw, lock })
    }
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("raw", &self.raw).finish()
    }
}

impl<T: Scalar> Array<T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Element `index`, under the lock.
    pub fn get(&self, index: usize) -> Result<T> {
        let _g = self.lock.lock()?;
        self.raw.get(index)
    }

    /// Sets element `index`, under the lock.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        let _g = self.lock.lock()?;
        self.raw.set(index, value)
    }

    /// Every element, read under the lock (Python's `arr[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        let _g = self.lock.lock();
        self.raw.to_vec()
    }

    /// Elements `range`, under the lock.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Result<Vec<T>> {
        let _g = self.lock.lock()?;
        self.raw.slice(range)
    }

    /// Writes `values` from `start`, under the lock.
    pub fn set_slice(&self, start: usize, values: &[T]) -> Result<()> {
        let _g = self.lock.lock()?;
        self.raw.set_slice(start, values)
    }

    /// The lock (an [`RLock`]).
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }

    /// The array without its lock.
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }

    /// The typecode.
    pub fn typecode(&self) -> TypeCode {
        T::TYPECODE
    }
}

/// A shared array whose typecode is chosen at run time (for the harness), with a lock; a value
/// is an array of one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DynArray {
    storage: Storage,
    lock: RLock,
}

impl DynArray {
    /// The typecode.
    pub fn typecode(&self) -> TypeCode {
        self.storage.code
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.storage.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.storage.len == 0
    }

    /// Element `index`, under the lock.
    pub fn get(&self, index: usize) -> Result<Number> {
        let _g = self.lock.lock()?;
        self.storage.check(index)?;
        Ok(self.storage.code.from_bits(self.storage.load(index)))
    }

    /// Sets element `index` (converted to the typecode as Rust's `as`), under the lock.
    pub fn set(&self, index: usize, value: Number) -> Result<()> {
        let _g = self.lock.lock()?;
        self.storage.check(index)?;
        self.storage.store(index, self.storage.code.to_bits(value));
        Ok(())
    }

    /// Every element.
    pub fn to_vec(&self) -> Vec<Number> {
        let _g = self.lock.lock();
        (0..self.storage.len)
            .map(|i| self.storage.code.from_bits(self.storage.load(i)))
            .collect()
    }

    /// The lock.
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }
}

impl Context {
    /// A shared `T` with a lock (Python's `ctx.Value(typecode, value)`).
    pub fn value<T: Scalar>(&self, value: T) -> Result<Value<T>> {
        Ok(Value {
            raw: self.raw_value(value)?,
            lock: self.rlock()?,
        })
    }

    /// A shared `T` without a lock (Python's `ctx.RawValue`).
    pub fn raw_value<T: Scalar>(&self, value: T) -> Result<RawValue<T>> {
        self.raw_array(std::iter::once(value)).map(RawValue)
    }

    /// A shared array with a lock, initialised from `values` (Python's `ctx.Array(typecode,
    /// values)`).
    pub fn array<T: Scalar>(&self, values: impl IntoIterator<Item = T>) -> Result<Array<T>> {
        Ok(Array {
            raw: self.raw_array(values)?,
            lock: self.rlock()?,
        })
    }

    /// A shared array without a lock (Python's `ctx.RawArray`).
    pub fn raw_array<T: Scalar>(&self, values: impl IntoIterator<Item = T>) -> Result<RawArray<T>> {
        let bits: Vec<u64> = values.into_iter().map(Scalar::to_bits).collect();
        Ok(RawArray {
            storage: Storage::new(self.start_method(), T::TYPECODE, &bits)?,
            _t: PhantomData,
        })
    }

    /// A shared value of `typecode` (a Python typecode string such as `"d"`), with a lock: a
    /// [`DynArray`] of one element.
    pub fn value_dyn(&self, typecode: &str, value: Number) -> Result<DynArray> {
        self.array_dyn(typecode, &[value])
    }

    /// A shared array of `typecode` (a Python typecode string such as `"d"`), with a lock.
    pub fn array_dyn(&self, typecode: &str, values: &[Number]) -> Result<DynArray> {
        let code: TypeCode = typecode.parse()?;
        let bits: Vec<u64> = values.iter().map(|&n| code.to_bits(n)).collect();
        Ok(DynArray {
            storage: Storage::new(self.start_method(), code, &bits)?,
            lock: self.rlock()?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// SharedMemory

/// A named block of shared memory (Python's `multiprocessing.shared_memory.SharedMemory`),
/// a POSIX shared-memory object (`/dev/shm/<name>` on Linux).
///
/// The creating process owns the name: it is removed by [`unlink`](SharedMemory::unlink) or,
/// at the latest, when the creator's handle is dropped, so nothing is left in `/dev/shm`; and if
/// the creator dies without either (killed, say), the resource tracker (a process of its own, as
/// Python's `resource_tracker`) removes it. Other processes [`attach`](SharedMemory::attach) by
/// name; a `SharedMemory` passed to a child as a start argument travels as its name and is
/// attached there (any start method), the parent keeping its own handle alive until the child has
/// attached.
pub struct SharedMemory {
    name: String,
    map: Mapping,
    /// The inode behind the name when this handle was made: what the tracker checks before it
    /// unlinks the name of a dead creator.
    ino: u64,
    /// The pid of the creator, in the creator's own handle only.
    owner: Option<u32>,
    unlinked: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.map.len())
            .finish()
    }
}

fn shm_path(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    }
}

fn check_name(name: &str) -> Result<()> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.len() > 250 || bare.contains(['/', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "bad shared memory name {name:?}"
        )));
    }
    Ok(())
}

impl SharedMemory {
    /// Creates a block of `size` bytes (zero-filled) named `name`, or a fresh unique name
    /// (`psm_…`) for `None`. An existing name is an [`Error::Io`] of kind `AlreadyExists`;
    /// `size` 0 is [`Error::InvalidArgument`].
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidArgument(
                "'size' must be a positive number different from zero".into(),
            ));
        }
        let name = match name {
            Some(n) => {
                check_name(n)?;
                n.strip_prefix('/').unwrap_or(n).to_string()
            }
            None => unique_name(),
        };
        let fd = sys::shm_open(&shm_path(&name), true)?;
        let made = sys::ftruncate(fd.as_fd(), size).and_then(|_| Mapping::map(fd.as_fd()));
        let made = made.and_then(|m| Ok((m, sys::inode_of(fd.as_fd())?)));
        let (map, ino) = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = sys::shm_unlink(&shm_path(&name));
                return Err(e.into());
            }
        };
        // Best effort: without a tracker the segment works, only a killed creator leaks it.
        let _ = crate::tracker::register(&name, ino);
        Ok(SharedMemory {
            name,
            map,
            ino,
            owner: Some(std::process::id()),
            unlinked: Default::default(),
        })
    }

    /// Attaches to the existing block `name`. A missing name is an [`Error::Io`] of kind
    /// `NotFound`.
    pub fn attach(name: &str) -> Result<SharedMemory> {
        check_name(name)?;
        let fd = sys::shm_open(&shm_path(name), false)?;
        let map = Mapping::map(fd.as_fd())?;
        let ino = sys::inode_of(fd.as_fd())?;
        Ok(SharedMemory {
            name: name.strip_prefix('/').unwrap_or(name).to_string(),
            map,
            ino,
            owner: None,
            unlinked: Default::default(),
        })
    }

    /// The name (without the leading `/`), to attach from elsewhere.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// The bytes, as atomics (other processes may change them at any time).
    pub fn buf(&self) -> &[AtomicU8] {
        self.map.u8_slice(0, self.map.len())
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.range(offset, out.len())?;
        let src = self.map.u8_slice(offset, out.len());
        for (o, b) in out.iter_mut().zip(src) {
            *o = b.load(Relaxed);
        }
        Ok(())
    }

    /// Copies `data` into the block at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.range(offset, data.len())?;
        for (d, b) in data.iter().zip(self.map.u8_slice(offset, data.len())) {
            b.store(*d, Relaxed);
        }
        Ok(())
    }

    fn range(&self, offset: usize, n: usize) -> Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(Error::IndexOutOfRange {
                index: offset.saturating_add(n),
                len: self.size(),
            }),
        }
    }

    /// Removes the name, so that the block is freed once every process has dropped it (Python's
    /// `unlink()`). Any process may call it; a second call is an [`Error::Io`] of kind
    /// `NotFound`.
    pub fn unlink(&self) -> Result<()> {
        self.unlinked.store(true, Relaxed);
        sys::shm_unlink(&shm_path(&self.name))?;
        crate::tracker::unregister(&self.name, self.ino);
        Ok(())
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.owner == Some(std::process::id())
            && !self.unlinked.load(Relaxed)
            && sys::shm_unlink(&shm_path(&self.name)).is_ok()
        {
            crate::tracker::unregister(&self.name, self.ino);
        }
    }
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "psm_{}_{}_{nanos:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.name.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        SharedMemory::attach(&name).map_err(serde::de::Error::custom)
    }
}
