"""The one expectation-maximisation driver.

The model-specific math (a start, one E-step plus M-step, the observed-data log-likelihood, the log prior) lives in
the model's own module and reaches this driver as an :class:`~inference.base.EMMath` through the model's hooks. This
file owns the loop, in three layers:

* :func:`em_init` / :func:`em_step`: one iteration over an immutable :class:`EMState` (what is carried forward),
  returning the next state and an :class:`EMStepInfo` (per-step diagnostics), with the monotonicity guard;
* :class:`ConvergenceMonitor` (replaceable, as hmmlearn's): decides when to stop;
* :func:`run_em`: the loop over one start; :func:`em`: restarts, the best start, the :class:`~inference.Result`.

Everything that runs EM in the zoo (the estimator, segmentation, the figures of EM's iterations, the benchmarks)
goes through :func:`run_em`, so the monotonicity guard applies everywhere.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .base import EMMath, hooks_for
from .checks import check, check_model
from .result import Result, warn_not_converged
from .starts import as_generator

__all__ = ["ConvergenceMonitor", "EMDecreaseError", "EMMath", "EMRun", "EMState", "EMStepInfo", "em", "em_init",
           "em_step", "run_em"]


class EMDecreaseError(RuntimeError):
    """EM lowered its objective beyond round-off: the E- or M-step is wrong."""


class EMState(NamedTuple):
    """What one EM iteration carries to the next."""

    params: dict
    objective: float
    loglik: float
    n_iter: int = 0
    drops: int = 0


class EMStepInfo(NamedTuple):
    """Diagnostics of one step: the change of the objective and the largest relative change of a parameter."""

    change: float
    param_change: float
    dropped: bool


def em_init(math: EMMath, params: dict) -> EMState:
    """The state at ``params`` (the objective evaluated, no step taken)."""
    ll = float(math.loglik(params))
    return EMState(params=params, objective=ll + (math.log_prior(params) if math.log_prior else 0.0), loglik=ll)


def round_off(math: EMMath, objective: float, params: dict) -> float:
    """How far an exact EM step may appear to lower ``objective`` through floating-point round-off alone.

    The objective is a sum of many terms whose round-off is a few ulps of the size of those terms, not of their sum:
    counts of 1e10 give log-likelihood terms of 1e11 that cancel to a sum of far smaller size. The model states that
    size through ``math.scale`` (a number, or a function of the parameters evaluated only when a drop is seen);
    without it the objective itself is the size. The tolerance is the larger of 1e-9 of the objective and 1e-12 of
    the terms' size: a wide margin over round-off (one ulp is 1e-16), while any real error in an E- or M-step moves
    the objective by far more.
    """
    tolerance = 1e-9 * max(1.0, abs(objective))
    if math.scale is not None:
        size = float(math.scale(params) if callable(math.scale) else math.scale)
        tolerance = max(tolerance, 1e-12 * size)  # about 10^4 ulps of the terms' size
    return tolerance


def em_step(math: EMMath, state: EMState) -> tuple[EMState, EMStepInfo]:
    """One E-step plus M-step from ``state``.

    Raises :class:`EMDecreaseError` when an exact step lowers the objective beyond round-off (a bug in the model's
    math), FloatingPointError when the objective stops being finite.
    """
    params = math.step(state.params)
    ll = float(math.loglik(params))
    new = ll + (math.log_prior(params) if math.log_prior else 0.0)
    n_iter = state.n_iter + 1
    if not np.isfinite(new):
        raise FloatingPointError(f"EM: the objective became {new} at iteration {n_iter}")
    if math.exact and new < state.objective - 1e-9 * max(1.0, abs(state.objective)) \
            and new < state.objective - round_off(math, state.objective, state.params):  # scale only on a drop
        raise EMDecreaseError(f"EM lowered its objective from {state.objective!r} to {new!r} at iteration {n_iter}")
    dropped = new < state.objective
    info = EMStepInfo(change=new - state.objective, param_change=max_rel_change(state.params, params),
                      dropped=dropped)
    return EMState(params, new, ll, n_iter, state.drops + int(dropped)), info


def max_rel_change(old: dict, new: dict) -> float:
    """The largest relative change of any parameter entry between two parameter dicts."""
    worst = 0.0
    for key, value in new.items():
        a, b = np.asarray(old[key], dtype=float), np.asarray(value, dtype=float)
        if a.size:
            worst = max(worst, float(np.max(np.abs(b - a) / (np.abs(a) + 1e-12))))
    return worst


@dataclass
class ConvergenceMonitor:
    """Stops EM when one iteration raises the objective by less than ``tol * max(1, |objective|)`` *and* changes no
    parameter by more than ``param_tol`` relative (EM converges linearly, so a flat objective alone would stop it
    while the parameters still move in their sixth digit), or after ``max_iter`` iterations (not converged).

    Replace it (any object with ``converged(state, info) -> bool`` and ``max_iter``) to stop differently.
    """

    tol: float = 1e-10
    param_tol: float = 1e-9
    max_iter: int = 5000

    def __post_init__(self):
        check(self.tol, "tol", "non-negative number")
        check(self.param_tol, "param_tol", "non-negative number")
        check(self.max_iter, "max_iter", "positive integer")

    def converged(self, state: EMState, info: EMStepInfo) -> bool:
        return info.change <= self.tol * max(1.0, abs(state.objective)) and info.param_change <= self.param_tol

    def describe(self) -> str:
        return (f"max_iter={self.max_iter} reached before the objective (tol={self.tol:g}) and the parameters "
                f"(param_tol={self.param_tol:g}) settled")


@dataclass(frozen=True)
class EMRun:
    """One start run to the end: the final state, the objective and log-likelihood per iteration (start included),
    whether the monitor was satisfied, and the parameters of every iteration when kept."""

    state: EMState
    trace: np.ndarray
    loglik_trace: np.ndarray
    converged: bool
    path: list | None = None

    @property
    def params(self) -> dict:
        return self.state.params


def run_em(math: EMMath, params: dict, monitor=None, *, keep_path: bool = False, callback=None) -> EMRun:
    """Iterate EM from ``params`` until ``monitor`` (default :class:`ConvergenceMonitor`) says stop.

    ``callback(state, info)`` is called after every step (progress bars, figures).
    """
    monitor = ConvergenceMonitor() if monitor is None else monitor
    state = em_init(math, params)
    trace, ll_trace = [state.objective], [state.loglik]
    path = [params] if keep_path else None
    converged = False
    while state.n_iter < monitor.max_iter:
        state, info = em_step(math, state)
        trace.append(state.objective)
        ll_trace.append(state.loglik)
        if keep_path:
            path.append(state.params)
        if callback is not None:
            callback(state, info)
        if monitor.converged(state, info):
            converged = True
            break
    return EMRun(state, np.array(trace), np.array(ll_trace), converged, path)


def em(model, *, prior: bool = False, n_init: int = 1, tol: float = 1e-10, param_tol: float = 1e-9,
       max_iter: int = 5000, seed=None, init=None, keep_path: bool = False, progress: bool = False,
       monitor=None, callback=None, standard_errors: bool = True, **em_options) -> Result:
    """Run the model's hand-written EM to convergence, keeping the best of ``n_init`` starts.

    Without priors EM climbs the observed-data log-likelihood and reaches the MLE; with ``prior=True`` it climbs the
    log-likelihood plus the log prior of the model's own priors (no Jacobian) and reaches the MAP, the same point as
    :func:`inference.map_estimate`.

    Parameters
    ----------
    model : pm.Model whose hooks supply EM math (every model of the registry, or one with
        ``inference.attach(model, ModelHooks(..., em_math=...))``).
    prior : bool
        Use the MAP M-step and the log posterior as objective.
    n_init : int
        Number of starts drawn from the model's initialiser; every start's final objective is reported in
        ``result.info["starts"]`` and the best is returned.
    tol, param_tol, max_iter : the default :class:`ConvergenceMonitor`'s settings; reaching ``max_iter`` sets
        ``converged=False`` and warns.
    seed : int or numpy.random.Generator
    init : dict or list of dict, optional
        User starting values (constrained, keyed by variable name); replaces the data-driven starts.
    keep_path : bool
        Keep the parameters at every iteration of the best start in ``result.info["path"]``.
    progress : bool
        Print one line per start to stderr.
    monitor : a replacement for the default :class:`ConvergenceMonitor`.
    callback : ``callback(state, info)`` after every iteration of every start (progress displays).
    standard_errors : bool
        False skips them (``result.sd`` NaN): for a point that is not the mode of the model's own density, such as
        the missing-data model's joint MAP, where the observed information says nothing, and where a Hessian of a
        large model's gradient graph would take seconds to build.
    **em_options
        Passed to the model's EM math (for example ``reg_covar`` for the Gaussian mixture).

    Standard errors
    ---------------
    EM gives the point only; its standard errors are those of the observed information at that point, computed as
    for :func:`inference.mle` and :func:`inference.map_estimate`: the negative Hessian of the model's own PyMC
    log-likelihood (with ``prior=True``: of the log density without Jacobian) at EM's estimate, inverted and carried
    to the constrained parameters by the delta method. Louis (1982, JRSS B 44:226) obtains the same matrix inside
    EM by the missing-information principle (observed information = complete-data information minus missing
    information); at the same point the two agree, so EM's and the optimiser's standard errors are equal up to the
    distance between their points. A Hessian that is not negative definite gives NaN and a warning.

    Raises
    ------
    EMDecreaseError
        When an iteration lowers the objective beyond round-off (a bug in the model's E- or M-step).
    """
    check_model(model)
    check(prior, "prior", "boolean")
    hooks = hooks_for(model)
    if hooks is None or hooks.em_math is None:
        raise TypeError("model: EM needs hand-derived EM math attached to the pm.Model (build it with a registered "
                        "model's build(), or attach ModelHooks(em_math=...) with inference.attach); this one has "
                        "none")
    check(n_init, "n_init", "positive integer")
    check(standard_errors, "standard_errors", "boolean")
    monitor = ConvergenceMonitor(tol, param_tol, max_iter) if monitor is None else monitor
    if not prior and hooks.mle_check is not None:
        hooks.mle_check()
    _check_em_options(hooks, em_options)
    math: EMMath = hooks.em_math(bool(prior), **em_options)
    rng = as_generator(seed)
    if init is not None:
        inits = [init] if isinstance(init, dict) else list(init)
        if not inits or not all(isinstance(s, dict) for s in inits):
            raise ValueError("init: expected a dict of starting values keyed by variable name, or a list of them")
        starts = [math.check_init(dict(s)) if math.check_init else dict(s) for s in inits]
    else:
        starts = [math.init(rng) for _ in range(n_init)]

    from .functions import functions_for
    from .optimize import laplace_sd, nan_sd

    fns = functions_for(model)
    method = "map_em" if prior else "em"
    t0 = time.perf_counter()
    runs = []
    for i, params in enumerate(starts):
        run = run_em(math, params, monitor, keep_path=keep_path, callback=callback)
        runs.append(run)
        if progress:
            print(f"{method}: start {i + 1}/{len(starts)}: objective {run.trace[-1]:.10g} after "
                  f"{run.state.n_iter} iterations{'' if run.converged else ' (not converged)'}", file=sys.stderr)
    best = max(runs, key=lambda r: r.trace[-1])
    params = math.order(best.params) if math.order is not None else best.params
    t_run = time.perf_counter() - t0
    compile_before = fns.compile_seconds
    model_point = math.to_model(params) if math.to_model else params
    theta = fns.to_unconstrained(model_point)
    loglik = float(fns.value("loglik")(theta))
    t0 = time.perf_counter()
    before = fns.compile_seconds
    if standard_errors:
        sd = laplace_sd(fns, theta, "logpost" if prior else "loglik", method)
    else:
        sd = nan_sd(fns.constrained(theta))
    t_run += time.perf_counter() - t0 - (fns.compile_seconds - before)
    info = {"objective": "log density (no Jacobian)" if prior else "log-likelihood",
            "starts": [float(r.trace[-1]) for r in runs], "starts_converged": [bool(r.converged) for r in runs],
            "loglik_trace": best.loglik_trace, "drops": best.state.drops, "model_point": model_point,
            "theta": theta}
    if keep_path:
        info["path"] = best.path
    if math.extras is not None:
        info.update(math.extras(params))
    if not best.converged:
        describe = getattr(monitor, "describe", None)
        warn_not_converged(method, describe() if describe else "the convergence monitor was not satisfied")
    all_params = fns.constrained(theta)  # free variables and the model's deterministics, like the other methods
    all_params.update(params)  # EM's own values of the free variables, not round-tripped through the transforms
    return Result(method=method, params=all_params, sd=sd, loglik=loglik, trace=best.trace,
                  n_iter=best.state.n_iter, converged=best.converged,
                  time_compile=fns.compile_seconds - compile_before, time_run=t_run, info=info)


def _check_em_options(hooks, options: dict) -> None:
    """Name an option the model's EM does not take, instead of a TypeError from deep inside the model."""
    import inspect

    params = inspect.signature(hooks.em_math).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = {p.name for p in params} - {"prior"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        takes = f"takes {', '.join(sorted(accepted))}" if accepted else "takes no options"
        raise TypeError(f"{unknown[0]}: the {hooks.name} model's EM {takes}")
