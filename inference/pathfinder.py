"""Pathfinder: variational inference along the L-BFGS path (Zhang, Carpenter, Gelman & Vehtari 2022, "Pathfinder:
Parallel quasi-Newton variational inference", JMLR 23(306)).

Single path (the paper's Algorithm 1). Maximise log p(theta | y) over the unconstrained vector with L-BFGS and keep
every iterate theta_l and gradient g_l = grad log p(theta_l). At each iterate the L-BFGS inverse-Hessian estimate
defines a Gaussian

    q_l = N(mu_l, Sigma_l),   mu_l = theta_l + Sigma_l g_l   (one quasi-Newton step from theta_l),

and the iterate whose q_l has the largest ELBO, estimated by Monte Carlo, E_q[log p(theta, y) - log q(theta)],
is kept. Sigma_l is built from the last J accepted pairs s = theta_{l+1} - theta_l, z = g_l - g_{l+1} (those with
s'z > eps |z|^2; L-BFGS's curvature condition), as a diagonal plus a rank-2J term (the paper's Algorithms 3 and 4):

* the diagonal alpha is updated pair by pair with Gilbert & Lemarechal's (1989) diagonal inverse-Hessian update,
  1/alpha' = (z'Az)/(s'z alpha) + z^2/(s'z) - (z'Az) s^2/((s'z)(s'A^-1 s) alpha^2), A = diag(alpha), from alpha = 1;
* Sigma = A + B G B' with B = [S, A Z] (N x 2m) and
  G = [[R^-T (D + Z'AZ) R^-1, -R^-T], [-R^-1, 0]], R = upper triangle of S'Z, D its diagonal: the compact form of
  m BFGS updates of A (Byrd, Nocedal & Schnabel 1994, eq. 3.13).

Draws and log q use a thin QR factorisation A^-1/2 B = Q T (the paper's Algorithm 2):
Sigma = A^1/2 (I + Q M Q') A^1/2 with M = T G T', and I + M = L L' (Cholesky), so
theta = mu + A^1/2 (u + Q (L - I) Q'u), u ~ N(0, I), and log det Sigma = sum log alpha + 2 sum log diag L.
Nothing larger than N x 2m is formed, so a step costs O(N m^2).

Multi-path (the paper's Algorithm 5): run several single paths from jittered starts, pool their draws, weight each
draw by p(theta, y) / q_path(theta) of the path that drew it, smooth the weights with Pareto-smoothed importance
sampling (PSIS) and resample (with replacement here, so the number of draws returned is free). Paths stuck in minor
modes or with poor Gaussians then get little weight; the PSIS k-hat of the pooled ratios is kept in ``info``.

Implemented here on the zoo's own log density and gradient (``functions_for(model).value_and_grad("logp")``, and
``score_rows`` for the draws: vectorised, or where an uncompiled call is slow the model's one compiled log density,
shared with ADVI and NUTS) and scipy's L-BFGS-B, rather than through a library: pymc-extras' Pathfinder (0.15.1)
requires PyMC < 6.4, and BlackJAX's would bring JAX in as a dependency for one estimator.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from .base import hooks_for
from .checks import check
from .functions import functions_for
from .laplace import constrained_draws
from .quality import psis
from .result import Result, summarise_draws, warn_not_converged
from .starts import as_generator, starting_points

__all__ = ["inverse_hessian_factors", "lbfgs_path", "pathfinder", "single_path"]

_EPS = np.finfo(float).eps


def lbfgs_path(vg, theta0, *, history: int = 6, max_iter: int = 1000, ftol: float = 1e-12, gtol: float = 1e-9):
    """Maximise the function whose (value, gradient) ``vg`` returns with scipy's L-BFGS-B.

    Returns (thetas (L+1, N), gradients (L+1, N) of the maximised function, scipy's result), the start included.
    """
    cache = {}

    def fun(theta):
        value, grad = vg(theta)
        value, grad = float(value), np.asarray(grad, dtype=float)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(theta)
        cache[theta.tobytes()] = (value, grad)
        return -value, -grad

    thetas, grads = [], []

    def record(theta):
        hit = cache.get(theta.tobytes())
        if hit is None:
            fun(theta)
            hit = cache.get(theta.tobytes())
        if hit is not None:
            thetas.append(theta.copy())
            grads.append(hit[1])
        cache.clear()

    theta0 = np.asarray(theta0, dtype=float)
    record(theta0)
    if not thetas:
        raise RuntimeError("pathfinder: the log density is not finite at the start")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B",
                                callback=lambda intermediate_result: record(intermediate_result.x),
                                options={"maxcor": history, "maxiter": max_iter, "ftol": ftol, "gtol": gtol})
    return np.array(thetas), np.array(grads), res


def _update_alpha(alpha, s, z):
    """Gilbert & Lemarechal's diagonal inverse-Hessian update from one pair (s, z) (the paper's Algorithm 4)."""
    a = z @ (alpha * z)
    b = z @ s
    c = s @ (s / alpha)
    return 1.0 / (a / (b * alpha) + z**2 / b - a * s**2 / (b * c * alpha**2))


def inverse_hessian_factors(alpha, S, Z):
    """(B, G) of the compact L-BFGS inverse Hessian Sigma = diag(alpha) + B G B' from the pairs in the columns
    of S (steps) and Z (gradient changes of the minimised function), oldest first."""
    SZ = S.T @ Z
    R = np.triu(SZ)
    D = np.diag(np.diag(SZ))
    Rinv = np.linalg.solve(R, np.eye(len(R)))
    AZ = alpha[:, None] * Z
    m = S.shape[1]
    G = np.zeros((2 * m, 2 * m))
    G[:m, :m] = Rinv.T @ (D + Z.T @ AZ) @ Rinv
    G[:m, m:] = -Rinv.T
    G[m:, :m] = -Rinv
    return np.hstack([S, AZ]), G


class _Gaussian:
    """N(mu, Sigma) with Sigma = diag(alpha) + B G B', for draws and log densities (the paper's Algorithm 2)."""

    def __init__(self, theta, grad, alpha, B, G):
        self.sqrt_alpha = np.sqrt(alpha)
        n = theta.size
        if B.shape[1]:
            Q, T = np.linalg.qr(B / self.sqrt_alpha[:, None])
            self.Q = Q
            self.L = np.linalg.cholesky(np.eye(T.shape[0]) + T @ G @ T.T)
            sigma_grad = alpha * grad + B @ (G @ (B.T @ grad))
        else:
            self.Q = np.zeros((n, 0))
            self.L = np.zeros((0, 0))
            sigma_grad = alpha * grad
        self.mu = theta + sigma_grad  # a quasi-Newton step: grad is that of log p, Sigma ~ its -Hessian^-1
        self.logdet = float(np.sum(np.log(alpha)) + 2.0 * np.sum(np.log(np.diag(self.L))))

    def sample(self, rng, size):
        u = rng.standard_normal((size, self.mu.size))
        uq = u @ self.Q
        x = self.mu + self.sqrt_alpha * (u + (uq @ (self.L - np.eye(len(self.L))).T) @ self.Q.T)
        logq = -0.5 * (self.mu.size * np.log(2 * np.pi) + self.logdet + np.sum(u**2, axis=1))
        return x, logq


def single_path(logp, vg, theta0, rng, *, history: int = 6, draws: int = 1000, elbo_draws: int = 10,
                max_iter: int = 1000, ftol: float = 1e-12, gtol: float = 1e-9) -> dict:
    """One Pathfinder path (the paper's Algorithm 1): draws from the L-BFGS iterate's Gaussian with the best ELBO.

    ``logp`` maps a (draws, N) array of unconstrained points to their log densities (one call per batch of draws);
    ``vg`` maps one point to the value and gradient.

    Returns a dict with ``theta`` (draws, N), ``logq``, ``logp``, ``elbo`` (per iterate, -inf where no Gaussian
    could be formed), ``best`` (the chosen iterate), ``lbfgs`` (scipy's result) and ``grad_max`` at its end.
    """
    thetas, grads, res = lbfgs_path(vg, theta0, history=history, max_iter=max_iter, ftol=ftol, gtol=gtol)
    n = thetas.shape[1]
    alpha = np.ones(n)
    S_list, Z_list = [], []
    elbos = np.full(len(thetas), -np.inf)
    best = None
    for l in range(1, len(thetas)):
        s = thetas[l] - thetas[l - 1]
        z = grads[l - 1] - grads[l]  # the change of the gradient of -log p
        if s @ z > _EPS * (z @ z):
            alpha = _update_alpha(alpha, s, z)
            S_list.append(s)
            Z_list.append(z)
            del S_list[:-history], Z_list[:-history]
        if not S_list or not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            continue
        try:
            q = _Gaussian(thetas[l], grads[l], alpha, *inverse_hessian_factors(alpha, np.array(S_list).T,
                                                                               np.array(Z_list).T))
        except np.linalg.LinAlgError:
            continue
        x, logq = q.sample(rng, elbo_draws)
        lp = np.asarray(logp(x), dtype=float)
        elbo = float(np.mean(lp - logq)) if np.all(np.isfinite(lp)) else -np.inf
        elbos[l] = elbo
        if best is None or elbo > elbos[best[0]]:
            best = (l, q)
    if best is None:
        raise RuntimeError("pathfinder: no Gaussian approximation could be formed along the L-BFGS path "
                           f"({len(thetas) - 1} iterations: {res.message})")
    x, logq = best[1].sample(rng, draws)
    lp = np.asarray(logp(x), dtype=float)
    return {"theta": x, "logq": logq, "logp": lp, "elbo": elbos, "best": best[0], "lbfgs": res,
            "grad_max": float(np.max(np.abs(grads[-1])))}


def pathfinder(model, *, seed=None, num_paths: int = 4, draws_per_path: int = 1000, draws: int = 1000,
               elbo_draws: int = 10, history: int = 6, max_iter: int = 1000, start=None,
               jitter: float = 2.0) -> Result:
    """Multi-path Pathfinder with PSIS resampling: posterior means and sds of the constrained parameters.

    Parameters
    ----------
    num_paths : independent L-BFGS paths, each from its own start: the model's initialiser (zoo models) drawn
        ``num_paths`` times, else ``start`` (constrained values by name) or the model's initial point, jittered by
        uniform(-jitter, jitter) noise in the unconstrained space (the paper's inits).
    draws_per_path : draws from each path's best Gaussian; ``draws`` are resampled from the pooled draws with
        their PSIS weights.
    elbo_draws : Monte Carlo draws per iterate to estimate its ELBO.
    history : the number J of L-BFGS pairs kept (the rank of the low-rank term is at most 2J).

    ``converged`` is True when every path's L-BFGS met its tolerance (or ended with a gradient below 1e-6 of the
    log density's size). ``info`` holds the pooled draws of q (``q_theta``), their log densities under their own
    path's Gaussian (``q_logq``) and under the model (``q_logp``), the PSIS ``khat``, and per path the chosen
    iterate, its ELBO and the number of L-BFGS iterations; ``trace`` is the ELBO along the best path.
    """
    for name, value in (("num_paths", num_paths), ("draws_per_path", draws_per_path), ("draws", draws),
                        ("elbo_draws", elbo_draws), ("history", history), ("max_iter", max_iter)):
        check(value, name, "positive integer")
    check(jitter, "jitter", "non-negative number")
    rng = as_generator(seed)
    fns = functions_for(model)
    compile_before = fns.compile_seconds
    # thousands of draws to score: vectorised where that is fast, else the value alone compiled; the L-BFGS paths
    # take a few hundred gradients, cheaper uncompiled than a gradient's compilation (tens of seconds cold)
    logp = fns.score_rows("logp")
    vg = fns.value_and_grad("logp")
    fns.value("loglik")
    fns.constrained(fns.initial_theta)
    t_compile = fns.compile_seconds - compile_before
    t0 = time.perf_counter()
    hooks = hooks_for(model)
    if start is None and hooks is not None and hooks.init is not None:
        starts = starting_points(model, n_init=num_paths, seed=rng)  # the model's own (randomised) initialiser
    else:  # the paper's starts: uniform(-2, 2) jitter in the unconstrained space
        base = fns.initial_theta if start is None else starting_points(model, start=start)[0]
        starts = [base + rng.uniform(-jitter, jitter, size=base.shape) for _ in range(num_paths)]
    paths = [single_path(logp, vg, theta0, rng, history=history, draws=draws_per_path, elbo_draws=elbo_draws,
                         max_iter=max_iter) for theta0 in starts]
    theta = np.concatenate([p["theta"] for p in paths])
    logq = np.concatenate([p["logq"] for p in paths])
    lp = np.concatenate([p["logp"] for p in paths])
    ok = np.isfinite(lp)
    lw, khat = psis((lp - logq)[ok])
    chosen = rng.choice(int(ok.sum()), size=draws, replace=True, p=np.exp(lw - logsumexp(lw)))
    draws_out, params, sd = summarise_draws(model, constrained_draws(fns, theta[ok][chosen]), rng)
    loglik = fns.loglik_at({n: params[n] for n in fns.free_names()})
    path_ok = [p["lbfgs"].success or p["grad_max"] < 1e-6 * max(1.0, abs(-p["lbfgs"].fun)) for p in paths]
    converged = all(path_ok)
    if not converged:
        messages = "; ".join(str(p["lbfgs"].message) for p, good in zip(paths, path_ok) if not good)
        warn_not_converged("pathfinder", f"{len(path_ok) - sum(path_ok)} of {len(paths)} L-BFGS paths: {messages}")
    best_path = max(paths, key=lambda p: p["elbo"][p["best"]])
    info = {"objective": "ELBO", "q_theta": theta[ok], "q_logq": logq[ok], "q_logp": lp[ok], "khat": khat,
            "paths": [{"best_iteration": p["best"], "elbo": float(p["elbo"][p["best"]]),
                       "lbfgs_iterations": int(p["lbfgs"].nit), "converged": bool(good)}
                      for p, good in zip(paths, path_ok)]}
    trace = best_path["elbo"][np.isfinite(best_path["elbo"])]
    return Result(method="pathfinder", params=params, sd=sd, loglik=loglik, trace=trace,
                  n_iter=int(sum(p["lbfgs"].nit for p in paths)), converged=converged, time_compile=t_compile,
                  time_run=time.perf_counter() - t0, draws=draws_out, info=info)
