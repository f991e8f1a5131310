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
from scipy.linalg import solve_triangular
from scipy.special import logsumexp

from .base import hooks_for
from .checks import check
from .functions import functions_for
from .quality import self_diagnosis
from .result import Result, summarise_draws, warn_not_converged
from .starts import as_generator, starting_points

__all__ = ["inverse_hessian_factors", "lbfgs_path", "newton_check", "pathfinder", "single_path", "start_map",
           "whitened_path"]

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

    def sqrt_map(self):
        """(W, W', W^-1, log |det W|), the first three as functions of vectors or rows of vectors, with
        W = A^1/2 (I + Q (L - I) Q'), so that W W' = Sigma: the map from standard normal coordinates to this
        Gaussian's (less its mean), its transpose for gradients, and its inverse,
        W^-1 = (I + Q (L^-1 - I) Q') A^-1/2."""
        a, Q = self.sqrt_alpha, self.Q
        k = len(self.L)
        LmI = self.L - np.eye(k)
        LinvmI = solve_triangular(self.L, np.eye(k), lower=True) - np.eye(k) if k else LmI

        def forward(u):
            u = np.asarray(u, dtype=float)
            return a * (u + ((u @ Q) @ LmI.T) @ Q.T)

        def transpose(g):
            ag = a * np.asarray(g, dtype=float)
            return ag + ((ag @ Q) @ LmI) @ Q.T

        def inverse(x):
            v = np.asarray(x, dtype=float) / a
            return v + ((v @ Q) @ LinvmI.T) @ Q.T

        return forward, transpose, inverse, float(np.sum(np.log(a)) + np.sum(np.log(np.diag(self.L))))

    def logpdf(self, x):
        """log q at each row of ``x``."""
        u = self.sqrt_map()[2](np.atleast_2d(x) - self.mu)
        return -0.5 * (self.mu.size * np.log(2 * np.pi) + self.logdet + np.sum(u**2, axis=1))

    def sample(self, rng, size):
        u = rng.standard_normal((size, self.mu.size))
        uq = u @ self.Q
        x = self.mu + self.sqrt_alpha * (u + (uq @ (self.L - np.eye(len(self.L))).T) @ self.Q.T)
        logq = -0.5 * (self.mu.size * np.log(2 * np.pi) + self.logdet + np.sum(u**2, axis=1))
        return x, logq


def single_path(logp, vg, theta0, rng, *, history: int = 6, draws: int = 1000, elbo_draws: int = 10,
                max_iter: int = 1000, ftol: float = 1e-12, gtol: float = 1e-9, allow_none: bool = False) -> dict:
    """One Pathfinder path (the paper's Algorithm 1): draws from the L-BFGS iterate's Gaussian with the best ELBO.

    ``logp`` maps a (draws, N) array of unconstrained points to their log densities (one call per batch of draws);
    ``vg`` maps one point to the value and gradient.

    Returns a dict with ``theta`` (draws, N), ``logq``, ``logp``, ``elbo`` (per iterate, -inf where no Gaussian
    could be formed), ``best`` (the chosen iterate), ``lbfgs`` (scipy's result), ``n_iter`` (its iterations),
    ``end`` and ``end_grad`` (the last iterate and its gradient), ``grad_max`` there, and ``last_q`` (the
    Gaussian at the last iterate, None when none could be formed there). When no Gaussian could be formed along
    the whole path (L-BFGS stopped after a step or two), a RuntimeError, or with ``allow_none`` a dict whose
    ``theta`` and ``q`` are None (with ``message``, ``lbfgs``, ``end``, ``end_grad`` and ``n_iter``).
    """
    thetas, grads, res = lbfgs_path(vg, theta0, history=history, max_iter=max_iter, ftol=ftol, gtol=gtol)
    n = thetas.shape[1]
    alpha = np.ones(n)
    S_list, Z_list = [], []
    elbos = np.full(len(thetas), -np.inf)
    best = last = None
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
        if l == len(thetas) - 1:
            last = q
        x, logq = q.sample(rng, elbo_draws)
        lp = np.asarray(logp(x), dtype=float)
        elbo = float(np.mean(lp - logq)) if np.all(np.isfinite(lp)) else -np.inf
        elbos[l] = elbo
        if best is None or elbo > elbos[best[0]]:
            best = (l, q)
    if best is None:
        message = ("pathfinder: no Gaussian approximation could be formed along the L-BFGS path "
                   f"({len(thetas) - 1} iterations: {res.message})")
        if not allow_none:
            raise RuntimeError(message)
        return {"theta": None, "q": None, "message": message, "lbfgs": res, "end": thetas[-1],
                "end_grad": grads[-1], "last_q": None, "n_iter": int(res.nit)}
    x, logq = best[1].sample(rng, draws)
    lp = np.asarray(logp(x), dtype=float)
    return {"theta": x, "logq": logq, "logp": lp, "elbo": elbos, "best": best[0], "lbfgs": res,
            "grad_max": float(np.max(np.abs(grads[-1]))), "end": thetas[-1], "end_grad": grads[-1],
            "last_q": last, "n_iter": int(res.nit), "q": best[1]}


