//! Pipes and connections.

vocabulary! {
    /// An action on pipes and connections.
    enum IpcOp, table OPS;
    /// make a pipe; ids = [a, b] (simplex: a reads, b writes)
    Pipe = "pipe", Nothing, bench { ids: req Ids, duplex: opt Bool }
    /// send a value
    Send = "send", Nothing { id: req Id, value: req Any }
    /// receive a value
    Recv = "recv" [id], Result { id: req Id }
    /// send bytes: `data` (a UTF-8 string, optionally a slice) or `bytes` (that many bytes)
    SendBytes = "send_bytes", Nothing, bench {
        id: req Id, data: opt Str, bytes: opt Int, offset: opt Int, size: opt Int,
    }
    /// receive bytes (as a string)
    RecvBytes = "recv_bytes" [id], Result, bench { id: req Id, maxlen: opt Int }
    /// whether data is ready (timeout 0 when absent)
    Poll = "poll" [id], Observation { id: req Id, timeout_ms: opt Int }
}
