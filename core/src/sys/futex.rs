//! Process-shared futexes: wait on a 32-bit word in shared memory until it changes, and wake
//! waiters. Not `FUTEX_PRIVATE_FLAG`: the word may be mapped at different addresses in several
//! processes, and the kernel keys the waiters by the underlying page.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, for at most `timeout` (`None`: no limit). Returns `false` if
/// the timeout ran out, `true` otherwise (woken, the word differed, or a signal interrupted the
/// wait): callers always re-check their condition.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<bool> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as _,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic (the kernel only reads it); `tsp` is null or
    // points at a timespec that outlives the call. FUTEX_WAIT takes a relative timeout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            tsp,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ETIMEDOUT) => Ok(false),
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(true),
            _ => Err(e),
        };
    }
    Ok(true)
}

/// Wakes up to `n` waiters sleeping on `word`. Returns how many were woken.
pub fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not access its value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    r.max(0) as usize
}