# A path has reached the mode when the Newton decrement g' (-H)^-1 g at its end is below this (the Newton step
# would gain under 0.005 nats and move under 0.1 posterior sd), whatever the parameters' units.
DECREMENT_TOL = 1e-2
MAX_PASSES = 4
# Paths whose ends are further apart than this many pooled sds are reported as having found different modes.
MODE_SPREAD_SD = 3.0
# Up to this many unconstrained parameters the decrement uses the Hessian at the path's end (forward differences
# of the gradient: one gradient call per parameter); beyond, the curvature along the gradient and L-BFGS's own
# inverse-Hessian estimate.
HESSIAN_MAX_PARAMETERS = 100


def _cholesky(A):
    """The lower Cholesky factor of ``A``, or None when ``A`` is not (numerically) positive definite."""
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return None
    return L if np.all(np.isfinite(L)) else None


def _precision_map(L) -> tuple:
    """(W, W', W^-1, log |det W|) for W = L^-T: the whitening of a Gaussian whose precision is L L'."""

    def forward(z):
        return solve_triangular(L, np.atleast_2d(z).T, lower=True, trans="T").T.reshape(np.shape(z))

    def transpose(v):
        return solve_triangular(L, np.atleast_2d(v).T, lower=True).T.reshape(np.shape(v))

    def inverse(x):
        return np.asarray(x, dtype=float) @ L  # (L' x')'

    return forward, transpose, inverse, -float(np.sum(np.log(np.diag(L))))


def start_map(vg, theta) -> tuple | None:
    """The coordinates in which Pathfinder's jittered starts and first L-BFGS pass are taken: theta = theta0 + W z,
    with W W' the inverse of the negative Hessian at ``theta`` where it is positive definite, else the diagonal
    W_ii = 1 / sqrt(-H_ii) (1 where that is not positive), so that a unit of jitter is a unit of the local scale
    whatever the parameters' units. None beyond ``HESSIAN_MAX_PARAMETERS`` parameters (the original coordinates)."""
    from .optimize import step_hessian

    theta = np.asarray(theta, dtype=float)
    if theta.size > HESSIAN_MAX_PARAMETERS:
        return None
    value, g = vg(theta)
    if not (np.isfinite(value) and np.all(np.isfinite(g))):
        return None
    negH = -step_hessian(lambda th: np.asarray(vg(th)[1], dtype=float), theta, np.asarray(g, dtype=float))
    L = _cholesky(negH) if np.all(np.isfinite(negH)) else None
    if L is not None:
        return _precision_map(L)
    d = np.diag(negH)
    scale = np.where(np.isfinite(d) & (d > 0), 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 1.0)
    return (lambda z: np.asarray(z, dtype=float) * scale, lambda v: np.asarray(v, dtype=float) * scale,
            lambda x: np.asarray(x, dtype=float) / scale, float(np.sum(np.log(scale))))


def newton_check(vg, theta, g, lbfgs_q=None) -> tuple[float, tuple | None, bool]:
    """(Newton decrement, whitening map, whether the map is the measured Hessian's) at ``theta`` where the
    gradient of the log density is ``g``.

    The decrement g' (-H)^-1 g is twice the log density a Newton step would still gain: L-BFGS's inverse-Hessian
    estimate (``lbfgs_q``'s Sigma) can be far too narrow along a ridge it stopped on, so the curvature is measured.
    With at most ``HESSIAN_MAX_PARAMETERS`` parameters the Hessian H is differenced from the gradient; when -H is
    positive definite the map is theta = centre + L^-T z with -H = L L' (a unit step in z is one posterior sd),
    else the map is L-BFGS's Gaussian's square root. With more parameters the decrement is the larger of L-BFGS's
    and the one along the gradient, (g'g)^2 / (g' (-H) g) (one Hessian-vector product), a lower bound of the true
    one. The map is None when no Gaussian is available."""
    from .optimize import step_hessian

    g = np.asarray(g, dtype=float)
    grad = lambda th: np.asarray(vg(th)[1], dtype=float)  # noqa: E731
    lbfgs_map = lbfgs_q.sqrt_map() if lbfgs_q is not None else None
    lbfgs_dec = float(g @ (lbfgs_q.mu - theta)) if lbfgs_q is not None else np.inf
    if theta.size <= HESSIAN_MAX_PARAMETERS:
        L = _cholesky(-step_hessian(grad, theta, g))
        if L is None:
            return np.inf, lbfgs_map, False
        u = solve_triangular(L, g, lower=True)
        return float(u @ u), _precision_map(L), True
    gg = float(g @ g)
    if gg == 0.0:
        return 0.0, lbfgs_map, False
    h = np.sqrt(_EPS) * max(1.0, float(np.linalg.norm(theta))) / np.sqrt(gg)
    curvature = -float(g @ (grad(theta + h * g) - g)) / h  # g' (-H) g
    directional = gg**2 / curvature if curvature > 0 else np.inf
    return max(directional, lbfgs_dec), lbfgs_map, False


