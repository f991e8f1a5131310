"""Maximum likelihood and MAP by optimisation on a ``pm.Model``, with Laplace / observed-information errors."""

from __future__ import annotations

import time
import warnings

import numpy as np
from scipy import optimize

from .base import hooks_for
from .checks import check, check_model
from .functions import functions_for
from .result import Result, warn_not_converged
from .starts import starting_points

__all__ = ["laplace_sd", "map_estimate", "mle", "nan_sd"]


def mle(model, *, start=None, n_init: int = 1, seed=None, max_iter: int = 1000, gtol: float = 1e-9) -> Result:
    """Maximum likelihood: maximise the observed-data log-likelihood only.

    The objective is ``model.logp(vars=model.observed_RVs, jacobian=False)``: the priors are ignored entirely. It is
    maximised over the unconstrained value variables with exact PyTensor gradients and Newton steps (scipy's
    ``trust-exact``, see :func:`minimise`), so the optimum is reached to machine precision. Standard
    errors come from the observed information (the negative Hessian) at the optimum, carried to the constrained
    parameters by the delta method (exact at a stationary point).

    Parameters
    ----------
    model : pm.Model
    start : dict or list of dict, optional
        Constrained starting values keyed by free-variable name. Default: the model's own initialiser for zoo models
        (the same one EM uses), else ``model.initial_point()``.
    n_init : int
        Number of starts when ``start`` is not given; the best final log-likelihood wins.
    seed : int or numpy.random.Generator, optional
    """
    return _optimise(model, "loglik", "mle", start=start, n_init=n_init, seed=seed, max_iter=max_iter, gtol=gtol)


def map_estimate(model, *, start=None, n_init: int = 1, seed=None, max_iter: int = 1000,
                 gtol: float = 1e-9) -> Result:
    """Maximum a posteriori: maximise the full log density *without* the Jacobian of the value transforms.

    Dropping the Jacobian makes the answer the mode of the posterior in the constrained space (the one a reader
    of the model expects, and the one MAP-EM reaches), not the mode of the transformed density. Laplace standard
    errors come from the Hessian of that log density at the mode. Arguments as for :func:`mle`.
    """
    return _optimise(model, "logpost", "map", start=start, n_init=n_init, seed=seed, max_iter=max_iter, gtol=gtol)


def _optimise(model, kind, method, *, start, n_init, seed, max_iter, gtol) -> Result:
    check_model(model)
    check(max_iter, "max_iter", "positive integer")
    check(gtol, "gtol", "positive number")
    hooks = hooks_for(model)
    if method == "mle" and hooks is not None and hooks.mle_check is not None:
        hooks.mle_check()
    fns = functions_for(model)
    starts = starting_points(model, start=start, n_init=n_init, seed=seed)
    compile_before = fns.compile_seconds
    vg = fns.value_and_grad(kind)  # compiled (and its first call made) once per model and objective
    compile_seconds = fns.compile_seconds - compile_before
    t0 = time.perf_counter()
    res, trace, runs = minimise(fns, kind, starts, max_iter=max_iter, gtol=gtol)
    t_run = time.perf_counter() - t0
    theta = res.x
    before = fns.compile_seconds
    t0 = time.perf_counter()
    params = fns.constrained(theta)
    sd = laplace_sd(fns, theta, kind, method)
    loglik = float(fns.value("loglik")(theta))
    gnorm = float(np.max(np.abs(vg(theta)[1]))) if theta.size else 0.0
    compile_seconds += fns.compile_seconds - before
    t_run += time.perf_counter() - t0 - (fns.compile_seconds - before)
    converged = bool(np.isfinite(res.fun) and (res.success or gnorm < 1e-6 * max(1.0, abs(res.fun))))
    info = {"objective": "log-likelihood" if kind == "loglik" else "log density (no Jacobian)",
            "starts": [-float(r.fun) for r in runs], "message": str(res.message), "grad_max": gnorm,
            "theta": theta}
    if not converged:
        warn_not_converged(method, f"{res.message} (max |gradient| {gnorm:.3g})")
    return Result(method=method, params=params, sd=sd, loglik=loglik, trace=np.array(trace),
                    n_iter=int(res.nit), converged=converged,
                    time_compile=compile_seconds, time_run=t_run, info=info)


