#!/usr/bin/env python3
"""The CPython reference runner for mproc's conformance cases.

Runs a case file (the same TOML that mproc's harness runs) under CPython's own
``multiprocessing`` with one start method and writes the raw trace in the harness's format.
Python 3.11+ standard library only (``tomllib``, ``multiprocessing``).

    python3 reference.py exec CASE.toml --method fork|spawn|forkserver [--trace-out FILE]

The harness (``cargo xtask conformance``) normalises and compares the traces. The task
catalogue below mirrors ``harness/src/catalogue.rs``; the step interpreter mirrors
``harness/src/exec/`` (one ``op_<action>`` method per action of the vocabulary,
``harness/src/vocab/``, grouped by module as there). Error kinds are mproc's names where
CPython raises for the same condition (``TimeoutError`` -> ``Timeout``, ``EOFError`` ->
``Eof``, ...); anything else is recorded as ``py:<ExceptionClass>``.

``harness/py/bench_reference.py`` reads benchmark workloads (the same format) with the helpers
of this file (``step_actions``, ``each_values``, ``range_of``, ``subst``).
"""

import json
import multiprocessing
import multiprocessing.pool
import os
import queue
import re
import signal
import sys
import threading
import time
import tomllib

# ---------------------------------------------------------------------------------------------
# The task catalogue (mirrors harness/src/catalogue.rs)


class TaskFailure(Exception):
    """A task's failure (the catalogue's `fail`)."""


class TaskPanic(Exception):
    """A task's panic (the catalogue's `panic`)."""


def _json(v):
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


def _text(v):
    return v if isinstance(v, str) else _json(v)


def _put_all(q, values):
    for v in values:
        q.put(v)


def _notes_write(q, values):
    _print("Process to write: %s" % os.getpid())
    for v in values:
        _print("Put %s to queue..." % _text(v))
        q.put(v)


def _notes_read(q):
    _print("Process to read: %s" % os.getpid())
    while True:
        v = q.get(True)
        _print("Get %s from queue." % _text(v))


def _square_queue(qin, qout, n):
    for _ in range(n):
        x = qin.get()
        qout.put(x * x)


def _consume(q, n):
    for _ in range(n):
        q.get()
        q.task_done()


def _print_under_lock(lock, i):
    with lock:
        _print("hello world %d" % i)


def _increment_under_lock(lock, value, n):
    for _ in range(n):
        with lock:
            value.value += 1


def _increment_value(value, n):
    for _ in range(n):
        with value.get_lock():
            value.value += 1


def _hold_lock(lock, event, ms):
    with lock:
        event.set()
        time.sleep(ms / 1000)


def _notes_negate(n, a):
    n.value = 3.1415927
    for i in range(len(a)):
        a[i] = -a[i]


def _typecode(o):
    """The typecode of a shared Value or Array (its ctypes type's code)."""
    t = type(o.get_obj())._type_
    return t if isinstance(t, str) else t._type_


def _plus_one(x, code):
    if code == "c":
        return bytes([(x[0] + 1) % 256])
    return x + 1


def _add_one(o):
    code = _typecode(o)
    with o.get_lock():
        if hasattr(o, "__len__"):
            for i in range(len(o)):
                o[i] = _plus_one(o[i], code)
        else:
            o.value = _plus_one(o.value, code)


def _wait_barrier(b, conn):
    try:
        b.wait(10)
        conn.send("passed")
    except BaseException as e:  # noqa: BLE001 - the kind is the answer
        conn.send(kind_of(e))


def _condition_wait(cond, ev, conn):
    with cond:
        ev.set()
        notified = cond.wait(10)
    conn.send(notified)


def _wait_event(ev, conn):
    conn.send(ev.wait(10))


def _timeline(ev, task, label):
    path = os.environ.get("MPROC_CASE_TIMELINE")
    if path:
        line = json.dumps({"ev": ev, "pid": os.getpid(), "task": task, "label": label,
                           "t_us": int(time.time() * 1e6)})
        with open(path, "a") as f:
            f.write(line + "\n")


def _print(text):
    # One write per line, as the Rust side does: lines of different processes never merge.
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _hang():
    while True:
        time.sleep(3600)


def _send(conn, value):
    conn.send(value)