def whitened_path(logp, vg, theta0, rng, *, max_passes: int = MAX_PASSES, first_map=None, **options) -> dict:
    """One Pathfinder path, continued in a measured geometry until it reaches the mode.

    L-BFGS stops on its relative-reduction test wherever progress per step gets small, which on a long ridge or a
    badly scaled posterior is far from the mode, and its inverse-Hessian estimate there can be far too narrow along
    the ridge. When the Newton decrement at the end of a pass (:func:`newton_check`) is above ``DECREMENT_TOL``,
    the next pass starts at that end in whitened coordinates z, theta = end + W z with W W' the inverse of the
    negative Hessian there, where a unit step is one posterior sd; at most ``max_passes`` passes. The draws of the
    last pass are kept, mapped back to theta (their log densities under q by the log-determinant of the map).
    Keys as :func:`single_path`'s (``theta``, ``logq``, ``elbo`` and ``end`` in the original coordinates), plus
    ``decrement`` at the end of the last pass, ``passes`` and ``n_iter`` (L-BFGS iterations over all passes).
    ``first_map``: (centre, forward, transpose, inverse, log_det) of coordinates for the first pass as well, with
    ``theta0`` given in them (:func:`start_map`).
    """
    maps = []  # per pass: (centre in the previous coordinates, forward, transpose, inverse)
    log_det = 0.0
    if first_map is not None:
        maps.append(first_map[:4])
        log_det = first_map[4]

    def to_theta(z):
        for centre, forward, _, _ in reversed(maps):
            z = centre + forward(z)
        return z

    def to_z(theta):
        for centre, _, _, inverse in maps:
            theta = inverse(theta - centre)
        return theta

    def pull(g):
        for _, _, transpose, _ in maps:
            g = transpose(g)
        return g

    def logp_z(z):
        return logp(to_theta(z))

    def vg_z(z):
        value, grad = vg(to_theta(z))
        grad = np.asarray(grad, dtype=float)
        if not np.all(np.isfinite(grad)):  # the callers treat a point without a finite gradient as outside
            return value, grad
        return value, pull(grad)

    z0, n_iter = np.asarray(theta0, dtype=float), 0
    draws, elbo_draws = options.get("draws", 1000), options.get("elbo_draws", 10)
    for passes in range(1, max_passes + 1):
        path = single_path(logp_z, vg_z, z0, rng, allow_none=True, **options)
        n_iter += path["n_iter"]
        end_z = path["end"]
        decrement, whitening, measured = newton_check(vg_z, end_z, path["end_grad"], path["last_q"])
        if whitening is None and path["q"] is None:
            raise RuntimeError(path["message"])
        last = passes == max_passes or decrement <= DECREMENT_TOL or whitening is None
        if not last or path["q"] is None or measured:
            forward, transpose, inverse, step_log_det = whitening
            maps.append((end_z, forward, transpose, inverse))
            log_det += step_log_det
            z0 = np.zeros_like(z0)
            if not last:
                continue
            # at the end, the Gaussian of the coordinates just measured, N(Newton step, I): the one to keep when
            # the pass formed none (L-BFGS took a step or two, or none from a mode), or when its ELBO is above
            # that of the pass's best Gaussian (L-BFGS's inverse-Hessian estimate can be far too narrow along a
            # ridge even where the path reached the mode)
            at_end = _standard_path(logp_z, vg_z, z0, rng, draws=elbo_draws)
            if path["q"] is not None and at_end["elbo"][0] + log_det <= path["elbo"][path["best"]]:
                maps.pop()
                log_det -= step_log_det
            else:
                path = {**_standard_path(logp_z, vg_z, z0, rng, draws=draws), "lbfgs": path["lbfgs"],
                        "n_iter": path["n_iter"]}
                path["theta"], path["logq"] = to_theta(path["theta"]), path["logq"] - log_det
                path["elbo"], path["end"] = path["elbo"] + log_det, to_theta(path["end"])
                path["decrement"] = decrement
                break
        path.update(theta=to_theta(path["theta"]), logq=path["logq"] - log_det, elbo=path["elbo"] + log_det,
                    end=to_theta(path["end"]), decrement=decrement)
        break
    # the last pass's draws: earlier passes stopped short of the mode, in a geometry L-BFGS had not yet measured
    q, final_log_det = path["q"], log_det
    path.update(passes=passes, n_iter=n_iter, logpdf=lambda theta: q.logpdf(to_z(theta)) - final_log_det)
    for key in ("last_q", "end_grad", "q"):
        path.pop(key, None)
    return path