def minimise(fns, kind: str, starts, *, max_iter: int = 1000, gtol: float = 1e-9):
    """Maximise the objective ``kind`` from every start with scipy's trust-exact (exact gradient, Newton steps).

    The steps' Hessian is the forward difference of the exact gradient from the point the optimiser has just
    evaluated (:func:`step_hessian`): one gradient call per parameter, where the standard errors' Hessian
    (``fns.hessian``, O(h^4)) takes four. Its error, about 1e-8 relative, slows no Newton step measurably; the
    optimum is where the exact gradient vanishes, so it is the same point. Returns the best scipy result, its
    objective trace (start included) and every start's scipy result.
    """
    vg = fns.value_and_grad(kind)
    runs = []
    for theta0 in starts:
        trace = []
        last = {}

        def fun(theta):
            v, g = vg(theta)
            g = -np.asarray(g, dtype=float)
            last["theta"], last["grad"] = np.array(theta, dtype=float), g
            return -float(v), g

        def hess(theta):
            theta = np.asarray(theta, dtype=float)
            g0 = last["grad"] if "theta" in last and np.array_equal(last["theta"], theta) else fun(theta)[1]
            return step_hessian(lambda th: -np.asarray(vg(th)[1], dtype=float), theta, g0)

        def callback(intermediate_result):
            trace.append(-float(intermediate_result.fun))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = optimize.minimize(fun, theta0, jac=True, hess=hess, method="trust-exact", callback=callback,
                                    options={"maxiter": max_iter, "gtol": gtol})
        runs.append((res, [-float(fun(theta0)[0])] + trace))
    finite = [(r, t) for r, t in runs if np.isfinite(r.fun)]
    if not finite:
        raise RuntimeError(f"{kind}: the objective is not finite at any start")
    res, trace = min(finite, key=lambda rt: rt[0].fun)
    return res, trace, [r for r, _ in runs]


def step_hessian(gradient, theta, g0) -> np.ndarray:
    """Hessian at ``theta`` by forward differences of ``gradient`` (whose value there is ``g0``), symmetrised:
    column i is (gradient(theta + h_i e_i) - g0) / h_i with h_i = sqrt(eps) max(1, |theta_i|), rounded so that
    theta_i + h_i is exact."""
    theta = np.array(theta, dtype=float)
    n = theta.size
    H = np.empty((n, n))
    for i in range(n):
        t = theta[i]
        theta[i] = t + np.sqrt(np.finfo(float).eps) * max(1.0, abs(t))
        h = theta[i] - t
        H[:, i] = (gradient(theta) - g0) / h
        theta[i] = t
    return 0.5 * (H + H.T)


SINGULAR_RTOL = 1e-8


def unconstrained_cov(fns, theta, kind: str, method: str, hess=None):
    """(-H)^-1 of the objective ``kind`` at ``theta``, or None (with a warning) when -H is not positive definite.
    ``hess``: the Hessian function to use (default ``fns.hessian(kind)``)."""
    H = -np.asarray((fns.hessian(kind) if hess is None else hess)(theta), dtype=float)
    if not np.all(np.isfinite(H)):
        warnings.warn(f"{method}: the Hessian is not finite at the optimum; standard errors are NaN",
                      RuntimeWarning, stacklevel=3)
        return None
    H = 0.5 * (H + H.T)
    try:
        # The difference Hessian is accurate to about 1e-9 relative: scaled to a unit diagonal (so that a badly
        # scaled but regular information passes), a smaller eigenvalue is zero in truth.
        d = np.diag(H)
        if np.any(d <= 0):
            raise np.linalg.LinAlgError
        s = 1.0 / np.sqrt(d)
        if len(H) and np.linalg.eigvalsh(H * s[:, None] * s[None, :])[0] <= SINGULAR_RTOL:
            raise np.linalg.LinAlgError
        L = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        warnings.warn(f"{method}: the Hessian at the optimum is not negative definite (singular information); "
                      "standard errors are NaN", RuntimeWarning, stacklevel=3)
        return None
    Linv = np.linalg.solve(L, np.eye(len(H)))
    return Linv.T @ Linv


def nan_sd(params: dict) -> dict:
    """NaN standard errors shaped like ``params`` (no information, or none computed)."""
    return {n: np.full(np.shape(v), np.nan) for n, v in params.items()}


def laplace_sd(fns, theta, kind: str, method: str) -> dict:
    """Standard errors of the constrained parameters from the Hessian of ``kind`` at ``theta``.

    cov(theta) = (-H)^-1 in the unconstrained space, then J cov J^T for the constrained parameters (delta method).
    A Hessian that is not negative definite gives NaN standard errors and a warning.
    """
    names = fns.param_names
    params = fns.constrained(theta)
    cov_u = unconstrained_cov(fns, theta, kind, method)
    if cov_u is None:
        return nan_sd(params)
    J = fns.constrained_jacobian(theta)
    var = np.einsum("ij,jk,ik->i", J, cov_u, J)
    out, pos = {}, 0
    for n in names:
        shape = np.shape(params[n])
        size = int(np.prod(shape, dtype=int))
        out[n] = np.sqrt(np.clip(var[pos:pos + size], 0.0, None)).reshape(shape)
        pos += size
    return out
