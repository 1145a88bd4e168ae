//! Managers: a server process whose objects any process uses through proxies (Python's
//! `multiprocessing.Manager()`, `SyncManager`).
//!
//! [`Context::manager`] (or [`Manager::new`] for the default context, [`Manager::builder`] for
//! options) starts the server under the context's start method and returns a [`Manager`]. Its
//! typeid methods create objects in the server and return proxies: [`DictProxy`],
//! [`ListProxy`], [`NamespaceProxy`], [`LockProxy`], [`RLockProxy`], [`SemaphoreProxy`],
//! [`ConditionProxy`], [`EventProxy`], [`BarrierProxy`], [`QueueProxy`], [`ValueProxy`],
//! [`ArrayProxy`]. A proxy is a start argument like any other: the child connects back to the
//! server, with the key it inherited. Proxies can be stored inside managed containers, and used
//! by whichever process reads them.
//!
//! ```no_run
//! use mproc::{DictProxy, ListProxy};
//! use mproc::pickle::Value;
//!
//! fn f(d: DictProxy, l: ListProxy) -> mproc::Result<()> {
//!     d.set_item(1.into(), "1".into())?;
//!     d.set_item("2".into(), 2.into())?;
//!     d.set_item(0.25.into(), Value::None)?;
//!     l.reverse()
//! }
//!
//! fn main() -> mproc::Result<()> {
//!     mproc::init();
//!     let manager = mproc::Manager::new()?;
//!     let d = manager.dict()?;
//!     let l = manager.list_from((0..10).map(Value::from))?;
//!     let p = mproc::Process::new(f, (d.clone(), l.clone()));
//!     p.start()?;
//!     p.join()?;
//!     println!("{d}"); // {1: '1', '2': 2, 0.25: None}
//!     println!("{l}"); // [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//!     Ok(())
//! } // the manager shuts down here
//! ```
//!
//! # The wire
//! CPython's own: the connection's framing, CPython's HMAC handshake, and a
//! pickle per message, so that CPython's clients can use an mproc manager, and mproc's proxies
//! ([`Proxy::connect`]) a manager of CPython's.
//!
//! # What mproc guarantees beyond CPython
//! - **No hang on a gone manager.** A call on a manager that was shut down, killed or died is
//!   [`Error::ManagerGone`] as soon as its connection ends. A blocking call given a timeout waits
//!   for its answer at most that long plus [`REPLY_GRACE`], even if the manager is stopped
//!   (`SIGSTOP`); other calls are bounded by [`ManagerBuilder::call_timeout`] when set, in
//!   every process the manager's proxies reach (a proxy carries it to a child); the calls a
//!   dropped proxy makes (`decref`) by [`CLEANUP_BOUND`] (or the call timeout, if shorter).
//! - **Dead clients release what they held.** Objects held only by a process that dies are
//!   released; a lock it held is released, and the next owner is told
//!   ([`AcquireGuard::owner_died`]); a call the server was blocked in for it (an `acquire`, a
//!   `get`) ends without taking anything.
//! - **Proxies in flight keep their object alive** (see [`Proxy`]'s module documentation).
//! - **One connection per thread**, authenticated once; CPython opens one per `create`,
//!   `incref` and `decref`.

mod call;
mod client;
mod objects;
mod proxy;
mod pyops;
mod server;
mod sync;
mod sync_proxy;
pub(crate) mod wire;

pub use client::{CLEANUP_BOUND, REPLY_GRACE};
pub use proxy::{ArrayProxy, DictProxy, ListProxy, NamespaceProxy, Proxy, ValueProxy};
pub use sync_proxy::{
    AcquireGuard, BarrierProxy, ConditionProxy, EventProxy, LockProxy, ManagedLock, QueueProxy,
    RLockProxy, SemaphoreProxy,
};

