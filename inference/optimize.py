"""Maximum likelihood and MAP by optimisation on a ``pm.Model``, with Laplace / observed-information errors.

Every numerical decision here is scale-free: multiplying a parameter by a constant (rescaling the data it
multiplies) changes the answers only by that constant. Each parameter's scale is s_i = |H_ii|^-1/2, the inverse
square root of its curvature (its standard error when the others are held fixed), and

* the Newton steps are taken in the coordinates theta_i / s_i (:func:`minimise`), so the trust region is an
  ellipsoid of a few standard errors, not a ball in whatever units the parameters have (where the information is
  not positive definite, far from the optimum of a multimodal objective, s_i is at most the parameter's own
  magnitude, and a run that stops on a flat or upward-curving direction tries steps along it);
* the difference steps of the Hessians are fractions of s_i (:func:`difference_hessian`, :func:`step_hessian`), so
  the Hessian has the same relative accuracy for a coefficient of 1e-4 as for one of 1e4;
* convergence is judged by the Newton decrement g' (-H)^-1 g, twice the log density still to gain by a Newton step,
  in nats (:data:`DECREMENT_TOL`), not by an absolute gradient;
* singularity is judged on the information scaled to a unit diagonal (:func:`unconstrained_cov`).

The standard errors' Hessian is the difference one; where its unit-diagonal form is ill-conditioned (smallest
eigenvalue below :data:`EXACT_BELOW`, as for an uncentred covariate strongly correlated with the intercept) and the
model runs on the uncompiled backend, it is replaced by PyTensor's symbolic Hessian when the model's graph has one.
"""

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

__all__ = ["difference_hessian", "laplace_sd", "map_estimate", "minimise", "mle", "nan_sd", "observed_information",
           "step_hessian", "unconstrained_cov"]

EPS = np.finfo(float).eps
# central-difference step of the standard errors' Hessian, as a fraction of each parameter's scale s_i
HESSIAN_STEP = 1e-2
# a first step within this factor of HESSIAN_STEP * s_i (s_i measured with that step) is kept
STEP_RATIO = 4.0
# refinements of a difference step to the curvature it measures
MAX_REFINE = 8
# twice the log density a Newton step would still gain: below this (in nats) the point is the optimum
DECREMENT_TOL = 1e-10
# trust-exact runs per start, each in coordinates rescaled to the curvature where the previous one stopped
MAX_ROUNDS = 5
# first trust region, in scale units: a step of up to 10 conditional sds
INITIAL_TRUST_RADIUS = 10.0
# largest trust region, in scale units: s_i is a parameter's conditional sd, and where parameters are strongly
# correlated the optimum can be many orders of magnitude more of them away than scipy's default radius (1000) allows
MAX_TRUST_RADIUS = 1e12
# a scale that changed by more than this factor since the run began calls for another run
RESCALE_RATIO = 2.0
# a run that ends where the unit-diagonal Hessian has an eigenvalue below ESCAPE_CURVATURE (flat or curving up)
# tries steps along that direction, one kept when it gains more than ESCAPE_NATS
ESCAPE_CURVATURE = 1e-6
ESCAPE_NATS = 1e-3
# Newton steps on the final Hessian after the trust-region runs (gradient-only acceptance), taken while the
# decrement is above the round-off floor: the trust-region runs stop on the scaled gradient, which leaves up to
# gtol^2 / (smallest unit-diagonal eigenvalue) nats where parameters are strongly correlated
POLISH_STEPS = 3
POLISH_FLOOR = 1e-20
# a polish that moved by more than 1e-8 sd (a decrement of 1e-16 nats) recomputes the information where it ended;
# a shorter one changes it by less than the information's own error
POLISH_RECOMPUTE = 1e-16
# smallest eigenvalue of the unit-diagonal information that counts as regular: difference Hessians (accurate to
# about 1e-11 in that form, so that their inverse keeps 3 digits at worst) and symbolic ones (round-off only)
SINGULAR_RTOL = 1e-8
SINGULAR_RTOL_EXACT = 1e-12
# below this smallest unit-diagonal eigenvalue the difference information is recomputed symbolically, where it can be
EXACT_BELOW = 1e-4


