//! The manager's server process: CPython's `multiprocessing.managers.Server`, with the
//! bookkeeping CPython lacks for clients that die.
//!
//! Threads: the main thread polls the listening socket, the owner's control channel, a wake pipe,
//! the pidfd of every mproc client process, and the connections of calls that block; each
//! accepted connection gets a thread that authenticates it and then serves its requests in
//! order (blocking calls block that thread, as in CPython).
//!
//! References: an object lives while anything holds a reference to it, and every reference has
//! a holder: an mproc client *session* (one per client process; counted per object, so that a
//! session's references go when its process dies), CPython's anonymous count (CPython's clients
//! `incref`/`decref` on fresh connections, as with CPython's server), a *transfer* (a proxy
//! serialised by one process for another: the receiver adopts it), an *internal* holder (a
//! container that stores a proxy of this server), or a *pending* reply (a proxy returned in a
//! reply, held until the connection's next request has been handled or the connection closes,
//! so that the client can take its own reference first).
//!
//! Dead clients: an mproc session ends when its process dies (its pidfd, from the peer
//! credentials of its first connection) or, where the peer's pid is unknown (TCP), when its last
//! connection closes; then its references are dropped and every lock it owned is released, the
//! next acquirer being told. A CPython connection that closes releases the locks it owned. A
//! call blocked for a client whose connection hangs up or whose session ends is cancelled, and a
//! reply that cannot be delivered is undone (a lock taken is released, a queue item put back).

use super::call::{Call, Cancel, Host, Owner, Undo};
use super::objects::{Kind, Obj};
use super::wire::{self, Outgoing, PyErr, Request, Token};
use crate::connection::{Address, Connection, Listener};
use crate::pickle::{self, Dict, ReadOptions, Value};
use crate::sys::{self, Watch};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the server process is started with.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ServerArgs {
    /// The listening socket, bound by the owner.
    pub listener: ListenFd,
    /// Its address, as [`Address::parse`] reads it back.
    pub address: String,
    pub authkey: Vec<u8>,
    /// The owner's control channel: a `shutdown` request, or end of file when the owner (and any
    /// fork child that inherited its end) is gone.
    pub control: Connection,
    /// A directory made for the socket, removed with it.
    pub cleanup_dir: Option<PathBuf>,
}

/// A listening socket as a start argument (inherited under fork, passed by `SCM_RIGHTS`
/// otherwise).
#[derive(Debug)]
pub(crate) struct ListenFd(pub OwnedFd);

impl Serialize for ListenFd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::reduction::serialize_fd(self.0.as_fd(), "Listener", s)
    }
}

impl<'de> Deserialize<'de> for ListenFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::reduction::deserialize_fd(d).map(ListenFd)
    }
}

/// The server process's target.
pub(crate) fn run(args: ServerArgs) -> i32 {
    let address = match Address::parse(&args.address) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mproc manager: bad address {:?}: {e}", args.address);
            return 1;
        }
    };
    let listener = Listener::from_fd(args.listener.0, address.clone(), Some(args.authkey));
    let server = match Server::new(listener, address) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("mproc manager: cannot start: {e}");
            return 1;
        }
    };
    server.main_loop(&args.control);
    // Close (and remove) the socket, then its directory; client threads end with the process.
    drop(server);
    if let Some(dir) = args.cleanup_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    0
}

#[derive(Debug)]
struct Entry {
    obj: Arc<Obj>,
    refs: usize,
}

#[derive(Debug, Default)]
struct Session {
    pidfd: Option<Arc<OwnedFd>>,
    conns: usize,
    refs: HashMap<u64, usize>,
}

#[derive(Debug, Default)]
struct Registry {
    objects: HashMap<u64, Entry>,
    next_id: u64,
    sessions: HashMap<u128, Session>,
    transfers: HashMap<u64, u64>,
    next_transfer: u64,
}

/// Who holds a reference.
#[derive(Clone, Copy, Debug)]
enum Holder {
    Session(u128),
    /// CPython's clients' count, and the pending and internal holders, which the server tracks
    /// itself.
    Anonymous,
}