use crate::connection::{Address, Connection, Listener, ToAddress};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pickle::{self, Dict, Value};
use crate::process::Process;
use crate::sys;
use client::{Client, Wait};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long each step of a shutdown may take: the answer to `shutdown`, the server's exit, its
/// exit after `SIGTERM`.
pub const SHUTDOWN_STEP: Duration = Duration::from_secs(1);

/// The current process's authentication key (Python's `current_process().authkey`): 32 random
/// bytes in the main process, inherited by every child. A manager uses it unless given another,
/// and a proxy that reaches a process connects back with it.
pub fn current_authkey() -> Vec<u8> {
    client::process_authkey()
}

/// Sets the current process's authentication key (Python's `current_process().authkey = key`);
/// children started afterwards inherit it.
pub fn set_current_authkey(key: &[u8]) {
    crate::state::lock().me.authkey = key.to_vec();
}

/// What a manager's server holds, from [`Manager::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ManagerStats {
    /// Objects alive (with at least one reference).
    pub objects: usize,
    /// mproc client processes connected (or holding references).
    pub sessions: usize,
    /// Calls blocked in the server for a client.
    pub blocked: usize,
}

/// Settings for a [`Manager`], from [`Manager::builder`] or [`Context::manager_builder`].
#[derive(Clone, Debug)]
pub struct ManagerBuilder {
    ctx: Context,
    address: Option<std::result::Result<Address, String>>,
    authkey: Option<Vec<u8>>,
    call_timeout: Option<Duration>,
}

impl ManagerBuilder {
    /// The context whose start method starts the server (default: the default context).
    pub fn context(mut self, ctx: Context) -> Self {
        self.ctx = ctx;
        self
    }

    /// Where the server listens: a Unix path, an abstract name (`"@name"`) or a TCP address.
    /// Default: a socket in a private directory (mode 0700) of the temporary directory, removed
    /// at shutdown.
    pub fn address<A: ToAddress + ?Sized>(mut self, address: &A) -> Self {
        self.address = Some(address.to_address().map_err(|e| e.to_string()));
        self
    }

    /// The key clients authenticate with (default: [`current_authkey`], which children inherit).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// How long this process waits for the answer to an ordinary call (`None`, the default: as
    /// long as it takes; blocking calls with a timeout are bounded anyway). A call that runs out
    /// is [`Error::Timeout`].
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Starts the server and connects to it.
    pub fn start(self) -> Result<Manager> {
        Manager::start(self)
    }
}

/// A manager: the handle on a server process that holds Python-like objects for every process
/// that has a proxy (Python's `multiprocessing.Manager()`; see the [module
/// documentation](self)). Dropping it shuts the server down (as does
/// [`shutdown`](Manager::shutdown)); proxies then answer [`Error::ManagerGone`].
pub struct Manager {
    address: Address,
    authkey: Vec<u8>,
    client: Arc<Client>,
    process: Process,
    control: Mutex<Option<Connection>>,
    cleanup_dir: Option<PathBuf>,
    creator: u32,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address)
            .field("pid", &self.process.pid())
            .finish_non_exhaustive()
    }
}

/// The server process's target.
fn server_main(args: server::ServerArgs) -> std::result::Result<(), String> {
    // As CPython's manager: a Ctrl-C meant for the parent's process group does not stop it.
    sys::set_sigint_ignored(true);
    match server::run(args) {
        0 => Ok(()),
        code => Err(format!("the manager's server failed (code {code})")),
    }
}

impl Manager {
    /// Starts a manager in the default context (Python's `Manager()`).
    pub fn new() -> Result<Manager> {
        Manager::builder().start()
    }