def mle(model, *, start=None, n_init: int = 1, seed=None, max_iter: int = 1000, gtol: float = 1e-9) -> Result:
    """Maximum likelihood: maximise the observed-data log-likelihood only.

    The objective is ``model.logp(vars=model.observed_RVs, jacobian=False)``: the priors are ignored entirely. It is
    maximised over the unconstrained value variables with exact PyTensor gradients and Newton steps in coordinates
    scaled to each parameter's curvature (scipy's ``trust-exact``, see :func:`minimise`), so the optimum is reached
    to machine precision whatever the units of the parameters. Standard errors come from the observed information
    (the negative Hessian) at the optimum, carried to the constrained parameters by the delta method (exact at a
    stationary point).

    Parameters
    ----------
    model : pm.Model
    start : dict or list of dict, optional
        Constrained starting values keyed by free-variable name. Default: the model's own initialiser for zoo models
        (the same one EM uses), else ``model.initial_point()``.
    n_init : int
        Number of starts when ``start`` is not given; the best final log-likelihood wins.
    seed : int or numpy.random.Generator, optional
    max_iter : int
        Newton iterations per start, in all.
    gtol : float
        Tolerance of the trust-region iterations on the gradient in the scaled coordinates (nats per scale unit).
        The result is ``converged`` when the Newton decrement at the optimum is below :data:`DECREMENT_TOL`.

    Returns
    -------
    Result
        ``info`` holds ``theta`` (the unconstrained optimum), ``decrement`` (the Newton decrement there, in nats),
        ``grad_max``, ``message`` and the final objective of every start.
    """
    return _optimise(model, "loglik", "mle", start=start, n_init=n_init, seed=seed, max_iter=max_iter, gtol=gtol)


