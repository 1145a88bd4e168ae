//! Arguments outlive the start: the parent keeps a spawned or forkserver child's arguments (the
//! objects that own what the encoded arguments refer to) until the child has decoded them.
//!
//! A child of those methods receives its arguments as bytes, and some of what they name lives
//! only as long as the parent's objects do: a creator's named [`crate::SharedMemory`] unlinks its
//! name when dropped, a manager proxy gives up its reference. If the parent dropped them right
//! after `start()`, the child could look for the name (or the reference) after it was gone. So
//! the child acknowledges on its bootstrap channel once it has decoded its arguments
//! ([`super::child::arguments_decoded`]), and the parent hands the arguments to this keeper with
//! the channel, which drops them on the acknowledgement, on the child's death (its pidfd turns
//! readable, or the channel closes), or after [`HANDSHAKE_TIMEOUT`], whichever comes first.
//!
//! One thread waits for them (started on demand, it leaves when nothing is held, and counts as
//! one of mproc's own threads for the fork warning). The registry's lock is one of the locks the
//! fork start method holds across `fork()`; a fork child forgets the parent's entries (their
//! owners are the parent's business: dropping a copy in the child could, say, give up a manager
//! reference the child never took). The exit function releases whatever is still held once every
//! child has ended.

use super::InternalThread;
use crate::role::HANDSHAKE_TIMEOUT;
use crate::sys;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Arguments held for one child.
struct Held {
    id: u64,
    /// The parent's end of the child's bootstrap channel: readable on the acknowledgement, or at
    /// end of file when the child is gone.
    chan: OwnedFd,
    /// The child's pidfd (a duplicate), readable when the child ends; `None` if it could not be
    /// duplicated (the channel and the deadline still end the wait).
    pidfd: Option<OwnedFd>,
    /// What the arguments refer to.
    owners: Box<dyn Send>,
    deadline: Instant,
}

/// The registry of held arguments.
#[derive(Default)]
pub(crate) struct Keeper {
    held: Vec<Held>,
    next_id: u64,
    /// Whether the keeper thread runs (it clears this, under the lock, when it leaves).
    running: bool,
    /// The pipe that wakes the thread when something new is held: (read end, write end).
    wake: Option<(OwnedFd, OwnedFd)>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("held", &self.held.len())
            .field("running", &self.running)
            .finish()
    }
}

static KEEPER: Mutex<Keeper> = Mutex::new(Keeper {
    held: Vec::new(),
    next_id: 0,
    running: false,
    wake: None,
});

/// Locks the registry, recovering from poisoning (every update is a push, a removal or a flag).
pub(crate) fn lock() -> MutexGuard<'static, Keeper> {
    KEEPER.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a fork child: forgets the parent's entries (closing only the child's copies of the channels
/// and pidfds; the owners are leaked, not dropped), drops the parent's wake pipe (the child makes
/// its own) and unlocks.
pub(crate) fn forget_after_fork(mut guard: MutexGuard<'static, Keeper>) {
    for held in guard.held.drain(..) {
        std::mem::forget(held.owners);
    }
    guard.running = false;
    guard.wake = None;
    drop(guard);
}

/// Holds `owners`, the objects that a started child's arguments refer to, until the child
/// acknowledges on `chan` (the parent's end of its bootstrap channel), ends (`pidfd` turns
/// readable, or the channel closes), or [`HANDSHAKE_TIMEOUT`] passes; or until [`release`]d
/// with the id returned (when the child is known to have ended).
pub(crate) fn hold(chan: OwnedFd, pidfd: Option<OwnedFd>, owners: Box<dyn Send>) -> u64 {
    let mut keeper = lock();
    let id = keeper.next_id;
    keeper.next_id += 1;
    keeper.held.push(Held {
        id,
        chan,
        pidfd,
        owners,
        deadline: Instant::now() + HANDSHAKE_TIMEOUT,
    });
    if keeper.running {
        if let Some((_, w)) = &keeper.wake {
            // A full pipe already holds a wake-up.
            let _ = sys::write(w.as_fd(), b"w");
        }
        return id;
    }
    if keeper.wake.is_none() {
        let Ok((r, w)) = sys::pipe() else {
            // No thread without a wake-up: the entry waits until its child is reaped.
            return id;
        };
        if sys::set_nonblocking(r.as_fd(), true).is_err()
            || sys::set_nonblocking(w.as_fd(), true).is_err()
        {
            return id;
        }
        keeper.wake = Some((r, w));
    }
    let counted = InternalThread::enter();
    let spawned = std::thread::Builder::new()
        .name("mproc-keeper".into())
        .spawn(move || {
            let _counted = counted;
            run();
        });
    // If no thread can be started, the entries wait until their children are reaped.
    keeper.running = spawned.is_ok();
    id
}

/// Drops what is held under `id`, if anything still is: its child has ended (and was reaped).
pub(crate) fn release(id: u64) {
    let held = {
        let mut keeper = lock();
        keeper
            .held
            .iter()
            .position(|h| h.id == id)
            .map(|i| keeper.held.remove(i))
    };
    drop(held);
}

/// Drops everything still held (part of the exit function, once every child has ended).
pub(crate) fn release_all() {
    let held = std::mem::take(&mut lock().held);
    drop(held);
}

/// The keeper thread: waits on every held channel and pidfd, and drops what is done.
fn run() {
    loop {
        let mut pfds = Vec::new();
        let mut deadline = None::<Instant>;
        {
            let mut keeper = lock();
            if keeper.held.is_empty() {
                keeper.running = false;
                return;
            }
            let Some((r, _)) = &keeper.wake else {
                keeper.running = false;
                return;
            };
            pfds.push(pollfd(r.as_raw_fd()));
            for held in &keeper.held {
                pfds.push(pollfd(held.chan.as_raw_fd()));
                pfds.push(pollfd(held.pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd)));
                deadline = Some(deadline.map_or(held.deadline, |d| d.min(held.deadline)));
            }
        }
        // Only this thread removes entries, so the descriptor numbers stay valid meanwhile.
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if sys::poll_pollfds(&mut pfds, timeout).is_err() {
            // Cannot wait (out of memory in the kernel?): check again shortly, never spin.
            std::thread::sleep(Duration::from_millis(10));
        }
        let done = {
            let mut keeper = lock();
            if let Some((r, _)) = &keeper.wake {
                let mut sink = [0u8; 64];
                while matches!(sys::read(r.as_fd(), &mut sink), Ok(n) if n > 0) {}
            }
            let now = Instant::now();
            let mut done = Vec::new();
            // The entries polled are the first `(pfds.len() - 1) / 2`; later ones were added
            // meanwhile. Walk from the back so that removal keeps the indices valid.
            for i in (0..(pfds.len() - 1) / 2).rev() {
                let ready = pfds[1 + 2 * i].revents != 0 || pfds[2 + 2 * i].revents != 0;
                if ready || keeper.held[i].deadline <= now {
                    done.push(keeper.held.remove(i));
                }
            }
            done
        };
        // The owners' destructors run outside the lock.
        drop(done);
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