def _try_child(conn):
    p = multiprocessing.Process(target=process_main, args=("noop", []))
    try:
        p.start()
        p.join()
        r = "ok"
    except BaseException as e:  # noqa: BLE001 - the kind is the answer
        r = kind_of(e)
    conn.send(r)


def _echo_conn(conn):
    for msg in iter(conn.recv_bytes, b""):
        conn.send_bytes(msg)


def _recv_square(conn):
    x = conn.recv()
    conn.send(x * x)


def _sleep_send(conn, ms, value):
    time.sleep(ms / 1000)
    conn.send(value)


def _send_close(conn, value):
    conn.send(value)
    conn.close()


def _send_all(conn, values):
    for v in values:
        conn.send(v)
    conn.close()


def _send_bytes(conn, text):
    conn.send_bytes(text.encode())
    conn.close()


def _fail(msg):
    raise TaskFailure(msg)


def _panic(msg):
    raise TaskPanic(msg)


def _kill_self(sig):
    os.kill(os.getpid(), sig)
    _hang()


def _sleep_square(x, ms):
    time.sleep(ms / 1000)
    return x * x


TASKS = {
    "noop": lambda: None,
    "sleep": lambda ms: time.sleep(ms / 1000),
    "square": lambda x: x * x,
    "sleep_square": _sleep_square,
    "echo": lambda v: v,
    "fail": _fail,
    "panic": _panic,
    "exit": lambda n: sys.exit(n),
    "hang": _hang,
    "kill_self": _kill_self,
    "print": _print,
    "run_proc": lambda name: _print("Run child process %s (%s)..." % (name, os.getpid())),
    "print_name": lambda: _print(multiprocessing.current_process().name),
    "send": _send_close,
    "send_all": _send_all,
    "sleep_send": _sleep_send,
    "send_bytes": _send_bytes,
    "echo_conn": _echo_conn,
    "recv_square": _recv_square,
    "send_self": lambda conn: conn.send({"name": multiprocessing.current_process().name,
                                         "daemon": multiprocessing.current_process().daemon}),
    "send_parent": lambda conn: conn.send(multiprocessing.parent_process().name),
    "try_child": _try_child,
    "put": lambda q, v: q.put(v),
    "put_all": _put_all,
    "notes_write": _notes_write,
    "notes_read": _notes_read,
    "square_queue": _square_queue,
    "consume": _consume,
    "print_under_lock": _print_under_lock,
    "increment_under_lock": _increment_under_lock,
    "increment_value": _increment_value,
    "hold_lock": _hold_lock,
    "notes_negate": _notes_negate,
    "add_one": _add_one,
    "set_event": lambda ev: ev.set(),
    "wait_event": _wait_event,
    "wait_barrier": _wait_barrier,
    "condition_wait": _condition_wait,
}

# Which arguments are objects (connections, queues, locks, ...), by task (mirrors ArgKind::Conn
# and ArgKind::Obj).
OBJ_ARGS = {"send": [0], "send_all": [0], "sleep_send": [0], "send_bytes": [0], "echo_conn": [0],
            "recv_square": [0], "send_self": [0], "send_parent": [0], "try_child": [0],
            "put": [0], "put_all": [0], "notes_write": [0], "notes_read": [0],
            "square_queue": [0, 1], "consume": [0], "print_under_lock": [0],
            "increment_under_lock": [0, 1], "increment_value": [0], "hold_lock": [0, 1],
            "notes_negate": [0, 1], "add_one": [0], "set_event": [0], "wait_event": [0, 1],
            "wait_barrier": [0, 1], "condition_wait": [0, 1, 2]}


def run_task(task, args):
    label = ",".join(json.dumps(a, separators=(",", ":")) for i, a in enumerate(args)
                     if i not in OBJ_ARGS.get(task, []))
    _timeline("start", task, label)
    try:
        return TASKS[task](*args)
    finally:
        _timeline("end", task, label)


def process_main(task, args):
    run_task(task, args)


def pool_main(task, args):
    return run_task(task, args)


def pool_main1(call):
    return run_task(call[0], call[1])


# ---------------------------------------------------------------------------------------------
# Error kinds

