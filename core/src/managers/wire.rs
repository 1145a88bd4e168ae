//! The manager's wire, as CPython's `multiprocessing.managers` speaks it: every message is a pickle
//! of a [`Value`].
//!
//! - A request is `(ident, methodname, args, kwds)`: `ident` is `None` for the server's own
//!   methods (`create`, `incref`, `decref`, `accept_connection`, `get_methods`,
//!   `number_of_objects`, `dummy`, `debug_info`, `shutdown`, and mproc's `mproc_*` additions),
//!   otherwise the id of a managed object, as a `str`.
//! - A reply is `('#RETURN', value)`, `('#ERROR', exception)` (an exception object such as
//!   `builtins.KeyError('missing')`), `('#TRACEBACK', text)`, or from CPython's own server
//!   `('#PROXY', (exposed, token))`.
//! - A proxy inside a value is `RebuildProxy(<ProxyClass>, Token(typeid, address, id), 'pickle',
//!   kwds)`; mproc returns proxies this way, inside `#RETURN`, never as `#PROXY` (which breaks
//!   for a proxy that was itself passed to another process: CPython's gh-99595).
//!
//! This module holds the vocabulary both ends share: the typeids with their proxy classes and
//! exposed methods, tokens and addresses as values, requests and replies, the exceptions the
//! server raises and the [`Error`] each becomes on the client, and the globals each end accepts.

use crate::connection::Address;
use crate::error::Error;
use crate::pickle::{Construct, Dict, Global, GlobalPolicy, Object, ReadOptions, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

/// CPython's module of the manager classes.
pub(crate) const MANAGERS: &str = "multiprocessing.managers";

/// A typeid the manager serves: CPython's name, the proxy class CPython rebuilds it with, and the
/// methods CPython exposes for it.
#[derive(Debug)]
pub(crate) struct TypeInfo {
    pub typeid: &'static str,
    /// The class in `multiprocessing.managers` (`AutoProxy` is a function that makes a class).
    pub proxy: &'static str,
    pub exposed: &'static [&'static str],
}

const ACQUIRER: &[&str] = &["acquire", "release"];

/// Every typeid of CPython's `SyncManager` that mproc serves, with CPython's exposed methods
/// (3.13's `queue.Queue` adds `shutdown`).
pub(crate) const TYPES: &[TypeInfo] = &[
    TypeInfo {
        typeid: "dict",
        proxy: "DictProxy",
        exposed: &[
            "__contains__",
            "__delitem__",
            "__getitem__",
            "__iter__",
            "__len__",
            "__setitem__",
            "clear",
            "copy",
            "get",
            "items",
            "keys",
            "pop",
            "popitem",
            "setdefault",
            "update",
            "values",
        ],
    },
    TypeInfo {
        typeid: "list",
        proxy: "ListProxy",
        exposed: &[
            "__add__",
            "__contains__",
            "__delitem__",
            "__getitem__",
            "__len__",
            "__mul__",
            "__reversed__",
            "__rmul__",
            "__setitem__",
            "append",
            "count",
            "extend",
            "index",
            "insert",
            "pop",
            "remove",
            "reverse",
            "sort",
            "__imul__",
        ],
    },
    TypeInfo {
        typeid: "Namespace",
        proxy: "NamespaceProxy",
        exposed: &["__getattribute__", "__setattr__", "__delattr__"],
    },
    TypeInfo {
        typeid: "Lock",
        proxy: "AcquirerProxy",
        exposed: ACQUIRER,
    },
    TypeInfo {
        typeid: "RLock",
        proxy: "AcquirerProxy",
        exposed: ACQUIRER,
    },
    TypeInfo {
        typeid: "Semaphore",
        proxy: "AcquirerProxy",
        exposed: ACQUIRER,
    },
    TypeInfo {
        typeid: "BoundedSemaphore",
        proxy: "AcquirerProxy",
        exposed: ACQUIRER,
    },
    TypeInfo {
        typeid: "Condition",
        proxy: "ConditionProxy",
        exposed: &["acquire", "release", "wait", "notify", "notify_all"],
    },
    TypeInfo {
        typeid: "Event",
        proxy: "EventProxy",
        exposed: &["is_set", "set", "clear", "wait"],
    },
    TypeInfo {
        typeid: "Barrier",
        proxy: "BarrierProxy",
        exposed: &["__getattribute__", "wait", "abort", "reset"],
    },
    TypeInfo {
        typeid: "Queue",
        proxy: "AutoProxy",
        exposed: QUEUE_METHODS,
    },
    TypeInfo {
        typeid: "JoinableQueue",
        proxy: "AutoProxy",
        exposed: QUEUE_METHODS,
    },
    TypeInfo {
        typeid: "Value",
        proxy: "ValueProxy",
        exposed: &["get", "set"],
    },
    TypeInfo {
        typeid: "Array",
        proxy: "ArrayProxy",
        exposed: &["__len__", "__getitem__", "__setitem__"],
    },
    TypeInfo {
        typeid: "Iterator",
        proxy: "IteratorProxy",
        exposed: &["__next__", "send", "throw", "close"],
    },
];

