"""Small helpers shared by the model modules: input checks, reading a model back, simulating from it."""

from __future__ import annotations

import weakref

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.pytensorf import compile as compile_pymc
from pymc.pytensorf import reseed_rngs
from pytensor.compile.mode import Mode
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant
from pytensor.graph.replace import graph_replace
from scipy import optimize

from inference.base import Example, hooks_for
from inference.checks import check
from inference.modes import COMPILED_MODE, PY_MODE

__all__ = ["PRIOR_CONTAINERS", "Example", "as_vector", "check_k", "check_n", "data_of", "dirichlet_map",
           "dist_params", "draw_mode", "halfnormal_scale_map", "has_prior_containers", "normal_mean_map", "positive",
           "prior_containers", "prior_options", "simulate_from", "swapped_priors"]


MAX_EXACT_INTEGER = 2.0**53


def as_vector(values, name: str, *, integer: bool = False, nonnegative: bool = False) -> np.ndarray:
    """A 1-D float array of finite values, or a ValueError naming ``name`` and what was expected."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got values that are not numeric") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of observations, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one observation, got none")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: expected finite values, found {int(bad.sum())} NaN or inf (first at index {first})")
    if nonnegative and (arr < 0).any():
        first = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{name}: expected non-negative counts, found {arr[first]:g} at index {first}")
    if integer and (arr != np.round(arr)).any():
        first = int(np.flatnonzero(arr != np.round(arr))[0])
        raise ValueError(f"{name}: expected integer counts, found {arr[first]:g} at index {first}")
    if integer and (np.abs(arr) >= MAX_EXACT_INTEGER).any():
        first = int(np.flatnonzero(np.abs(arr) >= MAX_EXACT_INTEGER)[0])
        raise ValueError(f"{name}: expected counts below 2^53 (9.0e15), the largest integers a float holds exactly; "
                         f"found {arr[first]:g} at index {first}")
    return arr


def once_per_params(fn):
    """``fn(params)`` evaluated once per parameter dict: EM asks for the E-step's by-products at the same
    parameters twice, once for the log-likelihood after a step and once for the next step. Keeps the last only."""
    last = []

    def cached(p):
        if not last or last[0] is not p:
            last[:] = [p, fn(p)]
        return last[1]

    return cached


def check_n(n) -> int:
    """A sample size for a simulator: a positive integer, or a ValueError naming ``n``."""
    return int(check(n, "n", "positive integer"))


def positive(value, name: str) -> float:
    """A positive finite float, or a ValueError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return v


def normal_prior(prior, name: str) -> tuple[float, float]:
    """(mean, sd) of a Normal prior: a finite mean and a positive sd, or a ValueError naming ``name``."""
    try:
        m, s = (float(v) for v in prior)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (mean, sd), got {prior!r}") from None
    if not np.isfinite(m):
        raise ValueError(f"{name}: expected a finite mean, got {m!r}")
    return m, positive(s, f"{name} sd")


def check_k(k, n_distinct: int, what: str = "distinct values") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k: expected a positive integer number of components, got {k!r}")
    if k < 1:
        raise ValueError(f"k: expected at least 1 component, got {k}")
    if k > n_distinct:
        raise ValueError(f"k: expected at most as many components as {what} in the data ({n_distinct}), got {k}")
    return int(k)


def dist_params(model: pm.Model, name: str, expected: str) -> list[np.ndarray]:
    """The numeric parameters of the prior of free variable ``name``, read from the model itself.

    ``expected`` is the PyMC random-variable op's name (``"normal"``, ``"gamma"``, ...); a model whose prior was
    changed to another family is refused, since its hand-derived M-step would no longer be right.
    """
    rv = model[name]
    op = rv.owner.op
    if getattr(op, "name", None) != expected:
        raise TypeError(f"model: the hand-written EM expects a {expected} prior on {name!r}, found {op}")
    return [_value(p) for p in op.dist_params(rv.owner)]


