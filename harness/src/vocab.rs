//! The step vocabulary: every action a case can take, with the shape of its fields. The parser
//! checks steps against these tables, the runners dispatch on the names, and `cases/README.md`
//! documents them. New library features slot in as another table (see [`MODULES`]).

/// The type of an action's field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// The id of an object made by an earlier step (a string; `$var` interpolation allowed).
    Id,
    /// Several ids.
    Ids,
    /// A string.
    Str,
    /// An integer.
    Int,
    /// A boolean.
    Bool,
    /// Any value (TOML scalars, arrays, tables; `"$null"` is null).
    Any,
    /// A list of values.
    List,
    /// A task name from the catalogue.
    Task,
    /// A start method name.
    Method,
}

/// One field of an action.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether it must be given.
    pub required: bool,
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

/// What an action's event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    /// Nothing (the event records only success or the error kind).
    Nothing,
    /// An observation (`is_alive`, `exitcode`, `poll`, ...): kept in the trace.
    Observation,
    /// A result (`recv`, `get`, `apply`, `map`, ...): kept in the trace and collected into
    /// `expect.results`.
    Result,
}

/// An action of the vocabulary.
#[derive(Clone, Copy, Debug)]
pub struct OpSpec {
    /// The key that names the action in a step.
    pub name: &'static str,
    /// The field a bare value stands for (`join = "p"` is `join = { id = "p" }`).
    pub primary: Option<&'static str>,
    /// The fields (besides `error`, which every action accepts).
    pub fields: &'static [Field],
    /// What the event records.
    pub returns: Returns,
    /// One line of documentation.
    pub doc: &'static str,
}

/// Processes: create, start, join, observe, signal, close.
pub const PROCESS: &[OpSpec] = &[
    OpSpec { name: "process", primary: None, fields: &[req("id", Ty::Str), req("task", Ty::Task), opt("args", Ty::List), opt("name", Ty::Str), opt("daemon", Ty::Bool), opt("context", Ty::Str)], returns: Returns::Nothing, doc: "create a process running a catalogue task (context: \"case\" = the case's method, or \"default\")" },
    OpSpec { name: "start", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Nothing, doc: "start a process" },
    OpSpec { name: "join", primary: Some("id"), fields: &[req("id", Ty::Id), opt("timeout_ms", Ty::Int)], returns: Returns::Nothing, doc: "join a process (optional timeout) or a pool" },
    OpSpec { name: "is_alive", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Observation, doc: "whether the process runs" },
    OpSpec { name: "exitcode", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Observation, doc: "the exit code (null while running)" },
    OpSpec { name: "name", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Observation, doc: "the process's name" },
    OpSpec { name: "set_name", primary: None, fields: &[req("id", Ty::Id), req("name", Ty::Str)], returns: Returns::Nothing, doc: "rename a process" },
    OpSpec { name: "is_daemon", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Observation, doc: "the daemon flag" },
    OpSpec { name: "set_daemon", primary: None, fields: &[req("id", Ty::Id), req("daemon", Ty::Bool)], returns: Returns::Nothing, doc: "set the daemon flag" },
    OpSpec { name: "has_pid", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Observation, doc: "whether the process has a pid (pids themselves are redacted)" },
    OpSpec { name: "terminate", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Nothing, doc: "SIGTERM a process, or terminate a pool" },
    OpSpec { name: "kill", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Nothing, doc: "SIGKILL a process" },
    OpSpec { name: "close", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Nothing, doc: "close a process, a connection, a pool or a queue" },
    OpSpec { name: "active_children", primary: None, fields: &[], returns: Returns::Observation, doc: "the number of running children" },
    OpSpec { name: "current_process", primary: None, fields: &[], returns: Returns::Observation, doc: "the current process's name and daemon flag" },
    OpSpec {
        name: "join_current",
        primary: None,
        fields: &[],
        returns: Returns::Nothing,
        doc: "the current process joins itself (an error)",
    },
];