impl Registry {
    fn incref(&mut self, id: u64, holder: Holder) -> Result<(), PyErr> {
        let entry = self
            .objects
            .get_mut(&id)
            .ok_or_else(|| PyErr::Key(Value::Str(format!("{id:x}"))))?;
        if let Holder::Session(s) = holder {
            let sess = self
                .sessions
                .get_mut(&s)
                .ok_or_else(|| PyErr::Runtime("the client's session has ended".into()))?;
            *sess.refs.entry(id).or_default() += 1;
        }
        entry.refs += 1;
        Ok(())
    }

    /// Drops a reference; the objects whose last reference it was are returned, to be released
    /// outside the registry's lock.
    fn decref(&mut self, id: u64, holder: Holder, dead: &mut Vec<Arc<Obj>>) -> Result<(), PyErr> {
        if let Holder::Session(s) = holder {
            let held = self
                .sessions
                .get_mut(&s)
                .and_then(|sess| sess.refs.get_mut(&id));
            match held {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    if *n == 0 {
                        self.sessions.get_mut(&s).map(|sess| sess.refs.remove(&id));
                    }
                }
                _ => {
                    return Err(PyErr::Runtime(format!(
                        "decref of object {id:x}, which this client holds no reference to"
                    )))
                }
            }
        }
        let entry = self
            .objects
            .get_mut(&id)
            .ok_or_else(|| PyErr::Key(Value::Str(format!("{id:x}"))))?;
        entry.refs -= 1;
        if entry.refs == 0 {
            dead.push(self.objects.remove(&id).expect("present").obj);
        }
        Ok(())
    }
}

/// A call blocked for a client, watched for that client's going.
struct Watched {
    fd: RawFd,
    session: Option<u128>,
    cancel: Arc<Cancel>,
    obj: Arc<Obj>,
}

/// The server.
pub(crate) struct Server {
    address: Address,
    listener: Listener,
    registry: Mutex<Registry>,
    watched: Mutex<HashMap<u64, Watched>>,
    next_watch: AtomicU64,
    next_conn: AtomicU64,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    stop: AtomicBool,
    read_opts: ReadOptions,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state of one connection.
struct ConnState {
    owner: Owner,
    mproc: bool,
    /// Set when the connection's client is gone (its connection hung up, its process died):
    /// the call blocked for it ends. Once set, the connection is dead: every later call on it
    /// is moot, so one flag serves all its calls.
    cancel: Arc<Cancel>,
    /// Internal references held for proxies in the last reply.
    pending: Vec<u64>,
}

/// What to do after a reply is sent.
enum After {
    Continue,
    Stop,
}

impl Server {
    fn new(listener: Listener, address: Address) -> crate::error::Result<Server> {
        // A client that connects and resets before it is accepted must not block the main
        // loop in `accept`.
        sys::set_nonblocking(listener.as_fd(), true)?;
        let (wake_r, wake_w) = sys::pipe()?;
        sys::set_nonblocking(wake_r.as_fd(), true)?;
        sys::set_nonblocking(wake_w.as_fd(), true)?;
        // Ids start at a random point, so that a proxy of an earlier server at the same address
        // (one that was shut down) names no object of this one.
        let mut seed = [0u8; 4];
        sys::net::random_bytes(&mut seed)?;
        let first_id = (u64::from(u32::from_le_bytes(seed)) << 16) | 1;
        Ok(Server {
            address,
            listener,
            registry: Mutex::new(Registry {
                next_id: first_id,
                next_transfer: 1,
                ..Registry::default()
            }),
            watched: Mutex::new(HashMap::new()),
            next_watch: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            wake_r,
            wake_w,
            stop: AtomicBool::new(false),
            read_opts: wire::server_read_options(),
        })
    }

    fn wake(&self) {
        // A full pipe already holds a wake-up.
        let _ = sys::write(self.wake_w.as_fd(), &[1]);
    }

