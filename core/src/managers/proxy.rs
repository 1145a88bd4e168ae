//! Proxies: handles on a manager's objects, usable from any process that has one.
//!
//! [`Proxy`] is CPython's `BaseProxy` (any typeid, Python values in and out); the typed proxies
//! ([`DictProxy`], [`ListProxy`], [`NamespaceProxy`], [`ValueProxy`], [`ArrayProxy`] here, the
//! locks and queues in [`super::sync_proxy`]) wrap one and convert through serde.
//!
//! # How a proxy travels, and keeps its object alive
//!
//! Each proxy counts as one reference of its process ([`Client`]); clones share it. A proxy
//! moves to another process in one of three ways, and its object never dies in between:
//!
//! - **Inside a value sent to the manager** (stored in a managed dict or list, put on a managed
//!   queue): it is CPython's `RebuildProxy(...)` pickle, and the container holds a reference for
//!   as long as it holds the value. A proxy read back from a reply takes its reader's reference
//!   before that reader's next request (the server holds the object until then).
//! - **Serialised by mproc** (a start argument of a spawn or forkserver child, an item of an
//!   mproc `Queue` or `Pipe`, a pool task): the sender takes a *transfer* reference on the
//!   server, which the receiver adopts when it first uses (or drops) the proxy. A transfer that
//!   nobody ever adopts (the message was lost, the receiver died first) is held until the
//!   manager shuts down.
//! - **Copied by `fork`**: the child takes its own reference when it first uses the proxy; the
//!   parent keeps its references from before the fork until it has no child left.

use super::client::{self, Client, Wait};
use super::wire::{self, Token};
use crate::connection::Address;
use crate::error::{Error, Result};
use crate::pickle::{self, Dict, Value};
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a proxy's reference comes from in this process.
#[derive(Debug)]
enum Claim {
    /// Counted by this client (of the process that made it: a fork child sees its parent's).
    Held(Arc<Client>),
    /// A transfer reference to adopt; the key the sender gave, if any.
    Transfer {
        transfer: u64,
        authkey: Option<Vec<u8>>,
    },
    /// No reference yet: one is taken on first use.
    Unheld { authkey: Option<Vec<u8>> },
}

#[derive(Debug)]
struct ProxyRef {
    token: Token,
    /// The token's id as the `str` value every request carries.
    ident: Value,
    /// The methods of an `AutoProxy` (queues), as the server gave them.
    exposed: Option<Vec<String>>,
    claim: Mutex<Claim>,
    /// The call timeout of the client this proxy makes if this process has none for its
    /// manager yet: the sender's, for a proxy that came from another process.
    call_timeout: Option<Duration>,
}

impl ProxyRef {
    /// This process's client, taking this proxy's reference first if it has none here.
    fn client(&self) -> Result<Arc<Client>> {
        let mut claim = self.claim.lock().unwrap_or_else(|p| p.into_inner());
        let (authkey, transfer) = match &*claim {
            Claim::Held(c) if c.is_current() => return Ok(Arc::clone(c)),
            Claim::Held(c) => (Some(c.authkey.clone()), None),
            Claim::Transfer { transfer, authkey } => (authkey.clone(), Some(*transfer)),
            Claim::Unheld { authkey } => (authkey.clone(), None),
        };
        let c = Client::get(&self.token.address, authkey.as_deref(), self.call_timeout)?;
        match transfer {
            Some(t) => c.adopt(&self.token.id, t)?,
            None => c.acquire_ref(&self.token.id)?,
        }
        *claim = Claim::Held(Arc::clone(&c));
        Ok(c)
    }

    /// A transfer reference for a copy of this proxy that another process will adopt (`0`
    /// against CPython's server, which has none: the receiver then takes a reference itself).
    fn transfer(&self) -> Result<u64> {
        let c = self.client()?;
        match c.dialect()? {
            client::Dialect::Mproc => c.transfer(&self.token.id),
            client::Dialect::CPython => Ok(0),
        }
    }

    /// The call timeout a copy of this proxy in another process uses.
    fn call_timeout(&self) -> Option<Duration> {
        match &*self.claim.lock().unwrap_or_else(|p| p.into_inner()) {
            Claim::Held(c) => c.call_timeout,
            Claim::Transfer { .. } | Claim::Unheld { .. } => self.call_timeout,
        }
    }

