//! Command-line parsing shared by the examples: `--method fork|spawn|forkserver` and numeric
//! flags. (Each example includes this file with `mod common;`; not every example uses every
//! function.)
#![allow(dead_code)]

use mproc::{Error, StartMethod};
use std::time::{SystemTime, UNIX_EPOCH};

/// The value after `flag` on the command line, if any.
pub fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--method M`, or the platform default when the flag is absent. An unknown method is a typed
/// error naming it; a flag without a value is one too.
pub fn method() -> mproc::Result<StartMethod> {
    let present = std::env::args().any(|a| a == "--method");
    match arg("--method") {
        Some(m) => m.parse(),
        None if present => Err(Error::InvalidArgument(
            "--method needs a value: fork, spawn or forkserver".into(),
        )),
        None => Ok(StartMethod::platform_default()),
    }
}

/// A numeric flag, or `default` when absent; a value that is not a number is a typed error.
pub fn number<T: std::str::FromStr>(flag: &str, default: T) -> mproc::Result<T> {
    match arg(flag) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("{flag} needs a number, got {v:?}"))),
    }
}

/// A seed for the examples' random sleeps: the clock's nanoseconds.
pub fn time_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x2545_f491_4f6c_dd1d)
}

/// A xorshift64* draw from `seed`, uniform enough in `0..=max`.
pub fn random_below(seed: u64, max: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..4 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
    }
    x.wrapping_mul(0x2545_f491_4f6c_dd1d) % (max + 1)
}