VALUE_ERRORS = [
    ("process object is closed", "ProcessClosed"),
    ("Cannot close a process while it is still running", "StillRunning"),
    ("Pool not running", "PoolNotRunning"),
    ("not ready", "NotReady"),
    ("cannot find context", "UnknownStartMethod"),
    ("buffer length <", "BadRange"),
    ("Pool is still running", "PoolStillRunning"),
    ("released too many times", "InvalidArgument"),
    ("task_done() called too many times", "InvalidArgument"),
    ("is closed", "Closed"),
]
OS_ERRORS = [
    ("handle is closed", "Closed"),
    ("connection is write-only", "NotReadable"),
    ("connection is read-only", "NotWritable"),
    ("bad message length", "MessageTooLong"),
]


class HarnessError(Exception):
    """A mistake in the case (unknown object), not a behaviour under test."""


def kind_of(e):
    msg = str(e)
    if isinstance(e, HarnessError):
        return "Harness"
    if isinstance(e, (multiprocessing.TimeoutError, TimeoutError)):
        return "Timeout"
    if isinstance(e, EOFError):
        return "Eof"
    if isinstance(e, queue.Empty):
        return "Empty"
    if isinstance(e, queue.Full):
        return "Full"
    if isinstance(e, threading.BrokenBarrierError):
        return "BrokenBarrier"
    if isinstance(e, (TaskFailure, TaskPanic)):
        return "Remote"
    if isinstance(e, ValueError):
        for text, kind in VALUE_ERRORS:
            if text in msg:
                return kind
    if isinstance(e, OSError):
        for text, kind in OS_ERRORS:
            if text in msg:
                return kind
    if isinstance(e, RuntimeError) and "context has already been set" in msg:
        return "StartMethodAlreadySet"
    if isinstance(e, RuntimeError) and "un-acquired lock" in msg:
        return "NotOwner"
    return "py:" + type(e).__name__


# ---------------------------------------------------------------------------------------------
# The interpreter (mirrors harness/src/exec.rs)

PRIMARY = {
    "start": "id", "join": "id", "is_alive": "id", "exitcode": "id", "name": "id",
    "is_daemon": "id", "has_pid": "id", "terminate": "id", "kill": "id", "close": "id",
    "recv": "id", "recv_bytes": "id", "poll": "id", "set_start_method": "method",
    "sleep_ms": "ms", "print": "text",
    "get": "id", "wait": "id", "ready": "id", "successful": "id", "qsize": "id", "empty": "id",
    "full": "id", "task_done": "id", "acquire": "id", "release": "id", "event": "id",
    "event_set": "id", "event_clear": "id", "event_is_set": "id", "event_wait": "id",
    "read": "id", "barrier_wait": "id", "broken": "id", "barrier_reset": "id",
    "condition": "id", "condition_wait": "id", "notify": "id", "notify_all": "id",
}

REF = re.compile(r"\$([A-Za-z0-9_]+)(?:\[(\$?[A-Za-z0-9_]+)\])?")


def subst(v, env):
    if isinstance(v, str) and "$" in v:
        def look(m):
            val = env[m.group(1)]
            if m.group(2) is not None:
                idx = m.group(2)
                idx = env[idx[1:]] if idx.startswith("$") else int(idx)
                val = val[idx]
            return val
        full = REF.fullmatch(v)
        if full:
            return look(full)
        return REF.sub(lambda m: (lambda x: x if isinstance(x, str) else json.dumps(x))(look(m)), v)
    if isinstance(v, list):
        return [subst(x, env) for x in v]
    if isinstance(v, dict):
        return {k: subst(x, env) for k, x in v.items()}
    return v


def range_of(text, env):
    """The integers of a range "A..B" (B excluded; A and B integers or $params), or None."""
    if not isinstance(text, str) or ".." not in text:
        return None
    a, b = subst(text, env).split("..")
    return range(int(a), int(b))


def each_values(spec, params):
    """The variable and values of a step's `each` loop."""
    (var, v), = spec.items()
    if isinstance(v, list):
        return var, v
    r = range_of(v, params)
    if r is not None:
        return var, r
    return var, params[v[1:]]


def items_of(v):
    """A map's items: a list, or a range "A..B" (its ends already substituted)."""
    r = range_of(v, {})
    return list(r) if r is not None else v