    /// A builder, for the context, address, key and call timeout.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            ctx: crate::context::default_context(),
            address: None,
            authkey: None,
            call_timeout: None,
        }
    }

    fn start(b: ManagerBuilder) -> Result<Manager> {
        let authkey = b.authkey.unwrap_or_else(current_authkey);
        let (address, cleanup_dir) = match b.address {
            Some(a) => (a.map_err(Error::InvalidArgument)?, None),
            None => {
                let (dir, addr) = private_socket_path()?;
                (addr, Some(dir))
            }
        };
        let bound = Listener::builder(&address)
            .authkey(Some(&authkey))
            .bind()
            .inspect_err(|_| remove_dir(&cleanup_dir));
        let listener = bound?;
        let address = listener.address().clone();
        let fd = listener.into_fd().ok_or(Error::Closed)?;
        let (ours, theirs) = sys::socketpair()?;
        let args = server::ServerArgs {
            listener: server::ListenFd(fd),
            address: address.to_string(),
            authkey: authkey.clone(),
            control: Connection::from_fd(theirs),
            cleanup_dir: cleanup_dir.clone(),
        };
        let process = b.ctx.process(server_main, (args,)).daemon(true);
        let name = format!(
            "SyncManager-{}",
            process
                .identity()
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(":")
        );
        process.set_name(name);
        // A fork child must not keep our end of the control channel: the server learns that
        // its owner is gone from that end closing.
        let (started, mut kept) =
            crate::launch::fork::keep_from_fork_children(vec![ours], || process.start());
        if let Err(e) = started {
            remove_socket(&address);
            remove_dir(&cleanup_dir);
            return Err(e);
        }
        let ours = kept.pop().ok_or(Error::Closed)?;
        if let Some(pid) = process.pid() {
            lock(&client::SERVER_PIDS).push(pid);
        }
        let client = Client::fresh(&address, &authkey, b.call_timeout)?;
        Ok(Manager {
            address,
            authkey,
            client,
            process,
            control: Mutex::new(Some(Connection::from_fd(ours))),
            cleanup_dir,
            creator: std::process::id(),
        })
    }

    /// The address the server listens on (Python's `manager.address`).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The key clients authenticate with.
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// The server process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the server process is running.
    pub fn is_alive(&self) -> Result<bool> {
        self.process.is_alive()
    }

    /// Waits for the server process to end and returns its exit code; it ends after a
    /// `shutdown` (from this handle or any client).
    pub fn join(&self) -> Result<i32> {
        self.process.join()
    }

    /// Waits at most `timeout` for the server process to end: its exit code if it ended,
    /// `None` if it is still running.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        self.process.join_timeout(timeout)
    }

    /// The server's exit code, once it has ended.
    pub fn exitcode(&self) -> Result<Option<i32>> {
        self.process.exitcode()
    }

    /// Stops the server: a `shutdown` request (answered), then a wait for the process to end,
    /// then `SIGTERM`, then `SIGKILL`, each step bounded by [`SHUTDOWN_STEP`]. Then the socket
    /// and its directory are removed. A second call does nothing.
    pub fn shutdown(&self) -> Result<()> {
        let Some(control) = lock(&self.control).take() else {
            return Ok(());
        };
        if self.creator != std::process::id() {
            return Err(Error::NotChild);
        }
        let request = pickle::dumps(&wire::request(None, "shutdown", vec![], Dict::new()))?;
        if control.send_bytes(&request).is_ok() {
            let _ = control.recv_bytes_timeout(SHUTDOWN_STEP);
        }
        drop(control);
        self.process.join_timeout(SHUTDOWN_STEP)?;
        if self.process.is_alive()? {
            self.process.terminate()?;
            self.process.join_timeout(SHUTDOWN_STEP)?;
        }
        if self.process.is_alive()? {
            self.process.kill()?;
            self.process.join_timeout(SHUTDOWN_STEP * 5)?;
        }
        if let Some(pid) = self.process.pid() {
            lock(&client::SERVER_PIDS).retain(|&p| p != pid);
        }
        remove_socket(&self.address);
        remove_dir(&self.cleanup_dir);
        Ok(())
    }

    /// The number of objects the server holds (its `number_of_objects()`).
    pub fn number_of_objects(&self) -> Result<usize> {
        let v = self
            .client
            .call(None, "number_of_objects", vec![], Dict::new(), Wait::Quick)?;
        pickle::from_value(v)
    }

    /// What the server holds now: objects, client sessions (processes), and calls blocked for a
    /// client (in `acquire`, `get`, `wait`, ...).
    pub fn stats(&self) -> Result<ManagerStats> {
        let v = self
            .client
            .call(None, "mproc_stats", vec![], Dict::new(), Wait::Quick)?;
        pickle::from_value(v)
    }

    /// The server's description of its objects and their reference counts (`debug_info()`).
    pub fn debug_info(&self) -> Result<String> {
        let v = self
            .client
            .call(None, "debug_info", vec![], Dict::new(), Wait::Quick)?;
        pickle::from_value(v)
    }

    fn create(&self, typeid: &str, args: Vec<Value>) -> Result<Proxy> {
        self.create_kw(typeid, args, Dict::new())
    }

    fn create_kw(&self, typeid: &str, args: Vec<Value>, kwds: Dict) -> Result<Proxy> {
        let (id, exposed) = self.client.create(typeid, args, kwds)?;
        Ok(Proxy::created(&self.client, typeid, id, exposed))
    }

    /// A new, empty `dict`.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        self.create("dict", vec![]).map(DictProxy::wrap)
    }

    /// A new `dict` holding `items` (in order; a later equal key replaces the value).
    pub fn dict_from<K: Serialize, V: Serialize, I: IntoIterator<Item = (K, V)>>(
        &self,
        items: I,
    ) -> Result<DictProxy<K, V>> {
        let pairs = items
            .into_iter()
            .map(|(k, v)| {
                Ok(Value::Tuple(vec![
                    pickle::to_value(&k)?,
                    pickle::to_value(&v)?,
                ]))
            })
            .collect::<Result<Vec<_>>>()?;
        self.create("dict", vec![Value::List(pairs)])
            .map(DictProxy::wrap)
    }

    /// A new, empty `list`.
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        self.create("list", vec![]).map(ListProxy::wrap)
    }

    /// A new `list` holding `items`.
    pub fn list_from<T: Serialize, I: IntoIterator<Item = T>>(
        &self,
        items: I,
    ) -> Result<ListProxy<T>> {
        let items = items
            .into_iter()
            .map(|x| pickle::to_value(&x))
            .collect::<Result<Vec<_>>>()?;
        self.create("list", vec![Value::List(items)])
            .map(ListProxy::wrap)
    }

    /// A new `Namespace` without attributes.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.create("Namespace", vec![]).map(NamespaceProxy::wrap)
    }

    /// A new `Lock`.
    pub fn lock(&self) -> Result<LockProxy> {
        self.create("Lock", vec![]).map(LockProxy::wrap)
    }

    /// A new `RLock`.
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.create("RLock", vec![]).map(RLockProxy::wrap)
    }

    /// A new `Semaphore(value)`.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        self.create("Semaphore", vec![Value::from(value)])
            .map(SemaphoreProxy::wrap)
    }

    /// A new `BoundedSemaphore(value)`.
    pub fn bounded_semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        self.create("BoundedSemaphore", vec![Value::from(value)])
            .map(SemaphoreProxy::wrap)
    }

    /// A new `Condition` over a new `RLock`.
    pub fn condition(&self) -> Result<ConditionProxy> {
        self.create("Condition", vec![]).map(ConditionProxy::wrap)
    }

    /// A new `Condition` over `lock` (a [`LockProxy`] or [`RLockProxy`] of this manager).
    pub fn condition_with<L: ManagedLock>(&self, lock: &L) -> Result<ConditionProxy> {
        self.create("Condition", vec![lock.lock_proxy().to_value()])
            .map(ConditionProxy::wrap)
    }

    /// A new `Event`.
    pub fn event(&self) -> Result<EventProxy> {
        self.create("Event", vec![]).map(EventProxy::wrap)
    }

    /// A new `Barrier(parties)`.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        self.create("Barrier", vec![Value::from(parties)])
            .map(BarrierProxy::wrap)
    }

    /// A new `Barrier(parties, timeout=...)`: waits without a timeout of their own use this one.
    pub fn barrier_with_timeout(&self, parties: u32, timeout: Duration) -> Result<BarrierProxy> {
        let mut kwds = Dict::new();
        kwds.insert("timeout".into(), Value::Float(timeout.as_secs_f64()))
            .expect("a str key is hashable");
        self.create_kw("Barrier", vec![Value::from(parties)], kwds)
            .map(BarrierProxy::wrap)
    }

    /// A new `Queue(maxsize)` (`None`: unbounded).
    pub fn queue<T>(&self, maxsize: Option<usize>) -> Result<QueueProxy<T>> {
        let n = maxsize.map_or(0, |m| m as u64);
        self.create("Queue", vec![Value::from(n)])
            .map(QueueProxy::wrap)
    }

    /// A new `JoinableQueue(maxsize)`.
    pub fn joinable_queue<T>(&self, maxsize: Option<usize>) -> Result<QueueProxy<T>> {
        let n = maxsize.map_or(0, |m| m as u64);
        self.create("JoinableQueue", vec![Value::from(n)])
            .map(QueueProxy::wrap)
    }

    /// A new `Value(typecode, value)`: as CPython's, the typecode (`"i"`, `"d"`, ...) is a
    /// label, not a check.
    pub fn value<T: Serialize>(&self, typecode: &str, value: T) -> Result<ValueProxy<T>> {
        self.create(
            "Value",
            vec![Value::from(typecode), pickle::to_value(&value)?],
        )
        .map(ValueProxy::wrap)
    }

    /// A new `Array(typecode, items)`: Python's `array.array` (`"i"`: 32-bit ints, `"d"`:
    /// doubles, `"b"`, `"B"`, `"h"`, `"H"`, `"I"`, `"l"`, `"L"`, `"q"`, `"Q"`, `"f"`); an item
    /// that does not fit is an error.
    pub fn array<T: Serialize, I: IntoIterator<Item = T>>(
        &self,
        typecode: &str,
        items: I,
    ) -> Result<ArrayProxy<T>> {
        let items = items
            .into_iter()
            .map(|x| pickle::to_value(&x))
            .collect::<Result<Vec<_>>>()?;
        self.create("Array", vec![Value::from(typecode), Value::List(items)])
            .map(ArrayProxy::wrap)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.creator == std::process::id() {
            let _ = self.shutdown();
        }
    }
}

