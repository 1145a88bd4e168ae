//! Fatal signals in children: a `SIGSEGV` or `SIGBUS` sent by `kill` ends the process, as it
//! does a Python child, while a real fault still goes to the stack-overflow handler.
//!
//! std installs a handler for `SIGSEGV` and `SIGBUS` (at start-up of a binary's `main`) to tell a
//! stack overflow from other faults: if the faulting address is in the thread's guard page it
//! prints "thread '…' has overflowed its stack" and aborts; otherwise it resets the signal's
//! action to the default and returns, so that the faulting instruction faults again and the
//! process dies of it. A signal sent by another process has no faulting instruction: the
//! handler returns, and the process runs on (with the default action now in place, so only a
//! second signal kills it). [`install_fatal_signal_handler`] puts a handler in front of std's
//! that ends the process with any such signal sent by `kill`, `tgkill` or `sigqueue` (`si_code`
//! ≤ 0), and passes real faults (`si_code` > 0) to the handler it replaced. Where there was none
//! (a child started by mproc before std's start-up ran, as in a test binary whose
//! `enable_test_support!` runs `init` from `.init_array`), it tells a stack overflow of the
//! installing thread itself, as std would, and otherwise restores the default action.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The actions in place for `SIGSEGV` and `SIGBUS` before ours.
struct Previous {
    segv: libc::sigaction,
    bus: libc::sigaction,
}

// SAFETY: the two `sigaction` values are plain data (a handler address, flags, a signal mask),
// written once before the handler is installed and only read afterwards.
unsafe impl Sync for Previous {}
// SAFETY: as above.
unsafe impl Send for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

/// The lowest address of the installing thread's stack, and the size below it in which a fault
/// is a stack overflow (used only when there was no handler before ours).
static GUARD_END: AtomicUsize = AtomicUsize::new(0);
static GUARD_LEN: AtomicUsize = AtomicUsize::new(0);
/// Whether the installing thread is the main thread (named `main` in the overflow message).
static ON_MAIN_THREAD: AtomicBool = AtomicBool::new(false);

/// How far below a stack's lowest address a fault counts as an overflow of that stack: the
/// kernel's own stack guard gap (256 pages of 4 KiB).
const OVERFLOW_REACH: usize = 1 << 20;

/// The size of the alternate signal stack made for the installing thread when it has none.
const ALT_STACK_SIZE: usize = 64 * 1024;

