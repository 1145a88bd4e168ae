"""CPython counterpart of manager_speed.rs: the same manager calls, from a child, under
multiprocessing's Manager (medians of 7 batches), and Manager start+shutdown against a process
start+join. Pin it as the Rust one pins itself:

taskset -c 0 python3 core/examples/manager_speed.py fork spawn forkserver
"""
import multiprocessing as mp, statistics, sys, time

N = 500

def per_op(f, n=N, batches=7):
    s = []
    for _ in range(batches):
        t = time.perf_counter()
        for _ in range(n):
            f()
        s.append((time.perf_counter() - t) / n)
    return statistics.median(s)

def measure(d, l, v, lock, out):
    d[1] = 1
    def acq():
        lock.acquire()
        lock.release()
    res = [
        per_op(lambda: d.__setitem__(1, 2)),
        per_op(lambda: d[1]),
        per_op(lambda: l.append(7)),
        per_op(lambda: v.value),
        per_op(acq),
    ]
    out.send(res)

def noop():
    pass

if __name__ == '__main__':
    for m in sys.argv[1:] or ['fork', 'spawn', 'forkserver']:
        ctx = mp.get_context(m)
        with ctx.Manager() as manager:
            a, b = ctx.Pipe()
            p = ctx.Process(target=measure, args=(manager.dict(), manager.list(), manager.Value('i', 5), manager.Lock(), b))
            p.start()
            res = a.recv()
            p.join()
        names = ['dict set', 'dict get', 'list append', 'Value get', 'Lock acquire+release']
        print(f"{m}: " + "; ".join(f"{n} {r * 1e6:.1f} us" for n, r in zip(names, res)))
        k = 10 if m == 'spawn' else 30
        def lifecycle():
            mgr = ctx.Manager()
            mgr.shutdown()
        def start_join():
            q = ctx.Process(target=noop)
            q.start()
            q.join()
        lc = per_op(lifecycle, k, 3)
        sj = per_op(start_join, k, 3)
        print(f"{m}: Manager start+shutdown {lc * 1e3:.2f} ms; process start+join {sj * 1e3:.2f} ms ({lc / sj:.2f}x)")
