//! CPU placement, set by the harness rather than left to the scheduler: on these machines a
//! wake-up that crosses CPUs costs tens of microseconds, so a round trip means nothing unless
//! both sides were placed alike. Every workload, raw limit and CPython run is measured under one
//! of two placements:
//!
//! - **same-cpu**: the measuring process, its threads and every child on one CPU (`home`);
//! - **split**: the measuring process and its threads on `home`; children on the other CPU
//!   (`other`), alternating `other`, `home`, `other`, ... in the order the parent starts them
//!   (so the peer of every two-party workload is on `other`, and two contending children are
//!   on different CPUs). A pool's workers all go to `other`. Children that a forkserver forks
//!   inherit the server's placement: it is started with the first child, so on `other`.
//!
//! `home` and `other` are the first two CPUs this process may use. With one usable CPU, split
//! is unavailable (and said so); where the affinity cannot be read or set, runs are unpinned
//! ("free") and the report says that too. `harness/py/bench_reference.py` applies the same
//! rules with `os.sched_setaffinity`.
//!
//! Children inherit the affinity of the thread that forks them, so a child is placed by setting
//! the calling thread's affinity around the call that starts it ([`for_child`]); nothing is
//! changed inside the library.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Where the two sides of a workload run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Placement {
    /// Everything on one CPU.
    #[serde(rename = "same-cpu")]
    SameCpu,
    /// The parent on one CPU, its children on another.
    #[serde(rename = "split")]
    Split,
    /// Not pinned (affinity unavailable): the scheduler decides.
    #[serde(rename = "free")]
    Free,
}

impl Placement {
    /// The name used on the command line, in results and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::SameCpu => "same-cpu",
            Placement::Split => "split",
            Placement::Free => "free",
        }
    }
    /// Parses a name.
    pub fn parse(s: &str) -> Result<Placement, String> {
        match s {
            "same-cpu" => Ok(Placement::SameCpu),
            "split" => Ok(Placement::Split),
            "free" => Ok(Placement::Free),
            other => Err(format!(
                "unknown placement {other:?}: expected same-cpu, split or free"
            )),
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CPUs this process may use (its affinity mask), in order.
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("sched_getaffinity: {e}"))?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// Which placements this machine offers, and why not the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The placements that can be measured (at least one: `free` when nothing can be pinned).
    pub available: Vec<Placement>,
    /// Why a placement is missing, if one is.
    pub notice: Option<String>,
}

/// The placements this machine offers.
pub fn offer() -> Offer {
    match allowed_cpus() {
        Ok(c) if c.len() >= 2 => Offer {
            available: vec![Placement::SameCpu, Placement::Split],
            notice: None,
        },
        Ok(c) if c.len() == 1 => Offer {
            available: vec![Placement::SameCpu],
            notice: Some(format!(
                "only CPU {} may be used: the split placement is skipped",
                c[0]
            )),
        },
        Ok(_) => Offer {
            available: vec![Placement::Free],
            notice: Some("the affinity mask is empty: runs are not pinned".into()),
        },
        Err(e) => Offer {
            available: vec![Placement::Free],
            notice: Some(format!("{e}: runs are not pinned")),
        },
    }
}

/// The placement the gate uses: same-cpu (the stable one: no cross-CPU wake-ups) where it can.
pub fn gate_placement() -> Placement {
    if offer().available.contains(&Placement::SameCpu) {
        Placement::SameCpu
    } else {
        Placement::Free
    }
}

/// The CPUs of an applied placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpus {
    /// The measuring process's CPU.
    pub home: Option<usize>,
    /// The children's CPU under split.
    pub other: Option<usize>,
}

#[derive(Debug)]
struct Placer {
    placement: Placement,
    home: usize,
    other: usize,
    started: usize,
}

static PLACER: Mutex<Option<Placer>> = Mutex::new(None);

fn pin(cpu: usize) -> Result<(), String> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| format!("cpu {cpu}: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("sched_setaffinity({cpu}): {e}"))
}

/// Applies `placement` to the calling thread (call it first, before any child or thread is
/// started: they inherit it) and remembers it for [`for_child`]. Returns the CPUs used.
pub fn apply(placement: Placement) -> Result<Cpus, String> {
    if placement == Placement::Free {
        *PLACER.lock().unwrap_or_else(|e| e.into_inner()) = None;
        return Ok(Cpus {
            home: None,
            other: None,
        });
    }
    let cpus = allowed_cpus()?;
    let home = *cpus.first().ok_or("the affinity mask is empty")?;
    let other = match placement {
        Placement::Split => *cpus
            .get(1)
            .ok_or("split needs two usable CPUs, this process may use one")?,
        _ => home,
    };
    pin(home)?;
    *PLACER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Placer {
        placement,
        home,
        other,
        started: 0,
    });
    Ok(Cpus {
        home: Some(home),
        other: (placement == Placement::Split).then_some(other),
    })
}

/// What a child is: a process (placed alternately under split) or a pool (all on `other`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    /// One process.
    Process,
    /// A pool's workers.
    Pool,
}

/// Runs `f`, which starts a child, with the calling thread on the child's CPU, then puts the
/// thread back on `home`. Without an applied placement, just runs `f`.
pub fn for_child<R>(kind: Child, f: impl FnOnce() -> R) -> R {
    let target = {
        let mut g = PLACER.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some(p) if p.placement == Placement::Split => {
                let cpu = match kind {
                    Child::Pool => p.other,
                    Child::Process if p.started % 2 == 0 => p.other,
                    Child::Process => p.home,
                };
                if kind == Child::Process {
                    p.started += 1;
                }
                Some((cpu, p.home))
            }
            _ => None,
        }
    };
    match target {
        Some((cpu, home)) if cpu != home => {
            // A failure to move leaves the child on `home`: still measured, and the same for
            // both sides of an A/B comparison.
            let _ = pin(cpu);
            let r = f();
            let _ = pin(home);
            r
        }
        _ => f(),
    }
}

/// Starts the alternation again (each sample's children are placed alike).
pub fn reset_alternation() {
    if let Some(p) = PLACER.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        p.started = 0;
    }
}
