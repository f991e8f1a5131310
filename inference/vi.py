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

Steps are taken in the coordinates whitened by that start, theta = mode + S z with S the Cholesky factor of the
Laplace covariance (its diagonal square root for mean-field, whose family a diagonal map keeps), so the start is
N(0, I) in z and Adam's ``learning_rate`` is a fraction of a posterior sd whatever the parameters' units: a model
whose parameters are rescaled by 1e-3 or 1e4 takes the same steps. After the window test, one more window of steps
ten times smaller is averaged, which removes most of the jitter left in each variational parameter.

Convergence is a claim that is checked: the fit is not converged when its ELBO at the end (estimated from its
``draws``) is below the ELBO of its start (from up to 1,000 draws) by more than three times their Monte Carlo
error plus ``ELBO_DROP_NATS`` per variational parameter; steps too large for the posterior make the fit worse
than where it began while the window test, which sees only noise, would call it converged. Every fit then judges
itself from its own draws (:func:`inference.self_diagnosis`): Pareto k-hat of log p - log q, ``reliable``, and the
PSIS-corrected means, in ``info``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy.linalg import solve_triangular

from .checks import check, check_model
from .functions import functions_for
from .optimize import minimise, unconstrained_cov
from .quality import MAX_NONFINITE_SHARE, self_diagnosis
from .result import Result, summarise_draws, warn_not_converged
from .starts import as_generator, starting_points

__all__ = ["advi", "fullrank_advi"]


# After the window test: this many windows of steps REFINE_FACTOR times smaller, whose average is the fit.
REFINE_WINDOWS = 1
REFINE_FACTOR = 0.1


