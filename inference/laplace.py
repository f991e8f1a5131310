"""The Laplace approximation as a sampling method: a Gaussian at the mode of the unconstrained density.

The unconstrained vector theta carries the density PyMC's samplers see, log p(theta | y) = ``model.logp`` *with*
the Jacobian of the value transforms. Its second-order Taylor expansion at the mode theta* gives

    q(theta) = N(theta*, (-H)^-1),    H = the Hessian of log p(theta | y) at theta*,

(Laplace 1774; Tierney & Kadane 1986). Draws of q are mapped through the value transforms to the constrained
parameters, so a positive scale gets a log-normal posterior, a simplex a logistic-normal one. That differs from
MAP's standard errors, which linearise the constrained mode of the density without the Jacobian (delta method);
here the posterior means and sds are those of the draws, and q is kept in ``info`` (``q_mean``, ``q_cov``) so
:mod:`inference.quality` can score it by importance sampling like the variational approximations.
"""

from __future__ import annotations

import time

import numpy as np

from .checks import check
from .functions import functions_for
from .optimize import minimise, nan_sd, unconstrained_cov
from .quality import self_diagnosis
from .result import Result, summarise_draws, warn_not_converged
from .starts import as_generator, starting_points

__all__ = ["laplace"]


def laplace(model, *, seed=None, draws: int = 4000, start=None, n_init: int = 1, max_iter: int = 1000,
            gtol: float = 1e-9) -> Result:
    """Laplace approximation of the posterior in the unconstrained space, summarised by ``draws`` draws.

    The mode is found with exact gradients and Newton steps in coordinates scaled to each parameter's curvature
    (:func:`inference.optimize.minimise`, as for MAP) from ``n_init`` starts (or ``start``, constrained values by
    name); it is converged when the Newton decrement there is below ``inference.optimize.DECREMENT_TOL`` nats. The
    Gaussian's covariance is the inverse of the observed information there
    (:func:`inference.optimize.observed_information`). A Hessian that is not negative definite at the mode leaves
    no Gaussian: the sds are NaN, the result is not converged, and a warning says so.
    """
    check(draws, "draws", "positive integer")
    check(max_iter, "max_iter", "positive integer")
    check(gtol, "gtol", "positive number")
    rng = as_generator(seed)
    fns = functions_for(model)
    starts = starting_points(model, start=start, n_init=n_init, seed=rng)
    compile_before = fns.compile_seconds
    vg = fns.value_and_grad("logp")
    fns.value("loglik")
    fns.constrained(fns.initial_theta)
    t_compile = fns.compile_seconds - compile_before
    t0 = time.perf_counter()
    res, trace, _ = minimise(fns, "logp", starts, max_iter=max_iter, gtol=gtol)
    mode = res.x
    cov = unconstrained_cov(fns, mode, "logp", "laplace", information=res.information, exact=res.exact_hessian)
    gnorm = float(np.max(np.abs(vg(mode)[1])))
    converged = bool(res.converged)
    info = {"objective": "log density (with Jacobian)", "message": str(res.message), "grad_max": gnorm,
            "decrement": float(res.decrement), "theta": mode}
    if cov is None:
        params = fns.constrained(mode)
        sd = nan_sd(params)
        loglik = float(fns.value("loglik")(mode))
        warn_not_converged("laplace", "no Gaussian: the Hessian at the mode is not negative definite")
        info.update(reliable=False, reliability="unreliable: no Gaussian (the Hessian at the mode is not "
                    "negative definite)", khat=float("nan"))
        return Result(method="laplace", params=params, sd=sd, loglik=loglik, trace=np.array(trace),
                      n_iter=int(res.nit), converged=False, time_compile=t_compile,
                      time_run=time.perf_counter() - t0, info=info)
    L = np.linalg.cholesky(cov)
    u = rng.standard_normal((draws, mode.size))
    theta = mode + u @ L.T
    logq = -0.5 * (np.sum(u**2, axis=1) + mode.size * np.log(2 * np.pi)) - np.sum(np.log(np.diag(L)))
    constrained = fns.constrained_many(theta)
    draws_out, params, sd = summarise_draws(model, {n: v[None] for n, v in constrained.items()}, rng)
    loglik = fns.loglik_at({n: params[n] for n in fns.free_names()})
    if not converged:
        warn_not_converged("laplace", res.why)
    info.update(q_mean=mode, q_cov=cov)
    info.update(self_diagnosis("laplace", fns, theta, logq, converged=converged, constrained=constrained))
    return Result(method="laplace", params=params, sd=sd, loglik=loglik, trace=np.array(trace),
                  n_iter=int(res.nit), converged=converged, time_compile=t_compile,
                  time_run=time.perf_counter() - t0, draws=draws_out, info=info)
