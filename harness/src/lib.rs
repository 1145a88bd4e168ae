//! The mproc harness: declarative cases run under every start method.