def map_estimate(model, *, start=None, n_init: int = 1, seed=None, max_iter: int = 1000,
                 gtol: float = 1e-9) -> Result:
    """Maximum a posteriori: maximise the full log density *without* the Jacobian of the value transforms.

    Dropping the Jacobian makes the answer the mode of the posterior in the constrained space (the one a reader
    of the model expects, and the one MAP-EM reaches), not the mode of the transformed density. Laplace standard
    errors come from the Hessian of that log density at the mode. Arguments and result as for :func:`mle`.
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
    before = fns.compile_seconds
    t0 = time.perf_counter()
    res, trace, runs = minimise(fns, kind, starts, max_iter=max_iter, gtol=gtol)
    theta = res.x
    params = fns.constrained(theta)
    sd = laplace_sd(fns, theta, kind, method, information=res.information, exact=res.exact_hessian)
    loglik = float(fns.value("loglik")(theta))
    gnorm = float(np.max(np.abs(vg(theta)[1]))) if theta.size else 0.0
    compile_seconds += fns.compile_seconds - before
    t_run = time.perf_counter() - t0 - (fns.compile_seconds - before)
    info = {"objective": "log-likelihood" if kind == "loglik" else "log density (no Jacobian)",
            "starts": [-float(r.fun) for r in runs], "message": str(res.message), "grad_max": gnorm,
            "decrement": float(res.decrement), "theta": theta}
    if not res.converged:
        warn_not_converged(method, res.why)
    return Result(method=method, params=params, sd=sd, loglik=loglik, trace=np.array(trace),
                  n_iter=int(res.nit), converged=bool(res.converged),
                  time_compile=compile_seconds, time_run=t_run, info=info)


def minimise(fns, kind: str, starts, *, max_iter: int = 1000, gtol: float = 1e-9):
    """Maximise the objective ``kind`` from every start by Newton steps in coordinates scaled to the curvature.

    Each start runs scipy's ``trust-exact`` (exact gradient, Newton steps in a trust region) on
    u = (theta - theta_ref) / s, with s_i = |H_ii|^-1/2 measured at theta_ref (:func:`_scales`); a run that stops
    short of ``gtol`` (on the scaled gradient) where the scales have changed by more than ``RESCALE_RATIO`` is
    resumed in coordinates rescaled there, and one that stops where the Hessian is flat or curves up along some
    direction goes on from a step along it when that gains (:func:`_escape`), up to ``MAX_ROUNDS`` runs and
    ``max_iter`` iterations in all. The steps' Hessian is the forward
    difference of the exact gradient from the point the optimiser has just evaluated (:func:`step_hessian`); from
    the first one whose unit-diagonal form is nearly singular on (see :func:`_ill_conditioned`), PyTensor's symbolic
    Hessian where the model is on the uncompiled backend and its graph has one, since the differences' error would
    then steer the steps.

    The best start is then settled: the observed information (:func:`observed_information`) is computed at its
    optimum, up to ``POLISH_STEPS`` Newton steps on it are taken while they lower the Newton decrement
    lambda^2 = g' (-H)^-1 g (a gradient-only test, since near the optimum the objective's own round-off hides the
    gain), and the result is converged when lambda^2 <= ``DECREMENT_TOL`` nats. Where the information is not
    positive definite (a singular one) the test is :func:`_stationary_where_singular`'s: the decrement on its regular
    directions and the scaled gradient along the singular ones.

    Parameters
    ----------
    fns : ModelFunctions
    kind : str
        The objective: ``"loglik"``, ``"logpost"`` or ``"logp"``.
    starts : list of ndarray
        Unconstrained starting points.
    max_iter : int
        Iterations per start, in all (Newton polish steps included).
    gtol : float
        The trust-region runs' tolerance on the scaled gradient.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        The best start's result (``x``, ``fun`` = minus the objective, ``nit``, ``message``, ``success``) with
        ``scale`` (s at the optimum), ``information`` (-H there, or None when not finite), ``exact_hessian``
        (whether it is the symbolic one), ``decrement`` (lambda^2, NaN when -H is not positive definite),
        ``converged`` and ``why`` (what failed, when not converged).
    trace : list of float
        The best start's objective per iteration, the start's own value first.
    runs : list of OptimizeResult
        Every start's trust-region result, in the order of ``starts``.
    """
    vg = fns.value_and_grad(kind)
    built = []

    def exact_hessian():
        if not built:
            built.append(_symbolic_hessian(fns, kind))
        return built[0]

    runs = [_newton_run(vg, theta0, max_iter=max_iter, gtol=gtol, exact_hessian=exact_hessian) for theta0 in starts]
    finite = [(r, t) for r, t in runs if np.isfinite(r.fun)]
    if not finite:
        raise RuntimeError(f"{kind}: the objective is not finite at any start")
    res, trace = min(finite, key=lambda rt: rt[0].fun)
    _settle(fns, kind, vg, res, trace, max_iter=max_iter)
    return res, trace, [r for r, _ in runs]


def _negated(vg):
    """(value, gradient) of minus the objective, the gradient a fresh array."""

    def fun(theta):
        v, g = vg(theta)
        return -float(v), -np.array(g, dtype=float)

    return fun


def _scales(H, theta) -> np.ndarray:
    """The step coordinates' scales at ``theta``: s_i = |H_ii|^-1/2 of the information H there.

    Where H is not regularly positive definite (far from an optimum of a multimodal objective, a parameter the data
    there say nothing about) its diagonal is no guide to how far a parameter may move: there s_i is at most
    max(1, |theta_i|), the parameter's own magnitude, and that where H_ii is zero or not finite. At a point where the
    objective is concave, as everywhere for a log-concave one, the scales are the curvature's alone."""
    theta = np.asarray(theta, dtype=float)
    d = np.abs(np.diag(np.asarray(H, dtype=float)))
    ok = np.isfinite(d) & (d > 0)
    s = np.where(ok, 1.0 / np.sqrt(np.where(ok, d, 1.0)), np.inf)
    if _unit_diagonal(H, SINGULAR_RTOL) is None:
        s = np.minimum(s, np.maximum(1.0, np.abs(theta)))
    return s


