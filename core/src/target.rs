//! Targets: the functions a child runs, with their arguments as a tuple.
//!
//! A target is any `Fn(A1, ..., An) -> R` that is `Copy + Send + 'static`, called with a tuple
//! `(a1, ..., an)` of serde-serialisable arguments. Function items and closures that capture
//! nothing are zero-sized: a spawned or forkserver child can name them by type alone, which is how
//! they cross an `exec` (see `sys::fnptr`). A closure that captures state has a size, and only the
//! fork start method can carry it into the child; the others refuse it with
//! [`crate::Error::NotSpawnable`].

use crate::sys::fnptr::FnValue;

/// A callable taking the argument tuple `Args`: implemented for every function and closure of up
/// to eight arguments that is `Copy + Send + 'static`, and for nothing else (the trait is
/// sealed).
pub trait Target<Args>: FnValue<Args> + Copy + Send + 'static {
    /// What the call returns.
    type Output;
    /// Calls the target with the arguments unpacked from the tuple.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($a:ident),*) => {
        impl<F, R, $($a,)*> Target<($($a,)*)> for F
        where
            F: Fn($($a),*) -> R + Copy + Send + 'static,
        {
            type Output = R;
            #[allow(non_snake_case)]
            fn call(self, ($($a,)*): ($($a,)*)) -> R {
                self($($a),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);
impl_target!(A1, A2, A3, A4, A5, A6, A7);
impl_target!(A1, A2, A3, A4, A5, A6, A7, A8);

/// What a process target may return, and the exit code it stands for (as Rust's `main`):
/// `()` is 0; `Ok(())` is 0; `Err(e)` prints `Error: {e:?}` on the child's stderr and is 1.
/// To leave with another code, call [`crate::exit`].
pub trait Termination {
    /// The exit code.
    fn report(self) -> i32;
}

impl Termination for () {
    fn report(self) -> i32 {
        0
    }
}

impl<T: Termination, E: std::fmt::Debug> Termination for Result<T, E> {
    fn report(self) -> i32 {
        match self {
            Ok(t) => t.report(),
            Err(e) => {
                eprintln!("Error: {e:?}");
                1
            }
        }
    }
}

impl Termination for std::convert::Infallible {
    fn report(self) -> i32 {
        match self {}
    }
}