    fn main_loop(self: &Arc<Self>, control: &Connection) {
        let listen_fd = self.listener.as_fd().as_raw_fd();
        let control_fd = match control.fileno() {
            Ok(fd) => fd,
            Err(_) => return,
        };
        while !self.stop.load(Ordering::SeqCst) {
            // Sessions' pidfds and blocked calls' connections, as they are now.
            let sessions: Vec<(u128, Arc<OwnedFd>)> = locked(&self.registry)
                .sessions
                .iter()
                .filter_map(|(id, s)| s.pidfd.as_ref().map(|fd| (*id, Arc::clone(fd))))
                .collect();
            let watched: Vec<(u64, RawFd)> = locked(&self.watched)
                .iter()
                .map(|(id, w)| (*id, w.fd))
                .collect();
            let mut fds = vec![
                (listen_fd, Watch::Readable),
                (control_fd, Watch::Readable),
                (self.wake_r.as_raw_fd(), Watch::Readable),
            ];
            fds.extend(
                sessions
                    .iter()
                    .map(|(_, fd)| (fd.as_raw_fd(), Watch::Readable)),
            );
            fds.extend(watched.iter().map(|(_, fd)| (*fd, Watch::Hangup)));
            let ready = match sys::poll_watch(&fds, None) {
                Ok(r) => r,
                Err(_) => return,
            };
            if ready[0] {
                self.accept();
            }
            if ready[1] && self.control(control) {
                return;
            }
            if ready[2] {
                let mut buf = [0u8; 64];
                while matches!(sys::read(self.wake_r.as_fd(), &mut buf), Ok(n) if n > 0) {}
            }
            for (i, (session, _)) in sessions.iter().enumerate() {
                if ready[3 + i] {
                    self.end_session(*session);
                }
            }
            let base = 3 + sessions.len();
            for (i, (id, _)) in watched.iter().enumerate() {
                if ready[base + i] {
                    self.cancel_watched(|wid, _| wid == *id);
                }
            }
        }
    }

    /// Accepts a connection and serves it on a thread of its own.
    fn accept(self: &Arc<Self>) {
        let conn = match self.listener.accept_unauthenticated() {
            Ok(c) => c,
            Err(_) => return,
        };
        let server = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("mproc-manager-conn".into())
            .spawn(move || {
                if server.listener.authenticate(&conn).is_ok() {
                    server.serve(conn);
                }
            });
        // Without a thread the connection is dropped: the client sees end of file.
        drop(spawned);
    }

    /// Reads the owner's control channel: `true` to stop (a `shutdown` request, which is
    /// answered first, or end of file).
    fn control(&self, control: &Connection) -> bool {
        let Ok(bytes) = control.recv_bytes() else {
            return true;
        };
        let is_shutdown = pickle::loads_with(&bytes, &self.read_opts)
            .ok()
            .and_then(|v| wire::parse_request(v).ok())
            .is_some_and(|r| r.ident.is_none() && r.method == "shutdown");
        if !is_shutdown {
            let _ = self.send(
                control,
                &wire::reply_traceback("ValueError", "the control channel only takes shutdown"),
            );
            return false;
        }
        let _ = self.send(control, &wire::reply_return(Value::None));
        true
    }

    fn send(&self, conn: &Connection, reply: &Outgoing) -> crate::error::Result<()> {
        let bytes = match reply.encode() {
            Ok(b) => b,
            Err(e) => {
                wire::reply_traceback("PicklingError", &format!("cannot pickle the reply: {e}"))
                    .encode()?
            }
        };
        conn.send_bytes(&bytes)
    }

    /// Serves one authenticated connection until it closes.
    fn serve(self: &Arc<Self>, conn: Connection) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut st = ConnState {
            owner: Owner::Conn(id),
            mproc: false,
            cancel: Arc::new(Cancel::default()),
            pending: Vec::new(),
        };
        let fd = conn.fileno().unwrap_or(-1);
        while let Ok(bytes) = conn.recv_bytes() {
            let previous = std::mem::take(&mut st.pending);
            let (reply, undo, after) = self.handle(&mut st, &conn, fd, &bytes);
            let sent = self.send(&conn, &reply).is_ok();
            self.release_internal(&previous);
            if !sent {
                let pending = std::mem::take(&mut st.pending);
                match undo {
                    // The value goes back into its container, with the references it holds.
                    Some(u) if u.takes_back => u.run(st.owner, reply.value),
                    Some(u) => {
                        u.run(st.owner, Value::None);
                        self.release_internal(&pending);
                    }
                    None => self.release_internal(&pending),
                }
                break;
            }
            if let After::Stop = after {
                self.stop.store(true, Ordering::SeqCst);
                self.wake();
            }
        }
        let pending = std::mem::take(&mut st.pending);
        self.release_internal(&pending);
        self.connection_closed(&st);
    }