def _standard_path(logp, vg, z0, rng, *, draws: int) -> dict:
    """The Gaussian N(z0 + g, I) of coordinates whitened at z0 by the Hessian there (so that the negative Hessian
    is I and the Newton step is the gradient g), in the form of :func:`single_path`'s result."""
    value, g = vg(z0)
    g = np.asarray(g, dtype=float)
    u = rng.standard_normal((draws, z0.size))
    x = z0 + g + u
    logq = -0.5 * (np.sum(u**2, axis=1) + z0.size * np.log(2 * np.pi))
    lp = np.asarray(logp(x), dtype=float)
    elbo = np.array([float(np.mean(lp - logq)) if np.all(np.isfinite(lp)) else -np.inf])
    res = optimize.OptimizeResult(x=z0, fun=-float(value), nit=0, success=True,
                                  message="started at the mode: the Gaussian of the whitened coordinates")
    return {"theta": x, "logq": logq, "logp": lp, "elbo": elbo, "best": 0, "lbfgs": res,
            "grad_max": float(np.max(np.abs(g))), "end": z0, "end_grad": g, "last_q": None, "n_iter": 0,
            "q": _StandardGaussian(z0 + g)}


class _StandardGaussian:
    """N(mean, I)."""

    def __init__(self, mean):
        self.mean = mean

    def logpdf(self, x):
        u = np.atleast_2d(x) - self.mean
        return -0.5 * (self.mean.size * np.log(2 * np.pi) + np.sum(u**2, axis=1))


def _mode_spread(paths) -> float:
    """How far apart the paths' ends are: the largest range over the paths of one coordinate's end, in units of
    that coordinate's sd in a path's own draws (the median over the paths): near 0 when every path reached the
    same mode, above a few when the paths found different modes."""
    ends = np.array([p["end"] for p in paths])
    sd = np.median([p["theta"].std(axis=0) for p in paths], axis=0)
    if len(paths) < 2 or not np.all(np.isfinite(ends)):
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nanmax(np.ptp(ends, axis=0) / sd))


