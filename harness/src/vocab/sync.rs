//! Locks, semaphores, events, conditions, barriers.

vocabulary! {
    /// An action on a synchronisation primitive.
    enum SyncOp, table OPS;
    /// create a Lock, RLock, Semaphore or BoundedSemaphore (kind; value for semaphores)
    Lock = "lock", Nothing, bench { id: req Str, kind: opt LockKind, value: opt Int, context: opt Context }
    /// acquire; the value is whether it was acquired
    Acquire = "acquire" [id], Observation { id: req Id, block: opt Bool, timeout_ms: opt Int }
    /// release
    Release = "release" [id], Nothing { id: req Id }
    /// create an Event
    Event = "event" [id], Nothing { id: req Str }
    /// set an Event
    EventSet = "event_set" [id], Nothing { id: req Id }
    /// clear an Event
    EventClear = "event_clear" [id], Nothing { id: req Id }
    /// whether the Event is set
    EventIsSet = "event_is_set" [id], Observation { id: req Id }
    /// wait for the Event; the value is whether it is set
    EventWait = "event_wait" [id], Observation { id: req Id, timeout_ms: opt Int }
    /// create a Barrier for `parties` parties
    Barrier = "barrier", Nothing { id: req Str, parties: req Int }
    /// wait at the barrier (a timeout breaks it)
    BarrierWait = "barrier_wait" [id], Nothing { id: req Id, timeout_ms: opt Int }
    /// whether the barrier is broken
    Broken = "broken" [id], Observation { id: req Id }
    /// reset the barrier
    BarrierReset = "barrier_reset" [id], Nothing { id: req Id }
    /// create a Condition (acquire and release it like a lock)
    Condition = "condition" [id], Nothing { id: req Str }
    /// wait to be notified (holding the condition); the value is false on timeout
    ConditionWait = "condition_wait" [id], Observation { id: req Id, timeout_ms: opt Int }
    /// wake up to n waiters (default 1; holding the condition)
    Notify = "notify" [id], Nothing { id: req Id, n: opt Int }
    /// wake every waiter (holding the condition)
    NotifyAll = "notify_all" [id], Nothing { id: req Id }
}
