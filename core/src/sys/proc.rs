//! Processes: `fork`, fork+exec of the running binary, pidfds, `waitid`, signals, `_exit`.

use super::{cvt, cvt_r, read};
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How a process ended, in Python's terms: `Exited(n)` becomes exitcode `n`, `Signaled(s)`
/// becomes `-s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

impl WaitStatus {
    /// The exit code as Python's `Process.exitcode` reports it.
    pub fn exitcode(self) -> i32 {
        match self {
            WaitStatus::Exited(n) => n,
            WaitStatus::Signaled(s) => -s,
        }
    }
}

/// Forks. In the child, runs `child` (a panic counts as exit code 1) and `_exit`s with its code;
/// the child never returns from this function. In the parent, returns the child's pid and a
/// pidfd for it.
///
/// The raw primitive, for measuring the OS's own cost (`crate::bench_limits`): if the pidfd cannot
/// be opened after the fork (the descriptor table is full), this returns the error although the
/// child runs. mproc itself starts children with `fork_child`, which never does that.
///
/// Like Python's fork, it runs arbitrary code in the child. In a parent with several threads the
/// child may deadlock on a lock that another thread held at the moment of the fork; that is why
/// callers warn about multithreaded parents and hold their own global locks across the fork (see
/// `crate::launch::fork`).
pub fn fork_run<F: FnOnce() -> i32>(child: F) -> io::Result<(u32, OwnedFd)> {
    // The child continues on a copy of this thread only: it runs `child` and then leaves with
    // `_exit`, never returning into the caller's frames (a panic is caught below, so unwinding
    // cannot escape into them either). Locks held by other threads stay locked in the child; that
    // can deadlock but not corrupt memory, and is the documented hazard of the fork start method.
    // SAFETY: `fork` has no memory-safety preconditions of its own; the child's path is above.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(1);
        exit_now(code);
    }
    drop(child);
    let pidfd = pidfd_open(pid as u32)?;
    Ok((pid as u32, pidfd))
}

/// The byte that lets a child forked by [`fork_child`] go on to run its function.
const GATE_GO: u8 = b'g';
/// The byte that tells it to leave without running it.
const GATE_ABORT: u8 = b'x';

/// Forks, exactly: the child runs `child` (a panic counts as exit code 1) and `_exit`s with its
/// code if and only if this returns `Ok` with its pid and a pidfd. The child never returns from
/// this function.
///
/// A pidfd can only be opened once the child exists, and opening it can fail (a full descriptor
/// table). So the child first waits at a gate, a socketpair made before the fork, until the
/// parent holds its pidfd: then the parent lets it through; if the pidfd cannot be opened, the
/// parent tells it to leave, reaps it by its pid (an unreaped child's pid cannot be reused) and
/// returns the error, and the function never ran. Everything that can fail for want of a
/// descriptor is made before the fork. Between the fork and the gate the child only closes, reads
/// and `_exit`s.
///
/// `clone3(CLONE_PIDFD)` would give the pidfd atomically with the fork, but a raw `clone3` skips
/// glibc's fork bookkeeping (its thread id cache, the robust-mutex list, `pthread_atfork`
/// handlers, the allocator's locks), which the child of this function, running arbitrary Rust
/// code, relies on.
pub fn fork_child<F: FnOnce() -> i32>(child: F) -> io::Result<(u32, OwnedFd)> {
    // A socketpair, not a pipe: writes to a socket never raise SIGPIPE, whatever the disposition.
    let (gate_child, gate_parent) = super::socketpair()?;
    // SAFETY: as in `fork_run`: the child goes through the gate (close, read, `_exit` only), then
    // runs `child` and leaves with `_exit`, never returning into the caller's frames.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        drop(gate_parent);
        let mut byte = [0u8; 1];
        let go = matches!(read(gate_child.as_fd(), &mut byte), Ok(1)) && byte[0] == GATE_GO;
        drop(gate_child);
        if !go {
            exit_now(127);
        }
        let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(1);
        exit_now(code);
    }
    drop(child);
    // Our copy of the child's end goes first: that frees a descriptor for the pidfd.
    drop(gate_child);
    match pidfd_open(pid as u32) {
        Ok(pidfd) => {
            // If the child is already gone (killed meanwhile), its exit status tells the story.
            let _ = super::write(gate_parent.as_fd(), &[GATE_GO]);
            Ok((pid as u32, pidfd))
        }
        Err(e) => {
            // A byte, not end of file: another process forked meanwhile may hold a copy of our end.
            let _ = super::write(gate_parent.as_fd(), &[GATE_ABORT]);
            drop(gate_parent);
            reap_pid(pid);
            Err(e)
        }
    }
}

