//! The resource tracker (Python's `multiprocessing.resource_tracker`): a process of its own that
//! unlinks the named shared memory ([`crate::SharedMemory`]) of creators that died without
//! unlinking it (killed, say), so that nothing is left in `/dev/shm`.
//!
//! The tracker is a fresh execution of this binary ([`Role::Tracker`]), started by the first
//! process of a tree that creates a named segment. It reads a sequenced-packet socket whose other
//! end every process of the tree shares: fork children inherit it, spawned and forkserver children
//! receive it with their spec (as Python passes its tracker's pipe). On it each creator registers
//! a segment (`R`, the segment's inode number and name, and a pidfd of the creator attached) and
//! unregisters it when it unlinks the name (`U`, inode and name; whoever unlinks). The tracker
//! waits on the creators' pidfds: when one ends, each name it still had registered is unlinked,
//! if the name still refers to the registered inode (a name unlinked and created again by someone
//! else is left alone). Names are never unlinked on any other ground: other processes' entries in
//! `/dev/shm` are not touched. Once every process holding the socket is gone (end of file) and
//! every registered creator has ended, the tracker leaves. It ignores `SIGINT` and `SIGTERM`, as
//! Python's does, so that a signal to the whole process group does not take it down with the
//! processes it watches; it works when the main process itself is killed, since it is a process
//! of its own watching pidfds.
//!
//! Registration is best effort: a segment whose registration failed (no tracker could be
//! started) works as before, and is unlinked by its creator's handle as before, but nothing
//! unlinks it if the creator is killed.

use crate::popen::Popen;
use crate::role::{self, Role};
use crate::sys::{self, Interest};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

/// Register a segment: `R`, inode (u64 LE), name; the creator's pidfd attached.
const REGISTER: u8 = b'R';
/// Unregister a segment: `U`, inode (u64 LE), name.
const UNREGISTER: u8 = b'U';

/// The longest message: the tag, the inode and a name of at most 255 bytes.
const MAX_MESSAGE: usize = 1 + 8 + 256;

/// This process's link to its tree's tracker.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Our copy of the shared end of the tracker's socket.
    conn: Option<OwnedFd>,
    /// The tracker process, if this process started it (and so must reap it if it dies).
    process: Option<Popen>,
    /// A pidfd of this process, sent with each registration (and the pid it was made for: a
    /// fork child must not send its parent's).
    me: Option<(u32, OwnedFd)>,
}

static TRACKER: Mutex<Tracker> = Mutex::new(Tracker {
    conn: None,
    process: None,
    me: None,
});

/// Locks this process's link to the tracker, recovering from poisoning.
pub(crate) fn lock() -> MutexGuard<'static, Tracker> {
    TRACKER.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a fork child: keeps the inherited connection (the child belongs to the same tree), but not
/// the tracker process (it is not the child's child) nor the parent's pidfd; unlocks.
pub(crate) fn after_fork(mut guard: MutexGuard<'static, Tracker>) {
    guard.process = None;
    guard.me = None;
    drop(guard);
}

/// The tracker connection to pass to a spawned or forkserver child, if this process has one.
pub(crate) fn connection() -> Option<OwnedFd> {
    let tracker = lock();
    tracker.conn.as_ref().and_then(|c| c.try_clone().ok())
}

/// In a spawned or forkserver child: adopts the tracker connection its parent passed along.
pub(crate) fn adopt(conn: OwnedFd) {
    let mut tracker = lock();
    if tracker.conn.is_none() {
        tracker.conn = Some(conn);
    }
}

