//! The objects a manager server holds, with Python's semantics: `dict`, `list`, `Namespace`,
//! `Value`, `Array` and the iterator over a dict's keys here; the locks, events, barriers and
//! queues in [`super::sync`].
//!
//! A method returns an [`Out`]: the value of the reply, whether the proxies inside it already
//! hold references (a value moved out of a container brings the container's references along),
//! and how to undo the call if the reply cannot be delivered (the caller hung up).

use super::call::{no_attribute, Call, Host, Out, R};
use super::pyops::{self, Args};
use super::sync::{Barrier, Condition, Event, LockCore, Queue, Semaphore};
use super::wire::PyErr;
use crate::pickle::{Dict, Global, Object, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// A managed object.
#[derive(Debug)]
pub(crate) struct Obj {
    pub typeid: &'static str,
    pub kind: Kind,
}

/// The object's state, behind its own lock.
#[derive(Debug)]
pub(crate) enum Kind {
    Dict(Cell<Dict>),
    List(Cell<Vec<Value>>),
    Namespace(Cell<Dict>),
    Value(Cell<(String, Value)>),
    Array(Cell<Array>),
    Iterator(Cell<VecDeque<Value>>),
    Lock(Arc<LockCore>),
    Semaphore(Arc<Semaphore>),
    Condition(Condition),
    Event(Event),
    Barrier(Barrier),
    Queue(Arc<Queue>),
}

/// A container's contents, and whether the object was released (its contents then belong to
/// nobody, and every method fails).
#[derive(Debug)]
pub(crate) struct Cell<T>(Mutex<Option<T>>);

impl<T> Cell<T> {
    pub(crate) fn new(v: T) -> Cell<T> {
        Cell(Mutex::new(Some(v)))
    }

    fn lock(&self) -> Result<ContentsGuard<'_, T>, PyErr> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(released());
        }
        Ok(ContentsGuard { g })
    }

    /// Marks the object released and hands its contents over.
    fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

struct ContentsGuard<'a, T> {
    g: MutexGuard<'a, Option<T>>,
}

impl<T> std::ops::Deref for ContentsGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.g.as_ref().expect("checked when locked")
    }
}

impl<T> std::ops::DerefMut for ContentsGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.g.as_mut().expect("checked when locked")
    }
}

fn released() -> PyErr {
    PyErr::Runtime("the object was released".into())
}

impl Obj {
    /// Makes the object for `typeid` from the arguments of `create` (Python's constructor
    /// arguments). `lock_of` resolves a proxy argument (a `Condition`'s lock) to an object of
    /// this server.
    pub(crate) fn create(
        typeid: &'static str,
        args: Vec<Value>,
        kwds: Dict,
        host: &dyn Host,
        lock_of: &dyn Fn(&Value) -> Option<Arc<Obj>>,
    ) -> Result<Obj, PyErr> {
        let kind = match typeid {
            "dict" => {
                let mut a = Args::new("dict", args, kwds);
                let mut d = Dict::new();
                if let Some(init) = a.opt("iterable")? {
                    update(&mut d, init)?;
                }
                for (k, v) in a.rest_kwds() {
                    d.insert(k, v).map_err(|e| PyErr::Type(e.to_string()))?;
                }
                a.done()?;
                host.hold(&Value::Dict(d.clone()));
                Kind::Dict(Cell::new(d))
            }
            "list" => {
                let mut a = Args::new("list", args, kwds);
                let items = match a.opt("iterable")? {
                    None => Vec::new(),
                    Some(v) => iterate(v)?,
                };
                a.done()?;
                items.iter().for_each(|v| host.hold(v));
                Kind::List(Cell::new(items))
            }
            "Namespace" => {
                let mut a = Args::new("Namespace", args, kwds);
                let attrs = a.rest_kwds();
                a.done()?;
                host.hold(&Value::Dict(attrs.clone()));
                Kind::Namespace(Cell::new(attrs))
            }
            "Value" => {
                let mut a = Args::new("Value", args, kwds);
                let typecode = a.req("typecode")?;
                let value = a.req("value")?;
                let _lock = a.opt("lock")?;
                a.done()?;
                let typecode = match typecode {
                    Value::Str(s) => s,
                    other => other.to_string(),
                };
                host.hold(&value);
                Kind::Value(Cell::new((typecode, value)))
            }
            "Array" => {
                let mut a = Args::new("Array", args, kwds);
                let typecode = a.req("typecode")?;
                let seq = a.req("sequence")?;
                let _lock = a.opt("lock")?;
                a.done()?;
                Kind::Array(Cell::new(Array::new(&typecode, iterate(seq)?)?))
            }
            "Lock" => {
                Args::new("Lock", args, kwds).done()?;
                Kind::Lock(Arc::new(LockCore::new(false)))
            }
            "RLock" => {
                Args::new("RLock", args, kwds).done()?;
                Kind::Lock(Arc::new(LockCore::new(true)))
            }
            "Semaphore" | "BoundedSemaphore" => {
                let mut a = Args::new(typeid, args, kwds);
                let value = match a.opt("value")? {
                    None => 1,
                    Some(v) => pyops::as_int(&v, "value")?,
                };
                a.done()?;
                if value < 0 {
                    return Err(PyErr::Value("semaphore initial value must be >= 0".into()));
                }
                Kind::Semaphore(Arc::new(Semaphore::new(
                    value as u64,
                    typeid == "BoundedSemaphore",
                )))
            }
            "Condition" => {
                let mut a = Args::new("Condition", args, kwds);
                let lock = match a.opt("lock")? {
                    None | Some(Value::None) => Arc::new(LockCore::new(true)),
                    Some(v) => match lock_of(&v).as_deref() {
                        Some(Obj {
                            kind: Kind::Lock(l),
                            ..
                        }) => Arc::clone(l),
                        _ => {
                            return Err(PyErr::Type(format!(
                            "a Condition's lock must be a Lock or RLock of this manager, not {}",
                            v.type_name()
                        )))
                        }
                    },
                };
                a.done()?;
                Kind::Condition(Condition::new(lock))
            }
            "Event" => {
                Args::new("Event", args, kwds).done()?;
                Kind::Event(Event::default())
            }
            "Barrier" => {
                let mut a = Args::new("Barrier", args, kwds);
                let parties = pyops::as_int(&a.req("parties")?, "parties")?;
                match a.opt("action")? {
                    None | Some(Value::None) => {}
                    Some(_) => {
                        return Err(PyErr::Type(
                            "a manager's Barrier cannot run an action: a callable does not cross processes".into(),
                        ))
                    }
                }
                let timeout = pyops::timeout(a.opt("timeout")?)?;
                a.done()?;
                if parties < 1 {
                    return Err(PyErr::Value("parties must be >= 1".into()));
                }
                Kind::Barrier(Barrier::new(parties as u64, timeout))
            }
            "Queue" | "JoinableQueue" => {
                let mut a = Args::new(typeid, args, kwds);
                let maxsize = match a.opt("maxsize")? {
                    None => 0,
                    Some(v) => pyops::as_int(&v, "maxsize")?,
                };
                a.done()?;
                Kind::Queue(Arc::new(Queue::new(maxsize)))
            }
            "Iterator" => {
                let items = args.into_iter().next().map(iterate).transpose()?;
                Kind::Iterator(Cell::new(items.unwrap_or_default().into()))
            }
            other => return Err(PyErr::Value(format!("unknown typeid {other:?}"))),
        };
        Ok(Obj { typeid, kind })
    }