/// Waits for our child `pid`, which has no pidfd and is known to be leaving, and reaps it.
fn reap_pid(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `status` is a valid, writable int; `pid` is an unreaped child of ours.
    let _ = cvt_r(|| unsafe { libc::waitpid(pid, &mut status, 0) });
}

/// Kills our unreaped child `pid` (its pid cannot have been reused) and reaps it.
fn kill_and_reap_pid(pid: libc::pid_t) {
    // SAFETY: `kill` takes integers; `pid` names our own child, not reaped yet.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap_pid(pid);
}

/// Opens a pidfd (close-on-exec) for `pid`.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let (pid, flags) = (pid as libc::pid_t, 0 as libc::c_uint);
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })?;
    // SAFETY: the call succeeded, so `fd` is a fresh descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A pidfd for this process (close-on-exec).
pub fn pidfd_of_self() -> io::Result<OwnedFd> {
    pidfd_open(std::process::id())
}

/// The pid of the process behind `pidfd` (from `/proc/self/fdinfo`), or `None` if it is not a
/// pidfd or its process has been reaped.
pub fn pid_of_pidfd(pidfd: BorrowedFd<'_>) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    let pid: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()?;
    u32::try_from(pid).ok().filter(|&p| p > 0)
}

/// Ignores `SIGINT` and `SIGTERM`, for a process that must outlive a signal sent to its whole
/// process group (the resource tracker, as Python's does).
pub fn ignore_termination_signals() {
    // SAFETY: SIG_IGN is a valid disposition and involves no handler code.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

/// A pidfd for this process's parent, if the parent is still the process `expected` (the one that
/// started us). `Ok(None)`: the parent is gone already (we were reparented). The pidfd is opened
/// first and the parent checked afterwards: if `expected` is still our parent then, it was alive
/// all along, so the pidfd is its own (its pid could not have been reused).
pub fn pidfd_of_parent(expected: u32) -> io::Result<Option<OwnedFd>> {
    let pidfd = match pidfd_open(expected) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    };
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    Ok((parent == expected).then_some(pidfd))
}

/// Ends this process with `signal` (whose action must be the default one, as `SIGKILL`'s always
/// is): sends it to the whole process and waits for it.
pub fn die_by_signal(signal: i32) -> ! {
    // SAFETY: `kill` takes integers; getpid has no preconditions.
    unsafe { libc::kill(libc::getpid(), signal) };
    loop {
        // SAFETY: `pause` has no preconditions; the signal ends the process before it returns.
        unsafe { libc::pause() };
    }
}

/// Reaps the child behind `pidfd` if it has ended (`nohang`), or waits until it ends. Returns
/// `None` when `nohang` is set and the child is still running.
pub fn pidfd_wait(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<WaitStatus>> {
    // SAFETY: a zeroed siginfo_t is a valid value for waitid to fill in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: `info` is a valid, writable siginfo_t; P_PIDFD takes the pidfd as its id.
    cvt_r(|| unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            flags,
        )
    })?;
    // SAFETY: waitid filled `info` for a SIGCHLD-style report; si_pid and si_status are the
    // fields it defines for that case (si_pid is 0 when WNOHANG found nothing).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => WaitStatus::Exited(status),
        _ => WaitStatus::Signaled(status),
    }))
}

impl WaitStatus {
    /// Decodes a raw wait status (`waitpid`'s `int`).
    fn from_raw(status: i32) -> WaitStatus {
        if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// `struct pidfd_info` of `<linux/pidfd.h>`, its first version (64 bytes, Linux 6.13; the exit
/// code since 6.15).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

/// `PIDFD_INFO_EXIT`: ask for (and, in the answer's mask, have) the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// `PIDFD_GET_INFO`: `_IOWR(0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;

/// The exit status of the process behind `pidfd`, whoever its parent, once it has been reaped
/// (`PIDFD_GET_INFO` with `PIDFD_INFO_EXIT`, Linux 6.15 and later). `None` while it has not been
/// reaped, or on a kernel that cannot tell.
pub fn pidfd_exit_info(pidfd: BorrowedFd<'_>) -> Option<WaitStatus> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: `info` is a valid, writable `struct pidfd_info` of the size the request encodes.
    let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO as _, &mut info) };
    if r == -1 || info.mask & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    Some(WaitStatus::from_raw(info.exit_code))
}

