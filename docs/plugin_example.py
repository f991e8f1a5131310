"""A model from outside the zoo: an exponential sample with a Gamma prior on its rate, and its EM math.

Put this file in a package of your own and declare in its ``pyproject.toml``::

    [project.entry-points."estimator_zoo.models"]
    exponential = "my_package.exponential:SPEC"

After ``pip install`` of that package, ``zoo list`` shows ``exponential`` and ``zoo compare exponential`` runs every
estimator on it, EM included. (Nothing is latent here, so one EM step is the closed-form maximiser; a real model
fills in its latent variables in ``step``.)
"""

import numpy as np
import pymc as pm
from scipy.special import gammaln

from inference import EMMath, Example, ModelHooks, ModelSpec, attach

NAME = "exponential"
TRUTH = {"lam": 0.5}


def build(y, *, lam_prior=(2.0, 1.0)):
    """y_i ~ Exponential(lam), lam ~ Gamma(alpha, beta) (shape, rate)."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or y.size < 1 or not np.all(np.isfinite(y)) or np.any(y < 0):
        raise ValueError("y: expected a 1-D array of non-negative finite numbers")
    alpha, beta = lam_prior
    with pm.Model() as model:
        y_data = pm.Data("y_data", y)
        lam = pm.Gamma("lam", alpha, beta)
        pm.Exponential("y", lam, observed=y_data, shape=y_data.shape)

    def em_math(prior):
        n, s = y.size, float(y.sum())

        def loglik(p):
            return n * np.log(p["lam"]) - p["lam"] * s

        def log_prior(p):  # the Gamma(alpha, beta) log density, no Jacobian: EM with it reaches the MAP
            return (alpha - 1) * np.log(p["lam"]) - beta * p["lam"] + alpha * np.log(beta) - gammaln(alpha)

        def step(p):
            return {"lam": (n + alpha - 1) / (s + beta) if prior else n / s}

        return EMMath(init=lambda rng: {"lam": 1.0 / max(np.median(y), 1e-12)}, step=step, loglik=loglik,
                      log_prior=log_prior if prior else None)

    return attach(model, ModelHooks(NAME, {"lam_prior": tuple(lam_prior)}, em_math=em_math))


def simulate(params, n, seed):
    return np.random.default_rng(seed).exponential(1.0 / params["lam"], size=n)


def example(seed=0):
    return Example(simulate(TRUTH, 500, seed), truth=dict(TRUTH))


SPEC = ModelSpec(name=NAME, description="y ~ Exponential(lam), a model from another package", build=build,
                 example=example, simulate=simulate, data_kind="vector", params=("lam",))
