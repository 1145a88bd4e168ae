#!/usr/bin/env python3
"""CPython's multiprocessing on mproc's benchmark workloads (cases/bench/*.toml).

Standard library only (Python 3.11+: tomllib). Reads the same workload files as the Rust bench,
runs their steps with real multiprocessing under each start method, and writes the cost per
operation of each sample:

    {"version": "...", "metrics": {"start_join/fork": {"samples_s": [...]}}, "errors": {...}}

Usage: bench_reference.py --cases DIR --out FILE [--quick] [--filter S]...
                          [--placement same-cpu|split|free]

Workload files are read with the helpers of reference.py (the conformance runner's reading of
the one case format: steps, loops, ranges, substitution). The actions the bench runs (those
marked `bench` in harness/src/vocab/) and the bench tasks mirror harness/src/bench/kernel/; the
placement rules mirror harness/src/bench/placement.rs: same-cpu puts this process, its threads and every child on the
first usable CPU; split keeps this process and its threads there and puts children on the
second (alternating second, first, ... in start order; a pool's workers all on the second; a
forkserver, started with the first child, passes its placement on to its children). Curve
workloads ([bench] curve) are measured at each point, as "metric@x".
"""

import argparse
import threading
import json
import multiprocessing as mp
import multiprocessing.pool
import os
import sys
import time
import tomllib

import reference  # the one reading of the case format (same folder)

WAIT = 60.0


# --- tasks (module level, so that spawn and forkserver children can import them) ------------

def noop():
    pass


def identity(x):
    return x


def echo_bytes(conn):
    while True:
        try:
            m = conn.recv_bytes()
        except EOFError:
            return
        if not m:
            return
        conn.send_bytes(m)


def sink_bytes(data, ack):
    while True:
        try:
            m = data.recv_bytes()
        except EOFError:
            return
        if m == b"stop":
            return
        if not m:
            ack.send_bytes(b"k")


def put_n(q, n):
    for i in range(n):
        q.put(i)


def get_n(q, n):
    for _ in range(n):
        q.get()