/// Whether this kernel keeps a reaped process's exit status for its pidfds (Linux 6.15 and
/// later), read once from the release.
pub fn kernel_keeps_exit_status() -> bool {
    static KEEPS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEEPS.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(major), Some(minor)) => (major, minor) >= (6, 15),
            _ => false,
        }
    })
}

/// Whether the process behind `pidfd` has not been reaped yet (it runs, or it is a zombie).
pub fn pidfd_unreaped(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks that the process can be signalled.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The exit status of `pid`, a zombie that is not our child, read from `/proc/<pid>/stat` while
/// it waits for its parent to reap it. `None` unless it is such a zombie and the kernel lets us
/// read its exit code (the `wchan` field, guarded by the same check, is non-zero then).
/// `pidfd` (for `pid`) is checked to be unreaped after the read, so the status read was its own:
/// its pid could not have been reused meanwhile.
pub fn zombie_exit_status(pid: u32, pidfd: BorrowedFd<'_>) -> Option<WaitStatus> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold anything).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state); field n is `fields[n - 3]`.
    let field = |n: usize| fields.get(n - 3).copied();
    if field(3)? != "Z" || field(35)? == "0" {
        return None;
    }
    let status: i32 = field(52)?.parse().ok()?;
    pidfd_unreaped(pidfd).then(|| WaitStatus::from_raw(status))
}

/// Waits up to `timeout` for the process behind `pidfd` to be reaped by whoever is its parent
/// (the pidfd reports `POLLHUP` then, Linux 6.15 and later). True if it was.
pub fn pidfd_wait_reaped(pidfd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    // Asking for no event leaves only `POLLHUP` (and errors) to end the wait: the exit itself
    // (`POLLIN`) does not.
    let mut pfd = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: 0,
        revents: 0,
    }];
    super::fd::poll_pollfds(&mut pfd, timeout)?;
    Ok(pfd[0].revents != 0)
}

/// Sends `signal` to the process behind `pidfd`. A process that has already ended is not an
/// error.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes a pidfd, a signal number, a null siginfo and flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Leaves the process at once with `code`, running no destructors or `atexit` handlers
/// (`_exit`). Buffered standard output must be flushed by the caller first.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// The number of threads in this process: the link count of `/proc/self/task` less two (one
/// `stat`, where reading `/proc/self/stat` makes the kernel format some fifty fields: this is on
/// every fork start's path), or else field 20 of `/proc/self/stat`.
pub fn thread_count() -> usize {
    use std::os::unix::fs::MetadataExt;
    if let Ok(task) = std::fs::metadata("/proc/self/task") {
        if let Some(n) = task.nlink().checked_sub(2).filter(|&n| n >= 1) {
            return n as usize;
        }
    }
    let stat = match std::fs::read_to_string("/proc/self/stat") {
        Ok(s) => s,
        Err(_) => return 1,
    };
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = match stat.rfind(')') {
        Some(i) => &stat[i + 1..],
        None => return 1,
    };
    rest.split_whitespace()
        .nth(17)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Registers `f` to run when the process leaves through `exit` (including a return from `main`).
pub fn register_atexit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain `extern "C" fn()` with 'static lifetime, as atexit requires.
    unsafe { libc::atexit(f) };
}

/// Everything a fork+exec needs, built before the fork so that the child only makes
/// async-signal-safe calls on memory that already exists.
#[derive(Debug)]
pub struct ExecPlan {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into the CStrings owned by the same struct, which are never
// mutated; sending the whole plan to another thread keeps them valid.
unsafe impl Send for ExecPlan {}

impl ExecPlan {
    /// A plan to execute `path` with `argv` and exactly the environment `env`.
    pub fn new(
        path: &str,
        argv: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
    ) -> io::Result<Self> {
        let nul = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
        let path = CString::new(path).map_err(nul)?;
        let argv: Vec<CString> = argv
            .into_iter()
            .map(|a| CString::new(a.into_vec()))
            .collect::<Result<_, _>>()
            .map_err(nul)?;
        let envp: Vec<CString> = env
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                CString::new(kv)
            })
            .collect::<Result<_, _>>()
            .map_err(nul)?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(ExecPlan {
            path,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
        })
    }
}