    /// Handles one request: the reply, how to undo it if it cannot be delivered, and whether to
    /// stop after it.
    fn handle(
        self: &Arc<Self>,
        st: &mut ConnState,
        conn: &Connection,
        fd: RawFd,
        bytes: &[u8],
    ) -> (Outgoing, Option<Undo>, After) {
        let req = match pickle::loads_with(bytes, &self.read_opts)
            .map_err(|e| e.to_string())
            .and_then(wire::parse_request)
        {
            Ok(r) => r,
            Err(why) => {
                return (
                    wire::reply_traceback("ValueError", &format!("bad request: {why}")),
                    None,
                    After::Continue,
                )
            }
        };
        match req.ident.is_some() {
            false => self.server_method(st, conn, req),
            true => {
                let (reply, undo) = self.object_method(st, fd, req);
                (reply, undo, After::Continue)
            }
        }
    }

    fn object_method(
        self: &Arc<Self>,
        st: &mut ConnState,
        fd: RawFd,
        req: Request,
    ) -> (Outgoing, Option<Undo>) {
        let ident = req.ident.as_deref().unwrap_or_default();
        let obj = parse_id(ident).and_then(|id| {
            locked(&self.registry)
                .objects
                .get(&id)
                .map(|e| Arc::clone(&e.obj))
        });
        let Some(obj) = obj else {
            return (
                wire::reply_traceback("KeyError", &format!("'{ident}'")),
                None,
            );
        };
        let exposed = wire::type_info(obj.typeid).map_or(&[][..], |t| t.exposed);
        let fallback = matches!(req.method.as_str(), "__repr__" | "__str__" | "#GETVALUE");
        if !exposed.contains(&req.method.as_str()) && !fallback {
            return (
                wire::reply_traceback(
                    "AttributeError",
                    &format!(
                        "method '{}' of '{}' object is not in exposed={exposed:?}",
                        req.method, obj.typeid
                    ),
                ),
                None,
            );
        }
        let host = ReqHost {
            server: self,
            watch: Some(WatchFor {
                fd,
                session: st.owner.session(),
                cancel: &st.cancel,
                obj: &obj,
            }),
        };
        let call = Call {
            owner: st.owner,
            mproc: st.mproc,
            cancel: &st.cancel,
            host: &host,
        };
        match obj.call(&call, &req.method, req.args, req.kwds) {
            Ok(out) => {
                let ids = self.own_ids(&out.value);
                if !out.moved {
                    self.hold_internal(&ids);
                }
                st.pending = ids;
                (wire::reply_return(out.value), out.undo)
            }
            Err(e) => (wire::reply_error(e.to_value()), None),
        }
    }

