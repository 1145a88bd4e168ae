//! The parent's own steps.

vocabulary! {
    /// A step of the parent itself.
    enum ParentOp, table OPS;
    /// the parent sleeps
    SleepMs = "sleep_ms" [ms], Nothing { ms: req Int }
    /// the parent prints a line (flushed)
    Print = "print" [text], Nothing { text: req Str }
    /// call a task in the parent (in a workload: a bench task)
    Call = "call", Result, bench { task: req Task, args: opt List }
}