def pathfinder(model, *, seed=None, num_paths: int = 4, draws_per_path: int = 1000, draws: int = 1000,
               elbo_draws: int = 10, history: int = 6, max_iter: int = 1000, start=None,
               jitter: float = 2.0, max_passes: int = MAX_PASSES) -> Result:
    """Multi-path Pathfinder with PSIS resampling: posterior means and sds of the constrained parameters.

    Parameters
    ----------
    num_paths : independent L-BFGS paths, each from its own start: the model's initialiser (zoo models) drawn
        ``num_paths`` times, else ``start`` (constrained values by name) or the model's initial point, jittered by
        uniform(-jitter, jitter) noise (the paper's inits) in units of the local scale there: the coordinates
        whitened by the Hessian at that point (:func:`start_map`), in which the first L-BFGS pass runs too, so that
        the starts and the first line searches do not depend on the parameters' units.
    draws_per_path : draws from each path's best Gaussian; ``draws`` are resampled from the pooled draws with
        their PSIS weights.
    elbo_draws : Monte Carlo draws per iterate to estimate its ELBO.
    history : the number J of L-BFGS pairs kept (the rank of the low-rank term is at most 2J).
    max_passes : L-BFGS runs per path: a path whose end is not at a mode (its Newton decrement is above
        ``DECREMENT_TOL``) is continued from there in coordinates whitened by the Hessian at that end
        (:func:`whitened_path`); 1 is the paper's single run.

    ``converged`` is True when every path ended at a mode by the Newton decrement, g' (-H)^-1 g at most
    ``DECREMENT_TOL``: a gradient small relative to the curvature, whatever the parameters' units (L-BFGS's own
    relative-reduction test stops wherever progress per step is small, which on a ridge is far from the mode). A
    path that did not is named in a ``ConvergenceWarning``. The approximation judges itself from its pooled draws
    (:func:`inference.self_diagnosis`): ``info`` holds the draws (``q_theta``), their log densities under their own
    paths' mixture (``q_logq``) and under the model (``q_logp``), the PSIS ``khat``, ``reliable`` and
    ``reliability``, ``psis_params``, ``mode_spread_sd`` (how far apart the paths' ends are, in pooled sds: a few
    or more when the paths found different modes), and per path the chosen iterate, its ELBO, the number of L-BFGS
    iterations and passes, and the decrement; ``trace`` is the ELBO along the best path.
    """
    for name, value in (("num_paths", num_paths), ("draws_per_path", draws_per_path), ("draws", draws),
                        ("elbo_draws", elbo_draws), ("history", history), ("max_iter", max_iter),
                        ("max_passes", max_passes)):
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
    first_map = None
    if start is None and hooks is not None and hooks.init is not None:
        starts = starting_points(model, n_init=num_paths, seed=rng)  # the model's own (randomised) initialiser
    else:  # the paper's starts, uniform(-jitter, jitter), in units of the local scale at the base point
        base = fns.initial_theta if start is None else starting_points(model, start=start)[0]
        local = start_map(vg, base)
        if local is not None:
            first_map = (base, *local)
            base = np.zeros_like(base)
        starts = [base + rng.uniform(-jitter, jitter, size=base.shape) for _ in range(num_paths)]
    paths = [whitened_path(logp, vg, theta0, rng, max_passes=max_passes, first_map=first_map, history=history,
                           draws=draws_per_path, elbo_draws=elbo_draws, max_iter=max_iter) for theta0 in starts]
    theta = np.concatenate([p["theta"] for p in paths])
    # the pooled draws come from the equal mixture of the paths' Gaussians: their density under it (the balance
    # heuristic of multiple importance sampling), not under each draw's own path, so that a path whose Gaussian is
    # narrower than the others' does not make the pooled ratios heavy-tailed where the mixture covers the posterior
    logq = logsumexp(np.array([p["logpdf"](theta) for p in paths]), axis=0) - np.log(len(paths)) \
        if len(paths) > 1 else paths[0]["logq"]
    lp = np.concatenate([p["logp"] for p in paths])
    path_ok = [bool(p["decrement"] <= DECREMENT_TOL) for p in paths]
    converged = all(path_ok)
    if not converged:
        messages = "; ".join(f"Newton decrement {p['decrement']:.3g} after {p['passes']} passes "
                             f"({p['lbfgs'].message})" for p, good in zip(paths, path_ok) if not good)
        warn_not_converged("pathfinder", f"{len(path_ok) - sum(path_ok)} of {len(paths)} paths did not reach a "
                           f"mode: {messages}")
    ok = np.isfinite(lp)
    if ok.sum() < 5:
        raise RuntimeError(f"pathfinder: the log density is finite at only {int(ok.sum())} of {len(lp)} draws")
    constrained = fns.constrained_many(theta[ok])
    diagnosis = self_diagnosis("pathfinder", fns, theta[ok], logq[ok], converged=converged,
                               constrained=constrained, logp=lp[ok], resampled=True)
    lw = diagnosis["psis_log_weights"]
    chosen = rng.choice(int(ok.sum()), size=draws, replace=True, p=np.exp(lw - logsumexp(lw)))
    draws_out, params, sd = summarise_draws(model, {n: v[chosen][None] for n, v in constrained.items()}, rng)
    loglik = fns.loglik_at({n: params[n] for n in fns.free_names()})
    spread = _mode_spread(paths)
    if spread > MODE_SPREAD_SD:  # reported, not flagged: the pooled, importance-weighted draws may cover both
        diagnosis["notes"] = [f"the paths ended {spread:.1f} sd apart: the posterior may have several modes"]
    best_path = max(paths, key=lambda p: p["elbo"][p["best"]])
    info = {"objective": "ELBO", **diagnosis, "mode_spread_sd": spread,
            "paths": [{"best_iteration": p["best"], "elbo": float(p["elbo"][p["best"]]),
                       "lbfgs_iterations": p["n_iter"], "passes": p["passes"], "decrement": p["decrement"],
                       "converged": good} for p, good in zip(paths, path_ok)]}
    trace = best_path["elbo"][np.isfinite(best_path["elbo"])]
    return Result(method="pathfinder", params=params, sd=sd, loglik=loglik, trace=trace,
                  n_iter=int(sum(p["n_iter"] for p in paths)), converged=converged, time_compile=t_compile,
                  time_run=time.perf_counter() - t0, draws=draws_out, info=info)
