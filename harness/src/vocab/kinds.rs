//! The kinds of field an action takes ([`Ty`]), each with the Rust type it is typed into at load
//! ([`FieldKind`]): checked literals, or [`Template`]s for values written with `$` references.

use super::Ty;
use crate::node::{CaseError, Node, NodeKind, Source};
use crate::template::{FromJson, Template, Vars};
use mproc::StartMethod;
use serde_json::Value;

/// A kind of field: its [`Ty`] (for the vocabulary's tables) and how a node is typed into it.
pub trait FieldKind {
    /// The kind in the vocabulary's tables.
    const TY: Ty;
    /// What an action holds for a field of this kind.
    type Out;
    /// Types `n`, the value of the field `what` (as messages name it: `` `join.timeout_ms` ``).
    fn read(n: &Node, what: &str, src: &Source) -> Result<Self::Out, CaseError>;
}

fn template<T: FromJson + Clone>(
    n: &Node,
    what: &str,
    src: &Source,
    want: &str,
) -> Result<Template<T>, CaseError> {
    Template::new(n.to_json()).map_err(|_| src.wrong_type(n, what, want))
}

/// Whether `n` is a string that starts with a reference (`"$x"`, `"$xs[$i]"`): a value of any
/// kind may be given so.
fn is_ref(n: &Node) -> bool {
    matches!(&n.kind, NodeKind::Str(s) if s.starts_with('$'))
}

macro_rules! string_kind {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name;
        impl FieldKind for $name {
            const TY: Ty = Ty::$name;
            type Out = Template<String>;
            fn read(n: &Node, what: &str, src: &Source) -> Result<Template<String>, CaseError> {
                match n.kind {
                    NodeKind::Str(_) => template(n, what, src, Self::TY.want()),
                    _ => Err(src.wrong_type(n, what, Self::TY.want())),
                }
            }
        }
    };
}

string_kind!(
    /// The id of an object (a string; `$var` interpolation allowed).
    Id
);
string_kind!(
    /// A string.
    Str
);
string_kind!(
    /// A task name (checked against the file's task table by the loader).
    Task
);