def step_actions(step):
    """A step's actions in order: (op, fields, expected error), a bare value expanded to its
    primary field (`join = "p"` is `join = { id = "p" }`)."""
    out = []
    for op, raw in step.items():
        if op in ("each", "label"):
            continue
        if isinstance(raw, dict):
            fields = dict(raw)
        elif op in PRIMARY:
            fields = {PRIMARY[op]: raw}
        else:
            fields = {}
        out.append((op, fields, fields.pop("error", None)))
    return out


def now_us():
    return int(time.time() * 1e6)


class BytesQueue:
    """A queue of byte strings (`queue = { bytes = true }`), whose items cases write and read
    as UTF-8 strings (mirrors catalogue::Arg::BytesQueue)."""

    def __init__(self, q):
        self.q = q

    def put(self, v, block=True, timeout=None):
        if not isinstance(v, str):
            raise HarnessError("a queue of bytes takes strings, not %r" % (v,))
        self.q.put(v.encode(), block, timeout)

    def get(self, block=True, timeout=None):
        return self.q.get(block, timeout).decode("utf-8", "replace")

    def qsize(self):
        return self.q.qsize()

    def empty(self):
        return self.q.empty()

    def full(self):
        return self.q.full()

    def close(self):
        self.q.close()


def _shared_init(code, v):
    """A case's value for typecode `code` as ctypes takes it ('c': one Latin-1 character)."""
    if code == "c" and isinstance(v, str):
        return v.encode("latin-1")
    return v


def _shared_read(code, v):
    if code == "c":
        return v.decode("latin-1") if isinstance(v, bytes) else v
    return v


