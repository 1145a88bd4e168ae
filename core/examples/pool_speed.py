"""CPython counterpart of pool_speed.rs: the same pool timings under multiprocessing (medians).

python3 core/examples/pool_speed.py fork forkserver spawn
"""
import multiprocessing as mp, time, sys, statistics
def ident(x): return x
def noop(): pass
if __name__ == '__main__':
    for m in sys.argv[1:]:
        ctx = mp.get_context(m)
        with ctx.Pool(2) as p:
            p.apply(ident, (1,))
            items = list(range(10000))
            def med(f, n):
                s=[]
                for _ in range(n):
                    t=time.perf_counter(); f(); s.append(time.perf_counter()-t)
                return statistics.median(s)
            rt = med(lambda: p.apply_async(ident,(1,)).get(), 500)
            d = med(lambda: p.map(ident, items), 5)
            one = med(lambda: p.map(ident, items, chunksize=1), 3)
        def create():
            q = ctx.Pool(2); q.close(); q.join()
        c = med(create, 5)
        def proc():
            q = ctx.Process(target=noop); q.start(); q.join()
        pj = med(proc, 5)
        print(f"{m}: apply_async+get {rt*1e6:.1f} us; map default {d*1e3:.2f} ms; map chunksize=1 {one*1e3:.1f} ms; Pool(2) create+close+join {c*1e3:.2f} ms; process {pj*1e3:.2f} ms")