/// Registers the segment `name` (inode `ino`) as created by this process.
pub(crate) fn register(name: &str, ino: u64) -> io::Result<()> {
    let mut tracker = lock();
    let me = std::process::id();
    if tracker.me.as_ref().is_none_or(|(pid, _)| *pid != me) {
        tracker.me = Some((me, sys::pidfd_of_self()?));
    }
    let msg = message(REGISTER, name, ino);
    for attempt in 0..2 {
        tracker.ensure_running(attempt > 0)?;
        let conn = tracker.conn.as_ref().expect("ensured");
        let me = tracker.me.as_ref().expect("made above").1.as_raw_fd();
        match sys::send_with_fds(conn.as_fd(), &msg, &[me]) {
            Ok(_) => return Ok(()),
            // The tracker is gone (killed): start a fresh one and register there.
            Err(e) if is_gone(&e) && attempt == 0 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Unregisters the segment `name` (inode `ino`): its name was unlinked.
pub(crate) fn unregister(name: &str, ino: u64) {
    let tracker = lock();
    if let Some(conn) = &tracker.conn {
        let _ = sys::send_with_fds(conn.as_fd(), &message(UNREGISTER, name, ino), &[]);
    }
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE)
            | Some(libc::ECONNRESET)
            | Some(libc::ECONNREFUSED)
            | Some(libc::ENOTCONN)
    )
}

fn message(tag: u8, name: &str, ino: u64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(9 + name.len());
    msg.push(tag);
    msg.extend_from_slice(&ino.to_le_bytes());
    msg.extend_from_slice(name.as_bytes());
    msg
}

impl Tracker {
    /// Makes sure there is a tracker to talk to: starts one if this process has none, if the one
    /// it started has died, or (`restart`) if the inherited one is unreachable.
    fn ensure_running(&mut self, restart: bool) -> io::Result<()> {
        let dead = self
            .process
            .as_ref()
            .is_some_and(|p| !matches!(p.poll(), Ok(None)));
        if self.conn.is_some() && !dead && !restart {
            return Ok(());
        }
        if let Some(old) = self.process.take() {
            // Reap the old one (it is dead, or about to be unreachable for good).
            let _ = old.signal(libc::SIGKILL);
            let _ = old.wait(None);
        }
        let (ours, theirs) = sys::seqpacket_pair()?;
        let plan = role::exec_plan(Role::Tracker)?;
        let devnull = sys::open_devnull()?;
        let (pid, pidfd) = sys::spawn_exec(&plan, theirs.as_fd(), devnull.as_fd())?;
        self.conn = Some(ours);
        self.process = Some(Popen::direct(pid, pidfd));
        Ok(())
    }
}

/// A segment registered with the tracker.
struct Entry {
    name: String,
    ino: u64,
    /// Index into the owners.
    owner: usize,
}

/// The tracker's main loop, on its end of the socket. Never returns.
pub(crate) fn serve(chan: OwnedFd) -> ! {
    sys::ignore_termination_signals();
    let mut owners: Vec<Option<OwnedFd>> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut open = true;
    loop {
        if !open && entries.is_empty() {
            sys::exit_now(0);
        }
        // Owners without entries are let go, so that their pidfds do not pile up.
        for (i, owner) in owners.iter_mut().enumerate() {
            if owner.is_some() && !entries.iter().any(|e| e.owner == i) {
                *owner = None;
            }
        }
        let mut watch: Vec<(BorrowedFd<'_>, Interest)> = Vec::new();
        let mut index: Vec<usize> = Vec::new();
        if open {
            watch.push((chan.as_fd(), Interest::Read));
        }
        for (i, owner) in owners.iter().enumerate() {
            if let Some(fd) = owner {
                watch.push((fd.as_fd(), Interest::Read));
                index.push(i);
            }
        }
        let ready = match sys::poll(&watch, None) {
            Ok(r) => r,
            Err(_) => sys::exit_now(1),
        };
        drop(watch);
        let first_owner = usize::from(open);
        let ended: Vec<usize> = index
            .iter()
            .zip(&ready[first_owner..])
            .filter(|(_, &r)| r)
            .map(|(&i, _)| i)
            .collect();
        for i in ended {
            for e in entries.iter().filter(|e| e.owner == i) {
                unlink_if_same(&e.name, e.ino);
            }
            entries.retain(|e| e.owner != i);
            owners[i] = None;
        }
        if open && ready[0] {
            let mut buf = [0u8; MAX_MESSAGE];
            match sys::recv_with_fds(chan.as_fd(), &mut buf) {
                Ok((0, _)) => open = false,
                Ok((n, fds)) => handle(&buf[..n], fds, &mut owners, &mut entries),
                // A message whose descriptor was lost (our table is full): the creator goes
                // untracked; the rest goes on.
                Err(e) if e.kind() == io::ErrorKind::Other => {}
                Err(_) => open = false,
            }
        }
    }
}

/// Handles one message.
fn handle(
    msg: &[u8],
    mut fds: Vec<OwnedFd>,
    owners: &mut Vec<Option<OwnedFd>>,
    entries: &mut Vec<Entry>,
) {
    if msg.len() < 9 {
        return;
    }
    let ino = u64::from_le_bytes(msg[1..9].try_into().expect("8 bytes"));
    let Ok(name) = std::str::from_utf8(&msg[9..]) else {
        return;
    };
    match msg[0] {
        REGISTER => {
            let Some(pidfd) = fds.pop() else {
                return;
            };
            let owner = owner_index(pidfd, owners);
            entries.push(Entry {
                name: name.to_string(),
                ino,
                owner,
            });
        }
        UNREGISTER => entries.retain(|e| !(e.name == name && e.ino == ino)),
        _ => {}
    }
}

/// The index of the owner behind `pidfd`: an owner already known for the same running process,
/// or a new one.
fn owner_index(pidfd: OwnedFd, owners: &mut Vec<Option<OwnedFd>>) -> usize {
    let pid = sys::pid_of_pidfd(pidfd.as_fd());
    let running = |fd: &OwnedFd| {
        !sys::poll_one(fd.as_fd(), Interest::Read, Some(std::time::Duration::ZERO)).unwrap_or(true)
    };
    if let Some(pid) = pid {
        // A known owner with the same pid that still runs is the same process (a pid is not
        // reused while its process runs).
        if let Some(i) = owners.iter().position(|o| {
            o.as_ref()
                .is_some_and(|fd| sys::pid_of_pidfd(fd.as_fd()) == Some(pid) && running(fd))
        }) {
            return i;
        }
    }
    match owners.iter().position(Option::is_none) {
        Some(i) => {
            owners[i] = Some(pidfd);
            i
        }
        None => {
            owners.push(Some(pidfd));
            owners.len() - 1
        }
    }
}

/// Unlinks the segment `name` if the name still refers to inode `ino`.
fn unlink_if_same(name: &str, ino: u64) {
    let path = format!("/{name}");
    let Ok(fd) = sys::shm_open(&path, false) else {
        return;
    };
    if sys::inode_of(fd.as_fd()).ok() == Some(ino) {
        let _ = sys::shm_unlink(&path);
    }
}
