"""Normal model: y_i ~ Normal(mu, sigma), the classic maximum-likelihood illustration.

Declaration (``build``)::

    mu    ~ Normal(mu_prior[0], mu_prior[1])      default Normal(0, 10)
    sigma ~ HalfNormal(sigma_prior)                default HalfNormal(5)
    y_i   ~ Normal(mu, sigma)                      observed, through the data container ``y_data``

Built-in example: mu = 5, sigma = 2, n = 1000, seed 42, drawn from this declaration with the parameters fixed.

EM: nothing is latent, so an "E-step" has nothing to fill in and one M-step is the closed-form MLE,
mu = mean(y), sigma^2 = mean((y - mu)^2) (divisor n); EM converges after one iteration. With the model's priors the
M-step is a coordinate ascent on the log posterior (no Jacobian): mu given sigma is the precision-weighted mean,
sigma given mu solves s^4 / tau^2 + n s^2 - SS = 0 with SS = sum (y - mu)^2, tau the HalfNormal scale. Each update
maximises the log posterior in one coordinate, so the objective never decreases, and the fixed point is the MAP.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from scipy import stats

from inference.base import EMMath, ModelHooks, ModelSpec, attach

from ._common import (
    Example,
    as_vector,
    check_n,
    data_of,
    dist_params,
    halfnormal_scale_map,
    normal_mean_map,
    normal_prior,
    positive,
    simulate_from,
)

NAME = "normal"
TRUTH = {"mu": 5.0, "sigma": 2.0}
EXAMPLE_N = 1000
EXAMPLE_SEED = 42

__all__ = ["SPEC", "TRUTH", "build", "closed_form_mle", "em_math", "example", "init", "simulate", "swap_data"]


def build(y, *, mu_prior=(0.0, 10.0), sigma_prior=5.0, _placeholder: bool = False) -> pm.Model:
    """The PyMC model for observations ``y``.

    Parameters
    ----------
    y : 1-D array of finite floats.
    mu_prior : (mean, sd) of the Normal prior on ``mu``. Default (0, 10).
    sigma_prior : scale of the HalfNormal prior on ``sigma``. Default 5.
    """
    y = as_vector(y, "y")
    if not _placeholder:
        check_spread(y)
    m0, s0 = normal_prior(mu_prior, "mu_prior")
    tau = positive(sigma_prior, "sigma_prior")
    with pm.Model() as model:
        y_data = pm.Data("y_data", y)
        mu = pm.Normal("mu", m0, s0)
        sigma = pm.HalfNormal("sigma", tau)
        pm.Normal("y", mu, sigma, observed=y_data, shape=y_data.shape)
    options = {"mu_prior": (m0, s0), "sigma_prior": tau}
    return attach(model, ModelHooks(NAME, options, em_math=lambda prior: em_math(model, prior=prior),
                                    init=lambda rng: init(data_of(model, "y_data"), rng)))


def swap_data(model: pm.Model, y) -> pm.Model:
    """``model`` with its observations replaced by ``y`` (``pm.set_data``): the same as ``build(y)`` with the
    model's options, without building or compiling again."""
    y = as_vector(y, "y")
    check_spread(y)
    with model:
        pm.set_data({"y_data": y})
    return model


def simulate(params=None, n: int = EXAMPLE_N, seed=EXAMPLE_SEED) -> np.ndarray:
    """``n`` draws of y from the declaration with ``params`` (default: the truth) fixed."""
    params = dict(TRUTH if params is None else params)
    n = check_n(n)
    return simulate_from(lambda: build(np.zeros(n), _placeholder=True), params, "y", seed, key=(NAME, n))


def example(seed=EXAMPLE_SEED) -> Example:
    return Example(simulate(TRUTH, EXAMPLE_N, seed), truth=dict(TRUTH))


