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
import os
import queue
import re
import signal
import sys
import time
import tomllib

# ---------------------------------------------------------------------------------------------
# The task catalogue (mirrors harness/src/catalogue.rs)


class TaskFailure(Exception):
    """A task's failure (the catalogue's `fail`)."""


def _timeline(ev, task, label):
    path = os.environ.get("MPROC_CASE_TIMELINE")
    if path:
        line = json.dumps({"ev": ev, "pid": os.getpid(), "task": task, "label": label,
                           "t_us": int(time.time() * 1e6)})
        with open(path, "a") as f:
            f.write(line + "\n")


def _print(text):
    print(text, flush=True)


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
    raise RuntimeError(msg)


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
}

# Which arguments are objects (connections), by task (mirrors ArgKind::Conn).
CONN_ARGS = {"send": [0], "send_all": [0], "sleep_send": [0], "send_bytes": [0], "echo_conn": [0],
             "recv_square": [0], "send_self": [0], "send_parent": [0], "try_child": [0]}


def run_task(task, args):
    label = ",".join(json.dumps(a, separators=(",", ":")) for i, a in enumerate(args)
                     if i not in CONN_ARGS.get(task, []))
    _timeline("start", task, label)
    try:
        return TASKS[task](*args)
    finally:
        _timeline("end", task, label)


def process_main(task, args):
    run_task(task, args)


# ---------------------------------------------------------------------------------------------
# Error kinds

VALUE_ERRORS = [
    ("process object is closed", "ProcessClosed"),
    ("Cannot close a process while it is still running", "StillRunning"),
    ("Pool not running", "PoolNotRunning"),
    ("not ready", "NotReady"),
    ("cannot find context", "UnknownStartMethod"),
    ("buffer length <", "BadRange"),
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
    if isinstance(e, TaskFailure):
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
    return "py:" + type(e).__name__


# ---------------------------------------------------------------------------------------------
# The interpreter (mirrors harness/src/exec.rs)

PRIMARY = {
    "start": "id", "join": "id", "is_alive": "id", "exitcode": "id", "name": "id",
    "is_daemon": "id", "has_pid": "id", "terminate": "id", "kill": "id", "close": "id",
    "recv": "id", "recv_bytes": "id", "poll": "id", "set_start_method": "method",
    "sleep_ms": "ms", "print": "text",
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
        for i in CONN_ARGS.get(task, []):
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
            self.obj(f["id"]).join(secs("timeout_ms"))
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
