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
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// What is held for one child: the parent's end of its bootstrap channel (readable on the
/// acknowledgement, or at end of file when the child is gone), its pidfd (a duplicate, readable
/// when it ends; `None` if it could not be duplicated: the channel and the deadline still end the
/// wait), and the owners of what its arguments refer to.
struct Items {
    chan: OwnedFd,
    pidfd: Option<OwnedFd>,
    owners: Box<dyn Send>,
}

/// The slot of one child's items, shared by the registry and the child's record. Whoever
/// releases the items takes them and drops them while holding the slot's lock, so that a
/// [`Holding::release`] that comes while the keeper thread is dropping them returns only once
/// they are gone.
type Slot = Arc<Mutex<Option<Items>>>;

fn lock_slot(slot: &Slot) -> MutexGuard<'_, Option<Items>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// One entry of the registry: the slot, and what the keeper thread polls (descriptor numbers
/// read when the entry was made; the entry leaves the registry when its items are released, so
/// the thread polls a stale number at most until its next round).
struct Held {
    slot: Slot,
    chan: RawFd,
    pidfd: RawFd,
    deadline: Instant,
}

/// A child's claim on what is held for it (see [`hold`]).
#[derive(Debug)]
pub(crate) struct Holding(Slot);

impl Holding {
    /// Drops what is held for the child, if it is still held (its child has ended and been
    /// reaped); waits for a drop the keeper thread is doing at the same moment.
    pub(crate) fn release(&self) {
        let mut slot = match self.0.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // The keeper thread is dropping the items (or another release is): wait for it.
                #[cfg(test)]
                tests::release_waits();
                lock_slot(&self.0)
            }
        };
        drop(slot.take());
        drop(slot);
        lock().held.retain(|h| !Arc::ptr_eq(&h.slot, &self.0));
    }
}

impl std::fmt::Debug for Items {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Items")
            .field("chan", &self.chan)
            .finish_non_exhaustive()
    }
}

/// The registry of held arguments.
#[derive(Default)]
pub(crate) struct Keeper {
    held: Vec<Held>,
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
    running: false,
    wake: None,
});

/// Locks the registry, recovering from poisoning (every update is a push, a removal or a flag).
pub(crate) fn lock() -> MutexGuard<'static, Keeper> {
    KEEPER.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a fork child: forgets the parent's entries (closing only the child's copies of the channels
/// and pidfds; the owners are leaked, not dropped, and so is a slot another thread of the parent
/// held locked at the fork), drops the parent's wake pipe (the child makes its own) and unlocks.
pub(crate) fn forget_after_fork(mut guard: MutexGuard<'static, Keeper>) {
    for held in guard.held.drain(..) {
        let items = match held.slot.try_lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        match items {
            Some(items) => {
                drop(items.chan);
                drop(items.pidfd);
                std::mem::forget(items.owners);
            }
            // Empty, or locked by a thread that does not exist here: leave it be.
            None => std::mem::forget(held.slot),
        }
    }
    guard.running = false;
    guard.wake = None;
    drop(guard);
}