def _newton_run(vg, theta0, *, max_iter, gtol, exact_hessian=None):
    """One start of :func:`minimise`: trust-exact in scaled coordinates, rescaled between runs. ``exact_hessian``:
    a callable giving the objective's symbolic Hessian function (or None where there is none), asked for at the
    first ill-conditioned difference Hessian. Returns the scipy result (``x`` in theta, ``scale`` added) and the
    objective trace."""
    neg = _negated(vg)
    theta = np.array(theta0, dtype=float)
    n = theta.size
    exact = None  # the symbolic Hessian function once asked for (False: the model has none)

    def curvature(th, g0, s):
        """The Hessian of minus the objective at ``th`` for a step (``g0``: its gradient there): the difference one,
        or the symbolic one from the first ill-conditioned difference Hessian on, where the model has it."""
        nonlocal exact
        if exact is None:
            H = step_hessian(lambda t: neg(t)[1], th, g0, scale=s)
            if exact_hessian is None or not _ill_conditioned(H):
                return H
            exact = exact_hessian() or False
        if exact:
            H = -np.asarray(exact(th), dtype=float)
            if np.all(np.isfinite(H)):
                return 0.5 * (H + H.T)
        return step_hessian(lambda t: neg(t)[1], th, g0, scale=s)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f, g = neg(theta)
        trace = [-f]
        if not np.isfinite(f) or n == 0:
            return optimize.OptimizeResult(x=theta, fun=f, nit=0, success=False, scale=np.ones(n),
                                           message="the objective is not finite at the start"
                                           if not np.isfinite(f) else "no parameters"), trace
        kept = {"theta": theta.copy(), "H": curvature(theta, g, None)}
        scale = _scales(kept["H"], theta)
        nit = 0
        for _ in range(MAX_ROUNDS):
            ref, s = theta.copy(), scale.copy()
            last = {}

            def fun(u, ref=ref, s=s, last=last):
                th = ref + s * u
                f, g = neg(th)
                last["theta"], last["grad"] = th, g
                if not (np.isfinite(f) and np.all(np.isfinite(g))):
                    # a step out of the density's domain (or where it overflows): rejected, the region shrinks
                    return np.inf, np.zeros(n)
                return f, g * s

            def hess(u, ref=ref, s=s, last=last):
                th = ref + s * u
                if not np.array_equal(kept["theta"], th):
                    g0 = last["grad"] if "theta" in last and np.array_equal(last["theta"], th) else neg(th)[1]
                    H = curvature(th, g0, s)
                    if not np.all(np.isfinite(H)):  # where the objective is not finite: scipy rejects the point
                        return kept["H"] * s[:, None] * s[None, :]
                    kept["theta"], kept["H"] = th, H
                return kept["H"] * s[:, None] * s[None, :]

            def callback(intermediate_result):  # scipy passes the result object to a parameter of this name
                trace.append(-float(intermediate_result.fun))

            res = optimize.minimize(fun, np.zeros(n), jac=True, hess=hess, method="trust-exact", callback=callback,
                                    options={"maxiter": max_iter - nit, "gtol": gtol,
                                             "initial_trust_radius": INITIAL_TRUST_RADIUS,
                                             "max_trust_radius": MAX_TRUST_RADIUS})
            theta = ref + s * res.x
            nit += int(res.nit)
            if nit >= max_iter or not np.isfinite(res.fun):
                break
            if not np.array_equal(kept["theta"], theta):
                kept["theta"], kept["H"] = theta.copy(), curvature(theta, neg(theta)[1], s)
            scale = _scales(kept["H"], theta)
            if res.success or np.all(np.abs(np.log(scale / s)) <= np.log(RESCALE_RATIO)):
                # stopped where the scales hold: done, unless the objective curves up along some direction there
                # (a saddle, or a plateau a parameter's data have left), which a step along it may leave
                escape = _escape(neg, theta, float(res.fun), kept["H"])
                if escape is None:
                    break
                theta, f = escape
                trace.append(-f)
                nit += 1
                kept["theta"], kept["H"] = theta.copy(), curvature(theta, neg(theta)[1], scale)
                scale = _scales(kept["H"], theta)
    res.x, res.nit, res.scale = theta, nit, scale
    res.pop("jac", None)
    res.pop("hess", None)
    return res, trace


