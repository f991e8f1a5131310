"""Per-iteration variational-EM time on Reuters: the zoo's LDA against scikit-learn's batch LatentDirichletAllocation,
and online variational Bayes' throughput.

Data: the 395 Reuters stories of the ``lda`` package (4,258 words, 84,010 tokens); alpha = 1/k, beta = 0.01. Each
side runs a short and a long fit; the difference divided by the extra iterations is the time per iteration (fixed
costs cancel); the short fit is 12 iterations, past the zoo's first 10 sweeps, whose E-step also runs from a fresh
start (so this is the steady-state cost; the whole-fit times of a 50-iteration run are printed too). The best of
--repeat runs is kept. Both use the same E-step criterion (mean absolute change of gamma below 1e-3, at most 100
passes).

    .venv/bin/python benchmarks/lda_vs_sklearn.py [--k 10 50] [--iters 10] [--repeat 3]

Prints, per k, both times per iteration and ``speedup: X`` (scikit-learn's time over ours), then the online
throughput of both in documents per second (batch size 64, 5 epochs).
"""

from __future__ import annotations

import argparse
import time
import warnings
from importlib import import_module

import numpy as np
import scipy.sparse as sp

from inference.result import ConvergenceWarning
from inference.vem import vem
from models import lda


def zoo_time(model, n_iter: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        vem(model, seed=0, max_iter=n_iter, tol=0.0)
        return time.perf_counter() - t0


def sklearn_time(X, k: int, n_iter: int, **kwargs) -> float:
    t0 = time.perf_counter()
    lda.sklearn_lda(X, k, alpha=1.0 / k, beta=0.01, max_iter=n_iter, **kwargs)
    return time.perf_counter() - t0


def per_iteration(timer, iters: int, repeat: int) -> float:
    short = min(timer(12) for _ in range(repeat))
    long = min(timer(12 + iters) for _ in range(repeat))
    return (long - short) / iters


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    X = sp.csr_matrix(import_module("lda.datasets").load_reuters())
    print(f"Reuters: {X.shape[0]} documents, {X.shape[1]} words, {int(X.sum())} tokens, {X.nnz} nonzeros")
    for k in args.k:
        model = lda.build(X, k=k)
        ours = per_iteration(lambda n: zoo_time(model, n), args.iters, args.repeat)
        theirs = per_iteration(lambda n: sklearn_time(X, k, n), args.iters, args.repeat)
        print(f"k={k}: zoo {ours * 1e3:.1f} ms/iteration, scikit-learn {theirs * 1e3:.1f} ms/iteration, "
              f"speedup: {theirs / ours:.2f}")
        ours, theirs = zoo_time(model, 50), sklearn_time(X, k, 50)
        print(f"k={k}: 50-iteration fit: zoo {ours:.2f} s, scikit-learn {theirs:.2f} s, speedup: {theirs / ours:.2f}")
    k, epochs, batch = args.k[0], 5, 64
    model = lda.build(X, k=k)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vem(model, seed=0, online=True, batch_size=batch, epochs=epochs, tol=0.0)
    ours = epochs * X.shape[0] / (time.perf_counter() - t0)
    theirs = epochs * X.shape[0] / sklearn_time(X, k, epochs, learning_method="online", batch_size=batch)
    print(f"online VB, k={k}, batch {batch}: zoo {ours:.0f} documents/s, scikit-learn {theirs:.0f} documents/s "
          f"(ratio {ours / theirs:.2f})")
    print(f"numpy {np.__version__}")


if __name__ == "__main__":
    main()