def _value(var) -> np.ndarray:
    """The number a prior's parameter holds: a constant, a data container's current value, or (an expression of
    them) evaluated without compiling."""
    if isinstance(var, SharedVariable):
        return np.asarray(var.get_value(), dtype=float)
    if isinstance(var, Constant):
        return np.asarray(var.data, dtype=float)
    return np.asarray(var.eval(mode=Mode(linker="py", optimizer=None)), dtype=float)


def data_of(model: pm.Model, name: str) -> np.ndarray:
    """The current value of the model's data container ``name``."""
    return np.asarray(model[name].get_value(), dtype=float)


_SAMPLERS: dict = {}
_SAMPLERS_KEPT = 16


def simulate_from(model, params: dict, observed: str, seed, *, key=None) -> np.ndarray:
    """Draw the observed variable ``observed`` from the model's own declaration with ``params`` fixed (``pm.do``).

    ``model`` is a ``pm.Model`` or a function of no arguments building one. With ``key`` (whatever fixes the model's
    structure and size, such as the sample size) the compiled draw is kept for the next call with the same key and
    parameters, which then only reseeds it: the numbers are those of ``pm.draw(..., random_seed=seed,
    mode=PY_MODE)``, without building and compiling again (a simulation study draws thousands of data sets from one
    declaration). Draws of up to ``PY_DRAW_MAX_VALUES`` values (every built-in example) run on PyTensor's Python
    linker, whose random variables are NumPy's own generator calls: nothing to compile (Numba took about 50 s for
    the built-in examples' simulators on an empty cache). Larger draws (a study's large sizes, data written a million
    rows at a time) are compiled, where Numba's kernels are faster per value: ten times for a Poisson mixture, whose
    component labels the Python linker draws one row at a time (about 5 µs a row). Both draw the same variates; a
    location-scale transform of them may round differently in the last bit (:func:`draw_mode` gives the mode, for
    ``pm.draw``).
    """
    values = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    cache_key = None if key is None else (key, observed, tuple((k, v.shape, v.tobytes()) for k, v in
                                                                sorted(values.items())))
    sampler = _SAMPLERS.get(cache_key) if cache_key is not None else None
    if sampler is None:
        fixed = pm.do(model() if callable(model) else model, values)
        mode = draw_mode(fixed[observed])
        # the RNGs in the order compile reseeds them, so a reseeded draw repeats pm.draw's numbers exactly
        fn, updates = compile_pymc(inputs=[], outputs=fixed[observed], random_seed=seed, return_updates=True,
                                   mode=mode)
        sampler = (fn, list(updates))
        if cache_key is not None:
            if len(_SAMPLERS) >= _SAMPLERS_KEPT:
                _SAMPLERS.pop(next(iter(_SAMPLERS)))
            _SAMPLERS[cache_key] = sampler
    fn, rngs = sampler
    reseed_rngs(rngs, seed)
    return np.array(fn(), copy=True)


PY_DRAW_MAX_VALUES = 5_000


def draw_mode(var):
    """The compile mode :func:`simulate_from` draws ``var`` with: the Python linker for up to
    ``PY_DRAW_MAX_VALUES`` values, else compiled (``COMPILED_MODE``, the compiled backend's Numba mode)."""
    try:
        size = int(np.prod(var.shape.eval(mode=PY_MODE)))
    except Exception:  # a shape that needs the draw itself: compiled, as before
        return COMPILED_MODE
    return PY_MODE if size <= PY_DRAW_MAX_VALUES else COMPILED_MODE