    fn authkey(&self) -> Option<Vec<u8>> {
        match &*self.claim.lock().unwrap_or_else(|p| p.into_inner()) {
            Claim::Held(c) => Some(c.authkey.clone()),
            Claim::Transfer { authkey, .. } | Claim::Unheld { authkey } => authkey.clone(),
        }
    }
}

impl Drop for ProxyRef {
    fn drop(&mut self) {
        let claim = std::mem::replace(
            self.claim.get_mut().unwrap_or_else(|p| p.into_inner()),
            Claim::Unheld { authkey: None },
        );
        match claim {
            Claim::Held(c) if c.is_current() => c.release_ref(&self.token.id),
            // A fork copy that was never used: the parent holds the reference.
            Claim::Held(_) | Claim::Unheld { .. } => {}
            Claim::Transfer { transfer, authkey } => {
                if let Ok(c) = Client::get(&self.token.address, authkey.as_deref(), None) {
                    c.drop_transfer(transfer);
                }
            }
        }
    }
}

/// A proxy of any typeid: CPython's `BaseProxy`. Calls go to the manager's object by method name
/// with Python values ([`call_method`](Proxy::call_method)); the typed proxies wrap one.
///
/// `Display` prints the object as Python's `str(proxy)` does (the referent's `repr`, asked of
/// the manager: `{0.25: None, 1: '1', '2': 2}`); `Debug` prints the handle
/// (`<DictProxy object, typeid 'dict' at 7>`).
///
/// Clones share one reference. A proxy is `Send` and `Sync`: every thread uses its own
/// connection to the manager.
#[derive(Clone)]
pub struct Proxy {
    r: Arc<ProxyRef>,
}

impl Proxy {
    pub(crate) fn created(
        client: &Arc<Client>,
        typeid: &str,
        id: String,
        exposed: Option<Vec<String>>,
    ) -> Proxy {
        Proxy {
            r: Arc::new(ProxyRef {
                ident: Value::from(id.as_str()),
                token: Token {
                    typeid: typeid.to_owned(),
                    address: client.address.clone(),
                    id,
                },
                exposed,
                claim: Mutex::new(Claim::Held(Arc::clone(client))),
                call_timeout: client.call_timeout,
            }),
        }
    }

    /// A proxy rebuilt from its token: it takes a reference at once when it arrives in a reply
    /// of its manager (so that the object cannot go before), otherwise on first use.
    fn rebuilt(token: Token, exposed: Option<Vec<String>>) -> Result<Proxy> {
        let claim = match client::replying_client(&token.address) {
            Some(c) => {
                c.acquire_ref(&token.id)?;
                Claim::Held(c)
            }
            None => Claim::Unheld { authkey: None },
        };
        Ok(Proxy {
            r: Arc::new(ProxyRef {
                ident: Value::from(token.id.as_str()),
                token,
                exposed,
                claim: Mutex::new(claim),
                call_timeout: None,
            }),
        })
    }

    /// A proxy for the object `id` (of `typeid`) of the manager at `address`, authenticating
    /// with `authkey`: for a process that was not handed a proxy (one started separately) but
    /// learned where the object lives (as CPython rebuilds a proxy from a `Token`). It takes its
    /// reference on first use; an object the manager no longer holds is then
    /// [`Error::ManagerGone`].
    pub fn connect<A: crate::connection::ToAddress + ?Sized>(
        address: &A,
        authkey: &[u8],
        typeid: &str,
        id: &str,
    ) -> Result<Proxy> {
        Ok(Proxy {
            r: Arc::new(ProxyRef {
                ident: Value::from(id),
                token: Token {
                    typeid: typeid.to_owned(),
                    address: address.to_address()?,
                    id: id.to_owned(),
                },
                exposed: None,
                claim: Mutex::new(Claim::Unheld {
                    authkey: Some(authkey.to_vec()),
                }),
                call_timeout: None,
            }),
        })
    }

    /// The typeid (`"dict"`, `"list"`, `"Lock"`, ...).
    pub fn typeid(&self) -> &str {
        &self.r.token.typeid
    }

    /// The object's id on its manager.
    pub fn id(&self) -> &str {
        &self.r.token.id
    }

    /// The address of the manager that holds the object.
    pub fn address(&self) -> &Address {
        &self.r.token.address
    }