/// A value given literally, or as a string that starts with a reference.
macro_rules! value_kind {
    ($(#[$m:meta])* $name:ident, $out:ty, $($pat:pat_param)|+) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name;
        impl FieldKind for $name {
            const TY: Ty = Ty::$name;
            type Out = Template<$out>;
            fn read(n: &Node, what: &str, src: &Source) -> Result<Template<$out>, CaseError> {
                match &n.kind {
                    $($pat)|+ => template(n, what, src, Self::TY.want()),
                    _ if is_ref(n) => template(n, what, src, Self::TY.want()),
                    _ => Err(src.wrong_type(n, what, Self::TY.want())),
                }
            }
        }
    };
}

value_kind!(
    /// An integer.
    Int, i64, NodeKind::Int(_)
);
value_kind!(
    /// A boolean.
    Bool, bool, NodeKind::Bool(_)
);
value_kind!(
    /// An array of values.
    List, Vec<Value>, NodeKind::Array(_)
);
value_kind!(
    /// A typecode of shared values and arrays (every one `mproc::TypeCode` has).
    TypeCode, mproc::TypeCode, NodeKind::Str(_)
);
value_kind!(
    /// A kind of lock: `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`.
    LockKind, Lock, NodeKind::Str(_)
);

/// A string naming one of a few things, checked at load when written literally and kept as a
/// string: a name that only a reference yields is checked by the library when the step runs
/// (so that a bad start method is mproc's `UnknownStartMethod`, as in Python).
macro_rules! name_kind {
    ($(#[$m:meta])* $name:ident, $valid:expr) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name;
        impl FieldKind for $name {
            const TY: Ty = Ty::$name;
            type Out = Template<String>;
            fn read(n: &Node, what: &str, src: &Source) -> Result<Template<String>, CaseError> {
                let valid: fn(&str) -> bool = $valid;
                match &n.kind {
                    NodeKind::Str(s) if s.starts_with('$') || valid(s) => {
                        template(n, what, src, Self::TY.want())
                    }
                    _ => Err(src.wrong_type(n, what, Self::TY.want())),
                }
            }
        }
    };
}

name_kind!(
    /// A start method name.
    Method,
    |s| s.parse::<StartMethod>().is_ok()
);
name_kind!(
    /// The context an object is made in: `"case"`, `"default"` or a start method.
    Context,
    |s| ContextSel::parse(s).is_ok()
);

/// Any value (TOML scalars, arrays, tables; `"$null"` is null).
#[derive(Debug)]
pub struct Any;

impl FieldKind for Any {
    const TY: Ty = Ty::Any;
    type Out = Template<Value>;
    fn read(n: &Node, what: &str, src: &Source) -> Result<Template<Value>, CaseError> {
        template(n, what, src, Self::TY.want())
    }
}

/// Two object ids (a pipe's ends).
#[derive(Debug)]
pub struct Ids;

impl FieldKind for Ids {
    const TY: Ty = Ty::Ids;
    type Out = Template<Vec<String>>;
    fn read(n: &Node, what: &str, src: &Source) -> Result<Template<Vec<String>>, CaseError> {
        match &n.kind {
            NodeKind::Array(a)
                if a.len() == 2 && a.iter().all(|x| matches!(x.kind, NodeKind::Str(_))) =>
            {
                template(n, what, src, Self::TY.want())
            }
            _ => Err(src.wrong_type(n, what, Self::TY.want())),
        }
    }
}

/// The items of a map: an array, a list parameter (`"$xs"`), or a range of integers `"A..B"`
/// (B excluded; A and B integers or `$param`s).
#[derive(Debug)]
pub struct Items;

/// The value of an [`Items`] field.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemList {
    /// The items themselves.
    List(Template<Vec<Value>>),
    /// The integers `A..B`.
    Range(Template<i64>, Template<i64>),
}

/// The most items a range may expand to in the conformance runners (the bench maps ranges
/// without expanding them).
pub const MAX_RANGE: i64 = 10_000_000;

impl ItemList {
    /// The bounds, if this is a range.
    pub fn range(&self, vars: &Vars) -> Result<Option<(i64, i64)>, String> {
        match self {
            ItemList::List(_) => Ok(None),
            ItemList::Range(a, b) => Ok(Some((a.get(vars)?, b.get(vars)?))),
        }
    }

    /// The items.
    pub fn get(&self, vars: &Vars) -> Result<Vec<Value>, String> {
        match self {
            ItemList::List(l) => l.get(vars),
            ItemList::Range(a, b) => {
                let (a, b) = (a.get(vars)?, b.get(vars)?);
                if b.saturating_sub(a) > MAX_RANGE {
                    return Err(format!(
                        "the range {a}..{b} has more than {MAX_RANGE} items"
                    ));
                }
                Ok((a..b).map(Value::from).collect())
            }
        }
    }
}

/// Parses a range `"A..B"` whose ends are integers or `$param`s.
pub fn parse_range(s: &str) -> Option<(Template<i64>, Template<i64>)> {
    let (a, b) = s.split_once("..")?;
    let end = |t: &str| -> Option<Template<i64>> {
        let t = t.trim();
        if t.starts_with('$') {
            Template::new(Value::from(t)).ok()
        } else {
            let n: i64 = t.parse().ok()?;
            Some(Template::known(Value::from(n), n))
        }
    };
    Some((end(a)?, end(b)?))
}

impl FieldKind for Items {
    const TY: Ty = Ty::Items;
    type Out = ItemList;
    fn read(n: &Node, what: &str, src: &Source) -> Result<ItemList, CaseError> {
        match &n.kind {
            NodeKind::Array(_) => Ok(ItemList::List(template(n, what, src, Ty::List.want())?)),
            NodeKind::Str(s) if s.contains("..") => match parse_range(s) {
                Some((a, b)) => Ok(ItemList::Range(a, b)),
                None => Err(src.error(&n.span, format!("bad range {s:?}: expected \"A..B\""))),
            },
            NodeKind::Str(s) if s.starts_with('$') => {
                Ok(ItemList::List(template(n, what, src, Ty::List.want())?))
            }
            _ => Err(src.wrong_type(n, what, Self::TY.want())),
        }
    }
}

/// Which context makes an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextSel {
    /// The case's: the start method under test (the default).
    Case,
    /// The default context (`mproc::default_context()`, Python's `multiprocessing`).
    Default,
    /// The context of this start method.
    Method(StartMethod),
}

impl ContextSel {
    /// `"case"`, `"default"`, or a start method (else mproc's `UnknownStartMethod`).
    pub fn parse(s: &str) -> mproc::Result<ContextSel> {
        Ok(match s {
            "case" => ContextSel::Case,
            "default" => ContextSel::Default,
            m => ContextSel::Method(m.parse()?),
        })
    }
}

/// A kind of lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// `Lock`.
    Lock,
    /// `RLock`.
    RLock,
    /// `Semaphore`.
    Semaphore,
    /// `BoundedSemaphore`.
    BoundedSemaphore,
}

impl FromJson for Lock {
    const WANT: &'static str = "a lock kind (Lock, RLock, Semaphore, BoundedSemaphore)";
    fn from_json(v: &Value) -> Result<Lock, String> {
        match v.as_str() {
            Some("Lock") => Ok(Lock::Lock),
            Some("RLock") => Ok(Lock::RLock),
            Some("Semaphore") => Ok(Lock::Semaphore),
            Some("BoundedSemaphore") => Ok(Lock::BoundedSemaphore),
            _ => Err(format!("expected {}, found {v}", Self::WANT)),
        }
    }
}