def _escape(neg, theta, f, H):
    """(theta, minus the objective there) a step away from ``theta`` along its flattest or most upward-curving
    direction, or None when the Hessian there has no such direction or no step along it gains ``ESCAPE_NATS``.

    ``H`` is the Hessian of minus the objective at ``theta``. The direction is the eigenvector of its unit-diagonal
    form D H D (D = |diag H|^-1/2 where the diagonal is not zero) with the smallest eigenvalue, when that is below
    ``ESCAPE_CURVATURE``: a saddle, or a plateau that a parameter's data have left (a mixture component that lost
    its points), where the gradient vanishes but the optimum is elsewhere. There is no curvature to size a step
    along it, so it is sized by the point itself: 1/4, 1/2 and 1 times max(1, max |theta_i|) over the parameters it
    moves, both ways."""
    H = np.asarray(H, dtype=float)
    if not np.all(np.isfinite(H)):
        return None
    diag = np.abs(np.diag(H))
    d = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1.0)
    mu, V = np.linalg.eigh(0.5 * (H + H.T) * d[:, None] * d[None, :])
    if not len(mu) or mu[0] >= ESCAPE_CURVATURE:
        return None
    direction = d * V[:, 0]
    direction /= np.max(np.abs(direction))
    moved = np.abs(direction) >= 0.1
    length = max(1.0, float(np.max(np.abs(theta[moved]))))
    gain = ESCAPE_NATS + 64 * EPS * abs(f)  # above the objective's round-off however large it is
    best = None
    for t in (0.25, -0.25, 0.5, -0.5, 1.0, -1.0):
        point = theta + t * length * direction
        value = neg(point)[0]
        if np.isfinite(value) and value < f - gain and (best is None or value < best[1]):
            best = (point, float(value))
    return best


def _settle(fns, kind, vg, res, trace, *, max_iter):
    """Information, Newton polish and the convergence verdict at the best start's optimum (see :func:`minimise`);
    sets the fields of ``res`` named there and extends ``trace`` by the polish steps' objective."""
    theta = res.x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        info, exact = observed_information(fns, kind, theta, scale=res.scale)
        g = np.array(vg(theta)[1], dtype=float)
        lam2 = _decrement(info, g, exact)
        steps, largest = 0, 0.0
        while (np.isfinite(lam2) and POLISH_FLOOR < lam2 < 1.0 and steps < POLISH_STEPS
               and res.nit < max_iter):
            new = theta + _newton_step(info, g)
            v, g_new = vg(new)
            g_new = np.array(g_new, dtype=float)
            lam2_new = _decrement(info, g_new, exact)
            if not (np.isfinite(v) and lam2_new < lam2):
                break
            largest = max(largest, lam2)
            theta, g, lam2 = new, g_new, lam2_new
            res.fun, res.nit = -float(v), res.nit + 1
            trace.append(float(v))
            steps += 1
        res.x = theta
        if largest > POLISH_RECOMPUTE:
            info, exact = observed_information(fns, kind, theta, scale=res.scale)
            lam2 = _decrement(info, g, exact)
    res.information = info if np.all(np.isfinite(info)) else None
    res.exact_hessian = exact
    res.decrement = lam2
    if not np.isfinite(res.fun):
        res.converged, res.why = False, f"the objective is not finite at the optimum ({res.message})"
    elif np.isfinite(lam2):
        res.converged = bool(lam2 <= DECREMENT_TOL)
        res.why = (f"the Newton decrement g'(-H)^-1 g is {lam2:.3g} nats, above {DECREMENT_TOL:g}, after "
                   f"{res.nit} iterations ({res.message})")
    else:
        res.converged, res.why = _stationary_where_singular(info, g, res.fun, exact)
        res.why += f", after {res.nit} iterations ({res.message})"


