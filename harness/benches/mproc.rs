//! The bench binary behind `cargo xtask bench` (run it with `cargo bench -p mproc-harness --bench
//! mproc -- --help`). The engine is `mproc_harness::bench`; this file adds what only a bench
//! target may depend on: the procspawn peers.

use mproc_harness::bench::probe::FnProbe;
use mproc_harness::bench::run::{main_with, PeerSpec};
use mproc_harness::bench::workload::Kind;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

mproc::enable_test_support!();
mproc_harness::enable_bench_support!();

fn procspawn_noop(_: ()) {}

fn procspawn_spawn_join() -> FnProbe {
    FnProbe {
        setup: Box::new(|| Ok(())),
        run: Box::new(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                procspawn::spawn((), procspawn_noop)
                    .join()
                    .map_err(|e| format!("procspawn: {e}"))?;
            }
            Ok(t0.elapsed())
        }),
        teardown: Box::new(|| Ok(())),
        ops: 1,
    }
}

fn procspawn_pool_rtt() -> FnProbe {
    let pool: Rc<RefCell<Option<procspawn::Pool>>> = Rc::new(RefCell::new(None));
    let (p1, p2, p3) = (pool.clone(), pool.clone(), pool);
    FnProbe {
        setup: Box::new(move || {
            let p = procspawn::Pool::new(2).map_err(|e| format!("procspawn pool: {e}"))?;
            // One job first, so that the workers are up before the clock runs.
            p.spawn((), procspawn_noop)
                .join()
                .map_err(|e| format!("procspawn: {e}"))?;
            *p1.borrow_mut() = Some(p);
            Ok(())
        }),
        run: Box::new(move |iters| {
            let g = p2.borrow();
            let p = g.as_ref().ok_or("not set up")?;
            let t0 = Instant::now();
            for _ in 0..iters {
                p.spawn((), procspawn_noop)
                    .join_timeout(Duration::from_secs(60))
                    .map_err(|e| format!("procspawn: {e}"))?;
            }
            Ok(t0.elapsed())
        }),
        teardown: Box::new(move || {
            if let Some(p) = p3.borrow_mut().take() {
                p.shutdown();
            }
            Ok(())
        }),
        ops: 1,
    }
}

fn main() {
    procspawn::init();
    let peers = vec![
        PeerSpec {
            id: "procspawn/spawn_join".into(),
            title: "procspawn::spawn + join of a trivial closure".into(),
            workload: "start_join".into(),
            kind: Kind::Latency,
            iters: 1,
            make: Box::new(procspawn_spawn_join),
        },
        PeerSpec {
            id: "procspawn/pool_rtt".into(),
            title: "procspawn Pool(2): spawn + join of a trivial job".into(),
            workload: "apply_rtt".into(),
            kind: Kind::Latency,
            iters: 20,
            make: Box::new(procspawn_pool_rtt),
        },
    ];
    std::process::exit(main_with(peers));
}
