"""Per-iteration Baum-Welch time: the zoo's hidden Markov model EM against hmmlearn's PoissonHMM.

Data: Poisson HMMs simulated from the zoo's declaration, T = 10^5 and 10^6 steps, K = 2 and 5 states (rates
5, 10, ..., 5K; 0.9 on the diagonal of P), free initial distribution (hmmlearn's convention). Both sides start from
the same parameters. Each side runs a short and a long fit; the difference divided by the extra iterations is the
time per iteration (fixed costs cancel). The zoo's iteration is what the EM driver calls: one E-step plus M-step and
the log-likelihood at the new point. hmmlearn runs with both of its implementations ("log", its default, and
"scaling"). The best of --repeat runs is kept.

    .venv/bin/python benchmarks/hmm_vs_hmmlearn.py [--iters 5] [--repeat 3]

Prints one line per case: the per-iteration times and the ratios hmmlearn / zoo (above 1: the zoo is faster).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from hmmlearn.hmm import PoissonHMM

from models import hmm


def case(T, K):
    P = np.full((K, K), 0.1 / (K - 1)) + (0.9 - 0.1 / (K - 1)) * np.eye(K)
    truth = {"P": P, "lam": 5.0 * np.arange(1, K + 1), "pi0": np.full(K, 1.0 / K)}
    y = hmm.simulate(truth, n=T, seed=1)
    start = {"P": np.full((K, K), 0.2 / (K - 1)) + (0.8 - 0.2 / (K - 1)) * np.eye(K),
             "lam": 4.0 * np.arange(1, K + 1) + 1.0, "pi0": np.full(K, 1.0 / K)}
    return y, start


def zoo_fit(math, start, n_iter):
    t0 = time.perf_counter()
    params = start
    ll = math.loglik(params)
    for _ in range(n_iter):
        params = math.step(params)
        ll = math.loglik(params)
    return time.perf_counter() - t0, ll


def hmmlearn_fit(y, start, n_iter, implementation):
    h = PoissonHMM(len(start["lam"]), params="stl", init_params="", n_iter=n_iter, tol=-np.inf,
                   implementation=implementation)
    h.startprob_, h.transmat_, h.lambdas_ = start["pi0"], start["P"], start["lam"][:, None]
    X = y[:, None].astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        h.fit(X)
        elapsed = time.perf_counter() - t0
    return elapsed, h.monitor_.history[-1]


def per_iteration(fit, iters, repeat):
    short = min(fit(1)[0] for _ in range(repeat))
    long_ = min(fit(1 + iters)[0] for _ in range(repeat))
    return (long_ - short) / iters


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="extra iterations of the long fit")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for T in (10**5, 10**6):
        for K in (2, 5):
            y, start = case(T, K)
            math = hmm.em_math(hmm.build(y, K, initial="free"), prior=False)
            zoo_fit(math, start, 1)  # compiles the kernels
            zoo = per_iteration(lambda n: zoo_fit(math, start, n), args.iters, args.repeat)
            ref = {impl: per_iteration(lambda n, impl=impl: hmmlearn_fit(y, start, n, impl), args.iters,
                                       args.repeat) for impl in ("log", "scaling")}
            # hmmlearn records the log-likelihood of each E-step, before its M-step
            same = np.isclose(zoo_fit(math, start, 2)[1], hmmlearn_fit(y, start, 3, "scaling")[1], rtol=1e-8)
            print(f"T = {T:>7}, K = {K}: zoo {zoo * 1e3:8.1f} ms/iter, hmmlearn log {ref['log'] * 1e3:8.1f} ms, "
                  f"scaling {ref['scaling'] * 1e3:8.1f} ms; ratio hmmlearn/zoo: log {ref['log'] / zoo:5.2f}, "
                  f"scaling {ref['scaling'] / zoo:5.2f}; same log-likelihood after 2 iterations: {same}",
                  flush=True)


if __name__ == "__main__":
    main()