    /// Runs `method` on the object. The caller has checked that the typeid exposes it (or that
    /// it is one of the fallbacks every object answers: `__repr__`, `__str__`, `#GETVALUE`).
    pub(crate) fn call(&self, call: &Call<'_>, method: &str, args: Vec<Value>, kwds: Dict) -> R {
        match method {
            "__repr__" | "__str__" => {
                Args::new("__repr__", args, kwds).done()?;
                return Ok(Value::Str(self.repr()?).into());
            }
            "#GETVALUE" => {
                Args::new("_getvalue", args, kwds).done()?;
                return self.getvalue().map(Out::from);
            }
            _ => {}
        }
        match &self.kind {
            Kind::Dict(d) => dict_call(d, call, method, args, kwds),
            Kind::List(l) => list_call(l, call, method, args, kwds),
            Kind::Namespace(n) => namespace_call(n, call, method, args, kwds),
            Kind::Value(v) => value_call(v, call, method, args, kwds),
            Kind::Array(a) => array_call(a, method, args, kwds),
            Kind::Iterator(it) => iterator_call(it, method, args, kwds),
            Kind::Lock(l) => LockCore::call(l, call, method, args, kwds),
            Kind::Semaphore(s) => Semaphore::call(s, call, method, args, kwds),
            Kind::Condition(c) => c.call(call, method, args, kwds),
            Kind::Event(e) => e.call(call, method, args, kwds),
            Kind::Barrier(b) => b.call(call, method, args, kwds),
            Kind::Queue(q) => Queue::call(q, call, method, args, kwds),
        }
    }

    /// Python's `repr` of the object (what `str(proxy)` prints).
    pub(crate) fn repr(&self) -> Result<String, PyErr> {
        Ok(match &self.kind {
            Kind::Dict(d) => repr(&Value::Dict(d.lock()?.clone())),
            Kind::List(l) => {
                let items = l.lock()?;
                list_repr(&items)
            }
            Kind::Namespace(n) => {
                let attrs = n.lock()?;
                namespace_repr(&attrs)
            }
            Kind::Value(v) => {
                let v = v.lock()?;
                format!("Value({}, {})", Value::Str(v.0.clone()), repr(&v.1))
            }
            Kind::Array(a) => a.lock()?.repr(),
            Kind::Iterator(_) => "<dict_keyiterator object>".into(),
            Kind::Lock(l) => l.repr(),
            Kind::Semaphore(s) => s.repr(self.typeid),
            Kind::Condition(c) => c.repr(),
            Kind::Event(e) => e.repr(),
            Kind::Barrier(b) => b.repr(),
            Kind::Queue(q) => q.repr(),
        })
    }

    /// The object's value, for `_getvalue()` (a copy of a container; the others have none that
    /// crosses processes, as in CPython where pickling a lock fails).
    fn getvalue(&self) -> Result<Value, PyErr> {
        Ok(match &self.kind {
            Kind::Dict(d) => Value::Dict(d.lock()?.clone()),
            Kind::List(l) => Value::List(l.lock()?.clone()),
            Kind::Namespace(n) => Object::new_with_state(
                Global::new(super::wire::MANAGERS, "Namespace"),
                vec![],
                Some(Value::Dict(n.lock()?.clone())),
            )
            .into(),
            Kind::Value(v) => v.lock()?.1.clone(),
            Kind::Array(a) => a.lock()?.to_value(None),
            _ => {
                return Err(PyErr::Type(format!(
                    "cannot pickle '{}' object",
                    self.typeid
                )))
            }
        })
    }