    /// Calls `method` on the object with Python values (CPython's `_callmethod`), and returns
    /// what it returned. Errors the object raises come back typed (see [`Error`]).
    pub fn call_method(&self, method: &str, args: Vec<Value>, kwds: Dict) -> Result<Value> {
        self.raw(method, args, kwds, Wait::Quick)
    }

    /// As [`call_method`](Proxy::call_method), for a method that may block in the manager for
    /// up to `timeout` (`None`: for ever): the reply is awaited that long plus
    /// [`REPLY_GRACE`](super::REPLY_GRACE), and [`Error::Timeout`] after.
    pub fn call_method_blocking(
        &self,
        method: &str,
        args: Vec<Value>,
        kwds: Dict,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        self.raw(method, args, kwds, Wait::Block(timeout))
    }

    fn raw(&self, method: &str, args: Vec<Value>, kwds: Dict, wait: Wait) -> Result<Value> {
        let c = self.r.client()?;
        c.call_with(&self.r.ident, method, args, kwds, wait)
    }

    /// Calls and decodes the reply as `T` (proxies inside it take their references at once).
    pub(crate) fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Value>,
        wait: Wait,
    ) -> Result<T> {
        let c = self.r.client()?;
        let v = c.call_with(&self.r.ident, method, args, Dict::new(), wait)?;
        client::decode_reply(&c, v)
    }

    /// Calls a method whose value does not matter (`None`).
    pub(crate) fn call_unit(&self, method: &str, args: Vec<Value>, wait: Wait) -> Result<()> {
        self.raw(method, args, Dict::new(), wait).map(drop)
    }

    /// The object's `repr`, from the manager (what `str(proxy)` prints in Python).
    pub fn repr(&self) -> Result<String> {
        match self.call_method("__repr__", vec![], Dict::new())? {
            Value::Str(s) => Ok(s),
            other => Ok(other.to_string()),
        }
    }

    /// A copy of the object's value (CPython's `_getvalue()`): a container's contents.
    pub fn getvalue(&self) -> Result<Value> {
        self.call_method("#GETVALUE", vec![], Dict::new())
    }

    /// The proxy as CPython pickles it: `RebuildProxy(<ProxyClass>, Token(...), 'pickle', ...)`.
    pub fn to_value(&self) -> Value {
        wire::rebuild_proxy(&self.r.token, self.r.exposed.as_deref())
    }

    /// A proxy from the value [`to_value`](Proxy::to_value) makes (or CPython pickles); it takes
    /// its reference on first use.
    pub fn from_value(v: &Value) -> Result<Proxy> {
        let (token, exposed) = wire::parse_rebuild(v).ok_or_else(|| {
            Error::Deserialize(format!(
                "a manager proxy (RebuildProxy(...)) from the Python value {}",
                short(v)
            ))
        })?;
        Proxy::rebuilt(token, exposed)
    }

    /// Checks that this proxy's typeid is `want` (for the typed proxies).
    pub(crate) fn expect(self, want: &[&str]) -> Result<Proxy> {
        if want.contains(&self.typeid()) {
            Ok(self)
        } else {
            Err(Error::Deserialize(format!(
                "expected a proxy of {}, found a proxy of {:?}",
                want.join(" or "),
                self.typeid()
            )))
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = wire::type_info(self.typeid()).map_or("AutoProxy", |t| t.proxy);
        write!(
            f,
            "<{class} object, typeid {:?} at {}>",
            self.typeid(),
            self.id()
        )
    }
}

impl fmt::Display for Proxy {
    /// The referent's `repr`, as Python's `str(proxy)`; if the manager cannot be asked, the
    /// handle with the reason (Python: `<DictProxy object, ...; '__str__()' failed>`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repr() {
            Ok(s) => f.write_str(&s),
            Err(e) => {
                let handle = format!("{self:?}");
                write!(
                    f,
                    "{}; '__str__()' failed: {e}>",
                    &handle[..handle.len() - 1]
                )
            }
        }
    }
}

/// How a proxy crosses mproc's own serialisation (bincode): its token, the transfer reference
/// the receiver adopts, and the key when it goes to a child whose inherited key differs.
#[derive(Serialize, Deserialize)]
struct ProxyWire {
    typeid: String,
    address: String,
    id: String,
    exposed: Option<Vec<String>>,
    transfer: u64,
    authkey: Option<Vec<u8>>,
    /// The sender's call timeout, which the receiver's calls keep.
    call_timeout: Option<Duration>,
}