    fn server_method(
        self: &Arc<Self>,
        st: &mut ConnState,
        conn: &Connection,
        req: Request,
    ) -> (Outgoing, Option<Undo>, After) {
        let holder = match st.owner {
            Owner::Thread { session, .. } => Holder::Session(session),
            Owner::Conn(_) => Holder::Anonymous,
        };
        let ok = |v: Value| (wire::reply_return(v), None, After::Continue);
        // Failures of the server's own methods come back as the exception itself (`#ERROR`),
        // which CPython's `dispatch` raises as such, where CPython's server sends a traceback.
        let fail = |e: PyErr| (wire::reply_error(e.to_value()), None, After::Continue);
        let mut args = req.args.into_iter();
        match req.method.as_str() {
            "create" => {
                let Some(Value::Str(typeid)) = args.next() else {
                    return fail(PyErr::Type("create() needs a typeid".into()));
                };
                match self.create(&typeid, args.collect(), req.kwds, holder) {
                    Ok(v) => ok(v),
                    Err(e) => fail(e),
                }
            }
            "incref" | "decref" => {
                let Some(id) = id_arg(args.next()) else {
                    return fail(PyErr::Type(format!("{}() needs an object id", req.method)));
                };
                let mut dead = Vec::new();
                let r = {
                    let mut reg = locked(&self.registry);
                    if req.method == "incref" {
                        reg.incref(id, holder)
                    } else {
                        reg.decref(id, holder, &mut dead)
                    }
                };
                self.bury(dead);
                match r {
                    Ok(()) => ok(Value::None),
                    Err(e) => fail(e),
                }
            }
            "accept_connection" => {
                // CPython's client names its thread; the connection then serves its calls.
                ok(Value::None)
            }
            "mproc_hello" => {
                let session = match args.next() {
                    Some(Value::Bytes(b)) if b.len() == 16 => {
                        u128::from_le_bytes(b.try_into().expect("16 bytes"))
                    }
                    _ => return fail(PyErr::Type("mproc_hello() needs a 16-byte session".into())),
                };
                let thread = args.next().and_then(|v| v.as_i64()).unwrap_or(0) as u64;
                self.join_session(session, conn);
                st.owner = Owner::Thread { session, thread };
                st.mproc = true;
                let mut info = Dict::new();
                info.insert("protocol".into(), Value::Int(1))
                    .expect("a str key is hashable");
                ok(Value::Dict(info))
            }
            "get_methods" => {
                let token = args.next().and_then(|t| wire::token_from_value(&t));
                let typeid = token.and_then(|t| {
                    let id = parse_id(&t.id)?;
                    locked(&self.registry)
                        .objects
                        .get(&id)
                        .map(|e| e.obj.typeid)
                });
                match typeid.and_then(wire::type_info) {
                    Some(t) => ok(Value::Tuple(
                        t.exposed.iter().map(|&m| Value::from(m)).collect(),
                    )),
                    None => fail(PyErr::Key(Value::from("token"))),
                }
            }
            "number_of_objects" => {
                let n = locked(&self.registry).objects.len();
                ok(Value::from(n as u64))
            }
            "dummy" => ok(Value::None),
            "mproc_stats" => {
                let (objects, sessions) = {
                    let reg = locked(&self.registry);
                    (reg.objects.len(), reg.sessions.len())
                };
                let blocked = locked(&self.watched).len();
                let mut d = Dict::new();
                for (k, v) in [
                    ("objects", objects),
                    ("sessions", sessions),
                    ("blocked", blocked),
                ] {
                    d.insert(k.into(), Value::from(v as u64))
                        .expect("a str key is hashable");
                }
                ok(Value::Dict(d))
            }
            "debug_info" => ok(Value::Str(self.debug_info())),
            "shutdown" => (wire::reply_return(Value::None), None, After::Stop),
            "mproc_transfer" => {
                let Some(id) = id_arg(args.next()) else {
                    return fail(PyErr::Type("mproc_transfer() needs an object id".into()));
                };
                let mut reg = locked(&self.registry);
                match reg.incref(id, Holder::Anonymous) {
                    Ok(()) => {
                        let t = reg.next_transfer;
                        reg.next_transfer += 1;
                        reg.transfers.insert(t, id);
                        drop(reg);
                        ok(Value::from(t))
                    }
                    Err(e) => {
                        drop(reg);
                        fail(e)
                    }
                }
            }
            "mproc_adopt" | "mproc_drop_transfer" => {
                let t = args.next().and_then(|v| v.as_i64()).unwrap_or(0) as u64;
                let already_held = args.next().is_some_and(|v| v.is_truthy());
                let mut dead = Vec::new();
                let r = {
                    let mut reg = locked(&self.registry);
                    match reg.transfers.remove(&t) {
                        None => Err(PyErr::Key(Value::from(format!("transfer {t}")))),
                        Some(id) => match (req.method.as_str(), holder) {
                            ("mproc_adopt", Holder::Session(s))
                                if !already_held && reg.sessions.contains_key(&s) =>
                            {
                                let sess = reg.sessions.get_mut(&s).expect("checked");
                                *sess.refs.entry(id).or_default() += 1;
                                Ok(Value::Str(format!("{id:x}")))
                            }
                            _ => reg
                                .decref(id, Holder::Anonymous, &mut dead)
                                .map(|()| Value::Str(format!("{id:x}"))),
                        },
                    }
                };
                self.bury(dead);
                match r {
                    Ok(v) => ok(v),
                    Err(e) => fail(e),
                }
            }
            other => fail(PyErr::Attribute(format!("{other:?} unrecognized"))),
        }
    }