/// The descriptor number at which a spawned child finds its bootstrap channel.
pub const SPAWN_CHANNEL_FD: RawFd = 3;

/// What a spawned child was doing when it failed before `execve`, as it reports it.
const STEP_LIFT: u32 = 1;
const STEP_PLACE: u32 = 2;
const STEP_EXEC: u32 = 3;

/// In a spawned child before `execve`: writes `errno` and the step that failed to the error pipe
/// at `fd`, and leaves. Async-signal-safe (reads errno, `write`, `_exit`).
fn report_and_exit(fd: libc::c_int, step: u32) -> ! {
    // SAFETY: reading errno through its thread-local location is always valid.
    let errno = unsafe { *libc::__errno_location() };
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&errno.to_ne_bytes());
    msg[4..].copy_from_slice(&step.to_ne_bytes());
    // SAFETY: `msg` is valid for reads of its length; `write` on any descriptor number is sound.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
    exit_now(127)
}

/// Forks and executes `plan` in the child with: stdin on `devnull`, `channel` at descriptor 3
/// (`SPAWN_CHANNEL_FD`), and every other descriptor above 2 closed. Returns the child's pid and a
/// pidfd, once the child has executed `plan`.
///
/// Exact, as `fork_child`: `Ok` if and only if the child executed the plan. Every failure of
/// the child before `execve` (placing its descriptors, or `execve` itself) is reported through a
/// close-on-exec pipe with the step that failed, as `std` does, and the child is reaped; if the
/// pidfd cannot be opened afterwards, the child (which has not read anything from its channel
/// yet) is killed and reaped by its pid.
pub fn spawn_exec(
    plan: &ExecPlan,
    channel: BorrowedFd<'_>,
    devnull: BorrowedFd<'_>,
) -> io::Result<(u32, OwnedFd)> {
    let (err_r, err_w) = super::pipe()?;
    let (ch, nul, ew) = (channel.as_raw_fd(), devnull.as_raw_fd(), err_w.as_raw_fd());
    // The child starts with an empty signal mask, whatever the forking thread had blocked (a
    // thread that blocks SIGTERM would otherwise hand that to every child it spawns, which then
    // could not be terminated). std's `Command` does not do this: it keeps the parent's mask and
    // resets only SIGPIPE's action. The empty set is built before the fork.
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset to initialise.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `empty` is valid, writable sigset_t storage.
    unsafe { libc::sigemptyset(&mut empty) };
    // SAFETY: see the comment on the child branch; the parent branch only reads the error pipe.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // Until `execve` or `_exit` the child makes only async-signal-safe calls (fcntl, dup2,
        // dup3, pthread_sigmask, syscall(close_range), execve, write, _exit) on integers and on
        // the plan's buffers and the empty signal set, all built before the fork, never mutated.
        // SAFETY: async-signal-safe calls only, on memory that outlives them (see above).
        unsafe {
            // Lift every source descriptor above the target numbers 0..=4 first, so that no
            // dup2 below overwrites a source that happens to sit on a target number. The error
            // pipe goes first, so that every later failure can be reported on its lifted copy.
            let ew2 = libc::fcntl(ew, libc::F_DUPFD_CLOEXEC, 10);
            if ew2 < 0 {
                report_and_exit(ew, STEP_LIFT);
            }
            let ch2 = libc::fcntl(ch, libc::F_DUPFD_CLOEXEC, 10);
            if ch2 < 0 {
                report_and_exit(ew2, STEP_LIFT);
            }
            let nul2 = libc::fcntl(nul, libc::F_DUPFD_CLOEXEC, 10);
            if nul2 < 0 {
                report_and_exit(ew2, STEP_LIFT);
            }
            if libc::dup2(nul2, 0) != 0 || libc::dup2(ch2, SPAWN_CHANNEL_FD) != SPAWN_CHANNEL_FD {
                report_and_exit(ew2, STEP_PLACE);
            }
            if libc::dup3(ew2, 4, libc::O_CLOEXEC) != 4 {
                report_and_exit(ew2, STEP_PLACE);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::syscall(
                libc::SYS_close_range,
                5 as libc::c_uint,
                libc::c_uint::MAX,
                0 as libc::c_uint,
            );
            libc::execve(
                plan.path.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.envp_ptrs.as_ptr(),
            );
            report_and_exit(4, STEP_EXEC);
        }
    }
    drop(err_w);
    // End of file with nothing read: the pipe closed at `execve`. Eight bytes: a report.
    let mut buf = [0u8; 8];
    let mut got = 0;
    let read_error = loop {
        match read(err_r.as_fd(), &mut buf[got..]) {
            Ok(0) => break None,
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    break None;
                }
            }
            Err(e) => break Some(e),
        }
    };
    if let Some(e) = read_error {
        kill_and_reap_pid(pid);
        return Err(e);
    }
    if got > 0 {
        reap_pid(pid);
        if got < buf.len() {
            return Err(io::Error::other(
                "the spawn child failed before executing (its report was cut short)",
            ));
        }
        let errno = i32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
        let step = u32::from_ne_bytes(buf[4..].try_into().expect("4 bytes"));
        let e = io::Error::from_raw_os_error(errno);
        let what = match step {
            STEP_LIFT | STEP_PLACE => "could not set up the spawn child's descriptors",
            _ => "could not execute the spawn child",
        };
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    match pidfd_open(pid as u32) {
        Ok(pidfd) => Ok((pid as u32, pidfd)),
        Err(e) => {
            // The child has executed but has not read its channel: nothing of its work ran.
            kill_and_reap_pid(pid);
            Err(e)
        }
    }
}

