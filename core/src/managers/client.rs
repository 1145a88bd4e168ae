//! A process's side of a manager: one [`Client`] per process and manager address, one
//! persistent authenticated connection per thread (no handshake per call), calls with a bound on
//! the wait, and the process's references to the manager's objects.
//!
//! Every connection starts with `mproc_hello`, naming the client's *session* (random, one per
//! process: a fork child makes its own) and the calling thread's token; the server ties the
//! session's references and the locks its threads own to the client process, and releases them
//! when that process dies. Against a server that does not know `mproc_hello` (CPython's), the
//! client falls back to CPython's `accept_connection`.
//!
//! References: the session holds one server reference per object while this process has at
//! least one proxy for it (counted here). A reference held before this process forked may be
//! needed by the fork child, which has copies of the proxies and takes its own reference when it
//! first uses one: such a reference is released only once this process has no child left (its
//! manager servers aside), or when the process ends.
//!
//! Waits: a call waits for its reply as long as the manager's call timeout allows (none unless
//! set); a blocking call (`acquire`, `get`, `wait`, ...) given a timeout passes it to the server
//! and waits for the reply at most that long plus [`REPLY_GRACE`]. A call that gives up closes
//! its connection (the server then undoes what the call would have taken) and returns
//! [`Error::Timeout`]; a connection that ends is [`Error::ManagerGone`].

use super::wire::{self, Reply};
use crate::connection::{self, Address, Connection};
use crate::error::{Error, Result};
use crate::pickle::{self, Dict, ReadOptions, Value};
use crate::state;
use crate::sys;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How much longer than a blocking call's own timeout the client waits for the server's answer,
/// before it gives the server up for stalled (stopped, or far behind).
pub const REPLY_GRACE: Duration = Duration::from_secs(1);

/// How a call waits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// An ordinary call: bounded by the client's call timeout, if any.
    Quick,
    /// A call that blocks in the server for at most this long (`None`: for ever).
    Block(Option<Duration>),
    /// A clean-up call (a `decref` when a proxy is dropped): bounded by [`CLEANUP_BOUND`] (or
    /// the call timeout, if shorter), so that dropping a proxy of a stopped manager cannot
    /// hang.
    Cleanup,
}

/// How long a clean-up call (from a destructor) may take, connecting included.
pub const CLEANUP_BOUND: Duration = Duration::from_secs(5);

/// What kind of server is at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// An mproc server: sessions, transfers, `(acquired, owner_died)` from `acquire`.
    Mproc,
    /// CPython's server.
    CPython,
}

/// A reference this process holds.
#[derive(Debug)]
struct HeldRef {
    /// How many proxies of this process name the object.
    local: usize,
    /// [`sys::forks_made`] when the reference was taken.
    forks: u64,
}

#[derive(Debug, Default)]
struct Held {
    refs: HashMap<String, HeldRef>,
    /// References no proxy of this process needs any more, kept for fork children.
    deferred: Vec<(String, u64)>,
}

/// This process's side of one manager.
#[derive(Debug)]
pub(crate) struct Client {
    id: u64,
    /// This client itself, for the thread-local connection table (which must not keep it
    /// alive).
    me: Weak<Client>,
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    pid: u32,
    session: [u8; 16],
    pub(crate) call_timeout: Option<Duration>,
    held: Mutex<Held>,
    any_deferred: AtomicBool,
    dialect: OnceLock<Dialect>,
    read_opts: ReadOptions,
}

static CLIENTS: Mutex<Vec<Weak<Client>>> = Mutex::new(Vec::new());
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

/// The pids of this process's manager servers: a child that is one holds no proxy copies.
pub(crate) static SERVER_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// This thread's connections: to which client, and the connection.
    static CONNS: RefCell<Vec<(Weak<Client>, u64, Connection)>> = const { RefCell::new(Vec::new()) };
    /// This thread's token, sent in `mproc_hello` (lock owners are threads).
    static THREAD: Cell<u64> = const { Cell::new(0) };
    /// The client whose reply is being decoded on this thread: proxies in it take their
    /// reference at once, on this thread's connection, before any other request.
    static REPLY: RefCell<Option<Arc<Client>>> = const { RefCell::new(None) };
}