class Exec:
    """Runs one case under one start method (mirrors harness/src/exec/)."""

    def __init__(self, case, method):
        self.case = case
        self.method = method
        self.ctx = multiprocessing.get_context(method)
        self.env = dict(case.get("params", {}))
        self.env.update({"method": method, "null": None, "pid": os.getpid()})
        self.objs = {}
        self.order = []
        self.pools = []
        self.callbacks = []
        self.trace = {"runner": "cpython", "method": method, "version": sys.version.split()[0],
                      "events": [], "exitcodes": {}, "unreaped": [], "aborted": None,
                      "pids": [os.getpid()], "t_start_us": now_us(), "t_end_us": 0}

    def run(self):
        try:
            self.steps()
        finally:
            self.trace["t_end_us"] = now_us()
            self.finish()
        return self.trace

    def steps(self):
        for index, step in enumerate(self.case["step"], start=1):
            iters = [None]
            if "each" in step:
                var, values = each_values(step["each"], self.case.get("params", {}))
                iters = [(var, x) for x in values]
            for it in iters:
                if it:
                    self.env[it[0]] = it[1]
                label = subst(step["label"], self.env) if "label" in step else None
                if label is not None and not isinstance(label, str):
                    label = json.dumps(label)
                for op, fields, expected in step_actions(step):
                    if not self.action(index, label, op, fields, expected):
                        return

    def action(self, index, label, op, fields, expected):
        """Runs one action and records its event; False when it failed unexpectedly."""
        ev = {"step": index, "op": op, "t0_us": now_us()}
        if label is not None:
            ev["label"] = label
        if expected is not None:
            ev["expected_error"] = expected
        try:
            fields = subst(fields, self.env)
            if isinstance(fields.get("id"), str):
                ev["id"] = fields["id"]
            value = self.act(op, fields)
            if value is not NOTHING:
                ev["value"] = value
            err = None
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            err = kind_of(e)
            ev["error"] = err
            ev["message"] = "%s: %s" % (type(e).__name__, e)
        ev["t1_us"] = now_us()
        self.trace["events"].append(ev)
        if err is not None and expected is None:
            self.trace["aborted"] = "step %d (%s)" % (index, op)
            return False
        return True

    def act(self, op, f):
        arm = getattr(self, "op_" + op, None)
        if arm is None:
            raise HarnessError("the CPython runner has no `%s`" % op)
        return arm(f)

    def finish(self):
        for pool in self.pools:
            pool.terminate()
        for pid_ in self.order:
            o = self.objs.get(pid_)
            group = isinstance(o, list)
            for k, p in enumerate(o if group else [o]):
                name = "%s[%d]" % (pid_, k) if group else pid_
                try:
                    if p.is_alive():
                        self.trace["unreaped"].append(name)
                        p.kill()
                        p.join(10)
                    self.trace["exitcodes"][name] = p.exitcode
                except ValueError:
                    self.trace["exitcodes"][name] = None

    def obj(self, id_):
        if id_ not in self.objs:
            raise HarnessError("no object `%s`" % id_)
        return self.objs[id_]

    def procs(self, id_):
        """The process `id_`, or the processes of group `id_`."""
        o = self.obj(id_)
        return o if isinstance(o, list) else [o]

    def observe(self, id_, f):
        """What `f` observes of process `id_` (a list, for a group)."""
        o = self.obj(id_)
        return [f(p) for p in o] if isinstance(o, list) else f(o)

    def task_args(self, task, args):
        if task not in TASKS:
            raise HarnessError("unknown task " + task)
        out = list(args)
        for i in OBJ_ARGS.get(task, []):
            out[i] = self.obj(args[i])
        return out

    def context(self, f):
        sel = f.get("context")
        if sel in (None, "case"):
            return self.ctx
        if sel == "default":
            return multiprocessing
        return multiprocessing.get_context(sel)

    # --- process ---------------------------------------------------------------------------

    def op_process(self, f):
        ctx = self.context(f)
        kw = {}
        if f.get("name") is not None:
            kw["name"] = f["name"]
        if f.get("daemon") is not None:
            kw["daemon"] = f["daemon"]

        def make():
            args = self.task_args(f["task"], f.get("args", []))
            return ctx.Process(target=process_main, args=(f["task"], args), **kw)
        count = f.get("count")
        self.objs[f["id"]] = make() if count is None else [make() for _ in range(max(count, 0))]
        self.order.append(f["id"])
        return NOTHING

    def op_start(self, f):
        for p in self.procs(f["id"]):
            p.start()
            self.trace["pids"].append(p.pid)
        return NOTHING

    def op_join(self, f):
        o = self.obj(f["id"])
        if isinstance(o, multiprocessing.pool.Pool) or hasattr(o, "task_done"):
            o.join()
        else:
            for p in self.procs(f["id"]):
                p.join(secs(f, "timeout_ms"))
        return NOTHING

    def op_is_alive(self, f):
        return self.observe(f["id"], lambda p: p.is_alive())

    def op_exitcode(self, f):
        return self.observe(f["id"], lambda p: p.exitcode)

    def op_name(self, f):
        return self.observe(f["id"], lambda p: p.name)

    def op_set_name(self, f):
        for p in self.procs(f["id"]):
            p.name = f["name"]
        return NOTHING

    def op_is_daemon(self, f):
        return self.observe(f["id"], lambda p: p.daemon)

    def op_set_daemon(self, f):
        for p in self.procs(f["id"]):
            p.daemon = f["daemon"]
        return NOTHING

    def op_has_pid(self, f):
        return self.observe(f["id"], lambda p: p.pid is not None)

    def op_terminate(self, f):
        o = self.obj(f["id"])
        for p in o if isinstance(o, list) else [o]:
            p.terminate()
        return NOTHING

    def op_kill(self, f):
        for p in self.procs(f["id"]):
            p.kill()
        return NOTHING

    def op_close(self, f):
        o = self.obj(f["id"])
        for x in o if isinstance(o, list) else [o]:
            x.close()
        return NOTHING

    def op_active_children(self, f):
        return len(multiprocessing.active_children())

    def op_current_process(self, f):
        cp = multiprocessing.current_process()
        return {"name": cp.name, "daemon": cp.daemon}

    def op_join_current(self, f):
        multiprocessing.current_process().join()
        return NOTHING

    # --- ipc -------------------------------------------------------------------------------

    def op_pipe(self, f):
        a, b = self.ctx.Pipe(f.get("duplex", True))
        self.objs[f["ids"][0]], self.objs[f["ids"][1]] = a, b
        return NOTHING

    def op_send(self, f):
        self.obj(f["id"]).send(f.get("value"))
        return NOTHING

    def op_recv(self, f):
        return self.obj(f["id"]).recv()

    def op_send_bytes(self, f):
        data = f["data"].encode() if "data" in f else b"x" * max(f["bytes"], 0)
        self.obj(f["id"]).send_bytes(data, f.get("offset", 0), f.get("size"))
        return NOTHING

    def op_recv_bytes(self, f):
        return self.obj(f["id"]).recv_bytes(f.get("maxlen")).decode()

    def op_poll(self, f):
        return self.obj(f["id"]).poll(secs(f, "timeout_ms") or 0)

    # --- contexts --------------------------------------------------------------------------

    def op_set_start_method(self, f):
        multiprocessing.set_start_method(f["method"], force=f.get("force", False))
        return NOTHING

    def op_get_start_method(self, f):
        return multiprocessing.get_start_method(allow_none=f.get("allow_none", False))

    # --- pool ------------------------------------------------------------------------------

    def calls(self, task, items, star=False):
        if task not in TASKS:
            raise HarnessError("unknown task " + task)
        return [(task, list(it) if star else [it]) for it in items_of(items)]

    def op_pool(self, f):
        kw = {}
        if f.get("initializer") is not None:
            kw["initializer"] = process_main
            kw["initargs"] = (f["initializer"], f.get("initargs", []))
        if f.get("maxtasksperchild") is not None:
            kw["maxtasksperchild"] = f["maxtasksperchild"]
        p = self.ctx.Pool(f.get("processes"), **kw)
        self.pools.append(p)
        self.objs[f["id"]] = p
        return NOTHING

    def op_apply(self, f):
        return self.obj(f["pool"]).apply(pool_main, (f["task"], f.get("args", [])))

    def op_apply_async(self, f):
        kw = {}
        rid = f["id"]
        if f.get("callback"):
            kw["callback"] = lambda v: self.callbacks.append("callback %s: %s" % (rid, _json(v)))
        if f.get("error_callback"):
            kw["error_callback"] = lambda e: self.callbacks.append(
                "error_callback %s: %s" % (rid, kind_of(e)))
        self.objs[rid] = self.obj(f["pool"]).apply_async(
            pool_main, (f["task"], f.get("args", [])), **kw)
        return NOTHING

    def op_map(self, f):
        return self.obj(f["pool"]).map(pool_main1, self.calls(f["task"], f["items"]),
                                       f.get("chunksize"))

    def op_starmap(self, f):
        return self.obj(f["pool"]).map(pool_main1, self.calls(f["task"], f["items"], True),
                                       f.get("chunksize"))

    def op_map_async(self, f):
        calls = self.calls(f["task"], f["items"])
        self.objs[f["id"]] = self.obj(f["pool"]).map_async(pool_main1, calls, f.get("chunksize"))
        return NOTHING

    def op_imap(self, f):
        pool = self.obj(f["pool"])
        return list(pool.imap(pool_main1, self.calls(f["task"], f["items"]),
                              f.get("chunksize") or 1))

    def op_imap_unordered(self, f):
        pool = self.obj(f["pool"])
        out = list(pool.imap_unordered(pool_main1, self.calls(f["task"], f["items"]),
                                       f.get("chunksize") or 1))
        out.sort(key=_json)
        return out

    def op_get(self, f):
        o = self.obj(f["id"])
        if isinstance(o, multiprocessing.pool.AsyncResult):
            return o.get(secs(f, "timeout_ms"))
        return o.get(f.get("block", True), secs(f, "timeout_ms"))

    def op_wait(self, f):
        o = self.obj(f["id"])
        o.wait(secs(f, "timeout_ms"))
        return o.ready()

    def op_ready(self, f):
        return self.obj(f["id"]).ready()

    def op_successful(self, f):
        return self.obj(f["id"]).successful()

    def op_callbacks(self, f):
        return sorted(self.callbacks)

    # --- queue -----------------------------------------------------------------------------

    def op_queue(self, f):
        maxsize = f.get("maxsize") or 0
        if f.get("joinable") and f.get("bytes"):
            raise HarnessError("a queue of bytes cannot be joinable")
        if f.get("joinable"):
            q = self.ctx.JoinableQueue(maxsize)
        elif f.get("bytes"):
            q = BytesQueue(self.ctx.Queue(maxsize))
        else:
            q = self.ctx.Queue(maxsize)
        self.objs[f["id"]] = q
        return NOTHING

    def op_put(self, f):
        self.obj(f["id"]).put(f.get("value"), f.get("block", True), secs(f, "timeout_ms"))
        return NOTHING

    def op_qsize(self, f):
        return self.obj(f["id"]).qsize()

    def op_empty(self, f):
        return self.obj(f["id"]).empty()

    def op_full(self, f):
        return self.obj(f["id"]).full()

    def op_task_done(self, f):
        self.obj(f["id"]).task_done()
        return NOTHING

    # --- sync ------------------------------------------------------------------------------

    def op_lock(self, f):
        kind = f.get("kind", "Lock")
        ctx = self.context(f)
        if kind in ("Semaphore", "BoundedSemaphore"):
            o = getattr(ctx, kind)(f.get("value", 1))
        else:
            o = getattr(ctx, kind)()
        self.objs[f["id"]] = o
        return NOTHING

    def op_acquire(self, f):
        block = f.get("block", True)
        o = self.obj(f["id"])
        return o.acquire(block, secs(f, "timeout_ms")) if block else o.acquire(False)

    def op_release(self, f):
        self.obj(f["id"]).release()
        return NOTHING

    def op_event(self, f):
        self.objs[f["id"]] = self.ctx.Event()
        return NOTHING

    def op_event_set(self, f):
        self.obj(f["id"]).set()
        return NOTHING

    def op_event_clear(self, f):
        self.obj(f["id"]).clear()
        return NOTHING

    def op_event_is_set(self, f):
        return self.obj(f["id"]).is_set()

    def op_event_wait(self, f):
        return self.obj(f["id"]).wait(secs(f, "timeout_ms") or 0)

    def op_condition(self, f):
        self.objs[f["id"]] = self.ctx.Condition()
        return NOTHING

    def op_condition_wait(self, f):
        return self.obj(f["id"]).wait(secs(f, "timeout_ms"))

    def op_notify(self, f):
        self.obj(f["id"]).notify(f.get("n", 1))
        return NOTHING

    def op_notify_all(self, f):
        self.obj(f["id"]).notify_all()
        return NOTHING

    def op_barrier(self, f):
        self.objs[f["id"]] = self.ctx.Barrier(f["parties"])
        return NOTHING

    def op_barrier_wait(self, f):
        self.obj(f["id"]).wait(secs(f, "timeout_ms"))
        return NOTHING

    def op_broken(self, f):
        return self.obj(f["id"]).broken

    def op_barrier_reset(self, f):
        self.obj(f["id"]).reset()
        return NOTHING

    # --- shared ----------------------------------------------------------------------------

    def op_value(self, f):
        code = f["typecode"]
        self.objs[f["id"]] = self.ctx.Value(code, _shared_init(code, f["init"]))
        return NOTHING

    def op_array(self, f):
        code = f["typecode"]
        init = [_shared_init(code, v) for v in f["init"]]
        self.objs[f["id"]] = self.ctx.Array(code, init)
        return NOTHING

    def op_read(self, f):
        o = self.obj(f["id"])
        code = _typecode(o)
        if hasattr(o, "__len__"):
            return [_shared_read(code, o[i]) for i in range(len(o))]
        return _shared_read(code, o.value)

    def op_write(self, f):
        o = self.obj(f["id"])
        code = _typecode(o)
        v = f["value"]
        if hasattr(o, "__len__"):
            for i, x in enumerate(v):
                o[i] = _shared_init(code, x)
        else:
            o.value = _shared_init(code, v)
        return NOTHING

    # --- parent ----------------------------------------------------------------------------

    def op_sleep_ms(self, f):
        time.sleep(f["ms"] / 1000)
        return NOTHING

    def op_print(self, f):
        _print(f["text"])
        return NOTHING

    def op_call(self, f):
        return run_task(f["task"], self.task_args(f["task"], f.get("args", [])))


def secs(f, key):
    """The field `key` (milliseconds) in seconds, or None."""
    return None if f.get(key) is None else f[key] / 1000


NOTHING = object()


def main(argv):
    if len(argv) < 2 or argv[0] != "exec" or "--method" not in argv:
        print("usage: reference.py exec CASE.toml --method M [--trace-out FILE]", file=sys.stderr)
        return 2
    path = argv[1]
    method = argv[argv.index("--method") + 1]
    out = argv[argv.index("--trace-out") + 1] if "--trace-out" in argv else None
    with open(path, "rb") as f:
        case = tomllib.load(f)
    trace = Exec(case, method).run()
    text = json.dumps(trace)
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
