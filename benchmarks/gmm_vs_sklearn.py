"""Per-iteration EM time: the zoo's Gaussian-mixture EM against scikit-learn's GaussianMixture.

Data: the 512 x 512 pixels of skimage.data.astronaut() in Lab colour (262,144 x 3), K = 5 full covariances, both
started from the same parameters (k-means++ centres, seed 0). Each side runs a short and a long fit; the difference
divided by the extra iterations is the time per iteration (fixed costs cancel). The best of --repeat runs is kept.

    .venv/bin/python benchmarks/gmm_vs_sklearn.py [--k 5] [--iters 10] [--repeat 3]

Prints both per-iteration times, both final log-likelihoods after the same number of iterations, and last a line
``speedup: X`` (scikit-learn's time per iteration over ours).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from skimage import color, data
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from inference import ConvergenceMonitor, hooks_for, run_em
from models.gaussian_mixture import build, init_from_centres, kmeans_plus_plus


def sklearn_fit(X, init, n_iter):
    precisions = np.linalg.inv(init["cov"])
    gm = GaussianMixture(len(init["w"]), covariance_type="full", tol=0.0, max_iter=n_iter, reg_covar=1e-6,
                         weights_init=init["w"], means_init=init["mu"], precisions_init=precisions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        gm.fit(X)
        elapsed = time.perf_counter() - t0
    return elapsed, gm.score(X) * len(X), gm


def zoo_math(X, k):
    """The model's EM math with scikit-learn's ridge (built once: the PyMC declaration is not part of an
    iteration's cost)."""
    return hooks_for(build(X, k=k)).em_math(False, reg_covar=1e-6)


def zoo_fit(math, init, n_iter):
    # tol = param_tol = 0: run exactly n_iter iterations, as scikit-learn with tol=0 does
    t0 = time.perf_counter()
    run = run_em(math, init, ConvergenceMonitor(tol=0.0, param_tol=0.0, max_iter=n_iter))
    elapsed = time.perf_counter() - t0
    return elapsed, run.trace[-1], run.params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10, help="extra iterations of the long fit")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    X = color.rgb2lab(data.astronaut()).reshape(-1, 3)
    rng = np.random.default_rng(0)
    centre = X.mean(axis=0)
    init = init_from_centres(X - centre, kmeans_plus_plus(X - centre, args.k, rng), 1e-6)
    init["mu"] = init["mu"] + centre
    print(f"data: astronaut in Lab, {X.shape[0]} x {X.shape[1]}, K = {args.k}, full covariances")

    short, long_ = 2, 2 + args.iters
    per_iter = {}
    final = {}
    math = zoo_math(X, args.k)
    for name, fit, data_ in (("scikit-learn", sklearn_fit, X), ("zoo", zoo_fit, math)):
        best = np.inf
        for _ in range(args.repeat):
            t_short, _, _ = fit(data_, init, short)
            t_long, ll, _ = fit(data_, init, long_)
            best = min(best, (t_long - t_short) / (long_ - short))
        per_iter[name] = best
        final[name] = ll
        print(f"{name:13s} {best * 1e3:9.2f} ms per iteration; log-likelihood after {long_} iterations: {ll:.10f}")
    rel = (final["zoo"] - final["scikit-learn"]) / abs(final["scikit-learn"])
    print(f"final log-likelihood, zoo minus scikit-learn (relative): {rel:.3e}")
    print(f"speedup: {per_iter['scikit-learn'] / per_iter['zoo']:.1f}")


if __name__ == "__main__":
    main()