def _stationary_where_singular(info, g, fun, exact: bool):
    """(whether, what failed) the gradient ``g`` vanishes where the information ``info`` is not positive definite.

    On the coordinates with positive curvature, in the unit-diagonal form D info D = V diag(mu) V': the decrement
    over its regular directions (mu above the singularity tolerance) must be at most ``DECREMENT_TOL`` and the
    gradient along the others at most sqrt(``DECREMENT_TOL``) nats per conditional sd. A coordinate without
    curvature has no scale to measure its gradient in: there it must be below 1e-6 max(1, |objective|).
    """
    info, g = np.asarray(info, dtype=float), np.asarray(g, dtype=float)
    if not (np.all(np.isfinite(info)) and np.all(np.isfinite(g))):
        return False, "the information or the gradient is not finite at the optimum"
    diag = np.diag(info)
    curved = diag > 0
    flat_limit = 1e-6 * max(1.0, abs(float(fun)))
    if np.any(np.abs(g[~curved]) > flat_limit):
        worst = float(np.max(np.abs(g[~curved])))
        return False, (f"the gradient is {worst:.3g} along a parameter without curvature, above {flat_limit:.3g}")
    if not np.any(curved):
        return True, ""
    d = 1.0 / np.sqrt(diag[curved])
    S = info[np.ix_(curved, curved)] * d[:, None] * d[None, :]
    mu, V = np.linalg.eigh(0.5 * (S + S.T))
    z = V.T @ (d * g[curved])
    regular = mu > (SINGULAR_RTOL_EXACT if exact else SINGULAR_RTOL)
    gain = float(np.sum(z[regular] ** 2 / mu[regular]))
    along = float(np.max(np.abs(z[~regular]), initial=0.0))
    if gain <= DECREMENT_TOL and along <= np.sqrt(DECREMENT_TOL):
        return True, ""
    return False, (f"the information is not positive definite: the Newton decrement on its regular directions is "
                   f"{gain:.3g} nats (tolerance {DECREMENT_TOL:g}) and the gradient along the singular ones "
                   f"{along:.3g} per conditional sd (tolerance {np.sqrt(DECREMENT_TOL):g})")


def _unit_diagonal_form(info):
    """(d, d info d) with d = diag(info)^-1/2, symmetrised; None when ``info`` is not finite or a diagonal entry is
    not positive."""
    info = np.asarray(info, dtype=float)
    if not np.all(np.isfinite(info)):
        return None
    diag = np.diag(info)
    if np.any(diag <= 0):
        return None
    d = 1.0 / np.sqrt(diag)
    S = info * d[:, None] * d[None, :]
    return d, 0.5 * (S + S.T)


def _unit_diagonal(info, rtol):
    """(d, L) with d = diag(info)^-1/2 and L the Cholesky factor of d info d, or None when that matrix is not
    positive definite or its smallest eigenvalue is at most ``rtol`` (or ``info`` is not finite)."""
    form = _unit_diagonal_form(info)
    if form is None:
        return None
    d, S = form
    if len(S) and np.linalg.eigvalsh(S)[0] <= rtol:
        return None
    try:
        return d, np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return None


def _ill_conditioned(info) -> bool:
    """Whether ``info`` (finite, positive diagonal) has a unit-diagonal eigenvalue smaller than ``EXACT_BELOW`` in
    magnitude: nearly singular, where a difference Hessian's error would carry into its inverse or Newton steps (a
    clearly indefinite one, far from an optimum, is not)."""
    form = _unit_diagonal_form(info)
    if form is None:
        return False
    S = form[1]
    return bool(len(S)) and bool(np.min(np.abs(np.linalg.eigvalsh(S))) < EXACT_BELOW)


def _newton_step(info, g) -> np.ndarray:
    """info^-1 g, solved in the unit-diagonal form."""
    d, L = _unit_diagonal(info, -np.inf)
    z = np.linalg.solve(L.T, np.linalg.solve(L, d * g))
    return d * z


def _decrement(info, g, exact: bool) -> float:
    """lambda^2 = g' info^-1 g, NaN when ``info`` is not (regularly) positive definite."""
    if not np.all(np.isfinite(g)) or _unit_diagonal(info, SINGULAR_RTOL_EXACT if exact else SINGULAR_RTOL) is None:
        return float("nan")
    return float(g @ _newton_step(info, g))