/// Installs the handler described in the module documentation, once per process (later calls do
/// nothing). Call it on the thread that runs the child's target, before the target runs.
pub fn install_fatal_signal_handler() -> io::Result<()> {
    if PREVIOUS.get().is_some() {
        return Ok(());
    }
    ensure_alt_stack()?;
    note_stack_of_this_thread();
    // SAFETY: zeroed `sigaction` values are valid storage for `sigaction` to fill in.
    let mut previous = unsafe {
        Previous {
            segv: std::mem::zeroed(),
            bus: std::mem::zeroed(),
        }
    };
    // SAFETY: a null new action only reads the current one into the valid storage given.
    unsafe {
        super::cvt(libc::sigaction(
            libc::SIGSEGV,
            std::ptr::null(),
            &mut previous.segv,
        ))?;
        super::cvt(libc::sigaction(
            libc::SIGBUS,
            std::ptr::null(),
            &mut previous.bus,
        ))?;
    }
    if PREVIOUS.set(previous).is_err() {
        return Ok(());
    }
    // SAFETY: a zeroed `sigaction` is a valid value; we fill in the handler, flags and mask.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_fatal_signal as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `action.sa_mask` is valid storage for an empty set.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is a valid action whose handler is an `extern "C"` function with the
    // `SA_SIGINFO` signature, which only makes async-signal-safe calls.
    unsafe {
        super::cvt(libc::sigaction(
            libc::SIGSEGV,
            &action,
            std::ptr::null_mut(),
        ))?;
        super::cvt(libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Gives this thread an alternate signal stack if it has none, so that the handler can run when
/// the thread's own stack is exhausted.
fn ensure_alt_stack() -> io::Result<()> {
    // SAFETY: a zeroed `stack_t` is valid storage for `sigaltstack` to fill in.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only reads the current one into `current`.
    super::cvt(unsafe { libc::sigaltstack(std::ptr::null(), &mut current) })?;
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(());
    }
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // memory of ours.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let alt = libc::stack_t {
        ss_sp: stack,
        ss_flags: 0,
        ss_size: ALT_STACK_SIZE,
    };
    // SAFETY: `alt` describes the mapping just made, which is never unmapped (it serves the
    // thread for as long as it runs).
    super::cvt(unsafe { libc::sigaltstack(&alt, std::ptr::null_mut()) })?;
    Ok(())
}

thread_local! {
    /// The lowest address of this thread's stack, once looked up. A fork child's only thread is
    /// a copy of the thread that forked, stack and thread-locals alike, so what the parent found
    /// holds in the child too (see [`learn_stack_of_this_thread`]).
    static STACK_END: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The lowest address of this thread's stack, looked up once per thread. For the main thread
/// glibc's `pthread_getattr_np` parses `/proc/self/maps`, which costs as much as a good part of a
/// fork start; the fork start method calls [`learn_stack_of_this_thread`] in the parent, so that
/// its children find the answer already there.
fn stack_end_of_this_thread() -> Option<usize> {
    if let Some(end) = STACK_END.with(Cell::get) {
        return Some(end);
    }
    // SAFETY: a zeroed `pthread_attr_t` is valid storage for `pthread_getattr_np` to fill in.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is valid storage; on success it is initialised and destroyed below.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) } != 0 {
        return None;
    }
    let mut addr: *mut libc::c_void = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: `attr` was initialised above; `addr` and `size` are valid, writable.
    let ok = unsafe { libc::pthread_attr_getstack(&attr, &mut addr, &mut size) } == 0;
    // SAFETY: `attr` was initialised by `pthread_getattr_np`.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    let end = ok.then_some(addr as usize);
    STACK_END.with(|s| s.set(end));
    end
}

/// Looks up this thread's stack now (once per thread), before it forks, so that the children's
/// [`install_fatal_signal_handler`] need not.
pub fn learn_stack_of_this_thread() {
    let _ = stack_end_of_this_thread();
}

/// Records where this thread's stack ends (its lowest address), for the overflow check.
fn note_stack_of_this_thread() {
    if let Some(end) = stack_end_of_this_thread() {
        GUARD_END.store(end, Ordering::Relaxed);
        GUARD_LEN.store(OVERFLOW_REACH, Ordering::Relaxed);
    }
    // SAFETY: gettid and getpid take no arguments.
    let main = unsafe { libc::gettid() == libc::getpid() };
    ON_MAIN_THREAD.store(main, Ordering::Relaxed);
}

/// Calls `action`'s handler, if it is a handler (not the default action, nor "ignore").
/// Returns whether there was one.
///
/// # Safety
/// `info` and `context` must be the arguments the kernel passed to a signal handler for `sig`.
unsafe fn chain(
    action: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) -> bool {
    let handler = action.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return false;
    }
    if action.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the installed handler has this signature.
        let f = unsafe {
            std::mem::transmute::<
                libc::sighandler_t,
                extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
            >(handler)
        };
        f(sig, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the installed handler has this signature.
        let f = unsafe {
            std::mem::transmute::<libc::sighandler_t, extern "C" fn(libc::c_int)>(handler)
        };
        f(sig);
    }
    true
}

/// Restores the default action of `sig`.
fn reset_to_default(sig: libc::c_int) {
    // SAFETY: a zeroed `sigaction` with `SIG_DFL` is a valid action.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `action` is valid; `sigaction` is async-signal-safe.
    unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
}

/// The handler (see the module documentation). Async-signal-safe: `sigaction`, `kill`,
/// `getpid`, `write`, `abort`, and the handler it replaced (which std made async-signal-safe).
extern "C" fn on_fatal_signal(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code <= 0 {
        // Sent by a process (kill, tgkill, sigqueue): die of it. The signal is blocked while
        // this handler runs; sent again to the process, it is delivered when the handler
        // returns, with the default action.
        reset_to_default(sig);
        // SAFETY: `kill` and `getpid` take and return integers.
        unsafe { libc::kill(libc::getpid(), sig) };
        return;
    }
    if let Some(previous) = PREVIOUS.get() {
        let action = if sig == libc::SIGBUS {
            &previous.bus
        } else {
            &previous.segv
        };
        // SAFETY: `info` and `context` are the kernel's arguments for `sig`.
        if unsafe { chain(action, sig, info, context) } {
            return;
        }
    }
    let end = GUARD_END.load(Ordering::Relaxed);
    let len = GUARD_LEN.load(Ordering::Relaxed);
    if end != 0 && addr < end && addr >= end.saturating_sub(len) {
        let msg: &[u8] = if ON_MAIN_THREAD.load(Ordering::Relaxed) {
            b"\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow, aborting\n"
        } else {
            b"\nthread '<unnamed>' has overflowed its stack\nfatal runtime error: stack overflow, aborting\n"
        };
        // SAFETY: `msg` is valid for reads of its length; `write` and `abort` are
        // async-signal-safe.
        unsafe {
            libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
            libc::abort();
        }
    }
    // Any other fault: the default action, when the faulting instruction runs again.
    reset_to_default(sig);
}
