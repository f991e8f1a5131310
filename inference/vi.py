"""Variational inference with PyMC: mean-field and full-rank ADVI, stopped by a convergence test.

PyMC's defaults (adagrad_window, a fixed number of steps) often stop far from the optimum. Here the optimiser is Adam
and the run stops when the ELBO has stopped improving: the mean loss over the last window of steps is compared with the
window before it, and the run ends when the improvement is within two standard errors of zero (stochastic noise).
The variational parameters are then replaced by their average over the last window (Polyak-Ruppert averaging), which
removes most of the jitter a constant step size leaves behind.

The approximation starts at the Laplace approximation of the unconstrained density (its mode, found with exact
Hessians, and the inverse negative Hessian there as covariance; the diagonal of it for mean-field). The stochastic
optimisation then only has to move from a good Gaussian to the best one, instead of from N(0, I), which on mixtures
diverged or took tens of thousands of steps. ``init="default"`` keeps PyMC's own start.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

import numpy as np
import pymc as pm
from pymc.variational.callbacks import Callback

from .checks import check, check_model
from .functions import functions_for
from .optimize import minimise, unconstrained_cov
from .result import Result, summarise_draws, warn_not_converged
from .starts import as_generator, starting_points

__all__ = ["advi", "fullrank_advi"]


class ELBOConvergence(Callback):
    """Stop when the windowed mean loss no longer decreases beyond its noise; average parameters per window."""

    def __init__(self, window: int = 1000, min_windows: int = 3):
        self.window = window
        self.min_windows = min_windows
        self.converged = False
        self.first_call = None
        self.average = None
        self._sum = None
        self._count = 0

    def __call__(self, approx, hist, i) -> None:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        values = [p.get_value(borrow=False) for p in approx.params]
        if self._sum is None:
            self._sum = [np.zeros_like(v) for v in values]
        for s, v in zip(self._sum, values):
            s += v
        self._count += 1
        if (i + 1) % self.window:
            return
        self.average = [s / self._count for s in self._sum]
        self._sum = [np.zeros_like(v) for v in values]
        self._count = 0
        if (i + 1) < self.min_windows * self.window:
            return
        w = self.window
        prev, last = np.asarray(hist[-2 * w:-w]), np.asarray(hist[-w:])
        if not (np.all(np.isfinite(prev)) and np.all(np.isfinite(last))):
            return
        improvement = prev.mean() - last.mean()
        noise = np.sqrt(prev.var() / w + last.var() / w)
        if improvement < 2.0 * noise:
            self.converged = True
            raise StopIteration(f"ELBO converged at step {i + 1}")


def advi(model, *, seed=None, max_iter: int = 100_000, learning_rate: float = 0.01, window: int = 500,
         draws: int = 4000, init: str = "laplace", progress: bool = False) -> Result:
    """Mean-field ADVI: a Gaussian with diagonal covariance in the unconstrained space.

    Posterior means and standard deviations of every parameter in the constrained space come from ``draws`` draws of
    the fitted approximation. ``trace`` holds the ELBO per step (minus PyMC's loss).
    """
    return _fit(model, "advi", seed=seed, max_iter=max_iter, learning_rate=learning_rate, window=window,
                draws=draws, init=init, progress=progress)


def fullrank_advi(model, *, seed=None, max_iter: int = 100_000, learning_rate: float = 0.01, window: int = 500,
                  draws: int = 4000, init: str = "laplace", progress: bool = False) -> Result:
    """Full-rank ADVI: a Gaussian with dense covariance in the unconstrained space. Arguments as for :func:`advi`."""
    return _fit(model, "fullrank_advi", seed=seed, max_iter=max_iter, learning_rate=learning_rate,
                window=window, draws=draws, init=init, progress=progress)


def _fit(model, method, *, seed, max_iter, learning_rate, window, draws, init, progress) -> Result:
    check_model(model)
    for name, value in (("max_iter", max_iter), ("window", window), ("draws", draws)):
        check(value, name, "positive integer")
    check(learning_rate, "learning_rate", "positive number")
    if init not in ("laplace", "default"):
        raise ValueError(f"init: expected 'laplace' or 'default', got {init!r}")
    rng = as_generator(seed)
    fit_seed, draw_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
    stop = ELBOConvergence(window=window)
    fns = functions_for(model)
    t0 = time.perf_counter()
    with model:
        inference = pm.ADVI(random_seed=fit_seed) if method == "advi" else pm.FullRankADVI(random_seed=fit_seed)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    if init == "laplace":
        compile_before = fns.compile_seconds
        _laplace_start(inference.approx, fns, starting_points(model, seed=rng), method)
        t_compile += fns.compile_seconds - compile_before
    t_init = time.perf_counter() - t0 - (fns.compile_seconds - compile_before if init == "laplace" else 0.0)
    t0 = time.perf_counter()
    with model, _quiet_interruption():
        approx = inference.fit(n=max_iter, obj_optimizer=pm.adam(learning_rate=learning_rate),
                               callbacks=[stop], progressbar=progress)
    if progress:
        state = "converged" if stop.converged else "stopped at max_iter"
        print(f"{method}: {state} after {len(approx.hist):,} steps", file=sys.stderr, flush=True)
    # PyMC compiles the step function inside fit(): the time to the first step counts as compile time.
    t_step_compile = (stop.first_call - t0) if stop.first_call is not None else 0.0
    if stop.average is not None:
        for p, v in zip(approx.params, stop.average):
            p.set_value(v)
    with model:
        idata = approx.sample(draws=draws, random_seed=draw_seed)
    post = idata["posterior"]
    names = fns.param_names
    draws_out = {n: np.asarray(post[n].values, dtype=float) for n in names if n in post}
    draws_out, params, sd = summarise_draws(model, draws_out, rng)
    t_run = time.perf_counter() - t0 + t_init - t_step_compile
    compile_before = fns.compile_seconds
    loglik = fns.loglik_at({n: params[n] for n in fns.free_names()})
    hist = -np.asarray(approx.hist, dtype=float)
    if not stop.converged:
        warn_not_converged(method, f"ELBO still improving after max_iter={max_iter} steps")
    q_mean, q_cov = _gaussian(approx, fns)
    return Result(method=method, params=params, sd=sd, loglik=loglik, trace=hist, n_iter=len(hist),
                  converged=stop.converged,
                  time_compile=t_compile + t_step_compile + fns.compile_seconds - compile_before,
                  time_run=t_run, draws=draws_out,
                  info={"objective": "ELBO", "final_elbo_window_mean": float(hist[-window:].mean()),
                        "q_mean": q_mean, "q_cov": q_cov})


def _permutation(group, fns) -> np.ndarray:
    """Positions in the approximation's flat vector of each entry of ``fns``' theta (PyMC orders it its own way)."""
    slots = {s.name: s for s in fns.slots}
    perm = np.empty(fns.size, dtype=int)
    for name, slc, *_ in group.ordering.values():
        s = slots[name]
        perm[slc] = np.arange(s.start, s.stop)
    return perm


def _gaussian(approx, fns) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the fitted Gaussian over the unconstrained theta, in ``fns``' order (the
    approximation's density q, which the Pareto k-hat diagnostic of :mod:`inference.diagnostics` needs)."""
    group = approx.groups[0]
    perm = _permutation(group, fns)
    inverse = np.argsort(perm)
    mean = np.asarray(group.mean.eval(), dtype=float)[inverse]
    cov = np.asarray(group.cov.eval(), dtype=float)[np.ix_(inverse, inverse)]
    return mean, cov


@contextlib.contextmanager
def _quiet_interruption():
    """PyMC logs "Interrupted at 1,498 [1%]" when the convergence test stops the fit, which reads like a failure;
    the run reports its own line instead."""
    log = logging.getLogger("pymc.variational.inference")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _laplace_start(approx, fns, starts, method: str) -> None:
    """Set the approximation to the Laplace approximation of the unconstrained density (model.logp with Jacobian)."""
    res, _, _ = minimise(fns, "logp", starts)
    theta = res.x
    cov = unconstrained_cov(fns, theta, "logp", method)
    if cov is None or not np.all(np.isfinite(theta)):
        return  # keep PyMC's start; unconstrained_cov has warned
    group = approx.groups[0]
    perm = _permutation(group, fns)
    mu = theta[perm]
    cov = cov[np.ix_(perm, perm)]
    params = group.params_dict
    params["mu"].set_value(mu.astype(params["mu"].dtype))

    def softplus_inv(x):
        return np.log(np.expm1(x))

    if "rho" in params:
        params["rho"].set_value(softplus_inv(np.sqrt(np.diag(cov))).astype(params["rho"].dtype))
    else:
        L = np.linalg.cholesky(cov)
        L[np.diag_indices_from(L)] = softplus_inv(np.diag(L))
        params["L_tril"].set_value(L[np.tril_indices_from(L)].astype(params["L_tril"].dtype))
