//! What the sampler measures: a [`Probe`] prepares, runs a number of timed passes, and cleans up.

use std::time::Duration;

/// A measurable operation.
pub trait Probe {
    /// Prepares (children, pipes, pools). Not timed.
    fn setup(&mut self) -> Result<(), String>;
    /// Runs `iters` timed passes and returns the time they took.
    fn run(&mut self, iters: u64) -> Result<Duration, String>;
    /// Cleans up (joins children). Not timed.
    fn teardown(&mut self) -> Result<(), String>;
    /// Operations in one pass (the cost per operation is time ÷ (iters × ops)).
    fn ops_per_pass(&self) -> u64;
}

/// A probe made of closures (for the procspawn peers, which live in the bench binary).
pub struct FnProbe {
    /// Prepares.
    pub setup: Box<dyn FnMut() -> Result<(), String>>,
    /// Runs `iters` passes, returning their time.
    pub run: Box<dyn FnMut(u64) -> Result<Duration, String>>,
    /// Cleans up.
    pub teardown: Box<dyn FnMut() -> Result<(), String>>,
    /// Operations per pass.
    pub ops: u64,
}

impl std::fmt::Debug for FnProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnProbe").field("ops", &self.ops).finish()
    }
}

impl Probe for FnProbe {
    fn setup(&mut self) -> Result<(), String> {
        (self.setup)()
    }
    fn run(&mut self, iters: u64) -> Result<Duration, String> {
        (self.run)(iters)
    }
    fn teardown(&mut self) -> Result<(), String> {
        (self.teardown)()
    }
    fn ops_per_pass(&self) -> u64 {
        self.ops
    }
}
