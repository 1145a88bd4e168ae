//! Processes: create, start, join, observe, signal, close.

vocabulary! {
    /// An action on processes.
    enum ProcessOp, table OPS;
    /// create a process running a task (`count`: a group of that many, which the other process actions act on together)
    Process = "process", Nothing, bench {
        id: req Str, task: req Task, args: opt List, name: opt Str, daemon: opt Bool,
        context: opt Context, count: opt Int,
    }
    /// start a process (or a group)
    Start = "start" [id], Nothing, bench { id: req Id }
    /// join a process (optional timeout), a pool or a joinable queue
    Join = "join" [id], Nothing, bench { id: req Id, timeout_ms: opt Int }
    /// whether the process runs
    IsAlive = "is_alive" [id], Observation { id: req Id }
    /// the exit code (null while running)
    Exitcode = "exitcode" [id], Observation { id: req Id }
    /// the process's name
    Name = "name" [id], Observation { id: req Id }
    /// rename a process
    SetName = "set_name", Nothing { id: req Id, name: req Str }
    /// the daemon flag
    IsDaemon = "is_daemon" [id], Observation { id: req Id }
    /// set the daemon flag
    SetDaemon = "set_daemon", Nothing { id: req Id, daemon: req Bool }
    /// whether the process has a pid (pids themselves are redacted)
    HasPid = "has_pid" [id], Observation { id: req Id }
    /// SIGTERM a process, or terminate a pool
    Terminate = "terminate" [id], Nothing { id: req Id }
    /// SIGKILL a process
    Kill = "kill" [id], Nothing { id: req Id }
    /// close a process, a connection, a pool or a queue
    Close = "close" [id], Nothing, bench { id: req Id }
    /// the number of running children
    ActiveChildren = "active_children", Observation {}
    /// the current process's name and daemon flag
    CurrentProcess = "current_process", Observation {}
    /// the current process joins itself (an error)
    JoinCurrent = "join_current", Nothing {}
}