# Data-centred default priors held in data containers (the mixture, the missing-data model), so that swap_data
# moves them with the data as a rebuilt model's would
PRIOR_CONTAINERS = ("mu_prior_mean", "mu_prior_sd", "sigma_prior_scale")
_GIVEN_PRIORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prior_containers(model: pm.Model, values, mu_prior, sigma_prior) -> tuple:
    """Inside ``model``'s context: the (m0, s0, tau) of :func:`data_centred_priors` as the data containers
    ``PRIOR_CONTAINERS``, remembering which priors were given (:func:`swapped_priors` recentres the others)."""
    _GIVEN_PRIORS[model] = (mu_prior, sigma_prior)
    return tuple(pm.Data(name, np.asarray(v, dtype=float)) for name, v in zip(PRIOR_CONTAINERS, values))


def has_prior_containers(model: pm.Model) -> bool:
    """True for a model whose priors :func:`prior_containers` declared (and whose hooks are attached)."""
    return model in _GIVEN_PRIORS and hooks_for(model) is not None


def prior_options(m0, s0, tau) -> dict:
    """The ``mu_prior`` and ``sigma_prior`` entries of a model's options, as plain lists."""
    return {"mu_prior": (np.asarray(m0).tolist(), np.asarray(s0).tolist()), "sigma_prior": np.asarray(tau).tolist()}


def swapped_priors(model: pm.Model, X) -> dict:
    """For swap_data on a model with :func:`has_prior_containers`: the prior containers' values for data ``X`` (the
    given priors, or the defaults centred on ``X``), with the model's options updated to them."""
    m0, s0, tau = data_centred_priors(X, *_GIVEN_PRIORS[model])
    hooks_for(model).options.update(prior_options(m0, s0, tau))
    return dict(zip(PRIOR_CONTAINERS, (m0, s0, tau)))


def data_centred_priors(X, mu_prior, sigma_prior):
    """(m0, s0, tau) per column: the given Normal prior on the means and HalfNormal scales, or by default
    (column means, 10 column sds) and 5 column sds, so the priors are weakly informative whatever the units.
    NaN entries are ignored; a constant or single-valued column gets unit scale."""
    D = X.shape[1]
    mean = np.nanmean(X, axis=0)
    sd = np.nanstd(X, axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    if mu_prior is None:
        m0, s0 = mean, 10 * sd
    else:
        try:
            m0, s0 = (np.broadcast_to(np.asarray(v, dtype=float), (D,)).copy() for v in mu_prior)
        except (TypeError, ValueError):
            raise ValueError(f"mu_prior: expected (mean, sd) as scalars or length-{D} arrays, got {mu_prior!r}") \
                from None
        if not np.all(np.isfinite(m0)) or not np.all(np.isfinite(s0) & (s0 > 0)):
            raise ValueError("mu_prior: expected finite means and positive sds")
    tau = 5 * sd if sigma_prior is None else np.broadcast_to(np.asarray(sigma_prior, dtype=float), (D,)).copy()
    if not np.all(np.isfinite(tau) & (tau > 0)):
        raise ValueError(f"sigma_prior: expected positive scales, got {sigma_prior!r}")
    return m0, s0, tau


# ------------------------------------------------------------------------------------------------ covariances
def pack(L) -> np.ndarray:
    """The lower triangle of L, row by row (PyMC's packed Cholesky layout)."""
    return L[np.tril_indices(L.shape[0])]


def unpack(v, D) -> np.ndarray:
    L = np.zeros((D, D))
    L[np.tril_indices(D)] = v
    return L


def chol_prior_fn(model, name, D):
    """f(packed chol) -> (log prior density without Jacobian, gradient w.r.t. the packed entries), from PyMC.

    Run by PyTensor's rewritten graph with NumPy (``PY_MODE``), compiling nothing: MAP-EM builds it for every run
    and calls it a few hundred times, where a Numba compilation of it took seconds on an empty cache (the
    missing-data example's MAP-EM: 4.6 s cold, 0.25 s warm)."""
    rv = model[name]
    x = pt.vector(name + "_packed", dtype="float64")
    value = model.rvs_to_values[rv]
    logp = model.logp(vars=[rv], jacobian=False)
    tr = model.rvs_to_transforms.get(rv)
    u = tr.forward(x, *rv.owner.inputs) if tr is not None else x
    expr = graph_replace(logp, {value: u}, strict=False)
    fn = pytensor.function([x], [expr, pt.grad(expr, x)], mode=PY_MODE)
    return lambda v: tuple(np.asarray(o, dtype=float) for o in fn(np.asarray(v, dtype=float)))


def lkj_m_step(prior_fn, cov_now, nk, ss, D):
    """argmax over cov of -nk/2 log|cov| - tr(cov^-1 ss)/2 + log p(chol(cov)), by L-BFGS from the current cov."""
    tril = np.tril_indices(D)
    diag_pos = np.array([i for i, (r, c) in enumerate(zip(*tril)) if r == c])

    def unpack_u(u):
        v = u.copy()
        v[diag_pos] = np.exp(u[diag_pos])
        return v

    def f(u):
        v = unpack_u(u)
        L = unpack(v, D)
        Linv = np.linalg.solve(L, np.eye(D))
        Sinv = Linv.T @ Linv
        val = -nk * np.sum(np.log(np.diag(L))) - 0.5 * np.sum(Sinv * ss)
        G = -nk * Linv.T + Sinv @ ss @ Sinv @ L  # d/dL of the expected complete-data log-likelihood
        lp, glp = prior_fn(v)
        g = G[tril] + glp
        g[diag_pos] *= v[diag_pos]
        return -(val + lp), -g

    u0 = pack(np.linalg.cholesky(cov_now))
    u0[diag_pos] = np.log(u0[diag_pos])
    res = optimize.minimize(f, u0, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-12,
                                                                          "ftol": 1e-15})
    u = res.x if res.fun <= f(u0)[0] else u0
    L = unpack(unpack_u(u), D)
    return L @ L.T




