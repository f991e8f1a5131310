"""The earthquake series (yearly M7+ counts, 1900-2006) under Poisson hidden Markov models with 1, 2 and 3 states.

For both conventions for the initial distribution (stationary: Zucchini & MacDonald; free: hmmlearn) the zoo's EM
(best of --n-init starts) gives the maximum log-likelihood, AIC = -2 log L + 2 p, BIC = -2 log L + p log T and the
parameters; hmmlearn's PoissonHMM (free start, best of --n-init random states) is shown alongside.
Zucchini & MacDonald (2009) report -log L = 342.32 (2 states) and 329.46 (3 states) for the stationary models.

    .venv/bin/python benchmarks/hmm_earthquakes.py [--n-init 10]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from hmmlearn.hmm import PoissonHMM

import inference
from models import hmm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-init", type=int, default=10)
    args = parser.parse_args()
    y = hmm.example("earthquakes").data
    T = y.size
    np.set_printoptions(precision=4, suppress=True)
    for initial in hmm.INITIALS:
        print(f"initial = {initial}")
        for k in (1, 2, 3):
            res = inference.em(hmm.build(y, k, initial=initial), n_init=args.n_init, seed=0)
            p = hmm.n_params(k, "poisson", initial)
            print(f"  k = {k}: log L = {res.loglik:.4f}, p = {p}, AIC = {-2 * res.loglik + 2 * p:.2f}, "
                  f"BIC = {-2 * res.loglik + p * np.log(T):.2f}, converged = {res.converged}")
            for name in ("lam", "P", "pi0"):
                if name in res.params:
                    print(f"    {name} = {np.array2string(np.asarray(res.params[name]), prefix='    ')}")
    print("hmmlearn PoissonHMM (free start)")
    X = y[:, None].astype(int)
    for k in (1, 2, 3):
        best = None
        for seed in range(args.n_init):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h = PoissonHMM(k, n_iter=10_000, tol=1e-10, random_state=seed).fit(X)
            if best is None or h.score(X) > best.score(X):
                best = h
        ll = best.score(X)
        p = hmm.n_params(k, "poisson", "free")
        order = np.argsort(best.lambdas_[:, 0])
        print(f"  k = {k}: log L = {ll:.4f}, AIC = {-2 * ll + 2 * p:.2f}, BIC = {-2 * ll + p * np.log(T):.2f}, "
              f"lam = {best.lambdas_[order, 0]}, pi0 = {best.startprob_[order]}")


if __name__ == "__main__":
    main()