    /// Marks a container released and returns its contents, whose proxies' references the
    /// server then drops.
    pub(crate) fn drain(&self) -> Vec<Value> {
        match &self.kind {
            Kind::Dict(d) | Kind::Namespace(d) => {
                d.take().map(|d| vec![Value::Dict(d)]).unwrap_or_default()
            }
            Kind::List(l) => l.take().unwrap_or_default(),
            Kind::Value(v) => v.take().map(|v| vec![v.1]).unwrap_or_default(),
            Kind::Iterator(it) => it.take().map(Vec::from).unwrap_or_default(),
            Kind::Queue(q) => q.drain(),
            Kind::Array(a) => {
                a.take();
                Vec::new()
            }
            Kind::Lock(_)
            | Kind::Semaphore(_)
            | Kind::Condition(_)
            | Kind::Event(_)
            | Kind::Barrier(_) => Vec::new(),
        }
    }

    /// Wakes every thread waiting on the object, so that a cancelled one notices.
    pub(crate) fn wake_all(&self) {
        match &self.kind {
            Kind::Lock(l) => l.wake_all(),
            Kind::Semaphore(s) => s.wake_all(),
            Kind::Condition(c) => c.wake_all(),
            Kind::Event(e) => e.wake_all(),
            Kind::Barrier(b) => b.wake_all(),
            Kind::Queue(q) => q.wake_all(),
            Kind::Dict(_)
            | Kind::List(_)
            | Kind::Namespace(_)
            | Kind::Value(_)
            | Kind::Array(_)
            | Kind::Iterator(_) => {}
        }
    }

    /// The lock this object is or contains (a `Condition`'s), for releasing what a dead owner
    /// held.
    pub(crate) fn lock_core(&self) -> Option<&LockCore> {
        match &self.kind {
            Kind::Lock(l) => Some(l),
            Kind::Condition(c) => Some(c.lock_core()),
            _ => None,
        }
    }
}

fn list_repr(items: &[Value]) -> String {
    let parts: Vec<String> = items.iter().map(repr).collect();
    format!("[{}]", parts.join(", "))
}

/// Python's `repr` of a value held by the server, where a proxy inside prints as the proxy
/// object CPython's server holds there prints: `<ListProxy object, typeid 'list' at 0x1f>`.
pub(crate) fn repr(v: &Value) -> String {
    let mut has_proxy = false;
    super::wire::for_each_proxy(v, &mut |_| has_proxy = true);
    if !has_proxy {
        return v.to_string();
    }
    let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
    match v {
        Value::List(items) => format!("[{}]", join(&mut items.iter().map(repr))),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", repr(&items[0])),
        Value::Tuple(items) => format!("({})", join(&mut items.iter().map(repr))),
        Value::Dict(d) => format!(
            "{{{}}}",
            join(&mut d.iter().map(|(k, v)| format!("{}: {}", repr(k), repr(v))))
        ),
        Value::Set(s) => format!("{{{}}}", join(&mut s.iter().map(repr))),
        Value::FrozenSet(s) => format!("frozenset({{{}}})", join(&mut s.iter().map(repr))),
        other => match super::wire::parse_rebuild(other) {
            Some((t, _)) => {
                let class = super::wire::type_info(&t.typeid).map_or("AutoProxy", |i| i.proxy);
                format!("<{class} object, typeid '{}' at 0x{}>", t.typeid, t.id)
            }
            None => other.to_string(),
        },
    }
}

fn namespace_repr(attrs: &Dict) -> String {
    let mut parts: Vec<String> = attrs
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str()?;
            (!name.starts_with('_')).then(|| format!("{name}={}", repr(v)))
        })
        .collect();
    parts.sort();
    format!("Namespace({})", parts.join(", "))
}

/// The items of an iterable argument (a list, tuple, set, dict's keys, str's characters, bytes'
/// ints, an array), or Python's `TypeError`.
pub(crate) fn iterate(v: Value) -> Result<Vec<Value>, PyErr> {
    Ok(match v {
        Value::List(items) | Value::Tuple(items) => items,
        Value::Set(s) | Value::FrozenSet(s) => s.into_iter().collect(),
        Value::Dict(d) => d.into_iter().map(|(k, _)| k).collect(),
        Value::Str(s) => s.chars().map(|c| Value::Str(c.to_string())).collect(),
        Value::Bytes(b) => b.into_iter().map(Value::from).collect(),
        Value::Object(o) if o.class.is("builtins", "range") => range_items(&o)?,
        other => match Array::from_value(&other) {
            Some(a) => a.items,
            None => {
                return Err(PyErr::Type(format!(
                    "'{}' object is not iterable",
                    other.type_name()
                )))
            }
        },
    })
}

fn range_items(o: &Object) -> Result<Vec<Value>, PyErr> {
    let ints: Vec<i64> = o
        .args()
        .iter()
        .map(|v| pyops::as_int(v, "range arguments"))
        .collect::<Result<_, _>>()?;
    let (start, stop, step) = match ints[..] {
        [stop] => (0, stop, 1),
        [start, stop] => (start, stop, 1),
        [start, stop, step] if step != 0 => (start, stop, step),
        _ => return Err(PyErr::Value("range() arg 3 must not be zero".into())),
    };
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(Value::Int(i));
        i += step;
    }
    Ok(out)
}

