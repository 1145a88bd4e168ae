//! Entry points that cross an `execve`: a function is sent to a spawned or forkserver child as
//! its offset from a fixed anchor function (procspawn's technique). Both processes run the same
//! executable image, so the offset is the same in both, whatever ASLR did.

use serde::{Deserialize, Serialize};

/// The signature of every child entry point: it receives the child's serialised arguments and
/// returns the exit code.
pub type EntryFn = fn(&[u8]) -> i32;

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
pub fn image_fingerprint() -> i64 {
    anchor_probe as *const () as usize as i64 - anchor as *const () as usize as i64
}

/// An entry point as an offset from the anchor. Only two things make one: [`EntryOffset::of`] in
/// the parent, and deserialisation of what that parent sent over a private channel (a socketpair
/// made for this child, or the forkserver's connection), together with the sender's
/// [`image_fingerprint`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryOffset {
    offset: i64,
    fingerprint: i64,
}

impl EntryOffset {
    /// The offset of `f` in this image.
    pub fn of(f: EntryFn) -> Self {
        EntryOffset {
            offset: f as *const () as usize as i64 - anchor as *const () as usize as i64,
            fingerprint: image_fingerprint(),
        }
    }

    /// Calls the entry point with `args`, or returns `None` if the sender's image is not ours.
    pub fn call(self, args: &[u8]) -> Option<i32> {
        if self.fingerprint != image_fingerprint() {
            return None;
        }
        let addr = (anchor as *const () as usize as i64 + self.offset) as usize;
        // SAFETY: an `EntryOffset` is made only by `of` from a real `EntryFn` of this image, then
        // carried unchanged over a private channel to a process running the same executable
        // (checked just above by the fingerprint). The same image puts the same function at the
        // same distance from `anchor`, so `addr` is the address of that `EntryFn` here.
        let f: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(addr) };
        Some(f(args))
    }
}

/// Makes a value of a zero-sized function type (a function item or a closure that captures
/// nothing) out of thin air, so that a child can call the target its parent named by type.
/// Returns `None` for a type with a size: such a closure captures state and cannot cross an
/// `exec`.
pub fn conjure_zst_fn<F: Copy + 'static>() -> Option<F> {
    if std::mem::size_of::<F>() != 0 {
        return None;
    }
    // SAFETY: `F` has size zero, so reading one from a dangling, well-aligned pointer reads no
    // bytes. The callers bound `F` by the
    // `Fn*` traits, which only function items, closures and function pointers implement, and of
    // those only function items and closures capturing nothing (or only other such values) are
    // zero-sized: none of them has a validity invariant. `Copy` rules out duplicating a captured
    // move-only token.
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