const QUEUE_METHODS: &[&str] = &[
    "empty",
    "full",
    "get",
    "get_nowait",
    "join",
    "put",
    "put_nowait",
    "qsize",
    "shutdown",
    "task_done",
];

/// The typeid's description, if mproc serves it.
pub(crate) fn type_info(typeid: &str) -> Option<&'static TypeInfo> {
    TYPES.iter().find(|t| t.typeid == typeid)
}

/// A managed object's token: CPython's `Token(typeid, address, id)`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub typeid: String,
    pub address: Address,
    pub id: String,
}

/// An address as CPython writes it in a token: a path or an abstract name (with its leading
/// NUL) as a `str`, a TCP address as `(host, port)`.
pub(crate) fn address_to_value(a: &Address) -> Value {
    match a {
        Address::Unix(p) => Value::Str(p.to_string_lossy().into_owned()),
        Address::Abstract(name) => Value::Str(format!("\0{}", String::from_utf8_lossy(name))),
        Address::Tcp(s) => Value::Tuple(vec![
            Value::Str(s.ip().to_string()),
            Value::Int(i64::from(s.port())),
        ]),
    }
}

/// The address a token names (see [`address_to_value`]; IPv6's 4-tuples are read too).
pub(crate) fn address_from_value(v: &Value) -> Option<Address> {
    match v {
        Value::Str(s) => match s.strip_prefix('\0') {
            Some(name) => Some(Address::Abstract(name.as_bytes().to_vec())),
            None if !s.is_empty() => Some(Address::Unix(PathBuf::from(s))),
            None => None,
        },
        Value::Tuple(items) if items.len() >= 2 => {
            let host = items[0].as_str()?;
            let port = u16::try_from(items[1].as_i64()?).ok()?;
            let ip = host.parse().ok()?;
            Some(Address::Tcp(SocketAddr::new(ip, port)))
        }
        _ => None,
    }
}

fn managers(name: &str) -> Global {
    Global::new(MANAGERS, name)
}

/// A token as CPython pickles it: `Token.__new__(Token)` with the state `(typeid, address, id)`.
pub(crate) fn token_to_value(t: &Token) -> Value {
    Object::new_with_state(
        managers("Token"),
        vec![],
        Some(Value::Tuple(vec![
            Value::Str(t.typeid.clone()),
            address_to_value(&t.address),
            Value::Str(t.id.clone()),
        ])),
    )
    .into()
}

/// Reads a token (its pickled state, or a `Token(...)` call).
pub(crate) fn token_from_value(v: &Value) -> Option<Token> {
    let Value::Object(o) = v else { return None };
    if !o.class.is(MANAGERS, "Token") {
        return None;
    }
    let fields: &[Value] = match (&o.state, &o.construct) {
        (Some(Value::Tuple(items)), _) => items,
        (None, Construct::Call(args)) => args,
        _ => return None,
    };
    let [typeid, address, id] = fields else {
        return None;
    };
    Some(Token {
        typeid: typeid.as_str()?.to_owned(),
        address: address_from_value(address)?,
        id: id.as_str()?.to_owned(),
    })
}