/// Takes ownership of the bootstrap channel that [`spawn_exec`] in our parent placed at
/// [`SPAWN_CHANNEL_FD`], marking it close-on-exec. Returns `None` if nothing is open there, or
/// if it was taken before: it is taken at most once per process.
///
/// Called by [`crate::init`] in a process executed in an mproc role (`MPROC_ROLE` set), first
/// thing in `main` (or before it, from `enable_test_support!`), before anything of this process
/// has opened a descriptor of its own.
pub fn take_spawn_channel() -> Option<OwnedFd> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    let fd = SPAWN_CHANNEL_FD;
    // SAFETY: F_GETFD/F_SETFD take an int and touch no memory of ours.
    let ok = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    if !ok {
        return None;
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // The descriptor is open (checked above) and owned by no other object of this process: our
    // parent set it up for us before `execve`, nothing of ours opened a descriptor before `init`,
    // and the flag above makes this the only owner ever made.
    // SAFETY: so wrapping it in an `OwnedFd` makes the one owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The forkserver's fork: forks a child that closes every descriptor except the standard
/// streams, `keep` and a duplicate of `also` (if given), gets the default action of `SIGINT` back
/// (the server ignores it), and runs `child(keep, also)`; then `_exit`s with its code, as in
/// [`fork_child`] (exactly: the child runs only if this returns `Ok`). Returns the child's pid
/// and a pidfd for it.
///
/// For a single-threaded process whose own objects the child never uses (the forkserver): the
/// child's copies of their descriptors are closed under them. `child` is a plain function, so it
/// captures none of them, and the server keeps no descriptor in a static.
pub fn fork_server_child(
    keep: OwnedFd,
    also: Option<BorrowedFd<'_>>,
    child: fn(OwnedFd, Option<OwnedFd>) -> i32,
) -> io::Result<(u32, OwnedFd)> {
    let also = also.map(|fd| fd.try_clone_to_owned()).transpose()?;
    let kept = [
        keep.as_raw_fd(),
        also.as_ref().map_or(keep.as_raw_fd(), AsRawFd::as_raw_fd),
    ];
    fork_child(move || {
        super::close_all_from_except(3, &kept);
        set_sigint_ignored(false);
        child(keep, also)
    })
}

/// Ignores `SIGINT` (`on`) or restores its default action. The forkserver ignores it, as
/// Python's does, so that a Ctrl-C aimed at the parent's process group does not kill the server;
/// its children restore the default.
pub fn set_sigint_ignored(on: bool) {
    let action = if on { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: SIG_IGN and SIG_DFL are valid dispositions and involve no handler code.
    unsafe { libc::signal(libc::SIGINT, action) };
}

#[cfg(test)]
mod tests {
    use super::thread_count;

    /// The link count of `/proc/self/task` follows the threads, as field 20 of `/proc/self/stat`
    /// does.
    #[test]
    fn thread_count_sees_a_new_thread() {
        let before = thread_count();
        assert!(before >= 1);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = stopped.recv();
        });
        assert_eq!(thread_count(), before + 1);
        drop(stop);
        t.join().unwrap();
    }
}