impl Serialize for Proxy {
    /// Into a [`Value`] (and so into a manager's containers, or a pickle): CPython's
    /// `RebuildProxy(...)`. Into mproc's binary form (a child's start arguments, an mproc
    /// `Queue` or `Pipe`): the token and a transfer reference, taken on the manager now.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.to_value().serialize(s);
        }
        // bincode's `serialize` measures the value first with a serializer of its own; the
        // measure needs no reference (a transfer has a fixed size).
        let measuring = std::any::type_name::<S>().contains("SizeChecker");
        let transfer = if measuring {
            0
        } else {
            self.r.transfer().map_err(S::Error::custom)?
        };
        let authkey = self
            .r
            .authkey()
            .filter(|k| crate::reduction::encoding_for_child() && *k != client::process_authkey());
        ProxyWire {
            typeid: self.r.token.typeid.clone(),
            address: self.r.token.address.to_string(),
            id: self.r.token.id.clone(),
            exposed: self.r.exposed.clone(),
            transfer,
            authkey,
            call_timeout: self.r.call_timeout(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Proxy, D::Error> {
        if d.is_human_readable() {
            let v = Value::deserialize(d)?;
            return Proxy::from_value(&v).map_err(D::Error::custom);
        }
        let w = ProxyWire::deserialize(d)?;
        let address = Address::parse(&w.address).map_err(D::Error::custom)?;
        let claim = if w.transfer == 0 {
            Claim::Unheld { authkey: w.authkey }
        } else {
            Claim::Transfer {
                transfer: w.transfer,
                authkey: w.authkey,
            }
        };
        Ok(Proxy {
            r: Arc::new(ProxyRef {
                ident: Value::from(w.id.as_str()),
                token: Token {
                    typeid: w.typeid,
                    address,
                    id: w.id,
                },
                exposed: w.exposed,
                claim: Mutex::new(claim),
                call_timeout: w.call_timeout,
            }),
        })
    }
}

/// Python values of a serialisable Rust value, for arguments.
pub(crate) fn arg<T: Serialize + ?Sized>(v: &T) -> Result<Value> {
    pickle::to_value(v)
}

/// Declares a typed proxy: a [`Proxy`] of given typeids, with `Clone`, `Debug`, `Display`,
/// serde, and conversions to and from [`Proxy`].
macro_rules! typed_proxy {
    ($(#[$doc:meta])* $name:ident [$($typeid:literal),+] $(<$($g:ident $(= $default:ty)?),+>)?) => {
        $(#[$doc])*
        pub struct $name$(<$($g $(= $default)?),+>)? {
            pub(crate) p: $crate::managers::Proxy,
            $(_t: ::std::marker::PhantomData<fn() -> ($($g,)+)>,)?
        }

        impl$(<$($g),+>)? $name$(<$($g),+>)? {
            pub(crate) const TYPEIDS: &'static [&'static str] = &[$($typeid),+];

            pub(crate) fn wrap(p: $crate::managers::Proxy) -> Self {
                $name { p, $(_t: ::std::marker::PhantomData::<fn() -> ($($g,)+)>,)? }
            }

            /// The untyped proxy.
            pub fn as_proxy(&self) -> &$crate::managers::Proxy {
                &self.p
            }
        }

        impl$(<$($g),+>)? Clone for $name$(<$($g),+>)? {
            fn clone(&self) -> Self {
                Self::wrap(self.p.clone())
            }
        }

        impl$(<$($g),+>)? ::std::fmt::Debug for $name$(<$($g),+>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.p, f)
            }
        }

        impl$(<$($g),+>)? ::std::fmt::Display for $name$(<$($g),+>)? {
            /// The referent's `repr`, as Python's `print(proxy)`.
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.p, f)
            }
        }

        impl$(<$($g),+>)? ::serde::Serialize for $name$(<$($g),+>)? {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                self.p.serialize(s)
            }
        }

        impl<'de, $($($g),+)?> ::serde::Deserialize<'de> for $name$(<$($g),+>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let p = <$crate::managers::Proxy as ::serde::Deserialize>::deserialize(d)?;
                p.expect(Self::TYPEIDS).map(Self::wrap).map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }

        impl$(<$($g),+>)? From<$name$(<$($g),+>)?> for $crate::managers::Proxy {
            fn from(t: $name$(<$($g),+>)?) -> $crate::managers::Proxy {
                t.p
            }
        }

        impl$(<$($g),+>)? TryFrom<$crate::managers::Proxy> for $name$(<$($g),+>)? {
            type Error = $crate::error::Error;
            fn try_from(p: $crate::managers::Proxy) -> $crate::error::Result<Self> {
                p.expect(Self::TYPEIDS).map(Self::wrap)
            }
        }
    };
}
pub(crate) use typed_proxy;