/// Pipes and connections.
pub const IPC: &[OpSpec] = &[
    OpSpec {
        name: "pipe",
        primary: None,
        fields: &[req("ids", Ty::Ids), opt("duplex", Ty::Bool)],
        returns: Returns::Nothing,
        doc: "make a pipe; ids = [a, b] (simplex: a reads, b writes)",
    },
    OpSpec {
        name: "send",
        primary: None,
        fields: &[req("id", Ty::Id), req("value", Ty::Any)],
        returns: Returns::Nothing,
        doc: "send a value",
    },
    OpSpec {
        name: "recv",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Result,
        doc: "receive a value",
    },
    OpSpec {
        name: "send_bytes",
        primary: None,
        fields: &[
            req("id", Ty::Id),
            req("data", Ty::Str),
            opt("offset", Ty::Int),
            opt("size", Ty::Int),
        ],
        returns: Returns::Nothing,
        doc: "send bytes (a UTF-8 string), optionally a slice",
    },
    OpSpec {
        name: "recv_bytes",
        primary: Some("id"),
        fields: &[req("id", Ty::Id), opt("maxlen", Ty::Int)],
        returns: Returns::Result,
        doc: "receive bytes (as a string)",
    },
    OpSpec {
        name: "poll",
        primary: Some("id"),
        fields: &[req("id", Ty::Id), opt("timeout_ms", Ty::Int)],
        returns: Returns::Observation,
        doc: "whether data is ready (timeout 0 when absent)",
    },
];

/// Contexts and start methods.
pub const CONTEXTS: &[OpSpec] = &[
    OpSpec {
        name: "set_start_method",
        primary: Some("method"),
        fields: &[req("method", Ty::Method), opt("force", Ty::Bool)],
        returns: Returns::Nothing,
        doc: "set the default start method (once, unless force)",
    },
    OpSpec {
        name: "get_start_method",
        primary: None,
        fields: &[opt("allow_none", Ty::Bool)],
        returns: Returns::Observation,
        doc: "the default start method (null if unset and allow_none)",
    },
];

/// Pools and their results.
pub const POOL: &[OpSpec] = &[
    OpSpec { name: "pool", primary: None, fields: &[req("id", Ty::Str), opt("processes", Ty::Int), opt("initializer", Ty::Task), opt("initargs", Ty::List), opt("maxtasksperchild", Ty::Int)], returns: Returns::Nothing, doc: "create a pool of the case's context" },
    OpSpec { name: "apply", primary: None, fields: &[req("pool", Ty::Id), req("task", Ty::Task), opt("args", Ty::List)], returns: Returns::Result, doc: "run a task in the pool and wait for its result" },
    OpSpec { name: "apply_async", primary: None, fields: &[req("id", Ty::Str), req("pool", Ty::Id), req("task", Ty::Task), opt("args", Ty::List), opt("callback", Ty::Bool), opt("error_callback", Ty::Bool)], returns: Returns::Nothing, doc: "submit a task; `id` names the AsyncResult; callbacks are recorded for `callbacks`" },
    OpSpec { name: "map", primary: None, fields: &[req("pool", Ty::Id), req("task", Ty::Task), req("items", Ty::List), opt("chunksize", Ty::Int)], returns: Returns::Result, doc: "map a one-argument task over the items" },
    OpSpec { name: "map_async", primary: None, fields: &[req("id", Ty::Str), req("pool", Ty::Id), req("task", Ty::Task), req("items", Ty::List), opt("chunksize", Ty::Int)], returns: Returns::Nothing, doc: "map asynchronously; `id` names the result" },
    OpSpec { name: "starmap", primary: None, fields: &[req("pool", Ty::Id), req("task", Ty::Task), req("items", Ty::List), opt("chunksize", Ty::Int)], returns: Returns::Result, doc: "map over argument lists" },
    OpSpec { name: "imap", primary: None, fields: &[req("pool", Ty::Id), req("task", Ty::Task), req("items", Ty::List), opt("chunksize", Ty::Int)], returns: Returns::Result, doc: "iterate the results in order (collected)" },
    OpSpec { name: "imap_unordered", primary: None, fields: &[req("pool", Ty::Id), req("task", Ty::Task), req("items", Ty::List), opt("chunksize", Ty::Int)], returns: Returns::Result, doc: "iterate the results as they come (collected, then sorted so traces compare)" },
    OpSpec { name: "get", primary: Some("id"), fields: &[req("id", Ty::Id), opt("timeout_ms", Ty::Int), opt("block", Ty::Bool)], returns: Returns::Result, doc: "an AsyncResult's value, or an item from a queue (block, timeout)" },
    OpSpec { name: "wait", primary: Some("id"), fields: &[req("id", Ty::Id), opt("timeout_ms", Ty::Int)], returns: Returns::Observation, doc: "wait for an AsyncResult; the value is whether it is ready" },
    OpSpec { name: "ready", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Observation, doc: "whether an AsyncResult is ready" },
    OpSpec { name: "successful", primary: Some("id"), fields: &[req("id", Ty::Id)], returns: Returns::Observation, doc: "whether it succeeded (NotReady before)" },
    OpSpec { name: "callbacks", primary: None, fields: &[], returns: Returns::Observation, doc: "the callbacks fired so far, sorted: \"callback ID: VALUE\" / \"error_callback ID: KIND\"" },
];

