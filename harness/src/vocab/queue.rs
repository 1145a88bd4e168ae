//! Queues.

vocabulary! {
    /// An action on queues.
    enum QueueOp, table OPS;
    /// create a Queue (or a JoinableQueue; `bytes`: a queue of byte strings)
    Queue = "queue", Nothing, bench { id: req Str, maxsize: opt Int, joinable: opt Bool, bytes: opt Bool }
    /// put a value
    Put = "put", Nothing { id: req Id, value: req Any, block: opt Bool, timeout_ms: opt Int }
    /// the approximate size
    Qsize = "qsize" [id], Observation { id: req Id }
    /// whether the queue is empty
    Empty = "empty" [id], Observation { id: req Id }
    /// whether the queue is full
    Full = "full" [id], Observation { id: req Id }
    /// mark a JoinableQueue item done
    TaskDone = "task_done" [id], Nothing { id: req Id }
}