/// A proxy as a value: `RebuildProxy(<ProxyClass>, token, 'pickle', kwds)`, as CPython's
/// `BaseProxy.__reduce__` makes it (an `AutoProxy` carries its exposed methods). The proxy class
/// is the typeid's, or `AutoProxy` for a typeid mproc does not know.
pub(crate) fn rebuild_proxy(token: &Token, exposed: Option<&[String]>) -> Value {
    let info = type_info(&token.typeid);
    let class = info.map_or("AutoProxy", |i| i.proxy);
    let mut kwds = Dict::new();
    if class == "AutoProxy" {
        let names: Vec<Value> = match (exposed, info) {
            (Some(e), _) => e.iter().map(|s| Value::Str(s.clone())).collect(),
            (None, Some(i)) => i.exposed.iter().map(|&s| Value::from(s)).collect(),
            (None, None) => Vec::new(),
        };
        kwds.insert("exposed".into(), Value::Tuple(names))
            .expect("a str key is hashable");
    }
    Object::call(
        managers("RebuildProxy"),
        vec![
            Value::Global(managers(class)),
            token_to_value(token),
            Value::from("pickle"),
            Value::Dict(kwds),
        ],
    )
    .into()
}

/// The token of a `RebuildProxy(...)` value, and the exposed methods it carries (if any).
pub(crate) fn parse_rebuild(v: &Value) -> Option<(Token, Option<Vec<String>>)> {
    let Value::Object(o) = v else { return None };
    if !o.class.is(MANAGERS, "RebuildProxy") {
        return None;
    }
    let args = o.args();
    let token = token_from_value(args.get(1)?)?;
    let exposed = match args.get(3) {
        Some(Value::Dict(k)) => match k.get(&Value::from("exposed")) {
            Some(Value::Tuple(e) | Value::List(e)) => Some(
                e.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    };
    Some((token, exposed))
}

/// Calls `f` on every proxy (`RebuildProxy(...)`) inside `v`, in order.
pub(crate) fn for_each_proxy(v: &Value, f: &mut dyn FnMut(&Token)) {
    match v {
        Value::Tuple(items) | Value::List(items) => {
            items.iter().for_each(|i| for_each_proxy(i, f));
        }
        Value::Dict(d) => {
            for (k, v) in d.iter() {
                for_each_proxy(k, f);
                for_each_proxy(v, f);
            }
        }
        Value::Set(s) | Value::FrozenSet(s) => s.iter().for_each(|i| for_each_proxy(i, f)),
        Value::Object(o) => {
            if let Some((token, _)) = parse_rebuild(v) {
                f(&token);
                return;
            }
            o.args().iter().for_each(|i| for_each_proxy(i, f));
            if let Some(s) = &o.state {
                for_each_proxy(s, f);
            }
            o.list_items.iter().for_each(|i| for_each_proxy(i, f));
            for (k, v) in &o.dict_items {
                for_each_proxy(k, f);
                for_each_proxy(v, f);
            }
        }
        _ => {}
    }
}

/// A request: `(ident, methodname, args, kwds)`.
pub(crate) fn request(ident: Option<&str>, method: &str, args: Vec<Value>, kwds: Dict) -> Value {
    Value::Tuple(vec![
        ident.map_or(Value::None, Value::from),
        Value::from(method),
        Value::Tuple(args),
        Value::Dict(kwds),
    ])
}

/// A request's pickle, from its parts (`ident` is `None` or a `str`), without building the
/// tuple.
pub(crate) fn encode_request(
    ident: &Value,
    method: &str,
    args: Vec<Value>,
    kwds: Dict,
) -> Result<Vec<u8>, crate::pickle::PickleError> {
    crate::pickle::dumps_tuple(&[
        ident,
        &Value::from(method),
        &Value::Tuple(args),
        &Value::Dict(kwds),
    ])
}

/// A request, taken apart.
#[derive(Debug)]
pub(crate) struct Request {
    /// `None` for the server's own methods.
    pub ident: Option<String>,
    pub method: String,
    pub args: Vec<Value>,
    pub kwds: Dict,
}

/// Takes a request apart; the message says what was wrong with it.
pub(crate) fn parse_request(v: Value) -> Result<Request, String> {
    let Value::Tuple(items) = v else {
        return Err(format!(
            "a request must be a tuple (ident, methodname, args, kwds), not {}",
            v.type_name()
        ));
    };
    let Ok([ident, method, args, kwds]) = <[Value; 4]>::try_from(items) else {
        return Err("a request must be a tuple of 4 items (ident, methodname, args, kwds)".into());
    };
    let ident = match ident {
        Value::None => None,
        Value::Str(s) => Some(s),
        other => {
            return Err(format!(
                "ident must be a str or None, not {}",
                other.type_name()
            ))
        }
    };
    let Value::Str(method) = method else {
        return Err("methodname must be a str".into());
    };
    let args = match args {
        Value::Tuple(a) | Value::List(a) => a,
        other => return Err(format!("args must be a tuple, not {}", other.type_name())),
    };
    let kwds = match kwds {
        Value::Dict(d) => d,
        Value::None => Dict::new(),
        other => return Err(format!("kwds must be a dict, not {}", other.type_name())),
    };
    Ok(Request {
        ident,
        method,
        args,
        kwds,
    })
}

/// A reply to send: `('#RETURN', value)`, `('#ERROR', exception)` or `('#TRACEBACK', text)`.
#[derive(Debug)]
pub(crate) struct Outgoing {
    kind: usize,
    pub value: Value,
}

static REPLY_KINDS: std::sync::LazyLock<[Value; 3]> = std::sync::LazyLock::new(|| {
    [
        Value::from("#RETURN"),
        Value::from("#ERROR"),
        Value::from("#TRACEBACK"),
    ]
});

impl Outgoing {
    /// The reply's pickle (the envelope written around the value, not built).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, crate::pickle::PickleError> {
        crate::pickle::dumps_tuple(&[&REPLY_KINDS[self.kind], &self.value])
    }
}

/// `('#RETURN', v)`.
pub(crate) fn reply_return(v: Value) -> Outgoing {
    Outgoing { kind: 0, value: v }
}

/// `('#ERROR', exception)`.
pub(crate) fn reply_error(exc: Value) -> Outgoing {
    Outgoing {
        kind: 1,
        value: exc,
    }
}

/// `('#TRACEBACK', text)`: CPython's reply for a failure outside the object's method (a bad
/// request, an unknown id), whose text is a formatted traceback; ours ends like one, with the
/// exception's class and message.
pub(crate) fn reply_traceback(exception: &str, message: &str) -> Outgoing {
    Outgoing {
        kind: 2,
        value: Value::Str(format!(
            "Traceback (most recent call last):\n  File \"<mproc manager>\", in serve_client\n{exception}: {message}\n"
        )),
    }
}

/// A reply, taken apart.
#[derive(Debug)]
pub(crate) enum Reply {
    Return(Value),
    Error(Value),
    Traceback(String),
    /// `('#PROXY', (exposed, token))`, from CPython's server.
    Proxy(Value),
}

/// Takes a reply apart.
pub(crate) fn parse_reply(v: Value) -> Result<Reply, Error> {
    let bad = |v: &Value| {
        Error::Deserialize(format!(
            "a manager's reply must be ('#RETURN', value) or ('#ERROR', exception), not {}",
            short(v)
        ))
    };
    let Value::Tuple(items) = v else {
        return Err(bad(&v));
    };
    let [kind, payload] =
        <[Value; 2]>::try_from(items).map_err(|items| bad(&Value::Tuple(items)))?;
    match kind.as_str() {
        Some("#RETURN") => Ok(Reply::Return(payload)),
        Some("#ERROR") => Ok(Reply::Error(payload)),
        Some("#TRACEBACK") | Some("#UNSERIALIZABLE") => Ok(Reply::Traceback(
            payload
                .as_str()
                .map_or_else(|| payload.to_string(), str::to_owned),
        )),
        Some("#PROXY") => Ok(Reply::Proxy(payload)),
        _ => Err(bad(&Value::Tuple(vec![kind, payload]))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 100 {
        format!("{}...", s.chars().take(97).collect::<String>())
    } else {
        s
    }
}

/// An exception a managed object raises, as Python would.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PyErr {
    /// `KeyError(key)`.
    Key(Value),
    Index(String),
    Value(String),
    Type(String),
    Runtime(String),
    Attribute(String),
    Overflow(String),
    /// `queue.Empty()`.
    Empty,
    /// `queue.Full()`.
    Full,
    /// `queue.ShutDown()` (Python 3.13).
    ShutDown,
    /// `threading.BrokenBarrierError()`.
    BrokenBarrier,
    /// `StopIteration()`.
    StopIteration,
}

impl PyErr {
    /// The exception object, as CPython pickles it (`class(*args)`).
    pub(crate) fn to_value(&self) -> Value {
        let (module, name, args) = match self {
            PyErr::Key(k) => ("builtins", "KeyError", vec![k.clone()]),
            PyErr::Index(m) => ("builtins", "IndexError", vec![Value::from(m.as_str())]),
            PyErr::Value(m) => ("builtins", "ValueError", vec![Value::from(m.as_str())]),
            PyErr::Type(m) => ("builtins", "TypeError", vec![Value::from(m.as_str())]),
            PyErr::Runtime(m) => ("builtins", "RuntimeError", vec![Value::from(m.as_str())]),
            PyErr::Attribute(m) => ("builtins", "AttributeError", vec![Value::from(m.as_str())]),
            PyErr::Overflow(m) => ("builtins", "OverflowError", vec![Value::from(m.as_str())]),
            PyErr::Empty => ("_queue", "Empty", vec![]),
            PyErr::Full => ("queue", "Full", vec![]),
            PyErr::ShutDown => ("queue", "ShutDown", vec![]),
            PyErr::BrokenBarrier => ("threading", "BrokenBarrierError", vec![]),
            PyErr::StopIteration => ("builtins", "StopIteration", vec![]),
        };
        Object::call(Global::new(module, name), args).into()
    }
}

/// The error a `#ERROR` reply's exception becomes: the variants mproc already has for the same
/// failure of a local object (`Empty`, `Full`, `BrokenBarrier`, `NotOwner` for releasing a lock
/// one does not hold, `InvalidArgument` for `ValueError`), the variants for Python's container
/// errors (`KeyError`, `IndexError`, `AttributeError`), and [`Error::Remote`] with the class's
/// name for any other.
pub(crate) fn error_from_exception(exc: &Value) -> Error {
    let Value::Object(o) = exc else {
        return remote("RemoteError", exc.to_string(), String::new());
    };
    let name = o.class.name.as_str();
    let first = o.args().first();
    let message = match first {
        Some(Value::Str(s)) if o.args().len() == 1 => s.clone(),
        Some(_) if o.args().len() == 1 => first.map(Value::to_string).unwrap_or_default(),
        None => String::new(),
        Some(_) => Value::Tuple(o.args().to_vec()).to_string(),
    };
    match (o.class.module.as_str(), name) {
        ("builtins", "KeyError") => {
            Error::KeyError(first.map(Value::to_string).unwrap_or_default())
        }
        ("builtins", "IndexError") => Error::IndexError(message),
        ("builtins", "AttributeError") => Error::AttributeError(message),
        ("builtins", "ValueError") => Error::InvalidArgument(message),
        ("builtins", "RuntimeError")
            if message.contains("un-acquired lock") || message.contains("release unlocked") =>
        {
            Error::NotOwner(message)
        }
        ("_queue" | "queue", "Empty") => Error::Empty,
        ("queue", "Full") => Error::Full,
        ("threading", "BrokenBarrierError") => Error::BrokenBarrier,
        (_, _) => remote(name, message, String::new()),
    }
}

/// The error a `#TRACEBACK` reply becomes: [`Error::Remote`] whose kind is the exception named
/// on the traceback's last line (CPython's client raises `RemoteError` with the text). A reply
/// saying that the object's id is unknown is [`Error::ManagerGone`]: the object was released.
pub(crate) fn error_from_traceback(text: &str, ident: Option<&str>) -> Error {
    let last = text.trim_end().lines().last().unwrap_or("").trim();
    let (kind, message) = last.split_once(": ").unwrap_or(("RemoteError", last));
    if let Some(id) = ident {
        if kind == "KeyError" && message.trim_matches('\'') == id {
            return Error::ManagerGone(format!(
                "the manager holds no object with id {id:?}: it was released"
            ));
        }
    }
    remote(kind, message.to_owned(), text.to_owned())
}

fn remote(kind: &str, message: String, traceback: String) -> Error {
    Error::Remote {
        kind: kind.to_owned(),
        message,
        traceback,
    }
}

/// The globals a manager server accepts in a request: proxies (and their tokens), slices, and
/// arrays. Reading never imports or calls anything; anything else is refused before the request
/// is looked at.
pub(crate) fn server_read_options() -> ReadOptions {
    let mut policy = GlobalPolicy::deny_all()
        .allow(MANAGERS, "RebuildProxy")
        .allow(MANAGERS, "Token")
        .allow(MANAGERS, "AutoProxy")
        .allow("builtins", "slice")
        .allow("builtins", "range")
        .allow("array", "array")
        .allow("array", "_array_reconstructor");
    for t in TYPES {
        policy = policy.allow(MANAGERS, t.proxy);
    }
    ReadOptions::new().globals(policy)
}

/// The globals a client accepts in a reply: the above, and the exceptions a manager raises.
pub(crate) fn client_read_options() -> ReadOptions {
    let mut policy = GlobalPolicy::deny_all()
        .allow_module(MANAGERS)
        .allow_module("builtins")
        .allow("array", "array")
        .allow("array", "_array_reconstructor")
        .allow("_queue", "Empty")
        .allow("queue", "Empty")
        .allow("queue", "Full")
        .allow("queue", "ShutDown")
        .allow("threading", "BrokenBarrierError");
    for m in ["multiprocessing.pool", "multiprocessing.context"] {
        policy = policy.allow_module(m);
    }
    ReadOptions::new().globals(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_addresses_round_trip() {
        for a in [
            Address::parse("/tmp/x/listener").unwrap(),
            Address::parse("@abstract").unwrap(),
            Address::parse("127.0.0.1:5000").unwrap(),
            Address::parse("[::1]:5000").unwrap(),
        ] {
            let t = Token {
                typeid: "dict".into(),
                address: a,
                id: "1f".into(),
            };
            assert_eq!(token_from_value(&token_to_value(&t)), Some(t.clone()));
            let p = rebuild_proxy(&t, None);
            assert_eq!(parse_rebuild(&p).map(|x| x.0), Some(t));
        }
    }

    #[test]
    fn requests_are_checked() {
        let r = request(Some("a"), "get", vec![Value::Int(1)], Dict::new());
        let p = parse_request(r).unwrap();
        assert_eq!(p.ident.as_deref(), Some("a"));
        assert_eq!(p.method, "get");
        assert!(parse_request(Value::Int(1)).is_err());
        assert!(parse_request(Value::Tuple(vec![Value::None])).is_err());
    }

    #[test]
    fn envelopes_are_written_as_the_whole_tuple_would_be() {
        use crate::pickle::dumps;
        let args = vec![Value::Int(1), Value::from("x")];
        let mut kwds = Dict::new();
        kwds.insert("k".into(), Value::Float(0.5)).unwrap();
        for ident in [Value::None, Value::from("7f0001")] {
            let whole = dumps(&request(ident.as_str(), "get", args.clone(), kwds.clone())).unwrap();
            let parts = encode_request(&ident, "get", args.clone(), kwds.clone()).unwrap();
            assert_eq!(parts, whole);
        }
        let reply = reply_return(Value::List(vec![Value::None]))
            .encode()
            .unwrap();
        let whole = dumps(&Value::Tuple(vec![
            Value::from("#RETURN"),
            Value::List(vec![Value::None]),
        ]))
        .unwrap();
        assert_eq!(reply, whole);
    }

    #[test]
    fn exceptions_become_typed_errors() {
        let e = error_from_exception(&PyErr::Key(Value::from("k")).to_value());
        assert!(matches!(e, Error::KeyError(ref k) if k == "'k'"), "{e:?}");
        assert!(matches!(
            error_from_exception(&PyErr::Empty.to_value()),
            Error::Empty
        ));
        assert!(matches!(
            error_from_exception(&PyErr::Runtime("release unlocked lock".into()).to_value()),
            Error::NotOwner(_)
        ));
        let e = error_from_exception(&PyErr::Type("unhashable type: 'list'".into()).to_value());
        assert!(
            matches!(e, Error::Remote { ref kind, .. } if kind == "TypeError"),
            "{e:?}"
        );
    }
}