class _Average:
    """A stopping rule that never stops early: the average of the parameters over every step it sees."""

    def __init__(self):
        self.average, self._sum, self._count = None, None, 0

    def __call__(self, x, hist, i) -> None:
        self._sum = x.astype(float) if self._sum is None else self._sum + x
        self._count += 1
        self.average = self._sum / self._count


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
    the fitted approximation. ``trace`` holds the ELBO per step (minus PyMC's loss). ``learning_rate`` is Adam's
    step in posterior sds (the coordinates whitened by the Laplace start). ``info`` holds ``q_mean`` and ``q_cov``
    (the Gaussian over the unconstrained values), ``start_elbo`` and ``elbo`` (the ELBO of the start and of the
    fit, from draws), and the self-diagnosis of :func:`inference.self_diagnosis` (``khat``, ``reliable``,
    ``reliability``, ``psis_params``, the draws and their log densities).
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
    full = method == "fullrank_advi"
    vg = fns.value_and_grad("logp", many_calls=True)
    shift, scale = fns.initial_theta.copy(), np.eye(fns.size)
    if init == "laplace":
        res, _, _ = minimise(fns, "logp", starting_points(model, seed=rng))
        if np.all(np.isfinite(res.x)):
            # None (with a warning): keep the default start
            cov = unconstrained_cov(fns, res.x, "logp", method, information=res.information,
                                    exact=res.exact_hessian)
            if cov is not None:
                shift = np.asarray(res.x, dtype=float)
                scale = np.linalg.cholesky(cov) if full else np.diag(np.sqrt(np.diag(cov)))
    white = _Whitened(vg, shift, scale)
    q = _Gaussian(np.zeros(fns.size), None, full=full)  # N(0, I) in the whitened coordinates: the start
    score = fns.score_rows("logp")
    start_elbo = _elbo_estimate(q, white, score, np.random.default_rng(draw_seed + 1), min(draws, 1000))
    stop = ELBOConvergence(window=window)
    step_rng = np.random.default_rng(fit_seed)
    hist = _optimise(q, white.value_and_grad, stop, max_iter=max_iter, learning_rate=learning_rate,
                     rng=step_rng)
    if stop.average is not None:
        q.set(stop.average)
    if stop.converged and REFINE_WINDOWS:
        # the converged fit still jitters by about a step around the optimum, which costs KL in every one of the
        # variational parameters: steps REFINE_FACTOR times smaller for REFINE_WINDOWS windows, then their average
        refine = _Average()
        tail = _optimise(q, white.value_and_grad, refine, max_iter=window * REFINE_WINDOWS,
                         learning_rate=learning_rate * REFINE_FACTOR, rng=step_rng)
        q.set(refine.average)
        hist = np.concatenate([hist, tail])
    hist = hist + white.log_det
    if progress:
        state = "converged" if stop.converged else "stopped at max_iter"
        print(f"{method}: {state} after {len(hist):,} steps", file=sys.stderr, flush=True)
    z = q.draw(np.random.default_rng(draw_seed), draws)
    theta = white.to_theta(z)
    logq = q.logpdf(z) - white.log_det
    constrained = fns.constrained_many(theta)
    draws_out = {n: d[None] for n, d in constrained.items()}  # one chain of ``draws`` draws
    draws_out, params, sd = summarise_draws(model, draws_out, rng)
    loglik = fns.loglik_at({n: params[n] for n in fns.free_names()})
    logp = score(theta)
    converged, why = stop.converged, f"ELBO still improving after max_iter={max_iter} steps"
    end = _elbo_of(logp - logq)
    allowed = 3.0 * np.hypot(end[1], start_elbo[1]) + ELBO_DROP_NATS * q.x.size
    if converged and not end[0] >= start_elbo[0] - allowed:
        converged = False
        why = (f"the ELBO fell from {start_elbo[0]:.8g} at the start to {end[0]:.8g}, more than its noise and "
               f"tolerance ({allowed:.3g}): the steps (learning_rate={learning_rate}) are too large for this "
               "posterior")
    if not converged:
        warn_not_converged(method, why)
    diagnosis = self_diagnosis(method, fns, theta, logq, converged=converged, constrained=constrained, logp=logp)
    elapsed = time.perf_counter() - t0
    t_compile = fns.compile_seconds - compile_before
    q_mean, q_cov = white.mean_cov(*q.mean_cov())
    return Result(method=method, params=params, sd=sd, loglik=loglik, trace=hist, n_iter=len(hist),
                  converged=converged, time_compile=t_compile, time_run=max(elapsed - t_compile, 0.0),
                  draws=draws_out,
                  info={"objective": "ELBO", "final_elbo_window_mean": float(hist[-window:].mean()),
                        "start_elbo": start_elbo[0], "q_mean": q_mean, "q_cov": q_cov, **diagnosis})


# A fit may end below its start by three times the ELBO's Monte Carlo noise plus this many nats per variational
# parameter: the KL divergence of a Gaussian moved by 0.1 sd from its optimum in one direction (0.1^2 / 2), the
# jitter a stochastic fit keeps in each of its parameters. Beyond that the fit made its start worse.
ELBO_DROP_NATS = 0.005


def _elbo_of(log_ratios) -> tuple[float, float]:
    """(mean, standard error) of the log ratios: the ELBO's Monte Carlo estimate; -inf when the log density is not
    finite at more than ``MAX_NONFINITE_SHARE`` of the draws (q puts its mass where the model's density is 0 or
    cannot be evaluated), else over the finite ones."""
    lr = np.asarray(log_ratios, dtype=float)
    finite = np.isfinite(lr)
    if finite.sum() < 2 or 1.0 - finite.mean() > MAX_NONFINITE_SHARE:
        return float("-inf"), 0.0
    lr = lr[finite]
    return float(lr.mean()), float(lr.std(ddof=1) / np.sqrt(lr.size))


def _elbo_estimate(q, white, score, rng, n) -> tuple[float, float]:
    """The ELBO of the Gaussian ``q`` over the whitened coordinates, estimated from ``n`` of its draws."""
    z = q.draw(rng, n)
    return _elbo_of(score(white.to_theta(z)) - (q.logpdf(z) - white.log_det))


class _Whitened:
    """The log density in whitened coordinates z, theta = shift + scale z, with ``scale`` the Cholesky factor of the
    Laplace covariance the fit starts from (its diagonal square root for mean-field, whose family a diagonal map
    keeps). A unit step in z is one posterior sd whatever the parameters' units, so Adam's learning rate means the
    same thing at every scale; the density of z is that of theta times |det scale|, so the ELBO is the same up to
    the constant ``log_det``, which is added back to the reported trace."""

    def __init__(self, vg, shift, scale):
        self.vg = vg
        self.shift = np.asarray(shift, dtype=float)
        self.scale = np.asarray(scale, dtype=float)
        self.log_det = float(np.sum(np.log(np.diag(self.scale)))) if len(self.scale) else 0.0

    def to_theta(self, z):
        return self.shift + np.asarray(z) @ self.scale.T

    def value_and_grad(self, z):
        value, g = self.vg(self.shift + self.scale @ z)
        return value, self.scale.T @ np.asarray(g, dtype=float)

    def mean_cov(self, mean_z, cov_z):
        return self.shift + self.scale @ mean_z, self.scale @ cov_z @ self.scale.T


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

    def logpdf(self, z) -> np.ndarray:
        """The log density of each row of ``z`` under the Gaussian."""
        L = self.chol()
        u = solve_triangular(L, (np.atleast_2d(z) - self.x[:self.d]).T, lower=True)
        return -0.5 * (np.sum(u**2, axis=0) + self.d * np.log(2 * np.pi)) - np.sum(np.log(np.diag(L)))


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
