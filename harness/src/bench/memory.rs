//! Resident memory per child: what one started process, and one pool worker, costs in memory
//! under each start method, next to a raw fork child and CPython's. Read from the parent side
//! (`/proc/<pid>/status` `VmRSS`, and `/proc/<pid>/smaps_rollup` private pages: what the child
//! does not share with anyone) while the child waits, after it has started for real.

use super::limits;
use super::placement::{self, Child};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What is measured.
pub const SUBJECTS: &[&str] = &["child", "pool_worker"];

/// Waits for a message (or end of file) after telling the parent it is up: the child whose
/// memory is read.
pub fn rss_wait(conn: mproc::Connection) {
    if conn.send_bytes(b"up").is_ok() {
        let _ = conn.recv_bytes(None);
    }
}

/// This process's id (the pool task whose worker's memory is read).
pub fn worker_pid() -> i64 {
    i64::from(std::process::id())
}

/// Resident and private memory of a process, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rss {
    /// `VmRSS`.
    pub rss: u64,
    /// Private pages (`Private_Clean` + `Private_Dirty` of `smaps_rollup`).
    pub private: u64,
}

fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Reads the memory of process `pid`.
pub fn read(pid: u32) -> Result<Rss, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Ok(Rss {
        rss: kb_field(&status, "VmRSS:").ok_or("no VmRSS")?,
        private: kb_field(&rollup, "Private_Clean:").unwrap_or(0)
            + kb_field(&rollup, "Private_Dirty:").unwrap_or(0),
    })
}

const WAIT: Duration = Duration::from_secs(60);

/// One reading of `subject` (`child`, `pool_worker`; `raw_fork` for the raw limit) under
/// `method`.
pub fn measure_once(subject: &str, method: mproc::StartMethod) -> Result<Rss, String> {
    let ctx = mproc::get_context(method);
    let e = |e: mproc::Error| e.to_string();
    match subject {
        "child" => {
            let (a, b) = ctx.pipe(true).map_err(e)?;
            let p = ctx.process(rss_wait, (b,));
            placement::reset_alternation();
            placement::for_child(Child::Process, || p.start()).map_err(e)?;
            let up = match a.poll(Some(WAIT)).map_err(e) {
                Ok(true) => a.recv_bytes(None).map_err(e),
                Ok(false) => Err(format!("the child did not start in {WAIT:?}")),
                Err(x) => Err(x),
            };
            let r = up.and_then(|_| read(p.pid().ok_or("no pid")?));
            let _ = a.send_bytes(b"");
            p.join(Some(WAIT)).map_err(e)?;
            r
        }
        "pool_worker" => {
            let pool =
                placement::for_child(Child::Pool, || ctx.pool().processes(1).build()).map_err(e)?;
            let pid = pool.apply(worker_pid, ()).map_err(e)?;
            let r = read(pid as u32);
            pool.close().map_err(e)?;
            pool.join().map_err(e)?;
            r
        }
        "raw_fork" => limits::raw_fork_rss(),
        other => Err(format!("unknown memory subject `{other}`")),
    }
}
