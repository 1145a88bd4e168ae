//! Shared memory: anonymous `memfd` files and named POSIX objects (`shm_open`), mapped
//! `MAP_SHARED`, and process-shared robust `pthread` mutexes placed inside such a mapping.
//!
//! Everything above this module sees a [`Mapping`] only through atomic views (`&AtomicU32`,
//! `&[AtomicU64]`, ...) and through the mutex operations here, so shared bytes are never read or
//! written non-atomically from safe code, whatever the other processes do meanwhile.

use super::{cvt, cvt_r};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// Creates an anonymous memory file (`memfd_create(MFD_CLOEXEC)`) of `len` bytes, zero-filled.
pub fn memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: `memfd_create` succeeded, so `fd` is a fresh descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ftruncate(fd.as_fd(), len)?;
    Ok(fd)
}

/// Sets the size of the file behind `fd`.
pub fn ftruncate(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    // SAFETY: ftruncate takes a descriptor and a length and touches no memory of ours.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
    Ok(())
}

/// The size in bytes of the file behind `fd`.
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: a zeroed `stat` is a valid value for fstat to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat structure.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_size as usize)
}

/// Reserves memory for bytes `off..off + len` of the file behind `fd`, growing the file if it is
/// shorter (`fallocate`, mode 0): later stores there cannot fail for want of memory (an
/// allocation failure is reported here, as `ENOSPC` or `ENOMEM`, instead of a `SIGBUS` at the
/// first touch). The file never shrinks.
pub fn fallocate(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    let (off, len) = file_range(off, len)?;
    // SAFETY: fallocate takes a descriptor and a range and touches no memory of ours.
    cvt_r(|| unsafe { libc::fallocate(fd.as_raw_fd(), 0, off, len) })?;
    Ok(())
}

/// Frees the memory behind bytes `off..off + len` of the file behind `fd`
/// (`FALLOC_FL_PUNCH_HOLE`): they read as zeros afterwards, in every mapping; the file keeps its
/// size, so no mapping of it ever faults.
pub fn punch_hole(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    let (off, len) = file_range(off, len)?;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate takes a descriptor and a range and touches no memory of ours; punching a
    // hole in a shared-memory file only replaces its pages by zero pages in every mapping.
    cvt_r(|| unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) })?;
    Ok(())
}

fn file_range(off: u64, len: u64) -> io::Result<(libc::off_t, libc::off_t)> {
    match (libc::off_t::try_from(off), libc::off_t::try_from(len)) {
        (Ok(o), Ok(l)) if o.checked_add(l).is_some() => Ok((o, l)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file range out of bounds",
        )),
    }
}

/// Opens a named POSIX shared-memory object (`/dev/shm/<name>` on Linux), close-on-exec.
/// `create`: create it, failing with `AlreadyExists` if it exists (`O_CREAT | O_EXCL`), mode 0600.
pub fn shm_open(name: &str, create: bool) -> io::Result<OwnedFd> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let flags = libc::O_RDWR
        | if create {
            libc::O_CREAT | libc::O_EXCL
        } else {
            0
        };
    // SAFETY: `cname` is a NUL-terminated string that outlives the call. POSIX specifies that
    // shm_open sets FD_CLOEXEC on the new descriptor.
    let fd = cvt(unsafe { libc::shm_open(cname.as_ptr(), flags, 0o600) })?;
    // SAFETY: `shm_open` succeeded, so `fd` is a fresh descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name of a POSIX shared-memory object.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::shm_unlink(cname.as_ptr()) })?;
    Ok(())
}

/// A shared, read-write mapping of a whole file (`MAP_SHARED`), unmapped on drop.
///
/// The mapping is page-aligned, so any offset that is a multiple of 8 is aligned for every
/// atomic view; views are bounds- and alignment-checked. Besides atomic views it holds process-shared
/// robust mutexes (see [`Mapping::init_mutex`]). A mapping must stay mapped while a thread of
/// this process holds one of its mutexes (glibc keeps held robust mutexes on a per-thread list
/// that it writes to): callers either hold a borrow of the mapping for as long as they hold the
/// mutex (a guard), or [`pin`](Mapping::pin) it, and a pinned mapping dropped keeps its pages
/// mapped until the process ends.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Mutexes of this mapping held by threads of this process without a borrow of it
    /// ([`Mapping::pin`]).
    held: AtomicUsize,
}