    /// `create(typeid, *args, **kwds)`: `(ident, exposed)`, the object held by `holder`.
    fn create(
        self: &Arc<Self>,
        typeid: &str,
        args: Vec<Value>,
        kwds: Dict,
        holder: Holder,
    ) -> Result<Value, PyErr> {
        let info = wire::type_info(typeid)
            .filter(|t| t.typeid != "Iterator")
            .ok_or_else(|| PyErr::Key(Value::from(typeid)))?;
        let host = ReqHost {
            server: self,
            watch: None,
        };
        let lock_of = |v: &Value| -> Option<Arc<Obj>> {
            let (token, _) = wire::parse_rebuild(v)?;
            if token.address != self.address {
                return None;
            }
            let id = parse_id(&token.id)?;
            locked(&self.registry)
                .objects
                .get(&id)
                .map(|e| Arc::clone(&e.obj))
        };
        let obj = Obj::create(info.typeid, args, kwds, &host, &lock_of)?;
        let id = self.insert(obj, 0);
        locked(&self.registry).incref(id, holder)?;
        Ok(Value::Tuple(vec![
            Value::Str(format!("{id:x}")),
            Value::Tuple(info.exposed.iter().map(|&m| Value::from(m)).collect()),
        ]))
    }

    /// Registers an object with `refs` references; its id.
    fn insert(&self, obj: Obj, refs: usize) -> u64 {
        let mut reg = locked(&self.registry);
        let id = reg.next_id;
        reg.next_id += 1;
        reg.objects.insert(
            id,
            Entry {
                obj: Arc::new(obj),
                refs,
            },
        );
        id
    }

    fn token(&self, typeid: &str, id: u64) -> Token {
        Token {
            typeid: typeid.to_owned(),
            address: self.address.clone(),
            id: format!("{id:x}"),
        }
    }

    /// The ids of this server's objects whose proxies are inside `v`.
    fn own_ids(&self, v: &Value) -> Vec<u64> {
        let mut ids = Vec::new();
        wire::for_each_proxy(v, &mut |t| {
            if t.address == self.address {
                if let Some(id) = parse_id(&t.id) {
                    ids.push(id);
                }
            }
        });
        ids
    }

    /// Takes an internal reference on each of `ids` that still exists (a proxy to an object
    /// already released stays mere data).
    fn hold_internal(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let mut reg = locked(&self.registry);
        for &id in ids {
            let _ = reg.incref(id, Holder::Anonymous);
        }
    }

    fn release_internal(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let mut dead = Vec::new();
        {
            let mut reg = locked(&self.registry);
            for &id in ids {
                let _ = reg.decref(id, Holder::Anonymous, &mut dead);
            }
        }
        self.bury(dead);
    }

    /// Releases objects that lost their last reference: their contents' proxies drop their
    /// references in turn (iteratively, so that a long chain of containers cannot overflow the
    /// stack).
    fn bury(&self, mut dead: Vec<Arc<Obj>>) {
        while let Some(obj) = dead.pop() {
            let ids: Vec<u64> = obj.drain().iter().flat_map(|v| self.own_ids(v)).collect();
            obj.wake_all();
            if ids.is_empty() {
                continue;
            }
            let mut reg = locked(&self.registry);
            for id in ids {
                let _ = reg.decref(id, Holder::Anonymous, &mut dead);
            }
        }
    }

    /// An mproc client's connection joins its session; a new session watches its process.
    fn join_session(&self, session: u128, conn: &Connection) {
        let mut reg = locked(&self.registry);
        let s = reg.sessions.entry(session).or_default();
        s.conns += 1;
        if s.conns == 1 && s.pidfd.is_none() {
            let pid = conn
                .borrow_fd()
                .ok()
                .and_then(|fd| sys::peer_pid(fd).ok().flatten());
            s.pidfd = pid.and_then(|p| sys::pidfd_open(p).ok()).map(Arc::new);
            drop(reg);
            self.wake();
        }
    }

    fn connection_closed(&self, st: &ConnState) {
        match st.owner {
            Owner::Conn(id) => {
                // A CPython client's thread is gone with its connection: so is its hold on locks.
                self.release_locks(&|o| *o == Owner::Conn(id));
            }
            Owner::Thread { session, .. } => {
                let end = {
                    let mut reg = locked(&self.registry);
                    match reg.sessions.get_mut(&session) {
                        Some(s) => {
                            s.conns = s.conns.saturating_sub(1);
                            s.conns == 0 && s.pidfd.is_none()
                        }
                        None => false,
                    }
                };
                if end {
                    self.end_session(session);
                }
            }
        }
    }

