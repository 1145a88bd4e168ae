//! The mproc harness: declarative cases run under every start method.
pub mod bench;
