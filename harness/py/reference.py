#!/usr/bin/env python3
"""The CPython reference runner for mproc's conformance cases.

Runs a case file (the same TOML that mproc's harness runs) under CPython's own
``multiprocessing`` with one start method and writes the raw trace in the harness's format.
Python 3.11+ standard library only (``tomllib``, ``multiprocessing``).

    python3 reference.py exec CASE.toml --method fork|spawn|forkserver [--trace-out FILE]

The harness (``cargo xtask conformance``) normalises and compares the traces. The task
catalogue below mirrors ``harness/src/catalogue.rs``; the step interpreter mirrors
``harness/src/exec.rs``. Error kinds are mproc's names where CPython raises for the same
condition (``TimeoutError`` -> ``Timeout``, ``EOFError`` -> ``Eof``, ...); anything else is
recorded as ``py:<ExceptionClass>``.
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
            "notes_negate": [0, 1], "set_event": [0], "wait_event": [0, 1],
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


def each_values(spec, params):
    (var, v), = spec.items()
    if isinstance(v, list):
        return var, v
    if v.startswith("$"):
        return var, params[v[1:]]
    a, b = v.split("..")
    return var, list(range(int(a), int(b)))


def now_us():
    return int(time.time() * 1e6)


class Exec:
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
                for op, raw in step.items():
                    if op in ("each", "label"):
                        continue
                    if isinstance(raw, dict):
                        fields = dict(raw)
                    elif op in PRIMARY:
                        fields = {PRIMARY[op]: raw}
                    else:
                        fields = {}
                    expected = fields.pop("error", None)
                    t0 = now_us()
                    ev = {"step": index, "op": op, "t0_us": t0}
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
                        return

    def finish(self):
        for pool in self.pools:
            pool.terminate()
        for pid_ in self.order:
            p = self.objs.get(pid_)
            try:
                if p.is_alive():
                    self.trace["unreaped"].append(pid_)
                    p.kill()
                    p.join(10)
                self.trace["exitcodes"][pid_] = p.exitcode
            except ValueError:
                self.trace["exitcodes"][pid_] = None

    def obj(self, id_):
        if id_ not in self.objs:
            raise HarnessError("no object `%s`" % id_)
        return self.objs[id_]

    def task_args(self, task, args):
        if task not in TASKS:
            raise HarnessError("unknown task " + task)
        out = list(args)
        for i in OBJ_ARGS.get(task, []):
            out[i] = self.obj(args[i])
        return out

    def act(self, op, f):
        get = f.get
        secs = (lambda k: None if get(k) is None else get(k) / 1000)
        if op == "process":
            args = self.task_args(f["task"], get("args", []))
            ctx = multiprocessing if get("context") == "default" else self.ctx
            if get("context") not in (None, "case", "default"):
                ctx = multiprocessing.get_context(get("context"))
            kw = {}
            if get("name") is not None:
                kw["name"] = get("name")
            if get("daemon") is not None:
                kw["daemon"] = get("daemon")
            self.objs[f["id"]] = ctx.Process(target=process_main, args=(f["task"], args), **kw)
            self.order.append(f["id"])
            return NOTHING
        if op == "start":
            p = self.obj(f["id"])
            p.start()
            self.trace["pids"].append(p.pid)
            return NOTHING
        if op == "join":
            o = self.obj(f["id"])
            if isinstance(o, multiprocessing.pool.Pool) or hasattr(o, "task_done"):
                o.join()
            else:
                o.join(secs("timeout_ms"))
            return NOTHING
        if op == "is_alive":
            return self.obj(f["id"]).is_alive()
        if op == "exitcode":
            return self.obj(f["id"]).exitcode
        if op == "name":
            return self.obj(f["id"]).name
        if op == "set_name":
            self.obj(f["id"]).name = f["name"]
            return NOTHING
        if op == "is_daemon":
            return self.obj(f["id"]).daemon
        if op == "set_daemon":
            self.obj(f["id"]).daemon = f["daemon"]
            return NOTHING
        if op == "has_pid":
            return self.obj(f["id"]).pid is not None
        if op == "terminate":
            self.obj(f["id"]).terminate()
            return NOTHING
        if op == "kill":
            self.obj(f["id"]).kill()
            return NOTHING
        if op == "close":
            self.obj(f["id"]).close()
            return NOTHING
        if op == "join_current":
            multiprocessing.current_process().join()
            return NOTHING
        if op == "active_children":
            return len(multiprocessing.active_children())
        if op == "current_process":
            cp = multiprocessing.current_process()
            return {"name": cp.name, "daemon": cp.daemon}
        if op == "pipe":
            a, b = self.ctx.Pipe(get("duplex", True))
            self.objs[f["ids"][0]], self.objs[f["ids"][1]] = a, b
            return NOTHING
        if op == "send":
            self.obj(f["id"]).send(get("value"))
            return NOTHING
        if op == "recv":
            return self.obj(f["id"]).recv()
        if op == "send_bytes":
            data = f["data"].encode()
            self.obj(f["id"]).send_bytes(data, get("offset", 0), get("size"))
            return NOTHING
        if op == "recv_bytes":
            return self.obj(f["id"]).recv_bytes(get("maxlen")).decode()
        if op == "poll":
            return self.obj(f["id"]).poll(secs("timeout_ms") or 0)
        if op == "set_start_method":
            multiprocessing.set_start_method(f["method"], force=get("force", False))
            return NOTHING
        if op == "get_start_method":
            return multiprocessing.get_start_method(allow_none=get("allow_none", False))
        if op == "sleep_ms":
            time.sleep(f["ms"] / 1000)
            return NOTHING
        if op == "print":
            _print(f["text"])
            return NOTHING
        if op == "call":
            return run_task(f["task"], self.task_args(f["task"], get("args", [])))
        return self.act_more(op, f)

    def calls(self, task, items, star=False):
        if task not in TASKS:
            raise HarnessError("unknown task " + task)
        return [(task, list(it) if star else [it]) for it in items]

    def act_more(self, op, f):
        get = f.get
        secs = (lambda k: None if get(k) is None else get(k) / 1000)
        if op == "pool":
            kw = {}
            if get("initializer") is not None:
                kw["initializer"] = process_main
                kw["initargs"] = (get("initializer"), get("initargs", []))
            if get("maxtasksperchild") is not None:
                kw["maxtasksperchild"] = get("maxtasksperchild")
            p = self.ctx.Pool(get("processes"), **kw)
            self.pools.append(p)
            self.objs[f["id"]] = p
            return NOTHING
        if op == "apply":
            return self.obj(f["pool"]).apply(pool_main, (f["task"], get("args", [])))
        if op == "apply_async":
            kw = {}
            rid = f["id"]
            if get("callback"):
                kw["callback"] = lambda v: self.callbacks.append("callback %s: %s" % (rid, _json(v)))
            if get("error_callback"):
                kw["error_callback"] = lambda e: self.callbacks.append("error_callback %s: %s" % (rid, kind_of(e)))
            self.objs[rid] = self.obj(f["pool"]).apply_async(pool_main, (f["task"], get("args", [])), **kw)
            return NOTHING
        if op in ("map", "starmap"):
            calls = self.calls(f["task"], f["items"], op == "starmap")
            return self.obj(f["pool"]).map(pool_main1, calls, get("chunksize"))
        if op == "map_async":
            calls = self.calls(f["task"], f["items"])
            self.objs[f["id"]] = self.obj(f["pool"]).map_async(pool_main1, calls, get("chunksize"))
            return NOTHING
        if op in ("imap", "imap_unordered"):
            calls = self.calls(f["task"], f["items"])
            pool = self.obj(f["pool"])
            it = (pool.imap if op == "imap" else pool.imap_unordered)(pool_main1, calls, get("chunksize") or 1)
            out = list(it)
            if op == "imap_unordered":
                out.sort(key=_json)
            return out
        if op == "get":
            o = self.obj(f["id"])
            if isinstance(o, multiprocessing.pool.AsyncResult):
                return o.get(secs("timeout_ms"))
            return o.get(get("block", True), secs("timeout_ms"))
        if op in ("wait", "ready", "successful"):
            o = self.obj(f["id"])
            if op == "wait":
                o.wait(secs("timeout_ms"))
                return o.ready()
            if op == "ready":
                return o.ready()
            return o.successful()
        if op == "callbacks":
            return sorted(self.callbacks)
        if op == "queue":
            maxsize = get("maxsize") or 0
            q = self.ctx.JoinableQueue(maxsize) if get("joinable") else self.ctx.Queue(maxsize)
            self.objs[f["id"]] = q
            return NOTHING
        if op == "put":
            self.obj(f["id"]).put(get("value"), get("block", True), secs("timeout_ms"))
            return NOTHING
        if op == "qsize":
            return self.obj(f["id"]).qsize()
        if op == "empty":
            return self.obj(f["id"]).empty()
        if op == "full":
            return self.obj(f["id"]).full()
        if op == "task_done":
            self.obj(f["id"]).task_done()
            return NOTHING
        if op == "lock":
            kind = get("kind", "Lock")
            ctx = self.ctx
            if get("context") == "default":
                ctx = multiprocessing
            elif get("context") not in (None, "case"):
                ctx = multiprocessing.get_context(get("context"))
            if kind in ("Semaphore", "BoundedSemaphore"):
                o = getattr(ctx, kind)(get("value", 1))
            else:
                o = getattr(ctx, kind)()
            self.objs[f["id"]] = o
            return NOTHING
        if op == "acquire":
            block = get("block", True)
            t = secs("timeout_ms")
            return self.obj(f["id"]).acquire(block, t) if block else self.obj(f["id"]).acquire(False)
        if op == "release":
            self.obj(f["id"]).release()
            return NOTHING
        if op == "event":
            self.objs[f["id"]] = self.ctx.Event()
            return NOTHING
        if op == "event_set":
            self.obj(f["id"]).set()
            return NOTHING
        if op == "event_clear":
            self.obj(f["id"]).clear()
            return NOTHING
        if op == "event_is_set":
            return self.obj(f["id"]).is_set()
        if op == "event_wait":
            return self.obj(f["id"]).wait(secs("timeout_ms") or 0)
        if op == "condition":
            self.objs[f["id"]] = self.ctx.Condition()
            return NOTHING
        if op == "condition_wait":
            return self.obj(f["id"]).wait(secs("timeout_ms"))
        if op == "notify":
            self.obj(f["id"]).notify(get("n", 1))
            return NOTHING
        if op == "notify_all":
            self.obj(f["id"]).notify_all()
            return NOTHING
        if op == "barrier":
            self.objs[f["id"]] = self.ctx.Barrier(f["parties"])
            return NOTHING
        if op == "barrier_wait":
            self.obj(f["id"]).wait(secs("timeout_ms"))
            return NOTHING
        if op == "broken":
            return self.obj(f["id"]).broken
        if op == "barrier_reset":
            self.obj(f["id"]).reset()
            return NOTHING
        if op == "value":
            self.objs[f["id"]] = self.ctx.Value(f["typecode"], f["init"])
            return NOTHING
        if op == "array":
            self.objs[f["id"]] = self.ctx.Array(f["typecode"], f["init"])
            return NOTHING
        if op == "read":
            o = self.obj(f["id"])
            return o[:] if hasattr(o, "__len__") else o.value
        if op == "write":
            o = self.obj(f["id"])
            if hasattr(o, "__len__"):
                o[:len(f["value"])] = f["value"]
            else:
                o.value = f["value"]
            return NOTHING
        raise HarnessError("the CPython runner has no `%s`" % op)


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