typed_proxy! {
    /// A manager's `dict` (CPython's `DictProxy`): keys `K`, values `V`, through serde
    /// ([`Value`] for Python's mixed dicts). Keys compare as Python's (`1 == 1.0 == True`) and
    /// keep their insertion order.
    ///
    /// ```no_run
    /// # fn main() -> mproc::Result<()> {
    /// let manager = mproc::Manager::new()?;
    /// let d = manager.dict::<String, i64>()?;
    /// d.set_item("a".into(), 1)?;
    /// assert_eq!(d.get_item("a")?, 1);
    /// assert!(matches!(d.get_item("b"), Err(mproc::Error::KeyError(k)) if k == "'b'"));
    /// println!("{d}"); // {'a': 1}
    /// # Ok(()) }
    /// ```
    DictProxy ["dict"] <K = Value, V = Value>
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// `d[key]`: [`Error::KeyError`] when absent.
    pub fn get_item<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
    {
        self.p.call_as("__getitem__", vec![arg(key)?], Wait::Quick)
    }

    /// `d[key] = value`.
    pub fn set_item(&self, key: K, value: V) -> Result<()> {
        self.p
            .call_as("__setitem__", vec![arg(&key)?, arg(&value)?], Wait::Quick)
    }

    /// `del d[key]`: [`Error::KeyError`] when absent.
    pub fn del_item<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<()>
    where
        K: Borrow<Q>,
    {
        self.p.call_as("__delitem__", vec![arg(key)?], Wait::Quick)
    }

    /// `d.get(key)`: `None` when absent.
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        // One call: `d[key]`, its KeyError meaning absent (a stored None stays `Some`).
        match self.get_item(key) {
            Ok(v) => Ok(Some(v)),
            Err(Error::KeyError(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `d.get(key, default)`.
    pub fn get_or<Q: Serialize + ?Sized>(&self, key: &Q, default: V) -> Result<V>
    where
        K: Borrow<Q>,
    {
        self.p
            .call_as("get", vec![arg(key)?, arg(&default)?], Wait::Quick)
    }

    /// `key in d`.
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
    {
        self.p.call_as("__contains__", vec![arg(key)?], Wait::Quick)
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        self.p.call_as("__len__", vec![], Wait::Quick)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `d.pop(key)`: the value, [`Error::KeyError`] when absent.
    pub fn pop<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
    {
        self.p.call_as("pop", vec![arg(key)?], Wait::Quick)
    }

    /// `d.pop(key, default)`.
    pub fn pop_or<Q: Serialize + ?Sized>(&self, key: &Q, default: V) -> Result<V>
    where
        K: Borrow<Q>,
    {
        self.p
            .call_as("pop", vec![arg(key)?, arg(&default)?], Wait::Quick)
    }

    /// `d.popitem()`: the last item inserted; [`Error::KeyError`] when empty.
    pub fn popitem(&self) -> Result<(K, V)> {
        self.p.call_as("popitem", vec![], Wait::Quick)
    }

    /// `d.setdefault(key, default)`: the value at `key`, inserting `default` when absent.
    pub fn setdefault(&self, key: K, default: V) -> Result<V> {
        self.p
            .call_as("setdefault", vec![arg(&key)?, arg(&default)?], Wait::Quick)
    }

    /// `d.update(items)`.
    pub fn update<I: IntoIterator<Item = (K, V)>>(&self, items: I) -> Result<()> {
        let pairs = items
            .into_iter()
            .map(|(k, v)| Ok(Value::Tuple(vec![arg(&k)?, arg(&v)?])))
            .collect::<Result<Vec<_>>>()?;
        self.p
            .call_as("update", vec![Value::List(pairs)], Wait::Quick)
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.p.call_as("clear", vec![], Wait::Quick)
    }

    /// `list(d.items())`, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.p.call_as("items", vec![], Wait::Quick)
    }

    /// `list(d.keys())`.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.p.call_as("keys", vec![], Wait::Quick)
    }

    /// `list(d.values())`.
    pub fn values(&self) -> Result<Vec<V>> {
        self.p.call_as("values", vec![], Wait::Quick)
    }

    /// `d.copy()`: the dict as a Python value (insertion order, Python's keys).
    pub fn copy(&self) -> Result<Dict> {
        match self.p.call_as::<Value>("copy", vec![], Wait::Quick)? {
            Value::Dict(d) => Ok(d),
            other => Err(Error::Deserialize(format!(
                "dict.copy() answered a {}, not a dict",
                other.type_name()
            ))),
        }
    }
}

typed_proxy! {
    /// A manager's `list` (CPython's `ListProxy`) of `T`, through serde ([`Value`] for Python's
    /// mixed lists). Indices may be negative (from the end), as in Python; `sort`, `index`,
    /// `count`, `remove` and `contains` use Python's comparison and equality.
    ///
    /// ```no_run
    /// # fn main() -> mproc::Result<()> {
    /// let manager = mproc::Manager::new()?;
    /// let l = manager.list_from(0..10i64)?;
    /// l.reverse()?;
    /// assert_eq!(l.to_vec()?, (0..10).rev().collect::<Vec<i64>>());
    /// println!("{l}"); // [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    /// # Ok(()) }
    /// ```
    ListProxy ["list"] <T = Value>
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// `l[index]`: [`Error::IndexError`] outside the list.
    pub fn get_item(&self, index: isize) -> Result<T> {
        self.p
            .call_as("__getitem__", vec![Value::from(index as i64)], Wait::Quick)
    }

    /// `l[index] = value`.
    pub fn set_item(&self, index: isize, value: T) -> Result<()> {
        self.p.call_as(
            "__setitem__",
            vec![Value::from(index as i64), arg(&value)?],
            Wait::Quick,
        )
    }

    /// `del l[index]`.
    pub fn del_item(&self, index: isize) -> Result<()> {
        self.p
            .call_as("__delitem__", vec![Value::from(index as i64)], Wait::Quick)
    }

    /// `l[start:stop]` (Python's slice bounds: negative from the end, clamped to the list).
    pub fn slice(&self, start: Option<isize>, stop: Option<isize>) -> Result<Vec<T>> {
        let bound = |b: Option<isize>| b.map_or(Value::None, |i| Value::from(i as i64));
        let s = pickle::Object::call(
            pickle::Global::new("builtins", "slice"),
            vec![bound(start), bound(stop), Value::None],
        );
        self.p.call_as("__getitem__", vec![s.into()], Wait::Quick)
    }

    /// `l[:]`: the whole list.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.slice(None, None)
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize> {
        self.p.call_as("__len__", vec![], Wait::Quick)
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `x in l`.
    pub fn contains<Q: Serialize + ?Sized>(&self, x: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
    {
        self.p.call_as("__contains__", vec![arg(x)?], Wait::Quick)
    }

    /// `l.append(x)`.
    pub fn append(&self, x: T) -> Result<()> {
        self.p.call_as("append", vec![arg(&x)?], Wait::Quick)
    }

    /// `l.extend(items)`.
    pub fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        let items = items
            .into_iter()
            .map(|x| arg(&x))
            .collect::<Result<Vec<_>>>()?;
        self.p
            .call_as("extend", vec![Value::List(items)], Wait::Quick)
    }

    /// `l.insert(index, x)`.
    pub fn insert(&self, index: isize, x: T) -> Result<()> {
        self.p.call_as(
            "insert",
            vec![Value::from(index as i64), arg(&x)?],
            Wait::Quick,
        )
    }

    /// `l.pop()`: the last item; [`Error::IndexError`] when empty.
    pub fn pop(&self) -> Result<T> {
        self.p.call_as("pop", vec![], Wait::Quick)
    }

    /// `l.pop(index)`.
    pub fn pop_at(&self, index: isize) -> Result<T> {
        self.p
            .call_as("pop", vec![Value::from(index as i64)], Wait::Quick)
    }

    /// `l.remove(x)`: the first item equal to `x`; [`Error::InvalidArgument`] (Python's
    /// `ValueError`) when there is none.
    pub fn remove<Q: Serialize + ?Sized>(&self, x: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.p.call_as("remove", vec![arg(x)?], Wait::Quick)
    }

    /// `l.index(x)`: the position of the first item equal to `x`; [`Error::InvalidArgument`]
    /// when there is none.
    pub fn index<Q: Serialize + ?Sized>(&self, x: &Q) -> Result<usize>
    where
        T: Borrow<Q>,
    {
        self.p.call_as("index", vec![arg(x)?], Wait::Quick)
    }

    /// `l.count(x)`.
    pub fn count<Q: Serialize + ?Sized>(&self, x: &Q) -> Result<usize>
    where
        T: Borrow<Q>,
    {
        self.p.call_as("count", vec![arg(x)?], Wait::Quick)
    }

    /// `l.reverse()`.
    pub fn reverse(&self) -> Result<()> {
        self.p.call_as("reverse", vec![], Wait::Quick)
    }

    /// `l.sort()`: stable, by Python's `<`; items that do not compare are an
    /// [`Error::Remote`] of kind `TypeError`.
    pub fn sort(&self) -> Result<()> {
        self.p.call_as("sort", vec![], Wait::Quick)
    }

    /// `l.sort(reverse=True)`.
    pub fn sort_descending(&self) -> Result<()> {
        let mut kwds = Dict::new();
        kwds.insert("reverse".into(), Value::Bool(true))
            .expect("a str key is hashable");
        self.p.raw("sort", vec![], kwds, Wait::Quick).map(drop)
    }

    /// `l *= n`.
    pub fn repeat(&self, n: usize) -> Result<()> {
        self.p
            .call_as("__imul__", vec![Value::from(n as u64)], Wait::Quick)
    }
}

typed_proxy! {
    /// A manager's `Namespace` (CPython's `NamespaceProxy`): named attributes of any
    /// serialisable type. `Display` prints `Namespace(a=1, b='x')`.
    NamespaceProxy ["Namespace"]
}

impl NamespaceProxy {
    /// `ns.name`: [`Error::AttributeError`] when unset.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.p
            .call_as("__getattribute__", vec![Value::from(name)], Wait::Quick)
    }

    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.p.call_as(
            "__setattr__",
            vec![Value::from(name), arg(value)?],
            Wait::Quick,
        )
    }

    /// `del ns.name`: [`Error::AttributeError`] when unset.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.p
            .call_as("__delattr__", vec![Value::from(name)], Wait::Quick)
    }
}

