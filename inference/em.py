"""The generic expectation-maximisation driver.

The model-specific math (initialisation, one E-step plus M-step, the observed-data log-likelihood, the log prior)
lives in the model's own module and reaches this driver as an :class:`EMMath` through the model's hooks; this file
owns the loop only: restarts, the monotonicity guard, the convergence test, the bookkeeping.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .functions import functions_for
from .hooks import hooks_for
from .result import Result, warn_not_converged
from .starts import as_generator

__all__ = ["EMDecreaseError", "EMMath", "em"]


class EMDecreaseError(RuntimeError):
    """EM lowered its objective beyond round-off: the E- or M-step is wrong."""


@dataclass(frozen=True)
class EMMath:
    """Hand-derived EM steps of one model, reading data and priors from the ``pm.Model``.

    init(rng) -> params : a start computed from the data.
    step(params) -> params : one E-step followed by one M-step (the MAP M-step when built with priors).
    loglik(params) -> float : the observed-data log-likelihood, constants included.
    log_prior(params) -> float or None : the log prior density without Jacobian; present iff built with priors.
    check_init(params) -> params : validates and normalises user-supplied initial values (raises ValueError).
    to_model(params) -> dict : the model's free-variable values for ``params`` (identity when None).
    extras(params) -> dict : final-step by-products (responsibilities, imputed data, ...), optional.
    order(params) -> params : the identifiable labelling of the components, optional.
    exact : True when each step maximises the expected complete-data objective exactly, so a drop of the objective
        beyond round-off is a bug (raise). False for steps that are deliberately approximate (a covariance ridge):
        drops are then counted in ``info["drops"]`` instead.
    """

    init: Callable
    step: Callable
    loglik: Callable
    log_prior: Callable | None = None
    check_init: Callable | None = None
    to_model: Callable | None = None
    extras: Callable | None = None
    order: Callable | None = None
    exact: bool = True

    def objective(self, params) -> float:
        value = self.loglik(params)
        if self.log_prior is not None:
            value += self.log_prior(params)
        return float(value)


def em(model, *, prior: bool = False, n_init: int = 1, tol: float = 1e-10, param_tol: float = 1e-9,
       max_iter: int = 5000, seed=None, init=None, keep_path: bool = False, progress: bool = False,
       **model_options) -> Result:
    """Run the model's hand-written EM to convergence, keeping the best of ``n_init`` starts.

    Without priors EM climbs the observed-data log-likelihood and reaches the MLE; with ``prior=True`` it climbs the
    log-likelihood plus the log prior of the model's own priors (no Jacobian) and reaches the MAP, the same point as
    :func:`inference.map_estimate`.

    Parameters
    ----------
    model : pm.Model built by one of the zoo's models (``models.<name>.build``).
    prior : bool
        Use the MAP M-step and the log posterior as objective.
    n_init : int
        Number of starts drawn from the model's initialiser; every start's final objective is reported in
        ``result.info["starts"]`` and the best is returned.
    tol, param_tol : float
        Stop when one iteration raises the objective by less than ``tol * max(1, |objective|)`` and changes no
        parameter by more than ``param_tol`` relative (EM converges linearly, so a flat objective alone would stop
        it while the parameters are still moving in their sixth digit).
    max_iter : int
        Iterations per start; reaching it without meeting ``tol`` sets ``converged=False`` and warns.
    seed : int or numpy.random.Generator
    init : dict or list of dict, optional
        User starting values (constrained, keyed by variable name); replaces the data-driven starts.
    keep_path : bool
        Keep the parameters at every iteration of the best start in ``result.info["path"]``.
    progress : bool
        Print one line per start to stderr.
    **model_options
        Passed to the model's EM math (for example ``reg_covar`` for the Gaussian mixture).

    Raises
    ------
    EMDecreaseError
        When an iteration lowers the objective beyond round-off (a bug in the model's E- or M-step).
    """
    hooks = hooks_for(model)
    if hooks is None or hooks.em_math is None:
        raise TypeError("model: EM needs a model built by one of the zoo's models "
                        f"({', '.join(_em_models())}); this pm.Model was not")
    for name, value, ok in (("tol", tol, isinstance(tol, (int, float)) and tol >= 0),
                            ("param_tol", param_tol, isinstance(param_tol, (int, float)) and param_tol >= 0),
                            ("max_iter", max_iter, isinstance(max_iter, (int, np.integer)) and max_iter >= 1),
                            ("n_init", n_init, isinstance(n_init, (int, np.integer)) and n_init >= 1)):
        if isinstance(value, bool) or not ok:
            raise ValueError(f"{name}: expected a {'non-negative number' if 'tol' in name else 'positive integer'}"
                             f", got {value!r}")
    if not prior and hooks.mle_check is not None:
        hooks.mle_check()
    math: EMMath = hooks.em_math(bool(prior), **model_options)
    rng = as_generator(seed)
    if init is not None:
        inits = [init] if isinstance(init, dict) else list(init)
        if not inits or not all(isinstance(s, dict) for s in inits):
            raise ValueError("init: expected a dict of starting values keyed by variable name, or a list of them")
        starts = [math.check_init(dict(s)) if math.check_init else dict(s) for s in inits]
    else:
        starts = [math.init(rng) for _ in range(n_init)]

    fns = functions_for(model)
    method = "map_em" if prior else "em"
    t0 = time.perf_counter()
    runs = []
    for i, params in enumerate(starts):
        run = _run_one(math, params, tol, param_tol, max_iter, keep_path)
        runs.append(run)
        if progress:
            print(f"{method}: start {i + 1}/{len(starts)}: objective {run['trace'][-1]:.10g} after "
                  f"{run['n_iter']} iterations{'' if run['converged'] else ' (not converged)'}", file=sys.stderr)
    best = max(runs, key=lambda r: r["trace"][-1])
    params = best["params"]
    if math.order is not None:
        params = math.order(params)
    t_run = time.perf_counter() - t0
    compile_before = fns.compile_seconds
    model_point = math.to_model(params) if math.to_model else params
    theta = fns.to_unconstrained(model_point)
    loglik = float(fns.value("loglik")(theta))
    info = {"objective": "log density (no Jacobian)" if prior else "log-likelihood",
            "starts": [float(r["trace"][-1]) for r in runs],
            "starts_converged": [bool(r["converged"]) for r in runs],
            "loglik_trace": np.array(best["loglik_trace"]), "drops": best["drops"],
            "model_point": model_point}
    if keep_path:
        info["path"] = best["path"]
    if math.extras is not None:
        info.update(math.extras(params))
    if not best["converged"]:
        warn_not_converged(method, f"max_iter={max_iter} reached before the objective (tol={tol:g}) and the "
                                   f"parameters (param_tol={param_tol:g}) settled")
    all_params = fns.constrained(theta)  # free variables and the model's deterministics, like the other methods
    all_params.update(params)  # EM's own values of the free variables, not round-tripped through the transforms
    return Result(method=method, params=all_params, sd={}, loglik=loglik, trace=np.array(best["trace"]),
                  n_iter=best["n_iter"], converged=best["converged"],
                  time_compile=fns.compile_seconds - compile_before, time_run=t_run, info=info)


def _run_one(math: EMMath, params: dict, tol: float, param_tol: float, max_iter: int, keep_path: bool) -> dict:
    ll = math.loglik(params)
    obj = ll + (math.log_prior(params) if math.log_prior else 0.0)
    trace, ll_trace, path = [obj], [ll], [params] if keep_path else None
    converged = False
    n_iter = drops = 0
    for n_iter in range(1, max_iter + 1):
        old, params = params, math.step(params)
        ll = math.loglik(params)
        new = ll + (math.log_prior(params) if math.log_prior else 0.0)
        if not np.isfinite(new):
            raise FloatingPointError(f"EM: the objective became {new} at iteration {n_iter}")
        if new < obj - 1e-9 * max(1.0, abs(obj)) and math.exact:
            raise EMDecreaseError(f"EM lowered its objective from {obj!r} to {new!r} at iteration {n_iter}")
        trace.append(new)
        ll_trace.append(ll)
        if keep_path:
            path.append(params)
        if new < obj:
            drops += 1
        if new - obj <= tol * max(1.0, abs(new)) and _max_rel_change(old, params) <= param_tol:
            converged = True
            obj = new
            break
        obj = new
    return {"params": params, "trace": trace, "loglik_trace": ll_trace, "path": path, "n_iter": n_iter,
            "converged": converged, "drops": drops}


def _max_rel_change(old: dict, new: dict) -> float:
    worst = 0.0
    for key, value in new.items():
        a, b = np.asarray(old[key], dtype=float), np.asarray(value, dtype=float)
        if a.size:
            worst = max(worst, float(np.max(np.abs(b - a) / (np.abs(a) + 1e-12))))
    return worst


def _em_models() -> list[str]:
    try:
        import models
    except ImportError:  # pragma: no cover - the zoo's models are installed with the package
        return []
    return list(models.EM_MODELS)