def step_hessian(gradient, theta, g0, scale=None) -> np.ndarray:
    """Hessian at ``theta`` by forward differences of ``gradient`` (whose value there is ``g0``), symmetrised.

    Column i is (gradient(theta + h_i e_i) - g0) / h_i with h_i = sqrt(eps) max(s_i, |theta_i|), s_i = ``scale[i]``
    (1 when ``scale`` is None), rounded so that theta_i + h_i is exact: one gradient call per parameter, accurate to
    about 1e-8 relative, enough for Newton steps (the optimum is where the exact gradient vanishes)."""
    theta = np.array(theta, dtype=float)
    n = theta.size
    s = np.ones(n) if scale is None else np.asarray(scale, dtype=float)
    H = np.empty((n, n))
    for i in range(n):
        t = theta[i]
        theta[i] = t + np.sqrt(EPS) * max(s[i], abs(t))
        h = theta[i] - t
        H[:, i] = (gradient(theta) - g0) / h
        theta[i] = t
    return 0.5 * (H + H.T)


def _central(gradient, theta, i, h) -> np.ndarray:
    """(gradient(theta + h e_i) - gradient(theta - h e_i)) / (2h), with the steps that floating point takes;
    ``theta`` is modified in place and restored."""
    t = theta[i]
    theta[i] = t + h
    up, hp = gradient(theta), theta[i] - t
    theta[i] = t - h
    down, hm = gradient(theta), t - theta[i]
    theta[i] = t
    return (up - down) / (hp + hm)


def difference_hessian(gradient, theta, scale=None):
    """Hessian at ``theta`` by central differences of ``gradient`` in steps scaled to each parameter's curvature.

    Column i is the Richardson extrapolation (4 D(h_i / 2) - D(h_i)) / 3 of the central differences
    D(h) = (gradient(theta + h e_i) - gradient(theta - h e_i)) / 2h (error O(h^4)), with h_i = ``HESSIAN_STEP`` s_i
    and s_i = |H_ii|^-1/2: every parameter moves by the same fraction of its own scale, so the Hessian scaled to a
    unit diagonal has the same relative accuracy (about 1e-11) whatever the parameters' units. s_i is measured with
    the step itself: a first step, ``HESSIAN_STEP * scale[i]`` when a guess ``scale`` is given, else
    1e-3 max(1, |theta_i|), is replaced by ``HESSIAN_STEP`` times the scale it measures until the two agree within
    ``STEP_RATIO`` (a step whose gradients are not finite is shrunk 1000-fold), up to ``MAX_REFINE`` times. Four
    gradient calls per parameter when the guess is good, two more per refinement.

    Parameters
    ----------
    gradient : callable
        theta -> gradient (a fresh array).
    theta : array_like
    scale : array_like, optional
        A guess of s (for example the optimiser's).

    Returns
    -------
    H : ndarray
        The symmetrised Hessian.
    scale : ndarray
        The s_i measured (NaN where the curvature is zero or not finite).
    """
    theta = np.array(theta, dtype=float)
    n = theta.size
    if scale is not None and np.shape(scale) != (n,):
        raise ValueError(f"scale: expected {n} values (one per parameter), got shape {np.shape(scale)}")
    H = np.empty((n, n))
    s = np.full(n, np.nan)
    for i in range(n):
        t = theta[i]
        guess = np.nan if scale is None else float(scale[i])
        h = HESSIAN_STEP * guess if np.isfinite(guess) and guess > 0 else 1e-3 * max(1.0, abs(t))
        for _ in range(MAX_REFINE):
            col = _central(gradient, theta, i, h)
            if not np.all(np.isfinite(col)):
                h *= 1e-3
                continue
            d = abs(col[i])
            if d == 0:  # no curvature to scale to: keep the step
                break
            s[i] = 1.0 / np.sqrt(d)
            target = HESSIAN_STEP * s[i]
            if target / STEP_RATIO <= h <= target * STEP_RATIO:
                break
            h = target
        else:
            col = _central(gradient, theta, i, h)
        H[:, i] = (4.0 * _central(gradient, theta, i, h / 2) - col) / 3.0
    return 0.5 * (H + H.T), s


def _symbolic_hessian(fns, kind: str):
    """``fns.hessian(kind, exact=True)`` on the uncompiled backend when the graph has second derivatives, else None
    (on the compiled backend a symbolic Hessian can take minutes to compile)."""
    if fns.backend != "python":
        return None
    try:
        return fns.hessian(kind, exact=True)
    except Exception:  # an Op without second derivatives (whatever it raises)
        return None