typed_proxy! {
    /// A manager's `Value(typecode, value)` (CPython's `ValueProxy`). As in CPython, the
    /// typecode is a label: the value may be anything serialisable.
    ValueProxy ["Value"] <T = Value>
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value` (`v.get()`).
    pub fn get(&self) -> Result<T> {
        self.p.call_as("get", vec![], Wait::Quick)
    }

    /// `v.value = x` (`v.set(x)`).
    pub fn set(&self, x: T) -> Result<()> {
        self.p.call_as("set", vec![arg(&x)?], Wait::Quick)
    }
}

typed_proxy! {
    /// A manager's `Array(typecode, sequence)`: Python's `array.array` (CPython's
    /// `ArrayProxy`), whose items must fit the typecode (`'i'`: 32-bit ints, `'d'`: doubles,
    /// ...; an int out of range is an [`Error::Remote`] of kind `OverflowError`).
    ArrayProxy ["Array"] <T = Value>
}

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// `len(a)`.
    pub fn len(&self) -> Result<usize> {
        self.p.call_as("__len__", vec![], Wait::Quick)
    }

    /// `len(a) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `a[index]`.
    pub fn get(&self, index: isize) -> Result<T> {
        self.p
            .call_as("__getitem__", vec![Value::from(index as i64)], Wait::Quick)
    }

    /// `a[index] = x`.
    pub fn set(&self, index: isize, x: T) -> Result<()> {
        self.p.call_as(
            "__setitem__",
            vec![Value::from(index as i64), arg(&x)?],
            Wait::Quick,
        )
    }

    /// `a[:]`, as a vector.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let s = pickle::Object::call(
            pickle::Global::new("builtins", "slice"),
            vec![Value::None, Value::None, Value::None],
        );
        let v: Value = self.p.call_as("__getitem__", vec![s.into()], Wait::Quick)?;
        let items = super::objects::Array::from_value(&v)
            .ok_or_else(|| Error::Deserialize(format!("an array.array, not {}", short(&v))))?
            .into_items();
        items.into_iter().map(pickle::from_value).collect()
    }
}