/// `dict.update(other)` for a mapping or an iterable of pairs.
fn update(d: &mut Dict, other: Value) -> Result<(), PyErr> {
    let pairs: Vec<(Value, Value)> = match other {
        Value::Dict(o) => o.into_iter().collect(),
        other => iterate(other)?
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => {
                    let mut it = kv.into_iter();
                    Ok((it.next().expect("two"), it.next().expect("two")))
                }
                _ => Err(PyErr::Type(format!(
                    "cannot convert dictionary update sequence element #{i} to a sequence"
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    for (k, v) in pairs {
        d.insert(k, v).map_err(|e| PyErr::Type(e.to_string()))?;
    }
    Ok(())
}

fn dict_call(cell: &Cell<Dict>, call: &Call<'_>, method: &str, args: Vec<Value>, kwds: Dict) -> R {
    let host = call.host;
    let mut d = cell.lock()?;
    match method {
        "__getitem__" | "__contains__" | "__delitem__" => {
            let mut a = Args::new(static_name(method), args, kwds);
            let k = a.req("key")?;
            a.done()?;
            pyops::hashable(&k)?;
            match method {
                "__getitem__" => d.get(&k).cloned().map(Out::from).ok_or(PyErr::Key(k)),
                "__contains__" => Ok(Value::Bool(d.contains_key(&k)).into()),
                _ => match d.remove(&k) {
                    Some(old) => {
                        host.release(&old);
                        Ok(Value::None.into())
                    }
                    None => Err(PyErr::Key(k)),
                },
            }
        }
        "__setitem__" => {
            let mut a = Args::new("__setitem__", args, kwds);
            let k = a.req("key")?;
            let v = a.req("value")?;
            a.done()?;
            pyops::hashable(&k)?;
            host.hold(&k);
            host.hold(&v);
            match d.insert(k, v) {
                Ok(Some(old)) => host.release(&old),
                Ok(None) => {}
                Err(e) => return Err(PyErr::Type(e.to_string())),
            }
            Ok(Value::None.into())
        }
        "__len__" => {
            Args::new("__len__", args, kwds).done()?;
            Ok(Value::from(d.len() as u64).into())
        }
        "__iter__" => {
            Args::new("__iter__", args, kwds).done()?;
            let keys: Vec<Value> = d.keys().cloned().collect();
            drop(d);
            Ok(Out::moved(host.iterator(keys)))
        }
        "clear" => {
            Args::new("clear", args, kwds).done()?;
            let old = std::mem::take(&mut *d);
            host.release(&Value::Dict(old));
            Ok(Value::None.into())
        }
        "copy" => {
            Args::new("copy", args, kwds).done()?;
            Ok(Value::Dict(d.clone()).into())
        }
        "get" => {
            let mut a = Args::new("get", args, kwds);
            let k = a.req("key")?;
            let default = a.opt("default")?.unwrap_or(Value::None);
            a.done()?;
            pyops::hashable(&k)?;
            Ok(d.get(&k).cloned().unwrap_or(default).into())
        }
        "items" => {
            Args::new("items", args, kwds).done()?;
            Ok(Value::List(
                d.iter()
                    .map(|(k, v)| Value::Tuple(vec![k.clone(), v.clone()]))
                    .collect(),
            )
            .into())
        }
        "keys" => {
            Args::new("keys", args, kwds).done()?;
            Ok(Value::List(d.keys().cloned().collect()).into())
        }
        "values" => {
            Args::new("values", args, kwds).done()?;
            Ok(Value::List(d.values().cloned().collect()).into())
        }
        "pop" => {
            let mut a = Args::new("pop", args, kwds);
            let k = a.req("key")?;
            let default = a.opt("default")?;
            a.done()?;
            pyops::hashable(&k)?;
            match (d.remove(&k), default) {
                (Some(v), _) => Ok(Out::moved(v)),
                (None, Some(default)) => Ok(default.into()),
                (None, None) => Err(PyErr::Key(k)),
            }
        }
        "popitem" => {
            Args::new("popitem", args, kwds).done()?;
            match d.pop_last() {
                Some((k, v)) => Ok(Out::moved(Value::Tuple(vec![k, v]))),
                None => Err(PyErr::Key(Value::from("popitem(): dictionary is empty"))),
            }
        }
        "setdefault" => {
            let mut a = Args::new("setdefault", args, kwds);
            let k = a.req("key")?;
            let default = a.opt("default")?.unwrap_or(Value::None);
            a.done()?;
            pyops::hashable(&k)?;
            if let Some(v) = d.get(&k) {
                return Ok(v.clone().into());
            }
            host.hold(&k);
            host.hold(&default);
            d.insert(k, default.clone())
                .map_err(|e| PyErr::Type(e.to_string()))?;
            Ok(default.into())
        }
        "update" => {
            let mut a = Args::new("update", args, kwds);
            let other = a.opt("other")?;
            let extra = a.rest_kwds();
            a.done()?;
            let mut new = Dict::new();
            if let Some(o) = other {
                update(&mut new, o)?;
            }
            update(&mut new, Value::Dict(extra))?;
            for (k, v) in new {
                host.hold(&k);
                host.hold(&v);
                if let Ok(Some(old)) = d.insert(k, v) {
                    host.release(&old);
                }
            }
            Ok(Value::None.into())
        }
        other => Err(no_attribute("dict", other)),
    }
}

/// The `'static` name of a method for messages (the methods that share a parser).
fn static_name(method: &str) -> &'static str {
    match method {
        "__getitem__" => "__getitem__",
        "__contains__" => "__contains__",
        "__delitem__" => "__delitem__",
        "__setitem__" => "__setitem__",
        _ => "method",
    }
}

fn list_call(
    cell: &Cell<Vec<Value>>,
    call: &Call<'_>,
    method: &str,
    args: Vec<Value>,
    kwds: Dict,
) -> R {
    let host = call.host;
    let mut l = cell.lock()?;
    match method {
        "__getitem__" => {
            let mut a = Args::new("__getitem__", args, kwds);
            let i = a.req("index")?;
            a.done()?;
            if let Some(s) = pyops::slice_of(&i, l.len())? {
                let items = s.positions().into_iter().map(|p| l[p].clone()).collect();
                return Ok(Value::List(items).into());
            }
            match pyops::index(&i, l.len())? {
                Some(p) => Ok(l[p].clone().into()),
                None => Err(PyErr::Index("list index out of range".into())),
            }
        }
        "__setitem__" => {
            let mut a = Args::new("__setitem__", args, kwds);
            let i = a.req("index")?;
            let v = a.req("value")?;
            a.done()?;
            if let Some(s) = pyops::slice_of(&i, l.len())? {
                let new = iterate(v)?;
                new.iter().for_each(|v| host.hold(v));
                let old = assign_slice(&mut l, s, new)?;
                old.iter().for_each(|v| host.release(v));
                return Ok(Value::None.into());
            }
            match pyops::index(&i, l.len())? {
                Some(p) => {
                    host.hold(&v);
                    let old = std::mem::replace(&mut l[p], v);
                    host.release(&old);
                    Ok(Value::None.into())
                }
                None => Err(PyErr::Index("list assignment index out of range".into())),
            }
        }
        "__delitem__" => {
            let mut a = Args::new("__delitem__", args, kwds);
            let i = a.req("index")?;
            a.done()?;
            if let Some(s) = pyops::slice_of(&i, l.len())? {
                let mut pos = s.positions();
                pos.sort_unstable();
                for p in pos.into_iter().rev() {
                    let old = l.remove(p);
                    host.release(&old);
                }
                return Ok(Value::None.into());
            }
            match pyops::index(&i, l.len())? {
                Some(p) => {
                    let old = l.remove(p);
                    host.release(&old);
                    Ok(Value::None.into())
                }
                None => Err(PyErr::Index("list assignment index out of range".into())),
            }
        }
        "__len__" => {
            Args::new("__len__", args, kwds).done()?;
            Ok(Value::from(l.len() as u64).into())
        }
        "__contains__" => {
            let mut a = Args::new("__contains__", args, kwds);
            let x = a.req("value")?;
            a.done()?;
            Ok(Value::Bool(l.contains(&x)).into())
        }
        "__add__" => {
            let mut a = Args::new("__add__", args, kwds);
            let other = a.req("other")?;
            a.done()?;
            let Value::List(more) = other else {
                return Err(PyErr::Type(format!(
                    "can only concatenate list (not \"{}\") to list",
                    other.type_name()
                )));
            };
            let mut out = l.clone();
            out.extend(more);
            Ok(Value::List(out).into())
        }
        "__mul__" | "__rmul__" => {
            let mut a = Args::new("__mul__", args, kwds);
            let n = repeat_count(&a.req("n")?)?;
            a.done()?;
            Ok(Value::List(repeat(&l, n)).into())
        }
        "__imul__" => {
            let mut a = Args::new("__imul__", args, kwds);
            let n = repeat_count(&a.req("n")?)?;
            a.done()?;
            let new = repeat(&l, n);
            new.iter().for_each(|v| host.hold(v));
            let old = std::mem::replace(&mut *l, new);
            old.iter().for_each(|v| host.release(v));
            // CPython's ListProxy.__imul__ returns the proxy itself, client side.
            Ok(Value::None.into())
        }
        "__reversed__" => {
            Args::new("__reversed__", args, kwds).done()?;
            let items: Vec<Value> = l.iter().rev().cloned().collect();
            drop(l);
            Ok(Out::moved(host.iterator(items)))
        }
        "append" => {
            let mut a = Args::new("append", args, kwds);
            let v = a.req("object")?;
            a.done()?;
            host.hold(&v);
            l.push(v);
            Ok(Value::None.into())
        }
        "extend" => {
            let mut a = Args::new("extend", args, kwds);
            let items = iterate(a.req("iterable")?)?;
            a.done()?;
            items.iter().for_each(|v| host.hold(v));
            l.extend(items);
            Ok(Value::None.into())
        }
        "insert" => {
            let mut a = Args::new("insert", args, kwds);
            let i = pyops::as_int(&a.req("index")?, "list indices")?;
            let v = a.req("object")?;
            a.done()?;
            let len = l.len() as i64;
            let p = if i < 0 { (i + len).max(0) } else { i.min(len) };
            host.hold(&v);
            l.insert(p as usize, v);
            Ok(Value::None.into())
        }
        "pop" => {
            let mut a = Args::new("pop", args, kwds);
            let i = a.opt("index")?.unwrap_or(Value::Int(-1));
            a.done()?;
            if l.is_empty() {
                return Err(PyErr::Index("pop from empty list".into()));
            }
            match pyops::index(&i, l.len())? {
                Some(p) => Ok(Out::moved(l.remove(p))),
                None => Err(PyErr::Index("pop index out of range".into())),
            }
        }
        "remove" => {
            let mut a = Args::new("remove", args, kwds);
            let x = a.req("value")?;
            a.done()?;
            match l.iter().position(|v| *v == x) {
                Some(p) => {
                    let old = l.remove(p);
                    host.release(&old);
                    Ok(Value::None.into())
                }
                None => Err(PyErr::Value("list.remove(x): x not in list".into())),
            }
        }
        "index" => {
            let mut a = Args::new("index", args, kwds);
            let x = a.req("value")?;
            let start = a.opt("start")?;
            let stop = a.opt("stop")?;
            a.done()?;
            let len = l.len() as i64;
            let bound = |v: Option<Value>, default: i64| -> Result<usize, PyErr> {
                let i = match v {
                    None => default,
                    Some(v) => pyops::as_int(&v, "slice indices")?,
                };
                let i = if i < 0 { (i + len).max(0) } else { i.min(len) };
                Ok(i as usize)
            };
            let (s, e) = (bound(start, 0)?, bound(stop, len)?);
            match (s..e.max(s)).find(|&p| l[p] == x) {
                Some(p) => Ok(Value::from(p as u64).into()),
                None => Err(PyErr::Value(format!("{x} is not in list"))),
            }
        }
        "count" => {
            let mut a = Args::new("count", args, kwds);
            let x = a.req("value")?;
            a.done()?;
            Ok(Value::from(l.iter().filter(|v| **v == x).count() as u64).into())
        }
        "reverse" => {
            Args::new("reverse", args, kwds).done()?;
            l.reverse();
            Ok(Value::None.into())
        }
        "sort" => {
            let mut a = Args::new("sort", args, kwds);
            if !a.rest().is_empty() {
                return Err(PyErr::Type("sort() takes no positional arguments".into()));
            }
            let key = a.opt("key")?;
            let reverse = a.opt("reverse")?.is_some_and(|v| v.is_truthy());
            a.done()?;
            if !matches!(key, None | Some(Value::None)) {
                return Err(PyErr::Type(
                    "a manager's list cannot sort by a key function: a callable does not cross processes".into(),
                ));
            }
            pyops::sort(&mut l, reverse)?;
            Ok(Value::None.into())
        }
        other => Err(no_attribute("list", other)),
    }
}

fn repeat_count(v: &Value) -> Result<usize, PyErr> {
    match v {
        Value::Int(_) | Value::Bool(_) => Ok(pyops::as_int(v, "n")?.max(0) as usize),
        other => Err(PyErr::Type(format!(
            "can't multiply sequence by non-int of type '{}'",
            other.type_name()
        ))),
    }
}

fn repeat(items: &[Value], n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(items.len().saturating_mul(n));
    for _ in 0..n {
        out.extend_from_slice(items);
    }
    out
}

/// `l[s] = new`, with Python's rules (an extended slice takes exactly as many items as it
/// selects). Returns the items replaced.
fn assign_slice(l: &mut Vec<Value>, s: pyops::Slice, new: Vec<Value>) -> Result<Vec<Value>, PyErr> {
    if s.step == 1 {
        let start = s.start as usize;
        let stop = (s.stop.max(s.start)) as usize;
        return Ok(l.splice(start..stop, new).collect());
    }
    let pos = s.positions();
    if pos.len() != new.len() {
        return Err(PyErr::Value(format!(
            "attempt to assign sequence of size {} to extended slice of size {}",
            new.len(),
            pos.len()
        )));
    }
    Ok(pos
        .into_iter()
        .zip(new)
        .map(|(p, v)| std::mem::replace(&mut l[p], v))
        .collect())
}

fn namespace_call(
    cell: &Cell<Dict>,
    call: &Call<'_>,
    method: &str,
    args: Vec<Value>,
    kwds: Dict,
) -> R {
    let host = call.host;
    let mut attrs = cell.lock()?;
    let missing =
        |name: &Value| PyErr::Attribute(format!("'Namespace' object has no attribute {}", name));
    match method {
        "__getattribute__" => {
            let mut a = Args::new("__getattribute__", args, kwds);
            let name = attr_name(a.req("name")?)?;
            a.done()?;
            attrs
                .get(&name)
                .cloned()
                .map(Out::from)
                .ok_or_else(|| missing(&name))
        }
        "__setattr__" => {
            let mut a = Args::new("__setattr__", args, kwds);
            let name = attr_name(a.req("name")?)?;
            let v = a.req("value")?;
            a.done()?;
            host.hold(&v);
            if let Ok(Some(old)) = attrs.insert(name, v) {
                host.release(&old);
            }
            Ok(Value::None.into())
        }
        "__delattr__" => {
            let mut a = Args::new("__delattr__", args, kwds);
            let name = attr_name(a.req("name")?)?;
            a.done()?;
            match attrs.remove(&name) {
                Some(old) => {
                    host.release(&old);
                    Ok(Value::None.into())
                }
                None => Err(missing(&name)),
            }
        }
        other => Err(no_attribute("Namespace", other)),
    }
}

fn attr_name(v: Value) -> Result<Value, PyErr> {
    match v {
        Value::Str(_) => Ok(v),
        other => Err(PyErr::Type(format!(
            "attribute name must be string, not '{}'",
            other.type_name()
        ))),
    }
}

fn value_call(
    cell: &Cell<(String, Value)>,
    call: &Call<'_>,
    method: &str,
    args: Vec<Value>,
    kwds: Dict,
) -> R {
    let mut v = cell.lock()?;
    match method {
        "get" => {
            Args::new("get", args, kwds).done()?;
            Ok(v.1.clone().into())
        }
        "set" => {
            let mut a = Args::new("set", args, kwds);
            let new = a.req("value")?;
            a.done()?;
            call.host.hold(&new);
            let old = std::mem::replace(&mut v.1, new);
            call.host.release(&old);
            Ok(Value::None.into())
        }
        other => Err(no_attribute("Value", other)),
    }
}

fn iterator_call(cell: &Cell<VecDeque<Value>>, method: &str, args: Vec<Value>, kwds: Dict) -> R {
    let mut it = cell.lock()?;
    match method {
        "__next__" => {
            Args::new("__next__", args, kwds).done()?;
            it.pop_front().map(Out::moved).ok_or(PyErr::StopIteration)
        }
        other => Err(no_attribute("dict_keyiterator", other)),
    }
}

fn array_call(cell: &Cell<Array>, method: &str, args: Vec<Value>, kwds: Dict) -> R {
    let mut a = cell.lock()?;
    match method {
        "__len__" => {
            Args::new("__len__", args, kwds).done()?;
            Ok(Value::from(a.items.len() as u64).into())
        }
        "__getitem__" => {
            let mut p = Args::new("__getitem__", args, kwds);
            let i = p.req("index")?;
            p.done()?;
            if let Some(s) = pyops::slice_of(&i, a.items.len())? {
                return Ok(a.to_value(Some(&s.positions())).into());
            }
            match pyops::index(&i, a.items.len())? {
                Some(k) => Ok(a.items[k].clone().into()),
                None => Err(PyErr::Index("array index out of range".into())),
            }
        }
        "__setitem__" => {
            let mut p = Args::new("__setitem__", args, kwds);
            let i = p.req("index")?;
            let v = p.req("value")?;
            p.done()?;
            if let Some(s) = pyops::slice_of(&i, a.items.len())? {
                let Some(other) = Array::from_value(&v) else {
                    return Err(PyErr::Type(format!(
                        "can only assign array (not \"{}\") to array slice",
                        v.type_name()
                    )));
                };
                if other.code != a.code {
                    return Err(PyErr::Type(
                        "bad argument type for built-in operation".into(),
                    ));
                }
                assign_slice(&mut a.items, s, other.items)?;
                return Ok(Value::None.into());
            }
            match pyops::index(&i, a.items.len())? {
                Some(k) => {
                    let v = a.check(v)?;
                    a.items[k] = v;
                    Ok(Value::None.into())
                }
                None => Err(PyErr::Index("array assignment index out of range".into())),
            }
        }
        other => Err(no_attribute("array.array", other)),
    }
}

/// Python's `array.array`: a typecode and items that fit it.
#[derive(Debug, Clone)]
pub(crate) struct Array {
    code: char,
    items: Vec<Value>,
}

/// A typecode: its item size, whether it holds floats, and (for integers) its range. The machine
/// format code is the one `array.__reduce_ex__` writes for this platform (little-endian x86-64
/// and aarch64 Linux: `l` is 64 bits).
struct Code {
    code: char,
    float: bool,
    size: usize,
    signed: bool,
    mformat: i64,
}

const CODES: &[Code] = &[
    Code {
        code: 'b',
        float: false,
        size: 1,
        signed: true,
        mformat: 1,
    },
    Code {
        code: 'B',
        float: false,
        size: 1,
        signed: false,
        mformat: 0,
    },
    Code {
        code: 'h',
        float: false,
        size: 2,
        signed: true,
        mformat: 4,
    },
    Code {
        code: 'H',
        float: false,
        size: 2,
        signed: false,
        mformat: 2,
    },
    Code {
        code: 'i',
        float: false,
        size: 4,
        signed: true,
        mformat: 8,
    },
    Code {
        code: 'I',
        float: false,
        size: 4,
        signed: false,
        mformat: 6,
    },
    Code {
        code: 'l',
        float: false,
        size: 8,
        signed: true,
        mformat: 12,
    },
    Code {
        code: 'L',
        float: false,
        size: 8,
        signed: false,
        mformat: 10,
    },
    Code {
        code: 'q',
        float: false,
        size: 8,
        signed: true,
        mformat: 12,
    },
    Code {
        code: 'Q',
        float: false,
        size: 8,
        signed: false,
        mformat: 10,
    },
    Code {
        code: 'f',
        float: true,
        size: 4,
        signed: true,
        mformat: 14,
    },
    Code {
        code: 'd',
        float: true,
        size: 8,
        signed: true,
        mformat: 16,
    },
];

fn code_info(c: char) -> Option<&'static Code> {
    CODES.iter().find(|x| x.code == c)
}

impl Array {
    fn new(typecode: &Value, items: Vec<Value>) -> Result<Array, PyErr> {
        let code = match typecode.as_str() {
            Some(s) if s.chars().count() == 1 => s.chars().next().expect("one char"),
            _ => {
                return Err(PyErr::Type(format!(
                    "array() argument 1 must be a unicode character, not {}",
                    typecode.type_name()
                )))
            }
        };
        if code_info(code).is_none() {
            return Err(PyErr::Value(
                "bad typecode (must be b, B, h, H, i, I, l, L, q, Q, f or d)".into(),
            ));
        }
        let mut a = Array {
            code,
            items: Vec::with_capacity(items.len()),
        };
        for v in items {
            let v = a.check(v)?;
            a.items.push(v);
        }
        Ok(a)
    }

    /// An item converted to the array's type, or Python's error for one that does not fit.
    fn check(&self, v: Value) -> Result<Value, PyErr> {
        let c = code_info(self.code).expect("valid typecode");
        if c.float {
            return match v {
                Value::Float(f) if c.size == 4 => Ok(Value::Float(f64::from(f as f32))),
                Value::Float(f) => Ok(Value::Float(f)),
                Value::Int(_) | Value::Bool(_) | Value::BigInt(_) => {
                    let f = match &v {
                        Value::BigInt(b) => {
                            num_traits::ToPrimitive::to_f64(b).unwrap_or(f64::INFINITY)
                        }
                        other => other.as_i64().unwrap_or(0) as f64,
                    };
                    Ok(Value::Float(if c.size == 4 {
                        f64::from(f as f32)
                    } else {
                        f
                    }))
                }
                other => Err(PyErr::Type(format!(
                    "must be real number, not {}",
                    other.type_name()
                ))),
            };
        }
        let i: i128 = match &v {
            Value::Int(i) => i128::from(*i),
            Value::Bool(b) => i128::from(*b),
            Value::BigInt(b) => i128::try_from(b).unwrap_or(i128::MAX),
            other => {
                return Err(PyErr::Type(format!(
                    "'{}' object cannot be interpreted as an integer",
                    other.type_name()
                )))
            }
        };
        let bits = (c.size * 8) as u32;
        let (lo, hi) = if c.signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        if i < lo || i > hi {
            let what = if c.signed { "signed" } else { "unsigned" };
            let side = if i < lo {
                "less than minimum"
            } else {
                "greater than maximum"
            };
            return Err(PyErr::Overflow(format!("{what} integer is {side}")));
        }
        Ok(Value::from(i))
    }

    fn repr(&self) -> String {
        if self.items.is_empty() {
            format!("array('{}')", self.code)
        } else {
            format!("array('{}', {})", self.code, list_repr(&self.items))
        }
    }

    /// The array (or the items at `positions`) as CPython pickles an `array.array`:
    /// `array._array_reconstructor(array.array, typecode, mformat_code, bytes)`.
    fn to_value(&self, positions: Option<&[usize]>) -> Value {
        let c = code_info(self.code).expect("valid typecode");
        let mut bytes = Vec::new();
        let mut put = |v: &Value| {
            if c.float {
                let f = match v {
                    Value::Float(f) => *f,
                    _ => 0.0,
                };
                if c.size == 4 {
                    bytes.extend_from_slice(&(f as f32).to_le_bytes());
                } else {
                    bytes.extend_from_slice(&f.to_le_bytes());
                }
            } else {
                let i = match v {
                    Value::BigInt(b) => i128::try_from(b).unwrap_or(0),
                    other => i128::from(other.as_i64().unwrap_or(0)),
                };
                bytes.extend_from_slice(&i.to_le_bytes()[..c.size]);
            }
        };
        match positions {
            None => self.items.iter().for_each(&mut put),
            Some(p) => p.iter().for_each(|&i| put(&self.items[i])),
        }
        Object::call(
            Global::new("array", "_array_reconstructor"),
            vec![
                Value::Global(Global::new("array", "array")),
                Value::Str(self.code.to_string()),
                Value::Int(c.mformat),
                Value::Bytes(bytes),
            ],
        )
        .into()
    }

    /// Reads an `array.array` pickled as [`Array::to_value`] writes it.
    pub(crate) fn from_value(v: &Value) -> Option<Array> {
        let Value::Object(o) = v else { return None };
        if !o.class.is("array", "_array_reconstructor") {
            return None;
        }
        let [_, Value::Str(code), Value::Int(mformat), Value::Bytes(bytes)] = o.args() else {
            return None;
        };
        let code = code.chars().next()?;
        let size = code_info(code)?.size;
        let c = CODES
            .iter()
            .find(|x| x.mformat == *mformat && (x.code == code || x.size == size))?;
        let items = bytes
            .chunks_exact(c.size)
            .map(|b| {
                let mut buf = [0u8; 16];
                buf[..c.size].copy_from_slice(b);
                if c.float {
                    if c.size == 4 {
                        Value::Float(f64::from(f32::from_le_bytes(
                            b.try_into().expect("4 bytes"),
                        )))
                    } else {
                        Value::Float(f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    }
                } else {
                    let raw = i128::from_le_bytes(buf);
                    let shift = 128 - 8 * c.size as u32;
                    let i = if c.signed {
                        (raw << shift) >> shift
                    } else {
                        raw
                    };
                    Value::from(i)
                }
            })
            .collect();
        Some(Array { code, items })
    }

    /// The items, as Python values.
    pub(crate) fn into_items(self) -> Vec<Value> {
        self.items
    }
}
