//! A serde `Deserializer` adapter that bounds the work and the nesting of the deserializer it
//! wraps.
//!
//! bincode reads a sequence's length from the wire and then asks the element type for that many
//! elements. A slice reader (and `Options::with_limit`) bounds every element that takes bytes,
//! but an element that takes none (`()`, a unit struct, `PhantomData`, an empty tuple) is
//! produced without reading anything: a 9-byte message declaring a `Vec<()>` of 2^40 elements
//! keeps the decoder busy for hours, and `with_limit` never notices. Nor does bincode bound the
//! nesting of recursive types (`enum Tree { Leaf, Node(Box<Tree>) }`), whose decoding recurses
//! once per level: a message of a few megabytes overflows the stack.
//!
//! [`Guard`] sits between the type's `Deserialize` impl and bincode. It charges one unit per
//! element of every length-prefixed sequence or map against a budget (the input's length plus
//! [`ZERO_SIZED_ALLOWANCE`]: every element that takes at least one byte is paid for by its
//! bytes), and counts nesting against [`MAX_DEPTH`]. Both failures are ordinary deserialisation
//! errors. The adapter forwards everything else unchanged (including `is_human_readable`), so
//! the format is exactly bincode's.

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use std::cell::Cell;
use std::fmt;

/// How many elements that take no bytes on the wire one message may hold, beyond one per byte.
pub(crate) const ZERO_SIZED_ALLOWANCE: u64 = 1 << 16;

/// How deeply values may nest (each struct, enum, option, sequence or map is one level).
pub(crate) const MAX_DEPTH: u32 = 512;

/// The budget of one decode.
pub(crate) struct Limits {
    elements_left: Cell<u64>,
    depth: Cell<u32>,
}

impl Limits {
    /// The budget for decoding `input_len` bytes.
    pub(crate) fn for_input(input_len: usize) -> Limits {
        Limits {
            elements_left: Cell::new((input_len as u64).saturating_add(ZERO_SIZED_ALLOWANCE)),
            depth: Cell::new(0),
        }
    }

    fn charge<E: de::Error>(&self) -> Result<(), E> {
        let left = self.elements_left.get();
        if left == 0 {
            return Err(E::custom(format_args!(
                "the message declares more elements than it can hold (at most one per byte, \
                 plus {ZERO_SIZED_ALLOWANCE} that take no bytes)"
            )));
        }
        self.elements_left.set(left - 1);
        Ok(())
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let d = self.depth.get();
        if d >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "the message nests deeper than {MAX_DEPTH} levels"
            )));
        }
        self.depth.set(d + 1);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get() - 1);
    }
}

/// A deserializer that charges [`Limits`] while it delegates to `D`.
pub(crate) struct Guard<'l, D> {
    de: D,
    lim: &'l Limits,
}

impl<'l, D> Guard<'l, D> {
    pub(crate) fn new(de: D, lim: &'l Limits) -> Self {
        Guard { de, lim }
    }
}

/// A visitor wrapped so that the accessors it is handed are guarded too. `counted`: the value
/// being visited is a length-prefixed sequence or map, whose elements are charged.
struct Wrap<'l, V> {
    v: V,
    lim: &'l Limits,
    counted: bool,
}

/// Leaves: the wrapped deserializer hands their visitors a value (bincode calls only the
/// matching `visit_*` of a primitive), never an accessor, so there is nothing below them to
/// bound: they go straight through, which keeps the guard off the hot path of small values.
macro_rules! forward_leaf {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.de.$method(visitor)
        }
    )*};
}

macro_rules! forward_plain {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let de = self.de;
            nested(self.lim, visitor, false, |w| de.$method(w))
        }
    )*};
}

macro_rules! forward_counted {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let de = self.de;
            nested(self.lim, visitor, true, |w| de.$method(w))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = D::Error;

    forward_leaf! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }
    forward_plain! { deserialize_option deserialize_ignored_any }
    forward_counted! { deserialize_any deserialize_seq deserialize_map }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let de = self.de;
        nested(self.lim, visitor, false, |w| {
            de.deserialize_unit_struct(name, w)
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let de = self.de;
        nested(self.lim, visitor, false, |w| {
            de.deserialize_newtype_struct(name, w)
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let de = self.de;
        nested(self.lim, visitor, false, |w| de.deserialize_tuple(len, w))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let de = self.de;
        nested(self.lim, visitor, false, |w| {
            de.deserialize_tuple_struct(name, len, w)
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let de = self.de;
        nested(self.lim, visitor, false, |w| {
            de.deserialize_struct(name, fields, w)
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let de = self.de;
        nested(self.lim, visitor, false, |w| {
            de.deserialize_enum(name, variants, w)
        })
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Runs `f` one nesting level down, with `visitor` wrapped.
fn nested<'l, V, R, E: de::Error>(
    lim: &'l Limits,
    visitor: V,
    counted: bool,
    f: impl FnOnce(Wrap<'l, V>) -> Result<R, E>,
) -> Result<R, E> {
    lim.enter()?;
    let r = f(Wrap {
        v: visitor,
        lim,
        counted,
    });
    lim.leave();
    r
}

macro_rules! visit_forward {
    ($($method:ident($t:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $t) -> Result<Self::Value, E> {
            self.v.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.v.expecting(f)
    }

    visit_forward! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.v.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.v.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.v.visit_some(Guard::new(d, self.lim))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.v.visit_newtype_struct(Guard::new(d, self.lim))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.v.visit_seq(Access {
            inner: seq,
            lim: self.lim,
            counted: self.counted,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.v.visit_map(Access {
            inner: map,
            lim: self.lim,
            counted: self.counted,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.v.visit_enum(Access {
            inner: data,
            lim: self.lim,
            counted: false,
        })
    }
}

/// A seed whose deserializer is guarded.
struct Seed<'l, S> {
    seed: S,
    lim: &'l Limits,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.seed.deserialize(Guard::new(d, self.lim))
    }
}

/// A guarded sequence, map, enum or variant accessor.
struct Access<'l, A> {
    inner: A,
    lim: &'l Limits,
    counted: bool,
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        if self.counted {
            self.lim.charge()?;
        }
        self.inner.next_element_seed(Seed {
            seed,
            lim: self.lim,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if self.counted {
            self.lim.charge()?;
        }
        self.inner.next_key_seed(Seed {
            seed,
            lim: self.lim,
        })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        self.inner.next_value_seed(Seed {
            seed,
            lim: self.lim,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'l, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'l, A> {
    type Error = A::Error;
    type Variant = Access<'l, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), Self::Error> {
        let lim = self.lim;
        let (value, variant) = self.inner.variant_seed(Seed { seed, lim })?;
        Ok((
            value,
            Access {
                inner: variant,
                lim,
                counted: false,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        self.inner.newtype_variant_seed(Seed {
            seed,
            lim: self.lim,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let inner = self.inner;
        nested(self.lim, visitor, false, |w| inner.tuple_variant(len, w))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let inner = self.inner;
        nested(self.lim, visitor, false, |w| {
            inner.struct_variant(fields, w)
        })
    }
}