// SAFETY: the mapping is plain shared memory; every access to it goes through atomics or through
// pthread mutex calls, which are thread-safe, so sharing and sending it between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

/// The size of a region reserved for one mutex (a `pthread_mutex_t` is 40 bytes on 64-bit glibc).
pub const MUTEX_SIZE: usize = 64;

// The robust futex word's bits (linux/futex.h).
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;

// The futex word is the first field of glibc's `pthread_mutex_t` (`__data.__lock`); other C
// libraries lay the structure out differently.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
compile_error!("mproc's shared mutexes read glibc's pthread_mutex_t layout: Linux with glibc only");

/// How a mutex acquisition ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    /// The mutex is now held by the calling thread.
    Acquired,
    /// The mutex is now held by the calling thread; its previous owner died holding it (the
    /// mutex has been marked consistent again).
    OwnerDied,
    /// Not acquired: it is held by another thread and the call did not block, or the timeout ran
    /// out.
    NotAcquired,
}

impl Mapping {
    /// Maps the whole file behind `fd` (its current size, which must not be zero).
    pub fn map(fd: BorrowedFd<'_>) -> io::Result<Mapping> {
        let len = file_size(fd)?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an empty shared-memory object cannot be mapped",
            ));
        }
        Mapping::map_range(fd, 0, len)
    }

    /// Maps bytes `off..off + len` of the file behind `fd` (`off` a multiple of the page size,
    /// else `EINVAL`; `len` not zero). The range must lie inside the file: touching a page past its end would
    /// raise `SIGBUS`, so a range past the end is refused here.
    pub fn map_range(fd: BorrowedFd<'_>, off: u64, len: usize) -> io::Result<Mapping> {
        let size = file_size(fd)? as u64;
        let end = off.checked_add(len as u64);
        if len == 0 || end.is_none_or(|e| e > size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot map {len} bytes at {off} of this shared-memory object"),
            ));
        }
        let (off, _) = file_range(off, len as u64)?;
        // SAFETY: a fresh mapping at an address of the kernel's choosing; it aliases no Rust
        // object. The file is at least `off + len` bytes long (checked above, and it never
        // shrinks: nothing in mproc truncates a shared file).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).expect("mmap does not return null on success"),
            len,
            held: AtomicUsize::new(0),
        })
    }

    /// The length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn check(&self, off: usize, size: usize, align: usize) {
        if off % align != 0 || off.checked_add(size).is_none_or(|e| e > self.len) {
            self.out_of_bounds(off, size)
        }
    }

    #[cold]
    #[inline(never)]
    fn out_of_bounds(&self, off: usize, size: usize) -> ! {
        panic!(
            "shared-memory access at {off}+{size} outside a mapping of {} bytes or misaligned",
            self.len
        )
    }

    /// The byte at `off`, as an atomic.
    #[inline]
    pub fn u8_at(&self, off: usize) -> &AtomicU8 {
        &self.u8_slice(off, 1)[0]
    }

    /// `n` bytes from `off`, as atomics.
    #[inline]
    pub fn u8_slice(&self, off: usize, n: usize) -> &[AtomicU8] {
        self.check(off, n, 1);
        // SAFETY: in bounds (checked); the mapping lives as long as `self`; AtomicU8 has the
        // layout of u8 and every access to the shared bytes is atomic.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off).cast(), n) }
    }

    /// The 16-bit word at `off` (2-aligned), as an atomic.
    #[inline]
    pub fn u16_at(&self, off: usize) -> &AtomicU16 {
        self.check(off, 2, 2);
        // SAFETY: in bounds and aligned (checked); AtomicU16 has the layout of u16; the mapping
        // outlives the borrow.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU16>() }
    }

    /// The 32-bit word at `off` (4-aligned), as an atomic.
    #[inline]
    pub fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: in bounds and aligned (checked); AtomicU32 has the layout of u32; the mapping
        // outlives the borrow.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// The 64-bit word at `off` (8-aligned), as an atomic.
    #[inline]
    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        &self.u64_slice(off, 1)[0]
    }

    /// `n` 64-bit words from `off` (8-aligned), as atomics.
    #[inline]
    pub fn u64_slice(&self, off: usize, n: usize) -> &[AtomicU64] {
        self.check(off, n.checked_mul(8).expect("size overflow"), 8);
        // SAFETY: in bounds and aligned (checked); AtomicU64 has the layout of u64; the mapping
        // outlives the borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off).cast(), n) }
    }

    #[inline]
    fn mutex_ptr(&self, off: usize) -> *mut libc::pthread_mutex_t {
        const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= MUTEX_SIZE);
        self.check(off, MUTEX_SIZE, 64);
        // SAFETY: in bounds (checked).
        unsafe { self.ptr.as_ptr().add(off).cast() }
    }

    /// Initialises a process-shared, robust, non-recursive mutex at `off` (64-aligned, taking
    /// [`MUTEX_SIZE`] bytes). Needs `&mut self`: only the creator of a fresh mapping, before any
    /// other thread or process can see it, initialises its mutexes.
    pub fn init_mutex(&mut self, off: usize) -> io::Result<()> {
        let m = self.mutex_ptr(off);
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let err = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(r))
            }
        };
        // `attr` is initialised by pthread_mutexattr_init before the other calls use it and
        // destroyed at the end.
        // SAFETY: `m` points at MUTEX_SIZE bytes of this fresh mapping, unused by anyone else.
        unsafe {
            err(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let a = attr.as_mut_ptr();
            let r = err(libc::pthread_mutexattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|_| {
                err(libc::pthread_mutexattr_setrobust(
                    a,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|_| {
                err(libc::pthread_mutexattr_settype(
                    a,
                    libc::PTHREAD_MUTEX_NORMAL,
                ))
            })
            .and_then(|_| err(libc::pthread_mutex_init(m, a)));
            libc::pthread_mutexattr_destroy(a);
            r
        }
    }

    /// Locks the mutex at `off` (made by [`Mapping::init_mutex`] in this mapping's file):
    /// `block` false tries once; otherwise waits up to `timeout` (`None`: forever). A dead
    /// previous owner is reported as [`LockOutcome::OwnerDied`] and the mutex made consistent.
    #[inline]
    pub fn mutex_lock(
        &self,
        off: usize,
        block: bool,
        timeout: Option<Duration>,
    ) -> io::Result<LockOutcome> {
        let m = self.mutex_ptr(off);
        let r = if !block {
            // SAFETY: `m` is an initialised process-shared mutex in this live mapping (the
            // creator initialised it before sharing the file).
            unsafe { libc::pthread_mutex_trylock(m) }
        } else {
            match timeout {
                // SAFETY: as above.
                None => unsafe { libc::pthread_mutex_lock(m) },
                Some(t) => {
                    // A free mutex is taken without reading the clock.
                    // SAFETY: as above.
                    match unsafe { libc::pthread_mutex_trylock(m) } {
                        // SAFETY: as above.
                        libc::EBUSY => unsafe { timed_lock(m, t) },
                        r => r,
                    }
                }
            }
        };
        match r {
            0 => Ok(LockOutcome::Acquired),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD means acquired); marking it consistent
                // is what the robust protocol asks of the new owner.
                unsafe { libc::pthread_mutex_consistent(m) };
                Ok(LockOutcome::OwnerDied)
            }
            libc::EBUSY | libc::ETIMEDOUT => Ok(LockOutcome::NotAcquired),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Unlocks the mutex at `off`. `PermissionDenied` if the calling thread does not hold it.
    #[inline]
    pub fn mutex_unlock(&self, off: usize) -> io::Result<()> {
        let m = self.mutex_ptr(off);
        // SAFETY: `m` is an initialised process-shared robust mutex in this live mapping; a robust
        // mutex checks ownership and returns EPERM when the caller is not the owner.
        let r = unsafe { libc::pthread_mutex_unlock(m) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }

    /// Whether the mutex at `off` is held by the calling thread.
    ///
    /// A robust mutex's futex word (glibc's `__lock`, the first word of `pthread_mutex_t`) holds
    /// its owner's thread id, and the kernel sets `FUTEX_OWNER_DIED` in it when that thread dies
    /// holding it; so the answer is exact even when a dead thread's id has been reused.
    #[inline]
    pub fn mutex_is_mine(&self, off: usize) -> bool {
        let word = self.u32_at(off).load(Ordering::Relaxed);
        word & (FUTEX_TID_MASK | FUTEX_OWNER_DIED) == current_ids().1
    }

    /// Whether the mutex at `off` is held by a live thread (when its owner dies, the kernel
    /// clears the owner from the futex word and marks it `FUTEX_OWNER_DIED`).
    #[inline]
    pub fn mutex_is_locked(&self, off: usize) -> bool {
        self.u32_at(off).load(Ordering::Relaxed) & FUTEX_TID_MASK != 0
    }

    /// Records that a thread of this process holds one of this mapping's mutexes without a
    /// borrow that keeps the mapping alive (a lock guard was forgotten): until as many
    /// [`unpin`](Mapping::unpin)s, dropping the mapping leaves its pages mapped.
    pub fn pin(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    /// Undoes one [`pin`](Mapping::pin) (none left: does nothing).
    pub fn unpin(&self) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// Locks `m` waiting at most `t`, measured on the monotonic clock (a step of the wall clock
/// neither shortens nor stretches the wait); returns what `pthread_mutex_clocklock` returns.
///
/// # Safety
/// `m` points to an initialised process-shared mutex in a mapping that outlives the call.
unsafe fn timed_lock(m: *mut libc::pthread_mutex_t, t: Duration) -> libc::c_int {
    // glibc 2.30 and later; the `libc` crate does not declare it.
    extern "C" {
        fn pthread_mutex_clocklock(
            mutex: *mut libc::pthread_mutex_t,
            clock: libc::clockid_t,
            abstime: *const libc::timespec,
        ) -> libc::c_int;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let abs = Duration::new(now.tv_sec as u64, now.tv_nsec as u32).saturating_add(t);
    let ts = libc::timespec {
        tv_sec: abs.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: abs.subsec_nanos() as _,
    };
    // SAFETY: `m` is an initialised process-shared mutex in a live mapping (this function's
    // contract); `ts` is a valid timespec that outlives the call.
    unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &ts) }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.held.load(Ordering::Relaxed) != 0 {
            // A thread of ours may still hold a mutex here (its guard was forgotten): glibc's
            // robust list would point into these pages, so they must stay mapped.
            return;
        }
        // SAFETY: `ptr`/`len` describe a mapping made by `map` that no borrow outlives (every
        // view borrows `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Identifies the calling thread across processes: `(pid, tid)`, cached per thread (no system
/// call after the first) and refreshed after a `fork`.
#[inline]
pub fn current_ids() -> (u32, u32) {
    use std::cell::Cell;
    use std::sync::Once;
    static ATFORK: Once = Once::new();
    static FORK_GEN: AtomicU64 = AtomicU64::new(1);
    extern "C" fn child_after_fork() {
        FORK_GEN.fetch_add(1, Ordering::Relaxed);
    }
    thread_local! {
        static IDS: Cell<(u64, u32, u32)> = const { Cell::new((0, 0, 0)) };
    }
    let gen = FORK_GEN.load(Ordering::Relaxed);
    IDS.with(|c| {
        let (g, pid, tid) = c.get();
        if g == gen {
            return (pid, tid);
        }
        // The first call in this thread (the handler is registered before any ids are cached),
        // or the first since a fork.
        ATFORK.call_once(|| {
            // SAFETY: registers a plain `extern "C" fn()` that only touches an atomic, which is
            // async-signal-safe as a fork handler must be.
            unsafe { libc::pthread_atfork(None, None, Some(child_after_fork)) };
        });
        let gen = FORK_GEN.load(Ordering::Relaxed);
        // SAFETY: getpid and gettid take no arguments and cannot fail.
        let ids = unsafe { (libc::getpid() as u32, libc::gettid() as u32) };
        c.set((gen, ids.0, ids.1));
        ids
    })
}