/// Queues.
pub const QUEUE: &[OpSpec] = &[
    OpSpec {
        name: "queue",
        primary: None,
        fields: &[
            req("id", Ty::Str),
            opt("maxsize", Ty::Int),
            opt("joinable", Ty::Bool),
        ],
        returns: Returns::Nothing,
        doc: "create a Queue (or a JoinableQueue)",
    },
    OpSpec {
        name: "put",
        primary: None,
        fields: &[
            req("id", Ty::Id),
            req("value", Ty::Any),
            opt("block", Ty::Bool),
            opt("timeout_ms", Ty::Int),
        ],
        returns: Returns::Nothing,
        doc: "put a value",
    },
    OpSpec {
        name: "qsize",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Observation,
        doc: "the approximate size",
    },
    OpSpec {
        name: "empty",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Observation,
        doc: "whether the queue is empty",
    },
    OpSpec {
        name: "full",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Observation,
        doc: "whether the queue is full",
    },
    OpSpec {
        name: "task_done",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Nothing,
        doc: "mark a JoinableQueue item done",
    },
];

/// Locks, semaphores, events.
pub const SYNC: &[OpSpec] = &[
    OpSpec {
        name: "lock",
        primary: None,
        fields: &[
            req("id", Ty::Str),
            opt("kind", Ty::Str),
            opt("value", Ty::Int),
            opt("context", Ty::Str),
        ],
        returns: Returns::Nothing,
        doc: "create a Lock, RLock, Semaphore or BoundedSemaphore (kind; value for semaphores)",
    },
    OpSpec {
        name: "acquire",
        primary: Some("id"),
        fields: &[
            req("id", Ty::Id),
            opt("block", Ty::Bool),
            opt("timeout_ms", Ty::Int),
        ],
        returns: Returns::Observation,
        doc: "acquire; the value is whether it was acquired",
    },
    OpSpec {
        name: "release",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Nothing,
        doc: "release",
    },
    OpSpec {
        name: "event",
        primary: Some("id"),
        fields: &[req("id", Ty::Str)],
        returns: Returns::Nothing,
        doc: "create an Event",
    },
    OpSpec {
        name: "event_set",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Nothing,
        doc: "set an Event",
    },
    OpSpec {
        name: "event_clear",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Nothing,
        doc: "clear an Event",
    },
    OpSpec {
        name: "event_is_set",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Observation,
        doc: "whether the Event is set",
    },
    OpSpec {
        name: "event_wait",
        primary: Some("id"),
        fields: &[req("id", Ty::Id), opt("timeout_ms", Ty::Int)],
        returns: Returns::Observation,
        doc: "wait for the Event; the value is whether it is set",
    },
    OpSpec {
        name: "barrier",
        primary: None,
        fields: &[req("id", Ty::Str), req("parties", Ty::Int)],
        returns: Returns::Nothing,
        doc: "create a Barrier for `parties` parties",
    },
    OpSpec {
        name: "barrier_wait",
        primary: Some("id"),
        fields: &[req("id", Ty::Id), opt("timeout_ms", Ty::Int)],
        returns: Returns::Nothing,
        doc: "wait at the barrier (a timeout breaks it)",
    },
    OpSpec {
        name: "broken",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Observation,
        doc: "whether the barrier is broken",
    },
    OpSpec {
        name: "barrier_reset",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Nothing,
        doc: "reset the barrier",
    },
    OpSpec {
        name: "condition",
        primary: Some("id"),
        fields: &[req("id", Ty::Str)],
        returns: Returns::Nothing,
        doc: "create a Condition (acquire and release it like a lock)",
    },
    OpSpec {
        name: "condition_wait",
        primary: Some("id"),
        fields: &[req("id", Ty::Id), opt("timeout_ms", Ty::Int)],
        returns: Returns::Observation,
        doc: "wait to be notified (holding the condition); the value is false on timeout",
    },
    OpSpec {
        name: "notify",
        primary: Some("id"),
        fields: &[req("id", Ty::Id), opt("n", Ty::Int)],
        returns: Returns::Nothing,
        doc: "wake up to n waiters (default 1; holding the condition)",
    },
    OpSpec {
        name: "notify_all",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Nothing,
        doc: "wake every waiter (holding the condition)",
    },
];