/// Holds `owners`, the objects that a started child's arguments refer to, until the child
/// acknowledges on `chan` (the parent's end of its bootstrap channel), ends (`pidfd` turns
/// readable, or the channel closes), or [`HANDSHAKE_TIMEOUT`] passes; or until the returned
/// [`Holding`] is released (when the child has been reaped).
pub(crate) fn hold(chan: OwnedFd, pidfd: Option<OwnedFd>, owners: Box<dyn Send>) -> Holding {
    let held = Held {
        chan: chan.as_raw_fd(),
        pidfd: pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd),
        deadline: Instant::now() + HANDSHAKE_TIMEOUT,
        slot: Arc::new(Mutex::new(Some(Items {
            chan,
            pidfd,
            owners,
        }))),
    };
    let holding = Holding(Arc::clone(&held.slot));
    let mut keeper = lock();
    keeper.held.push(held);
    if keeper.running {
        if let Some((_, w)) = &keeper.wake {
            // A full pipe already holds a wake-up.
            let _ = sys::write(w.as_fd(), b"w");
        }
        return holding;
    }
    if keeper.wake.is_none() {
        let Ok((r, w)) = sys::pipe() else {
            // No thread without a wake-up: the entry waits until its child is reaped.
            return holding;
        };
        if sys::set_nonblocking(r.as_fd(), true).is_err()
            || sys::set_nonblocking(w.as_fd(), true).is_err()
        {
            return holding;
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
    holding
}

/// Drops everything still held (part of the exit function, once every child has ended).
pub(crate) fn release_all() {
    let held = std::mem::take(&mut lock().held);
    for h in held {
        drop(lock_slot(&h.slot).take());
    }
}

/// The keeper thread: waits on every held channel and pidfd, and drops what is done.
fn run() {
    loop {
        let mut pfds = Vec::new();
        let mut polled: Vec<(Slot, Instant)> = Vec::new();
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
                pfds.push(pollfd(held.chan));
                pfds.push(pollfd(held.pidfd));
                polled.push((Arc::clone(&held.slot), held.deadline));
                deadline = Some(deadline.map_or(held.deadline, |d| d.min(held.deadline)));
            }
        }
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
            // Entries may have been released (and removed) or added meanwhile: match by slot.
            let finished: Vec<&Slot> = polled
                .iter()
                .enumerate()
                .filter(|(i, (_, deadline))| {
                    pfds[1 + 2 * i].revents != 0 || pfds[2 + 2 * i].revents != 0 || *deadline <= now
                })
                .map(|(_, (slot, _))| slot)
                .collect();
            let mut done = Vec::new();
            keeper.held.retain(|h| {
                let finished = finished.iter().any(|s| Arc::ptr_eq(s, &h.slot));
                if finished {
                    done.push(Arc::clone(&h.slot));
                }
                !finished
            });
            done
        };
        drop(polled);
        // The items are dropped outside the registry's lock, under their slot's.
        for slot in done {
            drop(lock_slot(&slot).take());
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::sync::Condvar;

    /// How many releases found their slot locked and waited for it.
    static WAITS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

    pub(super) fn release_waits() {
        *WAITS.0.lock().unwrap() += 1;
        WAITS.1.notify_all();
    }

    /// The longest any step may take before the test fails (never reached when it passes).
    const PATIENCE: Duration = Duration::from_secs(30);

    /// Owners that report their drop.
    struct Owner {
        dropped: Arc<AtomicBool>,
        /// Told when the drop begins.
        entered: Option<mpsc::Sender<()>>,
        /// Whether the drop, once begun, waits until a release waits for it (and records here
        /// that it saw one).
        wait_for_release: Option<Arc<AtomicBool>>,
    }

    impl Drop for Owner {
        fn drop(&mut self) {
            if let Some(entered) = &self.entered {
                let _ = entered.send(());
            }
            if let Some(saw) = &self.wait_for_release {
                let waits = WAITS.0.lock().unwrap();
                let (waits, _) = WAITS
                    .1
                    .wait_timeout_while(waits, PATIENCE, |n| *n == 0)
                    .unwrap();
                saw.store(*waits > 0, Ordering::SeqCst);
            }
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn owner() -> (Owner, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let owner = Owner {
            dropped: Arc::clone(&dropped),
            entered: None,
            wait_for_release: None,
        };
        (owner, dropped)
    }

    /// The race: the keeper thread takes a child's entry when its channel turns readable and is
    /// still dropping the owners (unlinking a creator's shared memory, say) when the child is
    /// reaped and its record releases them. The release must return only once they are gone,
    /// or a caller that joined the child could still find the name.
    #[test]
    fn a_release_waits_for_the_drop_the_keeper_thread_is_doing() {
        let (chan, peer) = sys::pipe().unwrap();
        let (mut owner, dropped) = owner();
        let (entered_tx, entered) = mpsc::channel();
        let saw_release_wait = Arc::new(AtomicBool::new(false));
        owner.entered = Some(entered_tx);
        owner.wait_for_release = Some(Arc::clone(&saw_release_wait));
        let holding = hold(chan, None, Box::new(owner));
        // The child "ends": its end of the channel closes, and the keeper thread drops the owners.
        drop(peer);
        entered
            .recv_timeout(PATIENCE)
            .expect("the keeper thread never began dropping the owners");
        // The drop is in flight on the keeper thread, and waits until this release waits for it.
        holding.release();
        assert!(
            saw_release_wait.load(Ordering::SeqCst),
            "the release did not find the drop in flight"
        );
        assert!(
            dropped.load(Ordering::SeqCst),
            "the release returned before the owners were dropped"
        );
        assert!(lock().held.is_empty(), "the entry is still registered");
    }

    /// A release while the keeper thread waits drops exactly that entry's owners; the keeper
    /// thread then drops exactly the entry whose channel turned readable, and keeps the others.
    #[test]
    fn release_and_the_keeper_thread_drop_exactly_their_entries() {
        let (chan_a, _peer_a) = sys::pipe().unwrap();
        let (chan_b, peer_b) = sys::pipe().unwrap();
        let (chan_c, _peer_c) = sys::pipe().unwrap();
        let (a, a_dropped) = owner();
        let (mut b, b_dropped) = owner();
        let (c, c_dropped) = owner();
        let (entered_tx, b_entered) = mpsc::channel();
        b.entered = Some(entered_tx);
        let a = hold(chan_a, None, Box::new(a));
        let _b = hold(chan_b, None, Box::new(b));
        let c = hold(chan_c, None, Box::new(c));
        a.release();
        assert!(
            a_dropped.load(Ordering::SeqCst),
            "release(a) left a's owners"
        );
        assert!(!b_dropped.load(Ordering::SeqCst) && !c_dropped.load(Ordering::SeqCst));
        drop(peer_b);
        b_entered
            .recv_timeout(PATIENCE)
            .expect("the keeper thread never dropped b's owners");
        // b's entry leaves the registry before its owners are dropped; c's stays.
        assert!(!c_dropped.load(Ordering::SeqCst), "c was dropped with b");
        assert_eq!(lock().held.len(), 1, "only c should still be held");
        c.release();
        assert!(c_dropped.load(Ordering::SeqCst));
        assert!(lock().held.is_empty());
    }
}
