//! Values that may refer to variables: `$name`, `$name[2]`, `$name[$i]`.
//!
//! A case's fields are checked and typed when the case loads, but some of their values are only
//! known when a step runs: the variable of an `each` loop (`id = "p$i"`), the start method under
//! test (`$method`), the parent's pid (`$pid`). A [`Template`] keeps such a field as written and
//! resolves it against the [`Vars`] of the moment; a field without references is converted
//! once, at load.

use mproc::{StartMethod, TypeCode};
use serde_json::Value;
use std::collections::BTreeMap;

/// The variables a template is resolved against: the case's parameters, the loop variables,
/// `method`, `null` and `pid`.
pub type Vars = BTreeMap<String, Value>;

/// A field's value as written, converted to `T` when it is resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Template<T> {
    raw: Value,
    fixed: Option<T>,
}

impl<T: FromJson + Clone> Template<T> {
    /// A template of the value `raw` as written. Without references it is converted now (an
    /// error is the conversion's message); with references, when it is resolved.
    pub fn new(raw: Value) -> Result<Template<T>, String> {
        let fixed = if has_refs(&raw) {
            None
        } else {
            Some(T::from_json(&raw)?)
        };
        Ok(Template { raw, fixed })
    }

    /// The value `raw`, as written, whose conversion is `value`.
    pub fn known(raw: Value, value: T) -> Template<T> {
        Template {
            raw,
            fixed: Some(value),
        }
    }

    /// The value, resolved against `vars`.
    pub fn get(&self, vars: &Vars) -> Result<T, String> {
        match &self.fixed {
            Some(v) => Ok(v.clone()),
            None => T::from_json(&subst(&self.raw, vars)?),
        }
    }

    /// The value as written.
    pub fn raw(&self) -> &Value {
        &self.raw
    }
}

/// Resolves an optional template.
pub fn get_opt<T: FromJson + Clone>(
    t: &Option<Template<T>>,
    vars: &Vars,
) -> Result<Option<T>, String> {
    t.as_ref().map(|t| t.get(vars)).transpose()
}

/// A type a field converts to from its JSON value.
pub trait FromJson: Sized {
    /// What the value must be, for messages (`an integer`).
    const WANT: &'static str;
    /// Converts `v`, or says why not.
    fn from_json(v: &Value) -> Result<Self, String>;
}

/// The value as messages show it: `the string "x"`, or its JSON text.
pub fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        other => other.to_string(),
    }
}

fn mismatch<T: FromJson>(v: &Value) -> String {
    format!("expected {}, found {}", T::WANT, shown(v))
}

impl FromJson for String {
    const WANT: &'static str = "a string";
    /// Strings as they are; other values as their JSON text (`id = "$i"` names `2`).
    fn from_json(v: &Value) -> Result<String, String> {
        Ok(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

impl FromJson for i64 {
    const WANT: &'static str = "an integer";
    fn from_json(v: &Value) -> Result<i64, String> {
        v.as_i64().ok_or_else(|| mismatch::<i64>(v))
    }
}

impl FromJson for bool {
    const WANT: &'static str = "a boolean";
    fn from_json(v: &Value) -> Result<bool, String> {
        v.as_bool().ok_or_else(|| mismatch::<bool>(v))
    }
}

impl FromJson for Value {
    const WANT: &'static str = "a value";
    fn from_json(v: &Value) -> Result<Value, String> {
        Ok(v.clone())
    }
}

impl FromJson for Vec<Value> {
    const WANT: &'static str = "an array";
    fn from_json(v: &Value) -> Result<Vec<Value>, String> {
        v.as_array().cloned().ok_or_else(|| mismatch::<Self>(v))
    }
}

impl FromJson for Vec<String> {
    const WANT: &'static str = "an array of strings";
    fn from_json(v: &Value) -> Result<Vec<String>, String> {
        let items = v.as_array().ok_or_else(|| mismatch::<Self>(v))?;
        items
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| mismatch::<Self>(v))
            })
            .collect()
    }
}

impl FromJson for StartMethod {
    const WANT: &'static str = "a start method (fork, spawn, forkserver)";
    fn from_json(v: &Value) -> Result<StartMethod, String> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| mismatch::<Self>(v))
    }
}

impl FromJson for TypeCode {
    const WANT: &'static str = "a typecode (b, B, h, H, i, I, l, L, q, Q, f, d, c)";
    fn from_json(v: &Value) -> Result<TypeCode, String> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| mismatch::<Self>(v))
    }
}

