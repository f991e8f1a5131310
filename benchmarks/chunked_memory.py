"""Peak memory and speed of EM beyond memory: a 3-D, K = 5 Gaussian mixture fitted to ``--rows`` rows of float64
Parquet (written by ``inference.chunked.write_parquet`` from the model's own simulator) by exact EM over chunks and
by online EM, each in a fresh subprocess whose peak resident memory (``resource.getrusage``) is printed, next to
scikit-learn's in-memory ``GaussianMixture`` on the same rows (the rows per second ratio).

    python benchmarks/chunked_memory.py --rows 1000000            # 10^8 rows: 2.4 GB of Parquet, < 1 GB resident
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

TRUTH = {"w": np.array([0.3, 0.25, 0.2, 0.15, 0.1]),
         "mu": np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 5.0, 5.0]]),
         "cov": np.stack([np.eye(3) * s for s in (1.0, 0.8, 1.2, 0.6, 1.5)])}

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from inference import chunked
from models import gaussian_mixture as gm
method, pattern, chunk_rows, max_iter = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model, source = chunked.reference_model(gm.SPEC, pattern, None, chunk_rows, k=5)
if method == "em":
    fit = chunked.chunked_em(model, source, seed=0, max_iter=max_iter, tol=1e-8)
else:
    fit = chunked.online_em(model, chunked.open_source(pattern, None, 2000), batch_rows=2000, epochs=2, seed=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
print(json.dumps({"method": method, "rows_per_s": fit.rows_per_second, "loglik": fit.loglik, "n_iter": fit.n_iter,
                  "time_s": fit.time_s, "peak_mb": peak}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-per-file", type=int, default=1_000_000)
    ap.add_argument("--chunk-rows", type=int, default=250_000)
    ap.add_argument("--max-iter", type=int, default=20, help="EM iterations timed (all methods alike)")
    ap.add_argument("--sklearn-max-rows", type=int, default=20_000_000,
                    help="the largest size scikit-learn is given (it holds the data in memory)")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    with tempfile.TemporaryDirectory() as tmp:
        from inference import chunked
        from models import gaussian_mixture as gm

        t0 = time.perf_counter()
        files = chunked.write_parquet(gm.SPEC, TRUTH, args.rows, tmp, rows_per_file=args.rows_per_file, seed=0)
        size = sum(os.path.getsize(f) for f in files) / 1e9
        print(f"wrote {args.rows:,} rows in {len(files)} files ({size:.2f} GB) in {time.perf_counter() - t0:.1f} s")
        results = {}
        for method in ("em", "online_em"):
            out = subprocess.run([sys.executable, "-c", CHILD, method, os.path.join(tmp, "*.parquet"),
                                  str(args.chunk_rows), str(args.max_iter)], env=env, capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[method] = r
            print(f"{method:10s} {r['rows_per_s']:>12,.0f} rows/s  peak {r['peak_mb']:7.0f} MB  "
                  f"loglik {r['loglik']:.4f}  iterations {r['n_iter']}  {r['time_s']:.1f} s")
        import pandas as pd
        from sklearn.mixture import GaussianMixture

        n_sk = min(args.rows, args.sklearn_max_rows)
        frames, held = [], 0
        for f in files:  # only the files scikit-learn is given, not the whole data set
            if held >= n_sk:
                break
            frames.append(pd.read_parquet(f))
            held += len(frames[-1])
        X = pd.concat(frames).to_numpy()[:n_sk]
        del frames
        sk = GaussianMixture(5, tol=0, max_iter=args.max_iter, reg_covar=0, random_state=0)
        t0 = time.perf_counter()
        with np.errstate(all="ignore"):
            sk.fit(X)
        sk_rate = n_sk * sk.n_iter_ / (time.perf_counter() - t0)
        print(f"{'sklearn':10s} {sk_rate:>12,.0f} rows/s  (in memory, {n_sk:,} rows, {sk.n_iter_} iterations)")
        for method, r in results.items():
            print(f"ratio {method} / sklearn rows per second: {r['rows_per_s'] / sk_rate:.2f}")


if __name__ == "__main__":
    main()
