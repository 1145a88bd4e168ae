//! Pools and their results.

vocabulary! {
    /// An action on pools and their results.
    enum PoolOp, table OPS;
    /// create a pool of the case's context
    Pool = "pool", Nothing, bench {
        id: req Str, processes: opt Int, initializer: opt Task, initargs: opt List,
        maxtasksperchild: opt Int,
    }
    /// run a task in the pool and wait for its result
    Apply = "apply", Result { pool: req Id, task: req Task, args: opt List }
    /// submit a task; `id` names the AsyncResult; callbacks are recorded for `callbacks`
    ApplyAsync = "apply_async", Nothing, bench {
        id: req Str, pool: req Id, task: req Task, args: opt List, callback: opt Bool,
        error_callback: opt Bool,
    }
    /// map a one-argument task over the items
    Map = "map", Result, bench { pool: req Id, task: req Task, items: req Items, chunksize: opt Int }
    /// map asynchronously; `id` names the result
    MapAsync = "map_async", Nothing {
        id: req Str, pool: req Id, task: req Task, items: req Items, chunksize: opt Int,
    }
    /// map over argument lists
    Starmap = "starmap", Result { pool: req Id, task: req Task, items: req List, chunksize: opt Int }
    /// iterate the results in order (collected)
    Imap = "imap", Result { pool: req Id, task: req Task, items: req Items, chunksize: opt Int }
    /// iterate the results as they come (collected, then sorted so traces compare)
    ImapUnordered = "imap_unordered", Result {
        pool: req Id, task: req Task, items: req Items, chunksize: opt Int,
    }
    /// an AsyncResult's value, or an item from a queue (block, timeout)
    Get = "get" [id], Result, bench { id: req Id, timeout_ms: opt Int, block: opt Bool }
    /// wait for an AsyncResult; the value is whether it is ready
    Wait = "wait" [id], Observation { id: req Id, timeout_ms: opt Int }
    /// whether an AsyncResult is ready
    Ready = "ready" [id], Observation { id: req Id }
    /// whether it succeeded (NotReady before)
    Successful = "successful" [id], Observation { id: req Id }
    /// the callbacks fired so far, sorted: "callback ID: VALUE" / "error_callback ID: KIND"
    Callbacks = "callbacks", Observation {}
}
