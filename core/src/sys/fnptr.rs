//! Entry points that cross an `execve`: a function is sent to a spawned or forkserver child as
//! its offset from a fixed anchor function (procspawn's technique). Both processes run the same
//! executable image, so the offset is the same in both, whatever ASLR did.

use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

/// The signature of every child entry point: it receives the child's serialised arguments and
/// the descriptors that came with them, and returns the exit code.
pub type EntryFn = fn(&[u8], Vec<OwnedFd>) -> i32;

/// The signature of a pool task's entry point: it receives the task's serialised arguments and
/// appends the serialised outcome to the buffer.
pub type TaskFn = fn(&[u8], &mut Vec<u8>);

/// Which signature an [`EntryOffset`] points at: checked before the call, so that an offset made
/// for one signature is never called through the other.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
enum EntryKind {
    /// An [`EntryFn`].
    Process,
    /// A [`TaskFn`].
    Task,
}

#[inline(never)]
fn anchor() -> usize {
    0x00a1_1ce5
}

#[inline(never)]
fn anchor_probe() -> usize {
    0xb0b
}

/// The distance between two functions of this image: the same in every process running the same
/// executable, and almost surely different for another build. Checked before a received offset
/// is used.
fn image_fingerprint() -> i64 {
    anchor_probe as *const () as usize as i64 - anchor as *const () as usize as i64
}

/// An entry point as an offset from the anchor.
///
/// Calling one is sound only if it came, unchanged, from [`EntryOffset::of`] (or
/// [`EntryOffset::of_task`]) in a process running the same executable. The fingerprint and kind
/// checks catch another build and the other signature; the rest is an invariant of the crate,
/// kept by where offsets travel: only over channels private to a parent and its children (a
/// spawned or forkserver child's bootstrap channel, a pool worker's socketpair, a barrier's
/// shared region, none of them reachable from outside the crate). `core/tests/layering.rs`
/// checks that no other module names this type.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryOffset {
    offset: i64,
    fingerprint: i64,
    kind: EntryKind,
}

impl EntryOffset {
    /// The offset of `f` in this image.
    pub fn of(f: EntryFn) -> Self {
        EntryOffset {
            offset: f as *const () as usize as i64 - anchor as *const () as usize as i64,
            fingerprint: image_fingerprint(),
            kind: EntryKind::Process,
        }
    }

    /// The offset of the pool task entry point `f` in this image.
    pub fn of_task(f: TaskFn) -> Self {
        EntryOffset {
            offset: f as *const () as usize as i64 - anchor as *const () as usize as i64,
            fingerprint: image_fingerprint(),
            kind: EntryKind::Task,
        }
    }

    /// The address of the function in this image, if the sender's image is ours and the offset
    /// was made for the signature `kind`.
    fn address(self, kind: EntryKind) -> Option<usize> {
        if self.fingerprint != image_fingerprint() || self.kind != kind {
            return None;
        }
        Some((anchor as *const () as usize as i64 + self.offset) as usize)
    }

    /// Calls the entry point with `args` and `fds`, or returns `None` if the sender's image is
    /// not ours (or the offset names a task entry point, not a process one).
    pub fn call(self, args: &[u8], fds: Vec<OwnedFd>) -> Option<i32> {
        let addr = self.address(EntryKind::Process)?;
        // An `EntryOffset` of kind `Process` is made only by `of` from a real `EntryFn` of this
        // image, then carried unchanged over a private channel to a process running the same
        // executable (checked by the fingerprint in `address`). The same image puts the same
        // function at the same distance from `anchor`.
        // SAFETY: so `addr` is the address of that `EntryFn` in this process.
        let f: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(addr) };
        Some(f(args, fds))
    }

    /// Calls the pool task entry point with `args`, appending its outcome to `out`. Returns
    /// `false` (calling nothing) if the sender's image is not ours or the offset names a process
    /// entry point.
    pub fn call_task(self, args: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(addr) = self.address(EntryKind::Task) else {
            return false;
        };
        // An `EntryOffset` of kind `Task` is made only by `of_task` from a real `TaskFn` of this
        // image, then carried unchanged over a private channel (a pool worker's socketpair) to a
        // process running the same executable (checked by the fingerprint in `address`); under
        // fork it is the very same image. The same image puts the same function at the same
        // distance from `anchor`.
        // SAFETY: so `addr` is the address of that `TaskFn` in this process.
        let f: TaskFn = unsafe { std::mem::transmute::<usize, TaskFn>(addr) };
        f(args, out);
        true
    }
}

/// A function value taking the arguments `Args` as a tuple: a function item, a closure or a
/// function pointer. Implemented for exactly the types that implement the `Fn` traits (which, on
/// stable Rust, only the compiler implements), and sealed: this module is private to the crate,
/// so no other type can implement it. [`conjure_zst_fn`] relies on that.
pub trait FnValue<Args>: Copy + 'static {}

// One impl per arity, from eight arguments down to none.
macro_rules! impl_fn_value {
    () => {
        impl<F, R> FnValue<()> for F where F: Fn() -> R + Copy + 'static {}
    };
    ($head:ident $(, $tail:ident)*) => {
        impl<F, R, $head, $($tail,)*> FnValue<($head, $($tail,)*)> for F
        where
            F: Fn($head, $($tail),*) -> R + Copy + 'static,
        {
        }
        impl_fn_value!($($tail),*);
    };
}

impl_fn_value!(A1, A2, A3, A4, A5, A6, A7, A8);

/// Makes a value of a zero-sized function type (a function item or a closure that captures
/// nothing) out of thin air, so that a child can call the target its parent named by type.
/// Returns `None` for a type with a size: such a closure captures state and cannot cross an
/// `exec`.
pub fn conjure_zst_fn<F: FnValue<Args>, Args>() -> Option<F> {
    if std::mem::size_of::<F>() != 0 {
        return None;
    }
    // `F` implements the `Fn` traits (`FnValue` is sealed to those types), which only function
    // items, closures and function pointers do; of those only function items and closures
    // capturing nothing (or only other such values) are zero-sized, and none of them has a
    // validity invariant. `Copy` rules out duplicating a captured move-only token.
    // SAFETY: `F` has size zero and no invariant (above): reading one from a dangling,
    // well-aligned pointer reads no bytes.
    Some(unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() })
}

/// Defines, in a test or bench binary, a constructor that calls [`crate::init`] before `main`,
/// so that the spawn and forkserver start methods work in binaries whose `main` is not ours
/// (libtest's, criterion's). Write `mproc::enable_test_support!();` once at the top level of
/// such a crate.
#[macro_export]
macro_rules! enable_test_support {
    () => {
        #[used]
        #[link_section = ".init_array"]
        static __MPROC_INIT_ARRAY_ENTRY: extern "C" fn() = {
            extern "C" fn __mproc_init_before_main() {
                $crate::init();
            }
            __mproc_init_before_main
        };
    };
}
