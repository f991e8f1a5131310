"""Poisson model and Poisson mixtures: y_i ~ sum_j w_j Poisson(lam_j).

Declaration (``build``)::

    lam ~ Gamma(alpha, beta), shape k, ordered (lam_0 < lam_1 < ...) when k >= 2   default Gamma(2, 0.2)
    w   ~ Dirichlet(a * ones(k))                                        k >= 2 only, default a = 2
    y_i ~ Poisson(lam_0)                                 k = 1
    y_i ~ Mixture(w, Poisson(lam))                       k >= 2, the labels marginalised out

``lam`` always has length k; ``w`` exists for k >= 2. Built-in examples: k = 1, lam = 3.5, n = 1000; k = 2,
w = (0.4, 0.6), lam = (2, 9), n = 1000; both drawn from the declaration with the parameters fixed.

EM (k >= 2), with z_i the component of y_i:

* E-step, in log space: log r_ij = log w_j + y_i log lam_j - lam_j - log y_i! - logsumexp_j(...).
* M-step: N_j = sum_i r_ij, S_j = sum_i r_ij y_i; w_j = N_j / n, lam_j = S_j / N_j.
* MAP M-step with the model's priors (no Jacobian): w_j = (N_j + a_j - 1) / (n + sum a - k),
  lam_j = (S_j + alpha - 1) / (N_j + beta); the log prior is added to the objective.

The sums run over the distinct values of y with their counts (the sufficient statistics), which is exact and makes
an iteration cost O(distinct values x k). Components are relabelled by increasing rate after convergence (the order
the model's transform imposes). For k = 1 there is nothing latent and the M-step is the closed form (the sample mean,
or (S + alpha - 1) / (n + beta) with the prior).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from scipy import stats
from scipy.special import gammaln, logsumexp

from inference.base import EMMath, ModelHooks, ModelSpec, Option, SufficientEM, attach

from ._common import (
    Example,
    as_vector,
    check_k,
    check_n,
    data_of,
    dirichlet_map,
    dist_params,
    once_per_params,
    positive,
    simulate_from,
)

NAME = "poisson"
TRUTH = {1: {"lam": np.array([3.5])}, 2: {"w": np.array([0.4, 0.6]), "lam": np.array([2.0, 9.0])}}
EXAMPLE_N = 1000
EXAMPLE_SEED = 42

__all__ = ["SPEC", "build", "em_math", "example", "init", "simulate", "swap_data"]


def build(y, k: int = 1, *, lam_prior=(2.0, 0.2), w_prior: float = 2.0, _initval: bool = True) -> pm.Model:
    """The PyMC model for counts ``y`` with ``k`` components.

    Parameters
    ----------
    y : 1-D array of non-negative integers.
    k : number of components (>= 1, at most the number of distinct values of y).
    lam_prior : (alpha, beta) of the Gamma prior on every rate (shape, rate). Default (2, 0.2): mean 10.
    w_prior : concentration of the symmetric Dirichlet prior on the weights (k >= 2). Default 2.
    """
    y = as_vector(y, "y", integer=True, nonnegative=True)
    k = check_k(k, np.unique(y).size)
    try:
        alpha, beta = (float(v) for v in lam_prior)
    except (TypeError, ValueError):
        raise ValueError(f"lam_prior: expected (alpha, beta), got {lam_prior!r}") from None
    alpha, beta = positive(alpha, "lam_prior alpha"), positive(beta, "lam_prior beta")
    a = positive(w_prior, "w_prior")
    start = _start(y, k)
    with pm.Model() as model:
        y_data = pm.Data("y_data", _container(y))
        if k == 1:
            lam = pm.Gamma("lam", alpha, beta, shape=1)
            pm.Poisson("y", lam[0], observed=y_data, shape=y_data.shape)
        else:
            # An ordered initial value: the default one (all rates equal) is outside the ordered transform's
            # support. pm.do cannot copy a model with initial values, so the simulator builds without it.
            lam = pm.Gamma("lam", alpha, beta, shape=k, transform=pm.distributions.transforms.ordered,
                           initval=start if _initval else None)
            w = pm.Dirichlet("w", a * np.ones(k))
            pm.Mixture("y", w=w, comp_dists=pm.Poisson.dist(mu=lam), observed=y_data, shape=y_data.shape)
    options = {"k": k, "lam_prior": (alpha, beta), "w_prior": a}
    return attach(model, ModelHooks(NAME, options, em_math=lambda prior: em_math(model, prior=prior),
                                    init=lambda rng: init(data_of(model, "y_data"), k, rng)))


def _start(y, k: int) -> np.ndarray:
    return np.sort(np.quantile(y, (np.arange(k) + 0.5) / k)) + 0.5 + np.arange(k) * 1e-3


def _container(y) -> np.ndarray:
    """The counts as the data container holds them: integers (PyMC stores them as int32) while they fit in 32
    bits, float64 beyond (exact up to 2^53, where int32 would wrap them)."""
    return y.astype("int64") if y.size == 0 or y.max() < 2**31 else y


def swap_data(model: pm.Model, y):
    """``model`` with its counts replaced by ``y`` (``pm.set_data``, and the ordered initial value recomputed as
    ``build`` does): the same as ``build(y, k)`` with the model's options, without building or compiling again.
    None when the counts need another container than the model's (the caller rebuilds)."""
    y = as_vector(y, "y", integer=True, nonnegative=True)
    lam = model["lam"]
    k = check_k(int(lam.type.shape[0]), np.unique(y).size)
    if str(model["y_data"].dtype).startswith("int") != (_container(y).dtype.kind == "i"):
        return None  # counts beyond 32 bits need the float container: rebuild
    with model:
        pm.set_data({"y_data": _container(y)})
    if model.rvs_to_initial_values.get(lam) is not None:
        model.set_initval(lam, _start(y, k))
    return model


