"""Two-coefficient GLMs, the reference by a 2-D grid in Laplace-whitened coordinates (:func:`~.core.grid_moments`).

A logistic regression with one covariate at scale 1e4 (its coefficient near 1e-4, its posterior sd near 1e-5)
beside an ordinary one, and a Poisson regression with log link whose covariate is centred at 50, so that the
intercept and the slope are correlated near -1. Both log densities are smooth and log-concave, so the trapezoid rule
on the whitened grid converges faster than any power of the step. Data simulated from the fixed seeds given here.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit, gammaln

from .core import Entry, Free, grid_moments

__all__ = ["logistic_scaled", "poisson_glm"]


def _normal_logpdf(x, mu, sd):
    return -0.5 * np.log(2 * np.pi) - np.log(sd) - 0.5 * ((x - mu) / sd) ** 2


def logistic_scaled(seed: int = 21, n: int = 300) -> Entry:
    """y_i ~ Bernoulli(logit^-1(beta_0 x_i0 + beta_1 x_i1)), x_i0 ~ N(0, 1e4^2), x_i1 ~ N(0, 1), no intercept;
    beta ~ Normal(0, (1e-3, 2.5)); true beta = (2e-4, -1)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([1e4 * rng.standard_normal(n), rng.standard_normal(n)])
    beta = np.array([2e-4, -1.0])
    y = (rng.random(n) < expit(X @ beta)).astype(np.int64)
    prior_sd = np.array([1e-3, 2.5])

    def build():
        with pm.Model() as model:
            b = pm.Normal("beta", mu=np.float64(0.0), sigma=prior_sd, shape=2)
            pm.Bernoulli("y", logit_p=pt.dot(X, b), observed=y)
        return model

    def logp(point):
        b = point["beta"]
        eta = b @ X.T
        return _normal_logpdf(b, 0.0, prior_sd).sum(axis=1) + (y * eta - np.logaddexp(0.0, eta)).sum(axis=1)

    def solve():
        return grid_moments(entry)

    entry = Entry(name="logistic_scaled",
                  summary="Logistic regression, covariates at scales 1e4 and 1 (coefficient sds ~1e-5 and ~0.15)",
                  build=build, free={"beta": Free((2,), None)}, logp=logp,
                  derived=lambda point: {"beta": point["beta"]}, solve=solve, near_gaussian=True,
                  start={"beta": beta}, scale={"beta": np.array([2e-5, 0.15])})
    return entry


def poisson_glm(seed: int = 22, n: int = 100) -> Entry:
    """y_i ~ Poisson(exp(beta_0 + beta_1 x_i)), x_i ~ N(50, 1); beta ~ Normal(0, (10, 1)); true beta =
    (-3, 0.08), a mean count near e."""
    rng = np.random.default_rng(seed)
    x = 50.0 + rng.standard_normal(n)
    beta = np.array([-3.0, 0.08])
    y = rng.poisson(np.exp(beta[0] + beta[1] * x))
    prior_sd = np.array([10.0, 1.0])

    def build():
        with pm.Model() as model:
            b = pm.Normal("beta", mu=np.float64(0.0), sigma=prior_sd, shape=2)
            pm.Poisson("y", mu=pt.exp(b[0] + b[1] * x), observed=y)
        return model

    def logp(point):
        b = point["beta"]
        eta = b[:, :1] + b[:, 1:] * x
        return (_normal_logpdf(b, 0.0, prior_sd).sum(axis=1)
                + (y * eta - np.exp(eta) - gammaln(y + 1)).sum(axis=1))

    def solve():
        return grid_moments(entry)

    entry = Entry(name="poisson_glm",
                  summary="Poisson regression, log link, covariate centred at 50 (intercept-slope correlation "
                          "near -1)",
                  build=build, free={"beta": Free((2,), None)}, logp=logp,
                  derived=lambda point: {"beta": point["beta"]}, solve=solve, near_gaussian=True,
                  start={"beta": beta}, scale={"beta": np.array([3.0, 0.06])})
    return entry