impl Context {
    /// Starts a manager whose server runs under this context's start method (Python's
    /// `ctx.Manager()`).
    pub fn manager(&self) -> Result<Manager> {
        self.manager_builder().start()
    }

    /// A builder for a manager of this context.
    pub fn manager_builder(&self) -> ManagerBuilder {
        Manager::builder().context(*self)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh private directory (mode 0700) in the temporary directory, and a socket path in it
/// (CPython's `pymp-*/listener-*`). A temporary directory whose path is too long for a socket
/// gives way to `/tmp`.
fn private_socket_path() -> Result<(PathBuf, Address)> {
    use std::os::unix::fs::DirBuilderExt;
    let mut last = None;
    for base in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        for _ in 0..8 {
            let mut rnd = [0u8; 6];
            sys::net::random_bytes(&mut rnd)?;
            let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
            let dir = base.join(format!("mproc-manager-{hex}"));
            let addr = Address::Unix(dir.join("listener"));
            if addr.to_sockaddr().is_err() {
                break;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok((dir, addr)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.map_or_else(
        || {
            Error::InvalidArgument(
                "no temporary directory with a path short enough for a socket".into(),
            )
        },
        Error::Io,
    ))
}

fn remove_socket(address: &Address) {
    if let Address::Unix(p) = address {
        let _ = std::fs::remove_file(p);
    }
}

fn remove_dir(dir: &Option<PathBuf>) {
    if let Some(d) = dir {
        let _ = std::fs::remove_dir_all(d);
    }
}
