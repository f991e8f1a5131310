"""Variational inference: mean-field and full-rank ADVI (Kucukelbir et al. 2017), stopped by a convergence test.

The family is a Gaussian over the model's unconstrained parameters (the space NUTS samples), diagonal or with a dense
covariance. Each step draws one standard normal vector, maps it through the Gaussian (the reparameterisation trick)
and follows the gradient of log p(theta, y) there plus the exact gradient of the entropy, with Adam. The log density
and its gradient are the model's shared functions (:mod:`inference.functions`): the uncompiled graph the optimisers
use where a call is cheap, else the one compiled log density that NUTS and Pathfinder use too, so ADVI compiles
nothing of its own: PyMC's ``pm.fit`` compiled a new step function (and a sampling function) for every
model, 5 to 30 seconds each on an empty compile cache, longer than the fits themselves.

PyMC's defaults (adagrad_window, a fixed number of steps) often stop far from the optimum. Here the run stops when
the ELBO has stopped improving: the mean ELBO over the last window of steps is compared with the window before it,
and the run ends when the improvement is within two standard errors of zero (stochastic noise). The variational
parameters are then replaced by their average over the last window (Polyak-Ruppert averaging), which removes most
of the jitter a constant step size leaves behind.

The approximation starts at the Laplace approximation of the unconstrained density (its mode, found with exact
Hessians, and the inverse negative Hessian there as covariance; the diagonal of it for mean-field). The stochastic
optimisation then only has to move from a good Gaussian to the best one, instead of from N(0, I), which on mixtures
diverged or took tens of thousands of steps. ``init="default"`` starts from the model's initial point with unit
standard deviations, as PyMC does.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .checks import check, check_model
from .functions import functions_for
from .optimize import minimise, unconstrained_cov
from .result import Result, summarise_draws, warn_not_converged
from .starts import as_generator, starting_points

__all__ = ["advi", "fullrank_advi"]


class ELBOConvergence:
    """Stop when the windowed mean ELBO no longer increases beyond its noise; average the parameters per window.

    Called after every step with the flat variational parameters, the ELBO trace so far and the step index; raises
    StopIteration when the mean of the last window is within two standard errors of the window before it.
    """

    def __init__(self, window: int = 1000, min_windows: int = 3):
        self.window = window
        self.min_windows = min_windows
        self.converged = False
        self.average = None
        self._sum = None
        self._count = 0

    def __call__(self, x, hist, i) -> None:
        if self._sum is None:
            self._sum = np.zeros_like(x, dtype=float)
        self._sum += x
        self._count += 1
        if (i + 1) % self.window:
            return
        self.average = self._sum / self._count
        self._sum = np.zeros_like(self._sum)
        self._count = 0
        if (i + 1) < self.min_windows * self.window:
            return
        w = self.window
        prev, last = np.asarray(hist[-2 * w:-w]), np.asarray(hist[-w:])
        if not (np.all(np.isfinite(prev)) and np.all(np.isfinite(last))):
            return
        improvement = last.mean() - prev.mean()
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
    fns = functions_for(model)
    compile_before = fns.compile_seconds
    t0 = time.perf_counter()
    vg = fns.value_and_grad("logp", many_calls=True)
    mean, cov = fns.initial_theta.copy(), None
    if init == "laplace":
        res, _, _ = minimise(fns, "logp", starting_points(model, seed=rng))
        if np.all(np.isfinite(res.x)):
            cov = unconstrained_cov(fns, res.x, "logp", method)  # None (with a warning): keep the default start
            if cov is not None:
                mean = np.asarray(res.x, dtype=float)
    q = _Gaussian(mean, cov, full=(method == "fullrank_advi"))
    stop = ELBOConvergence(window=window)
    hist = _optimise(q, vg, stop, max_iter=max_iter, learning_rate=learning_rate,
                     rng=np.random.default_rng(fit_seed))
    if stop.average is not None:
        q.set(stop.average)
    if progress:
        state = "converged" if stop.converged else "stopped at max_iter"
        print(f"{method}: {state} after {len(hist):,} steps", file=sys.stderr, flush=True)
    theta = q.draw(np.random.default_rng(draw_seed), draws)
    draws_out = {n: d[None] for n, d in fns.constrained_many(theta).items()}  # one chain of ``draws`` draws
    draws_out, params, sd = summarise_draws(model, draws_out, rng)
    loglik = fns.loglik_at({n: params[n] for n in fns.free_names()})
    elapsed = time.perf_counter() - t0
    t_compile = fns.compile_seconds - compile_before
    if not stop.converged:
        warn_not_converged(method, f"ELBO still improving after max_iter={max_iter} steps")
    q_mean, q_cov = q.mean_cov()
    return Result(method=method, params=params, sd=sd, loglik=loglik, trace=hist, n_iter=len(hist),
                  converged=stop.converged, time_compile=t_compile, time_run=max(elapsed - t_compile, 0.0),
                  draws=draws_out,
                  info={"objective": "ELBO", "final_elbo_window_mean": float(hist[-window:].mean()),
                        "q_mean": q_mean, "q_cov": q_cov})


class _Gaussian:
    """The variational family over the unconstrained theta, as one flat vector of free parameters: the mean, then
    log standard deviations (mean-field) or the Cholesky factor of the covariance, its diagonal on the log scale
    (full-rank), so that every value of the vector is a valid Gaussian."""

    def __init__(self, mean, cov, *, full: bool):
        self.d = d = len(mean)
        self.full = full
        self.rows, self.cols = np.tril_indices(d) if full else (np.arange(d), np.arange(d))
        self.diag = np.flatnonzero(self.rows == self.cols)
        if cov is None:
            chol = np.eye(d)
        elif full:
            chol = np.linalg.cholesky(cov)
        else:
            chol = np.diag(np.sqrt(np.diag(cov)))
        scale = chol[self.rows, self.cols].copy()
        scale[self.diag] = np.log(scale[self.diag])
        self.x = np.concatenate([np.asarray(mean, dtype=float), scale])

    def set(self, x) -> None:
        self.x = np.array(x, dtype=float)

    def chol(self, x=None) -> np.ndarray:
        x = self.x if x is None else x
        values = x[self.d:].copy()
        values[self.diag] = np.exp(values[self.diag])
        L = np.zeros((self.d, self.d))
        L[self.rows, self.cols] = values
        return L

    def entropy(self, x) -> float:
        """Entropy of the Gaussian up to its constant d/2 (1 + log 2 pi): the sum of the log-diagonal of L."""
        return float(np.sum(x[self.d:][self.diag]))

    def sample_and_grad(self, x, eps, vg):
        """One reparameterised draw theta = m + L eps: the ELBO estimate log p(theta) + entropy and its gradient with
        respect to the free parameters (the entropy's exactly)."""
        L = self.chol(x)
        theta = x[:self.d] + L @ eps
        value, g = vg(theta)
        g = np.asarray(g, dtype=float)
        grad = np.empty_like(x)
        grad[:self.d] = g
        gs = g[self.rows] * eps[self.cols]  # d ELBO / d L[i, j] = g_i eps_j on the lower triangle
        gs[self.diag] = gs[self.diag] * L[self.rows[self.diag], self.cols[self.diag]] + 1.0  # log scale, entropy
        grad[self.d:] = gs
        return float(value) + self.entropy(x), grad

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        L = self.chol()
        return self.x[:self.d].copy(), L @ L.T

    def draw(self, rng, n: int) -> np.ndarray:
        return self.x[:self.d] + rng.standard_normal((n, self.d)) @ self.chol().T


def _optimise(q, vg, stop, *, max_iter, learning_rate, rng, beta1=0.9, beta2=0.999, eps=1e-8) -> np.ndarray:
    """Adam on the reparameterised one-draw ELBO gradient (Kucukelbir et al. 2017) until ``stop`` raises
    StopIteration; a draw where the log density is not finite leaves the parameters alone. Returns the ELBO trace."""
    x = q.x.copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    hist = np.empty(max_iter)
    const = 0.5 * q.d * (1.0 + np.log(2 * np.pi))
    for i in range(max_iter):
        elbo, grad = q.sample_and_grad(x, rng.standard_normal(q.d), vg)
        if np.isfinite(elbo) and np.all(np.isfinite(grad)):
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            step = learning_rate * np.sqrt(1 - beta2 ** (i + 1)) / (1 - beta1 ** (i + 1))
            x = x + step * m / (np.sqrt(v) + eps)
        hist[i] = elbo + const
        try:
            stop(x, hist[:i + 1], i)
        except StopIteration:
            return hist[:i + 1]
    return hist