    /// A client process is gone: its references are dropped, its locks released, its blocked
    /// calls cancelled.
    fn end_session(&self, session: u128) {
        let removed = locked(&self.registry).sessions.remove(&session);
        self.cancel_watched(|_, w| w.session == Some(session));
        self.release_locks(&|o| o.session() == Some(session));
        let Some(s) = removed else { return };
        let mut dead = Vec::new();
        {
            let mut reg = locked(&self.registry);
            for (id, n) in s.refs {
                for _ in 0..n {
                    let _ = reg.decref(id, Holder::Anonymous, &mut dead);
                }
            }
        }
        self.bury(dead);
    }

    /// Releases every lock (and condition's lock) whose owner `gone` names.
    fn release_locks(&self, gone: &dyn Fn(&Owner) -> bool) {
        let objs: Vec<Arc<Obj>> = locked(&self.registry)
            .objects
            .values()
            .filter(|e| e.obj.lock_core().is_some())
            .map(|e| Arc::clone(&e.obj))
            .collect();
        for obj in objs {
            if let Some(l) = obj.lock_core() {
                l.owner_gone(gone);
            }
        }
    }

    /// Cancels the blocked calls `which` selects and wakes them.
    fn cancel_watched(&self, which: impl Fn(u64, &Watched) -> bool) {
        let hit: Vec<(Arc<Cancel>, Arc<Obj>)> = locked(&self.watched)
            .iter()
            .filter(|(id, w)| which(**id, w))
            .map(|(_, w)| (Arc::clone(&w.cancel), Arc::clone(&w.obj)))
            .collect();
        for (cancel, obj) in hit {
            cancel.set();
            obj.wake_all();
        }
    }

    fn debug_info(&self) -> String {
        let entries: Vec<(u64, usize, Arc<Obj>)> = locked(&self.registry)
            .objects
            .iter()
            .map(|(id, e)| (*id, e.refs, Arc::clone(&e.obj)))
            .collect();
        let mut entries = entries;
        entries.sort_by_key(|e| e.0);
        entries
            .iter()
            .map(|(id, refs, obj)| {
                let r = obj.repr().unwrap_or_default();
                let r: String = r.chars().take(75).collect();
                format!("  {id:x}:       refcount={refs}\n    {r}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn parse_id(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// An object id given as an argument.
fn id_arg(v: Option<Value>) -> Option<u64> {
    v.as_ref().and_then(Value::as_str).and_then(parse_id)
}

/// The server's services for one object call.
struct ReqHost<'a> {
    server: &'a Arc<Server>,
    /// What a blocked call watches: the caller's connection and session, the call's cancel
    /// flag, the object (none while `create` builds one, which never blocks).
    watch: Option<WatchFor<'a>>,
}

struct WatchFor<'a> {
    fd: RawFd,
    session: Option<u128>,
    cancel: &'a Arc<Cancel>,
    obj: &'a Arc<Obj>,
}

/// Removes a watch when the blocked call ends.
struct WatchGuard {
    server: Arc<Server>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        locked(&self.server.watched).remove(&self.id);
    }
}

impl Host for ReqHost<'_> {
    fn hold(&self, v: &Value) {
        self.server.hold_internal(&self.server.own_ids(v));
    }

    fn release(&self, v: &Value) {
        self.server.release_internal(&self.server.own_ids(v));
    }

    fn iterator(&self, items: Vec<Value>) -> Value {
        new_iterator(self.server, items)
    }

    fn watch(&self) -> Box<dyn std::any::Any> {
        let Some(w) = &self.watch else {
            return Box::new(());
        };
        let id = self.server.next_watch.fetch_add(1, Ordering::Relaxed);
        locked(&self.server.watched).insert(
            id,
            Watched {
                fd: w.fd,
                session: w.session,
                cancel: Arc::clone(w.cancel),
                obj: Arc::clone(w.obj),
            },
        );
        // The session may have ended before the watch was in place.
        if let Some(s) = w.session {
            if !locked(&self.server.registry).sessions.contains_key(&s) {
                w.cancel.set();
            }
        }
        self.server.wake();
        Box::new(WatchGuard {
            server: Arc::clone(self.server),
            id,
        })
    }
}

/// A new iterator object over `items`, with one (internal) reference that the reply carries.
fn new_iterator(server: &Server, items: Vec<Value>) -> Value {
    let obj = Obj {
        typeid: "Iterator",
        kind: Kind::Iterator(super::objects::Cell::new(items.into())),
    };
    let id = server.insert(obj, 1);
    wire::rebuild_proxy(&server.token("Iterator", id), None)
}