/// Whether `v` holds a `$` reference anywhere (strings, array items, table values).
pub fn has_refs(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('$'),
        Value::Array(a) => a.iter().any(has_refs),
        Value::Object(m) => m.values().any(has_refs),
        _ => false,
    }
}

/// Substitutes `$var` references in `v`: a string that is exactly one reference takes the
/// variable's value (any type); references inside a longer string are interpolated as text.
/// A reference is `$name`, `$name[N]` or `$name[$other]`.
pub fn subst(v: &Value, vars: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains('$') => {
            let parts = refs(s, vars)?;
            if let [Part::Ref(v)] = parts.as_slice() {
                return Ok(v.clone());
            }
            let mut out = String::new();
            for p in parts {
                match p {
                    Part::Text(t) => out.push_str(&t),
                    Part::Ref(Value::String(s)) => out.push_str(&s),
                    Part::Ref(v) => out.push_str(&v.to_string()),
                }
            }
            Value::String(out)
        }
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| subst(x, vars)).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), subst(x, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

enum Part {
    Text(String),
    Ref(Value),
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// The value of `$name[...]` whose index text is `inner`.
fn index(name: &str, val: Value, inner: &str, vars: &Vars) -> Result<Value, String> {
    let idx = if let Some(var) = inner.strip_prefix('$') {
        vars.get(var)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("`${var}` is not an integer variable"))?
    } else {
        inner
            .parse::<i64>()
            .map_err(|_| format!("bad index {inner:?}"))?
    };
    usize::try_from(idx)
        .ok()
        .and_then(|i| val.as_array().and_then(|a| a.get(i)).cloned())
        .ok_or_else(|| format!("`${name}[{idx}]` is out of range or not a list"))
}

fn refs(s: &str, vars: &Vars) -> Result<Vec<Part>, String> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let ch = s[i..].chars().next().expect("in bounds");
            text.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let end = ident_end(b, i + 1);
        let name = &s[i + 1..end];
        if name.is_empty() {
            return Err(format!("`$` without a name in {s:?}"));
        }
        let mut val = vars
            .get(name)
            .cloned()
            .ok_or_else(|| format!("unknown variable `${name}`"))?;
        i = end;
        if i < b.len() && b[i] == b'[' {
            let close = s[i..]
                .find(']')
                .map(|j| i + j)
                .ok_or_else(|| format!("missing `]` in {s:?}"))?;
            val = index(name, val, &s[i + 1..close], vars)?;
            i = close + 1;
        }
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Ref(val));
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        let mut vars = Vars::new();
        vars.insert("i".to_string(), json!(2));
        vars.insert("s".to_string(), json!([10, 20, 30]));
        vars.insert("null".to_string(), Value::Null);
        vars
    }

    #[test]
    fn substitutes_whole_values_indexes_and_text() {
        let vars = vars();
        assert_eq!(subst(&json!("$i"), &vars).unwrap(), json!(2));
        assert_eq!(subst(&json!("$s[$i]"), &vars).unwrap(), json!(30));
        assert_eq!(subst(&json!("$s[0]"), &vars).unwrap(), json!(10));
        assert_eq!(subst(&json!("r$i"), &vars).unwrap(), json!("r2"));
        assert_eq!(
            subst(&json!([42, "$null", "hello"]), &vars).unwrap(),
            json!([42, null, "hello"])
        );
        assert!(subst(&json!("$nope"), &vars).is_err());
        assert!(subst(&json!("$s[7]"), &vars).is_err());
        assert!(subst(&json!("$s[-1]"), &vars).is_err());
    }

    #[test]
    fn templates_convert_now_or_when_resolved() {
        let vars = vars();
        let t: Template<i64> = Template::new(json!("$s[1]")).unwrap();
        assert_eq!(t.get(&vars).unwrap(), 20);
        let t: Template<i64> = Template::new(json!(7)).unwrap();
        assert_eq!(t.get(&Vars::new()).unwrap(), 7);
        assert!(Template::<i64>::new(json!("seven")).is_err());
        let t: Template<String> = Template::new(json!("p$i")).unwrap();
        assert_eq!(t.get(&vars).unwrap(), "p2");
        let t: Template<bool> = Template::new(json!("$i")).unwrap();
        assert!(t.get(&vars).unwrap_err().contains("a boolean"));
    }
}
