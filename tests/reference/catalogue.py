"""The catalogue: every reference posterior by name.

Each entry's data are simulated from the fixed seed written here or typed from the published source named in its
module (eight schools); nothing is read from the network or from files.
"""

from __future__ import annotations

import numpy as np

from .conjugate import beta_binomial, gamma_poisson, nig_regression
from .core import Entry
from .eight_schools import eight_schools
from .glm import logistic_scaled, poisson_glm
from .mixture import mixture

__all__ = ["CATALOGUE", "entries", "get"]


def _design(seed: int, n: int, centre: float = 0.0, spread: float = 1.0, predictors: int = 1) -> np.ndarray:
    """An intercept column and ``predictors`` columns centre + spread * N(0, 1) from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return np.column_stack([np.ones(n), centre + spread * rng.standard_normal((n, predictors))])


def _build_catalogue() -> dict[str, Entry]:
    e = [
        nig_regression(
            "nig_unit", "NIG regression, intercept and slope, posterior sds ~1", seed=101,
            X=_design(1, 200), beta=[1.0, -0.5], sigma=15.0, m0=0.0, v0=100.0, a0=2.0, b0=225.0,
            near_gaussian=True),
        nig_regression(
            "nig_small", "NIG regression, coefficients ~1e-2, posterior sds ~1e-3, sigma^2 ~1e-4", seed=102,
            X=_design(2, 200), beta=[0.02, -0.005], sigma=0.015, m0=0.0, v0=1e4, a0=2.0, b0=2.25e-4,
            near_gaussian=True),
        nig_regression(
            "nig_large", "NIG regression, coefficients ~1e5, posterior sds ~1e4, sigma^2 ~1e10", seed=103,
            X=_design(3, 200), beta=[3e5, -1e5], sigma=1.5e5, m0=0.0, v0=100.0, a0=2.0, b0=2.25e10,
            near_gaussian=True),
        nig_regression(
            "nig_correlated", "NIG regression, predictor centred at 100 (intercept-slope correlation -0.9998)",
            seed=104, X=_design(4, 200, centre=100.0, spread=2.0), beta=[5.0, 0.3], sigma=1.0, m0=0.0, v0=1e6,
            a0=2.0, b0=1.0, near_gaussian=True),
        nig_regression(
            "nig_flat", "NIG regression, three coefficients, near-flat prior (v0 = 1e6, a0 = b0 = 1e-3)",
            seed=105, X=_design(5, 200, predictors=2), beta=[-2.0, 1.0, 0.5], sigma=2.0, m0=0.0, v0=1e6,
            a0=1e-3, b0=1e-3, near_gaussian=True),
        nig_regression(
            "nig_fewdata", "NIG regression on 5 points: Student-t(7) coefficients, skewed sigma^2 (a_n = 3.5)",
            seed=106, X=_design(6, 5), beta=[1.0, 2.0], sigma=1.0, m0=0.0, v0=10.0, a0=1.0, b0=1.0,
            near_gaussian=False),
        beta_binomial(
            "betabinom_rare", "Beta-Binomial, p ~ 1e-4 (1e6 trials, Beta(1, 1) prior)", trials=1_000_000,
            successes=int(np.random.default_rng(201).binomial(1_000_000, 1e-4)), a=1.0, b=1.0, near_gaussian=True),
        beta_binomial(
            "betabinom_half", "Beta-Binomial, p ~ 0.5 (1000 trials, Beta(2, 2) prior)", trials=1000,
            successes=int(np.random.default_rng(202).binomial(1000, 0.5)), a=2.0, b=2.0, near_gaussian=True),
        beta_binomial(
            "betabinom_zero", "Beta-Binomial, 0 successes in 20 trials, Jeffreys Beta(1/2, 1/2) prior: "
            "p | y ~ Beta(1/2, 41/2), strongly skewed", trials=20, successes=0, a=0.5, b=0.5,
            near_gaussian=False),
        gamma_poisson(
            "gammapois_rare", "Gamma-Poisson, rate ~1e-4 (20 counts, exposure 2.5e4 each)", seed=301, rate=1e-4,
            exposure=np.full(20, 2.5e4), a=1.0, b=1e3, near_gaussian=True),
        gamma_poisson(
            "gammapois_huge", "Gamma-Poisson, rate ~1e5 (10 counts, exposure 1e-3 each)", seed=302, rate=1e5,
            exposure=np.full(10, 1e-3),
            a=2.0, b=2e-5, near_gaussian=True),
        eight_schools(centered=True),
        eight_schools(centered=False),
        mixture(
            "mixture_separated", "Two-component Gaussian mixture, ordered means -2 and 2, weights 0.3/0.7, sds 1 "
            "and 1.5 known, 200 points", seed=401, n=200, weight=0.3, means=[-2.0, 2.0], sds=[1.0, 1.5],
            prior_sd=10.0, near_gaussian=True),
        mixture(
            "mixture_overlap", "Two-component Gaussian mixture, ordered means -0.6 and 0.6, equal weights, sds 1 "
            "known, 100 points: the components overlap", seed=402, n=100, weight=0.5, means=[-0.6, 0.6],
            sds=[1.0, 1.0], prior_sd=10.0, near_gaussian=False),
        logistic_scaled(),
        poisson_glm(),
    ]
    return {entry.name: entry for entry in e}


CATALOGUE: dict[str, Entry] = _build_catalogue()


def entries(names=None) -> list[Entry]:
    """The entries named in ``names`` (all of them by default), in catalogue order."""
    if names is None:
        return list(CATALOGUE.values())
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise KeyError(f"unknown entries {unknown}; known: {', '.join(CATALOGUE)}")
    return [CATALOGUE[n] for n in names]


def get(name: str) -> Entry:
    """One entry by name."""
    return entries([name])[0]