# ------------------------------------------------------------------------------------------------ MAP M-steps
# The conditional maximisers every model's MAP M-step shares (each maximises the expected complete-data log
# posterior in one block of parameters given the others, so an ECM built from them never lowers the objective).
def halfnormal_scale_map(ss, n, tau):
    """argmax over s of -n log s - ss / (2 s^2) + log HalfNormal(s | tau), as s^2.

    The stationarity condition s^4 / tau^2 + n s^2 - ss = 0 has the positive root written here in the form that
    does not cancel when ss / tau^2 << n^2. Works elementwise on arrays.
    """
    ss, n, tau = (np.asarray(v, dtype=float) for v in (ss, n, tau))
    return 2 * ss / (n + np.sqrt(n * n + 4 * ss / tau**2))


def normal_mean_map(precision, n, sx, m0, s0):
    """argmax over m of the Gaussian expected complete-data log-likelihood plus a Normal(m0, s0) prior per entry.

    ``precision`` is the current (D x D) inverse covariance, ``n`` the (expected) count and ``sx`` the (expected)
    sum of the observations: m = (n P + diag(1/s0^2))^-1 (P sx + m0 / s0^2).
    """
    P = np.atleast_2d(np.asarray(precision, dtype=float))
    s0 = np.broadcast_to(np.asarray(s0, dtype=float), (P.shape[0],))
    A = n * P + np.diag(1 / s0**2)
    return np.linalg.solve(A, P @ np.atleast_1d(np.asarray(sx, dtype=float)) + np.asarray(m0) / s0**2)


def dirichlet_map(nk, a):
    """argmax over the simplex of sum_k (nk + a_k - 1) log w_k: the MAP weights under a Dirichlet(a) prior."""
    nk = np.asarray(nk, dtype=float)
    a = np.broadcast_to(np.asarray(a, dtype=float), nk.shape)
    extra = a - 1.0  # added as one term: nk + a - 1 would round a tiny nk away when a = 1
    return (nk + extra) / (nk.sum() + extra.sum())