def increment_n(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def lock_n(lock, n):
    for _ in range(n):
        with lock:
            pass


def put_bytes_n(q, n, size):
    msg = b"x" * size
    for _ in range(n):
        q.put(msg)


def get_bytes_n(q, n):
    for _ in range(n):
        q.get()


def rss_wait(conn):
    conn.send_bytes(b"up")
    try:
        conn.recv_bytes()
    except EOFError:
        pass


def _kb(text, name):
    for line in text.splitlines():
        if line.startswith(name):
            return int(line[len(name):].split()[0]) * 1024
    return 0


def read_memory(pid):
    """[VmRSS, private] of process pid, in bytes (harness/src/bench/memory.rs)."""
    with open(f"/proc/{pid}/status") as f:
        rss = _kb(f.read(), "VmRSS:")
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            t = f.read()
        private = _kb(t, "Private_Clean:") + _kb(t, "Private_Dirty:")
    except OSError:
        private = 0
    return [float(rss), float(private)]


def memory_once(subject, method):
    ctx = mp.get_context(method)
    if subject == "child":
        a, b = ctx.Pipe(True)
        p = ctx.Process(target=rss_wait, args=(b,))
        placed("process", p.start)
        a.poll(WAIT)
        a.recv_bytes()
        r = read_memory(p.pid)
        a.send_bytes(b"")
        p.join(WAIT)
        return r
    pool = placed("pool", lambda: ctx.Pool(1))
    try:
        pid = pool.apply(os.getpid)
        return read_memory(pid)
    finally:
        pool.close()
        pool.join()


TASKS = {f.__name__: f for f in (noop, identity, echo_bytes, sink_bytes, put_n, get_n, increment_n,
                                 lock_n, put_bytes_n, get_bytes_n)}


# --- placement (harness/src/bench/placement.rs) --------------------------------------------

class Placer:
    def __init__(self, placement):
        self.placement = placement
        self.home = self.other = None
        self.started = 0
        if placement == "free" or not hasattr(os, "sched_setaffinity"):
            self.placement = "free"
            return
        cpus = sorted(os.sched_getaffinity(0))
        self.home = cpus[0]
        if placement == "split":
            if len(cpus) < 2:
                raise RuntimeError("split needs two usable CPUs")
            self.other = cpus[1]
        else:
            self.other = self.home
        os.sched_setaffinity(0, {self.home})

    def reset(self):
        self.started = 0

    def child(self, kind, f):
        """Runs f (which starts a child) with this thread on the child's CPU."""
        if self.placement != "split":
            return f()
        if kind == "pool":
            cpu = self.other
        else:
            cpu = self.other if self.started % 2 == 0 else self.home
            self.started += 1
        if cpu == self.home:
            return f()
        os.sched_setaffinity(0, {cpu})
        try:
            return f()
        finally:
            os.sched_setaffinity(0, {self.home})
            # Threads the call started (a pool's handlers) belong to this process: on home.
            for t in threading.enumerate():
                if t.native_id is not None and t is not threading.current_thread():
                    try:
                        os.sched_setaffinity(t.native_id, {self.home})
                    except OSError:
                        pass


PLACER = None


def placed(kind, f):
    return PLACER.child(kind, f) if PLACER else f()


# --- workloads ---------------------------------------------------------------------------------

class Workload:
    def __init__(self, path, overrides=None):
        with open(path, "rb") as f:
            d = tomllib.load(f)
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.params = dict(d.get("params", {}))
        self.params.update(overrides or {})
        self.methods = d.get("methods", ["fork", "spawn", "forkserver"])
        self.steps = d["step"]
        self.bench = d["bench"]

    def int(self, v):
        if isinstance(v, int):
            return v
        if isinstance(v, str) and v.startswith("$"):
            return int(self.params[v[1:]])
        raise ValueError(f"expected an integer or $param, found {v!r}")

    def metric_id(self, method):
        return self.bench["metric"].replace("{method}", method)

    def ops(self):
        return self.int(self.bench.get("ops", 1))


class Env:
    """Compiles a workload's actions into closures (mirrors harness/src/bench/kernel/compile.rs:
    one `op_<action>` per action the bench runs; fields substituted with the parameters first)."""

    def __init__(self, w, method):
        self.w = w
        self.method = method
        self.ctx = mp.get_context(method)
        self.objs = {}

    def arg(self, v):
        if isinstance(v, str) and v in self.objs:
            return self.objs[v]
        return v

    def args(self, fields):
        return [self.arg(a) for a in fields.get("args", [])]

    def compile(self, op, fields):
        """A closure running the action (objects looked up when it runs)."""
        arm = getattr(self, "op_" + op, None)
        if arm is None:
            raise ValueError(f"the bench does not run {op!r}")
        env = dict(self.w.params, method=self.method, null=None)
        return arm(reference.subst(fields, env))

    def op_pipe(self, f):
        a, b = f["ids"]
        duplex = f.get("duplex", True)

        def run():
            self.objs[a], self.objs[b] = self.ctx.Pipe(duplex)
        return run

    def op_process(self, f):
        task, pid, count = TASKS[f["task"]], f["id"], f.get("count")

        def run():
            if count is None:
                self.objs[pid] = self.ctx.Process(target=task, args=self.args(f))
            else:
                self.objs[pid] = [self.ctx.Process(target=task, args=self.args(f))
                                  for _ in range(count)]
        return run

    def op_call(self, f):
        task = TASKS[f["task"]]
        return lambda: task(*self.args(f))

    def op_start(self, f):
        i = f["id"]

        def run():
            o = self.objs[i]
            for p in (o if isinstance(o, list) else [o]):
                placed("process", p.start)
        return run

    def op_join(self, f):
        i = f["id"]

        def run():
            o = self.objs[i]
            if isinstance(o, mp.pool.Pool):
                o.join()
                return
            for p in (o if isinstance(o, list) else [o]):
                p.join(WAIT)
                if p.exitcode != 0:
                    raise RuntimeError(f"{i} exited with {p.exitcode}")
        return run

    def op_close(self, f):
        i = f["id"]

        def run():
            o = self.objs.pop(i, None)
            if o is not None:
                for x in (o if isinstance(o, list) else [o]):
                    x.close()
                if isinstance(o, mp.pool.Pool):
                    self.objs[i] = o  # joined next
        return run

    def op_send_bytes(self, f):
        i = f["id"]
        buf = b"x" * f["bytes"] if "bytes" in f else f["data"].encode()
        return lambda: self.objs[i].send_bytes(buf)

    def op_recv_bytes(self, f):
        i = f["id"]
        return lambda: self.objs[i].recv_bytes()

    def op_pool(self, f):
        i, n = f["id"], f.get("processes")

        def run():
            self.objs[i] = placed("pool", lambda: self.ctx.Pool(n))
        return run

    def op_map(self, f):
        p, task = f["pool"], TASKS[f["task"]]
        items = reference.range_of(f["items"], {})
        chunksize = f.get("chunksize")
        return lambda: self.objs[p].map(task, items, chunksize)

    def op_apply_async(self, f):
        p, task, i = f["pool"], TASKS[f["task"]], f["id"]

        def run():
            self.objs[i] = self.objs[p].apply_async(task, self.args(f))
        return run

    def op_get(self, f):
        i = f["id"]
        return lambda: self.objs[i].get(WAIT)

    def op_queue(self, f):
        i = f["id"]

        def run():
            self.objs[i] = self.ctx.Queue()
        return run

    def op_lock(self, f):
        i = f["id"]

        def run():
            self.objs[i] = self.ctx.Lock()
        return run

    def op_value(self, f):
        i, code, init = f["id"], f.get("typecode", "q"), f.get("init", 0)

        def run():
            self.objs[i] = self.ctx.Value(code, init)
        return run

    def cleanup(self):
        for o in self.objs.values():
            for p in (o if isinstance(o, list) else [o]):
                if isinstance(p, mp.process.BaseProcess) and p.pid is not None and p.is_alive():
                    p.kill()
                    p.join(WAIT)
                elif isinstance(p, mp.pool.Pool):
                    p.terminate()
        self.objs = {}


def compile_steps(env, w):
    timed = w.bench.get("timed", "timed")
    idx = [i for i, s in enumerate(w.steps) if s.get("label") == timed]
    first, last = idx[0], idx[-1]
    parts = ([], [], [])
    for i, s in enumerate(w.steps):
        repeat = 1
        if "each" in s:
            repeat = len(reference.each_values(s["each"], w.params)[1])
        actions = [env.compile(op, fields) for op, fields, _ in reference.step_actions(s)]
        part = parts[0] if i < first else parts[1] if i <= last else parts[2]
        part.append((repeat, actions))
    return parts


def run_steps(steps):
    if PLACER:
        PLACER.reset()
    for repeat, actions in steps:
        for _ in range(repeat):
            for a in actions:
                a()


def sample(w, method, n_samples, warm=True):
    env = Env(w, method)
    setup, timed, teardown = compile_steps(env, w)
    iters = int(w.bench.get("iters", 1))
    ops = w.ops()
    out = []
    try:
        for k in range(0 if warm else 1, n_samples + 1):  # sample 0 warms up and is dropped
            run_steps(setup)
            t0 = time.perf_counter()
            for _ in range(iters if k else 1):
                run_steps(timed)
            dt = time.perf_counter() - t0
            run_steps(teardown)
            if k:
                out.append(dt / (iters * ops))
    finally:
        env.cleanup()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--filter", action="append", default=[])
    ap.add_argument("--placement", default="free", choices=["same-cpu", "split", "free"])
    ap.add_argument("--no-curves", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args()
    global PLACER
    PLACER = Placer(a.placement)
    files = sorted(f for f in os.listdir(a.cases) if f.endswith(".toml"))
    metrics, errors = {}, {}
    for f in files:
        try:
            w = Workload(os.path.join(a.cases, f))
        except Exception as e:  # a broken file: the Rust side reports it with its position
            errors[f] = f"{type(e).__name__}: {e}"
            continue
        if not w.bench.get("cpython", True):
            continue
        curve = w.bench.get("curve")
        for method in w.methods:
            if curve:
                mid = w.metric_id(method)
                if a.no_curves or (a.filter and not any(s in mid for s in a.filter)):
                    continue
                # Quick: 2 samples a point, and only the first point of a method warms up (the
                # forkserver's start; later points find it running).
                n = 2 if a.quick else min(w.bench.get("samples", 20), 10)
                for i, point in enumerate(curve["points"]):
                    key = f"{mid}@{point[curve['x']]}"
                    print(f"cpython: {key} ({n} samples)", file=sys.stderr, flush=True)
                    try:
                        wp = Workload(os.path.join(a.cases, f), point)
                        metrics[key] = {"samples_s": sample(wp, method, max(n, 1),
                                                            warm=(i == 0 or not a.quick))}
                    except Exception as e:
                        errors[key] = f"{type(e).__name__}: {e}"
                continue
            mid = w.metric_id(method)
            if a.filter and not any(s in mid for s in a.filter):
                continue
            ours = w.bench.get("quick_samples", 10) if a.quick else w.bench.get("samples", 20)
            n = w.bench.get("cpython_samples", min(ours, 5 if a.quick else 10))
            if a.quick:
                n = min(n, 5)
            print(f"cpython: {mid} ({n} samples)", file=sys.stderr, flush=True)
            try:
                metrics[mid] = {"samples_s": sample(w, method, max(n, 1))}
            except Exception as e:
                errors[mid] = f"{type(e).__name__}: {e}"
    if not a.no_memory and (not a.filter or any("rss/" in f for f in a.filter)):
        for method in ("fork", "spawn", "forkserver"):
            for subject in ("child", "pool_worker"):
                key = f"rss/{subject}/{method}"
                print(f"cpython: {key}", file=sys.stderr, flush=True)
                try:
                    memory_once(subject, method)  # first use (the forkserver's start)
                    readings = []
                    for _ in range(3):
                        readings.extend(memory_once(subject, method))
                    metrics[key] = {"samples_s": readings}
                except Exception as e:
                    errors[key] = f"{type(e).__name__}: {e}"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump({"version": sys.version.split()[0], "placement": PLACER.placement,
                   "metrics": metrics, "errors": errors}, fh, indent=1)


if __name__ == "__main__":
    main()
