"""Gaussian mixture in D >= 1 dimensions, component labels marginalised out: the classic example of EM.

Declaration (``build``), K components::

    w        ~ Dirichlet(w_prior * ones(K))                                   default w_prior = 2
    D = 1:   mu    ~ Normal(mu_prior), shape K, ordered                        default Normal(mean(x), 10 sd(x))
             sigma ~ HalfNormal(sigma_prior), shape K                          default HalfNormal(5 sd(x))
             x_i   ~ NormalMixture(w, mu, sigma)
    D >= 2:  mu_first ~ Normal(mu_prior), shape K, ordered   (first coordinate of the means)
             mu_rest  ~ Normal(mu_prior), shape (K, D-1)
             mu       = [mu_first, mu_rest]                                    deterministic, K x D
             full:  chol_k ~ LKJCholeskyCov(eta=lkj_eta, sd_dist=HalfNormal(sigma_prior)), k = 0..K-1
             diag:  sigma  ~ HalfNormal(sigma_prior), shape (K, D)
             cov   = chol_k chol_k' or diag(sigma_k^2)                        deterministic, K x D x D
             x_i   ~ Mixture(w, [MvNormal(mu_k, cov_k)])

The default priors are centred on the data (column means, scales from the column sds), so they are weakly
informative whatever the units. Components are ordered by the first coordinate of their mean (identifiability).
Result names: ``w``, ``mu``, ``sigma`` (D = 1) and ``cov`` (D >= 2).

Built-in example (the classic EM illustration): weights 0.3 / 0.7, means 0 / 5, sds 1 / 1.5, n = 300, seed 42.

EM, in log space and by sufficient statistics. With the features F_i = [x_i x_i' (upper triangle), x_i, 1]:

* E-step: log w_k + log N(x_i | mu_k, S_k) = F_i . c_k for a coefficient vector c_k built from (w_k, mu_k, S_k^-1),
  so all N x K log densities are one matrix product; log r_ik = that minus its logsumexp over k (finite for any x).
* M-step: r' F gives, in one matrix product, N_k = sum_i r_ik, sum_i r_ik x_i and sum_i r_ik x_i x_i';
  w_k = N_k / N, mu_k = sum r x / N_k, S_k = sum r x x' / N_k - mu_k mu_k' + reg_covar I.
  The data are centred first, so the last subtraction does not cancel digits away.
* MAP M-step with the model's priors (ECM: each block maximised given the others, so still monotone): weights
  (N_k + a - 1) / (N + K a - K); means from the Normal prior given the covariance; D = 1: sigma_k solves
  s^4 / tau^2 + N_k s^2 - SS_k = 0 (HalfNormal(tau)); D >= 2: the covariance maximises
  -N_k/2 log|S| - tr(S^-1 SS_k)/2 + log p(chol_k), the LKJ prior's log density taken from the PyMC model, by
  L-BFGS from the current value (which never lowers the objective).

A component whose covariance stops being positive definite after the ridge (it collapsed onto a few points) is an
error naming the component, not a silent NaN.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from inference.base import EMMath, ModelHooks, ModelSpec, Option, SufficientEM, attach, hooks_for
from inference.checks import check

from ._common import (
    Example,
    check_k,
    check_n,
    chol_prior_fn,
    data_centred_priors,
    data_of,
    dirichlet_map,
    dist_params,
    halfnormal_scale_map,
    lkj_m_step,
    normal_mean_map,
    once_per_params,
    pack,
    has_prior_containers,
    positive,
    prior_containers,
    prior_options,
    simulate_from,
    swapped_priors,
    unpack,
)

NAME = "gaussian_mixture"
TRUTH = {"w": np.array([0.3, 0.7]), "mu": np.array([0.0, 5.0]), "sigma": np.array([1.0, 1.5])}
# The trivariate example: three components, one with correlated coordinates.
TRUTH_3D = {"w": np.array([0.5, 0.3, 0.2]),
            "mu": np.array([[0.0, 0.0, 0.0], [4.0, 1.0, 0.0], [8.0, -2.0, 3.0]]),
            "cov": np.stack([np.eye(3), np.diag([1.0, 2.0, 0.5]),
                             np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])])}
EXAMPLE_N = 300
EXAMPLE_N_3D = 600
EXAMPLE_SEED = 42
COVARIANCE_TYPES = ("full", "diag")
# NUTS on a multivariate mixture is slow and label-switching-prone; it runs on request (--estimators) only.
SKIP_MULTIVARIATE = {
    "nuts": "slow and prone to label switching on multivariate mixtures; ask for it explicitly",
    "fullrank_advi": "its dense Gaussian over every mean and Cholesky entry of every component stops visibly short "
                     "of the posterior on multivariate mixtures (component covariances off by several standard "
                     "errors on the trivariate example); ask for it explicitly",
}

__all__ = [
    "SPEC",
    "build",
    "em_math",
    "estimate_log_prob",
    "example",
    "fused_statistics",
    "init_from_centres",
    "kmeans_plus_plus",
    "simulate",
    "sufficient_statistics",
    "swap_data",
]


# ------------------------------------------------------------------------------------------------ input checks
def check_data(X, name: str = "X", columns=None) -> np.ndarray:
    """Observations as a float (n, D) array; ValueError naming ``name`` on NaN rows, constant columns, ..."""
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numeric observations") from None
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"{name}: expected a 1-D array or a 2-D array (rows, dimensions), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one observation, got none")
    cols = list(columns) if columns is not None else [f"column {j}" for j in range(X.shape[1])]
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: expected finite values, {int(bad.sum())} rows have NaN or inf "
                         f"(first: row {int(np.flatnonzero(bad)[0])})")
    if X.shape[0] > 1:
        const = np.flatnonzero(np.ptp(X, axis=0) == 0)
        if const.size:
            raise ValueError(f"{name}: {cols[const[0]]} is constant (a mixture cannot be fitted along it)")
    return X


def _distinct_rows(X) -> int:
    return int(np.unique(X, axis=0).shape[0])


# ------------------------------------------------------------------------------------------------ the model
def build(X, k: int = 2, *, covariance_type: str = "full", w_prior: float = 2.0, mu_prior=None, sigma_prior=None,
          lkj_eta: float = 2.0, columns=None, _initval: bool = True) -> pm.Model:
    """The PyMC mixture model for observations ``X`` (n,) or (n, D).

    Parameters
    ----------
    X : observations; a 1-D array is one dimension.
    k : components (at most the number of distinct rows).
    covariance_type : ``"full"`` (LKJ prior on each covariance) or ``"diag"``; D >= 2 only.
    w_prior : symmetric Dirichlet concentration. Default 2.
    mu_prior : (mean, sd) of the Normal prior on every mean coordinate (scalars or length D). Default
        (column means, 10 x column sds).
    sigma_prior : HalfNormal scale of the component sds (scalar or length D). Default 5 x column sds.
    lkj_eta : LKJ concentration on each component's correlation matrix (D >= 2, full). Default 2.
    """
    X = check_data(X, columns=columns)
    D = X.shape[1]
    k = check_k(k, _distinct_rows(X), "distinct points")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type: expected 'full' or 'diag', got {covariance_type!r}")
    a = positive(w_prior, "w_prior")
    m0, s0, tau = data_centred_priors(X, mu_prior, sigma_prior)
    eta = positive(lkj_eta, "lkj_eta")
    priors = prior_options(m0, s0, tau)
    # components ordered by their first mean coordinate (identifiability); an ordered start, since the default one
    # (all equal) is outside the transform's support
    ordering = {"transform": pm.distributions.transforms.ordered,
                "initval": _start(X, k) if _initval else None} if k > 1 else {}
    with pm.Model(coords={"component": np.arange(k), "dim": np.arange(D), "dim_": np.arange(D)}) as model:
        X_data = pm.Data("X", X[:, 0] if D == 1 else X)
        # the priors' numbers in data containers: the default ones are centred on the data, and swap_data moves them
        m0, s0, tau = prior_containers(model, (m0, s0, tau), mu_prior, sigma_prior)
        w = pm.Dirichlet("w", a * np.ones(k), dims="component")
        if D == 1:
            mu = pm.Normal("mu", m0[0], s0[0], dims="component", **ordering)
            sigma = pm.HalfNormal("sigma", tau[0], dims="component")
            pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=X_data, shape=X_data.shape)
        else:
            mu_first = pm.Normal("mu_first", m0[0], s0[0], shape=k, **ordering)
            mu_rest = pm.Normal("mu_rest", m0[1:], s0[1:], shape=(k, D - 1))
            mu = pm.Deterministic("mu", pt.concatenate([mu_first[:, None], mu_rest], axis=1),
                                  dims=("component", "dim"))
            if covariance_type == "full":
                chols = []
                for j in range(k):
                    packed = pm.LKJCholeskyCov(f"chol_{j}", eta=eta, n=D,
                                               sd_dist=pm.HalfNormal.dist(tau, shape=D), compute_corr=False)
                    chols.append(pm.math.expand_packed_triangular(D, packed, lower=True))
                L = pt.stack(chols)
            else:
                sig = pm.HalfNormal("sigma", tau, shape=(k, D))
                L = sig[:, :, None] * pt.eye(D)[None, :, :]
            pm.Deterministic("cov", L @ L.transpose(0, 2, 1), dims=("component", "dim", "dim_"))
            if k == 1:  # one component: PyMC's Mixture needs two; the density is the component's own
                pm.MvNormal("x", mu=mu[0], chol=L[0], observed=X_data, shape=X_data.shape)
            else:
                comps = [pm.MvNormal.dist(mu=mu[j], chol=L[j]) for j in range(k)]
                pm.Mixture("x", w=w, comp_dists=comps, observed=X_data, shape=X_data.shape)
    options = {"k": k, "dims": D, "covariance_type": covariance_type if D > 1 else "full", "w_prior": a,
               **priors, "lkj_eta": eta}
    public = ["w", "mu", "sigma"] if D == 1 else ["w", "mu", "cov"]
    def math(prior, reg_covar: float = 0.0, shift=None):
        return em_math(model, prior=prior, reg_covar=reg_covar, shift=shift)

    return attach(model, ModelHooks(NAME, options, em_math=math, init=lambda rng: _model_init(model, rng),
                                    align=align, public=public, skip={} if D == 1 else dict(SKIP_MULTIVARIATE)))


def _start(X, k: int) -> np.ndarray:
    order = np.argsort(X[:, 0], kind="stable")
    n = X.shape[0]
    return X[order[((np.arange(k) + 0.5) / k * n).astype(int)], 0] + 1e-6 * np.arange(k) * (np.ptp(X[:, 0]) or 1.0)


def swap_data(model: pm.Model, X):
    """``model`` with its observations replaced by ``X`` (``pm.set_data``, and the ordered initial value recomputed
    as ``build`` does): the same as ``build(X, k)`` with the model's options, without building or compiling again.

    The default priors are centred on the data: their numbers (data containers too) move with the data, as a rebuilt
    model's would. None for a model this module did not build.
    """
    if not has_prior_containers(model):
        return None
    X = check_data(X)
    k = int(model["w"].type.shape[0])
    D = int(hooks_for(model).options["dims"])
    if X.shape[1] != D:
        raise ValueError(f"X: expected {D} columns, got {X.shape[1]}")
    check_k(k, _distinct_rows(X), "distinct points")
    with model:
        pm.set_data({"X": X[:, 0] if D == 1 else X, **swapped_priors(model, X)})
    first = model["mu" if D == 1 else "mu_first"]
    if model.rvs_to_initial_values.get(first) is not None:
        model.set_initval(first, _start(X, k))
    return model


def simulate(params, n: int = EXAMPLE_N, seed=EXAMPLE_SEED) -> np.ndarray:
    """``n`` draws from the declaration with ``params`` fixed: ``w``, ``mu`` and ``sigma`` (1-D) or ``cov``."""
    n = check_n(n)
    mu = np.asarray(params["mu"], dtype=float)
    k = mu.shape[0]
    if mu.ndim == 1:
        placeholder = np.linspace(-1, 1, max(n, k))[:n]
        return simulate_from(lambda: build(placeholder, k=k, _initval=False),
                             {"w": params["w"], "mu": mu, "sigma": params["sigma"]}, "x", seed, key=(NAME, n, k))
    D = mu.shape[1]
    cov = np.asarray(params["cov"], dtype=float)
    placeholder = np.random.default_rng(0).standard_normal((max(n, k), D))[:n]
    fixed = {"w": params["w"], "mu_first": mu[:, 0], "mu_rest": mu[:, 1:]}
    for j in range(k):
        fixed[f"chol_{j}"] = pack(np.linalg.cholesky(cov[j]))
    return simulate_from(lambda: build(placeholder, k=k, _initval=False), fixed, "x", seed, key=(NAME, n, k, D))


def example(seed=EXAMPLE_SEED, k: int = None, example: str = "classic") -> Example:
    """``"classic"``: the 1-D two-component illustration; ``"trivariate"``: 600 points from three 3-D components
    (one with correlated coordinates)."""
    examples = {"classic": (TRUTH, EXAMPLE_N), "trivariate": (TRUTH_3D, EXAMPLE_N_3D)}
    if example not in examples:
        raise ValueError(f"example: expected 'classic' or 'trivariate', got {example!r}")
    truth, n = examples[example]
    K = len(truth["w"])
    if k is not None and k != K:
        raise ValueError(f"k: the {example} mixture example has k = {K} components, got {k}")
    truth = {key: v.copy() for key, v in truth.items()}
    return Example(simulate(truth, n, seed), build_kwargs={"k": K}, truth=truth)


# ------------------------------------------------------------------------------------------------ EM building blocks
@functools.cache
def _upper(D: int):
    """np.triu_indices(D), made once per D (online EM asks for it thousands of times a second), read-only."""
    iu = np.triu_indices(D)
    for a in iu:
        a.setflags(write=False)
    return iu


def quadratic_features(X) -> np.ndarray:
    """Features as rows, shape (D(D+1)/2 + D + 1, N): [x x' (upper triangle, row-major); x; 1].

    Stored component-major so that every reduction over the K components below runs along contiguous rows of
    length N (reducing over a short last axis is several times slower in NumPy).
    """
    n, D = X.shape
    iu = _upper(D)
    FT = np.empty((iu[0].size + D + 1, n))
    np.multiply(X[:, iu[0]].T, X[:, iu[1]].T, out=FT[: iu[0].size])
    FT[iu[0].size: iu[0].size + D] = X.T
    FT[-1] = 1.0
    return FT


def _coefficients(w, mu, cov) -> np.ndarray:
    """C (K, len F) with C[k] . F_i = log w_k + log N(x_i | mu_k, cov_k)."""
    K, D = mu.shape
    iu = _upper(D)
    C = np.empty((K, iu[0].size + D + 1))
    L = np.linalg.cholesky(cov)  # every component at once
    Linv = np.linalg.solve(L, np.broadcast_to(np.eye(D), L.shape))
    P = np.matmul(Linv.transpose(0, 2, 1), Linv)
    Q = -0.5 * P * (2 - np.eye(D))  # off-diagonal entries appear once in the upper triangle: count them twice
    C[:, : iu[0].size] = Q[:, iu[0], iu[1]]
    Pm = np.matmul(P, mu[:, :, None])[:, :, 0]
    C[:, iu[0].size: iu[0].size + D] = Pm
    C[:, -1] = (np.log(w) - 0.5 * D * np.log(2 * np.pi) - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
                - 0.5 * np.matmul(mu[:, None, :], Pm[:, :, None])[:, 0, 0])
    return C


def estimate_log_prob(FT, w, mu, cov) -> np.ndarray:
    """K x N matrix of log w_k + log N(x_i | mu_k, cov_k): one matrix product of the features."""
    return _coefficients(w, mu, cov) @ FT


def log_responsibilities(log_prob):
    """(row-wise logsumexp (N,), responsibilities (K, N)) from the K x N log densities, in log space: finite for
    a point however far from every component. ``log_prob`` is overwritten."""
    m = log_prob.max(axis=0)
    log_prob -= m
    np.exp(log_prob, out=log_prob)
    s = log_prob.sum(axis=0)
    log_prob *= 1.0 / s  # one division a point, not one per component
    return m + np.log(s), log_prob


def sufficient_statistics(FT, resp, D):
    """N_k, sum_i r_ik x_i and sum_i r_ik x_i x_i' from one product r F (resp is K x N)."""
    return _unpack_stats(resp @ FT.T, D)


# The E-step and the statistics r F of the M-step, fused: one pass over the features, block by block, each block
# small enough to stay in the core's cache between the product C F, the log-sum-exp and the product r F'.
BLOCK_ROWS = 8192
# From this many blocks on, a second thread takes the second half of the blocks (NumPy and BLAS release the GIL
# inside each block's kernels), unless the process is held to one thread (OMP_NUM_THREADS or OPENBLAS_NUM_THREADS
# = 1, as in Dask's workers and the test workers). Each block's sums are kept and added in block order, so the
# result is the same to the last bit with one thread or two.
THREAD_BLOCKS = 8
_ONE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _second_thread_allowed() -> bool:
    return (os.cpu_count() or 1) > 1 and all(os.environ.get(v, "").strip() != "1" for v in _ONE_THREAD_VARS)


def _block_statistics(C, FT, starts):
    out = []
    for start in starts:
        F = FT[:, start:start + BLOCK_ROWS]
        lse, resp = log_responsibilities(C @ F)
        out.append((resp @ F.T, float(lse.sum())))
    return out


def fused_statistics(C, FT):
    """(r F' (K x len F), log-likelihood) for coefficients ``C`` and features ``FT`` without forming the K x N
    responsibilities: :func:`log_responsibilities` and :func:`sufficient_statistics` over blocks of ``BLOCK_ROWS``
    rows, summed in order."""
    starts = range(0, FT.shape[1], BLOCK_ROWS)
    if len(starts) >= THREAD_BLOCKS and _second_thread_allowed():
        half = len(starts) // 2
        # a thread for this pass only, joined on leaving: no idle thread is left behind to trouble a later fork
        # (a study's worker processes); starting it costs about 0.15 ms against a pass of milliseconds
        with ThreadPoolExecutor(1, thread_name_prefix="gmm-em") as pool:
            second = pool.submit(_block_statistics, C, FT, starts[half:])
            blocks = _block_statistics(C, FT, starts[:half]) + second.result()
    else:
        blocks = _block_statistics(C, FT, starts)
    S, loglik = np.zeros((C.shape[0], FT.shape[0])), 0.0
    for s, ll in blocks:
        S += s
        loglik += ll
    return S, loglik


def kmeans_plus_plus(X, k, rng) -> np.ndarray:
    """k centres chosen by k-means++ seeding (Arthur & Vassilvitskii 2007)."""
    n = X.shape[0]
    centres = [X[rng.integers(n)]]
    d2 = np.sum((X - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centres.append(X[idx])
        d2 = np.minimum(d2, np.sum((X - X[idx]) ** 2, axis=1))
    return np.asarray(centres)


def init_from_centres(X, centres, reg_covar, covariance_type="full") -> dict:
    """Parameters of the hard assignment of every point to its nearest centre."""
    n, D = X.shape
    K = len(centres)
    d2 = ((X[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2) if n * K * D < 5e7 else \
        np.stack([((X - c) ** 2).sum(axis=1) for c in centres], axis=1)
    labels = np.argmin(d2, axis=1)
    w, mu, cov = np.empty(K), np.empty((K, D)), np.empty((K, D, D))
    overall = np.cov(X.T).reshape(D, D) if n > 1 else np.eye(D)
    for k in range(K):
        pts = X[labels == k]
        w[k] = max(len(pts), 1) / n
        mu[k] = pts.mean(axis=0) if len(pts) else centres[k]
        c = np.cov(pts.T).reshape(D, D) if len(pts) > D else overall
        if covariance_type == "diag":
            c = np.diag(np.diag(c))
        cov[k] = c + (reg_covar + 1e-6 * np.trace(overall) / D) * np.eye(D)
    return {"w": w / w.sum(), "mu": mu, "cov": cov}


def _m_step(nk, sx, sxx, n, D, reg_covar, covariance_type, ref=0.0):
    """The maximum-likelihood parameters (in the centred coordinates of ``sx``, ``sxx``) from the statistics."""
    if np.any(nk < 10 * np.finfo(float).eps * n):
        j = int(np.argmin(nk))
        raise FloatingPointError(f"EM: component {j} lost all its points (empty component); "
                                 "use fewer components or a different start")
    mu = sx / nk[:, None]
    cov = sxx / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
    if covariance_type == "diag":
        cov = cov * np.eye(D)[None]
    cov += reg_covar * np.eye(D)[None]
    _check_collapse(cov, ref)
    return {"w": nk / nk.sum(), "mu": mu, "cov": cov}


def _unpack_stats(S, D):
    """N_k, sum_i r_ik x_i and sum_i r_ik x_i x_i' from the statistics matrix r F (K x len F)."""
    K = S.shape[0]
    iu = _upper(D)
    nk = S[:, -1]
    sx = S[:, iu[0].size: iu[0].size + D]
    sxx = np.zeros((K, D, D))
    sxx[:, iu[0], iu[1]] = S[:, : iu[0].size]
    sxx[:, iu[1], iu[0]] = S[:, : iu[0].size]
    return nk, sx, sxx


def _prepare(X, shift):
    """Raw rows (n, D) -> their quadratic features in coordinates centred at ``shift``."""
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[1] != shift.size:
        raise ValueError(f"X: expected rows of {shift.size} values, got shape {X.shape}")
    return quadratic_features(X - shift)


def _e_step(p, FT, shift):
    """(row log-likelihoods (N,), responsibilities (K, N)) at the public parameters ``p``."""
    q = _internal(p, shift.size)
    return log_responsibilities(estimate_log_prob(FT, q["w"], q["mu"] - shift, q["cov"]))


def _chunk_stats(p, FT, shift):
    """The chunk's statistics: r F (K x len F: N_k, sum r x, sum r x x' in one product), rows, log-likelihood."""
    q = _internal(p, shift.size)
    S, loglik = fused_statistics(_coefficients(q["w"], q["mu"] - shift, q["cov"]), FT)
    return {"S": S, "n": float(FT.shape[1]), "loglik": loglik}


def _check_collapse(cov, ref: float = 0.0, max_condition: float = 1e12):
    """A component whose covariance is singular, or so ill-conditioned (its smallest eigenvalue below
    1 / ``max_condition`` of its largest, or of ``ref``, the data's own variance) that its density is no longer
    computed to a useful precision, has collapsed onto a few points: the likelihood grows without bound there, so
    it is an error naming the component, not a wrong step."""
    eigs = np.linalg.eigvalsh(np.asarray(cov, dtype=float))  # every component at once (EM checks every step)
    bad = ~np.all(np.isfinite(eigs), axis=-1) | (eigs[:, 0] <= np.maximum(eigs[:, -1], ref) / max_condition)
    if bad.any():
        j = int(np.argmax(bad))
        eig = eigs[j]
        raise FloatingPointError(f"EM: component {j} collapsed (its covariance is singular or nearly so: "
                                 f"condition number {eig[-1] / max(eig[0], 1e-300):.1e}); increase reg_covar, "
                                 "use fewer components, or MAP-EM")


def _check_params(p, K, D, name):
    try:
        w = np.asarray(p["w"], dtype=float)
        mu = np.asarray(p["mu"], dtype=float).reshape(K, D) if np.size(p["mu"]) == K * D else None
        cov = np.asarray(p["cov"], dtype=float)
    except KeyError as exc:
        raise ValueError(f"{name}: expected values for w, mu and cov (or sigma), missing {exc.args[0]}") from None
    if w.shape != (K,) or np.any(w <= 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError(f"{name}: expected w as {K} positive weights summing to 1, got shape {w.shape}")
    if mu is None or not np.all(np.isfinite(mu)):
        raise ValueError(f"{name}: expected mu with shape ({K}, {D}) (or ({K},) in 1-D), got shape "
                         f"{np.shape(p['mu'])}")
    if cov.shape != (K, D, D):
        raise ValueError(f"{name}: expected cov with shape ({K}, {D}, {D}), got shape {cov.shape}")
    for j in range(K):
        if not np.allclose(cov[j], cov[j].T) or np.any(np.linalg.eigvalsh(cov[j]) <= 0):
            raise ValueError(f"{name}: the initial covariance of component {j} is not positive definite")
    return {"w": w, "mu": mu, "cov": cov}


# ------------------------------------------------------------------------------------------------ EM on the model
def _layout(model):
    X = data_of(model, "X")
    X = X[:, None] if X.ndim == 1 else X
    K = int(model["w"].type.shape[0])
    D = X.shape[1]
    diag = D > 1 and "sigma" in model.named_vars
    return X, K, D, diag


def _model_init(model, rng) -> dict:
    """Start shared by EM and the optimisers: k-means++ centres, then the hard-assignment parameters."""
    X, K, D, diag = _layout(model)
    shift = X.mean(axis=0)
    p = init_from_centres(X - shift, kmeans_plus_plus(X - shift, K, rng), 1e-6, "diag" if diag else "full")
    p["mu"] = p["mu"] + shift
    return _to_model(_order(_public(p, D)), D, diag)


def _public(p, D) -> dict:
    if D == 1:
        return {"w": p["w"], "mu": p["mu"][:, 0], "sigma": np.sqrt(p["cov"][:, 0, 0])}
    return {"w": p["w"], "mu": p["mu"], "cov": p["cov"]}


def _internal(p, D) -> dict:
    if D == 1:
        mu = np.asarray(p["mu"], dtype=float).reshape(-1, 1)
        return {"w": np.asarray(p["w"], dtype=float), "mu": mu,
                "cov": (np.asarray(p["sigma"], dtype=float) ** 2)[:, None, None]}
    return {"w": np.asarray(p["w"], dtype=float), "mu": np.asarray(p["mu"], dtype=float),
            "cov": np.asarray(p["cov"], dtype=float)}


def _order(p) -> dict:
    mu = np.asarray(p["mu"])
    idx = np.argsort(mu if mu.ndim == 1 else mu[:, 0], kind="stable")
    return {key: np.asarray(v)[idx] for key, v in p.items()}


def _to_model(p, D, diag) -> dict:
    """The model's free-variable values for public parameters."""
    if D == 1:
        return dict(p)
    out = {"w": p["w"], "mu_first": p["mu"][:, 0], "mu_rest": p["mu"][:, 1:]}
    if diag:
        out["sigma"] = np.sqrt(np.diagonal(p["cov"], axis1=1, axis2=2))
    else:
        for j, c in enumerate(p["cov"]):
            out[f"chol_{j}"] = pack(np.linalg.cholesky(c))
    return out


def em_math(model: pm.Model, *, prior: bool, reg_covar: float = 0.0, shift=None) -> EMMath:
    """EM steps for the model's data and, with ``prior``, its Dirichlet / Normal / scale / LKJ priors.

    ``reg_covar`` adds a ridge to every covariance in the M-step (as scikit-learn does, default there 1e-6). The
    default 0 keeps each step an exact maximisation, so EM converges to the MLE itself and its monotonicity is
    guarded; with a ridge the steps are approximate and EM stops short of the MLE by about the ridge.

    ``shift`` (length D, default the column means of the model's data) is the point the data are centred at before
    the features are formed, so that S_k = sum r x x' / N_k - mu_k mu_k' does not cancel digits away. Any fixed
    point near the data serves; EM over chunks (:mod:`inference.chunked`) must fix it before the first pass, and
    the same shift gives the same iterates in memory and over chunks.

    The step is the one-chunk case of :class:`~inference.base.SufficientEM` (``sufficient``): the statistics
    r F of all rows, then the M-step from them.
    """
    import functools

    check(reg_covar, "reg_covar", "non-negative number")
    X, K, D, diag = _layout(model)
    if shift is None:
        shift = X.mean(axis=0)
    shift = np.asarray(shift, dtype=float).reshape(-1)
    if shift.size != D or not np.all(np.isfinite(shift)):
        raise ValueError(f"shift: expected {D} finite numbers, got {shift!r}")
    F = _prepare(X, shift)
    ref = float(np.mean(np.var(X, axis=0)))  # the data's own variance: the scale a collapse is measured against
    ctype = "diag" if diag else "full"
    evaluate = once_per_params(lambda p: _chunk_stats(p, F, shift))

    def loglik(p):
        return evaluate(p)["loglik"]

    if prior:
        a = dist_params(model, "w", "dirichlet")[0]
        if D == 1:
            m0, s0 = (float(np.ravel(v)[0]) for v in dist_params(model, "mu", "normal"))
            m0, s0 = np.array([m0]), np.array([s0])
            tau = float(np.ravel(dist_params(model, "sigma", "halfnormal")[1])[0])
        else:
            mf, sf = dist_params(model, "mu_first", "normal")
            mr, sr = dist_params(model, "mu_rest", "normal")
            m0 = np.concatenate([[float(np.ravel(mf)[0])], np.broadcast_to(mr, (K, D - 1))[0]])
            s0 = np.concatenate([[float(np.ravel(sf)[0])], np.broadcast_to(sr, (K, D - 1))[0]])
            if diag:
                tau_d = np.broadcast_to(dist_params(model, "sigma", "halfnormal")[1], (K, D))[0]
            else:
                chol_prior = [chol_prior_fn(model, f"chol_{j}", D) for j in range(K)]

    def from_stats(totals, p):
        nk, sx, sxx = _unpack_stats(totals["S"], D)  # in centred coordinates
        if not prior:
            new = _m_step(nk, sx, sxx, totals["n"], D, reg_covar, ctype, ref)
            new["mu"] = new["mu"] + shift
            return _public(new, D)
        w = dirichlet_map(nk, a)
        q = _internal(p, D)
        mu, cov = np.empty((K, D)), np.empty((K, D, D))
        for j in range(K):
            mc = normal_mean_map(np.linalg.inv(q["cov"][j]), nk[j], sx[j], m0 - shift, s0)
            mu[j] = mc + shift
            ss = sxx[j] - np.outer(mc, sx[j]) - np.outer(sx[j], mc) + nk[j] * np.outer(mc, mc)
            if D == 1:
                cov[j] = [[halfnormal_scale_map(ss[0, 0], nk[j], tau)]]
            elif diag:
                cov[j] = np.diag(halfnormal_scale_map(np.diag(ss), nk[j], tau_d))
            else:
                cov[j] = lkj_m_step(chol_prior[j], q["cov"][j], nk[j], ss, D)
        cov += reg_covar * np.eye(D)[None]
        _check_collapse(cov, ref)
        return _public({"w": w, "mu": mu, "cov": cov}, D)

    def expected_loglik(totals, p):
        # sum_i r_ik (log w_k + log N(x_i | mu_k, S_k)) = C_k . (sum_i r_ik F_i): linear in the statistics
        q = _internal(p, D)
        return float(np.sum(_coefficients(q["w"], q["mu"] - shift, q["cov"]) * totals["S"]))

    def step(p):
        return from_stats(evaluate(p), p)

    def log_prior(p):
        q = _internal(p, D)
        lp = float(stats.dirichlet.logpdf(q["w"], a))
        lp += float(np.sum(stats.norm.logpdf(q["mu"], m0[None, :], s0[None, :])))
        if D == 1:
            lp += float(np.sum(stats.halfnorm.logpdf(np.sqrt(q["cov"][:, 0, 0]), scale=tau)))
        elif diag:
            lp += float(np.sum(stats.halfnorm.logpdf(np.sqrt(np.diagonal(q["cov"], axis1=1, axis2=2)),
                                                     scale=tau_d[None, :])))
        else:
            for j in range(K):
                lp += chol_prior[j](pack(np.linalg.cholesky(q["cov"][j])))[0]
        return lp

    def check_init(p):
        if D == 1 and "sigma" in p:
            p = dict(p, cov=(np.asarray(p["sigma"], dtype=float) ** 2).reshape(K, 1, 1))
        q = _check_params(p, K, D, "init")
        return _order(_public(q, D))

    def extras(p):
        return {"responsibilities": _e_step(p, F, shift)[1].T}

    def scale(p):
        # round-off of the E-step's product C F is a few ulps of |C| |F| (per point, the largest over components)
        q = _internal(p, D)
        C = _coefficients(q["w"], q["mu"] - shift, q["cov"])
        return float((np.abs(C) @ np.abs(F)).max(axis=0).sum())

    sufficient = SufficientEM(prepare=functools.partial(_prepare, shift=shift),
                              chunk_stats=functools.partial(_chunk_stats, shift=shift),
                              from_stats=from_stats, expected_loglik=expected_loglik)
    return EMMath(init=lambda rng: _public_from_model(_model_init(model, rng), D), step=step, loglik=loglik,
                  log_prior=log_prior if prior else None, check_init=check_init,
                  to_model=lambda p: _to_model(p, D, diag), extras=extras, order=_order, exact=reg_covar == 0,
                  scale=scale, sufficient=sufficient)


def _public_from_model(m, D) -> dict:
    if D == 1:
        return dict(m)
    mu = np.column_stack([m["mu_first"], m["mu_rest"]])
    K = mu.shape[0]
    if "sigma" in m:
        cov = np.stack([np.diag(s**2) for s in m["sigma"]])
    else:
        cov = np.stack([unpack(m[f"chol_{j}"], D) @ unpack(m[f"chol_{j}"], D).T for j in range(K)])
    return {"w": m["w"], "mu": mu, "cov": cov}


# ------------------------------------------------------------------------------------------------ alignment
def align(result, truth=None):
    """Relabel the components of ``result``: to ``truth`` by optimal matching of the means when given, else by the
    first coordinate of the mean. Permutes ``w``, ``mu``, ``sigma``, ``cov`` and their sds and draws."""
    from dataclasses import replace

    from scipy.optimize import linear_sum_assignment

    mu = np.asarray(result.params["mu"])
    first = mu if mu.ndim == 1 else mu[:, 0]
    if truth is not None and "mu" in truth:
        t = np.asarray(truth["mu"], dtype=float)
        cost = ((mu.reshape(len(first), -1)[:, None, :] - t.reshape(len(first), -1)[None, :, :]) ** 2).sum(axis=2)
        rows, cols = linear_sum_assignment(cost)
        perm = rows[np.argsort(cols)]
    else:
        perm = np.argsort(first, kind="stable")
    if np.array_equal(perm, np.arange(len(perm))):
        return result
    names = [n for n in ("w", "mu", "sigma", "cov") if n in result.params]
    params = dict(result.params)
    sd = dict(result.sd)
    for n in names:
        params[n] = params[n][perm]
        sd[n] = sd[n][perm]
    draws = None
    if result.draws is not None:
        draws = dict(result.draws)
        for n in names:
            if n in draws:
                draws[n] = draws[n][:, :, perm]
    return replace(result, params=params, sd=sd, draws=draws)


# ------------------------------------------------------------------------------------------------ density
def density(params: dict, grid: np.ndarray) -> np.ndarray:
    """The fitted 1-D mixture density on ``grid``."""
    w, mu, sigma = (np.asarray(params[k], dtype=float) for k in ("w", "mu", "sigma"))
    return np.sum(w[None, :] * stats.norm.pdf(grid[:, None], mu[None, :], sigma[None, :]), axis=1)


def _min_n(options) -> int:
    return max(2, int(options.get("k") or 2) + 1)


SPEC = ModelSpec(
    name=NAME,
    description="x ~ sum_k w_k Normal(mu_k, cov_k), 1-D or multivariate (0.3/0.7, means 0/5, sds 1/1.5, n=300)",
    build=build,
    example=example,
    simulate=lambda params, n, seed: simulate(params, n, seed),
    data_kind="matrix",
    options=(Option("k", int, "number of components (default 2)"),
             Option("example", str, "built-in example", choices=("classic", "trivariate"), applies="example")),
    params=("w", "mu", "sigma", "cov"),
    min_n=_min_n,
    density=lambda params, grid: density(params, grid),
    not_default={name: "on data with two or more columns: " + why for name, why in SKIP_MULTIVARIATE.items()},
    test_cases={"classic": {}, "trivariate": {"example": "trivariate"}},
    swap_data=lambda model, data: swap_data(model, data),
)