def observed_information(fns, kind: str, theta, scale=None):
    """-H, the negative Hessian of the objective ``kind`` at ``theta``, and whether it is the symbolic one.

    The Hessian is :func:`difference_hessian` of the exact gradient (``scale``: a guess of the parameters' scales).
    Where its unit-diagonal form has an eigenvalue below ``EXACT_BELOW`` (an ill-conditioned or singular information,
    whose inverse would carry the differences' error up) and the model runs on the uncompiled backend, PyTensor's
    symbolic Hessian (``fns.hessian(kind, exact=True)``) replaces it when the graph has second derivatives.
    """
    vg = fns.value_and_grad(kind)
    H, _ = difference_hessian(lambda th: np.array(vg(th)[1], dtype=float), theta, scale)
    info = -H
    if _ill_conditioned(info):
        hessian = _symbolic_hessian(fns, kind)
        if hessian is not None:
            exact = -np.asarray(hessian(theta), dtype=float)
            if np.all(np.isfinite(exact)):
                return 0.5 * (exact + exact.T), True
    return info, False


def unconstrained_cov(fns, theta, kind: str, method: str, hess=None, *, information=None, exact: bool = False):
    """(-H)^-1 of the objective ``kind`` at ``theta``, or None (with a warning) when -H is not positive definite.

    Parameters
    ----------
    fns : ModelFunctions
    theta : ndarray
    kind, method : str
        The objective, and the estimator named in the warning.
    hess : callable, optional
        theta -> the Hessian to use instead of :func:`observed_information`.
    information : ndarray, optional
        -H already computed at ``theta`` (for example :func:`minimise`'s); ``exact`` says whether it is symbolic.

    Notes
    -----
    -H is judged on its unit-diagonal form D (-H) D, D = diag(-H)^-1/2, which is the same whatever the parameters'
    units: a smallest eigenvalue at most ``SINGULAR_RTOL`` (``SINGULAR_RTOL_EXACT`` for a symbolic Hessian) is zero
    within the Hessian's accuracy, and the information is singular.
    """
    if information is not None:
        info = np.asarray(information, dtype=float)
        if info.shape != (np.size(theta),) * 2:
            raise ValueError(f"information: expected a {np.size(theta)} x {np.size(theta)} matrix, got shape "
                             f"{info.shape}")
    elif hess is not None:
        info = -np.asarray(hess(theta), dtype=float)
    else:
        info, exact = observed_information(fns, kind, theta)
    if not np.all(np.isfinite(info)):
        warnings.warn(f"{method}: the Hessian is not finite at the optimum; standard errors are NaN",
                      RuntimeWarning, stacklevel=3)
        return None
    info = 0.5 * (info + info.T)
    factor = _unit_diagonal(info, SINGULAR_RTOL_EXACT if exact else SINGULAR_RTOL)
    if factor is None:
        warnings.warn(f"{method}: the Hessian at the optimum is not negative definite (singular information); "
                      "standard errors are NaN", RuntimeWarning, stacklevel=3)
        return None
    d, L = factor
    Linv = np.linalg.solve(L, np.eye(len(info)))
    cov = (Linv.T @ Linv) * d[:, None] * d[None, :]
    return 0.5 * (cov + cov.T)


def nan_sd(params: dict) -> dict:
    """NaN standard errors shaped like ``params`` (no information, or none computed)."""
    return {n: np.full(np.shape(v), np.nan) for n, v in params.items()}


def laplace_sd(fns, theta, kind: str, method: str, *, information=None, exact: bool = False) -> dict:
    """Standard errors of the constrained parameters from the Hessian of ``kind`` at ``theta``.

    cov(theta) = (-H)^-1 in the unconstrained space, then J cov J^T for the constrained parameters (delta method).
    A Hessian that is not negative definite gives NaN standard errors and a warning. ``information`` and ``exact``:
    as for :func:`unconstrained_cov`.
    """
    names = fns.param_names
    params = fns.constrained(theta)
    cov_u = unconstrained_cov(fns, theta, kind, method, information=information, exact=exact)
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
