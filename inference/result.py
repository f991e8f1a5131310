"""The one result type every estimator returns."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ConvergenceWarning", "Result", "UnreliableWarning"]


class ConvergenceWarning(UserWarning):
    """An estimator stopped before its convergence criterion was met (the result's ``converged`` is False)."""


class UnreliableWarning(UserWarning):
    """An approximation judged itself unreliable (``info["reliable"]`` is False): its own Pareto k-hat is above
    the threshold, or its draws or estimates are not finite, although its optimiser may have converged."""


@dataclass(frozen=True)
class Result:
    """What an estimator found, in the same shape for every method.

    Attributes
    ----------
    method : str
        ``"mle"``, ``"map"``, ``"em"``, ``"map_em"``, ``"advi"``, ``"fullrank_advi"``, ``"nuts"``, ``"laplace"`` or
        ``"pathfinder"``.
    params : dict[str, ndarray]
        Point estimates keyed by the PyMC variable names, in the constrained space (free variables and
        deterministics). Posterior means for ADVI and NUTS.
    sd : dict[str, ndarray]
        Their uncertainty, same keys and shapes: Laplace / observed-information standard errors for MLE and MAP,
        posterior standard deviations for VI and NUTS (observed information at EM's point for EM).
    loglik : float
        The observed-data log-likelihood at ``params``, evaluated by the model's own PyMC graph.
    trace : ndarray
        The objective per iteration: log-likelihood (MLE, EM), log density (MAP, MAP-EM), ELBO (VI);
        empty for NUTS.
    n_iter : int
        Iterations (optimiser iterations, EM steps, VI steps, NUTS draws per chain).
    converged : bool
        Whether the method's own convergence criterion was met (R-hat < 1.01 and ESS > 400 for NUTS).
    time_compile, time_run : float
        Seconds spent compiling graphs and running the algorithm, kept apart.
    draws : dict[str, ndarray] or None
        Draws with leading (chain, draw) dimensions, for the methods that have them.
    info : dict
        Method-specific extras (every EM start's final value, R-hat and ESS, the objective's name, ...).
    """

    method: str
    params: dict
    sd: dict
    loglik: float
    trace: np.ndarray = field(default_factory=lambda: np.empty(0))
    n_iter: int = 0
    converged: bool = True
    time_compile: float = 0.0
    time_run: float = 0.0
    draws: dict | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "params", {k: np.asarray(v, dtype=float) for k, v in self.params.items()})
        sd = {k: np.asarray(self.sd.get(k, np.full(np.shape(v), np.nan)), dtype=float)
              for k, v in self.params.items()}
        object.__setattr__(self, "sd", sd)
        object.__setattr__(self, "trace", np.asarray(self.trace, dtype=float))

    def to_arviz(self):
        """An ArviZ ``DataTree``: the draws as the posterior, or the point estimate as a single draw.

        Point-estimate methods carry ``attrs["point_estimate"] = True`` and their standard errors in a ``sd`` group,
        so they can be told apart from samples.
        """
        import arviz as az

        attrs = {"method": self.method, "converged": int(self.converged), "loglik": self.loglik,
                 "n_iter": self.n_iter, "time_compile": self.time_compile, "time_run": self.time_run}
        if self.draws is not None:
            data = {"posterior": {k: np.asarray(v) for k, v in self.draws.items()}}
            attrs["point_estimate"] = 0
        else:
            data = {"posterior": {k: np.asarray(v)[None, None, ...] for k, v in self.params.items()},
                    "sd": {k: np.asarray(v)[None, None, ...] for k, v in self.sd.items()}}
            attrs["point_estimate"] = 1
        return az.from_dict(data, attrs={group: dict(attrs) for group in data})

    def flat(self) -> list[tuple[str, float, float]]:
        """(label, estimate, sd) for every scalar entry, labels like ``lam[1]`` or ``cov[0,1]``."""
        rows = []
        for name, value in self.params.items():
            for label, idx in flat_labels(name, value.shape):
                rows.append((label, float(value[idx]), float(self.sd[name][idx])))
        return rows


def summarise_draws(model, draws: dict, rng) -> tuple[dict, dict, dict]:
    """(draws, means, sds) of a sampling method, with the draws of what the model integrates out added through its
    hooks' ``latent_draws`` (imputed entries, states) so that they are summarised like the parameters."""
    from .base import hooks_for

    hooks = hooks_for(model)
    if hooks is not None and hooks.latent_draws is not None:
        draws = {**draws, **hooks.latent_draws(draws, rng)}
    means = {n: d.mean(axis=(0, 1)) for n, d in draws.items()}
    sds = {n: d.std(axis=(0, 1), ddof=1) for n, d in draws.items()}
    return draws, means, sds


def flat_labels(name: str, shape: tuple):
    """Labels and indices of every scalar entry of an array named ``name``."""
    if shape == ():
        return [(name, ())]
    return [(f"{name}[{','.join(map(str, idx))}]", idx) for idx in np.ndindex(*shape)]


# Warnings are attributed to the first caller outside this package (the user's line), however deep they are raised.
_PACKAGE_DIR = (os.path.dirname(os.path.abspath(__file__)) + os.sep,)


def warn(message: str, category) -> None:
    """``warnings.warn`` attributed to the caller's own code, outside the package."""
    warnings.warn(message, category, skip_file_prefixes=_PACKAGE_DIR)


def warn_not_converged(method: str, detail: str) -> None:
    warn(f"{method}: did not converge: {detail}", ConvergenceWarning)
