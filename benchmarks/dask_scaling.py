"""Rows per second of exact EM over chunks on a Dask LocalCluster (loopback only) with 1, 2 and 4 single-threaded
worker processes, against the same EM on one machine without Dask. The workers read their Parquet files once and
keep them; each iteration ships the parameters out and the statistics back. On a machine with C cores, more than C
workers cannot go faster.

    python benchmarks/dask_scaling.py --rows 1000000 --workers 1,2,4
"""

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script: its sibling holds the truth
from chunked_memory import TRUTH  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--chunk-rows", type=int, default=125_000)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from inference import chunked
    from inference.study import dask_client
    from models import gaussian_mixture as gm

    print(f"{os.cpu_count()} cores on this machine")
    with tempfile.TemporaryDirectory() as tmp:
        chunked.write_parquet(gm.SPEC, TRUTH, args.rows, tmp, rows_per_file=-(-args.rows // args.files), seed=0)
        pattern = os.path.join(tmp, "*.parquet")
        model, source = chunked.reference_model(gm.SPEC, pattern, None, args.chunk_rows, k=5)
        p0 = hooks_math(model).init(np.random.default_rng(0))
        kw = {"init": p0, "max_iter": args.iters, "tol": 0, "param_tol": 0}
        serial = chunked.chunked_em(model, source, **kw)
        print(f"serial      {serial.rows_per_second:>12,.0f} rows/s")
        for n in (int(w) for w in args.workers.split(",")):
            with dask_client("local", n) as client:
                t0 = time.perf_counter()
                fit = chunked.chunked_em(model, source, client=client, **kw)
                print(f"{n} worker(s) {fit.rows_per_second:>12,.0f} rows/s  (including the first read: "
                      f"{time.perf_counter() - t0:.1f} s; same iterates: "
                      f"{abs(fit.loglik - serial.loglik) < 1e-8 * abs(serial.loglik)})")


def hooks_math(model):
    from inference import hooks_for

    return hooks_for(model).em_math(False)


if __name__ == "__main__":
    main()