fn thread_token() -> u64 {
    THREAD.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

fn current_pid() -> u32 {
    sys::current_ids().0
}

/// The current process's authentication key (`current_process().authkey`).
pub(crate) fn process_authkey() -> Vec<u8> {
    state::lock().me.authkey.clone()
}

impl Client {
    /// This process's client of the manager at `address`: the existing one, or a new one with
    /// `authkey` (default: this process's key) and `call_timeout`.
    pub(crate) fn get(
        address: &Address,
        authkey: Option<&[u8]>,
        call_timeout: Option<Duration>,
    ) -> Result<Arc<Client>> {
        let pid = current_pid();
        let mut clients = locked(&CLIENTS);
        clients.retain(|w| w.strong_count() > 0);
        if let Some(c) = clients
            .iter()
            .filter_map(Weak::upgrade)
            .find(|c| c.pid == pid && &c.address == address)
        {
            return Ok(c);
        }
        let mut session = [0u8; 16];
        sys::net::random_bytes(&mut session)?;
        // Installs the fork counter before any reference is taken.
        sys::forks_made();
        let c = Arc::new_cyclic(|me| Client {
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
            address: address.clone(),
            authkey: authkey.map_or_else(process_authkey, <[u8]>::to_vec),
            pid,
            session,
            call_timeout,
            held: Mutex::new(Held::default()),
            any_deferred: AtomicBool::new(false),
            dialect: OnceLock::new(),
            read_opts: wire::client_read_options(),
        });
        clients.push(Arc::downgrade(&c));
        Ok(c)
    }

    /// A new client of the manager at `address` for this process (a manager just started
    /// there), in place of any older one for that address.
    pub(crate) fn fresh(
        address: &Address,
        authkey: &[u8],
        call_timeout: Option<Duration>,
    ) -> Result<Arc<Client>> {
        let pid = current_pid();
        locked(&CLIENTS).retain(|w| {
            w.upgrade()
                .is_some_and(|c| !(c.pid == pid && &c.address == address))
        });
        Client::get(address, Some(authkey), call_timeout)
    }

    /// Whether this client belongs to the current process (a fork child has copies of its
    /// parent's).
    pub(crate) fn is_current(&self) -> bool {
        self.pid == current_pid()
    }

    /// The server's dialect (learned on the first connection).
    pub(crate) fn dialect(&self) -> Result<Dialect> {
        if let Some(d) = self.dialect.get() {
            return Ok(*d);
        }
        self.call(None, "dummy", vec![], Dict::new(), Wait::Quick)?;
        Ok(*self.dialect.get().unwrap_or(&Dialect::CPython))
    }

    fn gone(&self, why: impl std::fmt::Display) -> Error {
        Error::ManagerGone(format!("the manager at {}: {why}", self.address))
    }

    /// Calls `method` on the object `ident` (`None`: the server's own method) and returns the
    /// value of its `#RETURN` reply, or the error its reply names.
    pub(crate) fn call(
        &self,
        ident: Option<&str>,
        method: &str,
        args: Vec<Value>,
        kwds: Dict,
        wait: Wait,
    ) -> Result<Value> {
        let ident = ident.map_or(Value::None, Value::from);
        self.call_with(&ident, method, args, kwds, wait)
    }

    /// As [`call`](Client::call), with the ident as the `str` value (or `None`) the request
    /// carries (a proxy keeps its own).
    pub(crate) fn call_with(
        &self,
        ident: &Value,
        method: &str,
        args: Vec<Value>,
        kwds: Dict,
        wait: Wait,
    ) -> Result<Value> {
        if self.any_deferred.load(Ordering::Relaxed) {
            self.flush_deferred();
        }
        let bound = match wait {
            Wait::Quick => self.call_timeout,
            Wait::Block(None) => None,
            Wait::Block(Some(t)) => Some(t.saturating_add(REPLY_GRACE)),
            Wait::Cleanup => Some(
                self.call_timeout
                    .map_or(CLEANUP_BOUND, |t| t.min(CLEANUP_BOUND)),
            ),
        };
        let deadline = bound.and_then(|b| Instant::now().checked_add(b));
        let request = wire::encode_request(ident, method, args, kwds)?;
        let bytes =
            if matches!(ident, Value::None) && self.learn_dialect(deadline)? == Dialect::CPython {
                self.exchange_once(&request, deadline)?
            } else {
                self.exchange(&request, deadline)?
            };
        let reply = pickle::loads_with(&bytes, &self.read_opts)?;
        match wire::parse_reply(reply)? {
            Reply::Return(v) => Ok(v),
            Reply::Error(e) => Err(wire::error_from_exception(&e)),
            Reply::Traceback(t) => Err(wire::error_from_traceback(&t, ident.as_str())),
            Reply::Proxy(p) => proxy_reply(p),
        }
    }

    /// The server's dialect, learned by opening this thread's connection if no connection
    /// has yet.
    fn learn_dialect(&self, deadline: Option<Instant>) -> Result<Dialect> {
        if let Some(d) = self.dialect.get() {
            return Ok(*d);
        }
        let conn = self.open(deadline)?;
        put_conn(self, conn);
        Ok(*self.dialect.get().unwrap_or(&Dialect::CPython))
    }

    /// Sends one request and receives its reply on a connection of its own, closed after: how
    /// CPython's server takes its own methods (`incref`, `decref`, `create`, ...), which a
    /// connection that has called `accept_connection` cannot reach.
    fn exchange_once(&self, request: &[u8], deadline: Option<Instant>) -> Result<Vec<u8>> {
        let conn = self.connect(deadline)?;
        conn.send_bytes(request)
            .and_then(|()| match deadline {
                None => conn.recv_bytes(),
                Some(d) => conn.recv_bytes_timeout(left(d)),
            })
            .map_err(|e| self.lost(e))
    }

    /// Opens an authenticated connection, not yet greeted.
    fn connect(&self, deadline: Option<Instant>) -> Result<Connection> {
        let timeout = deadline
            .map(left)
            .unwrap_or(connection::DEFAULT_HANDSHAKE_TIMEOUT);
        connection::Client::builder(&self.address)
            .authkey(Some(&self.authkey))
            .timeout(Some(timeout))
            .open()
            .map_err(|e| self.lost(e))
    }

    /// Sends one request and receives its reply on this thread's connection (opened and
    /// greeted on first use).
    fn exchange(&self, request: &[u8], deadline: Option<Instant>) -> Result<Vec<u8>> {
        let conn = match take_conn(self.id) {
            Some(c) => c,
            None => self.open(deadline)?,
        };
        let r = conn.send_bytes(request).and_then(|()| match deadline {
            None => conn.recv_bytes(),
            Some(d) => conn.recv_bytes_timeout(left(d)),
        });
        match r {
            Ok(bytes) => {
                put_conn(self, conn);
                Ok(bytes)
            }
            // The reply may still come; the connection is out of step: close it (the server
            // undoes what it cannot deliver).
            Err(Error::Timeout) => Err(Error::Timeout),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// The error for a connection that failed.
    fn lost(&self, e: Error) -> Error {
        match e {
            Error::Eof => self.gone("it closed the connection (shut down, killed or died)"),
            Error::Io(io)
                if matches!(
                    io.raw_os_error(),
                    Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED | libc::ENOENT)
                ) =>
            {
                self.gone(io)
            }
            other => other,
        }
    }

    /// Opens and greets a connection for this thread.
    fn open(&self, deadline: Option<Instant>) -> Result<Connection> {
        let conn = self.connect(deadline)?;
        let name = state::lock().me.name.clone();
        let hello = |method: &str, args: Vec<Value>| -> Result<Reply> {
            let req = pickle::dumps(&wire::request(None, method, args, Dict::new()))?;
            conn.send_bytes(&req).map_err(|e| self.lost(e))?;
            let bytes = match deadline {
                None => conn.recv_bytes_timeout(connection::DEFAULT_HANDSHAKE_TIMEOUT),
                Some(d) => conn.recv_bytes_timeout(left(d)),
            }
            .map_err(|e| self.lost(e))?;
            wire::parse_reply(pickle::loads_with(&bytes, &self.read_opts)?)
        };
        let dialect = match self.dialect.get() {
            Some(Dialect::CPython) => Dialect::CPython,
            _ => {
                let args = vec![
                    Value::Bytes(self.session.to_vec()),
                    Value::from(thread_token()),
                    Value::Str(name.clone()),
                ];
                match hello("mproc_hello", args)? {
                    Reply::Return(_) => Dialect::Mproc,
                    _ => {
                        // CPython's server answers an unknown method with a traceback and
                        // closes the connection: greet it again on a fresh one.
                        let _ = self.dialect.set(Dialect::CPython);
                        drop(conn);
                        return self.open(deadline);
                    }
                }
            }
        };
        if dialect == Dialect::CPython {
            match hello("accept_connection", vec![Value::Str(name)])? {
                Reply::Return(_) => {}
                Reply::Error(e) => return Err(wire::error_from_exception(&e)),
                Reply::Traceback(t) => return Err(wire::error_from_traceback(&t, None)),
                Reply::Proxy(_) => {}
            }
        }
        let _ = self.dialect.set(dialect);
        Ok(conn)
    }

    /// Creates an object (`create(typeid, *args)`): its id and exposed methods, the reference
    /// held by this process.
    pub(crate) fn create(
        self: &Arc<Self>,
        typeid: &str,
        mut args: Vec<Value>,
        kwds: Dict,
    ) -> Result<(String, Option<Vec<String>>)> {
        args.insert(0, Value::from(typeid));
        let v = self.call(None, "create", args, kwds, Wait::Quick)?;
        let (id, exposed) = match v {
            Value::Tuple(items) if items.len() == 2 => {
                let mut it = items.into_iter();
                let id = it.next().and_then(|v| v.as_str().map(str::to_owned));
                let exposed = match it.next() {
                    Some(Value::Tuple(e) | Value::List(e)) => Some(
                        e.iter()
                            .filter_map(|m| m.as_str().map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                };
                (id, exposed)
            }
            _ => (None, None),
        };
        let id = id.ok_or_else(|| {
            Error::Deserialize("a manager's create() must answer (ident, exposed)".into())
        })?;
        // The creation's reference is this session's (CPython's server counts it anonymously,
        // which serves as well: our decref drops it).
        self.note_held(&id);
        Ok((id, exposed))
    }

    /// Counts a proxy for a reference the server already holds for this session.
    fn note_held(&self, id: &str) {
        let mut h = locked(&self.held);
        match h.refs.get_mut(id) {
            Some(r) => r.local += 1,
            None => {
                h.refs.insert(
                    id.to_owned(),
                    HeldRef {
                        local: 1,
                        forks: sys::forks_made(),
                    },
                );
            }
        }
    }

    /// Counts a new proxy of this process for object `id`, taking the session's reference if it
    /// has none.
    pub(crate) fn acquire_ref(&self, id: &str) -> Result<()> {
        {
            let mut h = locked(&self.held);
            if let Some(r) = h.refs.get_mut(id) {
                r.local += 1;
                return Ok(());
            }
            if let Some(i) = h.deferred.iter().position(|(d, _)| d == id) {
                let (_, forks) = h.deferred.swap_remove(i);
                h.refs.insert(id.to_owned(), HeldRef { local: 1, forks });
                return Ok(());
            }
            h.refs.insert(
                id.to_owned(),
                HeldRef {
                    local: 1,
                    forks: sys::forks_made(),
                },
            );
        }
        let r = self.call(
            None,
            "incref",
            vec![Value::from(id)],
            Dict::new(),
            Wait::Quick,
        );
        if let Err(e) = r {
            self.forget(id);
            return Err(match e {
                Error::KeyError(_) => self.gone(format!("it holds no object with id {id:?}")),
                Error::Remote { kind, .. } if kind == "KeyError" => {
                    self.gone(format!("it holds no object with id {id:?}"))
                }
                e => e,
            });
        }
        Ok(())
    }

    /// Undoes a count that never got its reference.
    fn forget(&self, id: &str) {
        let mut h = locked(&self.held);
        if let Some(r) = h.refs.get_mut(id) {
            r.local -= 1;
            if r.local == 0 {
                h.refs.remove(id);
            }
        }
    }

    /// Adopts a transfer reference as this session's (or drops it, when this process holds a
    /// reference already), counting a new proxy.
    pub(crate) fn adopt(&self, id: &str, transfer: u64) -> Result<()> {
        let already = {
            let mut h = locked(&self.held);
            if let Some(r) = h.refs.get_mut(id) {
                r.local += 1;
                true
            } else {
                h.refs.insert(
                    id.to_owned(),
                    HeldRef {
                        local: 1,
                        forks: sys::forks_made(),
                    },
                );
                false
            }
        };
        let r = self.call(
            None,
            "mproc_adopt",
            vec![Value::from(transfer), Value::Bool(already)],
            Dict::new(),
            Wait::Quick,
        );
        if let Err(e) = r {
            self.forget(id);
            return Err(match e {
                Error::KeyError(_) => self.gone(format!(
                    "the reference passed with the proxy of object {id:?} no longer exists"
                )),
                e => e,
            });
        }
        Ok(())
    }

    /// A transfer reference for a proxy of object `id` that is being serialised for another
    /// process.
    pub(crate) fn transfer(&self, id: &str) -> Result<u64> {
        let v = self.call(
            None,
            "mproc_transfer",
            vec![Value::from(id)],
            Dict::new(),
            Wait::Quick,
        )?;
        v.as_i64()
            .map(|t| t as u64)
            .ok_or_else(|| Error::Deserialize("mproc_transfer() must answer an int".into()))
    }

    /// Drops a transfer reference nobody adopted (best effort).
    pub(crate) fn drop_transfer(&self, transfer: u64) {
        let _ = self.call(
            None,
            "mproc_drop_transfer",
            vec![Value::from(transfer)],
            Dict::new(),
            Wait::Cleanup,
        );
    }

    /// A proxy of this process for object `id` is gone: the session's reference goes with the
    /// last one (or later, if a fork child may have copies).
    pub(crate) fn release_ref(&self, id: &str) {
        let forks = {
            let mut h = locked(&self.held);
            let Some(r) = h.refs.get_mut(id) else { return };
            r.local -= 1;
            if r.local > 0 {
                return;
            }
            h.refs.remove(id).map(|r| r.forks)
        };
        let Some(forks) = forks else { return };
        if forks != sys::forks_made() {
            // A fork child may have a copy. Whether one is alive is asked at the next call (a
            // child forked just now may not be registered yet: its start argument is dropped
            // here, inside the start).
            locked(&self.held).deferred.push((id.to_owned(), forks));
            self.any_deferred.store(true, Ordering::Relaxed);
            return;
        }
        self.decref(id);
    }

    fn decref(&self, id: &str) {
        // Best effort: a manager that is gone has released everything anyway.
        let _ = self.call(
            None,
            "decref",
            vec![Value::from(id)],
            Dict::new(),
            Wait::Cleanup,
        );
    }

    /// Releases the references kept for fork children once no child is left.
    fn flush_deferred(&self) {
        if has_children() {
            return;
        }
        let ids: Vec<(String, u64)> = std::mem::take(&mut locked(&self.held).deferred);
        self.any_deferred.store(false, Ordering::Relaxed);
        for (id, _) in ids {
            self.decref(&id);
        }
    }
}

/// Whether this process has children other than its manager servers (which hold no proxies).
fn has_children() -> bool {
    let children = crate::children::active_children();
    if children.is_empty() {
        return false;
    }
    let servers = locked(&SERVER_PIDS);
    children.iter().any(|c| !servers.contains(&c.pid))
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Takes this thread's connection to client `id` out of the table (closing the connections of
/// clients that are gone).
fn take_conn(id: u64) -> Option<Connection> {
    CONNS.with(|c| {
        let mut conns = c.borrow_mut();
        conns.retain(|(w, _, _)| w.strong_count() > 0);
        let i = conns.iter().position(|(_, cid, _)| *cid == id)?;
        Some(conns.swap_remove(i).2)
    })
}

fn put_conn(client: &Client, conn: Connection) {
    CONNS.with(|c| c.borrow_mut().push((client.me.clone(), client.id, conn)));
}

/// A `#PROXY` reply (CPython's server, for a method whose result is a new object) as the proxy
/// value mproc's server sends instead.
fn proxy_reply(payload: Value) -> Result<Value> {
    if let Value::Tuple(items) = &payload {
        if let [exposed, token] = &items[..] {
            if let Some(t) = wire::token_from_value(token) {
                let exposed: Option<Vec<String>> = match exposed {
                    Value::Tuple(e) | Value::List(e) => Some(
                        e.iter()
                            .filter_map(|m| m.as_str().map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                };
                return Ok(wire::rebuild_proxy(&t, exposed.as_deref()));
            }
        }
    }
    Err(Error::Deserialize(format!(
        "a manager's #PROXY reply must be (exposed, token), not {payload}"
    )))
}

/// Decodes a reply's value as `T`, proxies inside taking their references through `client` at
/// once.
pub(crate) fn decode_reply<T: serde::de::DeserializeOwned>(
    client: &Arc<Client>,
    v: Value,
) -> Result<T> {
    let previous = REPLY.with(|r| r.borrow_mut().replace(Arc::clone(client)));
    let out = pickle::from_value(v);
    REPLY.with(|r| *r.borrow_mut() = previous);
    out
}

/// The client whose reply is being decoded on this thread, if it serves `address`.
pub(crate) fn replying_client(address: &Address) -> Option<Arc<Client>> {
    REPLY.with(|r| {
        r.borrow()
            .as_ref()
            .filter(|c| &c.address == address && c.is_current())
            .cloned()
    })
}
