//! `mproc-bench`: the bench engine without the procspawn peers (which only the bench target
//! `harness/benches/mproc.rs` may depend on). It speaks the same sampling protocol
//! (`--protocol`, `sample ...`, `count ...`; see `mproc_harness::bench::protocol`) and takes the
//! same options as `cargo xtask bench`; the harness's tests drive it, since a test binary's
//! `main` is libtest's.

mproc_harness::enable_bench_support!();

fn main() {
    mproc::init();
    std::process::exit(mproc_harness::bench::run::main_with(Vec::new()));
}
