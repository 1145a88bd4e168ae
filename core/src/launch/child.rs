//! The child's side of every start method: become the process the parent described, run the
//! target as Python's `BaseProcess._bootstrap` does (exit codes, the panic header,
//! [`crate::exit`]), then run the exit function and flush the standard streams.

use super::spec::{self, ChildSpec};
use super::InternalThread;
use crate::children;
use crate::state::{self, Me};
use crate::sys;
use crate::tracker;
use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

fn me_of(spec: &ChildSpec) -> Me {
    Me {
        name: spec.name.clone(),
        identity: spec.identity.clone(),
        daemon: spec.daemon,
        counter: 1,
        parent_pid: Some(spec.parent_pid),
        parent_name: Some(spec.parent_name.clone()),
        started_by: Some(spec.method),
        authkey: spec.authkey.clone(),
    }
}

/// The child of the spawn and forkserver methods: reads the spec from `chan`, becomes the
/// process it describes and runs its entry point, handing it the descriptors that came with the
/// spec. A forkserver child gets a pidfd of its parent (in mproc's terms: the server's parent)
/// from the server in `parent`; a spawned child opens one itself if it needs one. Returns the
/// exit code.
pub(crate) fn run_from_channel(chan: OwnedFd, parent: Option<OwnedFd>) -> i32 {
    let (spec, mut fds) = match spec::recv(&chan) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("mproc: child could not start: {e}");
            return 1;
        }
    };
    // The resource tracker's connection comes after the arguments' descriptors.
    if let Some(i) = spec.tracker {
        if (i as usize) < fds.len() {
            tracker::adopt(fds.remove(i as usize));
        }
    }
    // Kept until the target's arguments are decoded: the acknowledgement goes back on it.
    *lock_bootstrap() = Some(chan);
    {
        let mut st = state::lock();
        st.me = me_of(&spec);
        st.start_method = Some(spec.method);
    }
    watch_parent(parent);
    let name = spec.name.clone();
    run_target(&name, move || {
        let code = match spec.entry.call(&spec.args, fds) {
            Some(code) => code,
            None => {
                eprintln!("mproc: the spawned child is not the same executable as its parent");
                1
            }
        };
        lock_bootstrap().take();
        code
    })
}

/// A spawned or forkserver child's bootstrap channel, until its arguments are decoded.
static BOOTSTRAP: Mutex<Option<OwnedFd>> = Mutex::new(None);

fn lock_bootstrap() -> MutexGuard<'static, Option<OwnedFd>> {
    BOOTSTRAP.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a spawned or forkserver child, once its target's arguments are decoded (whatever they
/// attached to, by name or by reference, is now held by this process): tells the parent, which
/// may then drop its own copies of the arguments (see [`super::keeper`]), and closes the
/// bootstrap channel. Does nothing elsewhere, or a second time.
pub(crate) fn arguments_decoded() {
    if let Some(chan) = lock_bootstrap().take() {
        // A parent that is gone needs no acknowledgement.
        let _ = sys::write(chan.as_fd(), &[spec::ARGUMENTS_DECODED]);
    }
}

/// The payload of the unwind that [`exit`] starts inside a child's target.
pub(crate) struct ExitRequest(pub i32);

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running a child's target (where [`exit`] unwinds to here).
fn in_target() -> bool {
    IN_TARGET.with(Cell::get)
}

/// Runs a child's target as Python's `_bootstrap` does: a panic prints `Process <name>:` and the
/// panic message on stderr and gives exit code 1; [`exit`] gives its code; then the exit
/// function joins this process's own children, and the standard streams are flushed.
pub(crate) fn run_target(name: &str, target: impl FnOnce() -> i32) -> i32 {
    // A SIGSEGV or SIGBUS sent by `kill` ends the child, as in Python (std's handler would
    // swallow it); real faults still reach the stack-overflow handler. If it cannot be
    // installed, the child runs with what it has.
    let _ = sys::install_fatal_signal_handler();
    let header = format!("Process {name}:");
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        eprintln!("{header}");
        previous(info);
    }));
    IN_TARGET.with(|t| t.set(true));
    let code = match panic::catch_unwind(AssertUnwindSafe(target)) {
        Ok(code) => code,
        Err(payload) => match payload.downcast::<ExitRequest>() {
            Ok(req) => req.0,
            Err(_) => 1,
        },
    };
    IN_TARGET.with(|t| t.set(false));
    let _ = panic::catch_unwind(children::exit_function);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    code
}

/// Leaves the current process with exit code `code`, as Python's `sys.exit(code)`.
///
/// On the thread that runs a child's target, this unwinds to the child's bootstrap (running
/// destructors on the way) and the child's exit code becomes `code`. Anywhere else (in the main
/// process, or on another thread of a child) it is `std::process::exit(code)` after flushing
/// standard output, which runs the exit function first (joining this process's children, as
/// Python's exit does) and ends the whole process: unlike Python's `sys.exit` on another thread,
/// it does not end just that thread.
pub fn exit(code: i32) -> ! {
    if in_target() {
        panic::resume_unwind(Box::new(ExitRequest(code)));
    }
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// In a daemonic child: makes sure that it does not outlive its parent. A thread waits on a pidfd
/// of the parent (`given` by the forkserver, or opened here) and kills this process with
/// `SIGKILL` when the parent ends; if the parent is gone already, this process ends at once.
/// Non-daemonic children outlive their parent, as in Python.
///
/// Not `PR_SET_PDEATHSIG`: it fires when the *thread* that forked the child ends, not the process
/// (a pool replaces its workers from its own thread, and a user's thread may start a daemon and
/// end), and for a forkserver child the one that forked it is the server, not the parent.
pub(crate) fn watch_parent(given: Option<OwnedFd>) {
    let (daemon, parent) = {
        let st = state::lock();
        (st.me.daemon, st.me.parent_pid)
    };
    let (true, Some(parent)) = (daemon, parent) else {
        return;
    };
    let pidfd = match given {
        Some(fd) => fd,
        None => match sys::pidfd_of_parent(parent) {
            Ok(Some(fd)) => fd,
            Ok(None) => sys::die_by_signal(libc::SIGKILL),
            // No descriptor to watch with (a full table): the daemon cannot watch its parent.
            Err(_) => return,
        },
    };
    let counted = InternalThread::enter();
    let _ = std::thread::Builder::new()
        .name("mproc-parent-watch".into())
        .spawn(move || {
            let _counted = counted;
            // Readable only once the parent has ended.
            if let Ok(true) = sys::poll_one(pidfd.as_fd(), sys::Interest::Read, None) {
                sys::die_by_signal(libc::SIGKILL);
            }
        });
}