def simulate(params, n: int = EXAMPLE_N, seed=EXAMPLE_SEED) -> np.ndarray:
    """``n`` counts drawn from the declaration with ``params`` (``lam``, and ``w`` for k >= 2) fixed."""
    lam = np.atleast_1d(np.asarray(params["lam"], dtype=float))
    n = check_n(n)
    k = lam.size
    placeholder = np.arange(n) % (k + 1)  # enough distinct values for k components
    return simulate_from(lambda: build(placeholder, k=k, _initval=False), params, "y", seed,
                         key=(NAME, n, k)).astype(float)


def example(seed=EXAMPLE_SEED, k: int = 1) -> Example:
    if k not in TRUTH:
        raise ValueError(f"k: the built-in Poisson examples have k = 1 or 2, got {k}")
    truth = {key: v.copy() for key, v in TRUTH[k].items()}
    return Example(simulate(truth, EXAMPLE_N, seed), build_kwargs={"k": k}, truth=truth)


def init(y, k: int, rng) -> dict:
    """A start from the data: k distinct observed values drawn at random (k-means++ style spread), equal weights."""
    values = np.unique(y)
    if k == 1:
        return {"lam": np.array([max(y.mean(), 1e-3) * np.exp(0.1 * rng.standard_normal())])}
    centres = [rng.choice(values)]
    for _ in range(k - 1):
        d2 = np.min((values[:, None] - np.asarray(centres)[None, :]) ** 2, axis=1)
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centres.append(rng.choice(values, p=p))
    lam = np.sort(np.asarray(centres, dtype=float)) + 0.5 + 1e-3 * np.arange(k)
    return {"w": np.full(k, 1.0 / k), "lam": lam}


def _prepare(y):
    """Raw counts -> (distinct values, their counts, log of their factorials): the data's sufficient statistics."""
    y = as_vector(np.ravel(np.asarray(y, dtype=float)), "X", integer=True, nonnegative=True)
    values, counts = np.unique(y, return_counts=True)
    return values, counts.astype(float), gammaln(values + 1.0)


def _log_joint(p, values, log_fact, k):
    """(distinct values, k): log w_j + log Poisson(v | lam_j)."""
    lam = np.asarray(p["lam"], dtype=float)
    logw = np.log(np.asarray(p["w"], dtype=float)) if k >= 2 else np.zeros(1)
    return logw[None, :] + values[:, None] * np.log(lam)[None, :] - lam[None, :] - log_fact[:, None]


def _chunk_stats(p, chunk, k):
    """N_j = sum_i r_ij, S_j = sum_i r_ij y_i, the rows and their log-likelihood, over the distinct values."""
    values, counts, log_fact = chunk
    lj = _log_joint(p, values, log_fact, k)
    lse = logsumexp(lj, axis=1)
    r = np.exp(lj - lse[:, None]) * counts[:, None]
    return {"nk": r.sum(axis=0), "sk": values @ r, "n": counts.sum(), "loglik": float(counts @ lse)}


