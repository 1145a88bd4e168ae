//! Python's `repr` of a [`Value`]: `{0.25: None, 1: '1', '2': 2}`.
//!
//! Floats print as Python's `repr(float)` (the shortest string that reads back, with an exponent
//! below 1e-4 and from 1e16 on: `1e+16`, `1e-05`, `inf`, `nan`, `-0.0`); strings with Python's
//! choice of quotes and its escapes (printable characters per Unicode's general categories, as
//! `str.isprintable`; code points assigned after the Unicode version of a given CPython print
//! raw here where that CPython escapes them); bytes as `b'...'`. Objects, which have no generic
//! Python repr, print as `Name(args)` (builtins, such as exceptions, exactly as Python does:
//! `KeyError('missing')`), with a dict state as keyword arguments (`Namespace(a=1)`) and any
//! other state as `.__setstate__(state)`.

use super::value::{Construct, Dict, Object, Set, Value};
use std::fmt::{self, Write};
use unicode_general_category::{get_general_category, GeneralCategory as C};

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::BigInt(b) => write!(f, "{b}"),
            Value::Float(x) => f.write_str(&float_repr(*x)),
            Value::Str(s) => str_repr(s, f),
            Value::Bytes(b) => bytes_repr(b, f),
            Value::Tuple(items) => {
                f.write_char('(')?;
                seq(items.iter(), f)?;
                if items.len() == 1 {
                    f.write_char(',')?;
                }
                f.write_char(')')
            }
            Value::List(items) => {
                f.write_char('[')?;
                seq(items.iter(), f)?;
                f.write_char(']')
            }
            Value::Dict(d) => write!(f, "{d}"),
            Value::Set(s) if s.is_empty() => f.write_str("set()"),
            Value::Set(s) => write!(f, "{s}"),
            Value::FrozenSet(s) if s.is_empty() => f.write_str("frozenset()"),
            Value::FrozenSet(s) => write!(f, "frozenset({s})"),
            Value::Global(g) => write!(f, "<class '{}.{}'>", g.module, g.name),
            Value::Object(o) => object_repr(o, f),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {v}")?;
        }
        f.write_char('}')
    }
}

impl fmt::Debug for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Set {
    /// `{1, 2}` (the caller prints the empty set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        seq(self.iter(), f)?;
        f.write_char('}')
    }
}

impl fmt::Debug for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("set()");
        }
        fmt::Display::fmt(self, f)
    }
}

fn seq<'a>(items: impl Iterator<Item = &'a Value>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, v) in items.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v}")?;
    }
    Ok(())
}

fn object_repr(o: &Object, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let name = o.class.name.rsplit('.').next().unwrap_or(&o.class.name);
    if o.class.module == "builtins" {
        f.write_str(name)?;
    } else {
        write!(f, "{}.{}", o.class.module, o.class.name)?;
    }
    f.write_char('(')?;
    seq(o.args().iter(), f)?;
    let mut first = o.args().is_empty();
    let mut comma = |f: &mut fmt::Formatter<'_>| {
        if !std::mem::replace(&mut first, false) {
            f.write_str(", ")
        } else {
            Ok(())
        }
    };
    if let Construct::NewEx(_, kwargs) = &o.construct {
        for (k, v) in kwargs.iter() {
            comma(f)?;
            write!(f, "{}={v}", k.as_str().unwrap_or("?"))?;
        }
    }
    let state_as_kwargs = match &o.state {
        Some(Value::Dict(d)) if d.keys().all(|k| k.as_str().is_some_and(is_identifier)) => {
            for (k, v) in d.iter() {
                comma(f)?;
                write!(f, "{}={v}", k.as_str().unwrap_or_default())?;
            }
            true
        }
        _ => false,
    };
    f.write_char(')')?;
    for v in &o.list_items {
        write!(f, ".append({v})")?;
    }
    for (k, v) in &o.dict_items {
        write!(f, "[{k}] = {v}")?;
    }
    if let (Some(state), false) = (&o.state, state_as_kwargs) {
        write!(f, ".__setstate__({state})")?;
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && cs.all(|c| c == '_' || c.is_alphanumeric())
}

/// Python's `repr(float)`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest digits that read back, as Python's repr uses: d.ddde±x.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("a decimal exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // The value is 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if (decpt as usize) >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', decpt as usize - digits.len()));
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at(decpt as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()).expect("a String");
    }
    out
}

/// Whether Python's `str.isprintable()` holds for `c`.
fn printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        C::Control
            | C::Format
            | C::Surrogate
            | C::PrivateUse
            | C::Unassigned
            | C::LineSeparator
            | C::ParagraphSeparator
            | C::SpaceSeparator
    )
}

/// Python's `repr(str)`.
fn str_repr(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    f.write_char(quote)?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\t' => f.write_str("\\t")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            c if c == quote => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c if (c as u32) < 0x7f && c >= ' ' => f.write_char(c)?,
            c if (c as u32) < 0x100 && !printable(c) => write!(f, "\\x{:02x}", c as u32)?,
            c if printable(c) => f.write_char(c)?,
            c if (c as u32) < 0x10000 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "\\U{:08x}", c as u32)?,
        }
    }
    f.write_char(quote)
}

/// Python's `repr(bytes)`.
fn bytes_repr(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    f.write_char('b')?;
    f.write_char(quote as char)?;
    for &c in b {
        match c {
            b'\\' => f.write_str("\\\\")?,
            b'\t' => f.write_str("\\t")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            c if c == quote => {
                f.write_char('\\')?;
                f.write_char(c as char)?;
            }
            0x20..=0x7e => f.write_char(c as char)?,
            c => write!(f, "\\x{c:02x}")?,
        }
    }
    f.write_char(quote as char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python() {
        for (x, want) in [
            (0.25, "0.25"),
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12345.678, "12345.678"),
        ] {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn strings_print_as_python() {
        for (s, want) in [
            ("abc", "'abc'"),
            ("it's", "\"it's\""),
            ("say \"hi\"", "'say \"hi\"'"),
            ("both ' \"", "'both \\' \"'"),
            ("tab\tnl\ncr\r\\", "'tab\\tnl\\ncr\\r\\\\'"),
            ("\u{0}\u{7f}\u{85}\u{a0}é", "'\\x00\\x7f\\x85\\xa0é'"),
            ("\u{200b}日本\u{e000}", "'\\u200b日本\\ue000'"),
            ("\u{10ffff}😀", "'\\U0010ffff😀'"),
        ] {
            assert_eq!(Value::Str(s.into()).to_string(), want);
        }
        assert_eq!(
            Value::Bytes(b"a'\x00\xff\"".to_vec()).to_string(),
            "b'a\\'\\x00\\xff\"'"
        );
        assert_eq!(Value::Bytes(b"it's".to_vec()).to_string(), "b\"it's\"");
    }
}