def check_spread(y) -> None:
    """Refuse data with no spread: a single observation, or all equal (to within round-off of their size). The
    likelihood grows without bound as sigma -> 0 there, so the MLE and the MAP do not exist and the posterior is
    improper (its mass piles up at sigma = 0)."""
    if y.size < 2 or np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
        what = "there is only one observation" if y.size < 2 else "the observations are all equal"
        raise ValueError(f"y: {what}, so the likelihood grows without bound as sigma -> 0: no MLE, no MAP, and an "
                         "improper posterior; a normal model needs at least two distinct values")


def closed_form_mle(y) -> dict:
    """mu = mean(y), sigma = sqrt(mean((y - mean)^2)) (divisor n)."""
    y = as_vector(y, "y")
    mu = y.mean()
    return {"mu": mu, "sigma": np.sqrt(np.mean((y - mu) ** 2))}


def init(y, rng) -> dict:
    """A start from the data: the sample median and the interquartile range scaled to a sd, jittered by ``rng``."""
    q1, med, q3 = np.percentile(y, [25, 50, 75])
    scale = max((q3 - q1) / 1.349, 1e-3 * max(1.0, abs(med)))
    return {"mu": med + 0.1 * scale * rng.standard_normal(), "sigma": scale * np.exp(0.1 * rng.standard_normal())}


def em_math(model: pm.Model, *, prior: bool) -> EMMath:
    """The EM steps, reading the data and the priors from ``model``."""
    y = data_of(model, "y_data")
    n = y.size
    ybar = y.mean()
    ss_about_mean = np.sum((y - ybar) ** 2)

    def ss(mu):
        return ss_about_mean + n * (ybar - mu) ** 2

    def loglik(p):
        s = float(p["sigma"])
        return -0.5 * n * np.log(2 * np.pi) - n * np.log(s) - ss(float(p["mu"])) / (2 * s * s)

    if not prior:
        def step(p):
            return {"mu": ybar, "sigma": np.sqrt(ss_about_mean / n)}
        log_prior = None
    else:
        m0, s0 = dist_params(model, "mu", "normal")
        _, tau = dist_params(model, "sigma", "halfnormal")

        def step(p):
            mu = float(normal_mean_map(1.0 / float(p["sigma"]) ** 2, n, n * ybar, m0, s0)[0])
            return {"mu": mu, "sigma": float(np.sqrt(halfnormal_scale_map(ss(mu), n, tau)))}

        def log_prior(p):
            return float(stats.norm.logpdf(p["mu"], m0, s0) + stats.halfnorm.logpdf(p["sigma"], scale=tau))

    def check_init(p):
        missing = {"mu", "sigma"} - set(p)
        if missing:
            raise ValueError(f"init: expected values for mu and sigma, missing {', '.join(sorted(missing))}")
        mu, sigma = np.asarray(p["mu"], dtype=float), np.asarray(p["sigma"], dtype=float)
        if mu.shape != () or sigma.shape != ():
            raise ValueError("init: expected scalars for mu and sigma")
        if not np.isfinite(mu) or not (np.isfinite(sigma) and sigma > 0):
            raise ValueError("init: expected a finite mu and a positive sigma")
        return {"mu": float(mu), "sigma": float(sigma)}

    return EMMath(init=lambda rng: init(y, rng), step=step, loglik=loglik, log_prior=log_prior,
                  check_init=check_init)


def density(params: dict, grid: np.ndarray) -> np.ndarray:
    """The fitted density on ``grid`` (for figures)."""
    return stats.norm.pdf(grid, params["mu"], params["sigma"])


SPEC = ModelSpec(
    name=NAME,
    description="y ~ Normal(mu, sigma): the classic MLE illustration (mu=5, sigma=2, n=1000)",
    build=build,
    example=example,
    simulate=lambda params, n, seed: simulate(params, n, seed),
    data_kind="vector",
    params=("mu", "sigma"),
    min_n=lambda options: 2,
    density=lambda params, grid: density(params, grid),
    swap_data=lambda model, data: swap_data(model, data),
)