def em_math(model: pm.Model, *, prior: bool) -> EMMath:
    """The EM steps, reading the data and the priors from ``model``; the step is the one-chunk case of
    :class:`~inference.base.SufficientEM` (statistics N_j, S_j of all counts, then the M-step from them)."""
    import functools

    y = data_of(model, "y_data")
    k = int(model["lam"].type.shape[0])
    data = _prepare(y)
    values = data[0]
    if prior:
        alpha, scale = dist_params(model, "lam", "gamma")
        alpha, beta = float(np.ravel(alpha)[0]), float(1.0 / np.ravel(scale)[0])
        a = dist_params(model, "w", "dirichlet")[0] if k >= 2 else None
    chunk_stats = functools.partial(_chunk_stats, k=k)
    evaluate = once_per_params(lambda p: chunk_stats(p, data))

    def loglik(p):
        return evaluate(p)["loglik"]

    def responsibilities(p):
        lj = _log_joint(p, values, data[2], k)
        return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))

    def from_stats(totals, p):
        nk, sk = totals["nk"], totals["sk"]
        if prior:
            lam = (sk + alpha - 1.0) / (nk + beta)
            w = dirichlet_map(nk, a) if k >= 2 else None
        else:
            if np.any(nk <= 0):
                raise FloatingPointError("EM: a component lost all its responsibility (empty component)")
            lam = sk / nk
            w = nk / totals["n"]
        if np.any(lam <= 0) or (w is not None and np.any(w <= 0)):
            raise FloatingPointError("EM: the M-step left the support (a rate or weight reached zero); "
                                     "use priors (MAP-EM) or fewer components")
        return {"lam": lam} if k == 1 else {"w": w, "lam": lam}

    def expected_loglik(totals, p):  # sum_j N_j log w_j + S_j log lam_j - N_j lam_j (log y! is free of p)
        lam = np.asarray(p["lam"], dtype=float)
        logw = np.log(np.asarray(p["w"], dtype=float)) if k >= 2 else np.zeros(1)
        return float(totals["nk"] @ (logw - lam) + totals["sk"] @ np.log(lam))

    def step(p):
        return from_stats(evaluate(p), p)

    def log_prior(p):
        lp = float(np.sum(stats.gamma.logpdf(p["lam"], alpha, scale=1.0 / beta)))
        if k >= 2:
            lp += float(stats.dirichlet.logpdf(p["w"], a))
        return lp

    def order(p):
        idx = np.argsort(p["lam"])
        return {key: np.asarray(v)[idx] for key, v in p.items()}

    def check_init(p):
        need = {"lam"} if k == 1 else {"lam", "w"}
        if need - set(p):
            raise ValueError(f"init: expected values for {', '.join(sorted(need))}")
        lam = np.atleast_1d(np.asarray(p["lam"], dtype=float))
        if lam.shape != (k,) or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(f"init: expected lam as {k} positive rates, got {p['lam']!r}")
        out = {"lam": lam}
        if k >= 2:
            w = np.asarray(p["w"], dtype=float)
            if w.shape != (k,) or np.any(w <= 0) or not np.isclose(w.sum(), 1.0):
                raise ValueError(f"init: expected w as {k} positive weights summing to 1, got {p['w']!r}")
            out["w"] = w
        return out

    def extras(p):
        return {"responsibilities": responsibilities(p)[np.searchsorted(values, y)]}

    def scale(p):  # the size of the terms summed into the log-likelihood (they cancel for large counts)
        lam = np.asarray(p["lam"], dtype=float)
        _, counts, log_fact = data
        return float(counts @ (values * np.max(np.abs(np.log(lam))) + lam.max() + log_fact))

    sufficient = SufficientEM(prepare=_prepare, chunk_stats=chunk_stats, from_stats=from_stats,
                              expected_loglik=expected_loglik)
    return EMMath(init=lambda rng: init(y, k, rng), step=step, loglik=loglik,
                  log_prior=log_prior if prior else None, check_init=check_init, extras=extras, order=order,
                  scale=scale, sufficient=sufficient)


def density(params: dict, grid: np.ndarray) -> np.ndarray:
    """The fitted probability mass function on integer ``grid`` (for figures)."""
    lam = np.atleast_1d(params["lam"])
    w = np.atleast_1d(params.get("w", np.ones(1)))
    return np.sum(w[None, :] * stats.poisson.pmf(grid[:, None], lam[None, :]), axis=1)


SPEC = ModelSpec(
    name=NAME,
    description="y ~ Poisson(lam), or a k-component Poisson mixture with weights w (lam=3.5, n=1000)",
    build=build,
    example=example,
    simulate=lambda params, n, seed: simulate(params, n, seed),
    data_kind="vector",
    options=(Option("k", int, "number of mixture components (default 1; built-in examples: 1 or 2)"),),
    params=("lam", "w"),
    min_n=lambda options: max(2, int(options.get("k", 1)) + 1),
    density=lambda params, grid: density(params, grid),
    test_cases={"k1": {"k": 1}, "k2": {"k": 2}},
    swap_data=lambda model, data: swap_data(model, data),
)
