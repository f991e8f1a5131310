"""Prior sensitivity: power-scaling diagnostics from one fit, and refits across a prior hyperparameter.

Power scaling (Kallioinen, Paananen, Bürkner & Vehtari 2024, "Detecting and diagnosing prior and likelihood
sensitivity with power-scaling", Stat Comput 34, 57). Raise the prior to a power alpha near 1,
p_alpha(theta | y) ∝ p(theta)^alpha p(y | theta), and measure how fast each marginal moves: the derivative at
alpha = 1 of its cumulative Jensen-Shannon distance from the unscaled posterior, estimated from the existing draws
by Pareto-smoothed importance weights p(theta)^(alpha - 1) (no refit). The same with the likelihood. A prior
sensitivity of 0.05 or more says the prior matters; with a likelihood sensitivity also at 0.05 or more the two
disagree (prior-data conflict); with a likelihood sensitivity below it the data say little (strong prior or weak
likelihood). The computation is arviz-stats' ``psense`` / ``psense_summary``; this module builds what they read:
the draws, the log prior of each draw (the density of the constrained parameters, ``model.logp(vars=free_RVs,
jacobian=False)``), and the pointwise log-likelihood of each draw, all from the model's own compiled graphs.

The prior sweep refits the model across values of one prior hyperparameter, to see what a change of prior does
to each estimator (including the ones that power scaling cannot assess: MAP, MAP-EM), with the MLE, which ignores
the prior, as the reference.
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np
import pandas as pd

from .base import hooks_for
from .compare import compare, parse_estimators
from .functions import functions_for
from .result import Result, flat_labels

__all__ = ["SWEEP_FACTORS", "default_sweep", "posterior_tree", "power_scaling", "prior_sweep"]

SWEEP_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)


def posterior_tree(result: Result, model):
    """An ArviZ DataTree with the ``posterior`` (the result's draws of the model's free variables and
    deterministics), ``log_prior`` (one variable ``prior``: the log prior density of each draw) and
    ``log_likelihood`` (the elementwise log-likelihood of each observed variable at each draw) groups."""
    from arviz_base import from_dict

    if result.draws is None:
        raise ValueError(f"result: the {result.method} result has no draws (power scaling needs a posterior sample)")
    fns = functions_for(model)
    free = fns.free_names()
    missing = [n for n in free if n not in result.draws]
    if missing:
        raise ValueError(f"result: no draws of {', '.join(missing)}")
    shape = np.shape(result.draws[free[0]])[:2]
    fn = fns.log_prior_and_pointwise()
    prior = np.empty(shape)
    pointwise = [None] * len(model.observed_RVs)
    thetas = fns.to_unconstrained_many({n: np.reshape(result.draws[n], (-1,) + np.shape(result.draws[n])[2:])
                                        for n in free}).reshape(shape + (-1,))
    for c, d in np.ndindex(*shape):
        out = fn(thetas[c, d])
        prior[c, d] = out[0]
        for j, values in enumerate(out[1:]):
            if pointwise[j] is None:
                pointwise[j] = np.empty(shape + np.shape(values))
            pointwise[j][c, d] = values
    posterior = {n: np.asarray(result.draws[n]) for n in fns.param_names if n in result.draws}
    # an observed variable with no values (a missingness pattern the data do not have) holds nothing to scale
    log_lik = {rv.name: values for rv, values in zip(model.observed_RVs, pointwise) if values.size}
    return from_dict({"posterior": posterior, "log_prior": {"prior": prior}, "log_likelihood": log_lik})


def power_scaling(result: Result, model, *, threshold: float = 0.05, var_names=None) -> pd.DataFrame:
    """Per parameter: the prior and likelihood power-scaling sensitivities and the diagnosis.

    A DataFrame indexed by parameter (``beta[0]``, ...) with columns ``prior``, ``likelihood`` and ``diagnosis``:
    "potential prior-data conflict", "potential strong prior / weak likelihood", or "✓" (arviz-stats'
    ``psense_summary`` with ``threshold``). ``var_names``: the variables to assess (default: the model's public
    ones, else every free variable and deterministic).
    """
    from arviz_stats import psense_summary

    from .checks import check

    check(threshold, "threshold", "positive number")
    tree = posterior_tree(result, model)
    if var_names is None:
        hooks = hooks_for(model)
        var_names = hooks.public if hooks is not None and hooks.public else None
    names = [n for n in (var_names or list(tree["posterior"].data_vars)) if n in tree["posterior"].data_vars]
    return psense_summary(tree, var_names=names, threshold=threshold)


def default_sweep(build) -> tuple[str, list] | None:
    """A hyperparameter of ``build`` to sweep and its values, or None when it has none with a default.

    The first keyword argument named ``*_prior`` with a number as default (a scale or a concentration), else the
    first with a pair as default (the pair's second entry, a scale or a rate, is varied), taken at
    ``SWEEP_FACTORS`` times its default.
    """
    params = [p for p in inspect.signature(build).parameters.values() if p.name.endswith("_prior")]
    for p in params:
        if isinstance(p.default, numbers.Real) and not isinstance(p.default, bool) and p.default > 0:
            return p.name, [float(p.default) * f for f in SWEEP_FACTORS]
    for p in params:
        if isinstance(p.default, tuple) and len(p.default) == 2 and p.default[1] > 0:
            return p.name, [(p.default[0], float(p.default[1]) * f) for f in SWEEP_FACTORS]
    return None


def _scale(value) -> float:
    if isinstance(value, (tuple, list)) and value:
        return float(value[-1])
    return float(value)


def prior_sweep(build, data, prior: str = "sigma_prior", values=(0.5, 1.0, 2.0, 5.0, 10.0),
                estimators=("map", "map_em", "advi", "nuts"), seed=0, **build_kwargs) -> pd.DataFrame:
    """Refit ``build(*data, prior=value, **build_kwargs)`` for each value of one prior hyperparameter.

    Parameters
    ----------
    build : a model's ``build`` function (``models.normal.build``, ...).
    data : its positional data argument, or a tuple of them (``(X, y)`` for the logistic regression).
    prior : the name of the hyperparameter argument of ``build``.
    values : the values to try; a pair such as ``(mean, sd)`` is one value.
    estimators : the estimators to refit for each value (default: MAP, MAP-EM, ADVI and NUTS).
    seed : the seed of every comparison (the same for each value, so the differences are the prior's).

    Returns a tidy DataFrame with columns value (as given), scale (the value, or a pair's second entry, as a
    number for plots), estimator, parameter, estimate and sd: one row per value, estimator and scalar parameter,
    plus the MLE (fitted once: it ignores the prior) repeated for every value as the reference. An estimator that
    fails on one value (the MLE where it does not exist) is left out of those rows with a warning.
    """
    if not callable(build):
        raise ValueError(f"build: expected a model's build function, got {type(build).__name__}")
    sig = inspect.signature(build)
    if not isinstance(prior, str) or prior not in sig.parameters:
        raise ValueError(f"prior: expected the name of an argument of {getattr(build, '__name__', 'build')}, "
                         f"got {prior!r}")
    values = list(values) if isinstance(values, (list, tuple, np.ndarray)) else None
    if not values:
        raise ValueError("values: expected a non-empty list of hyperparameter values")
    names = parse_estimators(estimators)
    args = data if isinstance(data, tuple) else (data,)
    reference = compare(build(*args, **build_kwargs), ["mle"], seed=seed).results.get("mle")
    rows = []
    for value in values:
        model = build(*args, **{**build_kwargs, prior: value})
        comp = compare(model, names, seed=seed)
        fitted = [("mle", reference)] if reference is not None else []
        for est, res in fitted + [(n, comp.results[n]) for n in names if n in comp.results]:
            shown = comp.public if comp.public else list(res.params)
            for name in shown:
                if name not in res.params:
                    continue
                for label, idx in flat_labels(name, res.params[name].shape):
                    rows.append({"value": value, "scale": _scale(value), "estimator": est, "parameter": label,
                                 "estimate": float(res.params[name][idx]), "sd": float(res.sd[name][idx])})
    return pd.DataFrame(rows, columns=["value", "scale", "estimator", "parameter", "estimate", "sd"])