/// Shared memory: Value and Array.
pub const SHARED: &[OpSpec] = &[
    OpSpec {
        name: "value",
        primary: None,
        fields: &[
            req("id", Ty::Str),
            req("typecode", Ty::Str),
            req("init", Ty::Any),
        ],
        returns: Returns::Nothing,
        doc: "create a Value ('d' or 'i')",
    },
    OpSpec {
        name: "array",
        primary: None,
        fields: &[
            req("id", Ty::Str),
            req("typecode", Ty::Str),
            req("init", Ty::List),
        ],
        returns: Returns::Nothing,
        doc: "create an Array ('d' or 'i')",
    },
    OpSpec {
        name: "read",
        primary: Some("id"),
        fields: &[req("id", Ty::Id)],
        returns: Returns::Observation,
        doc: "the Value's value or the Array's items",
    },
    OpSpec {
        name: "write",
        primary: None,
        fields: &[req("id", Ty::Id), req("value", Ty::Any)],
        returns: Returns::Nothing,
        doc: "set the Value (or the Array's items)",
    },
];

/// Steps of the parent itself.
pub const PARENT: &[OpSpec] = &[
    OpSpec {
        name: "sleep_ms",
        primary: Some("ms"),
        fields: &[req("ms", Ty::Int)],
        returns: Returns::Nothing,
        doc: "the parent sleeps",
    },
    OpSpec {
        name: "print",
        primary: Some("text"),
        fields: &[req("text", Ty::Str)],
        returns: Returns::Nothing,
        doc: "the parent prints a line (flushed)",
    },
    OpSpec {
        name: "call",
        primary: None,
        fields: &[req("task", Ty::Task), opt("args", Ty::List)],
        returns: Returns::Result,
        doc: "call a catalogue task in the parent",
    },
];

/// The vocabulary, module by module.
pub const MODULES: &[(&str, &[OpSpec])] = &[
    ("process", PROCESS),
    ("ipc", IPC),
    ("contexts", CONTEXTS),
    ("pool", POOL),
    ("queue", QUEUE),
    ("sync", SYNC),
    ("shared", SHARED),
    ("parent", PARENT),
];

/// The action named `name`.
pub fn op(name: &str) -> Option<&'static OpSpec> {
    MODULES
        .iter()
        .flat_map(|(_, ops)| ops.iter())
        .find(|o| o.name == name)
}

/// Every action name, for messages.
pub fn op_names() -> Vec<&'static str> {
    MODULES
        .iter()
        .flat_map(|(_, ops)| ops.iter().map(|o| o.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::TASKS;

    const README: &str = include_str!("../../cases/README.md");
    const REFERENCE: &str = include_str!("../py/reference.py");

    #[test]
    fn every_action_and_task_is_documented_and_mirrored_in_python() {
        for (_, ops) in MODULES {
            for op in *ops {
                assert!(
                    README.contains(&format!("`{}`", op.name)),
                    "cases/README.md does not document `{}`",
                    op.name
                );
                let quoted = format!("\"{}\"", op.name);
                let runs = REFERENCE.lines().any(|l| {
                    l.contains(&format!("op == {quoted}"))
                        || (l.contains("if op in (") && l.contains(&quoted))
                });
                assert!(runs, "reference.py does not run `{}`", op.name);
                if let Some(p) = op.primary {
                    assert!(
                        REFERENCE.contains(&format!("\"{}\": \"{p}\"", op.name)),
                        "reference.py's PRIMARY lacks `{}`",
                        op.name
                    );
                }
            }
        }
        for t in TASKS {
            assert!(
                README.contains(&format!("`{}`", t.name)),
                "cases/README.md does not document task `{}`",
                t.name
            );
            assert!(
                REFERENCE.contains(&format!("\"{}\":", t.name)),
                "reference.py does not mirror task `{}`",
                t.name
            );
        }
    }
}
